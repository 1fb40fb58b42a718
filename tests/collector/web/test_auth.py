"""Logging in and out, roles, CSRF, session expiry, rate limits and the audit log, over HTTP
against a real collector app (and the accounts store on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from collector.config import UiConfig
from collector.schema import users, web_sessions
from collector.store import Store, StoreError
from collector.web.accounts import TOUCH_EVERY_S, Accounts, session_hash
from collector.web.auth import SESSION_COOKIE
from collector.web.passwords import PasswordError, hash_password, verify_password
from probes.result import Status
from tests.collector.web.conftest import PASSWORD, Ui, hidden

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def test_login_opens_the_board_and_is_audited(ui: Ui) -> None:
    resp = await ui.client.get("/", allow_redirects=False)
    assert resp.status == 303 and unquote(resp.headers["Location"]) == "/login?next=/"
    resp = await ui.login("viewer1", next_path="/maintenance")
    assert resp.status == 303 and resp.headers["Location"] == "/maintenance"
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]   # plain HTTP here; TLS adds Secure
    status, text = await ui.page("/")
    assert status == 200 and "电子病历" in text and "viewer1" in text
    # the database holds only the hash of the cookie's id
    async with ui.store.engine.connect() as conn:
        stored = (await conn.execute(sa.select(web_sessions.c.id_hash))).scalars().all()
    assert stored == [session_hash(cookie.value)]
    [entry] = await ui.accounts.audit_entries(action="login")
    assert (entry["username"], entry["target"], entry["address"]) == (
        "viewer1", "viewer1", "127.0.0.1")
    assert entry["detail"]["role"] == "viewer"


async def test_next_never_leaves_the_site(ui: Ui) -> None:
    resp = await ui.login("viewer1", next_path="//evil.example/x")
    assert resp.status == 303 and resp.headers["Location"] == "/"


@pytest.mark.parametrize(("name", "password"), [("viewer1", "wrong password"),
                                                ("nobody", PASSWORD)])
async def test_bad_password_or_unknown_user(ui: Ui, name: str, password: str) -> None:
    resp = await ui.login(name, password)
    assert resp.status == 401
    assert SESSION_COOKIE not in resp.cookies
    assert "用户名或密码错误" in await resp.text()
    assert (await ui.client.get("/", allow_redirects=False)).status == 303
    [entry] = await ui.accounts.audit_entries(action="login_failed")
    assert entry["target"] == name and entry["username"] is None
    assert entry["address"] == "127.0.0.1"


async def test_login_without_the_form_token_is_refused(ui: Ui) -> None:
    resp = await ui.client.post("/login", data={"name": "viewer1", "password": PASSWORD},
                                allow_redirects=False)
    assert resp.status == 403 and SESSION_COOKIE not in resp.cookies


async def test_failed_logins_are_rate_limited_per_user_and_address(ui: Ui) -> None:
    for _ in range(3):   # the fixture allows 3 failures per window
        assert (await ui.login("op1", "wrong password")).status == 401
    resp = await ui.login("op1")   # the right password, too late
    assert resp.status == 429 and SESSION_COOKIE not in resp.cookies
    assert "登录失败次数过多" in await resp.text()
    [refused] = await ui.accounts.audit_entries(action="login_refused")
    assert refused["target"] == "op1" and refused["detail"]["reason"] == "rate_limited"
    # another user from the same address is not locked out
    assert (await ui.login("viewer1")).status == 303
    # after the window the user may try again
    later = datetime.now(UTC) + timedelta(seconds=ui.accounts.config.login_window + 1)
    assert await ui.accounts.login_allowed("op1", "127.0.0.1", later)
    assert not await ui.accounts.login_allowed("op1", "127.0.0.1", datetime.now(UTC))
    assert await ui.accounts.login_allowed("op1", "10.0.0.9", datetime.now(UTC))


async def test_logout_ends_the_session(ui: Ui) -> None:
    await ui.login("op1")
    token = await ui.csrf()
    cookie = ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))
    old = cookie[SESSION_COOKIE].value
    resp = await ui.post("/logout", {}, token=token)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert await ui.accounts.session(old, datetime.now(UTC)) is None
    assert (await ui.client.get("/", allow_redirects=False)).status == 303
    assert [e["username"] for e in await ui.accounts.audit_entries(action="logout")] == ["op1"]


async def test_post_without_csrf_token_is_403(ui: Ui) -> None:
    incident_id = await ui.open_incident()
    await ui.login("op1")
    for token in (None, "not-the-token"):
        resp = await ui.post(f"/incidents/{incident_id}/ack", {"note": "x"}, token=token)
        assert resp.status == 403
    resp = await ui.post("/maintenance", {"system": "EMR"})
    assert resp.status == 403
    [incident] = await ui.app_incidents()
    assert incident.responded_at is None   # nothing happened
    assert await ui.accounts.audit_entries(action="incident_ack") == []


async def test_csrf_token_in_a_header_is_accepted(ui: Ui) -> None:
    incident_id = await ui.open_incident()
    await ui.login("op1")
    token = await ui.csrf()
    resp = await ui.client.post(f"/incidents/{incident_id}/ack", data={"note": "电话确认"},
                                headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert resp.status == 303
    [incident] = await ui.app_incidents()
    assert incident.responded_by == "op1"


async def test_viewer_cannot_act(ui: Ui) -> None:
    incident_id = await ui.open_incident()
    await ui.login("viewer1")
    token = await ui.csrf()
    resp = await ui.post(f"/incidents/{incident_id}/ack", {"note": "x"}, token=token)
    assert resp.status == 403 and "无权" in await resp.text()
    resp = await ui.post("/maintenance", {
        "system": "EMR", "kind": "planned", "start": "2026-05-01T22:00",
        "end": "2026-05-02T02:00", "reason": "r", "approved_by": "a"}, token=token)
    assert resp.status == 403
    assert await ui.store.maintenance_windows() == []
    [incident] = await ui.app_incidents()
    assert incident.responded_at is None
    # the incident page shows no action buttons to a viewer
    _, text = await ui.page(f"/incidents/{incident_id}")
    assert 'id="do-ack"' not in text
    # and the users page is for admins only
    assert (await ui.page("/users"))[0] == 403


async def test_operator_acknowledges_and_the_audit_log_has_it(ui: Ui) -> None:
    incident_id = await ui.open_incident()
    await ui.login("op1")
    _, page = await ui.page(f"/incidents/{incident_id}")
    assert 'id="do-ack"' in page and 'id="do-recover"' in page and 'id="do-close"' not in page
    token = hidden(page, "csrf_token")
    resp = await ui.post(f"/incidents/{incident_id}/ack", {"note": "已到场"}, token=token)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/incidents/{incident_id}?done=ack"
    [incident] = await ui.app_incidents()
    assert incident.responded_by == "op1" and incident.responded_at is not None
    _, page = await ui.page(f"/incidents/{incident_id}", done="ack")
    assert "已响应" in page and 'id="do-ack"' not in page
    [entry] = await ui.accounts.audit_entries(action="incident_ack")
    assert entry["username"] == "op1" and entry["target"] == incident.number
    assert entry["detail"]["note"] == "已到场" and entry["address"] == "127.0.0.1"
    # a second acknowledgement is refused by the incident service, shown on the page
    resp = await ui.post(f"/incidents/{incident_id}/close", {}, token=token)
    assert resp.status == 409 and 'id="action-error"' in await resp.text()
    # recover, report and close complete the incident's life, each audited
    for action, form in (("recover", {"note": "重启"}), ("report", {"ref": "RCA-1"}),
                         ("close", {})):
        resp = await ui.post(f"/incidents/{incident_id}/{action}", form, token=token)
        assert resp.status == 303, await resp.text()
    from collector.app import INCIDENTS_KEY

    done = await ui.app[INCIDENTS_KEY].get(incident_id)
    assert (done.state, done.recovered_by, done.report_ref, done.closed_by) == (
        "closed", "op1", "RCA-1", "op1")
    actions = [e["action"] for e in await ui.accounts.audit_entries()]
    assert actions[:4] == ["incident_close", "incident_report", "incident_recover",
                           "incident_ack"]
    timeline = await ui.app[INCIDENTS_KEY].timeline(incident_id)
    assert [e["by"] for e in timeline if e["kind"] != "opened"] == ["op1"] * 4


async def test_disabled_user_loses_the_session(ui: Ui) -> None:
    await ui.login("op1")
    assert (await ui.page("/"))[0] == 200
    await ui.accounts.disable("op1", datetime.now(UTC))
    assert (await ui.page("/"))[0] == 303
    assert (await ui.login("op1")).status == 401


async def test_admin_adds_and_disables_users(ui: Ui) -> None:
    await ui.login("admin1")
    status, text = await ui.page("/users")
    assert status == 200 and "op1" in text
    token = hidden(text, "csrf_token")
    resp = await ui.post("/users", {"name": "张工", "role": "operator",
                                    "password": "short"}, token=token)
    assert resp.status == 400 and "at least 8" in await resp.text()
    resp = await ui.post("/users", {"name": "张工", "role": "operator",
                                    "password": "long enough pw"}, token=token)
    assert resp.status == 303
    assert {u.name: u.role for u in await ui.accounts.users()}["张工"] == "operator"
    resp = await ui.post("/users/%E5%BC%A0%E5%B7%A5/disable", {}, token=token)
    assert resp.status == 303
    assert await ui.accounts.check_password("张工", "long enough pw") is None
    actions = [(e["action"], e["target"]) for e in await ui.accounts.audit_entries()]
    assert ("user_add", "张工") in actions and ("user_disable", "张工") in actions


async def test_json_fragment_needs_a_session(ui: Ui) -> None:
    resp = await ui.client.get("/ui/board.json")
    assert resp.status == 401 and (await resp.json())["error"] == "login required"


async def test_the_api_keeps_its_own_auth(ui: Ui) -> None:
    """A UI session grants nothing on /api/v1: ingest still needs an agent token."""
    await ui.login("admin1")
    resp = await ui.client.post("/api/v1/results", json={"agent_id": "x", "results": []})
    assert resp.status == 401
    await ui.feed("emr-01", Status.OK, 1, timedelta(seconds=5))
    resp = await ui.client.get("/api/v1/systems")
    assert resp.status == 200 and {s["id"] for s in await resp.json()} == {"EMR", "HIS"}


# -- the accounts store itself, on SQLite and PostgreSQL ------------------------------------

async def test_sessions_expire_idle_and_absolute(store: Store) -> None:
    accounts = Accounts(store, UiConfig(session_idle=600, session_max=3600))
    user = await accounts.add_user("张工", PASSWORD, "operator", T0)
    cookie, session = await accounts.start_session(user, T0)
    assert session.expires_at == T0 + timedelta(hours=1)
    # idle: alive just before the idle limit, gone after it
    assert await accounts.session(cookie, T0 + timedelta(seconds=599)) is not None
    touched = T0 + timedelta(seconds=599)
    assert await accounts.session(cookie, touched + timedelta(seconds=601)) is None
    assert await accounts.session(cookie, T0) is None   # and it was deleted
    # absolute: used every 5 minutes, it still ends an hour after login
    cookie, _ = await accounts.start_session(user, T0)
    for minutes in range(5, 60, 5):
        live = await accounts.session(cookie, T0 + timedelta(minutes=minutes))
        assert live is not None and live.user.name == "张工"
        assert live.last_seen == T0 + timedelta(minutes=minutes)   # > TOUCH_EVERY_S apart
    assert await accounts.session(cookie, T0 + timedelta(minutes=60)) is None
    # last_seen is written at most every TOUCH_EVERY_S
    cookie, _ = await accounts.start_session(user, T0)
    live = await accounts.session(cookie, T0 + timedelta(seconds=TOUCH_EVERY_S / 2))
    assert live is not None and live.last_seen == T0


async def test_passwords_are_salted_scrypt_hashes(store: Store) -> None:
    accounts = Accounts(store, UiConfig())
    await accounts.add_user("a", PASSWORD, "viewer", T0)
    await accounts.add_user("b", PASSWORD, "viewer", T0)
    async with store.engine.connect() as conn:
        hashes = (await conn.execute(sa.select(users.c.password_hash))).scalars().all()
    assert len(set(hashes)) == 2 and all(h.startswith("scrypt$") for h in hashes)
    assert all(PASSWORD not in h for h in hashes)
    assert verify_password(PASSWORD, hashes[0]) and not verify_password("x" * 12, hashes[0])
    assert not verify_password(PASSWORD, "garbage")
    with pytest.raises(PasswordError):
        hash_password("short")
    with pytest.raises(StoreError, match="exists"):
        await accounts.add_user("a", PASSWORD, "viewer", T0)
    with pytest.raises(StoreError, match="role must be"):
        await accounts.add_user("c", PASSWORD, "root", T0)
    # a new password ends the user's sessions
    user = await accounts.check_password("a", PASSWORD)
    assert user is not None
    cookie, _ = await accounts.start_session(user, T0)
    await accounts.set_password("a", "another password")
    assert await accounts.session(cookie, T0) is None
    assert await accounts.check_password("a", PASSWORD) is None
    assert await accounts.check_password("a", "another password") is not None
