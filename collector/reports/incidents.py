"""The incidents report (故障事件与响应时效): every incident opened in the period with its
opened / responded / recovered / reported times against their deadlines, the overtimes, and
the service year's overtime counts against the major-breach thresholds.

An overtime is a row of `incident_overtimes`, counted by `IncidentService` (one per missed
deadline); this module reads those rows and never decides an overtime itself. The service
year's counts are `IncidentService.overtime_counts`, the same figure /metrics shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from collector.incidents import Incident
from collector.reports.context import Context
from collector.reports.model import Figure, Report, Table
from collector.schema import incident_overtimes, incidents

LEVELS = (1, 2, 3, 4)


@dataclass
class IncidentsSection:
    incidents: list[Incident]
    year_counts: dict[int, int]
    year_start: datetime
    breach: bool
    summary: list[Figure]
    tables: list[Table]


async def _incidents(ctx: Context) -> list[Incident]:
    columns = [incidents.c[f.name] for f in fields(Incident)]
    query = (sa.select(*columns)
             .where(incidents.c.opened_at >= ctx.start, incidents.c.opened_at < ctx.end)
             .order_by(incidents.c.opened_at, incidents.c.id))
    if ctx.limited:
        query = query.where(incidents.c.system.in_(sorted(ctx.system_ids)))
    async with ctx.store.engine.connect() as conn:
        return [Incident(*row) for row in (await conn.execute(query)).all()]


async def _overtimes(ctx: Context, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    query = (sa.select(incident_overtimes).where(incident_overtimes.c.incident_id.in_(ids))
             .order_by(incident_overtimes.c.due_at, incident_overtimes.c.id))
    async with ctx.store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


def _span(later: datetime | None, earlier: datetime) -> float | None:
    return (later - earlier).total_seconds() if later is not None else None


async def incidents_section(ctx: Context) -> IncidentsSection:
    found = await _incidents(ctx)
    overtimes = await _overtimes(ctx, [i.id for i in found])
    missed: dict[int, set[str]] = {}
    for row in overtimes:
        missed.setdefault(row["incident_id"], set()).add(row["deadline"])
    by_id = {i.id: i for i in found}
    rows = []
    for i in found:
        late = missed.get(i.id, set())
        rows.append([
            i.number, i.system, i.level, ctx.t(f"state.{i.state}"), i.title, i.cause,
            i.opened_at, i.respond_by, i.responded_at, "respond" in late,
            i.recover_by, i.recovered_at, "recover" in late,
            i.report_by, i.report_submitted_at, "report" in late,
            sum(1 for r in overtimes if r["incident_id"] == i.id),
            _span(i.responded_at, i.opened_at), _span(i.recovered_at, i.opened_at)])
    table = ctx.table("incidents", [
        ("number", "text"), ("system", "text"), ("level", "int"), ("state", "text"),
        ("title", "text"), ("cause", "text"), ("opened_at", "datetime"),
        ("respond_by", "datetime"), ("responded_at", "datetime"), ("respond_overtime", "bool"),
        ("recover_by", "datetime"), ("recovered_at", "datetime"), ("recover_overtime", "bool"),
        ("report_by", "datetime"), ("report_submitted_at", "datetime"),
        ("report_overtime", "bool"), ("overtimes", "int"), ("response_s", "seconds"),
        ("recovery_s", "seconds")], rows)
    overtime_table = ctx.table("overtimes", [
        ("number", "text"), ("system", "text"), ("level", "int"), ("deadline", "text"),
        ("due_at", "datetime"), ("met_at", "datetime"), ("reason", "text")], [
        [by_id[r["incident_id"]].number, by_id[r["incident_id"]].system, r["level"],
         ctx.t(f"deadline.{r['deadline']}"), r["due_at"], r["met_at"], r["reason"]]
        for r in overtimes])

    # the service year that holds the end of the period, counted by deadline as /metrics
    # counts it (`overtime_counts` has no upper bound: it is for the current year)
    at = ctx.end - timedelta(microseconds=1)
    year_start = ctx.incidents.year_start(at)
    local = year_start.astimezone(ctx.config.zone)
    year_end = local.replace(year=local.year + 1).astimezone(UTC)
    in_year = Counter(r["level"] for r in await ctx.incidents.overtimes(year_start, year_end))
    year_counts = {level: in_year[level] for level in LEVELS}
    thresholds = ctx.config.incidents.major_breach
    breaches = {level: level in thresholds and year_counts[level] >= thresholds[level]
                for level in LEVELS}
    year_table = ctx.table("overtime_year", [
        ("level", "int"), ("year_start", "datetime"), ("overtimes", "int"),
        ("threshold", "int"), ("breach", "bool")], [
        [level, year_start, year_counts[level], thresholds.get(level),
         breaches[level] if level in thresholds else None] for level in LEVELS])
    opened = Counter(i.level for i in found)
    late_by_level = Counter(r["level"] for r in overtimes)
    by_level = ctx.table("by_level", [("level", "int"), ("incidents", "int"),
                                      ("overtimes", "int")],
                         [[level, opened[level], late_by_level[level]] for level in LEVELS])
    breach = any(breaches.values())
    summary = [
        Figure("incidents", ctx.t("sum.incidents"), "int", len(found)),
        Figure("overtimes", ctx.t("sum.overtimes"), "int", len(overtimes)),
        Figure("year_overtimes_1", ctx.t("sum.year_overtimes_1"), "int", year_counts[1]),
        Figure("year_overtimes_2", ctx.t("sum.year_overtimes_2"), "int", year_counts[2]),
        Figure("major_breach", ctx.t("sum.major_breach"), "bool", breach),
    ]
    return IncidentsSection(found, year_counts, year_start, breach, summary,
                            [table, overtime_table, year_table, by_level])


async def incidents_report(ctx: Context) -> Report:
    section = await incidents_section(ctx)
    return ctx.report("incidents", summary=section.summary, tables=section.tables)
