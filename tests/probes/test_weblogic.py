"""weblogic probe against a local aiohttp admin server that serves the REST resources the
probe reads (tests/probes/fixtures/weblogic/, shaped per Oracle's 12.2.1.4 and 14.1.1 REST
reference), applies the probe's search query to them as WebLogic does, enforces basic auth and
`X-Requested-By`, and can be switched to a failed server, stuck threads, an exhausted pool, a
stopped application, 403, 404 or garbage. Plus a closed port, a silent one and HTTPS."""

from __future__ import annotations

import base64
import json
import re
import ssl
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from agent.runner import run_check
from probes.memory import ProbeMemory
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from probes.weblogic import METRICS, WeblogicCheck, probe
from tests.services import free_port
from tests.weblogic import (
    API,
    PASSWORD,
    USER,
    AdminServer,
    serve,
)


@pytest.fixture(params=["12.2.1.4", "14.1.1"])
async def wls(request: pytest.FixtureRequest) -> AsyncIterator[AdminServer]:
    admin = AdminServer()
    admin.use(request.param)
    async with serve(admin) as running:
        yield running


@pytest.fixture
async def wls14() -> AsyncIterator[AdminServer]:
    admin = AdminServer()
    admin.use("14.1.1")
    async with serve(admin) as running:
        yield running


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "wls-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def closed_port() -> int:
    return free_port()


def check(url: str, password_file: Path, **kw: Any) -> WeblogicCheck:
    return WeblogicCheck.model_validate({"id": "emr-wls", "kind": "weblogic", "url": url,
                                         "username": USER, "password_file": str(password_file),
                                         **kw})


def value(res: ProbeResult, name: str, **labels: str) -> float:
    [found] = [m.value for m in res.metrics
               if m.name == name and labels.items() <= m.labels.items()]
    return found


def no_secret(res: ProbeResult) -> None:
    assert PASSWORD not in res.summary and PASSWORD not in json.dumps(res.details)
    assert PASSWORD not in str(res.metrics)


# --- a healthy domain, both versions ------------------------------------------------------


async def test_healthy_domain(wls: AdminServer, password_file: Path) -> None:
    res = await probe(check(wls.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert res.summary.startswith("WebLogic emr_domain: 3/3 servers RUNNING, 2 data sources, "
                                  "2 applications")
    version = "12.2.1.4.0" if "12.2.1.4" in json.dumps(wls.runtime) else "14.1.1.0.0"
    assert res.details["version"] == version
    assert res.details["servers"]["EMR_Server1"] == {
        "state": "RUNNING", "health": "OK", "version": version,
        "version_string": wls.server("EMR_Server1")["weblogicVersion"]}
    assert res.details["datasources"]["EMR_Server1"]["EMRDS"] == {
        "state": "Running", "active": 6.0, "waiting": 0.0}
    # internal applications are left out; a retiring version is not a failure (14.1.1)
    assert "bea_wls_internal" not in res.details["applications"]["EMR_Server1"]
    assert {m.name for m in res.metrics} <= set(METRICS)
    assert value(res, "weblogic_server_state", server="EMR_Server2", state="RUNNING") == 1
    assert value(res, "weblogic_server_health", server="AdminServer") == 0
    assert value(res, "weblogic_server_info", server="EMR_Server1", version=version) == 1
    assert value(res, "weblogic_threadpool_stuck_threads", server="EMR_Server1") == 0
    assert value(res, "weblogic_jvm_heap_used_bytes", server="EMR_Server1") == 536870912
    assert value(res, "weblogic_jvm_heap_used_ratio", server="EMR_Server1") == 0.25
    assert value(res, "weblogic_jdbc_active_connections", server="EMR_Server2",
                 datasource="EMRDS") == 5
    assert value(res, "weblogic_jdbc_state", server="EMR_Server2", datasource="AuditDS",
                 state="Running") == 1
    assert value(res, "weblogic_application_active", server="EMR_Server1",
                 application="hl7-gateway") == 1
    assert value(res, "weblogic_api_requests") == 2
    no_secret(res)
    kind = get_kind("weblogic")
    assert kind.config is WeblogicCheck and kind.metrics is METRICS and kind.remembers


async def test_what_the_admin_server_received(wls14: AdminServer, password_file: Path) -> None:
    await probe(check(wls14.url, password_file), ProbeMemory())
    assert [(s.method, s.path_qs) for s in wls14.seen] == [
        ("GET", f"{API}/domainRuntime/serverLifeCycleRuntimes?links=none&fields=name,state"),
        ("POST", f"{API}/domainRuntime/search")]
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert all(s.headers["Authorization"] == expected for s in wls14.seen)
    assert wls14.seen[1].headers["X-Requested-By"] == "wardwatch"


async def test_versioned_application_retiring_is_not_a_failure(wls14: AdminServer,
                                                               password_file: Path) -> None:
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert res.status is Status.OK, res.summary
    assert res.details["applications"]["EMR_Server2"] == {
        "emr-web#4.2": "ACTIVE", "emr-web#4.1": "INACTIVE", "hl7-gateway": "ACTIVE"}
    # ... but an INACTIVE version without an ACTIVE one is
    wls14.application("EMR_Server2", "emr-web#4.2")["activeVersionState"] = 0
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "application_down")
    assert "App emr-web#4.2 INACTIVE on EMR_Server2" in res.summary


async def test_base_url_path_prefix_is_kept(password_file: Path) -> None:
    admin = AdminServer()
    admin.use("12.2.1.4")
    async with serve(admin, prefix="/wls-admin") as running:
        for url in (running.url, running.url + "/"):
            res = await probe(check(url, password_file), ProbeMemory())
            assert res.status is Status.OK, res.summary
    assert all(s.path_qs.startswith("/wls-admin/management/") for s in admin.seen)


# --- servers ---------------------------------------------------------------------------------


async def test_failed_server_is_critical_although_absent_from_server_runtimes(
        wls: AdminServer, password_file: Path) -> None:
    wls.set_state("EMR_Server2", "FAILED")
    res = await probe(check(wls.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "server_down")
    assert res.summary == "WebLogic EMR_Server2 FAILED"
    assert value(res, "weblogic_server_state", server="EMR_Server2", state="FAILED") == 1
    assert res.details["servers"]["EMR_Server2"] == {"state": "FAILED"}
    no_secret(res)


@pytest.mark.parametrize("state", ["SHUTDOWN", "FAILED_NOT_RESTARTABLE", "ADMIN", "STARTING",
                                   "SUSPENDING", "UNKNOWN"])
async def test_any_state_but_running_is_down(wls14: AdminServer, password_file: Path,
                                             state: str) -> None:
    wls14.set_state("EMR_Server1", state)
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason, res.summary) == (
        Status.CRITICAL, "server_down", f"WebLogic EMR_Server1 {state}")


async def test_ignored_and_required_servers(wls14: AdminServer, password_file: Path) -> None:
    wls14.lifecycle["items"].append({"name": "EMR_Spare", "state": "SHUTDOWN"})
    assert (await probe(check(wls14.url, password_file), ProbeMemory())).reason == "server_down"
    res = await probe(check(wls14.url, password_file, ignore_servers=["EMR_Spare"]),
                      ProbeMemory())
    assert res.status is Status.OK, res.summary
    assert "3/4 servers RUNNING" in res.summary
    res = await probe(check(wls14.url, password_file, ignore_servers=["EMR_Spare"],
                            servers=["EMR_Server1", "EMR_Server3"]), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "server_down")
    assert res.summary == "WebLogic EMR_Server3 not in the domain"


async def test_running_server_without_runtime_is_a_warning(wls14: AdminServer,
                                                           password_file: Path) -> None:
    servers = wls14.runtime["serverRuntimes"]["items"]
    wls14.runtime["serverRuntimes"]["items"] = [s for s in servers if s["name"] != "EMR_Server2"]
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.WARNING, "server_unreachable")


@pytest.mark.parametrize(("health", "status"), [
    ("critical", Status.CRITICAL), ("FAILED", Status.CRITICAL), ("HEALTH_FAILED", Status.CRITICAL),
    ("warn", Status.WARNING), ("OVERLOADED", Status.WARNING), ("OK", Status.OK),
])
async def test_health_is_compared_case_insensitively(wls14: AdminServer, password_file: Path,
                                                     health: str, status: Status) -> None:
    wls14.server("EMR_Server1")["healthState"] = {"state": health, "subsystemName": "JTA",
                                                  "partitionName": None, "symptoms": []}
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert res.status is status, res.summary
    if status is not Status.OK:
        assert res.reason == "server_unhealthy"
        shown = health.upper().removeprefix("HEALTH_")
        assert res.summary == f"WebLogic EMR_Server1 health {shown} (JTA)"


# --- threads and heap -----------------------------------------------------------------------


@pytest.mark.parametrize(("stuck", "status"), [(0, Status.OK), (3, Status.WARNING),
                                               (6, Status.CRITICAL)])
async def test_stuck_threads(wls: AdminServer, password_file: Path, stuck: int,
                             status: Status) -> None:
    wls.server("EMR_Server2")["threadPoolRuntime"]["stuckThreadCount"] = stuck
    res = await probe(check(wls.url, password_file), ProbeMemory())
    assert res.status is status, res.summary
    assert value(res, "weblogic_threadpool_stuck_threads", server="EMR_Server2") == stuck
    if stuck:
        assert (res.reason, res.summary) == ("stuck_threads",
                                             f"WebLogic EMR_Server2 stuck threads={stuck}")


async def test_hogging_threads_and_queued_requests_have_levels(wls14: AdminServer,
                                                               password_file: Path) -> None:
    pool = wls14.server("EMR_Server1")["threadPoolRuntime"]
    pool.update(hoggingThreadCount=12, pendingUserRequestCount=80)
    assert (await probe(check(wls14.url, password_file), ProbeMemory())).status is Status.OK
    res = await probe(check(wls14.url, password_file, hogging_threads={"warning": 10},
                            pending_requests={"warning": 20, "critical": 50}), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "requests_queued")
    assert res.summary == ("WebLogic EMR_Server1 queued requests=80; "
                           "WebLogic EMR_Server1 hogging threads=12")


async def test_heap_high(wls14: AdminServer, password_file: Path) -> None:
    jvm = wls14.server("AdminServer")["JVMRuntime"]
    jvm.update(heapSizeCurrent=1073741824, heapFreeCurrent=21474836, heapSizeMax=1073741824)
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.WARNING, "heap_high")
    assert res.summary == "WebLogic AdminServer heap 98% of 1024 MiB"
    res = await probe(check(wls14.url, password_file, heap_used_ratio={"critical": 0.97}),
                      ProbeMemory())
    assert res.status is Status.CRITICAL


# --- JDBC ---------------------------------------------------------------------------------


async def test_jdbc_pool_exhausted(wls: AdminServer, password_file: Path) -> None:
    wls.datasource("EMR_Server1", "EMRDS").update(activeConnectionsCurrentCount=20,
                                                   waitingForConnectionCurrentCount=37)
    res = await probe(check(wls.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "datasource_exhausted")
    assert res.summary == "JDBC EMRDS waiting=37 on EMR_Server1"
    assert value(res, "weblogic_jdbc_waiting_connections", server="EMR_Server1",
                 datasource="EMRDS") == 37


@pytest.mark.parametrize(("state", "reason"), [("Suspended", "datasource_down"),
                                               ("Shutdown", "datasource_down"),
                                               ("Overloaded", "datasource_exhausted"),
                                               ("RUNNING", "ok")])
async def test_jdbc_state(wls14: AdminServer, password_file: Path, state: str,
                          reason: str) -> None:
    wls14.datasource("EMR_Server2", "AuditDS")["state"] = state
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert res.reason == reason, res.summary
    if reason != "ok":
        assert res.status is Status.CRITICAL
        assert res.summary == f"JDBC AuditDS {state} on EMR_Server2"


async def test_jdbc_active_ratio_reads_max_capacity(wls14: AdminServer,
                                                    password_file: Path) -> None:
    wls14.datasource("EMR_Server1", "EMRDS").update(activeConnectionsCurrentCount=46,
                                                     currCapacity=48)
    res = await probe(check(wls14.url, password_file,
                            jdbc_active_ratio={"warning": 0.8, "critical": 0.95}),
                      ProbeMemory())
    assert (res.status, res.reason) == (Status.WARNING, "datasource_exhausted")
    assert res.summary == "JDBC EMRDS active=46/50 on EMR_Server1"
    assert value(res, "weblogic_jdbc_max_capacity_connections", server="EMR_Server1",
                 datasource="EMRDS") == 50
    assert value(res, "weblogic_jdbc_active_ratio", server="EMR_Server1",
                 datasource="EMRDS") == 0.92
    assert [s.path_qs for s in wls14.seen][-1] == f"{API}/domainConfig/search"
    assert value(res, "weblogic_api_requests") == 3


async def test_required_datasources_and_applications(wls14: AdminServer,
                                                     password_file: Path) -> None:
    res = await probe(check(wls14.url, password_file, datasources=["EMRDS", "PacsDS"],
                            applications=["hl7-gateway", "pacs-viewer"]), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "datasource_down")
    assert res.summary == ("JDBC PacsDS not deployed on any running server; "
                           "App pacs-viewer not deployed on any running server")


async def test_rates_across_two_runs(wls14: AdminServer, password_file: Path) -> None:
    memory = ProbeMemory()
    first = await probe(check(wls14.url, password_file), memory)
    assert first.status is Status.OK, first.summary
    assert "req/s" not in first.summary
    assert first.details["rates"].startswith("none yet")
    assert not [m for m in first.metrics if m.name == "weblogic_threadpool_requests_per_second"]

    wls14.server("EMR_Server1")["threadPoolRuntime"]["completedRequestCount"] += 500
    wls14.datasource("EMR_Server1", "EMRDS")["failuresToReconnectCount"] += 3
    second = await probe(check(wls14.url, password_file), memory)
    assert (second.status, second.reason) == (Status.WARNING, "datasource_reconnect_failures")
    assert second.summary == "JDBC EMRDS 3 failed reconnects on EMR_Server1"
    assert second.details["datasources"]["EMR_Server1"]["EMRDS"][
        "failed_reconnects_since_last_run"] == 3
    assert value(second, "weblogic_threadpool_requests_per_second", server="EMR_Server1") > 0
    assert value(second, "weblogic_threadpool_requests_per_second", server="EMR_Server2") == 0
    assert "rates" not in second.details

    # a restarted server's counters start again at 0: no rate, no alarm
    wls14.datasource("EMR_Server1", "EMRDS")["failuresToReconnectCount"] = 0
    third = await probe(check(wls14.url, password_file), memory)
    assert third.status is Status.OK, third.summary


# --- applications ---------------------------------------------------------------------------


async def test_application_stopped(wls: AdminServer, password_file: Path) -> None:
    wls.application("EMR_Server2", "hl7-gateway")["activeVersionState"] = 0
    res = await probe(check(wls.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "application_down")
    assert res.summary == "App hl7-gateway INACTIVE on EMR_Server2"
    assert value(res, "weblogic_application_active", server="EMR_Server2",
                 application="hl7-gateway") == 0


async def test_application_health(wls14: AdminServer, password_file: Path) -> None:
    wls14.application("EMR_Server1", "hl7-gateway")["healthState"]["state"] = "warn"
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.WARNING, "application_unhealthy")
    assert res.summary == "App hl7-gateway health WARN on EMR_Server1"


# --- one incident, several causes ---------------------------------------------------------


async def test_incident_worst_cause_first(password_file: Path) -> None:
    admin = AdminServer()
    admin.use("incident-14.1.1")
    async with serve(admin):
        memory = ProbeMemory()
        res = await probe(check(admin.url, password_file), memory)
    assert (res.status, res.reason) == (Status.CRITICAL, "server_down")
    assert res.summary == (
        "WebLogic EMR_Server2 FAILED_NOT_RESTARTABLE; JDBC EMRDS waiting=37 on EMR_Server1; "
        "WebLogic EMR_Server1 health WARN (ThreadPool); WebLogic EMR_Server1 stuck threads=3")
    assert "\n" not in res.summary
    no_secret(res)


async def test_summary_is_capped(wls14: AdminServer, password_file: Path) -> None:
    for server in ("EMR_Server1", "EMR_Server2"):
        for app in wls14.server(server)["applicationRuntimes"]["items"]:
            app["activeVersionState"] = 0
        for n in range(12):
            wls14.server(server)["applicationRuntimes"]["items"].append(
                {"name": f"ward-app-{n:02d}", "activeVersionState": 1,
                 "healthState": {"state": "ok"}})
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert res.reason == "application_down"
    assert len(res.summary) <= 320, res.summary
    assert re.search(r"; and \d+ more$", res.summary), res.summary
    shown = res.summary.count("; ")
    left = int(res.summary.rsplit("; and ", 1)[1].split()[0])
    assert shown + left == 30


# --- failures of the admin server ---------------------------------------------------------


async def test_wrong_password_is_auth_failed(wls14: AdminServer, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    res = await probe(check(wls14.url, wrong), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "auth_failed")
    assert f"user {USER!r}" in res.summary and "Monitor role" in res.summary
    assert "not-the-password" not in res.summary + json.dumps(res.details)


async def test_no_credentials_is_auth_failed(wls14: AdminServer) -> None:
    res = await probe(WeblogicCheck.model_validate(
        {"id": "x", "kind": "weblogic", "url": wls14.url}), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "auth_failed")
    assert "no username configured" in res.summary


async def test_forbidden_is_auth_failed(wls14: AdminServer, password_file: Path) -> None:
    wls14.answer = 403
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "auth_failed")
    assert res.summary.endswith(f"403: user {USER!r} lacks the Monitor role")
    no_secret(res)


async def test_rest_disabled_is_invalid_response(wls14: AdminServer,
                                                 password_file: Path) -> None:
    wls14.answer = 404
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert "Enable RESTful Management Services" in res.summary
    assert "older than 12.2.1" in res.summary


async def test_admin_server_without_search_is_not_supported(password_file: Path) -> None:
    """12.2.1.0-2: serverLifeCycleRuntimes answers, the search resource does not."""
    admin = AdminServer()
    admin.use("12.2.1.4")
    async with serve(admin, with_search=False):
        res = await probe(check(admin.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert "no search resource; WebLogic before 12.2.1.3 is not supported" in res.summary


@pytest.mark.parametrize("answer", [500, 503])
async def test_server_error_is_invalid_response(wls14: AdminServer, password_file: Path,
                                                answer: int) -> None:
    wls14.answer = answer
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert f"→ {answer}, expected 200" in res.summary


async def test_garbage_json_is_invalid_response(wls14: AdminServer,
                                                password_file: Path) -> None:
    wls14.answer = "garbage"
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert res.summary.endswith("the answer is not JSON")


async def test_json_of_another_shape_is_invalid_response(wls14: AdminServer,
                                                         password_file: Path) -> None:
    wls14.lifecycle = {"serverLifeCycleRuntimes": []}
    res = await probe(check(wls14.url, password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert "no items collection" in res.summary


async def test_unreachable_admin_server(closed_port: int, password_file: Path) -> None:
    res = await probe(check(f"http://127.0.0.1:{closed_port}", password_file), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")
    assert res.summary.startswith("WebLogic admin server: GET http://127.0.0.1:")
    no_secret(res)


async def test_silent_admin_server_is_cut_by_the_runner(hung_port: int,
                                                        password_file: Path) -> None:
    started = time.perf_counter()
    out = await run_check(check(f"http://127.0.0.1:{hung_port}", password_file, timeout=0.5),
                          "agent-1")
    assert (out.status, out.reason) == (Status.CRITICAL, "timeout")
    assert time.perf_counter() - started < 3


async def test_https_with_the_domain_ca(tmp_path: Path, password_file: Path) -> None:
    ca = trustme.CA(organization_name="emr_domain demo CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    admin = AdminServer()
    admin.use("12.2.1.4")
    async with serve(admin, tls=context):
        ok = await probe(check(admin.url, password_file, tls={"ca_file": str(ca_file)}),
                         ProbeMemory())
        untrusted = await probe(check(admin.url, password_file), ProbeMemory())
    assert ok.status is Status.OK, ok.summary
    assert (untrusted.status, untrusted.reason) == (Status.CRITICAL, "tls_error")


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "message"), [
    ({"password_file": "PWFILE"}, "a password needs a username"),
    ({"username": USER}, "username needs password_file or password_env"),
    ({"username": USER, "password": "x"}, "inline passwords are not accepted"),
    ({"url": "wls-admin:7001"}, "must be an absolute http:// or https:// URL"),
    ({"url": "ftp://wls-admin"}, "must be an absolute http:// or https:// URL"),
    ({"url": "http://wls-admin:7001/management/weblogic/latest"}, "base URL"),
    ({"url": "http://wls-admin:7001/?x=1"}, "drop the query"),
    ({"heap_used_ratio": {"warning": 90}}, "is not a ratio"),
    ({"stuck_threads": {"warning": 1, "direction": "below"}}, "direction must be 'above'"),
    ({"servers": [""]}, "names must not be empty"),
    ({"jvm": {}}, "Extra inputs are not permitted"),
])
def test_config_is_validated(kw: dict[str, Any], message: str, password_file: Path) -> None:
    kw = {key: (str(password_file) if v == "PWFILE" else v) for key, v in kw.items()}
    with pytest.raises(ValidationError) as info:
        WeblogicCheck.model_validate({"id": "x", "kind": "weblogic",
                                      "url": "https://wls-admin:7002", **kw})
    assert message in str(info.value)
    assert PASSWORD not in str(info.value)


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WLS_MONITOR_PASSWORD", PASSWORD)
    loaded = WeblogicCheck.model_validate({"id": "x", "kind": "weblogic",
                                           "url": "https://wls-admin:7002", "username": USER,
                                           "password_env": "WLS_MONITOR_PASSWORD"})
    assert loaded.password is not None and loaded.password.get() == PASSWORD
    assert PASSWORD not in repr(loaded) and PASSWORD not in str(loaded.model_dump())
    assert loaded.target == "https://wls-admin:7002"


# --- cost ---------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [False, True], ids=["2-requests", "3-requests"])
async def test_probe_cost_per_run(wls: AdminServer, password_file: Path, capacity: bool
                                  ) -> None:
    """Prints the figures in docs/probes/weblogic.md:
    .venv/bin/pytest -q -s tests/probes/test_weblogic.py -k cost"""
    levels = {"jdbc_active_ratio": {"warning": 0.9}} if capacity else {}
    memory = ProbeMemory()
    walls, api, received = [], [], []
    for _ in range(100):
        wls.seen.clear()
        started = time.perf_counter()
        res = await probe(check(wls.url, password_file, **levels), memory)
        walls.append((time.perf_counter() - started) * 1000)
        assert res.status is Status.OK, res.summary
        api.append(value(res, "weblogic_api_duration_seconds") * 1000)
        received.append(value(res, "weblogic_api_response_bytes"))
    sent = sum(int(s.headers.get("Content-Length", 0)) for s in wls.seen)
    unfiltered = len(json.dumps(wls.runtime)) + len(json.dumps(wls.lifecycle))
    version = wls.server("AdminServer")["weblogicVersion"].split()[2]
    print(f"\nweblogic {version}, {len(wls.seen)} requests/run: received "
          f"{statistics.median(received):.0f} body bytes (the fixtures unfiltered: "
          f"{unfiltered}), sent {sent} body bytes; API time median "
          f"{statistics.median(api):.1f} ms, p95 {sorted(api)[94]:.1f} ms; whole probe median "
          f"{statistics.median(walls):.1f} ms, p95 {sorted(walls)[94]:.1f} ms (100 runs)")
    assert len(wls.seen) == (3 if capacity else 2)
    assert max(received) < 16_000
