"""Command probe: run a Nagios-compatible plugin; its exit code is the status.

ok        exit 0
warning   exit 1
critical  exit 2
unknown   exit 3, any other exit code, death by a signal, a plugin that cannot be started
Reason codes: ok, plugin_warning, plugin_critical, plugin_unknown (exit 3 or any code
outside 0-3), killed (a signal ended it), exec_failed (not found, not executable, bad `cwd`).
A plugin still running at the check's timeout is killed with its whole process group
(SIGKILL, as Nagios does) and the runner reports reason `timeout`.

The command is an argv list, or a string split like a POSIX shell would (`shlex`), but never
run by a shell. It runs in its own session, so grandchildren are killed with it; children it
leaves behind after exiting are killed too, since they would hold its output open.

Output follows the Nagios plugin API: the first line is `TEXT | PERFDATA`; further lines are
long text up to a line holding `|`, whose rest and all later lines are more perfdata. The
summary is the first line's text. Standard output is kept up to `max_output_bytes` (the rest
is read and dropped, so the plugin never blocks on a full pipe); stderr goes to `details`.

Perfdata items `'label'=value[UOM];[warn];[crit];[min];[max]` become
`command_perfdata{label, uom}` in base units:
  s, ms, us, ns                -> seconds (uom="seconds")
  B, KB, MB, GB, TB, PB        -> bytes, 1024-based (uom="bytes"): the Monitoring Plugins
                                  guidelines do not fix the base and check_disk, check_swap and
                                  most plugins mean binary multiples; KiB ... PiB are read too
  %                            -> the percentage as written (uom="percent")
  c                            -> a counter, as written (uom="counter")
  no unit                      -> a plain number (uom="")
  anything else                -> the number as written, uom = the unit text
A value of `U` (undetermined) yields no sample; warn / crit ranges are kept as text in details.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from probes.config import CheckConfig, SecretRef
from probes.result import Metric, ProbeResult, Status, result

KIND = "command"

METRICS = {
    "command_exit_code": "Exit code of the plugin's last run (128 + N when signal N ended it).",
    "command_perfdata": "A perfdata value of the plugin's last run, in base units (see uom).",
}

_STDERR_BYTES = 4096
_DETAIL_TEXT_BYTES = 8192
_SUMMARY_CHARS = 300

_STATUS = {
    0: (Status.OK, "ok"),
    1: (Status.WARNING, "plugin_warning"),
    2: (Status.CRITICAL, "plugin_critical"),
    3: (Status.UNKNOWN, "plugin_unknown"),
}



def _units() -> dict[str, tuple[float, str]]:
    """Unit of measurement -> (factor to the base unit, base unit name)."""
    units = {"": (1.0, ""), "%": (1.0, "percent"), "c": (1.0, "counter"),
             "s": (1.0, "seconds"), "ms": (1e-3, "seconds"), "us": (1e-6, "seconds"),
             "µs": (1e-6, "seconds"), "ns": (1e-9, "seconds")}
    for power, prefix in enumerate(("", "K", "M", "G", "T", "P")):
        units[f"{prefix}B"] = (1024.0 ** power, "bytes")
        if prefix:
            units[f"{prefix}iB"] = (1024.0 ** power, "bytes")
    units["kB"] = units["KB"]
    return units


_UNITS = _units()
_NUMBER = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(.*)$")
_ITEM = re.compile(r"(?:'((?:[^']|'')*)'|([^\s'=]+))=(\S*)")
_TOKEN = re.compile(r"\S+")


class CommandCheck(CheckConfig):
    kind: Literal["command"]
    command: tuple[str, ...] = Field(min_length=1)
    """argv as a list, or a string split with shell rules (no shell runs it)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Added to the agent's environment."""
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    """Added too, each read from `env:` or `file:` (passwords for the plugin)."""
    cwd: Path | None = None
    max_output_bytes: int = Field(default=65536, ge=1024, le=16 << 20)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                raise ValueError(f"cannot split the command line: {exc}") from None
        return value

    @field_validator("command")
    @classmethod
    def _program(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0]:
            raise ValueError("the program (first word) must not be empty")
        return value

    @field_validator("env", "secret_env")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @property
    def target(self) -> str:
        line = shlex.join(self.command)
        return line if len(line) <= 200 else line[:199] + "…"


CONFIG = CommandCheck


@dataclass(frozen=True)
class Perfdata:
    """One perfdata item as the plugin wrote it."""

    label: str
    value: float | None
    """None for `U` (undetermined)."""
    uom: str
    warn: str = ""
    crit: str = ""
    min: float | None = None
    max: float | None = None

    def in_base_unit(self, number: float) -> tuple[float, str]:
        """`number` (in this item's unit) converted to its base unit, and that unit's name."""
        scale, unit = _UNITS.get(self.uom, (1.0, self.uom))
        return number * scale, unit


@dataclass(frozen=True)
class PluginOutput:
    text: str
    """The first line's text: the plugin's one-line summary."""
    long_text: str
    perfdata: tuple[Perfdata, ...]
    malformed: tuple[str, ...] = ()
    """Perfdata items that could not be read."""


async def probe(check: CommandCheck) -> ProbeResult:
    loop = asyncio.get_running_loop()
    env = {**os.environ, **check.env, **{k: v.get() for k, v in check.secret_env.items()}}
    try:
        transport, plugin = await loop.subprocess_exec(
            lambda: _Plugin(loop, check.max_output_bytes), *check.command,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=check.cwd, start_new_session=True)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != check.command[0] else ""
        return result(Status.UNKNOWN, "exec_failed",
                      f"cannot run {check.command[0]}: {exc.strerror or exc}{where}")
    try:
        await plugin.exited
        # Children left behind would hold the pipes open, and so the result. The group id
        # stays reserved while any member lives, so this reaches only the plugin's own.
        _kill_group(transport)
        await plugin.pipes_closed
    except BaseException:  # cancelled at the runner's deadline (or our bug): leave nothing behind
        _kill_group(transport)
        raise
    finally:
        transport.close()
    returncode = transport.get_returncode()
    assert returncode is not None  # `exited` is only set once it is known
    return assess(check, returncode, plugin.stdout.text(), plugin.stderr.text(),
                  truncated=plugin.stdout.dropped)


class _Bounded:
    """Keeps the first `limit` bytes of a stream and drops the rest, so the plugin never
    blocks on a full pipe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = False

    def add(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        self.dropped = self.dropped or len(data) > room

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


class _Plugin(asyncio.SubprocessProtocol):
    """Collects the plugin's output; tells when it exited and when its pipes closed.

    asyncio's `Process.wait()` waits for both together, which a child that the plugin left
    running (and that inherited stdout) would hold up until the timeout.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.stdout = _Bounded(limit)
        self.stderr = _Bounded(_STDERR_BYTES)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if isinstance(data, bytes):
            (self.stdout if fd == 1 else self.stderr).add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def assess(check: CommandCheck, returncode: int, stdout: str, stderr: str = "", *,
           truncated: bool = False) -> ProbeResult:
    """The result for a finished plugin (`returncode` < 0: killed by that signal)."""
    output = parse_output(stdout)
    metrics = [Metric(name="command_exit_code",
                      value=returncode if returncode >= 0 else 128 - returncode)]
    seen: set[str] = set()
    for item in output.perfdata:
        if item.value is None or item.label in seen:
            continue  # undetermined, or a repeated label (one series per label)
        seen.add(item.label)
        value, unit = item.in_base_unit(item.value)
        metrics.append(Metric(name="command_perfdata", value=value,
                              labels={"label": item.label, "uom": unit}))
    details: dict[str, Any] = {
        "exit_code": returncode if returncode >= 0 else None,
        "long_output": _clip(output.long_text, _DETAIL_TEXT_BYTES),
        "perfdata": [asdict(item) for item in output.perfdata],
        "stderr": _clip(stderr, _STDERR_BYTES),
        "output_truncated": truncated,
    }
    if output.malformed:
        details["perfdata_malformed"] = list(output.malformed)
    program = Path(check.command[0]).name
    text = output.text or f"{program} printed nothing"

    if returncode < 0:
        name = _signal_name(-returncode)
        details["signal"] = name
        status, reason, summary = Status.UNKNOWN, "killed", f"{program} was killed by {name}"
    elif returncode in _STATUS:
        status, reason = _STATUS[returncode]
        summary = text
    else:
        status, reason = Status.UNKNOWN, "plugin_unknown"
        summary = f"exit code {returncode} is not a plugin status: {text}"
    if len(summary) > _SUMMARY_CHARS:
        summary = summary[:_SUMMARY_CHARS - 1] + "…"
    return result(status, reason, summary, metrics=tuple(metrics), details=details)


def parse_output(stdout: str) -> PluginOutput:
    """Split plugin output into text, long text and perfdata (Nagios plugin API)."""
    lines = stdout.splitlines()
    if not lines:
        return PluginOutput(text="", long_text="", perfdata=())
    text, _, perf = lines[0].partition("|")
    perf_parts = [perf]
    long_lines: list[str] = []
    in_perfdata = False
    for line in lines[1:]:
        if in_perfdata:
            perf_parts.append(line)
            continue
        long_line, bar, more = line.partition("|")
        long_lines.append(long_line.rstrip())
        if bar:
            in_perfdata = True
            perf_parts.append(more)
    items, malformed = parse_perfdata(" ".join(perf_parts))
    return PluginOutput(text=text.strip(), long_text="\n".join(long_lines).strip("\n"),
                        perfdata=items, malformed=malformed)


def parse_perfdata(text: str) -> tuple[tuple[Perfdata, ...], tuple[str, ...]]:
    """Perfdata items, and the tokens that could not be read as one."""
    items: list[Perfdata] = []
    malformed: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        match = _ITEM.match(text, pos)
        item = _item(match) if match else None
        if match is None or item is None:
            token = _TOKEN.match(text, pos)
            stop = token.end() if token else pos + 1
            malformed.append(text[pos:stop])
            pos = stop
            continue
        items.append(item)
        pos = match.end()
    return tuple(items), tuple(malformed)


def _item(match: re.Match[str]) -> Perfdata | None:
    quoted, bare, data = match.groups()
    label = quoted.replace("''", "'") if quoted is not None else bare
    fields = (data.split(";") + [""] * 4)[:5]
    raw_value, warn, crit, low, high = fields
    if not label or not raw_value:
        return None
    if raw_value == "U":
        value, uom = None, ""
    else:
        number = _NUMBER.match(raw_value.replace(",", "."))
        if number is None:
            return None
        value, uom = float(number.group(1)), number.group(2)
    return Perfdata(label=label, value=value, uom=uom, warn=warn, crit=crit,
                    min=_number(low), max=_number(high))


def _number(text: str) -> float | None:
    match = _NUMBER.match(text.replace(",", "."))
    return float(match.group(1)) if match and not match.group(2) else None


def _kill_group(transport: asyncio.SubprocessTransport) -> None:
    """SIGKILL the plugin's process group (its session: the plugin and what it started)."""
    if sys.platform == "win32":
        with contextlib.suppress(ProcessLookupError):
            transport.kill()
        return
    # ESRCH: the group is gone already; EPERM: only a zombie is left (macOS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(transport.get_pid(), signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _clip(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore") + "…"
