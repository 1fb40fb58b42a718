"""Incidents over the HTTP API of a real collector app: opened from ingested results by the
evaluation loop's step, listed, shown with their timeline, acknowledged, recovered, reported
and closed; bad requests get 4xx with a message; /metrics shows the counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from collector.app import create_app, evaluate_incidents
from collector.config import parse_collector_config
from collector.store import utcnow
from probes.result import CheckResult, Status
from tests.collector.test_api import Api
from tests.services import free_port


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[Api]:
    config = parse_collector_config({"store": store_url, "systems": [
        {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-01/*"]}]})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Api(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


async def feed(api: Api, status: Status, count: int, start_ago: timedelta) -> None:
    now = utcnow()
    start = now - start_ago
    await api.store.ingest("emr-01", [
        CheckResult(agent_id="emr-01", check_id="web", kind="http", status=status,
                    reason="ok" if status is Status.OK else "connect_refused",
                    started_at=start + timedelta(seconds=10 * i), duration_s=0.01,
                    interval_s=10, summary="GET /health")
        for i in range(count)], now)


async def test_incident_lifecycle_over_http(api: Api) -> None:
    await feed(api, Status.CRITICAL, 3, timedelta(seconds=25))
    await evaluate_incidents(api.app)
    status, listed = await api.call("GET", "/api/v1/incidents", state="open")
    assert status == 200 and len(listed) == 1
    incident = listed[0]
    assert incident["level"] == 1 and incident["system"] == "EMR"
    assert incident["number"].startswith("INC-") and incident["respond_by"]
    number = incident["number"]

    status, acked = await api.call("POST", f"/api/v1/incidents/{number}/ack",
                                   {"by": "张工", "note": "已到场"})
    assert status == 200 and acked["responded_by"] == "张工"
    status, recovered = await api.call("POST", f"/api/v1/incidents/{incident['id']}/recover",
                                       {"by": "张工", "note": "重启 WebLogic"})
    assert status == 200 and recovered["state"] == "recovered"
    status, again = await api.call("POST", f"/api/v1/incidents/{incident['id']}/recover",
                                   {"by": "张工"})
    assert status == 409 and "not open" in again["error"]
    status, reported = await api.call("POST", f"/api/v1/incidents/{incident['id']}/report",
                                      {"by": "张工", "note": "根因分析", "ref": "RCA-17"})
    assert status == 200 and reported["report_ref"] == "RCA-17"
    status, closed = await api.call("POST", f"/api/v1/incidents/{incident['id']}/close",
                                    {"by": "信息科"})
    assert status == 200 and closed["state"] == "closed"

    status, shown = await api.call("GET", f"/api/v1/incidents/{incident['id']}")
    assert status == 200
    assert [e["kind"] for e in shown["timeline"]] == [
        "opened", "acknowledged", "recovered", "reported", "closed"]
    assert shown["timeline"][1]["by"] == "张工" and shown["overtimes"] == []

    text = await api.metrics()
    assert 'wardwatch_collector_incident_respond_seconds_count{level="1"} 1.0' in text
    assert 'wardwatch_collector_overtimes_major_breach_threshold{level="1"} 5.0' in text


async def test_open_count_and_overtimes_in_metrics(api: Api) -> None:
    # failing since 15 minutes ago: the 10-minute respond deadline has passed
    await feed(api, Status.CRITICAL, 91, timedelta(minutes=15))
    await evaluate_incidents(api.app)
    text = await api.metrics()
    assert 'wardwatch_collector_incidents_open{level="1"} 1.0' in text
    assert 'wardwatch_collector_overtimes{level="1"} 1.0' in text
    [incident] = (await api.call("GET", "/api/v1/incidents"))[1]
    _, shown = await api.call("GET", f"/api/v1/incidents/{incident['id']}")
    assert [o["deadline"] for o in shown["overtimes"]] == ["respond"]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("GET", "/api/v1/incidents?state=sleeping", None, 400, "state must be"),
    ("GET", "/api/v1/incidents?level=7", None, 400, "level must be"),
    ("GET", "/api/v1/incidents/abc", None, 400, "is not an incident id"),
    ("GET", "/api/v1/incidents/999", None, 404, "no incident 999"),
    ("POST", "/api/v1/incidents/999/ack", {"by": "x"}, 404, "no incident"),
    ("POST", "/api/v1/incidents/1/ack", {"note": "x"}, 400, "by"),
    ("POST", "/api/v1/incidents/1/snooze", {"by": "x"}, 404, "unknown action"),
])
async def test_bad_requests(api: Api, method: str, path: str, body: Any, status: int,
                            message: str) -> None:
    if "snooze" in path:   # an existing incident, so that only the action is wrong
        await feed(api, Status.CRITICAL, 3, timedelta(seconds=25))
        await evaluate_incidents(api.app)
    base, _, query = path.partition("?")
    params = dict(p.split("=") for p in query.split("&")) if query else {}
    got, reply = await api.call(method, base, body, **params)
    assert got == status and message in reply["error"], reply
