"""sd_notify as systemd sees it: a real unix datagram socket opened by the test plays systemd.

This machine does not run systemd as PID 1, so the agent and the collector are started as
real processes with NOTIFY_SOCKET and WATCHDOG_USEC set, the way systemd starts a
`Type=notify` unit with `WatchdogSec=`, and the test reads what arrives on the socket,
with the sender's pid from SCM_CREDENTIALS (what `NotifyAccess=main` checks).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from probes.sdnotify import Notifier
from tests.services import free_port

WAIT = 60.0  # generous bound for any one notification on a busy 2-core machine


@dataclass(frozen=True)
class Notification:
    pid: int
    lines: tuple[str, ...]


class NotifySocket:
    """The receiving end systemd would own: AF_UNIX datagrams with the sender's credentials,
    drained by a thread as systemd drains its socket (a datagram socket's queue is short)."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.received: list[Notification] = []
        self._queue: queue.Queue[Notification] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except OSError:
                return  # closed
            if not data and not ancdata:
                return
            pid = -1
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("iII", cdata[:12])
            self._queue.put(Notification(pid, tuple(data.decode().split("\n"))))

    def receive(self, within: float = WAIT) -> Notification:
        try:
            note = self._queue.get(timeout=within)
        except queue.Empty:
            raise TimeoutError(f"nothing received within {within}s; got {self.received}") from None
        self.received.append(note)
        return note

    def wait_for(self, line: str, within: float = WAIT) -> Notification:
        deadline = time.monotonic() + within
        while True:
            note = self.receive(max(0.1, deadline - time.monotonic()))
            if line in note.lines:
                return note
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {line} within {within}s; got {self.received}")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(timeout=10)


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    path = str(tmp_path / "notify.sock")
    receiver = NotifySocket(path)
    yield path, receiver
    receiver.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, NotifySocket]]:
    name = f"wardwatch-test-{uuid.uuid4().hex}"
    receiver = NotifySocket(b"\0" + name.encode())
    yield "@" + name, receiver
    receiver.close()


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status)


def started(cmd: list[str], notify_socket: str, watchdog_usec: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": str(watchdog_usec)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stopped(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)  # a no-op after the test's own SIGTERM
    try:
        _out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode(errors="replace")


def pings_after(receiver: NotifySocket, start: Notification, count: int) -> None:
    got = 0
    while got < count:
        note = receiver.wait_for("WATCHDOG=1")
        assert note.pid == start.pid
        got += 1


# --- the protocol ---------------------------------------------------------------------------

def test_nothing_happens_without_notify_socket() -> None:
    env = {"WATCHDOG_USEC": "1000000"}
    notifier = Notifier.from_environ(env)
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False
    asyncio.run(notifier.run_watchdog())  # returns at once: nothing to ping


def test_path_and_abstract_sockets_receive_and_the_environment_is_cleared(
        path_socket: tuple[str, NotifySocket], abstract_socket: tuple[str, NotifySocket]) -> None:
    for address, receiver in (path_socket, abstract_socket):
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000",
               "WATCHDOG_PID": str(os.getpid()), "PATH": "/usr/bin"}
        notifier = Notifier.from_environ(env)
        # children (Nagios plugins) must not inherit the right to notify in our name
        assert env == {"PATH": "/usr/bin"}
        assert notifier.watchdog_interval == 1.5
        assert notifier.ready("serving") is True
        note = receiver.receive()
        assert note.lines == ("READY=1", "STATUS=serving")
        assert note.pid == os.getpid()
        notifier.stopping()
        assert receiver.receive().lines == ("STOPPING=1", "STATUS=stopping")


def test_watchdog_meant_for_another_pid_is_ignored(path_socket: tuple[str, NotifySocket]) -> None:
    address, _receiver = path_socket
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_environ(env, pid=4242)
    assert notifier.enabled and notifier.watchdog_interval is None


def test_a_missing_socket_costs_a_warning_not_a_crash(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.notify("READY=1") is False
    assert notifier.notify("STATUS=x") is False
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1


def test_a_blocked_loop_stops_the_pings(path_socket: tuple[str, NotifySocket]) -> None:
    """The pinger is a task on the loop: while a callback blocks the loop no ping leaves,
    which is how systemd's WatchdogSec= sees a wedged service and restarts it."""
    address, receiver = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_interval == 0.05

    def wedge() -> None:
        # a blocking call on the loop, as a probe forgetting asyncio.to_thread would make:
        # forty ping intervals long
        notifier.status("blocking")
        time.sleep(40 * 0.05)
        notifier.status("unblocked")

    async def scenario() -> None:
        pinger = asyncio.create_task(notifier.run_watchdog())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pings_after_any, receiver, 3)
        wedge()
        await loop.run_in_executor(None, pings_after_any, receiver, 3)
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)

    asyncio.run(scenario())
    lines = [note.lines for note in receiver.received]
    blocked_from = lines.index(("STATUS=blocking",))
    blocked_to = lines.index(("STATUS=unblocked",))
    assert ("WATCHDOG=1",) not in lines[blocked_from:blocked_to]
    assert lines[blocked_to + 1:].count(("WATCHDOG=1",)) >= 3  # and they resume after


def pings_after_any(receiver: NotifySocket, count: int) -> None:
    for _ in range(count):
        receiver.wait_for("WATCHDOG=1")


# --- the real services ----------------------------------------------------------------------

def test_agent_notifies_ready_watchdog_reload_and_stopping(
        tmp_path: Path, path_socket: tuple[str, NotifySocket]) -> None:
    address, receiver = path_socket
    port, target = free_port(), socket.create_server(("127.0.0.1", 0))
    with target:
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(yaml.safe_dump({
            "agent": {"id": "sd-agent", "listen": f"127.0.0.1:{port}",
                      "state_dir": str(tmp_path / "state")},
            "checks": [{"id": "t", "kind": "tcp", "system": "EMR", "host": "127.0.0.1",
                        "port": target.getsockname()[1], "interval": "1s",
                        "timeout": "500ms"}]}))
        proc = started([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                       address, 400_000)
        try:
            ready = receiver.wait_for("READY=1")
            assert ready.pid == proc.pid  # NotifyAccess=main accepts only the main pid
            assert any(line.startswith("STATUS=1 checks:") for line in ready.lines)
            # READY means serving: /metrics answers at once
            assert http_status(f"http://127.0.0.1:{port}/metrics") == 200
            # the status line follows the checks' results, on a watchdog tick
            status = receiver.wait_for("STATUS=1 checks: 1 ok")
            assert status.pid == proc.pid and "WATCHDOG=1" in status.lines
            pings_after(receiver, ready, 3)

            proc.send_signal(signal.SIGHUP)
            receiver.wait_for("RELOADING=1")
            assert receiver.wait_for("READY=1").pid == proc.pid

            proc.send_signal(signal.SIGTERM)
            stopping = receiver.wait_for("STOPPING=1")
            assert stopping.pid == proc.pid
        finally:
            code, err = stopped(proc)
    assert code == 0, err


def test_collector_notifies_ready_watchdog_and_stopping(
        tmp_path: Path, abstract_socket: tuple[str, NotifySocket]) -> None:
    address, receiver = abstract_socket
    port = free_port()
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}",
                                   "store": f"sqlite:///{tmp_path / 'collector.db'}"}))
    proc = started([sys.executable, "-m", "collector", "run", "--config", str(cfg)],
                   address, 400_000)
    try:
        ready = receiver.wait_for("READY=1", within=120)  # migrations run before READY
        assert ready.pid == proc.pid
        assert f"STATUS=serving on http://127.0.0.1:{port}" in ready.lines
        assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
        pings_after(receiver, ready, 3)
        proc.send_signal(signal.SIGTERM)
        assert receiver.wait_for("STOPPING=1").pid == proc.pid
    finally:
        code, err = stopped(proc)
    assert code == 0, err
