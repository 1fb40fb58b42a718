"""The web UI's pages: status board (and its JSON fragment for auto-refresh), system, host,
incidents, maintenance windows, reports, users and the audit log.

People's actions call the same services as the JSON API (IncidentService for ack / recover /
report / close, Store.add_maintenance with the API's validation), with `by` = the logged-in
user, and each is written to the audit log with the user's address.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from collector.app import (
    CONFIG_KEY,
    FINDINGS_KEY,
    INCIDENTS_KEY,
    MAX_ROW_ID,
    METRICS_KEY,
    OUTBOX_KEY,
    SEND_KEY,
    STORE_KEY,
    SYSTEMS_KEY,
    MaintenanceRequest,
    _observe_recovery,
)
from collector.incidents import Incident, IncidentError
from collector.period import PeriodError, parse_period
from collector.store import StoreError, utcnow
from collector.systems import member_checks
from collector.web.accounts import ROLES, Session
from collector.web.auth import (
    ACCOUNTS_KEY,
    base_context,
    client_address,
    page,
    refusal,
)
from collector.web.board import Board, BoardData
from collector.web.render import SECURITY_HEADERS, TEMPLATES_KEY, render
from collector.web.strip import WIDTH, segments

BOARD_KEY = web.AppKey("web_board", Board)

ACTIONS = ("ack", "recover", "report", "close")
HISTORY_DAYS = (7, 30)


# -- status board ---------------------------------------------------------------------------

def _board_context(request: web.Request, session: Session, data: BoardData) -> dict[str, Any]:
    return {**base_context(request, session), "board": data,
            "deadlines": ("respond", "recover", "report")}


@page("viewer")
async def board_page(request: web.Request, session: Session) -> web.StreamResponse:
    data = await request.app[BOARD_KEY].build(utcnow())
    return render(request, "board.html", _board_context(request, session, data))


@page("viewer", json=True)
async def board_json(request: web.Request, session: Session) -> web.StreamResponse:
    """The board's figures and its two tables rendered, for the page's script to swap in;
    `Server-Timing` says how long the server took (bench/board.py reads it)."""
    started = time.perf_counter()
    data = await request.app[BOARD_KEY].build(utcnow())
    context = _board_context(request, session, data)
    env = request.app[TEMPLATES_KEY]
    body = {**data.as_dict(),
            "html": {"systems": env.get_template("_systems.html").render(**context),
                     "incidents": env.get_template("_incidents.html").render(**context),
                     "updated": env.filters["local"](data.now, True)}}
    elapsed_ms = (time.perf_counter() - started) * 1000
    return web.json_response(body, headers={**SECURITY_HEADERS,
                                            "Server-Timing": f"board;dur={elapsed_ms:.2f}"})


# -- systems and hosts ----------------------------------------------------------------------

@page("viewer")
async def system_page(request: web.Request, session: Session) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    try:
        system = config.system(request.match_info["id"])
    except KeyError:
        return refusal(request, session, 404, "not_found")
    days = 30 if request.query.get("days") == "30" else 7
    systems = request.app[SYSTEMS_KEY]
    store = request.app[STORE_KEY]
    now = utcnow()
    state, current = await systems.snapshot(system, now)
    latest = {(iv.agent_id, iv.check_id): iv for iv in current}
    members = member_checks(system, await store.known_checks())
    start = now - timedelta(days=days)
    since = await systems.monitored_since(system)
    if since is not None and since > start:
        # before its first result the system was not monitored: that is no "unknown" time
        # (the year-to-date figures start there too)
        start = since
    states = await systems.timeline(system, start, now, now)
    report = await systems.availability(system, start, now, now)
    ytd = await systems.recent_year_to_date(system, now)
    incidents = await request.app[INCIDENTS_KEY].find(system=system.id, limit=20)
    return render(request, "system.html", {
        **base_context(request, session), "system": system, "state": state, "ytd": ytd,
        "checks": [(key, latest.get(key)) for key in members], "days": days,
        "day_choices": HISTORY_DAYS, "segments": segments(states, start, now),
        "strip_width": WIDTH, "stretches": [s for s in states if s.state != "up"],
        "report": report, "start": start, "now": now, "incidents": incidents})


@page("viewer")
async def host_page(request: web.Request, session: Session) -> web.StreamResponse:
    host = request.match_info["host"]
    store = request.app[STORE_KEY]
    now = utcnow()
    keys = [key for key in await store.known_checks() if key[0] == host]
    latest: dict[str, Any] = {}
    if keys:
        for iv in await store.intervals(now - timedelta(days=1), now, keys):
            latest[iv.check_id] = iv   # ordered by start: the last one is the newest
    found = await request.app[FINDINGS_KEY].host(host, now)
    if not keys and not found["inventories"] and not found["findings"]:
        return refusal(request, session, 404, "not_found")
    config = request.app[CONFIG_KEY]
    systems = [s for s in config.systems if member_checks(s, keys)]
    return render(request, "host.html", {
        **base_context(request, session), "host": host,
        "checks": [(check, latest.get(check)) for _agent, check in keys],
        "inventories": found["inventories"][:20], "findings": found["findings"],
        "open_findings": [f for f in found["findings"] if f["state"] == "open"],
        "systems": systems})


# -- incidents ------------------------------------------------------------------------------

@page("viewer")
async def incidents_page(request: web.Request, session: Session) -> web.StreamResponse:
    state = request.query.get("state")
    found = await request.app[INCIDENTS_KEY].find(
        state=state if state in ("open", "recovered", "closed") else None, limit=300)
    return render(request, "incidents.html", {**base_context(request, session),
                                              "incidents": found, "state": state})


def _row_id(raw: str) -> int | None:
    """A row id from a path, or None: ASCII digits within a database integer (`²` is a
    digit to `str.isdigit` but not to `int`; a larger number names no row and overflows
    PostgreSQL's INTEGER)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    number = int(raw)
    return number if 0 < number <= MAX_ROW_ID else None


def _incident_id(raw: str) -> int | None:
    return _row_id(raw.rsplit("-", 1)[-1] if raw.upper().startswith("INC-") else raw)


async def _incident_view(request: web.Request, session: Session, incident: Incident, *,
                         error: str | None = None, status: int = 200) -> web.Response:
    service = request.app[INCIDENTS_KEY]
    return render(request, "incident.html", {
        **base_context(request, session), "incident": incident,
        "timeline": await service.timeline(incident.id),
        "overtimes": await service.incident_overtimes(incident.id),
        "notifications": await request.app[OUTBOX_KEY].history(incident.id),
        "actions": _possible_actions(incident), "error": error,
        "done": request.query.get("done") if request.query.get("done") in ACTIONS else None},
        status=status)


def _possible_actions(incident: Incident) -> list[str]:
    if incident.state == "closed":
        return []
    out = []
    if incident.responded_at is None:
        out.append("ack")
    if incident.state == "open":
        out.append("recover")
    if incident.report_submitted_at is None:
        out.append("report")
    if incident.state == "recovered":
        out.append("close")
    return out


@page("viewer")
async def incident_page(request: web.Request, session: Session) -> web.StreamResponse:
    incident_id = _incident_id(request.match_info["id"])
    if incident_id is None:
        return refusal(request, session, 404, "not_found")
    try:
        incident = await request.app[INCIDENTS_KEY].get(incident_id)
    except IncidentError:
        return refusal(request, session, 404, "not_found")
    return await _incident_view(request, session, incident)


@page("operator")
async def incident_action(request: web.Request, session: Session) -> web.StreamResponse:
    """ack / recover / report / close, as `POST /api/v1/incidents/{id}/{action}` does it,
    with `by` = the logged-in user."""
    action = request.match_info["action"]
    incident_id = _incident_id(request.match_info["id"])
    if action not in ACTIONS or incident_id is None:
        return refusal(request, session, 404, "not_found")
    form = await request.post()
    note = str(form.get("note", ""))[:4000]
    ref = str(form.get("ref", "")).strip()[:500] or None
    service = request.app[INCIDENTS_KEY]
    metrics = request.app[METRICS_KEY]
    by = session.user.name
    now = utcnow()
    try:
        before = await service.get(incident_id)
        if action == "ack":
            incident = await service.acknowledge(incident_id, by, note, now)
            if before.responded_at is None and incident.responded_at is not None:
                metrics.time_to_respond.labels(str(incident.level)).observe(
                    (incident.responded_at - incident.opened_at).total_seconds())
        elif action == "recover":
            incident = await service.recover(incident_id, by, note, now)
            _observe_recovery(metrics, incident)
        elif action == "report":
            incident = await service.report(incident_id, by, note, ref, now)
        else:
            incident = await service.close(incident_id, by, note, now)
    except IncidentError as exc:
        if exc.code == "not_found":
            return refusal(request, session, 404, "not_found")
        words = base_context(request, session)["t"]
        return await _incident_view(request, session, await service.get(incident_id),
                                    error=words(f"incident_error_{exc.code}",
                                                number=exc.number), status=409)
    request.app[SEND_KEY].set()
    await request.app[ACCOUNTS_KEY].audit(
        at=now, user=by, action=f"incident_{action}", target=incident.number,
        detail={"incident_id": incident.id, "note": note, "ref": ref,
                "state": incident.state}, address=client_address(request))
    raise web.HTTPSeeOther(f"/incidents/{incident.id}?done={action}")


# -- maintenance ----------------------------------------------------------------------------

async def _maintenance_view(request: web.Request, session: Session, *,
                            error: str | None = None, status: int = 200,
                            form: dict[str, str] | None = None) -> web.Response:
    show_cancelled = request.query.get("cancelled") == "true"
    windows = await request.app[STORE_KEY].maintenance_windows(
        include_cancelled=show_cancelled)
    windows.sort(key=lambda w: w.start, reverse=True)
    return render(request, "maintenance.html", {
        **base_context(request, session), "windows": windows[:500],
        "systems": request.app[CONFIG_KEY].systems, "error": error,
        "form": form or {}, "added": request.query.get("added"),
        "cancelled": request.query.get("cancelled_id"),
        "show_cancelled": show_cancelled}, status=status)


@page("viewer")
async def maintenance_page(request: web.Request, session: Session) -> web.StreamResponse:
    return await _maintenance_view(request, session)


def _local(value: str, zone: Any) -> datetime:
    """A `datetime-local` input (no offset) read in the display zone; with an offset, exact."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


@page("operator")
async def maintenance_add(request: web.Request, session: Session) -> web.StreamResponse:
    """Validated as `POST /api/v1/maintenance` is (same model, known system, end after
    start); `by` is the logged-in user."""
    config = request.app[CONFIG_KEY]
    raw = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    try:
        body = MaintenanceRequest.model_validate({
            "system": raw.get("system", ""), "kind": raw.get("kind", ""),
            "start": _local(raw.get("start", ""), config.zone),
            "end": _local(raw.get("end", ""), config.zone),
            "reason": raw.get("reason", "").strip(),
            "approved_by": raw.get("approved_by", "").strip(), "by": session.user.name})
    except ValueError as exc:   # ValidationError is a ValueError; so is a bad time
        message = (_validation_text(exc) if isinstance(exc, ValidationError)
                   else f"start/end: {exc}")
        return await _maintenance_view(request, session, error=message, status=400, form=raw)
    if body.system not in {s.id for s in config.systems}:
        return await _maintenance_view(request, session, error=f"unknown system {body.system!r}",
                                       status=400, form=raw)
    now = utcnow()
    try:
        window = await request.app[STORE_KEY].add_maintenance(
            system=body.system, start=body.start, end=body.end, kind=body.kind,
            reason=body.reason, approved_by=body.approved_by, by=body.by, now=now)
    except StoreError as exc:
        return await _maintenance_view(request, session, error=str(exc), status=400, form=raw)
    request.app[SYSTEMS_KEY].forget_year_to_date(body.system)
    await request.app[ACCOUNTS_KEY].audit(
        at=now, user=session.user.name, action="maintenance_add",
        target=f"maintenance/{window.id}",
        detail={"system": window.system, "start": window.start.isoformat(),
                "end": window.end.isoformat(), "kind": window.kind, "reason": window.reason,
                "approved_by": window.approved_by}, address=client_address(request))
    raise web.HTTPSeeOther(f"/maintenance?added={window.id}")


@page("operator")
async def maintenance_cancel(request: web.Request, session: Session) -> web.StreamResponse:
    """Cancel a window (`wardwatch-collector maintenance cancel` does the same): kept with
    who and when, in the window's own audit trail and the UI's audit log; its time counts as
    planned hours again."""
    window_id = _row_id(request.match_info["id"])
    if window_id is None:
        return refusal(request, session, 404, "not_found")
    now = utcnow()
    try:
        window = await request.app[STORE_KEY].cancel_maintenance(
            window_id, by=session.user.name, now=now)
    except StoreError:
        words = base_context(request, session)["t"]
        return await _maintenance_view(request, session, status=409,
                                       error=words("window_not_active", id=window_id))
    request.app[SYSTEMS_KEY].forget_year_to_date(window.system)
    await request.app[ACCOUNTS_KEY].audit(
        at=now, user=session.user.name, action="maintenance_cancel",
        target=f"maintenance/{window.id}",
        detail={"system": window.system, "start": window.start.isoformat(),
                "end": window.end.isoformat(), "kind": window.kind},
        address=client_address(request))
    raise web.HTTPSeeOther(f"/maintenance?cancelled_id={window.id}")


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}"
                     for e in exc.errors(include_url=False)[:5])


# -- reports --------------------------------------------------------------------------------

def _reports_module() -> Any:
    """collector.reports (KINDS, FORMATS, build_report, render_report), or None while the
    reports package is not there."""
    try:
        import collector.reports as reports
    except ImportError:
        return None
    needed = ("KINDS", "FORMATS", "build_report", "render_report")
    return reports if all(hasattr(reports, name) for name in needed) else None


def _reports_context(request: web.Request, session: Session, reports: Any,
                     error: str | None, form: dict[str, str]) -> dict[str, Any]:
    context = base_context(request, session)
    return {**context, "available": reports is not None,
            "kinds": list(reports.KINDS) if reports else [],
            "formats": list(reports.FORMATS) if reports else [], "error": error,
            "form": form}


@page("viewer")
async def reports_page(request: web.Request, session: Session) -> web.StreamResponse:
    reports = _reports_module()
    return render(request, "reports.html", _reports_context(request, session, reports, None, {}))


MEDIA_TYPES = {"html": "text/html", "json": "application/json", "csv": "text/csv",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@page("viewer")
async def reports_build(request: web.Request, session: Session) -> web.StreamResponse:
    """Build a report and send it as a download; the request is in the audit log."""
    reports = _reports_module()
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    if reports is None:
        return render(request, "reports.html",
                      _reports_context(request, session, None, None, form), status=503)
    config = request.app[CONFIG_KEY]
    kind, fmt = form.get("kind", ""), form.get("format", "")
    lang = form.get("lang") if form.get("lang") in ("zh-CN", "en") else "zh-CN"
    now = utcnow()
    try:
        if kind not in reports.KINDS or fmt not in reports.FORMATS:
            raise PeriodError(f"kind must be one of {', '.join(reports.KINDS)} and format "
                              f"one of {', '.join(reports.FORMATS)}")
        start, end = parse_period(form.get("from") or None, form.get("to") or None,
                                  config.zone, now)
    except PeriodError as exc:
        return render(request, "reports.html",
                      _reports_context(request, session, reports, str(exc), form), status=400)
    try:
        report = await reports.build_report(config, request.app[STORE_KEY], kind,
                                            start=start, end=end, lang=lang, now=now)
    except ValueError as exc:   # e.g. a period entirely in the future
        return render(request, "reports.html",
                      _reports_context(request, session, reports, str(exc), form), status=400)
    body = reports.render_report(report, fmt)
    await request.app[ACCOUNTS_KEY].audit(
        at=now, user=session.user.name, action="report_download", target=kind,
        detail={"from": start.isoformat(), "to": end.isoformat(), "format": fmt,
                "lang": lang, "bytes": len(body)}, address=client_address(request))
    local_from = start.astimezone(config.zone).date().isoformat()
    local_to = (end - timedelta(microseconds=1)).astimezone(config.zone).date().isoformat()
    filename = f"wardwatch-{kind}-{local_from}-{local_to}.{fmt}"
    return web.Response(body=body, headers={
        **SECURITY_HEADERS, "Content-Type": MEDIA_TYPES.get(fmt, "application/octet-stream"),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


# -- users and audit (admin) ----------------------------------------------------------------

async def _users_view(request: web.Request, session: Session, *, error: str | None = None,
                      status: int = 200) -> web.Response:
    accounts = request.app[ACCOUNTS_KEY]
    return render(request, "users.html", {
        **base_context(request, session), "users": await accounts.users(), "roles": ROLES,
        "audit": await accounts.audit_entries(200), "error": error}, status=status)


@page("admin")
async def users_page(request: web.Request, session: Session) -> web.StreamResponse:
    return await _users_view(request, session)


@page("admin")
async def users_add(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    role = str(form.get("role", ""))
    accounts = request.app[ACCOUNTS_KEY]
    now = utcnow()
    try:
        await accounts.add_user(name, str(form.get("password", "")), role, now)
    except (StoreError, ValueError) as exc:
        return await _users_view(request, session, error=str(exc), status=400)
    await accounts.audit(at=now, user=session.user.name, action="user_add", target=name,
                         detail={"role": role}, address=client_address(request))
    raise web.HTTPSeeOther("/users")


@page("admin")
async def users_disable(request: web.Request, session: Session) -> web.StreamResponse:
    name = request.match_info["name"]
    accounts = request.app[ACCOUNTS_KEY]
    now = utcnow()
    try:
        await accounts.disable(name, now)
    except StoreError as exc:
        return await _users_view(request, session, error=str(exc), status=400)
    await accounts.audit(at=now, user=session.user.name, action="user_disable", target=name,
                         address=client_address(request))
    raise web.HTTPSeeOther("/users")
