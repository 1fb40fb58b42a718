"""The collector's store: agents and their tokens, raw results, check state intervals,
maintenance windows with their audit trail. One code path for SQLite and PostgreSQL.

Durability: `ingest` returns only after its transaction committed; the HTTP 2xx goes out after
that. On SQLite the database runs in WAL mode with `synchronous=FULL` by default, so a commit
survives a killed process and a power cut; `synchronous: normal` trades the power-cut case
for speed.

Check state intervals: a result at time t from a check with interval i says "status S from t
until the next result". Consecutive results of equal status extend one interval; a change of
status closes it at the new result's time; a gap longer than `stale_after` intervals closes it
at last-result + i, and the gap is unknown time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collector.auditchain import append
from collector.schema import (
    agents,
    check_intervals,
    json_dumps,
    maintenance,
    maintenance_audit,
    results,
    results_hourly,
)
from collector.writer import Batch, SqliteWriter, encode_datetime, encode_result
from probes.result import CheckResult

log = logging.getLogger("wardwatch.collector.store")

DEFAULT_INTERVAL_S = 60.0
"""Used for results that do not say their check's interval (older agents)."""


class StoreError(Exception):
    """A request the store refuses (unknown id, duplicate, ...); the message is for people."""


@dataclass(frozen=True)
class IngestOutcome:
    accepted: int
    duplicates: int
    attention: frozenset[tuple[str, str]] = frozenset()
    """(agent, check) of the batch that the incident engine must look at: a result that is
    not ok, or one that changed the check's state. An all-ok batch of steady checks is
    empty here, so steady ingest costs the engine nothing."""
    changed: frozenset[tuple[str, str]] = frozenset()
    """The part of `attention` whose state changed (a new interval opened)."""


class CheckInterval(NamedTuple):
    """One stretch of one check in one state (a row of `check_intervals`). A NamedTuple, not
    a frozen dataclass: the board and the incident engine decode thousands a round, and a
    tuple is built five times faster."""

    agent_id: str
    check_id: str
    system: str
    kind: str
    status: str
    reason: str
    summary: str
    start: datetime
    end: datetime
    last_result_at: datetime
    results: int
    is_open: bool


@dataclass(frozen=True)
class MaintenanceWindow:
    id: int
    system: str
    start: datetime
    end: datetime
    kind: str
    reason: str
    approved_by: str
    created_at: datetime
    created_by: str
    cancelled_at: datetime | None
    cancelled_by: str | None


def async_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`; `postgresql://` -> `+asyncpg`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store {url!r} is not a URL such as sqlite:///path or postgresql://…")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"store {url!r}: only sqlite:// and postgresql:// are supported")


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values: a plain SHA-256 cannot be brute-forced, and lookup by
    # hash needs a deterministic function (a salted KDF would need a scan of every agent).
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, engine: AsyncEngine, *, stale_after: float = 2.0) -> None:
        self.engine = engine
        self.stale_after = stale_after
        self.dialect = engine.dialect.name
        # SQLite has one writer; serialising here avoids "database is locked" retries.
        self._write_lock = asyncio.Lock()
        self._known: set[tuple[str, str]] | None = None
        self._known_sorted: list[tuple[str, str]] | None = None
        """`_known` sorted; the set only grows (intervals are kept forever), so its size
        says whether the list is current."""
        self._known_at = 0.0
        self._last_seen: dict[str, float] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        """token hash -> (agent id, when looked up): a pushing agent costs one lookup per
        TOKEN_CACHE_S, not one per batch."""
        self._writer: SqliteWriter | None = None
        """On a SQLite file, ingest goes through one writer thread (collector/writer.py)."""

    @classmethod
    async def open(cls, url: str, *, synchronous: str = "full", stale_after: float = 2.0
                   ) -> Store:
        """Connect, create the SQLite file's directory if needed, run migrations."""
        engine_url = async_url(url)
        kwargs: dict[str, Any] = {}
        if engine_url.startswith("sqlite"):
            path = sa.engine.make_url(engine_url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_size"] = 10
        engine = create_async_engine(engine_url, json_serializer=json_dumps, **kwargs)
        if engine.dialect.name == "sqlite":
            _sqlite_pragmas(engine, synchronous)
        store = cls(engine, stale_after=stale_after)
        await store.migrate()
        if engine.dialect.name == "sqlite":
            path = sa.engine.make_url(engine_url).database
            if path and path != ":memory:":
                store._writer = SqliteWriter(path, synchronous, store)
        return store

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))

        def upgrade(connection: sa.Connection) -> None:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, serialised with the store's other writers (SQLite has one)."""
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- agents ---------------------------------------------------------------------------

    async def add_agent(self, agent_id: str, now: datetime) -> str:
        """Enrol `agent_id` and return its token (shown once; only its hash is stored)."""
        token = "ww1_" + secrets.token_urlsafe(32)
        async with self._write_lock, self.engine.begin() as conn:
            row = (await conn.execute(sa.select(agents.c.revoked_at).where(
                agents.c.id == agent_id))).first()
            if row is not None and row.revoked_at is None:
                raise StoreError(f"agent {agent_id} is already enrolled; revoke it first to "
                                 "issue a new token")
            values = {"token_hash": hash_token(token), "created_at": now, "revoked_at": None}
            if row is None:
                await conn.execute(agents.insert().values(id=agent_id, **values))
            else:
                await conn.execute(agents.update().where(agents.c.id == agent_id)
                                   .values(**values))
        return token

    async def revoke_agent(self, agent_id: str, now: datetime) -> None:
        async with self._write_lock, self.engine.begin() as conn:
            done = await conn.execute(
                agents.update().where(agents.c.id == agent_id, agents.c.revoked_at.is_(None))
                .values(revoked_at=now, token_hash=None))
            if done.rowcount == 0:
                raise StoreError(f"no enrolled agent {agent_id}")
        self._tokens.clear()

    async def authenticate(self, token: str) -> str | None:
        """The agent id the token belongs to, or None.

        A token found is remembered for TOKEN_CACHE_S: revoking it in this process takes
        effect at once, from another (the CLI) within that time. Unknown tokens are never
        remembered, so a new enrolment works at once."""
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._tokens.get(digest)
        if hit is not None and now - hit[1] < TOKEN_CACHE_S:
            return hit[0]
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(agents.c.id).where(
                agents.c.token_hash == digest, agents.c.revoked_at.is_(None)))).first()
        if row is None:
            self._tokens.pop(digest, None)
            return None
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[digest] = (str(row.id), now)
        return str(row.id)

    async def list_agents(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(
                agents.c.id, agents.c.created_at, agents.c.revoked_at, agents.c.last_seen_at,
                agents.c.last_address).order_by(agents.c.id))).mappings().all()
        return [dict(row) for row in rows]

    # -- results --------------------------------------------------------------------------

    async def ingest(self, agent_id: str, batch: Sequence[CheckResult], received_at: datetime,
                     address: str | None = None) -> IngestOutcome:
        """Store a batch durably and idempotently (by result id); update state intervals."""
        if self._writer is not None:
            return await self._ingest_sqlite(agent_id, batch, received_at, address)
        # rows are built before taking the write lock, so the loop does this work while the
        # database thread commits another batch
        rows = {str(r.id): (r, _result_row(r, received_at)) for r in batch}
        touch = self._last_seen_due(agent_id)
        async with self._write_lock, self.engine.begin() as conn:
            if touch:
                await conn.execute(agents.update().where(agents.c.id == agent_id)
                                   .values(last_seen_at=received_at, last_address=address))
            if not rows:
                return IngestOutcome(0, 0)
            # one statement finds the replays: rows whose id is stored already are skipped
            # by ON CONFLICT DO NOTHING and missing from RETURNING
            inserted = set((await conn.execute(
                self.insert_ignore(results).returning(results.c.id),
                [row for _r, row in rows.values()])).scalars())
            fresh = [pair for key, pair in rows.items() if key in inserted]
            changed: set[tuple[str, str]] = set()
            if fresh:
                changed = await self._update_intervals(conn, agent_id,
                                                       [r for r, _row in fresh])
        if self._known is not None:
            self._known.update((r.agent_id, r.check_id) for r, _row in fresh)
        attention = frozenset((r.agent_id, r.check_id) for r, _row in fresh
                              if r.status.value != "ok" or (r.agent_id, r.check_id) in changed)
        return IngestOutcome(accepted=len(fresh), duplicates=len(batch) - len(fresh),
                             attention=attention, changed=frozenset(changed))

    async def _ingest_sqlite(self, agent_id: str, batch: Sequence[CheckResult],
                             received_at: datetime, address: str | None) -> IngestOutcome:
        assert self._writer is not None
        touch = ((encode_datetime(received_at), address) if self._last_seen_due(agent_id)
                 else None)
        results = list(batch)
        received = encode_datetime(received_at)
        outcome = await self._writer.submit(Batch(
            agent_id, results, [encode_result(r, received) for r in results], touch))
        if self._known is not None and outcome.accepted:
            self._known.update((r.agent_id, r.check_id) for r in results)
        return outcome

    def _last_seen_due(self, agent_id: str) -> bool:
        """`agents.last_seen_at` is written at most every LAST_SEEN_EVERY_S per agent: one row
        update per batch costs a write (and a dead row version on PostgreSQL) for nothing."""
        now = time.monotonic()
        if now - self._last_seen.get(agent_id, -LAST_SEEN_EVERY_S) < LAST_SEEN_EVERY_S:
            return False
        self._last_seen[agent_id] = now
        return True

    def insert_ignore(self, table: sa.Table) -> Any:
        """INSERT … ON CONFLICT DO NOTHING on either backend: how every write that must
        happen once (a result, an incident, an overtime, a message) is made idempotent."""
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    async def _update_intervals(self, conn: AsyncConnection, agent_id: str,
                                fresh: list[CheckResult]) -> set[tuple[str, str]]:
        """Extend, split or open each check's state interval; returns the checks whose
        state changed (a new interval opened)."""
        by_check: dict[str, list[CheckResult]] = defaultdict(list)
        for r in fresh:
            by_check[r.check_id].append(r)
        query = sa.select(check_intervals).where(
            check_intervals.c.agent_id == agent_id,
            check_intervals.c.check_id.in_(list(by_check)),
            check_intervals.c.is_open.is_(True))
        if self.dialect == "postgresql":
            query = query.with_for_update()
        open_rows = {row.check_id: dict(row) for row in
                     (await conn.execute(query)).mappings()}
        updates, inserts = self.advance_all(by_check, open_rows)
        if updates:
            # one row per id: the last state of each interval wins
            final = {row["id"]: row for row in updates}
            await conn.execute(
                check_intervals.update().where(check_intervals.c.id == sa.bindparam("_id"))
                .values({c: sa.bindparam(c) for c in
                         ("status", "end", "last_result_at", "results", "is_open")}),
                [{"_id": row["id"], "status": row["status"], "end": row["end"],
                  "last_result_at": row["last_result_at"], "results": row["results"],
                  "is_open": row["is_open"]} for row in final.values()])
        if inserts:
            await conn.execute(check_intervals.insert(), inserts)
        return {(agent_id, row["check_id"]) for row in inserts}

    def advance_all(self, by_check: dict[str, list[CheckResult]],
                    open_rows: dict[str, dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Apply each check's new results (in time order) to its open interval: the interval
        rows to update (stored already, by id) and to insert. Both write paths use this."""
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for check_id, group in by_check.items():
            group.sort(key=lambda r: r.started_at)
            current = open_rows.get(check_id)
            for r in group:
                current = self._advance(current, r, updates, inserts)
            if current is not None and "id" in current:
                updates.append(current)
            elif current is not None:
                inserts.append(current)
        return updates, inserts

    def _advance(self, current: dict[str, Any] | None, r: CheckResult,
                 updates: list[dict[str, Any]], inserts: list[dict[str, Any]]
                 ) -> dict[str, Any] | None:
        """Apply result `r` to the open interval `current`; returns the new open interval.

        Closed intervals are appended to `updates` (already stored) or `inserts` (new)."""
        interval = timedelta(seconds=r.interval_s or DEFAULT_INTERVAL_S)
        t = r.started_at
        if current is not None:
            last = current["last_result_at"]
            if t < last:
                return current  # out of order (clock step): raw result kept, state unchanged
            prev_interval = current["end"] - last if current["end"] > last else interval
            contiguous = t <= last + prev_interval * self.stale_after
            if contiguous and current["status"] == r.status.value:
                current["end"] = max(current["end"], t + interval)
                current["last_result_at"] = t
                current["results"] += 1
                return current
            current["is_open"] = False
            if contiguous:
                current["end"] = t
            (updates if "id" in current else inserts).append(current)
        return {
            "agent_id": r.agent_id, "check_id": r.check_id, "system": r.system,
            "kind": r.kind, "status": r.status.value, "reason": r.reason,
            "summary": r.summary[:500], "start": t, "end": t + interval,
            "last_result_at": t, "results": 1, "is_open": True,
        }

    async def intervals(self, start: datetime, end: datetime,
                        agent_check: Sequence[tuple[str, str]] | None = None, *,
                        open_after: datetime | None = None, closed_only: bool = False
                        ) -> list[CheckInterval]:
        """State intervals overlapping [start, end), optionally only of these checks; with
        `open_after` also every open interval that ends after it (an open interval may stand
        beyond its end, `Systems._standing`); with `closed_only`, only closed ones that ended
        by `end`. The board reads a day in two such pieces (collector/web/board.py)."""
        sqlite_text = self.dialect == "sqlite"
        col = check_intervals.c
        overlaps = col.end > start
        if open_after is not None:
            overlaps = sa.or_(overlaps, sa.and_(col.is_open, col.end > open_after))
        query = sa.select(*(_INTERVAL_COLUMNS_TEXT if sqlite_text else _INTERVAL_COLUMNS)).where(
            overlaps, col.start < end)
        if closed_only:
            query = query.where(sa.not_(col.is_open), col.end <= end)
        if agent_check is not None:
            if not agent_check:
                return []
            query = query.where(_members(agent_check))
        query = query.order_by(check_intervals.c.start)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not sqlite_text:
            return [CheckInterval(*row) for row in rows]
        # SQLite keeps the times as ISO text: one C call each instead of SQLAlchemy's regex
        # parse and the UTC type's conversion (two thirds of an incident round's time was
        # decoding these rows); tested equal to the typed read
        # (the text plus an offset parses to an aware UTC time 5x faster than a .replace)
        parse = datetime.fromisoformat
        return [CheckInterval(a, c, sy, k, st, re_, su, parse(s0 + "+00:00"),
                              parse(e0 + "+00:00"), parse(l0 + "+00:00"), n, bool(o))
                for a, c, sy, k, st, re_, su, s0, e0, l0, n, o in rows]

    async def first_seen(self, agent_check: Sequence[tuple[str, str]]) -> datetime | None:
        """The start of the earliest state interval of these checks."""
        if not agent_check:
            return None
        query = sa.select(sa.func.min(check_intervals.c.start)).where(_members(agent_check))
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        if isinstance(value, str):  # an aggregate bypasses the column type on SQLite
            value = datetime.fromisoformat(value)
        return _aware(value)

    async def known_checks(self) -> list[tuple[str, str]]:
        """Every (agent_id, check_id) that ever reported.

        The full scan runs at most every KNOWN_CHECKS_TTL_S seconds (it grows with the
        interval table, kept forever); checks this process ingests are added at once, those
        another collector on the same database sees appear within the TTL.
        """
        now = time.monotonic()
        if self._known is None or now - self._known_at > KNOWN_CHECKS_TTL_S:
            query = sa.select(check_intervals.c.agent_id, check_intervals.c.check_id).distinct()
            async with self.engine.connect() as conn:
                self._known = {(row[0], row[1]) for row in (await conn.execute(query)).all()}
            self._known_at = now
        # sorted again only when the set grew (every system asks, every round: sorting 150k
        # checks each time was a fifth of a 1,000-host collector's time, docs/scale.md)
        if self._known_sorted is None or len(self._known_sorted) != len(self._known):
            self._known_sorted = sorted(self._known)
        return self._known_sorted

    async def count_results(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(results)))
                       .scalar_one())

    async def expire_results(self, cutoff: datetime) -> int:
        """Retention: roll raw results older than `cutoff` (floored to the hour) up into
        `results_hourly`, then delete them, in one transaction. State intervals are kept."""
        cutoff = cutoff.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hour = (sa.func.date_trunc("hour", results.c.started_at)
                if self.dialect == "postgresql"
                else sa.func.strftime("%Y-%m-%d %H:00:00", results.c.started_at))
        counts = [sa.func.sum(sa.case((results.c.status == s, 1), else_=0)).label(s)
                  for s in ("ok", "warning", "critical", "unknown")]
        query = (sa.select(results.c.agent_id, results.c.check_id, hour.label("hour"),
                           sa.func.max(results.c.system).label("system"),
                           sa.func.max(results.c.kind).label("kind"),
                           sa.func.count().label("results"), *counts,
                           sa.func.avg(results.c.duration_s).label("duration_avg_s"),
                           sa.func.max(results.c.duration_s).label("duration_max_s"))
                 .where(results.c.started_at < cutoff)
                 .group_by(results.c.agent_id, results.c.check_id, hour))
        async with self._write_lock, self.engine.begin() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
            for row in rows:
                row["hour"] = _aware(datetime.fromisoformat(row["hour"])
                                     if isinstance(row["hour"], str) else row["hour"])
                await self._add_rollup(conn, row)
            done = await conn.execute(results.delete().where(results.c.started_at < cutoff))
        return int(done.rowcount or 0)

    async def _add_rollup(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        """Insert an hour, or merge into one rolled up before (results that arrived late)."""
        key = (results_hourly.c.agent_id == row["agent_id"],
               results_hourly.c.check_id == row["check_id"], results_hourly.c.hour == row["hour"])
        old = (await conn.execute(sa.select(results_hourly).where(*key))).mappings().first()
        if old is None:
            await conn.execute(results_hourly.insert().values(**row))
            return
        total = old["results"] + row["results"]
        merged = {s: old[s] + row[s] for s in ("results", "ok", "warning", "critical", "unknown")}
        merged["duration_avg_s"] = (old["duration_avg_s"] * old["results"]
                                    + row["duration_avg_s"] * row["results"]) / total
        merged["duration_max_s"] = max(old["duration_max_s"], row["duration_max_s"])
        await conn.execute(results_hourly.update().where(*key).values(**merged))

    async def rollups(self, agent_id: str, check_id: str) -> list[dict[str, Any]]:
        query = (sa.select(results_hourly).where(results_hourly.c.agent_id == agent_id,
                                                 results_hourly.c.check_id == check_id)
                 .order_by(results_hourly.c.hour))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    # -- maintenance ----------------------------------------------------------------------

    async def add_maintenance(self, *, system: str, start: datetime, end: datetime, kind: str,
                              reason: str, approved_by: str, by: str, now: datetime
                              ) -> MaintenanceWindow:
        if end <= start:
            raise StoreError("end must be after start")
        values: dict[str, Any] = {"system": system, "start": start, "end": end, "kind": kind,
                  "reason": reason, "approved_by": approved_by, "created_at": now,
                  "created_by": by, "cancelled_at": None, "cancelled_by": None}
        async with self._write_lock, self.engine.begin() as conn:
            new_id = (await conn.execute(
                maintenance.insert().values(**values).returning(maintenance.c.id))).scalar_one()
            window = MaintenanceWindow(id=int(new_id), **values)
            await self._audit(conn, window, "created", by, now)
        return window

    async def cancel_maintenance(self, window_id: int, *, by: str, now: datetime
                                 ) -> MaintenanceWindow:
        async with self._write_lock, self.engine.begin() as conn:
            done = await conn.execute(
                maintenance.update().where(maintenance.c.id == window_id,
                                           maintenance.c.cancelled_at.is_(None))
                .values(cancelled_at=now, cancelled_by=by))
            if done.rowcount == 0:
                raise StoreError(f"no active maintenance window {window_id}")
            row = (await conn.execute(sa.select(maintenance).where(
                maintenance.c.id == window_id))).mappings().one()
            window = MaintenanceWindow(**row)
            await self._audit(conn, window, "cancelled", by, now)
        return window

    async def _audit(self, conn: AsyncConnection, window: MaintenanceWindow, action: str,
                     by: str, now: datetime) -> None:
        record = {k: (v.isoformat() if isinstance(v, datetime) else v)
                  for k, v in window.__dict__.items()}
        await append(conn, maintenance_audit, {
            "maintenance_id": window.id, "action": action, "at": now, "by": by,
            "record": record})

    async def maintenance_windows(self, *, system: str | None = None,
                                  start: datetime | None = None, end: datetime | None = None,
                                  include_cancelled: bool = False) -> list[MaintenanceWindow]:
        query = sa.select(maintenance).order_by(maintenance.c.start)
        if system is not None:
            query = query.where(maintenance.c.system == system)
        if start is not None:
            query = query.where(maintenance.c.end > start)
        if end is not None:
            query = query.where(maintenance.c.start < end)
        if not include_cancelled:
            query = query.where(maintenance.c.cancelled_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [MaintenanceWindow(**row) for row in rows]

    async def maintenance_history(self, window_id: int) -> list[dict[str, Any]]:
        query = (sa.select(maintenance_audit.c.action, maintenance_audit.c.at,
                           maintenance_audit.c.by, maintenance_audit.c.record)
                 .where(maintenance_audit.c.maintenance_id == window_id)
                 .order_by(maintenance_audit.c.at, maintenance_audit.c.id))
        async with self.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]


_INTERVAL_COLUMNS = [check_intervals.c[name] for name in CheckInterval._fields]
_INTERVAL_COLUMNS_TEXT = [sa.type_coerce(c, sa.String).label(c.name)
                          if c.name in ("start", "end", "last_result_at") else c
                          for c in _INTERVAL_COLUMNS]
"""The same, with the times as SQLite stores them (naive UTC ISO text)."""

KNOWN_CHECKS_TTL_S = 60.0
TOKEN_CACHE_S = 30.0
"""Longer than the agents' push interval (5 s by default), or nearly every push looks its
token up again (600 lookups/s at 3,000 hosts, docs/scale.md)."""
LAST_SEEN_EVERY_S = 5.0


def _members(agent_check: Sequence[tuple[str, str]]) -> sa.ColumnElement[bool]:
    return _members_of(tuple(agent_check))


@functools.lru_cache(maxsize=1024)
def _members_of(agent_check: tuple[tuple[str, str], ...]) -> sa.ColumnElement[bool]:
    # An OR of pairs, not `(agent_id, check_id) IN (VALUES ...)`: SQLite uses the composite
    # index only for the former (57 ms -> 2 ms per system-year, docs/benchmarks.md).
    # Built once per member list: the incident engine asks for the same systems' members
    # several times a second, and building 40 pairs of expressions cost it ~3 ms a system.
    return sa.or_(*(sa.and_(check_intervals.c.agent_id == a, check_intervals.c.check_id == c)
                    for a, c in agent_check))


def _result_row(r: CheckResult, received_at: datetime) -> dict[str, Any]:
    return {
        "id": str(r.id), "agent_id": r.agent_id, "check_id": r.check_id, "kind": r.kind,
        "system": r.system, "target": r.target, "status": r.status.value, "reason": r.reason,
        "started_at": r.started_at, "duration_s": r.duration_s, "interval_s": r.interval_s,
        "summary": r.summary, "metrics": [m.model_dump(mode="json") for m in r.metrics],
        "details": r.details, "labels": r.labels, "received_at": received_at,
    }


def _sqlite_pragmas(engine: AsyncEngine, synchronous: str) -> None:
    level = {"full": "FULL", "normal": "NORMAL"}[synchronous]

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={level}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
