"""When the store is away: which exceptions mean "not now" rather than "our bug".

PostgreSQL restarting or unreachable, a SQLite file on a full (or failing) disk, a database
locked past its timeout: the request is refused with 503, a Retry-After and a short message
naming the cause, and nothing was acknowledged — an agent keeps the batch in its spool and
sends it again (agent/push.py retries every 5xx). Anything else stays a 500: a bug must not
look like an outage. tests/collector/test_store_faults.py restarts a PostgreSQL cluster and
fills a tmpfs under a running collector.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import sqlalchemy.exc as sa_exc

log = logging.getLogger("wardwatch.collector")

RETRY_AFTER_S = 5
UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "58")
"""PostgreSQL error classes that mean "not now": connection exceptions, insufficient
resources (disk full, out of memory, too many connections), operator intervention (shutting
down, cannot connect now), system errors (appendix A of the PostgreSQL manual)."""
LOG_EVERY_S = 10.0


def cause(exc: BaseException) -> str | None:
    """A short, secret-free reason when `exc` means the store is unavailable; else None."""
    if isinstance(exc, sa_exc.DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if not (exc.connection_invalidated or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
                or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)):
            return None
        inner = exc.orig if exc.orig is not None else exc
        return _first_line(inner)
    if isinstance(exc, sqlite3.OperationalError):   # the SQLite writer thread's own errors
        return _first_line(exc)
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


class Throttled:
    """One warning per LOG_EVERY_S with the count of refusals since the last one, so an
    outage under a hundred pushes a second does not flood the log."""

    def __init__(self) -> None:
        self._last = -LOG_EVERY_S
        self._count = 0

    def warn(self, where: str, reason: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S:
            log.warning("store unavailable (%d requests refused with 503 since the last "
                        "warning), at %s: %s", self._count, where, reason)
            self._last = now
            self._count = 0
