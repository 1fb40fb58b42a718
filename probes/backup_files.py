"""backup_files probe: the newest backup file in a directory — its age, its size against the
one before it, how many arrived in the last day, and optionally its checksum sidecar.

For backups that land as files: RMAN backup pieces to disk, Data Pump (`expdp`) dumps,
mysqldump / pg_dump files, copied archives — on Linux or Windows (`D:\\backup\\rman`).

ok        the newest matching file is younger than `max_age`, not smaller than
          `min_size_bytes` nor than `shrink_ratio` × the file before it, at least
          `expected_per_day` files arrived in the last 24 h, and its checksum matches
warning   older than `warning_age`; fewer than `expected_per_day` files in the last 24 h;
          `verify_checksum` set but the newest file has no sidecar (checksum_missing)
critical  the directory is missing (path_missing); no file matches (no_backup); the newest is
          older than `max_age` (backup_stale), smaller than `min_size_bytes`
          (backup_too_small) or shrank below `shrink_ratio` × the previous (backup_shrunk);
          its sidecar names another digest (checksum_mismatch)
unknown   the directory or a file cannot be read by the agent (probe_error)
Reason codes: ok, path_missing, no_backup, backup_stale, backup_too_small, backup_shrunk,
backup_count_low, checksum_missing, checksum_mismatch, probe_error.

Files still being written look like shrunk or bad backups: `settle` (default 60 s) ignores
files modified more recently than that. A checksum sidecar is `<file>.sha256` (or `.md5`) in
`sha256sum` format (`HEX  NAME`, or just `HEX`); a file is hashed once per (size, mtime) —
the result is remembered between runs — and only up to `checksum_max_bytes`, because hashing
a 200 GB backup piece every run would cost more than the check is worth. A hash the run's
timeout cuts stops at its next chunk (the thread is told), and the next run starts over.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from probes.config import CheckConfig, Duration
from probes.memory import ProbeMemory
from probes.result import Cause, Metric, ProbeResult, Status, result, verdict

KIND = "backup_files"
REMEMBERS = True

METRICS = {
    "backup_files_newest_timestamp_seconds": "Modification time of the newest matching file.",
    "backup_files_newest_age_seconds": "Age of the newest matching file.",
    "backup_files_newest_size_bytes": "Size of the newest matching file.",
    "backup_files_previous_size_bytes": "Size of the file before the newest.",
    "backup_files_count": "Matching files in the directory.",
    "backup_files_total_bytes": "Total size of the matching files.",
    "backup_files_last_day_count": "Matching files modified in the last 24 hours.",
    "backup_files_checksum_ok": "1 when the newest file matches its checksum sidecar, else 0.",
}

_CHUNK = 1 << 20
_DAY_S = 86400.0


class BackupFilesCheck(CheckConfig):
    kind: Literal["backup_files"]
    path: str
    """The directory holding the backups (a Windows path such as D:\\backup works there)."""
    pattern: str = "*"
    """A shell-style file name pattern (`*.bkp`, `HIS_*.dmp.gz`); case-insensitive on Windows."""
    recursive: bool = False
    max_age: Duration = 26 * 3600.0
    """Critical when the newest file is older (default 26 h: a nightly backup, with slack)."""
    warning_age: Duration | None = None
    min_size_bytes: int = Field(default=1, ge=0)
    shrink_ratio: float | None = Field(default=0.5, gt=0, le=1)
    """Critical when the newest is smaller than this × the previous file; null turns it off."""
    expected_per_day: int | None = Field(default=None, ge=1)
    """Files expected in the last 24 h (e.g. 24 for hourly archive-log copies)."""
    settle: Duration = 60.0
    """Ignore files modified this recently: they may still be being written."""
    verify_checksum: Literal["sha256", "md5"] | None = None
    checksum_max_bytes: int = Field(default=4 << 30, ge=1)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path must name a directory")
        return value

    @model_validator(mode="after")
    def _ages(self) -> BackupFilesCheck:
        if self.warning_age is not None and self.warning_age >= self.max_age:
            raise ValueError("warning_age must be shorter than max_age")
        return self

    @property
    def target(self) -> str:
        return str(Path(self.path) / self.pattern)


CONFIG = BackupFilesCheck


@dataclass(frozen=True)
class _File:
    path: Path
    size: int
    mtime: float


class _Unreadable(Exception):
    pass


async def probe(check: BackupFilesCheck, memory: ProbeMemory) -> ProbeResult:
    name = f"backups {check.target}"
    directory = Path(check.path)
    try:
        files = await asyncio.to_thread(_scan, directory, check)
    except FileNotFoundError:
        return result(Status.CRITICAL, "path_missing", f"{name}: directory {directory} is missing")
    except NotADirectoryError:
        return result(Status.CRITICAL, "path_missing", f"{name}: {directory} is not a directory")
    except (PermissionError, _Unreadable) as exc:
        return result(Status.UNKNOWN, "probe_error",
                      f"{name}: the agent cannot read {directory}: {_os_text(exc)}")
    now = time.time()
    settled = [f for f in files if now - f.mtime >= check.settle]
    if not settled:
        fresh = f" ({len(files)} still being written)" if files else ""
        return result(Status.CRITICAL, "no_backup", f"{name}: no matching file{fresh}",
                      metrics=(Metric(name="backup_files_count", value=len(files)),))
    settled.sort(key=lambda f: (f.mtime, f.path.name))
    newest = settled[-1]
    previous = settled[-2] if len(settled) > 1 else None
    age = now - newest.mtime
    last_day = sum(1 for f in settled if now - f.mtime <= _DAY_S)
    metrics = [
        Metric(name="backup_files_newest_timestamp_seconds", value=newest.mtime),
        Metric(name="backup_files_newest_age_seconds", value=age),
        Metric(name="backup_files_newest_size_bytes", value=newest.size),
        Metric(name="backup_files_count", value=len(settled)),
        Metric(name="backup_files_total_bytes", value=sum(f.size for f in settled)),
        Metric(name="backup_files_last_day_count", value=last_day),
    ]
    details: dict[str, Any] = {"newest": str(newest.path), "newest_size": newest.size,
                               "newest_mtime": _iso(newest.mtime), "count": len(settled)}
    causes: list[Cause] = []
    newest_text = f"newest {newest.path.name} is {_age(age)} old"
    if age > check.max_age:
        causes.append(Cause(Status.CRITICAL, "backup_stale",
                            f"{newest_text} (limit {_age(check.max_age)})"))
    elif check.warning_age is not None and age > check.warning_age:
        causes.append(Cause(Status.WARNING, "backup_stale",
                            f"{newest_text} (warning after {_age(check.warning_age)})"))
    if newest.size < check.min_size_bytes:
        causes.append(Cause(Status.CRITICAL, "backup_too_small",
                            f"{newest.path.name} is {_size(newest.size)}, expected at least "
                            f"{_size(check.min_size_bytes)}"))
    if previous is not None:
        metrics.append(Metric(name="backup_files_previous_size_bytes", value=previous.size))
        details["previous_size"] = previous.size
        if check.shrink_ratio is not None and newest.size < previous.size * check.shrink_ratio:
            causes.append(Cause(Status.CRITICAL, "backup_shrunk",
                                f"{newest.path.name} is {_size(newest.size)}, "
                                f"{newest.size / previous.size:.0%} of the previous "
                                f"{previous.path.name} ({_size(previous.size)})"))
    if check.expected_per_day is not None and last_day < check.expected_per_day:
        causes.append(Cause(Status.WARNING, "backup_count_low",
                            f"{last_day} file(s) in the last 24 h, expected "
                            f"{check.expected_per_day}"))
    if check.verify_checksum is not None:
        await _checksum(check, newest, memory, metrics, causes, details)
    ok_line = f"{name}: {newest_text}, {_size(newest.size)}, {len(settled)} file(s)"
    return verdict(name, causes, ok_line, metrics=tuple(metrics), details=details)


def _scan(directory: Path, check: BackupFilesCheck) -> list[_File]:
    """Matching regular files (symlinks followed) in `directory`, recursively if asked."""
    if not directory.is_dir():
        if not directory.exists():
            raise FileNotFoundError(directory)
        raise NotADirectoryError(directory)
    windows = sys.platform == "win32"
    pattern = check.pattern.lower() if windows else check.pattern
    found: list[_File] = []
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except PermissionError as exc:
            if current == directory:
                raise
            raise _Unreadable(f"{current}: {_os_text(exc)}") from None
        for entry in entries:
            try:
                info = entry.stat()
            except OSError:
                continue  # vanished between listing and stat (rotation)
            if stat.S_ISDIR(info.st_mode):
                if check.recursive:
                    pending.append(Path(entry.path))
                continue
            if not stat.S_ISREG(info.st_mode) or _is_sidecar(entry.name):
                continue
            if fnmatch.fnmatchcase(entry.name.lower() if windows else entry.name, pattern):
                found.append(_File(Path(entry.path), info.st_size, info.st_mtime))
    return found


def _is_sidecar(name: str) -> bool:
    return name.lower().endswith((".sha256", ".md5"))


async def _checksum(check: BackupFilesCheck, newest: _File, memory: ProbeMemory,
                    metrics: list[Metric], causes: list[Cause], details: dict[str, Any]
                    ) -> None:
    algorithm = check.verify_checksum
    assert algorithm is not None
    sidecar = newest.path.with_name(newest.path.name + "." + algorithm)
    try:
        expected = _read_sidecar(sidecar)
    except FileNotFoundError:
        causes.append(Cause(Status.WARNING, "checksum_missing",
                            f"{newest.path.name} has no {sidecar.name}"))
        return
    except (OSError, ValueError) as exc:
        causes.append(Cause(Status.UNKNOWN, "probe_error",
                            f"cannot read {sidecar.name}: {_os_text(exc)}"))
        return
    if newest.size > check.checksum_max_bytes:
        details["checksum"] = (f"not verified: {_size(newest.size)} is over checksum_max_bytes "
                               f"({_size(check.checksum_max_bytes)})")
        return
    key = (str(newest.path), newest.size, newest.mtime, algorithm)
    known = memory.values.get("checksum")
    if known is not None and known[0] == key:
        actual = known[1]
    else:
        stop = threading.Event()
        try:
            actual = await asyncio.to_thread(_digest, newest.path, algorithm, stop)
        except asyncio.CancelledError:
            stop.set()  # the run's timeout: the thread ends at its next chunk
            raise
        except OSError as exc:
            causes.append(Cause(Status.UNKNOWN, "probe_error",
                                f"cannot read {newest.path.name}: {_os_text(exc)}"))
            return
        memory.values["checksum"] = (key, actual)
    matches = actual == expected
    metrics.append(Metric(name="backup_files_checksum_ok", value=1 if matches else 0))
    details["checksum"] = f"{algorithm} {'matches' if matches else 'MISMATCH'}"
    if not matches:
        causes.append(Cause(Status.CRITICAL, "checksum_mismatch",
                            f"{newest.path.name} does not match {sidecar.name} "
                            f"({algorithm} {actual[:12]}… vs {expected[:12]}…)"))


def _read_sidecar(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    digest = text.split()[0].lower() if text else ""
    if not digest or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{path.name} does not start with a hex digest")
    return digest


def _digest(path: Path, algorithm: str, stop: threading.Event) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            if stop.is_set():
                raise OSError("cancelled by the check's timeout")
            digest.update(chunk)
    return digest.hexdigest()


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * _DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / _DAY_S:.1f} days"


def _size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _iso(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _os_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
