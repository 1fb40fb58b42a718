"""Secrets never appear in logs, metrics, API answers, incident timelines and notification
records, reports, web pages or the database (issue 10, security tests).

Real processes on loopback, each given distinctive secrets (`WWSECRET-…`):

- a collector (`python -m collector run`) on PostgreSQL through a role with a password in the
  store URL, an admin token from a file, four notification channels whose secrets come from
  the environment and a file (a WeCom robot `key=`, a DingTalk `access_token=` and signing
  secret, a webhook with a `?token=` and Basic and API-key headers, SMTP with a password);
- an agent pushing with its token (a wrong one first), serving /metrics behind basic auth,
  with an HTTP check sending Basic credentials and a PostgreSQL check with a password.

Then everything that is likely to echo a secret is provoked: every peer is hostile and
answers with an error that quotes what it received (the URL with its key, the headers, the
decoded Basic credentials, the SMTP AUTH exchange), wrong agent and admin tokens, another
agent's id, a failed UI login, a store URL whose server is down, config errors. Everything
is captured — both processes' output, both /metrics, every JSON answer, the incident with
its timeline and notification rows, reports in every format from the CLI (the xlsx
unzipped) and from the UI, every page an admin sees, every row of every table, the agent's
state directory — and no secret may appear in it, nor its URL-encoded or base64 form, nor a
Basic or SMTP AUTH credential made from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import asyncpg
import pytest
import sqlalchemy as sa
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from collector.schema import metadata
from collector.store import Store
from tests.services import POSTGRES_URL, free_port, needs, postgres_available, wait_for_port


def secret(label: str) -> str:
    return f"WWSECRET-{label}-{uuid.uuid4().hex[:12]}"


@dataclass
class Secrets:
    """label -> value; the agent's real token is added once it is enrolled."""

    values: dict[str, str] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)
    """Credentials made from secrets (Basic headers, SMTP AUTH), label -> value."""

    def new(self, label: str) -> str:
        self.values[label] = value = secret(label)
        return value

    def forms(self) -> dict[str, str]:
        """Every form that must not appear, -> what it is."""
        out: dict[str, str] = {}
        for label, value in {**self.values, **self.derived}.items():
            out.setdefault(value, label)
            out.setdefault(quote(value, safe=""), f"{label} (URL-encoded)")
            out.setdefault(quote_plus(value), f"{label} (form-encoded)")
            out.setdefault(b64(value), f"{label} (base64)")
        return out


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + b64(f"{user}:{password}")


# -- hostile peers: every error quotes what they received ---------------------------------

@dataclass
class Peers:
    http_port: int = 0
    smtp_port: int = 0
    hits: dict[str, int] = field(default_factory=dict)


def hostile_app(peers: Peers) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        peers.hits[request.path] = peers.hits.get(request.path, 0) + 1
        await request.read()
        said = []   # what a reply keeps is cut (200 characters): the headers first
        for name in ("Authorization", "X-Api-Key"):
            value = request.headers.get(name, "")
            scheme, _, credential = value.partition(" ")
            said += [credential]
            if scheme == "Basic":
                with contextlib.suppress(ValueError):
                    decoded = base64.b64decode(credential).decode()
                    said += [decoded.partition(":")[2], decoded]
        said += [f"{k}={v}" for k, v in request.query.items()]
        said += [str(request.url)]
        text = " ".join(s for s in said if s)
        if request.path == "/robot/send":    # DingTalk answers 200 with an errcode
            return web.json_response({"errcode": 310000, "errmsg": f"sign not match: {text}"})
        if request.path == "/probe":
            return web.Response(status=401, text=f"who are you? {text}")
        return web.json_response({"error": f"cannot handle {text}"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class HostileSmtp:
    """Accepts any login, then refuses the sender quoting the login it was given."""

    def __init__(self) -> None:
        self.logins: list[tuple[bytes, bytes]] = []

    def authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    async def handle_MAIL(self, _server: Any, _session: Any, _envelope: Any, _address: str,
                          _options: list[str]) -> str:
        login, password = self.logins[-1] if self.logins else (b"", b"")
        plain = base64.b64encode(b"\0" + login + b"\0" + password).decode()
        return (f"451 4.3.0 try later ({login.decode()}:{password.decode()} "
                f"{base64.b64encode(password).decode()} {plain})")


@contextlib.asynccontextmanager
async def hostile_peers() -> AsyncIterator[Peers]:
    peers = Peers(http_port=free_port(), smtp_port=free_port())
    runner = web.AppRunner(hostile_app(peers), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", peers.http_port).start()
    smtp = HostileSmtp()
    controller = Controller(smtp, hostname="127.0.0.1", port=peers.smtp_port,
                            authenticator=smtp.authenticate, auth_require_tls=False)
    await asyncio.to_thread(controller.start)
    try:
        yield peers
    finally:
        await asyncio.to_thread(controller.stop)
        await runner.cleanup()


# -- PostgreSQL through a role with a password ----------------------------------------------

@contextlib.asynccontextmanager
async def password_database(password: str) -> AsyncIterator[str]:
    name = f"ww_sec_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {name}')
    finally:
        await admin.close()
    host = POSTGRES_URL.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql://{name}:{password}@{host}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        finally:
            await admin.close()


# -- processes ------------------------------------------------------------------------------

COMMAND_TIMEOUT_S = 60.0


async def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`python -m ARGS`; its exit code and output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode("utf-8", "replace")


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")


# -- what is captured -----------------------------------------------------------------------

@dataclass
class Captured:
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, content: str | bytes) -> None:
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        self.texts[where] = self.texts.get(where, "") + content

    def add_xlsx(self, where: str, data: bytes) -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            for name in book.namelist():
                self.add(f"{where}!{name}", book.read(name))

    def leaks(self, forms: dict[str, str]) -> list[str]:
        found = []
        for where, text in self.texts.items():
            for value, label in forms.items():
                at = text.find(value)
                if at >= 0:
                    found.append(f"{label} in {where}: …{text[max(0, at - 80):at + 40]!r}…")
        return found


async def test_no_secret_anywhere(tmp_path: Path) -> None:
    needs(postgres_available(), "PostgreSQL on 127.0.0.1:5432 (database test)")
    async with asyncio.timeout(120):
        await _scenario(tmp_path)


async def _scenario(tmp_path: Path) -> None:
    s = Secrets()
    pg_password = s.new("pg-password")
    async with hostile_peers() as peers, password_database(pg_password) as store_url:
        await _with_services(tmp_path, s, peers, store_url)


async def _with_services(tmp_path: Path, s: Secrets, peers: Peers, store_url: str) -> None:
    started = time.monotonic()
    base = f"http://127.0.0.1:{peers.http_port}"
    collector_port, agent_port, closed_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{collector_port}"
    admin_token = s.new("admin-token")
    (tmp_path / "admin-token").write_text(admin_token + "\n")
    hook_key = s.new("hook-key")
    (tmp_path / "hook-key").write_text(f"Token {hook_key}\n")
    hook_password = s.new("hook-pw")
    s.derived["hook Basic header"] = basic("hook", hook_password)
    smtp_password = s.new("smtp-password")
    s.derived["SMTP AUTH PLAIN"] = "\0wardwatch\0" + smtp_password
    probe_password = s.new("probe-basic-password")
    s.derived["probe Basic header"] = basic("probe", probe_password)
    metrics_password = s.new("agent-metrics-password")
    s.derived["metrics Basic header"] = basic("prom", metrics_password)
    wrong_metrics = s.new("wrong-metrics-password")
    ui_password = s.new("ui-admin-password")
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()),
           "WW_WECOM_URL": f"{base}/cgi-bin/webhook/send?key={s.new('wecom-key')}",
           "WW_DINGTALK_URL": f"{base}/robot/send?access_token={s.new('dingtalk-token')}",
           "WW_DINGTALK_SECRET": "SEC" + s.new("dingtalk-sign-secret"),
           "WW_HOOK_AUTH": basic("hook", hook_password),
           "WW_SMTP_PASSWORD": smtp_password,
           "WW_PROBE_AUTH": basic("probe", probe_password),
           "WW_PROBE_DB_PASSWORD": s.new("probe-db-password"),
           "WW_METRICS_PASSWORD": metrics_password,
           "WARDWATCH_PASSWORD": ui_password}
    fast = {"retries": 1, "backoff": "0.1s", "backoff_max": "0.2s", "timeout": "2s"}
    collector_config = {
        "listen": f"127.0.0.1:{collector_port}", "store": store_url,
        "admin_token": {"file": str(tmp_path / "admin-token")},
        "public_url": "https://wardwatch.hospital.local", "language": "en",
        "systems": [{"id": "EMR", "name": "电子病历", "core": True, "members": ["a1/*"]}],
        "incidents": {"confirm": {"results": 2, "duration": "60s"}, "evaluate_every": "1s"},
        "channels": [
            {"name": "wecom", "type": "wecom", "webhook_url": {"env": "WW_WECOM_URL"}, **fast},
            {"name": "dingtalk", "type": "dingtalk", "webhook_url": {"env": "WW_DINGTALK_URL"},
             "secret": {"env": "WW_DINGTALK_SECRET"}, **fast},
            {"name": "itsm", "type": "webhook",
             "url": f"{base}/hook?token={s.new('hook-token')}&format=json",
             "secret_headers": {"Authorization": {"env": "WW_HOOK_AUTH"},
                                "X-Api-Key": {"file": str(tmp_path / "hook-key")}}, **fast},
            {"name": "mail", "type": "email", "host": "127.0.0.1", "port": peers.smtp_port,
             "security": "none", "username": "wardwatch",
             "password": {"env": "WW_SMTP_PASSWORD"}, "sender": "wardwatch@hospital.local",
             "to": ["duty@hospital.local"], "retries": 0, "timeout": "5s"}]}
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(collector_config, allow_unicode=True))
    captured = Captured()

    code, out = await run(["collector", "agents", "add", "a1", "--config", str(config)], env)
    assert code == 0, out
    token = out.splitlines()[0].strip()
    s.values["agent-token"] = token
    captured.add("agents add (stderr part)", "\n".join(out.splitlines()[1:]))
    code, out = await run(["collector", "users", "add", "boss", "--role", "admin",
                           "--config", str(config)], env)
    assert code == 0, out
    captured.add("users add", out)

    wrong_token = s.new("wrong-agent-token")
    token_file = tmp_path / "token"
    token_file.write_text(wrong_token + "\n")   # the right one is written once refused
    state_dir = tmp_path / "state"
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text(yaml.safe_dump({
        "agent": {"id": "a1", "listen": f"127.0.0.1:{agent_port}", "state_dir": str(state_dir),
                  "basic_auth": {"username": "prom", "password": {"env": "WW_METRICS_PASSWORD"}}},
        "collector": {"url": url, "token_file": str(token_file), "push_interval": 0.2},
        "checks": [
            {"id": "web", "kind": "http", "system": "EMR", "url": f"{base}/probe",
             "secret_headers": {"Authorization": {"env": "WW_PROBE_AUTH"}},
             "interval": 0.5, "timeout": 0.4},
            {"id": "db", "kind": "postgres", "system": "EMR",
             "dsn": f"postgresql://probe@127.0.0.1:{closed_port}/emr",
             "password_env": "WW_PROBE_DB_PASSWORD", "interval": 1, "timeout": 0.8}]}))
    logs = tmp_path / "logs"
    logs.mkdir()
    collector = start(["collector", "run", "--config", str(config)], env,
                      logs / "collector.log")
    agent = start(["agent", "run", "--config", str(agent_config)], env, logs / "agent.log")
    try:
        await asyncio.to_thread(wait_for_port, collector_port, "127.0.0.1", 30)
        await asyncio.to_thread(wait_for_port, agent_port, "127.0.0.1", 30)

        async def refused_logged() -> bool:
            return "401" in (logs / "agent.log").read_text(errors="replace")

        await until(refused_logged, 15, "the agent's push refused (wrong token)")
        token_file.write_text(token + "\n")
        async with aiohttp.ClientSession() as http:
            incident_id = await _provoke(http, url, s, captured, token, admin_token)
            await _capture_api(http, url, incident_id, captured)
            await _capture_metrics(http, url, agent_port, metrics_password, wrong_metrics,
                                   captured)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            await _capture_ui(browser, url, incident_id, ui_password, s, captured)
        await _capture_cli(tmp_path, config, store_url, collector_config, env, s, captured)
    finally:
        await asyncio.to_thread(stop, agent)
        await asyncio.to_thread(stop, collector)
        for log in logs.iterdir():
            captured.add(f"log {log.name}", log.read_bytes())
    await _capture_store(store_url, captured)
    for path in state_dir.rglob("*"):
        if path.is_file():
            captured.add(f"agent state {path.relative_to(state_dir)}", path.read_bytes())

    # the hostile peers were reached, so their echoes were there to leak
    assert peers.hits.get("/probe") and peers.hits.get("/hook")
    assert peers.hits.get("/cgi-bin/webhook/send") and peers.hits.get("/robot/send")
    collector_log = captured.texts["log collector.log"]
    assert "incident" in collector_log and "channel mail" in collector_log, collector_log[-3000:]
    leaks = captured.leaks(s.forms())
    assert not leaks, "secrets found:\n" + "\n".join(leaks)
    assert len(captured.texts) > 40, sorted(captured.texts)
    print(f"\n{len(captured.texts)} outputs, {sum(map(len, captured.texts.values()))} "
          f"characters checked for {len(s.forms())} forms of {len(s.values)} secrets in "
          f"{time.monotonic() - started:.1f} s")


async def _provoke(http: aiohttp.ClientSession, url: str, s: Secrets, captured: Captured,
                   token: str, admin_token: str) -> int:
    """Wrong tokens, another agent's id, admin writes; then the incident and its deliveries.
    Returns the incident's id."""
    batch = {"agent_id": "a2", "results": []}
    attempts = [
        ("push, wrong token", "/api/v1/results", s.new("wrong-push-token"), batch),
        ("push, another agent's id", "/api/v1/results", token, batch),
        ("maintenance, wrong admin token", "/api/v1/maintenance", s.new("wrong-admin-token"),
         {"system": "EMR"}),
        ("maintenance, agent token as admin", "/api/v1/maintenance", token, {"system": "EMR"}),
    ]
    for what, path, bearer, body in attempts:
        async with http.post(url + path, json=body,
                             headers={"Authorization": f"Bearer {bearer}"}) as resp:
            assert resp.status in (401, 403), (what, resp.status)
            captured.add(f"API {what}", await resp.text())
    now = datetime.now(UTC)
    async with http.post(url + "/api/v1/maintenance", json={
            "system": "EMR", "start": (now - timedelta(days=2)).isoformat(),
            "end": (now - timedelta(days=1)).isoformat(), "kind": "planned",
            "reason": "patching", "approved_by": "CIO", "by": "ops"},
            headers={"Authorization": f"Bearer {admin_token}"}) as resp:
        assert resp.status == 201, await resp.text()
        captured.add("API maintenance added", await resp.text())

    shown: dict[str, Any] = {}

    async def delivered_or_failed() -> bool:
        async with http.get(url + "/api/v1/incidents") as resp:
            found = await resp.json()
        if not found:
            return False
        async with http.get(f"{url}/api/v1/incidents/{found[0]['id']}") as resp:
            shown.update(await resp.json())
        tried = {n["channel"] for n in shown["notifications"]
                 if n["attempts"] and n["last_error"]}
        return tried >= {"wecom", "dingtalk", "itsm", "mail"}

    await until(delivered_or_failed, 30, "the incident opened and every channel failed")
    incident_id = int(shown["id"])
    errors = {n["channel"]: n["last_error"] for n in shown["notifications"] if n["last_error"]}
    assert "HTTP 500" in errors["wecom"] and "310000" in errors["dingtalk"], errors
    assert "451" in errors["mail"], errors   # the peers' echoes reached the records
    async with http.post(f"{url}/api/v1/incidents/{incident_id}/ack",
                         json={"by": "ops", "note": "on it"},
                         headers={"Authorization": f"Bearer {admin_token}"}) as resp:
        assert resp.status == 200, await resp.text()
        captured.add("API incident ack", await resp.text())
    return incident_id


async def _capture_api(http: aiohttp.ClientSession, url: str, incident_id: int,
                       captured: Captured) -> None:
    paths = ["/api/v1/systems", "/api/v1/availability?system=EMR", "/api/v1/maintenance",
             "/api/v1/patches", "/api/v1/hosts/a1/patches", "/api/v1/rectifications",
             "/api/v1/waivers", "/api/v1/incidents", f"/api/v1/incidents/{incident_id}",
             "/api/v1/sd", "/api/v1/openapi.json", "/healthz", "/readyz",
             "/api/v1/incidents/99999", "/api/v1/availability?system=NOPE"]
    for path in paths:
        async with http.get(url + path) as resp:
            assert resp.status < 500, (path, resp.status)
            captured.add(f"API GET {path}", await resp.text())


async def _capture_metrics(http: aiohttp.ClientSession, url: str, agent_port: int,
                           password: str, wrong: str, captured: Captured) -> None:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200 and "wardwatch_collector" in text
        captured.add("collector /metrics", text)
    agent = f"http://127.0.0.1:{agent_port}/metrics"
    async with http.get(agent, headers={"Authorization": basic("prom", password)}) as resp:
        text = await resp.text()
        assert resp.status == 200 and "wardwatch_check_up" in text
        captured.add("agent /metrics", text)
    async with http.get(agent, headers={"Authorization": basic("prom", wrong)}) as resp:
        assert resp.status == 401
        captured.add("agent /metrics, wrong password", await resp.text())


async def _capture_ui(browser: aiohttp.ClientSession, url: str, incident_id: int,
                      password: str, s: Secrets, captured: Captured) -> None:
    async def login(name: str, secret_word: str) -> aiohttp.ClientResponse:
        async with browser.get(url + "/login") as resp:
            form = await resp.text()
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        assert token is not None
        async with browser.post(url + "/login", data={
                "name": name, "password": secret_word, "csrf_token": token.group(1),
                "next": "/"}, allow_redirects=False) as resp:
            captured.add(f"UI login {name}", await resp.text())
            return resp

    assert (await login("boss", s.new("ui-wrong-password"))).status == 401
    assert (await login("boss", password)).status == 303
    pages = ["/", "/ui/board.json", "/systems/EMR", "/hosts/a1", "/incidents",
             f"/incidents/{incident_id}", "/maintenance", "/reports", "/users"]
    csrf = ""
    for path in pages:
        async with browser.get(url + path) as resp:
            text = await resp.text()
            assert resp.status == 200, (path, resp.status)
            captured.add(f"UI {path}", text)
            found = re.search(r'name="csrf_token" value="([^"]*)"', text)
            csrf = found.group(1) if found else csrf
    async with browser.post(url + "/users", data={
            "name": "op2", "role": "operator", "password": s.new("ui-operator-password"),
            "csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    async with browser.get(url + "/users") as resp:
        captured.add("UI /users after adding op2", await resp.text())
    today = datetime.now(UTC).date()
    for kind in ("availability", "incidents", "annual"):
        for fmt in ("html", "json", "csv", "xlsx"):
            async with browser.post(url + "/reports", data={
                    "kind": kind, "format": fmt, "from": (today - timedelta(days=1)).isoformat(),
                    "to": today.isoformat(), "lang": "en", "csrf_token": csrf}) as resp:
                body = await resp.read()
                assert resp.status == 200, (kind, fmt, body[:300])
                if fmt == "xlsx":
                    captured.add_xlsx(f"UI report {kind}.{fmt}", body)
                else:
                    captured.add(f"UI report {kind}.{fmt}", body)


async def _capture_cli(tmp_path: Path, config: Path, store_url: str,
                       collector_config: dict[str, Any], env: dict[str, str], s: Secrets,
                       captured: Captured) -> None:
    """Reports in every format, and the commands' answers to a store that is down and to
    config errors; all at once (each is a Python process)."""
    today = datetime.now(UTC).date()
    period = ["--from", (today - timedelta(days=1)).isoformat(), "--to", today.isoformat()]
    jobs: dict[str, Awaitable[tuple[int, str]]] = {}
    for fmt in ("html", "json", "csv", "xlsx"):
        jobs[f"report {fmt}"] = run(["collector", "report", "annual", *period, "--format", fmt,
                                     "-o", str(tmp_path / f"annual.{fmt}"), "--config",
                                     str(config)], env)
    down = tmp_path / "store-down.yaml"
    dead_url = re.sub(r"@[^/]+/", f"@127.0.0.1:{free_port()}/", store_url)
    down.write_text(yaml.safe_dump({**collector_config, "store": dead_url},
                                   allow_unicode=True))
    jobs["report, store down"] = run(["collector", "report", "availability", "--config",
                                      str(down)], env)
    jobs["run, store down"] = run(["collector", "run", "--config", str(down)], env)
    jobs["incidents list, store down"] = run(["collector", "incidents", "list", "--config",
                                              str(down)], env)
    bad_channel = tmp_path / "bad-channel.yaml"
    bad_channel.write_text(yaml.safe_dump({**collector_config, "channels": [
        {"name": "wecom", "type": "wecom", "webhook_url": {"env": "WW_BAD_WECOM"}}]},
        allow_unicode=True))
    bad_env = {**env, "WW_BAD_WECOM": "http://127.0.0.1:1/send?token="   # no key=
               + s.new("bad-wecom-token")}
    jobs["run, channel config error"] = run(["collector", "run", "--config",
                                             str(bad_channel)], bad_env)
    bad_agent = tmp_path / "bad-agent.yaml"
    bad_agent.write_text(yaml.safe_dump({"agent": {"id": "a9"}, "checks": [
        {"id": "web", "kind": "http",
         "url": f"http://probe:{s.new('url-password')}@127.0.0.1:1/"},
        {"id": "db", "kind": "postgres",
         "dsn": f"postgresql://probe:{s.new('dsn-password')}@127.0.0.1:1/emr"}]}))
    jobs["agent validate, config error"] = run(["agent", "validate", "--config",
                                                str(bad_agent)], env)
    jobs["agent check --json"] = run(["agent", "check", "--config",
                                      str(tmp_path / "agent.yaml"), "--json"], env)
    results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    for what, (code, out) in results.items():
        captured.add(f"CLI {what} (exit {code})", out)
        if what == "agent check --json":
            assert code == 2 and '"unexpected_status"' in out, out   # the probe's 401
        elif what.startswith("report ") and "store down" not in what:
            assert code == 0, (what, out)
        else:
            assert code != 0, (what, out)
    assert "has no key= parameter" in results["run, channel config error"][1]
    code, out = results["report, store down"]
    assert code == 2 and out.startswith("error: cannot open the store: "), out
    for fmt in ("html", "json", "csv", "xlsx"):
        data = (tmp_path / f"annual.{fmt}").read_bytes()
        if fmt == "xlsx":
            captured.add_xlsx("CLI report annual.xlsx", data)
        else:
            captured.add(f"CLI report annual.{fmt}", data)


async def _capture_store(store_url: str, captured: Captured) -> None:
    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows = (await conn.execute(sa.select(table))).all()
                captured.add(f"table {table.name}",
                             "\n".join(json.dumps([str(v) for v in row], ensure_ascii=False)
                                       for row in rows))
    finally:
        await store.close()


def test_config_syntax_error_does_not_quote_the_store_password(tmp_path: Path) -> None:
    from collector.config import load_collector_config
    from probes.config import ConfigError

    password = secret("pg")
    path = tmp_path / "collector.yaml"
    for line in (f"store: postgresql://u:{password}@db/ww: x",   # a stray `: x`
                 f'store: "postgresql://u:{password}@db/ww'):    # an unclosed quote
        path.write_text(line + "\n")
        with pytest.raises(ConfigError) as caught:
            load_collector_config(path)
        assert "line 1" in str(caught.value)
        assert "WWSECRET" not in str(caught.value)   # not even a part of it
