"""The result model shared by agent and collector: what a probe returns, what travels on the wire.

A probe returns a `ProbeResult` (status, reason, summary, metrics, details). The agent's runner
wraps it into a `CheckResult` with identity and timing (DESIGN.md "Check results"); that is the
object pushed to the collector, rendered on /metrics and printed by `wardwatch-agent check`.
"""

from __future__ import annotations

import enum
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def code(self) -> int:
        """Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
        return _CODES[self]

    @property
    def severity(self) -> int:
        """Order for "the worst wins": ok < unknown < warning < critical.

        Unknown ranks below warning so that one probe error does not mask a real warning;
        the Nagios exit code of a run is still computed from `code` (unknown = 3).
        """
        return _SEVERITY[self]


_CODES = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}
_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


def worst(statuses: list[Status]) -> Status:
    """The worst status by severity; OK for an empty list."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


def worst_exit_code(statuses: list[Status]) -> int:
    """Exit code for a set of results following the Nagios convention (highest code wins)."""
    return max((s.code for s in statuses), default=0)


class Metric(BaseModel):
    """One sample: a name in base units (`_seconds`, `_bytes`, `_ratio`, `_total`), labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    value: float
    labels: dict[str, str] = Field(default_factory=dict)


class ProbeResult(BaseModel):
    """What a probe coroutine returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    summary: str
    metrics: tuple[Metric, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): 48-bit Unix milliseconds, then random bits.

    Results of one batch then land next to each other in the collector's primary-key index
    (random v4 ids cost a commit about twice the WAL writes, docs/benchmarks.md). Python 3.11
    has no `uuid.uuid7`.
    """
    ms = time.time_ns() // 1_000_000
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)          # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)          # RFC 9562 variant
    return uuid.UUID(int=value)


SCHEMA_VERSION = 1
"""The version of the result wire schema this code writes and fully understands. A result
without `schema_version` is version 1. Version N+1 may only add optional fields; a collector
reads results of its own version and older strictly, those of version N+1 without the fields
it does not know (`known_fields_only`), and refuses anything newer
(docs/decisions/0008-result-schema-version.md)."""


SENT_AT_HEADER = "X-Wardwatch-Sent-At"
"""HTTP header of a push: the agent's wall clock (UTC ISO 8601) when it sent the batch. The
collector compares it with its own clock to correct results from a host whose clock is off
(collector/clock.py). A header, not a body field: a collector that does not know it ignores it."""


MAX_SPAN_S = 366 * 86400.0
"""The longest duration or interval a result may state (a yearly check)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""A result's time lies between these: a host whose clock died reads 1970 (the collector
moves its results onto its own clock, collector/clock.py); beyond LATEST, the collector's
arithmetic (time + interval x stale_after) would leave the calendar."""


class CheckResult(BaseModel):
    """A result on the wire (agent -> collector), per DESIGN.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    id: uuid.UUID = Field(default_factory=time_ordered_uuid)
    agent_id: str = Field(min_length=1, max_length=128)
    check_id: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    target: str = ""
    system: str = ""
    status: Status
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    started_at: datetime
    duration_s: float = Field(ge=0, le=MAX_SPAN_S)
    interval_s: float | None = Field(default=None, gt=0, le=MAX_SPAN_S)
    """The check's interval: how long this result stands for before the next is due."""
    summary: str = ""
    metrics: tuple[Metric, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (UTC)")
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"must be in the years {EARLIEST.year}-{LATEST.year}") from None
        if not EARLIEST <= value <= LATEST:
            raise ValueError(f"must be in the years {EARLIEST.year}-{LATEST.year}")
        return value


def known_fields_only(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A raw result of a newer schema without the fields this version does not know (in the
    result and in its metrics), and the names left out (`metrics.unit` for a metric's).
    `details` and `labels` are free-form and kept whole."""
    ignored = {key for key in raw if key not in CheckResult.model_fields}
    known = {key: value for key, value in raw.items() if key in CheckResult.model_fields}
    if isinstance(known.get("metrics"), list):
        metrics = []
        for metric in known["metrics"]:
            if isinstance(metric, dict):
                ignored.update(f"metrics.{k}" for k in metric if k not in Metric.model_fields)
                metric = {k: v for k, v in metric.items() if k in Metric.model_fields}
            metrics.append(metric)
        known["metrics"] = metrics
    return known, sorted(ignored)


def result(status: Status, reason: str, summary: str, *, metrics: tuple[Metric, ...] = (),
           details: dict[str, Any] | None = None) -> ProbeResult:
    return ProbeResult(status=status, reason=reason, summary=summary, metrics=metrics,
                       details=details or {})


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Cause:
    """One thing a probe found wrong; a run may find several."""

    status: Status
    reason: str
    text: str


@dataclass
class Findings:
    """What a probe (or one of its sub-checks) found: causes, metrics, details."""

    causes: list[Cause] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, level: Status, reason: str, text: str) -> None:
        """A cause, unless `level` is OK (so a threshold's verdict can be passed as is)."""
        if level is not Status.OK:
            self.causes.append(Cause(level, reason, text))

    def metric(self, name: str, value: float | None, **labels: str) -> None:
        """A sample; None (a value the server did not give) is skipped."""
        if value is not None:
            self.metrics.append(Metric(name=name, value=value, labels=labels))

    def extend(self, other: Findings) -> None:
        self.causes.extend(other.causes)
        self.metrics.extend(other.metrics)
        self.details.update(other.details)


SUMMARY_LIMIT = 300


def verdict(name: str, causes: list[Cause], ok_line: str, *, metrics: tuple[Metric, ...] = (),
            details: dict[str, Any] | None = None) -> ProbeResult:
    """One result from many findings: the worst cause names the status and reason and leads
    the summary (`name: worst; next; …`, no prefix when `name` is empty), cut at
    SUMMARY_LIMIT with a count of the rest. Ties keep the order the causes were found in."""
    if not causes:
        return result(Status.OK, "ok", ok_line, metrics=metrics, details=details)
    ordered = sorted(causes, key=lambda c: -c.status.severity)  # stable: ties keep order
    summary = f"{name}: {ordered[0].text}" if name else ordered[0].text
    for shown, cause in enumerate(ordered[1:], start=1):
        more = len(ordered) - shown
        if len(summary) + 2 + len(cause.text) > SUMMARY_LIMIT:
            summary += f"; and {more} more"
            break
        summary += f"; {cause.text}"
    return result(ordered[0].status, ordered[0].reason, summary, metrics=metrics,
                  details=details)
