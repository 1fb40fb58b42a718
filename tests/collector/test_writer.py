"""SQLite's ingest writer (collector/writer.py): the same rows as SQLAlchemy would write,
batches grouped into one commit, a failing batch rolled back alone, replays stored once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from collector.schema import check_intervals, results
from collector.store import Store
from collector.writer import _DATETIME_IN, encode_datetime
from probes.result import CheckResult, Metric, Status

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def res(check: str, status: str, seconds: float, *, agent: str = "a1",
        details: dict[str, object] | None = None) -> CheckResult:
    return CheckResult(
        agent_id=agent, check_id=check, kind="http", system="EMR", target="https://emr/health",
        status=Status(status), reason="ok" if status == "ok" else "http_status",
        started_at=T0 + timedelta(seconds=seconds), duration_s=0.012, interval_s=30,
        summary=f"{check} {status} 电子病历", details=details or {},
        metrics=(Metric(name="probe_duration_seconds", value=0.012),
                 Metric(name="http_status_code", value=200, labels={"path": "/health"})),
        labels={"room": "机房A"} if check == "web" else {})


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, None])))
def test_encode_datetime_is_what_sqlalchemy_stores(value: datetime) -> None:
    if value.tzinfo is None:
        with pytest.raises(ValueError, match="naive"):
            encode_datetime(value)
        return
    assert encode_datetime(value) == _DATETIME_IN(value)


async def _table(store: Store, table: sa.Table) -> list[dict[str, object]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(table))).mappings().all()
    out = [{k: v for k, v in row.items() if k not in ("id", "received_at")} for row in rows]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


async def test_rows_read_back_the_same_as_through_sqlalchemy(tmp_path: Path) -> None:
    """The writer and the SQLAlchemy path (the one PostgreSQL uses) store the same values."""
    batches = [
        [res("web", "ok", t) for t in (0, 30, 60)] + [res("db", "ok", 0)],
        [res("web", "critical", 90, details={"status": 503, "body": "维护中"}),
         res("db", "ok", 30), res("db", "ok", 400)],   # a gap: db's interval closes
        [res("web", "ok", 120)],
    ]
    stores = []
    for name, fast in (("writer", True), ("core", False)):
        store = await Store.open(f"sqlite:///{tmp_path / name}.db")
        if not fast:
            assert store._writer is not None
            await store._writer.close()
            store._writer = None   # the SQLAlchemy path
        await store.add_agent("a1", T0)
        outcomes = [await store.ingest("a1", batch, T0 + timedelta(minutes=10))
                    for batch in batches]
        stores.append((store, outcomes))
    (fast, fast_out), (core, core_out) = stores
    try:
        assert fast._writer is not None and fast._writer.batches == 3
        assert fast_out == core_out
        assert fast_out[1].attention == {("a1", "web"), ("a1", "db")}  # failing; new interval
        assert await _table(fast, results) == await _table(core, results)
        assert await _table(fast, check_intervals) == await _table(core, check_intervals)
        assert len(await _table(fast, check_intervals)) == 5   # web ok, crit, ok; db ×2
        async with fast.engine.connect() as conn:
            raw = (await conn.execute(sa.text(
                "SELECT metrics, labels FROM results WHERE check_id = 'web' LIMIT 1"))).one()
        assert raw.labels == '{"room":"机房A"}'   # compact UTF-8, not \\u escapes
        assert raw.metrics.startswith('[{"name":"probe_duration_seconds","value":0.012')
    finally:
        await fast.close()
        await core.close()


async def test_waiting_batches_share_one_commit_and_a_failing_one_fails_alone(
        tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        writer = store._writer
        assert writer is not None
        for agent in ("a1", "a2", "a3"):
            await store.add_agent(agent, T0)
        async with store.engine.begin() as conn:   # a real SQLite error for one check id
            await conn.execute(sa.text(
                "CREATE TRIGGER poison BEFORE INSERT ON results WHEN NEW.check_id = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"))
        good = [res("web", "ok", t, agent="a1") for t in (0, 30)]
        bad = [res("web", "ok", 0, agent="a2"), res("poison", "ok", 0, agent="a2")]
        replay = list(good)   # the same results again, as a retrying agent would send
        groups_before = writer.groups
        async with store._write_lock:   # hold the writer back so all three wait together
            tasks = [asyncio.ensure_future(store.ingest(agent, batch, T0))
                     for agent, batch in (("a1", good), ("a2", bad), ("a1", replay))]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        first, failed, again = await asyncio.gather(*tasks, return_exceptions=True)
        assert writer.groups == groups_before + 1
        assert not isinstance(first, BaseException) and first.accepted == 2
        assert isinstance(failed, Exception) and "poisoned row" in str(failed)
        assert not isinstance(again, BaseException)
        assert (again.accepted, again.duplicates) == (0, 2)
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.text(
                "SELECT agent_id, count(*) FROM results GROUP BY agent_id"))).all()
            intervals = (await conn.execute(sa.text(
                "SELECT agent_id, results FROM check_intervals"))).all()
        assert [tuple(r) for r in stored] == [("a1", 2)]    # a2's batch left nothing
        assert [tuple(r) for r in intervals] == [("a1", 2)]
        # the failed batch can be sent again once its cause is gone
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DROP TRIGGER poison"))
        retry = await store.ingest("a2", bad, T0)
        assert (retry.accepted, retry.duplicates) == (2, 0)
    finally:
        await store.close()


async def test_a_duplicate_inside_one_batch_is_stored_once(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        await store.add_agent("a1", T0)
        one = res("web", "ok", 0)
        outcome = await store.ingest("a1", [one, one, res("web", "ok", 30)], T0)
        assert (outcome.accepted, outcome.duplicates) == (2, 1)
        assert await store.count_results() == 2
    finally:
        await store.close()


async def test_intervals_read_as_text_equal_the_typed_read(tmp_path: Path) -> None:
    """Store.intervals parses SQLite's ISO text itself; the values equal SQLAlchemy's typed
    read of the same rows (whole seconds, microseconds, open and closed intervals)."""
    from collector.store import _INTERVAL_COLUMNS, CheckInterval

    store = await Store.open(f"sqlite:///{tmp_path / 'i.db'}")
    try:
        await store.add_agent("a1", T0)
        await store.ingest("a1", [res("web", s, t) for s, t in
                                  (("ok", 0), ("ok", 30.5), ("critical", 61.000001),
                                   ("ok", 90), ("ok", 500))]
                           + [res("db", "ok", 0.25)], T0)
        got = await store.intervals(T0 - timedelta(days=1), T0 + timedelta(days=1))
        async with store.engine.connect() as conn:
            typed = [CheckInterval(*row) for row in (await conn.execute(
                sa.select(*_INTERVAL_COLUMNS).order_by(check_intervals.c.start))).all()]
        assert got == typed and len(got) == 5
        assert all(iv.start.tzinfo is UTC for iv in got)
        assert {iv.is_open for iv in got} == {True, False}
    finally:
        await store.close()
