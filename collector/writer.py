"""SQLite ingest: one writer thread, one thread hop per group of batches, one commit per group.

Through SQLAlchemy's async engine a batch cost about a dozen hops between the event loop and
aiosqlite's thread (begin, insert, select, update, insert, commit, pool checks), each a GIL
hand-over, and one fsync per batch. Here a batch is encoded on the loop (the only Python work
left there), queued, and written by a dedicated thread holding its own sqlite3 connection:
batches that arrive while a group is being written go together into the next group, inside
one `BEGIN IMMEDIATE … COMMIT` (one fsync for all of them, each batch in its own savepoint, so
a batch that fails is rolled back alone). Every caller's future resolves only after that
commit: the HTTP 2xx still goes out only for durable results.

The values written are encoded by the same SQLAlchemy column types the rest of the store reads
with (UtcDateTime, JSON), so rows read back identically whichever path wrote them; the state
interval arithmetic is the store's own `advance_all`. PostgreSQL keeps the SQLAlchemy path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import sqlite as sqlite_dialect

from collector.schema import check_intervals, json_dumps, results
from probes.result import CheckResult

if TYPE_CHECKING:
    from collector.store import IngestOutcome, Store

log = logging.getLogger("wardwatch.collector.writer")

MAX_GROUP_RESULTS = 5_000
"""A group stops growing past this many results: a commit's WAL write stays a few MB and
the batches that wait behind it are not held for long."""

_DIALECT = sqlite_dialect.dialect()

RESULT_COLUMNS = tuple(c.name for c in results.columns)
INTERVAL_COLUMNS = ("agent_id", "check_id", "system", "kind", "status", "reason", "summary",
                    "start", "end", "last_result_at", "results", "is_open")


def _compact_json(value: Any) -> str:
    """Compact, UTF-8 (Chinese summaries and details stay 3 bytes a character, not 6), and
    NaN / Infinity as null, as the async engine stores them (collector.schema.json_dumps)."""
    return json_dumps(value, compact=True)


def _bind(column: Any) -> Callable[[Any], Any]:
    """The column type's own bind processing on SQLite (what SQLAlchemy would send)."""
    process = column.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
    return process if process is not None else (lambda value: value)


def _result(column: Any) -> Callable[[Any], Any]:
    process = column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
    return process if process is not None else (lambda value: value)


_DATETIME_IN = _bind(results.c.started_at)
"""SQLAlchemy's own encoding, kept for the test that proves encode_datetime equal to it."""
_DATETIME_OUT = _result(check_intervals.c.start)


def encode_datetime(value: datetime) -> str:
    """What SQLAlchemy stores for a UtcDateTime on SQLite ('2026-01-02 03:04:05.000000',
    naive UTC), by one C call instead of its Python formatting; tested equal."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def encode_result(r: CheckResult, received_at: str) -> tuple[Any, ...]:
    """One `results` row in RESULT_COLUMNS order, as SQLite stores it (`received_at`
    already encoded: it is the same for the whole batch)."""
    return (
        str(r.id), r.agent_id, r.check_id, r.kind, r.system, r.target, r.status.value,
        r.reason, encode_datetime(r.started_at), r.duration_s, r.interval_s, r.summary,
        _compact_json([{"name": m.name, "value": m.value, "labels": m.labels}
                       for m in r.metrics]),
        _compact_json(r.details) if r.details else "{}",
        _compact_json(r.labels) if r.labels else "{}", received_at,
    )


@dataclass
class Batch:
    agent_id: str
    results: list[CheckResult]
    rows: list[tuple[Any, ...]]
    touch: tuple[Any, str | None] | None
    """(last_seen_at encoded, address) when the agent's row is due an update."""
    future: asyncio.Future[IngestOutcome] | None = field(repr=False, default=None)


class SqliteWriter:
    """The one writer of ingest batches for a SQLite store."""

    def __init__(self, path: str, synchronous: str, store: Store) -> None:
        self._path = path
        self._synchronous = {"full": "FULL", "normal": "NORMAL"}[synchronous]
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wardwatch-writer")
        self._local = threading.local()
        self._pending: list[Batch] = []
        self._flusher: asyncio.Task[None] | None = None
        self.groups = 0
        self.batches = 0

    # -- event loop side ------------------------------------------------------------------

    async def submit(self, batch: Batch) -> IngestOutcome:
        loop = asyncio.get_running_loop()
        future = batch.future = loop.create_future()
        self._pending.append(batch)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="wardwatch-sqlite-writer")
        # shielded: a client that hangs up does not cancel a write already queued
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        """Write what is pending, group by group, until nothing is; waits for the store's
        write lock so SQLAlchemy writers (incidents, outbox, findings) never interleave."""
        loop = asyncio.get_running_loop()
        while self._pending:
            group: list[Batch] = []
            size = 0
            while self._pending and (not group or size + len(self._pending[0].rows)
                                     <= MAX_GROUP_RESULTS):
                batch = self._pending.pop(0)
                group.append(batch)
                size += len(batch.rows)
            try:
                async with self._store._write_lock:
                    outcomes = await loop.run_in_executor(self._pool, self._write_group, group)
            except BaseException as exc:   # the group failed as a whole (e.g. disk full)
                for batch in group:
                    if batch.future is not None and not batch.future.done():
                        batch.future.set_exception(
                            exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            self.groups += 1
            self.batches += len(group)
            for batch, outcome in zip(group, outcomes, strict=True):
                if batch.future is None or batch.future.done():
                    continue
                if isinstance(outcome, Exception):
                    batch.future.set_exception(outcome)
                else:
                    batch.future.set_result(outcome)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_connection)
        self._pool.shutdown(wait=True)

    # -- writer thread side ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def _close_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _write_group(self, group: Sequence[Batch]) -> list[IngestOutcome | Exception]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[IngestOutcome | Exception] = []
        try:
            stored: set[str] = set()   # ids written earlier in this group (a quick replay)
            for batch in group:
                conn.execute("SAVEPOINT batch")
                try:
                    outcomes.append(self._write_batch(conn, batch, stored))
                except Exception as exc:
                    conn.execute("ROLLBACK TO batch")
                    log.exception("storing a batch of %d results from %s failed",
                                  len(batch.rows), batch.agent_id)
                    outcomes.append(exc)
                conn.execute("RELEASE batch")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _write_batch(self, conn: sqlite3.Connection, batch: Batch, stored: set[str]
                     ) -> IngestOutcome:
        from collector.store import IngestOutcome

        if batch.touch is not None:
            conn.execute("UPDATE agents SET last_seen_at = ?, last_address = ? WHERE id = ?",
                         (*batch.touch, batch.agent_id))
        if not batch.rows:
            return IngestOutcome(0, 0)
        ids = [row[0] for row in batch.rows]
        existing = set(stored.intersection(ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            existing.update(found for (found,) in conn.execute(
                f"SELECT id FROM results WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        fresh_rows = []
        fresh = []
        for r, row in zip(batch.results, batch.rows, strict=True):
            if row[0] not in existing:
                existing.add(row[0])   # a duplicate inside the batch is stored once
                fresh_rows.append(row)
                fresh.append(r)
        if fresh_rows:
            conn.executemany(_INSERT_RESULT, fresh_rows)
            stored.update(row[0] for row in fresh_rows)
        changed = self._update_intervals(conn, batch.agent_id, fresh) if fresh else set()
        attention = frozenset((r.agent_id, r.check_id) for r in fresh
                              if r.status.value != "ok" or (r.agent_id, r.check_id) in changed)
        return IngestOutcome(accepted=len(fresh), duplicates=len(batch.results) - len(fresh),
                             attention=attention, changed=frozenset(changed))

    def _update_intervals(self, conn: sqlite3.Connection, agent_id: str,
                          fresh: list[CheckResult]) -> set[tuple[str, str]]:
        """The store's interval upkeep (`Store.advance_all`) on this connection."""
        by_check: dict[str, list[CheckResult]] = defaultdict(list)
        for r in fresh:
            by_check[r.check_id].append(r)
        checks = list(by_check)
        open_rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(checks), 500):
            chunk = checks[start:start + 500]
            cursor = conn.execute(
                f'SELECT id, {", ".join(_quoted(c) for c in INTERVAL_COLUMNS)} '
                f"FROM check_intervals WHERE agent_id = ? AND is_open = 1 "
                f"AND check_id IN ({','.join('?' * len(chunk))})", [agent_id, *chunk])
            for raw in cursor:
                row = dict(zip(("id", *INTERVAL_COLUMNS), raw, strict=True))
                for name in ("start", "end", "last_result_at"):
                    row[name] = _DATETIME_OUT(row[name])
                row["is_open"] = bool(row["is_open"])
                open_rows[row["check_id"]] = row
        updates, inserts = self._store.advance_all(by_check, open_rows)
        if updates:
            final = {row["id"]: row for row in updates}
            conn.executemany(
                'UPDATE check_intervals SET status = ?, "end" = ?, last_result_at = ?, '
                "results = ?, is_open = ? WHERE id = ?",
                [(row["status"], encode_datetime(row["end"]),
                  encode_datetime(row["last_result_at"]), row["results"], int(row["is_open"]),
                  row["id"]) for row in final.values()])
        if inserts:
            conn.executemany(_INSERT_INTERVAL, [
                tuple(encode_datetime(row[c]) if c in ("start", "end", "last_result_at")
                      else int(row[c]) if c == "is_open" else row[c]
                      for c in INTERVAL_COLUMNS) for row in inserts])
        return {(agent_id, row["check_id"]) for row in inserts}


def _quoted(name: str) -> str:
    return f'"{name}"'


_INSERT_RESULT = (f"INSERT INTO results ({', '.join(_quoted(c) for c in RESULT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(RESULT_COLUMNS))})")
_INSERT_INTERVAL = (f"INSERT INTO check_intervals "
                    f"({', '.join(_quoted(c) for c in INTERVAL_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(INTERVAL_COLUMNS))})")


