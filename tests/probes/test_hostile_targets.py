"""Hostile probe targets (issue 10): real sockets on loopback, served by asyncio servers in the
test, that accept and never answer, drip their answer a byte a second, send 50 MB, never
finish a TLS handshake, never accept, or stop reading what is sent to them.

Each hostile check runs on a real `Scheduler` next to a healthy HTTP check: the hostile
result must be `critical` with a stable reason and arrive within its timeout plus a little,
and the healthy check must keep its cadence meanwhile. docs/agent-faults.md says what each
target does to a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from agent.config import parse_agent_config
from agent.runner import run_check
from agent.scheduler import Scheduler, phase_offset
from probes.http import HttpCheck, probe
from probes.result import CheckResult, Status

AGENT = "hostile-test"
HOSTILE_TIMEOUT = 1.5
HOSTILE_INTERVAL = 2.0
HEALTHY_INTERVAL = 0.2
SLACK = 0.3
"""How late after its timeout a cut result may arrive (cancellation, clean-up, a busy CI)."""
BIG = 50 * 1024 * 1024
CHUNK = b"y" * 65536

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Target:
    """A loopback server and what it did."""

    port: int
    sent: int = 0
    """Body bytes the server managed to hand to the kernel."""
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: list[asyncio.Task[Any]] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`; False when the test is over (the behaviour then ends)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), seconds)
        return not self.stopped.is_set()


@contextlib.asynccontextmanager
async def serve(behaviour: Callable[[Target, asyncio.StreamReader, asyncio.StreamWriter],
                                    Awaitable[None]]) -> AsyncIterator[Target]:
    target = Target(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        target.handlers.append(task)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await behaviour(target, reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    target.port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield target
    finally:
        target.stopped.set()
        for writer in target.writers:
            writer.transport.abort()
        async with asyncio.timeout(5):  # each behaviour ends on `stopped` or a dead socket
            await asyncio.gather(*target.handlers, return_exceptions=True)


# --- behaviours ----------------------------------------------------------------------------


async def silent(t: Target, _r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
    """Accepts, reads nothing, answers nothing (also: a TLS port that never says hello)."""
    await t.stopped.wait()


async def drip(t: Target, data: bytes, writer: asyncio.StreamWriter) -> None:
    """One byte a second: every byte comes well inside the probe's timeout, so a timer reset
    by each byte would never fire."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        if not await t.pause(1.0):
            return


async def drip_headers(t: Target, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await drip(t, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", writer)


async def drip_body(t: Target, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n")
    await drip(t, b"x" * 30, writer)


async def drip_banner(t: Target, _r: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    await drip(t, b"220 please wait... READY\r\n", writer)


async def huge_body(t: Target, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    """50 MB of body, as fast as the client takes it, then `END`."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: %d\r\n\r\n" % (BIG + 3))
    for _ in range(BIG // len(CHUNK)):
        if t.stopped.is_set():
            return
        writer.write(CHUNK)
        await writer.drain()
        t.sent += len(CHUNK)
    writer.write(b"END")
    await writer.drain()


async def flood(t: Target, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """50 MB of banner that never matches."""
    for _ in range(BIG // len(CHUNK)):
        if t.stopped.is_set():
            return
        writer.write(CHUNK)
        await writer.drain()
        t.sent += len(CHUNK)


async def never_reads(t: Target, _r: asyncio.StreamReader,
                      _w: asyncio.StreamWriter) -> None:
    await t.stopped.wait()


async def ok_response(_t: Target, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


@contextlib.contextmanager
def full_backlog() -> Any:
    """A port whose listen queue is full: the kernel drops further SYNs, so a connect neither
    succeeds nor fails (a host under a SYN flood, or an application that stopped accepting)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


# --- the scheduler: one hostile check beside one healthy check -----------------------------


def quick_id(name: str, interval: float) -> str:
    """A check id whose phase puts its first run near the start (the test need not wait)."""
    for n in range(10_000):
        check_id = f"{name}-{n}"
        if phase_offset(AGENT, check_id, interval) < 0.05 * interval:
            return check_id
    raise AssertionError("no quick phase")


class Sink:
    def __init__(self) -> None:
        self.results: list[tuple[float, CheckResult, float]] = []
        self.changed = asyncio.Event()

    def __call__(self, res: CheckResult, lag: float) -> None:
        self.results.append((asyncio.get_running_loop().time(), res, lag))
        self.changed.set()

    async def first(self, check_id: str, within: float) -> tuple[float, CheckResult, float]:
        async with asyncio.timeout(within):
            while True:
                for item in self.results:
                    if item[1].check_id == check_id:
                        return item
                self.changed.clear()
                await self.changed.wait()


async def run_beside_a_healthy_check(hostile: dict[str, Any], healthy_port: int
                                     ) -> tuple[CheckResult, float, float, list[CheckResult]]:
    """(hostile result, its lag, seconds from its slot to its arrival, healthy results that
    started while it ran)."""
    hostile_id = quick_id("hostile", HOSTILE_INTERVAL)
    cfg = parse_agent_config({"agent": {"id": AGENT}, "checks": [
        {**hostile, "id": hostile_id, "interval": HOSTILE_INTERVAL,
         "timeout": HOSTILE_TIMEOUT},
        {"id": "healthy", "kind": "http", "url": f"http://127.0.0.1:{healthy_port}/",
         "interval": HEALTHY_INTERVAL, "timeout": 0.15}]})
    sink = Sink()
    grid_start = asyncio.get_running_loop().time()  # the scheduler's epoch is a little later
    scheduler = Scheduler(AGENT, sink)
    scheduler.apply(cfg.checks)
    try:
        arrived, res, lag = await sink.first(
            hostile_id, within=0.05 * HOSTILE_INTERVAL + HOSTILE_TIMEOUT + SLACK + 1)
    finally:
        await scheduler.stop()
    slot = grid_start + phase_offset(AGENT, hostile_id, HOSTILE_INTERVAL)
    ran_until = res.started_at + timedelta(seconds=res.duration_s)
    healthy = [(r, lag_) for _at, r, lag_ in sink.results
               if r.check_id == "healthy" and res.started_at <= r.started_at <= ran_until]
    assert all(lag_ < 0.15 for _r, lag_ in healthy), [lag_ for _r, lag_ in healthy]
    return res, lag, arrived - slot, [r for r, _lag in healthy]


@pytest.fixture
async def healthy_port() -> AsyncIterator[int]:
    async with serve(ok_response) as target:
        yield target.port


def http_check(url: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "http", "url": url, **kw}


def tcp_check(port: int, **kw: Any) -> dict[str, Any]:
    return {"kind": "tcp", "host": "127.0.0.1", "port": port, **kw}


@dataclass(frozen=True)
class Case:
    behaviour: Callable[[Target, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    check: Callable[[int], dict[str, Any]]
    reason: str = "timeout"


CASES = {
    "http-accepts-never-answers": Case(silent, lambda p: http_check(f"http://127.0.0.1:{p}/")),
    "http-headers-1-byte-a-second": Case(
        drip_headers, lambda p: http_check(f"http://127.0.0.1:{p}/")),
    "http-body-1-byte-a-second": Case(
        drip_body, lambda p: http_check(f"http://127.0.0.1:{p}/")),
    "https-handshake-never-finishes": Case(
        silent, lambda p: http_check(f"https://127.0.0.1:{p}/")),
    "http-50MB-body-with-a-body-check": Case(
        huge_body, lambda p: http_check(f"http://127.0.0.1:{p}/", body_regex="END$"),
        reason="body_mismatch"),
    "tcp-50MB-banner": Case(flood, lambda p: tcp_check(p, expect="READY"),
                            reason="expect_mismatch"),
    "tcp-accepts-never-answers": Case(silent, lambda p: tcp_check(p, expect="READY")),
    "tcp-banner-1-byte-a-second": Case(drip_banner, lambda p: tcp_check(p, expect="READY")),
    # more than loopback's socket buffers take: the write can never finish
    "tcp-peer-stops-reading": Case(
        never_reads, lambda p: tcp_check(p, send="x" * 8_000_000, expect="OK")),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_target_is_cut_in_time_and_delays_no_other_check(
        name: str, healthy_port: int) -> None:
    case = CASES[name]
    async with serve(case.behaviour) as target:
        started = time.monotonic()
        res, lag, slot_to_arrival, healthy = await run_beside_a_healthy_check(
            case.check(target.port), healthy_port)
        elapsed = time.monotonic() - started
    assert (res.status, res.reason) == (Status.CRITICAL, case.reason), res.summary
    assert lag < 0.15
    if case.reason == "timeout":
        assert HOSTILE_TIMEOUT <= res.duration_s < HOSTILE_TIMEOUT + SLACK, res.duration_s
    else:
        assert res.duration_s < HOSTILE_TIMEOUT, res.duration_s
    assert slot_to_arrival < HOSTILE_TIMEOUT + SLACK
    assert elapsed < 0.05 * HOSTILE_INTERVAL + HOSTILE_TIMEOUT + SLACK + 0.5
    # the healthy check ran on its cadence the whole time, quickly
    window = res.duration_s
    assert len(healthy) >= int(window / HEALTHY_INTERVAL) - 1, (len(healthy), window)
    for r in healthy:
        assert r.status is Status.OK, r.summary
        assert r.duration_s < 0.15, r.duration_s
    if name.startswith("http-50MB"):
        assert "first 1048576 bytes checked" in res.summary
    if "50MB" in name:
        assert target.sent < 16 * 1024 * 1024  # the rest of the 50 MB was never received


@pytest.mark.parametrize("kind", ["tcp", "http"])
async def test_a_port_that_never_accepts_is_cut_at_the_timeout(kind: str) -> None:
    with full_backlog() as port:
        check = (tcp_check(port) if kind == "tcp"
                 else http_check(f"http://127.0.0.1:{port}/"))
        cfg = parse_agent_config({"checks": [{**check, "id": "syn", "timeout": 0.5}]})
        res = await run_check(cfg.checks[0], AGENT)
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout"), res.summary
    assert 0.5 <= res.duration_s < 0.5 + SLACK


# --- memory: a 50 MB body ------------------------------------------------------------------


async def peak_while(call: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        value = await call()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak


@pytest.mark.parametrize(("extra", "limit", "status"), [
    ({}, 1024 * 1024, Status.OK),                             # nothing needs the body
    ({"body_regex": "^y+"}, 4 * 1024 * 1024, Status.OK),      # a 1 MiB prefix is kept
    ({"body_regex": "END$"}, 4 * 1024 * 1024, Status.CRITICAL),
])
async def test_a_50mb_body_costs_bounded_memory_and_time(
        extra: dict[str, str], limit: int, status: Status) -> None:
    async with serve(huge_body) as target:
        check = HttpCheck.model_validate({"id": "big", "kind": "http", "timeout": 5,
                                          "url": f"http://127.0.0.1:{target.port}/", **extra})
        started = time.perf_counter()
        res, peak = await peak_while(lambda: probe(check))
        elapsed = time.perf_counter() - started
        sent = target.sent
    assert res.status is status, res.summary
    assert res.details.get("body_truncated") is True
    assert peak < limit, f"peak {peak / 1e6:.2f} MB"
    assert elapsed < 2.0
    assert sent < 16 * 1024 * 1024, sent  # the probe stopped reading; most was never sent
    size = {m.name: m.value for m in res.metrics}["http_content_length_bytes"]
    assert size == BIG + 3  # the header's figure, since the body was cut
