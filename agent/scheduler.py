"""The check scheduler: one asyncio task per check, on a fixed cadence with a stable offset.

Each check runs at `offset + k * interval` on the loop's monotonic clock. The offset is a hash
of agent id and check id, so checks of equal interval spread over the interval instead of
firing together, and keep the same phase across restarts (as Prometheus spreads scrapes).
A run that overruns skips the slots it missed rather than bunching them up.

The wall clock plays no part in the schedule: a step of it (NTP correcting a wrong clock, a
VM resumed, `date -s`) neither fires a burst of runs nor stalls them, and durations come from
the monotonic clock too. Results carry wall time (`started_at`) and so follow the step; the
scheduler logs each step it notices (a jump of >= CLOCK_STEP_S between two runs) so that a
shift in the evidence can be explained later (docs/agent-faults.md).

On reload, checks whose config is unchanged keep their task (and so their schedule); changed
ones are restarted, removed ones cancelled, new ones started.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable

from agent.runner import run_check
from probes.config import CheckConfig
from probes.memory import ProbeMemory
from probes.result import CheckResult

log = logging.getLogger("wardwatch.agent.scheduler")

ResultSink = Callable[[CheckResult, float], None]

CLOCK_STEP_S = 2.0
"""A change of (wall - monotonic) this large between two runs is a step, not NTP slewing
(at most 0.5 ms a second)."""


def phase_offset(agent_id: str, check_id: str, interval: float) -> float:
    """A stable offset in [0, interval) for this check."""
    digest = zlib.crc32(f"{agent_id}/{check_id}".encode())
    return (digest / 2**32) * interval


class WallClockWatch:
    """Notices steps of the wall clock by comparing it with the monotonic clock."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def observe(self) -> float:
        """The step since the last observation (0.0 when none), logged when there was one."""
        offset = time.time() - time.monotonic()
        step, self._offset = offset - self._offset, offset
        if abs(step) < CLOCK_STEP_S:
            return 0.0
        log.warning("the wall clock stepped by %+.1f s (NTP, a resumed VM or a manual change); "
                    "schedules and durations are unaffected, result timestamps (started_at) "
                    "follow the new time", step)
        return step


class Scheduler:
    def __init__(self, agent_id: str, sink: ResultSink, *, max_concurrency: int = 256) -> None:
        self._agent_id = agent_id
        self._sink = sink
        self._tasks: dict[str, tuple[CheckConfig, asyncio.Task[None]]] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        self._epoch = asyncio.get_running_loop().time()
        self._wall = WallClockWatch()

    @property
    def check_ids(self) -> set[str]:
        return set(self._tasks)

    def apply(self, checks: tuple[CheckConfig, ...]) -> dict[str, int]:
        """Make the running set match `checks`; returns counts of kept/started/stopped."""
        wanted = {c.id: c for c in checks}
        stopped = 0
        for check_id in list(self._tasks):
            current, task = self._tasks[check_id]
            if wanted.get(check_id) != current:
                task.cancel()
                del self._tasks[check_id]
                stopped += 1
        started = 0
        for check_id, check in wanted.items():
            if check_id not in self._tasks:
                task = asyncio.create_task(self._loop(check), name=f"check:{check_id}")
                self._tasks[check_id] = (check, task)
                started += 1
        return {"kept": len(wanted) - started, "started": started, "stopped": stopped}

    async def stop(self) -> None:
        tasks = [task for _check, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, check: CheckConfig) -> None:
        loop = asyncio.get_running_loop()
        interval = check.interval
        offset = phase_offset(self._agent_id, check.id, interval)
        now = loop.time()
        # first slot at or after now on this check's grid
        slots_passed = max(0.0, (now - self._epoch - offset) // interval + 1)
        next_slot = self._epoch + offset + slots_passed * interval
        memory = ProbeMemory()  # lives as long as this config of the check
        try:
            await self._run_forever(check, memory, next_slot)
        finally:
            # pools and connections a probe kept; shielded so a cancelled loop still closes
            await asyncio.shield(memory.aclose())

    async def _run_forever(self, check: CheckConfig, memory: ProbeMemory,
                           next_slot: float) -> None:
        loop = asyncio.get_running_loop()
        interval = check.interval
        while True:
            await asyncio.sleep(max(0.0, next_slot - loop.time()))
            async with self._slots:
                lag = max(0.0, loop.time() - next_slot)
                result = await run_check(check, self._agent_id, memory)
            self._wall.observe()
            try:
                self._sink(result, lag)
            except Exception:  # a sink bug must not stop the schedule
                log.exception("recording result of %s failed", check.id)
            next_slot += interval
            behind = loop.time() - next_slot
            if behind > 0:
                skipped = int(behind // interval) + 1
                next_slot += skipped * interval
                log.warning("check %s overran its interval; skipped %d slot(s)",
                            check.id, skipped)
