"""HTTP(S) probe: one request (following redirects), then status, body, JSON, latency and
certificate checks.

ok        the final response has an expected status (default any 2xx), the body and JSON
          expectations hold, and latency and certificate expiry are inside their levels
warning   total duration >= `duration_seconds.warning`; certificate expires within
          `cert_expiry_days.warning` days (default 14)
critical  name not resolved, refused, unreachable, TLS handshake or verification failed, more
          than `max_redirects` redirects, a malformed or aborted response, an unexpected status,
          body or JSON mismatch, an expired certificate, duration >= `duration_seconds.critical`,
          certificate expires within `cert_expiry_days.critical` days (default 7)
unknown   the probe cannot load its own TLS files (CA, client certificate) — reason `probe_error`
Reason codes: ok, connect_refused, connect_error, dns_failed, tls_error, tls_expired,
tls_expiring, too_many_redirects, invalid_response, unexpected_status, body_mismatch,
json_mismatch, slow_response, probe_error. A server that accepts and never answers is cut by
the runner's timeout (reason `timeout`); so is one that never finishes the TLS handshake or
drips its answer a byte at a time (the timeout bounds the whole exchange; no byte resets it).
A body is read up to `max_body_bytes` and the rest is never received (docs/agent-faults.md).

Every probe opens a fresh session and connection (no pooling across runs, no retries, which
would hide flapping) and ignores the proxy environment (`trust_env=False`); `proxy:` is the
only way to use one. Redirects are followed here rather than by aiohttp so that
`secret_headers` go only to the configured URL's origin. Secret values, header values and body
content never appear in the result: a body can carry patient data.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp.connector import Connection
from pydantic import Field, field_validator, model_validator
from yarl import URL

from probes.config import CheckConfig, Regex, SecretRef, Threshold
from probes.result import Metric, ProbeResult, Status, result
from probes.web import HttpTls, failure, http_url, shown, ssl_context, ssl_text

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

KIND = "http"

METRICS = {
    "http_duration_seconds": "Total time from sending the request until the body was read, "
                             "redirects included.",
    "http_status_code": "Status code of the final response.",
    "http_content_length_bytes": "Size of the final response body (Content-Length for HEAD "
                                 "or a body cut at max_body_bytes).",
    "http_redirects": "Number of redirects followed.",
    "http_tls_cert_not_after_timestamp_seconds": "Expiry of the server certificate "
                                                 "(Unix time).",
    "http_tls_cert_expiry_seconds": "Time left until the server certificate expires.",
}

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Credentials belong in secret_headers, where they stay out of config dumps and results.
_SECRET_ONLY_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_JSON_PATH = re.compile(r"^[^.]+(\.[^.]+)*$")
_USER_AGENT = "wardwatch-http-probe"
_READ_CHUNK = 64 * 1024


class HttpCheck(CheckConfig):
    kind: Literal["http"]
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)
    """Header values read from `env:` or `file:`; sent only to the URL's own origin."""
    body: str | None = None
    expect_status: list[int] | None = Field(default=None, min_length=1)
    """Accepted status codes of the final response; None means any 2xx."""
    body_regex: Regex | None = None
    """Must be found in the body (`re.search`; inline flags such as (?i) work)."""
    body_not_regex: Regex | None = None
    """Must not be found in the body."""
    json_path: str | None = None
    """Dotted path into the JSON body, e.g. `status`, `db.status`, `items.0.name`."""
    json_expect: Any = None
    """The value at `json_path` must equal this (type included); when absent it must exist."""
    duration_seconds: Threshold = Threshold()
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=1, le=100)
    tls: HttpTls = Field(default_factory=HttpTls)
    cert_expiry_days: Threshold = Threshold(warning=14, critical=7, direction="below")
    proxy: str | None = None
    max_body_bytes: int = Field(default=1 << 20, ge=1, le=64 << 20)
    """Read at most this much of the body (1 MiB by default, 64 MiB at most); body and JSON
    checks see only this prefix. It is held in memory only when such a check needs it, else
    counted and discarded as it arrives. A longer body is cut there and the connection closed,
    so a huge or endless body costs neither memory nor time."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "url")

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value, "proxy")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        for code in value or []:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value

    @field_validator("json_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not _JSON_PATH.match(value):
            raise ValueError(f"{value!r} is not a dotted path such as db.status or items.0.name")
        return value

    @field_validator("cert_expiry_days", mode="before")
    @classmethod
    def _days_below(cls, value: Any) -> Any:
        # Days left are bad when low: `{warning: 30}` alone must not mean "30 days or more".
        if isinstance(value, dict):
            if value.get("direction", "below") != "below":
                raise ValueError("direction must be 'below' (fewer days left is worse)")
            return {**value, "direction": "below"}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpCheck:
        seen: set[str] = set()
        for name, value in self.headers.items():
            self._header_ok(name, value, "headers")
            if name.lower() in _SECRET_ONLY_HEADERS:
                raise ValueError(f"headers.{name}: put credentials under secret_headers")
            seen.add(name.lower())
        for name, ref in self.secret_headers.items():
            self._header_ok(name, ref.get(), "secret_headers")
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice (headers and secret_headers)")
        if "json_expect" in self.model_fields_set and self.json_path is None:
            raise ValueError("json_expect needs json_path")
        if self.method == "HEAD" and (self.body_regex or self.body_not_regex or self.json_path):
            raise ValueError("a HEAD response has no body; body and JSON checks need GET or POST")
        return self

    @staticmethod
    def _header_ok(name: str, value: str, section: str) -> None:
        if not _TOKEN.match(name):
            raise ValueError(f"{section}: {name!r} is not a valid header name")
        # Checked here so that aiohttp never raises with the value in its message.
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"{section}.{name}: the value contains a line break or NUL")

    @property
    def target(self) -> str:
        return self.url


CONFIG = HttpCheck


@dataclass
class _Chain:
    """Where the request chain is; still readable when a hop fails."""

    url: URL
    method: str
    redirects: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes | bytearray
    """The body as read (at most max_body_bytes); empty when no check needs it."""
    size: int
    """Body bytes read (at most max_body_bytes)."""
    truncated: bool
    content_length: int | None
    """The Content-Length header, when present and numeric."""
    charset: str | None


@dataclass(frozen=True)
class _Certificate:
    subject: str
    issuer: str
    not_after: datetime
    left_s: float
    """Seconds until `not_after`; negative once expired."""


class _TooManyRedirects(Exception):
    pass


class _BadRedirect(Exception):
    pass


class _PeerCertConnector(aiohttp.TCPConnector):
    """Keeps the server certificate (DER) and TLS version of the newest TLS connection.

    Taken at connect time because aiohttp releases the connection as soon as a small body has
    arrived, often before the response object is handed back. `getpeercert(binary_form=True)`
    returns the certificate even with verification off.
    """

    peer_cert: bytes | None = None
    peer_cert_info: dict[str, Any] | None = None
    """The decoded certificate; Python only decodes it when it was verified."""
    tls_version: str | None = None

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp signature)
                      ) -> Connection:
        conn = await super().connect(req, traces, timeout)
        transport = conn.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            self.peer_cert = ssl_object.getpeercert(binary_form=True)
            self.peer_cert_info = ssl_object.getpeercert() or None
            self.tls_version = ssl_object.version()
        return conn


async def probe(check: HttpCheck) -> ProbeResult:
    try:
        context = ssl_context(check.tls)
    except (OSError, ssl.SSLError) as exc:
        return result(Status.UNKNOWN, "probe_error",
                      f"{check.method} {check.url}: cannot load TLS files: {ssl_text(exc)}")
    chain = _Chain(url=URL(check.url), method=check.method)
    # One connection per request and no keep-alive: each run measures a full connect.
    connector = _PeerCertConnector(ssl=context, force_close=True, limit=1)
    try:
        response, elapsed = await _exchange(check, chain, connector)
    except _TooManyRedirects:
        return result(Status.CRITICAL, "too_many_redirects",
                      f"{check.method} {check.url}: more than {check.max_redirects} redirects "
                      f"(last to {shown(chain.url)})",
                      details={"url": shown(chain.url), "redirects": chain.redirects})
    except _BadRedirect as exc:
        return result(Status.CRITICAL, "invalid_response", f"{check.method} {check.url}: {exc}",
                      details={"url": shown(chain.url), "redirects": chain.redirects})
    except (aiohttp.ClientError, OSError) as exc:
        reason, why = failure(exc, over_tls=chain.url.scheme == "https")
        return result(Status.CRITICAL, reason, f"{chain.method} {shown(chain.url)}: {why}",
                      details={"url": shown(chain.url), "redirects": chain.redirects})
    cert = None
    if connector.peer_cert is not None:
        cert = _certificate(connector.peer_cert, connector.peer_cert_info, datetime.now(UTC))
    return _evaluate(check, chain, response, elapsed, cert, connector.tls_version)


async def _exchange(check: HttpCheck, chain: _Chain, connector: _PeerCertConnector
                    ) -> tuple[_Response, float]:
    """The final response and the seconds it took, redirects included; moves `chain` along."""
    origin = chain.url.origin()
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                     timeout=aiohttp.ClientTimeout()) as session:
        # aiohttp re-sends an idempotent request once when the server drops it; a probe must
        # see the first failure (retries would hide flapping).
        session._retry_connection = False
        while True:
            headers = {"User-Agent": _USER_AGENT, **check.headers}
            if chain.url.origin() == origin:
                headers.update({k: ref.get() for k, ref in check.secret_headers.items()})
            else:  # another site: a configured Host header would be wrong there
                headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            data = check.body if chain.method == check.method else None
            async with session.request(chain.method, chain.url, headers=headers, data=data,
                                       allow_redirects=False, proxy=check.proxy) as resp:
                location = resp.headers.get("Location")
                if not (check.follow_redirects and resp.status in _REDIRECT_STATUSES
                        and location):
                    response = await _read(resp, check.max_body_bytes, _needs_body(check))
                    return response, time.perf_counter() - started
                _follow(chain, resp.status, location, check.max_redirects)


def _follow(chain: _Chain, status: int, location: str, max_redirects: int) -> None:
    """Move `chain` to the redirect target, as browsers and RFC 9110 do."""
    try:
        target = chain.url.join(URL(location))
    except ValueError:
        raise _BadRedirect(f"{status} redirect to an invalid Location") from None
    if target.scheme not in {"http", "https"} or not target.host:
        raise _BadRedirect(f"{status} redirect to unsupported {shown(target)}")
    if chain.redirects >= max_redirects:
        raise _TooManyRedirects
    chain.redirects += 1
    chain.url = target
    # 303 turns anything but HEAD into GET; 301/302 turn POST into GET; 307/308 keep both.
    if (status == 303 and chain.method != "HEAD") or (status in {301, 302}
                                                      and chain.method == "POST"):
        chain.method = "GET"


def _needs_body(check: HttpCheck) -> bool:
    return (check.body_regex is not None or check.body_not_regex is not None
            or check.json_path is not None)


async def _read(resp: aiohttp.ClientResponse, limit: int, keep: bool) -> _Response:
    """Read at most `limit` bytes of the body, keeping them only when `keep`: a huge body
    must not eat the agent's memory (aiohttp itself buffers only a window of 64-128 KiB)."""
    body = bytearray()
    size = 0
    while size < limit:
        chunk = await resp.content.read(min(limit - size, _READ_CHUNK))
        if not chunk:
            break
        size += len(chunk)
        if keep:
            body += chunk
    truncated = size >= limit and bool(await resp.content.read(1))
    try:
        length: int | None = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        length = None
    return _Response(status=resp.status, body=body, size=size, truncated=truncated,
                     content_length=length, charset=resp.charset)


def _evaluate(check: HttpCheck, chain: _Chain, response: _Response, elapsed: float,
              cert: _Certificate | None, tls_version: str | None) -> ProbeResult:
    metrics = [Metric(name="http_duration_seconds", value=elapsed),
               Metric(name="http_status_code", value=response.status),
               Metric(name="http_redirects", value=chain.redirects)]
    # A HEAD body is empty and a cut body is partial: the header then says more.
    whole = chain.method != "HEAD" and not response.truncated
    size = response.size if whole else response.content_length
    if size is not None:
        metrics.append(Metric(name="http_content_length_bytes", value=size))
    details: dict[str, Any] = {"status_code": response.status, "final_url": shown(chain.url),
                               "redirects": chain.redirects}
    if response.truncated:
        details["body_truncated"] = True
    if cert is not None:
        metrics += [Metric(name="http_tls_cert_not_after_timestamp_seconds",
                           value=cert.not_after.timestamp()),
                    Metric(name="http_tls_cert_expiry_seconds", value=cert.left_s)]
        details["tls"] = {"version": tls_version, "subject": cert.subject,
                          "issuer": cert.issuer, "not_after": cert.not_after.isoformat()}

    line = f"{check.method} {check.url} → {response.status} in {elapsed * 1000:.1f} ms"
    if chain.redirects:
        plural = "s" if chain.redirects > 1 else ""
        line += f" ({chain.redirects} redirect{plural}, ended at {shown(chain.url)})"

    def verdict(status: Status, reason: str, summary: str) -> ProbeResult:
        return result(status, reason, summary, metrics=tuple(metrics), details=details)

    failure = _contentfailure(check, response)
    if failure is not None:
        return verdict(Status.CRITICAL, failure[0], f"{line}, but {failure[1]}")
    if cert is not None and cert.left_s <= 0:  # reached with verify off
        return verdict(Status.CRITICAL, "tls_expired",
                       f"{line}, but the certificate expired {-cert.left_s / 86400:.1f} days ago "
                       f"({cert.not_after:%Y-%m-%d %H:%M} UTC)")
    # Levels from thresholds: the worst wins, and on a tie the certificate goes first.
    levels: list[tuple[Status, str, str]] = []
    if cert is not None:
        days = cert.left_s / 86400
        levels.append((check.cert_expiry_days.evaluate(days), "tls_expiring",
                       f"{line}, certificate expires in {days:.1f} days "
                       f"({cert.not_after:%Y-%m-%d %H:%M} UTC)"))
    levels.append((check.duration_seconds.evaluate(elapsed), "slow_response", f"{line} (slow)"))
    status, reason, summary = max(levels, key=lambda level: level[0].severity)
    if status is not Status.OK:
        return verdict(status, reason, summary)
    return verdict(Status.OK, "ok", line)


def _contentfailure(check: HttpCheck, response: _Response) -> tuple[str, str] | None:
    """(reason, why) when status, body or JSON expectations fail; None when they hold."""
    if check.expect_status is None:
        if not 200 <= response.status <= 299:
            return "unexpected_status", "expected 2xx"
    elif response.status not in check.expect_status:
        return "unexpected_status", "expected " + ", ".join(map(str, check.expect_status))
    # Body content is never quoted back: it can carry patient data.
    cut = f" (first {check.max_body_bytes} bytes checked)" if response.truncated else ""
    if check.body_regex is not None or check.body_not_regex is not None:
        text = _text(response)
        if check.body_regex is not None and not re.search(check.body_regex, text):
            return "body_mismatch", f"the body does not match {check.body_regex!r}{cut}"
        if check.body_not_regex is not None and re.search(check.body_not_regex, text):
            return "body_mismatch", f"the body matches {check.body_not_regex!r}"
    if check.json_path is not None:
        return _jsonfailure(check, response.body, cut)
    return None


def _jsonfailure(check: HttpCheck, body: bytes | bytearray, cut: str
                 ) -> tuple[str, str] | None:
    assert check.json_path is not None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return "json_mismatch", f"the body is not JSON{cut}"
    found, value = _lookup(document, check.json_path)
    if not found:
        return "json_mismatch", f"{check.json_path} is not in the JSON body"
    if "json_expect" in check.model_fields_set and not _same(value, check.json_expect):
        return ("json_mismatch",
                f"{check.json_path} is {_brief(value)}, expected {_brief(check.json_expect)}")
    return None


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; a numeric step indexes a list."""
    node = document
    for step in path.split("."):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", step) and (
                -len(node) <= int(step) < len(node)):
            node = node[int(step)]
        else:
            return False, None
    return True, node


def _same(value: Any, expected: Any) -> bool:
    # JSON true is not 1 and 1 is not true, although Python says they are equal.
    return bool(value == expected) and isinstance(value, bool) == isinstance(expected, bool)


def _brief(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(response: _Response) -> str:
    try:
        return response.body.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return response.body.decode("utf-8", errors="replace")


def _certificate(der: bytes, info: dict[str, Any] | None, now: datetime
                 ) -> _Certificate | None:
    if info is not None and "notAfter" in info:
        # verified: the ssl module decoded it already, no need to load cryptography (~8 MB)
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(info["notAfter"]), UTC)
        return _Certificate(subject=_rdns(info.get("subject", ())),
                            issuer=_rdns(info.get("issuer", ())), not_after=not_after,
                            left_s=(not_after - now).total_seconds())
    from cryptography import x509  # unverified certificates only: load it when needed

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    not_after = cert.not_valid_after_utc
    return _Certificate(subject=cert.subject.rfc4514_string(),
                        issuer=cert.issuer.rfc4514_string(), not_after=not_after,
                        left_s=(not_after - now).total_seconds())


_RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
              "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
              "domainComponent": "DC", "emailAddress": "emailAddress"}


def _rdns(name: Any) -> str:
    """The ssl module's ((('commonName', 'x'),), ...) as an RFC 4514 string (last RDN first),
    the same text cryptography's `rfc4514_string()` gives for the unverified path."""
    parts = []
    for rdn in reversed(name):
        parts.append("+".join(f"{_RDN_NAMES.get(key, key)}={_escape(value)}"
                              for key, value in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out
