"""The audit trails' hash chains: appending to `audit_log` and `maintenance_audit`, and
verifying them.

Each row carries `prev_hash` (the hash of the row before it; GENESIS for the first) and `hash`
= SHA-256 of the row's canonical encoding (`row_hash`): JSON with sorted keys, times as UTC
ISO 8601 with microseconds, of every column except `id` and `hash` (`prev_hash` included),
together with the table's name. Editing a row, deleting one or re-ordering them breaks the
chain, and `verify` names the first row where it breaks.

Appending reads the chain's head and inserts after it in the caller's transaction, under a
lock held to its end, so several collectors on one database never fork a chain: on
PostgreSQL a transaction-scoped advisory lock per table, on SQLite the database's write lock
taken before the head is read (a write that changes nothing; BEGIN IMMEDIATE in effect). A
unique `prev_hash` makes the database refuse a fork should a writer ever skip the lock.

What it does not protect against: anyone with write access to the database can recompute
the whole chain, and deleting the newest rows leaves a shorter chain that is still whole.
Both are caught only against a head hash kept elsewhere (`verify(..., anchors=...)`;
docs/security.md, "Audit trail").

Migrations that rebuild these tables on SQLite (Alembic batch mode) drop their append-only
triggers; such a migration must create them again (see migration 0009).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.schema import audit_log, maintenance_audit

GENESIS = "0" * 64
"""The `prev_hash` of each chain's first row."""

CHAINED: tuple[sa.Table, ...] = (audit_log, maintenance_audit)

_NOT_HASHED = frozenset({"id", "hash"})


def row_hash(table: str, row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a row's canonical encoding: every column given except `id` and
    `hash`; `prev_hash` must be among them."""
    if "prev_hash" not in row:
        raise ValueError("a chained row's hash covers its prev_hash")
    fields = {name: value for name, value in row.items() if name not in _NOT_HASHED}
    text = json.dumps({"table": table, "row": fields}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, default=_encode)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a chained row")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} is not stored in a chained row")


def lock_key(table: str) -> int:
    """The PostgreSQL advisory lock key of a chain (a signed 64-bit number)."""
    digest = hashlib.sha256(f"wardwatch.auditchain:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def append(conn: AsyncConnection, table: sa.Table, values: Mapping[str, Any]) -> str:
    """Insert `values` as the chain's newest row, in the caller's transaction; returns the
    row's hash. The chain stays locked until that transaction ends."""
    columns = [c for c in table.columns if c.name not in ("id", "prev_hash", "hash")]
    unknown = set(values) - {c.name for c in columns}
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    # JSON values as they will read back (tuples become lists, keys strings), so the hash
    # computed now is the one `verify` recomputes from the stored row
    row = {c.name: (json.loads(json.dumps(values.get(c.name)))
                    if isinstance(c.type, sa.JSON) else values.get(c.name))
           for c in columns}
    await _lock(conn, table)
    head = (await conn.execute(sa.select(table.c.hash).order_by(table.c.id.desc())
                               .limit(1))).scalar()
    row["prev_hash"] = head if head is not None else GENESIS
    row["hash"] = row_hash(table.name, row)
    await conn.execute(table.insert().values(**row))
    return str(row["hash"])


async def _lock(conn: AsyncConnection, table: sa.Table) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(table.name))))
        return
    # SQLite: a write statement takes the database's write lock for the rest of the
    # transaction (waiting out busy_timeout for another process's); it matches no row, so
    # the append-only trigger does not fire. The head read after it is then the newest.
    await conn.execute(table.update().where(sa.false()).values(hash=table.c.hash))


@dataclass(frozen=True)
class ChainBreak:
    row_id: int
    kind: str
    """`edited` (the row does not match its hash), `deleted` (the row it follows is gone: a
    gap in the chain) or `reordered` (it follows another row than the one stored before it)."""
    detail: str


@dataclass(frozen=True)
class ChainReport:
    table: str
    rows: int
    """Rows verified (up to the break, if any)."""
    head: str
    """Hash of the last row verified: what to keep elsewhere as evidence."""
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def line(self) -> str:
        if self.broken is None:
            return f"{self.table}: OK, {self.rows} rows, head {self.head}"
        b = self.broken
        return f"{self.table}: BROKEN at row id {b.row_id} ({b.kind}): {b.detail}"


async def verify(conn: AsyncConnection, table: sa.Table) -> ChainReport:
    """Walk one chain in id order; the report names the first broken row."""
    decode = {c.name: _reader(c, conn.dialect) for c in table.columns}
    # raw values, decoded row by row below: a value someone wrote by hand that does not
    # parse is a broken row to name, not a crash of the verification
    query = (sa.select(*(sa.type_coerce(c, sa.types.NullType()).label(c.name)
                         for c in table.columns)).order_by(table.c.id))
    expected, previous_id, count = GENESIS, None, 0
    broken: ChainBreak | None = None
    link: tuple[int, str] | None = None   # (row id, its prev_hash) where the links disagree
    stream = await conn.stream(query)
    try:
        async for partition in stream.mappings().partitions(1000):
            for raw in partition:
                row_id = int(raw["id"])
                try:
                    row = {name: decode[name](value) for name, value in raw.items()}
                    digest = row_hash(table.name, row)
                except (ValueError, TypeError) as exc:
                    broken = ChainBreak(row_id, "edited", f"a value does not read back ({exc})")
                    break
                if row["hash"] != digest:
                    broken = ChainBreak(row_id, "edited", "its contents do not match its hash")
                    break
                if row["prev_hash"] != expected:
                    link = (row_id, str(row["prev_hash"]))
                    break
                expected, previous_id, count = str(row["hash"]), row_id, count + 1
            if broken is not None or link is not None:
                break
    finally:
        await stream.close()
    if link is not None:
        # the lookup runs after the stream is closed: one statement at a time per connection
        broken = await _classify_link(conn, table, *link, previous_id)
    return ChainReport(table.name, count, expected, broken)


async def _classify_link(conn: AsyncConnection, table: sa.Table, row_id: int, prev_hash: str,
                         previous_id: int | None) -> ChainBreak:
    """A row whose prev_hash is not the hash of the row stored before it: re-ordered when
    another row has that hash, else the row it followed is gone."""
    before = "the chain's start" if previous_id is None else f"row id {previous_id}"
    follows = (await conn.execute(sa.select(table.c.id).where(table.c.hash == prev_hash)
                                  .order_by(table.c.id).limit(1))).scalar()
    if follows is not None:
        return ChainBreak(row_id, "reordered", f"it was chained after row id {follows}, but "
                          f"is stored after {before}")
    return ChainBreak(row_id, "deleted", f"the row chained before it is gone: rows deleted "
                      f"between {before} and row id {row_id} (a gap in the chain), or "
                      f"{before} edited and re-hashed")


def _reader(column: sa.Column[Any], dialect: sa.Dialect) -> Any:
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else (lambda value: value)


async def verify_all(engine: AsyncEngine, anchors: Iterable[str] = ()
                     ) -> tuple[list[ChainReport], list[str]]:
    """Every chain's report, and the anchors (head hashes exported earlier) that no row of
    any chain has any more: rows deleted from the end, or a chain rewritten."""
    async with engine.connect() as conn:
        reports = [await verify(conn, table) for table in CHAINED]
        missing = []
        for anchor in anchors:
            held = sa.union_all(*(sa.select(t.c.id).where(t.c.hash == anchor.strip().lower())
                                  for t in CHAINED))
            if (await conn.execute(held)).first() is None:
                missing.append(anchor)
    return reports, missing


async def heads(engine: AsyncEngine) -> dict[str, str]:
    """Each chain's newest hash (GENESIS for an empty chain), unverified: what a report
    prints as evidence, to be checked later with `audit verify --anchor`."""
    result: dict[str, str] = {}
    async with engine.connect() as conn:
        for table in CHAINED:
            head = (await conn.execute(sa.select(table.c.hash).order_by(table.c.id.desc())
                                       .limit(1))).scalar()
            result[table.name] = str(head) if head is not None else GENESIS
    return result
