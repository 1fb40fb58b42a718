"""Business systems: their state over time, derived from member checks' state intervals and the
system's rule, and their availability over planned hours.

The timeline is computed from stored check intervals on demand: one query for the period,
then a sweep over interval boundaries; a year of a system is a few thousand boundaries (tens
of thousands when its members flap). The rule is compiled per system and member list into
index lookups (`compile_rule`) and its answers are memoised across calls (`RuleCache`).

The year-to-date figures are the long computation: their intervals are read from the store
in week-sized pieces and the arithmetic (sweep, planned time, the figure) runs in a worker
thread, so the event loop (ingest, the API, the board) is never held for long by it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from collector.rules import (
    STATUS_STATE,
    AllOf,
    AnyOf,
    RuleNode,
    State,
    _all,
    _at_least,
    matches,
)
from collector.schedule import planned_intervals
from collector.store import CheckInterval, Store

CheckKey = tuple[str, str]
Combo = tuple[State, ...]
"""Member states in the order of the sorted member keys."""
RuleFn = Callable[[Combo], State]

MEMO_LIMIT = 50_000
"""Rule answers kept per system and member list (combinations of member states)."""

READ_PIECE = timedelta(days=7)
"""A year's intervals are read in pieces this long: each piece's rows are decoded on the
event loop, so one piece must stay short (a flapping system writes ~100 intervals a day)."""


def member_checks(system: SystemConfig, known: Iterable[CheckKey]) -> list[CheckKey]:
    """The (agent_id, check_id) pairs that any of the system's member patterns match."""
    patterns = system.member_patterns
    return sorted({key for key in known if any(matches(p, *key) for p in patterns)})


def compile_rule(node: RuleNode, keys: Sequence[CheckKey]) -> RuleFn:
    """`rules.evaluate(node, dict(zip(keys, combo)))` as a function of `combo` alone.

    `evaluate` matches every leaf glob against every member on every call (a glob match per
    member and leaf: most of a flapping year's cost); here the matching is done once and a
    leaf becomes the list of its members' positions. The same `_all` / `_at_least` combine
    the parts in the same order, so the answers are `evaluate`'s (tests/collector/
    test_systems_rules.py compares them)."""
    if isinstance(node, str):
        leaf = _compile_parts([node], keys)
        return lambda combo: _all(leaf(combo))
    if isinstance(node, AllOf):
        parts = _compile_parts(node.all, keys)
        return lambda combo: _all(parts(combo))
    if isinstance(node, AnyOf):
        parts = _compile_parts(node.any, keys)
        return lambda combo: _at_least(1, parts(combo))
    parts = _compile_parts(node.of, keys)
    n = node.at_least
    return lambda combo: _at_least(n, parts(combo))


def _compile_parts(nodes: Sequence[RuleNode], keys: Sequence[CheckKey]
                   ) -> Callable[[Combo], list[State]]:
    # (positions of a glob's members, None) or ((), a compiled subtree)
    pieces: list[tuple[tuple[int, ...] | None, RuleFn | None]] = []
    for node in nodes:
        if isinstance(node, str):
            pieces.append((tuple(i for i, (a, c) in enumerate(keys) if matches(node, a, c)),
                           None))
        else:
            pieces.append((None, compile_rule(node, keys)))

    def parts(combo: Combo) -> list[State]:
        out: list[State] = []
        for positions, sub in pieces:
            if sub is not None:
                out.append(sub(combo))
            elif positions:
                out.extend(combo[i] for i in positions)
            else:   # a glob that matches no member is one unknown part
                out.append("unknown")
        return out

    return parts


def memoised(rule: RuleFn, memo: dict[Combo, State] | None = None) -> RuleFn:
    """`rule` with its answers kept in `memo` (at most MEMO_LIMIT of them)."""
    kept: dict[Combo, State] = {} if memo is None else memo

    def state_of(combo: Combo) -> State:
        state = kept.get(combo)
        if state is None:
            if len(kept) >= MEMO_LIMIT:
                kept.clear()
            state = kept[combo] = rule(combo)
        return state

    return state_of


class RuleCache:
    """Each system's compiled rule for its current member list, memoised across calls: the
    answers for the same member states do not change from one refresh to the next. Used
    from the event loop and from worker threads (a dict's get and set are atomic)."""

    def __init__(self) -> None:
        self._rules: dict[str, tuple[RuleNode, tuple[CheckKey, ...], RuleFn]] = {}

    def rule(self, system: SystemConfig, keys: Sequence[CheckKey]) -> RuleFn:
        held = self._rules.get(system.id)
        if held is None or held[0] is not system.rule or held[1] != tuple(keys):
            held = (system.rule, tuple(keys), memoised(compile_rule(system.rule, keys)))
            self._rules[system.id] = held
        return held[2]


RECENT = timedelta(hours=1)
"""The first, short read of a system's last stretch (`Systems.last_stretches`): most states
that matter changed within it; only a state steady for longer needs the day."""
WHOLE_READ_KEYS = 400
"""Above this many checks a read takes every row of its window instead of an OR of pairs."""


def last_stretch(intervals: Sequence[CheckInterval], start: datetime, end: datetime,
                 members: Sequence[CheckKey], rule: RuleFn) -> StateInterval:
    """The last stretch of `collector.systems.timeline(system, intervals, start, end,
    members, rule)` — the same sweep (`state_changes`) — without building the stretches
    before it. `rule` is the system's rule over `sweep_keys(intervals, members)`
    (`RuleCache.rule`: compiled, its answers memoised across calls; a system whose 30 members
    changed a few times today has hundreds of boundaries, and the rule's answers for the same
    member states do not change from one board refresh to the next).

    tests/collector/web/test_pages.py checks it equals `Systems.current` on the same data."""
    changes = deque(state_changes(intervals, start, end, sweep_keys(intervals, members), rule),
                    maxlen=1)
    if not changes:
        raise ValueError("an empty period has no stretch")
    when, state, cause = changes[0]
    return StateInterval(when, end, state, cause)


def sweep_keys(intervals: Sequence[CheckInterval], members: Iterable[CheckKey]
               ) -> list[CheckKey]:
    """The checks a sweep looks at, in order: the members and any check with an interval."""
    return sorted({*members, *((iv.agent_id, iv.check_id) for iv in intervals)})


def timeline(system: SystemConfig, intervals: Sequence[CheckInterval],
             start: datetime, end: datetime, members: Iterable[CheckKey] = (),
             rule: RuleFn | None = None) -> list[StateInterval]:
    """The system's state over [start, end) from its members' check intervals.

    `members` are the checks that belong to the system (those with intervals are added);
    where a member has no interval its state is unknown. Adjacent stretches of one state are
    merged; `cause` names the members that are not up at the start of each stretch.
    `rule`, if given, is the system's rule over `sweep_keys(intervals, members)` (from
    `RuleCache.rule`); otherwise it is compiled here.
    """
    keys = sweep_keys(intervals, members)
    # the rule is evaluated once per combination of member states, not once per boundary
    state_of = rule if rule is not None else memoised(compile_rule(system.rule, keys))
    changes = list(state_changes(intervals, start, end, keys, state_of))
    # stretches are contiguous: each lasts until the next change, the last until `end`
    ends = [when for when, _state, _cause in changes[1:]] + ([end] if changes else [])
    return [StateInterval(when, until, state, cause)
            for (when, state, cause), until in zip(changes, ends, strict=True)]


def state_changes(intervals: Sequence[CheckInterval], start: datetime, end: datetime,
                  keys: Sequence[CheckKey], state_of: RuleFn
                  ) -> Iterator[tuple[datetime, State, str]]:
    """The sweep over interval boundaries in [start, end): `(when, state, cause)` at `start`
    and at every later boundary where the system's state changes. `keys` are
    `sweep_keys(intervals, members)`, the order `state_of` takes the member states in;
    `cause` names the members that are not up (empty when up). `timeline` makes stretches
    of these; the board takes only the last."""
    events: list[tuple[datetime, int, CheckKey, CheckInterval | None]] = []
    for iv in intervals:
        key = (iv.agent_id, iv.check_id)
        if iv.end <= start or iv.start >= end:
            continue
        # ends sort before starts at the same instant (order 0 < 1)
        events.append((max(iv.start, start), 1, key, iv))
        events.append((min(iv.end, end), 0, key, None))
    events.sort(key=lambda e: (e[0], e[1]))
    position = {key: i for i, key in enumerate(keys)}
    states: list[State] = ["unknown"] * len(keys)   # kept in step with `current`
    current: dict[CheckKey, CheckInterval] = {}
    last_state: State | None = None
    cursor = start
    index = 0
    while cursor < end:
        while index < len(events) and events[index][0] <= cursor:
            _when, is_start, key, started = events[index]
            if is_start and started is not None:
                current[key] = started
                states[position[key]] = STATUS_STATE[started.status]
            elif not is_start and key in current and current[key].end <= cursor:
                del current[key]
                states[position[key]] = "unknown"
            index += 1
        following = events[index][0] if index < len(events) else end
        state = state_of(tuple(states))
        if state != last_state:
            last_state = state
            yield cursor, state, "" if state == "up" else _cause(current, state)
        cursor = following


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
        self.rules = RuleCache()
        self._ytd: dict[str, YearToDate] = {}
        self._ytd_lock = asyncio.Lock()
        self._known: list[CheckKey] | None = None
        self._member_lists: dict[str, list[CheckKey]] = {}

    async def _members(self, system: SystemConfig) -> list[CheckKey]:
        members = await self.member_map()
        if system.id in members and self.config.system(system.id) is system:
            return members[system.id]
        return member_checks(system, await self.store.known_checks())

    async def member_map(self) -> dict[str, list[CheckKey]]:
        """Every configured system's member checks, matched again only when the known checks
        change (matching is a glob per known check and member pattern)."""
        known = await self.store.known_checks()
        if self._known is None or len(known) < len(self._known):
            self._member_lists = {s.id: member_checks(s, known) for s in self.config.systems}
            self._known = list(known)
        elif len(known) > len(self._known):
            # only the checks that appeared since are matched (the known checks only grow):
            # at a cold start with thousands of hosts reporting, matching every known check
            # again for each new one held the event loop for minutes (docs/scale.md)
            seen = set(self._known)
            fresh = [key for key in known if key not in seen]
            for system in self.config.systems:
                found = member_checks(system, fresh)
                if found:
                    self._member_lists[system.id] = sorted(
                        {*self._member_lists[system.id], *found})
            self._known = list(known)
        return self._member_lists

    def sweep(self, system: SystemConfig, intervals: Sequence[CheckInterval], start: datetime,
              end: datetime, members: Sequence[CheckKey]) -> list[StateInterval]:
        """`timeline(...)` with the system's cached rule (pure: safe in a worker thread)."""
        rule = self.rules.rule(system, sweep_keys(intervals, members))
        return timeline(system, intervals, start, end, members, rule)

    async def timeline(self, system: SystemConfig, start: datetime, end: datetime,
                       now: datetime | None = None) -> list[StateInterval]:
        members = await self._members(system)
        intervals = await self.store.intervals(start, end, members)
        if now is not None:
            intervals = [self._standing(iv, now) for iv in intervals]
        return self.sweep(system, intervals, start, end, members)

    def _standing(self, iv: CheckInterval, now: datetime) -> CheckInterval:
        """An open interval stands until `stale_after` of its check's intervals have passed
        without a result (the next result is simply not due yet), but never beyond now."""
        if not iv.is_open:
            return iv
        interval = iv.end - iv.last_result_at
        stands_until = min(now, iv.last_result_at + interval * self.config.stale_after)
        return iv._replace(end=max(iv.end, stands_until))

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

    async def _intervals_in_pieces(self, start: datetime, end: datetime,
                                   members: Sequence[CheckKey]) -> list[CheckInterval]:
        """`store.intervals(start, end, members)`, read READ_PIECE at a time so that no one
        read decodes a year of rows on the event loop. An interval is taken from the piece
        its start falls in (or the first piece, if it began before `start`), so each comes
        once and the list stays ordered by start."""
        if not members or end <= start:
            return await self.store.intervals(start, end, members)
        out: list[CheckInterval] = []
        lower = start
        while lower < end:
            upper = min(end, lower + READ_PIECE)
            rows = await self.store.intervals(lower, upper, members)
            out.extend(rows if lower == start else [iv for iv in rows if iv.start >= lower])
            lower = upper
        return out

    async def year_to_date(self, system: SystemConfig, now: datetime) -> YearToDate:
        """This (local) year so far, counted from when monitoring of the system began, and the
        downtime the target still allows for the rest of the year.

        The figures are `availability(system, start, now, now)` and the whole year's budget;
        the store is read here (async, in pieces) and the arithmetic runs in a worker thread:
        a flapping year of one system is seconds of pure Python."""
        zone = self.config.zone
        year_begin = datetime(now.astimezone(zone).year, 1, 1, tzinfo=zone)
        year_end = year_begin.replace(year=year_begin.year + 1)
        since = await self.monitored_since(system)
        start = max(year_begin, since) if since is not None else now
        end = max(start, now)   # as `availability` cuts off the future
        members = await self._members(system)
        intervals = await self._intervals_in_pieces(start, end, members)
        exclusions = await self._exclusions(system, start, end)
        year_exclusions = await self._exclusions(system, start, year_end)

        def figures() -> tuple[AvailabilityReport, float]:
            standing = [self._standing(iv, now) for iv in intervals]
            states = self.sweep(system, standing, start, end, members)
            planned = planned_intervals(system.schedule, self.calendar, zone, start, end)
            report = compute_availability(states, planned, exclusions,
                                          system.unknown_counts_as, system.target)
            planned_year = planned_intervals(system.schedule, self.calendar, zone, start,
                                             year_end)
            return report, allowed_downtime_s(planned_year, year_exclusions, system.target)

        report, budget = await asyncio.to_thread(figures)
        ytd = YearToDate(start=start, report=report, budget_s=budget,
                         budget_left_s=budget - report.downtime_s, as_of=now)
        self._ytd[system.id] = ytd
        return ytd

    async def recent_year_to_date(self, system: SystemConfig, now: datetime,
                                  max_age_s: float = YTD_MAX_AGE_S) -> YearToDate:
        """`year_to_date` as computed at most `max_age_s` ago (housekeeping keeps it fresh).

        A year of one system costs up to seconds (a flapping one); a dashboard listing 50
        systems every few seconds must not pay that per request. Computations run one at a
        time, so a burst of requests computes each system once.
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
        members = await self._members(system)
        lasts, by_check = await self.last_stretches([system], {system.id: members}, now)
        last = lasts[system.id]
        current: dict[CheckKey, CheckInterval] = {}
        for key in members:   # each list ordered by start: the last one covering now wins
            for iv in by_check.get(key, ()):
                if iv.start <= now <= iv.end:
                    current[key] = iv
        return (SystemState(system=system.id, state=last.state, since=last.start,
                            cause=last.cause), list(current.values()))

    async def last_stretches(self, systems: Sequence[SystemConfig],
                             members: Mapping[str, Sequence[CheckKey]], now: datetime
                             ) -> tuple[dict[str, StateInterval],
                                        dict[CheckKey, list[CheckInterval]]]:
        """Each system's last stretch of the day's timeline (what `current` gives), and the
        intervals read for it, per check, open ones standing at `now`.

        The state at an instant depends only on the intervals that cover it, so a last
        stretch that starts within the last RECENT is the day's last stretch too. The last
        RECENT is read for all `systems` first; only for the systems whose state did not
        change in it are the intervals that ended before it read too. The two reads are
        exactly the day's read of `current`, no row twice: the first has every open interval
        that ends within the day, the second only closed ones. The board asks for every
        system at once, the incident engine for one."""
        day, recent = now - timedelta(days=1), now - RECENT
        every = sorted({key for s in systems for key in members[s.id]})
        by_check = await self._read_standing(every, now, recent, now, open_after=day)
        out: dict[str, StateInterval] = {}
        undecided = []
        for system in systems:
            last = self._last_stretch(system, members[system.id], by_check, recent, now)
            if last.start == recent:
                undecided.append(system)
            else:
                out[system.id] = last
        if undecided:
            wanted = sorted({key for s in undecided for key in members[s.id]})
            earlier = await self._read_standing(wanted, now, day, recent, closed_only=True)
            for key, found in earlier.items():   # the closed ones never cover `now`
                by_check[key] = found + by_check.get(key, [])
            for system in undecided:
                out[system.id] = self._last_stretch(system, members[system.id], by_check,
                                                    day, now)
        return out, by_check

    def _last_stretch(self, system: SystemConfig, keys: Sequence[CheckKey],
                      by_check: Mapping[CheckKey, list[CheckInterval]], start: datetime,
                      now: datetime) -> StateInterval:
        mine = [iv for key in keys for iv in by_check.get(key, ())]
        return last_stretch(mine, start, now, keys,
                            self.rules.rule(system, sweep_keys(mine, keys)))

    async def _read_standing(self, wanted: Sequence[CheckKey], now: datetime, start: datetime,
                             end: datetime, *, open_after: datetime | None = None,
                             closed_only: bool = False) -> dict[CheckKey, list[CheckInterval]]:
        """`wanted` checks' intervals of [start, end) (`Store.intervals`), open ones standing
        at `now`."""
        by_check: dict[CheckKey, list[CheckInterval]] = defaultdict(list)
        if not wanted:
            return by_check
        # a long OR of pairs costs more than reading every row of the window
        scope = None if len(wanted) > WHOLE_READ_KEYS else wanted
        keep = set(wanted)
        for iv in await self.store.intervals(start, end, scope, open_after=open_after,
                                             closed_only=closed_only):
            key = (iv.agent_id, iv.check_id)
            if key in keep:
                by_check[key].append(self._standing(iv, now))
        return by_check

    async def current(self, system: SystemConfig, now: datetime) -> SystemState:
        """State at `now`: the last stretch of today's timeline (stale data is unknown)."""
        states = await self.timeline(system, now - timedelta(days=1), now, now)
        last = states[-1]
        return SystemState(system=system.id, state=last.state, since=last.start,
                           cause=last.cause)
