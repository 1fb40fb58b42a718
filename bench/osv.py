"""OSV matching benchmark: import time of a large OSV bundle and matching time of a fleet's
package inventories against it, on SQLite, in one process.

    .venv/bin/python bench/osv.py                       # 30,000 records, 300 hosts x 1,500
    .venv/bin/python bench/osv.py --records 3000 --hosts 30   # quick

The bundle is synthetic but shaped like osv.dev's Debian `all.zip` (one `<ID>.json` per
record; `DEBIAN-CVE-*` ids with `upstream` CVE ids; `affected[]` for Debian:11 and Debian:12
with an ECOSYSTEM range `introduced 0` -> `fixed`, a few `last_affected` and unfixed ranges, a
`versions` list beside the ranges as Debian's records carry): ~3,000 source packages, the number
of records per package skewed as in the real feed (a few packages — the kernel, browsers,
imagemagick — carry hundreds); 85 % of the ranges were fixed by an older upstream release,
15 % by one of the last security updates (`--stress`: all of them). Hosts are Debian 12
with 1,500 packages each: ~60 % of their names are in the feed, at one of three fleet patch
levels plus per-host drift, so that hosts share most package versions as a real fleet does.

Timed:
1. import   `OsvAdvisories.import_path(all.zip)`: read + parse + index + store (one row);
2. load     a fresh `OsvAdvisories.in_force()` from the store (what a collector does once
            after a new bundle);
3. match    `OsvIndex.findings` for every host, in memory (first host alone, then all);
4. observe  every host's `patches` result through `FindingsService.observe` (match + findings
            written), `match_osv()` over the stored inventories (what the CLI runs after an
            import), then every host's next result 6 h later with the same packages (every
            open finding seen again: the steady state).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import resource
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.findings import FindingsService
from collector.osv import OsvAdvisories, host_ecosystems
from collector.store import Store
from probes.result import CheckResult, Status

DEBIAN_12 = {"id": "debian", "name": "Debian", "version": "12.11", "family": "debian"}


def _version(rng: random.Random, base: tuple[int, int, int], rev: int, update: int) -> str:
    upstream = ".".join(str(x) for x in base)
    return f"{upstream}-{rev}+deb12u{update}" if update else f"{upstream}-{rev}"


Base = dict[str, tuple[tuple[int, int, int], int]]


def make_bundle(records: int, seed: int, stress: bool) -> tuple[bytes, Base]:
    """The zip, and per package its base version and revision (for making hosts)."""
    rng = random.Random(seed)
    names = [f"pkg{i:04d}" for i in range(3000)]
    # skewed: weight 1/(rank+1)^0.9, as a few packages carry most records
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names))]
    base = {n: ((rng.randint(0, 9), rng.randint(0, 40), rng.randint(0, 30)),
                rng.randint(1, 9)) for n in names}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(records):
            name = rng.choices(names, weights)[0]
            upstream, rev = base[name]
            cve = f"CVE-{rng.randint(2015, 2026)}-{10000 + i}"
            if stress or rng.random() < 0.15:
                # fixed by a recent security update of the version hosts run
                fixed12 = _version(rng, upstream, rev, rng.randint(1, 8))
            else:
                # fixed long ago: an older upstream release, as most of a real feed is
                older = (upstream[0], max(upstream[1] - rng.randint(1, 5), 0), upstream[2])
                fixed12 = _version(rng, older, rng.randint(1, 9), 0)
            kind = rng.random()
            if kind < 0.80:
                events12 = [{"introduced": "0"}, {"fixed": fixed12}]
            elif kind < 0.90:
                events12 = [{"introduced": "0"}, {"last_affected": _version(
                    rng, upstream, rev, rng.randint(0, 3))}]
            else:
                events12 = [{"introduced": "0"}]          # no fix yet
            record = {
                "schema_version": "1.6.0", "id": f"DEBIAN-{cve}",
                "modified": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T00:00:00Z",
                "upstream": [cve], "summary": f"{name}: synthetic issue {i}",
                "affected": [
                    {"package": {"ecosystem": "Debian:11", "name": name},
                     "ranges": [{"type": "ECOSYSTEM", "events": [
                         {"introduced": "0"},
                         {"fixed": f"{'.'.join(map(str, upstream))}-{rev}+deb11u1"}]}]},
                    {"package": {"ecosystem": "Debian:12", "name": name},
                     "ranges": [{"type": "ECOSYSTEM", "events": events12}],
                     "versions": [_version(rng, upstream, rev, u) for u in range(3)]},
                ]}
            archive.writestr(f"DEBIAN-{cve}.json", json.dumps(record))
    return out.getvalue(), base


def make_hosts(count: int, per_host: int, base: dict[str, Any], seed: int
               ) -> list[list[list[Any]]]:
    rng = random.Random(seed)
    in_feed = sorted(base)
    levels = [rng.randint(0, 8) for _ in range(3)]        # three fleet patch levels
    fleet_versions = {n: [_version(rng, base[n][0], base[n][1], lvl) for lvl in levels]
                      for n in in_feed}
    hosts = []
    for h in range(count):
        level = h % 3
        names = rng.sample(in_feed, int(per_host * 0.6))
        packages = []
        for name in names:
            version = fleet_versions[name][level]
            if rng.random() < 0.05:                        # per-host drift
                version = _version(rng, base[name][0], base[name][1], rng.randint(0, 9))
            packages.append([name, version, "amd64", 1_700_000_000])
        packages += [[f"other{h % 7}-{i}", "1.0-1", "amd64", 1_700_000_000]
                     for i in range(per_host - len(names))]
        hosts.append(packages)
    return hosts


def _size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.glob("c.db*")) / 1e6


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(records: int, hosts_n: int, per_host: int, stress: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"records": records, "hosts": hosts_n, "packages": per_host,
                               "stress": stress,
                               "nproc": os.cpu_count(),
                               "date": datetime.now(UTC).strftime("%Y-%m-%d")}
    started = time.perf_counter()
    data, base = make_bundle(records, seed=7, stress=stress)
    hosts = make_hosts(hosts_n, per_host, base, seed=11)
    figures["generate_s"] = round(time.perf_counter() - started, 2)
    figures["zip_mb"] = round(len(data) / 1e6, 1)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "all.zip"
        bundle.write_bytes(data)
        store = await Store.open(f"sqlite:///{tmp}/c.db")
        try:
            rss_before = rss_mb()
            osv = OsvAdvisories(store)
            started = time.perf_counter()
            imported = await osv.import_path(bundle, source="all.zip", source_date="",
                                             by="bench", now=datetime.now(UTC))
            figures["import_s"] = round(time.perf_counter() - started, 2)
            figures["entries"] = imported["entries"]
            figures["db_mb"] = round(await asyncio.to_thread(_size_mb, Path(tmp)), 1)

            service = FindingsService(store)
            started = time.perf_counter()
            index = await service.osv.in_force()
            figures["load_s"] = round(time.perf_counter() - started, 2)
            host = host_ecosystems(DEBIAN_12)
            assert host is not None
            started = time.perf_counter()
            first = index.findings(host, hosts[0])
            figures["match_first_host_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            total = len(first)
            for packages in hosts[1:]:
                total += len(index.findings(host, packages))
            figures["match_rest_s"] = round(time.perf_counter() - started, 2)
            figures["findings"] = total
            figures["findings_per_host"] = round(total / hosts_n, 1)

            t0 = datetime.now(UTC) - timedelta(days=1)
            started = time.perf_counter()
            for i, packages in enumerate(hosts):
                result = CheckResult(
                    agent_id=f"host-{i:03d}", check_id="patches", kind="patches",
                    status=Status.OK, reason="ok", started_at=t0, duration_s=1.0,
                    interval_s=21600, summary="",
                    details={"os": DEBIAN_12, "pending": [], "packages": packages,
                             "packages_hash": f"h{i}"})
                await service.observe([result])
            figures["observe_all_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            figures["match_osv_opened"] = await service.match_osv()
            figures["match_osv_s"] = round(time.perf_counter() - started, 2)
            # the steady state: each host's next result 6 h later, same packages; every open
            # finding is seen again (one UPDATE of last_seen per host), none opened or fixed
            started = time.perf_counter()
            again = 0
            for i, packages in enumerate(hosts):
                result = CheckResult(
                    agent_id=f"host-{i:03d}", check_id="patches", kind="patches",
                    status=Status.OK, reason="ok", started_at=t0 + timedelta(hours=6),
                    duration_s=1.0, interval_s=21600, summary="",
                    details={"os": DEBIAN_12, "pending": [], "packages": packages,
                             "packages_hash": f"h{i}"})
                again += await service.observe([result])
            figures["observe_again_s"] = round(time.perf_counter() - started, 2)
            figures["observe_again_changed"] = again
            figures["peak_rss_mb"] = round(rss_mb(), 0)
            figures["rss_growth_mb"] = round(rss_mb() - rss_before, 0)
        finally:
            await store.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("--stress", action="store_true",
                        help="every record fixed by a recent update: ~1,600 findings per host")
    args = parser.parse_args()
    figures = asyncio.run(run(args.records, args.hosts, args.packages, args.stress))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
