"""Delivery of results to the collector: spool first, then `POST {url}/api/v1/results`.

`Pusher.add` is the agent's result listener: it only queues in memory; one writer task
appends the queue to the `Spool` in a thread (one fsync per batch of arrivals, in arrival
order). One push task sends the spool's oldest results as `{"agent_id": …, "results": […]}`
with `Authorization: Bearer TOKEN` and moves the spool's cursor only on a 2xx, so a result
leaves the disk only when the collector has it (DESIGN.md: the reply comes after the batch is
durable).

When it pushes: a round starts every `push_interval`, and at once when a full batch
(`batch_size`) is waiting; a round sends batches back to back until the spool is empty. The
first request of a round goes out even when there is nothing to send: an empty batch is the
heartbeat that tells the collector the agent is alive. So a result waits at most
`push_interval` (plus retries), and a backlog drains at full speed.

What a reply does:
- 2xx: acknowledge (cursor moves, finished segments are deleted).
- connection error, timeout, TLS failure, 5xx, 429: retried by tenacity with exponential
  backoff and jitter (1 s doubling to 60 s; a `Retry-After` is honoured up to the cap). Each
  retry peeks again, so it carries whatever arrived meanwhile, in order.
- 401/403: nothing acknowledged; an error naming the server's message; the token file is read
  again (a fixed token takes effect without a restart); retried at the next round.
- 413: the batch is halved (doubling back after 16 accepted batches, so a body limit is not
  hit every other request). A single result refused as too large is a poison result (below).
- 400/422: the batch is bisected to find the result the collector refuses; once a single
  result is refused on its own it is dropped (counted under `invalid`, logged with its id and
  the server's message) so it cannot block the queue. After `poison_limit` drops in a row with
  no result accepted in between, the collector is refusing everything (a version mismatch, not
  a bad result): the pusher stops dropping and holds the spool until the collector accepts
  again.
- anything else (404, a redirect): an error, retried at the next round.

Failures are counted by reason (`FAILURE_REASONS`) for /metrics and logged when they start,
change, or every 5 minutes while they persist; the token is never logged.

Stopping: the writer puts every queued result on disk, then one last round (no retries) runs
within `stop_deadline`; whatever is not acknowledged stays in the spool for the next start.

Durability: a result is on disk once the writer's append (one fsync) returns, a few
milliseconds after `add`; a kill -9 or power loss inside that window loses what was queued.
Delivery is at-least-once (a 2xx lost to a crash or a timeout re-sends the batch); the
collector stores each result id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random

from agent.config import CollectorSection
from agent.spool import Batch, Spool
from probes.result import SENT_AT_HEADER, CheckResult

log = logging.getLogger("wardwatch.agent.push")

RESULTS_PATH = "/api/v1/results"
FAILURE_REASONS = ("connection", "timeout", "tls", "server_error", "throttled",
                   "unauthorized", "too_large", "invalid", "rejected", "spool")
"""Why a push attempt did not deliver: label values of the failure counter."""

_REPEAT_LOG_S = 300.0
_GROW_AFTER = 16


class _Outcome(enum.Enum):
    DRAINED = "drained"  # 2xx for a batch smaller than the limit: nothing more waits
    MORE = "more"  # 2xx for a full batch: send the next one now
    AGAIN = "again"  # batch halved or a poison result dropped: send the next one now
    GIVE_UP = "give_up"  # refused for a reason a quick retry will not fix: wait for next round


class _Retryable(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class PushSnapshot:
    """Counters for /metrics, read on the event loop at scrape time."""

    results_pushed_total: int
    failures_total: dict[str, int]
    last_success_at: float | None
    """Unix time of the last 2xx (heartbeats included); None before the first."""
    spool_pending_results: int
    spool_pending_bytes: int
    dropped_total: dict[str, int]
    """Results that will never be delivered, by reason: the spool's `overflow`, `corrupt`,
    `invalid`, `too_large`, and `unwritable` (queued in memory while the disk refused writes
    for longer than the queue holds)."""
    spool_corrupt_bytes: int = 0
    """Bytes of torn or damaged spool data skipped or cut since the agent started."""


class Pusher:
    """Owns the writer and push tasks between `start()` and `stop()`."""

    def __init__(self, config: CollectorSection, agent_id: str, spool: Spool, *,
                 backoff: tuple[float, float] = (1.0, 60.0), request_timeout: float = 30.0,
                 stop_deadline: float = 5.0, max_queued: int = 10_000, poison_limit: int = 10,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._url = config.url.rstrip("/") + RESULTS_PATH
        self._spool = spool
        self._body_prefix = b'{"agent_id":' + json.dumps(agent_id).encode() + b',"results":['
        self._backoff_max = backoff[1]
        self._backoff = (wait_exponential(multiplier=backoff[0], max=backoff[1])
                         + wait_random(0, backoff[0]))
        self._request_timeout = request_timeout
        self._stop_deadline = stop_deadline
        self._max_queued = max_queued
        self._poison_limit = poison_limit
        self._clock = clock

        self._queue: list[CheckResult] = []
        self._queued = asyncio.Event()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None

        self._size_cap = config.batch_size  # halved by a 413, doubled back after a run of
        self._size_successes = 0  # `_GROW_AFTER` accepted non-empty batches
        self._suspect = 0  # while bisecting: the head results known to hold a refused one
        self._poison_streak = 0
        self._healthy = False

        self._pushed_total = 0
        self._failures: Counter[str] = Counter(dict.fromkeys(FAILURE_REASONS, 0))
        self._unwritable = 0
        self._last_success_at: float | None = None
        self._failed_attempts = 0
        self._last_problem: tuple[str, str] | None = None
        self._last_logged = 0.0

    # -- public API --------------------------------------------------------------------------

    def add(self, result: CheckResult) -> None:
        """The Agent's result listener: queue `result` for the spool (never blocks)."""
        self._queue.append(result)
        if len(self._queue) > self._max_queued:
            # Only reached when the disk has refused writes for a long time.
            del self._queue[0]
            self._unwritable += 1
            self._report("unwritable", "the spool is not writable and the in-memory queue "
                         f"is full ({self._max_queued}); dropping the oldest queued results",
                         logging.ERROR)
        self._queued.set()

    async def start(self) -> None:
        self._token, ssl_context = await asyncio.to_thread(self._prepare)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=2),
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            headers={"User-Agent": "wardwatch-agent"})
        self._writer = asyncio.create_task(self._write_loop(), name="wardwatch-spool-writer")
        self._runner = asyncio.create_task(self._push_loop(), name="wardwatch-push")

    async def stop(self) -> None:
        """Spool what is queued, try one last push within `stop_deadline`, then stop."""
        if self._writer is None or self._runner is None:
            return
        self._closing.set()
        self._queued.set()
        self._wake.set()
        await self._writer  # local disk: quick, and not worth racing against the deadline
        try:
            async with asyncio.timeout(self._stop_deadline):
                await self._runner
        except TimeoutError:
            log.warning("the final push did not finish within %.1f s", self._stop_deadline)
        finally:
            if self._session is not None:
                await self._session.close()
            self._writer = self._runner = self._session = None
        if self._spool.pending_count:
            log.info("push stopped; %d results stay in the spool for the next start",
                     self._spool.pending_count)

    def snapshot(self) -> PushSnapshot:
        dropped = dict(self._spool.dropped)
        dropped["unwritable"] = self._unwritable
        return PushSnapshot(
            results_pushed_total=self._pushed_total,
            failures_total=dict(self._failures),
            last_success_at=self._last_success_at,
            spool_pending_results=self._spool.pending_count,
            spool_pending_bytes=self._spool.pending_bytes,
            dropped_total=dropped,
            spool_corrupt_bytes=self._spool.corrupt_bytes,
        )

    # -- spool writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            await self._persist()
            if self._closing.is_set():
                return

    async def _persist(self) -> None:
        while self._queue:
            chunk, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self._spool.append, chunk)
            except Exception as exc:  # a full or failing disk (OSError), or our bug
                self._queue[:0] = chunk  # keep the order; `add` bounds the queue
                self._report("spool", f"cannot write to the spool: {exc}", logging.ERROR)
                if self._closing.is_set():
                    self._unwritable += len(self._queue)
                    log.error("stopping with %d results that could not be written to the "
                              "spool; they are lost", len(self._queue))
                    self._queue.clear()
                    return
                await self._pause(1.0)
                continue
            if self._spool.pending_count >= self._batch_limit():
                self._wake.set()

    # -- push loop ---------------------------------------------------------------------------

    async def _push_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            final = self._closing.is_set()
            started = loop.time()
            try:
                await self._push_round(final)
            except Exception:  # our bug must not end delivery for the agent's lifetime
                log.exception("push round failed")
            if final:
                return
            await self._wait_turn(started + self._config.push_interval)

    async def _wait_turn(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing.is_set():
            self._wake.clear()
            if self._healthy and self._spool.pending_count >= self._batch_limit():
                return
            remaining = due - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _push_round(self, final: bool) -> None:
        """Send batches until the spool is empty or a request fails; the first one even when
        it is empty (the heartbeat)."""
        while True:
            outcome = await self._deliver(final)
            self._healthy = outcome is not _Outcome.GIVE_UP
            if outcome in (_Outcome.DRAINED, _Outcome.GIVE_UP):
                return
            if self._closing.is_set() and not final:
                return  # the loop runs the final round next

    async def _deliver(self, final: bool) -> _Outcome:
        """One batch, retried with backoff while the failure is worth retrying."""
        if final:
            try:
                return await self._attempt()
            except _Retryable:
                return _Outcome.GIVE_UP
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._retry_wait,
            stop=lambda _state: self._closing.is_set(),
            sleep=self._pause,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt()
        except _Retryable:
            return _Outcome.GIVE_UP  # only when stopping: the final round follows
        raise AssertionError("tenacity ended without an outcome")

    def _retry_wait(self, state: RetryCallState) -> float:
        wait = self._backoff(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self._backoff_max))
        return wait

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short when the pusher is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _batch_limit(self) -> int:
        if self._suspect:
            return max(1, min(self._size_cap, self._suspect // 2))
        return self._size_cap

    # -- one request -------------------------------------------------------------------------

    async def _attempt(self) -> _Outcome:
        limit = self._batch_limit()
        try:
            batch = await asyncio.to_thread(self._spool.peek, limit)
        except OSError as exc:
            raise self._retryable("spool", f"cannot read the spool: {exc}") from None
        status, message, retry_after = await self._post(batch)
        if 200 <= status < 300:
            return await self._delivered(batch, limit)
        if status == 429:
            raise self._retryable("throttled", f"HTTP 429: {message}", retry_after)
        if status >= 500:
            raise self._retryable("server_error", f"HTTP {status}: {message}", retry_after)
        if status in (401, 403):
            self._fail("unauthorized", f"HTTP {status} (check the agent's token and id): "
                       f"{message}", logging.ERROR)
            if self._config.token_file is not None:
                self._token = await asyncio.to_thread(self._load_token)
            return _Outcome.GIVE_UP
        if status == 413:
            # logged once when halving starts; each further halving is only counted
            self._fail("too_large", f"HTTP 413 for {len(batch)} results: {message}; "
                       "halving the batch", logging.WARNING,
                       quiet=self._size_cap < self._config.batch_size)
            if len(batch) > 1:
                self._size_cap = max(1, len(batch) // 2)
                self._size_successes = 0
                return _Outcome.AGAIN
            if len(batch) == 1:
                return await self._poison(batch, "too_large", status, message)
            return _Outcome.GIVE_UP
        if status in (400, 422):
            self._fail("invalid", f"HTTP {status} for {len(batch)} results: {message}; "
                       "bisecting to find the refused result", logging.WARNING,
                       quiet=self._suspect > 0)
            if len(batch) > 1:
                self._suspect = len(batch)  # bisect: the next request sends its first half
                return _Outcome.AGAIN
            if len(batch) == 1:
                return await self._poison(batch, "invalid", status, message)
            return _Outcome.GIVE_UP
        self._fail("rejected", f"HTTP {status} (is collector.url right?): {message}",
                   logging.ERROR)
        return _Outcome.GIVE_UP

    async def _post(self, batch: Batch) -> tuple[int, str, float | None]:
        assert self._session is not None
        # the agent's wall clock at sending: the collector measures this host's clock offset
        # from it and puts the results on its own clock (SENT_AT_HEADER)
        headers = {"Content-Type": "application/json",
                   SENT_AT_HEADER: datetime.now(UTC).isoformat()}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = self._body_prefix + b",".join(batch.records) + b"]}"
        try:
            async with self._session.post(self._url, data=body, headers=headers,
                                          allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                return (resp.status, _server_message(text),
                        _retry_after(resp.headers.get("Retry-After")))
        except aiohttp.ClientSSLError as exc:
            raise self._retryable("tls", f"TLS with {self._url} failed: {exc}") from None
        except TimeoutError:
            raise self._retryable(
                "timeout", f"no reply from {self._url} within {self._request_timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._retryable("connection", f"{self._url}: {exc or type(exc).__name__}"
                                  ) from None

    async def _delivered(self, batch: Batch, limit: int) -> _Outcome:
        try:
            await asyncio.to_thread(self._spool.ack, batch)
        except OSError as exc:
            # The collector has them; they will be sent again and stored once.
            self._fail("spool", f"cannot record the delivery in the spool: {exc}",
                       logging.ERROR)
        self._pushed_total += len(batch)
        self._last_success_at = self._clock()
        if self._failed_attempts:
            log.info("push to %s works again after %d failed attempts", self._url,
                     self._failed_attempts)
            self._failed_attempts = 0
            self._last_problem = None
        if len(batch):
            self._poison_streak = 0
        if self._suspect:
            self._suspect = max(0, self._suspect - len(batch))
        if len(batch) and self._size_cap < self._config.batch_size:
            self._size_successes += 1
            if self._size_successes >= _GROW_AFTER:
                self._size_cap = min(self._config.batch_size, self._size_cap * 2)
                self._size_successes = 0
        return _Outcome.MORE if len(batch) >= limit else _Outcome.DRAINED

    async def _poison(self, batch: Batch, reason: str, status: int, message: str) -> _Outcome:
        """A single result the collector refuses on its own: drop it, unless the collector
        is refusing everything (then hold: dropping would empty the spool)."""
        what = _describe(batch.records[0])
        if self._poison_streak >= self._poison_limit:
            self._suspect = 1
            self._report("hold", f"the collector refused the last {self._poison_streak} "
                         "results one by one; holding the spool instead of dropping more "
                         f"(fix the collector or the agent version). Refused now: {what}: "
                         f"HTTP {status}: {message}", logging.ERROR)
            return _Outcome.GIVE_UP
        try:
            await asyncio.to_thread(self._spool.drop, batch, reason)
        except OSError as exc:
            self._fail("spool", f"cannot drop a refused result: {exc}", logging.ERROR)
            return _Outcome.GIVE_UP
        self._poison_streak += 1
        self._suspect = 0
        log.error("the collector refused result %s on its own (HTTP %d: %s); dropped it "
                  "(reason %s) so the results behind it are delivered", what, status, message,
                  reason)
        return _Outcome.AGAIN

    # -- failures and logging ----------------------------------------------------------------

    def _retryable(self, reason: str, message: str,
                   retry_after: float | None = None) -> _Retryable:
        then = "stopping" if self._closing.is_set() else "retrying with backoff"
        self._fail(reason, f"{message}; {then}, {self._spool.pending_count} results waiting "
                   "in the spool", logging.WARNING)
        return _Retryable(reason, message, retry_after)

    def _fail(self, reason: str, message: str, level: int, *, quiet: bool = False) -> None:
        self._failures[reason] += 1
        self._failed_attempts += 1
        if not quiet:
            self._report(reason, f"push to {self._url} failed: {message}", level)

    def _report(self, reason: str, message: str, level: int) -> None:
        """Log a problem when it starts or changes, then every few minutes while it lasts."""
        key = (reason, message.split(";")[0])
        now = time.monotonic()
        if key != self._last_problem or now - self._last_logged >= _REPEAT_LOG_S:
            log.log(level, "%s", message)
            self._last_problem = key
            self._last_logged = now

    # -- set-up ------------------------------------------------------------------------------

    def _prepare(self) -> tuple[str | None, ssl.SSLContext | bool]:
        token = self._load_token()
        if not self._url.startswith("https://"):
            return token, True
        ca_file = self._config.ca_file
        # Verification stays on. With ca_file the hospital's CA is the only trust anchor
        # (the system store is not loaded); without it, the system store is used.
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None)
        if self._config.cert_file is not None:
            # Mutual TLS: the collector checks that the certificate's CN is this agent's id.
            # Loaded once here; a renewed certificate takes effect when the agent restarts.
            # password="": an encrypted key fails to load instead of prompting on a terminal.
            context.load_cert_chain(self._config.cert_file, self._config.key_file, password="")
        return token, context

    def _load_token(self) -> str | None:
        if self._config.token is not None:
            return self._config.token.get() or None
        if self._config.token_file is None:
            log.warning("collector.token_file is not set: pushing without a token")
            return None
        try:
            return self._config.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            log.error("cannot read collector.token_file %s: %s", self._config.token_file,
                      exc.strerror)
            return None


def _server_message(text: str) -> str:
    """The collector's `{"error": …}`, else the start of whatever it answered."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:500]
    return " ".join(text.split())[:300] or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form: the backoff decides


def _describe(record: bytes) -> str:
    try:
        data: Any = json.loads(record)
        return (f"id={data.get('id')} check={data.get('check_id')} "
                f"started_at={data.get('started_at')}")
    except (ValueError, AttributeError):
        return f"(undecodable, {len(record)} bytes)"
