"""Agents' clocks: the collector's time orders evidence, not a host's.

A server's clock can be stepped by an hour (a wrong NTP source, a VM restored from a
snapshot, a person setting it by hand). Every result carries the agent's wall-clock
`started_at`; taken as it is, a clock an hour ahead opens state intervals in the future and an
hour of unknown before them, and a clock an hour behind makes every fresh result older than
the check's last one, so the check's state freezes and goes stale (unknown, counted as down for
core systems).

So each push carries the agent's clock when it was sent (`X-Wardwatch-Sent-At`,
probes/result.py). The collector's receipt time minus that is the host's offset (plus the
network delay, milliseconds on a LAN). When the offset is larger than TOLERANCE_S, every
result of the batch is moved by it onto the collector's clock before it is stored — the
stored `started_at` is then the collector's reading, and `labels["clock_offset_s"]` keeps the
correction so the agent's own time can be recovered. Within the tolerance nothing changes
(NTP-disciplined hosts differ by milliseconds). The offset of each agent is a gauge
(`wardwatch_collector_agent_clock_offset_seconds`) and a warning in the log when it crosses
the tolerance, so the hospital can fix the clock.

The correction uses the offset at the time of sending: results that waited in the agent's
spool while its clock was stepped are moved by the offset of the push that carries them, which
is wrong by the step for those made before it. A push without the header (an older agent) is
stored as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from probes.result import CheckResult

log = logging.getLogger("wardwatch.collector")

TOLERANCE_S = 10.0
MAX_OFFSET_S = 100 * 366 * 86400.0
"""Offsets up to this are left alone: less than a third of the shortest usual interval."""


def offset_of(sent_at: str | None, received_at: datetime) -> float | None:
    """Seconds the agent's clock is behind the collector's (negative: ahead), or None when
    the push does not say (or says something unreadable)."""
    if not sent_at or len(sent_at) > 64:
        return None
    try:
        sent = datetime.fromisoformat(sent_at.strip())
        if sent.tzinfo is None:
            return None
        offset = (received_at - sent.astimezone(UTC)).total_seconds()
    except (ValueError, OverflowError):   # not a time, or one at the end of the calendar
        return None
    # a host whose battery-backed clock died reads 1970: 56 years off, still corrected;
    # a century is not a clock, it is garbage
    return offset if abs(offset) <= MAX_OFFSET_S else None


def corrected(results: Sequence[CheckResult], offset: float | None
              ) -> tuple[Sequence[CheckResult], bool]:
    """The results on the collector's clock, and whether they were moved."""
    if offset is None or abs(offset) <= TOLERANCE_S or not results:
        return results, False
    shift = timedelta(seconds=offset)
    moved = round(offset, 3)
    try:
        return [r.model_copy(update={"started_at": r.started_at + shift,
                                     "labels": {**r.labels, "clock_offset_s": f"{moved}"}})
                for r in results], True
    except OverflowError:   # a result already at the calendar's edge: kept as sent
        return results, False


class OffsetWarnings:
    """One warning when an agent's offset crosses the tolerance, one when it is back."""

    def __init__(self) -> None:
        self._off: set[str] = set()

    def observe(self, agent_id: str, offset: float) -> None:
        if abs(offset) > TOLERANCE_S and agent_id not in self._off:
            self._off.add(agent_id)
            log.warning("agent %s: its clock is %+.1f s off the collector's; its results are "
                        "moved onto the collector's clock until it is fixed", agent_id, -offset)
        elif abs(offset) <= TOLERANCE_S and agent_id in self._off:
            self._off.discard(agent_id)
            log.info("agent %s: its clock agrees with the collector's again (%+.1f s)",
                     agent_id, -offset)
