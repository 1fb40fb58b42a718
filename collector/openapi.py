"""`GET /api/v1/openapi.json`: the OpenAPI 3.0.3 document of the collector's HTTP API.

It owns the description of every route `create_app` registers under /api/v1 (plus /metrics,
/healthz and /readyz): parameters, request bodies, response shapes and who may call what.
Request bodies are generated from the same pydantic models the handlers validate with, so
they cannot drift; tests/collector/test_openapi.py checks the route list against the router
and validates the document against the OpenAPI 3.0 meta-schema.

pydantic writes JSON Schema 2020-12; OpenAPI 3.0 speaks an older dialect, so `_schema_30`
rewrites the few constructs that differ (`anyOf [X, null]` -> `nullable`, `const` -> a
one-value `enum`, numeric `exclusiveMinimum` -> `minimum` + `exclusiveMinimum: true`).

Security, as the handlers do it (see `ingest` and `_require_admin` in collector/app.py):
- `agentToken`: the bearer token enrolled for one agent, only for `POST /api/v1/results`;
- `adminToken`: `admin_token` of the collector config, for every other write; when no admin
  token is configured, writes are accepted from loopback only, without a token;
- reads (GET) need no credentials. The web UI's session cookie grants nothing here.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from alerts.alertmanager import Notification
from collector.app import (
    IncidentAction,
    IngestRequest,
    MaintenanceRequest,
    RectificationRequest,
    WaiverRequest,
)
from probes.result import SENT_AT_HEADER

OPENAPI_VERSION = "3.0.3"
REF = "#/components/schemas/{model}"

BODY_MODELS: tuple[type[BaseModel], ...] = (
    IngestRequest, MaintenanceRequest, RectificationRequest, WaiverRequest, IncidentAction,
    Notification)


def _schema_30(node: Any) -> Any:
    """One JSON Schema (2020-12, as pydantic writes it) rewritten for OpenAPI 3.0."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _schema_30(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties"
                                         and isinstance(value, dict)):
            out[key] = _schema_30(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_schema_30(sub) for sub in value]
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "examples":
            if value:
                out["example"] = value[0] if isinstance(value, list) else value
        elif key == "$defs":
            continue   # hoisted into components/schemas by `_model_schemas`
        else:
            out[key] = value
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1:
            only = rest[0]
            # a $ref takes no siblings in OpenAPI 3.0: wrap it
            base = {"allOf": [only]} if "$ref" in only else dict(only)
            out = {**base, **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _model_schemas() -> dict[str, Any]:
    """components/schemas: every request model and the models they use."""
    schemas: dict[str, Any] = {}

    def put(name: str, schema: Any) -> None:
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two different schemas are named {name!r}")
        schemas[name] = schema

    for model in BODY_MODELS:
        raw = model.model_json_schema(ref_template=REF)
        for name, sub in raw.get("$defs", {}).items():
            put(name, _schema_30(sub))
        put(model.__name__, _schema_30(raw))
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
LIST: dict[str, Any] = {"type": "array", "items": OBJECT}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


def _responses(ok: dict[str, Any], *errors: str, ok_status: str = "200",
               store: bool = True) -> dict[str, Any]:
    """`store`: the handler reads the store, so it may answer 503 while the store is away."""
    out = {ok_status: ok}
    for status in (*errors, "503") if store else errors:
        out[status] = _error(f"E{status}")
    return out


def _query(name: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _body(model: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
ANYONE: list[dict[str, list[str]]] = []
WRITE_ERRORS = ("400", "401", "403", "413")
"""401: a wrong or missing admin token; 403: no admin token configured and the request is
not from loopback; 413: the body is over `max_body_bytes`."""

INCIDENT_ID = _path("id", {"type": "string", "minLength": 1},
                    "The incident's number (42) or its name (INC-2026-0042).")


def _operations() -> dict[str, Any]:
    return {
        "/api/v1/results": {"post": {
            "operationId": "pushResults", "tags": ["ingest"],
            "summary": "An agent pushes a batch of results (answered after the commit).",
            "description": "The token is bound to one agent: another `agent_id` in the batch "
                           "or in any result is 403. Replays of a result id are stored once. "
                           "Result schema versions: docs/decisions/0008. A source address "
                           "with too many failed token checks gets 429 (docs/security.md).",
            "security": [{"agentToken": []}], "requestBody": _body("IngestRequest"),
            "parameters": [{
                "name": SENT_AT_HEADER, "in": "header", "required": False,
                "schema": {"type": "string"},
                "description": "The agent's clock (UTC ISO 8601) when it sent the batch: "
                               "results of an agent whose clock is off are moved onto the "
                               "collector's. Unreadable values are ignored."}],
            "responses": _responses(_json({
                "type": "object", "required": ["accepted", "duplicates"],
                "properties": {"accepted": {"type": "integer"},
                               "duplicates": {"type": "integer"}}}, "Stored."),
                "400", "401", "403", "408", "409", "413", "429")}},
        "/api/v1/systems": {"get": {
            "operationId": "listSystems", "tags": ["availability"], "security": ANYONE,
            "summary": "Every system: its state now and its availability this year so far.",
            "responses": _responses(_json(LIST, "The systems."))}},
        "/api/v1/availability": {"get": {
            "operationId": "getAvailability", "tags": ["availability"], "security": ANYONE,
            "summary": "One system's availability over a period.",
            "parameters": [
                _query("system", {"type": "string"}, "The system id.", required=True),
                _query("from", {"type": "string"}, "A date (2026-01-01, local midnight) or "
                       "an ISO 8601 time; default: the start of this year."),
                _query("to", {"type": "string"}, "A date (the end of that day) or an ISO "
                       "8601 time; default: now.")],
            "responses": _responses(_json(OBJECT, "The availability report."), "400", "404")}},
        "/api/v1/maintenance": {
            "get": {"operationId": "listMaintenance", "tags": ["availability"],
                    "security": ANYONE, "summary": "Maintenance and force majeure windows.",
                    "parameters": [
                        _query("system", {"type": "string"}, "Only this system's windows."),
                        _query("cancelled", {"type": "string", "enum": ["true", "false"]},
                               "`true` lists cancelled windows too.")],
                    "responses": _responses(_json(LIST, "The windows."))},
            "post": {"operationId": "addMaintenance", "tags": ["availability"],
                     "security": ADMIN, "summary": "Record a maintenance window.",
                     "requestBody": _body("MaintenanceRequest"),
                     "responses": _responses(_json(OBJECT, "The window."), *WRITE_ERRORS,
                                             ok_status="201")}},
        "/api/v1/alertmanager": {"post": {
            "operationId": "alertmanagerWebhook", "tags": ["incidents"], "security": ADMIN,
            "summary": "Alertmanager's webhook (version 4): firing opens or updates an "
                       "incident, resolved recovers it.",
            "requestBody": _body("Notification"),
            "responses": _responses(_json(OBJECT, "The incidents changed, with the events."),
                                    *WRITE_ERRORS)}},
        "/api/v1/patches": {"get": {
            "operationId": "fleetPatches", "tags": ["security"], "security": ANYONE,
            "summary": "Per host: the latest patch inventory and open findings by severity.",
            "responses": _responses(_json(OBJECT, "The fleet's patch state."))}},
        "/api/v1/hosts/{host}/patches": {"get": {
            "operationId": "hostPatches", "tags": ["security"], "security": ANYONE,
            "summary": "One host's inventory history and every finding.",
            "parameters": [_path("host", {"type": "string", "minLength": 1}, "The host.")],
            "responses": _responses(_json(OBJECT, "The host's patch history."), "404")}},
        "/api/v1/rectifications": {
            "get": {"operationId": "listRectifications", "tags": ["security"],
                    "security": ANYONE,
                    "summary": "Rectification tasks and the year's completion.",
                    "parameters": [_query("year", {"type": "integer"},
                                          "The service year; default: this year.")],
                    "responses": _responses(_json(OBJECT, "Tasks and completion."), "400")},
            "post": {"operationId": "addRectification", "tags": ["security"],
                     "security": ADMIN, "summary": "Record a rectification task.",
                     "requestBody": _body("RectificationRequest"),
                     "responses": _responses(_json(OBJECT, "The task."), *WRITE_ERRORS,
                                             ok_status="201")}},
        "/api/v1/waivers": {
            "get": {"operationId": "listWaivers", "tags": ["security"], "security": ANYONE,
                    "summary": "Accepted risks, expired ones included.",
                    "responses": _responses(_json(LIST, "The waivers."))},
            "post": {"operationId": "addWaiver", "tags": ["security"], "security": ADMIN,
                     "summary": "Record an accepted risk.", "requestBody": _body("WaiverRequest"),
                     "responses": _responses(_json(OBJECT, "The waiver."), *WRITE_ERRORS,
                                             ok_status="201")}},
        "/api/v1/incidents": {"get": {
            "operationId": "listIncidents", "tags": ["incidents"], "security": ANYONE,
            "summary": "Incidents, newest first.",
            "parameters": [
                _query("state", {"type": "string", "enum": ["open", "recovered", "closed"]},
                       "Only incidents in this state."),
                _query("level", {"type": "integer", "enum": [1, 2, 3, 4]},
                       "Only incidents of this level."),
                _query("system", {"type": "string"}, "Only this system's incidents.")],
            "responses": _responses(_json(LIST, "The incidents."), "400")}},
        "/api/v1/incidents/{id}": {"get": {
            "operationId": "showIncident", "tags": ["incidents"], "security": ANYONE,
            "summary": "One incident with its timeline, overtimes and notifications.",
            "parameters": [INCIDENT_ID],
            "responses": _responses(_json(OBJECT, "The incident."), "400", "404")}},
        "/api/v1/incidents/{id}/{action}": {"post": {
            "operationId": "incidentAction", "tags": ["incidents"], "security": ADMIN,
            "summary": "A person's action on an incident, with `{by, note}` (`ref` for a "
                       "report).",
            "parameters": [INCIDENT_ID, _path(
                "action", {"type": "string", "enum": ["ack", "recover", "report", "close"]},
                "The action.")],
            "requestBody": _body("IncidentAction"),
            "responses": _responses(_json(OBJECT, "The incident after the action."),
                                    *WRITE_ERRORS, "404", "409")}},
        "/api/v1/sd": {"get": {
            "operationId": "serviceDiscovery", "tags": ["metrics"], "security": ANYONE,
            "summary": "Prometheus HTTP service discovery of every enrolled agent's /metrics.",
            "responses": _responses(_json(LIST, "Target groups (http_sd_config)."))}},
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["metrics"], "security": ANYONE,
            "summary": "This document.",
            "responses": _responses(_json(OBJECT, "OpenAPI 3.0 document."), store=False)}},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["metrics"], "security": ANYONE,
            "summary": "The collector's own Prometheus metrics.",
            "responses": {"200": {"description": "Prometheus text format 0.0.4.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["metrics"], "security": ANYONE,
            "summary": "The process is up.",
            "responses": _responses(_json(OBJECT, "`{\"status\": \"ok\"}`"), store=False)}},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["metrics"], "security": ANYONE,
            "summary": "The store answers.",
            "responses": {"200": _json(OBJECT, "`{\"status\": \"ok\"}`"),
                          "503": _json(OBJECT, "The store is unavailable, with the error.")}}},
    }


ERRORS = {
    "400": "The request is invalid (the message says what).",
    "401": "Missing or wrong bearer token.",
    "403": "Not allowed: another agent's id, a push without the agent's client certificate "
           "when the collector requires one (tls.client_ca_file), or a write from the network "
           "without the admin token configured.",
    "404": "No such thing.",
    "409": "A conflict: a result schema newer than this collector reads, or an incident "
           "action out of order.",
    "413": "The body is over the collector's `max_body_bytes`.",
    "429": "Too many failed token checks from this address; `Retry-After` says when to "
           "try again.",
    "408": "The agent hung up while its batch waited for a turn; nothing was stored.",
    "503": "The store is unavailable (a database restarting, a full disk), or the collector "
           "is busy (ingest: every slot taken and the queue full, collector/shedding.py); "
           "nothing was stored; `Retry-After` says when to try again.",
}


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once; callers must not mutate it)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "wardwatch collector", "version": "1",
                 "description": "Results from agents, systems and availability, maintenance, "
                                "incidents, patches and rectification, service discovery. "
                                "Every refusal is a 4xx with `{\"error\": \"...\"}` and "
                                "stores nothing."},
        "paths": _operations(),
        "components": {
            "schemas": {**_model_schemas(), "Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}}}},
            "responses": {f"E{status}": _json(_ref("Error"), text)
                          for status, text in ERRORS.items()},
            "securitySchemes": {
                "agentToken": {"type": "http", "scheme": "bearer",
                               "description": "The token `wardwatch-collector agents add` "
                                              "printed for one agent."},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "`admin_token` of the collector config. Without "
                                              "one configured, writes are accepted only from "
                                              "loopback, with no token."}},
        },
    }


@functools.cache
def _document_text() -> str:
    return json.dumps(document(), ensure_ascii=False)


async def openapi_document(_request: web.Request) -> web.Response:
    return web.Response(text=_document_text(), content_type="application/json")
