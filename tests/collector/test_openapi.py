"""GET /api/v1/openapi.json: a valid OpenAPI 3.0 document that lists exactly the routes the
collector registers, with request bodies that are the handlers' own pydantic models."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

from collector.app import create_app
from collector.config import parse_collector_config
from collector.openapi import BODY_MODELS, _schema_30, document
from tests.services import free_port

OPERATIONAL = ("/metrics", "/healthz", "/readyz")
"""Outside /api/v1 but part of the API DESIGN.md lists: documented too."""
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every API route of the app's router (HEAD of a GET left out)."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or not (path.startswith("/api/v1/") or path in OPERATIONAL):
            continue
        out.add((route.method.lower(), path))
    return out


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_document_is_valid_openapi_30() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.0.")
    errors = [f"{e.instance_path}: {e.message}" for e in OPENAPI_30_VALIDATOR.iter_errors(doc)]
    assert errors == []
    for ref in refs(doc):   # the meta-schema does not follow references
        resolve(doc, ref)


@pytest.mark.parametrize("mutation", ["const", "null", "no responses", "dangling ref"])
def test_validation_catches_a_broken_document(mutation: str) -> None:
    """The checks above can fail: each mutation of a valid document is caught."""
    doc = copy.deepcopy(document())
    props = doc["components"]["schemas"]["CheckResult"]["properties"]
    if mutation == "const":
        props["kind"]["const"] = "tcp"            # JSON Schema 2020-12, not OpenAPI 3.0
    elif mutation == "null":
        props["kind"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    elif mutation == "no responses":
        del doc["paths"]["/api/v1/systems"]["get"]["responses"]
    else:
        props["kind"] = {"$ref": "#/components/schemas/Nowhere"}
    if mutation != "dangling ref":
        assert not OPENAPI_30_VALIDATOR.is_valid(doc)
        return
    assert OPENAPI_30_VALIDATOR.is_valid(doc)   # the meta-schema does not follow $ref
    with pytest.raises(KeyError):
        for ref in refs(doc):
            resolve(doc, ref)


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(parse_collector_config({"store": f"sqlite:///{tmp_path}/c.db"}))
    routes = registered(app)
    assert ("post", "/api/v1/results") in routes and len(routes) > 15
    assert documented(document()) == routes


def test_request_bodies_are_the_handlers_models() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for model in BODY_MODELS:
        raw = model.model_json_schema(ref_template="#/components/schemas/{model}")
        assert schemas[model.__name__] == _schema_30(raw)
    bodies = {(path, method): op["requestBody"]["content"]["application/json"]["schema"]
              for path, item in doc["paths"].items() for method, op in item.items()
              if "requestBody" in op}
    assert bodies[("/api/v1/results", "post")] == {"$ref": "#/components/schemas/IngestRequest"}
    assert bodies[("/api/v1/alertmanager", "post")] == {
        "$ref": "#/components/schemas/Notification"}
    # a field the handler requires is required in the document
    assert "approved_by" in schemas["MaintenanceRequest"]["required"]


def test_security_matches_the_handlers() -> None:
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["agentToken"] == {**schemes["agentToken"], "type": "http", "scheme": "bearer"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path == "/api/v1/results":
                assert op["security"] == [{"agentToken": []}]
            elif method == "post":
                assert op["security"] == [{"adminToken": []}], path
            else:
                assert op["security"] == [], path


def test_schema_30_rewrites() -> None:
    assert _schema_30({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}],
                       "default": None}) == {
        "type": "number", "minimum": 0, "exclusiveMinimum": True, "default": None,
        "nullable": True}
    assert _schema_30({"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}) == {
        "allOf": [{"$ref": "#/x"}], "nullable": True}
    assert _schema_30({"const": "4", "properties": {"const": {"type": "string"}}}) == {
        "enum": ["4"], "properties": {"const": {"type": "string"}}}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    app = create_app(parse_collector_config({"store": f"sqlite:///{tmp_path}/c.db"}))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_served_over_http(served: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            served + "/api/v1/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body == document()
