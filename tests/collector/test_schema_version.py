"""Adjacent versions interoperate (decision 0008): the collector reads results of its own
schema version and every older one (recorded payloads in fixtures/results/, kept forever),
reads the next version without the fields it does not know, and refuses later ones with a
409 that names the versions (the agent keeps those results spooled)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from collector.app import METRICS_KEY, STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.schema import results as results_table
from collector.store import Store
from probes.result import SCHEMA_VERSION, CheckResult, known_fields_only
from tests.services import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "results"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


class Collector:
    def __init__(self, url: str, app: web.Application, token: str) -> None:
        self.url, self.app, self.token = url, app, token
        self.store: Store = app[STORE_KEY]

    async def push(self, body: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(
                self.url + "/api/v1/results", json=body,
                headers={"Authorization": f"Bearer {self.token}"}) as resp:
            return resp.status, await resp.json()

    def counted(self, name: str, **labels: str) -> float:
        value = self.app[METRICS_KEY].registry.get_sample_value(name, labels)
        return value or 0.0

    async def stored_metrics(self) -> list[Any]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(results_table.c.metrics))).all()
        return [row.metrics for row in rows]


@pytest.fixture
async def collector(store_url: str) -> AsyncIterator[Collector]:
    app = create_app(parse_collector_config({"store": store_url}))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        token = await app[STORE_KEY].add_agent("emr-app-01", NOW)
        yield Collector(f"http://127.0.0.1:{port}", app, token)
    finally:
        await runner.cleanup()


def test_recorded_payloads_cover_every_version_up_to_this_one() -> None:
    """Changing the result model means a new schema version and a new recorded payload."""
    newest = recorded(f"schema-{SCHEMA_VERSION}.json")["results"][0]
    assert set(newest) == set(CheckResult.model_fields), (
        "the result model changed: raise SCHEMA_VERSION (additive, optional fields only) "
        "and record fixtures/results/schema-N.json")
    assert newest["schema_version"] == SCHEMA_VERSION
    assert CheckResult.model_validate(newest).model_dump(mode="json") == newest
    for version in range(1, SCHEMA_VERSION + 1):
        assert (FIXTURES / f"schema-{version}.json").is_file()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("schema-*.json")))
async def test_results_of_this_and_older_versions_are_accepted(
        collector: Collector, name: str) -> None:
    status, body = await collector.push(recorded(name))
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    assert collector.counted("wardwatch_collector_results_newer_schema_total") == 0


def _next_version_batch() -> dict[str, Any]:
    """What an agent one version ahead may send: new optional fields in results and
    metrics (free-form details and labels may hold anything already)."""
    batch = copy.deepcopy(recorded(f"schema-{SCHEMA_VERSION}.json"))
    result = batch["results"][0]
    result["schema_version"] = SCHEMA_VERSION + 1
    result["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
    result["host"] = {"name": "emr-app-01", "os": "Kylin V10"}
    result["metrics"][0]["unit"] = "seconds"
    result["details"]["new_detail"] = True
    return batch


async def test_next_version_is_stored_without_the_fields_this_collector_does_not_know(
        collector: Collector) -> None:
    status, body = await collector.push(_next_version_batch())
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    assert collector.counted("wardwatch_collector_results_newer_schema_total") == 1
    assert await collector.store.count_results() == 1
    [metrics] = await collector.stored_metrics()
    assert metrics[0] == {"name": "http_duration_seconds", "value": 0.042, "labels": {}}
    # a replay of the same batch is stored once, as for any result
    assert await collector.push(_next_version_batch()) == (
        200, {"accepted": 0, "duplicates": 1})


async def test_next_version_still_has_to_be_valid(collector: Collector) -> None:
    batch = _next_version_batch()
    batch["results"][0]["status"] = "sort of ok"
    status, body = await collector.push(batch)
    assert status == 400
    assert "status" in body["error"]
    assert await collector.store.count_results() == 0


async def test_unknown_fields_of_this_version_are_a_bug_not_a_newer_schema(
        collector: Collector) -> None:
    batch = recorded(f"schema-{SCHEMA_VERSION}.json")
    batch["results"][0]["trace_id"] = "x"
    status, body = await collector.push(batch)
    assert status == 400
    assert "trace_id" in body["error"]
    assert collector.counted("wardwatch_collector_batches_rejected_total",
                             reason="invalid") == 1


@pytest.mark.parametrize("extra", [False, True])
async def test_two_versions_ahead_is_refused_with_409_naming_the_versions(
        collector: Collector, extra: bool) -> None:
    batch = _next_version_batch() if extra else recorded(f"schema-{SCHEMA_VERSION}.json")
    batch["results"][0]["schema_version"] = SCHEMA_VERSION + 2
    status, body = await collector.push(batch)
    assert status == 409   # not 400/422: the agent keeps these spooled, it drops no result
    assert f"result schema version {SCHEMA_VERSION + 2}" in body["error"]
    assert f"up to {SCHEMA_VERSION + 1}" in body["error"]
    assert "upgrade the collector" in body["error"]
    assert await collector.store.count_results() == 0
    assert collector.counted("wardwatch_collector_batches_rejected_total",
                             reason="schema_version") == 1


def test_known_fields_only_keeps_free_form_fields_whole() -> None:
    raw = _next_version_batch()["results"][0]
    known, ignored = known_fields_only(raw)
    assert ignored == ["host", "metrics.unit", "trace_id"]
    assert known["details"]["new_detail"] is True
    assert raw["trace_id"]   # the caller's dict is left as it was
    assert CheckResult.model_validate(known).schema_version == SCHEMA_VERSION + 1
