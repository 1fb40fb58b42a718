"""Year-to-date figures over a large store: the recomputation does not hold the event loop
(ingest, the API and the board share it), and its figures are exactly those of
`Systems.availability` over the same period."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig, parse_collector_config
from collector.schema import check_intervals
from collector.store import Store
from collector.systems import READ_PIECE, Systems

NOW = datetime(2026, 3, 20, 4, 0, tzinfo=UTC)
CHECKS = ("web", "tcp", "proc", "db", "host")


def config(hosts: int, rule: object) -> CollectorConfig:
    return parse_collector_config({"systems": [{
        "id": "EMR", "name": "EMR", "core": True,
        "members": [f"h{h:02d}/*" for h in range(hosts)], "rule": rule}]})


async def flapping_store(path: Path, hosts: int, days: int, seed: int = 5) -> Store:
    """`hosts` × 5 checks, each changing state every 1-4 hours for `days` days; the newest
    interval of each check open and fresh."""
    store = await Store.open(f"sqlite:///{path}")
    rng = random.Random(seed)
    rows = []
    for h in range(hosts):
        for check in CHECKS:
            t = NOW - timedelta(days=days)
            while True:
                end = t + timedelta(hours=rng.uniform(1, 4))
                last = end >= NOW - timedelta(minutes=1)
                status = "ok" if last else rng.choice(["ok", "ok", "warning", "critical"])
                rows.append({"agent_id": f"h{h:02d}", "check_id": check, "system": "",
                             "kind": "tcp", "status": status, "reason": status,
                             "summary": f"{check} {status}", "start": t,
                             "end": NOW if last else end,
                             "last_result_at": NOW - timedelta(seconds=20) if last else end,
                             "results": 10, "is_open": last})
                if last:
                    break
                t = end
    async with store.transaction() as conn:
        for i in range(0, len(rows), 5000):
            await conn.execute(sa.insert(check_intervals), rows[i:i + 5000])
    return store


@pytest.fixture
async def big(tmp_path: Path) -> AsyncIterator[tuple[Systems, Store]]:
    # ~20,000 intervals of 40 checks: before the computation ran in a worker thread, one
    # system's year to date held the event loop for several seconds in one piece
    cfg = config(8, {"at_least": 30})
    store = await flapping_store(tmp_path / "c.db", 8, 78)
    try:
        yield Systems(cfg, store, HolidayCalendar.load(cfg.calendar)), store
    finally:
        await store.close()


async def test_year_to_date_leaves_the_event_loop_responsive(
        big: tuple[Systems, Store]) -> None:
    systems, _store = big
    system = systems.config.systems[0]
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - before - 0.005)

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.05)
        ytd = await systems.year_to_date(system, NOW)
    finally:
        done.set()
        await ticking
    assert ytd.report.availability is not None
    assert worst < 1.0, f"the event loop was held for {worst:.2f} s"


async def test_year_to_date_is_availability_over_the_year_so_far(
        tmp_path: Path) -> None:
    cfg = config(4, "all")
    store = await flapping_store(tmp_path / "c.db", 4, 40, seed=9)
    try:
        systems = Systems(cfg, store, HolidayCalendar.load(cfg.calendar))
        system = cfg.systems[0]
        ytd = await systems.year_to_date(system, NOW)
        assert ytd.start == NOW - timedelta(days=40)   # monitoring began then, this year
        assert ytd.report == await systems.availability(system, ytd.start, NOW, NOW)
        assert ytd.report.windows   # a flapping system: the comparison has substance
        # a second round (cached rule answers) gives the same figures
        assert (await systems.year_to_date(system, NOW)).report == ytd.report
        # read in pieces: each interval once, in the order of one read
        members = await systems._members(system)
        assert NOW - ytd.start > 4 * READ_PIECE
        assert (await systems._intervals_in_pieces(ytd.start, NOW, members)
                == await store.intervals(ytd.start, NOW, members))
    finally:
        await store.close()
