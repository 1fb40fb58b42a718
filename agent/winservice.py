"""The agent as a native Windows service, on pywin32's service framework (extra `windows`).

Owns the service's life as the Service Control Manager (SCM) sees it — START_PENDING until
/metrics answers and the checks are scheduled, RUNNING, STOP_PENDING with a wait hint, then
the framework's STOPPED — its logging (a rotating file under %ProgramData%\\wardwatch\\logs plus
the Application event log for warnings and errors) and `wardwatch-agent service
install|uninstall|start|stop`.

The agent itself is the same asyncio program as `wardwatch-agent run`, run on its own thread
(the SCM calls SvcRun and SvcStop on different threads and SvcStop must return promptly);
SvcStop sets the loop's stop event thread-safely and waits at most `stop_timeout` for the
loop to finish. Everything except the thin pywin32 class at the bottom takes the win32 calls
as a `ServiceHost`, so the start/stop logic runs, and is tested, on Linux
(tests/deploy/test_winservice.py; docs/deploy.md says what is and is not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import importlib
import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger("wardwatch.agent.service")

SERVICE_NAME = "wardwatch-agent"
DISPLAY_NAME = "wardwatch monitoring agent"
DESCRIPTION = "Probes this server for the hospital's availability records; serves /metrics."
START_WAIT_HINT_MS = 120_000   # config load, spool open, first schedule
STOP_TIMEOUT_S = 30.0          # the last results are spooled and flushed on stop


def program_data() -> Path:
    """%ProgramData%\\wardwatch: config, state (spool) and logs of the Windows agent."""
    # Windows environment names are case-insensitive; tests on Linux set PROGRAMDATA
    return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "wardwatch"


def default_config_path() -> Path:
    return program_data() / "agent.yaml"


def log_file_path() -> Path:
    return program_data() / "logs" / "agent.log"


class ServiceState(enum.Enum):
    """The SCM states this service reports (win32service.SERVICE_* on Windows)."""

    START_PENDING = "start_pending"
    RUNNING = "running"
    STOP_PENDING = "stop_pending"
    STOPPED = "stopped"


class ServiceHost(Protocol):
    """The win32 calls the service makes; pywin32's on Windows, a test's recorder on Linux."""

    def report(self, state: ServiceState, wait_hint_ms: int = 0, exit_code: int = 0) -> None: ...

    def log_event(self, level: int, message: str) -> None: ...


class EventLogHandler(logging.Handler):
    """Warnings and errors of the agent also go to the Application event log, where Windows
    administrators (and their SIEM) look first; the file keeps everything."""

    def __init__(self, host: ServiceHost, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._host = host

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._host.log_event(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)


def setup_service_logging(host: ServiceHost, path: Path, level: str = "info") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    event_handler = EventLogHandler(host)
    event_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [file_handler, event_handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class AgentThread:
    """`wardwatch-agent run` on a thread of its own, stoppable from any other thread."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._settled = threading.Event()   # ready or ended, whichever comes first
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.exit_code: int | None = None
        # daemon: a loop wedged past the stop bound must not keep the service process alive
        self._thread = threading.Thread(target=self._main, name="agent-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait_settled(self, within: float) -> bool:
        """Wait until the agent serves or has ended; False when neither happened in time."""
        return self._settled.wait(within)

    def _on_ready(self) -> None:
        self._ready.set()
        self._settled.set()

    def stop(self, within: float) -> bool:
        """Ask the loop to stop and wait up to `within` seconds; True when it ended."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(within)
        return not self._thread.is_alive()

    def join(self, within: float | None = None) -> bool:
        self._thread.join(within)
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            self.exit_code = asyncio.run(self._serve())
        except BaseException:
            log.exception("the agent stopped on an error")
            self.exit_code = 1
        finally:
            self._ended.set()
            self._settled.set()

    async def _serve(self) -> int:
        from agent.__main__ import _serve
        from agent.app import create_app

        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():  # SvcStop came before the loop existed
            self._stop.set()
        return await _serve(create_app(self._config), self._config, stop=self._stop,
                            on_ready=self._on_ready)


class AgentService:
    """What SvcRun and SvcStop do, with the win32 calls injected."""

    def __init__(self, host: ServiceHost, config_path: Path, *,
                 stop_timeout: float = STOP_TIMEOUT_S, log_path: Path | None = None) -> None:
        self._host = host
        self._config_path = config_path
        self._stop_timeout = stop_timeout
        self._log_path = log_path or log_file_path()
        self._agent: AgentThread | None = None
        self._stop_requested = threading.Event()
        self._gave_up = threading.Event()
        self.stopped_in_time: bool | None = None

    def run(self) -> int:
        """SvcRun: start the agent, report RUNNING once it serves, return when it has ended.
        The framework reports STOPPED when this returns."""
        from agent.config import load_agent_config
        from probes.config import ConfigError

        self._host.report(ServiceState.START_PENDING, START_WAIT_HINT_MS)
        try:
            config = load_agent_config(self._config_path)
        except ConfigError as exc:
            # before logging is set up: straight to the event log, where the admin looks
            self._host.log_event(logging.ERROR, f"{SERVICE_NAME} cannot start: {exc}")
            self._host.report(ServiceState.STOPPED, exit_code=1)
            return 1
        setup_service_logging(self._host, self._log_path, config.agent.log_level)
        log.info("starting %s with %s", SERVICE_NAME, self._config_path)
        agent = AgentThread(config)
        self._agent = agent
        agent.start()
        if self._stop_requested.is_set():
            agent.stop(self._stop_timeout)
        while not agent.wait_settled(START_WAIT_HINT_MS / 1000 / 4):
            # still starting (a slow spool open): tell the SCM we are alive
            self._host.report(ServiceState.START_PENDING, START_WAIT_HINT_MS)
        if agent.ready:
            self._host.report(ServiceState.RUNNING)
            self._host.log_event(logging.INFO, f"{SERVICE_NAME} started ({self._config_path})")
        # until the loop ends, or SvcStop gave up on a wedged one
        while not agent.join(1.0) and not self._gave_up.is_set():
            pass
        code = agent.exit_code if agent.exit_code is not None else 1
        if code:
            log.error("%s stopped with exit code %d; see %s", SERVICE_NAME, code,
                      self._log_path)
        else:
            log.info("%s stopped", SERVICE_NAME)
        return code

    def request_stop(self) -> bool:
        """SvcStop (and SvcShutdown): report STOP_PENDING, stop the loop within the bound."""
        self._stop_requested.set()
        self._host.report(ServiceState.STOP_PENDING, int(self._stop_timeout * 1000) + 5000)
        agent = self._agent
        if agent is None:
            self.stopped_in_time = True
            return True
        self.stopped_in_time = agent.stop(self._stop_timeout)
        if not self.stopped_in_time:
            self._gave_up.set()
            # the loop is wedged (a blocking call): the SCM's STOPPED follows anyway and
            # the daemon thread dies with the process
            log.error("the agent's loop did not stop within %.0fs; stopping the process",
                      self._stop_timeout)
        return self.stopped_in_time


# --- pywin32: only imported on Windows ------------------------------------------------------

class _Win32Host:
    def __init__(self, framework: Any, win32service: Any, servicemanager: Any) -> None:
        self._framework = framework
        self._servicemanager = servicemanager
        self._states = {
            ServiceState.START_PENDING: win32service.SERVICE_START_PENDING,
            ServiceState.RUNNING: win32service.SERVICE_RUNNING,
            ServiceState.STOP_PENDING: win32service.SERVICE_STOP_PENDING,
            ServiceState.STOPPED: win32service.SERVICE_STOPPED,
        }

    def report(self, state: ServiceState, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        if exit_code:
            winerror = importlib.import_module("winerror")
            self._framework.ReportServiceStatus(
                self._states[state], waitHint=wait_hint_ms,
                win32ExitCode=winerror.ERROR_SERVICE_SPECIFIC_ERROR, svcExitCode=exit_code)
        else:
            self._framework.ReportServiceStatus(self._states[state], waitHint=wait_hint_ms)

    def log_event(self, level: int, message: str) -> None:
        if level >= logging.ERROR:
            self._servicemanager.LogErrorMsg(message)
        elif level >= logging.WARNING:
            self._servicemanager.LogWarningMsg(message)
        else:
            self._servicemanager.LogInfoMsg(message)


def _framework_class() -> type:
    servicemanager = importlib.import_module("servicemanager")
    win32service = importlib.import_module("win32service")
    win32serviceutil = importlib.import_module("win32serviceutil")
    framework: Any = win32serviceutil.ServiceFramework

    class WardwatchAgentService(framework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            config = win32serviceutil.GetServiceCustomOption(
                SERVICE_NAME, "config", str(default_config_path()))
            host = _Win32Host(self, win32service, servicemanager)
            self._service = AgentService(host, Path(config))

        def GetAcceptedControls(self) -> int:
            return int(super().GetAcceptedControls() | win32service.SERVICE_ACCEPT_SHUTDOWN)

        def SvcRun(self) -> None:
            # overridden (pywin32 allows it) so RUNNING is reported when /metrics answers,
            # not before the agent has even read its config
            self._service.run()

        def SvcStop(self) -> None:
            self._service.request_stop()

        def SvcShutdown(self) -> None:
            self._service.request_stop()

    return WardwatchAgentService


def __getattr__(name: str) -> Any:
    # pythonservice.exe looks the class up by the registered name agent.winservice.<name>
    if name == "WardwatchAgentService":
        return _framework_class()
    raise AttributeError(name)


# --- `wardwatch-agent service …` ------------------------------------------------------------

def add_parser(sub: Any) -> None:
    service = sub.add_parser("service", help="install and control the Windows service")
    service.add_argument("action", choices=["install", "uninstall", "start", "stop"])
    service.add_argument("--config", type=Path, default=None,
                         help=r"config file (default %%ProgramData%%\wardwatch\agent.yaml)")
    service.add_argument("--startup", choices=["auto", "delayed", "manual"], default="delayed",
                         help="start type (default delayed: after the network is up)")
    service.add_argument("--user", default=None,
                         help=r"account, e.g. 'NT SERVICE\wardwatch-agent' (default LocalSystem)")
    service.add_argument("--password", default=None)


def service_command(args: argparse.Namespace) -> int:
    if sys.platform != "win32":
        print("wardwatch-agent service: the Windows service exists on Windows only; on Linux "
              "install deploy/systemd/wardwatch-agent.service (docs/deploy.md, \"systemd\")",
              file=sys.stderr)
        return 2
    try:
        win32service = importlib.import_module("win32service")
        win32serviceutil = importlib.import_module("win32serviceutil")
    except ImportError:
        print("wardwatch-agent service: pywin32 is missing; install wardwatch[windows]",
              file=sys.stderr)
        return 2
    pywintypes = importlib.import_module("pywintypes")
    try:
        return _act(args, win32service, win32serviceutil)
    except pywintypes.error as exc:   # e.g. not elevated, no such service
        print(f"wardwatch-agent service {args.action}: {exc.strerror} ({exc.funcname})",
              file=sys.stderr)
        return 1


def _act(args: argparse.Namespace, win32service: Any, win32serviceutil: Any) -> int:
    if args.action == "install":
        return _install(args, win32service, win32serviceutil)
    installed = _installed(win32serviceutil)
    if args.action == "uninstall":
        if not installed:
            print(f"{SERVICE_NAME}: not installed")
            return 0
        if _running(win32serviceutil):
            win32serviceutil.StopService(SERVICE_NAME)
            win32serviceutil.WaitForServiceStatus(SERVICE_NAME, win32service.SERVICE_STOPPED,
                                                  int(STOP_TIMEOUT_S) + 10)
        win32serviceutil.RemoveService(SERVICE_NAME)
        print(f"{SERVICE_NAME}: removed (config, spool and logs under {program_data()} kept)")
        return 0
    if not installed:
        print(f"{SERVICE_NAME}: not installed; run: wardwatch-agent service install",
              file=sys.stderr)
        return 1
    if args.action == "start":
        if not _running(win32serviceutil):
            win32serviceutil.StartService(SERVICE_NAME)
        win32serviceutil.WaitForServiceStatus(SERVICE_NAME, win32service.SERVICE_RUNNING,
                                              int(START_WAIT_HINT_MS / 1000))
        print(f"{SERVICE_NAME}: running")
        return 0
    if _running(win32serviceutil):   # stop: idempotent, as upgrades call it blindly
        win32serviceutil.StopService(SERVICE_NAME)
        win32serviceutil.WaitForServiceStatus(SERVICE_NAME, win32service.SERVICE_STOPPED,
                                              int(STOP_TIMEOUT_S) + 10)
    print(f"{SERVICE_NAME}: stopped")
    return 0


def _installed(win32serviceutil: Any) -> bool:
    pywintypes = importlib.import_module("pywintypes")
    try:
        win32serviceutil.QueryServiceStatus(SERVICE_NAME)
    except pywintypes.error:
        return False
    return True


def _running(win32serviceutil: Any) -> bool:
    win32service = importlib.import_module("win32service")
    return bool(win32serviceutil.QueryServiceStatus(SERVICE_NAME)[1]
                != win32service.SERVICE_STOPPED)


def _install(args: argparse.Namespace, win32service: Any, win32serviceutil: Any) -> int:
    from agent.config import load_agent_config
    from probes.config import ConfigError

    config_path = (args.config or default_config_path()).resolve()
    try:
        load_agent_config(config_path)   # refuse to install a service that cannot start
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    (program_data() / "logs").mkdir(parents=True, exist_ok=True)
    start_type = (win32service.SERVICE_DEMAND_START if args.startup == "manual"
                  else win32service.SERVICE_AUTO_START)
    # the class by file path, as pywin32's HandleCommandLine registers it, so
    # pythonservice.exe finds it without depending on its own sys.path
    class_string = f"{Path(__file__).with_suffix('')}.WardwatchAgentService"
    # re-running install (an upgrade) updates the registration in place
    register = (win32serviceutil.ChangeServiceConfig if _installed(win32serviceutil)
                else win32serviceutil.InstallService)
    register(class_string, SERVICE_NAME, displayName=DISPLAY_NAME, startType=start_type,
             userName=args.user, password=args.password, description=DESCRIPTION,
             delayedstart=args.startup == "delayed")
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(config_path))
    print(f"{SERVICE_NAME}: installed ({args.startup} start, config {config_path}, "
          f"log {log_file_path()}); start it with: wardwatch-agent service start")
    return 0
