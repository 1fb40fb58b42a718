"""Agentless scans the collector runs on schedule: for each host in the `agentless` config
section, the read-only patch inventory and the listed hardening policies over SSH
(probes/agentless.py, probes/ssh.py), stored exactly as that host's agent would have sent
them — `patches` and `hardening` results under the configured `agent_id`, through the store's
ingest, so inventories, findings, OSV matching and incidents follow the same way.

Schedule: a host is due when its last scan started `every` ago or longer (or it was never
scanned). The last run of each host is kept in `agentless_scans`, so a restart resumes the
schedule instead of scanning every host again, and a collector that was down for several
periods scans each host once, not once per missed period. A scan that fails (unreachable, host
key unknown or changed, authentication refused, past its time limit) stores no results; it is
recorded with its reason and message and counted in the metrics. Host keys are only ever
checked against the configured known_hosts file, never added to it.

Result ids are derived from (agent id, check id, scan start), so storing one scan twice stores
it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field, field_validator, model_validator

from collector.schema import agentless_scans
from collector.store import Store, utcnow
from probes.access import HostAccess
from probes.agentless import ScanOutcome, scan
from probes.config import Duration, StrictModel
from probes.hardening import HardeningCheck, report
from probes.inventory import InventoryOptions, linux_inventory
from probes.memory import ProbeMemory
from probes.patches import OracleHomeConfig, PatchesCheck, judge
from probes.policy import CheckOutcome, evaluate, shipped_policies
from probes.result import CheckResult, ProbeResult
from probes.ssh import SshTarget

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("wardwatch.collector.scans")

_IDS = uuid.UUID("5d0c5f3e-6b8e-4a57-9a55-7f0e7f6a2c11")
"""Namespace of the derived result ids."""
_MAX_SLEEP_S = 300.0


class ScanHost(StrictModel):
    """One host scanned over SSH, and the agent id its results are stored under."""

    host: str = Field(min_length=1, pattern=r"^[^\s@/\[\]]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    agent_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/\s]+$")
    system: str = ""
    policies: tuple[str, ...] = ()
    """Shipped hardening policies to run (linux, sshd, nginx, tomcat, weblogic)."""
    sudo: bool = False
    key_file: Path | None = None
    """Overrides the section's key_file for this host."""
    known_hosts: Path | None = None
    """Overrides the section's known_hosts for this host."""
    oracle_homes: tuple[OracleHomeConfig, ...] = ()
    """Oracle homes whose patches `opatch lspatches` lists, as on the agent's `patches`
    check (docs/probes/patches.md)."""

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = shipped_policies()
        for policy in value:
            if policy not in known:
                raise ValueError(f"unknown policy {policy!r}; shipped: {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("a policy is listed twice")
        return value


class AgentlessConfig(StrictModel):
    """The `agentless` section of the collector config (docs/agentless.md)."""

    every: Duration = 86400.0
    concurrency: int = Field(default=10, ge=1, le=256)
    per_host_limit: Duration = 300.0
    """The whole scan of one host (connect, inventory, policies)."""
    connect_timeout: Duration = 10.0
    key_file: Path
    known_hosts: Path
    hosts: tuple[ScanHost, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> AgentlessConfig:
        seen: set[str] = set()
        targets: set[tuple[str, str, int]] = set()
        for host in self.hosts:
            if host.agent_id in seen:
                raise ValueError(f"agent_id {host.agent_id!r} is used by two hosts")
            if (host.user, host.host, host.port) in targets:
                raise ValueError(f"{host.user}@{host.host}:{host.port} is listed twice")
            seen.add(host.agent_id)
            targets.add((host.user, host.host, host.port))
        if self.per_host_limit > self.every:
            raise ValueError(f"per_host_limit ({self.per_host_limit:g}s) must not exceed "
                             f"every ({self.every:g}s)")
        return self

    def target(self, host: ScanHost) -> SshTarget:
        return SshTarget(host=host.host, port=host.port, user=host.user,
                         key_file=host.key_file or self.key_file,
                         known_hosts=host.known_hosts or self.known_hosts,
                         connect_timeout=self.connect_timeout, sudo=host.sudo,
                         command_timeout=min(60.0, self.per_host_limit))


def quiet_paramiko() -> None:
    """paramiko's transport logs an ERROR with a traceback for every host that never sends a
    banner; the scan records that failure itself, in one line."""
    logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


class ScanMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter("wardwatch_collector_agentless_scans",
                            "Agentless scans run, per scanned host.", ["agent"],
                            registry=registry)
        self.failed = Counter("wardwatch_collector_agentless_scans_failed",
                              "Agentless scans that failed, per host and reason.",
                              ["agent", "reason"], registry=registry)
        self.last_success = Gauge(
            "wardwatch_collector_agentless_last_success_timestamp_seconds",
            "When the host's last successful agentless scan started (Unix time).", ["agent"],
            registry=registry)
        self.age = Gauge("wardwatch_collector_agentless_last_success_age_seconds",
                         "Seconds since the host's last successful agentless scan started.",
                         ["agent"], registry=registry)
        self._success: dict[str, float] = {}

    def succeeded(self, agent: str, at: datetime) -> None:
        if agent not in self._success:
            self.age.labels(agent).set_function(lambda: time.time() - self._success[agent])
        self._success[agent] = at.timestamp()
        self.last_success.labels(agent).set(at.timestamp())


Sink = Callable[[str, list[CheckResult]], Awaitable[None]]
"""Stores one host's results (the collector's ingest path)."""


def _result_id(agent_id: str, check_id: str, started_at: datetime) -> uuid.UUID:
    return uuid.uuid5(_IDS, f"{agent_id}/{check_id}/{started_at.isoformat()}")


class Scanner:
    """Runs the due scans and records them; the loop (`scan_forever`) only calls it."""

    def __init__(self, config: AgentlessConfig, store: Store, sink: Sink,
                 metrics: ScanMetrics, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.store = store
        self.sink = sink
        self.metrics = metrics
        self.clock = clock

    async def last_runs(self) -> dict[str, dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(agentless_scans))).mappings().all()
        return {row["agent_id"]: dict(row) for row in rows}

    async def due(self, now: datetime) -> list[ScanHost]:
        runs = await self.last_runs()
        every = timedelta(seconds=self.config.every)
        return [h for h in self.config.hosts
                if (last := runs.get(h.agent_id, {}).get("last_started_at")) is None
                or now - last >= every]

    async def seconds_to_next(self, now: datetime) -> float:
        runs = await self.last_runs()
        waits = []
        for host in self.config.hosts:
            last = runs.get(host.agent_id, {}).get("last_started_at")
            if last is None:
                return 0.0
            waits.append((last + timedelta(seconds=self.config.every) - now).total_seconds())
        return max(0.0, min(waits, default=_MAX_SLEEP_S))

    async def run_due(self) -> list[ScanOutcome[list[CheckResult]]]:
        """Scan every due host (at most `concurrency` at once) and store what came back."""
        started_at = self.clock()
        hosts = await self.due(started_at)
        if not hosts:
            return []
        targets = [self.config.target(h) for h in hosts]
        jobs = dict(zip([t.name for t in targets], hosts, strict=True))

        async def job(access: HostAccess) -> list[CheckResult]:
            return await self._scan_one(jobs[access.name], access, started_at)

        outcomes = await scan(targets, job, concurrency=self.config.concurrency,
                              per_host_limit_s=self.config.per_host_limit)
        for host, outcome in zip(hosts, outcomes, strict=True):
            await self._record(host, outcome, started_at)
        return outcomes

    async def _scan_one(self, host: ScanHost, access: HostAccess, started_at: datetime
                        ) -> list[CheckResult]:
        cfg = self.config
        results = []
        begun = time.perf_counter()
        patches = PatchesCheck(id="patches", kind="patches", system=host.system,
                               interval=cfg.every, timeout=cfg.per_host_limit,
                               oracle_homes=list(host.oracle_homes))
        inventory = await linux_inventory(access, InventoryOptions(
            limit_s=cfg.per_host_limit * 0.6,
            oracle_homes=tuple(h.spec() for h in host.oracle_homes)))
        # a fresh memory: the whole package list is sent with every scan (once per `every`)
        outcome = judge(patches, inventory, ProbeMemory(), time.perf_counter() - begun)
        results.append(self._result(host, patches.id, patches.kind, patches.target, outcome,
                                    started_at, time.perf_counter() - begun))
        if host.policies:
            begun = time.perf_counter()
            check = HardeningCheck(id="hardening", kind="hardening", system=host.system,
                                   interval=cfg.every, timeout=cfg.per_host_limit,
                                   policies=list(host.policies))
            outcomes: list[CheckOutcome] = []
            for policy in check.loaded:
                outcomes += await evaluate(policy, access, check.overrides_for(policy))
            results.append(self._result(host, check.id, check.kind, check.target,
                                        report(check.loaded, outcomes), started_at,
                                        time.perf_counter() - begun))
        return results

    def _result(self, host: ScanHost, check_id: str, kind: str, target: str,
                outcome: ProbeResult, started_at: datetime, duration: float) -> CheckResult:
        return CheckResult(
            id=_result_id(host.agent_id, check_id, started_at), agent_id=host.agent_id,
            check_id=check_id, kind=kind, target=f"{target} via ssh {host.user}@{host.host}",
            system=host.system, status=outcome.status, reason=outcome.reason,
            started_at=started_at, duration_s=duration, interval_s=self.config.every,
            summary=outcome.summary, metrics=outcome.metrics, details=outcome.details)

    async def _record(self, host: ScanHost, outcome: ScanOutcome[list[CheckResult]],
                      started_at: datetime) -> None:
        self.metrics.runs.labels(host.agent_id).inc()
        ok = outcome.ok and outcome.result is not None
        if ok and outcome.result is not None:
            try:
                await self.sink(host.agent_id, outcome.result)
            except Exception as exc:   # the store refused: a failed scan, tried next period
                log.exception("storing the agentless scan of %s failed", host.agent_id)
                ok = False
                outcome = ScanOutcome(outcome.host, outcome.seconds, False, reason="store_error",
                                      error=f"{outcome.host}: storing the results failed: "
                                            f"{type(exc).__name__}")
        if ok:
            self.metrics.succeeded(host.agent_id, started_at)
        else:
            self.metrics.failed.labels(host.agent_id, outcome.reason or "unknown").inc()
            log.warning("agentless scan of %s (%s) failed: %s", host.agent_id, outcome.host,
                        outcome.error)
        values = {"target": outcome.host, "last_started_at": started_at,
                  "last_finished_at": self.clock(), "last_ok": ok,
                  "last_reason": None if ok else outcome.reason,
                  "last_error": None if ok else outcome.error}
        async with self.store.transaction() as conn:
            updated = await conn.execute(
                agentless_scans.update().where(agentless_scans.c.agent_id == host.agent_id)
                .values(**values, runs=agentless_scans.c.runs + 1,
                        failures=agentless_scans.c.failures + (0 if ok else 1),
                        **({"last_success_at": started_at} if ok else {})))
            if not updated.rowcount:
                await conn.execute(self.store.insert_ignore(agentless_scans).values(
                    agent_id=host.agent_id, **values, runs=1, failures=0 if ok else 1,
                    last_success_at=started_at if ok else None))


def ingest_sink(app: web.Application) -> Sink:
    """The collector's ingest path (`collector.app.store_results`) for results that did not
    come over HTTP."""
    from collector.app import store_results

    async def sink(agent_id: str, results: list[CheckResult]) -> None:
        await store_results(app, agent_id, results)

    return sink


async def scan_forever(app: web.Application) -> None:
    """The collector's background loop for the `agentless` section (nothing without it)."""
    from collector.app import CONFIG_KEY, METRICS_KEY, STORE_KEY

    config = app[CONFIG_KEY].agentless
    if config is None or not config.hosts:
        return
    quiet_paramiko()
    scanner = Scanner(config, app[STORE_KEY], ingest_sink(app),
                      ScanMetrics(app[METRICS_KEY].registry))
    while True:
        try:
            await scanner.run_due()
            wait = await scanner.seconds_to_next(utcnow())
        except Exception:   # keep the service up; the next round tries again
            log.exception("agentless scans failed")
            wait = 60.0
        await asyncio.sleep(min(max(wait, 1.0), _MAX_SLEEP_S))

