"""`GET /api/v1/sd`: Prometheus HTTP service discovery, against a real collector, and a real
Prometheus that discovers an agent through it and scrapes that agent's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from agent.app import create_app as create_agent_app
from agent.config import parse_agent_config
from collector.app import STORE_KEY, create_app
from collector.config import ServiceDiscoveryConfig, parse_collector_config
from collector.sd import target_groups
from collector.store import Store
from probes.result import CheckResult, Status
from tests.services import free_port, needs

PROMETHEUS = shutil.which("prometheus")
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@contextlib.asynccontextmanager
async def collector(store_url: str, **sd: Any) -> AsyncIterator[tuple[str, Store]]:
    app = create_app(parse_collector_config({"store": store_url, "service_discovery": sd}))
    runner, port = await serve(app)
    try:
        yield f"http://127.0.0.1:{port}", app[STORE_KEY]
    finally:
        await runner.cleanup()


async def push(url: str, agent_id: str, token: str) -> None:
    res = CheckResult(agent_id=agent_id, check_id="host", kind="host", system="EMR",
                      status=Status.OK, reason="ok", started_at=datetime.now(UTC),
                      duration_s=0.01)
    body = {"agent_id": agent_id, "results": [res.model_dump(mode="json")]}
    async with aiohttp.ClientSession() as session, session.post(
            url + "/api/v1/results", json=body,
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()


async def discover(url: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/sd") as resp:
        return resp.status, resp.headers["Content-Type"], await resp.json()


async def test_lists_enrolled_agents_by_their_push_address_or_override(store_url: str) -> None:
    async with collector(store_url, port=9811, targets={"behind-nat": "10.1.2.3:19810"}
                         ) as (url, store):
        status, content_type, groups = await discover(url)
        assert (status, groups) == (200, [])   # nothing enrolled: 200 with an empty list
        assert content_type.startswith("application/json")
        tokens = {a: await store.add_agent(a, NOW)
                  for a in ("emr-app-01", "behind-nat", "never-pushed", "retired")}
        for agent_id in ("emr-app-01", "behind-nat", "retired"):
            await push(url, agent_id, tokens[agent_id])
        await store.revoke_agent("retired", NOW)
        status, _, groups = await discover(url)
    assert status == 200
    by_agent = {g["labels"]["agent"]: g for g in groups}
    assert set(by_agent) == {"emr-app-01", "behind-nat"}   # revoked and address-less left out
    app01 = by_agent["emr-app-01"]
    assert app01["targets"] == ["127.0.0.1:9811"]
    assert app01["labels"]["__meta_wardwatch_agent_id"] == "emr-app-01"
    assert app01["labels"]["__meta_wardwatch_address_source"] == "pushed"
    assert datetime.fromisoformat(app01["labels"]["__meta_wardwatch_last_seen"]) > NOW
    assert datetime.fromisoformat(app01["labels"]["__meta_wardwatch_enrolled_at"]) == NOW
    assert by_agent["behind-nat"]["targets"] == ["10.1.2.3:19810"]
    assert by_agent["behind-nat"]["labels"]["__meta_wardwatch_address_source"] == "configured"
    for group in groups:   # the http_sd format: string targets, string labels, nothing else
        assert set(group) == {"targets", "labels"}
        assert all(isinstance(v, str) for v in [*group["targets"], *group["labels"].values()])


def test_ipv6_addresses_are_bracketed_and_never_seen_agents_have_empty_last_seen() -> None:
    rows = [{"id": "v6", "created_at": NOW, "revoked_at": None, "last_seen_at": None,
             "last_address": "fd00::5"}]
    groups = target_groups(rows, ServiceDiscoveryConfig())
    assert groups[0]["targets"] == ["[fd00::5]:9810"]
    assert groups[0]["labels"]["__meta_wardwatch_last_seen"] == ""


def test_override_needs_host_and_port() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        ServiceDiscoveryConfig(targets={"a": "10.0.0.1"})
    with pytest.raises(ValueError, match="needs a host"):
        ServiceDiscoveryConfig(targets={"a": ":9810"})


async def _poll_targets(prom_url: str, within: float) -> list[dict[str, Any]]:
    """Prometheus' active targets once one of them has been scraped up (or the deadline)."""
    active: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(prom_url + "/api/v1/targets") as resp:
                            active = (await resp.json())["data"]["activeTargets"]
                        if any(t["health"] == "up" for t in active):
                            return active
                    await asyncio.sleep(0.2)
    return active


async def test_real_prometheus_discovers_and_scrapes_an_agent(
        store_url: str, tmp_path: Path) -> None:
    needs(PROMETHEUS is not None, "prometheus (Debian package prometheus)")
    assert PROMETHEUS is not None
    agent_app = create_agent_app(parse_agent_config(
        {"agent": {"id": "emr-app-01"}, "checks": [{"id": "host", "kind": "host", "timeout": "2s",
                                                   "cpu_sample_seconds": "0.2s",
                                                   "system": "EMR", "interval": "2s"}]}))
    agent_runner, agent_port = await serve(agent_app)
    try:
        async with collector(store_url, port=agent_port) as (url, store):
            await push(url, "emr-app-01", await store.add_agent("emr-app-01", NOW))
            prom_port = free_port()
            # the shipped example, pointed at this collector
            config = yaml.safe_load(EXAMPLE.read_text())
            jobs = {job["job_name"]: job for job in config["scrape_configs"]}
            job = jobs["wardwatch-agents"]
            job["http_sd_configs"] = [{"url": url + "/api/v1/sd", "refresh_interval": "1s"}]
            job["scrape_interval"] = "1s"
            job.pop("scheme", None)
            job.pop("basic_auth", None)
            job.pop("tls_config", None)
            config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            proc = await asyncio.create_subprocess_exec(
                PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                active = await _poll_targets(f"http://127.0.0.1:{prom_port}", within=60)
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await agent_runner.cleanup()
    assert len(active) == 1, active
    target = active[0]
    assert target["health"] == "up", target
    assert target["labels"]["agent"] == "emr-app-01"
    assert target["labels"]["instance"] == f"127.0.0.1:{agent_port}"
    assert target["labels"]["job"] == "wardwatch-agents"
    assert target["discoveredLabels"]["__meta_wardwatch_address_source"] == "pushed"
