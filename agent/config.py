"""The agent's configuration: one YAML file, validated whole at load.

Errors name the path in the file (`checks[3].timeout: …`). Each check is validated by the
config model of its kind (looked up in `probes.registry`), after the `defaults:` section has
filled in `interval` and `timeout`. The result is frozen: a reload builds a new one and the
daemon swaps it whole.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from probes.config import (
    CheckConfig,
    ConfigError,
    Duration,
    SecretRef,
    StrictModel,
    TlsSection,
    check_cert_and_key,
    split_listen,
    validation_messages,
)
from probes.registry import UnknownKindError, get_kind


class BasicAuthSection(StrictModel):
    username: str = Field(min_length=1)
    password: SecretRef


class AgentSection(StrictModel):
    id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128,
                    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    listen: str = "127.0.0.1:9810"
    state_dir: Path = Path("/var/lib/wardwatch")
    tls: TlsSection | None = None
    basic_auth: BasicAuthSection | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    probe_threads: int = Field(default=32, ge=1, le=512)
    """Threads for blocking probe work; a hung blocking call holds one until its own timeout."""

    @model_validator(mode="after")
    def _safe_bind(self) -> AgentSection:
        host, _port = split_listen(self.listen)
        if not _is_loopback(host) and self.tls is None and self.basic_auth is None:
            raise ValueError(
                f"listen {self.listen} is not a loopback address; binding it needs "
                "agent.tls or agent.basic_auth (metrics may reveal the hospital's topology)")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


class CollectorSection(StrictModel):
    url: str = Field(pattern=r"^https?://")
    token_file: Path | None = None
    token: SecretRef | None = None
    batch_size: int = Field(default=500, ge=1, le=10_000)
    push_interval: Duration = 5.0
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    ca_file: Path | None = None
    cert_file: Path | None = None
    """Client certificate (PEM, chain allowed) the agent presents for mutual TLS; its subject
    CN must be this agent's id (docs/security.md "Agent → collector: mutual TLS")."""
    key_file: Path | None = None
    """Its key (PEM, unencrypted: protect it by file permissions)."""
    timeout: Duration = 30.0
    """How long one push request may take before it counts as failed and is retried."""

    @field_validator("cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                value.open("rb").close()
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        return value

    @model_validator(mode="after")
    def _client_cert(self) -> CollectorSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        if self.cert_file is not None and self.key_file is not None:
            if not self.url.startswith("https://"):
                raise ValueError("cert_file and key_file need an https:// url")
            check_cert_and_key(self.cert_file, self.key_file)
        return self

    @model_validator(mode="after")
    def _one_token(self) -> CollectorSection:
        if self.token_file is not None and self.token is not None:
            raise ValueError("give token_file or token, not both")
        if self.token_file is not None and not self.token_file.is_file():
            raise ValueError(f"token_file {self.token_file} is not a readable file")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a readable file")
        return self


class Defaults(StrictModel):
    interval: Duration = 30.0
    timeout: Duration = 10.0


class _RawAgentConfig(StrictModel):
    agent: AgentSection = Field(default_factory=AgentSection)
    collector: CollectorSection | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    checks: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection
    collector: CollectorSection | None
    defaults: Defaults
    checks: tuple[CheckConfig, ...]
    source: str = "<memory>"

    def check(self, check_id: str) -> CheckConfig:
        for check in self.checks:
            if check.id == check_id:
                return check
        raise KeyError(check_id)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_agent_config(data: Any, source: str = "<memory>") -> AgentConfig:
    """Validate a parsed YAML document; raises ConfigError listing every problem found."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping"])
    raw_checks = data.get("checks")
    try:
        raw = _RawAgentConfig.model_validate({**data, "checks": []})
    except ValidationError as exc:
        raise ConfigError(source, validation_messages(exc)) from None
    errors: list[str] = []
    if raw_checks is None:
        raw_checks = []
    if not isinstance(raw_checks, list):
        raise ConfigError(source, ["checks: must be a list"])
    checks: list[CheckConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw_checks):
        path = f"checks[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: must be a mapping")
            continue
        kind = item.get("kind")
        if not isinstance(kind, str):
            errors.append(f"{path}.kind: required (one of the probe kinds)")
            continue
        try:
            model = get_kind(kind).config
        except UnknownKindError as exc:
            errors.append(f"{path}.kind: {exc}")
            continue
        merged = {"interval": raw.defaults.interval, "timeout": raw.defaults.timeout, **item}
        try:
            check = model.model_validate(merged)
        except ValidationError as exc:
            errors.extend(validation_messages(exc, prefix=path))
            continue
        if check.id in seen:
            errors.append(f"{path}.id: {check.id!r} is already used by checks[{seen[check.id]}]")
            continue
        seen[check.id] = index
        checks.append(check)
    if errors:
        raise ConfigError(source, errors)
    return AgentConfig(agent=raw.agent, collector=raw.collector, defaults=raw.defaults,
                       checks=tuple(checks), source=source)


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate the agent config file at `path`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    return parse_agent_config(data, source)
