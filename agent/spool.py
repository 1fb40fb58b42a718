"""The agent's on-disk spool: every result not yet acknowledged by the collector, in order.

Layout under the spool directory (`state_dir/spool/`):

- `seg-0000000000000001.jsonl`, … — append-only segments, one result a line as
  `CRC32HEX JSON\\n`. The checksum lets a reader tell a torn or damaged line (kill -9 or power
  loss mid-write, a bad sector) from a whole one; such a line is skipped and counted, never fatal.
- `cursor.json` — `{"segment": N, "offset": BYTES}`: everything before it is acknowledged.
  Written atomically (temp file, fsync, `os.replace`, fsync of the directory), so after any
  crash it is either the old or the new cursor.
- `spool.lock` — held (flock / msvcrt) while a Spool is open: two agents on one state_dir
  would interleave segments.

Durability: `append` returns only after its lines are written and fsync'ed (one fsync per call,
so callers batch). A result whose `append` returned survives kill -9 and power loss; one whose
`append` had not returned may be absent or torn (and then skipped). The cursor moves only on
`ack`, after the collector's 2xx; a crash between the 2xx and the cursor write re-sends that
batch, which the collector stores once (result ids are idempotency keys). Delivery is
therefore at-least-once, and the store is exactly-once.

Bounded by `max_bytes` of segment files: an append that would pass it first deletes the oldest
segment(s) whole, counting and logging the unacknowledged results they held (`dropped`,
reason `overflow`). The count of pending results is rebuilt by scanning at open; nothing but
the cursor is trusted from the previous run.

Damage (docs/agent-faults.md): a line is a record only if it ends in a newline, its checksum
matches and its payload is a JSON object (the last is checked when the record is read, so an
open does not parse the whole spool). Anything else is skipped, never fatal: the readable
records around it are kept, in order. A torn or garbage tail of the newest segment (no final
newline) is cut at open, so the next append starts on a line boundary. Damaged lines that
look like records (a checksum-shaped head) count as results under `dropped["corrupt"]`; every
damaged byte counts in `corrupt_bytes`; one WARNING at open (and one per record found later)
says how many and why. When the saved cursor no longer fits the files (it points past a
truncated end, or into a line), the corrected cursor is written at once: new records appended
where the old cursor pointed must not count as acknowledged at the next open.

The API is blocking (file I/O and fsync); async callers run it in a thread
(`asyncio.to_thread`). One lock serialises every call, so a writer thread and a reader thread
may share a Spool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from probes.result import CheckResult

log = logging.getLogger("wardwatch.agent.spool")

SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".jsonl"
CURSOR_NAME = "cursor.json"
LOCK_NAME = "spool.lock"
DROP_REASONS = ("overflow", "corrupt", "invalid", "too_large")
"""Why results left the spool undelivered; `invalid`/`too_large` are the pusher's poison drops."""

_MAX_SEGMENT_BYTES = 8 * 1024 * 1024
_MIN_SEGMENT_BYTES = 4 * 1024


class SpoolError(Exception):
    """The spool cannot be opened (in use by another process, or not a usable directory)."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: byte `offset` in segment `seq`; `consumed` counts the records
    before it in that segment (kept for bookkeeping, not part of the ordering)."""

    seq: int
    offset: int
    consumed: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Batch:
    """The oldest unacknowledged records, each the JSON of one CheckResult, and where they end.

    `records` are the bytes exactly as spooled, so a pusher can send them without re-encoding.
    """

    records: tuple[bytes, ...]
    start: Position
    end: Position

    def __len__(self) -> int:
        return len(self.records)

    def results(self) -> list[CheckResult]:
        return [CheckResult.model_validate_json(record) for record in self.records]


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int = 0
    records: int = 0
    """Whole, checksum-valid lines (what counts as pending)."""
    bad: set[int] = field(default_factory=set)
    """Offsets of lines known to be torn or damaged (already counted, skipped on read)."""


class Spool:
    """A durable FIFO of CheckResults; see the module docstring for the format and guarantees."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *,
                 segment_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        # Overflow drops whole segments, so a segment is a small slice of the budget.
        self.segment_bytes = segment_bytes or min(
            _MAX_SEGMENT_BYTES, max(_MIN_SEGMENT_BYTES, max_bytes // 16))
        self.dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
        """Results that left the spool undelivered since open, by reason (DROP_REASONS)."""
        self.corrupt_bytes = 0
        """Bytes of torn, damaged or foreign data skipped or cut since open (the unacknowledged
        part of the spool only)."""
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._cursor = Position(1, 0, 0)
        self._pending_count = 0
        self._pending_bytes = 0
        self._disk_bytes = 0
        self._failed_write = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.directory}: {exc}") from None
        self._lock_file = _lock_directory(self.directory)
        try:
            self._active = self._recover()
        except OSError as exc:
            self._lock_file.close()
            raise SpoolError(f"cannot open spool {self.directory}: {exc}") from exc
        except BaseException:
            self._lock_file.close()
            raise

    # -- public API --------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Results appended and not yet acknowledged (nor dropped)."""
        return self._pending_count

    @property
    def pending_bytes(self) -> int:
        """Bytes of segment data after the cursor."""
        return self._pending_bytes

    @property
    def disk_bytes(self) -> int:
        """Bytes of all segment files, acknowledged head included; kept within max_bytes."""
        return self._disk_bytes

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def append(self, results: Sequence[CheckResult]) -> None:
        """Write `results` at the tail; returns after they are on stable storage (fsync)."""
        if not results:
            return
        data = b"".join(_encode(r.model_dump_json().encode()) for r in results)
        with self._lock:
            self._make_room(len(data))
            segment = self._segments[self._active_seq]
            if segment.size > 0 and (self._failed_write
                                     or segment.size + len(data) > self.segment_bytes):
                segment = self._roll()
            try:
                _write_all(self._active, data, segment.size)
            except OSError:
                # A partial line may remain if cutting it back failed too: the next append
                # starts a fresh segment rather than writing after it.
                self._failed_write = True
                raise
            self._failed_write = False
            segment.size += len(data)
            segment.records += len(results)
            self._recount()

    def peek(self, max_items: int) -> Batch:
        """Up to `max_items` of the oldest unacknowledged records, in order; moves nothing."""
        with self._lock:
            start = self._cursor
            records: list[bytes] = []
            end = start
            for segment in list(self._segments.values()):
                if segment.seq < start.seq:
                    continue
                if len(records) >= max_items:
                    break
                offset, consumed = ((start.offset, start.consumed) if segment.seq == start.seq
                                    else (0, 0))
                end = self._read_into(segment, offset, consumed, max_items, records)
            return Batch(tuple(records), start, end)

    def ack(self, batch: Batch) -> bool:
        """The collector has `batch`: move the cursor past it, delete finished segments.

        Returns False, moving nothing, for a batch that no longer lies ahead of the cursor
        (its segments were dropped for space while it was in flight).
        """
        with self._lock:
            return self._advance(batch.end)

    def drop(self, batch: Batch, reason: str) -> None:
        """Acknowledge `batch` without delivery (a poison result), counted under `reason`."""
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        with self._lock:
            if self._advance(batch.end):
                self.dropped[reason] += len(batch)

    def close(self) -> None:
        with self._lock:
            self._active.close()
            self._lock_file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def _read_into(self, segment: _Segment, offset: int, consumed: int, max_items: int,
                   records: list[bytes]) -> Position:
        with open(segment.path, "rb") as f:
            f.seek(offset)
            while len(records) < max_items and offset < segment.size:
                line = f.readline(segment.size - offset)
                if not line:
                    break
                if offset not in segment.bad:
                    payload = _decode(line)
                    if payload is not None and _json_object(payload):
                        records.append(payload)
                        consumed += 1
                    else:
                        # Counted as a record when written or scanned, unreadable now: a
                        # failing disk, or a valid checksum around something that is not a
                        # result (never sent: it would only cost the collector a 400).
                        cause = "checksum" if payload is None else "not_json"
                        segment.bad.add(offset)
                        segment.records -= 1
                        self.dropped["corrupt"] += 1
                        self.corrupt_bytes += len(line)
                        self._recount()
                        log.warning("spool: dropped a damaged record in %s at byte %d "
                                    "(%d bytes): %s", segment.path.name, offset, len(line),
                                    _CAUSES[cause])
                offset += len(line)
        return Position(segment.seq, offset, consumed)

    # -- writing -----------------------------------------------------------------------------

    def _advance(self, end: Position) -> bool:
        if end.seq not in self._segments or end <= self._cursor:
            return False
        self._write_cursor(end)
        self._cursor = end
        for seq in [s for s in self._segments if s < end.seq]:
            self._delete_segment(self._segments.pop(seq))
        self._recount()
        return True

    @property
    def _active_seq(self) -> int:
        return next(reversed(self._segments))

    def _roll(self) -> _Segment:
        segment = self._new_segment(self._active_seq + 1)
        self._active.close()
        self._active = open(segment.path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        return segment

    def _new_segment(self, seq: int) -> _Segment:
        segment = _Segment(seq, self.directory / f"{SEGMENT_PREFIX}{seq:016d}{SEGMENT_SUFFIX}")
        segment.path.touch()
        _fsync_directory(self.directory)  # the new name must survive a power loss too
        self._segments[seq] = segment
        return segment

    def _make_room(self, incoming: int) -> None:
        """Delete the oldest segments until `incoming` more bytes fit in max_bytes."""
        dropped = 0
        first_ts: str | None = None
        last_ts: str | None = None
        while self._disk_bytes + incoming > self.max_bytes:
            oldest = next(iter(self._segments.values()))
            if oldest.size == 0:
                break  # only an empty active segment is left: an append bigger than the budget
            start = self._cursor if oldest.seq == self._cursor.seq else Position(oldest.seq, 0)
            lost = oldest.records - start.consumed
            if lost > 0:
                dropped += lost
                span = _time_span(oldest, start.offset)
                first_ts = first_ts or span[0]
                last_ts = span[1] or last_ts
            if oldest.seq == self._active_seq:
                self._roll()
            del self._segments[oldest.seq]
            self._delete_segment(oldest)
            if self._cursor.seq == oldest.seq:
                # Not persisted: at the next open a cursor naming a missing segment means
                # "the start of the next one", which is where this one points.
                self._cursor = Position(next(iter(self._segments)), 0, 0)
            self._recount()
        if dropped:
            self.dropped["overflow"] += dropped
            log.warning(
                "spool full (%d bytes): dropped the %d oldest unacknowledged results, "
                "started_at %s to %s", self.max_bytes, dropped, first_ts or "?", last_ts or "?")

    def _delete_segment(self, segment: _Segment) -> None:
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # left behind, removed at the next open (before the cursor)
            log.warning("spool: cannot delete %s: %s", segment.path.name, exc)

    def _write_cursor(self, position: Position) -> None:
        path = self.directory / CURSOR_NAME
        tmp = path.with_name(CURSOR_NAME + ".tmp")
        data = json.dumps({"segment": position.seq, "offset": position.offset}).encode()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(self.directory)

    def _recount(self) -> None:
        cursor = self._cursor
        count = size = disk = 0
        for segment in self._segments.values():
            disk += segment.size
            if segment.seq >= cursor.seq:
                count += segment.records
                size += segment.size
        if cursor.seq in self._segments:
            count -= cursor.consumed
            size -= cursor.offset
        self._pending_count = max(0, count)
        self._pending_bytes = max(0, size)
        self._disk_bytes = disk

    # -- opening -----------------------------------------------------------------------------

    def _recover(self) -> IO[bytes]:
        found = sorted(_segment_seqs(self.directory))
        saved = self._read_cursor()
        cursor = saved or Position(found[0] if found else 1, 0)
        for seq in found:
            path = self._segment_path(seq)
            if seq < cursor.seq:  # fully acknowledged; its deletion was not done or not durable
                self._delete_segment(_Segment(seq, path))
                continue
            self._segments[seq] = _Segment(seq, path)
        seqs = list(self._segments)
        damage = _Damage()
        for index, seq in enumerate(seqs):
            segment = self._segments[seq]
            at = cursor.offset if seq == cursor.seq else None
            start = self._scan(segment, at, index == len(seqs) - 1, damage)
            if start is not None:
                cursor = start
        if cursor.seq not in self._segments:
            later = [s for s in seqs if s > cursor.seq]
            cursor = Position(later[0], 0, 0) if later else cursor
        if not self._segments:
            # never reuse the saved cursor's number: its offset belongs to the old segment
            self._new_segment(max([saved.seq if saved else 0, *found]) + 1)
            cursor = Position(self._active_seq, 0, 0)
        if saved is not None and (cursor.seq, cursor.offset) != (saved.seq, saved.offset):
            if cursor.seq == saved.seq:
                log.warning("spool: the saved cursor (byte %d of %s) is not at a record "
                            "boundary of the file (damaged or truncated); resuming at byte %d",
                            saved.offset, self._segment_path(saved.seq).name, cursor.offset)
            # Persisted now: appends will land where the old cursor pointed, and must not
            # count as acknowledged at the next open.
            self._write_cursor(cursor)
        self._cursor = cursor
        self._recount()
        self.dropped["corrupt"] += damage.results
        self.corrupt_bytes += damage.total_bytes
        if damage.total_bytes or damage.cuts:
            log.warning("spool: skipped %d damaged records (%d bytes of damaged data in all) "
                        "and kept %d readable ones: %s", damage.results, damage.total_bytes,
                        self._pending_count, damage.describe())
        if self._pending_count:
            log.info("spool: %d results (%d bytes) waiting from before the restart",
                     self._pending_count, self._pending_bytes)
        return open(self._segments[self._active_seq].path, "ab", buffering=0)

    def _segment_path(self, seq: int) -> Path:
        return self.directory / f"{SEGMENT_PREFIX}{seq:016d}{SEGMENT_SUFFIX}"

    def _scan(self, segment: _Segment, cursor_offset: int | None, last: bool,
              damage: _Damage) -> Position | None:
        """Count whole lines; cut a torn tail of the last segment; place the cursor.

        Returns the cursor position inside this segment when it is the cursor's segment (an
        offset inside a line moves back to that line's start, so it is sent again rather than
        lost; an offset past the end moves to the end). Damage after the cursor is added to
        `damage`; before it, the data was delivered already.
        """
        offset = 0
        start: Position | None = None
        cut = False
        with open(segment.path, "rb") as f:
            for line in f:
                if cursor_offset is not None and start is None and cursor_offset < offset + len(
                        line):
                    start = Position(segment.seq, offset, segment.records)
                after_cursor = cursor_offset is None or start is not None
                whole = line.endswith(b"\n")
                if whole and _decode(line) is not None:
                    segment.records += 1
                    offset += len(line)
                    continue
                if after_cursor:
                    damage.add("checksum" if whole else "torn", line)
                if not whole and last:
                    cut = True
                    break  # cut below, so the next append starts on a line boundary
                segment.bad.add(offset)
                offset += len(line)
        if cut:
            size = segment.path.stat().st_size
            with open(segment.path, "r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
            damage.cuts.append(f"cut {size - offset} bytes from the end of {segment.path.name} "
                               "so that new records start on a line boundary")
        segment.size = offset
        if cursor_offset is not None and start is None:
            start = Position(segment.seq, offset, segment.records)
        return start

    def _read_cursor(self) -> Position | None:
        path = self.directory / CURSOR_NAME
        try:
            raw = json.loads(path.read_bytes())
            seq, offset = raw["segment"], raw["offset"]
            if not (isinstance(seq, int) and isinstance(offset, int) and seq > 0 and offset >= 0):
                raise ValueError(f"bad values {raw!r}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Re-sending is safe (the collector stores a result id once); skipping is not.
            log.error("spool: unreadable %s (%s); replaying from the oldest segment", path, exc)
            return None
        return Position(seq, offset)


_CAUSES = {
    "torn": "cut short (a write interrupted by a crash or power loss)",
    "checksum": "failing their checksum (damaged on disk)",
    "not_json": "a valid checksum around something that is not a JSON object",
}
_HEX_DIGITS = frozenset(b"0123456789abcdef")


@dataclass
class _Damage:
    """Damaged data found while opening the spool, for one WARNING line."""

    by_cause: Counter[str] = field(default_factory=Counter)
    """Damaged lines that look like records (a checksum-shaped head), by cause."""
    total_bytes: int = 0
    foreign_bytes: int = 0
    """Bytes of lines that do not even look like records (garbage, zeros)."""
    cuts: list[str] = field(default_factory=list)

    @property
    def results(self) -> int:
        return sum(self.by_cause.values())

    def add(self, cause: str, line: bytes) -> None:
        self.total_bytes += len(line)
        if _framed(line):
            self.by_cause[cause] += 1
        else:
            self.foreign_bytes += len(line)

    def describe(self) -> str:
        parts = [f"{count} {_CAUSES[cause]}" for cause, count in sorted(self.by_cause.items())]
        if self.foreign_bytes:
            parts.append(f"{self.foreign_bytes} bytes that are not records at all (garbage or "
                         "zeros, e.g. after a power loss)")
        return "; ".join(parts + self.cuts)


def _framed(line: bytes) -> bool:
    """Whether `line` starts like a spooled record (8 lowercase hex digits, a space): a
    damaged record rather than foreign bytes."""
    head = line[:8]
    return (bool(head) and all(c in _HEX_DIGITS for c in head)
            and (len(line) <= 8 or line[8:9] == b" "))


def _json_object(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except (ValueError, RecursionError):
        return False


def _encode(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _decode(line: bytes) -> bytes | None:
    """The payload of a whole line whose checksum matches, else None."""
    if len(line) < 11 or line[8:9] != b" " or not line.endswith(b"\n"):
        return None
    payload = line[9:-1]
    return payload if b"%08x" % zlib.crc32(payload) == line[:8] else None


def _write_all(f: IO[bytes], data: bytes, size_before: int) -> None:
    """Write and fsync `data`; on failure cut the file back so no torn line stays behind."""
    try:
        view = memoryview(data)
        while view:
            written = f.write(view)
            view = view[written or 0:]
        os.fsync(f.fileno())
    except OSError:
        with contextlib.suppress(OSError):  # else the torn line is cut at the next open
            os.ftruncate(f.fileno(), size_before)
        raise


def _time_span(segment: _Segment, offset: int) -> tuple[str | None, str | None]:
    """started_at of the first and last whole record of `segment` from `offset` (for logs)."""
    first: str | None = None
    last: str | None = None
    try:
        with open(segment.path, "rb") as f:
            f.seek(offset)
            for line in f:
                payload = _decode(line)
                if payload is None:
                    continue
                stamp = _started_at(payload)
                first = first or stamp
                last = stamp or last
    except OSError:
        pass
    return first, last


def _started_at(payload: bytes) -> str | None:
    try:
        value: Any = json.loads(payload).get("started_at")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _segment_seqs(directory: Path) -> Iterable[int]:
    for path in directory.iterdir():
        name = path.name
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                yield int(digits)


def _fsync_directory(directory: Path) -> None:
    """Make a created, renamed or replaced name durable. Windows cannot open a directory for
    fsync; NTFS journals the metadata change itself."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_directory(directory: Path) -> IO[bytes]:
    """Hold an exclusive lock on `directory/spool.lock` for the life of the Spool; the OS
    releases it when the process dies, even by kill -9."""
    try:
        f = open(directory / LOCK_NAME, "a+b")  # noqa: SIM115 (held until close)
    except OSError as exc:
        raise SpoolError(f"cannot open spool {directory}: {exc}") from exc
    try:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SpoolError(f"spool {directory} is in use by another wardwatch agent") from None
    return f
