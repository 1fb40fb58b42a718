"""Patch inventories and security findings from `patches` and `hardening` results pushed to a
real collector app: opened, kept, fixed by a later scan (with time to fix), never fixed on
missing evidence; the fleet and host APIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from collector.store import utcnow
from probes.result import CheckResult, Status
from tests.collector.test_api import Api
from tests.collector.test_incident_api import api  # noqa: F401 (the fixture)

T0 = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)   # all due dates fall in one year


def patches(at_days: float, pending: list[dict[str, Any]] | None) -> CheckResult:
    security = [u for u in pending or [] if u["security"]]
    return CheckResult(
        agent_id="his-01", check_id="patches", kind="patches",
        status=Status.WARNING if security else Status.OK,
        reason="security_updates_pending" if security else "ok",
        started_at=T0 + timedelta(days=at_days), duration_s=3.2, interval_s=21600,
        summary="Kylin V10: …",
        details={"os": {"id": "kylin", "name": "Kylin Linux Advanced Server", "version": "V10",
                        "family": "rhel"},
                 "package_manager": "dnf", "kernel": {"running": "4.19.90-52",
                                                      "newest_installed": "4.19.90-52"},
                 "reboot_required": False, "reboot_reasons": [], "pending": pending,
                 "errors": [], "packages": [["openssl", "1.1.1f-4", "x86_64", 1700000000]],
                 "packages_hash": "ab12"})


def update(name: str, severity: str | None, security: bool = True) -> dict[str, Any]:
    return {"name": name, "current": "1.0", "available": "1.1", "security": security,
            "severity": severity, "advisories": ["KYSA-2026-1001"], "repo": "ks10-adv-updates"}


def hardening(at_days: float, failed: list[str]) -> CheckResult:
    items = [{"policy": "nginx", "id": check, "title": f"nginx {check}", "severity": "high",
              "result": "failed" if check in failed else "passed", "evidence": "nginx.conf:12",
              "remediation": "set it", "dengbao": ["8.1.4.4 d)"]}
             for check in ("server_tokens", "autoindex")]
    return CheckResult(agent_id="his-01", check_id="hardening", kind="hardening",
                       status=Status.WARNING if failed else Status.OK,
                       reason="hardening_failed" if failed else "ok",
                       started_at=T0 + timedelta(days=at_days), duration_s=0.4,
                       summary="", details={"findings": items})


async def push(api: Api, *results: CheckResult) -> None:  # noqa: F811
    token = getattr(api, "_token", None)
    if token is None:
        token = await api.store.add_agent("his-01", utcnow())
        api._token = token  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session, session.post(
            api.url + "/api/v1/results", headers={"Authorization": f"Bearer {token}"},
            data=f'{{"agent_id": "his-01", "results": '
                 f'[{",".join(r.model_dump_json() for r in results)}]}}',
            ) as resp:
        assert resp.status == 200, await resp.text()


async def test_findings_open_and_are_fixed_by_a_later_scan(api: Api) -> None:  # noqa: F811
    await push(api, patches(0, [update("openssl", "Important"), update("vim", None, False)]),
               hardening(0, ["server_tokens", "autoindex"]))
    await push(api, patches(1, [update("openssl", "Important"), update("sudo", "Critical")]))
    # the inventory could not read pending updates: nothing is marked fixed
    await push(api, patches(2, None))
    day3 = patches(3, [update("sudo", "Critical")])
    await push(api, day3, hardening(3, ["autoindex"]))
    status, host = await api.call("GET", "/api/v1/hosts/his-01/patches")
    assert status == 200
    by_key = {f["key"]: f for f in host["findings"]}
    assert set(by_key) == {"update:openssl", "update:sudo", "hardening:nginx.server_tokens",
                           "hardening:nginx.autoindex"}   # vim is not a security update
    openssl = by_key["update:openssl"]
    assert openssl["state"] == "fixed" and openssl["severity"] == "high"
    assert openssl["time_to_fix_s"] == 3 * 86400            # first seen day 0, gone on day 3
    assert by_key["update:sudo"]["state"] == "open"
    assert by_key["update:sudo"]["severity"] == "critical"
    assert by_key["hardening:nginx.server_tokens"]["state"] == "fixed"
    assert by_key["hardening:nginx.autoindex"]["data"]["dengbao"] == ["8.1.4.4 d)"]
    assert len(host["inventories"]) == 4
    assert host["inventories"][0]["summary"]["security_pending"] == 1
    assert host["inventories"][1]["summary"]["pending"] is None

    status, fleet = await api.call("GET", "/api/v1/patches")
    assert status == 200
    [row] = fleet
    assert row["host"] == "his-01" and row["inventory"]["os"]["name"].startswith("Kylin")
    assert row["open_findings"] == {"critical": 1, "high": 1, "medium": 0, "low": 0}

    # a replayed result (the agent did not see the 200) changes nothing
    await push(api, day3)
    _, again = await api.call("GET", "/api/v1/hosts/his-01/patches")
    assert again["findings"] == host["findings"]
    assert len(again["inventories"]) == 4


async def test_unknown_host_is_404(api: Api) -> None:  # noqa: F811
    status, reply = await api.call("GET", "/api/v1/hosts/nobody/patches")
    assert status == 404 and "no patch or hardening data" in reply["error"]


async def test_rectification_tasks_complete_only_by_scans_and_waivers(
        api: Api) -> None:  # noqa: F811
    await push(api, patches(0, [update("openssl", "Important"), update("sudo", "Critical")]))
    _, host = await api.call("GET", "/api/v1/hosts/his-01/patches")
    ids = {f["key"]: f["id"] for f in host["findings"]}
    iso = (T0 + timedelta(days=5)).isoformat()
    status, task = await api.call("POST", "/api/v1/rectifications", {
        "title": "2026 第3批安全整改: OpenSSL", "issued_by": "信息科",
        "issued_at": T0.isoformat(), "due_at": iso, "findings": [ids["update:openssl"]]})
    assert status == 201 and task["state"] == "overdue" and task["findings_fixed"] == 0
    status, _ = await api.call("POST", "/api/v1/rectifications", {
        "title": "sudo", "issued_by": "信息科", "issued_at": T0.isoformat(),
        "due_at": (T0 + timedelta(days=1)).isoformat(), "findings": [ids["update:sudo"]]})
    assert status == 201
    # a scan on day 3 shows openssl fixed: the first task is complete, on time
    await push(api, patches(3, [update("sudo", "Critical")]))
    year = str(T0.year)
    _, listed = await api.call("GET", "/api/v1/rectifications", year=year)
    by_title = {t["title"]: t for t in listed["tasks"]}
    first = by_title["2026 第3批安全整改: OpenSSL"]
    assert (first["state"], first["on_time"]) == ("completed", True)
    assert first["completed_at"] == (T0 + timedelta(days=3)).isoformat()
    assert by_title["sudo"]["state"] == "overdue"
    assert listed["completion"]["completed_on_time"] == 1
    assert listed["completion"]["completion_ratio"] == 0.5

    # the hospital accepts the sudo risk until next month: counted apart, shown with why
    status, waiver = await api.call("POST", "/api/v1/waivers", {
        "host": "his-*", "key": "update:sudo", "accepted_by": "信息科 张主任",
        "reason": "厂商未提供兼容版本", "expires_at": (utcnow() + timedelta(days=30)).isoformat()})
    assert status == 201 and waiver["accepted_by"] == "信息科 张主任"
    _, fleet = await api.call("GET", "/api/v1/patches")
    assert fleet[0]["open_findings"]["critical"] == 0 and fleet[0]["waived_findings"] == 1
    _, host = await api.call("GET", "/api/v1/hosts/his-01/patches")
    sudo = next(f for f in host["findings"] if f["key"] == "update:sudo")
    assert sudo["waiver"]["reason"] == "厂商未提供兼容版本"


async def test_rectification_and_waiver_bad_input(api: Api) -> None:  # noqa: F811
    status, reply = await api.call("POST", "/api/v1/rectifications", {
        "title": "x", "issued_by": "y", "issued_at": T0.isoformat(),
        "due_at": (T0 + timedelta(days=1)).isoformat(), "findings": [999]})
    assert status == 400 and "no findings [999]" in reply["error"]
    status, reply = await api.call("POST", "/api/v1/waivers", {
        "host": "*", "key": "*", "accepted_by": "x", "reason": "y",
        "expires_at": T0.isoformat()})
    assert status == 400 and "must be in the future" in reply["error"]
    status, reply = await api.call("GET", "/api/v1/rectifications", year="next")
    assert status == 400


async def test_a_real_inventory_of_this_machine_becomes_findings(api: Api) -> None:  # noqa: F811
    from agent.runner import run_check
    from probes.patches import PatchesCheck

    check = PatchesCheck.model_validate({"id": "patches", "kind": "patches", "timeout": "300s"})
    result = await run_check(check, "his-01")
    assert result.status.value != "unknown", result.summary   # the inventory itself worked
    await push(api, result)
    _, fleet = await api.call("GET", "/api/v1/patches")
    [row] = fleet
    assert row["inventory"]["os"]["id"] == "debian"
    assert row["inventory"]["packages_count"] == result.details["packages_count"] > 100
    security = [u for u in result.details["pending"] if u["security"]]
    assert row["inventory"]["security_pending"] == len(security)
    _, host = await api.call("GET", "/api/v1/hosts/his-01/patches")
    assert {f["key"] for f in host["findings"]} == {f"update:{u['name']}" for u in security}
