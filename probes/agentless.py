"""Agentless scans: run one read-only job (the inventory, the policy checks) against many hosts
over SSH, a bounded number at a time, each host within its own time limit.

This is what the collector (or an agent in relay mode) calls for hosts that have no agent; it
knows nothing about the collector. A host that hangs costs its own limit and nothing more: the
others keep going, and its connection is closed at the limit, which also ends the worker
thread waiting on it.

An outcome is ok when the host was reached and the job returned; otherwise `reason` is one of
SshError's codes (connect_refused, connect_timeout, connect_error, host_key_unknown,
host_key_mismatch, known_hosts_error, key_error, auth_failed), `timeout` (the per-host limit)
or `job_failed` (the job raised), and `error` is the one human line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from probes.access import HostAccess
from probes.ssh import SshAccess, SshError, SshTarget

T = TypeVar("T")

_MAX_THREADS = 256


@dataclass(frozen=True)
class ScanOutcome(Generic[T]):
    host: str
    """`user@host:port`."""
    seconds: float
    """From the start of connecting to the end of the job (waiting for a slot not counted)."""
    ok: bool
    result: T | None = None
    reason: str | None = None
    error: str | None = None


async def scan(targets: Sequence[SshTarget], job: Callable[[HostAccess], Awaitable[T]], *,
               concurrency: int = 10, per_host_limit_s: float = 300.0,
               clock: Callable[[], float] = time.monotonic) -> list[ScanOutcome[T]]:
    """Run `job(access)` on every target, at most `concurrency` hosts at once; outcomes are in
    the order of `targets`. Cancelling the scan cancels every host and closes its connection."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if per_host_limit_s <= 0:
        raise ValueError("per_host_limit_s must be positive")
    slots = asyncio.Semaphore(concurrency)
    # our own pool: the default one has min(32, cpus + 4) threads, fewer than the sessions a
    # scan keeps open at once, and a hung host must not take threads from the rest of the process
    sessions = max((t.max_sessions for t in targets), default=1)
    threads = min(_MAX_THREADS, concurrency * (sessions + 1))
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wardwatch-ssh")

    async def one(target: SshTarget) -> ScanOutcome[T]:
        async with slots:
            # the access cuts every command's remote limit to the host's deadline, so a
            # command still running when the host's time is up dies on the host too
            deadline = clock() + per_host_limit_s
            access = SshAccess(target, executor=executor, deadline=deadline, clock=clock)
            return await _scan_host(access, job, per_host_limit_s, clock)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(target)) for target in targets]
    finally:
        # do not wait here: a thread still ending on its socket timeout must not block the loop
        executor.shutdown(wait=False, cancel_futures=True)
    return [task.result() for task in tasks]


async def _scan_host(access: SshAccess, job: Callable[[HostAccess], Awaitable[T]],
                     limit_s: float, clock: Callable[[], float]) -> ScanOutcome[T]:
    started = clock()
    limit = asyncio.timeout(limit_s)
    try:
        async with limit:
            await access.connect()
            value = await job(access)
    except SshError as exc:
        return ScanOutcome(access.name, clock() - started, False, reason=exc.reason,
                           error=str(exc))
    except TimeoutError as exc:
        if not limit.expired():
            return _failed(access.name, clock() - started, exc)
        return ScanOutcome(access.name, clock() - started, False, reason="timeout",
                           error=f"{access.name}: did not finish in {limit_s:g}s")
    except Exception as exc:
        return _failed(access.name, clock() - started, exc)
    finally:
        await access.close()
    return ScanOutcome(access.name, clock() - started, True, result=value)


def _failed(host: str, seconds: float, exc: Exception) -> ScanOutcome[T]:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return ScanOutcome(host, seconds, False, reason="job_failed",
                       error=f"{host}: job failed: {type(exc).__name__}"
                             + (f": {text}" if text else ""))
