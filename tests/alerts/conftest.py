"""Real peers for the channel tests, all on loopback.

`peer`: one aiohttp server on port 0 playing a generic webhook receiver (`/hook`), the WeCom
robot (`/cgi-bin/webhook/send`, checks `key=`) and the DingTalk robot (`/robot/send`, checks
`access_token=` and, when a secret is set, the 加签 signature exactly as DingTalk does). It
records every request and answers from a per-path script: a status, a JSON reply, or a hang.

`smtp`: an aiosmtpd server in its own thread, plain, STARTTLS or implicit TLS (certificates
from trustme), with AUTH checking a username and password; it records every message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

WECOM_KEY = "wecom-key-6f1d2c9a-s3cr3t"
DINGTALK_TOKEN = "dingtalk-token-77aa-s3cr3t"
DINGTALK_SECRET = "SECdingtalk-sign-secret-0123456789abcdef"
WEBHOOK_TOKEN = "Bearer webhook-token-s3cr3t-42"
SMTP_USER = "wardwatch"
SMTP_PASSWORD = "smtp-pass-s3cr3t-9"
SECRETS = (WECOM_KEY, DINGTALK_TOKEN, DINGTALK_SECRET, WEBHOOK_TOKEN, SMTP_PASSWORD,
           "webhook-token-s3cr3t-42")

HANG = "hang"


@dataclass(frozen=True)
class Answer:
    """A scripted reply: HTTP `status` with a JSON body (or the default for the path)."""

    status: int = 200
    json: Any = None


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Peer:
    base: str = ""
    dingtalk_secret: str | None = None
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[Answer | str]] = field(default_factory=lambda: defaultdict(deque))
    arrived: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, path: str, *answers: Answer | str) -> None:
        self.scripts[path].extend(answers)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    @property
    def wecom_url(self) -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={WECOM_KEY}"

    @property
    def dingtalk_url(self) -> str:
        return f"{self.base}/robot/send?access_token={DINGTALK_TOKEN}"


def dingtalk_check(secret: str, timestamp: str, sign: str) -> str | None:
    """DingTalk's server-side check of 加签: None when good, else its errmsg."""
    try:
        sent_ms = int(timestamp)
    except ValueError:
        return "timestamp invalid"
    if abs(time.time() * 1000 - sent_ms) > 3600 * 1000:
        return "timestamp too far from now"
    string_to_sign = f"{timestamp}\n{secret}".encode()
    expected = base64.b64encode(
        hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()).decode()
    # `sign` arrives URL-decoded by the query parser: an unencoded '+' would be a space here.
    return None if hmac.compare_digest(expected, sign) else "sign not match"


def _default(path: str) -> Answer:
    if path == "/hook":
        return Answer(200, {"ok": True})
    return Answer(200, {"errcode": 0, "errmsg": "ok"})


def make_app(peer: Peer) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = request.path
        peer.received.append(Received(path, dict(request.query), dict(request.headers), body,
                                      time.monotonic()))
        peer.arrived[path].set()
        answer = peer.scripts[path].popleft() if peer.scripts[path] else _default(path)
        if answer == HANG:
            await peer.release.wait()
            answer = _default(path)
        assert isinstance(answer, Answer)
        if path == "/cgi-bin/webhook/send" and request.query.get("key") != WECOM_KEY:
            answer = Answer(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        if path == "/robot/send":
            if request.query.get("access_token") != DINGTALK_TOKEN:
                answer = Answer(200, {"errcode": 300001, "errmsg": "token is not exist"})
            elif peer.dingtalk_secret is not None:
                problem = dingtalk_check(peer.dingtalk_secret, request.query.get("timestamp", ""),
                                         request.query.get("sign", ""))
                if problem:
                    answer = Answer(200, {"errcode": 310000, "errmsg": problem})
        if path == "/hook" and request.headers.get("Authorization") not in (None, WEBHOOK_TOKEN):
            answer = Answer(401, {"error": "unauthorized"})
        return web.json_response(answer.json if answer.json is not None else {},
                                 status=answer.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    state = Peer()
    runner = web.AppRunner(make_app(state), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, peer: Peer) -> None:
    """The secrets as environment variables, as a config would reference them."""
    monkeypatch.setenv("WW_WECOM_URL", peer.wecom_url)
    monkeypatch.setenv("WW_DINGTALK_URL", peer.dingtalk_url)
    monkeypatch.setenv("WW_DINGTALK_SECRET", DINGTALK_SECRET)
    monkeypatch.setenv("WW_WEBHOOK_AUTH", WEBHOOK_TOKEN)
    monkeypatch.setenv("WW_SMTP_PASSWORD", SMTP_PASSWORD)


# --- SMTP ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="wardwatch alerts test CA")


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[tuple[Envelope, EmailMessage]]:
        with self.lock:
            return list(self.messages)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.box.lock:
            self.box.messages.append((envelope, parsed))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Security = Literal["none", "starttls", "tls"]


@pytest.fixture
def smtp(ca: trustme.CA) -> Iterator[Callable[..., Mailbox]]:
    """Start an SMTP server: `smtp(security="starttls", auth=True)` -> its Mailbox."""
    controllers: list[Controller] = []

    def start(security: Security = "none", auth: bool = True) -> Mailbox:
        box = Mailbox("127.0.0.1", _free_port())

        def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                          auth_data: Any) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == SMTP_USER.encode()
                  and auth_data.password == SMTP_PASSWORD.encode())
            with box.lock:
                box.logins.append(f"{mechanism}:{'ok' if ok else 'refused'}")
            # handled=False: let aiosmtpd answer 535 itself (True means "already answered")
            return AuthResult(success=ok, handled=False)

        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          # implicit TLS is TLS too, but aiosmtpd only counts STARTTLS
                          auth_require_tls=security == "starttls")
        if security == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=server_ctx)
        controller = Controller(_Handler(box), hostname=box.host, port=box.port,
                                ready_timeout=5.0, **kwargs)
        controller.start()
        controllers.append(controller)
        return box

    yield start
    for controller in controllers:
        controller.stop()
