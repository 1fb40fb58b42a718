"""The systemd units as systemd reads them: `systemd-analyze verify` (Debian's systemd), the
hardening exposure `systemd-analyze security --offline` scores, and the sysusers/tmpfiles
files applied to a scratch root.

This machine does not run systemd as PID 1, so nothing is started here; the notify protocol
the units rely on (Type=notify, WatchdogSec=) is tested against a real socket in
tests/agent/test_sdnotify.py. `verify` refuses an ExecStart= binary that does not exist, so
the units are copied with /opt/wardwatch/venv/bin/ pointed at this checkout's own venv (the
real commands, not stubs); the copies differ from the shipped files in that path only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import needs

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SHIPPED_BIN = "/opt/wardwatch/venv/bin/"
ANALYZE = shutil.which("systemd-analyze")
SERVICES = ("wardwatch-agent.service", "wardwatch-collector.service")


def installed_copy(dest: Path, name: str) -> Path:
    text = (UNITS / name).read_text()
    assert SHIPPED_BIN in text
    venv_bin = Path(sys.executable).parent
    for command in ("wardwatch-agent", "wardwatch-collector"):
        needs((venv_bin / command).exists(), f"{command} installed in {venv_bin}")
    path = dest / name
    path.write_text(text.replace(SHIPPED_BIN, f"{venv_bin}/"))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    needs(ANALYZE is not None, "systemd-analyze (Debian package systemd)")
    assert ANALYZE is not None
    # SYSTEMD_LOG_COLOR off: plain messages to compare
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_units_verify_without_a_warning(tmp_path: Path) -> None:
    paths = [installed_copy(tmp_path, name) for name in SERVICES]
    out = analyze("verify", *map(str, paths))
    assert out.returncode == 0, out.stderr
    # unknown keys and bad values are only warnings to verify: none may appear
    assert out.stderr.strip() == ""


@pytest.mark.parametrize("drop_in", sorted(p.name for p in
                                           (UNITS / "wardwatch-agent.service.d").iterdir()))
def test_each_agent_drop_in_verifies_with_the_unit(tmp_path: Path, drop_in: str) -> None:
    unit = installed_copy(tmp_path, "wardwatch-agent.service")
    # verify reads drop-ins from NAME.service.d/ next to the unit file
    conf_dir = tmp_path / "wardwatch-agent.service.d"
    conf_dir.mkdir()
    shutil.copy(UNITS / "wardwatch-agent.service.d" / drop_in,
                conf_dir / drop_in.removesuffix(".example"))
    out = analyze("verify", str(unit))
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ""


def test_verify_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path, "wardwatch-agent.service")
    unit.write_text(unit.read_text().replace("ProtectHome=", "ProtectHomeDir="))
    out = analyze("verify", str(unit))
    assert "Unknown key 'ProtectHomeDir'" in out.stderr
    missing = tmp_path / "missing.service"
    missing.write_text((UNITS / "wardwatch-agent.service").read_text())  # /opt/… is absent here
    assert analyze("verify", str(missing)).returncode != 0


@pytest.mark.parametrize("name", SERVICES)
def test_hardening_exposure_stays_low(tmp_path: Path, name: str) -> None:
    unit = installed_copy(tmp_path, name)
    out = analyze("security", "--offline=yes", "--no-pager", str(unit))
    assert out.returncode == 0, out.stderr
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", out.stdout)
    assert found, out.stdout[-500:]
    # systemd's scale: 0 safe … 10 unsafe; "OK" is below 3
    assert float(found.group(1)) < 3.0 and found.group(2) == "OK", out.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_units_keep_the_agreed_settings(name: str) -> None:
    """What docs/deploy.md promises, read back from the shipped file."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    expected = {"Type": ["notify"], "NotifyAccess": ["main"], "Restart": ["on-failure"],
                "User": ["wardwatch"], "StateDirectory": ["wardwatch"],
                "ConfigurationDirectory": ["wardwatch"], "NoNewPrivileges": ["yes"],
                "ProtectSystem": ["strict"], "PrivateTmp": ["yes"],
                "ReadWritePaths": ["/var/lib/wardwatch"], "CapabilityBoundingSet": [""],
                "StandardOutput": ["journal"]}
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert "DynamicUser" not in settings
    assert settings["WatchdogSec"][0].endswith("s")


def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    needs(sysusers is not None and tmpfiles is not None, "systemd-sysusers, systemd-tmpfiles")
    assert sysusers is not None and tmpfiles is not None
    root = tmp_path / "root"
    (root / "etc" / "wardwatch").mkdir(parents=True)
    token = root / "etc" / "wardwatch" / "agent.token"
    token.write_text("t\n")
    token.chmod(0o644)
    for _ in range(2):  # idempotent: a second run changes nothing and does not fail
        subprocess.run([sysusers, f"--root={root}", str(UNITS / "wardwatch.sysusers.conf")],
                       check=True, capture_output=True, timeout=60)
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    [user] = [line.split(":") for line in passwd if line.startswith("wardwatch:")]
    assert user[5:] == ["/var/lib/wardwatch", "/usr/sbin/nologin"]
    if os.geteuid() != 0:
        return  # tmpfiles needs root to chown
    subprocess.run([tmpfiles, f"--root={root}", "--create",
                    str(UNITS / "wardwatch.tmpfiles.conf")], check=True, capture_output=True,
                   timeout=60)
    state = (root / "var" / "lib" / "wardwatch").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (int(user[2]), int(user[3]),
                                                                    0o750)
    info = token.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, int(user[3]), 0o640)
