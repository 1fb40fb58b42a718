"""patches probe: the host's patch state — OS release, installed packages, pending updates
(security ones and their severity where the repository says), and whether a reboot is
pending — from `probes.inventory`, run on this host (Linux or Windows, by `sys.platform`).

ok        fewer pending security updates than `security_updates` and `critical_updates`
          warn at, no reboot pending (pending non-security updates are in the summary only,
          unless `updates` sets levels)
warning   at least `security_updates.warning` (default 1) security updates pending
          (security_updates_pending); a reboot pending (reboot_required, level set by
          `reboot_required_status`); `updates` levels reached (updates_pending)
critical  at least `critical_updates.critical` (default 1) pending security updates the
          repository rates Critical (security_updates_pending); any other level configured
          as critical
unknown   a command failed or ran out of time (inventory_failed: our side, not the
          hospital's); an OS family the inventory does not know (unsupported_os)
Reason codes: ok, updates_pending, security_updates_pending, reboot_required,
inventory_failed, unsupported_os.

With `oracle_homes`, each listed Oracle home's patches (`opatch lspatches`, probes/inventory.py)
are in `details.oracle_homes`: path, product (`weblogic` / `oracle`), the PSU / RU version and
date (the product version to compare with advisories), every patch as `[id, description]`,
and an error when opatch could not answer (then `inventory_failed`, unknown).

The package list (2,000-3,000 rows) goes into `details.packages` as compact rows
`[name, version, arch, installed_at_epoch]` only when it changed since the last run (a hash is
remembered) or was last sent more than a day ago; otherwise `details.packages_unchanged_since`
and `details.packages_hash` stand for it. Pending updates are always sent whole.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import sys
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from probes.access import LocalAccess
from probes.config import CheckConfig, Duration, StrictModel, Threshold
from probes.inventory import (
    REBOOT_REQUIRED_PATH,
    Inventory,
    InventoryOptions,
    OracleHome,
    OracleHomeSpec,
    PendingUpdate,
    linux_inventory,
    windows_inventory,
)
from probes.memory import ProbeMemory
from probes.result import Cause, Metric, ProbeResult, Status, result, verdict

KIND = "patches"
REMEMBERS = True

METRICS = {
    "patches_pending_updates": "Pending updates by severity (critical, important, moderate, "
                               "low; unrated: security without a rating; none: not security).",
    "patches_pending_security_updates": "Pending security updates.",
    "patches_installed_packages": "Installed packages (Windows: hotfixes).",
    "patches_reboot_required": "1 when a reboot is pending to finish updates, else 0.",
    "patches_inventory_duration_seconds": "How long the inventory took.",
    "patches_last_inventory_timestamp_seconds": "When the inventory was collected.",
    "patches_oracle_home_patches": "Patches opatch lists in an Oracle home (label home); "
                                   "absent when opatch could not answer.",
}

_SEVERITY_LABELS = ("critical", "important", "moderate", "low", "unrated", "none")
_RESEND_PACKAGES_S = 86400.0
_NAMES_SHOWN = 5


class OracleHomeConfig(StrictModel):
    """One Oracle home whose patches `opatch lspatches` lists (WebLogic / Fusion Middleware,
    database or grid home)."""

    path: str = Field(min_length=2)
    """ORACLE_HOME, absolute (`/u01/app/oracle/middleware`)."""
    user: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    """Run opatch as this user (the home's owner) through `sudo -n -u USER --`, with the
    sudoers line of docs/probes/patches.md; unset: as the agent's user."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or posixpath.normpath(value) != value.rstrip("/"):
            raise ValueError("must be an absolute, normalised path (/u01/app/oracle/...)")
        return value.rstrip("/")

    def spec(self) -> OracleHomeSpec:
        return OracleHomeSpec(self.path, self.user)


class PatchesCheck(CheckConfig):
    kind: Literal["patches"]
    interval: Duration = 6 * 3600.0
    timeout: Duration = 300.0
    refresh_metadata: bool = False
    """Refresh package metadata before looking (`apt-get -q update`, `dnf -q makecache`,
    Windows: an online search): the only writing step, package metadata only, needs the
    sudoers line in docs/probes/patches.md. Off: the distribution's own timers
    (apt-daily, dnf-makecache, the Windows Update service) keep the metadata fresh."""
    security_updates: Threshold = Threshold(warning=1)
    """Levels on the count of pending security updates."""
    critical_updates: Threshold = Threshold(critical=1)
    """Levels on the count of pending security updates rated Critical (RHSA, MSRC)."""
    updates: Threshold = Threshold()
    """Levels on the count of all pending updates (off by default)."""
    reboot_required_status: Literal["ok", "warning", "critical"] = "warning"
    reboot_required_path: str = REBOOT_REQUIRED_PATH
    """Where Debian/Ubuntu's postinst hooks flag a pending reboot."""
    oracle_homes: list[OracleHomeConfig] = Field(default_factory=list)
    """Oracle homes whose patches to list with `opatch lspatches` (Linux)."""

    @field_validator("oracle_homes")
    @classmethod
    def _distinct_homes(cls, value: list[OracleHomeConfig]) -> list[OracleHomeConfig]:
        paths = [home.path for home in value]
        if len(set(paths)) != len(paths):
            raise ValueError("an Oracle home is listed twice")
        return value

    @property
    def target(self) -> str:
        return "local packages"


CONFIG = PatchesCheck


async def probe(check: PatchesCheck, memory: ProbeMemory) -> ProbeResult:
    # leave the runner a tenth of the timeout: a command cut by our budget is our failure
    # (unknown, inventory_failed), not the runner's critical `timeout`
    options = InventoryOptions(limit_s=check.timeout * 0.9,
                               refresh_metadata=check.refresh_metadata,
                               reboot_required_path=check.reboot_required_path,
                               oracle_homes=tuple(h.spec() for h in check.oracle_homes))
    access = LocalAccess()
    started = time.perf_counter()
    if sys.platform == "win32":
        inventory = await windows_inventory(access, options)
    elif sys.platform.startswith("linux"):
        inventory = await linux_inventory(access, options)
    else:
        return result(Status.UNKNOWN, "unsupported_os",
                      f"patch inventory is not implemented for {sys.platform}")
    return judge(check, inventory, memory, time.perf_counter() - started)


def judge(check: PatchesCheck, inventory: Inventory, memory: ProbeMemory,
          duration_s: float) -> ProbeResult:
    """The result for an inventory: causes, metrics, details (pure, apart from `memory`)."""
    name = inventory.os.label
    if inventory.os.family == "unknown":
        return result(Status.UNKNOWN, "unsupported_os",
                      f"{name}: no dpkg or rpm package database found (os-release ID "
                      f"{inventory.os.id!r})", details=_base_details(inventory))
    metrics = [
        Metric(name="patches_inventory_duration_seconds", value=duration_s),
        Metric(name="patches_last_inventory_timestamp_seconds",
               value=inventory.collected_at.timestamp()),
        Metric(name="patches_reboot_required", value=1 if inventory.reboot_required else 0),
    ]
    causes: list[Cause] = []
    pending = sorted(inventory.pending, key=_urgency)
    security = [u for u in pending if u.security]
    critical = [u for u in security if u.severity == "Critical"]
    if inventory.packages:
        metrics.append(Metric(name="patches_installed_packages",
                              value=len(inventory.packages)))
    metrics.extend(Metric(name="patches_oracle_home_patches", value=len(home.patches),
                          labels={"home": home.path})
                   for home in inventory.oracle_homes if home.error is None)
    if inventory.pending_known:
        counts = dict.fromkeys(_SEVERITY_LABELS, 0)
        for update in pending:
            counts[_severity_label(update)] += 1
        metrics.extend(Metric(name="patches_pending_updates", value=count,
                              labels={"severity": label}) for label, count in counts.items())
        metrics.append(Metric(name="patches_pending_security_updates", value=len(security)))
        level = max([check.security_updates.evaluate(len(security)),
                     check.critical_updates.evaluate(len(critical))],
                    key=lambda s: s.severity)
        if level is not Status.OK:
            rated = f", {len(critical)} rated Critical" if critical else ""
            causes.append(Cause(level, "security_updates_pending",
                                f"{_count(len(security), 'security update')} pending"
                                f"{rated} ({_names(security)})"))
        all_level = check.updates.evaluate(len(pending))
        if all_level is not Status.OK:
            causes.append(Cause(all_level, "updates_pending",
                                f"{_count(len(pending), 'update')} pending "
                                f"({_names(pending)})"))
    reboot_level = Status(check.reboot_required_status)
    if inventory.reboot_required and reboot_level is not Status.OK:
        causes.append(Cause(reboot_level, "reboot_required",
                            "reboot required (" + "; ".join(inventory.reboot_reasons) + ")"))
    causes.extend(Cause(Status.UNKNOWN, "inventory_failed", error)
                  for error in inventory.errors)
    details = _base_details(inventory)
    details["duration_s"] = round(duration_s, 3)
    details.update(_package_details(inventory, memory))
    return verdict(name, causes, _ok_line(inventory, pending, security), metrics=tuple(metrics),
                   details=details)


def _ok_line(inventory: Inventory, pending: list[PendingUpdate],
             security: list[PendingUpdate]) -> str:
    parts = [f"{_count(len(inventory.packages), 'package')} installed"]
    if inventory.pending_known:
        if pending:
            parts.append(f"{_count(len(pending), 'update')} pending, "
                         f"{len(security)} security")
        else:
            parts.append("no updates pending")
    if inventory.reboot_required:
        parts.append("reboot required (" + "; ".join(inventory.reboot_reasons) + ")")
    parts.extend(_oracle_line(home) for home in inventory.oracle_homes if home.error is None)
    return f"{inventory.os.label}: " + "; ".join(parts)


def _oracle_line(home: OracleHome) -> str:
    what = {"weblogic": "WebLogic PSU", "oracle": "Oracle RU"}.get(home.product or "", "")
    level = f"{what} {home.version}" if what and home.version else "no PSU/RU"
    return f"{home.path}: {level}, {_count(len(home.patches), 'patch')}"


def _base_details(inventory: Inventory) -> dict[str, Any]:
    return {
        "os": {"id": inventory.os.id, "name": inventory.os.name,
               "version": inventory.os.version, "family": inventory.os.family},
        "package_manager": inventory.package_manager,
        "kernel": {"running": inventory.kernel_running, "newest_installed":
                   inventory.kernel_newest},
        "reboot_required": inventory.reboot_required,
        "reboot_reasons": list(inventory.reboot_reasons),
        "pending": [u.as_dict() for u in inventory.pending] if inventory.pending_known
        else None,
        "history": [{"date": h.date, "title": h.title, "result": h.result}
                    for h in inventory.history],
        "oracle_homes": [home.as_dict() for home in inventory.oracle_homes],
        "errors": list(inventory.errors),
        "notes": list(inventory.notes),
        "collected_at": inventory.collected_at.isoformat(),
    }


def _package_details(inventory: Inventory, memory: ProbeMemory) -> dict[str, Any]:
    """The full list when it changed or was last sent a day ago; else its hash and since."""
    if not inventory.packages:
        return {"packages": None}
    rows = sorted(p.row() for p in inventory.packages)
    digest = hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
    now = time.time()
    known = memory.values.get("packages")
    if (known is not None and known["hash"] == digest
            and now - known["sent_at"] < _RESEND_PACKAGES_S):
        return {"packages_hash": digest, "packages_unchanged_since": known["since"],
                "packages_count": len(rows)}
    since = (known["since"] if known is not None and known["hash"] == digest
             else inventory.collected_at.isoformat())
    memory.values["packages"] = {"hash": digest, "sent_at": now, "since": since}
    return {"packages_hash": digest, "packages": rows, "packages_count": len(rows)}


def _urgency(update: PendingUpdate) -> tuple[int, int, str]:
    order = ("Critical", "Important", "Moderate", "Low")
    rank = order.index(update.severity) if update.severity in order else len(order)
    return (0 if update.security else 1, rank, update.name)


def _severity_label(update: PendingUpdate) -> str:
    if update.severity is not None:
        return update.severity.lower()
    return "unrated" if update.security else "none"


def _names(updates: list[PendingUpdate]) -> str:
    names = [u.name for u in updates[:_NAMES_SHOWN]]
    more = len(updates) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _count(n: int, noun: str) -> str:
    plural = "es" if noun.endswith(("ch", "sh", "s", "x")) else "s"
    return f"{n} {noun}" + ("" if n == 1 else plural)
