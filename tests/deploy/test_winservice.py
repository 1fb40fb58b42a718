"""The Windows service's start/stop logic, run on Linux with the win32 calls injected.

What the SCM would see is recorded by `RecordingHost` (the states reported and the event-log
lines); what a real peer sees is checked on the wire: /metrics answers once RUNNING is
reported and the port is released after the stop. pywin32 itself, pythonservice.exe, the
registry and `service install|start|stop` run on Windows only and are not tested here
(docs/deploy.md, "Windows service").
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from agent.winservice import AgentService, ServiceState, default_config_path, log_file_path
from tests.services import free_port

WAIT = 60.0


@dataclass
class RecordingHost:
    """Stands where pywin32's ReportServiceStatus and servicemanager.Log*Msg stand."""

    states: list[ServiceState] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)
    running: threading.Event = field(default_factory=threading.Event)

    def report(self, state: ServiceState, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        assert state is not ServiceState.START_PENDING or wait_hint_ms > 0
        self.states.append(state)
        self.exit_codes.append(exit_code)
        if state is ServiceState.RUNNING:
            self.running.set()

    def log_event(self, level: int, message: str) -> None:
        self.events.append((level, message))


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def agent_config(tmp_path: Path, port: int) -> Path:
    target = socket.create_server(("127.0.0.1", 0))
    target_port = target.getsockname()[1]
    target.close()
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "agent": {"id": "win-agent", "listen": f"127.0.0.1:{port}",
                  "state_dir": str(tmp_path / "state")},
        "checks": [{"id": "t", "kind": "tcp", "system": "EMR", "host": "127.0.0.1",
                    "port": target_port}]}))
    return path


def metrics_status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return int(resp.status)


def run_in_thread(service: AgentService) -> tuple[threading.Thread, list[int]]:
    """As the SCM does: SvcRun on one thread, SvcStop later from another."""
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(service.run()), daemon=True)
    thread.start()
    return thread, codes


def test_start_reports_running_once_metrics_answer_and_stop_releases_the_port(
        tmp_path: Path) -> None:
    port = free_port()
    host = RecordingHost()
    log_path = tmp_path / "logs" / "agent.log"
    service = AgentService(host, agent_config(tmp_path, port), stop_timeout=WAIT,
                           log_path=log_path)
    thread, codes = run_in_thread(service)
    assert host.running.wait(WAIT), host.events
    assert metrics_status(port) == 200

    assert service.request_stop() is True
    thread.join(WAIT)
    assert not thread.is_alive() and codes == [0]
    assert host.states == [ServiceState.START_PENDING, ServiceState.RUNNING,
                           ServiceState.STOP_PENDING]   # pywin32 reports STOPPED on return
    with pytest.raises(urllib.error.URLError):
        metrics_status(port)
    text = log_path.read_text()
    assert "starting wardwatch-agent" in text and "shutting down" in text
    assert (logging.INFO, f"wardwatch-agent started ({service._config_path})") in host.events


def test_a_wedged_loop_does_not_hold_the_stop_past_its_bound(tmp_path: Path) -> None:
    port = free_port()
    host = RecordingHost()
    service = AgentService(host, agent_config(tmp_path, port), stop_timeout=0.5,
                           log_path=tmp_path / "agent.log")
    thread, codes = run_in_thread(service)
    assert host.running.wait(WAIT)
    agent = service._agent
    assert agent is not None and agent._loop is not None
    release = threading.Event()
    # a blocking call on the agent's loop, as a probe forgetting asyncio.to_thread would make
    agent._loop.call_soon_threadsafe(release.wait)
    try:
        assert service.request_stop() is False   # returned at the bound, loop still wedged
        thread.join(WAIT)
        assert not thread.is_alive()             # SvcRun returned: the SCM gets STOPPED
        assert codes == [1]
        assert any(level == logging.ERROR and "did not stop within" in message
                   for level, message in host.events)
    finally:
        release.set()
    assert agent.join(WAIT)  # once unwedged, the loop sees its stop event and ends


def test_a_broken_config_stops_with_an_error_in_the_event_log(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text(yaml.safe_dump({"checks": [{"id": "x", "kind": "tcp", "host": "h",
                                              "port": 70000}]}))
    host = RecordingHost()
    assert AgentService(host, bad, log_path=tmp_path / "agent.log").run() == 1
    assert host.states == [ServiceState.START_PENDING, ServiceState.STOPPED]
    assert host.exit_codes[-1] == 1
    [(level, message)] = host.events
    assert level == logging.ERROR and "checks[0].port" in message and str(bad) in message


def test_a_port_in_use_ends_start_without_running(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        host = RecordingHost()
        service = AgentService(host, agent_config(tmp_path, taken.getsockname()[1]),
                               log_path=tmp_path / "agent.log")
        assert service.run() == 1
    assert ServiceState.RUNNING not in host.states
    assert any(level == logging.ERROR and "cannot listen" in message
               for level, message in host.events)


def test_stop_before_the_loop_started_is_honoured(tmp_path: Path) -> None:
    host = RecordingHost()
    service = AgentService(host, agent_config(tmp_path, free_port()),
                           log_path=tmp_path / "agent.log")
    assert service.request_stop() is True
    thread, codes = run_in_thread(service)
    thread.join(WAIT)
    assert not thread.is_alive() and codes == [0]


def test_paths_are_under_programdata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path))
    assert default_config_path() == tmp_path / "wardwatch" / "agent.yaml"
    assert log_file_path() == tmp_path / "wardwatch" / "logs" / "agent.log"


def test_service_command_is_a_clear_error_off_windows() -> None:
    out = subprocess.run([sys.executable, "-m", "agent", "service", "install"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 2
    assert "Windows only" in out.stderr and "deploy/systemd" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_pywin32_class_drives_the_same_logic(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """`WardwatchAgentService` built on stand-ins shaped like pywin32's modules (the real
    ones exist on Windows only): SvcRun reports RUNNING only once /metrics answers."""
    import types

    port = free_port()
    config = agent_config(tmp_path, port)
    reports: list[int] = []
    events: list[str] = []

    class ServiceFramework:  # pywin32's base: __init__(args), ReportServiceStatus, controls
        def __init__(self, args: list[str]) -> None:
            self.args = args

        def GetAcceptedControls(self) -> int:
            return 1

        def ReportServiceStatus(self, state: int, waitHint: int = 5000,
                                win32ExitCode: int = 0, svcExitCode: int = 0) -> None:
            reports.append(state)

    win32service = types.SimpleNamespace(
        SERVICE_STOPPED=1, SERVICE_START_PENDING=2, SERVICE_STOP_PENDING=3, SERVICE_RUNNING=4,
        SERVICE_ACCEPT_SHUTDOWN=4)
    win32serviceutil = types.SimpleNamespace(
        ServiceFramework=ServiceFramework,
        GetServiceCustomOption=lambda _name, option, default: str(config))
    servicemanager = types.SimpleNamespace(
        LogInfoMsg=events.append, LogWarningMsg=events.append, LogErrorMsg=events.append)
    for name, module in (("win32service", win32service), ("win32serviceutil", win32serviceutil),
                         ("servicemanager", servicemanager)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "pd"))

    from agent import winservice

    service = winservice.WardwatchAgentService(["wardwatch-agent"])
    assert service.GetAcceptedControls() & win32service.SERVICE_ACCEPT_SHUTDOWN
    runner = threading.Thread(target=service.SvcRun, daemon=True)
    runner.start()
    ready = threading.Event()

    def wait_running() -> None:
        while win32service.SERVICE_RUNNING not in reports and runner.is_alive():
            ready.wait(0.05)

    waiter = threading.Thread(target=wait_running)
    waiter.start()
    waiter.join(WAIT)
    assert win32service.SERVICE_RUNNING in reports
    assert metrics_status(port) == 200
    service.SvcStop()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert reports == [win32service.SERVICE_START_PENDING, win32service.SERVICE_RUNNING,
                       win32service.SERVICE_STOP_PENDING]
    assert events == [f"wardwatch-agent started ({config})"]
    assert (tmp_path / "pd" / "wardwatch" / "logs" / "agent.log").exists()
