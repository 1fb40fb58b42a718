"""Pusher against a real collector stand-in on loopback: what the server received is the truth.

The stand-in checks the bearer token, records every request, stores result ids on 2xx, and can
be told to answer 503/429/413/400, to refuse given results, or to hang. Intervals and backoff
are shortened (50 ms, 10–50 ms); the tests wait for what the server saw, not for time.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from agent.app import Agent
from agent.config import CollectorSection, parse_agent_config
from agent.push import Pusher
from agent.spool import Spool
from probes.result import SENT_AT_HEADER, CheckResult, Status
from tests.services import free_port

AGENT = "emr-app-01"
TOKEN = "tok-RIGHT-4f1c9a"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
MiB = 1024 * 1024


def result(n: int, t0: datetime = T0) -> CheckResult:
    return CheckResult(agent_id=AGENT, check_id="db", kind="tcp", system="EMR",
                       status=Status.OK, reason="ok", started_at=t0 + timedelta(seconds=n),
                       duration_s=0.002, summary=f"r{n}")


@dataclass
class Request:
    agent_id: str
    ids: list[str]
    authorization: str
    status: int = 0


@dataclass
class FakeCollector:
    """Plays `POST /api/v1/results` (DESIGN.md): 2xx only once the batch is "stored"."""

    token: str = TOKEN
    requests: list[Request] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    """Statuses to answer next, one per request, before behaving normally."""
    refuse: set[str] = field(default_factory=set)
    """Result ids answered with 400 (as the real collector does for an invalid result)."""
    refuse_all: bool = False
    max_results: int | None = None
    """Above this many results a batch gets 413."""
    hang: int = 0
    """The next `hang` requests get no answer until the test ends."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        seen = Request(body["agent_id"], [r["id"] for r in body["results"]],
                       request.headers.get("Authorization", ""))
        # every push says when the agent sent it, by its own clock (collector/clock.py)
        sent = datetime.fromisoformat(request.headers[SENT_AT_HEADER])
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 5
        self.requests.append(seen)
        self.changed.set()
        seen.status, reply = await self._answer(seen)
        self.changed.set()
        headers = {"Retry-After": "0"} if seen.status == 429 else None
        return web.json_response(reply, status=seen.status, headers=headers)

    async def _answer(self, seen: Request) -> tuple[int, dict[str, Any]]:
        if seen.authorization != f"Bearer {self.token}":
            return 401, {"error": "unknown or revoked token"}
        if self.hang:
            self.hang -= 1
            await self.release.wait()
            return 503, {"error": "too late"}
        if self.script:
            status = self.script.pop(0)
            return status, {"error": f"scripted {status}"}
        if self.max_results is not None and len(seen.ids) > self.max_results:
            return 413, {"error": "body over the limit: send smaller batches"}
        bad = [i for i, rid in enumerate(seen.ids) if self.refuse_all or rid in self.refuse]
        if bad:
            return 400, {"error": f"invalid batch: results.{bad[0]}.status: Input should be "
                                  "'ok', 'warning', 'critical' or 'unknown'"}
        self.stored.extend(seen.ids)
        return 200, {"accepted": len(seen.ids), "duplicates": 0}

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def serve(collector: FakeCollector, port: int = 0,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post("/api/v1/results", collector.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def collector() -> AsyncIterator[tuple[FakeCollector, str]]:
    fake = FakeCollector()
    runner, port = await serve(fake)
    yield fake, f"http://127.0.0.1:{port}"
    fake.release.set()
    await runner.cleanup()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "agent.token"
    path.write_text(TOKEN + "\n")
    return path


@dataclass
class Harness:
    tmp_path: Path
    token_file: Path
    made: list[tuple[Pusher, Spool]] = field(default_factory=list)

    def spool(self, max_bytes: int = MiB, **kw: Any) -> Spool:
        return Spool(self.tmp_path / "spool", max_bytes, **kw)

    def pusher(self, url: str, spool: Spool | None = None, *, batch_size: int = 100,
               push_interval: float = 0.05, ca_file: Path | None = None,
               **kw: Any) -> Pusher:
        spool = spool or self.spool()
        config = CollectorSection(url=url, token_file=self.token_file, batch_size=batch_size,
                                  push_interval=push_interval, ca_file=ca_file)
        kw = {"backoff": (0.01, 0.05), "request_timeout": 2.0, "stop_deadline": 2.0, **kw}
        pusher = Pusher(config, AGENT, spool, **kw)
        self.made.append((pusher, spool))
        return pusher


@pytest.fixture
async def harness(tmp_path: Path, token_file: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, token_file)
    yield h
    for pusher, spool in h.made:
        await pusher.stop()
        spool.close()


async def poll(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for state only the pusher sees (a refused connection, its bookkeeping after a
    reply): no peer can signal it, so it is checked every 10 ms until true."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (nothing to await: see the docstring)
            await asyncio.sleep(0.01)


def add(pusher: Pusher, numbers: range, t0: datetime = T0) -> list[str]:
    results = [result(n, t0) for n in numbers]
    for r in results:
        pusher.add(r)
    return [str(r.id) for r in results]


async def test_results_arrive_in_order_once_with_the_bearer_token(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    pusher = harness.pusher(url, batch_size=8)
    await pusher.start()
    ids = add(pusher, range(0, 13))
    await fake.until(lambda: len(fake.stored) >= 13)
    ids += add(pusher, range(13, 30))
    await fake.until(lambda: len(fake.stored) >= 30)
    await poll(lambda: pusher.snapshot().spool_pending_results == 0)  # the 2xx was read
    assert fake.stored == ids
    assert all(r.authorization == f"Bearer {TOKEN}" and r.agent_id == AGENT
               for r in fake.requests)
    assert max(len(r.ids) for r in fake.requests) <= 8
    snap = pusher.snapshot()
    assert snap.results_pushed_total == 30
    assert snap.spool_pending_results == 0 and snap.spool_pending_bytes == 0
    assert snap.last_success_at is not None
    assert sum(snap.failures_total.values()) == 0


async def test_an_idle_agent_sends_empty_heartbeats(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    pusher = harness.pusher(url)
    before = time.time()
    await pusher.start()
    await fake.until(lambda: len(fake.requests) >= 3)
    assert all(r.ids == [] and r.status == 200 for r in fake.requests)
    snap = pusher.snapshot()
    assert snap.results_pushed_total == 0
    assert snap.last_success_at is not None and snap.last_success_at >= before


async def test_5xx_and_429_are_retried_with_nothing_acknowledged_then_delivered(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    fake.script = [503, 429, 500]
    pusher = harness.pusher(url)
    ids = add(pusher, range(10))
    await pusher.start()
    await fake.until(lambda: len(fake.stored) >= 10)
    assert fake.stored == ids
    failures = pusher.snapshot().failures_total
    assert (failures["server_error"], failures["throttled"]) == (2, 1)
    refused = [r for r in fake.requests if r.status != 200]
    assert len(refused) == 3
    # each retry carried the same oldest results again: nothing was acknowledged on a refusal
    assert all(r.ids == ids[:len(r.ids)] for r in refused)


async def test_collector_down_then_up_delivers_everything_in_order_once(
        harness: Harness) -> None:
    port = free_port()
    pusher = harness.pusher(f"http://127.0.0.1:{port}", batch_size=16)
    await pusher.start()
    ids = add(pusher, range(25))
    await poll(lambda: pusher.snapshot().failures_total["connection"] >= 3)
    ids += add(pusher, range(25, 50))
    await poll(lambda: pusher.snapshot().spool_pending_results == 50)
    fake = FakeCollector()
    runner, _ = await serve(fake, port)
    try:
        await fake.until(lambda: len(fake.stored) >= 50)
        await poll(lambda: pusher.snapshot().spool_pending_results == 0)
        assert fake.stored == ids
        assert len(set(fake.stored)) == len(fake.stored) == 50
    finally:
        await runner.cleanup()


async def test_a_refused_token_keeps_results_until_the_token_file_is_fixed(
        collector: tuple[FakeCollector, str], harness: Harness,
        caplog: pytest.LogCaptureFixture) -> None:
    fake, url = collector
    harness.token_file.write_text("tok-WRONG-77e0b2")
    pusher = harness.pusher(url)
    ids = add(pusher, range(5))
    await pusher.start()
    await poll(lambda: pusher.snapshot().failures_total["unauthorized"] >= 2)
    assert fake.stored == []
    assert pusher.snapshot().spool_pending_results == 5
    assert "unknown or revoked token" in caplog.text
    harness.token_file.write_text(TOKEN)
    await fake.until(lambda: len(fake.stored) >= 5)
    assert fake.stored == ids
    assert "tok-WRONG" not in caplog.text and TOKEN not in caplog.text


async def test_413_halves_the_batch_and_everything_arrives(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    fake.max_results = 3
    pusher = harness.pusher(url, batch_size=16)
    ids = add(pusher, range(20))
    await pusher.start()
    await fake.until(lambda: len(fake.stored) >= 20)
    assert fake.stored == ids
    assert all(len(r.ids) <= 3 for r in fake.requests if r.status == 200)
    snap = pusher.snapshot()
    assert snap.failures_total["too_large"] >= 1
    assert snap.dropped_total["too_large"] == 0


async def test_an_invalid_result_is_isolated_dropped_and_counted(
        collector: tuple[FakeCollector, str], harness: Harness,
        caplog: pytest.LogCaptureFixture) -> None:
    fake, url = collector
    pusher = harness.pusher(url, batch_size=16)
    ids = add(pusher, range(40))
    fake.refuse = {ids[17], ids[31]}
    await pusher.start()
    await fake.until(lambda: len(fake.stored) >= 38)
    await poll(lambda: pusher.snapshot().spool_pending_results == 0)
    assert fake.stored == [i for i in ids if i not in fake.refuse]
    for poison in fake.refuse:  # dropped only after it was refused on its own
        assert any(r.ids == [poison] and r.status == 400 for r in fake.requests)
        assert poison in caplog.text
    snap = pusher.snapshot()
    assert snap.dropped_total["invalid"] == 2


async def test_a_collector_refusing_everything_does_not_empty_the_spool(
        collector: tuple[FakeCollector, str], harness: Harness,
        caplog: pytest.LogCaptureFixture) -> None:
    fake, url = collector
    fake.refuse_all = True
    pusher = harness.pusher(url, batch_size=4, poison_limit=3)
    ids = add(pusher, range(10))
    await pusher.start()
    await fake.until(lambda: "holding the spool" in caplog.text)
    seen = len(fake.requests)
    await fake.until(lambda: len(fake.requests) >= seen + 3)  # keeps trying, drops no more
    assert pusher.snapshot().dropped_total["invalid"] == 3
    assert pusher.snapshot().spool_pending_results == 7
    fake.refuse_all = False  # the collector is fixed
    await fake.until(lambda: len(fake.stored) >= 7)
    assert fake.stored == ids[3:]


async def test_a_hanging_collector_times_out_and_is_retried(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    fake.hang = 1
    pusher = harness.pusher(url, request_timeout=0.3)
    ids = add(pusher, range(5))
    await pusher.start()
    await fake.until(lambda: len(fake.stored) >= 5)
    assert fake.stored == ids
    assert pusher.snapshot().failures_total["timeout"] == 1


async def test_a_full_batch_goes_out_before_the_push_interval(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    pusher = harness.pusher(url, batch_size=5, push_interval=60)
    await pusher.start()
    await fake.until(lambda: len(fake.requests) >= 1)  # the first heartbeat
    ids = add(pusher, range(5))
    await fake.until(lambda: len(fake.stored) >= 5, within=3)
    assert fake.stored == ids


async def test_stop_flushes_what_arrived_since_the_last_push(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    pusher = harness.pusher(url, push_interval=60)
    await pusher.start()
    await fake.until(lambda: len(fake.requests) >= 1)
    ids = add(pusher, range(5))
    await pusher.stop()
    assert fake.stored == ids


async def test_stop_within_the_deadline_leaves_unsent_results_in_the_spool(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    fake.hang = 100
    spool = harness.spool()
    pusher = harness.pusher(url, spool, push_interval=60, request_timeout=30,
                            stop_deadline=0.3)
    await pusher.start()
    ids = add(pusher, range(5))
    await fake.until(lambda: len(fake.requests) >= 1)
    started = time.monotonic()
    await pusher.stop()
    assert time.monotonic() - started < 1.5
    spool.close()
    with harness.spool() as reopened:
        assert [str(r.id) for r in reopened.peek(100).results()] == ids


async def test_a_restarted_agent_replays_the_spool_in_order(
        harness: Harness, collector: tuple[FakeCollector, str]) -> None:
    fake, url = collector
    down = harness.pusher(f"http://127.0.0.1:{free_port()}")
    spool = harness.made[-1][1]
    await down.start()
    ids = add(down, range(12))
    await down.stop()
    spool.close()
    pusher = harness.pusher(url)
    await pusher.start()
    ids += add(pusher, range(12, 15))
    await fake.until(lambda: len(fake.stored) >= 15)
    assert fake.stored == ids


async def test_a_torn_last_line_is_skipped_and_the_rest_delivered(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    with harness.spool() as spool:
        results = [result(n) for n in range(10)]
        for r in results:
            spool.append([r])
    segment = sorted((harness.tmp_path / "spool").glob("seg-*.jsonl"))[-1]
    os.truncate(segment, segment.stat().st_size - 20)
    pusher = harness.pusher(url)
    await pusher.start()
    await fake.until(lambda: len(fake.stored) >= 9)
    assert fake.stored == [str(r.id) for r in results[:9]]
    assert pusher.snapshot().dropped_total["corrupt"] == 1


async def test_tls_verifies_the_collector_with_ca_file(
        harness: Harness, tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="wardwatch test CA")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    fake = FakeCollector()
    runner, port = await serve(fake, ssl_context=server_ctx)
    try:
        untrusting = harness.pusher(f"https://127.0.0.1:{port}",
                                    Spool(tmp_path / "other-spool", MiB))
        await untrusting.start()
        untrusting.add(result(0))
        await poll(lambda: untrusting.snapshot().failures_total["tls"] >= 1)
        assert fake.requests == []
        pusher = harness.pusher(f"https://127.0.0.1:{port}", ca_file=ca_file)
        ids = add(pusher, range(3))
        await pusher.start()
        await fake.until(lambda: len(fake.stored) >= 3)
        assert fake.stored == ids
    finally:
        await runner.cleanup()


async def test_the_agent_listener_spools_and_pushes_real_results(
        collector: tuple[FakeCollector, str], harness: Harness) -> None:
    fake, url = collector
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = parse_agent_config({
        "agent": {"id": AGENT, "state_dir": str(harness.tmp_path)},
        "checks": [{"id": "db", "kind": "tcp", "system": "EMR", "host": "127.0.0.1",
                    "port": port, "interval": "0.2s", "timeout": "0.1s"}],
    })
    agent = Agent(config)
    pusher = harness.pusher(url)
    agent.add_result_listener(pusher.add)
    await pusher.start()
    await agent.start()
    try:
        await fake.until(lambda: len(fake.stored) >= 3)
    finally:
        await agent.stop()
        server.close()
    await pusher.stop()
    assert len(set(fake.stored)) == len(fake.stored) >= 3


async def test_the_real_collector_stores_everything_once_across_its_restart(
        harness: Harness, tmp_path: Path) -> None:
    """The real ingest API on SQLite: its body limit forces halving, it goes away and
    comes back on the same port and file, and the store holds every result exactly once."""
    from collector.app import STORE_KEY, create_app
    from collector.config import parse_collector_config

    config = parse_collector_config({"store": f"sqlite:///{tmp_path}/collector.db",
                                     "max_body_bytes": 16 * 1024})
    port = free_port()

    async def start_collector() -> web.AppRunner:
        runner = web.AppRunner(create_app(config))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = await start_collector()
    harness.token_file.write_text(await runner.app[STORE_KEY].add_agent(AGENT, T0))
    pusher = harness.pusher(f"http://127.0.0.1:{port}", batch_size=100)
    await pusher.start()
    recent = datetime.now(UTC) - timedelta(hours=1)  # inside the collector's retention
    add(pusher, range(150), recent)
    await poll(lambda: pusher.snapshot().results_pushed_total == 150)
    await runner.cleanup()  # the collector goes away
    add(pusher, range(150, 300), recent)
    await poll(lambda: pusher.snapshot().failures_total["connection"] >= 2)
    runner = await start_collector()
    try:
        await poll(lambda: pusher.snapshot().results_pushed_total == 300)
        assert await runner.app[STORE_KEY].count_results() == 300
        snap = pusher.snapshot()
        assert snap.failures_total["too_large"] >= 1
        assert snap.spool_pending_results == 0
        assert sum(snap.dropped_total.values()) == 0
    finally:
        await runner.cleanup()
