"""Time to build and render the annual report (html, xlsx) for 50 systems / 300 hosts / a
year of data (docs/benchmarks.md, "Reports"; target ≤ 10 s each).

The store is a temporary SQLite file filled by bulk inserts: per host one check with a year
of state intervals (an outage every ~10 days), 200 incidents with their overtimes, and 10
security findings per host. Usage: .venv/bin/python -m bench.reports
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bench.harness import machine
from collector.config import parse_collector_config
from collector.reports import build_report, render_report
from collector.schema import check_intervals, findings, incident_overtimes, incidents
from collector.store import Store

SYSTEMS, HOSTS_PER_SYSTEM = 50, 6
ZONE = ZoneInfo("Asia/Shanghai")
Y0 = datetime(2025, 1, 1, tzinfo=ZONE).astimezone(UTC)
Y1 = datetime(2026, 1, 1, tzinfo=ZONE).astimezone(UTC)


async def fill(store: Store, rng: random.Random) -> dict[str, int]:
    intervals, found, made = [], [], []
    for s in range(SYSTEMS):
        for h in range(HOSTS_PER_SYSTEM):
            host = f"sys{s:02d}-host{h}"
            cursor = Y0
            while cursor < Y1:
                up_end = min(Y1, cursor + timedelta(days=rng.uniform(5, 15)))
                intervals.append((host, f"SYS{s:02d}", "ok", cursor, up_end))
                down_end = min(Y1, up_end + timedelta(minutes=rng.uniform(1, 90)))
                if up_end < down_end:
                    intervals.append((host, f"SYS{s:02d}", "critical", up_end, down_end))
                cursor = down_end
            for f in range(10):
                first = Y0 + timedelta(days=rng.uniform(0, 360))
                fixed = first + timedelta(days=rng.uniform(1, 60)) if f % 3 else None
                found.append({"host": host, "check_id": "patches", "kind": "update",
                              "key": f"update:pkg{f}",
                              "open_key": None if fixed else f"{host}|update:pkg{f}",
                              "title": f"pkg{f} 1.0 → 1.1", "severity": rng.choice(
                                  ["critical", "high", "medium", "low"]),
                              "first_seen": first, "last_seen": fixed or Y1, "fixed_at": fixed,
                              "data": {"kev": f == 0}})
    for i in range(200):
        opened = Y0 + timedelta(days=rng.uniform(0, 360))
        made.append({"key": f"system:SYS{i % SYSTEMS:02d}", "open_key": None, "source": "probe",
                     "system": f"SYS{i % SYSTEMS:02d}", "level": 1 + i % 3, "state": "closed",
                     "title": "down", "cause": "connect_refused", "opened_at": opened,
                     "detected_at": opened, "level_since": opened,
                     "respond_by": opened + timedelta(minutes=10),
                     "recover_by": opened + timedelta(minutes=30),
                     "report_by": opened + timedelta(hours=24),
                     "responded_at": opened + timedelta(minutes=rng.uniform(1, 15)),
                     "recovered_at": opened + timedelta(minutes=rng.uniform(5, 40)),
                     "report_submitted_at": opened + timedelta(hours=20), "reopened": 0,
                     "updated_at": opened})
    async with store.transaction() as conn:
        await conn.execute(check_intervals.insert(), [
            {"agent_id": host, "check_id": "web", "system": system, "kind": "http",
             "status": status, "reason": "ok" if status == "ok" else "connect_refused",
             "summary": "", "start": start, "end": end, "last_result_at": end,
             "results": 1, "is_open": False}
            for host, system, status, start, end in intervals])
        await conn.execute(findings.insert(), found)
        ids = (await conn.execute(incidents.insert().returning(incidents.c.id), made)).scalars()
        late = []
        for incident_id, row in zip(ids, made, strict=True):
            if row["responded_at"] > row["respond_by"]:
                late.append({"incident_id": incident_id, "level": row["level"],
                             "deadline": "respond", "due_at": row["respond_by"],
                             "met_at": row["responded_at"], "counted_at": row["responded_at"],
                             "reason": "late"})
        if late:
            await conn.execute(incident_overtimes.insert(), late)
    return {"intervals": len(intervals), "findings": len(found), "incidents": len(made),
            "overtimes": len(late)}


async def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        config = parse_collector_config({"store": url, "systems": [
            {"id": f"SYS{s:02d}", "name": f"系统{s}", "core": s < 10,
             "members": [f"sys{s:02d}-host*/web"], "rule": {"at_least": 5}}
            for s in range(SYSTEMS)]})
        store = await Store.open(url)
        try:
            rows = await fill(store, random.Random(8))
            figures: dict[str, object] = {"rows": rows}
            now = datetime(2026, 2, 1, tzinfo=UTC)
            for fmt in ("html", "xlsx"):
                began = time.perf_counter()
                report = await build_report(config, store, "annual", start=Y0, end=Y1, now=now)
                built = time.perf_counter()
                data = render_report(report, fmt)
                done = time.perf_counter()
                figures[fmt] = {"build_s": round(built - began, 2),
                                "render_s": round(done - built, 2),
                                "total_s": round(done - began, 2), "bytes": len(data)}
        finally:
            await store.close()
    return figures


def main() -> int:
    figures = asyncio.run(run())
    print(json.dumps({"machine": machine(), **figures}, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
