"""Runs one check: owns its deadline and turns whatever happens into a CheckResult.

A probe that overruns its `timeout` is cancelled (reason `timeout`, critical: the target did
not answer in time). An exception from our own code is `unknown` with reason `probe_error`, so
a bug in wardwatch never opens an incident against the hospital's systems.

The deadline holds even against a probe whose clean-up hangs after the cancellation (a close
that waits for a peer which stopped reading, a library that swallows the cancellation): the
probe runs in its own task, and one that has not stopped `CANCEL_GRACE_S` after its deadline
is left behind with an error in the log, so its check still reports on time and its schedule
goes on. Durations come from the monotonic clock; only `started_at` is wall time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from probes.config import CheckConfig
from probes.memory import ProbeMemory
from probes.registry import get_kind
from probes.result import CheckResult, ProbeResult, Status, now_utc

log = logging.getLogger("wardwatch.agent.runner")

CANCEL_GRACE_S = 1.0
"""How long a cancelled probe may take to clean up before the runner stops waiting for it."""


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
        if kind.remembers:
            call = kind.probe(check, memory if memory is not None else ProbeMemory())
        else:
            call = kind.probe(check)
        outcome = await _within(call, check)
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


async def _within(call: Awaitable[ProbeResult], check: CheckConfig) -> ProbeResult:
    """The probe's result, or TimeoutError once `check.timeout` has passed."""
    task = asyncio.create_task(_awaited(call), name=f"probe:{check.id}")
    try:
        done, _ = await asyncio.wait({task}, timeout=check.timeout)
        if done:
            return task.result()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    except asyncio.CancelledError:  # the check itself is stopping
        task.cancel()
        raise
    if not done:
        log.error("probe %s (%s) did not stop within %gs of its deadline; it is left behind "
                  "(a bug: a probe must not hang in its clean-up)", check.id, check.kind,
                  CANCEL_GRACE_S)
    elif not task.cancelled() and task.exception() is not None:
        log.debug("probe %s (%s) failed while being cancelled", check.id, check.kind,
                  exc_info=task.exception())
    raise TimeoutError


async def _awaited(call: Awaitable[ProbeResult]) -> ProbeResult:
    return await call
