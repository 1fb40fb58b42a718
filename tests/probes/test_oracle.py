"""Oracle probe. No Oracle server runs here, so:

- the evaluation of each sub-check is tested on rows shaped as python-oracledb returns them
  from the dictionary views (tests/probes/fixtures/oracle/, README there), and `examine` runs
  the same fetch code as live through a session that answers with those rows;
- the connection failures come from the real python-oracledb driver against loopback: a
  closed port, a server that accepts and never answers, one that speaks garbage, and a fake
  TNS listener that answers REFUSE (ORA-12514, ORA-12519) or an ACCEPT of an 11.2-era
  protocol version (DPY-3010) — real exception objects;
- server-side errors we cannot provoke (ORA-01017 …) are built the way the thin driver builds
  them (`errors._Error(message, code=…)` then `error.exc_type(error)`), and DPY- errors with
  `errors._create_err`, then fed through the same mapping.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oracledb
import pytest
from oracledb import errors as ora_errors
from pydantic import ValidationError

from agent.runner import run_check
from probes.config import Threshold
from probes.memory import ProbeMemory
from probes.oracle import (
    METRICS,
    SQL,
    CustomQuery,
    OracleCheck,
    StaleConnection,
    classify,
    evaluate_backups,
    evaluate_blocking,
    evaluate_dataguard,
    evaluate_fra,
    evaluate_job_runs,
    evaluate_legacy_jobs,
    evaluate_query,
    evaluate_scheduler_jobs,
    evaluate_sessions,
    evaluate_tablespaces,
    evaluate_version,
    examine,
    interval_seconds,
    probe,
)
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from tests.services import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"
PASSWORD = "Tr0ub4dor&3-secret"
# 09:30 in Asia/Shanghai
NOW = datetime(2026, 5, 7, 1, 30, tzinfo=UTC)


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$datetime"}:
        return datetime.fromisoformat(value["$datetime"])
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def load(name: str) -> dict[str, Any]:
    """A fixture file, datetimes decoded as python-oracledb returns them (naive)."""
    decoded: dict[str, Any] = _decode(json.loads((FIXTURES / f"{name}.json").read_text()))
    return decoded


def rows(name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = load(name)["rows"]
    return found


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "oracle-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def check(password_file: Path) -> OracleCheck:
    return make_check(password_file)


def make_check(password_file: Path, **kw: Any) -> OracleCheck:
    return OracleCheck.model_validate({"id": "emrdb", "kind": "oracle", "user": "wardwatch",
                                       "dsn": "db1.hospital.local:1521/EMRDB",
                                       "password_file": password_file, **kw})


def value(res: Any, name: str, **labels: str) -> float:
    [found] = [m.value for m in res.metrics if m.name == name and m.labels == labels]
    return float(found)


def texts(found: Any) -> list[tuple[Status, str, str]]:
    return [(c.status, c.reason, c.text) for c in found.causes]


def no_secret(res: ProbeResult) -> None:
    assert PASSWORD not in res.model_dump_json()


# ---------------------------------------------------------------------------- jobs

def test_scheduler_job_failed_twice_since_0200(check: OracleCheck) -> None:
    found, failing, top = evaluate_job_runs(rows("job_runs_failed"), {}, check, NOW)
    assert top == 88230
    assert (Status.CRITICAL, "job_failed",
            "job HIS.NIGHTLY_SETTLE failed 2 times since 02:00: ORA-01652") in texts(found)
    assert (Status.WARNING, "job_failed",
            "job LIS.RESULT_EXPORT failed once then succeeded (ORA-12170)") in texts(found)
    assert len(found.causes) == 2   # SYS.PURGE_LOG succeeded
    assert value(found, "oracle_scheduler_job_failures", job="HIS.NIGHTLY_SETTLE") == 2
    assert value(found, "oracle_scheduler_job_failures", job="SYS.PURGE_LOG") == 0
    assert list(failing) == ["HIS.NIGHTLY_SETTLE"]


def test_job_failure_is_held_until_a_run_succeeds(check: OracleCheck) -> None:
    _found, failing, _top = evaluate_job_runs(rows("job_runs_failed"), {}, check, NOW)
    quiet, failing, _top = evaluate_job_runs([], failing, check, NOW)   # nothing ran
    assert [c.text for c in quiet.causes] == [
        "job HIS.NIGHTLY_SETTLE failed 2 times since 02:00: ORA-01652"]
    again, failing, _top = evaluate_job_runs(rows("job_runs_failed_again"), failing, check, NOW)
    assert [c.text for c in again.causes] == [
        "job HIS.NIGHTLY_SETTLE failed 3 times since 02:00: ORA-01652"]
    assert value(again, "oracle_scheduler_job_failures", job="HIS.NIGHTLY_SETTLE") == 1
    done, failing, _top = evaluate_job_runs(rows("job_runs_recovered"), failing, check, NOW)
    assert done.causes == [] and failing == {}


def test_held_failure_expires_after_lookback(password_file: Path) -> None:
    check = make_check(password_file, lookback="2h")
    _found, failing, _top = evaluate_job_runs(rows("job_runs_failed"), {}, check, NOW)
    later = datetime(2026, 5, 7, 6, 0, tzinfo=UTC)
    found, failing, _top = evaluate_job_runs([], failing, check, later)
    assert found.causes == [] and failing == {}


def test_broken_and_overdue_scheduler_jobs(check: OracleCheck) -> None:
    found = evaluate_scheduler_jobs(rows("scheduler_jobs"), check, NOW)
    assert texts(found) == [
        (Status.CRITICAL, "job_broken", "job HIS.CLAIMS_UPLOAD BROKEN after 16 failures of "
                                        "max 16"),
        (Status.WARNING, "job_overdue", "job PACS.PURGE_OLD_STUDIES overdue: due 06:00, "
                                        "3.5h ago")]
    assert check.password_file is not None
    ignoring = make_check(check.password_file, jobs_ignore=[r"^PACS\."])
    assert [c.reason for c in evaluate_scheduler_jobs(rows("scheduler_jobs"), ignoring,
                                                      NOW).causes] == ["job_broken"]


def test_legacy_dba_jobs_on_11g(check: OracleCheck) -> None:
    found = evaluate_legacy_jobs(rows("legacy_jobs_11g"), check, NOW)
    assert texts(found) == [
        (Status.CRITICAL, "job_failed", "DBA_JOBS job 41 (HIS: his_stat.refresh_daily;) failed "
                                        "3 times since its last success, last success "
                                        "05-05 23:00"),
        (Status.CRITICAL, "job_broken", "DBA_JOBS job 42 (EMR: emr_sync.push_orders;) BROKEN "
                                        "after 16 times failing, last success 04-30 08:15"),
        # NEXT_DATE 06:00 is a DATE on the server's clock (Asia/Shanghai): 3.5 h before 09:30
        (Status.WARNING, "job_overdue", "DBA_JOBS job 43 (LIS: lis_archive.run;) overdue: due "
                                        "06:00, 3.5h ago")]
    assert value(found, "oracle_jobs_broken", source="dba_jobs") == 1


# ------------------------------------------------------------------------- backups

def test_backups_ok_with_level0_as_full(check: OracleCheck) -> None:
    found = evaluate_backups(rows("backups_ok"), {}, check, NOW)
    assert found.causes == []
    # END_TIME 2026-05-03 02:41:19 is a DATE on the server's clock, +08:00
    full = datetime(2026, 5, 2, 18, 41, 19, tzinfo=UTC)
    assert value(found, "oracle_backup_last_success_timestamp_seconds",
                 type="full") == full.timestamp()
    assert value(found, "oracle_backup_age_seconds", type="full") == (NOW - full).total_seconds()
    # 09:02:11 local = 01:02:11 UTC, 27 min 49 s before NOW
    assert value(found, "oracle_backup_age_seconds", type="archivelog") == 27 * 60 + 49
    assert "other" not in found.details["backups"]


def test_backup_failed_stale_and_running(check: OracleCheck) -> None:
    errors = {"full": [r["output"] for r in rows("rman_output_4711")],
              "archivelog": [r["output"] for r in rows("rman_output_4730")]}
    found = evaluate_backups(rows("backups_failed"), errors, check, NOW)
    assert texts(found) == [
        (Status.CRITICAL, "backup_failed", "full backup COMPLETED WITH ERRORS at 05-06 02:00: "
                                           "ORA-19809: limit exceeded for recovery files"),
        (Status.WARNING, "backup_stale", "last full backup 9.3d ago (04-28 03:05)"),
        (Status.CRITICAL, "backup_failed", "archivelog backup FAILED at 09:00: ORA-19625: error "
                                           "identifying file /arch/EMRDB/1_88120_1098765432.dbf")]
    backups = found.details["backups"]
    assert backups["incr"]["running_since"] == "2026-05-07T01:00:00+00:00"
    assert "RMAN-03009" in backups["full"]["last_error"]
    assert value(found, "oracle_backup_failures", type="archivelog") == 2
    # the running incremental's END_TIME is NULL: yesterday's success still counts, in limits
    assert value(found, "oracle_backup_age_seconds", type="incr") < 2 * 86400


def test_no_backup_at_all_is_critical(check: OracleCheck) -> None:
    found = evaluate_backups([], {}, check, NOW)
    assert {(c.status, c.reason) for c in found.causes} == {(Status.CRITICAL, "backup_stale")}
    assert "CONTROL_FILE_RECORD_KEEP_TIME" in found.causes[0].text
    assert check.password_file is not None
    noarchivelog = make_check(check.password_file, backup_age={"archivelog": {}, "incr": {}})
    assert len(evaluate_backups([], {}, noarchivelog, NOW).causes) == 1


# ------------------------------------------------------------- space, sessions, locks

def test_tablespaces_near_full(check: OracleCheck) -> None:
    found = evaluate_tablespaces(rows("tablespaces_near_full"), check)
    assert texts(found) == [
        (Status.CRITICAL, "tablespace_full", "tablespace HIS_DATA 96.4% used of 192.0 GiB"),
        (Status.WARNING, "tablespace_full", "tablespace HIS_INDEX 87.2% used of 64.0 GiB")]
    # autoextensible: the usage is against MAXBYTES, so EMR_LOB is far from full
    assert value(found, "oracle_tablespace_used_ratio", tablespace="EMR_LOB") == 0.12
    assert value(found, "oracle_tablespace_size_bytes", tablespace="EMR_LOB") == 34359721984
    assert check.password_file is not None
    levels = {"his_data": {"warning": 97, "critical": 99}, "temp": {"warning": 95}}
    tuned = make_check(check.password_file, tablespaces=levels)
    assert [c.text for c in evaluate_tablespaces(rows("tablespaces_near_full"), tuned).causes
            ] == ["tablespace TEMP 99.0% used of 32.0 GiB",
                  "tablespace HIS_INDEX 87.2% used of 64.0 GiB"]


def test_fra_and_archive_destination(check: OracleCheck) -> None:
    found = evaluate_fra(rows("fra_near_full"), rows("archive_dests_error"), check)
    assert texts(found) == [
        (Status.CRITICAL, "fra_full", "recovery area +FRA 90.5% used (not reclaimable) of "
                                      "400.0 GiB"),
        (Status.CRITICAL, "archive_dest_error", "archive destination 1 "
         "(USE_DB_RECOVERY_FILE_DEST) ERROR: ORA-19809: limit exceeded for recovery files")]
    assert round(value(found, "oracle_fra_used_ratio"), 4) == 0.905
    none = evaluate_fra(rows("fra_absent"), [], check)
    assert none.causes == [] and none.details["fra"] is None


def test_sessions_and_processes(check: OracleCheck) -> None:
    found = evaluate_sessions(rows("sessions_high"), check)
    assert texts(found) == [(Status.WARNING, "sessions_high", "905 of 1000 processes (90%)"),
                            (Status.WARNING, "sessions_high", "1382 of 1536 sessions (90%)")]
    assert value(found, "oracle_sessions_limit") == 1536
    unlimited = evaluate_sessions([{"resource_name": "sessions", "current_utilization": 10,
                                    "max_utilization": 12, "limit_value": "UNLIMITED"}], check)
    assert unlimited.causes == [] and value(unlimited, "oracle_sessions") == 10


def test_blocking_sessions(check: OracleCheck) -> None:
    found = evaluate_blocking(rows("blocking"), check)
    assert texts(found) == [(Status.CRITICAL, "blocking_sessions",
                             "session 1,1234 (HIS, emr-app-01, JDBC Thin Client, idle 15min) "
                             "blocks 4 for up to 312s (enq: TX - row lock contention)")]
    assert value(found, "oracle_blocking_sessions") == 5
    assert found.details["blockers"][1]["sql_id"] == "4ztz048yfq32s"
    assert evaluate_blocking([], check).causes == []


def test_dataguard(check: OracleCheck) -> None:
    standby = load("dataguard_standby")
    found = evaluate_dataguard(standby["role"], standby["rows"], [], check)
    assert texts(found) == [(Status.WARNING, "dataguard_lag",
                             "standby apply lag 8min, transport lag 3s")]
    assert value(found, "oracle_dataguard_apply_lag_seconds") == 462
    stopped = load("dataguard_standby_stopped")
    assert [c.text for c in evaluate_dataguard(stopped["role"], stopped["rows"], [],
                                               check).causes] == [
        "standby apply lag unknown (is managed recovery running?)"]
    primary = load("standby_dests_primary")
    assert texts(evaluate_dataguard(primary["role"], [], primary["rows"], check)) == [
        (Status.CRITICAL, "dataguard_lag", "standby destination 2 (LOG_ARCHIVE_DEST_2) ERROR "
                                           "RESOLVABLE GAP: ORA-12541: TNS:no listener")]
    alone = evaluate_dataguard(primary["role"], [], [], check)
    assert alone.causes == [] and alone.details["dataguard"] == "not configured"
    assert interval_seconds("+01 02:03:04.5") == 93784.5 and interval_seconds(None) is None


def test_version_11g_and_19c(check: OracleCheck) -> None:
    old = load("version_11204")
    found = evaluate_version(old["version"], old["banner"], old["rows"], check.zone)
    assert found.causes == []
    assert found.details["banner"] == ("Oracle Database 11g Enterprise Edition Release "
                                       "11.2.0.4.0 - 64bit Production")
    assert found.details["patches"][0] == {
        "patch_id": 191015, "action": "APPLY", "status": None,
        "action_time": "2019-11-02T14:41:07.114330+00:00",
        "description": "PSU 11.2.0.4.191015"}
    assert value(found, "oracle_info", version="11.2.0.4.0") == 1
    new = load("version_19c")
    found = evaluate_version(new["version"], new["banner"], new["rows"], check.zone)
    assert found.causes == [] and found.details["patches"][0]["patch_id"] == 36582781
    broken = load("version_19c_patch_errors")
    assert texts(evaluate_version(broken["version"], broken["banner"], broken["rows"],
                                  check.zone)) == [
        (Status.WARNING, "patch_incomplete", "SQL patch 36912597 APPLY WITH ERRORS (Database "
         "Release Update : 19.25.0.0.241015 (36912597)): rerun datapatch")]


def test_custom_query() -> None:
    query = CustomQuery(name="pending_orders",
                        sql="-- lab orders not sent\nSELECT ward, COUNT(*) AS PENDING "
                            "FROM his.orders GROUP BY ward;",
                        metrics=["PENDING"], labels=["WARD"],
                        thresholds={"pending": Threshold(warning=50, critical=200)})
    found = evaluate_query(query, [{"ward": "ICU", "pending": 12},
                                   {"ward": "ER", "pending": 230}])
    assert texts(found) == [(Status.CRITICAL, "query_threshold",
                             "query pending_orders: pending=230 (ward=ER)")]
    assert value(found, "oracle_query_value", query="pending_orders", column="pending",
                 ward="ICU") == 12
    wrong = evaluate_query(query, [{"ward": "ICU", "count": 1}])
    assert [c.reason for c in wrong.causes] == ["probe_error"]
    with pytest.raises(ValidationError, match="must be a SELECT"):
        CustomQuery(name="x", sql="DELETE FROM his.orders", metrics=["n"])
    with pytest.raises(ValidationError, match="one statement"):
        CustomQuery(name="x", sql="SELECT 1 n FROM dual; DROP TABLE t", metrics=["n"])


# ------------------------------------------------------ the fetch layer, end to end

class Recorded:
    """A Session answering each statement with fixture rows (or raising a real error)."""

    def __init__(self, version: str, answers: Mapping[str, Any]):
        self._version = version
        self.answers = dict(answers)
        self.asked: list[tuple[str, dict[str, Any]]] = []

    @property
    def version(self) -> str:
        return self._version

    async def rows(self, name: str, sql: str, binds: Mapping[str, Any]) -> list[dict[str, Any]]:
        assert name.startswith("query:") or sql == SQL[name]
        self.asked.append((name, dict(binds)))
        answer = self.answers.get(name, [])
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)


def ping(now: datetime = NOW) -> list[dict[str, Any]]:
    return [{"db_date": now.replace(tzinfo=None) + (datetime(2026, 1, 1, 8) -
                                                     datetime(2026, 1, 1)),
             "utc_now": now.replace(tzinfo=None)}]


def hospital_answers() -> dict[str, Any]:
    answers: dict[str, Any] = {
        "ping": ping(), "job_runs": rows("job_runs_failed"),
        "scheduler_jobs": rows("scheduler_jobs"), "legacy_jobs": [],
        "backups": rows("backups_failed"), "tablespaces": rows("tablespaces_near_full"),
        "fra": rows("fra_near_full"), "archive_dests": [], "sessions": rows("sessions_high"),
        "blocking": rows("blocking"), "database_role": load("dataguard_standby")["role"],
        "dataguard_stats": rows("dataguard_standby"),
        "banner": load("version_19c")["banner"], "patches": rows("version_19c")}
    return answers


def ora(message: str, code: int, **kw: Any) -> oracledb.Error:
    """An Oracle error built as the thin driver builds one from the server's answer."""
    error = ora_errors._Error(message, code=code, **kw)
    exc: oracledb.Error = error.exc_type(error)
    return exc


def dpy(number: int, **args: Any) -> oracledb.Error:
    """A driver (DPY-) error built as python-oracledb raises it."""
    error = ora_errors._create_err(number, **args)
    exc: oracledb.Error = error.exc_type(error)
    return exc


async def test_examine_runs_every_subcheck(check: OracleCheck) -> None:
    memory = ProbeMemory()
    session = Recorded("19.24.0.0.0", hospital_answers())
    session.answers["rman_errors"] = rows("rman_output_4711")
    res = await examine(check, memory, session, connect_seconds=0.042)
    assert (res.status, res.reason) == (Status.CRITICAL, "job_failed")
    assert res.summary.startswith("oracle wardwatch@db1.hospital.local:1521/EMRDB: job "
                                  "HIS.NIGHTLY_SETTLE failed 2 times since 02:00: ORA-01652; ")
    assert len(res.summary) <= 300 and "\n" not in res.summary
    reasons = {c["reason"] for c in res.details["causes"]}
    assert reasons == {"job_failed", "job_broken", "job_overdue", "backup_failed",
                       "backup_stale", "tablespace_full", "fra_full", "sessions_high",
                       "blocking_sessions", "dataguard_lag"}
    assert value(res, "oracle_connect_seconds") == 0.042
    assert value(res, "oracle_pool_reused") == 0 and value(res, "oracle_up") == 1
    assert {m.name for m in res.metrics} <= set(METRICS)
    assert res.details["version"] == "19.24.0.0.0"
    no_secret(res)
    # the next run reads run details after the highest LOG_ID seen, from about now
    again = Recorded("19.24.0.0.0", {**hospital_answers(), "job_runs": []})
    second = await examine(check, memory, again, reused=True)
    [(_name, binds)] = [a for a in again.asked if a[0] == "job_runs"]
    assert binds["after_id"] == 88230
    assert binds["since"] == datetime(2026, 5, 7, 0, 30)   # one hour's overlap, naive UTC
    assert value(second, "oracle_pool_reused") == 1
    assert "job HIS.NIGHTLY_SETTLE failed 2 times" in second.summary   # still failing


async def test_first_run_looks_back(check: OracleCheck) -> None:
    session = Recorded("19.24.0.0.0", {"ping": ping()})
    res = await examine(check.model_copy(update={"checks": ["jobs"]}), ProbeMemory(), session)
    assert res.status is Status.OK, res.summary
    assert res.summary == ("oracle wardwatch@db1.hospital.local:1521/EMRDB: ok, new (0 ms), "
                           "Oracle 19.24.0.0.0")
    [(_name, binds)] = [a for a in session.asked if a[0] == "job_runs"]
    assert binds == {"since": datetime(2026, 5, 6, 1, 30), "after_id": 0}


async def test_11g_reads_registry_history(check: OracleCheck) -> None:
    old = load("version_11204")
    session = Recorded(old["version"], {"ping": ping(), "banner": old["banner"],
                                        "patches_11g": old["rows"],
                                        "patches": ora("ORA-00942: table or view does not "
                                                       "exist", 942)})
    res = await examine(check.model_copy(update={"checks": ["version"]}), ProbeMemory(),
                        session)
    assert res.status is Status.OK, res.summary
    assert res.details["patches"][0]["description"] == "PSU 11.2.0.4.191015"


async def test_view_not_granted_is_unknown_and_the_rest_runs(check: OracleCheck) -> None:
    answers = hospital_answers()
    answers["backups"] = ora("ORA-00942: table or view does not exist", 942, offset=130)
    memory = ProbeMemory()
    res = await examine(check.model_copy(update={"checks": ["backups", "sessions"]}),
                        memory, Recorded("19.24.0.0.0", answers))
    assert (res.status, res.reason) == (Status.WARNING, "sessions_high")
    [denied] = [c for c in res.details["causes"] if c["reason"] == "permission_denied"]
    assert denied["status"] == "unknown"
    assert denied["text"] == ("ORA-00942 wardwatch may not read backups: GRANT SELECT ON "
                              "SYS.V_$RMAN_BACKUP_JOB_DETAILS, SYS.V_$BACKUP_SET_DETAILS TO "
                              "wardwatch")


async def test_slow_query_drops_the_connection(check: OracleCheck) -> None:
    memory = ProbeMemory()
    closed: list[str] = []

    async def close() -> None:
        closed.append("connection")

    memory.keep("connection", object(), close)
    answers = hospital_answers()
    answers["tablespaces"] = dpy(ora_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=8000)
    some = check.model_copy(update={"checks": ["tablespaces", "sessions"]})
    res = await examine(some, memory, Recorded("19.24.0.0.0", answers))
    assert (res.status, res.reason) == (Status.CRITICAL, "slow_query")
    assert "DPY-4024 no answer in tablespaces within call_timeout 8s" in res.summary
    assert closed == ["connection"] and "connection" not in memory.resources
    # sub-checks after the cut did not run: no session metrics
    assert not [m for m in res.metrics if m.name == "oracle_sessions"]


async def test_dead_kept_connection_is_not_a_failure(check: OracleCheck) -> None:
    memory = ProbeMemory()
    closed: list[str] = []

    async def close() -> None:
        closed.append("connection")

    memory.keep("connection", object(), close)
    lost = ora("ORA-03113: end-of-file on communication channel", 3113)
    with pytest.raises(StaleConnection):
        await examine(check, memory, Recorded("19.24.0.0.0", {"ping": lost}), reused=True)
    assert closed == ["connection"]
    # a new connection failing the same way is a finding
    res = await examine(check, memory, Recorded("19.24.0.0.0", {"ping": lost}))
    assert (res.status, res.reason) == (Status.CRITICAL, "connection_lost")


async def test_wrong_db_timezone_is_reported(password_file: Path) -> None:
    utc_server = [{"db_date": NOW.replace(tzinfo=None), "utc_now": NOW.replace(tzinfo=None)}]
    res = await examine(make_check(password_file, checks=[]), ProbeMemory(),
                        Recorded("19.24.0.0.0", {"ping": utc_server}))
    assert (res.status, res.reason) == (Status.UNKNOWN, "probe_error")
    assert "db_timezone Asia/Shanghai does not match the server clock (SYSDATE is " \
           "UTC+0.0h)" in res.summary
    fine = await examine(make_check(password_file, checks=[], db_timezone="UTC"),
                         ProbeMemory(), Recorded("19.24.0.0.0", {"ping": utc_server}))
    assert fine.status is Status.OK


async def test_custom_query_through_examine(password_file: Path) -> None:
    check = make_check(password_file, checks=[], queries=[{
        "name": "interface_backlog", "sql": "SELECT COUNT(*) AS backlog FROM his.hl7_out",
        "metrics": ["backlog"], "thresholds": {"backlog": {"warning": 100}}}])
    session = Recorded("19.24.0.0.0", {"ping": ping(),
                                       "query:interface_backlog": [{"backlog": 140}]})
    res = await examine(check, ProbeMemory(), session)
    assert (res.status, res.reason) == (Status.WARNING, "query_threshold")
    assert res.summary.endswith("query interface_backlog: backlog=140")
    failing = Recorded("19.24.0.0.0", {
        "ping": ping(), "query:interface_backlog": ora(
            "ORA-01652: unable to extend temp segment by 128 in tablespace TEMP", 1652)})
    res = await examine(check, ProbeMemory(), failing)
    assert (res.status, res.reason) == (Status.CRITICAL, "query_failed")
    assert res.summary.endswith("ORA-01652 unable to extend temp segment by 128 in "
                                "tablespace TEMP (in query:interface_backlog)")


# ------------------------------------------------ error mapping with real exceptions

@pytest.mark.parametrize(("exc", "status", "reason", "text"), [
    (ora("ORA-01017: invalid credential or not authorized; logon denied", 1017),
     Status.CRITICAL, "auth_failed",
     "ORA-01017 login as wardwatch denied (wrong password, or no CREATE SESSION)"),
    (ora("ORA-28000: The account is locked.", 28000), Status.CRITICAL, "account_locked",
     "ORA-28000 account wardwatch is locked"),
    (ora("ORA-28001: the password has expired", 28001), Status.CRITICAL, "password_expired",
     "ORA-28001 the password of wardwatch has expired"),
    (ora("ORA-28002: the password will expire within 7 days", 28002, iswarning=True),
     Status.WARNING, "password_expiring", "ORA-28002 the password of wardwatch expires soon"),
    # thick mode (Oracle Client) messages
    (ora("ORA-12514: TNS:listener does not currently know of service requested in connect "
         "descriptor", 12514), Status.CRITICAL, "service_unknown",
     "ORA-12514 listener does not know service EMRDB"),
    (ora("ORA-12541: TNS:no listener", 12541), Status.CRITICAL, "connect_refused",
     "ORA-12541 no listener at db1.hospital.local:1521/EMRDB"),
    (ora("ORA-01034: ORACLE not available", 1034), Status.CRITICAL, "instance_unavailable",
     "ORA-01034 ORACLE not available"),
    (ora("ORA-03156: OCI call timed out", 3156), Status.CRITICAL, "slow_query",
     "ORA-03156 no answer within call_timeout 8s"),
    (ora("ORA-01013: user requested cancel of current operation", 1013), Status.CRITICAL,
     "slow_query", "ORA-01013 no answer within call_timeout 8s"),
    (ora("ORA-01031: insufficient privileges", 1031), Status.UNKNOWN, "permission_denied",
     "ORA-01031 wardwatch may not read a view: GRANT the GRANTs in docs/probes/oracle.md TO "
     "wardwatch"),
    (ora("ORA-00904: \"VERSION_FULL\": invalid identifier", 904), Status.UNKNOWN,
     "probe_error", "query does not fit this server: ORA-00904: \"VERSION_FULL\": invalid "
     "identifier"),
    (ora("ORA-01555: snapshot too old: rollback segment number 12 with name \"_SYSSMU12$\" "
         "too small", 1555), Status.CRITICAL, "query_failed",
     "ORA-01555 snapshot too old: rollback segment number 12 with name \"_SYSSMU12$\" too "
     "small"),
    (ora("ORA-03113: end-of-file on communication channel", 3113), Status.CRITICAL,
     "connection_lost", "DPY-4011 the database or network closed the connection"),
    (dpy(ora_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=8000), Status.CRITICAL, "slow_query",
     "DPY-4024 no answer within call_timeout 8s"),
])
def test_error_mapping(check: OracleCheck, exc: oracledb.Error, status: Status, reason: str,
                       text: str) -> None:
    failure = classify(exc, check)
    assert (failure.status, failure.reason, failure.text) == (status, reason, text)


def test_ora_01017_is_what_the_driver_raises() -> None:
    exc = ora("ORA-01017: invalid credential or not authorized; logon denied", 1017)
    assert isinstance(exc, oracledb.DatabaseError)
    assert exc.args[0].full_code == "ORA-01017" and exc.args[0].code == 1017


# -------------------------------------------- the real driver against loopback servers

def tns_packet(packet_type: int, body: bytes) -> bytes:
    """A TNS packet as a listener sends it before the session: 2-byte length header."""
    return struct.pack(">HHBBH", 8 + len(body), 0, packet_type, 0, 0) + body


def refuse(error: int) -> bytes:
    text = (f"(DESCRIPTION=(TMP=)(VSNNUM=318767104)(ERR={error})(ERROR_STACK=(ERROR="
            f"(CODE={error})(EMFI=4))))").encode()
    return tns_packet(4, b"\x22\x00" + struct.pack(">H", len(text)) + text)


# an ACCEPT of TNS protocol version 314, below the 315 (12.1) thin mode requires
ACCEPT_11G = tns_packet(2, struct.pack(">HH", 314, 0) + bytes(40))


async def listener(reply: bytes | None, close: bool = False) -> AsyncIterator[int]:
    """A loopback TCP server that reads the CONNECT packet and answers `reply` (None: never
    answers), then hangs up if `close`."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if reply is None:
            return
        header = await reader.readexactly(8)
        await reader.readexactly(struct.unpack(">H", header[:2])[0] - 8)
        writer.write(reply)
        await writer.drain()
        if close:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()


@pytest.fixture
async def service_unknown() -> AsyncIterator[int]:
    async for port in listener(refuse(12514)):
        yield port


@pytest.fixture
async def no_handler() -> AsyncIterator[int]:
    async for port in listener(refuse(12519)):
        yield port


@pytest.fixture
async def old_server() -> AsyncIterator[int]:
    async for port in listener(ACCEPT_11G):
        yield port


@pytest.fixture
async def garbage() -> AsyncIterator[int]:
    async for port in listener(b"HTTP/1.1 400 Bad Request\r\n\r\n", close=True):
        yield port


async def live(password_file: Path, dsn: str, **kw: Any) -> ProbeResult:
    check = make_check(password_file, dsn=dsn, **kw)
    started = time.monotonic()
    res = await probe(check, ProbeMemory())
    assert time.monotonic() - started < check.timeout
    no_secret(res)
    return res


async def test_closed_port_is_refused(password_file: Path) -> None:
    port = free_port()
    res = await live(password_file, f"127.0.0.1:{port}/EMRDB")
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")
    assert res.summary == (f"oracle wardwatch@127.0.0.1:{port}/EMRDB: connection to "
                           f"127.0.0.1:{port} refused (listener down?)")
    assert value(res, "oracle_up") == 0


async def test_listener_without_the_service(password_file: Path, service_unknown: int,
                                            ) -> None:
    res = await live(password_file, f"127.0.0.1:{service_unknown}/EMRDB")
    assert (res.status, res.reason) == (Status.CRITICAL, "service_unknown")
    assert res.summary == (f"oracle wardwatch@127.0.0.1:{service_unknown}/EMRDB: ORA-12514 "
                           "listener does not know service EMRDB")


async def test_listener_refusing(password_file: Path, no_handler: int) -> None:
    res = await live(password_file, f"127.0.0.1:{no_handler}/EMRDB")
    assert (res.status, res.reason) == (Status.CRITICAL, "listener_refused")
    assert res.summary.endswith("ORA-12519 no appropriate service handler found (PROCESSES "
                                "exhausted?)")


async def test_server_too_old_for_thin_mode(password_file: Path, old_server: int) -> None:
    res = await live(password_file, f"127.0.0.1:{old_server}/EMRDB")
    assert (res.status, res.reason) == (Status.UNKNOWN, "unsupported_server")
    assert res.summary.endswith(": Oracle server too old for thin mode (11.2?): set mode: "
                                "thick and install Instant Client")


async def test_not_an_oracle_listener(password_file: Path, garbage: int) -> None:
    res = await live(password_file, f"127.0.0.1:{garbage}/EMRDB")
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_error")
    assert "DPY-4011" in res.summary and "is it an Oracle listener?" in res.summary


async def test_bad_dsn_and_unknown_host(password_file: Path) -> None:
    alias = await live(password_file, "EMRDB_PROD")
    assert (alias.status, alias.reason) == (Status.CRITICAL, "bad_dsn")
    assert "a TNS alias needs config_dir or TNS_ADMIN" in alias.summary
    (password_file.parent / "tnsnames.ora").write_text("OTHER = (DESCRIPTION=(ADDRESS=("
                                                       "PROTOCOL=TCP)(HOST=127.0.0.1)(PORT=1))"
                                                       "(CONNECT_DATA=(SERVICE_NAME=X)))\n")
    missing = await live(password_file, "EMRDB_PROD", config_dir=password_file.parent)
    assert (missing.status, missing.reason) == (Status.CRITICAL, "bad_dsn")
    assert 'unable to find "EMRDB_PROD"' in missing.summary
    host = await live(password_file, "db.nonexistent.invalid:1521/EMRDB")
    assert (host.status, host.reason) == (Status.CRITICAL, "dns_failed")


async def test_hung_listener_is_cut_without_hanging(password_file: Path, hung_port: int,
                                                    ) -> None:
    check = make_check(password_file, dsn=f"127.0.0.1:{hung_port}/EMRDB", timeout=1.5,
                       interval=5)
    started = time.monotonic()
    res = await run_check(check, "a1")
    assert time.monotonic() - started < 1.5
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_timeout")
    assert res.summary.endswith(f"no answer from the listener at 127.0.0.1:{hung_port} "
                                "within 1.2s")


async def test_thick_check_in_a_thin_process(password_file: Path) -> None:
    res = await probe(make_check(password_file, mode="thick"), ProbeMemory())
    assert (res.status, res.reason) == (Status.UNKNOWN, "probe_error")
    assert "runs python-oracledb in thin mode" in res.summary


def test_enable_thick_mode_without_instant_client(tmp_path: Path) -> None:
    # its own process: thick mode, once tried, is a property of the whole process
    script = f"""
import oracledb
from probes.oracle import ThickModeError, enable_thick_mode_for, OracleCheck
(tmp := {str(tmp_path)!r})
open(tmp + "/pw", "w").write("x")
check = OracleCheck.model_validate({{"id": "o", "kind": "oracle", "user": "u", "dsn": "h/s",
    "password_file": tmp + "/pw", "mode": "thick", "lib_dir": tmp}})
thin = OracleCheck.model_validate({{"id": "t", "kind": "oracle", "user": "u", "dsn": "h/s",
    "password_file": tmp + "/pw"}})
assert enable_thick_mode_for([thin]) is False
try:
    enable_thick_mode_for([thin, check])
except ThickModeError as exc:
    print(exc)
print(oracledb.is_thin_mode())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2], check=False)
    assert done.returncode == 0, done.stderr
    message, thin = done.stdout.strip().splitlines()
    assert message.startswith(f"cannot enable python-oracledb thick mode from {tmp_path}: "
                              "DPI-1047: Cannot locate a 64-bit Oracle Client library")
    assert thin == "True"


def test_config(password_file: Path) -> None:
    check = make_check(password_file)
    assert check.target == "wardwatch@db1.hospital.local:1521/EMRDB"
    assert check.call_timeout_s == 8.0 and check.checks[0] == "jobs"
    assert PASSWORD not in repr(check) and PASSWORD not in check.model_dump_json()
    with pytest.raises(ValidationError, match="inline passwords are not accepted"):
        make_check(password_file, password="x")
    with pytest.raises(ValidationError, match="must not carry credentials"):
        make_check(password_file, dsn="scott/tiger@db1:1521/EMRDB")
    with pytest.raises(ValidationError, match="lib_dir is for mode: thick"):
        make_check(password_file, lib_dir="/opt/oracle/instantclient_19_24")
    with pytest.raises(ValidationError, match="call_timeout must be below timeout"):
        make_check(password_file, call_timeout="10s")
    with pytest.raises(ValidationError, match="unknown time zone"):
        make_check(password_file, db_timezone="Beijing")
    with pytest.raises(ValidationError, match="give password_file or password_env"):
        OracleCheck.model_validate({"id": "o", "kind": "oracle", "user": "u", "dsn": "h/s"})
    with pytest.raises(ValidationError, match="Input should be 'jobs'"):
        make_check(password_file, checks=["jobs", "rman"])
    assert get_kind("oracle").remembers and get_kind("oracle").config is OracleCheck
