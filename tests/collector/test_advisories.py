"""Offline advisory bundles: a KEV catalog and version rules imported with the CLI, then the
versions probes report (nginx, Tomcat) matched by the collector: findings open, are marked
KEV, and are fixed when a later result reports a fixed version."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from collector.advisories import Advisories, parse_rules, version_key
from collector.findings import FindingsService
from collector.store import Store, StoreError, utcnow
from probes.result import CheckResult, Status

FIXTURES = Path(__file__).parent / "fixtures"
T0 = utcnow() - timedelta(days=10)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def reported(kind: str, check: str, days: float, **details: str) -> CheckResult:
    return CheckResult(agent_id="web-01", check_id=check, kind=kind, status=Status.OK,
                       reason="ok", started_at=T0 + timedelta(days=days),
                       duration_s=0.01, interval_s=30, summary="", details=details)


async def test_imported_bundles_turn_versions_into_findings(tmp_path: Path) -> None:
    data = {"store": f"sqlite:///{tmp_path}/c.db"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    conf = ["--config", str(tmp_path / "c.yaml")]
    kev = await asyncio.to_thread(cli, "advisories", "import", str(FIXTURES / "kev-excerpt.json"),
                                  "--kind", "kev", "--by", "信息科", *conf)
    assert kev.returncode == 0, kev.stderr
    assert json.loads(kev.stdout)["source_date"] == "2026-11-20T17:00:00.000Z"
    rules = await asyncio.to_thread(cli, "advisories", "import",
                                    str(FIXTURES / "version-rules.csv"), "--kind", "rules",
                                    "--source-date", "2026-11-01", *conf)
    assert rules.returncode == 0 and json.loads(rules.stdout)["entries"] == 3
    again = await asyncio.to_thread(cli, "advisories", "import",
                                    str(FIXTURES / "version-rules.csv"), "--kind", "rules",
                                    "--source-date", "2026-11-01", *conf)
    assert "imported before" in again.stderr
    listed = await asyncio.to_thread(cli, "advisories", "list", *conf)
    assert [json.loads(line)["kind"] for line in listed.stdout.splitlines()] == ["kev", "rules"]

    store = await Store.open(data["store"])
    try:
        service = FindingsService(store)
        await service.observe([reported("nginx", "front", 0, version="1.22.1"),
                               reported("tomcat", "his", 0,
                                        tomcat_version="Apache Tomcat/10.1.34")])
        found = {f["key"]: f for f in (await service.host("web-01", utcnow()))["findings"]}
        assert set(found) == {"vuln:CVE-2023-44487", "vuln:CVE-2025-24813"}
        assert found["vuln:CVE-2023-44487"]["data"]["kev"] is True
        assert found["vuln:CVE-2025-24813"]["data"]["kev"] is False
        assert found["vuln:CVE-2025-24813"]["severity"] == "critical"
        assert "fixed in 10.1.35" in found["vuln:CVE-2025-24813"]["title"]
        [row] = await service.fleet(utcnow())
        assert row["kev_findings"] == 1 and row["open_findings"]["critical"] == 1
        # nginx upgraded: the next result shows 1.26.2, the finding is fixed
        await service.observe([reported("nginx", "front", 2, version="1.26.2")])
        found = {f["key"]: f for f in (await service.host("web-01", utcnow()))["findings"]}
        assert found["vuln:CVE-2023-44487"]["state"] == "fixed"
        assert found["vuln:CVE-2023-44487"]["time_to_fix_s"] == 2 * 86400
    finally:
        await store.close()


def test_versions_compare_number_by_number() -> None:
    assert version_key("Apache Tomcat/10.1.60") == (10, 1, 60)
    assert version_key("10.11.19-MariaDB-0+deb12u1") == (10, 11, 19)
    assert version_key("nginx") is None
    [rule] = [r for r in parse_rules("tomcat,10.1.0,10.1.35,CVE-2025-24813,critical,x\n")]
    assert rule["fixed_in"] == "10.1.35"


@pytest.mark.parametrize(("text", "message"), [
    ("nginx,1.0,2.0,CVE-2020-1,high,x\n", "is not a CVE id"),
    ("apache,,2.0,CVE-2020-1234,high,x\n", "unknown product 'apache'"),
    ("nginx,,two,CVE-2020-1234,high,x\n", "versions must be numbers"),
    ("nginx,,2.0,CVE-2020-1234,urgent,x\n", "severity must be one of"),
    ("nginx,2.0,CVE-2020-1234\n", "expected 6 fields"),
    ("# nothing\n", "no rules"),
])
def test_rule_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        parse_rules(text)


async def test_kev_must_be_a_catalog(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/c.db")
    try:
        with pytest.raises(StoreError, match="not a CISA KEV catalog"):
            await Advisories(store).import_bundle("kev", b"{}", source="x", source_date="",
                                                  by="t", now=utcnow())
    finally:
        await store.close()


async def test_oracle_home_patch_level_is_matched_per_home(tmp_path: Path) -> None:
    """`opatch lspatches` in a configured Oracle home (a `patches` result's
    `details.oracle_homes`) is matched at the PSU level, one finding per home, fixed by a later
    inventory with the newer PSU; an unreadable home changes nothing."""
    store = await Store.open(f"sqlite:///{tmp_path}/c.db")
    try:
        service = FindingsService(store)
        rules = (b"product,affected_from,fixed_in,cve,severity,title\n"
                 b"weblogic,12.2.1.4.0,12.2.1.4.230702,CVE-2023-21839,high,T3/IIOP RCE\n")
        await service.advisories.import_bundle("rules", rules, source="test.csv",
                                               source_date="2026-11-01", by="test", now=utcnow())

        def inventory(days: float, *homes: dict[str, object]) -> CheckResult:
            return CheckResult(agent_id="wls-01", check_id="patches", kind="patches",
                               status=Status.OK, reason="ok",
                               started_at=T0 + timedelta(days=days), duration_s=1,
                               interval_s=86400, summary="",
                               details={"oracle_homes": list(homes)})

        old = {"path": "/u01/wls", "product": "weblogic", "version": "12.2.1.4.200624",
               "patch_date": "2020-06-24", "patches": [["31537019", "WLS PSU"]],
               "error": None}
        await service.observe([inventory(0, old)])
        found = {f["key"]: f for f in (await service.host("wls-01", utcnow()))["findings"]}
        assert set(found) == {"vuln:CVE-2023-21839@/u01/wls"}
        assert found["vuln:CVE-2023-21839@/u01/wls"]["data"]["oracle_home"] == "/u01/wls"
        # the home could not be read: the finding stays open
        await service.observe([inventory(1, {**old, "version": None, "error": "timeout"})])
        found = {f["key"]: f for f in (await service.host("wls-01", utcnow()))["findings"]}
        assert found["vuln:CVE-2023-21839@/u01/wls"]["state"] == "open"
        # the July 2023 PSU applied: fixed
        await service.observe([inventory(3, {**old, "version": "12.2.1.4.230702"})])
        found = {f["key"]: f for f in (await service.host("wls-01", utcnow()))["findings"]}
        assert found["vuln:CVE-2023-21839@/u01/wls"]["state"] == "fixed"
    finally:
        await store.close()
