"""The audit trails are append-only and tamper-evident (collector/auditchain.py), on SQLite and
on the machine's PostgreSQL: rows written through the real code paths (the web UI's audit log,
maintenance add/cancel) verify; an edited, deleted or re-ordered row is named by `audit
verify`, even after the append-only triggers were dropped; the triggers refuse edits; two
stores appending at once still build one chain; rows older than the chain get chained by the
migration."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.config import Config

import collector.store
from collector.auditchain import GENESIS, ChainReport, heads, row_hash, verify_all
from collector.config import UiConfig
from collector.schema import audit_log, maintenance_audit
from collector.store import Store
from collector.web.accounts import Accounts

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 5, 1, 8, 0, 0, 123456, tzinfo=CST)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def accounts(store: Store) -> AsyncIterator[Accounts]:
    yield Accounts(store, UiConfig())


async def write_entries(accounts: Accounts, n: int, *, first: int = 0) -> None:
    for i in range(first, first + n):
        await accounts.audit(at=at(i), user="王工" if i % 2 else None, action="incident_ack",
                             target=f"INC-2026-{i:04d}",
                             detail={"note": "远程处理中", "n": i, "path": ("a", "b")},
                             address="10.0.0.7")


async def write_windows(store: Store, n: int) -> None:
    for i in range(n):
        window = await store.add_maintenance(
            system="EMR", start=at(3600 * i), end=at(3600 * i + 600), kind="planned",
            reason=f"补丁 {i}", approved_by="信息科 张主任", by="vendor-li", now=at(i))
        if i % 2:
            await store.cancel_maintenance(window.id, by="hospital-wang", now=at(i + 1))


async def reports(store: Store) -> dict[str, ChainReport]:
    found, missing = await verify_all(store.engine)
    assert missing == []
    return {r.table: r for r in found}


async def ids(store: Store, table: sa.Table) -> list[int]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(sa.select(table.c.id).order_by(table.c.id))).scalars())


async def raw(store: Store, *statements: str) -> None:
    async with store.engine.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def drop_triggers(store: Store, table: str) -> None:
    """What someone with write access to the database can do before tampering."""
    on = f" ON {table}" if store.dialect == "postgresql" else ""
    await raw(store, f"DROP TRIGGER {table}_no_update{on}",
              f"DROP TRIGGER {table}_no_delete{on}")


async def test_entries_written_by_the_real_code_paths_verify(store: Store,
                                                             accounts: Accounts) -> None:
    await write_entries(accounts, 5)
    await write_windows(store, 3)   # 3 created, 1 cancelled
    found = await reports(store)
    assert found["audit_log"].ok and found["audit_log"].rows == 5
    assert found["maintenance_audit"].ok and found["maintenance_audit"].rows == 4
    assert found["audit_log"].line().startswith("audit_log: OK, 5 rows, head ")
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log).order_by(audit_log.c.id))).mappings().all()
    assert rows[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert rows[1]["detail"] == {"note": "远程处理中", "n": 1, "path": ["a", "b"]}
    assert await heads(store.engine) == {"audit_log": rows[-1]["hash"],
                                         "maintenance_audit": found["maintenance_audit"].head}


def test_the_hash_covers_every_field_and_the_link_and_not_the_zone() -> None:
    row = {"at": T0, "username": "王工", "action": "login", "target": "王工",
           "detail": {"b": 1, "a": [1, 2]}, "address": None, "prev_hash": GENESIS}
    digest = row_hash("audit_log", row)
    assert row_hash("audit_log", {**row, "at": T0.astimezone(UTC)}) == digest
    assert row_hash("audit_log", {**row, "detail": {"a": [1, 2], "b": 1}}) == digest
    for name, other in (("at", T0 + timedelta(microseconds=1)), ("username", None),
                        ("detail", {"b": 1, "a": [2, 1]}), ("prev_hash", "1" * 64)):
        assert row_hash("audit_log", {**row, name: other}) != digest, name
    assert row_hash("maintenance_audit", row) != digest
    with pytest.raises(ValueError, match="naive"):
        row_hash("audit_log", {**row, "at": T0.replace(tzinfo=None)})


@pytest.mark.parametrize("table", [audit_log, maintenance_audit], ids=lambda t: t.name)
async def test_the_triggers_refuse_update_and_delete(store: Store, accounts: Accounts,
                                                     table: sa.Table) -> None:
    await write_entries(accounts, 2)
    await write_windows(store, 2)
    for statement in (f"UPDATE {table.name} SET action = 'login' WHERE id = 1",
                      f"DELETE FROM {table.name} WHERE id = 1"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            await raw(store, statement)
    found = await reports(store)
    rows = {"audit_log": 2, "maintenance_audit": 3}   # 2 windows created, 1 cancelled
    assert found[table.name].ok and found[table.name].rows == rows[table.name]


@pytest.mark.parametrize(("table", "edit"), [
    (audit_log, "SET target = 'INC-2026-9999'"),
    (audit_log, "SET detail = '{\"note\": \"已处理\", \"n\": 2, \"path\": [\"a\", \"b\"]}'"),
    (maintenance_audit, "SET by = 'someone-else'"),
], ids=["audit_log.target", "audit_log.detail", "maintenance_audit.by"])
async def test_an_edited_row_is_named(store: Store, accounts: Accounts, table: sa.Table,
                                      edit: str) -> None:
    await write_entries(accounts, 4)
    await write_windows(store, 4)
    await drop_triggers(store, table.name)
    victim = (await ids(store, table))[2]
    await raw(store, f"UPDATE {table.name} {edit} WHERE id = {victim}")
    found = await reports(store)
    broken = found[table.name].broken
    assert broken is not None and (broken.row_id, broken.kind) == (victim, "edited")
    assert found[table.name].rows == 2   # the rows before it still verify
    assert f"BROKEN at row id {victim} (edited)" in found[table.name].line()
    other = "maintenance_audit" if table is audit_log else "audit_log"
    assert found[other].ok


@pytest.mark.parametrize("edit", ["detail = '{not json'", "at = 'yesterday'"])
async def test_a_value_that_does_not_parse_is_an_edited_row(tmp_path: Path, edit: str) -> None:
    """SQLite stores any text (PostgreSQL refuses malformed JSON and times itself)."""
    store = await Store.open(f"sqlite:///{tmp_path}/c.db")
    try:
        await write_entries(Accounts(store, UiConfig()), 3)
        await drop_triggers(store, "audit_log")
        await raw(store, f"UPDATE audit_log SET {edit} WHERE id = 2")
        broken = (await reports(store))["audit_log"].broken
        assert broken is not None and (broken.row_id, broken.kind) == (2, "edited")
        assert "does not read back" in broken.detail
    finally:
        await store.close()


@pytest.mark.parametrize("table", [audit_log, maintenance_audit], ids=lambda t: t.name)
async def test_a_deleted_middle_row_is_a_gap(store: Store, accounts: Accounts,
                                             table: sa.Table) -> None:
    await write_entries(accounts, 5)
    await write_windows(store, 4)
    await drop_triggers(store, table.name)
    stored = await ids(store, table)
    await raw(store, f"DELETE FROM {table.name} WHERE id = {stored[2]}")
    found = (await reports(store))[table.name]
    assert found.broken is not None
    assert (found.broken.row_id, found.broken.kind) == (stored[3], "deleted")
    assert f"between row id {stored[1]} and row id {stored[3]}" in found.broken.detail


async def test_deleting_the_first_row_is_a_gap_at_the_start(store: Store,
                                                            accounts: Accounts) -> None:
    await write_entries(accounts, 3)
    await drop_triggers(store, "audit_log")
    await raw(store, "DELETE FROM audit_log WHERE id = 1")
    broken = (await reports(store))["audit_log"].broken
    assert broken is not None and (broken.row_id, broken.kind) == (2, "deleted")
    assert "the chain's start" in broken.detail


async def test_reordered_rows_are_named(store: Store, accounts: Accounts) -> None:
    await write_entries(accounts, 4)
    await drop_triggers(store, "audit_log")
    # swap rows 2 and 3 (contents and hashes untouched, only their place)
    await raw(store, "UPDATE audit_log SET id = -2 WHERE id = 2",
              "UPDATE audit_log SET id = 2 WHERE id = 3",
              "UPDATE audit_log SET id = 3 WHERE id = -2")
    broken = (await reports(store))["audit_log"].broken
    assert broken is not None and (broken.row_id, broken.kind) == (2, "reordered")
    assert "chained after row id 3, but is stored after row id 1" in broken.detail


async def test_concurrent_appends_from_two_stores_keep_one_chain(store_url: str) -> None:
    """Two collectors on one database (each with its own in-process lock): the chain lock is
    the database's, so no two rows ever follow the same one."""
    first, second = await Store.open(store_url), await Store.open(store_url)
    try:
        writers = [Accounts(first, UiConfig()), Accounts(second, UiConfig())]
        await asyncio.gather(
            *(writers[i % 2].audit(at=at(i), user=f"u{i}", action="login", target=f"u{i}")
              for i in range(60)),
            *((first, second)[i % 2].add_maintenance(
                system="EMR", start=at(0), end=at(60), kind="planned", reason=f"r{i}",
                approved_by="a", by=f"b{i}", now=at(i)) for i in range(20)))
        found = await reports(first)
        assert (found["audit_log"].ok, found["audit_log"].rows) == (True, 60)
        assert (found["maintenance_audit"].ok, found["maintenance_audit"].rows) == (True, 20)
        async with first.engine.connect() as conn:
            users = set((await conn.execute(sa.select(audit_log.c.username))).scalars())
        assert users == {f"u{i}" for i in range(60)}
    finally:
        await first.close()
        await second.close()


def _alembic(connection: sa.Connection, target: str, downgrade: bool) -> None:
    cfg = Config()
    cfg.set_main_option("script_location",
                        str(Path(collector.store.__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    (command.downgrade if downgrade else command.upgrade)(cfg, target)


async def test_rows_older_than_the_chain_are_chained_by_the_migration(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(_alembic, "0008", True)
        old_log = sa.table("audit_log", *(sa.column(c.name, c.type) for c in audit_log.c
                                          if c.name not in ("prev_hash", "hash")))
        old_trail = sa.table("maintenance_audit", *(
            sa.column(c.name, c.type) for c in maintenance_audit.c
            if c.name not in ("prev_hash", "hash")))
        async with store.engine.begin() as conn:
            await conn.execute(old_log.insert(), [
                {"at": at(i), "username": "王工", "action": "login", "target": "王工",
                 "detail": {"i": i}, "address": None} for i in range(3)])
            await conn.execute(sa.text(
                "INSERT INTO maintenance (system, start, \"end\", kind, reason, approved_by, "
                "created_at, created_by) VALUES ('EMR', :t, :t, 'planned', 'r', 'a', :t, 'b')"),
                {"t": T0.astimezone(UTC).replace(tzinfo=None)})
            await conn.execute(old_trail.insert(), [
                {"maintenance_id": 1, "action": "created", "at": at(0), "by": "b",
                 "record": {"reason": "r"}}])
        async with store.engine.begin() as conn:
            await conn.run_sync(_alembic, "head", False)
        found = await reports(store)
        assert (found["audit_log"].ok, found["audit_log"].rows) == (True, 3)
        assert (found["maintenance_audit"].ok, found["maintenance_audit"].rows) == (True, 1)
        # new rows continue the chain the migration started
        await write_entries(Accounts(store, UiConfig()), 2)
        found = await reports(store)
        assert (found["audit_log"].ok, found["audit_log"].rows) == (True, 5)
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            await raw(store, "DELETE FROM audit_log WHERE id = 1")   # triggers in place
    finally:
        await store.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def test_audit_verify_command(store: Store, accounts: Accounts, store_url: str,
                                    tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"store": store_url}))
    conf = ["--config", str(tmp_path / "c.yaml")]
    await write_entries(accounts, 4)
    await write_windows(store, 2)
    head = (await heads(store.engine))["audit_log"]

    ok = await asyncio.to_thread(cli, "audit", "verify", *conf, "--anchor", head)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == [f"audit_log: OK, 4 rows, head {head}",
                                      ok.stdout.splitlines()[1]]
    assert ok.stdout.splitlines()[1].startswith("maintenance_audit: OK, 3 rows, head ")

    # the newest row deleted: the chain is still whole, only the exported head tells
    await drop_triggers(store, "audit_log")
    await raw(store, "DELETE FROM audit_log WHERE id = 4")
    cut = await asyncio.to_thread(cli, "audit", "verify", *conf, "--anchor", head)
    assert cut.returncode == 1
    assert "audit_log: OK, 3 rows" in cut.stdout
    assert f"anchor {head}: not in any chain" in cut.stdout

    await raw(store, "UPDATE audit_log SET username = 'nobody' WHERE id = 2")
    edited = await asyncio.to_thread(cli, "audit", "verify", *conf)
    assert edited.returncode == 1
    assert "audit_log: BROKEN at row id 2 (edited)" in edited.stdout
    assert "maintenance_audit: OK, 3 rows" in edited.stdout
