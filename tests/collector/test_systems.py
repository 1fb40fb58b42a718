"""System timelines from stored check intervals, and availability end to end through the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.calendar import HolidayCalendar
from collector.config import parse_collector_config
from collector.store import CheckInterval, Store
from collector.systems import Systems, member_checks, timeline
from probes.result import CheckResult, Status

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 08:00 in Shanghai


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iv(agent: str, check: str, status: str, start: float, end: float, summary: str = ""
       ) -> CheckInterval:
    return CheckInterval(agent_id=agent, check_id=check, system="EMR", kind="tcp",
                         status=status, reason="ok" if status == "ok" else "connect_refused",
                         summary=summary, start=at(start), end=at(end),
                         last_result_at=at(end) - timedelta(seconds=30), results=1,
                         is_open=False)


CONFIG = parse_collector_config({"systems": [{
    "id": "EMR", "name": "电子病历", "core": True,
    "rule": {"all": ["emr-db-01/oracle",
                     {"at_least": 1, "of": ["emr-app-0*/web"]}]},
}]})
EMR = CONFIG.systems[0]


def test_members_resolve_globs() -> None:
    known = [("emr-db-01", "oracle"), ("emr-app-01", "web"), ("emr-app-02", "web"),
             ("his-app-01", "web")]
    assert member_checks(EMR, known) == [("emr-app-01", "web"), ("emr-app-02", "web"),
                                         ("emr-db-01", "oracle")]


def test_timeline_sweeps_boundaries_and_merges() -> None:
    intervals = [
        iv("emr-db-01", "oracle", "ok", 0, 60),
        iv("emr-app-01", "web", "ok", 0, 20),
        iv("emr-app-01", "web", "critical", 20, 40, "refused"),
        iv("emr-app-01", "web", "ok", 40, 60),
        iv("emr-app-02", "web", "ok", 0, 30),
        iv("emr-app-02", "web", "critical", 30, 35),
        # app-02 silent 35..45: unknown; together with app-01 down → unknown
        iv("emr-app-02", "web", "ok", 45, 60),
    ]
    got = [(s.start, s.end, s.state) for s in timeline(EMR, intervals, at(0), at(70))]
    assert got == [
        (at(0), at(20), "up"),
        (at(20), at(30), "degraded"),   # app-01 down, app-02 carries the load
        (at(30), at(35), "down"),       # both app servers down
        (at(35), at(40), "unknown"),    # app-01 down, app-02 silent
        (at(40), at(45), "degraded"),   # app-02 still silent
        (at(45), at(60), "up"),
        (at(60), at(70), "unknown"),    # nothing after 60
    ]
    [down] = [s for s in timeline(EMR, intervals, at(0), at(70)) if s.state == "down"]
    assert "emr-app-01/web: critical (connect_refused) refused" in down.cause


def result(agent: str, check: str, status: str, minute: float) -> CheckResult:
    return CheckResult(agent_id=agent, check_id=check, kind="tcp", system="EMR",
                       status=Status(status), reason="ok" if status == "ok" else "down",
                       started_at=at(minute), duration_s=0.01, interval_s=60,
                       summary="")


async def test_availability_through_the_store(store: Store) -> None:
    for agent in ("emr-db-01", "emr-app-01"):
        await store.add_agent(agent, T0)
    # one hour: the database is down from minute 10 to minute 16 (6 results of 1 minute)
    db = [result("emr-db-01", "oracle", "critical" if 10 <= m < 16 else "ok", m)
          for m in range(60)]
    web = [result("emr-app-01", "web", "ok", m) for m in range(60)]
    await store.ingest("emr-db-01", db, at(60))
    await store.ingest("emr-app-01", web, at(60))
    await store.add_maintenance(system="EMR", start=at(12), end=at(14), kind="planned",
                                reason="补丁 patch", approved_by="信息科", by="test", now=at(61))
    systems = Systems(CONFIG, store, HolidayCalendar.official())
    report = await systems.availability(EMR, at(0), at(60), now=at(60))
    assert report.planned_s == 3600
    assert report.excluded_s == 120
    assert report.downtime_s == 240          # 6 minutes down less the 2 excluded
    assert report.available_s == 3600 - 120 - 240
    assert report.availability == (3600 - 120 - 240) / (3600 - 120)
    assert [round(w.seconds) for w in report.windows] == [120, 120]
    # the future is not counted
    later = await systems.availability(EMR, at(0), at(600), now=at(60))
    assert later.planned_s == 3600
    state = await systems.current(EMR, at(60) + timedelta(seconds=30))
    assert state.state == "up"
    stale = await systems.current(EMR, at(60) + timedelta(minutes=10))
    assert stale.state == "unknown"


async def test_snapshot_reads_the_day_only_when_the_last_hour_does_not_decide(
        store: Store) -> None:
    """`Systems.snapshot` (what the incident engine reads) gives the state, since and cause of
    the full day's sweep (`Systems.current`) and the standing interval of every member, whether
    the state changed minutes ago, hours ago, or not today; a stale member counts."""
    import random

    for agent in ("emr-db-01", "emr-app-01", "emr-app-02"):
        await store.add_agent(agent, T0)
    rng = random.Random(11)
    # 30 hours of 1-minute results; the database flaps until `quiet`, then stays as it is
    checks = (("emr-db-01", "oracle"), ("emr-app-01", "web"), ("emr-app-02", "web"))
    reads: list[datetime] = []
    original = store.intervals

    async def counted(start: datetime, end: datetime, scope: object = None,
                      **kwargs: object) -> list[CheckInterval]:
        reads.append(start)
        return await original(start, end, scope, **kwargs)  # type: ignore[arg-type]

    for quiet in (20 * 60, 27 * 60, 29 * 60 + 50):   # each scenario later than the one before
        batch: dict[str, list[CheckResult]] = {}
        for m in range(30 * 60):
            for agent, check in checks:
                flapping = agent == "emr-db-01" and m < quiet
                status = (rng.choice(["ok", "ok", "warning", "critical"]) if flapping
                          else "ok")
                if agent == "emr-app-02" and quiet == 27 * 60 and m > 29 * 60:
                    continue          # silent for the last hour: stale, unknown
                batch.setdefault(agent, []).append(CheckResult(
                    agent_id=agent, check_id=check, kind="tcp", system="EMR",
                    status=Status(status), reason="ok" if status == "ok" else "down",
                    started_at=at(m + quiet * 100), duration_s=0.01, interval_s=60,
                    summary=status))
        now = at(30 * 60 + quiet * 100)
        for agent, results in batch.items():
            await store.ingest(agent, results, now)
        reads.clear()
        systems = Systems(CONFIG, store, HolidayCalendar.official())
        expected = await systems.current(EMR, now)
        store.intervals = counted  # type: ignore[method-assign]
        try:
            state, members = await systems.snapshot(EMR, now)
        finally:
            del store.intervals
        assert state == expected, quiet
        # the standing interval of each member, by brute force over the day's intervals
        standing = {}
        for interval in await store.intervals(now - timedelta(days=1), now):
            interval = systems._standing(interval, now)
            if interval.start <= now <= interval.end:
                standing[(interval.agent_id, interval.check_id)] = interval
        assert sorted(members) == sorted(standing.values())
        assert len(reads) == (1 if now - state.since < timedelta(hours=1) else 2), quiet
