"""What should be open: from a system's state and its checks' current intervals to the
incident that ought to exist for it now. Pure: no database, no clock of its own.

One incident per system at a time (key `system:<id>`): a fault is what the hospital feels,
and the contract counts faults, not alarms. Every failing member check *joins* the system's
incident as a finding — so when a database is down, the job and backup checks that fail with it
do not open incidents of their own — and the incident's level is the most severe of its
confirmed findings: a level-2 component fault becomes level 1 when the system goes down
(escalation). A system listed in another's `depends_on` takes the dependent's findings into its
own incident while it has one open (`joins`).

A finding is *confirmed* once its condition has held for `confirm.results` consecutive
failing results of a check or for `confirm.duration`, whichever comes first; the incident is
then opened back-dated to the first failure (`opened_at`), and a level's clocks run from the
start of the finding that gave that level (`level_since`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from alerts.config import Condition, IncidentsConfig
from collector.store import CheckInterval

_CAUSE_LIMIT = 500


@dataclass(frozen=True)
class Finding:
    """One failing condition of a system: the system itself, or one member check."""

    key: str
    """`system` or `check:<agent>/<check>`: stable while the condition lasts."""
    condition: Condition
    level: int
    since: datetime
    confirmed: bool
    text: str


@dataclass(frozen=True)
class SystemSnapshot:
    """What the collector knows of one system at `now`."""

    system_id: str
    name: str
    core: bool
    state: str
    """up, degraded, down or unknown."""
    state_since: datetime
    state_cause: str
    members: Sequence[CheckInterval]
    """The current (standing) interval of each member check."""
    in_maintenance: bool = False


@dataclass(frozen=True)
class Wanted:
    """The incident a system should have now."""

    key: str
    system_id: str
    level: int
    opened_at: datetime
    level_since: datetime
    title: str
    cause: str
    findings: tuple[Finding, ...]


def findings(config: IncidentsConfig, snap: SystemSnapshot, now: datetime) -> list[Finding]:
    """Every failing condition of the system that some rule turns into a level."""
    found: list[Finding] = []
    confirm = config.confirm
    failing = [m for m in snap.members if m.status in ("critical", "warning")]
    if snap.state in ("down", "unknown"):
        when: Condition = "system_down" if snap.state == "down" else "system_unknown"
        level = config.level_for(when, snap.system_id, snap.core)
        if level is not None:
            counted = any(m.results >= confirm.results for m in failing
                          if m.status == "critical")
            lasted = (now - snap.state_since).total_seconds() >= confirm.duration
            verb = "不可用" if snap.state == "down" else "无监测数据"
            found.append(Finding(
                key="system", condition=when, level=level, since=snap.state_since,
                confirmed=counted or lasted,
                text=f"{snap.name or snap.system_id} {verb}"
                     + (f": {snap.state_cause}" if snap.state_cause else "")))
    for member in failing:
        when = "check_critical" if member.status == "critical" else "check_warning"
        level = config.level_for(when, snap.system_id, snap.core, member.kind, member.reason)
        if level is None:
            continue
        confirmed = (member.results >= confirm.results
                     or (now - member.start).total_seconds() >= confirm.duration)
        found.append(Finding(
            key=f"check:{member.agent_id}/{member.check_id}", condition=when, level=level,
            since=member.start, confirmed=confirmed,
            text=f"{member.check_id}@{member.agent_id}: {member.summary or member.reason}"))
    return found


def wanted(config: IncidentsConfig, snap: SystemSnapshot, now: datetime) -> Wanted | None:
    """The incident the system should have, from its confirmed findings; None: none."""
    confirmed = [f for f in findings(config, snap, now) if f.confirmed]
    if not confirmed:
        return None
    confirmed.sort(key=lambda f: (f.level, f.since))
    level = confirmed[0].level
    level_since = min(f.since for f in confirmed if f.level == level)
    opened_at = min(f.since for f in confirmed)
    cause = "; ".join(f.text for f in confirmed)
    if len(cause) > _CAUSE_LIMIT:
        cause = cause[:_CAUSE_LIMIT - 1] + "…"
    name = snap.name or snap.system_id
    return Wanted(key=f"system:{snap.system_id}", system_id=snap.system_id, level=level,
                  opened_at=opened_at, level_since=level_since,
                  title=f"{name} ({snap.system_id})", cause=cause,
                  findings=tuple(confirmed))


def still_failing(config: IncidentsConfig, snap: SystemSnapshot, now: datetime) -> bool:
    """Whether the incident must stay open: any condition still fails, confirmed or not (a
    check flapping back to critical keeps it open), or the system has gone silent — recovery
    needs positive evidence, because a database that dies with its agent goes quiet, not up."""
    return snap.state == "unknown" or bool(findings(config, snap, now))


def recovered_since(snap: SystemSnapshot) -> datetime:
    """When the system's current good stretch began: the latest start among the system's
    state and its members' current intervals."""
    starts = [snap.state_since, *(m.start for m in snap.members)]
    return max(starts)
