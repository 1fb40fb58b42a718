"""Patch inventories and security findings, derived from the results of `patches` and
`hardening` checks as they arrive.

A `patches` result becomes an inventory snapshot of its host (OS, kernel, reboot flag,
pending updates; the package list when the agent sent it) and opens a finding per pending
*security* update (`update:<package>`); a `hardening` result opens a finding per failed check
(`hardening:<policy>.<check>`). A finding is fixed when a later result of the same check no
longer shows it — the scan verifies the fix, nobody's word does — and `fixed_at - first_seen`
is its time to fix. One open finding per host and key is a database constraint. Nothing is
ever deleted: this is the evidence of the contract's 100 % security remediation.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.advisories import Advisories, product_version, version_key
from collector.osv import OsvAdvisories, host_ecosystems
from collector.schema import findings, inventories, rectifications, waivers
from collector.store import Store, StoreError
from probes.result import CheckResult

log = logging.getLogger("wardwatch.collector.findings")

SEVERITIES = ("critical", "high", "medium", "low")
# repository and MSRC words on one scale
_SEVERITY = {"critical": "critical", "important": "high", "high": "high",
             "moderate": "medium", "medium": "medium", "low": "low"}


def _severity(value: Any, default: str = "medium") -> str:
    return _SEVERITY.get(str(value or "").strip().lower(), default)


def _mark_kev(found: dict[str, dict[str, Any]], kev: frozenset[str]) -> None:
    """Findings whose CVE (or an advisory id) is in CISA's KEV catalog: exploited in the wild."""
    for item in found.values():
        data = item["data"]
        ids = {data.get("cve")} | set(data.get("advisories") or [])
        data["kev"] = bool(ids & kev)


def _found_in(result: CheckResult) -> dict[str, dict[str, Any]] | None:
    """key -> finding of one result; None when the result cannot tell (the inventory could
    not read the pending updates), so that nothing is marked fixed on missing evidence."""
    details = result.details
    if result.kind == "patches":
        pending = details.get("pending")
        if not isinstance(pending, list):
            return None
        out: dict[str, dict[str, Any]] = {}
        for update in pending:
            if not isinstance(update, dict) or not update.get("security"):
                continue
            name = str(update.get("name", "?"))
            advisories = [str(a) for a in update.get("advisories") or []]
            out[f"update:{name}"] = {
                "kind": "update", "severity": _severity(update.get("severity"), "medium"),
                "title": f"{name} {update.get('current') or '?'} → {update.get('available')}",
                "data": {"package": name, "current": update.get("current"),
                         "available": update.get("available"), "advisories": advisories,
                         "repo": update.get("repo", "")}}
        return out
    if result.kind == "hardening":
        items = details.get("findings")
        if not isinstance(items, list):
            return None
        out = {}
        for item in items:
            if not isinstance(item, dict) or item.get("result") != "failed":
                continue
            key = f"hardening:{item.get('policy')}.{item.get('id')}"
            out[key] = {"kind": "hardening", "severity": _severity(item.get("severity")),
                        "title": str(item.get("title", key)),
                        "data": {k: item.get(k) for k in ("policy", "id", "evidence",
                                                          "remediation", "dengbao")}}
        return out
    return None


@dataclass(frozen=True)
class Waiver:
    id: int
    host: str
    key: str
    accepted_by: str
    reason: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None

    def covers(self, host: str, key: str, at: datetime) -> bool:
        return (self.revoked_at is None and at < self.expires_at
                and fnmatch.fnmatchcase(host, self.host) and fnmatch.fnmatchcase(key, self.key))


_IDS_PER_STATEMENT = 500
"""Ids per `IN (...)` list, well under SQLite's and PostgreSQL's bound-parameter limits."""

VERSIONED = ("nginx", "tomcat", "weblogic", "oracle", "postgres", "mysql")
"""Kinds whose results carry a product version, checked against the version rules."""


class FindingsService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.advisories = Advisories(store)
        self.osv = OsvAdvisories(store)
        self._versions_seen: dict[tuple[str, str], tuple[str, int]] = {}
        """(host, check) -> (version, rules in force): a middleware check reports every
        30 s; its version is matched again only when it or the rules change."""

    async def observe(self, results: Iterable[CheckResult]) -> int:
        """Record the inventories and findings these results carry; returns how many
        findings were opened or fixed."""
        changed = 0
        ordered = sorted(results, key=lambda r: r.started_at)
        for result in (r for r in ordered if r.kind in ("patches", "hardening")):
            _rules, kev = await self.advisories.in_force()
            async with self.store.transaction() as conn:
                if result.kind == "patches":
                    await self._inventory(conn, result)
                found = _found_in(result)
                if found is not None:
                    _mark_kev(found, kev)
                    kind = "update" if result.kind == "patches" else "hardening"
                    changed += await self._reconcile(conn, result, found, kind)
            if result.kind == "patches":
                changed += await self._osv(result, kev)
                changed += await self._oracle_homes(result)
        for result in (r for r in ordered if r.kind in VERSIONED):
            changed += await self._versions(result)
        return changed

    async def _oracle_homes(self, result: CheckResult) -> int:
        """The patch level `opatch lspatches` read in each configured Oracle home (WebLogic
        PSU, database RU: probes/inventory.py) against the version rules, one finding per
        rule and home (`vuln:<CVE>@<home>`). More exact than the WebLogic REST version,
        which stays 12.2.1.4.0 whatever PSU is installed. A home that could not be read
        leaves its findings as they were."""
        homes = result.details.get("oracle_homes")
        if not isinstance(homes, list) or not homes:
            return 0
        rules, kev = await self.advisories.in_force()
        readable = [h for h in homes if isinstance(h, dict) and not h.get("error")
                    and h.get("product") and h.get("version")]
        if len(readable) < len(homes):
            return 0   # a partial read must not mark the unread home's findings fixed
        seen = (repr(sorted((str(h["path"]), str(h["version"])) for h in readable)),
                self.advisories.generation)
        if self._versions_seen.get((result.agent_id, f"{result.check_id}#oracle")) == seen:
            return 0
        self._versions_seen[(result.agent_id, f"{result.check_id}#oracle")] = seen
        found: dict[str, dict[str, Any]] = {}
        for home in readable:
            product, text = str(home["product"]), str(home["version"])
            version = version_key(text)
            if version is None:
                continue
            for rule in rules:
                if rule.product == product and rule.affects(version):
                    found[f"vuln:{rule.cve}@{home['path']}"] = {
                        "kind": "vuln", "severity": rule.severity,
                        "title": f"{product} {text} ({home['path']}): {rule.cve} {rule.title} "
                                 f"(fixed in {rule.fixed_in_text})",
                        "data": {"product": product, "version": text, "cve": rule.cve,
                                 "fixed_in": rule.fixed_in_text, "oracle_home": home["path"],
                                 "patch_date": home.get("patch_date")}}
        _mark_kev(found, kev)
        async with self.store.transaction() as conn:
            return await self._reconcile(conn, result, found, "vuln")

    async def _versions(self, result: CheckResult) -> int:
        reported = product_version(result.kind, result.details)
        if reported is None:
            return 0
        product, text = reported
        rules, kev = await self.advisories.in_force()
        seen = (text, self.advisories.generation)
        if self._versions_seen.get((result.agent_id, result.check_id)) == seen:
            return 0
        self._versions_seen[(result.agent_id, result.check_id)] = seen
        version = version_key(text)
        if version is None:
            return 0
        found = {f"vuln:{rule.cve}": {
            "kind": "vuln", "severity": rule.severity,
            "title": f"{product} {text}: {rule.cve} {rule.title} (fixed in {rule.fixed_in_text})",
            "data": {"product": product, "version": text, "cve": rule.cve,
                     "fixed_in": rule.fixed_in_text}}
            for rule in rules if rule.product == product and rule.affects(version)}
        _mark_kev(found, kev)
        async with self.store.transaction() as conn:
            return await self._reconcile(conn, result, found, "vuln")

    async def _osv(self, result: CheckResult, kev: frozenset[str]) -> int:
        """Installed OS packages against the OSV bundles in force (collector/osv.py): a
        package in an affected range is an `osv:<ID>` finding, fixed by a later inventory
        whose version is out of every range."""
        host = host_ecosystems(result.details.get("os"))
        if host is None:
            return 0
        index = await self.osv.in_force()
        if not index.covers(host):
            return 0
        packages = await self.osv.packages_of(result.agent_id, result.check_id,
                                              result.details)
        if packages is None:        # no package list: nothing is shown fixed or found
            return 0
        found = index.findings(host, packages, _kernel_running(result.details.get("kernel")))
        _mark_kev(found, kev)
        async with self.store.transaction() as conn:
            return await self._reconcile(conn, result, found, "osv")

    async def match_osv(self) -> int:
        """Every host's newest inventory against the OSV bundles in force (after an import):
        opens the findings the new data shows; fixing one needs a later inventory."""
        _rules, kev = await self.advisories.in_force()
        index = await self.osv.in_force()
        opened = 0
        for inv in await self.osv.latest_inventories():
            host = host_ecosystems((inv["summary"] or {}).get("os"))
            if host is None or inv["packages"] is None or not index.covers(host):
                continue
            found = index.findings(host, inv["packages"],
                                   _kernel_running((inv["summary"] or {}).get("kernel")))
            _mark_kev(found, kev)
            async with self.store.transaction() as conn:
                opened += await self._reconcile_at(conn, inv["host"], inv["check_id"],
                                                   inv["collected_at"], found, "osv",
                                                   fix=False)
        return opened

    async def _inventory(self, conn: AsyncConnection, result: CheckResult) -> None:
        d = result.details
        pending = d.get("pending") if isinstance(d.get("pending"), list) else None
        summary = {
            "os": d.get("os"), "package_manager": d.get("package_manager"),
            "kernel": d.get("kernel"), "reboot_required": d.get("reboot_required"),
            "reboot_reasons": d.get("reboot_reasons"),
            "pending": None if pending is None else len(pending),
            "security_pending": None if pending is None
            else sum(1 for u in pending if isinstance(u, dict) and u.get("security")),
            "packages_count": d.get("packages_count"), "errors": d.get("errors"),
            "oracle_homes": [{k: h.get(k) for k in ("path", "product", "version",
                                                    "patch_date", "error")}
                             | {"patches": len(h.get("patches") or ())}
                             for h in d.get("oracle_homes") or () if isinstance(h, dict)],
            "status": result.status.value, "summary": result.summary}
        await conn.execute(self.store.insert_ignore(inventories).values(
            host=result.agent_id, check_id=result.check_id, result_id=str(result.id),
            collected_at=result.started_at, summary=summary,
            packages=d.get("packages") if isinstance(d.get("packages"), list) else None,
            packages_hash=d.get("packages_hash")))

    async def _reconcile(self, conn: AsyncConnection, result: CheckResult,
                         found: dict[str, dict[str, Any]], kind: str) -> int:
        return await self._reconcile_at(conn, result.agent_id, result.check_id,
                                        result.started_at, found, kind)

    async def _reconcile_at(self, conn: AsyncConnection, host: str, check_id: str,
                            at: datetime, found: dict[str, dict[str, Any]], kind: str, *,
                            fix: bool = True) -> int:
        open_rows = {row.key: row for row in (await conn.execute(
            sa.select(findings.c.id, findings.c.key, findings.c.last_seen).where(
                findings.c.host == host, findings.c.check_id == check_id,
                findings.c.kind == kind, findings.c.fixed_at.is_(None)))).all()}
        # a host's findings are written in a few multi-row statements, not one per finding:
        # a fresh OSV match opens ~1,000 at once, and one INSERT each cost ~0.7 ms
        again: dict[int, dict[str, Any]] = {}   # open and seen by a newer result
        fresh: list[dict[str, Any]] = []
        for key, item in found.items():
            row = open_rows.get(key)
            if row is None:
                fresh.append({"host": host, "check_id": check_id, "kind": item["kind"],
                              "key": key, "open_key": f"{host}|{key}", "title": item["title"],
                              "severity": item["severity"], "first_seen": at,
                              "last_seen": at, "data": item["data"]})
            elif at > row.last_seen:
                again[row.id] = item
        seen_again: list[int] = []              # only last_seen moves: one UPDATE for all
        refreshed: list[dict[str, Any]] = []    # title, severity or data changed too
        ids = list(again)
        for start in range(0, len(ids), _IDS_PER_STATEMENT):
            for stored in (await conn.execute(
                    sa.select(findings.c.id, findings.c.title, findings.c.severity,
                              findings.c.data)
                    .where(findings.c.id.in_(ids[start:start + _IDS_PER_STATEMENT])))).all():
                item = again[stored.id]
                if (stored.title, stored.severity, stored.data) == (
                        item["title"], item["severity"], item["data"]):
                    seen_again.append(stored.id)
                else:
                    refreshed.append({"b_id": stored.id, "b_title": item["title"],
                                      "b_severity": item["severity"], "b_data": item["data"]})
        for start in range(0, len(seen_again), _IDS_PER_STATEMENT):
            await conn.execute(findings.update().where(findings.c.id.in_(
                seen_again[start:start + _IDS_PER_STATEMENT])).values(last_seen=at))
        if refreshed:
            await conn.execute(
                findings.update().where(findings.c.id == sa.bindparam("b_id")).values(
                    last_seen=at, title=sa.bindparam("b_title"),
                    severity=sa.bindparam("b_severity"), data=sa.bindparam("b_data")),
                refreshed)
        changed = 0
        if fresh:
            # ON CONFLICT DO NOTHING keeps the write once-only (another check may hold the
            # host's open finding of that key); RETURNING names the rows really inserted
            changed += len((await conn.execute(
                self.store.insert_ignore(findings).returning(findings.c.id), fresh)).all())
        gone = [row.id for key, row in open_rows.items()
                if fix and key not in found and at >= row.last_seen]
        for start in range(0, len(gone), _IDS_PER_STATEMENT):
            await conn.execute(findings.update()
                               .where(findings.c.id.in_(gone[start:start + _IDS_PER_STATEMENT]))
                               .values(fixed_at=at, open_key=None))
        return changed + len(gone)

    # -- waivers and rectification tasks -----------------------------------------------------

    async def add_waiver(self, *, host: str, key: str, accepted_by: str, reason: str,
                         expires_at: datetime, by: str, now: datetime) -> Waiver:
        if expires_at <= now:
            raise StoreError("expires_at must be in the future: a waiver is for a while")
        async with self.store.transaction() as conn:
            waiver_id = (await conn.execute(waivers.insert().values(
                host=host, key=key, accepted_by=accepted_by, reason=reason, created_at=now,
                created_by=by, expires_at=expires_at).returning(waivers.c.id))).scalar_one()
        return next(w for w in await self.waivers(include_expired=True) if w.id == waiver_id)

    async def waivers(self, *, include_expired: bool = False,
                      now: datetime | None = None) -> list[Waiver]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(waivers).order_by(waivers.c.id))).all()
        found = [Waiver(*row) for row in rows]
        if include_expired or now is None:
            return found
        return [w for w in found if w.revoked_at is None and w.expires_at > now]

    async def add_rectification(self, *, title: str, issued_by: str, issued_at: datetime,
                                due_at: datetime, finding_ids: list[int], note: str, by: str,
                                now: datetime) -> dict[str, Any]:
        if not finding_ids:
            raise StoreError("a rectification task needs at least one finding")
        if due_at <= issued_at:
            raise StoreError("due_at must be after issued_at")
        async with self.store.transaction() as conn:
            known = set((await conn.execute(sa.select(findings.c.id).where(
                findings.c.id.in_(finding_ids)))).scalars())
            missing = sorted(set(finding_ids) - known)
            if missing:
                raise StoreError(f"no findings {missing}")
            task_id = (await conn.execute(rectifications.insert().values(
                title=title, issued_by=issued_by, issued_at=issued_at, due_at=due_at,
                finding_ids=sorted(set(finding_ids)), note=note, created_at=now,
                created_by=by).returning(rectifications.c.id))).scalar_one()
        [task] = [t for t in await self.rectifications(now=now) if t["id"] == task_id]
        return task

    async def rectifications(self, *, now: datetime, year: int | None = None
                             ) -> list[dict[str, Any]]:
        """Every task with its state derived from its findings: `completed` when a scan has
        shown each of them fixed (at the latest fix), `on_time` against `due_at`."""
        async with self.store.engine.connect() as conn:
            tasks = [dict(r) for r in (await conn.execute(
                sa.select(rectifications).order_by(rectifications.c.due_at))).mappings()]
            ids = {i for t in tasks for i in t["finding_ids"]}
            fixed = {row.id: row.fixed_at for row in (await conn.execute(
                sa.select(findings.c.id, findings.c.fixed_at).where(
                    findings.c.id.in_(sorted(ids))))).all()} if ids else {}
        out = []
        for task in tasks:
            if year is not None and task["due_at"].year != year:
                continue
            times = [fixed.get(i) for i in task["finding_ids"]]
            done = all(t is not None for t in times)
            completed_at = max(t for t in times if t is not None) if done and times else None
            out.append({
                **{k: (v.isoformat() if isinstance(v, datetime) else v)
                   for k, v in task.items()},
                "state": "completed" if done else ("overdue" if now > task["due_at"]
                                                   else "open"),
                "completed_at": completed_at.isoformat() if completed_at else None,
                "on_time": bool(completed_at and completed_at <= task["due_at"]),
                "findings_fixed": sum(t is not None for t in times),
                "findings_total": len(times)})
        return out

    async def completion(self, *, now: datetime, year: int) -> dict[str, Any]:
        """The year's rectification completion (contract: 100 %): tasks due in the year."""
        tasks = await self.rectifications(now=now, year=year)
        due = [t for t in tasks if datetime.fromisoformat(t["due_at"]) <= now
               or t["state"] == "completed"]
        on_time = sum(1 for t in due if t["on_time"])
        return {"year": year, "tasks": len(tasks), "due": len(due),
                "completed": sum(1 for t in tasks if t["state"] == "completed"),
                "completed_on_time": on_time,
                "completion_ratio": on_time / len(due) if due else None}

    # -- reading ----------------------------------------------------------------------------

    async def fleet(self, now: datetime) -> list[dict[str, Any]]:
        """Per host: the latest inventory and its open findings by severity (waived ones
        counted apart)."""
        latest = (sa.select(inventories.c.host, sa.func.max(inventories.c.id).label("id"))
                  .group_by(inventories.c.host).subquery())
        query = (sa.select(inventories.c.host, inventories.c.collected_at,
                           inventories.c.summary)
                 .join(latest, inventories.c.id == latest.c.id)
                 .order_by(inventories.c.host))
        open_now = (sa.select(findings.c.host, findings.c.key, findings.c.severity,
                              findings.c.data)
                    .where(findings.c.fixed_at.is_(None)))
        active = await self.waivers(now=now)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            by_host: dict[str, dict[str, int]] = {}
            waived: dict[str, int] = {}
            kev: dict[str, int] = {}
            for host, key, severity, data in (await conn.execute(open_now)).all():
                if any(w.covers(host, key, now) for w in active):
                    waived[host] = waived.get(host, 0) + 1
                    continue
                if isinstance(data, dict) and data.get("kev"):
                    kev[host] = kev.get(host, 0) + 1
                counts = by_host.setdefault(host, dict.fromkeys(SEVERITIES, 0))
                counts[severity] = counts.get(severity, 0) + 1
        hosts = {row.host for row in rows} | set(by_host)
        out = []
        for host in sorted(hosts):
            row = next((r for r in rows if r.host == host), None)
            out.append({"host": host,
                        "collected_at": row.collected_at.isoformat() if row else None,
                        "inventory": row.summary if row else None,
                        "open_findings": by_host.get(host, dict.fromkeys(SEVERITIES, 0)),
                        "waived_findings": waived.get(host, 0),
                        "kev_findings": kev.get(host, 0)})
        return out

    async def host(self, host: str, now: datetime, limit: int = 200) -> dict[str, Any]:
        """A host's inventory history (newest first) and every finding, open and fixed."""
        inv = (sa.select(inventories.c.check_id, inventories.c.collected_at,
                         inventories.c.summary)
               .where(inventories.c.host == host)
               .order_by(inventories.c.collected_at.desc()).limit(limit))
        found = (sa.select(findings.c.id, findings.c.kind, findings.c.key, findings.c.title,
                           findings.c.severity, findings.c.first_seen, findings.c.last_seen,
                           findings.c.fixed_at, findings.c.data)
                 .where(findings.c.host == host).order_by(findings.c.first_seen))
        active = await self.waivers(now=now)
        async with self.store.engine.connect() as conn:
            inventory_rows = (await conn.execute(inv)).mappings().all()
            finding_rows = (await conn.execute(found)).mappings().all()
        findings_out = []
        for r in finding_rows:
            item = _finding_json(dict(r))
            waiver = next((w for w in active if w.covers(host, r["key"], now)), None)
            item["waiver"] = None if waiver is None else {
                "id": waiver.id, "accepted_by": waiver.accepted_by, "reason": waiver.reason,
                "expires_at": waiver.expires_at.isoformat()}
            findings_out.append(item)
        return {
            "host": host,
            "inventories": [{**dict(r), "collected_at": r["collected_at"].isoformat()}
                            for r in inventory_rows],
            "findings": findings_out,
        }


def _finding_json(row: dict[str, Any]) -> dict[str, Any]:
    fixed: datetime | None = row["fixed_at"]
    first: datetime = row["first_seen"]
    return {**{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()},
            "state": "fixed" if fixed else "open",
            "time_to_fix_s": (fixed - first).total_seconds() if fixed else None}


def _kernel_running(kernel: Any) -> str | None:
    """`uname -r` from an inventory's `kernel` ({"running": ..., "newest": ...})."""
    running = kernel.get("running") if isinstance(kernel, dict) else None
    return str(running) if running else None
