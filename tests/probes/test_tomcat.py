"""tomcat probe against Debian's real tomcat10 + tomcat10-admin (one JVM for the session, see
tests/tomcat.py): healthy, overloaded by a bounded set of slow requests, a stopped webapp,
an error burst, wrong credentials and missing roles, a server that is down. The parsers are
also run on recorded / documented pages of Tomcat 10.1, 9.0 and 8.5
(tests/probes/fixtures/tomcat/), and an aiohttp stand-in serves those pages and broken ones."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.runner import run_check
from probes.memory import ProbeMemory
from probes.registry import get_kind
from probes.result import Metric, ProbeResult, Status
from probes.tomcat import (
    METRICS,
    InvalidDocument,
    TomcatCheck,
    parse_list,
    parse_serverinfo,
    parse_status,
    probe,
)
from tests.services import free_port, stop_process
from tests.tomcat import ADMIN, NO_ROLES, STATUS_ONLY, Tomcat, start_tomcat

FIXTURES = Path(__file__).parent / "fixtures" / "tomcat"


def fixture(name: str) -> str:
    """A fixture page without its `# ` header lines."""
    text = (FIXTURES / name).read_text()
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# "))


@pytest.fixture(scope="session")
def tomcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomcat]:
    proc, server = start_tomcat(tmp_path_factory.mktemp("tomcat"))
    try:
        yield server
    finally:
        stop_process(proc)


def make_check(url: str, user: str | None = None, password_file: Path | None = None,
               **extra: Any) -> TomcatCheck:
    data: dict[str, Any] = {"id": "tomcat-test", "kind": "tomcat", "url": url, **extra}
    if user is not None:
        data |= {"username": user, "password_file": str(password_file)}
    return TomcatCheck.model_validate(data)


def as_user(server: Tomcat, user: str = ADMIN, **extra: Any) -> TomcatCheck:
    return make_check(server.base_url, user, server.password_file(user), **extra)


def metric(outcome: ProbeResult, name: str, **labels: str) -> float:
    found = [m.value for m in outcome.metrics
             if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def connector_labels(outcome: ProbeResult) -> set[str]:
    return {m.labels["connector"] for m in outcome.metrics if "connector" in m.labels}


def leaked(outcome: ProbeResult, server: Tomcat, user: str = ADMIN) -> bool:
    return server.password_file(user).read_text().strip() in outcome.model_dump_json()


# --- parsers on recorded and documented pages ------------------------------------------------


def test_status_tomcat_10_1_recorded() -> None:
    status = parse_status(fixture("tomcat-10.1-status.xml").encode())
    (conn,) = status.connectors
    assert conn.name.startswith("http-nio-127.0.0.1-")  # quotes stripped
    assert (conn.max_threads, conn.busy_threads, conn.requests) == (10, 1, 2)
    assert status.heap is not None and status.heap.used == 129761280 - 117205016
    metaspace = next(p for p in status.pools if p.name == "Metaspace")
    assert metaspace.max is None and metaspace.type == "Non-heap memory"


def test_status_tomcat_9_0_both_quote_styles() -> None:
    status = parse_status(fixture("tomcat-9.0-status.xml").encode())
    assert [c.name for c in status.connectors] == ["http-nio-8080", "ajp-nio-127.0.0.1-8009"]
    http = status.connectors[0]
    assert (http.busy_threads, http.max_threads, http.errors, http.max_time_ms) == (
        190, 200, 17, 30512)


def test_status_tomcat_8_5() -> None:
    status = parse_status(fixture("tomcat-8.5-status.xml").encode())
    assert [p.name for p in status.pools][:3] == ["Par Eden Space", "Par Survivor Space",
                                                  "CMS Old Gen"]
    assert status.connectors[0].errors == 494


@pytest.mark.parametrize(("name", "server_info", "version", "jvm"), [
    ("tomcat-10.1-serverinfo.txt", "Apache Tomcat/10.1.60 (Debian)", "10.1.60",
     "17.0.15+6-Debian-1deb12u1"),
    ("tomcat-9.0-serverinfo.txt", "Apache Tomcat/9.0.83", "9.0.83",
     "11.0.21+9-post-Debian-1deb11u1"),
    ("tomcat-8.5-serverinfo.txt", "Apache Tomcat/8.5.100", "8.5.100", "1.8.0_392-b08"),
])
def test_serverinfo_with_and_without_brackets(name: str, server_info: str, version: str,
                                              jvm: str) -> None:
    info = parse_serverinfo(fixture(name))
    assert info["tomcat_server_info"] == server_info
    assert info["tomcat_version"] == version
    assert info["jvm_version"] == jvm
    assert {"os_name", "os_version", "os_architecture", "jvm_vendor"} <= set(info)


def test_list_versions() -> None:
    recorded = {app.path: app for app in parse_list(fixture("tomcat-10.1-list.txt"))}
    assert not recorded["/stopme"].running and recorded["/slow"].sessions == 1
    documented = {app.path: app for app in parse_list(fixture("tomcat-9.0-list.txt"))}
    assert documented["/pacs"].running and documented["/pacs"].sessions == 12  # C:\ docbase
    assert not documented["/emr"].running
    assert [a.path for a in parse_list(fixture("tomcat-8.5-list.txt"))] == ["/manager", "/his",
                                                                            "/"]


@pytest.mark.parametrize(("body", "words"), [
    (b"<html><body>login</body></html>", "root element is <html>"),
    (b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><status>&a;</status>", "DTD"),
    (b"<status><connector name='x'>", "not XML"),
    (b"<status><connector name='\"c\"'><threadInfo maxThreads='ten'/><requestInfo/>"
     b"</connector></status>", "maxThreads='ten' is not a number"),
])
def test_status_refuses_what_the_manager_never_writes(body: bytes, words: str) -> None:
    with pytest.raises(InvalidDocument, match=re.escape(words)):
        parse_status(body)


def test_text_pages_refuse_fail_and_garbage() -> None:
    with pytest.raises(InvalidDocument, match="FAIL - Unknown command"):
        parse_list("FAIL - Unknown command [/lst]\n")
    with pytest.raises(InvalidDocument, match="not a manager text reply"):
        parse_serverinfo("<html>proxy login</html>")


# --- config ----------------------------------------------------------------------------------


def test_config_and_registry(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    check = make_check("http://tomcat.example:8080", "wardwatch", secret,
                       manager_path="/mgr/", webapps=["/emr", "/"])
    assert check.manager_path == "/mgr" and check.password is not None
    assert "s3cret" not in repr(check) and "s3cret" not in check.model_dump_json()
    with pytest.raises(ValidationError, match="inline passwords"):
        make_check("http://t:8080", password="x", username="u")
    with pytest.raises(ValidationError, match="manager_path"):
        make_check("http://t:8080", manager_path="manager")
    with pytest.raises(ValidationError, match="context path"):
        make_check("http://t:8080", webapps=["emr"])
    with pytest.raises(ValidationError, match="webapps needs read_list"):
        make_check("http://t:8080", webapps=["/emr"], read_list=False)
    kind = get_kind("tomcat")
    assert kind.config is TomcatCheck and kind.remembers and kind.metrics is METRICS


# --- a stand-in manager serving fixture pages and broken ones --------------------------------


Answer = tuple[int, str]


@contextlib.asynccontextmanager
async def stand_in(pages: dict[str, Answer | list[Answer]]) -> AsyncIterator[str]:
    """An aiohttp server answering `/manager/<page>` with (status, body); a list of answers
    is given in turn, its last one repeated."""
    async def answer(request: web.Request) -> web.Response:
        found = pages.get(request.match_info["page"], (404, "not here"))
        if isinstance(found, list):
            found = found.pop(0) if len(found) > 1 else found[0]
        status, body = found
        return web.Response(status=status, text=body)

    app = web.Application()
    app.router.add_get("/manager/{page:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_tomcat_9_pages_worst_cause_first() -> None:
    pages = {"status": (200, fixture("tomcat-9.0-status.xml")),
             "text/serverinfo": (200, fixture("tomcat-9.0-serverinfo.txt")),
             "text/list": (200, fixture("tomcat-9.0-list.txt"))}
    async with stand_in(pages) as url:
        outcome = await probe(make_check(url), ProbeMemory())
    # 190/200 busy is 0.95 (critical) and /emr is stopped (critical): both named, in order.
    assert outcome.status is Status.CRITICAL and outcome.reason == "threads_busy"
    assert outcome.summary == "Tomcat http-nio-8080 busy 190/200 threads; /emr stopped"
    assert outcome.details["tomcat_version"] == "9.0.83"
    assert metric(outcome, "tomcat_connector_threads_busy", connector="http-nio-8080") == 190
    assert metric(outcome, "tomcat_webapp_running", webapp="/emr") == 0
    assert metric(outcome, "tomcat_webapp_sessions", webapp="/pacs") == 12


@pytest.mark.parametrize(("pages", "reason", "words"), [
    ({"status": (200, "<html><head><title>SSO login</title></head></html>")},
     "invalid_response", "root element is <html>"),
    ({"status": (200, "<!DOCTYPE html><html></html>")}, "invalid_response", "DTD"),
    ({}, "unexpected_status", "404: no manager there"),
    ({"status": (500, "boom")}, "unexpected_status", "answered 500"),
])
async def test_broken_managers(pages: dict[str, Answer | list[Answer]], reason: str,
                               words: str) -> None:
    async with stand_in(pages) as url:
        outcome = await probe(make_check(url), ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, reason)
    assert words in outcome.summary


async def test_status_page_read_again_after_a_500_once() -> None:
    """Tomcat's status servlet throws ConcurrentModificationException while connections
    open (seen in test_overloaded_by_slow_requests): one second read, and it shows."""
    cme = (500, "<h1>HTTP Status 500</h1><p>java.util.ConcurrentModificationException</p>")
    good = (200, fixture("tomcat-8.5-status.xml"))
    async with stand_in({"status": [cme, good]}) as url:
        recovered = await probe(make_check(url, read_list=False, read_serverinfo=False),
                                ProbeMemory())
    async with stand_in({"status": [cme, cme, good]}) as url:
        failed = await probe(make_check(url, read_list=False, read_serverinfo=False),
                             ProbeMemory())
    assert recovered.status is Status.OK
    assert recovered.details["status_page_retried"] == (
        "first answer 500 (ConcurrentModificationException)")
    assert recovered.details["probe_cost"]["requests"] == 2
    assert (failed.status, failed.reason) == (Status.CRITICAL, "unexpected_status")


async def test_garbled_list_is_critical_only_when_webapps_are_required() -> None:
    pages = {"status": (200, fixture("tomcat-8.5-status.xml")),
             "text/serverinfo": (200, fixture("tomcat-8.5-serverinfo.txt")),
             "text/list": (200, "FAIL - Encountered exception\n")}
    async with stand_in(pages) as url:
        optional = await probe(make_check(url), ProbeMemory())
        required = await probe(make_check(url, webapps=["/his"]), ProbeMemory())
    assert optional.status is Status.OK and "list not read" in optional.summary
    assert "FAIL - Encountered exception" in optional.details["not_read"]["list"]
    assert (required.status, required.reason) == (Status.CRITICAL, "invalid_response")


# --- the real Tomcat -------------------------------------------------------------------------


async def test_healthy_first_run_has_no_rates_second_has(tomcat: Tomcat) -> None:
    check = as_user(tomcat)
    memory = ProbeMemory()
    first = await probe(check, memory)
    assert (first.status, first.reason) == (Status.OK, "ok"), first.summary
    assert first.summary.startswith("Tomcat 10.1.")
    assert "rates from the next run" in first.summary
    assert not any(m.name == "tomcat_connector_requests_per_second" for m in first.metrics)
    assert first.details["tomcat_server_info"].startswith("Apache Tomcat/10.1")
    assert first.details["jvm_version"] and first.details["os_name"] == "Linux"
    assert first.details["webapps"]["/stopme"] == {"state": "running", "sessions": 0}
    assert first.details["probe_cost"]["requests"] == 3

    second = await probe(check, memory)
    assert second.status is Status.OK
    (name,) = connector_labels(second)
    assert name == f"http-nio-127.0.0.1-{tomcat.port}"
    assert metric(second, "tomcat_connector_threads_max", connector=name) == tomcat.max_threads
    assert metric(second, "tomcat_connector_requests_per_second", connector=name) > 0
    assert metric(second, "tomcat_connector_error_ratio", connector=name) == 0
    assert metric(second, "tomcat_jvm_memory_bytes", area="max") > 64 << 20
    assert metric(second, "tomcat_webapp_running", webapp="/manager") == 1
    assert any(m.name == "tomcat_jvm_memory_pool_used_bytes" for m in second.metrics)
    assert {m.name for m in second.metrics} <= set(METRICS)
    assert not leaked(second, tomcat)


async def test_through_the_runner(tomcat: Tomcat) -> None:
    outcome = await run_check(as_user(tomcat), "agent-1", ProbeMemory())
    assert (outcome.kind, outcome.status, outcome.target) == ("tomcat", Status.OK,
                                                              tomcat.base_url)


async def test_overloaded_by_slow_requests(tomcat: Tomcat) -> None:
    """maxThreads - 1 requests sleeping 3 s each, plus the probe's own: every thread busy."""
    slow = tomcat.max_threads - 1
    url = f"{tomcat.base_url}/slow/sleep.jsp?ms=3000"
    loop = asyncio.get_running_loop()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=slow),
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        async def hold() -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status

        tasks = [asyncio.create_task(hold()) for _ in range(slow)]
        try:
            deadline = loop.time() + 2.5   # well inside the 3 s the requests hold
            while True:  # until all slow requests hold a thread (bounded)
                outcome = await probe(as_user(tomcat), ProbeMemory())
                # 9/10 busy is already a warning: wait for the last slow request to hold its
                # thread too (a loaded CI machine starts them a little apart)
                if outcome.status is Status.CRITICAL or loop.time() > deadline:
                    break
                await asyncio.sleep(0.05)
            warned = await probe(as_user(tomcat, busy_thread_ratio={"warning": 0.5}),
                                 ProbeMemory())
        finally:
            statuses = await asyncio.gather(*tasks)
    assert statuses == [200] * slow
    busy = f"busy {tomcat.max_threads}/{tomcat.max_threads} threads"
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, "threads_busy"), outcome.summary
    assert outcome.summary == f"Tomcat http-nio-127.0.0.1-{tomcat.port} {busy}"
    assert (warned.status, warned.reason) == (Status.WARNING, "threads_busy")


async def test_stopped_webapp_wins_over_a_heap_warning(tomcat: Tomcat) -> None:
    assert tomcat.manage("stop?path=/stopme").startswith("OK")
    try:
        stopped = await probe(as_user(tomcat, heap_used_ratio={"warning": 0.0001}),
                              ProbeMemory())
        not_required = await probe(as_user(tomcat, webapps=["/slow", "/manager"]),
                                   ProbeMemory())
    finally:
        assert tomcat.manage("start?path=/stopme").startswith("OK")
    assert (stopped.status, stopped.reason) == (Status.CRITICAL, "webapp_stopped")
    assert re.fullmatch(r"Tomcat /stopme stopped; heap \d+% used \(\d+ of \d+ MiB\)",
                        stopped.summary), stopped.summary
    assert metric(stopped, "tomcat_webapp_running", webapp="/stopme") == 0
    assert not_required.status is Status.OK


async def test_required_webapp_not_deployed(tomcat: Tomcat) -> None:
    outcome = await probe(as_user(tomcat, webapps=["/emr", "/slow"]), ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, "webapp_missing")
    assert outcome.summary == "Tomcat /emr not deployed"


async def test_error_rate_between_runs(tomcat: Tomcat) -> None:
    check = as_user(tomcat)
    memory = ProbeMemory()

    async def not_found(count: int) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                async with session.get(f"{tomcat.base_url}/slow/no-such-page") as resp:
                    assert resp.status == 404

    await probe(check, memory)
    await not_found(5)
    few = await probe(check, memory)   # ~5 errors in ~8 requests: too few to judge
    await not_found(40)
    burst = await probe(check, memory)
    assert few.status is Status.OK, few.summary
    assert (burst.status, burst.reason) == (Status.CRITICAL, "error_rate")
    assert re.search(r"\d+ errors in \d+ requests \(\d+%\) since the last run", burst.summary)


async def test_wrong_password(tomcat: Tomcat) -> None:
    check = make_check(tomcat.base_url, ADMIN, tomcat.wrong_password_file)
    outcome = await probe(check, ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, "auth_failed")
    assert f"refused user '{ADMIN}' (401)" in outcome.summary
    assert "needs role manager-status" in outcome.summary
    assert tomcat.wrong_password_file.read_text().strip() not in outcome.model_dump_json()


async def test_no_credentials(tomcat: Tomcat) -> None:
    outcome = await probe(make_check(tomcat.base_url), ProbeMemory())
    assert outcome.reason == "auth_failed" and "asks for credentials (401)" in outcome.summary


async def test_user_without_manager_roles(tomcat: Tomcat) -> None:
    outcome = await probe(as_user(tomcat, NO_ROLES), ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, "auth_failed")
    assert f"denied user '{NO_ROLES}' (403): the user lacks role manager-status" in (
        outcome.summary)
    assert "RemoteAddrValve" in outcome.summary
    assert not leaked(outcome, tomcat, NO_ROLES)


async def test_status_only_user(tomcat: Tomcat) -> None:
    outcome = await probe(as_user(tomcat, STATUS_ONLY), ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.OK, "ok")
    assert outcome.summary.endswith(
        f"serverinfo, list not read: user '{STATUS_ONLY}' lacks role manager-script")
    assert set(outcome.details["not_read"]) == {"serverinfo", "list"}
    assert "manager-script" in outcome.details["not_read"]["list"]
    assert any(m.name == "tomcat_connector_threads_busy" for m in outcome.metrics)

    quiet = await probe(as_user(tomcat, STATUS_ONLY, read_list=False, read_serverinfo=False),
                        ProbeMemory())
    assert quiet.status is Status.OK and "not read" not in quiet.summary
    assert quiet.details["probe_cost"]["requests"] == 1

    required = await probe(as_user(tomcat, STATUS_ONLY, webapps=["/slow"]), ProbeMemory())
    assert (required.status, required.reason) == (Status.CRITICAL, "auth_failed")
    assert "lacks role manager-script" in required.summary


async def test_server_down() -> None:
    outcome = await probe(make_check(f"http://127.0.0.1:{free_port()}"), ProbeMemory())
    assert (outcome.status, outcome.reason) == (Status.CRITICAL, "connect_refused")
    assert "refused the connection" in outcome.summary


def test_metric_names_follow_the_conventions() -> None:
    for name in METRICS:
        Metric(name=name, value=0)
        assert not name.startswith("wardwatch_") and name.startswith("tomcat_")
