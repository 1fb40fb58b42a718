"""Availability arithmetic: intervals, states, exclusions, and the contract's headline figure.

Pure and database-free, so every figure can be recomputed by hand from stored evidence
(docs/availability.md walks through an example). The store supplies state intervals and
exclusions; `collector.schedule.planned_intervals` supplies planned time.

    P  planned time      schedule ∩ period, minus holidays if the schedule follows the calendar
    X  excluded time     P ∩ (planned maintenance ∪ confirmed force majeure)
    C  counted time      P − X                                  (计入考核的计划运行时间)
    D  down              time in C whose state is `down`
    U  unknown           time in C whose state is `unknown` or that no state interval covers
    A  available         time in C whose state is `up` or `degraded`

The unknown policy decides where U goes:

    policy     downtime   available   denominator (counted_s)
    down       D + U      A           |C|
    up         D          A + U       |C|
    excluded   D          A           |C| − U

    availability  = available ÷ denominator     (系统实际可用时长 ÷ 计划应运行总时长)
    error budget  = (1 − target) × denominator  (allowed downtime)
    budget left   = error budget − downtime     (negative: overspent)

`degraded` counts as available: the system still serves its users (a level-2 matter, not
downtime). All durations are summed in whole microseconds (`timedelta` arithmetic, no float
drift) and the ratio is an exact `Fraction`; `target` is read as the decimal a person wrote
(`0.995` means 199/200, not the binary float just below it), so "43.8 h down in a 24×7 year
is exactly 99.5 %" holds exactly and `met` is decided without rounding.

Interval lists: a *normalized* list is sorted by start, and its intervals neither overlap nor
touch. `normalize` makes one from anything; `intersect`, `union` and `subtract` take normalized
lists and run in O(n + m).
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, get_args

State = Literal["up", "degraded", "down", "unknown"]
ExclusionKind = Literal["planned", "force_majeure"]
UnknownPolicy = Literal["down", "up", "excluded"]
"""How time without data counts: as `down`, as `up`, or `excluded` from the denominator."""

STATES: tuple[State, ...] = get_args(State)
EXCLUSION_KINDS: tuple[ExclusionKind, ...] = get_args(ExclusionKind)
UNKNOWN_POLICIES: tuple[UnknownPolicy, ...] = get_args(UnknownPolicy)

NO_DATA = "no_data"
"""Cause of unknown time that no state interval covers (agent or network silent)."""

_US = timedelta(microseconds=1)


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    # Subtracting two datetimes that share one ZoneInfo ignores their offsets (wall-clock
    # difference), which is wrong across a DST change; in UTC it is always right.
    return value.astimezone(UTC)


def _span(obj: Any, start: datetime, end: datetime) -> None:
    start, end = _utc(start, "start"), _utc(end, "end")
    if not start < end:
        raise ValueError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    object.__setattr__(obj, "start", start)
    object.__setattr__(obj, "end", end)


def seconds(value: timedelta) -> float:
    """A duration in seconds, exact to the microsecond (int µs / 10⁶, correctly rounded)."""
    return (value // _US) / 1_000_000


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """[start, end): aware datetimes, stored in UTC, start < end."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _span(self, self.start, self.end)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def seconds(self) -> float:
        return seconds(self.end - self.start)


@dataclass(frozen=True, slots=True)
class StateInterval:
    """A system (or check) was in `state` over [start, end); `cause` says why, for people."""

    start: datetime
    end: datetime
    state: State
    cause: str = ""

    def __post_init__(self) -> None:
        _span(self, self.start, self.end)
        if self.state not in STATES:
            raise ValueError(f"state {self.state!r} is not one of {', '.join(STATES)}")


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Time removed from planned time: agreed maintenance (计划内维护) or force majeure (不可抗力).

    Every exclusion carries why and who approved it; force majeure may be added after the fact.
    """

    start: datetime
    end: datetime
    kind: ExclusionKind
    reason: str
    approved_by: str
    id: int | str | None = None

    def __post_init__(self) -> None:
        _span(self, self.start, self.end)
        if self.kind not in EXCLUSION_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(EXCLUSION_KINDS)}")

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of downtime (or unknown time) inside counted time, as listed in reports."""

    start: datetime
    end: datetime
    seconds: float
    state: State
    cause: str


@dataclass(frozen=True, slots=True)
class AppliedExclusion:
    """An exclusion and how much planned time it removed (overlaps with others not subtracted:
    the report's `excluded_s` is the size of the union)."""

    exclusion: Exclusion
    seconds: float


@dataclass(frozen=True)
class AvailabilityReport:
    """The figures of DESIGN.md's availability API, plus the error budget.

    `*_s` are seconds. `availability` is None when nothing is counted (no planned time, or all
    of it excluded); `met` is then None too. Identity, for checking by hand:
    `available_s + downtime_s == counted_s`, and `counted_s == planned_s - excluded_s`, less
    `unknown_s` when the policy is `excluded`.
    """

    planned_s: float
    excluded_s: float
    counted_s: float
    downtime_s: float
    unknown_s: float
    degraded_s: float
    available_s: float
    availability: float | None
    availability_exact: Fraction | None
    target: float
    met: bool | None
    error_budget_s: float
    budget_left_s: float
    unknown_policy: UnknownPolicy
    windows: list[Window]
    """Down windows (and unknown ones when unknown counts as down) inside counted time."""
    unknown_windows: list[Window]
    """Every unknown stretch inside counted time, whatever the policy (reported separately)."""
    exclusions: list[AppliedExclusion]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 UTC strings, the ratio as a float."""

        def window(w: Window) -> dict[str, Any]:
            return {"start": w.start.isoformat(), "end": w.end.isoformat(),
                    "seconds": w.seconds, "state": w.state, "cause": w.cause}

        return {
            "planned_s": self.planned_s,
            "excluded_s": self.excluded_s,
            "counted_s": self.counted_s,
            "downtime_s": self.downtime_s,
            "unknown_s": self.unknown_s,
            "degraded_s": self.degraded_s,
            "available_s": self.available_s,
            "availability": self.availability,
            "target": self.target,
            "met": self.met,
            "error_budget_s": self.error_budget_s,
            "budget_left_s": self.budget_left_s,
            "unknown_policy": self.unknown_policy,
            "windows": [window(w) for w in self.windows],
            "unknown_windows": [window(w) for w in self.unknown_windows],
            "exclusions": [
                {"id": a.exclusion.id, "kind": a.exclusion.kind,
                 "start": a.exclusion.start.isoformat(), "end": a.exclusion.end.isoformat(),
                 "reason": a.exclusion.reason, "approved_by": a.exclusion.approved_by,
                 "seconds": a.seconds}
                for a in self.exclusions
            ],
        }


# --- interval lists ---------------------------------------------------------------------------

def normalize(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals merged. O(n log n); O(n) if sorted."""
    ordered = sorted(intervals, key=lambda i: i.start)
    return list(_merge_sorted(ordered))


def _merge_sorted(ordered: Iterable[Interval]) -> Iterator[Interval]:
    current: Interval | None = None
    for item in ordered:
        if current is None:
            current = item
        elif item.start <= current.end:
            if item.end > current.end:
                current = Interval(current.start, item.end)
        else:
            yield current
            current = item
    if current is not None:
        yield current


def _check_normalized(intervals: Sequence[Interval], name: str) -> None:
    for before, after in itertools.pairwise(intervals):
        if not before.end < after.start:
            raise ValueError(f"{name} is not normalized (sorted, disjoint, not touching): "
                             f"{before} then {after}; pass it through normalize()")


def union(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """a ∪ b for normalized lists, O(n + m)."""
    _check_normalized(a, "a")
    _check_normalized(b, "b")
    return list(_merge_sorted(heapq.merge(a, b, key=lambda i: i.start)))


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """a ∩ b for normalized lists, O(n + m); the result is normalized."""
    _check_normalized(a, "a")
    _check_normalized(b, "b")
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i].start, b[j].start)
        end = min(a[i].end, b[j].end)
        if start < end:
            out.append(Interval(start, end))
        # advance whichever ends first; the other may still overlap the next one
        if a[i].end <= b[j].end:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """a − b for normalized lists, O(n + m); the result is normalized."""
    _check_normalized(a, "a")
    _check_normalized(b, "b")
    out: list[Interval] = []
    j = 0
    for item in a:
        cursor = item.start
        while j < len(b) and b[j].end <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k].start < item.end:
            if b[k].start > cursor:
                out.append(Interval(cursor, b[k].start))
            cursor = max(cursor, b[k].end)
            if b[k].end > item.end:
                break  # b[k] may also cut the next interval of a
            k += 1
        j = k
        if cursor < item.end:
            out.append(Interval(cursor, item.end))
    return out


def clip(intervals: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The part of a normalized list inside [start, end)."""
    if _utc(start, "start") >= _utc(end, "end"):
        return []
    return intersect(intervals, [Interval(start, end)])


def total(intervals: Iterable[Interval]) -> timedelta:
    """Sum of durations (exact: timedelta arithmetic)."""
    return sum((i.end - i.start for i in intervals), timedelta())


# --- the figure -------------------------------------------------------------------------------

def exact_ratio(value: float | int | str | Decimal | Fraction) -> Fraction:
    """A target as the exact decimal a person wrote: 0.995 -> 199/200 (not the binary float)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(repr(value))  # shortest decimal that round-trips: what was written
    return Fraction(value)


def allowed_downtime_s(planned: Iterable[Interval], exclusions: Iterable[Exclusion],
                       target: float | str | Decimal | Fraction) -> float:
    """Error budget for a period: (1 − target) × (planned − excluded), in seconds.

    For "downtime left this year", pass the whole year's planned time and the exclusions known
    so far, and subtract the year-to-date `downtime_s` (future time has no data yet, so
    `compute_availability` over the whole year would count it as unknown).
    """
    planned_n = normalize(planned)
    counted = subtract(planned_n, normalize(e.interval for e in exclusions))
    budget = (1 - exact_ratio(target)) * (total(counted) // _US)
    return float(budget / 1_000_000)


def _label(states: Sequence[StateInterval],
           counted: Sequence[Interval]) -> Iterator[tuple[datetime, datetime, State, str]]:
    """Cover `counted` exactly with (start, end, state, cause) pieces; gaps are unknown."""
    i = 0
    for c in counted:
        cursor = c.start
        while i < len(states) and states[i].end <= cursor:
            i += 1
        while i < len(states) and states[i].start < c.end:
            s = states[i]
            if s.start > cursor:
                yield cursor, s.start, "unknown", NO_DATA
                cursor = s.start
            end = min(s.end, c.end)
            yield cursor, end, s.state, s.cause
            cursor = end
            if s.end > c.end:
                break  # the state goes on into the next counted interval
            i += 1
        if cursor < c.end:
            yield cursor, c.end, "unknown", NO_DATA


def _sorted_states(states: Iterable[StateInterval]) -> list[StateInterval]:
    ordered = sorted(states, key=lambda s: s.start)
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise ValueError(
                f"state intervals overlap: {before.state} {before.start.isoformat()}–"
                f"{before.end.isoformat()} and {after.state} {after.start.isoformat()}–"
                f"{after.end.isoformat()}")
    return ordered


def _append_window(windows: list[Window], start: datetime, end: datetime, state: State,
                   cause: str) -> None:
    last = windows[-1] if windows else None
    if last is not None and last.end == start and last.state == state and last.cause == cause:
        windows[-1] = Window(last.start, end, seconds(end - last.start), state, cause)
    else:
        windows.append(Window(start, end, seconds(end - start), state, cause))


def _applied(exclusions: Sequence[Exclusion],
             planned: Sequence[Interval]) -> list[AppliedExclusion]:
    # prefix sums over planned time make each exclusion's overlap O(log n)
    starts = [p.start for p in planned]
    prefix = [0]
    for p in planned:
        prefix.append(prefix[-1] + (p.end - p.start) // _US)

    def before(t: datetime) -> int:
        k = bisect_right(starts, t)
        if k == 0:
            return 0
        last = planned[k - 1]
        return prefix[k - 1] + (min(last.end, t) - last.start) // _US

    return [AppliedExclusion(e, (before(e.end) - before(e.start)) / 1_000_000)
            for e in sorted(exclusions, key=lambda e: (e.start, e.end))]


def compute_availability(
    states: Iterable[StateInterval],
    planned: Iterable[Interval],
    exclusions: Iterable[Exclusion],
    unknown_policy: UnknownPolicy,
    target: float | str | Decimal | Fraction,
) -> AvailabilityReport:
    """Availability over planned time (see the module docstring for the formulas).

    `planned` is the period's planned time (any order; `planned_intervals` gives it sorted and
    clipped to the period); time of the period outside it does not count at all. `states` must
    not overlap one another (any order); planned time they do not cover is unknown (`no_data`).
    Exclusions may overlap; their union counts once. Linear in the number of intervals after
    sorting.
    """
    if unknown_policy not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown_policy {unknown_policy!r} is not one of "
                         f"{', '.join(UNKNOWN_POLICIES)}")
    target_exact = exact_ratio(target)
    if not 0 <= target_exact <= 1:
        raise ValueError(f"target {target} must be between 0 and 1")
    exclusions = list(exclusions)
    planned_n = normalize(planned)
    excluded_n = intersect(planned_n, normalize(e.interval for e in exclusions))
    counted = subtract(planned_n, excluded_n)

    us: dict[State, int] = dict.fromkeys(STATES, 0)
    windows: list[Window] = []
    unknown_windows: list[Window] = []
    for start, end, state, cause in _label(_sorted_states(states), counted):
        us[state] += (end - start) // _US
        if state == "unknown":
            _append_window(unknown_windows, start, end, state, cause)
        if state == "down" or (state == "unknown" and unknown_policy == "down"):
            _append_window(windows, start, end, state, cause)

    up, degraded, down, unknown = us["up"], us["degraded"], us["down"], us["unknown"]
    counted_us = up + degraded + down + unknown
    if unknown_policy == "down":
        downtime, available = down + unknown, up + degraded
    elif unknown_policy == "up":
        downtime, available = down, up + degraded + unknown
    else:
        downtime, available = down, up + degraded
        counted_us -= unknown
    ratio = Fraction(available, counted_us) if counted_us else None
    budget = (1 - target_exact) * counted_us

    return AvailabilityReport(
        planned_s=seconds(total(planned_n)),
        excluded_s=seconds(total(excluded_n)),
        counted_s=counted_us / 1_000_000,
        downtime_s=downtime / 1_000_000,
        unknown_s=unknown / 1_000_000,
        degraded_s=degraded / 1_000_000,
        available_s=available / 1_000_000,
        availability=float(ratio) if ratio is not None else None,
        availability_exact=ratio,
        target=float(target_exact),
        met=ratio >= target_exact if ratio is not None else None,
        error_budget_s=float(budget / 1_000_000),
        budget_left_s=float((budget - downtime) / 1_000_000),
        unknown_policy=unknown_policy,
        windows=windows,
        unknown_windows=unknown_windows,
        exclusions=_applied(exclusions, planned_n),
    )
