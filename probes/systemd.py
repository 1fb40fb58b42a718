"""systemd probe: the state of one unit, as `systemctl show` reports it.

ok        ActiveState active, whatever the SubState (running; exited for a oneshot with
          RemainAfterExit; listening; waiting); with `expect_active: false` also inactive
warning   activating, deactivating, reloading or maintenance (unit_transitioning; a service
          in a restart loop shows as activating/auto-restart); a unit still active although
          its unit file no longer loads (unit_load_error)
critical  failed (unit_failed); inactive while expected active (unit_inactive); no such unit
          (unit_not_found); unit file fails to load and the unit is not active
          (unit_load_error)
unknown   systemctl is missing or there is no systemd to ask: not booted with systemd, bus
          unreachable (systemd_unavailable); systemctl failed otherwise or printed nothing
          usable (systemctl_error)
Reason codes: ok, unit_transitioning, unit_failed, unit_inactive, unit_not_found,
unit_load_error, systemd_unavailable, systemctl_error.

`systemctl show` is the interface systemctl(1) offers for programs ("intended to be used
whenever computer-parsable output is required"); the properties are those of
org.freedesktop.systemd1(5). probe() runs it without a shell and hands its output to the same
`parse_show` and `evaluate` the tests feed with recorded outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Literal

from pydantic import Field

from probes.config import CheckConfig
from probes.result import Metric, ProbeResult, Status, result

KIND = "systemd"

METRICS = {
    "systemd_unit_active": "1 when the unit is active (or reloading), else 0.",
    "systemd_unit_restarts_total": "Automatic restarts of the service since it was last "
                                   "started by hand (NRestarts).",
}

PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "NRestarts",
              "ExecMainStatus", "ActiveEnterTimestampMonotonic", "Result")

_TRANSITIONING = {"activating", "deactivating", "reloading", "maintenance"}
# What systemctl prints when there is no manager to talk to (a container whose PID 1 is not
# systemd, a chroot, a host booted with another init, a dead or unreachable bus).
_UNAVAILABLE = ("not been booted with systemd", "Failed to connect to bus",
                "Failed to connect to system scope bus")


class SystemdCheck(CheckConfig):
    kind: Literal["systemd"]
    unit: str = Field(min_length=1, max_length=255,
                      pattern=r"^[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]*$")
    """A unit name such as nginx.service; without a suffix systemctl assumes .service."""
    expect_active: bool = True
    """false for units that are fine while inactive (a oneshot job between its timer's runs);
    failed is still critical."""

    @property
    def target(self) -> str:
        return self.unit


CONFIG = SystemdCheck


def systemctl_argv(unit: str) -> list[str]:
    # "--" ends the options, so no unit name can be read as one.
    return ["systemctl", "show", f"--property={','.join(PROPERTIES)}", "--no-pager", "--", unit]


async def probe(check: SystemdCheck) -> ProbeResult:
    try:
        returncode, out, err = await _run(systemctl_argv(check.unit))
    except FileNotFoundError:
        return result(Status.UNKNOWN, "systemd_unavailable",
                      "systemd is not available: no systemctl on this host")
    props = parse_show(out)
    if returncode != 0 or not props:
        message = "; ".join(line.strip().rstrip(".") for line in err.splitlines()
                            if line.strip())[:300]
        if any(hint in err for hint in _UNAVAILABLE):
            return result(Status.UNKNOWN, "systemd_unavailable",
                          f"systemd is not available: {message}")
        return result(Status.UNKNOWN, "systemctl_error",
                      f"systemctl show {check.unit} failed (exit {returncode}): "
                      f"{message or 'no output'}")
    return evaluate(props, check)


async def _run(argv: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await proc.communicate()
    except BaseException:
        # cancelled by the runner's deadline: do not leave systemctl behind
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return (proc.returncode, out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"))


def parse_show(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines of `systemctl show` -> dict; the value is everything after the first
    "=" (it may itself contain "="), empty values are kept (systemctl prints a property asked
    for by --property even when it is empty)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            props[key.strip()] = value.rstrip("\r")
    return props


def evaluate(props: dict[str, str], check: SystemdCheck) -> ProbeResult:
    """Status of the unit from its `systemctl show` properties."""
    load = props.get("LoadState", "")
    active = props.get("ActiveState", "")
    sub = props.get("SubState", "")
    unit = props.get("Id") or check.unit
    if not load or not active:
        return result(Status.UNKNOWN, "systemctl_error",
                      f"systemctl show {check.unit} printed no LoadState/ActiveState")

    metrics = [Metric(name="systemd_unit_active",
                      value=1.0 if active in {"active", "reloading"} else 0.0)]
    restarts = _int(props.get("NRestarts"))
    if restarts is not None:
        metrics.append(Metric(name="systemd_unit_restarts_total", value=restarts))
    details = {"properties": dict(props)}

    def done(status: Status, reason: str, summary: str) -> ProbeResult:
        return result(status, reason, summary, metrics=tuple(metrics), details=details)

    state = f"{active} ({sub})" if sub else active
    if load == "not-found":
        return done(Status.CRITICAL, "unit_not_found", f"{unit} not found (no such unit file)")
    if load in {"error", "bad-setting"}:
        level = Status.WARNING if active == "active" else Status.CRITICAL
        return done(level, "unit_load_error", f"{unit} unit file does not load "
                                              f"(LoadState={load}); unit is {state}")
    if active == "failed":
        return done(Status.CRITICAL, "unit_failed", f"{unit} failed{_why_failed(props)}")
    if active in _TRANSITIONING:
        return done(Status.WARNING, "unit_transitioning",
                    f"{unit} is {state}{_why_failed(props)}")
    if active == "inactive":
        masked = ", masked" if load == "masked" else ""
        if check.expect_active:
            return done(Status.CRITICAL, "unit_inactive", f"{unit} is {state}{masked}")
        return done(Status.OK, "ok", f"{unit} is {state}{masked} (allowed)")
    if active == "active":
        return done(Status.OK, "ok", f"{unit} is {state}")
    return done(Status.UNKNOWN, "systemctl_error", f"{unit} has unknown ActiveState {active!r}")


def _why_failed(props: dict[str, str]) -> str:
    """": result exit-code, exit status 1, 5 restarts" - the parts that say something."""
    parts = []
    outcome = props.get("Result", "")
    if outcome and outcome != "success":
        parts.append(f"result {outcome}")
        status = _int(props.get("ExecMainStatus"))
        if status:
            # for a main process killed by a signal, ExecMainStatus holds the signal number
            killed = outcome in {"signal", "core-dump"}
            parts.append(f"signal {status}" if killed else f"exit status {status}")
    restarts = _int(props.get("NRestarts"))
    if restarts:
        parts.append(f"{restarts} restart{'s' if restarts > 1 else ''}")
    return (": " + ", ".join(parts)) if parts else ""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
