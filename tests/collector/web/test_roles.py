"""Every route of the web UI enforces its role and (for POSTs) its CSRF token, and a refused
request changes nothing (issue 10, security tests).

Driven by the router: the routes are read from `setup_web` (collector/web/__init__.py), and
each must be in ROUTES, the table of the least role it needs, with an example request that
would change something when allowed. A route added without an entry fails
`test_every_ui_route_is_in_the_table`; one whose view lacks its check fails its own test.

For each POST route: anonymous -> redirect to the login form (or 401/403); every role below
the least one -> 403; the least role without a CSRF token, with a wrong one, or with another
session's token -> 403; and in every case no row of any table changes. Then the least role
with its token does change something: the positive control, which shows that the "nothing
changed" comparison can see a change. GET routes: anonymous -> login, lower roles -> 403,
the least role -> 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from collector.app import CONFIG_KEY
from collector.config import parse_collector_config
from collector.store import utcnow
from collector.web import setup_web
from collector.web.accounts import RANK
from tests.collector.web.conftest import PASSWORD, Ui, hidden, snapshot

ANONYMOUS = "anonymous"
USERS = {"viewer": "viewer1", "operator": "op1", "admin": "admin1"}
"""The fixture's user of each role."""

RANKED = (ANONYMOUS, "viewer", "operator", "admin")


@dataclass(frozen=True)
class Route:
    role: str
    """The least role the route needs (`anonymous`: none)."""
    form: dict[str, str] = field(default_factory=dict)
    """For a POST: a valid request that changes state when allowed (the positive control)."""
    json: bool = False
    """A JSON endpoint: without a session it answers 401 instead of redirecting."""


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/login"): Route(ANONYMOUS),
    ("POST", "/login"): Route(ANONYMOUS),   # its own CSRF (double submit): see below
    ("POST", "/logout"): Route("viewer"),
    ("GET", "/"): Route("viewer"),
    ("GET", "/ui/board.json"): Route("viewer", json=True),
    ("GET", "/systems/{id}"): Route("viewer"),
    ("GET", "/hosts/{host}"): Route("viewer"),
    ("GET", "/incidents"): Route("viewer"),
    ("GET", "/incidents/{id}"): Route("viewer"),
    ("POST", "/incidents/{id}/{action}"): Route("operator", {"note": "on site"}),
    ("GET", "/maintenance"): Route("viewer"),
    ("POST", "/maintenance"): Route("operator", {
        "system": "EMR", "kind": "planned", "start": "2026-05-01T22:00",
        "end": "2026-05-02T02:00", "reason": "upgrade", "approved_by": "CIO"}),
    ("POST", "/maintenance/{id}/cancel"): Route("operator"),
    ("GET", "/reports"): Route("viewer"),
    ("POST", "/reports"): Route("viewer", {   # a download is audited: that is its change
        "kind": "availability", "format": "json", "from": "2026-01-01", "to": "2026-01-31",
        "lang": "en"}),
    ("GET", "/users"): Route("admin"),
    ("POST", "/users"): Route("admin", {"name": "newcomer", "role": "viewer",
                                        "password": "long enough pw"}),
    ("POST", "/users/{name}/disable"): Route("admin"),
    ("GET", "/ui/static"): Route(ANONYMOUS),
}
"""(method, route) -> the least role. A new UI route must be added here."""


def ui_routes() -> list[tuple[str, str]]:
    """(method, canonical path) of every route `setup_web` adds (HEAD mirrors GET)."""
    app = web.Application()
    app[CONFIG_KEY] = parse_collector_config({})
    setup_web(app)
    return sorted({(route.method, route.resource.canonical) for route in app.router.routes()
                   if route.method != "HEAD" and route.resource is not None})


UI_ROUTES = ui_routes()


def test_every_ui_route_is_in_the_table() -> None:
    unknown = [route for route in UI_ROUTES if route not in ROUTES]
    assert not unknown, (f"UI routes without an expected role: {unknown}; add each to ROUTES "
                         "in tests/collector/web/test_roles.py with the least role it needs "
                         "(and, for a POST, a form that changes state)")
    gone = [route for route in ROUTES if route not in UI_ROUTES]
    assert not gone, f"ROUTES lists routes the UI no longer has: {gone}"
    assert len(UI_ROUTES) >= 18   # the enumeration itself works


# -- state ----------------------------------------------------------------------------------



def changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


@dataclass(frozen=True)
class World:
    """Things the routes act on: an open incident, an active window, a user to disable."""

    incident_id: int
    window_id: int


async def prepare(ui: Ui) -> World:
    incident_id = await ui.open_incident()   # also gives host emr-01 its checks
    now = utcnow()
    window = await ui.store.add_maintenance(
        system="EMR", start=now - timedelta(hours=1), end=now + timedelta(hours=1),
        kind="planned", reason="patching", approved_by="CIO", by="test", now=now)
    await ui.accounts.add_user("target1", PASSWORD, "viewer", now)
    return World(incident_id=incident_id, window_id=window.id)


def concrete(path: str, world: World) -> str:
    values = {"{id}": str(world.incident_id), "{action}": "ack", "{host}": "emr-01",
              "{name}": "target1"}
    if path == "/maintenance/{id}/cancel":
        values["{id}"] = str(world.window_id)
    if path == "/systems/{id}":
        values["{id}"] = "EMR"
    if path == "/ui/static":
        return "/ui/static/board.js"
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    assert "{" not in path, (f"no example value for a placeholder of {path}: add one in "
                             "concrete() of tests/collector/web/test_roles.py")
    return path


async def log_in_as(ui: Ui, role: str) -> str:
    """A fresh browser session of `role`'s user; its CSRF token ('' when anonymous)."""
    ui.client.session.cookie_jar.clear()
    if role == ANONYMOUS:
        return ""
    resp = await ui.login(USERS[role])
    assert resp.status == 303, await resp.text()
    return await ui.csrf()


def below(role: str) -> list[str]:
    return [r for r in RANKED[1:] if r != ANONYMOUS and RANK[r] < RANK.get(role, -1)]


def is_login_redirect(resp: Any) -> bool:
    return bool(resp.status == 303 and resp.headers["Location"].startswith("/login"))


# -- POST routes ----------------------------------------------------------------------------

POSTS = [route for route in UI_ROUTES if route[0] == "POST" and route[1] != "/login"]


@pytest.mark.parametrize("route", POSTS, ids=[path for _m, path in POSTS])
async def test_post_route_needs_its_role_and_csrf_token(ui: Ui, route: tuple[str, str]
                                                        ) -> None:
    expected = ROUTES.get(route)
    assert expected is not None, f"{route} is not in ROUTES: add it with its least role"
    assert expected.role != ANONYMOUS, f"{route}: a state-changing route open to anyone?"
    world = await prepare(ui)
    path = concrete(route[1], world)
    form = expected.form

    async def refused(who: str, token: str | None, *, header: bool = False,
                      want: tuple[int, ...] = (403,)) -> None:
        before = await snapshot(ui.store)
        data = dict(form)
        headers = {}
        if token is not None and header:
            headers["X-CSRF-Token"] = token
        elif token is not None:
            data["csrf_token"] = token
        resp = await ui.client.post(path, data=data, headers=headers, allow_redirects=False)
        ok = resp.status in want or (who == ANONYMOUS and is_login_redirect(resp))
        assert ok, (who, path, resp.status, (await resp.text())[:300])
        after = await snapshot(ui.store)
        assert not changes(before, after), (f"{who}: POST {path} was refused with "
                                            f"{resp.status} but changed "
                                            f"{changes(before, after)}")

    # anonymous: to the login form, with or without something that looks like a token
    await log_in_as(ui, ANONYMOUS)
    await refused(ANONYMOUS, None, want=(401, 403))
    await refused(ANONYMOUS, "forged-token", want=(401, 403))
    # every lower role, with its own valid token (in the form and in the header)
    for role in below(expected.role):
        token = await log_in_as(ui, role)
        await refused(role, token)
        await refused(role, token, header=True)
    # the least role without the right token
    other = "admin" if expected.role != "admin" else "operator"
    foreign = await log_in_as(ui, other)   # a valid token, of another session
    token = await log_in_as(ui, expected.role)
    assert foreign and token and foreign != token
    await refused(expected.role, None)
    await refused(expected.role, "")
    await refused(expected.role, "not-the-token")
    await refused(expected.role, token[:-1])
    await refused(expected.role, foreign)
    await refused(expected.role, foreign, header=True)
    # positive control: the same request with the session's token does act
    before = await snapshot(ui.store)
    resp = await ui.post(path, form, token=token)
    assert resp.status in (200, 303), (path, resp.status, (await resp.text())[:300])
    assert not is_login_redirect(resp) or route[1] == "/logout"
    assert changes(before, await snapshot(ui.store)), (
        f"POST {path} by {expected.role} changed nothing")


async def test_login_post_needs_its_form_token(ui: Ui) -> None:
    """The login form's token is bound to a short-lived cookie: without it no session."""
    await log_in_as(ui, ANONYMOUS)
    form = await ui.client.get("/login")
    token = hidden(await form.text(), "csrf_token")
    data = {"name": "admin1", "password": PASSWORD}
    for sent in (None, "", "forged", token[:-1]):
        before = await snapshot(ui.store)
        body = dict(data) if sent is None else {**data, "csrf_token": sent}
        resp = await ui.client.post("/login", data=body, allow_redirects=False)
        assert resp.status == 403, (sent, resp.status)
        assert not changes(before, await snapshot(ui.store))
    # the right token from another browser (no login cookie here) is refused too
    ui.client.session.cookie_jar.clear()
    resp = await ui.client.post("/login", data={**data, "csrf_token": token},
                                allow_redirects=False)
    assert resp.status == 403
    # positive control
    resp = await ui.login("admin1")
    assert resp.status == 303 and resp.headers["Location"] == "/"


# -- GET routes -----------------------------------------------------------------------------

GETS = [route for route in UI_ROUTES if route[0] == "GET"]


@pytest.mark.parametrize("route", GETS, ids=[path for _m, path in GETS])
async def test_get_route_needs_its_role(ui: Ui, route: tuple[str, str]) -> None:
    expected = ROUTES.get(route)
    assert expected is not None, f"{route} is not in ROUTES: add it with its least role"
    world = await prepare(ui)
    path = concrete(route[1], world)
    if expected.role != ANONYMOUS:
        await log_in_as(ui, ANONYMOUS)
        resp = await ui.client.get(path, allow_redirects=False)
        if expected.json:
            assert resp.status == 401, (path, resp.status)
        else:
            assert is_login_redirect(resp), (path, resp.status)
    for role in below(expected.role):
        await log_in_as(ui, role)
        resp = await ui.client.get(path, allow_redirects=False)
        assert resp.status == 403, (role, path, resp.status)
    await log_in_as(ui, expected.role if expected.role != ANONYMOUS else ANONYMOUS)
    resp = await ui.client.get(path, allow_redirects=False)
    assert resp.status == 200, (expected.role, path, resp.status)
