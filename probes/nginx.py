"""nginx probe: the `stub_status` page, optional upstream addresses, the version, and the error
log's upstream failures since the previous run.

ok        stub_status answered 200 and parsed; no level below is crossed
warning   `connections_active` or `dropped_per_second` crosses its warning level; some (not
          all) of the configured upstream addresses refuse connections; the error log shows
          `upstream timed out` at or above `upstream_timeouts.warning` since the last run
critical  no answer (refused, unreachable, TLS, name), 401/403 (auth_failed), another status
          (unexpected_status), a page that is not stub_status (invalid_response), every
          upstream address down, `no live upstreams` in the error log, or a critical level
          crossed
unknown   the configured error log or nginx binary cannot be read (probe_error) and nothing
          worse was found
Reason codes: ok, connect_refused, connect_error, dns_failed, tls_error, tls_expired,
auth_failed, unexpected_status, invalid_response, connections_high, connections_dropped,
upstream_down, upstream_timeouts, no_live_upstreams, probe_error. A server that accepts and
never answers is cut by the runner's timeout (reason `timeout`).

Dropped connections are `accepts - handled` (nginx refuses a connection it has no
worker_connections slot for); their *rate* between runs is what alarms, because the counters
run from nginx's start. The error log is read from where the previous run stopped (the first
run starts at its end, so old lines are not counted again; a rotated or truncated file is read
from its start) and at most `error_log_max_bytes` per run. The version comes from `nginx -v`
when `binary` is set (nginx on this host), else from the `Server` header (absent with
`server_tokens off`); it goes to the patch audit through `details.version`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from probes.config import Threshold
from probes.memory import ProbeMemory
from probes.result import Cause, Metric, ProbeResult, Status, result, verdict
from probes.web import WebApiCheck, WebClient, WebError

KIND = "nginx"
REMEMBERS = True

METRICS = {
    "nginx_connections_active": "Open client connections, idle (waiting) ones included.",
    "nginx_connections_reading": "Connections where nginx is reading the request header.",
    "nginx_connections_writing": "Connections where nginx is writing the response.",
    "nginx_connections_waiting": "Idle keep-alive connections.",
    "nginx_connections_accepted_total": "Client connections accepted since nginx started.",
    "nginx_connections_handled_total": "Client connections handled since nginx started.",
    "nginx_connections_dropped_total": "Accepted connections nginx could not handle "
                                       "(accepts - handled; worker_connections exhausted).",
    "nginx_connections_dropped_per_second": "Dropped connections per second since the "
                                            "previous run.",
    "nginx_http_requests_total": "Client requests since nginx started.",
    "nginx_http_requests_per_second": "Client requests per second since the previous run.",
    "nginx_stub_status_duration_seconds": "Time to fetch the stub_status page.",
    "nginx_upstream_up": "1 when the upstream address accepted a TCP connection, else 0.",
    "nginx_upstream_connect_seconds": "Time to connect to the upstream address.",
    "nginx_error_log_upstream_timeouts": "`upstream timed out` lines in the error log since "
                                         "the previous run.",
    "nginx_error_log_no_live_upstreams": "`no live upstreams` lines in the error log since the "
                                         "previous run.",
    "nginx_error_log_upstream_connect_failures": "`connect() failed … while connecting to "
                                                 "upstream` lines since the previous run.",
    "nginx_info": "Always 1; the nginx version in the `version` label (empty if hidden).",
}

_STUB_STATUS = re.compile(
    r"Active connections:\s*(?P<active>\d+)\s*\n"
    r"\s*server accepts handled requests\s*\n"
    r"\s*(?P<accepts>\d+)\s+(?P<handled>\d+)\s+(?P<requests>\d+)\s*\n"
    r"\s*Reading:\s*(?P<reading>\d+)\s+Writing:\s*(?P<writing>\d+)\s+"
    r"Waiting:\s*(?P<waiting>\d+)")
_VERSION = re.compile(r"nginx/(\d+(?:\.\d+)+)")
_LOG_PATTERNS = {
    "upstream_timeouts": re.compile(rb"upstream timed out"),
    "no_live_upstreams": re.compile(rb"no live upstreams"),
    "upstream_connect_failures": re.compile(rb"connect\(\) failed .* while connecting to "
                                            rb"upstream"),
}


class NginxCheck(WebApiCheck):
    kind: Literal["nginx"]
    upstreams: list[str] = Field(default_factory=list, max_length=256)
    """`host:port` of each upstream server, each probed with a TCP connect."""
    binary: Path | None = None
    """nginx on this host (e.g. /usr/sbin/nginx): `nginx -v` gives the exact version."""
    error_log: Path | None = None
    """nginx's error log on this host, scanned for upstream failures since the last run."""
    error_log_max_bytes: int = Field(default=8 << 20, ge=4096, le=256 << 20)
    connections_active: Threshold = Threshold()
    dropped_per_second: Threshold = Threshold(warning=0.0)
    """Dropped connections per second; by default any drop is a warning."""
    upstream_timeouts: Threshold = Threshold(warning=1)
    """`upstream timed out` lines since the previous run."""

    @field_validator("upstreams")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"upstream {address!r} must be host:port")
        return value


CONFIG = NginxCheck


@dataclass(frozen=True)
class _Stub:
    active: int
    accepts: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


async def probe(check: NginxCheck, memory: ProbeMemory) -> ProbeResult:
    name = f"nginx {check.url}"
    try:
        async with WebClient(check, user_agent="wardwatch-nginx-probe") as client:
            page = await client.get()
    except WebError as exc:
        status = Status.UNKNOWN if exc.reason == "probe_error" else Status.CRITICAL
        return result(status, exc.reason, f"{name}: {exc.why}")
    if page.status in (401, 403):
        who = f"user {check.username!r}" if check.username else "no credentials"
        return result(Status.CRITICAL, "auth_failed",
                      f"{name}: HTTP {page.status} with {who}; allow the agent's address or "
                      "user on the stub_status location")
    if page.status != 200:
        return result(Status.CRITICAL, "unexpected_status",
                      f"{name}: HTTP {page.status}, expected 200 from stub_status")
    stub = _parse(page.text())
    if stub is None:
        return result(Status.CRITICAL, "invalid_response",
                      f"{name}: the page is not nginx stub_status output (is `stub_status;` "
                      "set on that location?)")

    metrics: list[Metric] = []
    causes: list[Cause] = []
    details: dict[str, Any] = {"active": stub.active, "accepts": stub.accepts,
                               "handled": stub.handled, "requests": stub.requests}
    _stub_metrics(check, stub, page.elapsed_s, memory, metrics, causes)
    upstream_task = asyncio.ensure_future(_upstreams(check, metrics, causes, details))
    version, version_error = await _version(check, page.headers.get("Server", ""))
    await upstream_task
    details["version"] = version
    metrics.append(Metric(name="nginx_info", value=1, labels={"version": version or ""}))
    if version_error:
        causes.append(Cause(Status.UNKNOWN, "probe_error", version_error))
    if check.error_log is not None:
        await asyncio.to_thread(_scan_log, check, memory, metrics, causes, details)
    return _verdict(name, stub, causes, metrics, details)


def _parse(text: str) -> _Stub | None:
    match = _STUB_STATUS.search(text)
    if match is None:
        return None
    return _Stub(**{key: int(value) for key, value in match.groupdict().items()})


def _stub_metrics(check: NginxCheck, stub: _Stub, elapsed: float, memory: ProbeMemory,
                  metrics: list[Metric], causes: list[Cause]) -> None:
    dropped = stub.accepts - stub.handled
    for metric, value in (("nginx_connections_active", stub.active),
                          ("nginx_connections_reading", stub.reading),
                          ("nginx_connections_writing", stub.writing),
                          ("nginx_connections_waiting", stub.waiting),
                          ("nginx_connections_accepted_total", stub.accepts),
                          ("nginx_connections_handled_total", stub.handled),
                          ("nginx_connections_dropped_total", dropped),
                          ("nginx_http_requests_total", stub.requests),
                          ("nginx_stub_status_duration_seconds", elapsed)):
        metrics.append(Metric(name=metric, value=value))
    requests = memory.rate("requests", stub.requests)
    if requests is not None:
        metrics.append(Metric(name="nginx_http_requests_per_second", value=requests.per_second))
    drops = memory.rate("dropped", dropped)
    if drops is not None:
        metrics.append(Metric(name="nginx_connections_dropped_per_second",
                              value=drops.per_second))
        level = check.dropped_per_second.evaluate(drops.per_second) if drops.delta else Status.OK
        if level is not Status.OK:
            causes.append(Cause(level, "connections_dropped",
                                 f"{drops.delta:g} connections dropped since the last run "
                                 f"({drops.per_second:.2f}/s; worker_connections full?)"))
    level = check.connections_active.evaluate(stub.active)
    if level is not Status.OK:
        causes.append(Cause(level, "connections_high", f"{stub.active} active connections"))


async def _upstreams(check: NginxCheck, metrics: list[Metric], causes: list[Cause],
                     details: dict[str, Any]) -> None:
    if not check.upstreams:
        return
    # each address gets a share of the run's deadline, all probed at once
    timeout = max(0.5, min(5.0, check.timeout / 2))
    outcomes = await asyncio.gather(*(_connect(a, timeout) for a in check.upstreams))
    down = []
    for address, (seconds, error) in zip(check.upstreams, outcomes, strict=True):
        metrics.append(Metric(name="nginx_upstream_up", value=0 if error else 1,
                              labels={"upstream": address}))
        if error:
            down.append(f"{address} ({error})")
        else:
            metrics.append(Metric(name="nginx_upstream_connect_seconds", value=seconds,
                                  labels={"upstream": address}))
    details["upstreams_down"] = [d.split(" ", 1)[0] for d in down]
    if down:
        every = len(down) == len(check.upstreams)
        causes.append(Cause(Status.CRITICAL if every else Status.WARNING, "upstream_down",
                             f"upstream{'s' if len(down) > 1 else ''} down: " + ", ".join(down)
                             + (" (all)" if every else
                                f" ({len(down)} of {len(check.upstreams)})")))


async def _connect(address: str, limit_s: float) -> tuple[float, str | None]:
    host, _sep, port = address.rpartition(":")
    host = host.strip("[]")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(limit_s):
            _reader, writer = await asyncio.open_connection(host, int(port))
    except TimeoutError:
        return limit_s, f"no answer in {limit_s:g}s"
    except ConnectionRefusedError:
        return loop.time() - started, "refused"
    except OSError as exc:
        return loop.time() - started, exc.strerror or type(exc).__name__
    elapsed = loop.time() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return elapsed, None


async def _version(check: NginxCheck, server_header: str) -> tuple[str | None, str | None]:
    """(version, problem): `nginx -v` when a binary is configured, else the Server header."""
    if check.binary is None:
        match = _VERSION.search(server_header)
        return (match.group(1) if match else None), None
    try:
        proc = await asyncio.create_subprocess_exec(
            str(check.binary), "-v", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.defpath, "LANG": "C"})
    except OSError as exc:
        return None, f"cannot run {check.binary} -v: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(5):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, f"{check.binary} -v did not finish in 5s"
    match = _VERSION.search(out.decode(errors="replace"))
    if match is None:
        return None, f"{check.binary} -v printed no version"
    return match.group(1), None


def _scan_log(check: NginxCheck, memory: ProbeMemory, metrics: list[Metric],
              causes: list[Cause], details: dict[str, Any]) -> None:
    """Count upstream failures in the lines the error log gained since the previous run."""
    assert check.error_log is not None
    path = check.error_log
    try:
        with path.open("rb") as log:
            stat = os.fstat(log.fileno())
            position = memory.values.get("error_log")
            if position is None:
                start = stat.st_size  # first run: history is not news
            else:
                inode, offset = position
                rotated = inode != stat.st_ino or stat.st_size < offset
                start = 0 if rotated else offset
            skipped = max(0, stat.st_size - start - check.error_log_max_bytes)
            log.seek(start + skipped)
            data = log.read(min(stat.st_size - start, check.error_log_max_bytes))
            # an incomplete last line is read again next time
            end = data.rfind(b"\n") + 1
            memory.values["error_log"] = (stat.st_ino, start + skipped + end)
            data = data[:end]
    except OSError as exc:
        causes.append(Cause(Status.UNKNOWN, "probe_error",
                             f"cannot read error log {path}: {exc.strerror or exc}"))
        return
    if position is None:
        details["error_log"] = "first run: counting starts now"
        return
    counts = {key: len(pattern.findall(data)) for key, pattern in _LOG_PATTERNS.items()}
    for key, count in counts.items():
        metrics.append(Metric(name=f"nginx_error_log_{key}", value=count))
    details["error_log_counts"] = counts
    if skipped:
        details["error_log_skipped_bytes"] = skipped
    if counts["no_live_upstreams"]:
        causes.append(Cause(Status.CRITICAL, "no_live_upstreams",
                             f"{counts['no_live_upstreams']} × 'no live upstreams' in the "
                             "error log since the last run"))
    level = check.upstream_timeouts.evaluate(counts["upstream_timeouts"])
    if level is not Status.OK:
        causes.append(Cause(level, "upstream_timeouts",
                             f"{counts['upstream_timeouts']} × 'upstream timed out' in the "
                             "error log since the last run"))


def _verdict(name: str, stub: _Stub, causes: list[Cause], metrics: list[Metric],
             details: dict[str, Any]) -> ProbeResult:
    line = (f"{name}: {stub.active} active ({stub.reading} reading, {stub.writing} writing, "
            f"{stub.waiting} waiting)")
    return verdict(name, causes, line, metrics=tuple(metrics), details=details)
