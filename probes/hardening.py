"""hardening probe: security configuration checks (probes/policy.py) on the agent's host —
shipped policies (nginx, tomcat, weblogic, sshd, linux) and a hospital's own policy files —
with each finding's severity, remediation and the 等保 2.0 (GB/T 22239-2019) clauses it serves.

ok        every applicable check passed
warning   at least one check failed, whatever its severity (hardening_failed)
unknown   no check failed but some could not be evaluated: a file the agent may not read, a
          command that timed out or that sudo refused (policy_error)
Reason codes: ok, hardening_failed, policy_error.

Why warning and never critical: a failed hardening check is a finding for the next change
window, not an outage; at warning it opens at most a level-3 incident where incidents are
configured for this check, and the severity of each finding is in `details.findings` and the
`hardening_failed{severity}` metric for reports and dashboards. Errors are unknown, as for
every failure of our side, and rank below a warning, so one unreadable file does not hide
failed checks.

Policies are loaded and validated with the config (a policy file with a mistake is a config
error naming the file and path); the same policies run agentless over SSH through
probes/policy.py with an SshAccess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from probes.access import LocalAccess
from probes.config import CheckConfig, ConfigError, Duration
from probes.policy import (
    SEVERITIES,
    CheckOutcome,
    Policy,
    Result,
    VarValue,
    evaluate,
    load_policy,
    shipped_policies,
    shipped_policy,
)
from probes.result import Metric, ProbeResult, Status, result

KIND = "hardening"

METRICS = {
    "hardening_checks": "Hardening checks by policy and result (passed, failed, "
                        "not_applicable, error).",
    "hardening_failed": "Failed hardening checks by policy and severity.",
    "hardening_score_ratio": "Passed / evaluated (passed + failed) hardening checks of a policy.",
}

SUMMARY_LIMIT = 300


class HardeningCheck(CheckConfig):
    kind: Literal["hardening"]
    interval: Duration = 6 * 3600.0
    timeout: Duration = 120.0
    policies: list[str] = Field(default_factory=list)
    """Shipped policy ids: nginx, tomcat, weblogic, sshd, linux."""
    policy_files: list[Path] = Field(default_factory=list)
    """A hospital's own policy files (YAML, same language)."""
    vars: dict[str, VarValue] = Field(default_factory=dict)
    """Overrides of the policies' vars (`catalina_base: /opt/tomcat`); each must be a var of
    at least one selected policy, and goes to every policy that has it."""
    loaded: tuple[Policy, ...] = Field(default=(), exclude=True, repr=False)
    """The policies, loaded and validated with the config; never set it in config."""

    @model_validator(mode="before")
    @classmethod
    def _not_loaded(cls, data: Any) -> Any:
        if isinstance(data, dict) and "loaded" in data:
            raise ValueError("`loaded` is filled in by the agent; list policies / policy_files")
        return data

    @model_validator(mode="after")
    def _load(self) -> HardeningCheck:
        if not self.policies and not self.policy_files:
            raise ValueError("give policies (shipped: " + ", ".join(shipped_policies())
                             + ") and/or policy_files")
        loaded: list[Policy] = []
        for policy_id in self.policies:
            loaded.append(shipped_policy(policy_id))
        for path in self.policy_files:
            try:
                loaded.append(load_policy(path))
            except ConfigError as exc:
                raise ValueError(f"policy file {exc.source}: " + "; ".join(exc.errors)) \
                    from None
        ids = [p.id for p in loaded]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"policy id(s) selected twice: {', '.join(twice)}")
        known = {name for p in loaded for name in p.vars}
        unknown = sorted(set(self.vars) - known)
        if unknown:
            raise ValueError(f"vars {', '.join(unknown)} belong to none of the selected "
                             f"policies (their vars: {', '.join(sorted(known)) or 'none'})")
        for policy in loaded:
            policy.bind(self.overrides_for(policy))
        object.__setattr__(self, "loaded", tuple(loaded))
        return self

    def overrides_for(self, policy: Policy) -> dict[str, VarValue]:
        return {k: v for k, v in self.vars.items() if k in policy.vars}

    @property
    def target(self) -> str:
        return ", ".join([*self.policies, *(p.name for p in self.policy_files)])


CONFIG = HardeningCheck


async def probe(check: HardeningCheck) -> ProbeResult:
    access = LocalAccess()
    outcomes: list[CheckOutcome] = []
    try:
        for policy in check.loaded:
            outcomes += await evaluate(policy, access, check.overrides_for(policy))
    finally:
        await access.close()
    return report(check.loaded, outcomes)


def report(policies: tuple[Policy, ...], outcomes: list[CheckOutcome]) -> ProbeResult:
    """One result from the outcomes of every check (also used for agentless runs)."""
    metrics: list[Metric] = []
    for policy in policies:
        mine = [o for o in outcomes if o.policy == policy.id]
        for state in Result:
            metrics.append(Metric(name="hardening_checks", value=sum(
                1 for o in mine if o.result is state), labels={"policy": policy.id,
                                                                "result": str(state)}))
        for severity in SEVERITIES:
            metrics.append(Metric(name="hardening_failed", value=sum(
                1 for o in mine if o.result is Result.FAILED and o.severity == severity),
                labels={"policy": policy.id, "severity": severity}))
        passed = sum(1 for o in mine if o.result is Result.PASSED)
        evaluated = passed + sum(1 for o in mine if o.result is Result.FAILED)
        if evaluated:
            metrics.append(Metric(name="hardening_score_ratio", value=passed / evaluated,
                                  labels={"policy": policy.id}))
    rank = {severity: n for n, severity in enumerate(SEVERITIES)}
    failed = sorted((o for o in outcomes if o.result is Result.FAILED),
                    key=lambda o: rank[o.severity])        # stable: file order within a level
    errors = [o for o in outcomes if o.result is Result.ERROR]
    applicable = [o for o in outcomes if o.result is not Result.NOT_APPLICABLE]
    details = {"findings": [o.as_dict() for o in outcomes],
               "policies": [p.id for p in policies]}
    if failed:
        summary = (f"{len(failed)} of {len(applicable)} hardening checks failed: "
                   + _listed([f"{o.key} ({o.severity})" for o in failed]))
        if errors:
            summary = _cut_summary(f"{summary}; {len(errors)} could not be evaluated")
        return result(Status.WARNING, "hardening_failed", summary, metrics=tuple(metrics),
                      details=details)
    if errors:
        return result(Status.UNKNOWN, "policy_error",
                      _cut_summary(f"{len(errors)} of {len(applicable)} hardening checks "
                                   f"could not be evaluated: "
                                   + _listed([f"{o.key} ({o.evidence})" for o in errors])),
                      metrics=tuple(metrics), details=details)
    na = len(outcomes) - len(applicable)
    return result(Status.OK, "ok",
                  f"all {len(applicable)} applicable hardening checks passed"
                  + (f" ({na} not applicable)" if na else ""),
                  metrics=tuple(metrics), details=details)


def _listed(items: list[str]) -> str:
    """`a, b, c`, cut to fit SUMMARY_LIMIT with `and N more`."""
    out = ""
    for shown, item in enumerate(items):
        candidate = f"{out}, {item}" if out else item
        if len(candidate) > SUMMARY_LIMIT - 80 and out:
            return f"{out} and {len(items) - shown} more"
        out = candidate
    return out


def _cut_summary(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"
