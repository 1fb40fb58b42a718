"""systemd probe: parse_show() and evaluate() on recorded `systemctl show` outputs
(fixtures/systemd/), probe() against this machine's real systemctl, and probe() end to end over
the recorded outputs through a stand-in `systemctl` on PATH."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.result import ProbeResult, Status
from probes.systemd import PROPERTIES, SystemdCheck, evaluate, parse_show, probe

FIXTURES = Path(__file__).parent / "fixtures" / "systemd"


def recorded(name: str) -> dict[str, str]:
    return parse_show((FIXTURES / f"{name}.txt").read_text(encoding="utf-8"))


def unit(name: str, **kw: object) -> SystemdCheck:
    return SystemdCheck.model_validate({"id": "s", "kind": "systemd", "unit": name, **kw})


def metric(res: ProbeResult, name: str) -> float | None:
    return next((m.value for m in res.metrics if m.name == name), None)


def test_parse_show_keeps_empty_values_and_splits_on_first_equals() -> None:
    props = parse_show("Id=x.service\nUnitFileState=\nEnvironment=A=1 B=2\n\nnoise line\n")
    assert props == {"Id": "x.service", "UnitFileState": "", "Environment": "A=1 B=2"}


def test_every_fixture_has_every_property() -> None:
    for path in FIXTURES.glob("*.txt"):
        assert set(parse_show(path.read_text(encoding="utf-8"))) == set(PROPERTIES), path.name


@pytest.mark.parametrize(("fixture", "status", "reason", "active", "restarts"), [
    ("nginx-active", Status.OK, "ok", 1.0, 0.0),
    ("tomcat10-failed", Status.CRITICAL, "unit_failed", 0.0, 0.0),
    ("not-found", Status.CRITICAL, "unit_not_found", 0.0, 0.0),
    ("his-interface-activating", Status.WARNING, "unit_transitioning", 0.0, 7.0),
    ("emr-backup-inactive", Status.CRITICAL, "unit_inactive", 0.0, 0.0),
])
def test_recorded_states(fixture: str, status: Status, reason: str, active: float,
                         restarts: float) -> None:
    props = recorded(fixture)
    res = evaluate(props, unit(props["Id"]))
    assert (res.status, res.reason) == (status, reason), res.summary
    assert metric(res, "systemd_unit_active") == active
    assert metric(res, "systemd_unit_restarts_total") == restarts
    assert res.details["properties"] == props


def test_summaries_say_what_happened() -> None:
    assert evaluate(recorded("nginx-active"), unit("nginx")).summary == \
        "nginx.service is active (running)"
    assert evaluate(recorded("tomcat10-failed"), unit("tomcat10")).summary == \
        "tomcat10.service failed: result exit-code, exit status 1"
    assert evaluate(recorded("his-interface-activating"), unit("his-interface")).summary == \
        "his-interface.service is activating (auto-restart): result exit-code, exit status 1, " \
        "7 restarts"
    assert evaluate(recorded("not-found"), unit("weblogic-nodemanager")).summary == \
        "weblogic-nodemanager.service not found (no such unit file)"


def test_signal_is_named_as_a_signal() -> None:
    props = {**recorded("tomcat10-failed"), "Result": "signal", "ExecMainStatus": "9"}
    assert evaluate(props, unit("tomcat10")).summary == \
        "tomcat10.service failed: result signal, signal 9"


def test_inactive_is_ok_when_not_expected_active_but_failed_is_not() -> None:
    relaxed = unit("emr-backup", expect_active=False)
    res = evaluate(recorded("emr-backup-inactive"), relaxed)
    assert (res.status, res.reason) == (Status.OK, "ok")
    assert "allowed" in res.summary
    assert evaluate(recorded("tomcat10-failed"), relaxed).status is Status.CRITICAL


def test_load_error_is_critical_unless_still_active() -> None:
    broken = evaluate({**recorded("emr-backup-inactive"), "LoadState": "bad-setting"},
                      unit("emr-backup"))
    assert (broken.status, broken.reason) == (Status.CRITICAL, "unit_load_error")
    running = evaluate({**recorded("nginx-active"), "LoadState": "error"}, unit("nginx"))
    assert (running.status, running.reason) == (Status.WARNING, "unit_load_error")


def test_output_without_states_is_unknown() -> None:
    res = evaluate(parse_show("Id=nginx.service\n"), unit("nginx"))
    assert (res.status, res.reason) == (Status.UNKNOWN, "systemctl_error")


def test_unit_names_cannot_become_options() -> None:
    for bad in ("-H evil", "--now", "", "a b", "x;reboot"):
        with pytest.raises(ValidationError):
            unit(bad)
    assert unit("systemd-fsck@dev-disk-by\\x2duuid-1234.service").unit.startswith("systemd")


# --- the live path, on this machine ------------------------------------------------------------

def _systemd_booted() -> bool:
    # sd_booted(3): the system was booted with systemd if /run/systemd/system/ exists
    return os.path.isdir("/run/systemd/system")


@pytest.mark.skipif(sys.platform == "win32", reason="no systemd on Windows")
async def test_probe_against_this_machines_systemctl() -> None:
    res = await probe(unit("systemd-journald.service"))
    if shutil.which("systemctl") is None:
        assert (res.status, res.reason) == (Status.UNKNOWN, "systemd_unavailable")
        assert res.summary == "systemd is not available: no systemctl on this host"
    elif not _systemd_booted():
        # a container or chroot: systemctl exists, PID 1 is not systemd
        assert (res.status, res.reason) == (Status.UNKNOWN, "systemd_unavailable"), res.summary
        assert res.summary.startswith("systemd is not available: ")
        assert "booted with systemd" in res.summary or "bus" in res.summary
    else:
        assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
        assert metric(res, "systemd_unit_active") == 1.0


async def test_probe_without_systemctl_on_path(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    res = await probe(unit("nginx"))
    assert (res.status, res.reason) == (Status.UNKNOWN, "systemd_unavailable")
    assert "no systemctl" in res.summary


def _stand_in_systemctl(bin_dir: Path, script: str) -> Path:
    """A `systemctl` that records its arguments (one per line) and runs `script`."""
    bin_dir.mkdir(exist_ok=True)
    args = bin_dir / "args"
    path = bin_dir / "systemctl"
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args}"\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return args


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script")
@pytest.mark.parametrize(("fixture", "status", "reason"), [
    ("nginx-active", Status.OK, "ok"),
    ("tomcat10-failed", Status.CRITICAL, "unit_failed"),
    ("not-found", Status.CRITICAL, "unit_not_found"),
])
async def test_probe_end_to_end_over_recorded_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture: str, status: Status,
        reason: str) -> None:
    args = _stand_in_systemctl(tmp_path / "bin", f'exec cat "{FIXTURES / fixture}.txt"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = await probe(unit("nginx"))
    assert (res.status, res.reason) == (status, reason), res.summary
    assert args.read_text().splitlines() == [
        "show", f"--property={','.join(PROPERTIES)}", "--no-pager", "--", "nginx"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script")
async def test_probe_reports_other_systemctl_errors(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in_systemctl(tmp_path / "bin",
                        'echo "Failed to get properties: Access denied" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = await probe(unit("nginx"))
    assert (res.status, res.reason) == (Status.UNKNOWN, "systemctl_error")
    assert res.summary == "systemctl show nginx failed (exit 1): " \
                          "Failed to get properties: Access denied"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script")
async def test_hung_systemctl_is_killed_at_the_deadline(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "pid"
    _stand_in_systemctl(tmp_path / "bin", f'echo $$ > "{pid_file}"; exec sleep 30')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    res = await run_check(unit("nginx", timeout=0.5), "agent-1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
