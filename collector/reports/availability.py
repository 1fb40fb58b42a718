"""The availability report (系统可用率报告): per system planned, excluded, down, unknown and
available time, the ratio against the target, the error budget, every down window and every
exclusion with its reason and approver, and a daily strip.

The per-system figures are what `Systems.availability` answers for the same period (the API's
`/api/v1/availability`): the same `Systems.timeline`, `planned_intervals`, maintenance windows
and `compute_availability`, composed here so that each system's timeline is read once for
both the yearly figure and its strip (tests check both against the API's answer).

The strip's daily cells split that one computation at local midnights: counted time, down
windows and unknown windows of the period, each cut into days. A cell is therefore exactly
what `compute_availability` gives over that day alone (the intervals are the same sets; sums
are whole microseconds), the cells add up to the yearly figure, and a year costs one
computation instead of 365.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from collector.availability import (
    AvailabilityReport,
    Exclusion,
    Interval,
    UnknownPolicy,
    compute_availability,
    intersect,
    normalize,
    subtract,
)
from collector.config import SystemConfig
from collector.reports.context import Context
from collector.reports.model import DayCell, Figure, Report, Strip, Table
from collector.schedule import planned_intervals

_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class SystemFigures:
    system: SystemConfig
    report: AvailabilityReport


@dataclass
class AvailabilitySection:
    figures: list[SystemFigures]
    summary: list[Figure]
    tables: list[Table]
    strips: list[Strip]


async def availability_section(ctx: Context, *, strips: bool = True) -> AvailabilitySection:
    figures: list[SystemFigures] = []
    drawn: list[Strip] = []
    days = local_days(ctx.start, ctx.end, ctx.config.zone)
    for system in ctx.systems:
        report, counted = await system_availability(ctx, system)
        figures.append(SystemFigures(system, report))
        if strips:
            drawn.append(Strip(system=system.id, name=system.name, target=system.target,
                               days=daily_cells(report, counted, days)))
    systems = ctx.table("systems", [
        ("system", "text"), ("name", "text"), ("core", "bool"), ("planned_s", "seconds"),
        ("excluded_s", "seconds"), ("counted_s", "seconds"), ("downtime_s", "seconds"),
        ("unknown_s", "seconds"), ("degraded_s", "seconds"), ("available_s", "seconds"),
        ("availability", "ratio"), ("target", "ratio"), ("met", "bool"),
        ("error_budget_s", "seconds"), ("budget_left_s", "seconds"), ("down_windows", "int"),
        ("exclusions", "int")], [
        [f.system.id, f.system.name, f.system.core, r.planned_s, r.excluded_s, r.counted_s,
         r.downtime_s, r.unknown_s, r.degraded_s, r.available_s, r.availability, r.target,
         r.met, r.error_budget_s, r.budget_left_s, len(r.windows), len(r.exclusions)]
        for f in figures for r in [f.report]])
    windows = ctx.table("down_windows", [
        ("system", "text"), ("start", "datetime"), ("end", "datetime"), ("seconds", "seconds"),
        ("state", "text"), ("cause", "text")], [
        [f.system.id, w.start, w.end, w.seconds, ctx.t(f"state.{w.state}"), w.cause]
        for f in figures for w in f.report.windows])
    exclusions = ctx.table("exclusions", [
        ("system", "text"), ("id", "text"), ("kind", "text"), ("start", "datetime"),
        ("end", "datetime"), ("seconds", "seconds"), ("reason", "text"),
        ("approved_by", "text")], [
        [f.system.id, str(a.exclusion.id), ctx.t(f"excl.{a.exclusion.kind}"), a.exclusion.start,
         a.exclusion.end, a.seconds, a.exclusion.reason, a.exclusion.approved_by]
        for f in figures for a in f.report.exclusions])
    core = [f for f in figures if f.system.core]
    summary = [
        Figure("systems", ctx.t("sum.systems"), "int", len(figures)),
        Figure("core_systems", ctx.t("sum.core_systems"), "int", len(core)),
        Figure("core_met", ctx.t("sum.core_met"), "int", sum(1 for f in core if f.report.met)),
    ]
    return AvailabilitySection(figures, summary, [systems, windows, exclusions], drawn)


async def system_availability(ctx: Context, system: SystemConfig
                              ) -> tuple[AvailabilityReport, list[Interval]]:
    """`Systems.availability` over the report's period, and the counted time it was over
    (planned minus excluded, normalized) for cutting into days. One read of the timeline."""
    start, end = ctx.start, max(ctx.start, min(ctx.end, ctx.now))
    states = await ctx.reader.timeline(system, start, end, ctx.now)
    planned = planned_intervals(system.schedule, ctx.reader.calendar, ctx.config.zone, start,
                                end)
    windows = await ctx.store.maintenance_windows(system=system.id, start=start, end=end)
    exclusions = [Exclusion(start=w.start, end=w.end, kind=w.kind,  # type: ignore[arg-type]
                            reason=w.reason, approved_by=w.approved_by, id=str(w.id))
                  for w in windows]
    report = compute_availability(states, planned, exclusions, system.unknown_counts_as,
                                  system.target)
    return report, counted_time(planned, exclusions)


def counted_time(planned: Iterable[Interval], exclusions: Iterable[Exclusion]
                 ) -> list[Interval]:
    """Planned time less the exclusions' union: what `compute_availability` counts."""
    planned_n = normalize(planned)
    return subtract(planned_n, intersect(planned_n, normalize(e.interval for e in exclusions)))


@dataclass(frozen=True)
class Days:
    """The local days touching a period and their edges in UTC: day k is
    [edges[k], edges[k + 1]), the first clipped to the period's start, the last to its end."""

    days: list[date]
    edges: list[datetime]


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> Days:
    """The local days of [start, end) in `zone` (a day has 23 or 25 hours across DST)."""
    days: list[date] = []
    edges: list[datetime] = []
    day = start.astimezone(zone).date()
    while True:
        begin = max(start, datetime.combine(day, time(), zone))
        if begin >= end:
            break
        days.append(day)
        edges.append(begin.astimezone(UTC))
        day += timedelta(days=1)
    return Days(days, [*edges, end.astimezone(UTC)] if days else [])


def _per_day(spans: Iterable[tuple[datetime, datetime]], edges: Sequence[datetime]) -> list[int]:
    """Whole microseconds of sorted, disjoint `spans` inside each [edges[k], edges[k + 1])."""
    out = [0] * (len(edges) - 1)
    for start, end in spans:
        k = max(0, bisect_right(edges, start) - 1)
        while k < len(out) and edges[k] < end:
            piece = min(end, edges[k + 1]) - max(start, edges[k])
            if piece > timedelta():
                out[k] += piece // _US
            k += 1
    return out


def daily_cells(report: AvailabilityReport, counted: Sequence[Interval], days: Days
                ) -> list[DayCell]:
    """`report` cut into `days`: per day the counted, down and unknown time inside it,
    combined by the report's unknown policy as `compute_availability` combines them over the
    whole period. `counted` is the time the report counted (`counted_time`)."""
    counted_us = _per_day(((c.start, c.end) for c in counted), days.edges)
    down_us = _per_day(((w.start, w.end) for w in report.windows if w.state == "down"),
                       days.edges)
    unknown_us = _per_day(((w.start, w.end) for w in report.unknown_windows), days.edges)
    return [_cell(day, report.unknown_policy, c, d, u)
            for day, c, d, u in zip(days.days, counted_us, down_us, unknown_us, strict=True)]


def _cell(day: date, policy: UnknownPolicy, counted: int, down: int, unknown: int) -> DayCell:
    if policy == "down":
        downtime, available = down + unknown, counted - down - unknown
    elif policy == "up":
        downtime, available = down, counted - down
    else:
        downtime, available = down, counted - down - unknown
        counted -= unknown
    ratio = Fraction(available, counted) if counted else None
    return DayCell(day=day, availability=float(ratio) if ratio is not None else None,
                   downtime_s=downtime / 1_000_000, counted_s=counted / 1_000_000)


async def availability_report(ctx: Context) -> Report:
    section = await availability_section(ctx)
    return ctx.report("availability", summary=section.summary, tables=section.tables,
                      strips=section.strips)
