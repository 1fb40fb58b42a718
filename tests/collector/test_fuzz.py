"""Bad input against a live collector on loopback: no request may get a 5xx, every refusal is
a 4xx with a JSON `{"error": "..."}`, and nothing is stored from a refused batch.

- every operation of /api/v1/openapi.json, fuzzed by schemathesis (valid and invalid data),
  once without credentials and once with the agent's token / the admin token;
- hypothesis on what schemathesis does not reach well: random JSON bodies on ingest,
  Alertmanager notifications with odd times, report periods, and collector config files.

Bounded and reproducible: a fixed number of examples per operation, derandomized, no example
database, a timeout on every request. The collector runs in a thread with its own event loop
so that schemathesis' synchronous client can call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import requests
import schemathesis
import yaml
from aiohttp import web
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from schemathesis import GenerationMode

from collector.app import AUTH_FAILURES_KEY, STORE_KEY, create_app
from collector.config import load_collector_config, parse_collector_config
from collector.openapi import document
from collector.period import PeriodError, parse_period
from collector.ratelimit import FailureLimiter
from collector.store import Store
from probes.config import ConfigError
from probes.result import SENT_AT_HEADER
from tests.services import POSTGRES_URL, free_port, needs, postgres_available

T = TypeVar("T")
AGENT = "fuzz-agent-01"
REQUEST_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0

EXAMPLES = int(os.environ.get("WARDWATCH_FUZZ_EXAMPLES", "30"))
"""Per operation and generation mode (about 4 000 requests in all, 40 s on two cores); set
WARDWATCH_FUZZ_EXAMPLES=500 for a deeper run by hand."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                phases=(Phase.explicit, Phase.generate))
"""No shrinking: over HTTP it can take minutes, and the failing request is printed whole."""


class LiveCollector:
    """The collector app on a loopback port, served from its own thread and event loop."""

    def __init__(self, root: Path, store_url: str) -> None:
        (root / "admin-token").write_text("fuzz-admin-secret\n")
        self.admin_token = "fuzz-admin-secret"
        self.postgresql = store_url.startswith("postgresql")
        self.config = parse_collector_config({
            "store": store_url,
            "admin_token": {"file": str(root / "admin-token")},
            "max_body_bytes": 256 * 1024,
            "systems": [
                {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-*/web"],
                 "rule": "any"},
                {"id": "APPT", "name": "统一预约", "members": ["appt-01/web"],
                 "schedule": [{"days": "mon-sat", "start": "07:30", "end": "18:00"}]}]})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent_token = ""
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._store: Store | None = None
        self._thread = threading.Thread(target=self._serve, name="fuzz-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the collector did not start")
        if self._failed is not None:
            raise RuntimeError("the collector did not start") from self._failed

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:   # reported to the test thread by start()
            self._failed = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = create_app(self.config)
        # schemathesis sends random bearer tokens: with the real limit the address would be
        # refused (429) after 20 and the fuzzing would not get past authentication
        # (the limit has its own tests, tests/collector/test_ratelimit.py)
        app[AUTH_FAILURES_KEY] = FailureLimiter(limit=10**9)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._store = app[STORE_KEY]
            self.agent_token = await self._store.add_agent(AGENT, datetime.now(UTC))
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the collector's loop (e.g. a store query) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(REQUEST_TIMEOUT_S)

    def count_results(self) -> int:
        assert self._store is not None
        return self.run(self._store.count_results())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)


async def _postgres(sql: str) -> None:
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[LiveCollector]:
    """One collector per store for the module: state left by one test is input to the next."""
    root = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        collector = LiveCollector(root, f"sqlite:///{root}/collector.db")
        name = None
    else:
        needs(postgres_available(), "PostgreSQL on 127.0.0.1:5432 (database test)")
        name = f"ww_fuzz_{uuid.uuid4().hex[:12]}"
        asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
        collector = LiveCollector(root, f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}")
    try:
        collector.start()
        yield collector
    finally:
        collector.stop()
        if name is not None:
            asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def refusal_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why a response breaks the API's promise, or None when it keeps it."""
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"{status} is not JSON ({content_type}): {body[:300]!r}"
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"{status} body is not JSON: {body[:300]!r}"
    if not (isinstance(parsed, dict) and isinstance(parsed.get("error"), str)
            and parsed["error"]):
        return f"{status} without an error message: {parsed!r}"
    return None


def check(response: requests.Response | schemathesis.Response, what: str) -> None:
    assert response.status_code != 429, f"{what}: rate limited, so not fuzzed"
    if currently_in_test_context():   # --hypothesis-show-statistics shows the mix
        event(f"status {response.status_code}")
    # schemathesis' Response has lowercase header names and a list of values for each
    content_type = response.headers.get("content-type") or response.headers.get(
        "Content-Type") or ""
    if isinstance(content_type, list):
        content_type = content_type[0]
    problem = refusal_problem(response.status_code, content_type, response.content)
    assert problem is None, f"{what}: {problem}"


def check_ingest(live: LiveCollector, response: Any, body: Any, headers: Any,
                 what: str) -> None:
    check(response, what)


# -- every operation, through schemathesis --------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = {op.definition.raw["operationId"]: op
              for op in (result.ok() for result in SCHEMA.get_all_operations())}


def _same_agent(case: Any, fix: bool) -> Any:
    """Half the ingest batches carry the token's agent id, so they get past the 403."""
    if fix and isinstance(case.body, dict):
        case.body["agent_id"] = AGENT
        results = case.body.get("results")
        for item in results if isinstance(results, list) else ():   # invalid data: anything
            if isinstance(item, dict):
                item["agent_id"] = AGENT
    return case


def _cases() -> list[Any]:
    """(operation, mode) pairs; invalid data only where there is input to make invalid."""
    out = []
    for name, op in sorted(OPERATIONS.items()):
        out.append(pytest.param(name, GenerationMode.POSITIVE, id=f"{name}-valid"))
        raw = op.definition.raw
        # a path parameter alone cannot be made invalid: any string is a path segment
        if "requestBody" in raw or any(p["in"] == "query" for p in raw.get("parameters", ())):
            out.append(pytest.param(name, GenerationMode.NEGATIVE, id=f"{name}-invalid"))
    return out


@pytest.mark.parametrize("credentials", [False, True], ids=["anonymous", "credentials"])
@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_no_server_errors(live: LiveCollector, http: requests.Session, operation: str,
                          mode: GenerationMode, credentials: bool) -> None:
    op = OPERATIONS[operation]
    headers = {}
    if credentials:
        token = live.agent_token if op.path == "/api/v1/results" else live.admin_token
        headers["Authorization"] = f"Bearer {token}"
    strategy = st.builds(_same_agent, op.as_strategy(generation_mode=mode), st.booleans())

    @FUZZ
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call(base_url=live.url, session=http, headers=headers,
                             timeout=REQUEST_TIMEOUT_S)
        what = (f"{op.method.upper()} {case.formatted_path} query={case.query!r} "
                f"headers={case.headers!r} body={case.body!r}")[:2000]
        if op.path == "/api/v1/results":
            check_ingest(live, response, case.body, case.headers, what)
        else:
            check(response, what)

    fuzz()


# -- ingest: random JSON ------------------------------------------------------------------

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=False) | st.text(max_size=20))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
RESULT_FIELDS = {
    "id": st.uuids().map(str) | JSON, "schema_version": st.integers(-3, 5) | JSON,
    "agent_id": st.just(AGENT) | JSON, "check_id": st.sampled_from(["web", "db"]) | JSON,
    "kind": st.sampled_from(["http", "tcp", "patches", "hardening", "nginx"]) | JSON,
    "system": st.sampled_from(["EMR", "", "APPT"]) | JSON,
    "status": st.sampled_from(["ok", "warning", "critical", "unknown"]) | JSON,
    "reason": st.sampled_from(["ok", "down"]) | JSON,
    "started_at": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
    | st.datetimes().map(datetime.isoformat) | JSON,
    "duration_s": st.floats(allow_nan=False) | JSON,
    "interval_s": st.floats(allow_nan=False) | st.none() | JSON,
    "summary": st.text(max_size=40), "metrics": JSON, "details": JSON, "labels": JSON,
}
RESULT = st.fixed_dictionaries({}, optional=RESULT_FIELDS)
BATCH = st.fixed_dictionaries({"agent_id": st.just(AGENT) | JSON},
                              optional={"results": st.lists(RESULT | JSON, max_size=3),
                                        "extra": JSON})


@FUZZ
@given(body=BATCH | JSON)
def test_ingest_random_json(live: LiveCollector, http: requests.Session, body: Any) -> None:
    before = live.count_results()
    response = http.post(live.url + "/api/v1/results", data=json.dumps(body),
                         headers={"Authorization": f"Bearer {live.agent_token}",
                                  "Content-Type": "application/json"},
                         timeout=REQUEST_TIMEOUT_S)
    check_ingest(live, response, body, {}, f"POST /api/v1/results {body!r}"[:2000])
    assert response.status_code != 401, "the token is valid: the body must be read"
    stored = live.count_results() - before
    if response.status_code >= 400:
        assert stored == 0, f"a refused batch stored {stored} results: {body!r}"
    else:
        reply = response.json()
        assert stored == reply["accepted"]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200))
def test_ingest_random_bytes(live: LiveCollector, http: requests.Session, body: bytes) -> None:
    before = live.count_results()
    response = http.post(live.url + "/api/v1/results", data=body,
                         headers={"Authorization": f"Bearer {live.agent_token}"},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, f"POST /api/v1/results {body!r}")
    assert response.status_code >= 400 or body.strip().startswith(b"{")
    assert live.count_results() == before or response.status_code < 400


# -- Alertmanager -------------------------------------------------------------------------

TIMES = (st.datetimes(timezones=st.timezones() | st.just(UTC)).map(datetime.isoformat)
         | st.datetimes().map(datetime.isoformat)
         | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]))
LABELS = st.dictionaries(st.sampled_from(["alertname", "severity", "level", "system",
                                          "instance"]),
                         st.sampled_from(["1", "2", "4", "9", "critical", "page", "EMR", "x"])
                         | st.text(max_size=10), max_size=5)
ALERT = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved"]), "labels": LABELS,
     "startsAt": TIMES},
    optional={"endsAt": TIMES | st.none(), "fingerprint": st.text(max_size=8),
              "annotations": st.dictionaries(st.sampled_from(["summary", "description"]),
                                             st.text(max_size=30))})
NOTIFICATION = st.fixed_dictionaries(
    {"version": st.just("4"), "groupKey": st.sampled_from(["{}:{a=\"1\"}", "{}:{b=\"2\"}"]),
     "status": st.sampled_from(["firing", "resolved"]),
     "alerts": st.lists(ALERT, min_size=1, max_size=3)},
    optional={"commonLabels": LABELS, "groupLabels": LABELS, "receiver": st.text(max_size=8)})


@FUZZ
@given(body=NOTIFICATION)
def test_alertmanager_notifications(live: LiveCollector, http: requests.Session,
                                    body: dict[str, Any]) -> None:
    response = http.post(live.url + "/api/v1/alertmanager", json=body,
                         headers={"Authorization": f"Bearer {live.admin_token}"},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, f"POST /api/v1/alertmanager {body!r}"[:2000])


# -- report periods: the parameters of /api/v1/availability, the CLI and the UI -----------

PERIOD_TEXT = (st.none() | st.dates().map(str) | TIMES | st.text(max_size=25)
               | st.sampled_from(["0001-01-01", "9999-12-31", "2026-02-30", "2026-01-01"]))


@FUZZ
@given(start=PERIOD_TEXT, end=PERIOD_TEXT, system=st.sampled_from(["EMR", "APPT", "", "nope"]))
def test_availability_periods(live: LiveCollector, http: requests.Session, start: str | None,
                              end: str | None, system: str) -> None:
    params = {k: v for k, v in {"system": system, "from": start, "to": end}.items()
              if v is not None}
    response = http.get(live.url + "/api/v1/availability", params=params,
                        timeout=REQUEST_TIMEOUT_S)
    check(response, f"GET /api/v1/availability {params!r}")


INNER_DATES = st.dates(min_value=date(1, 1, 3), max_value=date(9999, 12, 29))
INNER_PERIOD_TEXT = (st.none() | INNER_DATES.map(str) | st.text(max_size=25)
                     | st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29),
                                    timezones=st.timezones() | st.just(UTC)
                                    ).map(datetime.isoformat))
"""Periods away from the ends of the calendar: see test_period_at_the_calendar_ends."""


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(start=INNER_PERIOD_TEXT, end=INNER_PERIOD_TEXT)
def test_period_parses_or_says_why(start: str | None, end: str | None) -> None:
    """The CLI's --from/--to and the UI's report form share this parser."""
    config = parse_collector_config({})
    with contextlib.suppress(PeriodError):
        begin, finish = parse_period(start, end, config.zone, datetime(2026, 6, 1, tzinfo=UTC))
        assert begin < finish


@pytest.mark.parametrize(("start", "end"), [("0001-01-01", None), (None, "9999-12-31")])
def test_period_at_the_calendar_ends(start: str | None, end: str | None) -> None:
    config = parse_collector_config({})
    with pytest.raises(PeriodError, match="end of the calendar"):
        parse_period(start, end, config.zone, datetime(2026, 6, 1, tzinfo=UTC))


# -- what fuzzing found, kept as plain regression cases --------------------------------------

def _window(start: str, end: str) -> dict[str, str]:
    return {"system": "EMR", "start": start, "end": end, "kind": "planned", "reason": "r",
            "approved_by": "a"}


FIRING_NAIVE = {"version": "4", "groupKey": "{}:{n=\"1\"}", "status": "resolved",
                "alerts": [{"status": "resolved", "startsAt": "2026-01-01T08:00:00",
                            "labels": {"level": "2"}},
                           {"status": "resolved", "startsAt": "2026-01-01T00:00:00Z",
                            "labels": {"level": "2"}}]}


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "message"), [
    ("GET", "/api/v1/incidents/99999999999999999999999", {}, 404, "no incident"),
    ("GET", "/api/v1/incidents/2147483648", {}, 404, "no incident"),
    ("POST", "/api/v1/incidents/INC-2026-99999999999999999999/ack", {"json": {"by": "x"}},
     404, "no incident"),
    ("POST", "/api/v1/maintenance",
     {"json": _window("0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00Z")}, 400, "years"),
    ("POST", "/api/v1/waivers", {"json": {
        "host": "h", "key": "k", "accepted_by": "a", "reason": "r",
        "expires_at": "9999-12-31T23:59:59-14:00"}}, 400, "years"),
    ("POST", "/api/v1/rectifications", {"json": {
        "title": "t", "issued_by": "a", "issued_at": "2026-01-01T00:00:00Z",
        "due_at": "2026-02-01T00:00:00Z", "findings": [1, 2**31]}}, 400, "findings.1"),
    ("POST", "/api/v1/alertmanager", {"json": FIRING_NAIVE}, 400, "UTC offset"),
    ("POST", "/api/v1/alertmanager", {"json": {
        "version": "4", "groupKey": "{}:{y=\"1\"}", "status": "firing", "alerts": [{
            "status": "firing", "startsAt": "0001-01-01T00:00:00Z",
            "labels": {"level": "4"}}]}}, 400, "startsAt"),
    ("POST", "/api/v1/maintenance", {"data": b"[" * 50_000 + b"]" * 50_000}, 400,
     "nested too deeply"),
    ("POST", "/api/v1/waivers", {"json": {
        "host": "h\x00", "key": "k", "accepted_by": "a", "reason": "r",
        "expires_at": "2099-01-01T00:00:00Z"}}, 400, "NUL"),
    ("GET", "/api/v1/maintenance", {"params": {"system": "E\x00"}}, 400, "NUL"),
    ("GET", "/api/v1/hosts/a%00b/patches", {}, 400, "NUL"),
    ("GET", "/api/v1/availability", {"params": {"system": "EMR", "from": "0001-01-01"}},
     400, "years"),
    ("GET", "/api/v1/availability", {"params": {
        "system": "APPT", "from": "0001-01-01T00:00:00Z", "to": "0001-04-01"}}, 400, "years"),
    ("GET", "/api/v1/availability", {"params": {"system": "APPT", "from": "1000-01-01"}},
     400, "at most"),
])
def test_found_by_fuzzing(live: LiveCollector, http: requests.Session, method: str, path: str,
                          kwargs: dict[str, Any], status: int, message: str) -> None:
    response = http.request(method, live.url + path, timeout=REQUEST_TIMEOUT_S,
                            headers={"Authorization": f"Bearer {live.admin_token}"}, **kwargs)
    check(response, f"{method} {path}")
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_ingest_nul_is_stored_replaced(live: LiveCollector, http: requests.Session) -> None:
    """A probe may capture a NUL (a binary banner): the result is kept, the NUL replaced by
    U+FFFD (PostgreSQL cannot store it), not refused (the agent would drop it as poison)."""
    result = {"id": str(uuid.uuid4()), "agent_id": AGENT, "check_id": "web", "kind": "tcp",
              "status": "ok", "reason": "ok", "started_at": "2026-01-01T00:00:00Z",
              "duration_s": 0.1, "summary": "a\x00b", "details": {"banner\x00": "\x00"}}
    response = http.post(live.url + "/api/v1/results", json={"agent_id": AGENT,
                                                             "results": [result]},
                         headers={"Authorization": f"Bearer {live.agent_token}"},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, "POST /api/v1/results with a NUL")
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text


@pytest.mark.parametrize("fields", [{"started_at": "9999-12-31T23:59:59Z"},
                                    {"started_at": "0001-01-01T00:00:00+14:00"},
                                    {"interval_s": 1e12}, {"duration_s": 1e300}])
def test_ingest_times_beyond_the_calendar(live: LiveCollector, http: requests.Session,
                                          fields: dict[str, Any]) -> None:
    response = http.post(live.url + "/api/v1/results", json={"agent_id": AGENT, "results": [{
        "id": str(uuid.uuid4()), "agent_id": AGENT, "check_id": "web", "kind": "tcp",
        "status": "ok", "reason": "ok", "started_at": "2026-01-01T00:00:00Z",
        "duration_s": 0.1, **fields}]},
                         headers={"Authorization": f"Bearer {live.agent_token}"},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, f"POST /api/v1/results {fields}")
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
def test_ingest_sent_at_at_the_calendar_ends(live: LiveCollector, http: requests.Session,
                                             sent_at: str) -> None:
    response = http.post(live.url + "/api/v1/results", json={"agent_id": AGENT, "results": [{
        "id": str(uuid.uuid4()), "agent_id": AGENT, "check_id": "web", "kind": "tcp",
        "status": "ok", "reason": "ok", "started_at": "2026-01-01T00:00:00Z",
        "duration_s": 0.1}]}, headers={"Authorization": f"Bearer {live.agent_token}",
                                      SENT_AT_HEADER: sent_at},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, f"POST /api/v1/results sent at {sent_at}")
    assert response.status_code == 200, response.text   # a clock we cannot read: as sent


def test_ingest_deep_json_is_refused(live: LiveCollector, http: requests.Session) -> None:
    response = http.post(live.url + "/api/v1/results", data=b"[" * 50_000 + b"]" * 50_000,
                         headers={"Authorization": f"Bearer {live.agent_token}"},
                         timeout=REQUEST_TIMEOUT_S)
    check(response, "POST /api/v1/results deeply nested")
    assert response.status_code == 400, response.text


# -- collector config -----------------------------------------------------------------------

CONFIG_KEYS = st.sampled_from(["listen", "store", "store_synchronous", "timezone", "language",
                               "calendar", "retention", "stale_after", "max_body_bytes", "tls",
                               "admin_token", "systems", "incidents", "channels", "ui",
                               "agentless", "service_discovery", "public_url", "unknown"])
SYSTEM = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["EMR", "HIS"]) | JSON, "name": JSON,
    "members": st.lists(st.sampled_from(["emr-*/web", "no-slash", ""]), max_size=3) | JSON,
    "rule": st.sampled_from(["any", "all", "2 of 3"]) | JSON, "core": JSON,
    "target": st.floats(-1, 2) | JSON, "depends_on": JSON, "schedule": JSON})
CONFIG = st.dictionaries(CONFIG_KEYS, JSON | st.lists(SYSTEM, max_size=3), max_size=6)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=CONFIG | JSON)
def test_config_loads_or_names_the_file(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        load_collector_config(path)
    except ConfigError as exc:
        assert exc.source == str(path) and exc.errors, exc
        assert str(exc).startswith(f"{path}: invalid configuration")


def test_config_date_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("public_url: 0000-01-01\n")
    with pytest.raises(ConfigError):
        load_collector_config(path)
