"""What the agent knows right now: the latest result of every check and its own counters.

Probes write here through the scheduler; /metrics and /healthz read from here, so a scrape
never runs a probe (results are rendered, not collected at scrape time).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from probes.config import CheckConfig
from probes.result import CheckResult


@dataclass
class AgentState:
    agent_id: str
    checks: dict[str, CheckConfig] = field(default_factory=dict)
    latest: dict[str, CheckResult] = field(default_factory=dict)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(check_id, status) -> runs since start."""
    probe_errors: Counter[str] = field(default_factory=Counter)
    """kind -> results with reason probe_error since start."""
    schedule_lag: dict[str, float] = field(default_factory=dict)
    """check_id -> seconds the last run started after its slot."""
    reload_ok: bool = True
    reload_success_at: float = field(default_factory=time.time)
    started_at: float = field(default_factory=time.time)

    def record(self, check_result: CheckResult, lag_s: float) -> None:
        check_id = check_result.check_id
        if check_id not in self.checks:
            return  # removed by a reload while it ran
        self.latest[check_id] = check_result
        self.runs[(check_id, check_result.status.value)] += 1
        self.schedule_lag[check_id] = lag_s
        if check_result.reason == "probe_error":
            self.probe_errors[check_result.kind] += 1

    def set_checks(self, checks: tuple[CheckConfig, ...]) -> None:
        """Adopt a new check set; forget results and counters of removed checks."""
        self.checks = {c.id: c for c in checks}
        for check_id in list(self.latest):
            if check_id not in self.checks:
                del self.latest[check_id]
                self.schedule_lag.pop(check_id, None)
        for key in list(self.runs):
            if key[0] not in self.checks:
                del self.runs[key]
