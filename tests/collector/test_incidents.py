"""Incidents from stored evidence, on SQLite and PostgreSQL, with a simulated clock: results
are ingested with the times they carry and `evaluate(now)` is called at chosen instants, so
confirmation, deadlines, overtimes and working-time clocks are checked to the second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from alerts.clock import add_working_time
from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig, parse_collector_config
from collector.incidents import IncidentError, IncidentService
from collector.store import Store
from collector.systems import Systems
from probes.config import ConfigError
from probes.result import CheckResult, Status

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)   # Tuesday 10:00 in Shanghai
STEP = timedelta(seconds=30)

SYSTEMS: list[dict[str, Any]] = [
    {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-01/web", "emr-02/web"],
     "rule": "any"},
    {"id": "ORA", "name": "EMR 数据库", "core": True, "members": ["db-01/*"], "rule": "all"},
    {"id": "HIS", "name": "医院信息系统", "core": True, "members": ["his-01/web"],
     "depends_on": ["ORA"]},
]


@dataclass
class World:
    store: Store
    service: IncidentService
    config: CollectorConfig

    async def results(self, agent: str, check: str, statuses: str, start: datetime,
                      step: timedelta = STEP, kind: str = "http", reason: str = "") -> datetime:
        """One result per character: o ok, w warning, c critical; returns the next slot."""
        batch = []
        for i, code in enumerate(statuses):
            status = {"o": Status.OK, "w": Status.WARNING, "c": Status.CRITICAL}[code]
            batch.append(CheckResult(
                agent_id=agent, check_id=check, kind=kind, status=status,
                reason=reason or ("ok" if code == "o" else "connect_refused"),
                started_at=start + i * step, duration_s=0.01,
                interval_s=step.total_seconds(), summary=f"{check} {status.value}"))
        await self.store.ingest(agent, batch, start)
        return start + len(statuses) * step


async def world(store_url: str, **incidents: Any) -> AsyncIterator[World]:
    config = parse_collector_config({"store": store_url, "systems": SYSTEMS,
                                     "incidents": incidents})
    store = await Store.open(store_url)
    calendar = HolidayCalendar.load(None)
    service = IncidentService(config, store, Systems(config, store, calendar), calendar)
    try:
        yield World(store, service, config)
    finally:
        await store.close()


@pytest.fixture
async def w(store_url: str) -> AsyncIterator[World]:
    async for made in world(store_url):
        yield made


async def test_core_system_down_opens_level_1_back_dated_to_the_first_failure(
        w: World) -> None:
    await w.results("emr-01", "web", "oo", T0 - 2 * STEP)
    await w.results("emr-02", "web", "oo", T0 - 2 * STEP)
    await w.results("emr-01", "web", "c", T0)
    await w.results("emr-02", "web", "c", T0)
    # one failing result is not yet confirmed (2 results or 60 s)
    assert await w.service.evaluate(T0 + timedelta(seconds=1)) == []
    await w.results("emr-01", "web", "c", T0 + STEP)
    await w.results("emr-02", "web", "c", T0 + STEP)
    [change] = await w.service.evaluate(T0 + STEP + timedelta(seconds=1))
    incident = change.incident
    assert (change.event, incident.level, incident.state) == ("opened", 1, "open")
    assert incident.opened_at == T0                     # back-dated to the first failure
    assert incident.respond_by == T0 + timedelta(minutes=10)
    assert incident.recover_by == T0 + timedelta(minutes=30)
    assert incident.report_by == T0 + timedelta(hours=24)
    assert incident.number == f"INC-2026-{incident.id:04d}"
    assert "电子病历 不可用" in incident.cause
    # evaluating again changes nothing: one incident per system
    assert await w.service.evaluate(T0 + 2 * STEP) == []
    assert len(await w.service.find()) == 1

    # a person responds at 8 minutes: the respond deadline is met
    await w.service.acknowledge(incident.id, "张工", "已到场处理", T0 + timedelta(minutes=8))
    # the system comes back at 12 minutes
    await w.results("emr-01", "web", "c" * 22 + "oo", T0 + 2 * STEP)
    changes = await w.service.evaluate(T0 + timedelta(minutes=13))
    assert [c.event for c in changes] == ["recovered"]
    recovered = changes[0].incident
    assert recovered.recovered_at == T0 + 2 * STEP + 22 * STEP   # the first ok result
    assert recovered.recovered_by == "wardwatch"
    assert await w.service.overtime_counts(T0) == {1: 0, 2: 0, 3: 0, 4: 0}
    timeline = [e["kind"] for e in await w.service.timeline(incident.id)]
    assert timeline == ["opened", "acknowledged", "recovered"]


async def test_missed_deadlines_count_once_each(w: World) -> None:
    await w.results("db-01", "listener", "cc", T0, kind="tcp")
    [opened] = await w.service.evaluate(T0 + STEP + timedelta(seconds=1))
    incident = opened.incident
    assert incident.level == 1 and incident.system == "ORA"
    assert await w.service.count_overtimes(T0 + timedelta(minutes=9, seconds=59)) == []
    late = await w.service.count_overtimes(T0 + timedelta(minutes=10, seconds=1))
    assert [(c.event, c.deadline) for c in late] == [("overtime", "respond")]
    assert await w.service.count_overtimes(T0 + timedelta(minutes=11)) == []   # once only
    await w.service.acknowledge(incident.id, "李工", "", T0 + timedelta(minutes=12))
    [row] = await w.service.incident_overtimes(incident.id)
    assert row["met_at"] == T0 + timedelta(minutes=12)
    assert "响应超时" in row["reason"] and "时限 11-24 10:10" in row["reason"]
    # recovered by a person at 40 minutes: the recovery deadline (30 min) is missed too
    await w.service.recover(incident.id, "李工", "重启监听", T0 + timedelta(minutes=40))
    await w.service.count_overtimes(T0 + timedelta(minutes=41))
    # the report filed in time: no third overtime; the year's count is 2 for level 1
    await w.service.report(incident.id, "李工", "根因: 监听进程崩溃", "RCA-2026-17",
                           T0 + timedelta(hours=5))
    await w.service.count_overtimes(T0 + timedelta(hours=30))
    assert await w.service.overtime_counts(T0) == {1: 2, 2: 0, 3: 0, 4: 0}
    closed = await w.service.close(incident.id, "信息科", "", T0 + timedelta(hours=30))
    assert closed.state == "closed"
    with pytest.raises(IncidentError, match="closed already"):
        await w.service.close(incident.id, "信息科", "", T0 + timedelta(hours=31))


async def test_flapping_makes_one_incident(w: World) -> None:
    # two failures, one success, over and over: confirmed each time, re-opened each time
    start = T0
    for _ in range(5):
        start = await w.results("db-01", "listener", "cc", start, kind="tcp")
        await w.service.evaluate(start)
        start = await w.results("db-01", "listener", "o", start, kind="tcp")
        await w.service.evaluate(start)
    found = await w.service.find()
    assert len(found) == 1
    assert found[0].reopened == 4 and found[0].state == "recovered"
    kinds = [e["kind"] for e in await w.service.timeline(found[0].id)]
    assert kinds.count("reopened") == 4 and kinds.count("opened") == 1


async def test_single_failures_never_confirm(w: World) -> None:
    start = T0
    for _ in range(10):
        start = await w.results("db-01", "listener", "co", start, kind="tcp")
        await w.service.evaluate(start - STEP + timedelta(seconds=1))
    assert await w.service.find() == []


async def test_component_fault_is_level_2_and_escalates_when_the_system_goes_down(
        w: World) -> None:
    await w.results("emr-02", "web", "oooooo", T0)
    await w.results("emr-01", "web", "cccccc", T0)
    [opened] = await w.service.evaluate(T0 + 6 * STEP)
    assert opened.incident.level == 2                    # EMR still up through emr-02
    assert opened.incident.respond_by == T0 + timedelta(minutes=30)
    down_at = T0 + 6 * STEP
    await w.results("emr-01", "web", "ccc", down_at)
    await w.results("emr-02", "web", "ccc", down_at)
    [escalated] = await w.service.evaluate(down_at + 2 * STEP)
    incident = escalated.incident
    assert (escalated.event, incident.level) == ("escalated", 1)
    assert incident.opened_at == T0                      # still the first failure
    assert incident.level_since == down_at               # level-1 clocks from the outage
    assert incident.respond_by == down_at + timedelta(minutes=10)


async def test_no_incident_inside_a_maintenance_window(w: World) -> None:
    await w.store.add_maintenance(system="ORA", start=T0 - timedelta(minutes=5),
                                  end=T0 + timedelta(hours=1), kind="planned",
                                  reason="补丁", approved_by="信息科", by="vendor",
                                  now=T0 - timedelta(hours=1))
    await w.results("db-01", "listener", "cccc", T0, kind="tcp")
    assert await w.service.evaluate(T0 + 4 * STEP) == []
    # the evidence is kept: the failing interval is in the store
    assert [iv.status for iv in await w.store.intervals(T0, T0 + 4 * STEP)] == ["critical"]


async def test_a_dependent_system_joins_the_database_incident(w: World) -> None:
    await w.results("db-01", "listener", "ccc", T0, kind="tcp")
    [opened] = await w.service.evaluate(T0 + 3 * STEP)
    await w.results("his-01", "web", "ccc", T0 + STEP)
    assert await w.service.evaluate(T0 + 4 * STEP) == []   # HIS opens nothing of its own
    await w.service.evaluate(T0 + 5 * STEP)                # told once, not every round
    assert [i.system for i in await w.service.find()] == ["ORA"]
    joined = [e for e in await w.service.timeline(opened.incident.id) if e["kind"] == "joined"]
    # two findings (HIS down, its web check critical), each told once over two rounds
    assert len(joined) == 2 and all(e["note"].startswith("HIS 受影响") for e in joined)


async def test_warnings_open_level_3_only_where_configured(store_url: str) -> None:
    friday_1700 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)   # Friday 17:00 in Shanghai
    async for w in world(store_url, rules=[
            {"when": "check_warning", "reasons": ["tablespace_full"], "level": 3}]):
        await w.results("db-01", "tablespace", "ww", friday_1700, kind="oracle",
                        reason="tablespace_full")
        await w.results("db-01", "backup", "ww", friday_1700, kind="oracle",
                        reason="backup_stale")
        [opened] = await w.service.evaluate(friday_1700 + 2 * STEP)
        incident = opened.incident
        assert incident.level == 3 and "tablespace" in incident.cause
        assert "backup" not in incident.cause
        # 4 working hours: Fri 17:00-17:30, then Mon 08:00-11:30 (Shanghai)
        assert incident.recover_by == datetime(2026, 11, 23, 3, 30, tzinfo=UTC)
        assert incident.respond_by == friday_1700 + timedelta(hours=1)


def test_working_time_skips_holidays_and_counts_makeup_days() -> None:
    calendar = HolidayCalendar.load(None)
    config = parse_collector_config({})
    zone = config.zone
    # Wednesday 2026-09-30 17:00 Shanghai, the eve of the National Day holiday (国庆节)
    start = datetime(2026, 9, 30, 9, 0, tzinfo=UTC)
    due = add_working_time(start, 4 * 3600, config.incidents.working_hours, calendar, zone)
    day = date(2026, 10, 1)
    while calendar.is_holiday(day) or (day.weekday() >= 5
                                       and not calendar.is_makeup_workday(day)):
        day += timedelta(days=1)
    assert calendar.is_holiday(date(2026, 10, 1))
    # half an hour on the 30th, then 3.5 h on the first working day after the holiday
    assert due.astimezone(zone).replace(tzinfo=None) == datetime.combine(day, time(11, 30))


def test_incident_config_errors() -> None:
    with pytest.raises(ConfigError, match="kinds and reasons apply to check_"):
        parse_collector_config({"incidents": {"rules": [
            {"when": "system_down", "reasons": ["x"], "level": 1}]}})
    with pytest.raises(Exception, match="depends_on 'NOPE'"):
        parse_collector_config({"systems": [{"id": "A", "members": ["a/*"],
                                             "depends_on": ["NOPE"]}]})
    overridden = parse_collector_config({"incidents": {"deadlines": {1: {"respond": "5m"}}}})
    assert overridden.incidents.deadlines[1].respond == 300
    assert overridden.incidents.deadlines[1].recover == 1800   # the rest stays the contract's


async def test_a_settled_incident_is_left_to_the_watch_round_until_something_changes(
        w: World) -> None:
    """`settled`: the open incident already holds every failing finding, confirmed — more
    failing results of the same checks change nothing, so ingest does not wake the engine for
    that system; a new failure, an escalation or a recovery unsettles it."""
    await w.results("emr-02", "web", "oooooo", T0)
    await w.results("emr-01", "web", "cccccc", T0)
    [opened] = await w.service.evaluate(T0 + 6 * STEP)
    assert opened.event == "opened" and "EMR" not in w.service.settled
    assert await w.service.evaluate(T0 + 6 * STEP) == []
    assert "EMR" in w.service.settled
    # emr-02 fails too: the system goes down, the incident escalates
    down_at = T0 + 6 * STEP
    await w.results("emr-01", "web", "ccc", down_at)
    await w.results("emr-02", "web", "ccc", down_at)
    [escalated] = await w.service.evaluate(down_at + 2 * STEP)
    assert escalated.event == "escalated" and "EMR" not in w.service.settled
    assert await w.service.evaluate(down_at + 2 * STEP) == []
    assert "EMR" in w.service.settled
    # both come back: recovered, not settled
    back = down_at + 3 * STEP
    await w.results("emr-01", "web", "oo", back)
    await w.results("emr-02", "web", "oo", back)
    [recovered] = await w.service.evaluate(back + 2 * STEP)
    assert recovered.event == "recovered" and "EMR" not in w.service.settled


async def test_an_unconfirmed_failure_keeps_its_system_unsettled(w: World) -> None:
    await w.results("emr-02", "web", "oooooo", T0)
    await w.results("emr-01", "web", "cccccc", T0)
    await w.service.evaluate(T0 + 6 * STEP)
    await w.service.evaluate(T0 + 6 * STEP)
    assert "EMR" in w.service.settled
    # ORA's single failure is not confirmed: ORA has no incident yet, so it is watched and
    # evaluated after every failing result, never settled
    await w.results("db-01", "ora", "c", T0 + 6 * STEP)
    assert await w.service.evaluate(T0 + 6 * STEP + timedelta(seconds=1)) == []
    assert "ORA" in w.service.watching and "ORA" not in w.service.settled


async def test_an_incident_changed_by_another_collector_does_not_stop_the_round(
        w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two collectors on one database: the other one recovered EMR's incident between this
    one's read and its write. This round skips EMR (the next sees its new state) and still
    opens HIS's incident."""
    for agent, check in (("emr-01", "web"), ("emr-02", "web"), ("his-01", "web")):
        await w.results(agent, check, "oo", T0 - 2 * STEP)
        await w.results(agent, check, "cc", T0)
    later = T0 + 3 * STEP
    real = w.service._reconcile

    async def raced(system: Any, *args: Any) -> Any:
        if system.id == "EMR":
            raise IncidentError("INC-1 is not open", "not_open", "INC-1")
        return await real(system, *args)

    monkeypatch.setattr(w.service, "_reconcile", raced)
    changes = await w.service.evaluate(later)
    assert [c.incident.system for c in changes if c.event == "opened"] == ["HIS"]
