"""Runs one check: owns its deadline and turns whatever happens into a CheckResult.

A probe that overruns its `timeout` is cancelled (reason `timeout`, critical: the target did
not answer in time). An exception from our own code is `unknown` with reason `probe_error`, so
a bug in wardwatch never opens an incident against the hospital's systems.
"""

from __future__ import annotations

import asyncio
import logging
import time

from probes.config import CheckConfig
from probes.memory import ProbeMemory
from probes.registry import get_kind
from probes.result import CheckResult, ProbeResult, Status, now_utc

log = logging.getLogger("wardwatch.agent.runner")


async def run_check(check: CheckConfig, agent_id: str, memory: ProbeMemory | None = None
                    ) -> CheckResult:
    """Run `check` once under its timeout; never raises except CancelledError.

    `memory` is the check's state from its previous runs (the scheduler keeps one per check);
    without it a probe that reports rates sees a first run.
    """
    started_at = now_utc()
    started = time.perf_counter()
    kind = get_kind(check.kind)
    try:
        async with asyncio.timeout(check.timeout):
            if kind.remembers:
                outcome = await kind.probe(check, memory if memory is not None
                                           else ProbeMemory())
            else:
                outcome = await kind.probe(check)
    except TimeoutError:
        outcome = ProbeResult(
            status=Status.CRITICAL, reason="timeout",
            summary=f"{check.target or check.id}: no answer within {check.timeout:g}s")
    except Exception as exc:  # our bug, not the target's failure
        log.exception("probe %s (%s) failed", check.id, check.kind)
        outcome = ProbeResult(
            status=Status.UNKNOWN, reason="probe_error",
            summary=f"probe error: {type(exc).__name__}: {exc}"[:500])
    duration = time.perf_counter() - started
    return CheckResult(
        agent_id=agent_id, check_id=check.id, kind=check.kind, target=check.target,
        system=check.system, status=outcome.status, reason=outcome.reason,
        started_at=started_at, duration_s=duration, interval_s=check.interval,
        summary=outcome.summary,
        metrics=outcome.metrics, details=outcome.details, labels=check.labels)
