"""The annual acceptance pack (年度运维服务报告): availability, incidents and the security audit
for the service year, routine-task evidence, and the contract's objective indicators
(REQUIREMENTS.md §5) each with met / not met.

Every indicator's actual value is a figure of one of the sections, not a new computation:
core availability from `Systems.availability`, overtime counts from `incident_overtimes`,
rectification completion and open KEV findings from the patches section. What wardwatch holds
no evidence for (inspections, drills) is listed with met = none, never guessed.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from collector.reports.availability import availability_section
from collector.reports.context import Context
from collector.reports.incidents import incidents_section
from collector.reports.model import Figure, Report, Table
from collector.reports.patches import patches_section
from collector.reports.precision import percent_text, places_needed
from collector.schema import results, results_hourly

BACKUP_KINDS = ("backup_files",)


async def backup_evidence(ctx: Context) -> list[list[Any]]:
    """Per backup check: results in the period and how many were ok (raw results within the
    retention, hourly roll-ups before it)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    rolled = (sa.select(results_hourly.c.agent_id, results_hourly.c.check_id,
                        sa.func.sum(results_hourly.c.results), sa.func.sum(results_hourly.c.ok))
              .where(results_hourly.c.kind.in_(BACKUP_KINDS),
                     results_hourly.c.hour >= ctx.start, results_hourly.c.hour < ctx.end)
              .group_by(results_hourly.c.agent_id, results_hourly.c.check_id))
    raw = (sa.select(results.c.agent_id, results.c.check_id, sa.func.count(),
                     sa.func.sum(sa.case((results.c.status == "ok", 1), else_=0)))
           .where(results.c.kind.in_(BACKUP_KINDS), results.c.started_at >= ctx.start,
                  results.c.started_at < ctx.end)
           .group_by(results.c.agent_id, results.c.check_id))
    wanted = await ctx.hosts()
    async with ctx.store.engine.connect() as conn:
        for query in (rolled, raw):
            for agent, check, total, ok in (await conn.execute(query)).all():
                if wanted is None or agent in wanted:
                    counts[(agent, check)][0] += int(total or 0)
                    counts[(agent, check)][1] += int(ok or 0)
    return [[ctx.t("task.backups"), f"{agent}/{check}", total, ok,
             ok / total if total else None]
            for (agent, check), (total, ok) in sorted(counts.items())]


async def annual_report(ctx: Context) -> Report:
    availability = await availability_section(ctx)
    incidents = await incidents_section(ctx)
    patches = await patches_section(ctx)
    backups = await backup_evidence(ctx)
    tasks = ctx.table("tasks", [("task", "text"), ("check", "text"), ("expected", "int"),
                                ("done", "int"), ("ratio", "ratio")], backups)

    rows: list[list[Any]] = []
    for f in availability.figures:
        if not f.system.core:
            continue
        r = f.report
        # truncated, with at least the target's decimals: 1 s short of 99.5 % is "99.499 %"
        places = max(3, places_needed(Decimal(repr(r.target))))
        exact = r.availability_exact if r.availability_exact is not None else r.availability
        rows.append([ctx.t("obj.availability"), f"{f.system.id} {f.system.name}".strip(),
                     ctx.t("req.availability", target=f"{r.target * 100:g} %"),
                     "—" if exact is None else percent_text(exact, places),
                     r.availability, r.met, ctx.t("ev.availability")])
    thresholds = ctx.config.incidents.major_breach
    for level in (1, 2):
        if level not in thresholds:
            continue
        count = incidents.year_counts[level]
        rows.append([ctx.t(f"obj.overtime_{level}"), "",
                     ctx.t("req.overtime", threshold=thresholds[level]), str(count), count,
                     count < thresholds[level], ctx.t("ev.overtime")])
    ratio = patches.completion_ratio
    rows.append([ctx.t("obj.rectification"), "", ctx.t("req.rectification"),
                 "—" if ratio is None else
                 f"{percent_text(Fraction(patches.tasks_on_time, patches.tasks_due), 1)} "
                 f"({patches.tasks_on_time}/{patches.tasks_due})",
                 ratio, None if ratio is None else ratio == 1, ctx.t("ev.rectification")])
    kev = sum(1 for f in patches.open_at_end if (f["data"] or {}).get("kev"))
    rows.append([ctx.t("obj.kev"), "", ctx.t("req.zero"), str(kev), kev, kev == 0,
                 ctx.t("ev.kev")])
    total = sum(row[2] for row in backups)
    ok = sum(row[3] for row in backups)
    rows.append([ctx.t("obj.backups"), "", ctx.t("req.backups"),
                 "—" if not total else f"{percent_text(Fraction(ok, total))} ({ok}/{total})",
                 ok / total if total else None, (ok == total) if total else None,
                 ctx.t("ev.backups")])
    for key in ("inspections", "drills"):
        rows.append([ctx.t(f"obj.{key}"), "", "100 %", "—", None, None,
                     ctx.t("ev.not_recorded")])
    objectives = ctx.table("objectives", [
        ("indicator", "text"), ("scope", "text"), ("requirement", "text"),
        ("actual_text", "text"), ("actual", "number"), ("met", "bool"), ("evidence", "text")],
        rows)
    judged = [row for row in rows if row[5] is not None]
    met = sum(1 for row in judged if row[5])
    actions = [f"{row[0]} {row[1]}: {row[3]}".replace("  ", " ")
               for row in judged if not row[5]]
    summary = [
        Figure("objectives", ctx.t("sum.objectives"), "int", len(rows)),
        Figure("objectives_met", ctx.t("sum.objectives_met"), "int", met),
        Figure("objectives_not_met", ctx.t("sum.objectives_not_met"), "int",
               len(judged) - met),
        *availability.summary, *incidents.summary, *patches.summary,
    ]
    tables: list[Table] = [objectives, *availability.tables, *incidents.tables,
                           *patches.tables, tasks]
    return ctx.report("annual", summary=summary, tables=tables, strips=availability.strips,
                      actions=actions)
