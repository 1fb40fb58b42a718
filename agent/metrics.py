"""Renders the agent's state as Prometheus metric families.

One custom collector, registered on a registry the app owns (never the global REGISTRY):
every family comes from the latest results and counters in `AgentState`, so a scrape costs
rendering only. Headline per check: `wardwatch_check_up` (1 when ok or warning, 0 when
critical or unknown) and `wardwatch_check_status` (0 ok, 1 warning, 2 critical, 3 unknown).
A probe's own metric `NAME` is exposed as `wardwatch_NAME` with the check's labels added.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agent.state import AgentState
from probes.registry import get_kind
from probes.result import CheckResult, Status

if TYPE_CHECKING:
    from agent.push import PushSnapshot

PREFIX = "wardwatch_"

PushSource = Callable[[], "PushSnapshot | None"]
"""The push counters now, or None when the agent has no collector configured."""


def _no_push() -> PushSnapshot | None:
    return None


def create_registry(state: AgentState, version: str,
                    push: PushSource = _no_push) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(state, version, push))
    return registry


class AgentCollector(Collector):
    def __init__(self, state: AgentState, version: str, push: PushSource = _no_push) -> None:
        self._state = state
        self._version = version
        self._push = push
        self._process = psutil.Process()
        # uptime is a duration: monotonic, so a wall-clock step (NTP, a VM resumed, an
        # operator's `date -s`) neither freezes it at 0 nor adds an hour to it
        self._started = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        yield from self._check_families()
        yield from self._probe_families()
        yield from self._push_families()
        yield from self._self_families()

    def _push_families(self) -> Iterator[Metric]:
        snap = self._push()
        if snap is None:
            return
        yield CounterMetricFamily(PREFIX + "agent_push_results",
                                  "Results the collector acknowledged with a 2xx.",
                                  value=snap.results_pushed_total)
        failures = CounterMetricFamily(
            PREFIX + "agent_push_failures",
            "Push requests that did not deliver, by reason (connection, timeout, tls, "
            "server_error, throttled, unauthorized, too_large, invalid, rejected, spool).",
            labels=("reason",))
        for reason, count in sorted(snap.failures_total.items()):
            failures.add_metric([reason], count)
        yield failures
        yield GaugeMetricFamily(
            PREFIX + "agent_push_last_success_timestamp_seconds",
            "Unix time of the last push the collector acknowledged (heartbeats included); "
            "0 before the first.", value=snap.last_success_at or 0.0)
        yield GaugeMetricFamily(PREFIX + "agent_spool_pending_results",
                                "Results on disk not yet acknowledged by the collector.",
                                value=snap.spool_pending_results)
        yield GaugeMetricFamily(PREFIX + "agent_spool_pending_bytes",
                                "Bytes of spooled results not yet acknowledged.",
                                value=snap.spool_pending_bytes)
        dropped = CounterMetricFamily(
            PREFIX + "agent_spool_dropped_results",
            "Results that will never be delivered, by reason: overflow (spool full, oldest "
            "dropped), corrupt (torn or damaged on disk), invalid and too_large (refused by "
            "the collector on their own), unwritable (the disk refused them).",
            labels=("reason",))
        for reason, count in sorted(snap.dropped_total.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            PREFIX + "agent_spool_corrupt_bytes",
            "Bytes of torn or damaged spool data skipped or cut since the agent started "
            "(the results among them count as dropped, reason corrupt).",
            value=snap.spool_corrupt_bytes)

    def _check_families(self) -> Iterator[Metric]:
        state = self._state
        up = Metric(PREFIX + "check_up",
                    "1 when the check's last result was ok or warning, else 0.", "gauge")
        status = Metric(PREFIX + "check_status",
                        "Last result: 0 ok, 1 warning, 2 critical, 3 unknown.", "gauge")
        duration = Metric(PREFIX + "check_duration_seconds",
                          "How long the last run of the check took.", "gauge")
        last_run = Metric(PREFIX + "check_last_run_timestamp_seconds",
                          "Unix time the last run of the check started.", "gauge")
        lag = Metric(PREFIX + "check_schedule_lag_seconds",
                     "How late the last run started after its scheduled slot.", "gauge")
        runs = Metric(PREFIX + "check_runs",
                      "Runs of the check since the agent started, by result.", "counter")
        for check_id, res in state.latest.items():
            labels = {**res.labels, "check": check_id, "kind": res.kind, "system": res.system}
            up.add_sample(up.name, labels, 1.0 if result_up(res) else 0.0)
            status.add_sample(status.name, labels, float(res.status.code))
            duration.add_sample(duration.name, labels, res.duration_s)
            last_run.add_sample(last_run.name, labels, res.started_at.timestamp())
            lag.add_sample(lag.name, labels, state.schedule_lag.get(check_id, 0.0))
        for (check_id, status_value), count in state.runs.items():
            check = state.checks.get(check_id)
            if check is not None:
                labels = {**check.labels, "check": check_id, "kind": check.kind,
                          "system": check.system, "status": status_value}
                runs.add_sample(runs.name + "_total", labels, count)
        yield from (up, status, duration, last_run, lag, runs)

    def _probe_families(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for res in self._state.latest.values():
            for metric in res.metrics:
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = _probe_family(res.kind, metric.name)
                labels = {**res.labels, **metric.labels, "check": res.check_id,
                          "kind": res.kind, "system": res.system}
                family.add_sample(PREFIX + metric.name, labels, metric.value)
        yield from families.values()

    def _self_families(self) -> Iterator[Metric]:
        state = self._state
        info = GaugeMetricFamily(PREFIX + "agent_info", "Agent version and id (always 1).",
                                 labels=("version", "agent_id"))
        info.add_metric([self._version, state.agent_id], 1.0)
        yield info
        yield GaugeMetricFamily(PREFIX + "agent_checks", "Checks configured.",
                                value=len(state.checks))
        errors = CounterMetricFamily(
            PREFIX + "agent_probe_errors",
            "Results whose probe failed in wardwatch's own code (reason probe_error).",
            labels=("kind",))
        for kind, count in state.probe_errors.items():
            errors.add_metric([kind], count)
        yield errors
        yield GaugeMetricFamily(
            PREFIX + "agent_config_last_reload_successful",
            "1 when the last configuration load succeeded.", value=1.0 if state.reload_ok else 0.0)
        yield GaugeMetricFamily(
            PREFIX + "agent_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=state.reload_success_at)
        yield GaugeMetricFamily(PREFIX + "agent_start_time_seconds",
                                "Unix time the agent started.", value=state.started_at)
        try:
            with self._process.oneshot():
                memory = self._process.memory_info()
                cpu = self._process.cpu_times()
        except psutil.Error:
            return
        yield GaugeMetricFamily(PREFIX + "agent_resident_memory_bytes",
                                "Resident memory of the agent process.", value=memory.rss)
        yield CounterMetricFamily(PREFIX + "agent_cpu_seconds",
                                  "CPU time used by the agent process (user + system).",
                                  value=cpu.user + cpu.system)
        yield GaugeMetricFamily(PREFIX + "agent_uptime_seconds",
                                "Seconds since the agent started.",
                                value=time.monotonic() - self._started)


def _probe_family(kind: str, name: str) -> Metric:
    help_text = get_kind(kind).metrics.get(name, f"{name} reported by the {kind} probe.")
    if name.endswith("_total"):
        return Metric(PREFIX + name.removesuffix("_total"), help_text, "counter")
    return Metric(PREFIX + name, help_text, "gauge")


def result_up(res: CheckResult) -> bool:
    return res.status in (Status.OK, Status.WARNING)
