"""The collector's aiohttp application: ingest API, systems and availability, maintenance
windows, health and its own /metrics.

Every error is JSON `{"error": "..."}` with a 4xx status (5xx only for our own failures), and
nothing is stored from a request that was refused. `POST /api/v1/results` answers 2xx only
after the batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig
from collector.period import PeriodError, parse_period
from collector.store import Store, StoreError, utcnow
from collector.systems import Systems
from probes.result import CheckResult

log = logging.getLogger("wardwatch.collector")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BATCH = 10_000


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(min_length=1, max_length=128)
    results: tuple[CheckResult, ...] = Field(max_length=MAX_BATCH)


class MaintenanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(min_length=1)
    start: datetime
    end: datetime
    kind: str = Field(pattern=r"^(planned|force_majeure)$")
    reason: str = Field(min_length=1, max_length=2000)
    approved_by: str = Field(min_length=1, max_length=128)
    by: str = Field(default="api", min_length=1, max_length=128)


class CollectorMetrics:
    """The collector's own metrics, on a registry the app owns."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.results = Counter("wardwatch_collector_results_received",
                               "Results accepted and stored.", registry=self.registry)
        self.duplicates = Counter("wardwatch_collector_results_duplicate",
                                  "Results received again (replays) and stored once.",
                                  registry=self.registry)
        self.batches = Counter("wardwatch_collector_batches", "Ingest requests answered 2xx.",
                               registry=self.registry)
        self.rejected = Counter("wardwatch_collector_batches_rejected",
                                "Ingest requests refused, by reason.", ["reason"],
                                registry=self.registry)
        self.ingest_seconds = Histogram(
            "wardwatch_collector_ingest_duration_seconds",
            "Time from request to committed batch.", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.agent_last_seen = Gauge("wardwatch_collector_agent_last_seen_timestamp_seconds",
                                     "When each agent last pushed (Unix time).", ["agent"],
                                     registry=self.registry)
        self.system_state = Gauge(
            "wardwatch_collector_system_state",
            "1 for the system's current state (up, degraded, down, unknown), else 0.",
            ["system", "state"], registry=self.registry)
        self.system_availability = Gauge(
            "wardwatch_collector_system_availability_ratio",
            "Availability this year so far over planned hours (0-1).", ["system"],
            registry=self.registry)
        self.system_budget_left = Gauge(
            "wardwatch_collector_system_budget_left_seconds",
            "Downtime the target still allows this year (negative: overspent).", ["system"],
            registry=self.registry)
        self.results_expired = Counter("wardwatch_collector_results_expired",
                                       "Raw results rolled up hourly and deleted after the "
                                       "retention period.",
                                       registry=self.registry)


CONFIG_KEY = web.AppKey("config", CollectorConfig)
STORE_KEY = web.AppKey("store", Store)
SYSTEMS_KEY = web.AppKey("systems", Systems)
METRICS_KEY = web.AppKey("metrics", CollectorMetrics)


def create_app(config: CollectorConfig, store_url: str | None = None) -> web.Application:
    """The collector app; the store opens on startup and closes on cleanup."""
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[_json_errors])
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = CollectorMetrics()
    app.cleanup_ctx.append(_open_store(store_url or config.store, config))
    app.cleanup_ctx.append(_housekeeping)
    app.router.add_post("/api/v1/results", ingest)
    app.router.add_get("/api/v1/systems", list_systems)
    app.router.add_get("/api/v1/availability", availability)
    app.router.add_get("/api/v1/maintenance", list_maintenance)
    app.router.add_post("/api/v1/maintenance", add_maintenance)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _open_store(url: str, config: CollectorConfig
                ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(url, synchronous=config.store_synchronous,
                                 stale_after=config.stale_after)
        app[STORE_KEY] = store
        app[SYSTEMS_KEY] = Systems(config, store, HolidayCalendar.load(config.calendar))
        yield
        await store.close()

    return ctx


SYSTEM_METRICS_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Background work the app owns: system gauges every minute, retention every hour."""
    task = asyncio.create_task(_housekeeping_loop(app), name="collector-housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _housekeeping_loop(app: web.Application) -> None:
    last_retention = 0.0
    while True:
        try:
            await refresh_system_metrics(app)
            if time.monotonic() - last_retention >= RETENTION_EVERY_S:
                cutoff = utcnow() - timedelta(seconds=app[CONFIG_KEY].retention)
                app[METRICS_KEY].results_expired.inc(
                    await app[STORE_KEY].expire_results(cutoff))
                last_retention = time.monotonic()
        except Exception:  # keep the service up; the next round tries again
            log.exception("housekeeping failed")
        await asyncio.sleep(SYSTEM_METRICS_EVERY_S)


async def refresh_system_metrics(app: web.Application) -> None:
    m = app[METRICS_KEY]
    systems = app[SYSTEMS_KEY]
    now = utcnow()
    for system in app[CONFIG_KEY].systems:
        state = await systems.current(system, now)
        for name in ("up", "degraded", "down", "unknown"):
            m.system_state.labels(system.id, name).set(1.0 if state.state == name else 0.0)
        ytd = await systems.year_to_date(system, now)
        if ytd.report.availability is not None:
            m.system_availability.labels(system.id).set(ytd.report.availability)
        m.system_budget_left.labels(system.id).set(ytd.budget_left_s)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal: answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status,
                                 dumps=_dumps)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (404, 405, 413 body too large) as JSON too
        return web.json_response({"error": exc.reason}, status=exc.status)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def ingest(request: web.Request) -> web.Response:
    started = time.perf_counter()
    m = request.app[METRICS_KEY]
    store = request.app[STORE_KEY]
    token = _bearer(request)
    if token is None:
        m.rejected.labels("unauthenticated").inc()
        raise ApiError(401, "missing bearer token")
    agent_id = await store.authenticate(token)
    if agent_id is None:
        m.rejected.labels("bad_token").inc()
        raise ApiError(401, "unknown or revoked token")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        m.rejected.labels("too_large").inc()
        limit = request.app[CONFIG_KEY].max_body_bytes
        raise ApiError(413, f"body over {limit} bytes: send smaller batches") from None
    try:
        batch = IngestRequest.model_validate_json(body)
    except ValidationError as exc:
        m.rejected.labels("invalid").inc()
        raise ApiError(400, _first_errors(exc)) from None
    if batch.agent_id != agent_id or any(r.agent_id != agent_id for r in batch.results):
        m.rejected.labels("wrong_agent").inc()
        raise ApiError(403, f"this token belongs to agent {agent_id}")
    now = utcnow()
    outcome = await store.ingest(agent_id, batch.results, now, address=request.remote)
    m.results.inc(outcome.accepted)
    m.duplicates.inc(outcome.duplicates)
    m.batches.inc()
    m.agent_last_seen.labels(agent_id).set(now.timestamp())
    m.ingest_seconds.observe(time.perf_counter() - started)
    return web.json_response({"accepted": outcome.accepted, "duplicates": outcome.duplicates})


def _first_errors(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "invalid batch: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


async def list_systems(request: web.Request) -> web.Response:
    """Every configured system: its state now and its availability so far this year.

    The state is read now; the year-to-date figures are at most a minute and a half old
    (`ytd_as_of`), refreshed by housekeeping, so a board polling this stays cheap.
    """
    config = request.app[CONFIG_KEY]
    systems = request.app[SYSTEMS_KEY]
    now = utcnow()
    out = []
    for system in config.systems:
        state = await systems.current(system, now)
        ytd = await systems.recent_year_to_date(system, now)
        out.append({
            "id": system.id, "name": system.name, "core": system.core,
            "target": system.target, "state": state.state, "since": state.since.isoformat(),
            "cause": state.cause, "monitored_from": ytd.start.isoformat(),
            "availability_ytd": ytd.report.availability, "met_ytd": ytd.report.met,
            "downtime_ytd_s": ytd.report.downtime_s, "budget_year_s": ytd.budget_s,
            "budget_left_s": ytd.budget_left_s, "ytd_as_of": ytd.as_of.isoformat(),
        })
    return web.json_response(out, dumps=_dumps)


async def availability(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    system_id = request.query.get("system")
    if not system_id:
        raise ApiError(400, "system is required")
    try:
        system = config.system(system_id)
    except KeyError:
        raise ApiError(404, f"unknown system {system_id!r}") from None
    try:
        start, end = parse_period(request.query.get("from"), request.query.get("to"),
                                  config.zone, utcnow())
    except PeriodError as exc:
        raise ApiError(400, str(exc)) from None
    report = await request.app[SYSTEMS_KEY].availability(system, start, end, utcnow())
    return web.json_response({"system": system.id, "from": start.isoformat(),
                              "to": end.isoformat(), **report.as_dict()}, dumps=_dumps)


def _require_admin(request: web.Request) -> None:
    expected = request.app[CONFIG_KEY].admin_token
    if expected is None:
        # without an admin token, writes are taken only from this machine (CLI, local UI)
        if request.remote not in ("127.0.0.1", "::1"):
            raise ApiError(403, "writes need the admin token (admin_token in config)")
        return
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token, expected.get()):
        raise ApiError(401, "admin bearer token required")


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "body is not JSON") from None


async def add_maintenance(request: web.Request) -> web.Response:
    _require_admin(request)
    try:
        body = MaintenanceRequest.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(400, _first_errors(exc)) from None
    config = request.app[CONFIG_KEY]
    if body.system not in {s.id for s in config.systems}:
        raise ApiError(400, f"unknown system {body.system!r}")
    if body.start.tzinfo is None or body.end.tzinfo is None:
        raise ApiError(400, "start and end need a UTC offset (e.g. +08:00 or Z)")
    try:
        window = await request.app[STORE_KEY].add_maintenance(
            system=body.system, start=body.start, end=body.end, kind=body.kind,
            reason=body.reason, approved_by=body.approved_by, by=body.by, now=utcnow())
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    request.app[SYSTEMS_KEY].forget_year_to_date(body.system)
    return web.json_response(_jsonable(window.__dict__), status=201)


async def list_maintenance(request: web.Request) -> web.Response:
    system = request.query.get("system")
    windows = await request.app[STORE_KEY].maintenance_windows(
        system=system, include_cancelled=request.query.get("cancelled") == "true")
    return web.json_response([_jsonable(w.__dict__) for w in windows])


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE_KEY].ping()
    except Exception as exc:  # the store is down: not ready, say why
        return web.json_response({"status": "unavailable", "error": str(exc)[:300]},
                                 status=503)
    return web.json_response({"status": "ok"})
