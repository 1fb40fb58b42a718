"""An agent whose clock is stepped by an hour, either way: the collector puts its results on
its own clock (the push's X-Wardwatch-Sent-At against the receipt time), so the state follows
the evidence as it arrives — no interval in the future, no check frozen for an hour — and
the offset is visible. Real collector app on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.app import STORE_KEY, create_app
from collector.clock import TOLERANCE_S, corrected, offset_of
from collector.config import parse_collector_config
from collector.store import Store
from probes.result import SENT_AT_HEADER, CheckResult, Status
from tests.services import free_port

AGENT = "emr-app-01"


def result(at: datetime, status: str = "ok") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "agent_id": AGENT, "check_id": "db", "kind": "tcp",
            "system": "EMR", "status": status,
            "reason": "ok" if status == "ok" else "connect_refused",
            "started_at": at.isoformat(), "duration_s": 0.002, "interval_s": 30,
            "summary": status}


class Pusher:
    def __init__(self, url: str, store: Store, token: str) -> None:
        self.url, self.store, self.token = url, store, token

    async def push(self, results: list[dict[str, Any]], agent_now: datetime | None) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if agent_now is not None:
            headers[SENT_AT_HEADER] = agent_now.isoformat()
        async with aiohttp.ClientSession() as session, session.post(
                self.url + "/api/v1/results", json={"agent_id": AGENT, "results": results},
                headers=headers) as resp:
            assert resp.status == 200, await resp.text()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
                self.url + "/metrics") as resp:
            return await resp.text()


@pytest.fixture
async def pusher(store_url: str) -> AsyncIterator[Pusher]:
    app = create_app(parse_collector_config({"store": store_url}))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = app[STORE_KEY]
    token = await store.add_agent(AGENT, datetime.now(UTC))
    try:
        yield Pusher(f"http://127.0.0.1:{port}", store, token)
    finally:
        await runner.cleanup()


async def _intervals(store: Store) -> list[Any]:
    now = datetime.now(UTC)
    return await store.intervals(now - timedelta(days=1), now + timedelta(days=1))


async def test_clock_an_hour_ahead_opens_nothing_in_the_future(pusher: Pusher) -> None:
    ahead = timedelta(hours=1)
    now = datetime.now(UTC)
    await pusher.push([result(now - timedelta(seconds=60) + ahead),
                       result(now - timedelta(seconds=30) + ahead, "critical")], now + ahead)
    intervals = await _intervals(pusher.store)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert intervals and all(iv.start <= later for iv in intervals), intervals
    assert intervals[-1].status == "critical"
    assert abs((intervals[-1].start - (now - timedelta(seconds=30))).total_seconds()) < 5
    text = await pusher.metrics()
    line = next(ln for ln in text.splitlines()
                if ln.startswith("wardwatch_collector_agent_clock_offset_seconds{"))
    assert -3605 < float(line.split()[-1]) < -3595
    assert "wardwatch_collector_results_clock_corrected_total 2.0" in text


async def test_clock_stepped_back_an_hour_keeps_the_state_moving(pusher: Pusher) -> None:
    """Right clock first; then the host's clock goes back an hour and the service fails:
    the failure is the check's state at once (not ignored as 'older than the last result')."""
    now = datetime.now(UTC)
    await pusher.push([result(now - timedelta(seconds=90)),
                       result(now - timedelta(seconds=60))], now)
    behind = timedelta(hours=1)
    await pusher.push([result(now - timedelta(seconds=30) - behind, "critical"),
                       result(now - behind, "critical")], now - behind)
    intervals = await _intervals(pusher.store)
    assert [iv.status for iv in intervals] == ["ok", "critical"], intervals
    assert intervals[-1].is_open
    # the raw results keep the correction, so the agent's own time can be recovered
    text = await pusher.metrics()
    assert "wardwatch_collector_results_clock_corrected_total 2.0" in text


async def test_a_push_without_the_header_is_stored_as_sent(pusher: Pusher) -> None:
    now = datetime.now(UTC)
    await pusher.push([result(now - timedelta(seconds=30))], None)
    [interval] = await _intervals(pusher.store)
    assert abs((interval.start - (now - timedelta(seconds=30))).total_seconds()) < 0.01


def test_offsets_within_the_tolerance_change_nothing() -> None:
    now = datetime.now(UTC)
    one = CheckResult(agent_id=AGENT, check_id="db", kind="tcp", status=Status.OK,
                      reason="ok", started_at=now, duration_s=0.1)
    for sent in (now, now - timedelta(seconds=TOLERANCE_S - 1),
                 now + timedelta(seconds=TOLERANCE_S - 1)):
        offset = offset_of(sent.isoformat(), now)
        assert offset is not None
        assert corrected([one], offset) == ([one], False)
    moved, changed = corrected([one], offset_of((now - timedelta(hours=1)).isoformat(), now))
    assert changed and moved[0].started_at == now + timedelta(hours=1)
    assert moved[0].labels["clock_offset_s"] == "3600.0"
    for junk in ("", "yesterday", "2026-12-07T10:00:00", "9" * 100):
        assert offset_of(junk, now) is None
