"""Store on SQLite and PostgreSQL: tokens, idempotent ingest, state intervals, maintenance audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from collector.schema import metadata
from collector.store import Store, StoreError, hash_token
from probes.result import CheckResult, Status

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def res(check: str, status: str, at: datetime, *, agent: str = "emr-app-01",
        interval: float = 30, system: str = "EMR") -> CheckResult:
    return CheckResult(agent_id=agent, check_id=check, kind="tcp", system=system,
                       status=Status(status), reason="ok" if status == "ok" else "down",
                       started_at=at, duration_s=0.01, interval_s=interval,
                       summary=f"{check} {status}")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_migrations_match_the_schema(store: Store) -> None:
    def diff(conn: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_tokens_are_hashed_bound_and_revocable(store: Store) -> None:
    token = await store.add_agent("emr-app-01", T0)
    assert token.startswith("ww1_") and len(token) > 40
    assert await store.authenticate(token) == "emr-app-01"
    assert await store.authenticate(token + "x") is None
    async with store.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT token_hash FROM agents"))).scalar_one()
    assert stored == hash_token(token) and token not in stored
    with pytest.raises(StoreError, match="already enrolled"):
        await store.add_agent("emr-app-01", T0)
    await store.revoke_agent("emr-app-01", T0)
    assert await store.authenticate(token) is None
    with pytest.raises(StoreError, match="no enrolled agent"):
        await store.revoke_agent("emr-app-01", T0)
    again = await store.add_agent("emr-app-01", T0)  # re-enrol after revoking
    assert await store.authenticate(again) == "emr-app-01" and again != token


async def test_ingest_is_idempotent_by_result_id(store: Store) -> None:
    await store.add_agent("emr-app-01", T0)
    batch = [res("db", "ok", at(i * 30)) for i in range(10)]
    first = await store.ingest("emr-app-01", batch, at(400))
    assert (first.accepted, first.duplicates) == (10, 0)
    replay = await store.ingest("emr-app-01", [*batch[5:], res("db", "ok", at(300))], at(401))
    assert (replay.accepted, replay.duplicates) == (1, 5)
    dup_in_batch = res("db", "ok", at(330))
    twice = await store.ingest("emr-app-01", [dup_in_batch, dup_in_batch], at(402))
    assert (twice.accepted, twice.duplicates) == (1, 1)
    assert await store.count_results() == 12
    [interval] = await store.intervals(T0, at(1000))
    assert (interval.start, interval.end, interval.results) == (T0, at(360), 12)


async def test_intervals_split_on_status_change_and_on_silence(store: Store) -> None:
    await store.add_agent("a", T0)
    timeline = [("ok", 0), ("ok", 30), ("critical", 60), ("critical", 90), ("ok", 120),
                # silent from 150 until 600 (> 2 intervals): the gap is unknown
                ("ok", 600), ("ok", 630)]
    # delivered in two batches, split inside a run of equal status
    results = [res("db", s, at(t), agent="a") for s, t in timeline]
    await store.ingest("a", results[:3], at(61))
    await store.ingest("a", results[3:], at(700))
    got = [(i.status, i.start, i.end, i.is_open) for i in await store.intervals(T0, at(1000))]
    assert got == [
        ("ok", at(0), at(60), False),
        ("critical", at(60), at(120), False),
        ("ok", at(120), at(150), False),
        ("ok", at(600), at(660), True),
    ]


async def test_one_missed_run_does_not_open_a_hole(store: Store) -> None:
    await store.add_agent("a", T0)
    await store.ingest("a", [res("db", "ok", at(t), agent="a") for t in (0, 30, 90, 120)], T0)
    [interval] = await store.intervals(T0, at(1000))
    assert (interval.start, interval.end) == (at(0), at(150))


async def test_maintenance_changes_are_audited(store: Store) -> None:
    window = await store.add_maintenance(
        system="EMR", start=at(0), end=at(3600), kind="force_majeure",
        reason="市电中断 power cut", approved_by="信息科 张主任", by="vendor-li", now=at(7200))
    assert window.id > 0
    [listed] = await store.maintenance_windows(system="EMR", start=T0, end=at(10_000))
    assert listed == window
    await store.cancel_maintenance(window.id, by="hospital-wang", now=at(8000))
    assert await store.maintenance_windows(system="EMR") == []
    history = await store.maintenance_history(window.id)
    assert [(h["action"], h["by"]) for h in history] == [
        ("created", "vendor-li"), ("cancelled", "hospital-wang")]
    assert history[0]["record"]["reason"] == "市电中断 power cut"
    with pytest.raises(StoreError, match="end must be after start"):
        await store.add_maintenance(system="EMR", start=at(10), end=at(10), kind="planned",
                                    reason="x", approved_by="y", by="z", now=T0)


async def test_reopening_store_keeps_everything(store_url: str) -> None:
    first = await Store.open(store_url)
    await first.add_agent("a", T0)
    await first.ingest("a", [res("db", "ok", at(0), agent="a")], T0)
    await first.close()
    second = await Store.open(store_url)  # migrations are a no-op the second time
    try:
        assert await second.count_results() == 1
        assert len(await second.intervals(T0, at(100))) == 1
    finally:
        await second.close()


def test_result_ids_are_uuids() -> None:
    assert isinstance(res("x", "ok", T0).id, uuid.UUID)


async def test_retention_rolls_up_hours_then_deletes(store: Store) -> None:
    await store.add_agent("a", T0)
    # two hours of 30 s results: hour 0 all ok, hour 1 with 4 critical; then 10 min of hour 2
    timeline = [res("db", "critical" if 3600 + 600 <= t < 3600 + 720 else "ok", at(t), agent="a")
                for t in range(0, 2 * 3600 + 600, 30)]
    await store.ingest("a", timeline, at(8000))
    intervals_before = await store.intervals(T0, at(10_000))
    # cutoff inside hour 2: hours 0 and 1 are rolled up, hour 2 stays raw
    deleted = await store.expire_results(at(2 * 3600 + 300))
    assert deleted == 240
    assert await store.count_results() == 20
    hours = await store.rollups("a", "db")
    assert [(h["hour"], h["results"], h["ok"], h["critical"]) for h in hours] == [
        (at(0), 120, 120, 0), (at(3600), 120, 116, 4)]
    assert hours[0]["duration_avg_s"] == pytest.approx(0.01)
    assert await store.intervals(T0, at(10_000)) == intervals_before  # evidence stays
    # a late result for an hour already rolled up is merged, not lost
    await store.ingest("a", [res("db", "warning", at(100), agent="a")], at(9000))
    await store.expire_results(at(2 * 3600 + 300))
    first = (await store.rollups("a", "db"))[0]
    assert (first["results"], first["warning"]) == (121, 1)
