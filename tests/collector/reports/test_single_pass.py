"""What the annual report reads in one pass must equal what the API computes piece by piece:
the daily strip is the period's availability cut at local midnights (each cell equals
`compute_availability` over that day alone, whatever the unknown policy, schedule, exclusions
or DST), the yearly figures are `Systems.availability`, and the patch audit's findings are
`FindingsService.host`'s."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.availability import (
    STATES,
    UNKNOWN_POLICIES,
    Exclusion,
    Interval,
    StateInterval,
    UnknownPolicy,
    clip,
    compute_availability,
)
from collector.calendar import HolidayCalendar
from collector.config import parse_collector_config
from collector.findings import FindingsService
from collector.reports import build_report
from collector.reports.availability import counted_time, daily_cells, local_days
from collector.reports.model import DayCell
from collector.schedule import Schedule, planned_intervals
from collector.schema import findings
from collector.store import Store
from collector.systems import Systems
from tests.collector.reports.data import NOW, ZONE, add_intervals

BERLIN = ZoneInfo("Europe/Berlin")
# ten local days around the spring DST change (2025-03-30 has 23 hours in Berlin)
P0 = datetime(2025, 3, 25, 6, 0, tzinfo=BERLIN).astimezone(UTC)
P1 = datetime(2025, 4, 3, 18, 30, tzinfo=BERLIN).astimezone(UTC)
SPAN_MIN = int((P1 - P0).total_seconds() // 60)


def one_day_at_a_time(states: list[StateInterval], planned: list[Interval],
                      exclusions: list[Exclusion], policy: UnknownPolicy, target: float,
                      start: datetime, end: datetime, zone: ZoneInfo) -> list[DayCell]:
    """The strip as it was first computed: `compute_availability` over each local day."""
    days = local_days(start, end, zone)
    cells = []
    for k, day in enumerate(days.days):
        begin, finish = days.edges[k], days.edges[k + 1]
        report = compute_availability(
            [s for s in states if s.start < finish and s.end > begin],
            clip(planned, begin, finish),
            [e for e in exclusions if e.start < finish and e.end > begin], policy, target)
        cells.append(DayCell(day=day, availability=report.availability,
                             downtime_s=report.downtime_s, counted_s=report.counted_s))
    return cells


@st.composite
def stretches(draw: st.DrawFn) -> list[StateInterval]:
    """Non-overlapping states with gaps (time no state covers is unknown, `no_data`)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, SPAN_MIN - 1), max_size=30))))
    bounds = [0, *cuts, SPAN_MIN]
    out = []
    for a, b in itertools.pairwise(bounds):
        state = draw(st.sampled_from([*STATES, None]))
        if state is not None:
            out.append(StateInterval(P0 + timedelta(minutes=a), P0 + timedelta(minutes=b),
                                     state))
    return out


@st.composite
def exclusions(draw: st.DrawFn) -> list[Exclusion]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, SPAN_MIN - 1))
        b = draw(st.integers(a + 1, min(SPAN_MIN, a + 3000)))
        out.append(Exclusion(P0 + timedelta(minutes=a), P0 + timedelta(minutes=b),
                             draw(st.sampled_from(["planned", "force_majeure"])), "r", "a"))
    return out


@settings(max_examples=150, deadline=None)
@given(states=stretches(), excluded=exclusions(), policy=st.sampled_from(UNKNOWN_POLICIES),
       office_hours=st.booleans())
def test_cells_are_compute_availability_per_local_day(
        states: list[StateInterval], excluded: list[Exclusion], policy: UnknownPolicy,
        office_hours: bool) -> None:
    schedule = Schedule.model_validate(
        [{"days": "mon-fri", "start": "08:00", "end": "18:00"}] if office_hours else "24x7")
    planned = planned_intervals(schedule, HolidayCalendar.load(), BERLIN, P0, P1)
    report = compute_availability(states, planned, excluded, policy, 0.995)
    days = local_days(P0, P1, BERLIN)
    cells = daily_cells(report, counted_time(planned, excluded), days)
    assert cells == one_day_at_a_time(states, planned, excluded, policy, 0.995, P0, P1,
                                      BERLIN)
    assert [c.day.isoformat() for c in cells][:1] == ["2025-03-25"] and len(cells) == 10
    # whole microseconds: the cells add up to the period's figures exactly
    assert sum(round(c.downtime_s * 1e6) for c in cells) == round(report.downtime_s * 1e6)
    assert sum(round(c.counted_s * 1e6) for c in cells) == round(report.counted_s * 1e6)


async def test_report_figures_are_the_apis_and_cells_the_days(store: Store) -> None:
    """Through the store: gaps, a maintenance window, office hours and each policy."""
    y0 = datetime(2025, 1, 1, tzinfo=ZONE).astimezone(UTC)
    y1 = datetime(2025, 3, 1, tzinfo=ZONE).astimezone(UTC)
    config = parse_collector_config({"store": "sqlite://", "systems": [
        {"id": "A", "core": True, "members": ["a-01/web"]},
        {"id": "B", "members": ["b-01/web"], "unknown_policy": "excluded",
         "schedule": [{"days": "mon-fri", "start": "08:00", "end": "18:00"}]},
        {"id": "C", "members": ["c-01/web", "c-02/web"], "rule": "any",
         "unknown_policy": "up"}]})
    hours = timedelta(hours=1)
    for agent, system in (("a-01", "A"), ("b-01", "B"), ("c-01", "C"), ("c-02", "C")):
        # up, a 30 h outage across midnights, a 10 h gap without data, up again
        down = y0 + timedelta(days=9, hours=7 + len(agent))
        await add_intervals(store, agent, "web", system, [
            (y0 + hours, down, "ok"), (down, down + 30 * hours, "critical"),
            (down + 40 * hours, y1 - hours, "warning" if agent == "c-02" else "ok")])
    await store.add_maintenance(system="B", start=y0 + timedelta(days=20),
                                end=y0 + timedelta(days=22, hours=3), kind="planned",
                                reason="upgrade", approved_by="IT", by="vendor", now=y0)
    report = await build_report(config, store, "availability", start=y0, end=y1, now=NOW)
    reader = Systems(config, store, HolidayCalendar.load(config.calendar))
    rows = {r["system"]: r for r in report.table("systems").records()}
    for system in config.systems:
        api = await reader.availability(system, y0, y1, NOW)
        row = rows[system.id]
        assert (row["planned_s"], row["excluded_s"], row["counted_s"], row["downtime_s"],
                row["unknown_s"], row["availability"], row["met"], row["budget_left_s"]) == \
            (api.planned_s, api.excluded_s, api.counted_s, api.downtime_s, api.unknown_s,
             api.availability, api.met, api.budget_left_s)
        states = await reader.timeline(system, y0, y1, NOW)
        planned = planned_intervals(system.schedule, reader.calendar, ZONE, y0, y1)
        excluded = [Exclusion(w.start, w.end, w.kind, w.reason,  # type: ignore[arg-type]
                              w.approved_by)
                    for w in await store.maintenance_windows(system=system.id, start=y0,
                                                             end=y1)]
        strip = next(s for s in report.strips if s.system == system.id)
        assert strip.days == one_day_at_a_time(states, planned, excluded,
                                               system.unknown_counts_as, system.target,
                                               y0, y1, ZONE)
        assert len(strip.days) == 59
    assert rows["A"]["unknown_s"] > 0 and rows["B"]["excluded_s"] > 0


async def test_patch_findings_are_what_the_api_lists_per_host(store: Store) -> None:
    """The audit reads every host's findings in one query: the same rows, host by host and by
    first seen, as `FindingsService.host` gives each host, less those outside the period."""
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    start, end = t0 + timedelta(days=10), t0 + timedelta(days=40)
    rows = []
    for host in ("web-02", "db-01", "web-10"):
        for n, (first, fixed) in enumerate([(0, 5), (0, 15), (12, None), (20, 30), (45, None),
                                            (3, None)]):
            fixed_at = t0 + timedelta(days=fixed) if fixed is not None else None
            rows.append({"host": host, "check_id": "patches", "kind": "update",
                         "key": f"update:p{n}",
                         "open_key": None if fixed_at else f"{host}|update:p{n}",
                         "title": f"p{n}", "severity": "high",
                         "first_seen": t0 + timedelta(days=first, hours=n),
                         "last_seen": fixed_at or end, "fixed_at": fixed_at,
                         "data": {"kev": n == 2}})
    async with store.transaction() as conn:
        await conn.execute(findings.insert(), rows)
    config = parse_collector_config({"store": "sqlite://", "systems": []})
    service = FindingsService(store)
    await service.add_waiver(host="web-*", key="update:p5", accepted_by="IT", reason="EOL",
                             expires_at=end + timedelta(days=30), by="t", now=t0)
    report = await build_report(config, store, "patches", start=start, end=end, now=NOW)
    listed = [(r["host"], r["key"], r["first_seen"], r["fixed_at"], r["time_to_fix_s"],
               r["waiver"] != "") for r in report.table("findings").records()]
    expected = []
    for host in ("db-01", "web-02", "web-10"):
        for item in (await service.host(host, end))["findings"]:
            first = datetime.fromisoformat(item["first_seen"])
            fixed = datetime.fromisoformat(item["fixed_at"]) if item["fixed_at"] else None
            if first < end and (fixed is None or fixed >= start):
                expected.append((host, item["key"], first,
                                 fixed if fixed is not None and fixed < end else None,
                                 item["time_to_fix_s"] if fixed is not None and fixed < end
                                 else None, item["waiver"] is not None))
    assert listed == expected
    assert [k for h, k, *_ in listed if h == "db-01"] == ["update:p1", "update:p5",
                                                          "update:p2", "update:p3"]
    assert sum(1 for *_, waived in listed if waived) == 2
