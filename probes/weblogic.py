"""WebLogic probe: a whole domain read from the admin server's RESTful Management API
(`/management/weblogic/latest/…`, WebLogic 12.2.1.3 and later, 14.1.x included), with nothing
deployed into the hospital's WebLogic and only the Monitor role.

Each run makes two requests on one connection (three with `jdbc_active_ratio` levels):
  1. GET  domainRuntime/serverLifeCycleRuntimes?links=none&fields=name,state — every
     configured server and its lifecycle state. `serverRuntimes` lists running servers only,
     so a SHUTDOWN or FAILED server would silently vanish from it; this list is what notices.
  2. POST domainRuntime/search — one query for each running server's health, version, thread
     pool, JVM heap, JDBC data source runtimes and application runtimes (`fields` and
     `links: []` keep the answer to the values read here).
  3. POST domainConfig/search — each data source's configured `maxCapacity`, only when
     `jdbc_active_ratio` has levels (the runtime MBean knows the current pool size, not the
     configured maximum).

ok        every configured server (but `ignore_servers`) is RUNNING with health OK, every data
          source is Running, every application is ACTIVE, no level is reached, and every name
          under `servers:` / `datasources:` / `applications:` exists
warning   health WARN or OVERLOADED (server: `server_unhealthy`, application:
          `application_unhealthy`); a server RUNNING per its lifecycle whose runtime the admin
          server could not read (`server_unreachable`); a warning level of `stuck_threads`
          (default 1), `hogging_threads`, `pending_requests`, `heap_used_ratio` (default 0.95),
          `jdbc_waiting` (default 1), `jdbc_active_ratio` or `jdbc_reconnect_failures` (failed
          reconnects since the previous run, default 1)
critical  the admin server is unreachable, refuses TLS or the credentials, or the REST API is
          off; a server not RUNNING; health CRITICAL or FAILED; a data source not Running; an
          application not ACTIVE; a critical level of the thresholds above (`stuck_threads`
          default 5, `jdbc_waiting` default 10); a listed server, data source or application
          that does not exist
unknown   the probe cannot load its own TLS files — reason `probe_error`

Every server state but RUNNING is critical, ADMIN, STARTING and SUSPENDING included: in none
of them does the server take users' requests, and a planned restart is the collector's
maintenance window to excuse, not the probe's. Servers kept SHUTDOWN on purpose (spare or
dynamic cluster members) go under `ignore_servers`. A data source in state Overloaded is
`datasource_exhausted` (every connection lent out and requests waiting), any other state but
Running is `datasource_down`. Health states are compared case-insensitively: the REST API
writes `ok`, the MBean constants say `HEALTH_OK`. An application is checked on every server it
runs on; an INACTIVE version retiring beside the ACTIVE one of the same application is not a
failure; applications WebLogic marks `internal` are skipped.

Reason codes: ok, server_down, server_unhealthy, server_unreachable, stuck_threads,
hogging_threads, requests_queued, heap_high, datasource_down, datasource_exhausted,
datasource_reconnect_failures, application_down, application_unhealthy, auth_failed,
invalid_response, connect_refused, connect_error, dns_failed, tls_error, tls_expired,
probe_error. An admin server that accepts and never answers is cut by the runner's timeout
(reason `timeout`).

The summary names every cause, the worst first (`WebLogic EMR_Server2 FAILED; JDBC EMRDS
waiting=37 on EMR_Server1`), on one line of at most 300 characters. Rates (requests per second,
failed reconnects) come from the check's `ProbeMemory`: a first run has none.

The version reported (`weblogicVersion`, `12.2.1.4.0`) does not change when a patch set update
is installed; the installed PSU (`WLS PATCH SET UPDATE 12.2.1.4.230702`) is read on the host
holding the Oracle home by the `patches` check's `oracle_homes` (`opatch lspatches`,
probes/inventory.py), because this probe talks HTTPS to the admin server from wherever the
agent runs and every machine of a domain has its own home.

Not supported: WebLogic 12.1.3 and older, whose REST resources (`/management/tenant-monitoring`,
`/management/wls/{version}`) have neither serverLifeCycleRuntimes nor search, and 12.2.1.0-2
without the search resource; they answer 404, reported as `invalid_response` naming the
version. The password never appears in a result.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from yarl import URL

from probes.config import Threshold
from probes.memory import ProbeMemory
from probes.result import Findings, ProbeResult, Status, result, verdict
from probes.web import Fetched, WebApiCheck, WebClient, WebError

KIND = "weblogic"
REMEMBERS = True

METRICS = {
    "weblogic_server_state": "Lifecycle state of each configured server, from "
                             "serverLifeCycleRuntimes: 1, labelled server and state.",
    "weblogic_server_health": "Server health as WebLogic's HealthState code: 0 ok, 1 warn, "
                              "2 critical, 3 failed, 4 overloaded, -1 unknown.",
    "weblogic_server_info": "1, labelled server and version (weblogicVersion), for the patch "
                            "audit.",
    "weblogic_threadpool_stuck_threads": "Threads WebLogic marks stuck (busy longer than "
                                         "StuckThreadMaxTime).",
    "weblogic_threadpool_hogging_threads": "Threads held by one request for a long time, "
                                           "candidates for stuck.",
    "weblogic_threadpool_pending_requests": "User requests waiting in the self-tuning queue "
                                            "(pendingUserRequestCount).",
    "weblogic_threadpool_idle_threads": "Execute threads idle and ready for work.",
    "weblogic_threadpool_threads": "Execute threads in the pool (executeThreadTotalCount).",
    "weblogic_threadpool_throughput_requests_per_second": "Requests completed per second, "
                                                          "WebLogic's own moving average.",
    "weblogic_threadpool_completed_requests_total": "Requests completed since the server "
                                                    "started.",
    "weblogic_threadpool_requests_per_second": "Requests completed per second between the "
                                               "previous run and this one.",
    "weblogic_jvm_heap_used_bytes": "Heap in use (heapSizeCurrent - heapFreeCurrent).",
    "weblogic_jvm_heap_committed_bytes": "Heap the JVM holds now (heapSizeCurrent).",
    "weblogic_jvm_heap_max_bytes": "Largest heap the JVM may grow to (heapSizeMax).",
    "weblogic_jvm_heap_used_ratio": "Heap in use over the maximum heap.",
    "weblogic_jdbc_state": "State of a data source on a server: 1, labelled server, "
                           "datasource and state.",
    "weblogic_jdbc_active_connections": "Connections lent out to the application now.",
    "weblogic_jdbc_waiting_connections": "Requests waiting for a connection now.",
    "weblogic_jdbc_capacity_connections": "Connections in the pool now (currCapacity).",
    "weblogic_jdbc_max_capacity_connections": "The pool's configured maxCapacity (read only "
                                              "with jdbc_active_ratio levels).",
    "weblogic_jdbc_active_ratio": "Active connections over maxCapacity (only with "
                                  "jdbc_active_ratio levels).",
    "weblogic_jdbc_failures_to_reconnect_total": "Failed attempts to refresh a connection "
                                                 "since the data source started.",
    "weblogic_jdbc_leaked_connections_total": "Connections taken and never returned to the "
                                              "pool.",
    "weblogic_application_active": "1 when the application is ACTIVE on the server, else 0.",
    "weblogic_application_health": "Application health as WebLogic's HealthState code "
                                   "(as weblogic_server_health).",
    "weblogic_api_requests": "Requests this run made to the admin server.",
    "weblogic_api_response_bytes": "Response body bytes this run read from the admin server.",
    "weblogic_api_duration_seconds": "Time this run spent waiting for the admin server.",
}

_USER_AGENT = "wardwatch-weblogic-probe"
_API = "management/weblogic/latest"
_LIFECYCLE = f"{_API}/domainRuntime/serverLifeCycleRuntimes?links=none&fields=name,state"
_RUNTIME_SEARCH = f"{_API}/domainRuntime/search"
_CONFIG_SEARCH = f"{_API}/domainConfig/search"


def _query(fields: list[str], **children: dict[str, Any]) -> dict[str, Any]:
    """One node of a WebLogic REST search: these fields, no links, these child nodes."""
    node: dict[str, Any] = {"links": [], "fields": fields}
    if children:
        node["children"] = children
    return node


# Field names from the MBean reference (ServerRuntimeMBean, ThreadPoolRuntimeMBean,
# JVMRuntimeMBean, JDBCDataSourceRuntimeMBean, ApplicationRuntimeMBean), camel-cased as the
# REST API writes them.
RUNTIME_QUERY = _query(
    ["name"],
    serverRuntimes=_query(
        ["name", "state", "healthState", "weblogicVersion"],
        threadPoolRuntime=_query(["stuckThreadCount", "hoggingThreadCount",
                                  "pendingUserRequestCount", "executeThreadIdleCount",
                                  "executeThreadTotalCount", "throughput",
                                  "completedRequestCount"]),
        JVMRuntime=_query(["heapSizeCurrent", "heapFreeCurrent", "heapSizeMax"]),
        JDBCServiceRuntime=_query([], JDBCDataSourceRuntimeMBeans=_query(
            ["name", "state", "activeConnectionsCurrentCount",
             "waitingForConnectionCurrentCount", "currCapacity", "failuresToReconnectCount",
             "leakedConnectionCount"])),
        applicationRuntimes=_query(["name", "applicationName", "activeVersionState",
                                    "healthState", "internal"]),
    ),
)
CAPACITY_QUERY = _query(
    [],
    JDBCSystemResources=_query(["name"], JDBCResource=_query(
        [], JDBCConnectionPoolParams=_query(["maxCapacity"]))),
)

_HEALTH_CODES = {"ok": 0, "warn": 1, "critical": 2, "failed": 3, "overloaded": 4}
_ACTIVE_VERSION_STATES = {0: "INACTIVE", 1: "ADMIN", 2: "ACTIVE"}  # AppActiveVersionState
_VERSION = re.compile(r"\b\d+\.\d+\.\d+\.\d+(?:\.\d+)?\b")


class WeblogicCheck(WebApiCheck):
    """`url` is the admin server's base URL (`https://wls-admin:7002`); the probe adds
    `/management/weblogic/latest/…` to it, keeping a path prefix a reverse proxy may need."""

    kind: Literal["weblogic"]
    stuck_threads: Threshold = Threshold(warning=1, critical=5)
    hogging_threads: Threshold = Threshold()
    pending_requests: Threshold = Threshold()
    heap_used_ratio: Threshold = Threshold(warning=0.95)
    jdbc_waiting: Threshold = Threshold(warning=1, critical=10)
    jdbc_active_ratio: Threshold = Threshold()
    """Active connections over the configured maxCapacity; costs a third request when set."""
    jdbc_reconnect_failures: Threshold = Threshold(warning=1)
    """Failed reconnects of one data source on one server since the previous run."""
    servers: list[str] = Field(default_factory=list)
    """Servers that must be configured in the domain (and then RUNNING)."""
    datasources: list[str] = Field(default_factory=list)
    """Data sources that must be deployed on at least one running server."""
    applications: list[str] = Field(default_factory=list)
    """Applications that must be deployed on at least one running server."""
    ignore_servers: list[str] = Field(default_factory=list)
    """Servers whose lifecycle state is not checked (spares kept SHUTDOWN on purpose)."""

    @field_validator("stuck_threads", "hogging_threads", "pending_requests", "heap_used_ratio",
                     "jdbc_waiting", "jdbc_active_ratio", "jdbc_reconnect_failures")
    @classmethod
    def _above(cls, value: Threshold) -> Threshold:
        if value.direction != "above":
            raise ValueError("direction must be 'above' (a higher value is worse)")
        return value

    @field_validator("heap_used_ratio", "jdbc_active_ratio")
    @classmethod
    def _ratio(cls, value: Threshold) -> Threshold:
        for level in (value.warning, value.critical):
            if level is not None and not 0 < level <= 1:
                raise ValueError(f"{level:g} is not a ratio in (0, 1]; write 0.9 for 90%")
        return value

    @field_validator("servers", "datasources", "applications", "ignore_servers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("names must not be empty")
        return value

    @model_validator(mode="after")
    def _base_url(self) -> WeblogicCheck:
        url = URL(self.url)
        if url.query_string or url.fragment:
            raise ValueError("url is the admin server's base URL; drop the query and fragment")
        if "/management/" in f"{url.path}/":
            raise ValueError("url is the admin server's base URL (https://host:7002); the "
                             "probe adds /management/weblogic/latest/… itself")
        return self


CONFIG = WeblogicCheck


@dataclass(frozen=True)
class _Cost:
    requests: int
    bytes: int
    seconds: float


@dataclass
class _Report(Findings):
    """What one run found: Findings, plus what the verdict and details need."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    applications: dict[str, dict[str, str]] = field(default_factory=dict)
    counters: set[str] = field(default_factory=set)
    application_names: set[str] = field(default_factory=set)
    """Names and versionless names (`emr-web` of `emr-web#4.2`) of applications found."""
    requests_per_second: float | None = None


async def probe(check: WeblogicCheck, memory: ProbeMemory) -> ProbeResult:
    started = time.perf_counter()
    prefix = URL(check.url).path.rstrip("/") + "/"
    try:
        async with WebClient(check, user_agent=_USER_AGENT) as client:
            lifecycle = _read(check, "GET", await client.get(prefix + _LIFECYCLE))
            runtime = _read(check, "POST", await client.post_json(prefix + _RUNTIME_SEARCH,
                                                                  RUNTIME_QUERY))
            capacity = None
            if check.jdbc_active_ratio.warning is not None or (
                    check.jdbc_active_ratio.critical is not None):
                capacity = _read(check, "POST", await client.post_json(
                    prefix + _CONFIG_SEARCH, CAPACITY_QUERY))
            cost = _Cost(requests=client.requests, bytes=client.bytes_received,
                         seconds=time.perf_counter() - started)
    except WebError as exc:
        status = Status.UNKNOWN if exc.reason == "probe_error" else Status.CRITICAL
        return result(status, exc.reason, f"WebLogic admin server: {exc.why}",
                      details={"url": check.url})
    try:
        return _evaluate(check, memory, lifecycle, runtime, capacity, cost)
    except _Malformed as exc:
        return result(Status.CRITICAL, "invalid_response",
                      f"WebLogic {check.url}: unexpected answer from the REST API: {exc}",
                      details={"url": check.url})


class _Malformed(Exception):
    """JSON that is not shaped as the REST reference documents."""


def _read(check: WeblogicCheck, method: str, fetched: Fetched) -> dict[str, Any]:
    """The JSON object of a 200 answer; `WebError` with the probe's reason otherwise."""
    where = f"{method} {fetched.url}"
    roles = "the Monitor role (or Administrator, Deployer, Operator)"
    if fetched.status in {401, 403} and check.username is None:
        raise WebError("auth_failed", f"{where} → {fetched.status}: no username configured; "
                                      f"the REST API needs a user in {roles}")
    if fetched.status == 401:
        raise WebError("auth_failed", f"{where} → 401: user {check.username!r} refused: wrong "
                                      f"password, or not in {roles}")
    if fetched.status == 403:
        raise WebError("auth_failed",
                       f"{where} → 403: user {check.username!r} lacks the Monitor role")
    if fetched.status == 404 and method == "POST":
        raise WebError("invalid_response",
                       f"{where} → 404: no search resource; WebLogic before 12.2.1.3 is not "
                       "supported")
    if fetched.status == 404:
        raise WebError("invalid_response",
                       f"{where} → 404: RESTful Management Services are disabled (domain → "
                       "Configuration → General → Advanced → Enable RESTful Management "
                       "Services) or WebLogic is older than 12.2.1 (not supported)")
    if fetched.status != 200:
        raise WebError("invalid_response", f"{where} → {fetched.status}, expected 200")
    try:
        document = json.loads(fetched.body)
    except (ValueError, RecursionError):
        raise WebError("invalid_response", f"{where}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise WebError("invalid_response", f"{where}: the answer is not a JSON object")
    return document


def _evaluate(check: WeblogicCheck, memory: ProbeMemory, lifecycle: dict[str, Any],
              runtime: dict[str, Any], capacity: dict[str, Any] | None, cost: _Cost
              ) -> ProbeResult:
    report = _Report()
    states = _lifecycle_states(lifecycle)
    runtimes = {str(server.get("name")): server
                for server in _items(runtime, "serverRuntimes", required=True)}
    max_capacity = _max_capacities(capacity) if capacity is not None else {}

    for name, state in states.items():
        report.metric("weblogic_server_state", 1, server=name, state=state)
        report.servers[name] = {"state": state}
        if name in check.ignore_servers:
            continue
        if state != "RUNNING":
            report.add(Status.CRITICAL, "server_down", f"WebLogic {name} {state}")
        elif name not in runtimes:
            report.add(Status.WARNING, "server_unreachable",
                         f"WebLogic {name} RUNNING but the admin server could not read its "
                         "runtime")
    for name in check.servers:
        if name not in states:
            report.add(Status.CRITICAL, "server_down", f"WebLogic {name} not in the domain")

    for name, server in runtimes.items():
        _server(report, name, server)
        _threads(check, memory, report, name, server)
        _heap(check, report, name, server)
        _datasources(check, memory, report, name, server, max_capacity)
        _applications(report, name, server)

    deployed_ds = {ds for found in report.datasources.values() for ds in found}
    for ds in check.datasources:
        if ds not in deployed_ds:
            report.add(Status.CRITICAL, "datasource_down",
                         f"JDBC {ds} not deployed on any running server")
    deployed_apps = {name.partition("#")[0] for name in report.application_names}
    for app in check.applications:
        if app not in report.application_names:
            report.add(Status.CRITICAL, "application_down",
                         f"App {app} not deployed on any running server")
    memory.forget_except(report.counters)

    report.metric("weblogic_api_requests", cost.requests)
    report.metric("weblogic_api_response_bytes", cost.bytes)
    report.metric("weblogic_api_duration_seconds", cost.seconds)
    versions = sorted({v for s in report.servers.values() if (v := s.get("version"))})
    domain = runtime.get("name") if isinstance(runtime.get("name"), str) else None
    details: dict[str, Any] = {
        "url": check.url, "domain": domain, "version": ", ".join(versions) or None,
        "servers": report.servers, "datasources": report.datasources,
        "applications": report.applications,
        "cost": {"requests": cost.requests, "bytes": cost.bytes,
                 "ms": round(cost.seconds * 1000, 1)},
    }
    if report.requests_per_second is None:
        details["rates"] = "none yet: the first run has no previous reading"
    metrics = tuple(report.metrics)
    running = sum(1 for s in report.servers.values() if s["state"] == "RUNNING")
    line = (f"WebLogic {domain or check.url}: {running}/{len(states)} servers RUNNING, "
            f"{len(deployed_ds)} data sources, {len(deployed_apps)} applications")
    if versions:
        line += f", {', '.join(versions)}"
    if report.requests_per_second is not None:
        line += f", {report.requests_per_second:.1f} req/s"
    # among equals, the order found (servers, threads, heap, JDBC, apps) leads
    return verdict("", report.causes, f"{line} ({cost.seconds * 1000:.0f} ms)",
                   metrics=metrics, details=details)


def _lifecycle_states(document: dict[str, Any]) -> dict[str, str]:
    states = {}
    for item in _items(document, None, required=True):
        name, state = item.get("name"), item.get("state")
        if not isinstance(name, str) or not isinstance(state, str):
            raise _Malformed("a serverLifeCycleRuntimes item without name or state")
        states[name] = state.upper()
    return dict(sorted(states.items()))


def _server(report: _Report, name: str, server: dict[str, Any]) -> None:
    health, subsystem = _health(server.get("healthState"))
    report.metric("weblogic_server_health", _HEALTH_CODES.get(health or "", -1), server=name)
    entry = report.servers.setdefault(name, {"state": str(server.get("state", "")).upper()})
    entry["health"] = health.upper() if health else None
    raw = server.get("weblogicVersion")
    if isinstance(raw, str):
        found = _VERSION.search(raw)
        entry["version"] = found.group(0) if found else raw
        entry["version_string"] = raw
        report.metric("weblogic_server_info", 1, server=name, version=entry["version"])
    where = f" ({subsystem})" if subsystem else ""
    if health in {"critical", "failed"}:
        report.add(Status.CRITICAL, "server_unhealthy",
                     f"WebLogic {name} health {health.upper()}{where}")
    elif health in {"warn", "overloaded"}:
        report.add(Status.WARNING, "server_unhealthy",
                     f"WebLogic {name} health {health.upper()}{where}")


def _threads(check: WeblogicCheck, memory: ProbeMemory, report: _Report, name: str,
             server: dict[str, Any]) -> None:
    pool = server.get("threadPoolRuntime")
    if not isinstance(pool, dict):
        return
    stuck = _number(pool, "stuckThreadCount")
    hogging = _number(pool, "hoggingThreadCount")
    pending = _number(pool, "pendingUserRequestCount")
    completed = _number(pool, "completedRequestCount")
    report.metric("weblogic_threadpool_stuck_threads", stuck, server=name)
    report.metric("weblogic_threadpool_hogging_threads", hogging, server=name)
    report.metric("weblogic_threadpool_pending_requests", pending, server=name)
    report.metric("weblogic_threadpool_idle_threads", _number(pool, "executeThreadIdleCount"),
                  server=name)
    report.metric("weblogic_threadpool_threads", _number(pool, "executeThreadTotalCount"),
                  server=name)
    report.metric("weblogic_threadpool_throughput_requests_per_second",
                  _number(pool, "throughput"), server=name)
    report.metric("weblogic_threadpool_completed_requests_total", completed, server=name)
    if completed is not None:
        key = f"server/{name}/completed_requests"
        report.counters.add(key)
        rate = memory.rate(key, completed)
        if rate is not None:
            report.metric("weblogic_threadpool_requests_per_second", rate.per_second,
                          server=name)
            report.requests_per_second = (report.requests_per_second or 0.0) + rate.per_second
    for value, threshold, reason, label in (
            (stuck, check.stuck_threads, "stuck_threads", "stuck threads"),
            (hogging, check.hogging_threads, "hogging_threads", "hogging threads"),
            (pending, check.pending_requests, "requests_queued", "queued requests")):
        if value is not None:
            report.add(threshold.evaluate(value), reason,
                         f"WebLogic {name} {label}={value:g}")


def _heap(check: WeblogicCheck, report: _Report, name: str, server: dict[str, Any]) -> None:
    jvm = server.get("JVMRuntime")
    if not isinstance(jvm, dict):
        return
    size, free = _number(jvm, "heapSizeCurrent"), _number(jvm, "heapFreeCurrent")
    limit = _number(jvm, "heapSizeMax") or size
    report.metric("weblogic_jvm_heap_committed_bytes", size, server=name)
    report.metric("weblogic_jvm_heap_max_bytes", limit, server=name)
    if size is None or free is None:
        return
    used = max(size - free, 0.0)
    report.metric("weblogic_jvm_heap_used_bytes", used, server=name)
    if limit:
        ratio = used / limit
        report.metric("weblogic_jvm_heap_used_ratio", ratio, server=name)
        report.add(check.heap_used_ratio.evaluate(ratio), "heap_high",
                     f"WebLogic {name} heap {ratio:.0%} of {limit / 2**20:.0f} MiB")


def _datasources(check: WeblogicCheck, memory: ProbeMemory, report: _Report, name: str,
                 server: dict[str, Any], max_capacity: dict[str, float]) -> None:
    service = server.get("JDBCServiceRuntime")
    if not isinstance(service, dict):
        return
    found: dict[str, Any] = {}
    for item in _items(service, "JDBCDataSourceRuntimeMBeans"):
        ds = item.get("name")
        if not isinstance(ds, str):
            continue
        labels = {"server": name, "datasource": ds}
        state = str(item.get("state", "Unknown"))
        active = _number(item, "activeConnectionsCurrentCount")
        waiting = _number(item, "waitingForConnectionCurrentCount")
        failures = _number(item, "failuresToReconnectCount")
        found[ds] = {"state": state, "active": active, "waiting": waiting}
        report.metric("weblogic_jdbc_state", 1, **labels, state=state)
        report.metric("weblogic_jdbc_active_connections", active, **labels)
        report.metric("weblogic_jdbc_waiting_connections", waiting, **labels)
        report.metric("weblogic_jdbc_capacity_connections", _number(item, "currCapacity"),
                      **labels)
        report.metric("weblogic_jdbc_failures_to_reconnect_total", failures, **labels)
        report.metric("weblogic_jdbc_leaked_connections_total",
                      _number(item, "leakedConnectionCount"), **labels)
        where = f"on {name}"
        if state.lower() == "overloaded":
            report.add(Status.CRITICAL, "datasource_exhausted",
                         f"JDBC {ds} Overloaded {where}")
        elif state.lower() != "running":
            report.add(Status.CRITICAL, "datasource_down", f"JDBC {ds} {state} {where}")
        if waiting is not None:
            report.add(check.jdbc_waiting.evaluate(waiting), "datasource_exhausted",
                         f"JDBC {ds} waiting={waiting:g} {where}")
        limit = max_capacity.get(ds)
        if limit and active is not None:
            report.metric("weblogic_jdbc_max_capacity_connections", limit, **labels)
            report.metric("weblogic_jdbc_active_ratio", active / limit, **labels)
            report.add(check.jdbc_active_ratio.evaluate(active / limit),
                         "datasource_exhausted", f"JDBC {ds} active={active:g}/{limit:g} {where}")
        if failures is not None:
            key = f"jdbc/{name}/{ds}/failures_to_reconnect"
            report.counters.add(key)
            rate = memory.rate(key, failures)
            if rate is not None:
                found[ds]["failed_reconnects_since_last_run"] = rate.delta
                report.add(check.jdbc_reconnect_failures.evaluate(rate.delta),
                             "datasource_reconnect_failures",
                             f"JDBC {ds} {rate.delta:g} failed reconnects {where}")
    report.datasources[name] = found


def _applications(report: _Report, name: str, server: dict[str, Any]) -> None:
    apps = [app for app in _items(server, "applicationRuntimes")
            if isinstance(app.get("name"), str) and app.get("internal") is not True]
    # A redeployed versioned application keeps its old version INACTIVE while it retires.
    active_names = {app.get("applicationName") or app["name"] for app in apps
                    if app.get("activeVersionState") == 2}
    found: dict[str, str] = {}
    for app in apps:
        app_name: str = app["name"]
        code = app.get("activeVersionState")
        state = _ACTIVE_VERSION_STATES.get(code, "UNKNOWN") if isinstance(code, int) else (
            "UNKNOWN")
        health, _subsystem = _health(app.get("healthState"))
        found[app_name] = state
        report.application_names.update({app_name, app.get("applicationName") or app_name})
        labels = {"server": name, "application": app_name}
        report.metric("weblogic_application_active", 1 if state == "ACTIVE" else 0, **labels)
        report.metric("weblogic_application_health", _HEALTH_CODES.get(health or "", -1),
                      **labels)
        retiring = state == "INACTIVE" and (app.get("applicationName") or app_name) in (
            active_names)
        if state != "ACTIVE" and not retiring:
            report.add(Status.CRITICAL, "application_down",
                         f"App {app_name} {state} on {name}")
        if health in {"critical", "failed"}:
            report.add(Status.CRITICAL, "application_unhealthy",
                         f"App {app_name} health {health.upper()} on {name}")
        elif health in {"warn", "overloaded"}:
            report.add(Status.WARNING, "application_unhealthy",
                         f"App {app_name} health {health.upper()} on {name}")
    report.applications[name] = found


def _max_capacities(document: dict[str, Any]) -> dict[str, float]:
    limits = {}
    for resource in _items(document, "JDBCSystemResources"):
        jdbc = resource.get("JDBCResource")
        params = jdbc.get("JDBCConnectionPoolParams") if isinstance(jdbc, dict) else None
        limit = _number(params, "maxCapacity") if isinstance(params, dict) else None
        if isinstance(resource.get("name"), str) and limit:
            limits[resource["name"]] = limit
    return limits


def _items(document: dict[str, Any], key: str | None, *, required: bool = False
           ) -> list[dict[str, Any]]:
    """The objects of a REST collection (`{"items": [...]}`), at `key` or at the top."""
    node = document.get(key) if key is not None else document
    items = node.get("items") if isinstance(node, dict) else None
    if not isinstance(items, list):
        if required:
            raise _Malformed(f"no {key or 'items'} collection")
        return []
    return [item for item in items if isinstance(item, dict)]


def _number(node: dict[str, Any], key: str) -> float | None:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _health(value: Any) -> tuple[str | None, str | None]:
    """(state in lower case, subsystem) of a HealthState: `{"state": "ok", ...}` in REST,
    `HEALTH_OK` or `OK` in other renderings."""
    if isinstance(value, dict):
        state, subsystem = value.get("state"), value.get("subsystemName")
    else:
        state, subsystem = value, None
    if not isinstance(state, str):
        return None, None
    state = state.lower().removeprefix("health_")
    return state, subsystem if isinstance(subsystem, str) and subsystem else None
