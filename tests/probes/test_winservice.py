"""winservice probe: evaluate() on recorded as_dict() results (fixtures/winservice/), and
probe() on this machine (unsupported_platform off Windows, a real lookup on Windows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.result import Status
from probes.winservice import WinServiceCheck, evaluate, probe

FIXTURES = Path(__file__).parent / "fixtures" / "winservice"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def service(name: str, **kw: object) -> WinServiceCheck:
    return WinServiceCheck.model_validate({"id": "w", "kind": "winservice", "name": name, **kw})


@pytest.mark.parametrize(("fixture", "status", "reason"), [
    ("weblogic-nodemanager-running", Status.OK, "ok"),
    ("oracleserviceorcl-stopped", Status.CRITICAL, "service_stopped"),
    ("tomcat9-start-pending", Status.WARNING, "service_pending"),
    ("tomcat9-running-manual", Status.OK, "ok"),
])
def test_recorded_states(fixture: str, status: Status, reason: str) -> None:
    info = recorded(fixture)
    res = evaluate(info, service(info["name"]))
    assert (res.status, res.reason) == (status, reason), res.summary
    [metric] = res.metrics
    assert metric.name == "winservice_running"
    assert metric.value == (1.0 if info["status"] == "running" else 0.0)


def test_running_service_summary_names_display_name_and_pid() -> None:
    info = recorded("weblogic-nodemanager-running")
    res = evaluate(info, service(info["name"], expect_start_type="automatic"))
    assert res.status is Status.OK
    assert res.summary.startswith("Oracle WebLogic emr_domain NodeManager")
    assert "is running, pid 2316 (start type automatic)" in res.summary


def test_stopped_oracle_is_critical_with_start_type() -> None:
    res = evaluate(recorded("oracleserviceorcl-stopped"), service("OracleServiceORCL"))
    assert res.summary == "OracleServiceORCL is stopped (start type automatic)"
    assert res.details["pid"] is None


def test_start_type_mismatch_warns_while_running() -> None:
    res = evaluate(recorded("tomcat9-running-manual"),
                   service("Tomcat9", expect_start_type="automatic"))
    assert (res.status, res.reason) == (Status.WARNING, "start_type_mismatch")
    assert "start type manual, expected automatic" in res.summary


def test_stopped_wins_over_start_type_mismatch() -> None:
    info = {**recorded("oracleserviceorcl-stopped"), "start_type": "manual"}
    res = evaluate(info, service("OracleServiceORCL", expect_start_type="automatic"))
    assert (res.status, res.reason) == (Status.CRITICAL, "service_stopped")
    assert "expected automatic" in res.summary


@pytest.mark.parametrize(("status", "level", "reason"), [
    ("paused", Status.CRITICAL, "service_paused"),
    ("pause_pending", Status.CRITICAL, "service_paused"),
    ("stop_pending", Status.CRITICAL, "service_stopped"),
    ("continue_pending", Status.WARNING, "service_pending"),
    ("start pending", Status.WARNING, "service_pending"),  # older psutil spelling
    ("unknown", Status.UNKNOWN, "service_state_unknown"),
])
def test_other_statuses(status: str, level: Status, reason: str) -> None:
    info = {**recorded("tomcat9-running-manual"), "status": status}
    res = evaluate(info, service("Tomcat9"))
    assert (res.status, res.reason) == (level, reason)


def test_missing_service_is_critical() -> None:
    res = evaluate(None, service("OracleOraDB19Home1TNSListener"))
    assert (res.status, res.reason) == (Status.CRITICAL, "service_not_found")
    assert "OracleOraDB19Home1TNSListener" in res.summary


def test_details_leave_out_binary_path_and_description() -> None:
    res = evaluate(recorded("tomcat9-start-pending"), service("Tomcat9"))
    assert set(res.details) == {"name", "display_name", "status", "start_type", "pid",
                                "username"}


def test_service_name_must_not_hold_slashes() -> None:
    with pytest.raises(ValidationError):
        service("..\\evil")
    with pytest.raises(ValidationError):
        service("Tomcat9", expect_start_type="sometimes")


@pytest.mark.skipif(sys.platform == "win32", reason="off Windows only")
async def test_probe_off_windows_is_unknown_unsupported_platform() -> None:
    res = await probe(service("Tomcat9"))
    assert (res.status, res.reason) == (Status.UNKNOWN, "unsupported_platform")
    assert "only be checked on Windows" in res.summary


@pytest.mark.skipif(sys.platform != "win32", reason="needs the Windows service manager")
async def test_probe_on_windows_reads_real_services() -> None:
    missing = await probe(service("wardwatch-no-such-service"))
    assert (missing.status, missing.reason) == (Status.CRITICAL, "service_not_found")
    # the RPC endpoint mapper runs on every Windows installation
    rpc = await probe(service("RpcSs"))
    assert (rpc.status, rpc.reason) == (Status.OK, "ok"), rpc.summary
