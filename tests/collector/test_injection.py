"""SQL injection attempts in every filter parameter, on SQLite and PostgreSQL (issue 10,
security tests).

Every GET operation under /api/v1 with parameters (read from the OpenAPI document, so a new
parameter is attacked as soon as it is documented) and every query parameter the web UI reads
(found in collector/web/*.py, so a new one fails `test_every_ui_query_parameter_is_attacked`
until it is listed here) gets classic payloads: quotes, comments, stacked statements, UNION,
LIKE wildcards, unicode look-alike quotes, path traversal, very long strings. Expected:

- never a 5xx; an API refusal is a 4xx with `{"error": "..."}`;
- nothing changes: every row of every table is the same before and after;
- a filter with a payload returns no more than a filter with a harmless value that matches
  nothing (`nomatch-value`): no payload widens a query.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.app import FINDINGS_KEY, create_app, evaluate_incidents
from collector.config import parse_collector_config
from collector.openapi import document
from collector.store import utcnow
from collector.web.auth import ACCOUNTS_KEY
from probes.result import Status
from tests.collector.web.conftest import PASSWORD, SYSTEMS, Ui, snapshot

PAYLOADS = (
    "' OR '1'='1",
    "' OR 1=1 --",
    "1; DROP TABLE results;--",
    "EMR'; DELETE FROM incidents; --",
    '") OR 1=1 --',
    "') OR ('1'='1",
    "%27",
    "%' OR '%'='",
    "%",
    "_",
    "*",
    "EMR%",
    "\\",
    "\\' OR 1=1 --",
    "' UNION SELECT name, password_hash, role FROM users --",
    "1 AND (SELECT pg_sleep(5)) IS NULL",
    "\u2019 OR \u20181\u2019=\u20181",   # curly quotes
    "\uff07 OR \uff071\uff07=\uff071",   # fullwidth apostrophe
    "\u02bc OR 1=1 --",                  # modifier letter apostrophe
    "EMR\u0027--",
    "../../etc/passwd",
    '"><script>alert(1)</script>',
    "1e309",
    "-1",
    "99999999999999999999",
    "0x7fffffff",
    "2147483648",                        # one past a PostgreSQL INTEGER
    "0",
    "\u00b2",                            # a digit to str.isdigit, not to int
    "\u0661\u0662",                      # Arabic-Indic 12
    "INC-2026-99999999999",
    "A" * 2000,
    "' OR '1'='1" * 200,
)
HARMLESS = "nomatch-value"
TOO_LONG = "' OR 1=1 --" * 2000
"""Over aiohttp's 8190-byte request line: refused by the HTTP parser itself (a 4xx)."""


@dataclass(frozen=True)
class Target:
    """One parameter of one page or operation, the others filled with valid values."""

    path: str
    """With `{param}` placeholders; valid values come from `valid`."""
    name: str
    where: str   # "query" or "path"
    valid: dict[str, str]


VALID = {"system": "EMR", "from": "2026-01-01", "to": "2026-01-31", "host": "emr-01",
         "year": "2026", "cancelled": "true", "state": "open", "level": "1"}


def api_targets() -> list[Target]:
    """Every parameter of every GET operation of the OpenAPI document."""
    out = []
    for path, operations in document()["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        for param in get.get("parameters", []):
            if param["in"] in ("query", "path"):
                out.append(Target(path, param["name"], param["in"], VALID))
    return out


UI_QUERY = {
    "/": ("lang",),
    "/ui/board.json": ("lang",),
    "/systems/{id}": ("days", "lang"),
    "/hosts/{host}": ("lang",),
    "/incidents": ("state", "lang"),
    "/incidents/{id}": ("done", "lang"),
    "/maintenance": ("cancelled", "added", "cancelled_id", "lang"),
    "/reports": ("lang",),
    "/users": ("lang",),
    "/login": ("next", "lang"),
}
UI_PATH = {"/systems/{id}": "id", "/hosts/{host}": "host", "/incidents/{id}": "id"}


def ui_targets() -> list[Target]:
    out = [Target(path, name, "query", VALID) for path, names in UI_QUERY.items()
           for name in names]
    return out + [Target(path, name, "path", VALID) for path, name in UI_PATH.items()]


def test_every_ui_query_parameter_is_attacked() -> None:
    """The query keys the UI's code reads, found in its source, are all in UI_QUERY."""
    source = "".join(p.read_text() for p in Path("collector/web").glob("*.py"))
    read = set(re.findall(r"query(?:\.get\(|\[)\"([A-Za-z_]+)\"", source))
    attacked = {name for names in UI_QUERY.values() for name in names}
    assert read, "no query parameters found: has the UI's code moved?"
    assert read <= attacked, (f"UI query parameters not attacked: {read - attacked}; add them "
                              "to UI_QUERY in tests/collector/test_injection.py")
    assert {t.name for t in api_targets()} >= {"system", "from", "to", "year", "state",
                                                  "level", "host", "id", "cancelled"}


def url_of(target: Target, value: str, ids: dict[str, str]) -> tuple[str, dict[str, str]]:
    fills = {**target.valid, **ids}
    path = target.path
    for name in re.findall(r"\{(\w+)\}", path):
        chosen = value if target.where == "path" and name == target.name else fills[name]
        path = path.replace(f"{{{name}}}", quote(chosen, safe=""))
    params: dict[str, str] = {}
    if target.where == "query":
        params[target.name] = value
        if target.path == "/api/v1/availability" and target.name != "system":
            params["system"] = "EMR"
    return path, params


# -- the collector, seeded ------------------------------------------------------------------

@pytest.fixture
async def seeded(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[Ui, dict[str, str]]]:
    config = parse_collector_config({"store": store_url, "systems": SYSTEMS})
    async with TestClient(TestServer(create_app(config))) as client:
        app = client.server.app
        assert app is not None
        ui = Ui(client, app)
        now = utcnow()
        await ui.accounts.add_user("admin1", PASSWORD, "admin", now)
        incident_id = await ui.open_incident()
        await ui.feed("his-01", Status.CRITICAL, 3, timedelta(seconds=25))
        await evaluate_incidents(app)
        assert len(await ui.app_incidents()) == 2
        for system in ("EMR", "HIS"):
            window = await ui.store.add_maintenance(
                system=system, start=now - timedelta(hours=2), end=now + timedelta(hours=2),
                kind="planned", reason="patching", approved_by="CIO", by="test", now=now)
        await ui.store.cancel_maintenance(window.id, by="test", now=now)
        await app[FINDINGS_KEY].add_waiver(host="his-*", key="update:sudo", accepted_by="CIO",
                                           reason="vendor", expires_at=now + timedelta(days=9),
                                           by="test", now=now)
        assert app[ACCOUNTS_KEY] is ui.accounts
        yield ui, {"id": str(incident_id)}




def rows_of(body: Any) -> list[str]:
    """What a 2xx answer lists, as comparable text."""
    import json

    if isinstance(body, list):
        return [json.dumps(item, sort_keys=True) for item in body]
    if isinstance(body, dict) and isinstance(body.get("tasks"), list):
        return [json.dumps(item, sort_keys=True) for item in body["tasks"]]
    return [json.dumps(body, sort_keys=True)]


async def test_api_filters_resist_injection(seeded: tuple[Ui, dict[str, str]]) -> None:
    ui, ids = seeded
    problems: list[str] = []
    targets = api_targets()
    before = await snapshot(ui.store)
    for target in targets:
        baseline: list[str] = []
        for value in (HARMLESS, *PAYLOADS):
            path, params = url_of(target, value, ids)
            resp = await ui.client.get(path, params=params, allow_redirects=False)
            where = f"GET {target.path} {target.name}={value[:40]!r}: {resp.status}"
            if resp.status >= 500:
                problems.append(f"{where} {(await resp.text())[:200]}")
                continue
            try:
                body = await resp.json()
            except ValueError:
                problems.append(f"{where} answered without JSON")
                continue
            if resp.status >= 400:
                if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
                    problems.append(f"{where} without an error message: {body!r:.200}")
                continue
            rows = rows_of(body)
            if value == HARMLESS:
                baseline = rows
            elif extra := [r for r in rows if r not in baseline]:
                problems.append(f"{where} lists rows a non-matching filter does not: "
                                f"{extra[:2]}")
        # a request line over the parser's limit: its own 4xx, never a 5xx
        path, params = url_of(target, TOO_LONG, ids)
        resp = await ui.client.get(path, params=params, allow_redirects=False)
        if not 400 <= resp.status < 500:
            problems.append(f"GET {target.path} {target.name}=<22 kB>: {resp.status}")
    assert await snapshot(ui.store) == before, "an injection attempt changed the store"
    assert not problems, "\n".join(problems)
    assert len(targets) >= 9


async def test_ui_pages_resist_injection(seeded: tuple[Ui, dict[str, str]]) -> None:
    ui, ids = seeded
    assert (await ui.login("admin1")).status == 303
    problems: list[str] = []
    before = await snapshot(ui.store)
    for target in ui_targets():
        baseline_rows = None
        for value in (HARMLESS, *PAYLOADS):
            path, params = url_of(target, value, ids)
            resp = await ui.client.get(path, params=params, allow_redirects=False)
            text = await resp.text()
            where = f"GET {target.path} {target.name}={value[:40]!r}: {resp.status}"
            if resp.status >= 500:
                problems.append(f"{where} {text[:200]}")
                continue
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location", "")
                if not location.startswith("/") or location.startswith("//") or any(
                        ch in location for ch in "\\\t\r\n"):
                    problems.append(f"{where} redirects off the site: {location!r}")
                continue
            if any(ch in value for ch in "<>\"") and value in text:
                problems.append(f"{where} shows the value unescaped")
            rows = text.count("<tr")
            if value == HARMLESS:
                baseline_rows = rows
            elif resp.status < 400 and baseline_rows is not None and rows > baseline_rows:
                problems.append(f"{where} lists {rows} rows, a non-matching value "
                                f"{baseline_rows}")
    # the ids in the paths of the UI's actions (POST, with a valid CSRF token)
    token = await ui.csrf()
    for value in PAYLOADS:
        for path in (f"/incidents/{quote(value, safe='')}/ack",
                     f"/maintenance/{quote(value, safe='')}/cancel"):
            resp = await ui.post(path, {"note": value}, token=token)
            if resp.status >= 500 or resp.status in (200, 303):
                problems.append(f"POST {path[:60]}: {resp.status} {(await resp.text())[:200]}")
    after = await snapshot(ui.store)
    # `?lang=` remembers a valid choice in the user's record; no payload is one
    assert after == before, [name for name in before if before[name] != after[name]]
    assert not problems, "\n".join(problems)


async def test_login_next_never_leaves_the_site(seeded: tuple[Ui, dict[str, str]]) -> None:
    """`next` after login (form) and for a logged-in visitor of /login (query)."""
    ui, _ids = seeded
    evil = ("//evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
            "/\\evil.example", "https://evil.example", "/\x0b/evil.example",
            "/%0d%0aSet-Cookie:%20x=1", "/\r\nSet-Cookie: x=1", " //evil.example")
    for value in evil:
        resp = await ui.login("admin1", next_path=value)
        assert resp.status == 303, (value, resp.status)
        location = resp.headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), (value, location)
        assert not any(ch in location for ch in "\\\t\r\n\x0b"), (value, location)
        assert "x=1" not in resp.headers.get("Set-Cookie", ""), value
        resp = await ui.client.get("/login", params={"next": value}, allow_redirects=False)
        assert resp.status == 303, (value, resp.status, (await resp.text())[:200])
        location = resp.headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), (value, location)
        assert not any(ch in location for ch in "\\\t\r\n\x0b"), (value, location)
        ui.client.session.cookie_jar.clear()
