"""POST /api/v1/results against a real collector app on loopback (SQLite and PostgreSQL):
bound tokens, idempotent replays, and refusals that store nothing and keep the service up."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.app import STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.store import Store
from tests.services import free_port

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def result(agent: str = "emr-app-01", check: str = "db", status: str = "ok",
           seconds: float = 0, **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "agent_id": agent, "check_id": check, "kind": "tcp",
            "system": "EMR", "status": status, "reason": "ok",
            "started_at": (T0 + timedelta(seconds=seconds)).isoformat(), "duration_s": 0.002,
            "interval_s": 30, "summary": "127.0.0.1:1521 connected", **extra}


class Collector:
    def __init__(self, url: str, store: Store, tokens: dict[str, str]) -> None:
        self.url = url
        self.store = store
        self.tokens = tokens

    async def post(self, body: bytes | dict[str, Any], token: str | None,
                   **headers: str) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.setdefault("Content-Type", "application/json")
        async with aiohttp.ClientSession() as session, session.post(
                self.url + "/api/v1/results", data=data, headers=headers) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def collector(store_url: str) -> AsyncIterator[Collector]:
    config = parse_collector_config({"store": store_url, "max_body_bytes": 64 * 1024})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = app[STORE_KEY]
    tokens = {a: await store.add_agent(a, T0) for a in ("emr-app-01", "his-app-01")}
    try:
        yield Collector(f"http://127.0.0.1:{port}", store, tokens)
    finally:
        await runner.cleanup()


async def test_batch_is_stored_once_and_replays_are_counted(collector: Collector) -> None:
    token = collector.tokens["emr-app-01"]
    batch = {"agent_id": "emr-app-01", "results": [result(seconds=i * 30) for i in range(100)]}
    assert await collector.post(batch, token) == (200, {"accepted": 100, "duplicates": 0})
    assert await collector.post(batch, token) == (200, {"accepted": 0, "duplicates": 100})
    assert await collector.store.count_results() == 100
    heartbeat = {"agent_id": "emr-app-01", "results": []}
    assert await collector.post(heartbeat, token) == (200, {"accepted": 0, "duplicates": 0})
    [agent] = [a for a in await collector.store.list_agents() if a["id"] == "emr-app-01"]
    assert agent["last_seen_at"] is not None


@pytest.mark.parametrize(("case", "status", "message"), [
    ("no token", 401, "missing bearer token"),
    ("bad token", 401, "unknown or revoked token"),
    ("other agent's id", 403, "belongs to agent his-app-01"),
    ("result of another agent", 403, "belongs to agent emr-app-01"),
    ("garbage", 400, "invalid batch"),
    ("truncated", 400, "invalid batch"),
    ("wrong type", 400, "results.0.duration_s"),
    ("unknown field", 400, "results.0.colour"),
    ("bad status", 400, "results.0.status"),
    ("naive time", 400, "results.0.started_at"),
    ("oversized", 413, "send smaller batches"),
])
async def test_refusals_store_nothing(collector: Collector, case: str, status: int,
                                      message: str) -> None:
    emr, his = collector.tokens["emr-app-01"], collector.tokens["his-app-01"]
    good = {"agent_id": "emr-app-01", "results": [result()]}
    body: bytes | dict[str, Any] = good
    token: str | None = emr
    if case == "no token":
        token = None
    elif case == "bad token":
        token = "ww1_" + "x" * 43
    elif case == "other agent's id":
        token = his
    elif case == "result of another agent":
        body = {"agent_id": "emr-app-01", "results": [result(agent="his-app-01")]}
    elif case == "garbage":
        body = b"\x00\xffnot json"
    elif case == "truncated":
        body = json.dumps(good).encode()[:40]
    elif case == "wrong type":
        body = {"agent_id": "emr-app-01", "results": [result(duration_s="fast")]}
    elif case == "unknown field":
        body = {"agent_id": "emr-app-01", "results": [result(colour="red")]}
    elif case == "bad status":
        body = {"agent_id": "emr-app-01", "results": [result(status="fine")]}
    elif case == "naive time":
        body = {"agent_id": "emr-app-01",
                "results": [result(started_at="2026-03-02T00:00:00")]}
    elif case == "oversized":
        body = {"agent_id": "emr-app-01", "results": [result(summary="x" * 70_000)]}
    got_status, reply = await collector.post(body, token)
    assert got_status == status, reply
    assert message in reply["error"]
    assert await collector.store.count_results() == 0
    # the service stays up and still takes a good batch
    assert (await collector.post(good, emr))[0] == 200


async def test_revoked_token_is_refused(collector: Collector) -> None:
    await collector.store.revoke_agent("emr-app-01", T0)
    status, reply = await collector.post({"agent_id": "emr-app-01", "results": [result()]},
                                         collector.tokens["emr-app-01"])
    assert (status, reply["error"]) == (401, "unknown or revoked token")


async def test_health_ready_and_metrics(collector: Collector) -> None:
    await collector.post({"agent_id": "emr-app-01", "results": [result()]},
                         collector.tokens["emr-app-01"])
    await collector.post(b"junk", collector.tokens["emr-app-01"])
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(collector.url + path) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with session.get(collector.url + "/metrics") as resp:
            text = await resp.text()
        async with session.get(collector.url + "/nope") as resp:
            assert resp.status == 404 and "error" in await resp.json()
    assert "wardwatch_collector_results_received_total 1.0" in text
    assert 'wardwatch_collector_batches_rejected_total{reason="invalid"} 1.0' in text
    assert 'wardwatch_collector_agent_last_seen_timestamp_seconds{agent="emr-app-01"}' in text
    assert "wardwatch_collector_results_expired_total 0.0" in text


async def test_non_finite_metric_values_are_stored_as_null(collector: Collector) -> None:
    """NaN and ±Infinity are valid Prometheus sample values but not JSON: PostgreSQL refuses
    them, so one would fail the whole batch (a 500 the agent retries for ever). Both stores
    keep them as null; the body carries them as the bare tokens Python's json writes."""
    token = collector.tokens["emr-app-01"]
    one = result(metrics=[{"name": "up", "value": 1.0}, {"name": "lag_seconds", "value": 0.0}],
                 details={"ratio": 0.5})
    text = json.dumps({"agent_id": "emr-app-01", "results": [one]})
    text = text.replace('"value": 0.0', '"value": NaN').replace('"ratio": 0.5',
                                                                '"ratio": -Infinity')
    status, body = await collector.post(text.encode(), token)
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})
    import sqlalchemy as sa

    from collector.schema import results
    async with collector.store.engine.connect() as conn:
        metrics, details = (await conn.execute(
            sa.select(results.c.metrics, results.c.details))).one()
    assert [m["value"] for m in metrics] == [1.0, None]
    assert details == {"ratio": None}


@pytest.mark.parametrize("results", [2.0, "x", {"a": 1}, None, [1, "y"]])
async def test_results_of_the_wrong_type_are_a_400(collector: Collector, results: Any) -> None:
    """Found by fuzzing: `"results": 2.0` was a 500 (the schema-version fallback iterated it)."""
    status, reply = await collector.post({"agent_id": "emr-app-01", "results": results},
                                         collector.tokens["emr-app-01"])
    assert status == 400 and reply["error"].startswith("invalid batch"), (status, reply)
    assert await collector.store.count_results() == 0
