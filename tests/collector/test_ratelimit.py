"""Guessing agent tokens: after 20 failed checks in 60 s from one address the ingest endpoint
answers 429 with Retry-After and no longer looks tokens up; a token that already worked from
that address still does (agents behind one NAT). Unit tests of the limiter with a clock the
test moves, and the endpoint over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.app import AUTH_FAILURES_KEY, STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.ratelimit import FailureLimiter, address_key
from tests.services import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refused_after_the_limit_until_the_window_passes() -> None:
    clock = Clock()
    limiter = FailureLimiter(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.refusal("10.0.0.1", "guess") is None
        limiter.failed("10.0.0.1")
        clock.now += 1
    assert limiter.refusal("10.0.0.1", "guess") == pytest.approx(57)
    assert limiter.refusal("10.0.0.2", "guess") is None       # another address is not
    clock.now += 56.5
    assert limiter.refusal("10.0.0.1", "guess") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.refusal("10.0.0.1", "guess") is None       # the oldest failure left
    limiter.failed("10.0.0.1")                                 # one more: refused again
    assert limiter.refusal("10.0.0.1", "guess") == pytest.approx(1)


def test_a_token_that_worked_from_the_address_passes_a_refusal() -> None:
    limiter = FailureLimiter(limit=2, clock=Clock())
    limiter.succeeded("10.0.0.1", "good")
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.refusal("10.0.0.1", "good") is None
    assert limiter.refusal("10.0.0.1", "other") is not None
    limiter.succeeded("10.0.0.2", "elsewhere")   # known from another address only
    assert limiter.refusal("10.0.0.1", "elsewhere") is not None


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(limit=2, max_addresses=100, max_known=3, clock=clock)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    # the least recently seen went first: the newest are still counted
    limiter.failed("10.0.3.231")
    assert limiter.refusal("10.0.3.231", "x") is not None
    assert limiter.refusal("10.0.0.0", "x") is None
    for i in range(10):
        limiter.succeeded("10.9.9.9", f"token-{i}")
    limiter.failed("10.9.9.9")
    limiter.failed("10.9.9.9")
    assert limiter.refusal("10.9.9.9", "token-9") is None
    assert limiter.refusal("10.9.9.9", "token-0") is not None   # only the last 3 are kept


def test_ipv6_counts_by_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("not an address") == "not an address"
    limiter = FailureLimiter(limit=2, clock=Clock())
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2::2")
    assert limiter.refusal("2001:db8:1:2::3", "x") is not None
    assert limiter.refusal("2001:db8:1:3::1", "x") is None


class Collector:
    def __init__(self, url: str, app: web.Application, clock: Clock) -> None:
        self.url = url
        self.app = app
        self.clock = clock

    async def push(self, token: str, agent: str = "emr-app-01"
                   ) -> tuple[int, dict[str, Any], str | None]:
        async with aiohttp.ClientSession() as session, session.post(
                self.url + "/api/v1/results", json={"agent_id": agent, "results": []},
                headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After")

    async def rejected(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as session, session.get(
                self.url + "/metrics") as resp:
            text = await resp.text()
        out = {}
        for line in text.splitlines():
            if line.startswith("wardwatch_collector_batches_rejected_total{"):
                labels, value = line.rsplit(" ", 1)
                out[labels.split('reason="')[1].split('"')[0]] = float(value)
        return out


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[Collector]:
    app = create_app(parse_collector_config({"store": f"sqlite:///{tmp_path}/c.db"}))
    assert isinstance(app[AUTH_FAILURES_KEY], FailureLimiter)
    assert (app[AUTH_FAILURES_KEY].limit, app[AUTH_FAILURES_KEY].window_s) == (20, 60.0)
    clock = Clock()   # the app's limiter, with a clock the test moves
    app[AUTH_FAILURES_KEY] = FailureLimiter(clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Collector(f"http://127.0.0.1:{port}", app, clock)
    finally:
        await runner.cleanup()


async def test_wrong_tokens_get_401_then_429(collector: Collector) -> None:
    store = collector.app[STORE_KEY]
    known = await store.add_agent("emr-app-01", datetime.now(UTC))
    assert (await collector.push(known))[0] == 200     # this agent has pushed from here
    for i in range(20):
        status, body, _ = await collector.push(f"ww1_guess{i}")
        assert (status, body) == (401, {"error": "unknown or revoked token"}), i
    status, body, retry_after = await collector.push("ww1_guess20")
    assert status == 429
    assert "too many failed token checks" in body["error"]
    assert retry_after == "60"
    # the token is not looked up while refused: bad_token stays at 20
    collector.clock.now += 30
    for _ in range(5):
        status, _, retry_after = await collector.push("ww1_more")
        assert (status, retry_after) == (429, "30")
    assert await collector.rejected() == {"bad_token": 20.0, "rate_limited": 6.0}

    # an agent that already pushed from this address goes on (NAT: one bad box, many good)
    assert (await collector.push(known))[0] == 200
    # a new agent's valid token has not worked from here yet: refused until the window ends
    fresh = await store.add_agent("his-app-01", datetime.now(UTC))
    assert (await collector.push(fresh, "his-app-01"))[0] == 429
    collector.clock.now += 30
    assert (await collector.push(fresh, "his-app-01"))[0] == 200
    assert (await collector.push("ww1_after"))[0] == 401   # counted again from scratch


async def test_missing_tokens_are_not_counted(collector: Collector) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(30):
            async with session.post(collector.url + "/api/v1/results", json={}) as resp:
                assert resp.status == 401
    assert len(collector.app[AUTH_FAILURES_KEY]) == 0
