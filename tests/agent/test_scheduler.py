"""Scheduler: a hung probe never delays another; phases spread; reload keeps unchanged checks."""

from __future__ import annotations

import asyncio

from agent.config import parse_agent_config
from agent.scheduler import Scheduler, phase_offset
from probes.result import CheckResult, Status


class Recorder:
    def __init__(self) -> None:
        self.results: list[tuple[CheckResult, float]] = []
        self.changed = asyncio.Event()

    def __call__(self, result: CheckResult, lag: float) -> None:
        self.results.append((result, lag))
        self.changed.set()

    async def until(self, predicate: object, within: float) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

    def first_by_check(self) -> dict[str, tuple[CheckResult, float]]:
        out: dict[str, tuple[CheckResult, float]] = {}
        for res, lag in self.results:
            out.setdefault(res.check_id, (res, lag))
        return out


def tcp_checks(count: int, port: int, **extra: object) -> list[dict[str, object]]:
    return [{"id": f"c{i}", "kind": "tcp", "host": "127.0.0.1", "port": port,
             "expect": "READY", "interval": "1s", "timeout": "0.5s", **extra}
            for i in range(count)]


async def test_one_hung_check_does_not_delay_49_others(hung_port: int, answer_port: int) -> None:
    checks = tcp_checks(49, answer_port)
    checks.append({"id": "hung", "kind": "tcp", "host": "127.0.0.1", "port": hung_port,
                   "expect": "READY", "interval": "1s", "timeout": "0.5s"})
    # the hung check is placed first in the round so that it overlaps every other run
    cfg = parse_agent_config({"agent": {"id": "iso"}, "checks": checks})
    rec = Recorder()
    scheduler = Scheduler("iso", rec)
    scheduler.apply(cfg.checks)
    try:
        await rec.until(lambda: len(rec.first_by_check()) == 50, within=5)
    finally:
        await scheduler.stop()
    first = rec.first_by_check()
    hung, _ = first.pop("hung")
    assert (hung.status, hung.reason) == (Status.CRITICAL, "timeout")
    assert 0.5 <= hung.duration_s < 0.7
    for res, lag in first.values():
        assert res.status is Status.OK, res.summary
        assert res.duration_s < 0.2, (res.check_id, res.duration_s)
        assert lag < 0.2, (res.check_id, lag)


def test_phase_offsets_spread_and_are_stable() -> None:
    offsets = [phase_offset("emr-app-01", f"c{i}", 30.0) for i in range(200)]
    assert offsets == [phase_offset("emr-app-01", f"c{i}", 30.0) for i in range(200)]
    assert all(0 <= o < 30 for o in offsets)
    # spread: every 3-second tenth of the interval holds some checks, none holds most
    buckets = [sum(1 for o in offsets if b * 3 <= o < (b + 1) * 3) for b in range(10)]
    assert min(buckets) > 5 and max(buckets) < 40, buckets


async def test_apply_keeps_unchanged_and_restarts_changed(answer_port: int) -> None:
    base = tcp_checks(3, answer_port)
    cfg1 = parse_agent_config({"checks": base})
    rec = Recorder()
    scheduler = Scheduler("reload", rec)
    assert scheduler.apply(cfg1.checks) == {"kept": 0, "started": 3, "stopped": 0}
    changed = [base[0], {**base[1], "timeout": "0.4s"}, tcp_checks(4, answer_port)[3]]
    cfg2 = parse_agent_config({"checks": changed})
    try:
        assert scheduler.apply(cfg2.checks) == {"kept": 1, "started": 2, "stopped": 2}
        assert scheduler.check_ids == {"c0", "c1", "c3"}
        await rec.until(lambda: {"c0", "c1", "c3"} <= set(rec.first_by_check()), within=3)
    finally:
        await scheduler.stop()
    assert "c2" not in rec.first_by_check()
