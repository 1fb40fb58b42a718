"""The Excel form (openpyxl): a summary sheet, then one sheet per table, with real cells.

Ratios are numbers with a percent format (three decimals, more where Excel's rounding would
carry a figure just under a target up to it: collector/reports/precision.py); durations are
numbers of hours (a negative budget left stays readable, which an Excel duration would not);
times are datetime cells in the report's display zone, naive as Excel needs them, the zone
named in the header row.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.workbook.child import _WorkbookChild

from collector.reports.catalogue import text
from collector.reports.model import ColumnType, Report
from collector.reports.precision import percent_format

HOURS = "0.00"
DATETIME = "yyyy-mm-dd hh:mm:ss"
_BOLD = Font(bold=True)
_HEADER = PatternFill("solid", fgColor="EEF1F5")
_INVALID = re.compile(r"[\[\]:*?/\\]")


def _cell(value: Any, kind: ColumnType, zone: ZoneInfo, lang: str) -> tuple[Any, str | None]:
    if value is None:
        return None, None
    if kind == "ratio":
        return float(value), percent_format(value)
    if kind == "seconds":
        return value / 3600, HOURS
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None), DATETIME
    if kind == "bool":
        return bool(value), None
    return value, None


def _sheet_name(title: str, used: set[str]) -> str:
    name = _INVALID.sub(" ", title)[:28].strip() or "sheet"
    base, n = name, 2
    while name in used:
        name = f"{base[:25]} {n}"
        n += 1
    used.add(name)
    return name


def render_xlsx(report: Report) -> bytes:
    # write-only (streaming) mode: rows go out as they are appended, which keeps a year of
    # 300 hosts in seconds; column widths and frozen panes are set before the first row
    zone = ZoneInfo(report.timezone)
    lang = report.lang
    book = Workbook(write_only=True)
    used: set[str] = set()

    def cell(sheet: _WorkbookChild, value: Any, fmt: str | None = None,
             font: Font | None = None, fill: PatternFill | None = None) -> Cell:
        out = WriteOnlyCell(sheet, value)
        if fmt:
            out.number_format = fmt
        if font is not None:
            out.font = font
        if fill is not None:
            out.fill = fill
        return out

    def local(value: datetime) -> datetime:
        return value.astimezone(zone).replace(tzinfo=None)

    summary = book.create_sheet(_sheet_name(text(lang, "summary"), used))
    summary.column_dimensions["A"].width = 36
    summary.column_dimensions["B"].width = 22
    summary.column_dimensions["C"].width = 22
    summary.append([cell(summary, report.title, font=Font(bold=True, size=14))])
    summary.append([text(lang, "period"), cell(summary, local(report.start), DATETIME),
                    cell(summary, local(report.end), DATETIME)])
    summary.append([text(lang, "timezone"), report.timezone])
    summary.append([text(lang, "generated_at"),
                    cell(summary, local(report.generated_at), DATETIME)])
    summary.append([text(lang, "systems"),
                    ", ".join(report.systems) or text(lang, "all_systems")])
    summary.append([])
    for figure in report.summary:
        value, fmt = _cell(figure.value, figure.type, zone, lang)
        summary.append([figure.label, cell(summary, value, fmt)])
    if report.actions:
        summary.append([])
        summary.append([cell(summary, text(lang, "actions"), font=_BOLD)])
        for line in report.actions:
            summary.append([line])

    if report.strips:
        sheet = book.create_sheet(_sheet_name(text(lang, "strip.title"), used))
        days = [d.day for d in report.strips[0].days]
        sheet.append([cell(sheet, text(lang, "col.system"), font=_BOLD),
                      *(cell(sheet, day, "yyyy-mm-dd", _BOLD) for day in days)])
        for strip in report.strips:
            sheet.append([strip.system,
                          *(cell(sheet, d.availability, None if d.availability is None
                                 else percent_format(d.availability)) for d in strip.days)])

    for table in report.tables:
        sheet = book.create_sheet(_sheet_name(table.title, used))
        for index, column in enumerate(table.columns, start=1):
            width = 20 if column.type == "datetime" else min(40, max(10, len(column.label) * 2))
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        sheet.append([cell(sheet, f"{c.label} ({report.timezone})" if c.type == "datetime"
                           else c.label, font=_BOLD, fill=_HEADER) for c in table.columns])
        for values in table.rows:
            row: list[Any] = []
            for value, column in zip(values, table.columns, strict=True):
                shown, fmt = _cell(value, column.type, zone, lang)
                row.append(cell(sheet, shown, fmt) if fmt else shown)
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
