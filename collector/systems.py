"""Business systems: their state over time, derived from member checks' state intervals and the
system's rule, and their availability over planned hours.

The timeline is computed from stored check intervals on demand: one query for the period,
then a sweep over interval boundaries; a year of a system is a few thousand boundaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from collector.availability import (
    AvailabilityReport,
    Exclusion,
    StateInterval,
    allowed_downtime_s,
    compute_availability,
)
from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig, SystemConfig
from collector.rules import STATUS_STATE, State, evaluate, matches
from collector.schedule import planned_intervals
from collector.store import CheckInterval, Store

CheckKey = tuple[str, str]


def member_checks(system: SystemConfig, known: Iterable[CheckKey]) -> list[CheckKey]:
    """The (agent_id, check_id) pairs that any of the system's member patterns match."""
    patterns = system.member_patterns
    return sorted({key for key in known if any(matches(p, *key) for p in patterns)})


def timeline(system: SystemConfig, intervals: Sequence[CheckInterval],
             start: datetime, end: datetime, members: Iterable[CheckKey] = ()
             ) -> list[StateInterval]:
    """The system's state over [start, end) from its members' check intervals.

    `members` are the checks that belong to the system (those with intervals are added);
    where a member has no interval its state is unknown. Adjacent stretches of one state are
    merged; `cause` names the members that are not up at the start of each stretch.
    """
    events: list[tuple[datetime, int, CheckKey, CheckInterval | None]] = []
    for iv in intervals:
        key = (iv.agent_id, iv.check_id)
        if iv.end <= start or iv.start >= end:
            continue
        # ends sort before starts at the same instant (order 0 < 1)
        events.append((max(iv.start, start), 1, key, iv))
        events.append((min(iv.end, end), 0, key, None))
    events.sort(key=lambda e: (e[0], e[1]))
    keys = sorted({*members, *((iv.agent_id, iv.check_id) for iv in intervals)})
    # the rule is evaluated once per combination of member states, not once per boundary
    memo: dict[tuple[State, ...], State] = {}
    current: dict[CheckKey, CheckInterval] = {}
    out: list[StateInterval] = []
    cursor = start
    index = 0
    while cursor < end:
        while index < len(events) and events[index][0] <= cursor:
            _when, is_start, key, started = events[index]
            if is_start and started is not None:
                current[key] = started
            elif not is_start and key in current and current[key].end <= cursor:
                del current[key]
            index += 1
        following = events[index][0] if index < len(events) else end
        combo = tuple(STATUS_STATE[current[k].status] if k in current else "unknown"
                      for k in keys)
        state = memo.get(combo)
        if state is None:
            state = memo[combo] = evaluate(system.rule, dict(zip(keys, combo, strict=True)))
        if out and out[-1].state == state and out[-1].end == cursor:
            out[-1] = StateInterval(out[-1].start, following, state, out[-1].cause)
        else:
            cause = "" if state == "up" else _cause(current, state)
            out.append(StateInterval(cursor, following, state, cause))
        cursor = following
    return out


def _cause(current: dict[CheckKey, CheckInterval], state: State) -> str:
    failing = [f"{a}/{c}: {iv.status} ({iv.reason}) {iv.summary}".strip()
               for (a, c), iv in sorted(current.items()) if iv.status != "ok"]
    if not failing:
        return "no fresh data from member checks" if state == "unknown" else ""
    return "; ".join(failing)[:1000]


@dataclass(frozen=True)
class YearToDate:
    start: datetime
    report: AvailabilityReport
    budget_s: float
    """Downtime the target allows over the whole year's planned time (from `start`)."""
    budget_left_s: float
    as_of: datetime
    """The `now` it was computed for."""


YTD_MAX_AGE_S = 90.0
"""How old a served year-to-date figure may be; housekeeping refreshes them every minute."""


@dataclass(frozen=True)
class SystemState:
    system: str
    state: State
    since: datetime
    cause: str


class Systems:
    """Reads the store for the configured systems."""

    def __init__(self, config: CollectorConfig, store: Store,
                 calendar: HolidayCalendar) -> None:
        self.config = config
        self.store = store
        self.calendar = calendar
        self._ytd: dict[str, YearToDate] = {}
        self._ytd_lock = asyncio.Lock()

    async def _members(self, system: SystemConfig) -> list[CheckKey]:
        return member_checks(system, await self.store.known_checks())

    async def timeline(self, system: SystemConfig, start: datetime, end: datetime,
                       now: datetime | None = None) -> list[StateInterval]:
        members = await self._members(system)
        intervals = await self.store.intervals(start, end, members)
        if now is not None:
            intervals = [self._standing(iv, now) for iv in intervals]
        return timeline(system, intervals, start, end, members)

    def _standing(self, iv: CheckInterval, now: datetime) -> CheckInterval:
        """An open interval stands until `stale_after` of its check's intervals have passed
        without a result (the next result is simply not due yet), but never beyond now."""
        if not iv.is_open:
            return iv
        interval = iv.end - iv.last_result_at
        stands_until = min(now, iv.last_result_at + interval * self.config.stale_after)
        return replace(iv, end=max(iv.end, stands_until))

    async def availability(self, system: SystemConfig, start: datetime, end: datetime,
                           now: datetime) -> AvailabilityReport:
        """Availability over [start, end); time after `now` has not happened and is cut off."""
        end = max(start, min(end, now))
        states = await self.timeline(system, start, end, now)
        planned = planned_intervals(system.schedule, self.calendar, self.config.zone, start,
                                    end)
        exclusions = await self._exclusions(system, start, end)
        return compute_availability(states, planned, exclusions, system.unknown_counts_as,
                                    system.target)

    async def _exclusions(self, system: SystemConfig, start: datetime, end: datetime
                          ) -> list[Exclusion]:
        windows = await self.store.maintenance_windows(system=system.id, start=start, end=end)
        return [Exclusion(start=w.start, end=w.end, kind=w.kind,  # type: ignore[arg-type]
                          reason=w.reason, approved_by=w.approved_by, id=str(w.id))
                for w in windows]

    async def monitored_since(self, system: SystemConfig) -> datetime | None:
        """When the first of the system's member checks first reported."""
        return await self.store.first_seen(await self._members(system))

    async def year_to_date(self, system: SystemConfig, now: datetime) -> YearToDate:
        """This (local) year so far, counted from when monitoring of the system began, and the
        downtime the target still allows for the rest of the year."""
        zone = self.config.zone
        year_begin = datetime(now.astimezone(zone).year, 1, 1, tzinfo=zone)
        year_end = year_begin.replace(year=year_begin.year + 1)
        since = await self.monitored_since(system)
        start = max(year_begin, since) if since is not None else now
        report = await self.availability(system, start, now, now)
        planned_year = planned_intervals(system.schedule, self.calendar, zone, start, year_end)
        budget = allowed_downtime_s(planned_year,
                                    await self._exclusions(system, start, year_end),
                                    system.target)
        ytd = YearToDate(start=start, report=report, budget_s=budget,
                         budget_left_s=budget - report.downtime_s, as_of=now)
        self._ytd[system.id] = ytd
        return ytd

    async def recent_year_to_date(self, system: SystemConfig, now: datetime,
                                  max_age_s: float = YTD_MAX_AGE_S) -> YearToDate:
        """`year_to_date` as computed at most `max_age_s` ago (housekeeping keeps it fresh).

        A year of one system costs tens of milliseconds; a dashboard listing 50 systems every
        few seconds must not pay that per request. Computations run one at a time, so a burst
        of requests computes each system once.
        """
        def fresh() -> YearToDate | None:
            hit = self._ytd.get(system.id)
            # a figure from before the first data (a fresh install) is not kept
            if (hit is not None and hit.report.availability is not None
                    and 0 <= (now - hit.as_of).total_seconds() <= max_age_s):
                return hit
            return None

        if (hit := fresh()) is not None:
            return hit
        async with self._ytd_lock:
            if (hit := fresh()) is not None:
                return hit
            return await self.year_to_date(system, now)

    def forget_year_to_date(self, system_id: str | None = None) -> None:
        """Drop cached figures (a maintenance window changed what they count)."""
        if system_id is None:
            self._ytd.clear()
        else:
            self._ytd.pop(system_id, None)

    async def snapshot(self, system: SystemConfig, now: datetime
                       ) -> tuple[SystemState, list[CheckInterval]]:
        """State at `now` and the current (standing) interval of each member check, from one
        read of the store: what the incident engine looks at."""
        start = now - timedelta(days=1)
        members = await self._members(system)
        intervals = [self._standing(iv, now)
                     for iv in await self.store.intervals(start, now, members)]
        states = timeline(system, intervals, start, now, members)
        last = states[-1]
        current: dict[CheckKey, CheckInterval] = {}
        for iv in intervals:   # ordered by start: the last one covering now wins
            if iv.start <= now <= iv.end:
                current[(iv.agent_id, iv.check_id)] = iv
        return (SystemState(system=system.id, state=last.state, since=last.start,
                            cause=last.cause), list(current.values()))

    async def current(self, system: SystemConfig, now: datetime) -> SystemState:
        """State at `now`: the last stretch of today's timeline (stale data is unknown)."""
        states = await self.timeline(system, now - timedelta(days=1), now, now)
        last = states[-1]
        return SystemState(system=system.id, state=last.state, since=last.start,
                           cause=last.cause)
