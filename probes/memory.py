"""What one check remembers from its previous run, for probes that report rates.

Status pages give counters since start (nginx `accepts`, Tomcat `errorCount`, WebLogic
`failuresToReconnectCount`); a threshold on an error *rate* needs the previous reading. The
scheduler keeps one `ProbeMemory` per running check (a new one when the check's config
changes) and hands it to probes whose module sets `REMEMBERS = True`: nothing global, and a
test passes its own. `wardwatch-agent check` runs once, so its rates are absent and its
summaries say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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
