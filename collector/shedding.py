"""Load shedding for ingest: past what the collector can work on, say "later" at once.

Without it an overloaded collector (docs/scale.md: 3,000 hosts on one 2-core machine) takes
every push, queues them on its event loop and in its connection pool, answers after the
agents' 30 s timeout — and the agents send the same batches again while the collector still
works on requests nobody waits for. It never recovers.

So at most CONCURRENT batches are parsed and stored at once and at most QUEUED wait for a turn;
one more is refused at once with 503 and a Retry-After, which the agent honours (it keeps the
batch in its spool). A batch whose agent hung up while it waited is not worked on at all.
Limits are per collector process; the ingest bench (8 connections) and the 300-host
simulation never reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

CONCURRENT = 8
QUEUED = 64
RETRY_AFTER_S = 5


class Busy(Exception):
    """Every slot taken and the queue full."""


class IngestGate:
    def __init__(self, concurrent: int = CONCURRENT, queued: int = QUEUED) -> None:
        self._slots = asyncio.Semaphore(concurrent)
        self._waiting = 0
        self.queued = queued

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self.queued:
            raise Busy
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
