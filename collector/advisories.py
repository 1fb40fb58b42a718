"""Advisory data carried in offline: bundles a hospital brings on USB, never fetched at run time.

Two kinds:

- `kev`: CISA's Known Exploited Vulnerabilities catalog, its JSON as published
  (https://www.cisa.gov/known-exploited-vulnerabilities-catalog; fields `catalogVersion`,
  `dateReleased`, `vulnerabilities[].cveID`). A finding whose CVE is in the newest KEV bundle is
  marked `kev` — fix it first.
- `rules`: a CSV of "vulnerable below version X" rules for middleware and databases, one per
  line: `product,affected_from,fixed_in,cve,severity,title` (`affected_from` may be empty;
  products: nginx, tomcat, weblogic, oracle, postgresql, mariadb, mysql). The version each
  probe reports (`details.version`, Tomcat's `tomcat_version`) is compared number by number.

Every bundle is stored with its source date, hash, who imported it and when; the newest of
each kind is in force. OSV bundles (OS package advisories) are not read yet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.schema import advisory_bundles
from collector.store import Store, StoreError

PRODUCTS = ("nginx", "tomcat", "weblogic", "oracle", "postgresql", "mariadb", "mysql")
_SEVERITIES = ("critical", "high", "medium", "low")
_VERSION = re.compile(r"\d+(?:\.\d+)+|\d+")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


def version_key(text: str | None) -> tuple[int, ...] | None:
    """`Apache Tomcat/10.1.60`, `10.11.19-MariaDB-0+deb12u1`, `14.1.1.0.0` -> numbers."""
    if not text:
        return None
    match = _VERSION.search(text)
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


@dataclass(frozen=True)
class Rule:
    product: str
    affected_from: tuple[int, ...] | None
    fixed_in: tuple[int, ...]
    cve: str
    severity: str
    title: str
    fixed_in_text: str

    def affects(self, version: tuple[int, ...]) -> bool:
        if self.affected_from is not None and _padded(version, self.affected_from) < 0:
            return False
        return _padded(version, self.fixed_in) < 0


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    width = max(len(a), len(b))
    left, right = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (left > right) - (left < right)


def parse_rules(text: str) -> list[dict[str, Any]]:
    """The rules CSV as entries; errors name the line."""
    entries = []
    reader = csv.reader(io.StringIO(text))
    for number, row in enumerate(reader, start=1):
        if not row or row[0].strip().startswith("#") or row[0].strip() == "product":
            continue
        if len(row) != 6:
            raise StoreError(f"line {number}: expected 6 fields "
                             "(product,affected_from,fixed_in,cve,severity,title), got "
                             f"{len(row)}")
        product, start, fixed, cve, severity, title = (field.strip() for field in row)
        if product not in PRODUCTS:
            raise StoreError(f"line {number}: unknown product {product!r}; one of "
                             + ", ".join(PRODUCTS))
        if version_key(fixed) is None or (start and version_key(start) is None):
            raise StoreError(f"line {number}: versions must be numbers such as 10.1.34")
        if not _CVE.match(cve):
            raise StoreError(f"line {number}: {cve!r} is not a CVE id")
        if severity.lower() not in _SEVERITIES:
            raise StoreError(f"line {number}: severity must be one of "
                             + ", ".join(_SEVERITIES))
        entries.append({"product": product, "affected_from": start or None, "fixed_in": fixed,
                        "cve": cve, "severity": severity.lower(), "title": title})
    if not entries:
        raise StoreError("no rules in the file")
    return entries


def parse_kev(text: str) -> tuple[str, list[str]]:
    """(dateReleased, CVE ids) of a KEV catalog."""
    try:
        catalog = json.loads(text)
        cves = sorted({v["cveID"] for v in catalog["vulnerabilities"]})
        released = str(catalog.get("dateReleased") or "")
    except (ValueError, KeyError, TypeError):
        raise StoreError("not a CISA KEV catalog (JSON with vulnerabilities[].cveID)") from None
    return released, cves


class Advisories:
    RECHECK_S = 60.0
    """How often the store is asked whether a newer bundle was imported (by the CLI, in
    another process)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: tuple[int, list[Rule], frozenset[str]] | None = None
        self._checked_at = -self.RECHECK_S

    @property
    def generation(self) -> int:
        """The newest bundle's id behind the rules in force (0: none)."""
        return self._cache[0] if self._cache is not None else 0

    async def import_bundle(self, kind: str, data: bytes, *, source: str, source_date: str,
                            by: str, now: datetime) -> dict[str, Any]:
        text = data.decode("utf-8-sig")
        if kind == "kev":
            released, cves = parse_kev(text)
            entries: list[Any] = cves
            source_date = source_date or released
        elif kind == "rules":
            entries = parse_rules(text)
        else:
            raise StoreError(f"unknown bundle kind {kind!r}: kev or rules")
        if not source_date:
            raise StoreError("give the source date of the bundle (when its data was published)")
        digest = hashlib.sha256(data).hexdigest()
        async with self.store.transaction() as conn:
            result = await conn.execute(self.store.insert_ignore(advisory_bundles).values(
                kind=kind, source=source, source_date=source_date, sha256=digest,
                imported_at=now, imported_by=by, entries=entries))
        self._cache = None
        self._checked_at = -self.RECHECK_S
        return {"kind": kind, "source": source, "source_date": source_date, "sha256": digest,
                "entries": len(entries), "new": bool(result.rowcount)}

    async def bundles(self) -> list[dict[str, Any]]:
        query = (sa.select(advisory_bundles.c.id, advisory_bundles.c.kind,
                           advisory_bundles.c.source, advisory_bundles.c.source_date,
                           advisory_bundles.c.sha256, advisory_bundles.c.imported_at,
                           advisory_bundles.c.imported_by)
                 .order_by(advisory_bundles.c.id))
        async with self.store.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def in_force(self) -> tuple[list[Rule], frozenset[str]]:
        """The newest rules bundle and KEV bundle (the store is asked once a minute)."""
        if self._cache is not None and time.monotonic() - self._checked_at < self.RECHECK_S:
            return self._cache[1], self._cache[2]
        self._checked_at = time.monotonic()
        async with self.store.engine.connect() as conn:
            newest = (await conn.execute(sa.select(sa.func.max(advisory_bundles.c.id)))
                      ).scalar_one_or_none() or 0
            if self._cache is not None and self._cache[0] == newest:
                return self._cache[1], self._cache[2]
            latest: dict[str, Any] = {}
            for kind in ("rules", "kev"):
                row = (await conn.execute(
                    sa.select(advisory_bundles.c.entries).where(advisory_bundles.c.kind == kind)
                    .order_by(advisory_bundles.c.id.desc()).limit(1))).first()
                latest[kind] = row.entries if row is not None else []
        rules = [Rule(product=e["product"], affected_from=version_key(e["affected_from"]),
                      fixed_in=version_key(e["fixed_in"]) or (0,), cve=e["cve"],
                      severity=e["severity"], title=e["title"], fixed_in_text=e["fixed_in"])
                 for e in latest["rules"]]
        kev = frozenset(latest["kev"])
        self._cache = (newest, rules, kev)
        return rules, kev


def product_version(kind: str, details: dict[str, Any]) -> tuple[str, str] | None:
    """(product, version text) a result reports, for the rules."""
    if kind == "tomcat":
        text = details.get("tomcat_version")
        return ("tomcat", str(text)) if text else None
    text = details.get("version")
    if not text:
        return None
    text = str(text)
    if kind == "mysql":
        return ("mariadb" if "mariadb" in text.lower() else "mysql"), text
    product = {"nginx": "nginx", "weblogic": "weblogic", "oracle": "oracle",
               "postgres": "postgresql"}.get(kind)
    return (product, text) if product else None
