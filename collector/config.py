"""The collector's configuration: one YAML file, validated whole at load; errors name the path."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from alerts.channel_config import Channels
from alerts.config import IncidentsConfig
from collector.availability import UnknownPolicy
from collector.rules import RuleNode, expand_rule, leaves
from collector.scans import AgentlessConfig
from collector.schedule import Schedule
from probes.config import (
    ConfigError,
    Duration,
    SecretRef,
    StrictModel,
    TlsSection,
    check_cert_and_key,
    split_listen,
    validation_messages,
)


class SystemConfig(StrictModel):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[^/\s]+$")
    name: str = ""
    core: bool = False
    target: float = Field(default=0.995, gt=0, le=1)
    schedule: Schedule = Field(default_factory=lambda: Schedule.model_validate("24x7"))
    members: tuple[str, ...] = ()
    rule: RuleNode
    """`all`, `any` or `{at_least: N}` over `members`, or a tree (collector/rules.py)."""
    unknown_policy: UnknownPolicy | None = None
    """How time without fresh data counts; default: down for core systems, else excluded."""
    depends_on: tuple[str, ...] = ()
    """Systems this one runs on (a shared database): while one of them has an open incident,
    this system's faults join that incident instead of opening their own."""

    @model_validator(mode="before")
    @classmethod
    def _expand_rule(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**data, "rule": expand_rule(data.get("rule", "all"), data.get("members", ()))}
        return data

    @property
    def member_patterns(self) -> list[str]:
        return leaves(self.rule)

    @property
    def unknown_counts_as(self) -> UnknownPolicy:
        if self.unknown_policy is not None:
            return self.unknown_policy
        return "down" if self.core else "excluded"


class UiConfig(StrictModel):
    """The web UI (collector/web/, docs/ui.md)."""

    refresh: Duration = 5.0
    """How often the status board fetches fresh figures."""
    session_idle: Duration = 30 * 60.0
    """A session ends after this long without a request."""
    session_max: Duration = 12 * 3600.0
    """…and this long after login, whatever its use."""
    login_attempts: int = Field(default=5, ge=1)
    """Failed logins allowed per user name and address within `login_window`."""
    login_window: Duration = 15 * 60.0


class ServiceDiscoveryConfig(StrictModel):
    """Where `GET /api/v1/sd` tells Prometheus to scrape each agent (collector/sd.py,
    docs/deploy.md "Prometheus and Grafana")."""

    port: int = Field(default=9810, ge=1, le=65535)
    """The port of the agents' `agent.listen`; the host is the address each agent last
    pushed from."""
    targets: dict[str, str] = Field(default_factory=dict)
    """Agent id -> HOST:PORT of its /metrics, for agents that push through NAT or a proxy
    or listen on another port."""

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        for agent_id, target in value.items():
            split_listen(target)
            if not target.rpartition(":")[0].strip("[]"):
                raise ValueError(f"{agent_id}: {target!r} needs a host (HOST:PORT)")
        return value


class CollectorTls(TlsSection):
    """The collector's server certificate and, for mutual TLS with the agents, the CA that
    signs their client certificates (collector/tls.py; docs/security.md "Agent → collector:
    mutual TLS")."""

    client_ca_file: Path | None = None
    """PEM bundle of the CA(s) that sign the agents' client certificates, the only anchors
    trusted for them (never the system store). When set, `POST /api/v1/results` needs a
    verified client certificate whose subject CN is the agent id of the bearer token."""
    client_certs: Literal["optional", "required"] = "optional"
    """`optional`: the handshake asks for a certificate but lets browsers without one in (the
    web UI shares the port); ingest checks it. `required`: no certificate, no connection (for
    a collector whose UI and health checks are served elsewhere)."""

    @field_validator("client_ca_file")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return value
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(cafile=value)
        except ssl.SSLError:
            raise ValueError(f"{value} holds no PEM certificate") from None
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        if not context.cert_store_stats()["x509_ca"]:
            raise ValueError(f"{value} holds no CA certificate (basicConstraints CA:TRUE); "
                             "give the CA that signs the agents' certificates, not a leaf")
        return value

    @field_validator("client_certs")
    @classmethod
    def _needs_ca(cls, value: str, info: ValidationInfo) -> str:
        # `client_ca_file` is absent from info.data when it failed on its own: say that once
        if "client_ca_file" in info.data and info.data["client_ca_file"] is None:
            raise ValueError("client certificates need tls.client_ca_file (the CA that "
                             "signs them)")
        return value

    @model_validator(mode="after")
    def _pair_loads(self) -> CollectorTls:
        check_cert_and_key(self.cert_file, self.key_file)
        return self


class CollectorConfig(StrictModel):
    listen: str = "127.0.0.1:9800"
    store: str = "sqlite:///var/lib/wardwatch/collector.db"
    store_synchronous: Literal["full", "normal"] = "full"
    timezone: str = "Asia/Shanghai"
    language: Literal["zh-CN", "en"] = "zh-CN"
    calendar: Path | None = None
    retention: Duration = 35 * 86400.0
    stale_after: float = Field(default=2.0, ge=1.0, le=100.0)
    """A check's state stands for this many of its intervals without a new result."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    tls: CollectorTls | None = None
    admin_token: SecretRef | None = None
    """Bearer token for write endpoints other than ingest (maintenance, incidents)."""
    systems: tuple[SystemConfig, ...] = ()
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    channels: Channels = ()
    """Where incident notifications go (alerts/channel_config.py; docs/alerts/channels.md)."""
    ui: UiConfig = Field(default_factory=UiConfig)
    agentless: AgentlessConfig | None = None
    """Hosts scanned over SSH on a schedule (collector/scans.py, docs/agentless.md)."""
    service_discovery: ServiceDiscoveryConfig = Field(default_factory=ServiceDiscoveryConfig)
    """Prometheus HTTP service discovery of the agents' /metrics (collector/sd.py)."""
    public_url: str | None = None
    """The collector's address as people reach it (https://wardwatch.hospital.local), for the
    link in notifications."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _unique_systems(self) -> CollectorConfig:
        seen: set[str] = set()
        for system in self.systems:
            if system.id in seen:
                raise ValueError(f"system id {system.id!r} is used twice")
            seen.add(system.id)
        for system in self.systems:
            for other in system.depends_on:
                if other not in seen or other == system.id:
                    raise ValueError(f"system {system.id!r}: depends_on {other!r} is not "
                                     "another configured system")
        host, _port = split_listen(self.listen)
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and self.tls is None:
            raise ValueError(f"listen {self.listen} is not a loopback address; serving agents "
                             "and people on the network needs tls (cert_file, key_file)")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def system(self, system_id: str) -> SystemConfig:
        for system in self.systems:
            if system.id == system_id:
                return system
        raise KeyError(system_id)


@dataclass(frozen=True)
class LoadedConfig:
    config: CollectorConfig
    source: str


def parse_collector_config(data: Any, source: str = "<memory>") -> CollectorConfig:
    if data is None:
        data = {}
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_messages(exc)) from None


def load_collector_config(path: str | Path) -> CollectorConfig:
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        # where and what, not PyYAML's snippet of the line: it may be the store URL's password
        # (where it started, for an unclosed quote that runs to the end of the file)
        context = getattr(exc, "context", None)
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        if context:
            problem = f"{context}: {problem}"
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    except ValueError as exc:   # a date YAML reads but Python cannot hold (year 0)
        raise ConfigError(source, [f"YAML value out of range: {exc}"]) from None
    return parse_collector_config(data, source)
