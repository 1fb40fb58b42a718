"""Agentless access: `SshAccess` runs the same read-only inspections as `LocalAccess` on a host
where no agent may be installed, over SSH with paramiko. It owns the SSH target config
(`SshTarget`), host key checking, key authentication and the remote form of a command.

Safety, by construction:
- host keys are checked against the target's own `known_hosts` file; an unknown or changed key
  is refused (paramiko's `RejectPolicy`, never auto-add) with a message that names the host, the
  key type and its SHA256 fingerprint, the file and how to add the key after checking it;
- authentication is by the configured private key only (no agent, no `~/.ssh` keys, no
  password);
- commands are argv lists. SSH exec takes one string that the remote login shell parses, so
  every argument is quoted with `shlex.quote` (a POSIX login shell is required: sh, bash, dash);
  `; touch /tmp/x` stays one argument;
- the remote command is
  `timeout --signal=KILL LIMIT env LANG=C LC_ALL=C LANGUAGE=C [sudo -n --] ARGV...`.
  Closing the SSH channel or the connection does not stop a remote command that does not write
  (sshd sends it no signal), so coreutils `timeout` on the remote host kills it: it sends
  SIGKILL to its whole process group at the limit, so a hung command and its children never
  linger. Under sudo the command runs as root, out of reach of the login user's signals, so
  there `timeout --signal=TERM --kill-after=2` is used: sudo relays the SIGTERM to the command.
  The locale variables are set before `sudo` because sudo's default `env_check` keeps LANG,
  LC_* and LANGUAGE when their value is plain;
- `sudo -n --` is added only for commands the caller marks `privileged` and only when the target
  says `sudo: true`; `-n` never prompts, so only what the sudoers whitelist allows runs.

Paramiko is blocking: every connect and every command runs in a worker thread, one per
operation, with socket and channel timeouts so the thread ends by itself; `close()` closes the
transport, which also ends a thread still waiting on a command.
"""

from __future__ import annotations

import asyncio
import functools
import select
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

import paramiko  # type: ignore[import-untyped]  # paramiko ships no type information
from pydantic import Field

from probes.access import C_LOCALE, DEFAULT_MAX_BYTES, CommandOutput
from probes.config import Duration, SecretRef, StrictModel

_STDERR_BYTES = 64 * 1024
_CHUNK = 65536
_GRACE_S = 2.0
"""How long past `limit_s` we wait for the remote `timeout` to report before closing the
channel ourselves (network latency, a loaded host)."""

T = TypeVar("T")


class SshTarget(StrictModel):
    """One host reached over SSH. The key and known_hosts files are read when connecting, not at
    config load, because they are usually readable only by the service account that scans."""

    host: str = Field(min_length=1, pattern=r"^[^\s@/\[\]]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    key_file: Path
    """The private key (OpenSSH format; ed25519 recommended)."""
    key_passphrase: SecretRef | None = None
    """Only when `key_file` is encrypted: `{env: VAR}` or `{file: /path}`."""
    known_hosts: Path
    """The only host keys trusted for this target (OpenSSH known_hosts format, hashed or not)."""
    connect_timeout: Duration = 10.0
    """For each step of connecting: TCP connect, SSH banner, key exchange, authentication."""
    command_timeout: Duration = 60.0
    """Limit for `read_file` and the default a job may use for its commands."""
    sudo: bool = False
    """Run commands marked privileged as `sudo -n -- ARGV` (see docs/agentless.md)."""
    max_sessions: int = Field(default=4, ge=1, le=10)
    """Commands run at once on this host (sshd's MaxSessions is 10 by default)."""

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


class SshError(Exception):
    """Connecting or authenticating failed. `reason` is a stable code (connect_refused,
    connect_timeout, connect_error, host_key_unknown, host_key_mismatch, known_hosts_error,
    key_error, auth_failed, closed); the message is one line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def remote_command(argv: Sequence[str], limit_s: float) -> str:
    """The string sent to the remote login shell for `argv` (which may start with `sudo`).

    `timeout 0` would mean no limit, so the limit is at least a millisecond. Under sudo the
    command runs as root and the login user may not signal it, so a SIGKILL would kill only
    sudo and orphan the command: there `timeout` sends SIGTERM, which sudo relays to the
    command, and SIGKILL to what is left 2 s later."""
    limit = f"{max(limit_s, 0.001):.3f}"
    env = [f"{name}={value}" for name, value in C_LOCALE.items()]
    under_sudo = tuple(argv[:1]) == ("sudo",)
    signal = ["--signal=TERM", "--kill-after=2"] if under_sudo else ["--signal=KILL"]
    return shlex.join(["timeout", *signal, limit, "env", *env, *argv])


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: Any) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RefuseUnknownHostKey(paramiko.RejectPolicy):  # type: ignore[misc]
    """RejectPolicy that keeps the offered key, so the refusal can show its fingerprint."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise _UnknownHostKey(hostname, key)


class SshAccess:
    """A host over SSH: one connection (made on first use, or by `connect()`), reused for every
    command of a scan and closed by `close()`. Implements `probes.access.HostAccess`."""

    def __init__(self, target: SshTarget, *, executor: Executor | None = None,
                 deadline: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`executor` runs the blocking parts (default: asyncio's own pool). With `deadline`
        (on `clock`) every command's limit is cut to the time left, so that no remote command
        outlives it: closing the connection alone would not stop one that does not write."""
        self.target = target
        self.name = target.name
        self._executor = executor
        self._deadline = deadline
        self._clock = clock
        self._client: Any = None
        self._connected = False
        self._failure: SshError | None = None
        self._closed = False
        self._connect_lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(target.max_sessions)

    async def connect(self) -> None:
        """Connect and authenticate now. Raises SshError; a failure is remembered, so a scan
        pays for an unreachable host once, not once per command."""
        async with self._connect_lock:
            if self._failure is not None:
                raise self._failure
            if self._connected:
                return
            if self._closed:
                raise SshError("closed", f"{self.name}: connection already closed")
            self._client = paramiko.SSHClient()
            try:
                await self._in_thread(self._connect_blocking, self._client)
            except SshError as exc:
                self._failure = exc
                await self._in_thread(self._client.close)
                raise
            self._connected = True

    async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
        command = tuple(argv)
        if not command:
            raise ValueError("argv must not be empty")
        if privileged and self.target.sudo:
            command = ("sudo", "-n", "--", *command)
        try:
            await self.connect()
        except SshError as exc:
            return CommandOutput(command, None, b"", b"", error=str(exc))
        async with self._sessions:
            if self._deadline is not None:   # measured after waiting for a session
                limit_s = min(limit_s, max(self._deadline - self._clock(), 0.001))
            return await self._in_thread(self._exec_blocking, command, limit_s, max_bytes)

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_BYTES
                        ) -> bytes | None:
        """The file's bytes through `cat -- PATH` (no SFTP subsystem needed), or None when it
        is missing or unreadable, or the host cannot be reached."""
        out = await self.run(["cat", "--", path], limit_s=self.target.command_timeout,
                             max_bytes=max_bytes)
        return out.stdout if out.ok else None

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            # a thread of our own, not the executor: its workers may all be waiting on commands
            # that this close is about to end
            await asyncio.to_thread(self._client.close)

    # -- blocking parts, run in worker threads ------------------------------------------------

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return await asyncio.to_thread(func, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    def _connect_blocking(self, client: Any) -> None:
        target = self.target
        pkey = self._load_key()
        try:
            client.load_host_keys(str(target.known_hosts))
        except OSError as exc:
            raise SshError("known_hosts_error", f"{self.name}: cannot read known_hosts file "
                           f"{target.known_hosts}: {exc.strerror or exc}") from None
        client.set_missing_host_key_policy(_RefuseUnknownHostKey())
        timeout = target.connect_timeout
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=pkey,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, allow_agent=False, look_for_keys=False)
        except _UnknownHostKey as exc:
            raise SshError("host_key_unknown", self._unknown_key_message(exc.key)) from None
        except paramiko.BadHostKeyException as exc:
            raise SshError("host_key_mismatch",
                           self._changed_key_message(exc.key, exc.expected_key)) from None
        except paramiko.AuthenticationException:
            raise SshError("auth_failed", f"{self.name}: authentication failed for user "
                           f"{target.user!r} with key {target.key_file} (is its public key in "
                           f"that user's authorized_keys?)") from None
        except paramiko.ssh_exception.NoValidConnectionsError:
            raise SshError("connect_refused", f"{self.name}: connection refused") from None
        except TimeoutError:
            raise SshError("connect_timeout", f"{self.name}: no answer within "
                           f"{timeout:g}s") from None
        except socket.gaierror as exc:
            raise SshError("connect_error", f"{self.name}: cannot resolve {target.host}: "
                           f"{exc.strerror}") from None
        except OSError as exc:
            raise SshError("connect_error", f"{self.name}: cannot connect: "
                           f"{exc.strerror or exc}") from None
        except (paramiko.SSHException, EOFError) as exc:
            text = str(exc) or type(exc).__name__
            # start_client() returns at its timeout without raising, and then the missing
            # session key shows up as "No existing session"
            if "banner" in text or "No existing session" in text:
                raise SshError("connect_timeout", f"{self.name}: no SSH banner or key exchange "
                               f"within {timeout:g}s (not an SSH server, or overloaded)") from None
            raise SshError("connect_error", f"{self.name}: SSH negotiation failed: "
                           f"{text}") from None
        if self._closed:   # close() ran while we were connecting: do not leave it open
            client.close()
            raise SshError("closed", f"{self.name}: closed while connecting")

    def _load_key(self) -> Any:
        target = self.target
        passphrase = target.key_passphrase.get().encode() if target.key_passphrase else None
        try:
            return paramiko.PKey.from_path(target.key_file, passphrase)
        except OSError as exc:
            raise SshError("key_error", f"{self.name}: cannot read key file {target.key_file}: "
                           f"{exc.strerror or exc}") from None
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            # cryptography raises TypeError for an encrypted key loaded without a passphrase
            if isinstance(exc, TypeError) and "password" not in str(exc):
                raise SshError("key_error", f"{self.name}: cannot load key file "
                               f"{target.key_file}: unsupported format") from None
            raise SshError("key_error", f"{self.name}: key file {target.key_file} is encrypted; "
                           f"set key_passphrase") from None
        except (paramiko.SSHException, ValueError) as exc:
            # never echo the exception text: it could quote what was used to decrypt
            raise SshError("key_error", f"{self.name}: cannot load key file {target.key_file} "
                           f"({type(exc).__name__}: wrong passphrase or unsupported "
                           f"format)") from None

    def _key_hint(self) -> str:
        target = self.target
        port = f"-p {target.port} " if target.port != 22 else ""
        return (f"check the fingerprint out of band (on the host: ssh-keygen -lf "
                f"/etc/ssh/ssh_host_*_key.pub), then add it: "
                f"ssh-keyscan {port}{target.host} >> {target.known_hosts}")

    def _unknown_key_message(self, key: Any) -> str:
        return (f"{self.name}: host key refused: {key.get_name()} {key.fingerprint} is not in "
                f"{self.target.known_hosts}; {self._key_hint()}")

    def _changed_key_message(self, key: Any, expected: Any) -> str:
        target = self.target
        entry = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        return (f"{self.name}: host key CHANGED, refused: the host offers {key.get_name()} "
                f"{key.fingerprint} but {target.known_hosts} has {expected.get_name()} "
                f"{expected.fingerprint} (a reinstalled host, or someone in between); if the new "
                f"key is right, remove the old one (ssh-keygen -R '{entry}' -f "
                f"{target.known_hosts}) and {self._key_hint()}")

    def _exec_blocking(self, command: tuple[str, ...], limit_s: float,
                       max_bytes: int) -> CommandOutput:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            return CommandOutput(command, None, b"", b"",
                                 error=f"{self.name}: connection lost")
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            return CommandOutput(command, None, b"", b"",
                                 error=f"{self.name}: cannot open a session: {exc}")
        started = time.monotonic()
        deadline = started + limit_s + _GRACE_S
        out = _Capped(max_bytes)
        err = _Capped(_STDERR_BYTES)
        local_timeout = False
        try:
            channel.settimeout(self.target.connect_timeout)
            channel.exec_command(remote_command(command, limit_s))
            while True:
                while channel.recv_ready():
                    out.add(channel.recv(_CHUNK))
                while channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(_CHUNK))
                drained = (channel.eof_received or channel.closed) and not (
                    channel.recv_ready() or channel.recv_stderr_ready())
                if drained and channel.exit_status_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    local_timeout = True
                    break
                if drained:   # output done: the pipe stays readable, so wait on the status
                    channel.status_event.wait(min(remaining, 1.0))
                else:
                    select.select([channel], [], [], min(remaining, 1.0))
            status = None if local_timeout else channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            return CommandOutput(command, None, out.data(), err.data(),
                                 error=f"{self.name}: {command[0]} failed: {exc}")
        finally:
            channel.close()
        elapsed = time.monotonic() - started
        # the remote `timeout` SIGKILLs its own group, so sshd reports a signal (paramiko: -1);
        # with sudo it ends the command with SIGTERM and exits 124
        killed = status is None or status in (-1, 124, 128 + 9)
        if killed and (local_timeout or elapsed >= limit_s):
            return CommandOutput(command, None, b"", b"", timed_out=True,
                                 error=f"{command[0]} did not finish in {limit_s:g}s "
                                       f"on {self.name}")
        if status == -1:
            return CommandOutput(command, None, out.data(), err.data(),
                                 error=f"{self.name}: connection closed before {command[0]} "
                                       f"finished")
        error = None
        stderr = err.data()
        if status in (126, 127) and stderr.startswith(b"env: "):
            # env could not start the program: not found / not executable
            error = (f"cannot run {command[0]} on {self.name}: "
                     f"{stderr.decode(errors='replace').strip().removeprefix('env: ')}")
        return CommandOutput(command, status, out.data(), stderr, truncated=out.cut,
                             error=error)


class _Capped:
    """Keeps the first `limit` bytes; the rest is read and dropped so the remote never blocks
    on a full channel window."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        room = self._limit - len(self._kept)
        if room > 0:
            self._kept += chunk[:room]
        if len(chunk) > max(room, 0):
            self.cut = True

    def data(self) -> bytes:
        return bytes(self._kept)

