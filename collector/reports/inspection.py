"""The monthly inspection report (月度巡检报告): per host over the period — CPU and memory
means and peaks, disk growth with a days-to-full forecast, certificate expiry, database job
failures, backup freshness, middleware and service health — plus the patch state, open
findings and incidents, and a list of what needs action.

Resource figures come from the raw results' metrics, which the collector keeps for its
retention (35 days by default: a month always fits); the hourly roll-ups keep status counts
only. Days to full is a least-squares line through the filesystem's used bytes over the
period, extended until it meets the filesystem's size: a forecast, labelled as one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector.reports.context import Context
from collector.reports.incidents import incidents_section
from collector.reports.model import Figure, Report
from collector.reports.patches import patches_section
from collector.schema import results

DB_KINDS = ("oracle", "postgres", "mysql")
MIDDLEWARE_KINDS = ("nginx", "tomcat", "weblogic", "systemd", "process", "winservice", "tcp",
                    "http")
JOB_REASONS = ("job_failed", "job_broken")
BACKUP_REASONS = ("backup_stale", "backup_failed", "backup_shrunk")
WANTED = ("host", "backup_files", *DB_KINDS, *MIDDLEWARE_KINDS)
DISK_WARN_DAYS = 30.0
CERT_WARN_DAYS = 30.0
PEAK_WARN = 0.9


@dataclass
class _Series:
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def peak(self) -> float | None:
        return max(self.values) if self.values else None


@dataclass
class _Disk:
    points: list[tuple[float, float]] = field(default_factory=list)
    """(unix time, used bytes)"""
    ratios: list[float] = field(default_factory=list)
    size: float = 0.0
    free: float = 0.0


def growth_per_day(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of used bytes over time, in bytes per day."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    slope = sum((t - mean_t) * (y - mean_y) for t, y in points) / var
    return slope * 86400


def _metric(metrics: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in metrics if m.get("name") == name]


async def _results(ctx: Context, hosts: set[str] | None) -> list[Any]:
    query = (sa.select(results.c.agent_id, results.c.check_id, results.c.kind,
                       results.c.target, results.c.status, results.c.reason,
                       results.c.started_at, results.c.summary, results.c.metrics)
             .where(results.c.started_at >= ctx.start, results.c.started_at < ctx.end,
                    results.c.kind.in_(WANTED))
             .order_by(results.c.started_at))
    if hosts is not None:
        query = query.where(results.c.agent_id.in_(sorted(hosts)))
    async with ctx.store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def inspection_report(ctx: Context) -> Report:
    rows = await _results(ctx, await ctx.hosts())
    cpu: dict[str, _Series] = defaultdict(_Series)
    memory: dict[str, _Series] = defaultdict(_Series)
    disks: dict[tuple[str, str], _Disk] = defaultdict(_Disk)
    certs: dict[tuple[str, str], tuple[str, float]] = {}
    jobs: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    backups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    health: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    database: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for r in rows:
        metrics = r.metrics or []
        when = r.started_at.timestamp()
        if r.kind == "host":
            for m in _metric(metrics, "host_cpu_usage_ratio"):
                cpu[r.agent_id].values.append(float(m["value"]))
            for m in _metric(metrics, "host_memory_used_ratio"):
                memory[r.agent_id].values.append(float(m["value"]))
            by_mount: dict[str, dict[str, float]] = defaultdict(dict)
            for m in metrics:
                if str(m.get("name", "")).startswith("host_filesystem_"):
                    mount = (m.get("labels") or {}).get("mountpoint", "?")
                    by_mount[mount][m["name"]] = float(m["value"])
            for mount, values in by_mount.items():
                disk = disks[(r.agent_id, mount)]
                if "host_filesystem_used_bytes" in values:
                    disk.points.append((when, values["host_filesystem_used_bytes"]))
                if "host_filesystem_used_ratio" in values:
                    disk.ratios.append(values["host_filesystem_used_ratio"])
                disk.size = values.get("host_filesystem_size_bytes", disk.size)
                disk.free = values.get("host_filesystem_free_bytes", disk.free)
        if r.kind == "http":
            for m in _metric(metrics, "http_tls_cert_not_after_timestamp_seconds"):
                certs[(r.agent_id, r.check_id)] = (r.target, float(m["value"]))
        if r.kind in DB_KINDS and r.reason in JOB_REASONS:
            jobs[(r.agent_id, r.check_id, r.kind)].append(r)
        if r.kind == "backup_files":
            backups[(r.agent_id, r.check_id, r.kind)].append(r)
        elif r.kind in DB_KINDS:
            database[(r.agent_id, r.check_id, r.kind)].append(r)
        if r.kind in MIDDLEWARE_KINDS:
            health[(r.agent_id, r.check_id, r.kind)].append(r)
    # a database check that reported a backup problem in the period is a backup check too:
    # its results say when the backup was fine and whether it is at the end
    for key, series in database.items():
        if any(r.reason in BACKUP_REASONS for r in series):
            backups[key] = series

    actions: list[str] = []
    hosts = sorted(set(cpu) | set(memory))
    resources = ctx.table("resources", [
        ("host", "text"), ("cpu_mean", "ratio"), ("cpu_peak", "ratio"),
        ("memory_mean", "ratio"), ("memory_peak", "ratio"), ("samples", "int")], [
        [h, cpu[h].mean, cpu[h].peak, memory[h].mean, memory[h].peak,
         max(len(cpu[h].values), len(memory[h].values))] for h in hosts])
    for h in hosts:
        for what, use in (("CPU", cpu[h]), ("memory" if ctx.lang == "en" else "内存",
                                             memory[h])):
            if use.peak is not None and use.peak >= PEAK_WARN:
                actions.append(ctx.t("act.peak", host=h, what=what,
                                     value=f"{use.peak * 100:.1f} %"))

    disk_rows = []
    for (host, mount), disk in sorted(disks.items()):
        growth = growth_per_day(disk.points)
        days = disk.free / growth if growth and growth > 0 else None
        disk_rows.append([host, mount, disk.ratios[0] if disk.ratios else None,
                          disk.ratios[-1] if disk.ratios else None,
                          max(disk.ratios) if disk.ratios else None, growth, disk.free, days])
        if days is not None and days <= DISK_WARN_DAYS:
            actions.append(ctx.t("act.disk", host=host, mountpoint=mount, days=f"{days:.0f}",
                                 used=f"{disk.ratios[-1] * 100:.1f} %" if disk.ratios
                                 else "?"))
    disk_table = ctx.table("disks", [
        ("host", "text"), ("mountpoint", "text"), ("used_first", "ratio"),
        ("used_last", "ratio"), ("used_peak", "ratio"), ("growth_per_day", "number"),
        ("free_bytes", "number"), ("days_to_full", "number")], disk_rows)

    cert_rows = []
    for (host, check), (target, not_after) in sorted(certs.items()):
        expires = datetime.fromtimestamp(not_after, UTC)
        days_left = (expires - ctx.end).total_seconds() / 86400
        cert_rows.append([host, check, target, expires, days_left])
        if days_left <= CERT_WARN_DAYS:
            actions.append(ctx.t("act.cert", host=host, target=target,
                                 days=f"{max(days_left, 0):.0f}"))
    cert_table = ctx.table("certificates", [
        ("host", "text"), ("check", "text"), ("target_url", "text"),
        ("not_after", "datetime"), ("days_left", "number")], cert_rows)

    job_rows = []
    for (host, check, kind), failing in sorted(jobs.items()):
        last = failing[-1]
        job_rows.append([host, check, kind, len(failing), last.started_at, last.summary])
        actions.append(ctx.t("act.job", host=host, check=check, n=len(failing)))
    job_table = ctx.table("jobs", [
        ("host", "text"), ("check", "text"), ("kind", "text"), ("failures", "int"),
        ("last_failure", "datetime"), ("summary", "text")], job_rows)
    job_table.note = ("Results reporting a failed or broken job." if ctx.lang == "en"
                      else "报告作业失败或损坏的检查结果数。")

    backup_rows = []
    for (host, check, kind), series in sorted(backups.items()):
        last = series[-1]
        ok = [r for r in series if r.status == "ok"]
        last_ok = ok[-1].started_at if ok else None
        failures = sum(1 for r in series if r.status != "ok")
        backup_rows.append([host, check, kind, last_ok,
                            (ctx.end - last_ok).total_seconds() if last_ok else None,
                            failures, last.status])
        if last.status != "ok":
            actions.append(ctx.t("act.backup", host=host, check=check, summary=last.summary))
    backup_table = ctx.table("backups", [
        ("host", "text"), ("check", "text"), ("kind", "text"), ("last_ok", "datetime"),
        ("age_s", "seconds"), ("failures", "int"), ("last_status", "text")], backup_rows)

    health_rows = []
    for (host, check, kind), checked in sorted(health.items()):
        fine = sum(1 for r in checked if r.status == "ok")
        health_rows.append([host, check, kind, len(checked), fine / len(checked),
                            sum(1 for r in checked if r.status == "critical"),
                            checked[-1].status])
    health_table = ctx.table("middleware", [
        ("host", "text"), ("check", "text"), ("kind", "text"), ("results", "int"),
        ("ok_ratio", "ratio"), ("critical", "int"), ("last_status", "text")], health_rows)

    patches = await patches_section(ctx)
    risky: dict[str, int] = defaultdict(int)
    for f in patches.open_at_end:
        if f["severity"] == "critical" or (f["data"] or {}).get("kev"):
            risky[f["host"]] += 1
    for host, n in sorted(risky.items()):
        actions.append(ctx.t("act.finding", host=host, n=n))
    incidents = await incidents_section(ctx)
    for i in incidents.incidents:
        if i.recovered_at is None or (i.report_by is not None
                                      and i.report_submitted_at is None):
            actions.append(ctx.t("act.incident", number=i.number, system=i.system))

    summary = [
        Figure("hosts", ctx.t("sum.hosts"), "int", len(set(hosts) | {k[0] for k in disks})),
        Figure("actions", ctx.t("sum.actions"), "int", len(actions)),
        *patches.summary[1:4], *incidents.summary[:2],
    ]
    tables = [resources, disk_table, cert_table, job_table, backup_table, health_table,
              patches.tables[0], patches.tables[1], incidents.tables[0]]
    return ctx.report("inspection", summary=summary, tables=tables, actions=actions)
