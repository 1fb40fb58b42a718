"""Reports from the store: availability, incidents, patches, inspection and the annual pack,
in HTML (self-contained, prints to A4), XLSX, JSON and CSV, in zh-CN or English.

    report = await build_report(config, store, "annual", start=..., end=...)
    data = render_report(report, "xlsx")

`build_report` gathers the figures (one module per kind, each reading the collector's own
services); `render_report` only formats a `Report` and computes nothing. The JSON form holds
every figure, so each number in the other forms can be checked against it. CSV carries the
report's main (first) table only — UTF-8 with a BOM so Excel reads the Chinese — because a
CSV file holds one table; the other forms carry them all (docs/reports.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from collector.config import CollectorConfig
from collector.reports.catalogue import LANGS
from collector.reports.context import Context
from collector.reports.model import Column, DayCell, Figure, Report, Strip, Table
from collector.store import Store, utcnow

KINDS = ("availability", "incidents", "patches", "inspection", "annual")
FORMATS = ("html", "xlsx", "json", "csv")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}

__all__ = ["FORMATS", "KINDS", "LANGS", "MEDIA_TYPES", "Column", "DayCell", "Figure", "Report",
           "Strip", "Table", "build_report", "render_report"]


async def build_report(config: CollectorConfig, store: Store, kind: str, *, start: datetime,
                       end: datetime, systems: list[str] | None = None, lang: str = "zh-CN",
                       now: datetime | None = None) -> Report:
    """The report `kind` over [start, end) (aware datetimes; time after `now` is cut off).

    Raises ValueError for an unknown kind, language or system, or an empty period.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r} (one of {', '.join(KINDS)})")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (one of {', '.join(LANGS)})")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone")
    now = now or utcnow()
    if end <= start:
        raise ValueError("to must be after from")
    if start >= now:
        raise ValueError("the period has not begun yet")
    ctx = Context.make(config, store, start=start, end=end, now=now, systems=systems,
                       lang=lang)
    # one module per kind, imported when asked for: collector/reports/<kind>.py
    module = importlib.import_module(f"collector.reports.{kind}")
    build: Callable[[Context], Awaitable[Report]] = getattr(module, f"{kind}_report")
    report = await build(ctx)
    report.systems = list(systems or [])
    return report


def render_report(report: Report, fmt: str) -> bytes:
    """The report as a file's bytes in `fmt` (html, xlsx, json or csv)."""
    if fmt == "json":
        from collector.reports.tabular import render_json

        return render_json(report)
    if fmt == "csv":
        from collector.reports.tabular import render_csv

        return render_csv(report)
    if fmt == "html":
        from collector.reports.html import render_html

        return render_html(report)
    if fmt == "xlsx":
        from collector.reports.xlsx import render_xlsx

        return render_xlsx(report)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
