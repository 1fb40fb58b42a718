"""The `incidents:` section of the collector config: levels, deadlines, rules, confirmation.

Defaults are the contract (REQUIREMENTS.md §2): level 1 respond < 10 min, recover < 30 min,
report < 24 h; level 2 30 min / 2 h / 24 h; level 3 1 h / 4 h of working time / 48 h;
level 4 2 h / — / same day (8 h). Rules are data: each says which condition opens which level,
for which systems, kinds and reasons; the first rule that matches a condition wins.

    incidents:
      confirm: {results: 2, duration: 60s}     # whichever comes first
      merge_window: 30m                        # a recurrence this soon re-opens the incident
      working_hours: [{days: mon-fri, start: "08:00", end: "17:30"}]
      rules:
        - {when: system_down, core: true, level: 1}
        - {when: system_down, level: 2}
        - {when: check_critical, level: 2}
        - {when: check_warning, reasons: [tablespace_full, backup_stale], level: 3}
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from collector.schedule import Schedule
from probes.config import Duration, StrictModel

Level = Literal[1, 2, 3, 4]
DeadlineKind = Literal["respond", "recover", "report"]
DEADLINE_KINDS: tuple[DeadlineKind, ...] = ("respond", "recover", "report")
Condition = Literal["system_down", "system_unknown", "check_critical", "check_warning"]


class Deadlines(StrictModel):
    respond: Duration | None
    recover: Duration | None
    report: Duration | None
    working_time: bool = False
    """Count `recover` in working hours (`working_hours` and the holiday calendar)."""

    def of(self, kind: DeadlineKind) -> float | None:
        value: float | None = getattr(self, kind)
        return value


CONTRACT_DEADLINES: dict[int, Deadlines] = {
    1: Deadlines(respond=600, recover=1800, report=86400),
    2: Deadlines(respond=1800, recover=7200, report=86400),
    3: Deadlines(respond=3600, recover=4 * 3600, report=2 * 86400, working_time=True),
    4: Deadlines(respond=7200, recover=None, report=8 * 3600),
}


class Confirm(StrictModel):
    """A condition opens an incident once it has held for `results` consecutive failing
    results of a check, or for `duration`, whichever comes first."""

    results: int = Field(default=2, ge=1, le=100)
    duration: Duration = 60.0


class Rule(StrictModel):
    when: Condition
    level: Level
    systems: tuple[str, ...] = ("*",)
    """System ids or globs."""
    core: bool | None = None
    """Only core (true) or only non-core (false) systems; any when absent."""
    kinds: tuple[str, ...] = ()
    """Check kinds (check_* conditions); any when empty."""
    reasons: tuple[str, ...] = ()
    """Reason codes (check_* conditions); any when empty."""

    @model_validator(mode="after")
    def _check_filters(self) -> Rule:
        if self.when.startswith("system_") and (self.kinds or self.reasons):
            raise ValueError(f"kinds and reasons apply to check_* conditions, not {self.when}")
        return self

    def matches(self, when: Condition, system: str, core: bool, kind: str = "",
                reason: str = "") -> bool:
        if when != self.when:
            return False
        if not any(fnmatch.fnmatchcase(system, pattern) for pattern in self.systems):
            return False
        if self.core is not None and self.core != core:
            return False
        if self.kinds and kind not in self.kinds:
            return False
        return not (self.reasons and reason not in self.reasons)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(when="system_down", core=True, level=1),
    Rule(when="system_down", level=2),
    Rule(when="check_critical", level=2),
)


class AlertmanagerConfig(StrictModel):
    """How Alertmanager alerts map to incidents (alerts/alertmanager.py)."""

    level_label: str = "severity"
    levels: dict[str, int] = Field(default_factory=lambda: {
        "page": 1, "emergency": 1, "critical": 2, "warning": 3})
    system_label: str = "system"

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        for name, level in value.items():
            if level not in (1, 2, 3, 4):
                raise ValueError(f"levels.{name}: {level} is not a level 1-4")
        return {name.lower(): level for name, level in value.items()}


class IncidentsConfig(StrictModel):
    enabled: bool = True
    confirm: Confirm = Field(default_factory=Confirm)
    merge_window: Duration = 30 * 60.0
    deadlines: dict[int, Deadlines] = Field(default_factory=lambda: dict(CONTRACT_DEADLINES))
    working_hours: Schedule = Field(default_factory=lambda: Schedule.model_validate(
        [{"days": "mon-fri", "start": "08:00", "end": "17:30"}]))
    rules: tuple[Rule, ...] = DEFAULT_RULES
    report_from: Literal["opened", "recovered"] = "opened"
    """The report deadline counts from the fault's start (the contract's reading) or from its
    recovery."""
    remind_at: tuple[float, ...] = (0.8,)
    """Reminders at these fractions of the respond and recover windows (0.8: 8 minutes into a
    level-1 incident's 10-minute response time)."""
    evaluate_every: Duration = 5.0
    """Incidents are evaluated after each ingest and at least this often."""
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)
    year_start: str = "01-01"
    """The service year's first day (MM-DD), for the yearly overtime counts."""
    major_breach: dict[int, int] = Field(default_factory=lambda: {1: 5, 2: 11})
    """Overtimes per service year at which a level is a major breach (contract: 5 level-1
    overtimes, or more than 10 level-2)."""

    @field_validator("deadlines", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[Any, Any] = {level: d.model_dump() for level, d in CONTRACT_DEADLINES.items()}
        for level, given in value.items():
            if int(level) not in CONTRACT_DEADLINES:
                raise ValueError(f"level {level} is not 1-4")
            merged[int(level)] = {**merged[int(level)], **(given or {})}
        return merged

    @field_validator("remind_at")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError("remind_at fractions must be between 0 and 1 (0.8 = 80 %)")
        return tuple(sorted(set(value)))

    @field_validator("year_start")
    @classmethod
    def _month_day(cls, value: str) -> str:
        try:
            month, day = (int(part) for part in value.split("-"))
        except ValueError:
            raise ValueError("year_start must be MM-DD, e.g. 01-01") from None
        if not (1 <= month <= 12 and 1 <= day <= 28):
            raise ValueError("year_start must be MM-DD with a day of 1-28")
        return f"{month:02d}-{day:02d}"

    def level_for(self, when: Condition, system: str, core: bool, kind: str = "",
                  reason: str = "") -> int | None:
        """The level the first matching rule gives this condition; None: no incident."""
        for rule in self.rules:
            if rule.matches(when, system, core, kind, reason):
                return rule.level
        return None
