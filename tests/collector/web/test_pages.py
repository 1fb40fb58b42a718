"""The UI's pages over HTTP against a real collector app: the board and its JSON fragment
agree with the API, system and host pages, maintenance windows through the form, both
languages, times in the display zone, and user content shown as text, never as markup."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from collector.app import CONFIG_KEY, FINDINGS_KEY, SYSTEMS_KEY, evaluate_incidents
from collector.web.i18n import MESSAGES, duration, local_time
from collector.web.views import BOARD_KEY
from probes.result import CheckResult, Status
from tests.collector.web.conftest import Ui, hidden

PAGES = ["/", "/systems/EMR", "/systems/HIS?days=30", "/hosts/emr-01", "/incidents",
         "/incidents?state=open", "/maintenance", "/reports", "/users"]


class _Scripts(HTMLParser):
    """Collects every <script> and every on* attribute: a page must have no inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            (self.external if names.get("src") else self.inline).append(str(names))
        self.inline += [k for k in names if k.startswith("on")]


async def test_board_shows_states_and_the_fragment_turns_red(ui: Ui) -> None:
    await ui.feed("emr-01", Status.OK, 3, timedelta(seconds=25))
    await ui.login("viewer1")
    status, text = await ui.page("/")
    assert status == 200
    assert re.search(r'id="system-EMR" class="state-up"', text)
    assert re.search(r'id="system-HIS" class="state-unknown"', text)
    assert "当前无未关闭故障" in text
    # EMR fails: the next fragment has its row red (down) and the incident with deadlines
    await ui.feed("emr-01", Status.CRITICAL, 3, timedelta(seconds=5))
    await evaluate_incidents(ui.app)
    resp = await ui.client.get("/ui/board.json")
    assert resp.status == 200
    assert re.fullmatch(r"board;dur=\d+\.\d\d", resp.headers["Server-Timing"])
    data = await resp.json()
    emr = next(s for s in data["systems"] if s["id"] == "EMR")
    assert emr["state"] == "down"
    assert 'id="system-EMR" class="state-down"' in data["html"]["systems"]
    [incident] = data["incidents"]
    assert incident["level"] == 1 and incident["respond_by"]
    assert f'data-due="{incident["respond_by"]}"' in data["html"]["incidents"]
    assert 'data-met=""' in data["html"]["incidents"]
    # the fragment's state and YTD figures are those of GET /api/v1/systems
    api = await (await ui.client.get("/api/v1/systems")).json()
    for mine, theirs in zip(data["systems"], api, strict=True):
        assert mine["id"] == theirs["id"]
        assert (mine["state"], mine["cause"]) == (theirs["state"], theirs["cause"])
        assert mine["availability_ytd"] == theirs["availability_ytd"]
        if theirs["availability_ytd"] is not None:   # the same cached figure, not a new one
            assert mine["ytd_as_of"] == theirs["ytd_as_of"]
            assert mine["budget_left_s"] == theirs["budget_left_s"]


async def test_board_states_are_those_of_systems_current(ui: Ui) -> None:
    """One read for all systems gives exactly what one read per system gives."""
    await ui.feed("emr-01", Status.OK, 3, timedelta(seconds=65))
    await ui.feed("emr-01", Status.CRITICAL, 2, timedelta(seconds=15), check="db")
    await ui.feed("his-01", Status.WARNING, 2, timedelta(seconds=15))
    now = datetime.now(UTC)
    states = await ui.app[BOARD_KEY].states(now)
    for system in ui.app[CONFIG_KEY].systems:
        assert states[system.id] == await ui.app[SYSTEMS_KEY].current(system, now)
    assert states["EMR"].state == "down" and states["HIS"].state == "degraded"
    # a day of flapping members (many boundaries, repeated combinations), then steady: the
    # memo kept across calls gives the same answers as a fresh sweep
    start = now - timedelta(hours=26)
    rng = random.Random(3)
    await ui.store.ingest("his-01", [
        CheckResult(agent_id="his-01", check_id=check, kind="tcp",
                    status=rng.choice([Status.OK, Status.OK, Status.WARNING, Status.CRITICAL])
                    if m < 1400 else Status.OK, reason="x",
                    started_at=start + timedelta(minutes=m), duration_s=0.01, interval_s=60,
                    summary="") for m in range(0, 26 * 60 - 1, 7) for check in ("a", "b", "c")],
        now)
    for _ in range(2):
        now = datetime.now(UTC)
        states = await ui.app[BOARD_KEY].states(now)
        for system in ui.app[CONFIG_KEY].systems:
            assert states[system.id] == await ui.app[SYSTEMS_KEY].current(system, now)


async def test_board_reads_the_day_only_for_systems_steady_within_the_hour(ui: Ui) -> None:
    """A state that changed within the last hour is decided by the recent read; one steady
    for longer (or with no data) is read again over the day, for its members only — and
    both give what `Systems.current` gives, `since` included."""
    now = datetime.now(UTC)
    # EMR: critical for 3 hours
    critical_since = now - timedelta(hours=3)
    await ui.store.ingest("emr-01", [
        CheckResult(agent_id="emr-01", check_id="web", kind="tcp", status=Status.CRITICAL,
                    reason="connect_refused", started_at=critical_since + timedelta(
                        minutes=m), duration_s=0.01, interval_s=60, summary="")
        for m in range(0, 180, 1)], now)
    # HIS: warning since 25 seconds ago
    await ui.feed("his-01", Status.WARNING, 3, timedelta(seconds=25))
    reads: list[tuple[datetime, object]] = []
    store = ui.store
    original = store.intervals

    async def counted(start: datetime, end: datetime, scope: object = None,
                      **kwargs: Any) -> object:
        reads.append((start, scope))
        return await original(start, end, scope, **kwargs)   # type: ignore[arg-type]

    store.intervals = counted   # type: ignore[method-assign]
    try:
        now = datetime.now(UTC)
        states = await ui.app[BOARD_KEY].states(now)
    finally:
        del store.intervals
    for system in ui.app[CONFIG_KEY].systems:
        assert states[system.id] == await ui.app[SYSTEMS_KEY].current(system, now)
    assert states["HIS"].state == "degraded"
    assert now - states["HIS"].since < timedelta(minutes=1)
    assert states["EMR"].state == "down"
    assert states["EMR"].since == critical_since
    assert [round((now - start).total_seconds()) for start, _ in reads] == [3600, 86400]
    emr_members = await ui.app[SYSTEMS_KEY].member_map()
    day_scope = reads[1][1]
    assert isinstance(day_scope, list) and set(emr_members["EMR"]) <= set(day_scope)
    assert not set(emr_members["HIS"]) & set(day_scope)


async def test_board_page_has_no_inline_script_and_strict_headers(ui: Ui) -> None:
    await ui.login("viewer1")
    resp = await ui.client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    parser = _Scripts()
    parser.feed(await resp.text())
    assert parser.inline == [] and parser.external
    static = await ui.client.get("/ui/static/board.js")
    assert static.status == 200 and "board.json" in await static.text()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_every_page_renders_in_both_languages(ui: Ui, lang: str) -> None:
    await ui.feed("emr-01", Status.CRITICAL, 3, timedelta(seconds=25))
    await evaluate_incidents(ui.app)
    await ui.login("admin1")
    index = 0 if lang == "zh-CN" else 1
    for path in [*PAGES, "/incidents/1"]:
        base, _, query = path.partition("?")
        params = dict(p.split("=") for p in query.split("&")) if query else {}
        status, text = await ui.page(base, lang=lang, **params)
        assert status == 200, (path, text[:2000])
        assert MESSAGES["logout"][index] in text, path
        assert f'<html lang="{lang}">' in text
    # the choice is remembered: the next page without ?lang is in the same language
    status, text = await ui.page("/")
    assert MESSAGES["board"][index] in text
    [user] = [u for u in await ui.accounts.users() if u.name == "admin1"]
    assert user.language == lang


async def test_user_content_is_escaped(ui: Ui) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    incident_id = await ui.open_incident()
    await ui.login("op1")
    token = await ui.csrf()
    await ui.post(f"/incidents/{incident_id}/ack", {"note": evil}, token=token)
    await ui.post("/maintenance", {
        "system": "EMR", "kind": "planned", "start": "2026-05-01T22:00",
        "end": "2026-05-02T02:00", "reason": evil, "approved_by": evil}, token=token)
    await ui.feed("his-01", Status.CRITICAL, 2, timedelta(seconds=15), check=evil[:60])
    for path in (f"/incidents/{incident_id}", "/maintenance", "/", "/systems/HIS"):
        status, text = await ui.page(path)
        assert status == 200, path
        parser = _Scripts()
        parser.feed(text)
        assert parser.inline == [], (path, parser.inline)
        assert "<script>alert" not in text and "<img src=x" not in text
    _, text = await ui.page(f"/incidents/{incident_id}")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    # a system name from the config is text too
    _, text = await ui.page("/")
    assert "&lt;b&gt;HIS&lt;/b&gt; &amp; co" in text and "<b>HIS</b>" not in text


async def test_maintenance_form_reads_local_times_and_validates(ui: Ui) -> None:
    await ui.login("op1")
    status, text = await ui.page("/maintenance")
    assert status == 200 and 'id="maintenance-form"' in text
    token = hidden(text, "csrf_token")
    form = {"system": "EMR", "kind": "planned", "start": "2026-05-01T22:00",
            "end": "2026-05-02T02:00", "reason": "Oracle 补丁", "approved_by": "信息科 张主任"}
    resp = await ui.post("/maintenance", form, token=token)
    assert resp.status == 303
    [window] = await ui.store.maintenance_windows()
    # 22:00 in Asia/Shanghai is 14:00 UTC
    assert window.start == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
    assert (window.created_by, window.approved_by) == ("op1", "信息科 张主任")
    [entry] = await ui.accounts.audit_entries(action="maintenance_add")
    assert entry["target"] == f"maintenance/{window.id}" and entry["username"] == "op1"
    _, listed = await ui.page("/maintenance", added=str(window.id))
    assert "2026-05-01 22:00" in listed and "Oracle 补丁" in listed
    for change, message in (({"end": "2026-05-01T21:00"}, "end must be after start"),
                            ({"system": "NOPE"}, "unknown system"),
                            ({"kind": "whenever"}, "kind"),
                            ({"start": "tomorrow"}, "start/end"),
                            ({"reason": ""}, "reason")):
        resp = await ui.post("/maintenance", {**form, **change}, token=token)
        assert resp.status == 400, change
        assert message in await resp.text(), change
    assert len(await ui.store.maintenance_windows()) == 1


async def test_maintenance_cancel_from_the_ui(ui: Ui) -> None:
    """An operator cancels a window: kept with who and when, in the window's trail and the
    audit log; the page lists it only when asked for cancelled ones; a viewer cannot, a
    second cancel is refused in the reader's language, nothing without the CSRF token."""
    window = await ui.store.add_maintenance(
        system="EMR", start=datetime(2026, 5, 1, 14, tzinfo=UTC),
        end=datetime(2026, 5, 1, 18, tzinfo=UTC), kind="planned", reason="补丁",
        approved_by="张主任", by="cli", now=datetime.now(UTC))
    await ui.login("viewer1")
    _, text = await ui.page("/maintenance")
    assert f'action="/maintenance/{window.id}/cancel"' not in text   # not a viewer's action
    token = await ui.csrf()
    resp = await ui.post(f"/maintenance/{window.id}/cancel", {}, token=token)
    assert resp.status == 403
    await ui.post("/logout", {}, token=token)
    await ui.login("op1")
    _, text = await ui.page("/maintenance")
    assert f'action="/maintenance/{window.id}/cancel"' in text
    token = hidden(text, "csrf_token")
    resp = await ui.post(f"/maintenance/{window.id}/cancel", {})   # no CSRF token
    assert resp.status == 403
    assert len(await ui.store.maintenance_windows()) == 1
    resp = await ui.post(f"/maintenance/{window.id}/cancel", {}, token=token)
    assert resp.status == 303 and resp.headers["Location"].endswith(f"cancelled_id={window.id}")
    assert await ui.store.maintenance_windows() == []
    [cancelled] = await ui.store.maintenance_windows(include_cancelled=True)
    assert cancelled.cancelled_by == "op1" and cancelled.cancelled_at is not None
    trail = await ui.store.maintenance_history(window.id)
    assert [entry["action"] for entry in trail] == ["created", "cancelled"]
    [entry] = await ui.accounts.audit_entries(action="maintenance_cancel")
    assert entry["target"] == f"maintenance/{window.id}" and entry["username"] == "op1"
    _, text = await ui.page("/maintenance")
    assert "补丁" not in text
    _, text = await ui.page("/maintenance", cancelled="true")
    assert "补丁" in text and MESSAGES["cancelled_by"][0].format(by="op1", at="")[:-1] in text
    resp = await ui.post(f"/maintenance/{window.id}/cancel", {}, token=token)
    assert resp.status == 409
    assert MESSAGES["window_not_active"][0].format(id=window.id) in await resp.text()
    resp = await ui.post("/maintenance/x1/cancel", {}, token=token)
    assert resp.status == 404


async def test_incident_action_refusal_in_the_readers_language(ui: Ui) -> None:
    incident_id = await ui.open_incident()
    await ui.login("op1")
    token = await ui.csrf()
    [incident] = await ui.app_incidents()
    resp = await ui.post(f"/incidents/{incident_id}/close", {}, token=token)
    assert resp.status == 409
    text = await resp.text()
    assert MESSAGES["incident_error_still_open"][0].format(number=incident.number) in text
    resp = await ui.post(f"/incidents/{incident_id}/close?lang=en", {}, token=token)
    assert f"{incident.number} is still open: recover it first" in await resp.text()


async def test_system_page_strip_and_stretches(ui: Ui) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=2)
    # monitored for longer than the strip: one result eight days ago
    await ui.store.ingest("emr-01", [
        CheckResult(agent_id="emr-01", check_id="web", kind="tcp", status=Status.OK,
                    reason="ok", started_at=now - timedelta(days=8), duration_s=0.01,
                    interval_s=60, summary="port 1521")], now)
    # an hour up, 10 minutes down, up again (60 s interval results)
    await ui.store.ingest("emr-01", [
        CheckResult(agent_id="emr-01", check_id="web", kind="tcp",
                    status=Status.CRITICAL if 60 <= m < 70 else Status.OK,
                    reason="connect_refused" if 60 <= m < 70 else "ok",
                    started_at=start + timedelta(minutes=m), duration_s=0.01, interval_s=60,
                    summary="port 1521") for m in range(120)], now)
    await ui.login("viewer1")
    status, text = await ui.page("/systems/EMR")
    assert status == 200
    rects = re.findall(r'<rect x="([\d.]+)" y="0" width="([\d.]+)" height="24" '
                       r'class="seg-(\w+)"><title>([^<]*)</title>', text)
    states = [r[2] for r in rects]
    assert "down" in states and "up" in states
    down = next(r for r in rects if r[2] == "down")
    assert "0:10:00" in down[3]   # the hover text has the duration
    # times in the display zone (Asia/Shanghai), stored in UTC
    assert local_time(start + timedelta(minutes=60), ui.app[CONFIG_KEY].zone,
                      seconds=True) in down[3]
    # 10 minutes of 7 days is 1/1008 of the strip (1000 wide)
    assert float(down[1]) == pytest.approx(max(1.0, 1000 * 600 / (7 * 86400)), abs=0.01)
    assert 'id="stretches" open' in text and duration(600) in text
    assert "emr-01" in text and "port 1521" in text
    status, text30 = await ui.page("/systems/EMR", days="30")
    assert status == 200 and 'class="pill here" href="?days=30"' in text30
    assert (await ui.page("/systems/NOPE"))[0] == 404


async def test_host_page_shows_checks_and_findings(ui: Ui) -> None:
    await ui.feed("emr-01", Status.CRITICAL, 2, timedelta(seconds=15), check="oracle")
    inventory = CheckResult(
        agent_id="emr-01", check_id="patches", kind="patches", status=Status.WARNING,
        reason="updates_pending", started_at=datetime.now(UTC) - timedelta(seconds=5),
        duration_s=0.5, interval_s=3600, summary="1 security update",
        details={"os": {"family": "debian", "name": "Debian", "version": "12"},
                 "packages_total": 500,
                 "pending": [{"name": "openssl", "current": "3.0.11-1",
                              "available": "3.0.13-1", "security": True,
                              "severity": "high", "advisories": ["DSA-5678-1"]}]})
    await ui.store.ingest("emr-01", [inventory], datetime.now(UTC))
    await ui.app[FINDINGS_KEY].observe([inventory])
    await ui.login("viewer1")
    status, text = await ui.page("/hosts/emr-01")
    assert status == 200
    assert "oracle" in text and "connect_refused" in text
    [finding] = (await ui.app[FINDINGS_KEY].host("emr-01", datetime.now(UTC)))["findings"]
    assert finding["key"] == "update:openssl" and finding["key"] in text
    assert "openssl 3.0.11-1 → 3.0.13-1" in text and "(1 / 1)" in text
    assert (await ui.page("/hosts/no-such-host"))[0] == 404


async def test_reports_page_builds_a_download(ui: Ui) -> None:
    from collector.web.views import _reports_module

    await ui.feed("emr-01", Status.OK, 3, timedelta(seconds=25))
    await ui.login("viewer1")
    status, text = await ui.page("/reports")
    assert status == 200
    if _reports_module() is None:   # the reports package is not in this tree
        assert 'id="reports-unavailable"' in text
        return
    token = hidden(text, "csrf_token")
    today = datetime.now(UTC).astimezone(ui.app[CONFIG_KEY].zone).date().isoformat()
    form = {"kind": "availability", "from": today, "to": today, "format": "json",
            "lang": "en"}
    resp = await ui.post("/reports", form, token=token)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"] == (
        f"attachment; filename*=UTF-8''wardwatch-availability-{today}-{today}.json")
    body = await resp.json(content_type=None)
    assert "EMR" in str(body)
    [entry] = await ui.accounts.audit_entries(action="report_download")
    assert entry["target"] == "availability" and entry["detail"]["format"] == "json"
    resp = await ui.post("/reports", {**form, "format": "pdf"}, token=token)
    assert resp.status == 400 and 'id="form-error"' in await resp.text()
    resp = await ui.post("/reports", {**form, "from": "yesterday"}, token=token)
    assert resp.status == 400
    assert (await ui.post("/reports", form)).status == 403   # no CSRF token


async def test_system_page_starts_where_monitoring_began(ui: Ui) -> None:
    """A system first seen two hours ago: its 7-day strip and figures cover those two hours,
    not five days of "unknown" counted as down."""
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(hours=2)
    await ui.store.ingest("emr-01", [
        CheckResult(agent_id="emr-01", check_id="web", kind="tcp", status=Status.OK,
                    reason="ok", started_at=first + timedelta(minutes=m), duration_s=0.01,
                    interval_s=60, summary="port 1521") for m in range(120)], now)
    await ui.login("viewer1")
    status, text = await ui.page("/systems/EMR")
    assert status == 200
    rects = re.findall(r'class="seg-(\w+)"', text)
    assert rects and set(rects) <= {"up"}
    assert local_time(first, ui.app[CONFIG_KEY].zone) in text
    assert "100.000 %" in text
