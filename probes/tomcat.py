"""Tomcat probe: reads the manager webapp's status page, server info and webapp list over HTTP
(local or remote, by URL) and judges connector threads, error rate, heap and webapps.

Pages read per run, over one keep-alive connection (`WebClient`):
  {manager_path}/status?XML=true    JVM memory and pools, each connector's threads and request
                                    counters; needs role manager-status (or manager-script)
  {manager_path}/text/serverinfo    Tomcat, JVM and OS versions; needs role manager-script
  {manager_path}/text/list          each webapp running/stopped and its sessions; needs
                                    role manager-script

ok        the status page reads, and every level below is inside its thresholds
warning   busy/max threads of a connector >= `busy_thread_ratio.warning` (default 0.8);
          errors/requests of a connector since the previous run >= `error_rate.warning`
          (default 0.05, judged only over at least `error_rate_min_requests` requests);
          heap used/max >= `heap_used_ratio.warning` (default 0.9)
critical  the same at the `critical` levels (0.95, 0.25, 0.97); a webapp stopped (every
          deployed webapp, or only those in `webapps:` when given); a webapp in `webapps:` not
          deployed; the manager refused the credentials (401) or the role / client address
          (403); no manager at the URL or another unexpected status; a page that is not
          the XML or text the manager writes; name not resolved, refused, TLS failed
unknown   the probe cannot load its own TLS files — reason `probe_error`

Reason codes: ok, threads_busy, error_rate, heap_high, webapp_stopped, webapp_missing,
auth_failed, unexpected_status, invalid_response, connect_refused, connect_error, dns_failed,
tls_error, tls_expired, probe_error. A server that accepts and never answers is cut by the
runner's timeout (reason `timeout`).

Without role manager-script the probe still judges the status page; the pages it could not
read are named in `details.not_read` and at the end of the summary ("list, serverinfo not
read: user 'x' lacks role manager-script") without changing the status — unless `webapps:`
is given, which asks for the list: then the refusal is critical `auth_failed`. Set
`read_list: false` / `read_serverinfo: false` to stop asking.

Error and request rates come from the counters of the previous run (`ProbeMemory`); the
first run after a start, a config change or a Tomcat restart has no rates and judges none.
The status page is read a second time only after a 500: Tomcat's status servlet throws
ConcurrentModificationException when connections open while it writes (a manager bug, not
the server failing); `details.status_page_retried` then says so. Nothing else is retried.
Every cause goes into the summary, the worst first; the worst decides status and reason. The
password never appears in the result: only the user name does.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator
from yarl import URL

from probes.config import Threshold
from probes.memory import ProbeMemory, Rate
from probes.result import Cause, Metric, ProbeResult, Status, verdict
from probes.web import Fetched, WebApiCheck, WebClient, WebError

KIND = "tomcat"
REMEMBERS = True

METRICS = {
    "tomcat_connector_threads_busy": "Connector threads processing a request.",
    "tomcat_connector_threads_current": "Connector threads in the pool (busy or idle).",
    "tomcat_connector_threads_max": "The connector's maxThreads.",
    "tomcat_connector_threads_busy_ratio": "Busy threads / maxThreads.",
    "tomcat_connector_requests_total": "Requests the connector has completed since start.",
    "tomcat_connector_errors_total": "Responses with status >= 400 since start.",
    "tomcat_connector_processing_seconds_total": "Time spent processing requests since start.",
    "tomcat_connector_max_time_seconds": "Longest request processing time since start.",
    "tomcat_connector_bytes_received_total": "Request body bytes received since start.",
    "tomcat_connector_bytes_sent_total": "Response bytes sent since start.",
    "tomcat_connector_requests_per_second": "Requests per second since the previous run.",
    "tomcat_connector_error_ratio": "Errors / requests since the previous run.",
    "tomcat_jvm_memory_bytes": "JVM heap as the runtime reports it: area free, total "
                               "(committed), max, used (total - free).",
    "tomcat_jvm_memory_used_ratio": "Heap used / max.",
    "tomcat_jvm_memory_pool_used_bytes": "Used bytes of a JVM memory pool.",
    "tomcat_jvm_memory_pool_max_bytes": "Maximum size of a JVM memory pool (absent: no limit).",
    "tomcat_webapp_running": "1 when the webapp is running, 0 when stopped.",
    "tomcat_webapp_sessions": "Active sessions of the webapp.",
}

_MIB = 1 << 20
_STATUS_ROLE = "manager-status"
_SCRIPT_ROLE = "manager-script"
_USER_AGENT = "wardwatch-tomcat-probe"
_T = TypeVar("_T")


class TomcatCheck(WebApiCheck):
    """`url` is the server's base URL (http(s)://host:port, with a path prefix when behind a
    proxy); the manager is at `url` + `manager_path`."""

    kind: Literal["tomcat"]
    manager_path: str = "/manager"
    busy_thread_ratio: Threshold = Threshold(warning=0.8, critical=0.95)
    error_rate: Threshold = Threshold(warning=0.05, critical=0.25)
    """Errors (responses >= 400) / requests of a connector between two runs."""
    error_rate_min_requests: int = Field(default=20, ge=1)
    """Fewer requests than this between two runs: too few to judge an error rate."""
    heap_used_ratio: Threshold = Threshold(warning=0.9, critical=0.97)
    webapps: list[str] | None = None
    """Context paths that must be deployed and running (`/` is ROOT). Not given: every
    deployed webapp must be running."""
    read_list: bool = True
    read_serverinfo: bool = True

    @field_validator("manager_path")
    @classmethod
    def _manager_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError(f"manager_path {value!r} must be a path such as /manager")
        return value.rstrip("/") or "/"

    @field_validator("webapps")
    @classmethod
    def _webapps(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not path.startswith("/") or any(c in path for c in "?#: "):
                raise ValueError(f"webapp {path!r} must be a context path such as /emr "
                                 "(/ for ROOT)")
        return value

    @model_validator(mode="after")
    def _list_needed(self) -> TomcatCheck:
        if self.webapps is not None and not self.read_list:
            raise ValueError("webapps needs read_list: true (the webapp list is where "
                             "their state is read)")
        return self

    @property
    def target(self) -> str:
        return self.url


CONFIG = TomcatCheck


# --- the manager's documents ------------------------------------------------------------------


class InvalidDocument(ValueError):
    """A page that is not what the manager writes."""


@dataclass(frozen=True)
class Connector:
    name: str
    max_threads: int
    current_threads: int
    busy_threads: int
    requests: int
    errors: int
    processing_ms: int
    max_time_ms: int
    bytes_received: int
    bytes_sent: int


@dataclass(frozen=True)
class MemoryPool:
    name: str
    type: str
    used: int
    max: int | None
    """None when the pool has no limit (-1 in the page)."""


@dataclass(frozen=True)
class Heap:
    free: int
    total: int
    max: int

    @property
    def used(self) -> int:
        return self.total - self.free


@dataclass(frozen=True)
class ServerStatus:
    """/manager/status?XML=true"""

    heap: Heap | None
    pools: tuple[MemoryPool, ...]
    connectors: tuple[Connector, ...]


@dataclass(frozen=True)
class Webapp:
    path: str
    running: bool
    sessions: int


def parse_status(body: bytes) -> ServerStatus:
    """The manager's XML status page; raises `InvalidDocument`."""
    # The manager never writes a DTD; refusing one rules out entity expansion attacks from a
    # hostile or impersonated server.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise InvalidDocument("the status page carries a DTD, which the manager never writes "
                              "(an HTML error or login page?)")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise InvalidDocument(f"the status page is not XML ({exc})") from None
    if root.tag != "status":
        raise InvalidDocument(f"the status page's root element is <{root.tag[:40]}>, "
                              "not <status>")
    memory = root.find("jvm/memory")
    heap = None
    if memory is not None:
        heap = Heap(free=_integer(memory, "free"), total=_integer(memory, "total"),
                    max=_integer(memory, "max"))
    pools = []
    for pool in root.iterfind("jvm/memorypool"):
        limit = _integer(pool, "usageMax")
        pools.append(MemoryPool(name=_text_attr(pool, "name"), type=pool.get("type", ""),
                                used=_integer(pool, "usageUsed"),
                                max=limit if limit >= 0 else None))
    connectors = []
    for element in root.iterfind("connector"):
        threads = element.find("threadInfo")
        requests = element.find("requestInfo")
        name = connector_name(_text_attr(element, "name"))
        if threads is None or requests is None:
            raise InvalidDocument(f"connector {name} lacks threadInfo or requestInfo")
        connectors.append(Connector(
            name=name, max_threads=_integer(threads, "maxThreads"),
            current_threads=_integer(threads, "currentThreadCount"),
            busy_threads=_integer(threads, "currentThreadsBusy"),
            requests=_integer(requests, "requestCount"),
            errors=_integer(requests, "errorCount"),
            processing_ms=_integer(requests, "processingTime"),
            max_time_ms=_integer(requests, "maxTime"),
            bytes_received=_integer(requests, "bytesReceived"),
            bytes_sent=_integer(requests, "bytesSent")))
    return ServerStatus(heap=heap, pools=tuple(pools), connectors=tuple(connectors))


def connector_name(raw: str) -> str:
    """`"http-nio-8080"` (the JMX name, quoted by Tomcat 8.5 and later) -> http-nio-8080."""
    return raw.strip().strip("\"'").strip() or raw


def _text_attr(element: ET.Element, name: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise InvalidDocument(f"<{element.tag}> lacks the {name} attribute")
    return value


def _integer(element: ET.Element, name: str) -> int:
    value = element.get(name)
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidDocument(f"<{element.tag}> {name}={value!r} is not a number") from None


_INFO_LINE = re.compile(r"^([A-Za-z][A-Za-z ]*?):\s*(.*?)\s*$")
_INFO_KEYS = {"tomcat version": "tomcat_server_info", "os name": "os_name",
              "os version": "os_version", "os architecture": "os_architecture",
              "jvm version": "jvm_version", "jvm vendor": "jvm_vendor"}


def parse_serverinfo(text: str) -> dict[str, str]:
    """`/manager/text/serverinfo` -> tomcat_server_info, tomcat_version, jvm_*, os_*.

    Tomcat 10.1 writes `Tomcat Version: [Apache Tomcat/10.1.60]`, older ones leave the
    brackets out; both are read.
    """
    lines = _ok_lines(text, "serverinfo")
    info: dict[str, str] = {}
    for line in lines:
        match = _INFO_LINE.match(line)
        if match is None:
            continue
        key = _INFO_KEYS.get(match.group(1).strip().lower())
        value = match.group(2)
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        if key is not None:
            info[key] = value
    server = info.get("tomcat_server_info", "")
    version = re.search(r"/(\d+(?:\.\d+)+\S*)", server)
    if version is not None:
        info["tomcat_version"] = version.group(1)
    if not info:
        raise InvalidDocument("serverinfo names no version")
    return info


def parse_list(text: str) -> tuple[Webapp, ...]:
    """`/manager/text/list`: lines `/path:running|stopped:sessions:docbase`."""
    webapps = []
    for line in _ok_lines(text, "list"):
        if not line.strip():
            continue
        # The docbase may contain ':' (C:\\apps\\emr): split the first three fields only.
        parts = line.strip().split(":", 3)
        if len(parts) < 3 or not parts[0].startswith("/") or not parts[2].isdigit():
            raise InvalidDocument(f"unexpected webapp list line {line[:80]!r}")
        webapps.append(Webapp(path=parts[0], running=parts[1] == "running",
                              sessions=int(parts[2])))
    return tuple(webapps)


def _ok_lines(text: str, page: str) -> list[str]:
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not first.startswith("OK"):
        shown = first[:120] if first.startswith("FAIL") else "not a manager text reply"
        raise InvalidDocument(f"{page}: {shown}")
    return lines[1:]


# --- the probe --------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one run read, for the verdict."""

    causes: list[Cause] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    webapps: tuple[Webapp, ...] | None = None
    unread: list[tuple[str, bool]] = field(default_factory=list)
    """(page, refused by the manager) for optional pages that could not be read."""

    def add(self, status: Status, reason: str, text: str) -> None:
        if status is not Status.OK:
            self.causes.append(Cause(status, reason, text))

    def metric(self, name: str, value: float, **labels: str) -> None:
        self.metrics.append(Metric(name=name, value=value, labels=labels))


async def probe(check: TomcatCheck, memory: ProbeMemory) -> ProbeResult:
    run = _Run()
    manager = _manager_url(check)
    run.details["manager_url"] = str(manager)
    started = time.perf_counter()
    client = WebClient(check, user_agent=_USER_AGENT)
    try:
        async with client:
            read = await _read(client, check, manager, run)
    except WebError as exc:
        status = Status.UNKNOWN if exc.reason == "probe_error" else Status.CRITICAL
        read = Cause(status, exc.reason, exc.why)
    run.details["probe_cost"] = {
        "requests": client.requests, "bytes_received": client.bytes_received,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(read, Cause):
        return _verdict(check, run, [read])
    _judge_connectors(check, read, memory, run)
    _judge_heap(check, read, run)
    if run.webapps is not None:
        _judge_webapps(check, run.webapps, run)
    return _verdict(check, run, run.causes)


async def _read(client: WebClient, check: TomcatCheck, manager: URL, run: _Run
                ) -> ServerStatus | Cause:
    """The status page parsed, or the cause that ends the run; the text pages go into `run`."""
    status_url = str((manager / "status").with_query({"XML": "true"}))
    page = await client.get(status_url)
    if page.status == 500:
        # The status servlet walks the connectors' request processors without a lock and
        # throws ConcurrentModificationException while new connections register theirs
        # (StatusTransformer.writeConnectorState): a burst of connections, exactly when the
        # page matters. One second read; the first answer stays visible in details.
        first = ("ConcurrentModificationException" if b"ConcurrentModification" in page.body
                 else "no cause given")
        run.details["status_page_retried"] = f"first answer 500 ({first})"
        page = await client.get(status_url)
    if page.status != 200:
        reason = "auth_failed" if page.status in {401, 403} else "unexpected_status"
        return Cause(Status.CRITICAL, reason, _refusal_text(check, page, _STATUS_ROLE))
    try:
        server = parse_status(page.body)
    except InvalidDocument as exc:
        return Cause(Status.CRITICAL, "invalid_response", f"{page.url}: {exc}")
    if check.read_serverinfo:
        info = await _text_page(client, manager / "text" / "serverinfo", check, run,
                                parse_serverinfo)
        if info is not None:
            run.details.update(info)
    if check.read_list:
        run.webapps = await _text_page(client, manager / "text" / "list", check, run,
                                       parse_list)
    return server


def _manager_url(check: TomcatCheck) -> URL:
    base = URL(check.url)
    prefix = base.path.rstrip("/")
    return base.with_path(prefix + check.manager_path.rstrip("/")).with_query(None)


async def _text_page(client: WebClient, url: URL, check: TomcatCheck, run: _Run,
                     parse: Callable[[str], _T]) -> _T | None:
    """A manager text page parsed, or None after recording why it was not read.

    The list is required when `webapps:` is given: its failures are then causes; otherwise
    (and always for serverinfo) they are notes that leave the status alone.
    """
    name = url.name
    required = name == "list" and check.webapps is not None
    fetched = await client.get(str(url))
    if fetched.status == 200:
        try:
            return parse(fetched.text())
        except InvalidDocument as exc:
            reason, why, refused = "invalid_response", f"{fetched.url}: {exc}", False
    else:
        refused = fetched.status in {401, 403}
        reason = "auth_failed" if refused else "unexpected_status"
        why = _refusal_text(check, fetched, _SCRIPT_ROLE)
    if required:
        run.causes.append(Cause(Status.CRITICAL, reason, why))
    else:
        run.details.setdefault("not_read", {})[name] = why
        run.unread.append((name, refused))
    return None


def _refusal_text(check: TomcatCheck, fetched: Fetched, role: str) -> str:
    """Why the manager said no, naming the user and the role it needs (never the password)."""
    user = check.username
    if fetched.status == 401:
        if user is None:
            return (f"{fetched.url} asks for credentials (401): set username and password_file "
                    f"for a user with role {role}")
        return (f"{fetched.url} refused user {user!r} (401): wrong password or no such user in "
                f"tomcat-users.xml; the user needs role {role}")
    if fetched.status == 403:
        who = f"user {user!r}" if user is not None else "the request"
        return (f"{fetched.url} denied {who} (403): the user lacks role {role}, or the "
                "manager's RemoteAddrValve/RemoteCIDRValve (manager's context.xml) does not "
                "allow this agent's address")
    if fetched.status == 404:
        return (f"{fetched.url} answered 404: no manager there (is tomcat-admin's manager "
                "deployed, and manager_path right?)")
    return f"{fetched.url} answered {fetched.status}, expected 200"


def _judge_connectors(check: TomcatCheck, server: ServerStatus, memory: ProbeMemory,
                      run: _Run) -> None:
    read: set[str] = set()
    shown: dict[str, Any] = {}
    for conn in server.connectors:
        labels = {"connector": conn.name}
        run.metric("tomcat_connector_threads_busy", conn.busy_threads, **labels)
        run.metric("tomcat_connector_threads_current", conn.current_threads, **labels)
        run.metric("tomcat_connector_threads_max", conn.max_threads, **labels)
        run.metric("tomcat_connector_requests_total", conn.requests, **labels)
        run.metric("tomcat_connector_errors_total", conn.errors, **labels)
        run.metric("tomcat_connector_processing_seconds_total", conn.processing_ms / 1000,
                   **labels)
        run.metric("tomcat_connector_max_time_seconds", conn.max_time_ms / 1000, **labels)
        run.metric("tomcat_connector_bytes_received_total", conn.bytes_received, **labels)
        run.metric("tomcat_connector_bytes_sent_total", conn.bytes_sent, **labels)
        entry: dict[str, Any] = {"threads_busy": conn.busy_threads,
                                 "threads_max": conn.max_threads,
                                 "requests": conn.requests, "errors": conn.errors}
        # An executor-backed or AJP connector may report no maxThreads (-1): no ratio.
        if conn.max_threads > 0:
            ratio = conn.busy_threads / conn.max_threads
            run.metric("tomcat_connector_threads_busy_ratio", ratio, **labels)
            run.add(check.busy_thread_ratio.evaluate(ratio), "threads_busy",
                    f"{conn.name} busy {conn.busy_threads}/{conn.max_threads} threads")
        requests_key, errors_key = f"{conn.name}:requests", f"{conn.name}:errors"
        read |= {requests_key, errors_key}
        requests = memory.rate(requests_key, conn.requests)
        errors = memory.rate(errors_key, conn.errors)
        if requests is not None:
            run.metric("tomcat_connector_requests_per_second", requests.per_second, **labels)
            entry["requests_per_second"] = round(requests.per_second, 3)
            if errors is not None:
                _judge_errors(check, conn.name, requests, errors, entry, run)
        shown[conn.name] = entry
    memory.forget_except(read)
    run.details["connectors"] = shown


def _judge_errors(check: TomcatCheck, name: str, requests: Rate, errors: Rate,
                  entry: dict[str, Any], run: _Run) -> None:
    if requests.delta <= 0:
        return
    ratio = min(1.0, errors.delta / requests.delta)
    run.metric("tomcat_connector_error_ratio", ratio, connector=name)
    entry["error_ratio"] = round(ratio, 4)
    if requests.delta < check.error_rate_min_requests:
        return  # a few 404s on a quiet server are not an error rate
    run.add(check.error_rate.evaluate(ratio), "error_rate",
            f"{name} {errors.delta:.0f} errors in {requests.delta:.0f} requests "
            f"({ratio:.0%}) since the last run")


def _judge_heap(check: TomcatCheck, server: ServerStatus, run: _Run) -> None:
    heap = server.heap
    for pool in server.pools:
        labels = {"pool": pool.name, "type": pool.type}
        run.metric("tomcat_jvm_memory_pool_used_bytes", pool.used, **labels)
        if pool.max is not None:
            run.metric("tomcat_jvm_memory_pool_max_bytes", pool.max, **labels)
    if heap is None:
        return
    for area, value in (("free", heap.free), ("total", heap.total), ("max", heap.max),
                        ("used", heap.used)):
        run.metric("tomcat_jvm_memory_bytes", value, area=area)
    run.details["heap"] = {"used_bytes": heap.used, "total_bytes": heap.total,
                           "max_bytes": heap.max}
    if heap.max > 0:
        ratio = heap.used / heap.max
        run.metric("tomcat_jvm_memory_used_ratio", ratio)
        run.details["heap"]["used_ratio"] = round(ratio, 4)
        run.add(check.heap_used_ratio.evaluate(ratio), "heap_high",
                f"heap {ratio:.0%} used ({heap.used / _MIB:.0f} of {heap.max / _MIB:.0f} MiB)")


def _judge_webapps(check: TomcatCheck, webapps: tuple[Webapp, ...], run: _Run) -> None:
    by_path = {app.path: app for app in webapps}
    for app in webapps:
        labels = {"webapp": app.path}
        run.metric("tomcat_webapp_running", 1 if app.running else 0, **labels)
        run.metric("tomcat_webapp_sessions", app.sessions, **labels)
    run.details["webapps"] = {app.path: {"state": "running" if app.running else "stopped",
                                         "sessions": app.sessions} for app in webapps}
    required = check.webapps if check.webapps is not None else list(by_path)
    for path in required:
        found = by_path.get(path)
        if found is None:
            run.add(Status.CRITICAL, "webapp_missing", f"{path} not deployed")
        elif not found.running:
            run.add(Status.CRITICAL, "webapp_stopped", f"{path} stopped")


def _verdict(check: TomcatCheck, run: _Run, causes: list[Cause]) -> ProbeResult:
    notes = ""
    if run.unread:
        pages = ", ".join(page for page, _refused in run.unread)
        if all(refused for _page, refused in run.unread):
            notes = f"; {pages} not read: user {check.username!r} lacks role {_SCRIPT_ROLE}"
        else:
            notes = f"; {pages} not read (details.not_read says why)"
    found = verdict("", causes, _ok_line(run), metrics=tuple(run.metrics),
                    details=run.details)
    prefix = "Tomcat " if causes else ""   # `Tomcat http-nio-8080 busy 190/200 threads; …`
    return found.model_copy(update={"summary": prefix + found.summary + notes})


def _ok_line(run: _Run) -> str:
    version = run.details.get("tomcat_version")
    parts = []
    for name, entry in run.details.get("connectors", {}).items():
        text = f"{name} {entry['threads_busy']}/{entry['threads_max']} threads busy"
        if "requests_per_second" in entry:
            text += f", {entry['requests_per_second']:.1f} req/s"
            if "error_ratio" in entry:
                text += f", {entry['error_ratio']:.1%} errors"
        parts.append(text)
    if not any("requests_per_second" in e for e in run.details.get("connectors", {}).values()):
        parts.append("rates from the next run")
    heap = run.details.get("heap")
    if heap is not None and "used_ratio" in heap:
        parts.append(f"heap {heap['used_ratio']:.0%} of {heap['max_bytes'] / _MIB:.0f} MiB")
    webapps = run.details.get("webapps")
    if webapps is not None:
        running = sum(1 for app in webapps.values() if app["state"] == "running")
        parts.append(f"{running}/{len(webapps)} webapps running")
    return f"Tomcat{' ' + version if version else ''} ok: " + "; ".join(parts)
