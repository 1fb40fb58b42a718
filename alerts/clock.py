"""SLA clocks: an incident's deadlines from its level and start, in wall time or working time.

Level 1 and 2 clocks run around the clock. Level 3 recovery is "4 hours of working time"
(REQUIREMENTS.md §2): the deadline is the moment the working hours after the start add up to
4 h, using the same schedule machinery and holiday calendar (调休 included) as availability,
so a level-3 fault opened on Friday 17:00 with working hours Mon–Fri 08:00–17:30 is due on
Monday 11:30 — or later when Monday is a public holiday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.config import DEADLINE_KINDS, DeadlineKind, IncidentsConfig
from collector.calendar import HolidayCalendar
from collector.schedule import Schedule, planned_intervals

_SEARCH_STEP = timedelta(days=31)
_SEARCH_LIMIT = timedelta(days=400)


@dataclass(frozen=True)
class Clocks:
    respond_by: datetime | None
    recover_by: datetime | None
    report_by: datetime | None

    def due(self, kind: DeadlineKind) -> datetime | None:
        value: datetime | None = getattr(self, f"{kind}_by")
        return value


def add_working_time(start: datetime, seconds: float, schedule: Schedule,
                     calendar: HolidayCalendar, zone: ZoneInfo) -> datetime:
    """The instant at which `seconds` of `schedule` time have passed since `start`."""
    left = timedelta(seconds=seconds)
    lo = start
    while lo - start < _SEARCH_LIMIT:
        hi = lo + _SEARCH_STEP
        for interval in planned_intervals(schedule, calendar, zone, lo, hi):
            span = interval.end - interval.start
            if span >= left:
                return interval.start + left
            left -= span
        lo = hi
    raise ValueError(f"working hours give less than {seconds:g}s in "
                     f"{_SEARCH_LIMIT.days} days: check incidents.working_hours")


def deadlines(config: IncidentsConfig, level: int, since: datetime,
              recovered_at: datetime | None, calendar: HolidayCalendar,
              zone: ZoneInfo) -> Clocks:
    """Deadlines of a level-`level` incident whose fault started at `since`."""
    table = config.deadlines[level]
    due: dict[DeadlineKind, datetime | None] = {}
    for kind in DEADLINE_KINDS:
        seconds = table.of(kind)
        if seconds is None:
            due[kind] = None
            continue
        start = since
        if kind == "report" and config.report_from == "recovered":
            if recovered_at is None:
                due[kind] = None   # not due until the fault is over
                continue
            start = recovered_at
        if kind == "recover" and table.working_time:
            due[kind] = add_working_time(start, seconds, config.working_hours, calendar, zone)
        else:
            due[kind] = start + timedelta(seconds=seconds)
    return Clocks(respond_by=due["respond"], recover_by=due["recover"],
                  report_by=due["report"])
