"""HTTP client pieces shared by the probes that speak HTTP: `http`, and the middleware probes
(`nginx`, `tomcat`, `weblogic`) that read a status page or a management API.

Owns: URL validation, the TLS options and their cached `SSLContext`, the one mapping from a
client exception to a reason code, and `WebClient` — one session per probe run, basic auth,
no proxy from the environment, no retries, every body read up to a limit. Probes that read an
API (`WebApiCheck`) take `url`, `username`, `password_file` / `password_env` and `tls` alike.
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from pydantic import Field, model_validator
from yarl import URL

from probes.config import CheckConfig, PasswordFields, SecretRef, StrictModel


def http_url(value: str, field: str) -> str:
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"{field} {value!r} is not a valid URL: {exc}") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise ValueError(f"{field} {value!r} must be an absolute http:// or https:// URL")
    if url.user is not None or url.password is not None:
        raise ValueError(f"{field} must not carry credentials; use secret_headers "
                         "(e.g. Authorization) instead")
    return value


def _readable(path: Path | None, name: str) -> None:
    if path is not None and not path.is_file():
        raise ValueError(f"{name} {path} is not a readable file")


class HttpTls(StrictModel):
    """TLS options. `ca_file` replaces the system CAs (only that CA is trusted)."""

    verify: bool = True
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    """PEM certificate (chain); may also hold the key when `client_key_file` is not given."""
    client_key_file: Path | None = None
    client_key_password: SecretRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HttpTls:
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file has no effect with verify: false")
        if self.client_cert_file is None and (self.client_key_file is not None
                                              or self.client_key_password is not None):
            raise ValueError("client_key_file / client_key_password need client_cert_file")
        _readable(self.ca_file, "ca_file")
        _readable(self.client_cert_file, "client_cert_file")
        _readable(self.client_key_file, "client_key_file")
        if self.ca_file is not None or self.client_cert_file is not None:
            try:  # fail at load on a bad PEM, wrong key or wrong passphrase, not at 3 a.m.
                ssl_context(self)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load TLS files: {ssl_text(exc)}") from None
        return self


def failure(exc: BaseException, over_tls: bool) -> tuple[str, str]:
    """(reason, why) for an exception raised while talking to the server."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error,
                                                                    socket.gaierror):
        return "dns_failed", f"cannot resolve {exc.host}: {_os_text(exc.os_error)}"
    tls = _ssl_cause(exc)
    if tls is not None:
        if isinstance(tls, ssl.SSLCertVerificationError) and tls.verify_code == 10:
            return "tls_expired", "TLS failed: certificate has expired"
        return "tls_error", f"TLS failed: {ssl_text(tls)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connect_refused", f"{exc.host}:{exc.port} refused the connection"
        return "connect_error", f"cannot connect to {exc.host}:{exc.port}: {_os_text(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Some TLS servers refuse a missing client certificate by hanging up, without an alert.
        hint = " (a missing or refused client certificate?)" if over_tls else ""
        return "invalid_response", f"the server closed the connection without a response{hint}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # Only the message: the exception's repr carries the request headers.
        first = exc.message.splitlines()[0].rstrip(":") if exc.message else f"status {exc.status}"
        return "invalid_response", f"invalid response: {first}"
    if isinstance(exc, BodyTooLarge):
        return "invalid_response", str(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "invalid_response", "the response body was cut off or malformed"
    if isinstance(exc, OSError):
        return "connect_error", f"connection failed: {_os_text(exc)}"
    return "invalid_response", f"request failed: {type(exc).__name__}"


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind an aiohttp exception, if any."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc.certificate_error if isinstance(exc.certificate_error, ssl.SSLError) else None
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) and not isinstance(current, aiohttp.ClientError):
            return current
        pending += [getattr(current, "os_error", None), current.__cause__, current.__context__]
    return None


def ssl_text(exc: OSError) -> str:
    """`[SSL: X] tlsv13 alert certificate required (_ssl.c:2580)` -> the words in the middle."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
    if text == "PEM lib":
        return "PEM lib (not PEM, or an encrypted key without the right client_key_password)"
    return text or type(exc).__name__


def _os_text(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def shown(url: URL) -> str:
    """A URL for summaries: credentials a redirect may carry are dropped."""
    return str(url.with_user(None)) if url.user is not None else str(url)


def ssl_context(tls: HttpTls) -> ssl.SSLContext:
    """The TLS context for `tls`, built once per configuration and file version.

    Building one costs ~15 ms of CPU (the system CA store is parsed each time), more than the
    rest of a loopback probe; contexts are safe to share between connections. A rotated CA or
    client certificate file has a new mtime, hence a new context.
    """
    stamps = tuple(_mtime(path) for path in (tls.ca_file, tls.client_cert_file,
                                             tls.client_key_file))
    return _buildssl_context(tls, stamps)


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None  # the load below reports the unreadable file


@functools.lru_cache(maxsize=128)
def _buildssl_context(tls: HttpTls, _stamps: tuple[float | None, ...]) -> ssl.SSLContext:
    if tls.verify:
        # cafile given: only that CA is trusted (create_default_context skips the system store)
        context = ssl.create_default_context(cafile=tls.ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert_file is not None:
        # Always a password: with None, OpenSSL would prompt on the terminal and hang the agent.
        password = tls.client_key_password.get() if tls.client_key_password else ""
        context.load_cert_chain(tls.client_cert_file, tls.client_key_file, password=password)
    return context


class WebApiCheck(PasswordFields, CheckConfig):
    """Fields of a check that reads an HTTP API: base URL, optional basic auth, TLS."""

    url: str
    username: str | None = None
    tls: HttpTls = Field(default_factory=HttpTls)
    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=64 << 20)
    """A status document longer than this is refused (reason `invalid_response`)."""

    @model_validator(mode="after")
    def _basic_auth(self) -> WebApiCheck:
        http_url(self.url, "url")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.username is not None and self.password is None:
            raise ValueError("username needs password_file or password_env")
        if self.username is not None and ":" in self.username:
            raise ValueError("username must not contain ':' (HTTP basic auth)")
        return self

    @property
    def target(self) -> str:
        return self.url


@dataclass(frozen=True)
class Fetched:
    """One response, its body read whole (within the limit)."""

    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]
    elapsed_s: float
    charset: str | None

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")


class WebError(Exception):
    """A request that got no usable response: `reason` is the probe's reason code."""

    def __init__(self, reason: str, why: str):
        super().__init__(why)
        self.reason = reason
        self.why = why


class WebClient:
    """One probe run's HTTP session: `async with WebClient(check) as client: await client.get(p)`.

    Requests within a run share one keep-alive connection (a Tomcat probe reads three pages);
    nothing is kept between runs, so every run measures a fresh connect. Relative paths are
    joined to the check's base URL; redirects are not followed (a management API that
    redirects is misconfigured, and credentials must not follow a redirect elsewhere).
    """

    def __init__(self, check: WebApiCheck, *, user_agent: str = "wardwatch-probe"):
        self._check = check
        self._base = URL(check.url)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self.bytes_received = 0
        """Body bytes read in this run, for the probe cost figures."""
        self.requests = 0

    async def __aenter__(self) -> WebClient:
        try:
            context = ssl_context(self._check.tls)
        except (OSError, ssl.SSLError) as exc:
            raise WebError("probe_error", f"cannot load TLS files: {ssl_text(exc)}") from None
        headers = {"User-Agent": self._user_agent}
        if self._check.username is not None and self._check.password is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(self._check.username,
                                                                 self._check.password.get())
        connector = aiohttp.TCPConnector(ssl=context, limit=1)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              timeout=aiohttp.ClientTimeout(), headers=headers)
        self._session._retry_connection = False  # a probe must see the first failure
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> URL:
        """`path` joined to the base URL (a leading / replaces the base path)."""
        return self._base.join(URL(path)) if path else self._base

    async def get(self, path: str = "", *, headers: Mapping[str, str] | None = None
                  ) -> Fetched:
        """GET `path`; raises `WebError` when there is no complete response."""
        return await self._request("GET", path, headers)

    async def post_json(self, path: str, document: Any, *,
                        headers: Mapping[str, str] | None = None) -> Fetched:
        """POST `document` as JSON to `path`; raises `WebError` when there is no complete response.

        Sends `X-Requested-By: wardwatch`: WebLogic's REST API refuses a POST without it (its
        CSRF guard), and other APIs ignore it.
        """
        sent = {"X-Requested-By": "wardwatch", "Accept": "application/json", **(headers or {})}
        return await self._request("POST", path, sent, document)

    async def _request(self, method: str, path: str, headers: Mapping[str, str] | None,
                       document: Any = None) -> Fetched:
        assert self._session is not None, "use WebClient as an async context manager"
        url = self.url(path)
        started = time.perf_counter()
        self.requests += 1
        body_kw = {"json": document} if method == "POST" else {}
        try:
            async with self._session.request(method, url, headers=headers,
                                             allow_redirects=False, **body_kw) as resp:
                body = await _read_limited(resp, self._check.max_body_bytes)
                self.bytes_received += len(body)
                return Fetched(url=shown(url), status=resp.status, body=body,
                               headers=dict(resp.headers), elapsed_s=time.perf_counter() - started,
                               charset=resp.charset)
        except (aiohttp.ClientError, OSError) as exc:
            reason, why = failure(exc, over_tls=url.scheme == "https")
            raise WebError(reason, f"{method} {shown(url)}: {why}") from None


class BodyTooLarge(aiohttp.ClientPayloadError):
    pass


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    while True:
        chunk = await resp.content.read(65536)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the response is larger than max_body_bytes ({limit})")
