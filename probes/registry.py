"""The literal map from check kind to probe module, imported lazily.

A probe module exports:
    KIND: str                        the `kind:` value in config
    CONFIG: type[CheckConfig]        its config model (pydantic, strict, frozen)
    METRICS: dict[str, str]          metric name -> help text, for /metrics
    async def probe(check) -> ProbeResult
    REMEMBERS: bool = False          optional; True: `probe(check, memory)` gets the check's
                                     `ProbeMemory` (previous counter readings, for rates)

Modules import their heavy libraries (paramiko, oracledb, cryptography) inside `probe`, so an
agent that configures no such check never loads them. Adding a kind = one module, one line
here, one test file.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache

from probes.config import CheckConfig
from probes.result import ProbeResult

KINDS: dict[str, str] = {
    "host": "probes.host",
    "tcp": "probes.tcp",
    "icmp": "probes.icmp",
    "dns": "probes.dns",
    "http": "probes.http",
    "process": "probes.process",
    "systemd": "probes.systemd",
    "winservice": "probes.winservice",
    "command": "probes.command",
    "nginx": "probes.nginx",
    "oracle": "probes.oracle",
    "backup_files": "probes.backup_files",
    "tomcat": "probes.tomcat",
    "weblogic": "probes.weblogic",
    "postgres": "probes.postgres",
    "mysql": "probes.mysql",
    "hardening": "probes.hardening",
    "patches": "probes.patches",
}


@dataclass(frozen=True)
class ProbeKind:
    kind: str
    config: type[CheckConfig]
    metrics: dict[str, str]
    probe: Callable[..., Awaitable[ProbeResult]]
    remembers: bool = False


class UnknownKindError(LookupError):
    pass


@cache
def get_kind(kind: str) -> ProbeKind:
    """The probe for `kind`, importing its module on first use."""
    try:
        module_name = KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise UnknownKindError(f"unknown kind {kind!r}; known kinds: {known}") from None
    module = importlib.import_module(module_name)
    return ProbeKind(kind=module.KIND, config=module.CONFIG, metrics=module.METRICS,
                     probe=module.probe, remembers=getattr(module, "REMEMBERS", False))
