"""The availability report over a stored 2025 with known answers, in every format and both
languages: 43.8 h down in a 24×7 year is exactly 99.5 % (met), one second more is not."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from html.parser import HTMLParser

import openpyxl
import pytest

from collector.reports import FORMATS, build_report, render_report
from collector.reports.catalogue import CATALOGUES
from collector.reports.model import Report
from collector.store import Store
from tests.collector.reports.data import (
    ALLOWED,
    EMR_DOWN,
    HIS_MAINT,
    NOW,
    Y0,
    Y1,
    ZONE,
    seed_year,
    year_config,
)


@pytest.fixture
async def year(store_url: str) -> AsyncIterator[tuple[Store, Report, Report]]:
    store = await Store.open(store_url)
    try:
        await seed_year(store)
        config = year_config(store_url)
        zh = await build_report(config, store, "availability", start=Y0, end=Y1, now=NOW)
        en = await build_report(config, store, "availability", start=Y0, end=Y1, now=NOW,
                                lang="en")
        yield store, zh, en
    finally:
        await store.close()


async def test_figures_are_the_contract_arithmetic(
        year: tuple[Store, Report, Report]) -> None:
    _store, report, _en = year
    rows = {r["system"]: r for r in report.table("systems").records()}
    emr, his, nur = rows["EMR"], rows["HIS"], rows["NUR"]
    assert emr["planned_s"] == 365 * 86400
    assert emr["downtime_s"] == ALLOWED.total_seconds() == 157_680
    assert emr["availability"] == 0.995 and emr["met"] is True
    assert emr["budget_left_s"] == 0
    assert his["excluded_s"] == 7200 and his["met"] is False
    assert his["downtime_s"] == ALLOWED.total_seconds() + 1
    assert nur["availability"] == 1.0
    assert report.figure("core_systems") == 2 and report.figure("core_met") == 1
    [window] = [w for w in report.table("down_windows").records() if w["system"] == "EMR"]
    assert (window["start"], window["end"]) == (EMR_DOWN, EMR_DOWN + ALLOWED)
    [excl] = report.table("exclusions").records()
    assert (excl["start"], excl["reason"], excl["approved_by"]) == \
        (HIS_MAINT[0], "Oracle 季度补丁", "信息科 张主任")
    # the strip: one cell per local day; the outage's first day is 0, its second 4.2 h up
    strip = next(s for s in report.strips if s.system == "EMR")
    assert len(strip.days) == 365 and strip.days[0].day.isoformat() == "2025-01-01"
    by_day = {d.day.isoformat(): d for d in strip.days}
    assert by_day["2025-03-10"].availability == 0
    assert by_day["2025-03-11"].availability == pytest.approx(4.2 / 24)
    assert by_day["2025-03-12"].availability == 1
    assert sum(d.downtime_s for d in strip.days) == emr["downtime_s"]


async def test_json_holds_every_figure(year: tuple[Store, Report, Report]) -> None:
    _store, report, _en = year
    data = json.loads(render_report(report, "json"))
    assert data["kind"] == "availability" and data["timezone"] == "Asia/Shanghai"
    assert data["from"] == Y0.isoformat() and data["to"] == Y1.isoformat()
    [systems, windows, exclusions] = data["tables"]
    emr = next(r for r in systems["rows"] if r["system"] == "EMR")
    assert emr["availability"] == 0.995 and emr["downtime_s"] == 157_680
    assert emr["available_s"] + emr["downtime_s"] == emr["counted_s"]
    assert {c["key"]: c["type"] for c in systems["columns"]}["availability"] == "ratio"
    assert windows["rows"][0]["start"] == EMR_DOWN.isoformat()
    assert exclusions["rows"][0]["approved_by"] == "信息科 张主任"
    assert data["summary"]["core_met"] == 1
    strip = next(s for s in data["strips"] if s["system"] == "EMR")
    assert sum(d["downtime_s"] for d in strip["days"]) == 157_680


async def test_csv_is_the_main_table_with_a_bom(year: tuple[Store, Report, Report]) -> None:
    _store, report, _en = year
    data = render_report(report, "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    by = {r["system"]: r for r in rows}
    assert set(by) == {"EMR", "HIS", "NUR"}
    assert float(by["EMR"]["availability"]) == 0.995 and by["EMR"]["met"] == "true"
    assert by["HIS"]["name"] == "医院信息系统" and float(by["HIS"]["excluded_s"]) == 7200


async def test_xlsx_has_real_number_and_date_cells(year: tuple[Store, Report, Report]) -> None:
    _store, report, en = year
    for rep, systems_title, windows_title in ((report, "各系统可用率", "停机时段"),
                                              (en, "Availability per system", "Down windows")):
        book = openpyxl.load_workbook(io.BytesIO(render_report(rep, "xlsx")))
        sheet = book[systems_title]
        header = [c.value for c in sheet[1]]
        emr = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == "EMR")
        availability = emr[header.index(rep.table("systems").columns[10].label)]
        assert availability.value == 0.995 and availability.number_format == "0.000%"
        downtime = emr[header.index(rep.table("systems").columns[6].label)]
        assert downtime.value == pytest.approx(43.8) and isinstance(downtime.value, float)
        met = emr[header.index(rep.table("systems").columns[12].label)]
        assert met.value is True
        windows = book[windows_title]
        assert "(Asia/Shanghai)" in str(windows.cell(row=1, column=2).value)
        start = windows.cell(row=2, column=2).value
        # a real datetime cell, in local time: the outage began at local midnight
        assert isinstance(start, datetime) and start == datetime(2025, 3, 10, 0, 0)
        assert start == EMR_DOWN.astimezone(ZONE).replace(tzinfo=None)
    strips = openpyxl.load_workbook(io.BytesIO(render_report(report, "xlsx")))["每日可用率"]
    assert strips.max_column == 366 and strips.cell(row=2, column=2).value == 1.0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_title = tag == "title"
        for name, value in attrs:
            if name in ("href", "src", "xlink:href", "action") or "url(" in (value or ""):
                self.urls.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.titles.append(data)


def parse(html: bytes) -> _Page:
    page = _Page()
    page.feed(html.decode())
    return page


async def test_html_is_self_contained_and_shows_the_figures(
        year: tuple[Store, Report, Report]) -> None:
    _store, report, en = year
    for rep, words in ((report, ("系统可用率报告", "停机时段", "信息科 张主任", "是")),
                       (en, ("System availability report", "Down windows", "yes"))):
        html = render_report(rep, "html")
        assert b"http://" not in html and b"https://" not in html
        page = parse(html)
        assert page.urls == []            # no href, src or url() at all
        text = "".join(page.text)
        for word in words:
            assert word in text
        assert "99.500 %" in text and "43.80" in text   # EMR availability and downtime (h)
        assert "@page { size: A4" in text and "thead" in page.tags
        assert page.tags.count("rect") == 3 * 365
        # each day's figure is in its cell's tooltip
        assert "2025-03-11: 17.500 %, 19.80 h" in page.titles
    assert b'<html lang="zh-CN">' in render_report(report, "html")


def test_catalogues_have_the_same_keys() -> None:
    zh, en = CATALOGUES["zh-CN"], CATALOGUES["en"]
    assert set(zh) == set(en)
    assert all(value.strip() for value in (*zh.values(), *en.values()))


async def test_period_and_arguments_are_checked(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        config = year_config(store_url)
        with pytest.raises(ValueError, match="unknown system NOPE"):
            await build_report(config, store, "availability", start=Y0, end=Y1, now=NOW,
                               systems=["NOPE"])
        with pytest.raises(ValueError, match="unknown report kind"):
            await build_report(config, store, "weekly", start=Y0, end=Y1, now=NOW)
        with pytest.raises(ValueError, match="to must be after from"):
            await build_report(config, store, "availability", start=Y1, end=Y0, now=NOW)
        with pytest.raises(ValueError, match="unknown format"):
            render_report(await build_report(config, store, "availability", start=Y0,
                                              end=Y0 + timedelta(days=1), now=NOW), "pdf")
    finally:
        await store.close()
    assert FORMATS == ("html", "xlsx", "json", "csv")
