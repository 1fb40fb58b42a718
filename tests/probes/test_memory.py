"""ProbeMemory: rates between runs, counter resets, kept resources closed when the check's
loop ends (the scheduler owns one memory per running check)."""

from __future__ import annotations

import asyncio

import pytest

import agent.scheduler
from agent.config import parse_agent_config
from agent.scheduler import Scheduler
from probes.config import CheckConfig
from probes.memory import ProbeMemory
from probes.result import CheckResult, Status, now_utc


def test_rate_needs_two_readings_and_survives_a_reset() -> None:
    memory = ProbeMemory()
    assert memory.rate("requests", 100, now=10.0) is None       # first reading
    rate = memory.rate("requests", 160, now=40.0)
    assert rate is not None and (rate.delta, rate.seconds, rate.per_second) == (60, 30, 2.0)
    assert memory.rate("requests", 5, now=70.0) is None         # restarted: counter went down
    rate = memory.rate("requests", 35, now=100.0)
    assert rate is not None and rate.per_second == 1.0
    memory.forget_except({"other"})
    assert memory.rate("requests", 40, now=130.0) is None


async def test_kept_resources_close_once() -> None:
    memory = ProbeMemory()
    closed: list[str] = []

    async def close_a() -> None:
        closed.append("a")

    async def close_b() -> None:
        raise OSError("server gone")   # a failing close does not stop the others

    memory.keep("a", object(), close_a)
    memory.keep("b", object(), close_b)
    await memory.aclose()
    await memory.aclose()
    assert closed == ["a"] and memory.resources == {}


async def test_scheduler_closes_what_a_check_kept_when_it_stops_or_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kept: dict[str, list[str]] = {"opened": [], "closed": []}
    ran = asyncio.Event()
    closed = asyncio.Event()

    async def fake_run_check(check: CheckConfig, agent_id: str, memory: ProbeMemory
                             ) -> CheckResult:
        if "pool" not in memory.resources:
            name = f"{check.id}@{check.interval:g}"
            kept["opened"].append(name)

            async def close() -> None:
                kept["closed"].append(name)
                closed.set()

            memory.keep("pool", name, close)
        ran.set()
        return CheckResult(agent_id=agent_id, check_id=check.id, kind=check.kind,
                           status=Status.OK, reason="ok", started_at=now_utc(), duration_s=0)

    monkeypatch.setattr(agent.scheduler, "run_check", fake_run_check)
    scheduler = Scheduler("a1", lambda _result, _lag: None)

    def config(interval: str) -> tuple[CheckConfig, ...]:
        return parse_agent_config({"agent": {"id": "a1"}, "checks": [
            {"id": "db", "kind": "tcp", "host": "127.0.0.1", "port": 1,
             "interval": interval, "timeout": "0.1s"}]}).checks

    scheduler.apply(config("0.2s"))
    async with asyncio.timeout(5):
        await ran.wait()
    ran.clear()
    scheduler.apply(config("0.3s"))       # changed: the old loop's pool is closed
    async with asyncio.timeout(5):
        await ran.wait()
        await closed.wait()
    assert kept["closed"] == ["db@0.2"]
    await scheduler.stop()
    assert kept == {"opened": ["db@0.2", "db@0.3"], "closed": ["db@0.2", "db@0.3"]}
