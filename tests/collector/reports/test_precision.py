"""A shown figure never contradicts met / not met: a system one second short of its 99.5 %
target reads 99.499 %, not 99.500 %, in every form of the annual report."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from fractions import Fraction

import openpyxl

from collector.config import parse_collector_config
from collector.reports import build_report, render_report
from collector.reports.precision import number_text, percent_format, percent_text
from collector.store import Store
from tests.collector.reports.data import ALLOWED, EMR_DOWN, NOW, Y0, Y1, add_intervals

YEAR_S = 365 * 86400
MISSED = Fraction(YEAR_S - int(ALLOWED.total_seconds()) - 1, YEAR_S)   # 1 s over the budget


def _objectives_html(html: str) -> str:
    match = re.search(r'<table class="data[^"]*" data-table="objectives">(.*?)</table>', html,
                      re.S)
    assert match is not None
    return match.group(1)


async def test_one_second_miss_is_not_shown_as_the_target(store: Store, store_url: str
                                                           ) -> None:
    down_until = EMR_DOWN + ALLOWED + timedelta(seconds=1)
    await add_intervals(store, "pacs-01", "web", "PACS", [
        (Y0, EMR_DOWN, "ok"), (EMR_DOWN, down_until, "critical"), (down_until, Y1, "ok")])
    config = parse_collector_config({"store": store_url, "systems": [
        {"id": "PACS", "name": "影像", "core": True, "members": ["pacs-01/web"]}]})
    report = await build_report(config, store, "annual", start=Y0, end=Y1, now=NOW, lang="en")

    [row] = [r for r in report.table("objectives").records() if r["scope"] == "PACS 影像"]
    assert row["met"] is False
    assert row["actual"] == float(MISSED)          # the value itself stays exact
    assert row["actual_text"] == "99.499 %"

    objectives = _objectives_html(render_report(report, "html").decode())
    assert "99.500 %" not in objectives and "0.99<" not in objectives
    assert "99.499 %" in objectives and "not met" in objectives
    systems = render_report(report, "html").decode().split('data-table="systems"')[1]
    assert "99.499 %" in systems.split("</table>")[0]

    book = openpyxl.load_workbook(io.BytesIO(render_report(report, "xlsx")))
    [name] = [n for n in book.sheetnames if n.startswith("Availability per system")]
    sheet = book[name]
    header = [c.value for c in sheet[1]]
    cell = sheet.cell(row=2, column=header.index("Availability") + 1)
    assert cell.value == float(MISSED)
    # Excel rounds in a number format: 0.000% would show 99.500 %, 0.000000% shows 99.499997 %
    assert cell.number_format == "0.000000%"

    rows = list(csv.DictReader(io.StringIO(render_report(report, "csv").decode("utf-8-sig"))))
    [csv_row] = [r for r in rows if r["scope"] == "PACS 影像"]
    assert float(csv_row["actual"]) == float(MISSED) and csv_row["met"] == "false"


def test_figures_are_truncated_not_rounded() -> None:
    assert percent_text(float(MISSED)) == "99.499 %"
    assert percent_text(MISSED) == "99.499 %"
    assert percent_text(0.995) == "99.500 %"            # the float just below 199/200
    assert percent_text(Fraction(199, 200)) == "99.500 %"
    assert percent_text(Fraction(1999, 2000), 1) == "99.9 %"
    assert percent_text(1.0) == "100.000 %"
    assert number_text(0.995) == "0.995" and number_text(float(MISSED)) == "0.994999"
    assert number_text(12.5) == "12.50" and number_text(3.0) == "3.00"
    assert percent_format(0.995) == "0.000%" and percent_format(1.0) == "0.000%"
    assert percent_format(0.9999996) == "0.00000%"     # 99.99996 %, not 100.000 %
