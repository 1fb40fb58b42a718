"""Windows service probe: one service's status and start type, read through psutil.

ok        running (and, with `expect_start_type`, configured to start that way)
warning   start_pending or continue_pending (service_pending); running but configured with a
          start type other than `expect_start_type` (start_type_mismatch)
critical  stopped or stop_pending (service_stopped); paused or pause_pending (service_paused);
          no service by that name (service_not_found)
unknown   not on Windows (unsupported_platform); the service manager will not show the
          service to the agent's account (access_denied); a status psutil does not name
          (service_state_unknown)
Reason codes: ok, service_pending, start_type_mismatch, service_stopped, service_paused,
service_not_found, unsupported_platform, access_denied, service_state_unknown.

`_service_info` is the only Windows-specific call; `evaluate` judges its result (psutil's
WindowsService.as_dict()) and is what the tests feed with recorded dictionaries. psutil's
documentation names the statuses with underscores (start_pending); older psutil builds
returned them with a space (start pending), so both spellings are accepted. The binary path
and description are left out of the details: a command line may carry credentials.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from collections.abc import Mapping
from typing import Any, Literal

import psutil
from pydantic import Field

from probes.config import CheckConfig
from probes.result import Metric, ProbeResult, Status, result

KIND = "winservice"

METRICS = {
    "winservice_running": "1 when the service is running, else 0.",
}

_PENDING = {"start_pending", "continue_pending"}
_STOPPED = {"stopped", "stop_pending"}
_PAUSED = {"paused", "pause_pending"}
_DETAIL_KEYS = ("name", "display_name", "status", "start_type", "pid", "username")


class WinServiceCheck(CheckConfig):
    kind: Literal["winservice"]
    name: str = Field(min_length=1, max_length=256, pattern=r"^[^/\\\x00-\x1f]+$")
    """The service name (as `sc query` shows it, e.g. OracleServiceORCL), not the display
    name; Windows compares service names without regard to case."""
    expect_start_type: Literal["automatic", "manual", "disabled"] | None = None

    @property
    def target(self) -> str:
        return self.name


CONFIG = WinServiceCheck


async def probe(check: WinServiceCheck) -> ProbeResult:
    if sys.platform != "win32":
        return result(Status.UNKNOWN, "unsupported_platform",
                      f"Windows services can only be checked on Windows, not on "
                      f"{platform.system() or sys.platform}")
    try:
        info = await asyncio.to_thread(_service_info, check.name)
    except psutil.AccessDenied:
        return result(Status.UNKNOWN, "access_denied",
                      f"the service manager does not let this account query {check.name}")
    return evaluate(info, check)


def _service_info(name: str) -> dict[str, Any] | None:
    """psutil's as_dict() for the service, or None when no service has that name."""
    if sys.platform != "win32":
        raise OSError("Windows services exist only on Windows")
    try:
        return dict(psutil.win_service_get(name).as_dict())
    except psutil.NoSuchProcess:  # psutil's way of saying "no such service"
        return None


def evaluate(info: Mapping[str, Any] | None, check: WinServiceCheck) -> ProbeResult:
    """Status of the service from psutil's as_dict(); None means there is no such service."""
    if info is None:
        return result(Status.CRITICAL, "service_not_found",
                      f"no Windows service named {check.name}",
                      metrics=(Metric(name="winservice_running", value=0.0),))
    status = str(info.get("status") or "unknown").lower().replace(" ", "_").replace("-", "_")
    start_type = str(info.get("start_type") or "unknown")
    name = str(info.get("name") or check.name)
    display = str(info.get("display_name") or "")
    shown = f"{display} ({name})" if display and display != name else name
    metrics = (Metric(name="winservice_running", value=1.0 if status == "running" else 0.0),)
    details = {key: info.get(key) for key in _DETAIL_KEYS}
    details["status"] = status
    expected = check.expect_start_type
    mismatch = expected is not None and start_type != expected
    start_text = f"start type {start_type}" + (f", expected {expected}" if mismatch else "")

    def done(level: Status, reason: str, summary: str) -> ProbeResult:
        return result(level, reason, summary, metrics=metrics, details=details)

    if status in _STOPPED:
        return done(Status.CRITICAL, "service_stopped", f"{shown} is {status} ({start_text})")
    if status in _PAUSED:
        return done(Status.CRITICAL, "service_paused", f"{shown} is {status} ({start_text})")
    if status in _PENDING:
        return done(Status.WARNING, "service_pending", f"{shown} is {status} ({start_text})")
    if status != "running":
        return done(Status.UNKNOWN, "service_state_unknown",
                    f"{shown} has status {status!r} ({start_text})")
    pid = info.get("pid")
    pid_text = f", pid {pid}" if pid else ""
    if mismatch:
        return done(Status.WARNING, "start_type_mismatch",
                    f"{shown} is running{pid_text} ({start_text})")
    return done(Status.OK, "ok", f"{shown} is running{pid_text} ({start_text})")
