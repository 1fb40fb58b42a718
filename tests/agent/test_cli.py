"""`wardwatch-agent` as people and other monitors run it: exit codes, output, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.services import free_port, wait_for_port

AGENT = [sys.executable, "-m", "agent"]


@pytest.fixture
def open_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def write(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def agent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=timeout)


def tcp(check_id: str, port: int, **kw: object) -> dict[str, object]:
    return {"id": check_id, "kind": "tcp", "system": "EMR", "host": "127.0.0.1", "port": port,
            **kw}


def test_check_exit_code_is_the_worst_result(tmp_path: Path, open_port: int) -> None:
    closed = free_port()
    cfg = write(tmp_path / "a.yaml", {"checks": [tcp("up", open_port), tcp("down", closed)]})
    out = agent("check", "--config", str(cfg))
    assert out.returncode == 2, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "KIND", "SYSTEM", "STATUS", "TIME", "SUMMARY"]
    assert any(line.startswith("down") and "CRITICAL" in line for line in lines)
    assert lines[-1] == "1 ok, 1 critical"

    only = agent("check", "--config", str(cfg), "--only", "up", "--json")
    assert only.returncode == 0
    [result] = json.loads(only.stdout)
    assert (result["check_id"], result["status"], result["reason"]) == ("up", "ok", "ok")
    assert result["started_at"].endswith("Z") or result["started_at"].endswith("+00:00")

    missing = agent("check", "--config", str(cfg), "--only", "nope")
    assert missing.returncode == 3 and "no check with id nope" in missing.stderr


def test_check_warning_exit_1(tmp_path: Path, open_port: int) -> None:
    cfg = write(tmp_path / "a.yaml", {"checks": [
        tcp("slow", open_port, connect_seconds={"warning": 0})]})
    assert agent("check", "--config", str(cfg)).returncode == 1


def test_invalid_config_messages(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.yaml", {"checks": [
        {"id": "x", "kind": "tcp", "host": "h", "port": 70000}]})
    out = agent("validate", "--config", str(cfg))
    assert out.returncode == 1
    assert f"{cfg}: invalid configuration" in out.stderr
    assert "checks[0].port: Input should be less than or equal to 65535" in out.stderr
    assert "Traceback" not in out.stderr
    assert agent("check", "--config", str(cfg)).returncode == 3

    good = write(tmp_path / "good.yaml", {"agent": {"id": "emr-app-01"},
                                          "checks": [tcp("a", 1)]})
    ok = agent("validate", "--config", str(good))
    assert ok.returncode == 0 and "OK, agent emr-app-01, 1 checks" in ok.stdout


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def wait_until(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_daemon_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path, open_port: int) -> None:
    port = free_port()
    doc: dict[str, object] = {"agent": {"id": "d1", "listen": f"127.0.0.1:{port}",
                                        "log_format": "json"},
                              "checks": [tcp("a", open_port, interval="1s", timeout="0.5s")]}
    cfg = write(tmp_path / "a.yaml", doc)
    proc = subprocess.Popen([*AGENT, "run", "--config", str(cfg)], stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_port(port)
        wait_until(lambda: 'wardwatch_check_up{check="a"' in scrape(port))
        doc["checks"] = [tcp("b", open_port, interval="1s", timeout="0.5s")]
        write(cfg, doc)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: 'check="b"' in scrape(port) and 'check="a"' not in scrape(port))
        cfg.write_text("checks: {{{ not yaml\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "wardwatch_agent_config_last_reload_successful 0.0" in scrape(port))
        assert 'check="b"' in scrape(port)  # still running the last good config
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logs]
    assert any("reload failed" in m for m in messages)
    assert "shutting down" in messages


def test_port_in_use_is_a_clear_error(tmp_path: Path, open_port: int) -> None:
    cfg = write(tmp_path / "a.yaml", {"agent": {"listen": f"127.0.0.1:{open_port}"},
                                      "checks": [tcp("a", open_port)]})
    out = agent("run", "--config", str(cfg))
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{open_port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_secret_never_in_output(tmp_path: Path, open_port: int) -> None:
    env_name = "WW_TEST_SECRET_" + str(os.getpid())
    cfg = write(tmp_path / "a.yaml", {"agent": {"listen": "0.0.0.0:9810", "basic_auth": {
        "username": "prom", "password": {"env": env_name}}}, "checks": [tcp("a", open_port)]})
    out = subprocess.run([*AGENT, "check", "--config", str(cfg), "--json"], capture_output=True,
                         text=True, timeout=30, env={**os.environ, env_name: "p4ssw0rd-xyz"})
    assert out.returncode == 0, out.stderr
    assert "p4ssw0rd-xyz" not in out.stdout + out.stderr


def test_oracle_thick_mode_is_chosen_at_start_and_a_missing_client_is_clear(
        tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    config = write(tmp_path / "agent.yaml", {"agent": {"id": "ora"}, "checks": [
        {"id": "emr-db", "kind": "oracle", "dsn": "127.0.0.1:1/EMRDB", "user": "wardwatch",
         "password_file": str(tmp_path / "pw"), "mode": "thick",
         "lib_dir": str(tmp_path / "instantclient")}]})
    proc = agent("check", "--config", str(config))
    assert proc.returncode == 3
    assert "cannot enable python-oracledb thick mode" in proc.stderr
    assert "DPI-1047" in proc.stderr and "secret" not in proc.stderr + proc.stdout
