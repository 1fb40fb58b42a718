"""Upgrades: every Alembic migration is reversible, on SQLite and on PostgreSQL.

The store runs `upgrade head` when it opens (collector.store.Store.migrate); this walks the
whole chain down to `base` and up again, and checks that the schema the migrations build is
the one collector/schema.py describes — so an upgrade leaves the same tables a fresh install
has, and a downgrade leaves nothing behind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import collector.store
from collector.schema import metadata
from collector.store import Store

MIGRATIONS = Path(collector.store.__file__).parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names()) - {"alembic_version"}


def _revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _drift(connection: sa.Connection) -> list[Any]:
    """Differences between the migrated database and collector/schema.py (tables, columns,
    indexes, constraints; not server defaults, which the schema leaves to the code)."""
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, metadata))


def _walk(connection: sa.Connection) -> dict[str, Any]:
    cfg = _config(connection)
    seen: dict[str, Any] = {"head": _revision(connection), "tables": _tables(connection),
                            "drift_head": _drift(connection)}
    # one step at a time, so a broken downgrade is named by its revision
    steps = [s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()]
    for revision in steps:
        assert _revision(connection) == revision
        command.downgrade(cfg, "-1")
    seen["base_revision"] = _revision(connection)
    seen["base_tables"] = _tables(connection)
    command.upgrade(cfg, "head")
    seen["again"] = _revision(connection)
    seen["again_tables"] = _tables(connection)
    seen["drift_again"] = _drift(connection)
    seen["steps"] = steps
    return seen


async def test_every_migration_downgrades_and_upgrades_again(store_url: str) -> None:
    store = await Store.open(store_url)   # upgrade head, as the collector does on start
    try:
        async with store.engine.begin() as conn:
            seen = await conn.run_sync(_walk)
    finally:
        await store.close()
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert seen["head"] == head
    assert seen["tables"] == set(metadata.tables)
    assert seen["drift_head"] == []
    assert seen["base_revision"] is None
    assert seen["base_tables"] == set(), "a downgrade left tables behind"
    assert seen["again"] == head
    assert seen["again_tables"] == set(metadata.tables)
    assert seen["drift_again"] == []
    assert len(seen["steps"]) >= 8


async def test_store_opens_again_after_a_round_trip(store_url: str) -> None:
    """A downgraded-and-upgraded database is a working store (the data path, not just DDL)."""
    store = await Store.open(store_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "base"))
    finally:
        await store.close()
    store = await Store.open(store_url)
    try:
        token = await store.add_agent("round-trip", datetime.now(UTC))
        assert await store.authenticate(token) == "round-trip"
    finally:
        await store.close()
