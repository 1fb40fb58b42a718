"""http probe against real servers on loopback: Debian's nginx (plain and TLS), aiohttp apps
(plain, TLS, client-certificate), a blocking TLS server, and scripted sockets that stay silent,
hang up or speak garbage. Certificates are made per test run with trustme."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from agent.runner import run_check
from probes.http import METRICS, HttpCheck, probe
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from probes.web import ssl_context
from tests.services import Nginx, free_port, start_nginx, stop_process

# --- certificates ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="wardwatch test CA")


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def write_leaf(ca: trustme.CA, directory: Path, name: str, *identities: str
               ) -> tuple[trustme.LeafCert, Pem]:
    leaf = ca.issue_cert(*(identities or ("127.0.0.1",)))
    pem = Pem(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
    leaf.cert_chain_pems[0].write_to_path(str(pem.cert))
    leaf.private_key_pem.write_to_path(str(pem.key))
    return leaf, pem


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


# --- servers --------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


SEEN = web.AppKey("seen", list[Seen])
ELSEWHERE = web.AppKey("elsewhere", str)


def make_app(elsewhere: str = "") -> web.Application:
    """Routes the tests need beyond nginx's fixed ones; /echo records what it received."""
    app = web.Application()
    app[SEEN] = []
    app[ELSEWHERE] = elsewhere

    async def echo(request: web.Request) -> web.Response:
        request.app[SEEN].append(Seen(request.method, request.path, dict(request.headers),
                                      await request.read()))
        return web.Response(text="echo")

    async def chain(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(text="end of chain")
        raise web.HTTPFound(f"/chain/{left - 1}")

    async def loop(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def see_other(_request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/echo")

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.app[ELSEWHERE] + "/echo")

    async def document(_request: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "count": 1,
                                  "items": [{"name": "db"}, {"name": "cache"}]})

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"HEADER" + b"x" * (2 << 20) + b"TRAILER")

    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/loop", loop)
    app.router.add_post("/see-other", see_other)
    app.router.add_get("/away", away)
    app.router.add_get("/json", document)
    app.router.add_get("/big", big)
    return app


@contextlib.asynccontextmanager
async def serve(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def server_tls(leaf: trustme.LeafCert, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True)
class App:
    url: str
    seen: list[Seen]


@pytest.fixture
async def app() -> AsyncIterator[App]:
    application = make_app()
    async with serve(application) as url:
        yield App(url, application[SEEN])


@pytest.fixture
def nginx_tls(ca: trustme.CA, tmp_path: Path) -> Iterator[Nginx]:
    _leaf, pem = write_leaf(ca, tmp_path, "nginx", "127.0.0.1", "localhost")
    proc, server = start_nginx(tmp_path / "nginx-tls", """
    location = /health { default_type application/json; return 200 '{"status": "UP"}'; }
    """, tls=(pem.cert, pem.key))
    try:
        yield server
    finally:
        stop_process(proc)


@dataclass
class Script:
    """A scripted socket peer: what it answers, and how many connections it accepted."""

    reply: bytes | None
    """None: accept and never answer; b"": hang up after the request; else send and close."""
    port: int = 0
    connections: int = 0
    first_lines: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scripted(reply: bytes | None) -> AsyncIterator[Script]:
    script = Script(reply)
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        script.first_lines.append(await reader.readline())
        if script.reply is None:
            held.append(writer)
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(script.reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    async with server:
        yield script
        for writer in held:
            writer.close()


@pytest.fixture
def alerting_tls_server(ca: trustme.CA) -> Iterator[int]:
    """HTTPS requiring a client certificate, served by blocking `ssl` in a thread.

    On purpose not asyncio: asyncio's TLS closes without sending the handshake alert, while
    a blocking TLS stack sends `certificate required` first, as most servers do.
    """
    context = server_tls(ca.issue_cert("127.0.0.1"), client_ca=ca)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve_forever() -> None:
        while True:
            conn, _addr = listener.accept()
            if stop.is_set():
                conn.close()
                return
            tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            with tls, contextlib.suppress(OSError):
                try:
                    tls.do_handshake()
                except ssl.SSLError:
                    # A lingering close, as real servers do: closing with the client's request
                    # unread sends a reset, which can overtake the alert on the wire.
                    tls.shutdown(socket.SHUT_WR)
                    tls.settimeout(2)
                    while tls.recv(65536):
                        pass
                    continue
                tls.recv(65536)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        socket.create_connection(("127.0.0.1", port)).close()  # wakes the blocking accept()
        thread.join(timeout=5)
        listener.close()


NOT_PEM = __file__  # a readable file that is not a certificate


def http(url: str, **kw: Any) -> HttpCheck:
    return HttpCheck.model_validate({"id": "web", "kind": "http", "url": url, **kw})


def metric(res: ProbeResult, name: str) -> float:
    [value] = [m.value for m in res.metrics if m.name == name]
    return value


# --- plain HTTP against nginx ---------------------------------------------------------------


async def test_ok_reports_status_time_size_and_registry_entry(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/health"))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert res.summary.startswith(f"GET {nginx.base_url}/health → 200 in ")
    assert res.summary.endswith(" ms")
    assert 0 < metric(res, "http_duration_seconds") < 1
    assert metric(res, "http_status_code") == 200
    assert metric(res, "http_redirects") == 0
    assert metric(res, "http_content_length_bytes") == len(
        '{"status": "UP", "db": {"status": "UP", "latency_ms": 4}}')
    assert {m.name for m in res.metrics} <= set(METRICS)
    assert res.details == {"status_code": 200, "final_url": f"{nginx.base_url}/health",
                           "redirects": 0}
    kind = get_kind("http")
    assert kind.config is HttpCheck and kind.metrics is METRICS
    assert http(nginx.base_url).target == nginx.base_url


async def test_head_reports_content_length_header(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/index.html", method="head"))
    assert res.status is Status.OK, res.summary
    assert res.summary.startswith("HEAD ")
    assert metric(res, "http_content_length_bytes") == len(
        (nginx.root / "index.html").read_bytes())


async def test_503_is_critical_by_default(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/down"))
    assert (res.status, res.reason) == (Status.CRITICAL, "unexpected_status")
    assert "→ 503" in res.summary and "expected 2xx" in res.summary
    assert metric(res, "http_status_code") == 503


@pytest.mark.parametrize(("path", "expect", "status"), [
    ("/down", [503], Status.OK),
    ("/health", [200, 204], Status.OK),
    ("/health", [204], Status.CRITICAL),
])
async def test_expected_status_set(nginx: Nginx, path: str, expect: list[int],
                                   status: Status) -> None:
    res = await probe(http(nginx.base_url + path, expect_status=expect))
    assert res.status is status, res.summary


async def test_redirect_followed_and_counted(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/moved", json_path="db.status", json_expect="UP"))
    assert res.status is Status.OK, res.summary
    assert metric(res, "http_redirects") == 1
    assert res.details["final_url"] == f"{nginx.base_url}/health"
    assert "1 redirect, ended at" in res.summary


async def test_redirect_not_followed_when_disabled(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/moved", follow_redirects=False))
    assert (res.status, res.reason) == (Status.CRITICAL, "unexpected_status")
    assert metric(res, "http_status_code") == 301
    assert (await probe(http(f"{nginx.base_url}/moved", follow_redirects=False,
                             expect_status=[301]))).status is Status.OK


@pytest.mark.parametrize(("kw", "reason"), [
    ({"body_regex": r"wardwatch\s+test"}, "ok"),
    ({"body_regex": r"(?i)WARDWATCH TEST PAGE"}, "ok"),
    ({"body_regex": "maintenance"}, "body_mismatch"),
    ({"body_not_regex": "error|exception"}, "ok"),
    ({"body_not_regex": "test page"}, "body_mismatch"),
])
async def test_body_regex(nginx: Nginx, kw: dict[str, str], reason: str) -> None:
    res = await probe(http(f"{nginx.base_url}/", **kw))
    assert res.reason == reason, res.summary
    # the body is never quoted back: it may carry patient data
    assert "<html>" not in res.summary and "<html>" not in str(res.details)


@pytest.mark.parametrize(("kw", "reason", "says"), [
    ({"json_path": "status", "json_expect": "UP"}, "ok", ""),
    ({"json_path": "db.latency_ms"}, "ok", ""),
    ({"json_path": "db.latency_ms", "json_expect": 4}, "ok", ""),
    ({"json_path": "status", "json_expect": "DOWN"}, "json_mismatch",
     'status is "UP", expected "DOWN"'),
    ({"json_path": "db"}, "ok", ""),
    ({"json_path": "db", "json_expect": "UP"}, "json_mismatch", "db is a JSON object"),
    ({"json_path": "db.missing"}, "json_mismatch", "db.missing is not in the JSON body"),
])
async def test_json_path_on_nginx(nginx: Nginx, kw: dict[str, Any], reason: str,
                                  says: str) -> None:
    res = await probe(http(f"{nginx.base_url}/health", **kw))
    assert res.reason == reason, res.summary
    assert says in res.summary


async def test_json_on_a_non_json_body(nginx: Nginx) -> None:
    res = await probe(http(f"{nginx.base_url}/", json_path="status"))
    assert (res.status, res.reason) == (Status.CRITICAL, "json_mismatch")
    assert "not JSON" in res.summary


async def test_slow_response_uses_duration_levels(nginx: Nginx) -> None:
    # levels of 0 s: every real request is "slow", so the level logic is exercised
    res = await probe(http(f"{nginx.base_url}/health", duration_seconds={"warning": 0}))
    assert (res.status, res.reason) == (Status.WARNING, "slow_response")
    res = await probe(http(f"{nginx.base_url}/health", duration_seconds={"critical": 0}))
    assert (res.status, res.reason) == (Status.CRITICAL, "slow_response")


# --- aiohttp app: redirects, lists, methods, secrets, size limit ------------------------------


@pytest.mark.parametrize(("kw", "reason", "redirects"), [
    ({"max_redirects": 3}, "ok", 3),
    ({"max_redirects": 2}, "too_many_redirects", 2),
])
async def test_redirect_limit(app: App, kw: dict[str, int], reason: str,
                              redirects: int) -> None:
    res = await probe(http(f"{app.url}/chain/3", **kw))
    assert res.reason == reason, res.summary
    assert res.details["redirects"] == redirects


async def test_redirect_loop_is_critical(app: App) -> None:
    res = await probe(http(f"{app.url}/loop"))
    assert (res.status, res.reason) == (Status.CRITICAL, "too_many_redirects")
    assert "more than 10 redirects" in res.summary


@pytest.mark.parametrize(("kw", "reason"), [
    ({"json_path": "items.0.name", "json_expect": "db"}, "ok"),
    ({"json_path": "items.-1.name", "json_expect": "cache"}, "ok"),
    ({"json_path": "items.2.name"}, "json_mismatch"),
    ({"json_path": "items.name"}, "json_mismatch"),
    ({"json_path": "count", "json_expect": 1}, "ok"),
    ({"json_path": "count", "json_expect": True}, "json_mismatch"),
])
async def test_json_path_into_lists(app: App, kw: dict[str, Any], reason: str) -> None:
    res = await probe(http(f"{app.url}/json", **kw))
    assert res.reason == reason, res.summary


async def test_post_sends_body_and_303_turns_into_get(app: App) -> None:
    res = await probe(http(f"{app.url}/see-other", method="POST", body='{"ping": 1}',
                           headers={"Content-Type": "application/json"}))
    assert res.status is Status.OK, res.summary
    [seen] = app.seen
    assert (seen.method, seen.body) == ("GET", b"")
    await probe(http(f"{app.url}/echo", method="PUT", body="hello"))
    assert (app.seen[-1].method, app.seen[-1].body) == ("PUT", b"hello")
    assert app.seen[-1].headers["User-Agent"] == "wardwatch-http-probe"


async def test_secret_header_reaches_server_but_not_the_result(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Bearer s3cret-token-9f8e7d"
    monkeypatch.setenv("WARDWATCH_TEST_TOKEN", secret)
    check = http(f"{app.url}/echo", headers={"X-Trace": "plain"},
                 secret_headers={"Authorization": {"env": "WARDWATCH_TEST_TOKEN"}})
    res = await run_check(check, "agent-1")
    assert res.status is Status.OK, res.summary
    [seen] = app.seen
    assert seen.headers["Authorization"] == secret
    assert seen.headers["X-Trace"] == "plain"
    for text in (res.model_dump_json(), check.model_dump_json(), repr(check)):
        assert "s3cret" not in text


async def test_secret_header_not_sent_to_another_origin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDWATCH_TEST_TOKEN", "Bearer s3cret")
    other = make_app()
    async with serve(other) as other_url, serve(make_app(elsewhere=other_url)) as url:
        res = await probe(http(f"{url}/away", headers={"X-Trace": "plain"},
                               secret_headers={"Authorization": {"env": "WARDWATCH_TEST_TOKEN"}}))
    assert res.status is Status.OK, res.summary
    [seen] = other[SEEN]
    assert "Authorization" not in seen.headers
    assert seen.headers["X-Trace"] == "plain"


async def test_body_read_stops_at_max_body_bytes(app: App) -> None:
    res = await probe(http(f"{app.url}/big", max_body_bytes=1024, body_regex="^HEADER"))
    assert res.status is Status.OK, res.summary
    assert res.details["body_truncated"] is True
    assert metric(res, "http_content_length_bytes") == 6 + (2 << 20) + 7  # from the header
    res = await probe(http(f"{app.url}/big", max_body_bytes=1024, body_regex="TRAILER"))
    assert res.reason == "body_mismatch"
    assert "first 1024 bytes checked" in res.summary


# --- TLS ------------------------------------------------------------------------------------


async def test_unknown_ca_is_tls_error(nginx_tls: Nginx) -> None:
    res = await probe(http(f"{nginx_tls.base_url}/health"))
    assert (res.status, res.reason) == (Status.CRITICAL, "tls_error")
    assert "certificate verify failed: unable to get local issuer certificate" in res.summary


async def test_ca_file_makes_it_trusted_and_reports_the_certificate(
        nginx_tls: Nginx, ca_file: Path) -> None:
    res = await probe(http(f"{nginx_tls.base_url}/health", tls={"ca_file": str(ca_file)}))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    tls = res.details["tls"]
    assert tls["version"] in {"TLSv1.2", "TLSv1.3"}
    assert "wardwatch test CA" in tls["issuer"]
    not_after = datetime.fromisoformat(tls["not_after"])
    assert metric(res, "http_tls_cert_not_after_timestamp_seconds") == not_after.timestamp()
    assert metric(res, "http_tls_cert_expiry_seconds") > 30 * 86400


async def test_verify_off_accepts_unknown_ca_and_still_reads_the_certificate(
        nginx_tls: Nginx) -> None:
    res = await probe(http(f"{nginx_tls.base_url}/health", tls={"verify": False}))
    assert res.status is Status.OK, res.summary
    assert metric(res, "http_tls_cert_expiry_seconds") > 0


async def test_hostname_mismatch_is_tls_error(ca: trustme.CA, ca_file: Path) -> None:
    leaf = ca.issue_cert("emr.hospital.test")
    async with serve(make_app(), server_tls(leaf)) as url:
        res = await probe(http(f"{url}/echo", tls={"ca_file": str(ca_file)}))
    assert res.reason == "tls_error"
    assert "certificate verify failed: IP address mismatch" in res.summary


@pytest.mark.parametrize(("days", "status", "reason"), [
    (5, Status.CRITICAL, "tls_expiring"),
    (10, Status.WARNING, "tls_expiring"),
    (30, Status.OK, "ok"),
])
async def test_certificate_expiry_levels(ca: trustme.CA, ca_file: Path, days: int,
                                         status: Status, reason: str) -> None:
    leaf = ca.issue_cert("127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=days))
    async with serve(make_app(), server_tls(leaf)) as url:
        res = await probe(http(f"{url}/echo", tls={"ca_file": str(ca_file)}))
    assert (res.status, res.reason) == (status, reason), res.summary
    if reason == "tls_expiring":
        assert f"certificate expires in {days}.0 days" in res.summary  # rounded from just below
    assert (days - 1) * 86400 < metric(res, "http_tls_cert_expiry_seconds") <= days * 86400


async def test_certificate_expiry_levels_are_configurable(ca: trustme.CA, ca_file: Path) -> None:
    leaf = ca.issue_cert("127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=20))
    async with serve(make_app(), server_tls(leaf)) as url:
        res = await probe(http(f"{url}/echo", tls={"ca_file": str(ca_file)},
                               cert_expiry_days={"warning": 30}))
    assert (res.status, res.reason) == (Status.WARNING, "tls_expiring")


@pytest.mark.parametrize("verify", [True, False])
async def test_expired_certificate(ca: trustme.CA, ca_file: Path, verify: bool) -> None:
    now = datetime.now(UTC)
    leaf = ca.issue_cert("127.0.0.1", not_before=now - timedelta(days=30),
                         not_after=now - timedelta(days=2))
    tls: dict[str, Any] = {"ca_file": str(ca_file)} if verify else {"verify": False}
    async with serve(make_app(), server_tls(leaf)) as url:
        res = await probe(http(f"{url}/echo", tls=tls))
    assert (res.status, res.reason) == (Status.CRITICAL, "tls_expired"), res.summary


async def test_client_certificate(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    _leaf, client = write_leaf(ca, tmp_path, "client", "wardwatch-agent@hospital.test")
    application = make_app()
    async with serve(application, server_tls(ca.issue_cert("127.0.0.1"), client_ca=ca)) as url:
        with_cert = await probe(http(f"{url}/echo", tls={
            "ca_file": str(ca_file), "client_cert_file": str(client.cert),
            "client_key_file": str(client.key)}))
        without = await probe(http(f"{url}/echo", tls={"ca_file": str(ca_file)}))
    assert with_cert.status is Status.OK, with_cert.summary
    assert len(application[SEEN]) == 1
    # aiohttp's own server just hangs up on a missing client certificate
    assert (without.status, without.reason) == (Status.CRITICAL, "invalid_response")
    assert "client certificate" in without.summary


async def test_missing_client_certificate_alert_is_tls_error(
        alerting_tls_server: int, ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{alerting_tls_server}/"
    res = await probe(http(url, tls={"ca_file": str(ca_file)}))
    assert (res.status, res.reason) == (Status.CRITICAL, "tls_error")
    assert "certificate required" in res.summary
    _leaf, client = write_leaf(ca, tmp_path, "client", "wardwatch-agent@hospital.test")
    res = await probe(http(url, tls={"ca_file": str(ca_file), "client_cert_file": str(client.cert),
                                     "client_key_file": str(client.key)}))
    assert res.status is Status.OK, res.summary


async def test_encrypted_client_key_needs_its_password(
        ca: trustme.CA, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leaf, client = write_leaf(ca, tmp_path, "client", "wardwatch-agent@hospital.test")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    client.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass")))
    tls: dict[str, Any] = {"ca_file": str(ca_file), "client_cert_file": str(client.cert),
                           "client_key_file": str(client.key)}
    with pytest.raises(ValidationError, match="client_key_password"):
        http("https://127.0.0.1/", tls=tls)
    monkeypatch.setenv("WARDWATCH_KEY_PASS", "key-pass")
    tls["client_key_password"] = {"env": "WARDWATCH_KEY_PASS"}
    async with serve(make_app(), server_tls(ca.issue_cert("127.0.0.1"), client_ca=ca)) as url:
        res = await probe(http(f"{url}/echo", tls=tls))
    assert res.status is Status.OK, res.summary


# --- failures before a response -------------------------------------------------------------


async def test_silent_server_is_cut_at_timeout() -> None:
    async with scripted(None) as silent:
        res = await run_check(http(f"http://127.0.0.1:{silent.port}/", timeout=0.3), "agent-1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    assert 0.3 <= res.duration_s < 1.0


async def test_refused_port_is_critical() -> None:
    res = await probe(http(f"http://127.0.0.1:{free_port()}/health"))
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")
    assert "refused the connection" in res.summary


async def test_unresolvable_host_is_critical() -> None:
    res = await probe(http("http://no-such-host.invalid/health"))
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_failed")
    assert "no-such-host.invalid" in res.summary


async def test_hang_up_is_invalid_response_and_not_retried() -> None:
    async with scripted(b"") as hangup:
        res = await probe(http(f"http://127.0.0.1:{hangup.port}/"))
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert hangup.connections == 1  # aiohttp would re-send a GET once; flapping must show


async def test_garbage_is_invalid_response() -> None:
    async with scripted(b"HELLO THERE\r\n\r\n") as garbage:
        res = await probe(http(f"http://127.0.0.1:{garbage.port}/"))
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert "Bad status line" in res.summary and "\n" not in res.summary


# --- proxies --------------------------------------------------------------------------------


async def test_proxy_environment_is_ignored(nginx: Nginx, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    res = await probe(http(f"{nginx.base_url}/health"))
    assert res.status is Status.OK, res.summary


async def test_configured_proxy_is_used() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with scripted(ok) as proxy:
        res = await probe(http("http://emr.hospital.invalid/health",
                               proxy=f"http://127.0.0.1:{proxy.port}"))
    assert res.status is Status.OK, res.summary
    assert proxy.first_lines == [b"GET http://emr.hospital.invalid/health HTTP/1.1\r\n"]


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "says"), [
    ({"url": "ftp://files.hospital.test/"}, "http:// or https://"),
    ({"url": "emr.hospital.test/health"}, "http:// or https://"),
    ({"url": "http://[::1/"}, "not a valid URL"),
    ({"url": "https://admin:pw@emr.hospital.test/"}, "credentials"),
    ({"proxy": "socks5://127.0.0.1:1080"}, "http:// or https://"),
    ({"body_regex": "(unclosed"}, "invalid regular expression"),
    ({"body_not_regex": "[a-"}, "invalid regular expression"),
    ({"json_expect": "UP"}, "json_expect needs json_path"),
    ({"json_path": "db..status"}, "dotted path"),
    ({"expect_status": [99]}, "not an HTTP status code"),
    ({"expect_status": []}, "at least 1"),
    ({"method": "FETCH"}, "method"),
    ({"method": "HEAD", "body_regex": "UP"}, "HEAD response has no body"),
    ({"headers": {"Authorization": "Bearer x"}}, "secret_headers"),
    ({"headers": {"X-A": "a\r\nInjected: 1"}}, "line break"),
    ({"headers": {"bad name": "x"}}, "not a valid header name"),
    ({"headers": {"X-Key": "a"}, "secret_headers": {"x-key": {"env": "PATH"}}}, "twice"),
    ({"secret_headers": {"X-Key": {"value": "inline"}}}, "inline secrets"),
    ({"max_redirects": 0}, "greater than or equal to 1"),
    ({"cert_expiry_days": {"warning": 30, "direction": "above"}}, "direction must be 'below'"),
    ({"tls": {"ca_file": "/nonexistent/ca.pem"}}, "not a readable file"),
    ({"tls": {"client_key_file": NOT_PEM}}, "need client_cert_file"),
    ({"tls": {"verify": False, "ca_file": NOT_PEM}}, "no effect"),
    ({"tls": {"ca_file": NOT_PEM}}, "cannot load TLS files"),
    ({"urls": "https://typo.test/"}, "Extra inputs"),
])
def test_config_errors(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        HttpCheck.model_validate({"id": "web", "kind": "http",
                                  "url": "https://emr.hospital.test/health", **kw})
    assert says in str(err.value)


def test_config_defaults() -> None:
    check = http("https://emr.hospital.test/health", method="post",
                 cert_expiry_days={"warning": 30})
    assert check.method == "POST"
    assert check.expect_status is None and check.follow_redirects and check.max_redirects == 10
    assert check.tls.verify and check.max_body_bytes == 1 << 20 and check.proxy is None
    assert (check.cert_expiry_days.warning, check.cert_expiry_days.critical,
            check.cert_expiry_days.direction) == (30, None, "below")
    default = http("https://emr.hospital.test/").cert_expiry_days
    assert (default.warning, default.critical, default.direction) == (14, 7, "below")


def test_tls_context_is_built_once_per_file_version(ca_file: Path) -> None:
    tls = http("https://127.0.0.1:1/", tls={"ca_file": str(ca_file)}).tls
    first = ssl_context(tls)
    assert ssl_context(tls) is first  # ~15 ms of CPU saved per run
    stat = ca_file.stat()
    os.utime(ca_file, (stat.st_atime, stat.st_mtime + 10))  # a rotated CA file
    assert ssl_context(tls) is not first


def test_verified_and_unverified_certificates_read_alike(nginx_tls: Nginx, ca: trustme.CA
                                                         ) -> None:
    """A verified certificate is read from the ssl module (no cryptography import, ~8 MB);
    an unverified one through cryptography. Both must say the same."""
    from probes.http import _certificate

    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", nginx_tls.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
        info = tls.getpeercert()
    assert der is not None and info
    now = datetime.now(UTC)
    verified = _certificate(der, info, now)
    unverified = _certificate(der, None, now)
    assert verified is not None and unverified is not None
    assert verified.subject == unverified.subject
    assert verified.issuer == unverified.issuer and "wardwatch test CA" in verified.issuer
    # the ssl module's notAfter has whole seconds
    assert abs((verified.not_after - unverified.not_after).total_seconds()) < 1
