"""The incidents, patches and annual reports from evidence built with the collector's own
services (incident engine with a simulated clock, findings from patch / hardening results)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest

from collector.findings import FindingsService
from collector.reports import build_report, render_report
from collector.store import Store
from tests.collector.reports.data import NOW, Y0, Y1, seed_year, year_config
from tests.collector.test_findings import T0 as P0
from tests.collector.test_findings import hardening, patches, update
from tests.collector.test_incidents import T0, World, world

MONTH = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


@pytest.fixture
async def w(store_url: str) -> AsyncIterator[World]:
    async for made in world(store_url):
        yield made


async def late_report_only(w: World) -> int:
    """A level-1 incident responded and recovered in time whose report came 1 h late."""
    await w.results("db-01", "listener", "cc", T0, kind="tcp")
    [opened] = await w.service.evaluate(T0 + timedelta(seconds=31))
    incident = opened.incident
    assert incident.level == 1
    await w.service.acknowledge(incident.id, "张工", "", T0 + timedelta(minutes=5))
    await w.service.recover(incident.id, "张工", "重启监听", T0 + timedelta(minutes=20))
    await w.service.report(incident.id, "张工", "", "RCA-1", T0 + timedelta(hours=25))
    await w.service.count_overtimes(T0 + timedelta(hours=26))
    return incident.id


async def test_missing_only_the_report_deadline_counts_one_overtime(w: World) -> None:
    await late_report_only(w)
    report = await build_report(w.config, w.store, "incidents", start=MONTH[0], end=MONTH[1],
                                now=T0 + timedelta(hours=26))
    [row] = report.table("incidents").records()
    assert (row["system"], row["level"]) == ("ORA", 1)
    assert (row["respond_overtime"], row["recover_overtime"], row["report_overtime"]) == \
        (False, False, True)
    assert row["overtimes"] == 1
    assert row["response_s"] == 300 and row["recovery_s"] == 1200
    assert row["opened_at"] == T0 and row["report_by"] == T0 + timedelta(hours=24)
    [late] = report.table("overtimes").records()
    assert late["due_at"] == T0 + timedelta(hours=24)
    assert late["met_at"] == T0 + timedelta(hours=25)
    year = {r["level"]: r for r in report.table("overtime_year").records()}
    assert (year[1]["overtimes"], year[1]["threshold"], year[1]["breach"]) == (1, 5, False)
    assert (year[2]["threshold"], year[3]["threshold"], year[3]["breach"]) == (11, None, None)
    assert report.figure("overtimes") == 1 and report.figure("major_breach") is False

    data = json.loads(render_report(report, "json"))
    assert data["tables"][0]["rows"][0]["report_overtime"] is True
    html = render_report(report, "html").decode()
    assert "报告超时" in html and "1 级报告超时" in html
    en = await build_report(w.config, w.store, "incidents", start=MONTH[0], end=MONTH[1],
                            now=T0 + timedelta(hours=26), lang="en")
    assert "Report overtime" in render_report(en, "html").decode()
    # another period holds none of it
    empty = await build_report(w.config, w.store, "incidents", start=MONTH[1],
                               end=MONTH[1] + timedelta(days=1), now=MONTH[1] + timedelta(days=2))
    assert empty.table("incidents").rows == [] and empty.figure("overtimes") == 0


async def test_five_level_1_overtimes_are_a_major_breach(store_url: str) -> None:
    async for made in world(store_url, major_breach={1: 2, 2: 11}):
        await late_report_only(made)
        report = await build_report(made.config, made.store, "incidents", start=MONTH[0],
                                    end=MONTH[1], now=T0 + timedelta(hours=26))
        assert report.figure("major_breach") is False   # 1 < 2
        # a second incident on another system, not responded: 1 more level-1 overtime
        await made.results("emr-01", "web", "cc", T0 + timedelta(hours=30))
        await made.results("emr-02", "web", "cc", T0 + timedelta(hours=30))
        await made.service.evaluate(T0 + timedelta(hours=30, seconds=31))
        await made.service.count_overtimes(T0 + timedelta(hours=30, minutes=11))
        report = await build_report(made.config, made.store, "incidents", start=MONTH[0],
                                    end=MONTH[1], now=T0 + timedelta(hours=30, minutes=11))
        year = {r["level"]: r for r in report.table("overtime_year").records()}
        assert year[1]["overtimes"] == 2 and year[1]["breach"] is True
        assert report.figure("major_breach") is True


async def test_patch_audit(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        config = year_config(store_url)
        service = FindingsService(store)
        await service.observe([patches(0, [update("openssl", "Important"),
                                           update("sudo", "Critical")]),
                               hardening(0, ["autoindex"])])
        await service.observe([patches(3, [update("sudo", "Critical")]),
                               hardening(3, ["autoindex"])])
        ids = {f["key"]: f["id"] for f in (await service.host("his-01", P0))["findings"]}
        await service.add_rectification(
            title="2026 第3批安全整改", issued_by="信息科", issued_at=P0,
            due_at=P0 + timedelta(days=10), finding_ids=[ids["update:openssl"]], note="",
            by="t", now=P0)
        await service.add_waiver(host="his-*", key="hardening:nginx.*", accepted_by="信息科 张主任",
                                 reason="厂商未提供兼容版本", expires_at=P0 + timedelta(days=60),
                                 by="t", now=P0)
        start, end = P0 - timedelta(days=1), P0 + timedelta(days=20)
        report = await build_report(config, store, "patches", start=start, end=end,
                                    now=P0 + timedelta(days=30))
    finally:
        await store.close()
    found = {r["key"]: r for r in report.table("findings").records()}
    assert found["update:openssl"]["time_to_fix_s"] == 3 * 86400
    assert found["update:openssl"]["fixed_at"] == P0 + timedelta(days=3)
    assert found["update:sudo"]["severity"] == "critical"
    assert found["update:sudo"]["fixed_at"] is None
    assert found["hardening:nginx.autoindex"]["dengbao"] == "8.1.4.4 d)"
    assert "信息科 张主任" in found["hardening:nginx.autoindex"]["waiver"]
    [host] = report.table("hosts").records()
    assert (host["host"], host["critical"], host["high"], host["waived"]) == ("his-01", 1, 0, 1)
    [task] = report.table("rectifications").records()
    assert task["on_time"] is True and task["completed_at"] == P0 + timedelta(days=3)
    assert report.figure("completion_ratio") == 1.0
    assert (report.figure("open_findings"), report.figure("open_critical")) == (1, 1)
    assert report.figure("fixed") == 1
    book = openpyxl.load_workbook(io.BytesIO(render_report(report, "xlsx")))
    sheet = book["安全发现"]
    header = [c.value for c in sheet[1]]
    openssl = next(r for r in sheet.iter_rows(min_row=2) if r[1].value == "update:openssl")
    assert openssl[header.index("修复用时（小时）")].value == 72


async def test_annual_objectives(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        await seed_year(store)
        config = year_config(store_url)
        report = await build_report(config, store, "annual", start=Y0, end=Y1, now=NOW)
        en = await build_report(config, store, "annual", start=Y0, end=Y1, now=NOW, lang="en")
    finally:
        await store.close()
    rows = report.table("objectives").records()
    availability = {r["scope"]: r for r in rows if r["indicator"] == "核心系统年度可用率"}
    assert set(availability) == {"EMR 电子病历", "HIS 医院信息系统"}   # core systems only
    assert availability["EMR 电子病历"]["met"] is True
    assert availability["EMR 电子病历"]["actual"] == 0.995
    assert availability["HIS 医院信息系统"]["met"] is False
    overtime = next(r for r in rows if r["indicator"] == "一级故障超时次数")
    assert (overtime["actual"], overtime["met"]) == (0, True)
    drills = next(r for r in rows if r["indicator"] == "应急演练")
    assert drills["met"] is None   # no evidence is not "met"
    assert report.figure("objectives_not_met") == 1
    assert any("HIS" in line for line in report.actions)
    assert [t.key for t in report.tables][:4] == ["objectives", "systems", "down_windows",
                                                  "exclusions"]
    assert len(report.strips) == 3
    html = render_report(en, "html").decode()
    assert "Contract objective indicators" in html and "not met" not in html.split("<body>")[0]
    book = openpyxl.load_workbook(io.BytesIO(render_report(en, "xlsx")))
    # Excel allows 31 characters in a sheet name: long titles are cut
    [name] = [n for n in book.sheetnames if n.startswith("Contract objective")]
    objectives = book[name]
    header = [c.value for c in objectives[1]]
    met = [r[header.index("Met")].value for r in objectives.iter_rows(min_row=2)]
    assert met.count(True) >= 3 and met.count(False) == 1 and None in met
