"""JSON (every figure) and CSV (the main table) forms of a report."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

from collector.reports.model import Report


def render_json(report: Report) -> bytes:
    return (json.dumps(report.as_dict(), ensure_ascii=False, indent=2) + "\n").encode()


def render_csv(report: Report) -> bytes:
    """The first table, one header row of column keys (stable, language-free, as in the
    JSON form), values raw: seconds, ratios 0–1, ISO 8601 UTC times. UTF-8 with a BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if report.tables:
        table = report.tables[0]
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow([_cell(v) for v in row])
    return buffer.getvalue().encode("utf-8-sig")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
