"""POST /api/v1/alertmanager with Alertmanager's version-4 payload (the fixture follows its
documentation): a firing group opens one incident, repeats change nothing, a resolved group
recovers it; bad payloads are 400; a maintenance window of the system suppresses opening."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.collector.test_api import Api
from tests.collector.test_incident_api import api  # noqa: F401 (the fixture)

RECORDED = json.loads((Path(__file__).parents[1] / "alerts" / "fixtures"
                       / "alertmanager-firing.json").read_text())
NOW = datetime.now(UTC).replace(microsecond=0)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def firing() -> dict[str, Any]:
    """The recorded payload, its times moved to just before now."""
    out = copy.deepcopy(RECORDED)
    out["alerts"][0]["startsAt"] = at(10)
    out["alerts"][1]["startsAt"] = at(8.5)
    return out


FIRING = firing()


def resolved(payload: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["status"] = "resolved"
    for i, alert in enumerate(out["alerts"]):
        alert["status"] = "resolved"
        alert["endsAt"] = at(2 - i)
    return out


async def test_firing_group_is_one_incident_and_resolved_recovers_it(api: Api) -> None:  # noqa: F811
    status, reply = await api.call("POST", "/api/v1/alertmanager", FIRING)
    assert status == 200 and reply["events"] == ["opened"], reply
    incident = reply["incidents"][0]
    assert (incident["level"], incident["system"], incident["source"]) == (2, "EMR",
                                                                          "alertmanager")
    assert incident["opened_at"] == (NOW - timedelta(minutes=10)).isoformat()  # earliest
    assert "EMR_DATA is 97% full" in incident["cause"] and "EMR_INDEX" in incident["cause"]
    # Alertmanager repeats a firing group every repeat_interval: nothing new
    status, again = await api.call("POST", "/api/v1/alertmanager", FIRING)
    assert status == 200 and again["events"] == []
    # a page-severity alert joins the group: escalated to level 1
    paged = copy.deepcopy(FIRING)
    paged["alerts"][1]["labels"]["severity"] = "page"
    _, escalated = await api.call("POST", "/api/v1/alertmanager", paged)
    assert escalated["events"] == ["escalated"] and escalated["incidents"][0]["level"] == 1
    status, done = await api.call("POST", "/api/v1/alertmanager", resolved(FIRING))
    assert status == 200 and done["events"] == ["recovered"]
    # recovered when the last alert of the group ended
    assert done["incidents"][0]["recovered_at"] == (NOW - timedelta(minutes=1)).isoformat()
    _, shown = await api.call("GET", f"/api/v1/incidents/{incident['id']}")
    assert [e["kind"] for e in shown["timeline"]] == ["opened", "received", "escalated",
                                                      "recovered"]


async def test_unmapped_severity_opens_nothing(api: Api) -> None:  # noqa: F811
    info = copy.deepcopy(FIRING)
    for alert in info["alerts"]:
        alert["labels"]["severity"] = "info"
    info["commonLabels"]["severity"] = "info"
    status, reply = await api.call("POST", "/api/v1/alertmanager", info)
    assert status == 200 and reply == {"incidents": [], "events": []}


async def test_maintenance_suppresses_alertmanager_incidents(api: Api) -> None:  # noqa: F811
    now = datetime.now(UTC)
    await api.store.add_maintenance(system="EMR", start=now - timedelta(hours=1),
                                    end=now + timedelta(hours=1), kind="planned",
                                    reason="扩容表空间", approved_by="信息科", by="vendor",
                                    now=now)
    status, reply = await api.call("POST", "/api/v1/alertmanager", FIRING)
    assert status == 200 and reply["events"] == []


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p.update(version="3"), "version"),
    (lambda p: p.update(alerts=[]), "alerts"),
    (lambda p: p["alerts"][0].update(startsAt="yesterday"), "startsAt"),
    (lambda p: p.pop("groupKey"), "groupKey"),
])
async def test_bad_payloads(api: Api, mutate: Any, message: str) -> None:  # noqa: F811
    payload = copy.deepcopy(FIRING)
    mutate(payload)
    status, reply = await api.call("POST", "/api/v1/alertmanager", payload)
    assert status == 400 and message in reply["error"], reply
