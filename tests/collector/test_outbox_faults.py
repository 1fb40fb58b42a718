"""A notification channel down for an hour (issue 10, fault injection): the incident is not
held up by it; every failed delivery is recorded on the row and in the incident's timeline; the
message is tried again with growing waits and arrives once the channel is back; a refusal that
cannot pass (a 4xx) is not retried.

A real webhook receiver on loopback answers 503 while "down"; the hour is simulated by
calling `Outbox.dispatch(now)` with times an hour apart, the way the collector's dispatch loop
calls it with the current time (collector/app.py `_dispatch_forever`)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from alerts.engine import Finding, Wanted
from collector.calendar import HolidayCalendar
from collector.config import parse_collector_config
from collector.incidents import IncidentService
from collector.outbox import REDELIVER_FOR, REDELIVER_MAX_WAIT, Outbox
from collector.schema import notifications
from collector.store import Store
from collector.systems import Systems
from tests.services import free_port


@dataclass
class Receiver:
    port: int
    status: int = 503
    posts: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    seen = Receiver(port=free_port())

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if seen.status != 200:
            seen.refused += 1
            return web.json_response({"error": "maintenance"}, status=seen.status)
        seen.posts.append(body)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", seen.port).start()
    try:
        yield seen
    finally:
        await runner.cleanup()


@dataclass
class World:
    store: Store
    incidents: IncidentService
    outbox: Outbox


@pytest.fixture
async def world(tmp_path: Path, receiver: Receiver) -> AsyncIterator[World]:
    config = parse_collector_config({
        "store": f"sqlite:///{tmp_path}/c.db",
        "systems": [{"id": "EMR", "name": "电子病历", "core": True, "members": ["a1/*"]}],
        "channels": [{"name": "itsm", "type": "webhook", "events": ["opened"],
                      "url": f"http://127.0.0.1:{receiver.port}/hook", "retries": 0}]})
    store = await Store.open(config.store)
    calendar = HolidayCalendar.load(config.calendar)
    service = IncidentService(config, store, Systems(config, store, calendar), calendar)
    outbox = Outbox(config, store, service)
    service.on_change = outbox.on_change
    try:
        yield World(store, service, outbox)
    finally:
        await store.close()


def fault(at: datetime) -> Wanted:
    found = Finding(key="alert:db", condition="check_critical", level=1, since=at,
                    confirmed=True, text="oracle down")
    return Wanted(key="ext:db", system_id="EMR", level=1, opened_at=at, level_since=at,
                  title="EMR down", cause="oracle down", findings=(found,))


async def rows(store: Store) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(
            sa.select(notifications).where(notifications.c.event == "opened"))).mappings()]


async def test_channel_down_for_an_hour(world: World, receiver: Receiver) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    [change] = await world.incidents.raise_external(fault(t0), "test", t0, {})
    incident = change.incident
    assert incident.state == "open"            # opened whatever the channel does
    now, tries = t0, []
    for _ in range(200):                       # an hour of the dispatch loop, down
        if now >= t0 + timedelta(hours=1):
            break
        await world.outbox.dispatch(now)
        due = await world.outbox.next_due()
        assert due is not None, "a failed delivery must be due again"
        tries.append(now)
        now = max(due, now + timedelta(seconds=1))
    [row] = await rows(world.store)
    assert row["state"] == "pending" and "HTTP 503" in row["last_error"]
    assert receiver.posts == [] and receiver.refused == len(tries)
    # growing waits, never over the cap; a handful of tries in the hour, not thousands
    waits = [b - a for a, b in itertools.pairwise(tries)]
    assert waits == sorted(waits) and max(waits) <= REDELIVER_MAX_WAIT
    assert 5 <= len(tries) <= 30, len(tries)
    # the incident is as it was: open, level 1, its clocks untouched
    again = await world.incidents.get(incident.id)
    assert (again.state, again.level, again.opened_at) == ("open", 1, incident.opened_at)
    failed = [e for e in await world.incidents.timeline(incident.id)
              if e["kind"] == "notify_failed"]
    assert len(failed) == len(tries)
    # the channel is back: the next due try delivers, once
    receiver.status = 200
    await world.outbox.dispatch(now)
    [row] = await rows(world.store)
    assert row["state"] == "sent" and len(receiver.posts) == 1
    assert await world.outbox.next_due() is None
    await world.outbox.dispatch(now + REDELIVER_MAX_WAIT)
    assert len(receiver.posts) == 1


async def test_refusals_that_will_not_pass_and_old_messages_are_not_retried(
        world: World, receiver: Receiver) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    receiver.status = 400                      # e.g. a changed endpoint: a person must look
    await world.incidents.raise_external(fault(t0), "test", t0, {})
    await world.outbox.dispatch(t0)
    [row] = await rows(world.store)
    assert row["state"] == "failed" and receiver.refused == 1
    assert await world.outbox.next_due() is None
    # a passing fault, but the message is older than REDELIVER_FOR: the last try
    async with world.store.transaction() as conn:
        await conn.execute(notifications.update().values(
            state="pending", due_at=t0, created_at=t0 - REDELIVER_FOR))
    receiver.status = 503
    await world.outbox.dispatch(t0)
    [row] = await rows(world.store)
    assert row["state"] == "failed" and await world.outbox.next_due() is None
