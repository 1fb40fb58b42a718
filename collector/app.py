"""The collector's aiohttp application: ingest API, systems and availability, maintenance
windows, health and its own /metrics.

Every error is JSON `{"error": "..."}` with a 4xx status (5xx only for our own failures), and
nothing is stored from a request that was refused. `POST /api/v1/results` answers 2xx only
after the batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts import alertmanager
from collector import clock, shedding, unavailable
from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig
from collector.findings import VERSIONED, FindingsService
from collector.incidents import Incident, IncidentError, IncidentService
from collector.outbox import Outbox
from collector.period import PeriodError, parse_period
from collector.ratelimit import FailureLimiter
from collector.scans import scan_forever
from collector.store import IngestOutcome, Store, StoreError, utcnow
from collector.systems import Systems
from collector.tls import client_cert_refusal
from probes.result import SCHEMA_VERSION, SENT_AT_HEADER, CheckResult, known_fields_only

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
        self.incidents_open = Gauge(
            "wardwatch_collector_incidents_open", "Incidents open now, by level.", ["level"],
            registry=self.registry)
        self.overtimes = Gauge(
            "wardwatch_collector_overtimes",
            "Missed deadlines (超时) in the current service year, by level.", ["level"],
            registry=self.registry)
        self.major_breach = Gauge(
            "wardwatch_collector_overtimes_major_breach_threshold",
            "Overtimes in a service year at which the level is a major breach (重大违约).",
            ["level"], registry=self.registry)
        self.time_to_respond = Histogram(
            "wardwatch_collector_incident_respond_seconds",
            "Time from an incident's start to its acknowledgement.", ["level"],
            registry=self.registry,
            buckets=(60, 300, 600, 1200, 1800, 3600, 7200, 14400, 86400))
        self.time_to_recover = Histogram(
            "wardwatch_collector_incident_recover_seconds",
            "Time from an incident's start to its recovery.", ["level"],
            registry=self.registry,
            buckets=(60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400))
        self.incident_evaluation_seconds = Histogram(
            "wardwatch_collector_incident_evaluation_seconds",
            "Time one evaluation of every system's incident takes.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.results_newer_schema = Counter(
            "wardwatch_collector_results_newer_schema",
            "Results of the next result schema (an agent one version ahead), stored without "
            "the fields this collector does not know.", registry=self.registry)
        self.results_expired = Counter("wardwatch_collector_results_expired",
                                       "Raw results rolled up hourly and deleted after the "
                                       "retention period.",
                                       registry=self.registry)
        self.agent_clock_offset = Gauge(
            "wardwatch_collector_agent_clock_offset_seconds",
            "How far each agent's clock is behind the collector's at its last push (negative: "
            "ahead); beyond 10 s its results are moved onto the collector's clock.", ["agent"],
            registry=self.registry)
        self.results_clock_corrected = Counter(
            "wardwatch_collector_results_clock_corrected",
            "Results moved onto the collector's clock (their agent's clock was off).",
            registry=self.registry)
        self.clock_warnings = clock.OffsetWarnings()


CONFIG_KEY = web.AppKey("config", CollectorConfig)
STORE_KEY = web.AppKey("store", Store)
SYSTEMS_KEY = web.AppKey("systems", Systems)
INCIDENTS_KEY = web.AppKey("incidents", IncidentService)
WAKE_KEY = web.AppKey("wake_incidents", asyncio.Event)
ATTENTION_KEY = web.AppKey("attention", set[tuple[str, str]])
CHANGED_KEY = web.AppKey("changed", set[tuple[str, str]])
OUTBOX_KEY = web.AppKey("outbox", Outbox)
FINDINGS_KEY = web.AppKey("findings", FindingsService)
OBSERVED_KINDS = frozenset({"patches", "hardening", *VERSIONED})
"""Result kinds the findings service reads (inventories, hardening, product versions)."""
SEND_KEY = web.AppKey("wake_outbox", asyncio.Event)
METRICS_KEY = web.AppKey("metrics", CollectorMetrics)
GATE_KEY = web.AppKey("ingest_gate", shedding.IngestGate)
AUTH_FAILURES_KEY = web.AppKey("auth_failures", FailureLimiter)


def create_app(config: CollectorConfig, store_url: str | None = None) -> web.Application:
    """The collector app; the store opens on startup and closes on cleanup."""
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[_json_errors, _refuse_nul])
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = CollectorMetrics()
    app[GATE_KEY] = shedding.IngestGate()
    app.on_startup.append(_tune_gc)
    app[AUTH_FAILURES_KEY] = FailureLimiter()   # failed agent tokens per address
    app.cleanup_ctx.append(_open_store(store_url or config.store, config))
    # background work the app owns, each cancelled on shutdown: system gauges every minute
    # and retention every hour; incidents after each ingest and every few seconds; the outbox
    app.cleanup_ctx.append(_background(_housekeeping_loop, "collector-housekeeping"))
    app.cleanup_ctx.append(_background(_evaluate_forever, "collector-incidents"))
    app.cleanup_ctx.append(_background(_dispatch_forever, "collector-outbox"))
    app.cleanup_ctx.append(_background(scan_forever, "collector-agentless"))
    app.router.add_post("/api/v1/results", ingest)
    app.router.add_get("/api/v1/systems", list_systems)
    app.router.add_get("/api/v1/availability", availability)
    app.router.add_get("/api/v1/maintenance", list_maintenance)
    app.router.add_post("/api/v1/maintenance", add_maintenance)
    app.router.add_post("/api/v1/alertmanager", alertmanager_webhook)
    app.router.add_get("/api/v1/patches", fleet_patches)
    app.router.add_get("/api/v1/hosts/{host}/patches", host_patches)
    app.router.add_get("/api/v1/rectifications", list_rectifications)
    app.router.add_post("/api/v1/rectifications", add_rectification)
    app.router.add_get("/api/v1/waivers", list_waivers)
    app.router.add_post("/api/v1/waivers", add_waiver)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", show_incident)
    app.router.add_post("/api/v1/incidents/{id}/{action}", incident_action)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from collector.web import setup_web  # here: the UI's modules import this module
    setup_web(app)
    from collector.sd import service_discovery  # here too: it imports this module
    app.router.add_get("/api/v1/sd", service_discovery)
    from collector.openapi import openapi_document  # here too: it imports this module
    app.router.add_get("/api/v1/openapi.json", openapi_document)
    return app


GC_THRESHOLDS = (50_000, 20, 100)
"""The cyclic collector's thresholds (CPython's default: 700, 10, 10). A board build or an
incident round makes tens of thousands of short-lived tuples (state intervals); with the
defaults they trigger collections of the older generations, which walk every long-lived
object the collector holds (caches, the year-to-date figures) — 50-60 ms pauses that were the
board's p95 in the flapping profile (134 ms -> 76 ms, docs/benchmarks.md). Reference cycles
are still collected, just less often."""


async def _tune_gc(_app: web.Application) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()   # what exists at start-up (modules, config) lives as long as the process


def _background(loop: Callable[[web.Application], Coroutine[Any, Any, None]], name: str
                ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running `loop(app)` as a task from startup to shutdown."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def _open_store(url: str, config: CollectorConfig
                ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = await Store.open(url, synchronous=config.store_synchronous,
                                 stale_after=config.stale_after)
        app[STORE_KEY] = store
        calendar = HolidayCalendar.load(config.calendar)
        app[SYSTEMS_KEY] = Systems(config, store, calendar)
        service = IncidentService(config, store, app[SYSTEMS_KEY], calendar)
        outbox = Outbox(config, store, service)
        service.on_change = outbox.on_change   # messages queued in the change's transaction
        app[INCIDENTS_KEY] = service
        app[OUTBOX_KEY] = outbox
        app[SEND_KEY] = asyncio.Event()
        app[FINDINGS_KEY] = FindingsService(store)
        app[WAKE_KEY] = asyncio.Event()
        app[ATTENTION_KEY] = set()
        app[CHANGED_KEY] = set()
        yield
        await store.close()

    return ctx


SYSTEM_METRICS_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0


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


INCIDENT_GAP_S = 0.5
"""Evaluations after ingest are at least this far apart (a burst of batches is one round).
The first failing result after a quiet spell is evaluated at once (notification 0.44 s after
confirmation, tests/test_incident_notify.py); under churn the gap bounds the engine's share of
the loop (0.2 s: 20 rounds in a 50k-result bench run; 0.5 s: 11, PostgreSQL ingest +70 %)."""


FULL_EVALUATION_EVERY_S = 60.0
"""Every system, even one with nothing failing (silence, a window that ended), this often."""


async def _evaluate_forever(app: web.Application) -> None:
    """Systems with new failing evidence right after ingest (unless already settled in an
    incident, see IncidentService.settled); the systems being watched (something failing or
    an incident open) every `evaluate_every`; every system every FULL_EVALUATION_EVERY_S."""
    wake = app[WAKE_KEY]
    service = app[INCIDENTS_KEY]
    every = app[CONFIG_KEY].incidents.evaluate_every
    loop = asyncio.get_running_loop()
    last_watch = last_full = -FULL_EVALUATION_EVERY_S
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, last_watch + every - loop.time())):
                await wake.wait()
        wake.clear()
        attention = app[ATTENTION_KEY].copy()
        changed = app[CHANGED_KEY].copy()
        app[ATTENTION_KEY].clear()
        app[CHANGED_KEY].clear()
        now = loop.time()
        try:
            if now - last_full >= FULL_EVALUATION_EVERY_S:
                last_full = last_watch = now
                await evaluate_incidents(app)
            elif now - last_watch >= every:
                last_watch = now
                await evaluate_incidents(app, service.watching | service.systems_of(attention),
                                         deadlines=True)
            elif attention:
                # a system whose incident already holds every failing check, confirmed, is
                # left to the watch round unless one of its checks changed state
                due = (service.systems_of(changed)
                       | (service.systems_of(attention) - service.settled))
                if due:
                    await evaluate_incidents(app, due)
        except Exception:   # keep the service up; the next round tries again
            log.exception("incident evaluation failed")
        await asyncio.sleep(INCIDENT_GAP_S)


async def evaluate_incidents(app: web.Application, only: set[str] | None = None, *,
                             deadlines: bool = False) -> None:
    """Evaluate every system (or `only` these); overtimes are counted on full rounds and,
    with `deadlines`, on partial ones too."""
    started = time.perf_counter()
    service = app[INCIDENTS_KEY]
    m = app[METRICS_KEY]
    now = utcnow()
    changes = await service.evaluate(now, only) if only is None or only else []
    if only is not None and deadlines:
        changes += await service.count_overtimes(now)
    if changes:
        app[SEND_KEY].set()   # messages were queued with the changes
    for change in changes:
        log.info("incident %s %s: level %d %s", change.incident.number, change.event,
                 change.incident.level, change.incident.cause[:200])
        if change.event == "recovered":
            _observe_recovery(m, change.incident)
    await refresh_incident_metrics(app, now)
    m.incident_evaluation_seconds.observe(time.perf_counter() - started)


def _observe_recovery(m: CollectorMetrics, incident: Incident) -> None:
    if incident.recovered_at is not None:
        m.time_to_recover.labels(str(incident.level)).observe(
            (incident.recovered_at - incident.opened_at).total_seconds())


async def refresh_incident_metrics(app: web.Application, now: datetime) -> None:
    service = app[INCIDENTS_KEY]
    m = app[METRICS_KEY]
    open_now = await service.find(state="open")
    for level in (1, 2, 3, 4):
        m.incidents_open.labels(str(level)).set(sum(1 for i in open_now if i.level == level))
    for level, count in (await service.overtime_counts(now)).items():
        m.overtimes.labels(str(level)).set(count)
    for level, threshold in app[CONFIG_KEY].incidents.major_breach.items():
        m.major_breach.labels(str(level)).set(threshold)


OUTBOX_IDLE_S = 5.0


async def _dispatch_forever(app: web.Application) -> None:
    """Deliver queued notifications when a change queues some, and when the next reminder
    falls due (checked at least every OUTBOX_IDLE_S, so rows other collectors queued are
    picked up too)."""
    outbox = app[OUTBOX_KEY]
    wake = app[SEND_KEY]
    while True:
        try:
            await outbox.dispatch(utcnow())
            due = await outbox.next_due()
        except Exception:   # the database may be away; try again later
            log.exception("notification dispatch failed")
            due = None
        wait = OUTBOX_IDLE_S
        if due is not None:
            wait = min(wait, max(0.0, (due - utcnow()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await wake.wait()
        wake.clear()


UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def alertmanager_webhook(request: web.Request) -> web.Response:
    """Alertmanager's webhook (version 4): a firing group opens or updates its incident, a
    resolved group recovers it (docs/incidents.md). Configure Alertmanager with
    `http_config: {authorization: {credentials_file: …}}` holding the admin token."""
    _require_admin(request)
    try:
        note = alertmanager.Notification.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(400, _first_errors(exc).replace("invalid batch", "invalid payload")
                       ) from None
    _aware(*(a.startsAt for a in note.alerts),
           *(a.endsAt for a in note.alerts if a.endsAt is not None))
    now = utcnow()
    # endsAt may be Go's zero time (0001-01-01, "not yet"); startsAt opens the incident's
    # clocks, and year 1 or 9999 overflows its deadlines
    if not all(UNIX_EPOCH <= a.startsAt <= now + timedelta(days=1) for a in note.alerts):
        raise ApiError(400, "startsAt must lie between 1970 and now")
    service = request.app[INCIDENTS_KEY]
    config = request.app[CONFIG_KEY].incidents.alertmanager
    key = alertmanager.incident_key(note.groupKey)
    if note.status == "resolved":
        changes = await service.resolve_external(key, min(alertmanager.resolved_at(note), now),
                                                 "alertmanager", now)
    else:
        want = alertmanager.wanted(config, note)
        changes = [] if want is None else await service.raise_external(
            want, "alertmanager", now, alertmanager.describe(note))
    if changes:
        request.app[SEND_KEY].set()
    return web.json_response({"incidents": [_incident_json(c.incident) for c in changes],
                              "events": [c.event for c in changes]}, dumps=_dumps)


async def fleet_patches(request: web.Request) -> web.Response:
    """Per host: the latest patch inventory and its open findings by severity."""
    return web.json_response(await request.app[FINDINGS_KEY].fleet(utcnow()), dumps=_dumps)


async def host_patches(request: web.Request) -> web.Response:
    """One host's inventory history and every finding, open and fixed, with time to fix."""
    host = request.match_info["host"]
    found = await request.app[FINDINGS_KEY].host(host, utcnow())
    if not found["inventories"] and not found["findings"]:
        raise ApiError(404, f"no patch or hardening data for host {host!r}")
    return web.json_response(found, dumps=_dumps)


MAX_ROW_ID = 2**31 - 1
"""Row ids are INTEGER columns (32 bits on PostgreSQL): a larger id names no row."""


class RectificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=2000)
    issued_by: str = Field(min_length=1, max_length=128)
    issued_at: datetime
    due_at: datetime
    findings: list[Annotated[int, Field(ge=1, le=MAX_ROW_ID)]] = Field(min_length=1,
                                                                      max_length=10_000)
    note: str = Field(default="", max_length=4000)
    by: str = Field(default="api", min_length=1, max_length=128)


class WaiverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=128)
    key: str = Field(min_length=1, max_length=256)
    accepted_by: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=4000)
    expires_at: datetime
    by: str = Field(default="api", min_length=1, max_length=128)


def _aware(*values: datetime) -> None:
    if any(v.tzinfo is None for v in values):
        raise ApiError(400, "times need a UTC offset (e.g. +08:00 or Z)")
    try:   # the store keeps UTC: 0001-01-01T00:00+08:00 has none
        for value in values:
            value.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, "times must fall within the years 1 to 9999 in UTC") from None


async def list_rectifications(request: web.Request) -> web.Response:
    """Rectification tasks, their state derived from later scans, and the year's completion
    (`?year=2026`, default this year)."""
    now = utcnow()
    try:
        year = int(request.query.get("year", now.astimezone(request.app[CONFIG_KEY].zone).year))
    except ValueError:
        raise ApiError(400, "year must be a number such as 2026") from None
    service = request.app[FINDINGS_KEY]
    return web.json_response({"tasks": await service.rectifications(now=now, year=year),
                              "completion": await service.completion(now=now, year=year)},
                             dumps=_dumps)


async def add_rectification(request: web.Request) -> web.Response:
    _require_admin(request)
    try:
        body = RectificationRequest.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(400, _first_errors(exc)) from None
    _aware(body.issued_at, body.due_at)
    try:
        task = await request.app[FINDINGS_KEY].add_rectification(
            title=body.title, issued_by=body.issued_by, issued_at=body.issued_at,
            due_at=body.due_at, finding_ids=body.findings, note=body.note, by=body.by,
            now=utcnow())
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(task, status=201, dumps=_dumps)


async def list_waivers(request: web.Request) -> web.Response:
    found = await request.app[FINDINGS_KEY].waivers(include_expired=True)
    return web.json_response([_jsonable(w.__dict__) for w in found], dumps=_dumps)


async def add_waiver(request: web.Request) -> web.Response:
    _require_admin(request)
    try:
        body = WaiverRequest.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(400, _first_errors(exc)) from None
    _aware(body.expires_at)
    try:
        waiver = await request.app[FINDINGS_KEY].add_waiver(
            host=body.host, key=body.key, accepted_by=body.accepted_by, reason=body.reason,
            expires_at=body.expires_at, by=body.by, now=utcnow())
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(_jsonable(waiver.__dict__), status=201, dumps=_dumps)


class IncidentAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str = Field(min_length=1, max_length=128)
    note: str = Field(default="", max_length=4000)
    ref: str | None = Field(default=None, max_length=500)
    """For `report`: the report's document number or link."""


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    number = raw.rsplit("-", 1)[-1] if raw.upper().startswith("INC-") else raw
    try:
        incident_id = int(number)
    except ValueError:
        raise ApiError(400, f"{raw!r} is not an incident id (a number or INC-YYYY-NNNN)") from None
    if not 0 < incident_id <= MAX_ROW_ID:
        raise ApiError(404, f"no incident {raw}")
    return incident_id


def _incident_json(incident: Incident) -> dict[str, Any]:
    return incident.as_dict()


async def list_incidents(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state not in (None, "open", "recovered", "closed"):
        raise ApiError(400, "state must be open, recovered or closed")
    level_text = request.query.get("level")
    level = None
    if level_text is not None:
        if level_text not in ("1", "2", "3", "4"):
            raise ApiError(400, "level must be 1, 2, 3 or 4")
        level = int(level_text)
    found = await request.app[INCIDENTS_KEY].find(state=state, level=level,
                                                  system=request.query.get("system"))
    return web.json_response([_incident_json(i) for i in found], dumps=_dumps)


async def show_incident(request: web.Request) -> web.Response:
    service = request.app[INCIDENTS_KEY]
    incident_id = _incident_id(request)
    try:
        incident = await service.get(incident_id)
    except IncidentError as exc:
        raise ApiError(404, str(exc)) from None
    out = _incident_json(incident)
    out["timeline"] = [_jsonable(e) for e in await service.timeline(incident_id)]
    out["overtimes"] = [_jsonable(o) for o in await service.incident_overtimes(incident_id)]
    out["notifications"] = [_jsonable(n) for n in
                            await request.app[OUTBOX_KEY].history(incident_id)]
    return web.json_response(out, dumps=_dumps)


async def incident_action(request: web.Request) -> web.Response:
    """`ack`, `recover`, `report` or `close`, with `{by, note}` (and `ref` for a report)."""
    _require_admin(request)
    action = request.match_info["action"]
    service = request.app[INCIDENTS_KEY]
    incident_id = _incident_id(request)
    try:
        body = IncidentAction.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise ApiError(400, _first_errors(exc)) from None
    now = utcnow()
    m = request.app[METRICS_KEY]
    try:
        if action == "ack":
            before = await service.get(incident_id)
            incident = await service.acknowledge(incident_id, body.by, body.note, now)
            if before.responded_at is None and incident.responded_at is not None:
                m.time_to_respond.labels(str(incident.level)).observe(
                    (incident.responded_at - incident.opened_at).total_seconds())
        elif action == "recover":
            incident = await service.recover(incident_id, body.by, body.note, now)
            _observe_recovery(m, incident)
        elif action == "report":
            incident = await service.report(incident_id, body.by, body.note, body.ref, now)
        elif action == "close":
            incident = await service.close(incident_id, body.by, body.note, now)
        else:
            raise ApiError(404, f"unknown action {action!r}: ack, recover, report or close")
    except IncidentError as exc:
        status = 404 if str(exc).startswith("no incident") else 409
        raise ApiError(status, str(exc)) from None
    request.app[SEND_KEY].set()
    return web.json_response(_incident_json(incident), dumps=_dumps)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal: answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status,
                                 headers=exc.headers, dumps=_dumps)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (404, 405, 413 body too large) as JSON too
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception as exc:
        reason = unavailable.cause(exc)
        if reason is None:
            raise
        # the store is away (PostgreSQL restarting, a full disk): nothing was acknowledged
        _UNAVAILABLE.warn(request.path, reason)
        if request.path == "/api/v1/results":
            request.app[METRICS_KEY].rejected.labels("store_unavailable").inc()
        return web.json_response(
            {"error": f"store unavailable, retry later ({reason})"}, status=503,
            headers={"Retry-After": str(unavailable.RETRY_AFTER_S)}, dumps=_dumps)


_UNAVAILABLE = unavailable.Throttled()


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
    failures, address = request.app[AUTH_FAILURES_KEY], request.remote or ""
    wait = failures.refusal(address, token)
    if wait is not None:   # token guessing from this address: not even looked up
        m.rejected.labels("rate_limited").inc()
        raise ApiError(429, "too many failed token checks from this address; retry later",
                       headers={"Retry-After": str(math.ceil(wait))})
    agent_id = await store.authenticate(token)
    if agent_id is None:
        failures.failed(address)
        m.rejected.labels("bad_token").inc()
        raise ApiError(401, "unknown or revoked token")
    failures.succeeded(address, token)
    refusal = client_cert_refusal(request.app[CONFIG_KEY].tls, request.transport, agent_id)
    if refusal is not None:   # mutual TLS: the certificate must be this token's agent's
        m.rejected.labels("client_cert").inc()
        raise ApiError(403, refusal)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        m.rejected.labels("too_large").inc()
        limit = request.app[CONFIG_KEY].max_body_bytes
        raise ApiError(413, f"body over {limit} bytes: send smaller batches") from None
    try:
        async with request.app[GATE_KEY].slot():
            if request.transport is None or request.transport.is_closing():
                m.rejected.labels("client_gone").inc()   # it waited; its agent hung up
                raise ApiError(408, "the agent hung up while the batch waited")
            return await _ingest_batch(request, agent_id, body, started)
    except shedding.Busy:
        m.rejected.labels("busy").inc()
        raise ApiError(503, "collector busy, retry later (the batch stays in the agent's "
                       "spool)", headers={"Retry-After": str(shedding.RETRY_AFTER_S)}) from None


async def _ingest_batch(request: web.Request, agent_id: str, body: bytes, started: float
                        ) -> web.Response:
    m = request.app[METRICS_KEY]
    batch = _parse_batch(body, m)
    if batch.agent_id != agent_id or any(r.agent_id != agent_id for r in batch.results):
        m.rejected.labels("wrong_agent").inc()
        raise ApiError(403, f"this token belongs to agent {agent_id}")
    m.batches.inc()
    # the agent's clock may be off by an hour: its results go on the collector's clock
    offset = clock.offset_of(request.headers.get(SENT_AT_HEADER), utcnow())
    results: Sequence[CheckResult] = batch.results
    if offset is not None:
        m.agent_clock_offset.labels(agent_id).set(offset)
        m.clock_warnings.observe(agent_id, offset)
        results, moved = clock.corrected(results, offset)
        if moved:
            m.results_clock_corrected.inc(len(results))
    outcome = await store_results(request.app, agent_id, results, address=request.remote)
    m.ingest_seconds.observe(time.perf_counter() - started)
    return web.json_response({"accepted": outcome.accepted, "duplicates": outcome.duplicates})


def _parse_batch(body: bytes, m: CollectorMetrics) -> IngestRequest:
    """The batch, read by the result schema rules of decision 0008: results of this
    collector's schema version or older strictly; of the next version without the fields
    this collector does not know (counted); of any later version refused with 409, which the
    agent answers by keeping its spool until the collector is upgraded."""
    if b"\\u0000" in body:
        body = _nul_replaced(body)
    try:
        batch = IngestRequest.model_validate_json(body)
    except ValidationError as exc:
        raw = _json_or_none(body)
        results = raw.get("results") if isinstance(raw, dict) else None
        if not isinstance(results, list):   # `"results": 2.0` is refused below, not a 500
            results = None
        versions = [r.get("schema_version", 1) for r in results or () if isinstance(r, dict)]
        ahead = [v for v in versions if isinstance(v, int) and v > SCHEMA_VERSION]
        if not ahead:
            m.rejected.labels("invalid").inc()
            raise ApiError(400, _first_errors(exc)) from None
        _refuse_unknown_schema(max(ahead), m)
        assert isinstance(raw, dict) and results is not None
        reduced, ignored = [], set()
        for item in results:
            if isinstance(item, dict) and item.get("schema_version", 1) == SCHEMA_VERSION + 1:
                item, left_out = known_fields_only(item)
                ignored.update(left_out)
            reduced.append(item)
        try:
            batch = IngestRequest.model_validate({**raw, "results": reduced})
        except ValidationError as again:
            m.rejected.labels("invalid").inc()
            raise ApiError(400, _first_errors(again)) from None
        log.debug("results of schema %d: ignored %s", SCHEMA_VERSION + 1, sorted(ignored))
    else:
        _refuse_unknown_schema(max((r.schema_version for r in batch.results), default=1), m)
    newer = sum(1 for r in batch.results if r.schema_version > SCHEMA_VERSION)
    if newer:
        m.results_newer_schema.inc(newer)
    return batch


def _refuse_unknown_schema(version: int, m: CollectorMetrics) -> None:
    if version > SCHEMA_VERSION + 1:
        m.rejected.labels("schema_version").inc()
        raise ApiError(409, f"result schema version {version} is newer than this collector "
                       f"reads (up to {SCHEMA_VERSION + 1}; it writes {SCHEMA_VERSION}): "
                       "upgrade the collector before the agents")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):   # not JSON, or nested deeper than we read
        return None


def _nul_replaced(body: bytes) -> bytes:
    """The batch with every NUL character in its strings replaced by U+FFFD: a probe may
    capture one (a binary banner), PostgreSQL cannot store it, and refusing the result would
    make the agent drop it as poison — evidence lost for one byte. SQLite and PostgreSQL
    then store the same text. Only batches that hold an escaped NUL take this path."""
    raw = _json_or_none(body)
    if raw is None:
        return body   # not JSON: the strict read says why

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("\x00", "\ufffd")
        if isinstance(value, list):
            return [clean(item) for item in value]
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        return value

    try:
        return json.dumps(clean(raw), ensure_ascii=False).encode()
    except RecursionError:
        return body


async def store_results(app: web.Application, agent_id: str, results: Sequence[CheckResult],
                        *, address: str | None = None) -> IngestOutcome:
    """What happens to an authenticated agent's results, whether they came over HTTP or from
    the collector's own agentless scans: stored durably and idempotently, then inventories
    and findings derived, then the incident engine woken for anything failing."""
    m = app[METRICS_KEY]
    now = utcnow()
    outcome = await app[STORE_KEY].ingest(agent_id, results, now, address=address)
    m.results.inc(outcome.accepted)
    m.duplicates.inc(outcome.duplicates)
    m.agent_last_seen.labels(agent_id).set(now.timestamp())
    inventory = [r for r in results if r.kind in OBSERVED_KINDS]
    if inventory and outcome.accepted:
        try:   # after the commit: the results are safe whatever happens here
            await app[FINDINGS_KEY].observe(inventory)
        except Exception:
            log.exception("deriving findings from %d results of %s failed", len(inventory),
                          agent_id)
    if outcome.attention:
        # a failing result or a state change: the systems it belongs to are evaluated now
        app[ATTENTION_KEY].update(outcome.attention)
        app[CHANGED_KEY].update(outcome.changed)
        app[WAKE_KEY].set()
    return outcome


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
    except OverflowError:   # 0001-01-01 local is before year 1 in UTC; 9999-12-31's end
        raise ApiError(400, PERIOD_YEARS) from None
    if start.year < 2 or end.year > 9998:   # a schedule looks a day beyond either end
        raise ApiError(400, PERIOD_YEARS)
    if end - start > MAX_PERIOD:   # the work grows with the days (a schedule's, on the loop)
        raise ApiError(400, f"a period of at most {MAX_PERIOD.days} days, please")
    report = await request.app[SYSTEMS_KEY].availability(system, start, end, utcnow())
    return web.json_response({"system": system.id, "from": start.isoformat(),
                              "to": end.isoformat(), **report.as_dict()}, dumps=_dumps)


PERIOD_YEARS = "from and to must fall within the years 2 to 9998"
MAX_PERIOD = timedelta(days=3660)
"""The longest period `GET /api/v1/availability` computes (ten years: ~30 ms for a system
with a schedule; 1000 years took 5 s of the event loop)."""


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
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "body is not JSON") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None
    if _has_nul(body):
        raise ApiError(400, NUL_MESSAGE)
    return body


NUL_MESSAGE = "text must not contain NUL characters (\\u0000)"
"""PostgreSQL cannot store them (every query with one fails), so they are refused everywhere."""


def _has_nul(value: Any) -> bool:
    """Whether any string in a parsed JSON document (keys too) holds a NUL character."""
    stack = [value]
    while stack:   # no recursion: the document may be deep
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@web.middleware
async def _refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A NUL in the path or the query: 400 before any handler passes it to the store."""
    if "\x00" in request.path or any("\x00" in v for v in request.query.values()):
        raise ApiError(400, NUL_MESSAGE)
    return await handler(request)


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
    _aware(body.start, body.end)
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
