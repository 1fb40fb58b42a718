"""Configuration of the notification channels: one strict, frozen model per channel type,
a discriminated union on `type`, routing filters and retry settings shared by all.

Secrets (robot webhook addresses, which carry their key or token; the DingTalk signing secret;
header values; the SMTP password) are `SecretRef`s, read from `env:` or `file:` at load and
never written inline. Settings that would send a secret over the network in clear text are
refused here, at load, rather than discovered at 3 a.m.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable
from email.utils import parseaddr
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from alerts.message import Event, Message
from alerts.render import Language
from probes.config import (
    ConfigError,
    Duration,
    SecretRef,
    StrictModel,
    validation_messages,
)

TEMPLATE_FIELDS = frozenset({
    "event", "incident_id", "level", "level_name", "system_id", "system_name", "cause",
    "opened_at", "respond_by", "recover_by", "report_by", "deadline", "link", "note", "at",
    "title", "text", "markdown", "language",
})
"""Placeholders a webhook template may use (`{incident_id}`, `{title}`, …)."""


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name other than `localhost` is not trusted to be)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_http_url(value: str, what: str, *, secret: bool) -> str:
    """An absolute http(s) URL; plain http only to loopback when it carries a secret.

    The message never contains the URL itself when `secret` is set: it may hold a key.
    """
    shown = "the address" if secret else repr(value)
    try:
        parts = urlsplit(value.strip())
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ValueError(f"{what}: {shown} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: {shown} must be an absolute http:// or https:// URL")
    if secret and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{what} carries a secret and must use https:// "
                         "(plain http is accepted only to loopback addresses)")
    return value.strip()


def _check_template(value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if value is None:
        return None
    for text in _template_strings(value):
        _check_placeholders(text)
    return value


def _template_strings(node: JsonValue) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for item in node.values():
            yield from _template_strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from _template_strings(item)


def _check_placeholders(text: str) -> None:
    formatter = string.Formatter()
    try:
        parsed = list(formatter.parse(text))
    except ValueError as exc:
        raise ValueError(f"template string {text!r}: {exc} (write {{{{ and }}}} for "
                         "literal braces)") from None
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        # Only plain names: `{cause.__class__}` or `{cause[0]}` would reach into objects.
        if field not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise ValueError(f"template placeholder {{{field}}} is unknown; use one of {known}")
        if spec and "{" in spec:
            raise ValueError(f"template placeholder {{{field}:{spec}}}: nested placeholders "
                             "are not supported")
    try:  # format specs are checked by using them once
        formatter.vformat(text, (), {name: "x" for name in TEMPLATE_FIELDS})
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"template string {text!r}: {exc}") from None


Template = Annotated[dict[str, JsonValue] | None, AfterValidator(_check_template)]


class ChannelBase(StrictModel):
    """Fields every channel has: its name, routing filters, timeouts and retries."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    type: str
    levels: tuple[int, ...] = (1, 2, 3, 4)
    """Incident levels this channel is told about."""
    systems: tuple[str, ...] = ("*",)
    """System ids (shell patterns: `EMR`, `HIS-*`, `*`) this channel is told about."""
    events: tuple[Event, ...] = tuple(Event)
    """Events this channel is told about (default: all)."""
    language: Language | None = None
    """Overrides the collector's language for this channel."""
    timeout: Duration = 10.0
    """Per attempt: connect, send and read the answer."""
    retries: int = Field(default=3, ge=0, le=10)
    """Further attempts after a retryable failure (network, timeout, 5xx, 429, rate limit)."""
    backoff: Duration = 1.0
    """First wait between attempts; doubles each time, plus up to as much random jitter."""
    backoff_max: Duration = 30.0
    """Longest wait between two attempts (before jitter)."""
    total_timeout: Duration | None = None
    """Bound on one delivery, all attempts and waits; default: what the settings above allow."""

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(level not in (1, 2, 3, 4) for level in value):
            raise ValueError("levels must be a non-empty list of 1, 2, 3, 4")
        return value

    @field_validator("systems")
    @classmethod
    def _systems(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not pattern for pattern in value):
            raise ValueError("systems must be a non-empty list of system ids or patterns")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> ChannelBase:
        if self.backoff > self.backoff_max:
            raise ValueError(f"backoff ({self.backoff:g}s) must not exceed backoff_max "
                             f"({self.backoff_max:g}s)")
        return self

    @property
    def time_budget(self) -> float:
        """Seconds one delivery may take in all: `total_timeout`, or every attempt timing out
        plus the longest waits between them (and a second)."""
        if self.total_timeout is not None:
            return self.total_timeout
        waits = sum(min(self.backoff * 2.0 ** n, self.backoff_max) + self.backoff
                    for n in range(self.retries))
        # one second of slack so that a per-attempt timeout, whose error names the cause,
        # fires before the budget's
        return self.timeout * (self.retries + 1) + waits + 1.0


class HttpChannelBase(ChannelBase):
    ca_file: Path | None = None
    """Extra CA certificates (PEM) for a hospital proxy or an internal endpoint."""
    proxy: str | None = None
    """An HTTP proxy (`http://proxy.hospital.local:3128`); the environment is not used."""

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "proxy", secret=True)

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"ca_file {value} is not a readable file")
        return value


class WebhookConfig(HttpChannelBase):
    """A JSON POST to any URL; the body is `template` filled from the message, or all fields."""

    type: Literal["webhook"]
    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    """Plain headers; credentials belong in `secret_headers`."""
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)
    """Header values read from `env:` / `file:`, e.g. `Authorization`."""
    template: Template = None
    """A JSON document whose strings may hold `{placeholders}` (see TEMPLATE_FIELDS)."""

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in ("authorization", "proxy-authorization", "cookie"):
                raise ValueError(f"header {name!r} carries credentials: put it in "
                                 "secret_headers with `env:` or `file:`")
        return value

    @model_validator(mode="after")
    def _url(self) -> WebhookConfig:
        check_http_url(self.url, "url", secret=bool(self.secret_headers))
        return self


class WeComConfig(HttpChannelBase):
    """A WeCom (企业微信) group robot: https://developer.work.weixin.qq.com/document/path/91770"""

    type: Literal["wecom"]
    webhook_url: SecretRef
    """`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`; the key is the secret."""
    mentioned_mobile_list: tuple[str, ...] = ()
    """Not used by markdown messages (WeCom ignores mentions there); kept for text messages."""

    @model_validator(mode="after")
    def _url(self) -> WeComConfig:
        url = check_http_url(self.webhook_url.get(), "webhook_url", secret=True)
        if not parse_qs(urlsplit(url).query).get("key"):
            raise ValueError("webhook_url has no key= parameter; copy the robot's whole "
                             "webhook address")
        return self


class DingTalkConfig(HttpChannelBase):
    """A DingTalk (钉钉) custom robot, optionally with 加签 (signing):
    https://open.dingtalk.com/document/robots/custom-robot-access and
    https://open.dingtalk.com/document/robots/customize-robot-security-settings"""

    type: Literal["dingtalk"]
    webhook_url: SecretRef
    """`https://oapi.dingtalk.com/robot/send?access_token=…`; the token is the secret."""
    secret: SecretRef | None = None
    """The robot's signing secret (`SEC…`), when 加签 is enabled."""

    @model_validator(mode="after")
    def _url(self) -> DingTalkConfig:
        url = check_http_url(self.webhook_url.get(), "webhook_url", secret=True)
        if not parse_qs(urlsplit(url).query).get("access_token"):
            raise ValueError("webhook_url has no access_token= parameter; copy the robot's "
                             "whole webhook address")
        return self


class EmailConfig(ChannelBase):
    """E-mail over SMTP, with STARTTLS (default), implicit TLS or, to loopback only, neither."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default 587 for starttls, 465 for tls, 25 for none."""
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str
    to: tuple[str, ...] = Field(min_length=1)
    ca_file: Path | None = None
    """CA certificates (PEM) to verify the server with, instead of the system's."""
    timeout: Duration = 30.0

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value, "sender")

    @field_validator("to")
    @classmethod
    def _to(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_address(item, "to") for item in value)

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"ca_file {value} is not a readable file")
        return value

    @model_validator(mode="after")
    def _security(self) -> EmailConfig:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(f"security: none sends mail (and any password) in clear text; it is "
                             f"accepted only to a loopback host, not {self.host!r}: use "
                             "starttls or tls")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self

    @property
    def smtp_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]


def _address(value: str, what: str) -> str:
    if any(ch in value for ch in "\r\n"):
        raise ValueError(f"{what}: line breaks are not allowed in an address")
    _name, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"{what}: {value!r} is not an e-mail address")
    return value


ChannelConfig = Annotated[
    WebhookConfig | WeComConfig | DingTalkConfig | EmailConfig,
    Field(discriminator="type"),
]


def _unique_names(channels: tuple[ChannelConfig, ...]) -> tuple[ChannelConfig, ...]:
    seen: set[str] = set()
    for channel in channels:
        if channel.name in seen:
            raise ValueError(f"channel name {channel.name!r} is used twice")
        seen.add(channel.name)
    return channels


Channels = Annotated[tuple[ChannelConfig, ...], AfterValidator(_unique_names)]
"""The `channels:` list of a config file: names unique. Use as a field type."""

_CHANNELS: TypeAdapter[tuple[ChannelConfig, ...]] = TypeAdapter(Channels)


def parse_channels(data: Any, source: str = "<memory>",
                   prefix: str = "channels") -> tuple[ChannelConfig, ...]:
    """The `channels:` list validated; ConfigError lines name the path (`channels[1].url`)."""
    try:
        return _CHANNELS.validate_python(data if data is not None else ())
    except ValidationError as exc:
        raise ConfigError(source, channel_messages(exc, prefix)) from None


def channel_messages(exc: ValidationError, prefix: str = "channels") -> list[str]:
    """`validation_messages` without the union tag pydantic puts in the path
    (`channels[0].wecom.webhook_url` -> `channels[0].webhook_url`)."""
    tags = {"webhook", "wecom", "dingtalk", "email"}
    lines = []
    for line in validation_messages(exc, prefix):
        path, sep, rest = line.partition(": ")
        head, dot, tail = path.partition("].")
        first, _, remainder = tail.partition(".")
        if dot and first in tags:
            tail = remainder
            path = f"{head}]" + (f".{tail}" if tail else "")
        lines.append(f"{path}{sep}{rest}")
    return lines


def routes(config: ChannelBase, message: Message) -> bool:
    """Whether `message` goes to this channel: its level, system and event are selected."""
    return (message.level in config.levels
            and message.event in config.events
            and any(fnmatchcase(message.system_id, pattern) for pattern in config.systems))
