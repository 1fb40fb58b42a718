"""The security patch audit (安全补丁与整改审计): per host, the findings open at some time in
the period with severity, first seen, fixed, time to fix, KEV mark, waiver and 等保 clauses;
the state at the end of the period; the rectification tasks due in the period with their
completion; the accepted risks.

Findings, waivers and tasks are read through `FindingsService` (the API's code): a finding is
fixed only when a later scan no longer showed it, a task completed only when each of its
findings is. Completion over the period follows `FindingsService.completion`: tasks due in the
period (and due by now, or completed) count; completed on time over those is the ratio.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.findings import SEVERITIES
from collector.reports.context import Context
from collector.reports.model import Figure, Report, Table
from collector.schema import findings as findings_table


@dataclass
class PatchesSection:
    open_at_end: list[dict[str, Any]]
    tasks_due: int
    tasks_on_time: int
    completion_ratio: float | None
    summary: list[Figure]
    tables: list[Table]


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def patches_section(ctx: Context) -> PatchesSection:
    at = ctx.end   # the state "at the end of the period": waivers in force then, findings open
    async with ctx.store.engine.connect() as conn:
        hosts = sorted(set((await conn.execute(
            sa.select(findings_table.c.host).distinct()
            .where(findings_table.c.first_seen < ctx.end))).scalars()))
    fleet = {row["host"]: row for row in await ctx.findings.fleet(at)}
    wanted = await ctx.hosts()
    hosts = sorted((set(hosts) | set(fleet)) if wanted is None
                   else (set(hosts) | set(fleet)) & wanted)

    found = await _findings_in_period(ctx, hosts, at)
    open_at_end = [f for f in found if f["fixed"] is None or f["fixed"] >= ctx.end]
    fixed_in_period = [f for f in found if f["fixed"] is not None and f["fixed"] < ctx.end]

    findings = ctx.table("findings", [
        ("host", "text"), ("key", "text"), ("kind", "text"), ("title", "text"),
        ("severity", "text"), ("kev", "bool"), ("first_seen", "datetime"),
        ("fixed_at", "datetime"), ("time_to_fix_s", "seconds"), ("state", "text"),
        ("waiver", "text"), ("dengbao", "text")], [
        [f["host"], f["key"], f["kind"], f["title"], f["severity"],
         bool((f["data"] or {}).get("kev")), f["first"],
         f["fixed"] if f["fixed"] is not None and f["fixed"] < ctx.end else None,
         f["time_to_fix_s"] if f["fixed"] is not None and f["fixed"] < ctx.end else None,
         ctx.t("state.fixed") if f["fixed"] is not None and f["fixed"] < ctx.end
         else ctx.t("state.open"),
         _waiver(f["waiver"]), "; ".join((f["data"] or {}).get("dengbao") or [])]
        for f in found])

    host_rows = []
    for host in hosts:
        mine = [f for f in open_at_end if f["host"] == host]
        counted = [f for f in mine if f["waiver"] is None]
        severity = Counter(f["severity"] for f in counted)
        inventory = (fleet.get(host) or {}).get("inventory") or {}
        os_info = inventory.get("os") or {}
        kernel = inventory.get("kernel") or {}
        host_rows.append([
            host, " ".join(str(os_info.get(k) or "") for k in ("name", "version")).strip(),
            kernel.get("running") if isinstance(kernel, dict) else None,
            inventory.get("reboot_required"),
            _at((fleet.get(host) or {}).get("collected_at")),
            *(severity[s] for s in SEVERITIES),
            sum(1 for f in counted if (f["data"] or {}).get("kev")),
            len(mine) - len(counted)])
    hosts_table = ctx.table("hosts", [
        ("host", "text"), ("os", "text"), ("kernel", "text"), ("reboot_required", "bool"),
        ("collected_at", "datetime"), *((s, "int") for s in SEVERITIES), ("kev", "int"),
        ("waived", "int")], host_rows)

    tasks = [t for t in await ctx.findings.rectifications(now=ctx.now)
             if ctx.start <= datetime.fromisoformat(t["due_at"]) < ctx.end]
    due = [t for t in tasks if datetime.fromisoformat(t["due_at"]) <= ctx.now
           or t["state"] == "completed"]
    on_time = sum(1 for t in due if t["on_time"])
    ratio = on_time / len(due) if due else None
    tasks_table = ctx.table("rectifications", [
        ("id", "int"), ("title", "text"), ("issued_by", "text"), ("issued_at", "datetime"),
        ("due_at", "datetime"), ("state", "text"), ("completed_at", "datetime"),
        ("on_time", "bool"), ("findings_fixed", "int"), ("findings_total", "int")], [
        [t["id"], t["title"], t["issued_by"], _at(t["issued_at"]), _at(t["due_at"]),
         ctx.t(f"state.{t['state']}"), _at(t["completed_at"]), t["on_time"],
         t["findings_fixed"], t["findings_total"]] for t in tasks])

    waivers = [w for w in await ctx.findings.waivers(include_expired=True)
               if w.created_at < ctx.end and w.expires_at > ctx.start
               and (wanted is None or any(h for h in hosts if _glob(w.host, h)))]
    waivers_table = ctx.table("waivers", [
        ("id", "int"), ("host", "text"), ("key", "text"), ("accepted_by", "text"),
        ("reason", "text"), ("expires_at", "datetime"), ("revoked_at", "datetime")], [
        [w.id, w.host, w.key, w.accepted_by, w.reason, w.expires_at, w.revoked_at]
        for w in waivers])

    open_counted = [f for f in open_at_end if f["waiver"] is None]
    summary = [
        Figure("hosts", ctx.t("sum.hosts"), "int", len(hosts)),
        Figure("open_findings", ctx.t("sum.open_findings"), "int", len(open_counted)),
        Figure("open_critical", ctx.t("sum.open_critical"), "int",
               sum(1 for f in open_counted if f["severity"] == "critical")),
        Figure("open_kev", ctx.t("sum.open_kev"), "int",
               sum(1 for f in open_counted if (f["data"] or {}).get("kev"))),
        Figure("fixed", ctx.t("sum.fixed"), "int", len(fixed_in_period)),
        Figure("tasks", ctx.t("sum.tasks"), "int", len(tasks)),
        Figure("tasks_due", ctx.t("sum.tasks_due"), "int", len(due)),
        Figure("tasks_on_time", ctx.t("sum.tasks_on_time"), "int", on_time),
        Figure("completion_ratio", ctx.t("sum.completion_ratio"), "ratio", ratio),
    ]
    return PatchesSection(open_counted, len(due), on_time, ratio, summary,
                          [hosts_table, findings, tasks_table, waivers_table])


async def _findings_in_period(ctx: Context, hosts: list[str], at: datetime
                              ) -> list[dict[str, Any]]:
    """Every finding of `hosts` open at some time in the period, host by host (in `hosts`'
    order) and by first seen, with the waiver covering it at `at`: what
    `FindingsService.host` lists for each host, filtered to the period, from one query
    instead of one per host."""
    query = (sa.select(findings_table.c.id, findings_table.c.host, findings_table.c.kind,
                       findings_table.c.key, findings_table.c.title, findings_table.c.severity,
                       findings_table.c.first_seen, findings_table.c.fixed_at,
                       findings_table.c.data)
             .where(findings_table.c.first_seen < ctx.end,
                    sa.or_(findings_table.c.fixed_at.is_(None),
                           findings_table.c.fixed_at >= ctx.start))
             .order_by(findings_table.c.first_seen, findings_table.c.id))
    if ctx.limited:
        query = query.where(findings_table.c.host.in_(hosts))
    active = await ctx.findings.waivers(now=at)
    by_host: dict[str, list[dict[str, Any]]] = {host: [] for host in hosts}
    async with ctx.store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    for row in rows:
        mine = by_host.get(row["host"])
        if mine is None:
            continue
        first, fixed = row["first_seen"], row["fixed_at"]
        waiver = next((w for w in active if w.covers(row["host"], row["key"], at)), None)
        mine.append({
            **row, "first": first, "fixed": fixed,
            "time_to_fix_s": (fixed - first).total_seconds() if fixed else None,
            "waiver": None if waiver is None else {
                "id": waiver.id, "accepted_by": waiver.accepted_by, "reason": waiver.reason,
                "expires_at": waiver.expires_at.isoformat()}})
    return [item for host in hosts for item in by_host[host]]


def _waiver(waiver: dict[str, Any] | None) -> str:
    if waiver is None:
        return ""
    return f"{waiver['accepted_by']}: {waiver['reason']} (→ {waiver['expires_at']})"


def _glob(pattern: str, host: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(host, pattern)


async def patches_report(ctx: Context) -> Report:
    section = await patches_section(ctx)
    return ctx.report("patches", summary=section.summary, tables=section.tables)
