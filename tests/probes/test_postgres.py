"""postgres probe against the machine's PostgreSQL 15 (database `test`) with pg_cron 1.4 from
Debian (scripts/setup-test-databases): the pooled connection reused across runs (same backend
pid in pg_stat_activity), login failures (closed port, unknown role, missing database, a
scripted server refusing the password, a name that does not resolve, a server that never
answers), a query cut by statement_timeout, real pg_cron jobs that fail, a read-only
monitoring role with exactly the documented GRANTs, custom queries, size growth, and
pgBackRest through a stand-in `pgbackrest` program on PATH that prints recorded JSON.
Replication decisions run on recorded rows (fixtures/postgres/README.md): there is no
replica here. Every object a test creates has a unique name and is dropped after it."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.memory import ProbeMemory
from probes.postgres import (
    METRICS,
    PgBackRestSettings,
    PgReplicationSettings,
    PgReplicationState,
    PostgresCheck,
    evaluate_pgbackrest,
    evaluate_replication,
    probe,
)
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from probes.sql import Findings
from tests.services import POSTGRES_URL, free_port, needs, postgres_available

FIXTURES = Path(__file__).parent / "fixtures" / "postgres"
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_check(**kw: Any) -> PostgresCheck:
    return PostgresCheck.model_validate({"id": "pg", "kind": "postgres", "dsn": DSN, **kw})


def values(res: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in res.metrics if m.name == name}


def value(res: ProbeResult, name: str, **labels: str) -> float:
    return values(res, name)[tuple(sorted(labels.items()))]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    needs(postgres_available(), "PostgreSQL on 127.0.0.1:5432 (scripts/test, machine service)")
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def memory() -> AsyncIterator[ProbeMemory]:
    kept = ProbeMemory()
    try:
        yield kept
    finally:
        await kept.aclose()


@pytest.fixture
async def cron(admin: asyncpg.Connection) -> None:
    installed = await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = "
                                     "'pg_cron'")
    needs(bool(installed), "pg_cron in database test (scripts/setup-test-databases)")


# --- connection, reuse, failures ----------------------------------------------------------------

async def test_healthy_server_and_pooled_reuse(admin: asyncpg.Connection,
                                               memory: ProbeMemory) -> None:
    check = pg_check()
    first = await probe(check, memory)
    assert (first.status, first.reason) == (Status.OK, "ok"), first.summary
    assert first.summary.startswith("postgres postgres@127.0.0.1:5432/test: PostgreSQL 15")
    assert first.details["connection"] == "new"
    assert value(first, "postgres_connection_reused") == 0
    assert values(first, "postgres_connect_seconds")
    pid = first.details["backend_pid"]
    # the pooled session is the server's, read-only, with the statement timeout set
    row = await admin.fetchrow("SELECT application_name FROM pg_stat_activity WHERE pid = $1",
                               pid)
    assert row is not None and row["application_name"] == "wardwatch"
    second = await probe(check, memory)
    third = await probe(check, memory)
    for later in (second, third):
        assert later.details == {**later.details, "connection": "reused", "backend_pid": pid}
        assert value(later, "postgres_connection_reused") == 1
        assert not values(later, "postgres_connect_seconds")   # no login this run
    backends = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "application_name = 'wardwatch' AND pid = $1", pid)
    assert backends == 1
    assert third.details["version"].startswith("15.")
    assert value(third, "postgres_version_info", version=third.details["version"]) == 1
    assert value(third, "postgres_database_size_bytes", database="test") > 0
    assert {m.name for m in third.metrics} <= set(METRICS)
    assert get_kind("postgres").remembers and get_kind("postgres").config is PostgresCheck


async def test_pool_dropped_after_a_lost_connection(admin: asyncpg.Connection,
                                                    memory: ProbeMemory) -> None:
    check = pg_check(checks=["connect"])
    first = await probe(check, memory)
    pid = first.details["backend_pid"]
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    # asyncpg notices the closed socket: the next run logs in again, no false alarm
    again = await probe(check, memory)
    assert again.status is Status.OK, again.summary
    assert again.details["connection"] == "new" and again.details["backend_pid"] != pid


async def test_closed_port_unknown_role_missing_database_dns(memory: ProbeMemory) -> None:
    needs(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    closed = await probe(pg_check(dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test"),
                         memory)
    assert (closed.status, closed.reason) == (Status.CRITICAL, "connect_refused")
    assert "refused the connection" in closed.summary and "pool" not in memory.resources
    role = unique("ww_nobody")
    nobody = await probe(pg_check(dsn=f"postgresql://{role}@127.0.0.1:5432/test"),
                         ProbeMemory())
    assert (nobody.status, nobody.reason) == (Status.CRITICAL, "auth_failed")
    assert f'login as {role} refused (28000: role "{role}" does not exist)' in nobody.summary
    db = unique("ww_nodb")
    missing = await probe(pg_check(dsn=f"postgresql://postgres@127.0.0.1:5432/{db}"),
                          ProbeMemory())
    assert (missing.status, missing.reason) == (Status.CRITICAL, "database_missing")
    assert f"database {db} does not exist" in missing.summary
    dns = await probe(pg_check(dsn="postgresql://postgres@no-such-host.invalid/test"),
                      ProbeMemory())
    assert (dns.status, dns.reason) == (Status.CRITICAL, "dns_failed")


async def test_wrong_password_never_leaks(tmp_path: Path) -> None:
    """This machine trusts 127.0.0.1 (pg_hba), so a scripted server refuses the password the
    way PostgreSQL does (SQLSTATE 28P01) and records what it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length, code = struct.unpack("!ii", await reader.readexactly(8))
        if code == 80877103:                       # SSLRequest: no TLS here
            writer.write(b"N")
            length, code = struct.unpack("!ii", await reader.readexactly(8))
        await reader.readexactly(length - 8)       # startup parameters
        writer.write(b"R" + struct.pack("!ii", 8, 3))   # AuthenticationCleartextPassword
        _kind, length = struct.unpack("!ci", await reader.readexactly(5))
        received.append(await reader.readexactly(length - 4))
        fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user " \
                 b"\"monitor\"\0\0"
        writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = "Wr0ng-" + uuid.uuid4().hex
    (tmp_path / "pw").write_text(secret + "\n")
    async with server:
        res = await probe(pg_check(dsn=f"postgresql://monitor@127.0.0.1:{port}/his",
                                   password_file=tmp_path / "pw", checks=["connect"]),
                          ProbeMemory())
    assert received == [secret.encode() + b"\0"]      # the probe did send the password
    assert (res.status, res.reason) == (Status.CRITICAL, "auth_failed")
    assert res.summary == (f"postgres monitor@127.0.0.1:{port}/his: login as monitor refused "
                           "(28P01: password authentication failed for user \"monitor\")")
    assert secret not in res.model_dump_json()


async def test_server_that_never_answers_is_cut(hung_port: int) -> None:
    check = pg_check(dsn=f"postgresql://postgres@127.0.0.1:{hung_port}/test", timeout=1,
                     interval=5)
    started = time.perf_counter()
    res = await run_check(check, "a1")
    assert time.perf_counter() - started < 1.5
    assert res.status is Status.CRITICAL and res.reason in {"connect_error", "timeout"}


async def test_slow_query_cut_by_statement_timeout(memory: ProbeMemory) -> None:
    needs(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    check = pg_check(timeout=1, interval=5, checks=["connect"],
                     queries=[{"name": "slow", "sql": "SELECT pg_sleep(3) AS slept"}])
    started = time.perf_counter()
    res = await run_check(check, "a1", memory)
    assert time.perf_counter() - started < 1.2
    assert (res.status, res.reason) == (Status.CRITICAL, "slow_query"), res.summary
    assert "query slow: query cut by statement_timeout (0.8s)" in res.summary
    # the connection survives a cancelled statement and is reused
    again = await probe(pg_check(timeout=1, interval=5, checks=["connect"]), memory)
    assert again.status is Status.OK and again.details["connection"] == "reused"


def test_config_rejects_inline_password_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        pg_check(dsn="postgresql://monitor:Sup3rSecret@db1/his")
    assert "dsn must not carry a password" in str(caught.value)
    assert "Sup3rSecret" not in str(caught.value)
    with pytest.raises(ValidationError, match="must be a postgresql://"):
        pg_check(dsn="mysql://db1/his")
    with pytest.raises(ValidationError, match="statement_timeout must be below timeout"):
        pg_check(timeout=5, statement_timeout=5)
    assert pg_check(dsn="postgresql://mon@db1:6432/his?sslmode=require").target == \
        "mon@db1:6432/his"


# --- pg_cron ------------------------------------------------------------------------------------

async def schedule(admin: asyncpg.Connection, name: str, spec: str, command: str) -> int:
    return int(await admin.fetchval("SELECT cron.schedule($1, $2, $3)", name, spec, command))


async def unschedule(admin: asyncpg.Connection, jobid: int) -> None:
    await admin.execute("DELETE FROM cron.job_run_details WHERE jobid = $1", jobid)
    await admin.execute("SELECT cron.unschedule($1::bigint)", jobid)


async def add_run(admin: asyncpg.Connection, jobid: int, status: str, minutes_ago: float,
                  message: str) -> None:
    """A finished run as pg_cron records it (the real table, a real job)."""
    await admin.execute(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, "
        "status, return_message, start_time, end_time) SELECT jobid, 4242, database, "
        "username, command, $2, $3, now() - make_interval(secs => $4 * 60 + 1), "
        "now() - make_interval(secs => $4 * 60) FROM cron.job WHERE jobid = $1",
        jobid, status, message, minutes_ago)


@pytest.mark.usefixtures("cron")
async def test_cron_job_failures_since_last_run(admin: asyncpg.Connection,
                                                memory: ProbeMemory) -> None:
    name = unique("HIS.NIGHTLY_SETTLE")
    # scheduled for 31 February: pg_cron itself never runs it during the test
    jobid = await schedule(admin, name, "0 0 31 2 *", "SELECT settle_day()")
    try:
        check = pg_check(checks=["connect", "cron"])
        await add_run(admin, jobid, "succeeded", 300, "1 row")
        await add_run(admin, jobid, "failed", 120, 'ERROR:  relation "settle_tmp" does '
                      "not exist\nLINE 1: ...")
        await add_run(admin, jobid, "failed", 60, "ERROR:  deadlock detected\nDETAIL: ...")
        first = await probe(check, memory)
        assert (first.status, first.reason) == (Status.CRITICAL, "job_failed"), first.summary
        since = time.strftime("%H:%M", time.localtime(time.time() - 120 * 60))
        assert f"job {name} failed 2 times since" in first.summary
        assert ": ERROR: deadlock detected" in first.summary   # newest message, first line
        assert since in first.summary or "-" in first.summary.split("since ")[1][:6]
        assert value(first, "postgres_cron_job_failures", job=name) == 2
        # still failing (no success since), but no new failure since the previous run
        second = await probe(check, memory)
        assert second.reason == "job_failed"
        assert value(second, "postgres_cron_job_failures", job=name) == 0
        await add_run(admin, jobid, "succeeded", 0.5, "1 row")
        healed = await probe(check, memory)
        assert healed.status is Status.OK, healed.summary
        assert value(healed, "postgres_cron_job_last_success_timestamp_seconds", job=name) \
            == pytest.approx(time.time() - 30, abs=30)
        # a failure and a success between two runs: a warning, once
        await add_run(admin, jobid, "failed", 0.3, "ERROR:  canceling statement")
        await add_run(admin, jobid, "succeeded", 0.2, "1 row")
        flapped = await probe(check, memory)
        assert (flapped.status, flapped.reason) == (Status.WARNING, "job_failed")
        assert "failed 1 time since" in flapped.summary and "succeeded since" in flapped.summary
        assert (await probe(check, memory)).status is Status.OK
    finally:
        await unschedule(admin, jobid)


@pytest.mark.usefixtures("cron")
async def test_cron_max_age_and_missing_job(admin: asyncpg.Connection) -> None:
    name = unique("HIS.ARCHIVE")
    jobid = await schedule(admin, name, "0 0 31 2 *", "SELECT 1")
    try:
        await add_run(admin, jobid, "succeeded", 600, "1 row")
        gone = unique("HIS.GONE")
        res = await probe(pg_check(checks=["cron"], cron={"max_age": {name: "2h", gone: "1d"}}),
                          ProbeMemory())
        assert res.reason in {"job_failed", "job_missing"} and res.status is Status.CRITICAL
        assert f"job {name} last succeeded 10.0h ago (max_age 2.0h)" in res.summary
        assert f"job {gone} is not scheduled in cron.job" in res.summary
    finally:
        await unschedule(admin, jobid)


@pytest.mark.usefixtures("cron")
async def test_real_pg_cron_run_that_fails(admin: asyncpg.Connection) -> None:
    """pg_cron 1.4 schedules by the minute: this waits for the next minute's run (≤ 60 s)."""
    name, table = unique("ww_live"), unique("ww_missing")
    failed = asyncio.Event()
    channel = unique("ww_cron")
    listener = await asyncpg.connect(POSTGRES_URL)
    trigger = unique("ww_notify")
    await admin.execute(f"""
        CREATE FUNCTION public.{trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{channel}', NEW.status); RETURN NEW; END $$;
        CREATE TRIGGER {trigger} AFTER UPDATE ON cron.job_run_details FOR EACH ROW
          WHEN (NEW.status = 'failed' AND NEW.command LIKE '%{table}%')
          EXECUTE FUNCTION public.{trigger}();""")
    await listener.add_listener(channel, lambda *_: failed.set())
    jobid = await schedule(admin, name, "* * * * *", f"INSERT INTO {table} VALUES (1)")
    try:
        memory = ProbeMemory()
        check = pg_check(checks=["cron"], cron={"lookback": "10m"})
        before = await probe(check, memory)
        assert before.status is Status.OK, before.summary
        async with asyncio.timeout(75):
            await failed.wait()
        res = await probe(check, memory)
        await memory.aclose()
    finally:
        await admin.execute(f"DROP TRIGGER {trigger} ON cron.job_run_details; "
                            f"DROP FUNCTION public.{trigger}()")
        await listener.close()
        await unschedule(admin, jobid)
    assert (res.status, res.reason) == (Status.CRITICAL, "job_failed"), res.summary
    assert f'job {name} failed 1 time since' in res.summary
    assert f'ERROR: relation "{table}" does not exist' in res.summary


# --- a read-only monitoring role ---------------------------------------------------------------

@pytest.fixture
async def monitor_role(admin: asyncpg.Connection) -> AsyncIterator[str]:
    role = unique("ww_monitor")
    await admin.execute(f"CREATE ROLE {role} LOGIN; GRANT pg_monitor TO {role}")
    try:
        yield role
    finally:
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


@pytest.mark.usefixtures("cron")
async def test_monitoring_role_with_documented_grants(admin: asyncpg.Connection,
                                                      monitor_role: str) -> None:
    role = monitor_role
    name = unique("HIS.NIGHTLY")
    jobid = await schedule(admin, name, "0 0 31 2 *", "SELECT 1")
    try:
        await add_run(admin, jobid, "failed", 5, "ERROR:  boom")
        check = pg_check(dsn=f"postgresql://{role}@127.0.0.1:5432/test",
                         checks=["connect", "size", "replication", "cron"])
        # pg_monitor alone: no USAGE on schema cron
        res = await probe(check, ProbeMemory())
        assert (res.status, res.reason) == (Status.UNKNOWN, "permission_denied"), res.summary
        assert f"GRANT USAGE ON SCHEMA cron TO {role}" in res.summary
        await admin.execute(f"GRANT USAGE ON SCHEMA cron TO {role}; "
                            f"GRANT SELECT ON cron.job, cron.job_run_details TO {role}")
        # pg_cron's row-level security would hide the failure: said, not silently ok
        res = await probe(check, ProbeMemory())
        assert (res.status, res.reason) == (Status.UNKNOWN, "permission_denied"), res.summary
        assert f"ALTER ROLE {role} BYPASSRLS" in res.summary
        await admin.execute(f"ALTER ROLE {role} BYPASSRLS")
        res = await probe(check, ProbeMemory())
        assert (res.status, res.reason) == (Status.CRITICAL, "job_failed"), res.summary
        assert value(res, "postgres_database_size_bytes", database="postgres") > 0
        # and it cannot write, even through a custom query
        write = await probe(pg_check(dsn=check.dsn, checks=["connect"], queries=[
            {"name": "sneaky", "sql": "DELETE FROM cron.job_run_details RETURNING 1"}]),
            ProbeMemory())
        assert (write.status, write.reason) == (Status.CRITICAL, "query_failed")
        assert "25006" in write.summary    # read_only_sql_transaction
        assert await admin.fetchval("SELECT count(*) FROM cron.job_run_details WHERE jobid = $1",
                                    jobid) == 1
    finally:
        await unschedule(admin, jobid)


async def test_views_for_a_role_without_bypassrls(admin: asyncpg.Connection,
                                                  monitor_role: str, cron: None) -> None:
    role, schema = monitor_role, unique("ww_cronview")
    name = unique("HIS.VIEWED")
    jobid = await schedule(admin, name, "0 0 31 2 *", "SELECT 1")
    await admin.execute(f"""
        CREATE SCHEMA {schema};
        CREATE VIEW {schema}.job AS SELECT jobid, jobname, schedule, active FROM cron.job;
        CREATE VIEW {schema}.job_run_details AS
          SELECT jobid, runid, status, return_message, start_time, end_time
          FROM cron.job_run_details;
        GRANT USAGE ON SCHEMA {schema} TO {role};
        GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};""")
    try:
        await add_run(admin, jobid, "failed", 5, "ERROR:  boom")
        res = await probe(pg_check(dsn=f"postgresql://{role}@127.0.0.1:5432/test",
                                   checks=["cron"], cron={"schema_name": schema}),
                          ProbeMemory())
        assert (res.status, res.reason) == (Status.CRITICAL, "job_failed"), res.summary
        assert f"job {name} failed 1 time since" in res.summary
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await unschedule(admin, jobid)


async def test_cron_asked_where_pg_cron_is_absent(admin: asyncpg.Connection) -> None:
    db = unique("ww_nocron")
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        res = await probe(pg_check(dsn=f"postgresql://postgres@127.0.0.1:5432/{db}",
                                   checks=["cron"]), ProbeMemory())
    finally:
        await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
    assert (res.status, res.reason) == (Status.UNKNOWN, "not_configured"), res.summary
    assert "no cron.job_run_details in this database" in res.summary


# --- custom queries, size growth ----------------------------------------------------------------

async def test_custom_queries_metrics_labels_thresholds(admin: asyncpg.Connection) -> None:
    table = unique("ww_queue")
    await admin.execute(f"CREATE TABLE {table} (ward text, waiting int, oldest_s float8); "
                        f"INSERT INTO {table} VALUES ('ICU', 3, 40), ('ER', 12, 900)")
    try:
        query = {"name": "lab_queue", "sql": f"SELECT ward, waiting, oldest_s FROM {table}",
                 "labels": ["ward"], "thresholds": {"waiting": {"warning": 10,
                                                                "critical": 50},
                                                    "oldest_s": {"critical": 600}}}
        res = await probe(pg_check(checks=["connect"], queries=[query]), ProbeMemory())
        assert (res.status, res.reason) == (Status.CRITICAL, "query_threshold")
        assert "query lab_queue: oldest_s=900 (ward=ER) ≥ 600" in res.summary
        assert "query lab_queue: waiting=12 (ward=ER) ≥ 10" in res.summary
        assert res.summary.index("oldest_s") < res.summary.index("waiting=")   # worst first
        assert value(res, "postgres_query_value", query="lab_queue", column="waiting",
                     ward="ICU") == 3
        assert value(res, "postgres_query_rows", query="lab_queue") == 2
        bad = await probe(pg_check(checks=["connect"], queries=[
            {"name": "typo", "sql": f"SELECT nope FROM {table}"},
            {"name": "text", "sql": f"SELECT ward FROM {table}", "metrics": ["ward"]}]),
            ProbeMemory())
        assert (bad.status, bad.reason) == (Status.CRITICAL, "query_failed")
        assert "query typo: 42703: column \"nope\" does not exist" in bad.summary
        assert "query text: column ward is not a number" in bad.summary
    finally:
        await admin.execute(f"DROP TABLE {table}")


async def test_size_growth_between_runs(admin: asyncpg.Connection,
                                        memory: ProbeMemory) -> None:
    db = unique("ww_grow")
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        check = pg_check(checks=["size"], size={"databases": [db],
                                                "growth_per_day": {"warning": 1}})
        first = await probe(check, memory)
        assert first.status is Status.OK and not values(
            first, "postgres_database_growth_bytes_per_day")
        grower = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}")
        try:
            await grower.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad "
                                 "FROM generate_series(1, 5000) g")
        finally:
            await grower.close()
        second = await probe(check, memory)
        assert (second.status, second.reason) == (Status.WARNING, "size_growth"), second.summary
        assert value(second, "postgres_database_growth_bytes_per_day", database=db) > 0
        missing = await probe(pg_check(checks=["size"], size={"databases": ["ww_absent_db"]}),
                              ProbeMemory())
        assert missing.reason == "database_missing"
    finally:
        await memory.aclose()
        await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")


# --- replication --------------------------------------------------------------------------------

def replication_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def decide(state: PgReplicationState, **settings: Any) -> Findings:
    findings = Findings()
    evaluate_replication(state, PgReplicationSettings.model_validate(settings), findings)
    return findings


def test_replication_primary_rows() -> None:
    rows = replication_fixture("replication-primary.json")
    healthy = decide(PgReplicationState(False, rows["healthy"]), role="primary")
    assert healthy.causes == []
    assert {(m.labels.get("replica"), m.value) for m in healthy.metrics
            if m.name == "postgres_replication_lag_seconds"} == {("his-standby-1", 0.42),
                                                                  ("his-standby-2", 0.0)}
    bad = decide(PgReplicationState(False, rows["lagging_and_catchup"]))
    assert [(c.status, c.reason, c.text) for c in bad.causes] == [
        (Status.CRITICAL, "replication_lag", "standby his-standby-1 replay lag 7m"),
        (Status.WARNING, "replication_lag", "standby his-standby-2 catching up")]
    startup = decide(PgReplicationState(False, rows["startup"]))
    assert [(c.reason, c.text) for c in startup.causes] == [
        ("replication_broken", "standby 10.1.2.24 is startup, not streaming")]
    none = decide(PgReplicationState(False, []), role="primary")
    assert [c.text for c in none.causes] == ["no standby connected"]


def test_replication_standby_rows() -> None:
    rows = replication_fixture("replication-standby.json")

    def standby(case: str, **settings: Any) -> Findings:
        row = rows[case]
        return decide(PgReplicationState(True, [], row["receiver_status"], row["replay_lag"]),
                      **settings)

    assert standby("streaming", role="replica").causes == []
    assert [(c.status, c.text) for c in standby("lagging").causes] == [
        (Status.WARNING, "standby replay lag 95s")]
    broken = standby("no_receiver")
    assert [(c.reason, c.text) for c in broken.causes] == [
        ("replication_broken", "standby not streaming (WAL receiver not running)"),
        ("replication_lag", "standby replay lag 60m")]
    assert standby("stopping", role="primary").causes[0].text == \
        "expected a primary, this server is a standby"


async def test_live_server_without_replication(admin: asyncpg.Connection) -> None:
    anyrole = await probe(pg_check(checks=["replication"]), ProbeMemory())
    assert anyrole.status is Status.OK
    assert anyrole.details["replication"] == "no standby connected"
    assert value(anyrole, "postgres_in_recovery") == 0
    replica = await probe(pg_check(checks=["replication"], replication={"role": "replica"}),
                          ProbeMemory())
    assert (replica.status, replica.reason) == (Status.CRITICAL, "replication_broken")
    assert "not a standby: no replication configured on this server" in replica.summary


# --- pgBackRest ---------------------------------------------------------------------------------

def recorded_info(name: str, now: float, *, full_age: float, newest_age: float) -> Any:
    """The recorded JSON with stop times moved relative to `now`."""
    document = json.loads((FIXTURES / name).read_text())
    backups = document[0]["backup"]
    if backups:
        stops = [full_age, full_age / 2, newest_age]
        for backup, age in zip(backups, stops, strict=True):
            backup["timestamp"]["stop"] = int(now - age)
            backup["timestamp"]["start"] = int(now - age - 60)
    return document


@pytest.fixture
def fake_pgbackrest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `pgbackrest` on PATH that prints $FAKE_PGBACKREST_JSON and logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pgbackrest"
    script.write_text('#!/bin/sh\necho "$@" >> "$FAKE_PGBACKREST_ARGS"\n'
                      'if [ -n "$FAKE_PGBACKREST_FAIL" ]; then\n'
                      '  echo "ERROR: [103]: unable to find a valid repository" >&2; exit 103\n'
                      'fi\ncat "$FAKE_PGBACKREST_JSON"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PGBACKREST_ARGS", str(tmp_path / "args"))
    return tmp_path


async def test_pgbackrest_through_a_real_subprocess(fake_pgbackrest: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    doc = fake_pgbackrest / "info.json"
    monkeypatch.setenv("FAKE_PGBACKREST_JSON", str(doc))
    check = pg_check(checks=["pgbackrest"], pgbackrest={"stanza": "his"})
    doc.write_text(json.dumps(recorded_info("pgbackrest-info-ok.json", now,
                                            full_age=3 * 86400, newest_age=3600)))
    ok = await probe(check, ProbeMemory())
    assert (ok.status, ok.reason) == (Status.OK, "ok"), ok.summary
    assert "pgbackrest his: last backup 20261122-010001F_20261126-010003I 60m ago" in ok.summary
    assert (fake_pgbackrest / "args").read_text().split() == ["--output=json", "--stanza=his",
                                                              "info"]
    assert value(ok, "postgres_backup_last_success_timestamp_seconds", stanza="his",
                 type="incr") == int(now - 3600)
    assert value(ok, "postgres_backup_size_bytes", stanza="his", type="full") == 31457280
    doc.write_text(json.dumps(recorded_info("pgbackrest-info-ok.json", now,
                                            full_age=10 * 86400, newest_age=2 * 86400)))
    stale = await probe(check, ProbeMemory())
    assert (stale.status, stale.reason) == (Status.CRITICAL, "backup_stale")
    assert "newest backup 20261122-010001F_20261126-010003I is 2.0d old (max_age 26.0h)" \
        in stale.summary
    assert "newest full backup is 10.0d old" in stale.summary
    doc.write_text((FIXTURES / "pgbackrest-info-error.json").read_text())
    failed = await probe(check, ProbeMemory())
    assert (failed.status, failed.reason) == (Status.CRITICAL, "backup_failed")
    assert "pgbackrest stanza his: missing stanza path (code 1)" in failed.summary
    monkeypatch.setenv("FAKE_PGBACKREST_FAIL", "1")
    broken = await probe(check, ProbeMemory())
    assert broken.reason == "backup_failed"
    assert "pgbackrest info exited 103: ERROR: [103]: unable to find a valid repository" \
        in broken.summary
    absent = await probe(pg_check(checks=["pgbackrest"],
                                  pgbackrest={"binary": "/nonexistent/pgbackrest"}),
                         ProbeMemory())
    assert (absent.status, absent.reason) == (Status.UNKNOWN, "probe_error")


def test_pgbackrest_checksum_error_and_other_stanza() -> None:
    now = time.time()
    document = recorded_info("pgbackrest-info-ok.json", now, full_age=86400, newest_age=600)
    flagged = copy.deepcopy(document)
    flagged[0]["backup"][2]["error"] = True
    findings = Findings()
    evaluate_pgbackrest(flagged, PgBackRestSettings(), now, findings)
    assert [(c.reason, c.text) for c in findings.causes] == [
        ("backup_failed", "pgbackrest backup 20261122-010001F_20261126-010003I has page "
                          "checksum errors")]
    findings = Findings()
    evaluate_pgbackrest(document, PgBackRestSettings(stanza="lis"), now, findings)
    assert [c.text for c in findings.causes] == ["pgbackrest: no stanza lis"]
