"""What one check remembers from its previous run, for probes that report rates.

Status pages give counters since start (nginx `accepts`, Tomcat `errorCount`, WebLogic
`failuresToReconnectCount`); a threshold on an error *rate* needs the previous reading. The
scheduler keeps one `ProbeMemory` per running check (a new one when the check's config
changes) and hands it to probes whose module sets `REMEMBERS = True`: nothing global, and a
test passes its own. `wardwatch-agent check` runs once, so its rates are absent and its
summaries say so.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("wardwatch.probes.memory")


@dataclass(frozen=True)
class Rate:
    """The change of a counter between two runs."""

    delta: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.delta / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ProbeMemory:
    """Counter readings and small values kept between runs of one check."""

    counters: dict[str, tuple[float, float]] = field(default_factory=dict)
    """name -> (value, monotonic time read)"""
    values: dict[str, Any] = field(default_factory=dict)
    """Free-form state a probe keeps (e.g. a log file's inode and offset)."""
    resources: dict[str, Any] = field(default_factory=dict)
    """Objects kept open between runs (a database connection pool), closed by `aclose`."""
    _closers: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    def keep(self, name: str, resource: Any, close: Callable[[], Awaitable[None]]) -> None:
        """Keep `resource` open between runs; `close` runs when the check stops or changes."""
        self.resources[name] = resource
        self._closers[name] = close

    async def drop(self, name: str) -> None:
        """Close and forget one resource (a pool whose server went away, to rebuild it)."""
        self.resources.pop(name, None)
        closer = self._closers.pop(name, None)
        if closer is not None:
            try:
                await closer()
            except Exception:  # a broken pool must not stop the check's loop
                log.warning("closing %s failed", name, exc_info=True)

    async def aclose(self) -> None:
        """Close every kept resource (the scheduler calls this when the check's loop ends)."""
        for name in list(self._closers):
            with contextlib.suppress(Exception):
                await self.drop(name)

    def rate(self, name: str, value: float, now: float | None = None) -> Rate | None:
        """Record `value` for counter `name`; the change since the previous reading.

        None on the first reading and after a counter reset (value went down: the server
        restarted), so a restart never shows as a huge negative or positive rate.
        """
        now = time.monotonic() if now is None else now
        previous = self.counters.get(name)
        self.counters[name] = (value, now)
        if previous is None or value < previous[0] or now <= previous[1]:
            return None
        return Rate(delta=value - previous[0], seconds=now - previous[1])

    def forget_except(self, names: set[str]) -> None:
        """Drop counters not read this run (a connector or data source that went away)."""
        for name in list(self.counters):
            if name not in names:
                del self.counters[name]
