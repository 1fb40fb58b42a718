"""Process probe: are the expected processes running, how many, and how much memory they hold.

Processes are selected by any combination of `name` (the exact process name as psutil reports
it: the executable's file name, which Linux truncates to 15 characters unless the command line
shows the full one; compared without regard to case on Windows, where java.exe and JAVA.EXE
are the same program), `cmdline` (a regular expression searched in the command line joined by
spaces) and `pid_file` (the one process whose pid the file holds); every given matcher must
match. Zombies and the agent's own process never count.

ok        between `min_count` (default 1) and `max_count` processes match and their summed
          resident memory is below `rss_bytes` levels
warning   more than `max_count` match (a duplicate instance), or rss >= `rss_bytes.warning`
critical  none match while at least one is required, fewer than `min_count` match, the pid
          file is missing, unreadable or not a pid, its pid is not running (a stale pid file)
          or runs another program, or rss >= `rss_bytes.critical`
Reason codes: ok, process_missing, too_few, too_many, rss_high, pid_file_error.

A process that exits between being listed and being read is left out. One whose name or
command line we may not read (AccessDenied: another user's process on Windows, hidepid on
Linux) cannot be shown to match and does not count; one that matches but whose memory or CPU
we may not read counts without those figures (`details.access_denied` says how many). Give
`name` or `cmdline` together with `pid_file`, so a stale pid file whose pid the kernel has
handed to another program is caught rather than trusted.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, model_validator

from probes.config import CheckConfig, Regex, Threshold
from probes.result import Metric, ProbeResult, Status, result

KIND = "process"

# The count is `process_matching`, not `process_count`: promtool rejects a gauge ending in
# _count (the suffix belongs to histograms and summaries).
METRICS = {
    "process_matching": "Running processes that match the check.",
    "process_resident_memory_bytes": "Resident memory of the matching processes, summed.",
    "process_cpu_seconds_total": "User and system CPU time of the matching processes, summed.",
    "process_open_fds": "Open file descriptors of the matching processes, summed (Unix).",
    "process_open_handles": "Open handles of the matching processes, summed (Windows).",
    "process_oldest_start_time_seconds": "Start time of the oldest matching process, "
                                         "seconds since the Unix epoch.",
}


class ProcessCheck(CheckConfig):
    kind: Literal["process"]
    name: str | None = Field(default=None, min_length=1)
    cmdline: Regex | None = Field(default=None, min_length=1)
    pid_file: Path | None = None
    min_count: int = Field(default=1, ge=0)
    max_count: int | None = Field(default=None, ge=0)
    rss_bytes: Threshold = Threshold()
    """Levels on the summed resident memory, in bytes (2 GiB = 2147483648)."""

    @model_validator(mode="after")
    def _selects_something(self) -> ProcessCheck:
        if self.name is None and self.cmdline is None and self.pid_file is None:
            raise ValueError("give at least one of name, cmdline or pid_file")
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError(f"max_count ({self.max_count}) must be >= min_count "
                             f"({self.min_count})")
        return self

    @property
    def target(self) -> str:
        parts = []
        if self.name is not None:
            parts.append(self.name)
        if self.cmdline is not None:
            parts.append(f"/{self.cmdline}/")
        if self.pid_file is not None:
            parts.append(f"pid file {self.pid_file}")
        return " ".join(parts)


CONFIG = ProcessCheck


class PidFileError(Exception):
    """The pid file is missing, unreadable or does not hold a pid."""


@dataclass
class Matched:
    """The matching processes and their summed figures; None where no process was readable."""

    pids: list[int] = field(default_factory=list)
    rss_bytes: int | None = None
    cpu_seconds: float | None = None
    open_fds: int | None = None
    open_handles: int | None = None
    oldest_start: float | None = None
    access_denied: int = 0
    pid_file_pid: int | None = None
    pid_file_note: str = ""


async def probe(check: ProcessCheck) -> ProbeResult:
    try:
        matched = await asyncio.to_thread(find, check)
    except PidFileError as exc:
        return result(Status.CRITICAL, "pid_file_error", str(exc))
    return evaluate(matched, check)


def find(check: ProcessCheck) -> Matched:
    """List and measure the processes `check` selects; blocking (walks the process table)."""
    matched = Matched()
    pattern = re.compile(check.cmdline) if check.cmdline is not None else None
    if check.pid_file is not None:
        pid = read_pid_file(check.pid_file)
        matched.pid_file_pid = pid
        try:
            candidates = [psutil.Process(pid)]
        except psutil.NoSuchProcess:
            matched.pid_file_note = f"pid {pid} from {check.pid_file} is not running"
            return matched
    else:
        candidates = list(psutil.process_iter())
    own_pid = os.getpid()
    for proc in candidates:
        if proc.pid == own_pid:
            continue
        try:
            with proc.oneshot():
                if _selected(proc, check, pattern):
                    matched.pids.append(proc.pid)
                    _measure(proc, matched)
                elif check.pid_file is not None:
                    matched.pid_file_note = (f"pid {proc.pid} from {check.pid_file} is "
                                             f"{_describe(proc)}")
        except psutil.NoSuchProcess:  # exited meanwhile (ZombieProcess included)
            if check.pid_file is not None:
                matched.pid_file_note = f"pid {proc.pid} from {check.pid_file} is not running"
    return matched


def read_pid_file(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise PidFileError(f"cannot read pid file {path}: {exc.strerror or exc}") from None
    first = text.strip().split("\n", 1)[0].strip()
    if not first.isdigit() or int(first) <= 0:
        raise PidFileError(f"pid file {path} does not hold a pid (starts with {first[:20]!r})")
    return int(first)


def _selected(proc: psutil.Process, check: ProcessCheck, pattern: re.Pattern[str] | None
              ) -> bool:
    """Whether `proc` is a live process that every given matcher accepts.

    A name or command line we may not read does not match: it cannot be shown to match.
    """
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.AccessDenied:
        pass  # alive as far as we can tell
    try:
        if check.name is not None and not _same_name(proc.name(), check.name):
            return False
        if pattern is not None and not pattern.search(" ".join(proc.cmdline())):
            return False
    except psutil.AccessDenied:
        return False
    return True


def _describe(proc: psutil.Process) -> str:
    """How a process that did not match looks, for the summary."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "a zombie"
        return f"{proc.name()!r}, not the selected process"
    except psutil.AccessDenied:
        return "not a process we may inspect"


def _same_name(actual: str, wanted: str) -> bool:
    if sys.platform == "win32":
        return actual.casefold() == wanted.casefold()
    return actual == wanted


def _measure(proc: psutil.Process, matched: Matched) -> None:
    """Add `proc`'s figures to the sums; a figure we may not read is left out."""
    try:
        matched.rss_bytes = (matched.rss_bytes or 0) + proc.memory_info().rss
        times = proc.cpu_times()
        matched.cpu_seconds = (matched.cpu_seconds or 0.0) + times.user + times.system
        started = proc.create_time()
        if matched.oldest_start is None or started < matched.oldest_start:
            matched.oldest_start = started
        if hasattr(proc, "num_fds"):  # Unix
            matched.open_fds = (matched.open_fds or 0) + proc.num_fds()
        if hasattr(proc, "num_handles"):  # Windows
            matched.open_handles = (matched.open_handles or 0) + proc.num_handles()
    except psutil.AccessDenied:
        matched.access_denied += 1


def evaluate(matched: Matched, check: ProcessCheck) -> ProbeResult:
    count = len(matched.pids)
    metrics = [Metric(name="process_matching", value=count)]
    for name, value in (("process_resident_memory_bytes", matched.rss_bytes),
                        ("process_cpu_seconds_total", matched.cpu_seconds),
                        ("process_open_fds", matched.open_fds),
                        ("process_open_handles", matched.open_handles),
                        ("process_oldest_start_time_seconds", matched.oldest_start)):
        if value is not None:
            metrics.append(Metric(name=name, value=value))
    details: dict[str, object] = {"pids": matched.pids[:50], "count": count}
    if matched.access_denied:
        details["access_denied"] = matched.access_denied
    if matched.pid_file_pid is not None:
        details["pid_file_pid"] = matched.pid_file_pid

    def done(status: Status, reason: str, summary: str) -> ProbeResult:
        return result(status, reason, summary, metrics=tuple(metrics), details=details)

    what = check.target
    if count == 0 and check.min_count > 0:
        note = f" ({matched.pid_file_note})" if matched.pid_file_note else ""
        return done(Status.CRITICAL, "process_missing", f"no process matches {what}{note}")
    if count < check.min_count:
        return done(Status.CRITICAL, "too_few",
                    f"{_matching(count)} {what}, at least {check.min_count} required")
    if check.max_count is not None and count > check.max_count:
        return done(Status.WARNING, "too_many",
                    f"{_matching(count)} {what}, at most {check.max_count} expected")
    rss_text = "" if matched.rss_bytes is None else f", rss {_bytes(matched.rss_bytes)}"
    if matched.rss_bytes is not None:
        level = check.rss_bytes.evaluate(matched.rss_bytes)
        if level is not Status.OK:
            bound = check.rss_bytes.critical if level is Status.CRITICAL else \
                check.rss_bytes.warning
            assert bound is not None
            return done(level, "rss_high",
                        f"{_matching(count)} {what}{rss_text} ({level.value} ≥ {_bytes(bound)})")
    return done(Status.OK, "ok", f"{_matching(count)} {what}{rss_text}")


def _matching(count: int) -> str:
    return "1 process matches" if count == 1 else f"{count} processes match"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
