"""OSV advisories for OS packages, carried in offline: import a bundle (osv.dev's per-ecosystem
`all.zip` export, a directory of OSV JSON files, or one JSON file), keep a compact index of it,
and match host package inventories against that index.

The format is the OSV schema (https://ossf.github.io/osv-schema/): each record has `id`,
`modified`, `aliases`/`upstream` (CVE ids), optional `severity`, `withdrawn`, and `affected[]`
entries naming a package by `ecosystem` and `name` with `ranges[]` of type `ECOSYSTEM`, whose
`events` (`introduced`, `fixed`, `last_affected`) bound the affected versions in the
ecosystem's own ordering, or an explicit `versions` list.

Ecosystems read (others in a bundle are counted and skipped):
  Debian:N, Ubuntu:YY.MM[:LTS]                         dpkg ordering
  Red Hat:<CPE stream>, AlmaLinux:N, Rocky Linux:N,    rpm ordering
  openEuler:YY.MM-LTS[-SPn]
A host's inventory (`details.os` of its `patches` result) decides its ecosystems
(`host_ecosystems`); CentOS, Kylin, UOS and other families have no OSV feed and are not matched.

The index keeps only what matching needs — per ecosystem, per package name, the affected
intervals with the advisory id — and per advisory its CVE ids, severity word, CVSS vector and
summary. Bundles are stored in `advisory_bundles` (kind `osv`); for each ecosystem the newest
bundle that carries it is in force.

Names: the Debian, Ubuntu, AlmaLinux and Rocky feeds name *source* packages, Red Hat names
binary RPMs; inventories list binary packages with their source package when it differs
(dpkg's Source field, rpm's SOURCERPM). A package is matched on its own name and version and
on its source's, so libssl3 is caught by an openssl advisory (docs/security.md).

Kernels (dpkg hosts): the feeds name the kernel by its source `linux`, but the images a host
boots (`linux-image-6.1.0-33-amd64`) come from the signing source `linux-signed-amd64`
(Debian) or `linux-signed` (Ubuntu), built from `linux` at the image's own version. So a
kernel image is matched on `linux` at its binary version (`SIGNED_KERNEL_SOURCES`). Every
installed image counts, running or not: an old one stays bootable. The other binaries of the
kernel source (linux-libc-dev, linux-perf, bpftool, headers) carry no kernel code and are not
matched against kernel advisories.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collector.schema import advisory_bundles, inventories
from collector.store import Store, StoreError
from collector.versions import VersionError, comparator
from probes.inventory import debian_kernel_release

INDEX_FORMAT = 1

_SCHEMES = {"Debian": "dpkg", "Ubuntu": "dpkg", "Red Hat": "rpm", "AlmaLinux": "rpm",
            "Rocky Linux": "rpm", "openEuler": "rpm"}
_WORDS = {"critical": "critical", "important": "high", "high": "high", "moderate": "medium",
          "medium": "medium", "low": "low", "negligible": "low", "unimportant": "low"}
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
SIGNED_KERNEL_SOURCES = {
    # Debian: one signing source per architecture, its images built from `linux`
    "linux-signed-amd64": "linux", "linux-signed-arm64": "linux",
    "linux-signed-i386": "linux",
    # Ubuntu: the generic kernel's signing source; a flavour's is `linux-signed-<flavour>`
    "linux-signed": "linux",
}
"""Sources of signed kernel images -> the kernel source the advisories name. The image's own
version is the kernel's (Debian's signing source carries `6.1.133+1` for images `6.1.133-1`,
which is not the version of `linux` they were built from)."""
_KERNEL_SOURCE = re.compile(r"linux(-\d+\.\d+)?")
"""Debian's kernel source and its LTS backports (`linux-6.1` in bullseye); Ubuntu's `linux`."""
_OE_TAG = re.compile(r"\.oe(\d\d)(\d\d)(sp\d+)?", re.IGNORECASE)


def scheme_of(ecosystem: str) -> str | None:
    """`dpkg` / `rpm` for the ecosystems we read, else None."""
    return _SCHEMES.get(ecosystem.split(":", 1)[0])


# --- reading bundles ---------------------------------------------------------------------


def read_records(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The OSV records of a zip (osv.dev's all.zip), a directory of `*.json` (searched
    recursively) or one JSON file (a record or a list of records), and the SHA-256 of what
    was read (for a directory: of its files' names and contents, in order)."""
    digest = hashlib.sha256()
    records: list[dict[str, Any]] = []
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            data = file.read_bytes()
            digest.update(str(file.relative_to(path)).encode() + b"\0" + data)
            records.extend(_records_of(data, str(file)))
        return records, digest.hexdigest()
    data = path.read_bytes()
    digest.update(data)
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".json"):
                    records.extend(_records_of(archive.read(name), f"{path.name}:{name}"))
        return records, digest.hexdigest()
    return _records_of(data, str(path)), digest.hexdigest()


def _records_of(data: bytes, where: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{where}: not JSON ({exc})") from None
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict) or "id" not in item or "modified" not in item:
            raise StoreError(f"{where}: not an OSV record (needs id and modified)")
    return items


def _severity(record: dict[str, Any], affected: Iterable[dict[str, Any]]
              ) -> tuple[str | None, str | None]:
    """(severity word on our scale or None, a CVSS vector or None)."""
    word: str | None = None
    vector: str | None = None
    for item in record.get("severity") or []:
        if not isinstance(item, dict):
            continue
        score = str(item.get("score", ""))
        if str(item.get("type", "")).startswith("CVSS"):
            vector = vector or score
        elif score.lower() in _WORDS:         # Ubuntu: {"type": "Ubuntu", "score": "medium"}
            word = word or _WORDS[score.lower()]
    places = [record.get("database_specific")]
    for entry in affected:
        places += [entry.get("database_specific"), entry.get("ecosystem_specific")]
    for place in places:
        if isinstance(place, dict) and word is None:
            text = str(place.get("severity") or place.get("urgency") or "").lower()
            word = _WORDS.get(text)
    return word, vector


@dataclass
class IndexBuilder:
    """Builds the compact index from records (one pass, records kept nowhere)."""

    packages: dict[str, dict[str, list[list[Any]]]] = field(default_factory=dict)
    vulns: dict[str, dict[str, Any]] = field(default_factory=dict)
    modified: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    newest: str = ""

    def add(self, record: dict[str, Any]) -> None:
        vuln_id = str(record["id"])
        modified = str(record["modified"])
        if record.get("withdrawn"):
            return
        if vuln_id in self.modified and self.modified[vuln_id] >= modified:
            return                  # the later `modified` is authoritative (OSV schema)
        if vuln_id in self.modified:
            self._drop(vuln_id)
        kept = []
        for entry in record.get("affected") or []:
            package = entry.get("package") if isinstance(entry, dict) else None
            if not isinstance(package, dict):
                continue
            ecosystem, name = str(package.get("ecosystem", "")), str(package.get("name", ""))
            scheme = scheme_of(ecosystem)
            if scheme is None or not name:
                base = ecosystem.split(":", 1)[0] or "?"
                self.skipped[base] = self.skipped.get(base, 0) + 1
                continue
            intervals = _intervals(entry, scheme)
            if intervals:
                self.packages.setdefault(ecosystem, {}).setdefault(name, []).extend(
                    [vuln_id, *interval] for interval in intervals)
                kept.append(entry)
        if not kept:
            return
        cves = sorted({str(a) for a in [*(record.get("aliases") or []),
                                        *(record.get("upstream") or []), vuln_id]
                       if _CVE.match(str(a))})
        word, vector = _severity(record, kept)
        self.vulns[vuln_id] = {"cves": cves, "severity": word, "cvss": vector,
                               "summary": str(record.get("summary") or "")[:200],
                               "modified": modified}
        self.modified[vuln_id] = modified
        self.newest = max(self.newest, modified)

    def _drop(self, vuln_id: str) -> None:
        for names in self.packages.values():
            for name, rows in list(names.items()):
                rows[:] = [r for r in rows if r[0] != vuln_id]
                if not rows:
                    del names[name]
        self.vulns.pop(vuln_id, None)

    def index(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "packages": self.packages, "vulns": self.vulns}


def _intervals(entry: dict[str, Any], scheme: str) -> list[list[Any]]:
    """[kind, a, b] rows: ["r", introduced, fixed|None] (fixed excluded), ["l", introduced,
    last_affected] (included), ["=", version, None]. Events are sorted in the ecosystem's
    order, as the OSV evaluation pseudocode asks; `limit` events do not apply to ECOSYSTEM."""
    compare = comparator(scheme)
    out: list[list[Any]] = []
    for rng in entry.get("ranges") or []:
        if not isinstance(rng, dict) or rng.get("type") != "ECOSYSTEM":
            continue
        events: list[tuple[str, str]] = []
        for event in rng.get("events") or []:
            if not isinstance(event, dict) or len(event) != 1:
                continue
            [(kind, version)] = event.items()
            if kind in ("introduced", "fixed", "last_affected"):
                events.append((kind, str(version)))
        try:
            events.sort(key=functools.cmp_to_key(functools.partial(_event_cmp,
                                                                   compare=compare)))
        except VersionError:
            continue
        start: str | None = None
        for kind, version in events:
            if kind == "introduced":
                start = version
            elif start is not None:
                out.append(["r" if kind == "fixed" else "l", start, version])
                start = None
        if start is not None:
            out.append(["r", start, None])
    if not out:    # no ECOSYSTEM range: the enumerated versions
        out = [["=", str(v), None] for v in entry.get("versions") or []]
    return out


def _kernel_names(name: str, version: str, names: list[tuple[str, str]]
                  ) -> list[tuple[str, str]]:
    """The (name, version) pairs a dpkg row is matched on, kernels considered: a kernel image
    also on the kernel source it was signed from, at its own version; any other binary of the
    kernel source (linux-libc-dev, linux-perf, bpftool, headers) not on the kernel source."""
    if debian_kernel_release(name) is None:
        return [(n, v) for n, v in names if n == name or not _KERNEL_SOURCE.fullmatch(n)]
    out = list(names)
    for source, _source_version in names[1:]:
        kernel = SIGNED_KERNEL_SOURCES.get(source)
        if kernel is None and source.startswith("linux-signed-"):
            # Ubuntu's flavours: linux-signed-hwe-6.5 -> linux-hwe-6.5, linux-signed-aws ...
            kernel = "linux-" + source.removeprefix("linux-signed-")
        if kernel is not None and (kernel, version) not in out:
            out.append((kernel, version))
    return out


def _event_cmp(x: tuple[str, str], y: tuple[str, str], compare: Any) -> int:
    if x[1] == "0" or y[1] == "0":          # "0": before every version
        return (x[1] != "0") - (y[1] != "0")
    result: int = compare(x[1], y[1])
    return result


# --- hosts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostEcosystems:
    scheme: str
    exact: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    per_package: str | None = None
    """openEuler: the stream comes from each package's release tag (`.oe2203sp1`)."""

    def matches(self, ecosystem: str) -> bool:
        return ecosystem in self.exact or ecosystem.startswith(self.prefixes or ("\0",))


def host_ecosystems(os: Any) -> HostEcosystems | None:
    """The OSV ecosystems of a host from its inventory's `details.os`
    ({id, name, version, family}); None for families without an OSV feed."""
    if not isinstance(os, dict):
        return None
    os_id = str(os.get("id") or "").lower()
    version = str(os.get("version") or "")
    major = version.split(".", 1)[0]
    if os_id == "debian" and major.isdigit():
        return HostEcosystems("dpkg", (f"Debian:{major}", "Debian"))
    if os_id == "ubuntu" and re.fullmatch(r"\d\d\.\d\d", version):
        year, month = version.split(".")
        lts = int(year) % 2 == 0 and month == "04"
        return HostEcosystems("dpkg", (f"Ubuntu:{version}:LTS" if lts else f"Ubuntu:{version}",))
    if os_id == "rhel" and major.isdigit():
        return HostEcosystems("rpm", (), (f"Red Hat:enterprise_linux:{major}::",))
    if os_id == "almalinux" and major.isdigit():
        return HostEcosystems("rpm", (f"AlmaLinux:{major}", "AlmaLinux"))
    if os_id == "rocky" and major.isdigit():
        return HostEcosystems("rpm", (f"Rocky Linux:{major}", "Rocky Linux"))
    if os_id == "openeuler" and re.fullmatch(r"\d\d\.\d\d", version):
        return HostEcosystems("rpm", (), (f"openEuler:{version}-LTS",), per_package="openEuler")
    return None


def _openeuler_stream(version: str) -> str | None:
    match = _OE_TAG.search(version)
    if match is None:
        return None
    year, month, sp = match.groups()
    return f"openEuler:{year}.{month}-LTS" + (f"-SP{sp[2:]}" if sp else "")


# --- the index in force ------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    vuln_id: str
    ecosystem: str
    package: str
    version: str
    fixed: str | None


class OsvIndex:
    """The OSV data in force: the newest bundle for each ecosystem, merged."""

    def __init__(self, bundles: list[tuple[int, dict[str, Any]]]) -> None:
        """`bundles`: (bundle id, index), newest first."""
        self.generation = bundles[0][0] if bundles else 0
        self.packages: dict[str, dict[str, list[list[Any]]]] = {}
        self.vulns: dict[str, dict[str, Any]] = {}
        self.bundle_of: dict[str, int] = {}
        for bundle_id, index in bundles:
            for ecosystem, names in index.get("packages", {}).items():
                if ecosystem in self.packages:
                    continue                    # a newer bundle carries it
                self.packages[ecosystem] = names
                self.bundle_of[ecosystem] = bundle_id
                for rows in names.values():
                    for row in rows:
                        info = index["vulns"].get(row[0])
                        if info is not None:
                            self.vulns.setdefault(row[0], info)
        self._memo: dict[tuple[str, str, str], tuple[Hit, ...]] = {}
        self._streams: dict[HostEcosystems, tuple[str, ...]] = {}

    @property
    def ecosystems(self) -> list[str]:
        return sorted(self.packages)

    def covers(self, host: HostEcosystems) -> bool:
        """Whether a bundle in force carries one of the host's ecosystems (without one, its
        inventory proves nothing either way)."""
        return bool(self._streams_of(host))

    def _streams_of(self, host: HostEcosystems) -> tuple[str, ...]:
        found = self._streams.get(host)
        if found is None:
            found = tuple(e for e in self.packages if host.matches(e))
            self._streams[host] = found
        return found

    def match(self, host: HostEcosystems, packages: Iterable[Any]) -> list[Hit]:
        """Hits for inventory rows `[name, version, arch, installed_at]`, followed by
        `source, source_version` when the binary comes from a source package of another name
        or version (libssl3 from openssl): the feeds that name source packages are matched
        on those, and a hit names the binary that is installed."""
        streams = self._streams_of(host)
        compare = comparator(host.scheme)
        hits: list[Hit] = []
        for row in packages:
            if not isinstance(row, (list, tuple)) or len(row) < 2:
                continue
            name, version = str(row[0]), str(row[1])
            names = [(name, version)]
            if len(row) >= 6 and row[4] and (row[4], row[5]) != (name, version):
                names.append((str(row[4]), str(row[5] or version)))
            if host.scheme == "dpkg":
                names = _kernel_names(name, version, names)
            candidates = streams
            if host.per_package is not None:
                stream = _openeuler_stream(version)
                if stream is not None:
                    candidates = tuple(s for s in streams if s == stream)
            for ecosystem in candidates:
                seen: set[str] = set()
                for feed_name, feed_version in names:
                    key = (ecosystem, feed_name, feed_version)
                    found = self._memo.get(key)
                    if found is None:
                        found = self._match_one(ecosystem, feed_name, feed_version, compare)
                        self._memo[key] = found
                    for hit in found:
                        if hit.vuln_id not in seen:
                            seen.add(hit.vuln_id)
                            hits.append(hit if feed_name == name else
                                        replace(hit, package=name, version=version))
        return hits

    def _match_one(self, ecosystem: str, name: str, version: str, compare: Any
                   ) -> tuple[Hit, ...]:
        rows = self.packages[ecosystem].get(name)
        if not rows:
            return ()
        out = []
        for vuln_id, kind, a, b in rows:
            try:
                if kind == "=":
                    inside, fixed = compare(version, a) == 0, None
                elif kind == "r":
                    inside = (a == "0" or compare(version, a) >= 0) and (
                        b is None or compare(version, b) < 0)
                    fixed = b
                else:
                    inside = (a == "0" or compare(version, a) >= 0) and compare(version, b) <= 0
                    fixed = None
            except VersionError:
                continue
            if inside:
                out.append(Hit(vuln_id, ecosystem, name, version, fixed))
        return tuple(out)

    def findings(self, host: HostEcosystems, packages: Iterable[Any],
                 kernel_running: str | None = None) -> dict[str, dict[str, Any]]:
        """key `osv:<ID>` -> finding, one per advisory (its packages listed inside). With
        `kernel_running` (`uname -r`, the inventory's `kernel.running`) a Debian/Ubuntu
        kernel image's row says whether it is the one running."""
        by_vuln: dict[str, list[Hit]] = {}
        for hit in self.match(host, packages):
            by_vuln.setdefault(hit.vuln_id, []).append(hit)
        out = {}
        for vuln_id, hits in by_vuln.items():
            info = self.vulns.get(vuln_id, {})
            seen: dict[tuple[str, str], Hit] = {}
            for hit in hits:
                seen.setdefault((hit.package, hit.version), hit)
            rows: list[dict[str, Any]] = [
                {"name": h.package, "version": h.version, "fixed": h.fixed,
                 "ecosystem": h.ecosystem} for h in seen.values()]
            if kernel_running is not None and host.scheme == "dpkg":
                for item in rows:
                    release = debian_kernel_release(item["name"])
                    if release is not None:
                        item["running"] = release == kernel_running
            rows.sort(key=lambda r: (r["name"], r["version"]))
            first = rows[0]
            fixed = f"fixed in {first['fixed']}" if first["fixed"] else "no fix yet"
            more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
            what = info.get("summary") or ", ".join(info.get("cves", [])[:3])
            out[f"osv:{vuln_id}"] = {
                "kind": "osv", "severity": info.get("severity") or "medium",
                "title": f"{vuln_id} {first['name']} {first['version']} ({fixed}){more}"
                         + (f": {what}" if what else ""),
                "data": {"id": vuln_id, "cves": info.get("cves", []),
                         "advisories": [vuln_id, *info.get("cves", [])],
                         "severity_given": info.get("severity") is not None,
                         "cvss": info.get("cvss"), "packages": rows,
                         "fixed": first["fixed"], "ecosystem": first["ecosystem"]}}
        return out


_HAS_PACKAGES = sa.cast(inventories.c.packages, sa.Text) != "null"
"""A stored package list: the JSON column holds JSON `null` (not SQL NULL) when the agent sent
only the list's hash."""


class OsvAdvisories:
    """Imports OSV bundles and keeps the index in force (asked of the store once a minute,
    reloaded only when a newer bundle is there)."""

    RECHECK_S = 60.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: OsvIndex | None = None
        self._checked_at = -self.RECHECK_S

    async def import_path(self, path: Path, *, source: str, source_date: str, by: str,
                          now: datetime) -> dict[str, Any]:
        try:
            records, digest = await asyncio.to_thread(read_records, path)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        builder = IndexBuilder()
        for record in records:
            builder.add(record)
        if not builder.vulns:
            raise StoreError(f"{path}: no OSV records for the ecosystems read (Debian, Ubuntu, "
                             "Red Hat, AlmaLinux, Rocky Linux, openEuler)"
                             + (f"; skipped: {_counts(builder.skipped)}" if builder.skipped
                                else ""))
        source_date = source_date or builder.newest
        async with self.store.transaction() as conn:
            result = await conn.execute(self.store.insert_ignore(advisory_bundles).values(
                kind="osv", source=source, source_date=source_date[:32], sha256=digest,
                imported_at=now, imported_by=by, entries=builder.index()))
        self._index = None
        self._checked_at = -self.RECHECK_S
        return {"kind": "osv", "source": source, "source_date": source_date[:32],
                "sha256": digest, "entries": len(builder.vulns), "records": len(records),
                "ecosystems": sorted(builder.packages), "skipped": builder.skipped,
                "new": bool(result.rowcount)}

    async def in_force(self) -> OsvIndex:
        if self._index is not None and time.monotonic() - self._checked_at < self.RECHECK_S:
            return self._index
        self._checked_at = time.monotonic()
        async with self.store.engine.connect() as conn:
            newest = (await conn.execute(
                sa.select(sa.func.max(advisory_bundles.c.id))
                .where(advisory_bundles.c.kind == "osv"))).scalar_one_or_none() or 0
            if self._index is not None and self._index.generation == newest:
                return self._index
            rows = (await conn.execute(
                sa.select(advisory_bundles.c.id, advisory_bundles.c.entries)
                .where(advisory_bundles.c.kind == "osv")
                .order_by(advisory_bundles.c.id.desc()))).all()
        self._index = OsvIndex([(row.id, row.entries) for row in rows])
        return self._index

    async def packages_of(self, host: str, check_id: str, details: dict[str, Any]
                          ) -> list[Any] | None:
        """A `patches` result's package rows: its own, or — when the agent sent only the
        hash because nothing changed — the stored list with that hash."""
        rows = details.get("packages")
        if isinstance(rows, list):
            return rows
        digest = details.get("packages_hash")
        if not digest:
            return None
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(
                sa.select(inventories.c.packages)
                .where(inventories.c.host == host, inventories.c.check_id == check_id,
                       inventories.c.packages_hash == digest,
                       _HAS_PACKAGES)
                .order_by(inventories.c.id.desc()).limit(1))).first()
        return row.packages if row is not None else None

    async def latest_inventories(self) -> list[dict[str, Any]]:
        """Per host and patches check: the newest inventory, with the newest package list
        stored for it (for matching every host after an import)."""
        newest = (sa.select(inventories.c.host, inventories.c.check_id,
                            sa.func.max(inventories.c.id).label("id"))
                  .group_by(inventories.c.host, inventories.c.check_id).subquery())
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(inventories.c.host, inventories.c.check_id,
                          inventories.c.collected_at, inventories.c.summary,
                          inventories.c.packages, inventories.c.packages_hash)
                .join(newest, inventories.c.id == newest.c.id))).mappings().all()
            out = []
            for row in rows:
                item = dict(row)
                if item["packages"] is None and item["packages_hash"]:
                    stored = (await conn.execute(
                        sa.select(inventories.c.packages)
                        .where(inventories.c.host == row["host"],
                               inventories.c.check_id == row["check_id"],
                               inventories.c.packages_hash == row["packages_hash"],
                               _HAS_PACKAGES)
                        .order_by(inventories.c.id.desc()).limit(1))).first()
                    item["packages"] = stored.packages if stored is not None else None
                out.append(item)
        return out


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
