"""Systems, availability and maintenance over the HTTP API, against a real collector app."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.app import STORE_KEY, create_app, refresh_system_metrics
from collector.config import parse_collector_config
from collector.store import Store, utcnow
from probes.result import CheckResult, Status
from tests.services import free_port, needs


class Api:
    """A client for the collector app under test, and the app's store."""

    def __init__(self, url: str, app: web.Application) -> None:
        self.url = url
        self.app = app
        self.store: Store = app[STORE_KEY]

    async def call(self, method: str, path: str, body: Any = None,
                   **params: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.request(
                method, self.url + path, json=body, params=params) as resp:
            return resp.status, await resp.json()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
                self.url + "/metrics") as resp:
            return await resp.text()


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[Api]:
    config = parse_collector_config({"store": store_url, "systems": [
        {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-*/web"],
         "rule": "any"},
        {"id": "APPT", "name": "统一预约", "members": ["appt-01/web"],
         "schedule": [{"days": "mon-sat", "start": "07:30", "end": "18:00"}]},
    ]})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Api(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


def results(agent: str, start: datetime, minutes: int, down: range = range(0)
            ) -> list[CheckResult]:
    return [CheckResult(agent_id=agent, check_id="web", kind="http", system="EMR",
                        status=Status.CRITICAL if m in down else Status.OK,
                        reason="down" if m in down else "ok",
                        started_at=start + timedelta(minutes=m), duration_s=0.01,
                        interval_s=60, summary="") for m in range(minutes)]


async def test_systems_and_availability(api: Api) -> None:
    now = utcnow().replace(second=0, microsecond=0)
    start = now - timedelta(hours=2)
    await api.store.add_agent("emr-01", start)
    await api.store.ingest("emr-01", results("emr-01", start, 120, down=range(30, 36)), now)
    await refresh_system_metrics(api.app)  # what housekeeping does every minute
    status, systems = await api.call("GET", "/api/v1/systems")
    assert status == 200
    emr = next(s for s in systems if s["id"] == "EMR")
    assert (emr["name"], emr["state"], emr["core"]) == ("电子病历", "up", True)
    assert emr["monitored_from"] == start.isoformat()  # the year counts from first data
    assert emr["downtime_ytd_s"] == 360
    assert emr["budget_left_s"] == pytest.approx(emr["budget_year_s"] - 360)
    assert emr["budget_year_s"] > 0
    appt = next(s for s in systems if s["id"] == "APPT")
    assert appt["state"] == "unknown"  # never reported

    status, report = await api.call("GET", "/api/v1/availability", system="EMR",
                                    **{"from": start.isoformat(), "to": now.isoformat()})
    assert status == 200, report
    assert report["planned_s"] == 7200 and report["downtime_s"] == 360
    assert report["availability"] == pytest.approx((7200 - 360) / 7200)
    assert report["target"] == 0.995 and report["met"] is False
    assert [w["seconds"] for w in report["windows"]] == [360]

    status, window = await api.call("POST", "/api/v1/maintenance", {
        "system": "EMR", "start": (start + timedelta(minutes=30)).isoformat(),
        "end": (start + timedelta(minutes=36)).isoformat(), "kind": "force_majeure",
        "reason": "市电中断", "approved_by": "信息科 张主任", "by": "vendor"})
    assert status == 201, window
    _, after = await api.call("GET", "/api/v1/availability", system="EMR",
                              **{"from": start.isoformat(), "to": now.isoformat()})
    assert (after["excluded_s"], after["downtime_s"], after["availability"]) == (360, 0, 1.0)
    _, listed = await api.call("GET", "/api/v1/maintenance", system="EMR")
    assert [w["reason"] for w in listed] == ["市电中断"]
    # the year-to-date figure is cached, but a new window is counted at once
    _, systems = await api.call("GET", "/api/v1/systems")
    emr = next(s for s in systems if s["id"] == "EMR")
    assert emr["downtime_ytd_s"] == 0
    _, again = await api.call("GET", "/api/v1/systems")
    assert next(s for s in again if s["id"] == "EMR")["ytd_as_of"] == emr["ytd_as_of"]

    await refresh_system_metrics(api.app)
    async with aiohttp.ClientSession() as session, session.get(api.url + "/metrics") as resp:
        text = await resp.text()
    assert 'wardwatch_collector_system_state{state="up",system="EMR"} 1.0' in text
    assert 'wardwatch_collector_system_state{state="unknown",system="APPT"} 1.0' in text
    assert 'wardwatch_collector_system_availability_ratio{system="EMR"} 1.0' in text
    needs(shutil.which("promtool") is not None, "promtool (Debian package prometheus)")
    lint = await asyncio.to_thread(subprocess.run, ["promtool", "check", "metrics"],
                                   input=text.encode(), capture_output=True, timeout=30,
                                   check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(("params", "status", "message"), [
    ({}, 400, "system is required"),
    ({"system": "NOPE"}, 404, "unknown system"),
    ({"system": "EMR", "from": "yesterday"}, 400, "is not a date"),
    ({"system": "EMR", "from": "2026-02-01", "to": "2026-01-01"}, 400, "to must be after"),
])
async def test_availability_bad_input(api: Api, params: dict[str, str], status: int,
                                      message: str) -> None:
    got, body = await api.call("GET", "/api/v1/availability", **params)
    assert got == status and message in body["error"]


@pytest.mark.parametrize(("body", "message"), [
    ({"system": "EMR"}, "start"),
    ({"system": "HIS", "start": "2026-01-01T00:00Z", "end": "2026-01-01T01:00Z",
      "kind": "planned", "reason": "x", "approved_by": "y"}, "unknown system"),
    ({"system": "EMR", "start": "2026-01-01T00:00", "end": "2026-01-01T01:00",
      "kind": "planned", "reason": "x", "approved_by": "y"}, "UTC offset"),
    ({"system": "EMR", "start": "2026-01-01T02:00Z", "end": "2026-01-01T01:00Z",
      "kind": "planned", "reason": "x", "approved_by": "y"}, "end must be after start"),
    ({"system": "EMR", "start": "2026-01-01T00:00Z", "end": "2026-01-01T01:00Z",
      "kind": "holiday", "reason": "x", "approved_by": "y"}, "kind"),
])
async def test_maintenance_bad_input(api: Api, body: dict[str, Any], message: str) -> None:
    status, reply = await api.call("POST", "/api/v1/maintenance", body)
    assert status == 400 and message in reply["error"], reply
    assert await api.store.maintenance_windows() == []


def test_dates_are_local_days() -> None:
    from zoneinfo import ZoneInfo

    from collector.period import parse_period

    start, end = parse_period("2026-01-01", "2026-12-31", ZoneInfo("Asia/Shanghai"),
                              datetime(2027, 1, 5, tzinfo=UTC))
    assert start == datetime(2025, 12, 31, 16, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 16, tzinfo=UTC)
