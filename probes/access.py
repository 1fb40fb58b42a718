"""How a read-only inspection reaches a host: locally (the agent runs on it) or over SSH
(agentless mode, `probes/ssh.py`). Inventory and policy checks are written once against
`HostAccess` and run the same either way.

Everything here is read-only by construction: commands are argv lists (never a shell string),
run with `LANG=C LC_ALL=C LANGUAGE=C` so their output parses the same on every host, with a
timeout after which the command (its whole process group, locally) is killed, and with their
output cut at `max_bytes`. `sudo` is used only for commands the caller marks `privileged`, and
then as `sudo -n` (never a password prompt), so only what the sudoers whitelist allows runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LANGUAGE": "C"}
DEFAULT_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class CommandOutput:
    argv: tuple[str, ...]
    exit_code: int | None
    """None when the command could not be started or was killed at its timeout."""
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None
    """Why it could not run (not found, permission, connection), in one line."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


class HostAccess(Protocol):
    """A host to inspect. Implementations: LocalAccess (here) and SshAccess (probes/ssh.py)."""

    name: str
    """How the host is shown in results: `local`, or `user@host:port`."""

    async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
        """Run argv; after `limit_s` seconds it is killed (cancelling the awaiting task
        could not stop a process on the host) and the output says `timed_out`."""
        ...

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_BYTES
                        ) -> bytes | None:
        """The file's bytes (at most `max_bytes`), or None when it does not exist or cannot
        be read."""
        ...

    async def close(self) -> None: ...


class LocalAccess:
    """This host, through subprocesses in their own process group."""

    name = "local"

    def __init__(self, sudo: str = "sudo") -> None:
        self._sudo = sudo

    async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
        command = tuple(argv)
        if privileged and os.geteuid() != 0 and sys.platform != "win32":
            command = (self._sudo, "-n", *command)
        env = {**os.environ, **C_LOCALE}
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            return CommandOutput(command, None, b"", b"", error=f"cannot run {command[0]}: "
                                 f"{exc.strerror or exc}")
        assert proc.stdout is not None and proc.stderr is not None
        try:
            async with asyncio.timeout(limit_s):
                out, out_cut = await _read_limited(proc.stdout, max_bytes)
                err, _ = await _read_limited(proc.stderr, 64 * 1024)
                code = await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return CommandOutput(command, None, b"", b"", timed_out=True,
                                 error=f"{command[0]} did not finish in {limit_s:g}s")
        except BaseException:
            _kill_group(proc.pid)
            raise
        _kill_group(proc.pid)   # children it left behind hold nothing of ours
        return CommandOutput(command, code, out, err, truncated=out_cut)

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_BYTES
                        ) -> bytes | None:
        def read() -> bytes | None:
            try:
                with Path(path).open("rb") as handle:
                    return handle.read(max_bytes)
            except OSError:
                return None

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        return None


async def _read_limited(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes; the rest is read and dropped so the command never blocks."""
    kept = bytearray()
    cut = False
    while chunk := await stream.read(65536):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            cut = True
    return bytes(kept), cut


def _kill_group(pid: int) -> None:
    if sys.platform == "win32":
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
