"""The XLSX form is streamed (openpyxl write-only mode): its layout must survive that —
styled header rows, frozen header, column widths, formatted number and date cells."""

from __future__ import annotations

import io
from datetime import datetime

import openpyxl

from collector.reports import build_report, render_report
from collector.store import Store
from tests.collector.reports.data import NOW, Y0, Y1, seed_year, year_config


async def test_sheets_keep_their_layout(store: Store, store_url: str) -> None:
    await seed_year(store)
    report = await build_report(year_config(store_url), store, "annual", start=Y0, end=Y1,
                                now=NOW, lang="en")
    book = openpyxl.load_workbook(io.BytesIO(render_report(report, "xlsx")))
    summary = book.worksheets[0]
    assert summary["A1"].value == report.title and summary["A1"].font.b
    assert isinstance(summary["B2"].value, datetime)
    assert summary["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert summary.column_dimensions["A"].width == 36
    strip = book["Daily availability"]
    assert strip["A1"].font.b and strip["B1"].number_format == "yyyy-mm-dd"
    assert strip["B1"].value == datetime(2025, 1, 1)
    assert strip["B2"].number_format == "0.000%"
    windows = book["Down windows"]
    assert windows.freeze_panes == "A2"
    assert windows["A1"].font.b and windows["A1"].fill.fgColor.rgb == "00EEF1F5"
    assert windows.column_dimensions["B"].width == 20
    assert windows["D2"].number_format == "0.00" and windows["D2"].value == 43.8
    assert windows["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    # titles are cut to 28 characters (room for a " 2" suffix within Excel's 31)
    assert [s.title for s in book.worksheets][:3] == ["Summary", "Daily availability",
                                                      "Contract objective indicator"]
