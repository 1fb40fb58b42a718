"""MariaDB / MySQL probe: login and version, the event scheduler and each event's last run,
replication threads and lag, mariabackup and mysqldump backups on disk, and custom SQL checks —
over one connection kept between runs.

ok        the server answered every selected sub-check and nothing below was found
warning   replication lag past `replication.lag.warning`; the newest dump smaller than
          `min_size_ratio` × the one before (backup_shrunk); a custom-query warning level
critical  no login (connect_refused, connect_error, dns_failed, auth_failed,
          database_missing); a statement cut by the statement timeout (slow_query) or failing
          (query_failed); `@@event_scheduler` not ON while enabled events exist
          (event_scheduler_off); an enabled recurring event whose last run is older than its
          interval × `overdue_factor` + `grace`, or that never ran (event_overdue); a replica
          whose IO or SQL thread is not running, or no replication where `role: replica`
          (replication_broken); lag past the critical level (replication_lag); the newest
          backup incomplete (backup_failed) or older than `max_age` (backup_stale); a
          critical custom-query level (query_threshold)
unknown   our side cannot look: a privilege the account lacks (permission_denied, naming the
          GRANT), a custom query whose columns do not fit (query_invalid), a backup
          directory we may not read (probe_error)
Reason codes: ok, connect_refused, connect_error, dns_failed, auth_failed, database_missing,
permission_denied, slow_query, query_failed, event_scheduler_off, event_overdue,
replication_broken, replication_lag, backup_failed, backup_stale, backup_shrunk,
query_threshold, query_invalid, probe_error; and `timeout` from the runner.

Events: MariaDB keeps no outcome of an event's run. `LAST_EXECUTED` is set when a run
*starts*, so an event whose statement fails keeps a fresh `LAST_EXECUTED` (verified on MariaDB
10.11, tests/probes/test_mysql.py): this probe sees a stalled event (scheduler off, event
disabled by a replica, server busy), not a failing one — that needs the error log. On MariaDB
the events are read from `mysql.event` (UTC times; `GRANT SELECT ON mysql.event` is read-only,
while `information_schema.EVENTS` shows a schema's events only to holders of the EVENT
privilege, which may also create and drop them); on MySQL 8 (no mysql.event) from
`information_schema.EVENTS` with the session in UTC.

PyMySQL blocks, so every server round trip runs in `asyncio.to_thread` with
`connect_timeout`, `read_timeout` and `write_timeout` below the check's timeout, and the server
cuts statements at `max_statement_time` (MariaDB) / `MAX_EXECUTION_TIME` (MySQL, SELECT
only): a cancelled run's thread ends soon after. The connection is kept in `ProbeMemory`
(one thread at a time uses it) and checked with a ping before reuse; a stale one is replaced
by a new login, a connection-level failure drops it. The session is read-only (`SET SESSION
TRANSACTION READ ONLY`). Messages name user@host:port only, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from probes.config import (
    CheckConfig,
    Duration,
    PasswordFields,
    StrictModel,
    Threshold,
    parse_duration,
)
from probes.memory import ProbeMemory
from probes.result import Cause, ProbeResult, Status
from probes.sql import Findings, SqlQuery, age_text, evaluate_query, one_line, verdict

KIND = "mysql"
REMEMBERS = True

METRICS = {
    "mysql_connect_seconds": "Time to log in; only on runs that opened a new connection.",
    "mysql_connection_reused": "1 when this run used the connection kept from a previous "
                               "run, 0 when it logged in.",
    "mysql_query_seconds": "Time spent in this run's statements.",
    "mysql_version_info": "Always 1; the server version in the `version` label.",
    "mysql_event_scheduler_on": "1 when @@event_scheduler is ON.",
    "mysql_events_enabled": "Enabled events.",
    "mysql_event_last_executed_timestamp_seconds": "When the event last started.",
    "mysql_event_overdue": "1 when the enabled recurring event is overdue, else 0.",
    "mysql_replication_io_running": "1 when the replica's IO thread runs (`Yes`).",
    "mysql_replication_sql_running": "1 when the replica's SQL thread runs.",
    "mysql_replication_lag_seconds": "Seconds_Behind_Master of each replication connection.",
    "mysql_backup_last_success_timestamp_seconds": "End of the newest complete backup "
                                                  "(`tool`, `type` labels).",
    "mysql_dump_size_bytes": "Size of the newest complete dump file.",
    "mysql_query_value": "A column of a custom query's row (`query`, `column` labels).",
    "mysql_query_rows": "Rows a custom query returned.",
}

MysqlSubCheck = Literal["connect", "events", "replication", "mariabackup", "dumps"]
DEFAULT_CHECKS: tuple[MysqlSubCheck, ...] = ("connect", "events", "replication")
"""What needs no extra setup; backups are asked for explicitly with their directory."""
_DB_CHECKS = {"connect", "events", "replication"}

# MySQL / MariaDB error numbers (mysqld_error.h, errmsg.h)
_AUTH = {1045, 1698}
_DB_MISSING = 1049
_PERMISSION = {1044, 1142, 1143, 1227, 1370}
_SLOW = {1969, 3024, 1317, 1028}
_LOST = {2006, 2013, 2014, 2055}
_CONNECT = {2002, 2003, 2005}


class MysqlEventsSettings(StrictModel):
    overdue_factor: float = Field(default=2.0, ge=1.0)
    """An event is overdue when its last run is older than interval × this + `grace`."""
    grace: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 60.0
    """Added to the allowance (the scheduler starts runs on whole seconds, a busy server
    later)."""
    schemas: list[str] = Field(default_factory=list)
    """Schemas whose events count; empty: all."""


class MysqlReplicationSettings(StrictModel):
    role: Literal["any", "replica"] = "any"
    """`any`: a server that replicates from nobody is ok; `replica`: it must replicate."""
    lag: Threshold = Threshold(warning=60, critical=300)
    """Seconds_Behind_Master."""


class MariaBackupSettings(StrictModel):
    backup_dir: Path
    """Each backup is a subdirectory (mariabackup --target-dir); the newest one is checked."""
    max_age: Duration = 26 * 3600.0
    in_progress_grace: Duration = 6 * 3600.0
    """An incomplete newest backup younger than this is taken as still running."""


class DumpSettings(StrictModel):
    dump_dir: Path
    pattern: str = "*.sql*"
    """A glob for dump file names (`his-*.sql.gz`)."""
    max_age: Duration = 26 * 3600.0
    min_size_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    """The newest dump smaller than this × the previous one is reason `backup_shrunk`."""
    in_progress_grace: Duration = 600.0
    """A dump without its completion line modified less than this ago is still being written."""
    gzip_tail_max_bytes: int = Field(default=16 << 20, ge=0)
    """A .gz dump up to this size is decompressed to read its last line; larger ones are not
    checked (their tail sits behind the whole stream)."""


class MysqlCheck(PasswordFields, CheckConfig):
    kind: Literal["mysql"]
    host: str = "127.0.0.1"
    port: int = Field(default=3306, gt=0, lt=65536)
    unix_socket: Path | None = None
    user: str = Field(min_length=1)
    database: str | None = None
    checks: list[MysqlSubCheck] = Field(default_factory=lambda: list(DEFAULT_CHECKS))
    statement_timeout: Duration | None = None
    """Server-side limit per statement; default 80 % of `timeout`."""
    events: MysqlEventsSettings = Field(default_factory=MysqlEventsSettings)
    replication: MysqlReplicationSettings = Field(default_factory=MysqlReplicationSettings)
    mariabackup: MariaBackupSettings | None = None
    dumps: DumpSettings | None = None
    queries: list[SqlQuery] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _valid(self) -> MysqlCheck:
        if "mariabackup" in self.checks and self.mariabackup is None:
            raise ValueError("checks has mariabackup: give mariabackup.backup_dir")
        if "dumps" in self.checks and self.dumps is None:
            raise ValueError("checks has dumps: give dumps.dump_dir")
        if self.statement_timeout is not None and self.statement_timeout >= self.timeout:
            raise ValueError("statement_timeout must be below timeout")
        names = [q.name for q in self.queries]
        if len(names) != len(set(names)):
            raise ValueError("query names must be unique")
        return self

    @property
    def target(self) -> str:
        where = str(self.unix_socket) if self.unix_socket else f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database or ''}"

    @property
    def statement_seconds(self) -> float:
        return self.statement_timeout or round(self.timeout * 0.8, 3)

    @property
    def socket_seconds(self) -> float:
        """Client read/write timeout: after the server's statement limit, before the run's."""
        return (self.statement_seconds + self.timeout) / 2


CONFIG = MysqlCheck


async def probe(check: MysqlCheck, memory: ProbeMemory) -> ProbeResult:
    findings = Findings()
    jobs: list[Awaitable[None]] = []
    if _DB_CHECKS & set(check.checks) or check.queries:
        jobs.append(_database(check, memory, findings))
    if "mariabackup" in check.checks and check.mariabackup is not None:
        jobs.append(asyncio.to_thread(inspect_mariabackup, check.mariabackup, time.time(),
                                      findings))
    if "dumps" in check.checks and check.dumps is not None:
        jobs.append(asyncio.to_thread(inspect_dumps, check.dumps, time.time(), findings))
    await asyncio.gather(*jobs)
    return verdict(f"mysql {check.target}", findings)


# --- the kept connection ----------------------------------------------------------------------

@dataclass
class _Session:
    """The connection kept between runs; `lock` lets one thread at a time use it."""

    conn: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    mariadb: bool = True

    def close(self) -> None:
        # a cancelled run's thread may still hold it: wait for its socket timeout, then close
        acquired = self.lock.acquire(timeout=15)
        try:
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.conn = None
        finally:
            if acquired:
                self.lock.release()


@dataclass
class _Raw:
    """What one run read from the server (filled in a worker thread)."""

    login_seconds: float | None = None
    reused: bool = False
    connection_id: int | None = None
    version: str = ""
    mariadb: bool = True
    scheduler: str | None = None
    now: datetime | None = None
    events: list[dict[str, Any]] | None = None
    replicas: list[dict[str, Any]] | None = None
    queries: dict[str, tuple[list[str], list[dict[str, Any]]]] = field(default_factory=dict)
    errors: list[tuple[str, Exception]] = field(default_factory=list)
    """(sub-check, error) for statements that failed; the connection still works."""
    fatal: tuple[str, Exception] | None = None
    """A login failure or a connection lost: the session is dropped."""
    query_seconds: float = 0.0
    busy: bool = False


async def _database(check: MysqlCheck, memory: ProbeMemory, findings: Findings) -> None:
    session: _Session | None = memory.resources.get("session")
    if session is None:
        session = _Session()
        memory.keep("session", session, _closer(session))
    raw = await asyncio.to_thread(_collect, session, check)
    if raw.busy:
        findings.cause(Status.CRITICAL, "slow_query",
                       "the previous run's statement is still running (no answer within "
                       f"{check.timeout:g}s)")
        return
    if raw.fatal is not None:
        await memory.drop("session")
    if raw.connection_id is not None:
        findings.metric("mysql_connection_reused", 1 if raw.reused else 0)
        findings.details["connection"] = "reused" if raw.reused else "new"
        findings.details["connection_id"] = raw.connection_id
        if raw.login_seconds is not None:
            findings.metric("mysql_connect_seconds", raw.login_seconds)
        findings.metric("mysql_query_seconds", raw.query_seconds)
    if raw.version:
        findings.details["version"] = raw.version
        findings.metric("mysql_version_info", 1, version=raw.version)
        findings.notes.append(("MariaDB " if raw.mariadb else "MySQL ")
                              + raw.version.split("-")[0])
    if raw.fatal is not None:
        findings.causes.append(_error_cause(raw.fatal[0], raw.fatal[1], check))
    for what, exc in raw.errors:
        findings.causes.append(_error_cause(what, exc, check))
    if raw.events is not None and raw.now is not None:
        evaluate_events(raw.events, raw.scheduler or "", raw.now, check.events, findings)
    if raw.replicas is not None:
        evaluate_replicas(raw.replicas, check.replication, findings)
    for query in check.queries:
        if query.name in raw.queries:
            columns, rows = raw.queries[query.name]
            if rows:
                evaluate_query(KIND, query, columns, rows, findings)
            else:
                findings.metric("mysql_query_rows", 0, query=query.name)


def _closer(session: _Session) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        await asyncio.to_thread(session.close)
    return close


def _collect(session: _Session, check: MysqlCheck) -> _Raw:
    """Every statement of one run, in this worker thread, on the kept connection."""
    import pymysql  # type: ignore[import-untyped,unused-ignore]

    raw = _Raw()
    if not session.lock.acquire(timeout=check.socket_seconds):
        raw.busy = True
        return raw
    try:
        if session.conn is not None:
            try:
                session.conn.ping(reconnect=False)
                raw.reused = True
            except (pymysql.MySQLError, OSError):
                # idle too long (wait_timeout, a firewall) or the server restarted: this
                # is our cache going stale, not the server failing — log in afresh
                with contextlib.suppress(Exception):
                    session.conn.close()
                session.conn = None
        if session.conn is None:
            started = time.perf_counter()
            try:
                session.conn, session.mariadb = _login(check)
            except (pymysql.MySQLError, OSError) as exc:
                raw.fatal = ("login", exc)
                return raw
            raw.login_seconds = time.perf_counter() - started
        raw.mariadb = session.mariadb
        started = time.perf_counter()
        try:
            _statements(session.conn, check, raw)
        finally:
            raw.query_seconds = time.perf_counter() - started
        if raw.fatal is not None:
            with contextlib.suppress(Exception):
                session.conn.close()
            session.conn = None
        return raw
    finally:
        session.lock.release()


def _login(check: MysqlCheck) -> tuple[Any, bool]:
    import pymysql  # type: ignore[import-untyped,unused-ignore]

    conn = pymysql.connect(
        host=check.host, port=check.port, user=check.user,
        password=check.password.get() if check.password is not None else "",
        database=check.database, unix_socket=str(check.unix_socket) if check.unix_socket
        else None, connect_timeout=check.statement_seconds,
        read_timeout=check.socket_seconds, write_timeout=check.socket_seconds,
        autocommit=True, charset="utf8mb4", program_name="wardwatch")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
            limit = check.statement_seconds
            if mariadb:
                cur.execute(f"SET SESSION max_statement_time = {limit:.3f}")
            else:
                cur.execute(f"SET SESSION MAX_EXECUTION_TIME = {int(limit * 1000)}")
                cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION READ ONLY")
    except BaseException:
        conn.close()
        raise
    return conn, mariadb


def _statements(conn: Any, check: MysqlCheck, raw: _Raw) -> None:
    import pymysql  # type: ignore[import-untyped,unused-ignore]

    def step(what: str, action: Callable[[Any], None]) -> bool:
        """Run one sub-check; False when the connection is gone (stop the run)."""
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                action(cur)
        except pymysql.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            if code in _LOST or isinstance(exc, pymysql.err.InterfaceError):
                raw.fatal = (what, exc)
                return False
            raw.errors.append((what, exc))
        except OSError as exc:
            raw.fatal = (what, exc)
            return False
        return True

    def connect(cur: Any) -> None:
        cur.execute("SELECT CONNECTION_ID() AS id, VERSION() AS version, "
                    "@@event_scheduler AS scheduler, UTC_TIMESTAMP(6) AS now")
        row = cur.fetchone()
        raw.connection_id, raw.version = int(row["id"]), str(row["version"])
        raw.scheduler = str(row["scheduler"])
        raw.now = row["now"].replace(tzinfo=UTC)

    def events(cur: Any) -> None:
        cur.execute(_EVENTS_SQL_MARIADB if raw.mariadb else _EVENTS_SQL_MYSQL)
        raw.events = list(cur.fetchall())

    def replication(cur: Any) -> None:
        if raw.mariadb:
            cur.execute("SHOW ALL SLAVES STATUS")
        else:
            cur.execute("SHOW REPLICA STATUS")
        raw.replicas = [normalize_replica_row(r) for r in cur.fetchall()]

    if not step("connect", connect):
        return
    if "events" in check.checks and not step("events", events):
        return
    if "replication" in check.checks and not step("replication", replication):
        return
    for query in check.queries:
        def custom(cur: Any, query: SqlQuery = query) -> None:
            cur.execute(query.sql)
            columns = [d[0] for d in cur.description or ()]
            raw.queries[query.name] = (columns, list(cur.fetchmany(query.max_rows + 1)))
        if not step(f"query {query.name}", custom):
            return


# mysql.event keeps times in UTC; interval_value of a compound interval (HOUR_MINUTE) is in
# its last unit (90 for '1:30' HOUR_MINUTE), as information_schema shows '1:30'.
_EVENTS_SQL_MARIADB = """
SELECT db AS `schema`, name, status, execute_at, interval_value, interval_field,
       starts, ends, last_executed
FROM mysql.event ORDER BY db, name
"""
_EVENTS_SQL_MYSQL = """
SELECT EVENT_SCHEMA AS `schema`, EVENT_NAME AS name, STATUS AS status,
       EXECUTE_AT AS execute_at, INTERVAL_VALUE AS interval_value,
       INTERVAL_FIELD AS interval_field, STARTS AS starts, ENDS AS ends,
       LAST_EXECUTED AS last_executed
FROM information_schema.EVENTS ORDER BY EVENT_SCHEMA, EVENT_NAME
"""


def normalize_replica_row(row: dict[str, Any]) -> dict[str, Any]:
    """MySQL 8.0.22+ says Replica_/Source_ where MariaDB and older MySQL say Slave_/Master_."""
    out = {}
    for key, value in row.items():
        key = key.replace("Replica_", "Slave_").replace("Source_", "Master_")
        key = key.replace("_Behind_Source", "_Behind_Master")
        out[key] = value
    return out


_GRANTS = {
    "events": "GRANT SELECT ON mysql.event TO {user}",
    "replication": "GRANT REPLICA MONITOR ON *.* TO {user} (MySQL: REPLICATION CLIENT)",
    "login": "GRANT SELECT ON {database}.* TO {user}, or leave `database` unset",
}


def _error_cause(what: str, exc: Exception, check: MysqlCheck) -> Cause:
    at = str(check.unix_socket) if check.unix_socket else f"{check.host}:{check.port}"
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = one_line(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    user = f"'{check.user}'@'<agent host>'"
    if code in _CONNECT or (what == "login" and isinstance(exc, OSError)):
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, socket.gaierror):
            return Cause(Status.CRITICAL, "dns_failed", f"cannot resolve {check.host}")
        if isinstance(cause, ConnectionRefusedError):
            return Cause(Status.CRITICAL, "connect_refused", f"{at} refused the connection")
        if isinstance(cause, TimeoutError):
            return Cause(Status.CRITICAL, "connect_error",
                         f"no answer from {at} within {check.statement_seconds:g}s")
        return Cause(Status.CRITICAL, "connect_error", f"cannot connect to {at}: {message}")
    if code in _AUTH:
        return Cause(Status.CRITICAL, "auth_failed", f"login as {check.user} refused "
                                                     f"({code}: {message})")
    if code == _DB_MISSING:
        return Cause(Status.CRITICAL, "database_missing",
                     f"database {check.database} does not exist on {at}")
    if code in _PERMISSION:
        grant = _GRANTS.get(what, "GRANT SELECT ON the query's tables TO {user}")
        # the server's message repeats user and host at length: the GRANT says it all
        return Cause(Status.UNKNOWN, "permission_denied",
                     f"{what}: access denied ({code}): "
                     + grant.format(user=user, database=check.database))
    if code in _SLOW:
        return Cause(Status.CRITICAL, "slow_query",
                     f"{what}: statement cut after {check.statement_seconds:g}s "
                     f"({code}: {message})")
    if code in _LOST or isinstance(exc, OSError):
        if "timed out" in message:
            return Cause(Status.CRITICAL, "connect_error",
                         f"{what}: no answer from {at} within {check.socket_seconds:g}s")
        return Cause(Status.CRITICAL, "connect_error", f"{what}: connection lost ({message})")
    return Cause(Status.CRITICAL, "query_failed", f"{what}: {code}: {message}")


# --- events -------------------------------------------------------------------------------------

_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800,
                 "MONTH": 31 * 86400, "QUARTER": 92 * 86400, "YEAR": 366 * 86400}


def interval_seconds(value: Any, unit: str) -> float | None:
    """An event's interval in seconds (the longest a month, quarter or year can be)."""
    if value is None or not unit:
        return None
    last = unit.upper().split("_")[-1]   # compound: mysql.event counts in the last unit
    if last not in _UNIT_SECONDS:
        return None
    text = str(value).strip("'")
    if ":" in text or " " in text or "-" in text:   # information_schema's '1:30' form
        parts = [float(p) for p in text.replace(" ", ":").replace("-", ":").split(":")]
        units = unit.upper().split("_")
        return sum(p * _UNIT_SECONDS.get(u, 0) for p, u in zip(parts, units, strict=False))
    return float(text) * _UNIT_SECONDS[last]


def evaluate_events(rows: list[dict[str, Any]], scheduler: str, now: datetime,
                    settings: MysqlEventsSettings, findings: Findings) -> None:
    """Decide on event rows (`schema`, `name`, `status`, `execute_at`, `interval_value`,
    `interval_field`, `starts`, `ends`, `last_executed`; naive times in UTC)."""
    on = scheduler.upper() == "ON"
    findings.metric("mysql_event_scheduler_on", 1 if on else 0)
    wanted = [r for r in rows if not settings.schemas or r["schema"] in settings.schemas]
    enabled = [r for r in wanted if r["status"] == "ENABLED"]
    findings.metric("mysql_events_enabled", len(enabled))
    findings.details["event_scheduler"] = scheduler
    if enabled and not on:
        findings.cause(Status.CRITICAL, "event_scheduler_off",
                       f"event_scheduler is {scheduler} with {len(enabled)} enabled "
                       "event" + ("s" if len(enabled) != 1 else ""))
    overdue = 0
    for row in enabled:
        event = f"{row['schema']}.{row['name']}"
        last = _utc(row["last_executed"])
        if last is not None:
            findings.metric("mysql_event_last_executed_timestamp_seconds", last.timestamp(),
                            event=event)
        every = interval_seconds(row["interval_value"], row["interval_field"] or "")
        if row["execute_at"] is not None or every is None:
            continue   # a one-time event: nothing recurs to be late
        starts, ends = _utc(row["starts"]), _utc(row["ends"])
        if (starts is not None and starts > now) or (ends is not None and ends <= now):
            continue
        limit = every * settings.overdue_factor + settings.grace
        since = last or starts
        late = since is not None and (now - since).total_seconds() > limit
        findings.metric("mysql_event_overdue", 1 if late else 0, event=event)
        if not late:
            continue
        overdue += 1
        if not on:
            continue   # one cause says why all of them are late
        assert since is not None
        ago = age_text((now - since).total_seconds())
        what = f"last ran {ago} ago" if last else f"never ran since it started {ago} ago"
        findings.cause(Status.CRITICAL, "event_overdue",
                       f"event {event} overdue: {what}, every {age_text(every)}")
    findings.details["events_overdue"] = overdue
    if on or not enabled:
        findings.notes.append(f"{len(enabled)} events enabled")


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- replication --------------------------------------------------------------------------------

def evaluate_replicas(rows: list[dict[str, Any]], settings: MysqlReplicationSettings,
                      findings: Findings) -> None:
    """Decide on `SHOW ALL SLAVES STATUS` rows (MySQL: `SHOW REPLICA STATUS`, renamed)."""
    if not rows:
        findings.details["replication"] = "not a replica"
        if settings.role == "replica":
            findings.cause(Status.CRITICAL, "replication_broken",
                           "not a replica: no replication configured "
                           "(SHOW ALL SLAVES STATUS is empty)")
        else:
            findings.notes.append("not a replica")
        return
    findings.details["replication"] = f"{len(rows)} replication connection(s)"
    for row in rows:
        name = str(row.get("Connection_name") or "") or (
            f"{row.get('Master_Host', '?')}:{row.get('Master_Port', '?')}")
        io, sql = str(row.get("Slave_IO_Running", "")), str(row.get("Slave_SQL_Running", ""))
        findings.metric("mysql_replication_io_running", 1 if io == "Yes" else 0,
                        connection=name)
        findings.metric("mysql_replication_sql_running", 1 if sql == "Yes" else 0,
                        connection=name)
        if io != "Yes" or sql != "Yes":
            error = one_line(str(row.get("Last_SQL_Error") or row.get("Last_IO_Error")
                                 or row.get("Last_Error") or ""), 120)
            findings.cause(Status.CRITICAL, "replication_broken",
                           f"replica {name}: IO thread {io or '?'}, SQL thread {sql or '?'}"
                           + (f": {error}" if error else ""))
            continue
        lag = row.get("Seconds_Behind_Master")
        if lag is None:
            continue
        findings.metric("mysql_replication_lag_seconds", float(lag), connection=name)
        level = settings.lag.evaluate(float(lag))
        if level is not Status.OK:
            findings.cause(level, "replication_lag",
                           f"replica {name} {age_text(float(lag))} behind its primary")


# --- backups on disk ----------------------------------------------------------------------------

_CHECKPOINTS = ("mariadb_backup_checkpoints", "xtrabackup_checkpoints")
_INFO = ("mariadb_backup_info", "xtrabackup_info")


def _key_values(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _first(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def inspect_mariabackup(settings: MariaBackupSettings, now: float, findings: Findings) -> None:
    """The newest subdirectory of `backup_dir`: complete (`backup_type` and `to_lsn` in
    xtrabackup_checkpoints), and finished (xtrabackup_info `end_time`) within `max_age`."""
    where = settings.backup_dir
    try:
        dirs = sorted((d for d in where.iterdir() if d.is_dir()),
                      key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError as exc:
        status = Status.UNKNOWN if isinstance(exc, PermissionError) else Status.CRITICAL
        reason = "probe_error" if status is Status.UNKNOWN else "backup_failed"
        findings.cause(status, reason, f"mariabackup: cannot read {where}: "
                                       f"{exc.strerror or exc}")
        return
    if not dirs:
        findings.cause(Status.CRITICAL, "backup_stale", f"mariabackup: no backup in {where}")
        return
    for position, directory in enumerate(dirs):
        problem, kind, finished = _mariabackup_state(directory)
        age = now - directory.stat().st_mtime
        if problem and position == 0 and age < settings.in_progress_grace and len(dirs) > 1:
            findings.details["mariabackup_in_progress"] = directory.name
            continue   # still being written: judge the one before it
        if problem:
            findings.cause(Status.CRITICAL, "backup_failed",
                           f"mariabackup: newest backup {directory.name} {problem}")
            return
        assert finished is not None
        findings.metric("mysql_backup_last_success_timestamp_seconds", finished,
                        tool="mariabackup", type=kind)
        findings.details["mariabackup"] = {"dir": directory.name, "type": kind}
        age = now - finished
        if age > settings.max_age:
            findings.cause(Status.CRITICAL, "backup_stale",
                           f"mariabackup: newest backup {directory.name} is {age_text(age)} "
                           f"old (max_age {age_text(settings.max_age)})")
        else:
            findings.notes.append(f"mariabackup {kind} {age_text(max(age, 0))} ago")
        return


def _mariabackup_state(directory: Path) -> tuple[str | None, str, float | None]:
    """(problem, full|incremental, end time) of one backup directory."""
    checkpoints = _first(directory, _CHECKPOINTS)
    if checkpoints is None:
        return "has no xtrabackup_checkpoints (incomplete or interrupted)", "", None
    values = _key_values(checkpoints)
    backup_type = values.get("backup_type", "")
    if not backup_type or not values.get("to_lsn"):
        return "is incomplete: xtrabackup_checkpoints lacks backup_type or to_lsn", "", None
    kind = "incremental" if backup_type == "incremental" else "full"
    finished = checkpoints.stat().st_mtime
    info = _first(directory, _INFO)
    if info is not None:
        end = _key_values(info).get("end_time", "")
        with contextlib.suppress(ValueError):
            # local time of the host that ran mariabackup, as it writes it
            finished = datetime.strptime(end, "%Y-%m-%d %H:%M:%S").timestamp()
    return None, kind, finished


_COMPLETED = b"-- Dump completed"


def inspect_dumps(settings: DumpSettings, now: float, findings: Findings) -> None:
    """The newest dump matching `pattern`: complete (mysqldump's `-- Dump completed` line in
    its last 4 KiB), younger than `max_age`, not much smaller than the previous one."""
    where = settings.dump_dir
    try:
        files = sorted(((p, p.stat()) for p in where.iterdir()
                        if fnmatch.fnmatch(p.name, settings.pattern) and p.is_file()),
                       key=lambda item: item[1].st_mtime, reverse=True)
    except OSError as exc:
        status = Status.UNKNOWN if isinstance(exc, PermissionError) else Status.CRITICAL
        reason = "probe_error" if status is Status.UNKNOWN else "backup_failed"
        findings.cause(status, reason, f"dumps: cannot read {where}: {exc.strerror or exc}")
        return
    if not files:
        findings.cause(Status.CRITICAL, "backup_stale",
                       f"dumps: no file matching {settings.pattern} in {where}")
        return
    for position, (path, stat) in enumerate(files):
        complete, note = _dump_complete(path, stat.st_size, settings)
        if note:
            findings.details.setdefault("dump_checks", {})[path.name] = note
        if (complete is False and position == 0 and len(files) > 1
                and now - stat.st_mtime < settings.in_progress_grace):
            findings.details["dump_in_progress"] = path.name
            continue
        if complete is False:
            findings.cause(Status.CRITICAL, "backup_failed",
                           f"dump {path.name} lacks the '-- Dump completed' line (cut off?)")
            return
        findings.metric("mysql_dump_size_bytes", stat.st_size)
        findings.metric("mysql_backup_last_success_timestamp_seconds", stat.st_mtime,
                        tool="mysqldump", type="dump")
        findings.details["dump"] = {"file": path.name, "bytes": stat.st_size}
        age = now - stat.st_mtime
        if age > settings.max_age:
            findings.cause(Status.CRITICAL, "backup_stale",
                           f"newest dump {path.name} is {age_text(age)} old "
                           f"(max_age {age_text(settings.max_age)})")
        if position + 1 < len(files):
            previous_path, previous = files[position + 1]
            if previous.st_size and stat.st_size < settings.min_size_ratio * previous.st_size:
                findings.cause(Status.WARNING, "backup_shrunk",
                               f"dump {path.name} is {stat.st_size:,} bytes, "
                               f"{stat.st_size / previous.st_size:.0%} of "
                               f"{previous_path.name}")
        if age <= settings.max_age:
            findings.notes.append(f"dump {path.name} {age_text(max(age, 0))} ago")
        return


def _dump_complete(path: Path, size: int, settings: DumpSettings) -> tuple[bool | None, str]:
    """(True/False, "") when the completion line was looked for; (None, why) when not."""
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            if size > settings.gzip_tail_max_bytes:
                return None, (f"completion not checked: gzip file over "
                              f"{settings.gzip_tail_max_bytes:,} bytes")
            return _COMPLETED in _gzip_tail(path), ""
        if name.endswith((".xz", ".zst", ".bz2", ".lz4", ".zip")):
            return None, "completion not checked: compressed"
        with path.open("rb") as dump:
            dump.seek(max(0, size - 4096))
            return _COMPLETED in dump.read(4096), ""
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return False, f"unreadable: {getattr(exc, 'strerror', None) or exc}"


def _gzip_tail(path: Path) -> bytes:
    """The last 4 KiB of a gzip file's content (a cut-off stream raises EOFError)."""
    tail = b""
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            tail = (tail + chunk)[-4096:]
    return tail
