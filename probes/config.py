"""Config building blocks shared by every probe kind, the agent and the collector: the check
base model, durations, thresholds, secret references, and errors that name the config path.

Every model is strict (`extra="forbid"`, unknown keys rejected) and frozen, so a loaded config
can be compared whole on reload and never changes under a running probe.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from probes.result import Status


class ConfigError(Exception):
    """A config file that cannot be used; `errors` are `path: message` lines."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))

    def __str__(self) -> str:
        return f"{self.source}: invalid configuration\n" + "\n".join(
            f"  {line}" for line in self.errors)


def format_loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """('checks', 3, 'url') -> 'checks[3].url'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validation_messages(exc: ValidationError, prefix: str = "") -> list[str]:
    """pydantic errors as `path: message` lines, paths written as in the YAML file."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # pydantic puts the failing model's class name into union/after-validator paths
        loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "string_type" and isinstance(err.get("input"), bool):
            message += " (YAML reads yes/no/on/off/true/false as booleans: quote the value)"
        lines.append(f"{format_loc(loc, prefix)}: {message}")
    return lines


def split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9810`, `[::1]:9810`, `:9810` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen {listen!r} must be HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `1h`, `250ms`, `2d` or a plain number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m, 1h or a number of seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 1h or a number of seconds")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
"""A positive duration in seconds, written as `30s`, `5m`, `1h` or a number."""


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""A Python regular expression, checked at config load."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(StrictModel):
    """Warning / critical levels for one value.

    `above` (default): the value is bad when it is >= the level (usage, latency).
    `below`: bad when it is <= the level (free space, days to certificate expiry).
    """

    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.warning is not None and self.critical is not None:
            if self.direction == "above" and self.warning > self.critical:
                raise ValueError("warning must be <= critical when direction is 'above'")
            if self.direction == "below" and self.warning < self.critical:
                raise ValueError("warning must be >= critical when direction is 'below'")
        return self

    def evaluate(self, value: float) -> Status:
        """OK, WARNING or CRITICAL for `value` against these levels."""
        if self.direction == "above":
            if self.critical is not None and value >= self.critical:
                return Status.CRITICAL
            if self.warning is not None and value >= self.warning:
                return Status.WARNING
        else:
            if self.critical is not None and value <= self.critical:
                return Status.CRITICAL
            if self.warning is not None and value <= self.warning:
                return Status.WARNING
        return Status.OK


class SecretRef(StrictModel):
    """A secret read from an environment variable or a file, never written inline.

    Resolved once at config load so that a missing variable or an unreadable file is a config
    error naming the path; the value is a `SecretStr`, which never prints.
    """

    env: str | None = None
    file: Path | None = None
    value: SecretStr = Field(default=SecretStr(""), exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("must be a mapping with `env: VARIABLE` or `file: /path`")
        if "value" in data:
            raise ValueError("inline secrets are not accepted; use `env:` or `file:`")
        env, file = data.get("env"), data.get("file")
        if (env is None) == (file is None):
            raise ValueError("give exactly one of `env:` or `file:`")
        if env is not None:
            if not isinstance(env, str) or env not in os.environ:
                raise ValueError(f"environment variable {env!r} is not set")
            secret = os.environ[env]
        else:
            try:
                secret = Path(str(file)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file {file}: {exc.strerror}") from None
        return {**data, "value": SecretStr(secret)}

    def get(self) -> str:
        return self.value.get_secret_value()


class PasswordFields(StrictModel):
    """`password_file` or `password_env`, resolved at load into `password` (never inline).

    Mixed into the config of every check that logs in (middleware APIs, databases); the
    resolved value is a `SecretRef`, which never prints and is excluded from dumps.
    """

    password_file: Path | None = None
    """A file holding the password (first line, stripped); readable by the agent only."""
    password_env: str | None = None
    """An environment variable holding the password."""
    password: SecretRef | None = Field(default=None, exclude=True, repr=False)
    """Resolved from `password_file` / `password_env` at load; never set it in config."""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("inline passwords are not accepted; use password_file or "
                             "password_env")
        return data

    @model_validator(mode="after")
    def _resolve_password(self) -> PasswordFields:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give one of password_file or password_env, not both")
        if self.password_file is not None:
            ref = SecretRef.model_validate({"file": self.password_file})
        elif self.password_env is not None:
            ref = SecretRef.model_validate({"env": self.password_env})
        else:
            return self
        object.__setattr__(self, "password", ref)
        return self


def check_cert_and_key(cert_file: Path, key_file: Path) -> None:
    """Raise ValueError saying why `cert_file` and `key_file` do not load into a TLS context
    as a certificate (chain) and its key; used at config load so `validate` finds a wrong
    key, not the first connection. The message never holds key material."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # Always a password: with None, OpenSSL would prompt on the terminal for an
        # encrypted key and hang a daemon; with "" an encrypted key fails to load instead.
        context.load_cert_chain(cert_file, key_file, password="")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"key_file {key_file} is not the key of cert_file {cert_file}"
                             ) from None
        raise ValueError(f"cert_file {cert_file} / key_file {key_file} do not load: not PEM, "
                         "or an encrypted key (keys must be unencrypted; protect them by file "
                         "permissions)") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or cert_file}: "
                         f"{exc.strerror or exc}") from None


class TlsSection(StrictModel):
    """A server certificate and key (agent /metrics, collector API), checked at load."""

    cert_file: Path
    key_file: Path

    @model_validator(mode="after")
    def _readable(self) -> TlsSection:
        for name in ("cert_file", "key_file"):
            path: Path = getattr(self, name)
            if not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        return self


class CheckConfig(StrictModel):
    """Fields every check has. A kind subclasses it and sets `kind: Literal["..."]`."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    kind: str
    system: str = ""
    interval: Duration = 30.0
    timeout: Duration = 10.0
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _timeout_fits(self) -> CheckConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)"
            )
        for name in self.labels:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
                raise ValueError(f"label name {name!r} is not a valid Prometheus label name")
            if name in {"check", "kind", "system"}:
                raise ValueError(f"label name {name!r} is reserved")
        return self

    @property
    def target(self) -> str:
        """What the check looks at, as shown to people (URL, host:port, unit, ...)."""
        return ""
