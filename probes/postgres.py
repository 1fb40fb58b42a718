"""PostgreSQL probe: login and version, pg_cron job failures, replication, database sizes and
their growth, pgBackRest's last backups, and custom SQL checks — over one pooled connection.

ok        the server answered every selected sub-check and nothing below was found
warning   a replica catching up or lag past `replication.lag.warning`; a cron job that failed
          since the last run and has succeeded since; a size-growth or custom-query warning
          level crossed
critical  no login (connect_refused, connect_error, dns_failed, auth_failed,
          database_missing); a query cut by the statement timeout (slow_query) or failing
          (query_failed); a pg_cron job whose latest run failed, or none succeeded within its
          `max_age` (job_failed), or that is not scheduled (job_missing); a replica not
          streaming or missing (replication_broken) or lag past the critical level
          (replication_lag); pgBackRest stanza errors (backup_failed) or backups older than
          `max_age` (backup_stale); a critical size-growth or query level (size_growth,
          query_threshold)
unknown   our side cannot look: a monitoring view the account may not read
          (permission_denied, naming the GRANT), pg_cron not installed where `cron` is asked
          (not_configured), a custom query whose columns do not fit (query_invalid), the
          pgbackrest binary missing or printing no JSON (probe_error)
Reason codes: ok, connect_refused, connect_error, dns_failed, auth_failed, database_missing,
permission_denied, slow_query, query_failed, job_failed, job_missing, replication_broken,
replication_lag, size_growth, backup_stale, backup_failed, query_threshold, query_invalid,
not_configured, probe_error; and `timeout` from the runner.

Connection reuse: an asyncpg pool (one connection, a second only while a cancelled run's
connection is being reset) is kept in `ProbeMemory` between runs; a connection-level failure
drops it so the next run logs in afresh. `postgres_connect_seconds` is reported only for runs
that logged in, `postgres_connection_reused` says which. Every session is read-only
(`default_transaction_read_only`) with `statement_timeout` below the check's timeout, so a
custom query can neither write nor outlive the run. The password comes from
`password_file`/`password_env` and is never part of the DSN: messages name user@host:port/db.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ConfigDict, Field, model_validator

from probes.config import CheckConfig, Duration, PasswordFields, StrictModel, Threshold
from probes.memory import ProbeMemory
from probes.result import Cause, ProbeResult, Status
from probes.sql import (
    Findings,
    SqlQuery,
    age_text,
    evaluate_query,
    one_line,
    since_text,
    verdict,
)

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

KIND = "postgres"
REMEMBERS = True

METRICS = {
    "postgres_connect_seconds": "Time to log in; only on runs that opened a new connection.",
    "postgres_connection_reused": "1 when this run used the connection kept from a previous "
                                  "run, 0 when it logged in.",
    "postgres_query_seconds": "Time spent in this run's queries.",
    "postgres_version_info": "Always 1; the server version in the `version` label.",
    "postgres_database_size_bytes": "Size of each database (pg_database_size).",
    "postgres_database_growth_bytes_per_day": "Size change per day since the previous run.",
    "postgres_cron_job_failures": "Failed runs of the pg_cron job since the previous probe "
                                  "run (the first run: within `cron.lookback`).",
    "postgres_cron_job_last_success_timestamp_seconds": "End of the job's latest successful "
                                                        "run within `cron.lookback`.",
    "postgres_in_recovery": "1 on a standby (pg_is_in_recovery), 0 on a primary.",
    "postgres_replicas": "Standbys connected to this primary (pg_stat_replication rows).",
    "postgres_replica_streaming": "1 when the replica (or, on a standby, its WAL receiver) is "
                                  "streaming, else 0.",
    "postgres_replication_lag_seconds": "Replay lag of each replica (primary) or of this "
                                        "standby.",
    "postgres_backup_last_success_timestamp_seconds": "Stop time of the newest pgBackRest "
                                                      "backup of each type.",
    "postgres_backup_size_bytes": "Database size covered by the newest backup of each type.",
    "postgres_query_value": "A column of a custom query's row (`query`, `column` labels).",
    "postgres_query_rows": "Rows a custom query returned.",
}

PgSubCheck = Literal["connect", "cron", "replication", "size", "pgbackrest"]
DEFAULT_CHECKS: tuple[PgSubCheck, ...] = ("connect", "replication", "size")
"""What needs no extra setup: pg_cron and pgBackRest are asked for explicitly."""
_DB_CHECKS = {"connect", "cron", "replication", "size"}
_IDENT = r"^[a-z_][a-z0-9_]*$"


class PgCronSettings(StrictModel):
    schema_name: str = Field(default="cron", pattern=_IDENT)
    """Where `job_run_details` and `job` are read: pg_cron's schema, or a schema of views on
    them (for an account without BYPASSRLS, docs/probes/databases.md)."""
    lookback: Duration = 86400.0
    """How far back the first run looks, and how far any run looks for a job's last success."""
    max_age: dict[str, Duration] = Field(default_factory=dict)
    """job name -> longest time without a successful run (e.g. `HIS.NIGHTLY_SETTLE: 26h`)."""


class PgReplicationSettings(StrictModel):
    role: Literal["any", "primary", "replica"] = "any"
    """`any`: a server without replication is ok; `primary`: at least one standby must be
    connected; `replica`: this server must be a streaming standby."""
    lag: Threshold = Threshold(warning=60, critical=300)
    """Replay lag in seconds."""


class PgSizeSettings(StrictModel):
    databases: list[str] = Field(default_factory=list)
    """Databases to measure; empty: every database that accepts connections."""
    growth_per_day: Threshold = Threshold()
    """Bytes per day between two runs; no levels by default (the metric only)."""


class PgBackRestSettings(StrictModel):
    binary: str = "pgbackrest"
    """The pgbackrest program: a path, or a name looked up on PATH."""
    stanza: str | None = None
    config: Path | None = None
    max_age: Duration = 26 * 3600.0
    """The newest backup of any type must be younger."""
    full_max_age: Duration | None = 8 * 86400.0
    """The newest full backup must be younger; null: not checked."""


class PostgresCheck(PasswordFields, CheckConfig):
    # a DSN in a validation error must not be echoed into logs
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["postgres"]
    dsn: str
    """`postgresql://user@host:port/database?sslmode=...` — without a password."""
    checks: list[PgSubCheck] = Field(default_factory=lambda: list(DEFAULT_CHECKS))
    statement_timeout: Duration | None = None
    """Server-side limit per statement; default 80 % of `timeout`."""
    cron: PgCronSettings = Field(default_factory=PgCronSettings)
    replication: PgReplicationSettings = Field(default_factory=PgReplicationSettings)
    size: PgSizeSettings = Field(default_factory=PgSizeSettings)
    pgbackrest: PgBackRestSettings = Field(default_factory=PgBackRestSettings)
    queries: list[SqlQuery] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _valid(self) -> PostgresCheck:
        parts = _dsn_parts(self.dsn)
        if parts.password:
            raise ValueError("dsn must not carry a password; use password_file or "
                             "password_env")
        if self.statement_timeout is not None and self.statement_timeout >= self.timeout:
            raise ValueError("statement_timeout must be below timeout")
        names = [q.name for q in self.queries]
        if len(names) != len(set(names)):
            raise ValueError("query names must be unique")
        return self

    @property
    def target(self) -> str:
        return _dsn_parts(self.dsn).where

    @property
    def statement_seconds(self) -> float:
        return self.statement_timeout or round(self.timeout * 0.8, 3)


CONFIG = PostgresCheck


@dataclass(frozen=True)
class _DsnParts:
    user: str
    host: str
    port: str
    database: str
    password: bool

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def _dsn_parts(dsn: str) -> _DsnParts:
    """What a message may say about a DSN (never its password)."""
    try:
        url = urlsplit(dsn)
        port = url.port
    except ValueError:
        raise ValueError("dsn is not a postgresql:// URL") from None
    if url.scheme not in {"postgres", "postgresql"}:
        raise ValueError("dsn must be a postgresql://user@host:port/database URL")
    query = dict(parse_qsl(url.query))
    user = unquote(url.username or "") or query.get("user", "")
    host = url.hostname or query.get("host", "") or "localhost"
    database = unquote(url.path.lstrip("/")) or query.get("dbname", "") or user
    return _DsnParts(user=user or "?", host=host, port=str(port or query.get("port", 5432)),
                     database=database or "?",
                     password=bool(url.password) or "password" in query)


@dataclass
class _Run:
    """One probe run's connection facts and timings."""

    check: PostgresCheck
    memory: ProbeMemory
    findings: Findings
    query_seconds: float = 0.0
    user: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _ConnectionLost(Exception):
    """The connection broke mid-run: the pool is dropped and the run ends with this cause."""

    def __init__(self, step: str):
        super().__init__(step)
        self.step = step


async def probe(check: PostgresCheck, memory: ProbeMemory) -> ProbeResult:
    findings = Findings()
    name = f"postgres {check.target}"
    jobs: list[Awaitable[None]] = []
    if _DB_CHECKS & set(check.checks) or check.queries:
        jobs.append(_database(check, memory, findings))
    if "pgbackrest" in check.checks:
        jobs.append(_pgbackrest(check, findings))
    await asyncio.gather(*jobs)
    return verdict(name, findings)


# --- connection -------------------------------------------------------------------------------

async def _database(check: PostgresCheck, memory: ProbeMemory, findings: Findings) -> None:
    for attempt in (1, 2):
        run = _Run(check, memory, Findings())
        stale = await _attempt(run)
        if stale and attempt == 1:
            # the kept connection died between runs (server restart, idle cut by a
            # firewall, pg_terminate_backend): our cache went stale, the server did not
            # fail — log in afresh once
            continue
        findings.metrics += run.findings.metrics
        findings.causes += run.findings.causes
        findings.details.update(run.findings.details)
        findings.notes += run.findings.notes
        return


async def _attempt(run: _Run) -> bool:
    """One pass over the sub-checks; True when a reused connection was dead on arrival."""
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    check, memory, findings = run.check, run.memory, run.findings
    loop = asyncio.get_running_loop()
    pool: asyncpg.Pool | None = memory.resources.get("pool")
    started = loop.time()
    created = pool is None
    reused = False
    try:
        if pool is None:
            pool = await _open_pool(check)
            memory.keep("pool", pool, _closer(pool))
        async with pool.acquire(timeout=check.statement_seconds) as conn:
            opened_s = loop.time() - started
            pid = conn.get_server_pid()
            reused = not created and memory.values.get("backend_pid") == pid
            memory.values["backend_pid"] = pid
            findings.metric("postgres_connection_reused", 1 if reused else 0)
            findings.details["connection"] = "reused" if reused else "new"
            findings.details["backend_pid"] = pid
            if not reused:
                findings.metric("postgres_connect_seconds", opened_s)
            await _subchecks(conn, run)
    except _ConnectionLost as lost:
        await memory.drop("pool")
        return reused and lost.step == "connect"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            asyncpg.InternalClientError) as exc:
        await memory.drop("pool")
        findings.causes.append(_login_cause(exc, check))
    findings.metric("postgres_query_seconds", run.query_seconds)
    return False


async def _open_pool(check: PostgresCheck) -> asyncpg.Pool:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    limit = check.statement_seconds
    password = check.password.get() if check.password is not None else None
    return await asyncpg.create_pool(
        dsn=check.dsn, password=password, min_size=1, max_size=2,
        timeout=limit,                          # connect (TCP + TLS + login)
        command_timeout=limit + 0.5,            # a silent peer: the client gives up too
        max_inactive_connection_lifetime=check.interval * 2 + check.timeout,
        server_settings={"application_name": "wardwatch",
                         "statement_timeout": str(int(limit * 1000)),
                         "default_transaction_read_only": "on"})


def _closer(pool: asyncpg.Pool) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        try:
            async with asyncio.timeout(5):
                await pool.close()
        except TimeoutError:
            pool.terminate()
    return close


def _login_cause(exc: BaseException, check: PostgresCheck) -> Cause:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    parts = _dsn_parts(check.dsn)
    at = f"{parts.host}:{parts.port}"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, socket.gaierror):
        return Cause(Status.CRITICAL, "dns_failed", f"cannot resolve {parts.host}: "
                     f"{exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Cause(Status.CRITICAL, "connect_refused", f"{at} refused the connection")
    if isinstance(exc, TimeoutError):
        return Cause(Status.CRITICAL, "connect_error",
                     f"no login at {at} within {check.statement_seconds:g}s")
    if sqlstate in {"28P01", "28000"}:
        return Cause(Status.CRITICAL, "auth_failed",
                     f"login as {parts.user} refused ({sqlstate}: {one_line(_message(exc))})")
    if sqlstate == "3D000":
        return Cause(Status.CRITICAL, "database_missing",
                     f"database {parts.database} does not exist on {at}")
    if isinstance(exc, asyncpg.PostgresError):
        return Cause(Status.CRITICAL, "connect_error",
                     f"login at {at} failed ({sqlstate}: {one_line(_message(exc))})")
    if isinstance(exc, OSError):
        return Cause(Status.CRITICAL, "connect_error",
                     f"cannot connect to {at}: {exc.strerror or type(exc).__name__}")
    return Cause(Status.CRITICAL, "connect_error",
                 f"connection to {at} failed: {one_line(str(exc)) or type(exc).__name__}")


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)


# --- sub-checks ---------------------------------------------------------------------------------

_GRANTS = {
    "connect": "GRANT pg_monitor TO {user}",
    "size": "GRANT pg_monitor TO {user}",
    "replication": "GRANT pg_monitor TO {user}",
    "cron": "GRANT USAGE ON SCHEMA {schema} TO {user}; GRANT SELECT ON {schema}.job, "
            "{schema}.job_run_details TO {user}",
}


async def _subchecks(conn: asyncpg.Connection, run: _Run) -> None:
    check = run.check
    await _step(run, "connect", _connect, conn)
    if "size" in check.checks:
        await _step(run, "size", _size, conn)
    if "replication" in check.checks:
        await _step(run, "replication", _replication, conn)
    if "cron" in check.checks:
        await _step(run, "cron", _cron, conn)
    for query in check.queries:
        await _step(run, f"query {query.name}", _custom, conn, query)


async def _step(run: _Run, what: str, step: Callable[..., Awaitable[None]],
                conn: asyncpg.Connection, *args: Any) -> None:
    """Run one sub-check; its SQL errors become causes, a lost connection ends the run."""
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await step(conn, run, *args)
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.InternalClientError, OSError) as exc:
        # InternalClientError: a backend terminated while idle leaves asyncpg's protocol in
        # a state it refuses to leave ("cannot switch to state 12")
        run.findings.cause(Status.CRITICAL, "connect_error",
                           f"connection lost during {what}: "
                           f"{one_line(str(exc)) or type(exc).__name__}")
        raise _ConnectionLost(what) from exc
    except TimeoutError as exc:   # command_timeout: the server went silent
        run.findings.cause(Status.CRITICAL, "connect_error",
                           f"no answer during {what} within {run.check.statement_seconds:g}s")
        raise _ConnectionLost(what) from exc
    except asyncpg.PostgresError as exc:
        run.findings.causes.append(_query_cause(exc, what, run))
    finally:
        run.query_seconds += loop.time() - started


def _query_cause(exc: Any, what: str, run: _Run) -> Cause:
    sqlstate = getattr(exc, "sqlstate", "") or ""
    message = one_line(_message(exc))
    if sqlstate == "57014":
        return Cause(Status.CRITICAL, "slow_query",
                     f"{what}: query cut by statement_timeout "
                     f"({run.check.statement_seconds:g}s)")
    if sqlstate == "42501":
        key = what if what in _GRANTS else ""
        grant = _GRANTS.get(key, "GRANT SELECT ON the query's tables TO {user}").format(
            user=run.user or "the monitoring role", schema=run.check.cron.schema_name)
        return Cause(Status.UNKNOWN, "permission_denied", f"{what}: {message} — {grant}")
    return Cause(Status.CRITICAL, "query_failed", f"{what}: {sqlstate}: {message}")


async def _connect(conn: asyncpg.Connection, run: _Run) -> None:
    row = await conn.fetchrow("SELECT current_setting('server_version') AS version, "
                              "current_user AS usr, current_database() AS db")
    assert row is not None
    run.user = row["usr"]
    run.findings.details["version"] = row["version"]
    run.findings.metric("postgres_version_info", 1, version=row["version"])
    run.findings.notes.append(f"PostgreSQL {row['version'].split(' ')[0]}")


async def _size(conn: asyncpg.Connection, run: _Run) -> None:
    wanted = run.check.size.databases
    rows = await conn.fetch(
        "SELECT datname, pg_database_size(oid) AS bytes FROM pg_database "
        "WHERE datallowconn AND NOT datistemplate "
        "AND (cardinality($1::text[]) = 0 OR datname = ANY($1::text[])) ORDER BY datname",
        wanted)
    found = {r["datname"] for r in rows}
    for name in wanted:
        if name not in found:
            run.findings.cause(Status.CRITICAL, "database_missing",
                               f"database {name} not found for size")
    sizes = {}
    for row in rows:
        db, size = row["datname"], float(row["bytes"])
        sizes[db] = int(size)
        run.findings.metric("postgres_database_size_bytes", size, database=db)
        change = run.memory.rate(f"size:{db}", size)
        if change is None:
            continue
        per_day = change.per_second * 86400
        run.findings.metric("postgres_database_growth_bytes_per_day", per_day, database=db)
        level = run.check.size.growth_per_day.evaluate(per_day)
        if level is not Status.OK:
            run.findings.cause(level, "size_growth",
                               f"database {db} grows {per_day / 2**20:.0f} MiB/day")
    run.findings.details["database_sizes"] = sizes


# --- replication --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PgReplicationState:
    """What the replication queries return; `evaluate_replication` decides on it."""

    in_recovery: bool
    replicas: list[dict[str, Any]]
    """pg_stat_replication rows: application_name, client_addr, state, sync_state, replay_lag
    (seconds or None)."""
    receiver_status: str | None = None
    """pg_stat_wal_receiver.status on a standby; None when no WAL receiver runs."""
    replay_lag: float | None = None
    """Standby: seconds behind (0 when everything received is replayed)."""


async def _replication(conn: asyncpg.Connection, run: _Run) -> None:
    in_recovery = bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
    if in_recovery:
        status = await conn.fetchval("SELECT status FROM pg_stat_wal_receiver")
        lag = await conn.fetchval(
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
            "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END")
        state = PgReplicationState(True, [], status, None if lag is None else float(lag))
    else:
        rows = await conn.fetch(
            "SELECT application_name, client_addr::text AS client_addr, state, sync_state, "
            "extract(epoch FROM replay_lag)::float8 AS replay_lag FROM pg_stat_replication "
            "ORDER BY application_name")
        state = PgReplicationState(False, [dict(r) for r in rows])
    evaluate_replication(state, run.check.replication, run.findings)


def evaluate_replication(state: PgReplicationState, settings: PgReplicationSettings,
                         findings: Findings) -> None:
    findings.metric("postgres_in_recovery", 1 if state.in_recovery else 0)
    if state.in_recovery:
        streaming = state.receiver_status == "streaming"
        findings.metric("postgres_replica_streaming", 1 if streaming else 0, replica="self")
        findings.details["replication"] = f"standby, WAL receiver {state.receiver_status}"
        if settings.role == "primary":
            findings.cause(Status.CRITICAL, "replication_broken",
                           "expected a primary, this server is a standby")
        if not streaming:
            findings.cause(Status.CRITICAL, "replication_broken",
                           "standby not streaming (WAL receiver "
                           f"{state.receiver_status or 'not running'})")
        if state.replay_lag is not None:
            findings.metric("postgres_replication_lag_seconds", state.replay_lag,
                            replica="self")
            _lag(state.replay_lag, "standby", settings, findings)
        return
    findings.metric("postgres_replicas", len(state.replicas))
    if not state.replicas:
        findings.details["replication"] = "no standby connected"
        if settings.role == "replica":
            findings.cause(Status.CRITICAL, "replication_broken",
                           "not a standby: no replication configured on this server")
        elif settings.role == "primary":
            findings.cause(Status.CRITICAL, "replication_broken", "no standby connected")
        return
    findings.details["replication"] = f"primary, {len(state.replicas)} standby"
    if settings.role == "replica":
        findings.cause(Status.CRITICAL, "replication_broken",
                       "expected a standby, this server is a primary")
    for row in state.replicas:
        name = row.get("application_name") or row.get("client_addr") or "?"
        streaming = row.get("state") == "streaming"
        findings.metric("postgres_replica_streaming", 1 if streaming else 0, replica=name)
        lag = float(row.get("replay_lag") or 0.0)   # NULL once an idle standby caught up
        findings.metric("postgres_replication_lag_seconds", lag, replica=name)
        if row.get("state") == "catchup":
            findings.cause(Status.WARNING, "replication_lag", f"standby {name} catching up")
        elif not streaming:
            findings.cause(Status.CRITICAL, "replication_broken",
                           f"standby {name} is {row.get('state')}, not streaming")
        _lag(lag, f"standby {name}", settings, findings)


def _lag(seconds: float, who: str, settings: PgReplicationSettings,
         findings: Findings) -> None:
    level = settings.lag.evaluate(seconds)
    if level is not Status.OK:
        findings.cause(level, "replication_lag", f"{who} replay lag {age_text(seconds)}")


# --- pg_cron ------------------------------------------------------------------------------------

async def _cron(conn: asyncpg.Connection, run: _Run) -> None:
    settings, findings, memory = run.check.cron, run.findings, run.memory
    schema = settings.schema_name
    visible = await conn.fetchrow(
        "SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls) "
        "AND c.relowner <> r.oid AS filtered FROM pg_class c JOIN pg_roles r "
        "ON r.rolname = current_user WHERE c.oid = to_regclass($1)",
        f"{schema}.job_run_details")
    if visible is None:
        findings.cause(Status.UNKNOWN, "not_configured",
                       f"cron: no {schema}.job_run_details in this database (pg_cron not "
                       "installed here, or cron.database_name is another database)")
        return
    if visible["filtered"]:
        # pg_cron's row-level security shows a role only its own jobs: an empty result
        # would read as "no failures"
        findings.cause(Status.UNKNOWN, "permission_denied",
                       f"cron: row-level security hides other roles' jobs from {run.user}: "
                       f"ALTER ROLE {run.user} BYPASSRLS, or read views (cron.schema_name)")
        return
    window = timedelta(seconds=settings.lookback)
    since: datetime | None = memory.values.get("cron_since")
    rows = await conn.fetch(_CRON_SQL.format(schema=schema), window, since)
    now = datetime.now(UTC)
    newest = since
    failing = 0
    for row in rows:
        job = row["jobname"] or str(row["jobid"])
        newest = row["last_end"] if newest is None else max(newest, row["last_end"])
        findings.metric("postgres_cron_job_failures", row["new_failures"], job=job)
        if row["last_success"] is not None:
            findings.metric("postgres_cron_job_last_success_timestamp_seconds",
                            row["last_success"].timestamp(), job=job)
        message = one_line(row["message"] or "", 120)
        if row["streak"]:
            failing += 1
            times = "time" if row["streak"] == 1 else "times"
            findings.cause(Status.CRITICAL, "job_failed",
                           f"job {job} failed {row['streak']} {times} since "
                           f"{since_text(row['streak_since'], now)}: {message}")
        elif row["new_failures"]:
            times = "time" if row["new_failures"] == 1 else "times"
            findings.cause(Status.WARNING, "job_failed",
                           f"job {job} failed {row['new_failures']} {times} since "
                           f"{since_text(row['new_since'], now)}, succeeded since: {message}")
    if newest is not None:
        memory.values["cron_since"] = newest
    if settings.max_age:
        await _cron_max_age(conn, run, now)
    findings.details["cron_jobs_seen"] = len(rows)
    if not failing:
        findings.notes.append(f"{len(rows)} cron jobs ran within {age_text(settings.lookback)}")


# Finished runs per job within the lookback: failures since the previous probe run
# (`new_*`, $2 = the newest end_time it saw; NULL on the first run) and the failures after
# the job's last success (`streak_*`: the job is failing now).
_CRON_SQL = """
WITH runs AS (
  SELECT jobid, status, return_message, end_time FROM {schema}.job_run_details
  WHERE end_time > now() - $1::interval AND status IN ('failed', 'succeeded')
), last_ok AS (
  SELECT jobid, max(end_time) AS t FROM runs WHERE status = 'succeeded' GROUP BY jobid
)
SELECT r.jobid, j.jobname,
  count(*) FILTER (WHERE r.status = 'failed'
                   AND r.end_time > coalesce($2::timestamptz, '-infinity')) AS new_failures,
  min(r.end_time) FILTER (WHERE r.status = 'failed'
                          AND r.end_time > coalesce($2::timestamptz, '-infinity')) AS new_since,
  count(*) FILTER (WHERE r.status = 'failed'
                   AND r.end_time > coalesce(l.t, '-infinity')) AS streak,
  min(r.end_time) FILTER (WHERE r.status = 'failed'
                          AND r.end_time > coalesce(l.t, '-infinity')) AS streak_since,
  (array_agg(r.return_message ORDER BY r.end_time DESC)
     FILTER (WHERE r.status = 'failed'))[1] AS message,
  l.t AS last_success,
  max(r.end_time) AS last_end
FROM runs r LEFT JOIN last_ok l ON l.jobid = r.jobid
LEFT JOIN {schema}.job j ON j.jobid = r.jobid
GROUP BY r.jobid, j.jobname, l.t
ORDER BY coalesce(j.jobname, r.jobid::text)
"""


async def _cron_max_age(conn: asyncpg.Connection, run: _Run, now: datetime) -> None:
    settings = run.check.cron
    schema = settings.schema_name
    rows = await conn.fetch(
        f"SELECT j.jobname, max(d.end_time) FILTER (WHERE d.status = 'succeeded') AS ok "
        f"FROM {schema}.job j LEFT JOIN {schema}.job_run_details d ON d.jobid = j.jobid "
        "WHERE j.jobname = ANY($1::text[]) GROUP BY j.jobname", list(settings.max_age))
    last_ok = {r["jobname"]: r["ok"] for r in rows}
    for job, limit in settings.max_age.items():
        if job not in last_ok:
            run.findings.cause(Status.CRITICAL, "job_missing",
                               f"job {job} is not scheduled in {schema}.job")
            continue
        ok = last_ok[job]
        if ok is None:
            run.findings.cause(Status.CRITICAL, "job_failed",
                               f"job {job} has no successful run on record "
                               f"(max_age {age_text(limit)})")
        elif (now - ok).total_seconds() > limit:
            run.findings.cause(Status.CRITICAL, "job_failed",
                               f"job {job} last succeeded {age_text((now - ok).total_seconds())}"
                               f" ago (max_age {age_text(limit)})")


# --- custom queries -----------------------------------------------------------------------------

async def _custom(conn: asyncpg.Connection, run: _Run, query: SqlQuery) -> None:
    async with conn.transaction(readonly=True):
        records = await conn.fetch(query.sql)
    columns = list(records[0].keys()) if records else []
    if not records:
        run.findings.metric("postgres_query_rows", 0, query=query.name)
        return
    evaluate_query(KIND, query, columns, [dict(r) for r in records], run.findings)


# --- pgBackRest ---------------------------------------------------------------------------------

async def _pgbackrest(check: PostgresCheck, findings: Findings) -> None:
    settings = check.pgbackrest
    args = [settings.binary, "--output=json"]
    if settings.stanza:
        args.append(f"--stanza={settings.stanza}")
    if settings.config:
        args.append(f"--config={settings.config}")
    args.append("info")
    limit = check.statement_seconds
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "LANG": "C"})
    except OSError as exc:
        findings.cause(Status.UNKNOWN, "probe_error",
                       f"cannot run {settings.binary}: {exc.strerror or exc}")
        return
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        findings.cause(Status.CRITICAL, "backup_failed",
                       f"pgbackrest info did not finish in {limit:g}s")
        return
    if proc.returncode != 0:
        findings.cause(Status.CRITICAL, "backup_failed",
                       f"pgbackrest info exited {proc.returncode}: "
                       f"{one_line(err.decode(errors='replace')) or 'no message'}")
        return
    try:
        document = json.loads(out)
    except ValueError:
        findings.cause(Status.UNKNOWN, "probe_error", "pgbackrest info printed no JSON")
        return
    evaluate_pgbackrest(document, settings, time.time(), findings)


_PGBACKREST_TYPES = ("full", "diff", "incr")


def evaluate_pgbackrest(document: Any, settings: PgBackRestSettings, now: float,
                        findings: Findings) -> None:
    """Decide on `pgbackrest info --output=json` (https://pgbackrest.org/command.html#command-info):
    a list of stanzas, each with `status.code` (0 ok) and `backup[]` entries carrying `type`,
    `label`, `timestamp.stop`, `info.size` and, since 2.36, `error` (checksum errors)."""
    if not isinstance(document, list):
        findings.cause(Status.UNKNOWN, "probe_error", "pgbackrest info: not a list of stanzas")
        return
    stanzas = [s for s in document if isinstance(s, dict)
               and (settings.stanza is None or s.get("name") == settings.stanza)]
    if not stanzas:
        findings.cause(Status.CRITICAL, "backup_failed",
                       f"pgbackrest: no stanza {settings.stanza or ''}".rstrip())
        return
    summary = {}
    for stanza in stanzas:
        name = str(stanza.get("name", "?"))
        status = stanza.get("status") or {}
        code = status.get("code", 99)
        if code != 0:
            findings.cause(Status.CRITICAL, "backup_failed",
                           f"pgbackrest stanza {name}: {status.get('message', 'error')} "
                           f"(code {code})")
        newest: dict[str, dict[str, Any]] = {}
        for backup in stanza.get("backup") or []:
            kind = backup.get("type")
            stop = (backup.get("timestamp") or {}).get("stop")
            if kind not in _PGBACKREST_TYPES or not isinstance(stop, int | float):
                continue
            if kind not in newest or stop > newest[kind]["timestamp"]["stop"]:
                newest[kind] = backup
        for kind, backup in newest.items():
            labels = {"stanza": name, "type": kind}
            findings.metric("postgres_backup_last_success_timestamp_seconds",
                            backup["timestamp"]["stop"], **labels)
            size = (backup.get("info") or {}).get("size")
            if isinstance(size, int | float):
                findings.metric("postgres_backup_size_bytes", size, **labels)
        summary[name] = {k: b.get("label") for k, b in newest.items()}
        if code != 0 and not newest:
            continue
        _backup_ages(name, newest, settings, now, findings)
    findings.details["pgbackrest"] = summary


def _backup_ages(stanza: str, newest: dict[str, dict[str, Any]], settings: PgBackRestSettings,
                 now: float, findings: Findings) -> None:
    if not newest:
        findings.cause(Status.CRITICAL, "backup_stale", f"pgbackrest stanza {stanza}: no backup")
        return
    latest = max(newest.values(), key=lambda b: b["timestamp"]["stop"])
    if latest.get("error"):
        findings.cause(Status.CRITICAL, "backup_failed",
                       f"pgbackrest backup {latest.get('label')} has page checksum errors")
    age = now - latest["timestamp"]["stop"]
    if age > settings.max_age:
        findings.cause(Status.CRITICAL, "backup_stale",
                       f"pgbackrest stanza {stanza}: newest backup {latest.get('label')} is "
                       f"{age_text(age)} old (max_age {age_text(settings.max_age)})")
    if settings.full_max_age is not None:
        full = newest.get("full")
        if full is None:
            findings.cause(Status.CRITICAL, "backup_stale",
                           f"pgbackrest stanza {stanza}: no full backup")
        elif (full_age := now - full["timestamp"]["stop"]) > settings.full_max_age:
            findings.cause(Status.CRITICAL, "backup_stale",
                           f"pgbackrest stanza {stanza}: newest full backup is "
                           f"{age_text(full_age)} old (full_max_age "
                           f"{age_text(settings.full_max_age)})")
    findings.notes.append(f"pgbackrest {stanza}: last backup {latest.get('label')} "
                          f"{age_text(max(age, 0))} ago")

