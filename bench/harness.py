"""What the bench scripts share: processes started in their own groups (and killed with the
bench), /proc readings, free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Every process the bench starts, each in its own session so its group can be killed."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Started] = []

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Started:
        log = self.logdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent, **kwargs)
        started = Started(name, proc, log)
        self.started.append(started)
        return started

    def stop(self, started: Started, sig: int = signal.SIGTERM) -> None:
        proc = started.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # workers of a master that died first (nginx) are still in the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if started in self.started:
            self.started.remove(started)

    def stop_all(self) -> None:
        for started in reversed(list(self.started)):
            try:
                self.stop(started)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {started.name}: {exc}", file=sys.stderr)


def _die_with_parent() -> None:
    # Should the bench itself be SIGKILLed, the kernel still takes its children down.
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime (all threads) + cutime + cstime of `pid`, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
            out[key] = int(value.split()[0])
    return out


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a bench ran on (CPU, memory, kernel, Python, load), plus `extra`."""
    import platform
    from datetime import UTC, datetime

    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
            "memory_gib": round(mem_kb / 1024 / 1024, 1), "kernel": platform.release(),
            "python": platform.python_version(), **extra,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def source_state(repo: Path, dirs: tuple[str, ...], globs: tuple[str, ...]) -> dict[str, Any]:
    """Commit and a digest of the measured sources (`globs` under `repo`), to catch edits made
    during a run; `uncommitted` lists changed files under `dirs`."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for pattern in globs for p in repo.glob(pattern)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    commit, dirty = "", ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, timeout=10,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *dirs], cwd=repo,
                               timeout=10, capture_output=True, text=True).stdout
    return {"commit": commit, "uncommitted": dirty.splitlines(),
            "sources_sha256": digest.hexdigest()[:16]}
