"""Reports from the store. Availability as JSON or CSV for now; HTML and Excel, and the other
report kinds, arrive with the reports issue.

Every figure comes out of `Systems.availability`, the same code the API answers with, so a
report and the live UI cannot disagree.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig
from collector.period import parse_period
from collector.store import Store, utcnow
from collector.systems import Systems

CSV_COLUMNS = ("system", "name", "core", "from", "to", "planned_s", "excluded_s",
               "downtime_s", "unknown_s", "available_s", "availability", "target", "met",
               "error_budget_s", "budget_left_s", "down_windows", "exclusions")


async def availability_rows(config: CollectorConfig, store: Store, *, start: str | None,
                            end: str | None, systems: list[str] | None) -> list[dict[str, Any]]:
    now = utcnow()
    begin, finish = parse_period(start, end, config.zone, now)
    wanted = systems or [s.id for s in config.systems]
    unknown = [s for s in wanted if s not in {c.id for c in config.systems}]
    if unknown:
        raise ValueError(f"unknown system {', '.join(unknown)}")
    reader = Systems(config, store, HolidayCalendar.load(config.calendar))
    rows = []
    for system_id in wanted:
        system = config.system(system_id)
        report = await reader.availability(system, begin, finish, now)
        rows.append({"system": system.id, "name": system.name, "core": system.core,
                     "from": begin.isoformat(), "to": min(finish, now).isoformat(),
                     **report.as_dict()})
    return rows


async def _rows_from_store(config: CollectorConfig, **period: Any) -> list[dict[str, Any]]:
    store = await Store.open(config.store, synchronous=config.store_synchronous)
    try:
        return await availability_rows(config, store, **period)
    finally:
        await store.close()


def write_availability_report(config: CollectorConfig, *, start: str | None, end: str | None,
                              systems: list[str] | None, fmt: str, output: str) -> int:
    rows = asyncio.run(_rows_from_store(config, start=start, end=end, systems=systems))
    text = _csv(rows) if fmt == "csv" else json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
    return 0


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "down_windows": len(row["windows"]),
                         "exclusions": len(row["exclusions"])})
    return buffer.getvalue()
