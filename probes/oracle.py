"""Oracle Database probe (python-oracledb): connectivity and a timed round trip, then the
sub-checks listed under `checks:` — scheduler and legacy jobs, RMAN backups, tablespaces, the
fast recovery area and archive destinations, sessions against their limits, blocking
sessions, Data Guard lag, version and patch level — and custom SQL under `queries:`.

ok        login and the round trip worked; no sub-check found anything
warning   a warning level is crossed (tablespace, FRA, sessions, blocking, apply lag, custom
          query); a job overdue (`job_overdue`) or failed but since succeeded; the account's
          password in its grace period (ORA-28002, `password_expiring`); a resolvable Data
          Guard gap; the latest SQL patch not SUCCESS (`patch_incomplete`)
critical  no login: refused or no listener (`connect_refused`), no answer in time
          (`connect_timeout`), unknown service (`service_unknown`), listener refusing
          (`listener_refused`), instance down or starting (`instance_unavailable`), wrong
          credentials (`auth_failed`), locked or expired account, bad DSN (`bad_dsn`), host not
          resolved (`dns_failed`); a query cut by `call_timeout` (`slow_query`); the
          connection lost mid-run (`connection_lost`); a job whose latest run failed
          (`job_failed`) or BROKEN (`job_broken`); a backup past its critical age or whose
          latest run failed; a critical level crossed; any other database error
          (`query_failed`, with the ORA code)
unknown   our side: `mode: thick` in a process that started in thin mode, or no Oracle Client
          library (`probe_error`); a monitoring view the account may not read
          (`permission_denied`, naming the GRANT); a server too old for thin mode
          (`unsupported_server`: Oracle 11.2 needs `mode: thick`); SQL that does not fit
          this server version (`probe_error`)
Reason codes: ok, connect_refused, connect_timeout, connect_error, dns_failed, bad_dsn,
service_unknown, listener_refused, instance_unavailable, auth_failed, account_locked,
password_expired, password_expiring, permission_denied, slow_query, connection_lost,
unsupported_server, query_failed, job_failed, job_broken, job_overdue, backup_stale,
backup_failed, tablespace_full, fra_full, archive_dest_error, sessions_high,
blocking_sessions, dataguard_lag, patch_incomplete, query_threshold, probe_error.

Thin or thick is fixed per process (python-oracledb cannot switch once a connection exists):
the agent calls `enable_thick_mode_for(config.checks)` at start-up, before anything connects,
and every Oracle check of that process then runs in thick mode (sync calls in a thread, each
bounded by `call_timeout`). In thin mode the async API is used. Each check keeps one
connection between runs (`memory.keep`), dropped after a connection-level failure; see
docs/probes/oracle.md for why not a pool.

Evaluation is pure: `evaluate_*` functions turn the rows of one SQL statement (in `SQL`) into
causes, metrics and details, and are tested on rows shaped as python-oracledb returns them.
`examine` runs the statements through a `Session`, the same code live and in tests. Times:
TIMESTAMP WITH TIME ZONE columns are converted to UTC in SQL (`SYS_EXTRACT_UTC`), because
python-oracledb returns them without a zone and thin and thick modes differ; DATE columns
(RMAN, DBA_JOBS) are the server's local clock and are read in `db_timezone`.

The password is never in a summary, detail, metric or log line: messages are built from
`user@dsn`, and every text is scrubbed of the password as a second guard.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from probes.config import CheckConfig, Duration, PasswordFields, Regex, StrictModel, Threshold
from probes.memory import ProbeMemory
from probes.result import Cause, Findings, Metric, ProbeResult, Status, result

if TYPE_CHECKING:
    import oracledb

KIND = "oracle"
REMEMBERS = True

METRICS = {
    "oracle_up": "1 when the probe logged in and ran its round trip, else 0.",
    "oracle_connect_seconds": "Time to log in (0 when the kept connection was reused).",
    "oracle_query_seconds": "Round trip of `SELECT SYSDATE … FROM dual`.",
    "oracle_pool_reused": "1 when the connection kept from the previous run was reused.",
    "oracle_tablespace_used_ratio": "Used / maximum size (autoextend included), "
                                    "DBA_TABLESPACE_USAGE_METRICS.",
    "oracle_tablespace_used_bytes": "Bytes used in the tablespace.",
    "oracle_tablespace_size_bytes": "Maximum size of the tablespace (autoextend included).",
    "oracle_scheduler_job_failures": "Failed runs of a scheduler job since the previous run.",
    "oracle_scheduler_job_failing": "1 while a scheduler job's latest run failed.",
    "oracle_jobs_broken": "Broken jobs (DBA_SCHEDULER_JOBS state BROKEN, DBA_JOBS BROKEN=Y).",
    "oracle_backup_last_success_timestamp_seconds": "End of the last successful RMAN backup "
                                                    "of the type (Unix time).",
    "oracle_backup_age_seconds": "Seconds since the last successful RMAN backup of the type.",
    "oracle_backup_failures": "Failed RMAN runs of the type in the backup history read.",
    "oracle_fra_used_ratio": "Fast recovery area used minus reclaimable, over its limit.",
    "oracle_fra_limit_bytes": "DB_RECOVERY_FILE_DEST_SIZE.",
    "oracle_archive_dest_errors": "Archive destinations in error.",
    "oracle_sessions": "Current sessions (V$RESOURCE_LIMIT).",
    "oracle_sessions_limit": "SESSIONS parameter.",
    "oracle_processes": "Current processes (V$RESOURCE_LIMIT).",
    "oracle_processes_limit": "PROCESSES parameter.",
    "oracle_blocking_sessions": "Sessions waiting on another session's lock.",
    "oracle_blocking_max_wait_seconds": "Longest current wait of a blocked session.",
    "oracle_dataguard_apply_lag_seconds": "Standby apply lag (V$DATAGUARD_STATS).",
    "oracle_dataguard_transport_lag_seconds": "Standby transport lag (V$DATAGUARD_STATS).",
    "oracle_info": "Always 1; the server version in the `version` label.",
    "oracle_query_value": "A column of a custom query (labels: query, column, label columns).",
    "oracle_query_rows": "Rows returned by a custom query.",
}

SubCheck = Literal["jobs", "backups", "tablespaces", "fra", "sessions", "blocking",
                   "dataguard", "version"]
ALL_SUBCHECKS: tuple[SubCheck, ...] = ("jobs", "backups", "tablespaces", "fra", "sessions",
                                       "blocking", "dataguard", "version")
BackupType = Literal["full", "incr", "archivelog"]

# One statement per sub-check step. All are plain SELECTs on dictionary views the read-only
# account is granted (docs/probes/oracle.md lists the GRANTs); no FETCH FIRST (11.2 lacks it);
# aggregated in SQL so few rows cross the network. Binds: naive datetimes are UTC.
SQL: dict[str, str] = {
    "ping": "SELECT SYSDATE AS db_date, SYS_EXTRACT_UTC(SYSTIMESTAMP) AS utc_now FROM dual",
    # one row per job that ran since the previous probe
    "job_runs": """
SELECT owner, job_name, COUNT(*) AS runs,
       SUM(CASE WHEN status <> 'SUCCEEDED' THEN 1 ELSE 0 END) AS failures,
       SUM(CASE WHEN status <> 'SUCCEEDED' AND log_id > NVL(last_ok_id, 0) THEN 1 ELSE 0 END)
           AS failures_since_success,
       MIN(CASE WHEN status <> 'SUCCEEDED' AND log_id > NVL(last_ok_id, 0) THEN started_utc END)
           AS first_failure_utc,
       MAX(log_id) AS last_log_id,
       MAX(log_utc) AS last_log_utc,
       MAX(status) KEEP (DENSE_RANK LAST ORDER BY log_id) AS last_status,
       MAX(error#) KEEP (DENSE_RANK LAST ORDER BY
           CASE WHEN status <> 'SUCCEEDED' THEN log_id ELSE 0 END) AS last_error,
       MAX(info) KEEP (DENSE_RANK LAST ORDER BY
           CASE WHEN status <> 'SUCCEEDED' THEN log_id ELSE 0 END) AS last_info
  FROM (SELECT owner, job_name, log_id, status, error#,
               SYS_EXTRACT_UTC(log_date) AS log_utc,
               SYS_EXTRACT_UTC(NVL(actual_start_date, log_date)) AS started_utc,
               SUBSTR(additional_info, 1, 400) AS info,
               MAX(CASE WHEN status = 'SUCCEEDED' THEN log_id END)
                   OVER (PARTITION BY owner, job_name) AS last_ok_id
          FROM dba_scheduler_job_run_details
         WHERE log_date > FROM_TZ(CAST(:since AS TIMESTAMP), 'UTC') AND log_id > :after_id)
 GROUP BY owner, job_name""",
    # broken jobs, and enabled jobs whose next run is overdue by more than the grace
    "scheduler_jobs": """
SELECT owner, job_name, state, failure_count, max_failures,
       SYS_EXTRACT_UTC(last_start_date) AS last_start_utc,
       SYS_EXTRACT_UTC(next_run_date) AS next_run_utc,
       SUBSTR(repeat_interval, 1, 200) AS repeat_interval
  FROM dba_scheduler_jobs
 WHERE state = 'BROKEN'
    OR (enabled = 'TRUE' AND state = 'SCHEDULED'
        AND next_run_date < SYSTIMESTAMP - NUMTODSINTERVAL(:grace, 'SECOND'))""",
    # DBMS_JOB jobs: FAILURES counts failures since the last success; dates are DATE (local)
    "legacy_jobs": """
SELECT job, schema_user, SUBSTR(what, 1, 100) AS what, broken, failures,
       last_date, this_date, next_date, interval
  FROM dba_jobs
 WHERE broken = 'Y' OR failures > 0
    OR (this_date IS NULL AND next_date < SYSDATE - :grace / 86400)""",
    # one row per backup type; a DB INCR job whose backup sets include level 0 is a full
    "backups": """
SELECT bucket,
       MAX(CASE WHEN status IN ('COMPLETED', 'COMPLETED WITH WARNINGS') THEN end_time END)
           AS last_success_end,
       MAX(CASE WHEN status IN ('FAILED', 'COMPLETED WITH ERRORS') THEN start_time END)
           AS last_failure_start,
       MAX(session_key) KEEP (DENSE_RANK LAST ORDER BY
           CASE WHEN status IN ('FAILED', 'COMPLETED WITH ERRORS') THEN start_time END
           NULLS FIRST) AS last_failure_key,
       SUM(CASE WHEN status IN ('FAILED', 'COMPLETED WITH ERRORS') THEN 1 ELSE 0 END)
           AS failures,
       MAX(status) KEEP (DENSE_RANK LAST ORDER BY start_time) AS last_status,
       MAX(start_time) AS last_start,
       MIN(CASE WHEN status LIKE 'RUNNING%' THEN start_time END) AS running_since
  FROM (SELECT CASE WHEN j.input_type = 'ARCHIVELOG' THEN 'archivelog'
                    WHEN j.input_type = 'DB FULL' THEN 'full'
                    WHEN j.input_type = 'DB INCR' AND EXISTS (
                         SELECT 1 FROM v$backup_set_details s
                          WHERE s.session_key = j.session_key
                            AND s.backup_type IN ('D', 'I') AND s.incremental_level = 0)
                         THEN 'full'
                    WHEN j.input_type = 'DB INCR' THEN 'incr'
                    ELSE 'other' END AS bucket,
               j.session_key, j.status, j.start_time, j.end_time
          FROM v$rman_backup_job_details j
         WHERE j.start_time > SYSDATE - :days)
 GROUP BY bucket""",
    # the first error lines RMAN printed in one failed session
    "rman_errors": """
SELECT output FROM (
  SELECT SUBSTR(output, 1, 300) AS output FROM v$rman_output
   WHERE session_key = :session_key AND (output LIKE 'ORA-%' OR output LIKE 'RMAN-%')
   ORDER BY recid)
 WHERE ROWNUM <= 6""",
    # sizes in blocks in the view: times the tablespace's block size
    "tablespaces": """
SELECT m.tablespace_name, t.contents, m.used_percent,
       m.used_space * t.block_size AS used_bytes,
       m.tablespace_size * t.block_size AS size_bytes
  FROM dba_tablespace_usage_metrics m
  JOIN dba_tablespaces t ON t.tablespace_name = m.tablespace_name""",
    "fra": """
SELECT name, space_limit, space_used, space_reclaimable, number_of_files
  FROM v$recovery_file_dest""",
    "archive_dests": """
SELECT dest_id, dest_name, status, target, destination, error
  FROM v$archive_dest
 WHERE status IN ('ERROR', 'FULL', 'BAD PARAM', 'DISABLED')
    OR (status NOT IN ('INACTIVE', 'DEFERRED') AND error IS NOT NULL)""",
    "sessions": """
SELECT resource_name, current_utilization, max_utilization, TRIM(limit_value) AS limit_value
  FROM v$resource_limit WHERE resource_name IN ('sessions', 'processes')""",
    # one row per final blocker, with who the blocker is
    "blocking": """
SELECT w.blocker_instance, w.blocker_sid, w.blocked, w.max_wait_seconds, w.event,
       b.username AS blocker_user, b.machine AS blocker_machine,
       b.program AS blocker_program, b.status AS blocker_status,
       b.sql_id AS blocker_sql_id, b.last_call_et AS blocker_last_call_seconds
  FROM (SELECT final_blocking_instance AS blocker_instance,
               final_blocking_session AS blocker_sid, COUNT(*) AS blocked,
               ROUND(MAX(wait_time_micro) / 1000000) AS max_wait_seconds,
               MAX(event) KEEP (DENSE_RANK LAST ORDER BY wait_time_micro) AS event
          FROM gv$session
         WHERE final_blocking_session_status = 'VALID'
         GROUP BY final_blocking_instance, final_blocking_session) w
  LEFT JOIN gv$session b ON b.inst_id = w.blocker_instance AND b.sid = w.blocker_sid
 ORDER BY w.max_wait_seconds DESC""",
    "database_role": "SELECT database_role, open_mode, log_mode FROM v$database",
    "dataguard_stats": """
SELECT name, value, time_computed FROM v$dataguard_stats
 WHERE name IN ('apply lag', 'transport lag')""",
    "standby_dests": """
SELECT dest_id, dest_name, status, type, gap_status, error
  FROM v$archive_dest_status
 WHERE type IN ('PHYSICAL', 'LOGICAL', 'SNAPSHOT') AND status <> 'INACTIVE'""",
    "banner": "SELECT banner FROM v$version",
    # 12.1 and later: SQL patches applied by datapatch (ACTION_TIME is TIMESTAMP, local)
    "patches": """
SELECT patch_id, action, status, action_time, description FROM (
  SELECT patch_id, action, status, action_time, description
    FROM dba_registry_sqlpatch ORDER BY action_time DESC)
 WHERE ROWNUM <= 20""",
    # 11.2: catbundle/PSU history; no per-patch status
    "patches_11g": """
SELECT id AS patch_id, action, NULL AS status, action_time, comments AS description FROM (
  SELECT id, action, action_time, comments FROM dba_registry_history
   ORDER BY action_time DESC NULLS LAST)
 WHERE ROWNUM <= 20""",
}

# what the read-only account needs for each statement (the permission_denied message)
GRANTS: dict[str, str] = {
    "job_runs": "SELECT ON SYS.DBA_SCHEDULER_JOB_RUN_DETAILS",
    "scheduler_jobs": "SELECT ON SYS.DBA_SCHEDULER_JOBS",
    "legacy_jobs": "SELECT ON SYS.DBA_JOBS",
    "backups": "SELECT ON SYS.V_$RMAN_BACKUP_JOB_DETAILS, SYS.V_$BACKUP_SET_DETAILS",
    "rman_errors": "SELECT ON SYS.V_$RMAN_OUTPUT",
    "tablespaces": "SELECT ON SYS.DBA_TABLESPACE_USAGE_METRICS, SYS.DBA_TABLESPACES",
    "fra": "SELECT ON SYS.V_$RECOVERY_FILE_DEST",
    "archive_dests": "SELECT ON SYS.V_$ARCHIVE_DEST",
    "sessions": "SELECT ON SYS.V_$RESOURCE_LIMIT",
    "blocking": "SELECT ON SYS.GV_$SESSION",
    "database_role": "SELECT ON SYS.V_$DATABASE",
    "dataguard_stats": "SELECT ON SYS.V_$DATAGUARD_STATS",
    "standby_dests": "SELECT ON SYS.V_$ARCHIVE_DEST_STATUS",
    "banner": "SELECT ON SYS.V_$VERSION",
    "patches": "SELECT ON SYS.DBA_REGISTRY_SQLPATCH",
    "patches_11g": "SELECT ON SYS.DBA_REGISTRY_HISTORY",
}

_BACKUP_OK = ("COMPLETED", "COMPLETED WITH WARNINGS")
_SUMMARY_MAX = 300


# ---------------------------------------------------------------------------------- config

class AgeLimit(StrictModel):
    """Warning / critical age of the last successful backup of one type; none: not checked."""

    warning: Duration | None = None
    critical: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AgeLimit:
        if self.warning is not None and self.critical is not None and \
                self.warning > self.critical:
            raise ValueError("warning must be <= critical")
        return self

    @property
    def longest(self) -> float:
        return max(self.warning or 0.0, self.critical or 0.0)


class BackupAges(StrictModel):
    full: AgeLimit = AgeLimit(warning=8 * 86400, critical=15 * 86400)
    """A DB FULL backup, or a DB INCR whose backup sets include level 0."""
    incr: AgeLimit = AgeLimit(warning=2 * 86400, critical=4 * 86400)
    """Any database backup (a level 0 or full counts too)."""
    archivelog: AgeLimit = AgeLimit(warning=6 * 3600, critical=24 * 3600)
    """Archived redo log backups; set `{}` for a NOARCHIVELOG database."""


class CustomQuery(StrictModel):
    """A named read-only query whose numeric columns become metrics, with levels."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    sql: str = Field(min_length=8, max_length=20000)
    metrics: list[str] = Field(min_length=1)
    """Columns (as named in the SELECT, any case) whose values become `oracle_query_value`."""
    labels: list[str] = Field(default_factory=list)
    """Columns whose values label each row's metrics."""
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    """Column -> levels; each row is compared."""
    max_rows: int = Field(default=100, ge=1, le=1000)

    @field_validator("sql")
    @classmethod
    def _read_only(cls, value: str) -> str:
        text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", value, flags=re.S).strip().rstrip(";")
        if not re.match(r"(?is)^(select|with)\b", text):
            raise ValueError("must be a SELECT (or WITH … SELECT) statement")
        if ";" in text:
            raise ValueError("must be one statement (no ';' inside)")
        return text

    @field_validator("metrics", "labels", mode="after")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [column.lower() for column in value]

    @model_validator(mode="after")
    def _known_columns(self) -> CustomQuery:
        levels = {column.lower() for column in self.thresholds}
        unknown = sorted(levels - set(self.metrics))
        if unknown:
            raise ValueError(f"thresholds for {', '.join(unknown)} which are not in metrics")
        return self


class OracleCheck(PasswordFields, CheckConfig):
    kind: Literal["oracle"]
    dsn: str = Field(min_length=1, max_length=2000)
    """EZConnect `host:port/service` or a TNS alias (with `config_dir`)."""
    user: str = Field(min_length=1, max_length=128)
    mode: Literal["thin", "thick"] = "thin"
    """thick: Oracle Client libraries (needed for 11.2); the whole agent then runs thick."""
    lib_dir: Path | None = None
    """Instant Client directory for thick mode (default: the system library path)."""
    config_dir: Path | None = None
    """Directory of tnsnames.ora for a TNS alias (default: TNS_ADMIN)."""
    checks: list[SubCheck] = Field(default_factory=lambda: list(ALL_SUBCHECKS))
    queries: list[CustomQuery] = Field(default_factory=list, max_length=50)
    call_timeout: Duration | None = None
    """Limit of each database call; default 80 % of `timeout`, so the driver cuts it first."""
    lookback: Duration = 86400.0
    """First run: job failures this far back count. Later runs: since the previous run."""
    db_timezone: str = "Asia/Shanghai"
    """The server's clock zone, to read DATE columns (RMAN, DBA_JOBS, patch times)."""
    tablespace_used: Threshold = Threshold(warning=85, critical=95)
    """Percent used of each PERMANENT tablespace (autoextend maximum counted)."""
    tablespaces: dict[str, Threshold] = Field(default_factory=dict)
    """Per tablespace levels (any contents: TEMP or UNDO only when listed here)."""
    backup_age: BackupAges = BackupAges()
    fra_used: Threshold = Threshold(warning=80, critical=90)
    """Percent of the recovery area used and not reclaimable."""
    sessions_used: Threshold = Threshold(warning=85, critical=95)
    """Percent of SESSIONS and of PROCESSES in use."""
    blocking_seconds: Threshold = Threshold(warning=60, critical=300)
    """Longest current wait of a session blocked by another."""
    apply_lag: Threshold = Threshold(warning=300, critical=1800)
    """Seconds of standby apply lag."""
    job_overdue: Duration = 3600.0
    """A job whose next run is this late is overdue."""
    jobs_ignore: list[Regex] = Field(default_factory=list)
    """Patterns on `OWNER.JOB_NAME` (or `job 42` for DBA_JOBS) to leave out."""

    @field_validator("dsn")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        if "@" in value or re.match(r"^[^/:()]+/[^@]*@", value):
            raise ValueError("dsn must not carry credentials: use user and password_file")
        return value.strip()

    @field_validator("db_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @field_validator("tablespaces", mode="after")
    @classmethod
    def _upper(cls, value: dict[str, Threshold]) -> dict[str, Threshold]:
        return {name.upper(): level for name, level in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> OracleCheck:
        if self.password is None:
            raise ValueError("give password_file or password_env")
        if self.lib_dir is not None and self.mode != "thick":
            raise ValueError("lib_dir is for mode: thick")
        if self.call_timeout is not None and self.call_timeout >= self.timeout:
            raise ValueError("call_timeout must be below timeout")
        if len(set(self.checks)) != len(self.checks):
            raise ValueError("checks lists a sub-check twice")
        names = [q.name for q in self.queries]
        if len(set(names)) != len(names):
            raise ValueError("two queries have the same name")
        return self

    @property
    def target(self) -> str:
        return f"{self.user}@{self.dsn}"

    @property
    def call_timeout_s(self) -> float:
        return self.call_timeout if self.call_timeout is not None else self.timeout * 0.8

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.db_timezone)


CONFIG = OracleCheck


# -------------------------------------------------------------------------- thick mode

class ThickModeError(RuntimeError):
    """Thick mode could not be enabled (no Oracle Client, or thin mode already in use)."""


def enable_thick_mode(lib_dir: str | None, config_dir: str | None = None) -> None:
    """Switch this process's python-oracledb to thick mode (Oracle Client libraries).

    Call once at agent start-up, after the config is loaded and before any check runs
    (`wardwatch-agent run` and `check`); `enable_thick_mode_for(config.checks)` does it when
    a check asks for `mode: thick`. Idempotent: a second call with the same arguments does
    nothing. Raises ThickModeError with python-oracledb's reason (DPI-1047: no Instant
    Client at `lib_dir`; DPY-2019: a thin connection already exists — restart the agent).
    """
    import oracledb

    if not oracledb.is_thin_mode():
        return
    try:
        oracledb.init_oracle_client(lib_dir=lib_dir, config_dir=config_dir,
                                    driver_name="wardwatch : 1")
    except oracledb.Error as exc:
        where = f" from {lib_dir}" if lib_dir else " from the system library path"
        raise ThickModeError(f"cannot enable python-oracledb thick mode{where}: "
                             f"{_first_line(exc)}") from None


def enable_thick_mode_for(checks: Iterable[CheckConfig]) -> bool:
    """Enable thick mode if any Oracle check in `checks` has `mode: thick`; True if enabled.

    All thick checks must agree on `lib_dir` and `config_dir` (one Oracle Client per
    process). oracledb is imported only when a check needs it.
    """
    thick = [c for c in checks if isinstance(c, OracleCheck) and c.mode == "thick"]
    if not thick:
        return False
    dirs = {(c.lib_dir, c.config_dir) for c in thick}
    if len(dirs) > 1:
        raise ThickModeError("oracle checks with mode: thick name different lib_dir or "
                             "config_dir; one Oracle Client serves the whole agent")
    lib_dir, config_dir = dirs.pop()
    enable_thick_mode(str(lib_dir) if lib_dir else None,
                      str(config_dir) if config_dir else None)
    return True


# --------------------------------------------------------------------------- findings

Row = Mapping[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    """A naive UTC datetime (from SYS_EXTRACT_UTC) as an aware one."""
    return None if value is None else value.replace(tzinfo=UTC)


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A DATE column (the server's clock, no zone) as an aware UTC datetime."""
    return None if value is None else value.replace(tzinfo=zone).astimezone(UTC)


def _clock(when: datetime, now: datetime, zone: ZoneInfo) -> str:
    """`02:00` today, `05-06 02:00` another day, in the hospital's zone."""
    local, today = when.astimezone(zone), now.astimezone(zone)
    return local.strftime("%H:%M" if local.date() == today.date() else "%m-%d %H:%M")


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _ora(number: Any) -> str:
    return f"ORA-{int(number):05d}" if number else ""


def _ora_in(text: str | None) -> str:
    """The first ORA-nnnnn in a text, else its first line."""
    if not text:
        return ""
    match = re.search(r"ORA-\d{5}(?::[^\n]*)?", text)
    line = match.group(0) if match else text.strip().splitlines()[0]
    return line[:160]


# ------------------------------------------------------------------------------- jobs

@dataclass(frozen=True)
class JobCursor:
    """Where the previous run stopped reading DBA_SCHEDULER_JOB_RUN_DETAILS."""

    after_id: int
    since: datetime


def job_cursor(previous: JobCursor | None, now: datetime, lookback: float) -> JobCursor:
    """Binds for `job_runs`: LOG_ID after the last seen; LOG_DATE bounds the scan (with an
    hour's overlap, for clocks and RAC instances that log slightly out of order)."""
    if previous is None:
        return JobCursor(after_id=0, since=now - timedelta(seconds=lookback))
    return JobCursor(after_id=previous.after_id, since=previous.since - timedelta(hours=1))


def evaluate_job_runs(rows: Sequence[Row], failing: Mapping[str, dict[str, Any]],
                      check: OracleCheck, now: datetime
                      ) -> tuple[Findings, dict[str, dict[str, Any]], int]:
    """Scheduler job runs since the previous probe -> findings, the jobs still failing, and
    the highest LOG_ID seen.

    A job whose latest run failed stays `job_failed` (critical) until a later run succeeds,
    or `lookback` after its last failure (a job dropped meanwhile); failed runs followed by
    a success in the same window are a warning.
    """
    found = Findings()
    still = {job: dict(state) for job, state in failing.items()}
    top = 0
    for row in rows:
        job = f"{row['owner']}.{row['job_name']}"
        top = max(top, int(row["last_log_id"] or 0))
        if _ignored(check, job):
            continue
        failures = int(row["failures"] or 0)
        found.metric("oracle_scheduler_job_failures", failures, job=job)
        error = _ora(row["last_error"]) or _ora_in(row["last_info"])
        if row["last_status"] != "SUCCEEDED" and row["failures_since_success"]:
            first = _utc(row["first_failure_utc"]) or now
            earlier = still.get(job)
            count = int(row["failures_since_success"])
            if earlier is not None and failures == count:   # no success in between
                count += int(earlier["failures"])
                first = datetime.fromisoformat(earlier["first"])
            still[job] = {"failures": count, "first": first.isoformat(),
                          "last": (_utc(row["last_log_utc"]) or now).isoformat(),
                          "error": error, "status": row["last_status"]}
        else:
            still.pop(job, None)
            if failures:
                found.add(Status.WARNING, "job_failed",
                          f"job {job} failed {_times(failures)} then succeeded"
                          + (f" ({error})" if error else ""))
    horizon = now - timedelta(seconds=check.lookback)
    for job in sorted(still):
        state = still[job]
        if datetime.fromisoformat(state["last"]) < horizon:
            del still[job]
            continue
        first = datetime.fromisoformat(state["first"])
        verb = "failed" if state["status"] in ("FAILED", None) else state["status"].lower()
        found.add(Status.CRITICAL, "job_failed",
                  f"job {job} {verb} {_times(state['failures'])} since "
                  f"{_clock(first, now, check.zone)}"
                  + (f": {state['error']}" if state["error"] else ""))
        found.metric("oracle_scheduler_job_failing", 1, job=job)
    found.details["jobs_failing"] = sorted(still)
    return found, still, top


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _ignored(check: OracleCheck, job: str) -> bool:
    return any(re.search(pattern, job) for pattern in check.jobs_ignore)


def evaluate_scheduler_jobs(rows: Sequence[Row], check: OracleCheck, now: datetime) -> Findings:
    """BROKEN scheduler jobs (critical) and enabled jobs past their next run (warning)."""
    found = Findings()
    broken = 0
    for row in rows:
        job = f"{row['owner']}.{row['job_name']}"
        if _ignored(check, job):
            continue
        if row["state"] == "BROKEN":
            broken += 1
            limit = f" of max {row['max_failures']}" if row["max_failures"] else ""
            found.add(Status.CRITICAL, "job_broken",
                      f"job {job} BROKEN after {row['failure_count'] or 0} failures{limit}")
            continue
        due = _utc(row["next_run_utc"])
        if due is not None and (now - due).total_seconds() >= check.job_overdue:
            found.add(Status.WARNING, "job_overdue",
                      f"job {job} overdue: due {_clock(due, now, check.zone)}, "
                      f"{_span((now - due).total_seconds())} ago")
    found.metric("oracle_jobs_broken", broken, source="scheduler")
    return found


def evaluate_legacy_jobs(rows: Sequence[Row], check: OracleCheck, now: datetime) -> Findings:
    """DBA_JOBS (DBMS_JOB): BROKEN = 'Y', FAILURES > 0 since the last success, overdue."""
    found = Findings()
    broken = 0
    for row in rows:
        job = f"job {row['job']}"
        if _ignored(check, job):
            continue
        name = f"DBA_JOBS {job} ({row['schema_user']}: {(row['what'] or '').strip()[:60]})"
        failures = int(row["failures"] or 0)
        last = _local(row["last_date"], check.zone)
        success = f", last success {_clock(last, now, check.zone)}" if last else ""
        if row["broken"] == "Y":
            broken += 1
            found.add(Status.CRITICAL, "job_broken",
                      f"{name} BROKEN after {_times(failures)} failing{success}")
        elif failures:
            found.add(Status.CRITICAL, "job_failed",
                      f"{name} failed {_times(failures)} since its last success{success}")
        else:
            due = _local(row["next_date"], check.zone)
            if due is not None and (now - due).total_seconds() >= check.job_overdue:
                found.add(Status.WARNING, "job_overdue",
                          f"{name} overdue: due {_clock(due, now, check.zone)}, "
                          f"{_span((now - due).total_seconds())} ago")
    found.metric("oracle_jobs_broken", broken, source="dba_jobs")
    return found


# ---------------------------------------------------------------------------- backups

def backup_window_days(check: OracleCheck) -> float:
    """How far back `backups` reads: the longest age limit, plus a day."""
    ages = check.backup_age
    return max(ages.full.longest, ages.incr.longest, ages.archivelog.longest, 86400) / 86400 + 1


def evaluate_backups(rows: Sequence[Row], errors: Mapping[str, list[str]], check: OracleCheck,
                     now: datetime) -> Findings:
    """Age of the last successful backup of each type against its limits; the latest run of
    a type FAILED or COMPLETED WITH ERRORS is critical `backup_failed` with RMAN's errors.

    `errors` maps a type to the ORA-/RMAN- lines of its last failed session (V$RMAN_OUTPUT).
    An incremental limit is met by any database backup (a full or level 0 too).
    """
    found = Findings()
    zone = check.zone
    by_type = {row["bucket"]: row for row in rows}
    successes: dict[str, datetime | None] = {}
    for bucket in ("full", "incr", "archivelog"):
        row = by_type.get(bucket)
        successes[bucket] = _local(row["last_success_end"], zone) if row else None
    full, incr = successes["full"], successes["incr"]
    successes["incr"] = max((t for t in (full, incr) if t is not None), default=None)
    summary: dict[str, Any] = {}
    for bucket in ("full", "incr", "archivelog"):
        limit: AgeLimit = getattr(check.backup_age, bucket)
        last = successes[bucket]
        row = by_type.get(bucket)
        info: dict[str, Any] = {"last_success": last.isoformat() if last else None}
        if last is not None:
            age = (now - last).total_seconds()
            info["age_seconds"] = round(age)
            found.metric("oracle_backup_last_success_timestamp_seconds", last.timestamp(),
                         type=bucket)
            found.metric("oracle_backup_age_seconds", age, type=bucket)
        if row is not None:
            failures = int(row["failures"] or 0)
            found.metric("oracle_backup_failures", failures, type=bucket)
            info["failures"] = failures
            running = _local(row["running_since"], zone)
            if running is not None:
                info["running_since"] = running.isoformat()
            if row["last_status"] in ("FAILED", "COMPLETED WITH ERRORS"):
                when = _local(row["last_failure_start"], zone) or now
                lines = errors.get(bucket, [])
                error = _rman_error(lines)
                info["last_error"] = "\n".join(lines)
                found.add(Status.CRITICAL, "backup_failed",
                          f"{bucket} backup {row['last_status']} at "
                          f"{_clock(when, now, zone)}" + (f": {error}" if error else ""))
        summary[bucket] = info
        if limit.warning is None and limit.critical is None:
            continue
        if last is None:
            level = Status.CRITICAL if limit.critical is not None else Status.WARNING
            found.add(level, "backup_stale",
                      f"no successful {bucket} backup in the RMAN history read "
                      f"({backup_window_days(check):.0f}d; the control file keeps "
                      "CONTROL_FILE_RECORD_KEEP_TIME days)")
            continue
        age = (now - last).total_seconds()
        level = Status.OK
        if limit.critical is not None and age >= limit.critical:
            level = Status.CRITICAL
        elif limit.warning is not None and age >= limit.warning:
            level = Status.WARNING
        found.add(level, "backup_stale",
                  f"last {bucket} backup {_span(age)} ago ({_clock(last, now, zone)})")
    found.details["backups"] = summary
    return found


def _rman_error(lines: list[str]) -> str:
    """The most telling line: the first ORA- (the cause), else the first RMAN-."""
    for prefix in ("ORA-", "RMAN-"):
        for line in lines:
            if line.startswith(prefix) and not line.startswith("RMAN-00569"):
                return line.strip()[:160]
    return ""


# ----------------------------------------------------------------- space and sessions

def evaluate_tablespaces(rows: Sequence[Row], check: OracleCheck) -> Findings:
    """DBA_TABLESPACE_USAGE_METRICS: USED_PERCENT is against the autoextend maximum
    (MAXBYTES), so a small autoextensible file far from its maximum is not full."""
    found = Findings()
    full = []
    for row in sorted(rows, key=lambda r: -float(r["used_percent"] or 0)):
        name = str(row["tablespace_name"])
        percent = float(row["used_percent"] or 0)
        found.metric("oracle_tablespace_used_ratio", percent / 100, tablespace=name)
        found.metric("oracle_tablespace_used_bytes", float(row["used_bytes"] or 0),
                     tablespace=name)
        found.metric("oracle_tablespace_size_bytes", float(row["size_bytes"] or 0),
                     tablespace=name)
        levels = check.tablespaces.get(name)
        if levels is None:
            if row["contents"] != "PERMANENT":
                continue
            levels = check.tablespace_used
        level = levels.evaluate(percent)
        if level is not Status.OK:
            full.append(name)
            found.add(level, "tablespace_full",
                      f"tablespace {name} {percent:.1f}% used of "
                      f"{_bytes(float(row['size_bytes'] or 0))}")
    found.details["tablespaces_full"] = full
    return found


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def evaluate_fra(rows: Sequence[Row], dests: Sequence[Row], check: OracleCheck) -> Findings:
    """V$RECOVERY_FILE_DEST (used minus reclaimable over the limit) and archive
    destinations in error (ORA-00257/ORA-19809 archiver stuck shows here first)."""
    found = Findings()
    fra = [row for row in rows if row["space_limit"]]
    for row in fra:
        limit = float(row["space_limit"])
        used = float(row["space_used"] or 0) - float(row["space_reclaimable"] or 0)
        ratio = used / limit
        found.metric("oracle_fra_used_ratio", ratio)
        found.metric("oracle_fra_limit_bytes", limit)
        found.details["fra"] = {"name": row["name"], "limit_bytes": limit,
                                "used_bytes": float(row["space_used"] or 0),
                                "reclaimable_bytes": float(row["space_reclaimable"] or 0),
                                "files": row["number_of_files"]}
        found.add(check.fra_used.evaluate(ratio * 100), "fra_full",
                  f"recovery area {row['name']} {ratio * 100:.1f}% used (not reclaimable) "
                  f"of {_bytes(limit)}")
    if not fra:
        found.details["fra"] = None
    found.metric("oracle_archive_dest_errors", len(dests))
    for row in dests:
        where = row["destination"] or row["dest_name"]
        error = (row["error"] or "").strip()
        found.add(Status.CRITICAL, "archive_dest_error",
                  f"archive destination {row['dest_id']} ({where}) {row['status']}"
                  + (f": {error[:160]}" if error else ""))
    return found


def evaluate_sessions(rows: Sequence[Row], check: OracleCheck) -> Findings:
    """V$RESOURCE_LIMIT: sessions and processes against SESSIONS / PROCESSES."""
    found = Findings()
    for row in rows:
        name = str(row["resource_name"]).strip().lower()
        current = float(row["current_utilization"] or 0)
        limit_text = str(row["limit_value"] or "").strip()
        found.metric(f"oracle_{name}", current)
        if not limit_text.isdigit() or not int(limit_text):
            continue   # UNLIMITED
        limit = float(limit_text)
        found.metric(f"oracle_{name}_limit", limit)
        percent = current / limit * 100
        found.details[name] = {"current": current, "max": row["max_utilization"],
                               "limit": limit}
        found.add(check.sessions_used.evaluate(percent), "sessions_high",
                  f"{current:.0f} of {limit:.0f} {name} ({percent:.0f}%)")
    return found


def evaluate_blocking(rows: Sequence[Row], check: OracleCheck) -> Findings:
    """One row per final blocker; the longest wait decides, the blocker is named."""
    found = Findings()
    blocked = sum(int(row["blocked"] or 0) for row in rows)
    longest = max((float(row["max_wait_seconds"] or 0) for row in rows), default=0.0)
    found.metric("oracle_blocking_sessions", blocked)
    found.metric("oracle_blocking_max_wait_seconds", longest)
    blockers = []
    for row in rows:
        who = f"session {row['blocker_instance']},{row['blocker_sid']}"
        what = ", ".join(str(p) for p in (row["blocker_user"], row["blocker_machine"],
                                          row["blocker_program"]) if p)
        if row["blocker_status"] == "INACTIVE":
            what += f", idle {_span(float(row['blocker_last_call_seconds'] or 0))}"
        blockers.append({"instance": row["blocker_instance"], "sid": row["blocker_sid"],
                         "user": row["blocker_user"], "machine": row["blocker_machine"],
                         "program": row["blocker_program"], "status": row["blocker_status"],
                         "sql_id": row["blocker_sql_id"], "blocked": row["blocked"],
                         "max_wait_seconds": row["max_wait_seconds"], "event": row["event"]})
        wait = float(row["max_wait_seconds"] or 0)
        found.add(check.blocking_seconds.evaluate(wait), "blocking_sessions",
                  f"{who} ({what}) blocks {row['blocked']} for up to {wait:.0f}s"
                  + (f" ({row['event']})" if row["event"] else ""))
    found.details["blockers"] = blockers
    return found


_INTERVAL = re.compile(r"^\s*([+-])?(\d+)\s+(\d+):(\d+):(\d+(?:\.\d+)?)\s*$")


def interval_seconds(text: str | None) -> float | None:
    """V$DATAGUARD_STATS.VALUE `+00 00:05:12` (day to second, as text) -> seconds."""
    if not text:
        return None
    match = _INTERVAL.match(text)
    if match is None:
        return None
    sign, days, hours, minutes, seconds = match.groups()
    total = int(days) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return -total if sign == "-" else total


def evaluate_dataguard(role: Sequence[Row], stats: Sequence[Row], dests: Sequence[Row],
                       check: OracleCheck) -> Findings:
    """On a standby, apply and transport lag; on a primary, its standby destinations."""
    found = Findings()
    database_role = str(role[0]["database_role"]) if role else "UNKNOWN"
    found.details["database_role"] = database_role
    if "STANDBY" in database_role:
        lags = {str(row["name"]): interval_seconds(row["value"]) for row in stats}
        apply, transport = lags.get("apply lag"), lags.get("transport lag")
        if transport is not None:
            found.metric("oracle_dataguard_transport_lag_seconds", transport)
        if apply is None:
            found.add(Status.WARNING, "dataguard_lag",
                      "standby apply lag unknown (is managed recovery running?)")
        else:
            found.metric("oracle_dataguard_apply_lag_seconds", apply)
            found.add(check.apply_lag.evaluate(apply), "dataguard_lag",
                      f"standby apply lag {_span(apply)}"
                      + (f", transport lag {_span(transport)}" if transport else ""))
        found.details["dataguard"] = {"apply_lag_seconds": apply,
                                      "transport_lag_seconds": transport}
        return found
    if not dests:
        found.details["dataguard"] = "not configured"
        return found
    for row in dests:
        name = f"standby destination {row['dest_id']} ({row['dest_name']})"
        gap = str(row["gap_status"] or "")
        error = (row["error"] or "").strip()
        if row["status"] != "VALID" or "UNRESOLVABLE" in gap:
            found.add(Status.CRITICAL, "dataguard_lag",
                      f"{name} {row['status']}" + (f" {gap}" if gap else "")
                      + (f": {error[:160]}" if error else ""))
        elif gap and gap != "NO GAP":
            found.add(Status.WARNING, "dataguard_lag", f"{name}: {gap}")
    found.details["dataguard"] = [dict(row) for row in dests]
    return found


def evaluate_version(version: str, banners: Sequence[Row], patches: Sequence[Row],
                     zone: ZoneInfo) -> Findings:
    """Version for the patch audit; the newest SQL patch not SUCCESS is a warning."""
    found = Findings()
    banner = next((str(r["banner"]) for r in banners if "Oracle" in str(r["banner"])), "")
    found.metric("oracle_info", 1, version=version)
    listed = []
    for row in patches:
        when = _local(row["action_time"], zone)
        listed.append({"patch_id": row["patch_id"], "action": row["action"],
                       "status": row["status"],
                       "action_time": when.isoformat() if when else None,
                       "description": (row["description"] or "").strip()})
    found.details.update({"version": version, "banner": banner, "patches": listed})
    if listed and listed[0]["status"] not in (None, "SUCCESS"):
        latest = listed[0]
        found.add(Status.WARNING, "patch_incomplete",
                  f"SQL patch {latest['patch_id']} {latest['action']} {latest['status']}"
                  f" ({latest['description'][:60]}): rerun datapatch")
    return found


def evaluate_query(query: CustomQuery, rows: Sequence[Row]) -> Findings:
    """A custom query's rows: each metric column a sample, each level compared."""
    found = Findings()
    found.metric("oracle_query_rows", len(rows), query=query.name)
    levels = {column.lower(): level for column, level in query.thresholds.items()}
    if rows:
        missing = [c for c in (*query.metrics, *query.labels) if c not in rows[0]]
        if missing:
            found.add(Status.UNKNOWN, "probe_error",
                      f"query {query.name}: no column {', '.join(missing)} in its result")
            return found
    for row in rows[: query.max_rows]:
        labels = {column: "" if row[column] is None else str(row[column])
                  for column in query.labels}
        where = ", ".join(f"{k}={v}" for k, v in labels.items())
        for column in query.metrics:
            value = row[column]
            if not isinstance(value, int | float) or isinstance(value, bool):
                found.add(Status.UNKNOWN, "probe_error",
                          f"query {query.name}: {column}={value!r} is not a number")
                continue
            found.metric("oracle_query_value", float(value), query=query.name, column=column,
                         **labels)
            level = levels[column].evaluate(float(value)) if column in levels else Status.OK
            found.add(level, "query_threshold",
                      f"query {query.name}: {column}={value:g}" + (f" ({where})" if where
                                                                    else ""))
    return found


# ------------------------------------------------------------------------ error mapping

@dataclass(frozen=True)
class Failure:
    """A python-oracledb (or socket) error as a result: `drop` the kept connection?"""

    status: Status
    reason: str
    text: str
    drop: bool = False


_DROP = {"DPY-4011", "DPY-1001", "DPY-4024", "ORA-03113", "ORA-03114", "ORA-03135",
         "ORA-03156", "ORA-01012", "ORA-00028", "ORA-02396", "ORA-01013"}
_LISTENER = {
    "ORA-12516": "listener could not find an available handler",
    "ORA-12518": "listener could not hand off the connection",
    "ORA-12519": "no appropriate service handler found (PROCESSES exhausted?)",
    "ORA-12520": "listener could not find a handler for the requested server type",
    "ORA-12526": "the instance is in restricted mode",
    "ORA-12528": "the instance is blocking new connections (starting or mounted)",
    "ORA-12537": "the listener closed the connection",
}


def _code(exc: BaseException) -> tuple[str, str]:
    """(full code, message) of an oracledb.Error; ('', str) for anything else."""
    args = getattr(exc, "args", ())
    error = args[0] if args else None
    full_code = getattr(error, "full_code", None)
    message = getattr(error, "message", None)
    if isinstance(full_code, str) and isinstance(message, str):
        return full_code, message
    return "", str(exc)


def _first_line(exc: BaseException) -> str:
    message = _code(exc)[1]
    return (message.strip().splitlines() or [type(exc).__name__])[0][:200]


def classify(exc: BaseException, check: OracleCheck, query: str | None = None) -> Failure:
    """Map a python-oracledb exception (thin DPY- or server ORA- code), or the socket error
    under it, to a status, a reason and a one-line cause. `query` names the SQL key run."""
    code, message = _code(exc)
    cause = exc.__cause__
    # DPY-6005 "cannot connect" wraps what really happened
    if code == "DPY-6005" and cause is not None:
        if isinstance(cause, socket.gaierror | ConnectionError | TimeoutError | OSError):
            return _socket_failure(cause, check)
        inner = classify(cause, check, query)
        if inner.reason == "connection_lost":   # closed during login: not a listener?
            return Failure(Status.CRITICAL, "connect_error",
                           f"{inner.text} during login to {_host_of(check.dsn)} (is it an "
                           "Oracle listener?)")
        return inner
    if not code:
        if isinstance(exc, OSError):
            return _socket_failure(exc, check)
        return Failure(Status.UNKNOWN, "probe_error", f"{type(exc).__name__}: {exc}"[:200])
    lines = message.strip().splitlines()
    similar = re.search(r"Similar to (ORA-\d{5})", message)
    ora = similar.group(1) if similar else code
    first = lines[0] if lines else code
    if code in ("DPY-6001", "DPY-6003") or ora in ("ORA-12514", "ORA-12505"):
        service = _service_in(message) or _service_of(check.dsn)
        what = "SID" if ora == "ORA-12505" else "service"
        return Failure(Status.CRITICAL, "service_unknown",
                       f"{ora} listener does not know {what} {service}")
    if ora in _LISTENER:
        return Failure(Status.CRITICAL, "listener_refused", f"{ora} {_LISTENER[ora]}")
    if code == "DPY-6000":
        return Failure(Status.CRITICAL, "listener_refused", f"{ora} listener refused")
    if ora in ("ORA-12541", "ORA-12543", "ORA-12545"):
        return Failure(Status.CRITICAL, "connect_refused", f"{ora} no listener at {check.dsn}")
    if ora in ("ORA-12170", "ORA-12535"):
        return Failure(Status.CRITICAL, "connect_timeout", f"{ora} connect timed out")
    if code in ("DPY-4000", "DPY-4017", "DPY-4018", "DPY-4026", "DPY-4027", "DPY-2049") \
            or ora in ("ORA-12154", "ORA-12162", "ORA-12262"):
        hint = " (a TNS alias needs config_dir or TNS_ADMIN)" if code == "DPY-4027" else ""
        return Failure(Status.CRITICAL, "bad_dsn",
                       f"dsn {check.dsn!r} cannot be used: {_strip_code(first)}{hint}")
    if ora in ("ORA-01017", "ORA-01005", "ORA-01045", "ORA-01004") or code == "DPY-4001":
        return Failure(Status.CRITICAL, "auth_failed",
                       f"{ora} login as {check.user} denied (wrong password, or no CREATE "
                       "SESSION)")
    if ora == "ORA-28000":
        return Failure(Status.CRITICAL, "account_locked", f"ORA-28000 account {check.user} "
                       "is locked")
    if ora == "ORA-28001":
        return Failure(Status.CRITICAL, "password_expired",
                       f"ORA-28001 the password of {check.user} has expired")
    if ora in ("ORA-28002", "ORA-28098"):
        return Failure(Status.WARNING, "password_expiring",
                       f"{ora} the password of {check.user} expires soon")
    if ora in ("ORA-01033", "ORA-01034", "ORA-01089", "ORA-01090", "ORA-01109"):
        return Failure(Status.CRITICAL, "instance_unavailable", f"{ora} {_strip_code(first)}",
                       drop=True)
    if code == "DPY-3010":
        return Failure(Status.UNKNOWN, "unsupported_server",
                       "Oracle server too old for thin mode (11.2?): set mode: thick and "
                       "install Instant Client")
    if code == "DPY-4024" or ora in ("ORA-03156", "ORA-01013"):
        where = f" in {query}" if query else ""
        return Failure(Status.CRITICAL, "slow_query",
                       f"{ora} no answer{where} within call_timeout "
                       f"{check.call_timeout_s:g}s", drop=True)
    if ora in ("ORA-00942", "ORA-01031", "ORA-04043"):
        grant = GRANTS.get(query or "", "the GRANTs in docs/probes/oracle.md")
        return Failure(Status.UNKNOWN, "permission_denied",
                       f"{ora} {check.user} may not read {query or 'a view'}: "
                       f"GRANT {grant} TO {check.user}")
    if code.startswith(("DPI-", "DPY-2", "DPY-3")):
        return Failure(Status.UNKNOWN, "probe_error", first[:200])
    if code in _DROP or ora in _DROP or getattr(exc.args[0], "is_session_dead", False):
        return Failure(Status.CRITICAL, "connection_lost", f"{ora} {_strip_code(first)}",
                       drop=True)
    if re.fullmatch(r"ORA-009\d\d", ora):
        return Failure(Status.UNKNOWN, "probe_error",
                       f"{query or 'query'} does not fit this server: {first[:160]}")
    return Failure(Status.CRITICAL, "query_failed",
                   f"{ora} {_strip_code(first)}" + (f" (in {query})" if query else ""))


def _socket_failure(exc: BaseException, check: OracleCheck) -> Failure:
    host = _host_of(check.dsn)
    if isinstance(exc, socket.gaierror):
        return Failure(Status.CRITICAL, "dns_failed",
                       f"cannot resolve {host}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Failure(Status.CRITICAL, "connect_refused",
                       f"connection to {host} refused (listener down?)")
    if isinstance(exc, TimeoutError):
        return Failure(Status.CRITICAL, "connect_timeout", f"no answer from {host}")
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Failure(Status.CRITICAL, "connect_error", f"cannot connect to {host}: {text}")


def _strip_code(line: str) -> str:
    return re.sub(r"^[A-Z]{3}-\d{4,5}:\s*", "", line).strip()


def _service_in(message: str) -> str | None:
    match = re.search(r'[Ss]ervice "?([^"\s]+?)"? is not registered', message)
    return match.group(1) if match else None


def _service_of(dsn: str) -> str:
    match = re.search(r"/([^/:?]+)", dsn.split("//")[-1]) or \
        re.search(r"SERVICE_NAME\s*=\s*([^)\s]+)", dsn, re.I)
    return match.group(1) if match else dsn


def _host_of(dsn: str) -> str:
    match = re.search(r"HOST\s*=\s*([^)\s]+)", dsn, re.I)
    if match:
        return match.group(1)
    return dsn.split("//")[-1].split("/")[0].split("?")[0]


# ------------------------------------------------------------------------------ fetching

class Session(Protocol):
    """A logged-in connection, as `examine` uses it; live or with recorded rows."""

    @property
    def version(self) -> str: ...

    async def rows(self, name: str, sql: str, binds: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one statement (`name` is its key in SQL, or `query:<name>`); rows as dicts
        with lower-case column names."""
        ...


class _ThinSession:
    def __init__(self, conn: oracledb.AsyncConnection):
        self._conn = conn

    @property
    def version(self) -> str:
        return str(self._conn.version)

    async def rows(self, name: str, sql: str, binds: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._conn.action = name[:64]
        with self._conn.cursor() as cursor:
            await cursor.execute(sql, dict(binds))
            columns = [d[0].lower() for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]

    async def close(self) -> None:
        await self._conn.close()


class _ThickSession:
    """Thick mode has no async API: each call runs in a thread, bounded by call_timeout
    (cancelling the awaiting task cannot stop the thread; the driver's timeout does)."""

    def __init__(self, conn: oracledb.Connection):
        self._conn = conn

    @property
    def version(self) -> str:
        return str(self._conn.version)

    def _rows(self, name: str, sql: str, binds: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._conn.action = name[:64]
        with self._conn.cursor() as cursor:
            cursor.execute(sql, dict(binds))
            columns = [d[0].lower() for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    async def rows(self, name: str, sql: str, binds: Mapping[str, Any]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._rows, name, sql, binds)

    async def close(self) -> None:
        await asyncio.to_thread(self._conn.close)


def _params(check: OracleCheck, thin: bool) -> dict[str, Any]:
    assert check.password is not None
    params: dict[str, Any] = {"user": check.user, "password": check.password.get(),
                              "dsn": check.dsn,
                              "tcp_connect_timeout": max(1.0, min(check.call_timeout_s, 20.0))}
    if thin:
        # thick mode reads tnsnames.ora from the config_dir given to enable_thick_mode
        params["program"] = "wardwatch-agent"
        if check.config_dir is not None:
            params["config_dir"] = str(check.config_dir)
    return params


async def _connect(check: OracleCheck, thin: bool) -> tuple[Session, Callable[[], Awaitable[None]],
                                                            list[Failure]]:
    """Log in; the session, its closer, and login warnings (ORA-28002)."""
    import oracledb

    timeout_ms = int(check.call_timeout_s * 1000)
    warnings: list[Failure] = []
    if thin:
        # the TCP connect has its own limit; the TNS and login exchange get ours
        async with asyncio.timeout(check.call_timeout_s):
            conn = await oracledb.connect_async(**_params(check, thin=True))
        conn.call_timeout = timeout_ms
        conn.module = "wardwatch"
        session: _ThinSession | _ThickSession = _ThinSession(conn)
        warning = conn.warning
    else:
        def login() -> oracledb.Connection:
            sync = oracledb.connect(**_params(check, thin=False))
            sync.call_timeout = timeout_ms
            sync.module = "wardwatch"
            return sync

        sync = await asyncio.to_thread(login)
        session = _ThickSession(sync)
        warning = sync.warning
    if warning is not None:
        warnings.append(classify(oracledb.DatabaseError(warning), check))
    return session, session.close, warnings


async def probe(check: OracleCheck, memory: ProbeMemory) -> ProbeResult:
    name = f"oracle {check.target}"
    import oracledb

    thin = oracledb.is_thin_mode()
    if check.mode == "thick" and thin:
        return result(Status.UNKNOWN, "probe_error",
                      f"{name}: mode: thick, but this agent process runs python-oracledb in "
                      "thin mode (thick mode is chosen at start-up: restart the agent; is "
                      "enable_thick_mode_for called before the checks start?)")
    session = memory.resources.get("connection")
    reused = session is not None
    connect_seconds = 0.0
    warnings: list[Failure] = []
    if session is None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            session, closer, warnings = await _connect(check, thin)
        except TimeoutError:
            return _failed(name, Failure(
                Status.CRITICAL, "connect_timeout",
                f"no answer from the listener at {_host_of(check.dsn)} within "
                f"{check.call_timeout_s:g}s"), check)
        except (oracledb.Error, OSError) as exc:
            return _failed(name, classify(exc, check), check)
        connect_seconds = loop.time() - started
        memory.keep("connection", session, closer)
    try:
        return await examine(check, memory, session, connect_seconds=connect_seconds,
                             reused=reused, warnings=warnings)
    except StaleConnection:
        # the kept connection died since the previous run (a database restart): log in anew
        return await probe(check, memory)


def _failed(name: str, failure: Failure, check: OracleCheck) -> ProbeResult:
    return result(failure.status, failure.reason,
                  _scrub(f"{name}: {failure.text}", check)[:_SUMMARY_MAX],
                  metrics=(Metric(name="oracle_up", value=0),))


def _scrub(text: str, check: OracleCheck) -> str:
    secret = check.password.get() if check.password is not None else ""
    return text.replace(secret, "***") if len(secret) >= 3 else text


class StaleConnection(Exception):
    """The connection kept from the previous run failed its first round trip."""


class _Stop(Exception):
    """A failure that ends the run (connection lost, call timeout)."""

    def __init__(self, failure: Failure):
        super().__init__(failure.text)
        self.failure = failure


async def examine(check: OracleCheck, memory: ProbeMemory, session: Session, *,
                  connect_seconds: float = 0.0, reused: bool = False,
                  warnings: Iterable[Failure] = ()) -> ProbeResult:
    """The round trip, then each sub-check and custom query through `session`.

    Raises StaleConnection (after dropping it) when a `reused` connection fails the round
    trip with a connection-level error; `probe` then logs in again, once.
    """
    name = f"oracle {check.target}"
    found = Findings()
    for warning in warnings:
        found.add(warning.status, warning.reason, warning.text)

    async def fetch(key: str, binds: Mapping[str, Any] | None = None,
                    sql: str | None = None) -> list[dict[str, Any]] | None:
        """Rows, or None after a sub-check-level failure (already recorded)."""
        try:
            return await session.rows(key, sql or SQL[key], binds or {})
        except Exception as exc:
            failure = classify(exc, check, key)
            if failure.drop:
                await memory.drop("connection")
                if reused and key == "ping":
                    raise StaleConnection(failure.text) from None
                raise _Stop(failure) from None
            if failure.reason == "probe_error" and not _code(exc)[0]:
                raise   # our bug: the runner reports it
            found.add(failure.status, failure.reason, failure.text)
            return None

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        ping = await fetch("ping")
        if ping is None:
            await memory.drop("connection")
            worst = _worst(found.causes)
            return _failed(name, Failure(worst.status, worst.reason, worst.text), check)
        query_seconds = loop.time() - started
        found.metric("oracle_up", 1)
        found.metric("oracle_connect_seconds", connect_seconds)
        found.metric("oracle_query_seconds", query_seconds)
        found.metric("oracle_pool_reused", 1 if reused else 0)
        now = _utc(ping[0]["utc_now"]) or datetime.now(UTC)
        _clock_check(ping[0]["db_date"], now, check, found)
        version = session.version
        found.details.update({"version": version, "server_time": now.isoformat()})
        for sub in check.checks:
            found.extend(await _SUBCHECKS[sub](check, memory, fetch, now, version))
        for query in check.queries:
            rows = await fetch(f"query:{query.name}", sql=query.sql)
            if rows is not None:
                found.extend(evaluate_query(query, rows))
    except _Stop as stop:
        found.add(stop.failure.status, stop.failure.reason, stop.failure.text)
    return _verdict(name, check, found, connect_seconds, reused)


Fetch = Callable[..., Awaitable[list[dict[str, Any]] | None]]


def _clock_check(db_date: datetime, now: datetime, check: OracleCheck, found: Findings) -> None:
    """SYSDATE against UTC: does `db_timezone` describe the server's clock?"""
    offset = (db_date.replace(tzinfo=UTC) - now).total_seconds()
    expected = check.zone.utcoffset(now.replace(tzinfo=None))
    found.details["server_utc_offset_seconds"] = round(offset)
    if expected is not None and abs(offset - expected.total_seconds()) > 120:
        found.add(Status.UNKNOWN, "probe_error",
                  f"db_timezone {check.db_timezone} does not match the server clock "
                  f"(SYSDATE is UTC{offset / 3600:+.1f}h): DATE columns would be misread")


async def _jobs(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                version: str) -> Findings:
    found = Findings()
    cursor = job_cursor(memory.values.get("jobs_cursor"), now, check.lookback)
    runs = await fetch("job_runs", {"since": cursor.since.replace(tzinfo=None),
                                    "after_id": cursor.after_id})
    if runs is not None:
        failing = memory.values.get("jobs_failing", {})
        part, still, top = evaluate_job_runs(runs, failing, check, now)
        found.extend(part)
        memory.values["jobs_failing"] = still
        memory.values["jobs_cursor"] = JobCursor(after_id=max(top, cursor.after_id), since=now)
    scheduler = await fetch("scheduler_jobs", {"grace": check.job_overdue})
    if scheduler is not None:
        found.extend(evaluate_scheduler_jobs(scheduler, check, now))
    legacy = await fetch("legacy_jobs", {"grace": check.job_overdue})
    if legacy is not None:
        found.extend(evaluate_legacy_jobs(legacy, check, now))
    return found


async def _backups(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                   version: str) -> Findings:
    rows = await fetch("backups", {"days": backup_window_days(check)})
    if rows is None:
        return Findings()
    errors: dict[str, list[str]] = {}
    for row in rows:
        if row["last_status"] in ("FAILED", "COMPLETED WITH ERRORS") and row["last_failure_key"]:
            lines = await fetch("rman_errors", {"session_key": row["last_failure_key"]})
            errors[row["bucket"]] = [str(r["output"]).strip() for r in lines or ()]
    return evaluate_backups(rows, errors, check, now)


async def _tablespaces(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                       version: str) -> Findings:
    rows = await fetch("tablespaces")
    return Findings() if rows is None else evaluate_tablespaces(rows, check)


async def _fra(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
               version: str) -> Findings:
    rows = await fetch("fra")
    dests = await fetch("archive_dests")
    return evaluate_fra(rows or [], dests or [], check)


async def _sessions(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                    version: str) -> Findings:
    rows = await fetch("sessions")
    return Findings() if rows is None else evaluate_sessions(rows, check)


async def _blocking(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                    version: str) -> Findings:
    rows = await fetch("blocking")
    return Findings() if rows is None else evaluate_blocking(rows, check)


async def _dataguard(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                     version: str) -> Findings:
    role = await fetch("database_role")
    if role is None:
        return Findings()
    if role and "STANDBY" in str(role[0]["database_role"]):
        stats = await fetch("dataguard_stats")
        return evaluate_dataguard(role, stats or [], [], check)
    dests = await fetch("standby_dests")
    return evaluate_dataguard(role, [], dests or [], check)


async def _version(check: OracleCheck, memory: ProbeMemory, fetch: Fetch, now: datetime,
                   version: str) -> Findings:
    banners = await fetch("banner") or []
    patches = await fetch("patches_11g" if version.startswith("11.") else "patches") or []
    return evaluate_version(version, banners, patches, check.zone)


_SUBCHECKS: dict[SubCheck, Callable[[OracleCheck, ProbeMemory, Fetch, datetime, str],
                                    Awaitable[Findings]]] = {
    "jobs": _jobs, "backups": _backups, "tablespaces": _tablespaces, "fra": _fra,
    "sessions": _sessions, "blocking": _blocking, "dataguard": _dataguard,
    "version": _version,
}


def _worst(causes: list[Cause]) -> Cause:
    return sorted(causes, key=lambda c: -c.status.severity)[0]


def _verdict(name: str, check: OracleCheck, found: Findings, connect_seconds: float,
             reused: bool) -> ProbeResult:
    details = found.details
    details["connection"] = "reused" if reused else f"new ({connect_seconds * 1000:.0f} ms)"
    if not found.causes:
        line = f"{name}: ok, {details['connection']}"
        if "version" in details:
            line += f", Oracle {details['version']}"
        return result(Status.OK, "ok", _scrub(line, check)[:_SUMMARY_MAX],
                      metrics=tuple(found.metrics), details=details)
    # the worst cause names the result and leads the summary
    causes = sorted(found.causes, key=lambda c: -c.status.severity)
    worst = causes[0]
    details["causes"] = [{"status": c.status.value, "reason": c.reason,
                          "text": _scrub(c.text, check)} for c in causes]
    summary = f"{name}: " + "; ".join(c.text for c in causes)
    summary = " ".join(_scrub(summary, check).split())
    if len(summary) > _SUMMARY_MAX:
        summary = summary[: _SUMMARY_MAX - 1] + "…"
    return result(worst.status, worst.reason, summary, metrics=tuple(found.metrics),
                  details=details)
