"""The collector's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Times are stored as UTC. Raw results are kept for the retention period; check state
intervals and maintenance windows (with their audit trail) are kept forever, because every
availability figure must be reproducible from stored evidence.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type: values are stored as naive UTC there, and in
    `timestamp with time zone` on PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(parsed, datetime)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

agents = Table(
    "agents", metadata,
    Column("id", String(128), primary_key=True),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_seen_at", UtcDateTime, nullable=True),
    Column("last_address", String(64), nullable=True),
)

results = Table(
    "results", metadata,
    Column("id", String(36), primary_key=True),
    Column("agent_id", String(128), nullable=False),
    Column("check_id", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("system", String(128), nullable=False),
    Column("target", Text, nullable=False),
    Column("status", String(8), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("interval_s", Float, nullable=True),
    Column("summary", Text, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index(None, "agent_id", "check_id", "started_at"),
    Index(None, "started_at"),
)

results_hourly = Table(
    "results_hourly", metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("check_id", String(128), primary_key=True),
    Column("hour", UtcDateTime, primary_key=True),
    Column("system", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("results", Integer, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("warning", Integer, nullable=False),
    Column("critical", Integer, nullable=False),
    Column("unknown", Integer, nullable=False),
    Column("duration_avg_s", Float, nullable=False),
    Column("duration_max_s", Float, nullable=False),
)
"""Raw results rolled up per check and hour before the retention deletes them."""

check_intervals = Table(
    "check_intervals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(128), nullable=False),
    Column("check_id", String(128), nullable=False),
    Column("system", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("summary", Text, nullable=False),
    Column("start", UtcDateTime, nullable=False),
    Column("end", UtcDateTime, nullable=False),
    Column("last_result_at", UtcDateTime, nullable=False),
    Column("results", Integer, nullable=False),
    Column("is_open", Boolean, nullable=False),
    Index(None, "agent_id", "check_id", "end"),
    Index(None, "end"),
)

maintenance = Table(
    "maintenance", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(128), nullable=False),
    Column("start", UtcDateTime, nullable=False),
    Column("end", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("approved_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("cancelled_at", UtcDateTime, nullable=True),
    Column("cancelled_by", String(128), nullable=True),
    Index(None, "system", "end"),
)

maintenance_audit = Table(
    "maintenance_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("maintenance_id", Integer, ForeignKey("maintenance.id"), nullable=False),
    Column("action", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(128), nullable=False),
    Column("record", JSON, nullable=False),
    # hash chain (collector/auditchain.py): the previous row's hash and this row's
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("maintenance_id", "at", "action"),
)
"""Every change of a maintenance window, append-only and hash-chained."""

incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(256), nullable=False),
    # `key` while the incident is open, else NULL: at most one open incident per key, held by
    # the database, so that several collectors on one PostgreSQL never open it twice
    Column("open_key", String(256), nullable=True, unique=True),
    Column("source", String(16), nullable=False),
    Column("system", String(128), nullable=False),
    Column("level", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("level_since", UtcDateTime, nullable=False),
    Column("respond_by", UtcDateTime, nullable=True),
    Column("recover_by", UtcDateTime, nullable=True),
    Column("report_by", UtcDateTime, nullable=True),
    Column("responded_at", UtcDateTime, nullable=True),
    Column("responded_by", String(128), nullable=True),
    Column("recovered_at", UtcDateTime, nullable=True),
    Column("recovered_by", String(128), nullable=True),
    Column("report_submitted_at", UtcDateTime, nullable=True),
    Column("report_submitted_by", String(128), nullable=True),
    Column("report_ref", Text, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("reopened", Integer, nullable=False, default=0),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "key", "opened_at"),
    Index(None, "state"),
    Index(None, "opened_at"),
)
"""Faults with their SLA clocks; kept forever (the contract's overtime counts)."""

incident_events = Table(
    "incident_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("by", String(128), nullable=False),
    Column("level", Integer, nullable=True),
    Column("note", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Index(None, "incident_id", "id"),
)
"""Each incident's timeline, append-only: the audit trail of every action and change."""

incident_overtimes = Table(
    "incident_overtimes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("level", Integer, nullable=False),
    Column("deadline", String(8), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("met_at", UtcDateTime, nullable=True),
    Column("counted_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("incident_id", "level", "deadline"),
    Index(None, "due_at"),
)
"""One row per missed deadline (超时): the contract's counts are rows of this table."""

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    # incident:event:deadline:level:round:channel — queued once, whoever asks
    Column("dedup", String(256), nullable=False, unique=True),
    Column("event", String(16), nullable=False),
    Column("deadline", String(8), nullable=True),
    Column("level", Integer, nullable=False),
    Column("channel", String(128), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "state", "due_at"),
)
"""The outbox: every message due to a channel, and what became of it."""

inventories = Table(
    "inventories", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(128), nullable=False),
    Column("check_id", String(128), nullable=False),
    Column("result_id", String(36), nullable=False, unique=True),
    Column("collected_at", UtcDateTime, nullable=False),
    Column("summary", JSON, nullable=False),
    # the full package list when the agent sent it (it sends it when it changed)
    Column("packages", JSON, nullable=True),
    Column("packages_hash", String(64), nullable=True),
    Index(None, "host", "collected_at"),
)
"""Patch inventory snapshots per host over time (OS, kernel, reboot, pending updates)."""

findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(128), nullable=False),
    Column("check_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(256), nullable=False),
    # host + key while the finding is open, else NULL: one open finding per host and key
    Column("open_key", String(400), nullable=True, unique=True),
    Column("title", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("fixed_at", UtcDateTime, nullable=True),
    Column("data", JSON, nullable=False),
    Index(None, "host", "key"),
    Index(None, "first_seen"),
)
"""Security findings (pending security updates, failed hardening checks) with first seen,
last seen and fixed — time to fix is evidence for the contract's 100 % remediation."""

rectifications = Table(
    "rectifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("issued_by", String(128), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("finding_ids", JSON, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
)
"""Security rectification tasks (安全整改任务) the hospital issues, linked to findings; a task
is complete when a later scan shows every linked finding fixed (derived, never typed in)."""

waivers = Table(
    "waivers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(128), nullable=False),
    Column("key", String(256), nullable=False),
    Column("accepted_by", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)
"""Accepted risks: who accepted a finding (host and key, globs allowed), why, until when."""

advisory_bundles = Table(
    "advisory_bundles", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("source_date", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    Column("imported_by", String(128), nullable=False),
    Column("entries", JSON, nullable=False),
    UniqueConstraint("kind", "sha256"),
)
"""Advisory data carried in offline (CISA KEV JSON, version rules CSV): each bundle with the
date its source published it; the newest of a kind is the one in force."""

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("language", String(8), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
)
"""People who use the web UI: viewer, operator or admin; the password as a salted scrypt
hash (collector/web/passwords.py); a disabled user keeps the row for the audit log."""

web_sessions = Table(
    "web_sessions", metadata,
    # SHA-256 of the cookie's random id: a read of the table does not yield a usable cookie
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Index(None, "user_id"),
    Index(None, "expires_at"),
)
"""Web UI sessions, in the database so that several collectors behind a load balancer share
them; `expires_at` is the absolute limit, `last_seen` + the idle limit the other one."""

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("username", String(128), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("address", String(64), nullable=True),
    # hash chain (collector/auditchain.py): the previous row's hash and this row's
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False),
    Index(None, "at"),
    Index(None, "action", "target", "at"),
)
"""Every action taken in the web UI (logins, failed logins, logouts, incident actions,
maintenance windows, user changes): who, what, on what, from where. Append-only (triggers
refuse UPDATE and DELETE) and hash-chained, so an edit is detected
(`wardwatch-collector audit verify`)."""

agentless_scans = Table(
    "agentless_scans", metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("target", String(300), nullable=False),
    Column("last_started_at", UtcDateTime, nullable=True),
    Column("last_finished_at", UtcDateTime, nullable=True),
    Column("last_ok", Boolean, nullable=True),
    Column("last_reason", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_success_at", UtcDateTime, nullable=True),
    Column("runs", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
)
"""Agentless SSH scans the collector runs (collector/scans.py): per scanned host, when the last
scan started and ended and how it went, so that a restart resumes the schedule instead of
scanning every host again, and a failed scan (host key refused, unreachable) is on record."""


def json_dumps(value: Any, *, compact: bool = False) -> str:
    """JSON for the store's JSON columns. NaN and ±Infinity (a Prometheus-style metric value,
    a float in a probe's details) are not JSON: PostgreSQL refuses them and one such result
    would make the whole batch fail, so they are stored as null — on both stores alike.
    UTF-8, not \\u escapes: Chinese text stays 3 bytes a character."""
    encode = _COMPACT if compact else _PLAIN
    try:
        return encode(value)
    except ValueError:
        return encode(_finite(value))


# built once: json.dumps with arguments builds an encoder per call (three per result)
_PLAIN = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
