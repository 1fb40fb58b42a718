"""mysql probe against the machine's MariaDB 10.11 (database `test`): the kept connection
reused across runs (same CONNECTION_ID()), login failures (closed port, wrong password,
missing database, a name that does not resolve, a server that never answers), a statement cut
by max_statement_time, real events run by the event scheduler (one whose statement fails),
the scheduler switched off, a read-only monitoring account with exactly the documented GRANTs,
custom queries, real mariadb-dump files (whole, gzip, cut off, shrunk, old) and real-shaped
mariabackup directories. Replication decisions run on recorded rows
(fixtures/mysql/README.md): there is no replica here. Every object a test creates has a
unique name and is dropped after it; the event scheduler is restored to its value."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.memory import ProbeMemory
from probes.mysql import (
    METRICS,
    DumpSettings,
    MariaBackupSettings,
    MysqlCheck,
    MysqlEventsSettings,
    MysqlReplicationSettings,
    evaluate_events,
    evaluate_replicas,
    inspect_dumps,
    inspect_mariabackup,
    interval_seconds,
    normalize_replica_row,
    probe,
)
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from probes.sql import Findings
from tests.services import free_port, needs

FIXTURES = Path(__file__).parent / "fixtures" / "mysql"
DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump")


def mariadb_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


def my_check(**kw: Any) -> MysqlCheck:
    return MysqlCheck.model_validate({"id": "my", "kind": "mysql", "user": "root",
                                      "database": "test", **kw})


def values(res: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in res.metrics if m.name == name}


def value(res: ProbeResult, name: str, **labels: str) -> float:
    return values(res, name)[tuple(sorted(labels.items()))]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Admin:
    """root on the machine's MariaDB; statements run in a worker thread."""

    def __init__(self) -> None:
        self.conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                                    database="test", autocommit=True, connect_timeout=5,
                                    read_timeout=30)

    def _run(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    async def sql(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._run, sql, args)

    async def wait_for(self, sql: str, test: Callable[[list[tuple[Any, ...]]], bool]
                       ) -> list[tuple[Any, ...]]:
        """Poll `sql` in a worker thread until `test` holds or 20 s pass (the server changes
        on its own: nothing to wait on but the table)."""
        def poll() -> list[tuple[Any, ...]]:
            deadline = time.monotonic() + 20
            while True:
                rows = self._run(sql)
                if test(rows) or time.monotonic() > deadline:
                    return rows
                time.sleep(0.1)
        return await asyncio.to_thread(poll)


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    needs(mariadb_available(), "MariaDB on 127.0.0.1:3306 (machine service)")
    db = await asyncio.to_thread(Admin)
    try:
        yield db
    finally:
        await asyncio.to_thread(db.conn.close)


@pytest.fixture
async def memory() -> AsyncIterator[ProbeMemory]:
    kept = ProbeMemory()
    try:
        yield kept
    finally:
        await kept.aclose()


@pytest.fixture
async def scheduler(admin: Admin) -> AsyncIterator[Admin]:
    [(before,)] = await admin.sql("SELECT @@GLOBAL.event_scheduler")
    try:
        yield admin
    finally:
        await admin.sql(f"SET GLOBAL event_scheduler = {before}")


@pytest.fixture
async def account(admin: Admin) -> AsyncIterator[tuple[str, str]]:
    """A login with only USAGE; tests grant what they check. (user, password)"""
    user, password = unique("ww_mon"), "pw-" + uuid.uuid4().hex
    await admin.sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    try:
        yield user, password
    finally:
        await admin.sql(f"DROP USER '{user}'@'127.0.0.1'")


# --- connection, reuse, failures ----------------------------------------------------------------

async def test_healthy_server_and_kept_connection(admin: Admin, memory: ProbeMemory) -> None:
    check = my_check()
    first = await probe(check, memory)
    assert (first.status, first.reason) == (Status.OK, "ok"), first.summary
    assert first.summary.startswith("mysql root@127.0.0.1:3306/test: MariaDB 10.11")
    assert first.details["connection"] == "new" and values(first, "mysql_connect_seconds")
    conn_id = first.details["connection_id"]
    rows = await admin.sql("SELECT USER, DB FROM information_schema.PROCESSLIST WHERE ID = %s",
                           (conn_id,))
    assert rows == [("root", "test")]
    for _ in range(2):
        later = await probe(check, memory)
        assert later.details["connection"] == "reused"
        assert later.details["connection_id"] == conn_id      # no new login
        assert value(later, "mysql_connection_reused") == 1
        assert not values(later, "mysql_connect_seconds")
    assert value(later, "mysql_version_info", version=later.details["version"]) == 1
    assert {m.name for m in later.metrics} <= set(METRICS)
    assert get_kind("mysql").remembers and get_kind("mysql").config is MysqlCheck


async def test_killed_connection_is_replaced(admin: Admin, memory: ProbeMemory) -> None:
    check = my_check(checks=["connect"])
    first = await probe(check, memory)
    await admin.sql(f"KILL {first.details['connection_id']}")
    again = await probe(check, memory)
    assert again.status is Status.OK, again.summary      # a stale cache is not an outage
    assert again.details["connection"] == "new"
    assert again.details["connection_id"] != first.details["connection_id"]


async def test_login_failures(account: tuple[str, str], tmp_path: Path) -> None:
    user, password = account
    closed = await probe(my_check(port=free_port()), ProbeMemory())
    assert (closed.status, closed.reason) == (Status.CRITICAL, "connect_refused")
    wrong = "Wr0ng-" + uuid.uuid4().hex
    (tmp_path / "wrong").write_text(wrong + "\n")
    (tmp_path / "right").write_text(password + "\n")
    refused = await probe(my_check(user=user, database=None, password_file=tmp_path / "wrong"),
                          ProbeMemory())
    assert (refused.status, refused.reason) == (Status.CRITICAL, "auth_failed")
    assert f"login as {user} refused (1045: Access denied for user '{user}'@'127.0.0.1' " \
           "(using password: YES))" in refused.summary
    assert wrong not in refused.model_dump_json()
    ok = await probe(my_check(user=user, database=None, password_file=tmp_path / "right",
                              checks=["connect"]), ProbeMemory())
    assert ok.status is Status.OK and password not in ok.model_dump_json()
    db = unique("ww_nodb")
    missing = await probe(my_check(database=db), ProbeMemory())
    assert (missing.status, missing.reason) == (Status.CRITICAL, "database_missing")
    assert f"database {db} does not exist on 127.0.0.1:3306" in missing.summary
    denied = await probe(my_check(user=user, database="test", password_file=tmp_path / "right"),
                         ProbeMemory())
    assert (denied.status, denied.reason) == (Status.UNKNOWN, "permission_denied")
    dns = await probe(my_check(host="no-such-host.invalid"), ProbeMemory())
    assert (dns.status, dns.reason) == (Status.CRITICAL, "dns_failed")


async def test_server_that_never_answers_is_cut(hung_port: int) -> None:
    check = my_check(port=hung_port, timeout=1, interval=5)
    started = time.perf_counter()
    res = await run_check(check, "a1")
    assert time.perf_counter() - started < 1.5
    assert res.status is Status.CRITICAL and res.reason in {"connect_error", "timeout"}
    assert "no answer" in res.summary


async def test_slow_statement_cut_by_max_statement_time(admin: Admin,
                                                        memory: ProbeMemory) -> None:
    check = my_check(timeout=1, interval=5, checks=["connect"],
                     queries=[{"name": "slow", "sql": "SELECT SLEEP(3) AS slept"}])
    started = time.perf_counter()
    res = await run_check(check, "a1", memory)
    assert time.perf_counter() - started < 1.2
    assert (res.status, res.reason) == (Status.CRITICAL, "slow_query"), res.summary
    assert "query slow: statement cut after 0.8s (1969: Query execution was interrupted " \
           "(max_statement_time exceeded))" in res.summary
    again = await probe(my_check(timeout=1, interval=5, checks=["connect"]), memory)
    assert again.status is Status.OK and again.details["connection"] == "reused"


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="inline passwords are not accepted"):
        my_check(password="x")
    with pytest.raises(ValidationError, match=r"give mariabackup\.backup_dir"):
        my_check(checks=["mariabackup"])
    with pytest.raises(ValidationError, match=r"give dumps\.dump_dir"):
        my_check(checks=["dumps"])
    assert my_check(host="db1", port=3307).target == "root@db1:3307/test"


# --- events -------------------------------------------------------------------------------------

async def test_real_event_that_fails_still_updates_last_executed(scheduler: Admin) -> None:
    """MariaDB stamps LAST_EXECUTED when a run starts: a failing event looks punctual."""
    admin = scheduler
    event, table = unique("ww_ev"), unique("ww_missing")
    await admin.sql(f"CREATE EVENT {event} ON SCHEDULE EVERY 1 SECOND "
                    f"DO INSERT INTO {table} VALUES (1)")
    try:
        await admin.sql("SET GLOBAL event_scheduler = ON")
        rows = await admin.wait_for(
            f"SELECT LAST_EXECUTED FROM information_schema.EVENTS WHERE EVENT_NAME = "
            f"'{event}'", lambda r: bool(r) and r[0][0] is not None)
        assert rows[0][0] is not None, "the scheduler never ran the event"
        assert not await admin.sql(f"SHOW TABLES LIKE '{table}'")   # its INSERT failed
        res = await probe(my_check(checks=["connect", "events"],
                                   events={"schemas": ["test"], "grace": 0}), ProbeMemory())
        assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
        assert value(res, "mysql_event_overdue", event=f"test.{event}") == 0
        stamped = value(res, "mysql_event_last_executed_timestamp_seconds",
                        event=f"test.{event}")
        assert abs(stamped - time.time()) < 30
        await admin.sql("SET GLOBAL event_scheduler = OFF")
        off = await probe(my_check(checks=["events"], events={"schemas": ["test"]}),
                          ProbeMemory())
        assert (off.status, off.reason) == (Status.CRITICAL, "event_scheduler_off")
        assert "event_scheduler is OFF with 1 enabled event" in off.summary
    finally:
        await admin.sql(f"DROP EVENT IF EXISTS {event}")


async def test_event_that_never_ran(scheduler: Admin) -> None:
    admin = scheduler
    event = unique("ww_never")
    await admin.sql("SET GLOBAL event_scheduler = OFF")
    await admin.sql(f"CREATE EVENT {event} ON SCHEDULE EVERY 1 HOUR "
                    "STARTS NOW() - INTERVAL 3 HOUR DO DO 1")
    try:
        res = await probe(my_check(checks=["events"], events={"schemas": ["test"]}),
                          ProbeMemory())
    finally:
        await admin.sql(f"DROP EVENT {event}")
    assert (res.status, res.reason) == (Status.CRITICAL, "event_scheduler_off")
    assert value(res, "mysql_event_overdue", event=f"test.{event}") == 1
    assert res.details["events_overdue"] >= 1


def event_row(**kw: Any) -> dict[str, Any]:
    row = {"schema": "his", "name": "nightly_settle", "status": "ENABLED", "execute_at": None,
           "interval_value": 1, "interval_field": "HOUR", "starts": datetime(2026, 1, 1),
           "ends": None, "last_executed": None}
    return {**row, **kw}


def test_event_decisions() -> None:
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    naive = now.replace(tzinfo=None)

    def decide(rows: list[dict[str, Any]], scheduler: str = "ON", **settings: Any) -> Findings:
        findings = Findings()
        evaluate_events(rows, scheduler, now, MysqlEventsSettings.model_validate(settings),
                        findings)
        return findings

    punctual = decide([event_row(last_executed=naive - timedelta(minutes=70))])
    assert punctual.causes == [] and punctual.notes == ["1 events enabled"]
    late = decide([event_row(last_executed=naive - timedelta(hours=3))])
    assert [(c.status, c.reason, c.text) for c in late.causes] == [
        (Status.CRITICAL, "event_overdue",
         "event his.nightly_settle overdue: last ran 3.0h ago, every 60m")]
    never = decide([event_row(starts=naive - timedelta(hours=5))])
    assert never.causes[0].text == ("event his.nightly_settle overdue: never ran since it "
                                    "started 5.0h ago, every 60m")
    quiet = decide([event_row(status="DISABLED", last_executed=naive - timedelta(days=9)),
                    event_row(name="once", execute_at=naive - timedelta(days=2),
                              interval_value=None, interval_field=None),
                    event_row(name="ended", ends=naive - timedelta(days=1)),
                    event_row(name="later", starts=naive + timedelta(days=1)),
                    event_row(schema="other", last_executed=naive - timedelta(days=9))],
                   schemas=["his"])
    assert quiet.causes == []
    off = decide([event_row(last_executed=naive - timedelta(hours=3))], scheduler="OFF")
    assert [c.reason for c in off.causes] == ["event_scheduler_off"]   # one cause, not N
    assert interval_seconds(90, "HOUR_MINUTE") == 5400           # mysql.event's form
    assert interval_seconds("'1:30'", "HOUR_MINUTE") == 5400     # information_schema's
    assert interval_seconds(1, "MONTH") == 31 * 86400


# --- a read-only monitoring account -------------------------------------------------------------

async def test_monitoring_account_with_documented_grants(admin: Admin, tmp_path: Path,
                                                         account: tuple[str, str]) -> None:
    user, password = account
    (tmp_path / "pw").write_text(password)
    check = my_check(user=user, database=None, password_file=tmp_path / "pw",
                     checks=["connect", "events", "replication"])
    bare = await probe(check, ProbeMemory())
    assert (bare.status, bare.reason) == (Status.UNKNOWN, "permission_denied"), bare.summary
    assert f"GRANT SELECT ON mysql.event TO '{user}'@'<agent host>'" in bare.summary
    assert f"GRANT REPLICA MONITOR ON *.* TO '{user}'@'<agent host>'" in bare.summary
    await admin.sql(f"GRANT SELECT ON mysql.event TO '{user}'@'127.0.0.1'")
    await admin.sql(f"GRANT REPLICA MONITOR ON *.* TO '{user}'@'127.0.0.1'")
    event = unique("ww_seen")
    await admin.sql(f"CREATE EVENT {event} ON SCHEDULE EVERY 1 DAY DISABLE DO DO 1")
    try:
        res = await probe(check, ProbeMemory())
        assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
        assert res.details["replication"] == "not a replica"
        # the account sees every schema's events, though it may change none of them
        [(count,)] = await admin.sql("SELECT COUNT(*) FROM mysql.event")
        assert res.details.get("events_overdue") == 0 and count >= 1
        write = await probe(my_check(user=user, database=None, password_file=tmp_path / "pw",
                                     checks=["connect"], queries=[
                                         {"name": "sneaky", "sql": "DELETE FROM mysql.event"}]),
                            ProbeMemory())
        assert write.status in {Status.CRITICAL, Status.UNKNOWN}
        assert write.reason in {"query_failed", "permission_denied"}
        [(after,)] = await admin.sql("SELECT COUNT(*) FROM mysql.event")
        assert after == count
    finally:
        await admin.sql(f"DROP EVENT {event}")


# --- replication --------------------------------------------------------------------------------

def replica_rows(case: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / "replicas.json").read_text())
    return [normalize_replica_row(r) for r in data[case]]


def decide_replicas(case: str, **settings: Any) -> Findings:
    findings = Findings()
    evaluate_replicas(replica_rows(case) if case else [],
                      MysqlReplicationSettings.model_validate(settings), findings)
    return findings


def test_replication_rows() -> None:
    assert decide_replicas("healthy", role="replica").causes == []
    connecting = decide_replicas("io_connecting")
    assert [(c.reason, c.text[:60]) for c in connecting.causes] == [
        ("replication_broken", "replica his: IO thread Connecting, SQL thread Yes: error con")]
    stopped = decide_replicas("sql_stopped")
    assert stopped.causes[0].text == ("replica lis: IO thread Yes, SQL thread No: Error "
                                      "executing row event: 'Table 'lis.result_tmp' doesn't "
                                      "exist'")
    lagging = decide_replicas("lagging")
    assert [(c.status, c.text) for c in lagging.causes] == [
        (Status.WARNING, "replica his 95s behind its primary"),
        (Status.CRITICAL, "replica pacs 67m behind its primary")]
    mysql8 = decide_replicas("mysql8_replica")
    assert mysql8.causes[0].text.startswith("replica 10.1.2.51:3306: IO thread No, SQL thread "
                                            "Yes: Got fatal error 1236")
    none = decide_replicas("", role="replica")
    assert none.causes[0].text == ("not a replica: no replication configured (SHOW ALL SLAVES "
                                   "STATUS is empty)")


async def test_live_server_is_not_a_replica(admin: Admin) -> None:
    anyrole = await probe(my_check(checks=["replication"]), ProbeMemory())
    assert anyrole.status is Status.OK and "not a replica" in anyrole.summary
    replica = await probe(my_check(checks=["replication"], replication={"role": "replica"}),
                          ProbeMemory())
    assert (replica.status, replica.reason) == (Status.CRITICAL, "replication_broken")


# --- custom queries -----------------------------------------------------------------------------

async def test_custom_queries(admin: Admin) -> None:
    table = unique("ww_orders")
    await admin.sql(f"CREATE TABLE {table} (ward VARCHAR(16), pending INT)")
    await admin.sql(f"INSERT INTO {table} VALUES ('ICU', 2), ('ER', 40)")
    try:
        res = await probe(my_check(checks=["connect"], queries=[
            {"name": "orders", "sql": f"SELECT ward, pending FROM {table}",
             "labels": ["ward"], "thresholds": {"pending": {"warning": 30}}},
            {"name": "threads", "sql": "SHOW GLOBAL STATUS LIKE 'Threads_connected'",
             "labels": ["Variable_name"], "metrics": ["Value"]}]), ProbeMemory())
        assert (res.status, res.reason) == (Status.WARNING, "query_threshold"), res.summary
        assert "query orders: pending=40 (ward=ER) ≥ 30" in res.summary
        assert value(res, "mysql_query_value", query="orders", column="pending",
                     ward="ICU") == 2
        assert value(res, "mysql_query_value", query="threads", column="Value",
                     Variable_name="Threads_connected") >= 1
        write = await probe(my_check(checks=["connect"], queries=[
            {"name": "sneaky", "sql": f"DELETE FROM {table}"}]), ProbeMemory())
        assert (write.status, write.reason) == (Status.CRITICAL, "query_failed")
        assert "query sneaky: 1792: Cannot execute statement in a READ ONLY transaction" \
            in write.summary
        assert await admin.sql(f"SELECT COUNT(*) FROM {table}") == [(2,)]
    finally:
        await admin.sql(f"DROP TABLE {table}")


# --- backups on disk ----------------------------------------------------------------------------

def age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def mariabackup_dir(root: Path, name: str, *, backup_type: str = "full-backuped",
                    to_lsn: str | None = "45234571", end: datetime | None = None,
                    checkpoints: bool = True, age_s: float = 0) -> Path:
    """A directory as `mariabackup --backup --target-dir` leaves it (real key = value files)."""
    directory = root / name
    directory.mkdir()
    (directory / "ibdata1").write_bytes(b"\0" * 4096)
    if checkpoints:
        lines = [f"backup_type = {backup_type}", "from_lsn = 0"]
        if to_lsn is not None:
            lines += [f"to_lsn = {to_lsn}", f"last_lsn = {to_lsn}"]
        (directory / "xtrabackup_checkpoints").write_text("\n".join(lines) + "\n")
    end = end or datetime.now()
    (directory / "xtrabackup_info").write_text(
        "uuid = 5d1f5e4a-ab12-11ef-9a61-0242ac110002\nname = \ntool_name = mariabackup\n"
        "tool_command = --backup --target-dir=" + str(directory) + "\n"
        "tool_version = 10.11.19-MariaDB\nibbackup_version = 10.11.19-MariaDB\n"
        "server_version = 10.11.19-MariaDB-0+deb12u1\n"
        f"start_time = {(end - timedelta(minutes=4)):%Y-%m-%d %H:%M:%S}\n"
        f"end_time = {end:%Y-%m-%d %H:%M:%S}\nlock_time = 0\nbinlog_pos = \n"
        f"innodb_from_lsn = 0\ninnodb_to_lsn = {to_lsn or ''}\npartial = N\n"
        "incremental = N\nformat = file\ncompressed = N\n")
    age(directory, age_s)
    return directory


def backups(settings: dict[str, Any], now: float | None = None) -> Findings:
    findings = Findings()
    inspect_mariabackup(MariaBackupSettings.model_validate(settings), now or time.time(),
                        findings)
    return findings


def test_mariabackup_directories(tmp_path: Path) -> None:
    root = tmp_path / "mariabackup"
    root.mkdir()
    assert backups({"backup_dir": root}).causes[0].reason == "backup_stale"   # empty
    mariabackup_dir(root, "2026-11-24_full", end=datetime.now() - timedelta(hours=49),
                    age_s=49 * 3600)
    old = backups({"backup_dir": root})
    assert [(c.reason, c.text) for c in old.causes] == [
        ("backup_stale", "mariabackup: newest backup 2026-11-24_full is 2.0d old "
                         "(max_age 26.0h)")]
    mariabackup_dir(root, "2026-11-26_incr", backup_type="incremental",
                    end=datetime.now() - timedelta(hours=1), age_s=3600)
    fresh = backups({"backup_dir": root})
    assert fresh.causes == [] and fresh.details["mariabackup"]["type"] == "incremental"
    assert fresh.metrics[0].labels == {"tool": "mariabackup", "type": "incremental"}
    # interrupted (no to_lsn), then one that never wrote its checkpoints file
    mariabackup_dir(root, "2026-11-26_cut", to_lsn=None, age_s=1800)
    cut = backups({"backup_dir": root, "in_progress_grace": 60})
    assert [(c.status, c.reason) for c in cut.causes] == [(Status.CRITICAL, "backup_failed")]
    assert "lacks backup_type or to_lsn" in cut.causes[0].text
    mariabackup_dir(root, "2026-11-26_bare", checkpoints=False, age_s=60)
    running = backups({"backup_dir": root})   # younger than in_progress_grace: still running
    assert running.details["mariabackup_in_progress"] == "2026-11-26_bare"
    assert "lacks backup_type or to_lsn" in running.causes[0].text
    done = backups({"backup_dir": root, "in_progress_grace": 30})
    assert "has no xtrabackup_checkpoints" in done.causes[0].text
    missing = backups({"backup_dir": tmp_path / "absent"})
    assert missing.causes[0].reason == "backup_failed"


def dump_table(admin_table: str, target: Path, *extra: str) -> None:
    assert DUMP is not None
    with target.open("wb") as out:
        subprocess.run([DUMP, "-h127.0.0.1", "-uroot", *extra, "test", admin_table],
                       stdout=out, check=True, timeout=60)


@pytest.fixture
async def dumped(admin: Admin, tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    needs(DUMP is not None, "mariadb-dump (Debian package mariadb-client)")
    table = unique("ww_patients")
    await admin.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(200))")
    await admin.sql(f"INSERT INTO {table} SELECT seq, REPEAT('x', 150) FROM seq_1_to_2000")
    directory = tmp_path / "dumps"
    directory.mkdir()
    try:
        yield directory, table
    finally:
        await admin.sql(f"DROP TABLE {table}")


def dumps(settings: dict[str, Any]) -> Findings:
    findings = Findings()
    inspect_dumps(DumpSettings.model_validate(settings), time.time(), findings)
    return findings


async def test_real_mysqldump_files(dumped: tuple[Path, str]) -> None:
    directory, table = dumped
    first = directory / "his-20261125.sql"
    await asyncio.to_thread(dump_table, table, first)
    age(first, 26 * 3600 + 600)
    second = directory / "his-20261126.sql"
    await asyncio.to_thread(dump_table, table, second)
    assert b"-- Dump completed on" in second.read_bytes()[-200:]
    res = await probe(my_check(checks=["dumps"], dumps={"dump_dir": directory,
                                                        "pattern": "his-*.sql*"}),
                      ProbeMemory())
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert value(res, "mysql_dump_size_bytes") == second.stat().st_size
    # cut in the middle (disk full, killed): no completion line
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2])
    age(second, 3600)
    cut = dumps({"dump_dir": directory})
    assert [(c.status, c.reason) for c in cut.causes] == [(Status.CRITICAL, "backup_failed")]
    assert "his-20261126.sql lacks the '-- Dump completed' line" in cut.causes[0].text
    second.unlink()
    stale = dumps({"dump_dir": directory})
    assert [c.reason for c in stale.causes] == ["backup_stale"]
    # gzip: completion read through the stream when small; a shrunk dump
    small = directory / "his-20261126.sql.gz"
    small.write_bytes(gzip.compress(data[:2000] + b"\n-- Dump completed on 2026-11-26\n"))
    shrunk = dumps({"dump_dir": directory})
    assert [(c.status, c.reason) for c in shrunk.causes] == [(Status.WARNING, "backup_shrunk")]
    big = dumps({"dump_dir": directory, "gzip_tail_max_bytes": 10})
    assert "completion not checked: gzip file over 10 bytes" in \
        big.details["dump_checks"]["his-20261126.sql.gz"]
    small.write_bytes(gzip.compress(data)[:-100])      # a gzip stream cut off
    age(small, 3600)
    broken = dumps({"dump_dir": directory})
    assert broken.causes[0].reason == "backup_failed"
    assert dumps({"dump_dir": directory, "pattern": "lis-*"}).causes[0].text.startswith(
        "dumps: no file matching lis-*")


async def test_dump_being_written_is_not_judged(dumped: tuple[Path, str]) -> None:
    directory, table = dumped
    done = directory / "his-1.sql"
    await asyncio.to_thread(dump_table, table, done)
    age(done, 3600)
    writing = directory / "his-2.sql"
    writing.write_bytes(done.read_bytes()[:1000])
    res = dumps({"dump_dir": directory})
    assert res.causes == [] and res.details["dump_in_progress"] == "his-2.sql"
    assert res.details["dump"]["file"] == "his-1.sql"


@pytest.fixture
def tidy_tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


async def test_backups_reported_even_when_the_server_is_down(tidy_tmp: Path) -> None:
    root = tidy_tmp / "mb"
    root.mkdir()
    mariabackup_dir(root, "full", age_s=60)
    res = await probe(my_check(port=free_port(), checks=["connect", "mariabackup"],
                               mariabackup={"backup_dir": root}), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")
    assert values(res, "mysql_backup_last_success_timestamp_seconds")
