"""Scale simulation: one real collector under the push load of a fleet, for a bounded time.

    .venv/bin/python bench/scale.py                      # 300 hosts x 50 checks at 30 s (~3 min)
    .venv/bin/python bench/scale.py --hosts 3000         # 5,000 results/s: what breaks first
    .venv/bin/python bench/scale.py --store postgresql   # on 127.0.0.1:5432 (a database per run)
    .venv/bin/python bench/scale.py --members glob --cold --profile   # see below

docs/scale.md has the model on paper, the figures of these runs and what breaks first.

The collector is `wardwatch-collector run` as a real process on loopback (SQLite in a temp dir
by default, synchronous=FULL as shipped; PostgreSQL: a `ww_bench_*` database created for the
run and dropped after it), configured with `--systems` systems over the hosts, each "up when
its database host answers and at least half of its app servers do" (the shape DESIGN.md gives
the EMR; `--members list` names each app server in the rule, `--members glob` uses one glob
per system), the first fifth core. Every host is one agent id with its own token (enrolled
through `Store.add_agent`, as `wardwatch-collector agents add` does it, in one process: the CLI
takes ~1 s a call).

A separate load process plays the agents as agent/push.py behaves: each host's `--checks`
checks run every `--interval` at their own phase; every `--push-interval` (phase per host) the
agent sends what accumulated as one batch (up to `--batch-size`; more back to back), an empty
batch when nothing did (the heartbeat); one request at a time per agent; a failed or timed-out
request (`--request-timeout`, 30 s as agents) is retried with backoff 1 s doubling to 60 s,
re-sending the same results. Results are bench/collector.py's realistic ones (565 B on the
wire, 3 metric samples) stamped with the real time they fall due. Failure mix: about 1 % of
checks broken (always critical), 2 % flapping, the rest failing about once a day; on top,
one system in ten has its database down, one in ten a flapping database, one in ten flapping
app servers, so incidents open, recover and re-open while the load runs.

The store starts as a running collector's does: every check has an open `ok` interval, its
last result just now (written before the collector starts). `--cold` starts from an empty one
instead, so that every check's first result opens an interval and "changes state", as after
a fresh start or a collector outage longer than stale_after x interval: the start-up burst.

Measured over the window after `--warmup` (the window is `--duration` long):
  offered vs acknowledged results/s, backlog and delivery lag (ack time - due time of the
  oldest result in a batch); it "keeps up" when the backlog grows by less than one push
  interval's results over the window (results wait up to a push interval by design); push
  request latency p50/p95, request failures and timeouts;
  collector CPU % of a core (whole process, and its main thread alone: the event loop), RSS;
  store growth (SQLite: page_count x page_size, WAL included; PostgreSQL: pg_database_size)
  -> GB/day and at the 35-day raw retention; incident evaluations (the collector's
  wardwatch_collector_incident_evaluation_seconds histogram: count, mean, p95 bucket, share
  of the window); `GET /ui/board.json` every 5 s (as one logged-in viewer with the board
  open, like bench/board.py) and `GET /api/v1/systems` every 15 s under the load.
  `--profile` samples the collector with py-spy over the window (bench/collector.py's
  categories).
Prints a table and the limits hit, writes JSON to bench/out/scale-HOSTS-STORE-TIMESTAMP.json (or
`--json PATH`). Every loop is bounded; every process is killed in a `finally`.

The load process shares the machine with the collector: its CPU is reported, and on a 2-core
machine it takes from what the collector could use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as `python bench/scale.py`, sys.path[0] is bench/, where bench/collector.py would shadow
# the `collector` package; the repository root must come first instead.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

import yaml  # noqa: E402

from bench.collector import (  # noqa: E402
    COLLECTOR_CMD,
    PY_SPY,
    CheckSpec,
    Postgres,
    _target,
    pct,
    result_dict,
    summarise_py_spy,
    wait_ready,
)
from bench.harness import (  # noqa: E402
    CLK_TCK,
    Processes,
    cpu_seconds,
    free_port,
    machine,
    memory_kb,
    tail,
)

RAW_RETENTION_DAYS = 35          # collector config `retention` default
BOARD_EVERY_S = 5.0
"""One open status board polls board.json this often (ui.refresh default)."""
SYSTEMS_EVERY_S = 15.0
"""GET /api/v1/systems this often (a dashboard or script polling the API)."""
SAMPLE_EVERY_S = 1.0
PASSWORD = "scale bench password"
P_FAIL_DAILY = 1 / 2880          # an ok check fails about once a day (at 30 s)
P_BROKEN = 0.01
P_FLAPPING = 0.02
FLAP = (0.1, 0.35)               # p_fail, p_recover of a flapping check
BACKOFF = (1.0, 60.0)            # agent/push.py's retry backoff
HTTP_TIMEOUT_S = 30.0
"""What the observer waits for one answer of the collector (/metrics, the board)."""


# ---------------------------------------------------------------- the fleet

@dataclass
class SimCheck:
    spec: CheckSpec
    p_recover: float
    status: str = "ok"

    def step(self, rng: random.Random) -> str:
        """The next run's status: a two-state chain (ok fails with p_fail, a failure recovers
        with p_recover; broken checks have p_recover 0)."""
        if self.status == "ok":
            if rng.random() < self.spec.p_fail:
                self.status = "critical" if self.p_recover == 0 or rng.random() < 0.67 \
                    else "warning"
        elif rng.random() < self.p_recover:
            self.status = "ok"
        return self.status


def check_names(n: int) -> list[tuple[str, str]]:
    """(check_id, kind) of one host: the members systems use first (db listener, web, the
    app process), then http, tcp and process checks in the agent bench's 20:20:9 mix."""
    out = [("host", "host"), ("http-00", "http"), ("tcp-00", "tcp"), ("process-00", "process")]
    counts = {"http": 1, "tcp": 1, "process": 1}
    cycle = ("http", "tcp", "http", "tcp", "process", "http", "tcp", "http", "tcp", "http",
             "tcp")
    for i in range(max(0, n - len(out))):
        kind = cycle[i % len(cycle)]
        out.append((f"{kind}-{counts[kind]:02d}", kind))
        counts[kind] += 1
    return out[:n]


def system_hosts(hosts: int, systems: int) -> list[list[int]]:
    per = max(2, hosts // max(1, systems))
    return [list(range(s * per, (s + 1) * per)) for s in range(min(systems, hosts // per))]


def host_names(hosts: int, systems: int) -> list[str]:
    """Agent ids named after their system, as hospitals name hosts: `s07-db`, `s07-app-012`;
    a host in no system is `x-NNNN`."""
    names = [f"x-{h:04d}" for h in range(hosts)]
    for s, members in enumerate(system_hosts(hosts, systems)):
        names[members[0]] = f"s{s:02d}-db"
        for k, h in enumerate(members[1:], start=1):
            names[h] = f"s{s:02d}-app-{k:03d}"
    return names


def systems_config(hosts: int, systems: int, members: str) -> list[dict[str, Any]]:
    """Each system up when its database host's listener and process are, and at least half
    its app servers answer; the app servers listed one by one (`list`: a member pattern per
    host) or as one glob (`glob`: `s07-app-*/http-00`)."""
    names = host_names(hosts, systems)
    out = []
    for s, hs in enumerate(system_hosts(hosts, systems)):
        db, apps = names[hs[0]], [names[h] for h in hs[1:]]
        web = [f"s{s:02d}-app-*/http-00"] if members == "glob" else [f"{a}/http-00" for a in apps]
        out.append({"id": f"S{s:02d}", "name": f"系统 {s:02d}", "core": s < max(1, systems // 5),
                    "rule": {"all": [f"{db}/tcp-00", f"{db}/process-00",
                                     {"at_least": max(1, len(apps) // 2), "of": web}]}})
    return out


def fleet(hosts: int, checks: int, interval: float, systems: int, seed: int
          ) -> list[list[SimCheck]]:
    """Every host's checks with their offsets and failure behaviour (deterministic)."""
    rng = random.Random(seed)
    names = check_names(checks)
    hostnames = host_names(hosts, systems)
    system_of: dict[int, int] = {}
    for s, members in enumerate(system_hosts(hosts, systems)):
        for h in members:
            system_of[h] = s
    out = []
    for h in range(hosts):
        in_system = system_of.get(h)
        system = f"S{in_system:02d}" if in_system is not None else "NONE"
        aid = hostnames[h]
        host_checks = []
        for check_id, kind in names:
            roll = rng.random()
            p_fail, p_recover = P_FAIL_DAILY * 30 / interval, 0.35
            if roll < P_BROKEN:
                p_fail, p_recover = 1.0, 0.0
            elif roll < P_BROKEN + P_FLAPPING:
                p_fail, p_recover = FLAP
            host_checks.append(SimCheck(CheckSpec(check_id, kind,
                                                  "HOST" if kind == "host" else system,
                                                  _target(kind, check_id, aid),
                                                  rng.uniform(0, interval), p_fail),
                                        p_recover))
        out.append(host_checks)
    # a tenth of the systems each: database down, database flapping, app servers flapping
    for s, members in enumerate(system_hosts(hosts, systems)):
        db = {c.spec.check_id: c for c in out[members[0]]}
        if s % 10 == 0:
            db["tcp-00"].spec.p_fail, db["tcp-00"].p_recover = 1.0, 0.0
        elif s % 10 == 1:
            db["tcp-00"].spec.p_fail, db["tcp-00"].p_recover = 0.3, 0.5
        elif s % 10 == 2:
            for h in members[1:1 + len(members) // 2 + 1]:
                web = next(c for c in out[h] if c.spec.check_id == "http-00")
                web.spec.p_fail, web.p_recover = 0.3, 0.5
    return out


# ---------------------------------------------------------------- the load process

@dataclass
class Tally:
    start_at: float
    seconds: int
    offered: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    latencies: list[tuple[float, float, int]] = field(default_factory=list)
    """(seconds since start_at when the reply came, ms, results in the batch)."""
    lags: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start_at, ack time - due time of the batch's oldest result)."""
    failures: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.offered = [0] * self.seconds
        self.acked = [0] * self.seconds
        self.requests = [0] * self.seconds

    def bucket(self, t: float) -> int:
        return min(self.seconds - 1, max(0, int(t - self.start_at)))


class SimAgent:
    def __init__(self, index: int, name: str, token: str, checks: list[SimCheck],
                 start_at: float, interval: float, seed: int) -> None:
        self.id = name
        self.token = token
        self.order = sorted(checks, key=lambda c: c.spec.offset_s)
        self.start_at = start_at
        self.interval = interval
        self.rng = random.Random(seed * 1_000_003 + index)
        self.round = 0
        self.j = 0
        self.pending: list[tuple[float, dict[str, Any]]] = []

    def due_until(self, t: float, tally: Tally, make: bool = True) -> int:
        """Run (in simulation) every check due by `t`; with `make`, queue their results."""
        limit = len(self.order) * (int(max(0.0, t - self.start_at) / self.interval) + 2)
        made = 0
        for _ in range(limit):
            check = self.order[self.j]
            due = self.start_at + self.round * self.interval + check.spec.offset_s
            if due > t:
                break
            status = check.step(self.rng)
            tally.offered[tally.bucket(due)] += 1
            tally.statuses[status] += 1
            if make:
                result = result_dict(self.id, check.spec, status, due, self.rng)
                result["interval_s"] = self.interval
                self.pending.append((due, result))
            made += 1
            self.j += 1
            if self.j == len(self.order):
                self.j, self.round = 0, self.round + 1
        return made


async def play_agent(agent: SimAgent, session: Any, url: str, conf: dict[str, Any],
                     tally: Tally) -> None:
    """One agent's push loop (agent/push.py): a round every push_interval, batches back to
    back until nothing waits, one request at a time, retries with backoff."""
    import aiohttp

    push_every, batch_size = conf["push_interval"], conf["batch_size"]
    end = conf["end_at"]
    headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=conf["request_timeout"])
    next_round = agent.start_at + agent.rng.uniform(0, push_every)
    backoff = BACKOFF[0]
    max_rounds = int((end - agent.start_at) / push_every) + 10
    for _ in range(max_rounds):
        await asyncio.sleep(max(0.0, next_round - time.time()))
        if time.time() >= end:
            return
        round_started = time.time()
        first = True
        for _ in range(10_000):   # bounded: a round ends when the spool is empty or at `end`
            now = time.time()
            if now >= end:
                return
            agent.due_until(now, tally)
            batch = agent.pending[:batch_size]
            if not batch and not first:
                break
            first = False
            body = json.dumps({"agent_id": agent.id, "results": [r for _d, r in batch]},
                              separators=(",", ":")).encode()
            t0 = time.time()
            failure = None
            try:
                async with session.post(url, data=body, headers=headers,
                                        timeout=timeout) as resp:
                    text = await resp.read()
                    if resp.status != 200:
                        failure = f"http_{resp.status}"
                        if len(tally.errors) < 10:
                            tally.errors.append(f"{resp.status}: {text[:200]!r}")
            except TimeoutError:
                failure = "timeout"
            except aiohttp.ClientError as exc:
                failure = "connection"
                if len(tally.errors) < 10:
                    tally.errors.append(repr(exc)[:200])
            t1 = time.time()
            tally.requests[tally.bucket(t1)] += 1
            if failure is not None:
                tally.failures[failure] += 1
                await asyncio.sleep(min(backoff, max(0.0, end - time.time()))
                                    * agent.rng.uniform(0.5, 1.0))
                backoff = min(BACKOFF[1], backoff * 2)
                continue
            backoff = BACKOFF[0]
            tally.latencies.append((t1 - tally.start_at, (t1 - t0) * 1000, len(batch)))
            if batch:
                tally.acked[tally.bucket(t1)] += len(batch)
                tally.lags.append((t1 - tally.start_at, t1 - batch[0][0]))
                del agent.pending[:len(batch)]
            if len(batch) < batch_size:
                break
        next_round = max(round_started + push_every, time.time())


async def load_main(conf: dict[str, Any], tokens: dict[str, str]) -> dict[str, Any]:
    import aiohttp

    checks = fleet(conf["hosts"], conf["checks"], conf["interval"], conf["systems"],
                   conf["seed"])
    start_at, end_at = conf["start_at"], conf["end_at"]
    tally = Tally(start_at, int(end_at - start_at) + 2)
    names = host_names(conf["hosts"], conf["systems"])
    agents = [SimAgent(h, names[h], tokens[names[h]], checks[h], start_at, conf["interval"],
                       conf["seed"]) for h in range(conf["hosts"])]
    cpu0 = time.process_time()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(play_agent(a, session, conf["url"] + "/api/v1/results",
                                                conf, tally)) for a in agents]
        # at `end_at` agents start nothing new; a request in flight gets its timeout
        _done, late = await asyncio.wait(tasks, timeout=max(0.0, end_at - time.time())
                                         + conf["request_timeout"] + 5)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            tally.errors.append(f"agent task: {task.exception()!r}"[:300])
    # what fell due by the end but was never sent (or is still unacknowledged)
    backlog = 0
    for agent in agents:
        backlog += len(agent.pending) + agent.due_until(end_at, tally, make=False)
    return {"start_at": start_at, "end_at": end_at, "offered": tally.offered,
            "acked": tally.acked, "requests": tally.requests, "latencies": tally.latencies,
            "lags": tally.lags, "failures": dict(tally.failures), "errors": tally.errors,
            "statuses": dict(tally.statuses), "backlog_at_end": backlog,
            "agents_cancelled_at_end": len(late), "load_cpu_s": time.process_time() - cpu0}


# ---------------------------------------------------------------- observing the collector

def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of `pid`, by `comm` (threads of one name summed); the main
    thread, the event loop, as `loop`."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                text = (task / "stat").read_text()
                name = "loop" if task.name == str(pid) else text[text.index("(") + 1:
                                                                   text.rindex(")")]
                fields = text.rpartition(")")[2].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def parse_metrics(body: str) -> dict[str, float]:
    """Sample lines of the Prometheus text format, `name{labels}` -> value."""
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def histogram(before: dict[str, float], after: dict[str, float], name: str
              ) -> dict[str, Any]:
    """Count, sum, mean and the p95 bucket bound of a histogram between two scrapes."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    buckets = []
    for key, value in after.items():
        m = re.fullmatch(rf'{re.escape(name)}_bucket\{{le="([^"]+)"\}}', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    p95 = None
    for bound, cumulative in buckets:
        if count and cumulative >= 0.95 * count:
            p95 = bound
            break
    return {"count": count, "sum_s": total, "mean_ms": total / count * 1000 if count else None,
            "p95_bucket_le_s": p95}


class StoreSize:
    """Bytes the store takes: SQLite page_count x page_size (the WAL's pages included, so a
    checkpoint does not show as a jump), PostgreSQL pg_database_size."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite: sqlite3.Connection | None = None
        self.pg: Any = None

    async def open(self) -> None:
        if self.url.startswith("sqlite"):
            self.sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)
        else:
            import asyncpg  # type: ignore[import-untyped]

            self.pg = await asyncpg.connect(self.url, timeout=10)

    async def bytes(self) -> int:
        if self.sqlite is not None:
            pages = self.sqlite.execute("PRAGMA page_count").fetchone()[0]
            size = self.sqlite.execute("PRAGMA page_size").fetchone()[0]
            return int(pages) * int(size)
        return int(await self.pg.fetchval("SELECT pg_database_size(current_database())"))

    async def results(self) -> int:
        if self.sqlite is not None:
            return int(self.sqlite.execute("SELECT count(*) FROM results").fetchone()[0])
        return int(await self.pg.fetchval("SELECT count(*) FROM results"))

    async def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()


async def board_probe(base: str, name: str, until: float, samples: dict[str, list[float]],
                      errors: list[str]) -> None:
    """Log in as a viewer (the form, as bench/board.py), then time `GET /ui/board.json`
    every BOARD_EVERY_S (round trip and the server's own Server-Timing) and
    `GET /api/v1/systems` every SYSTEMS_EVERY_S, until `until`."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=timeout) as session:
        try:
            async with session.get(f"{base}/login") as resp:
                token = re.search(r'name="csrf_token" value="([^"]*)"', await resp.text())
            if token is None:
                errors.append("board: no csrf token on /login")
                return
            async with session.post(f"{base}/login", data={
                    "name": name, "password": PASSWORD, "csrf_token": token.group(1),
                    "next": "/"}) as resp:
                if resp.status != 200:
                    errors.append(f"board: login answered {resp.status}")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"board: login failed: {exc!r}"[:200])
            return
        last_systems = 0.0
        for _ in range(int((until - time.time()) / BOARD_EVERY_S) + 2):
            if time.time() >= until:
                return
            t0 = time.perf_counter()
            paths = [("/ui/board.json", "board_ms")]
            if t0 - last_systems >= SYSTEMS_EVERY_S:
                paths.append(("/api/v1/systems", "systems_ms"))
                last_systems = t0
            for path, key in paths:
                started = time.perf_counter()
                try:
                    async with session.get(base + path) as resp:
                        await resp.read()
                        timing = resp.headers.get("Server-Timing", "")
                        if resp.status != 200:
                            errors.append(f"{path}: {resp.status}")
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{path}: {exc!r}"[:200])
                    samples[key.replace("_ms", "_failed")].append(time.perf_counter() - started)
                    continue
                samples[key].append((time.perf_counter() - started) * 1000)
                found = re.search(r"dur=([\d.]+)", timing)
                if key == "board_ms" and found:
                    samples["board_server_ms"].append(float(found.group(1)))
            await asyncio.sleep(max(0.0, BOARD_EVERY_S - (time.perf_counter() - t0)))


async def scrape(base: str, into: dict[str, Any]) -> None:
    """GET /metrics into `into`: `asked`, `answered` (None when it did not answer within
    HTTP_TIMEOUT_S: a saturated loop), `metrics`."""
    import aiohttp

    into["asked"] = time.time()
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as session, \
                session.get(f"{base}/metrics") as resp:
            into["metrics"] = parse_metrics(await resp.text())
            into["answered"] = time.time()
    except (aiohttp.ClientError, TimeoutError) as exc:
        into["answered"] = None
        into["error"] = repr(exc)[:200]


async def get_json(base: str, path: str) -> Any:
    import aiohttp

    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as session, \
                session.get(base + path) as resp:
            return await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"error": repr(exc)[:200]}


async def observe(pid: int, load: subprocess.Popen[bytes], base: str, store_url: str,
                  warm_end: float, end_at: float, user: str,
                  at_window_start: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Sample the collector every SAMPLE_EVERY_S while the load runs; scrape /metrics at the
    window's start and end (in the background: a saturated collector answers late or not at
    all); probe the board during the window."""
    size = StoreSize(store_url)
    await size.open()
    samples: list[dict[str, Any]] = []
    board: dict[str, list[float]] = {"board_ms": [], "board_server_ms": [], "systems_ms": [],
                                     "board_failed": [], "systems_failed": []}
    errors: list[str] = []
    marks: dict[str, dict[str, Any]] = {}
    scrapes: dict[str, dict[str, Any]] = {"start": {}, "end": {}}
    tasks: list[asyncio.Task[None]] = []
    try:
        deadline = end_at + 120
        for _ in range(int((deadline - time.time()) / SAMPLE_EVERY_S) + 2):
            now = time.time()
            if load.poll() is not None or now >= deadline:
                break
            sample = {"t": now, "cpu_s": cpu_seconds(pid), "threads": thread_cpu(pid),
                      "rss_kb": memory_kb(pid).get("VmRSS", 0), "db_bytes": await size.bytes()}
            samples.append(sample)
            for mark, at in (("start", warm_end), ("end", end_at)):
                if mark not in marks and now >= at:
                    marks[mark] = {**sample, "results": await size.results()}
                    tasks.append(asyncio.create_task(scrape(base, scrapes[mark])))
                    if mark == "start":
                        at_window_start()
                        tasks.append(asyncio.create_task(
                            board_probe(base, user, end_at, board, errors)))
            await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (time.time() - now)))
        if tasks:
            await asyncio.wait(tasks, timeout=HTTP_TIMEOUT_S * 3)
        incidents = await get_json(base, "/api/v1/incidents")
        if not isinstance(incidents, list):
            errors.append(f"/api/v1/incidents: {str(incidents)[:200]}")
            incidents = []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await size.close()
    for mark, got in scrapes.items():
        if got.get("asked") and got.get("answered") is None:
            errors.append(f"/metrics at the window's {mark}: no answer within "
                          f"{HTTP_TIMEOUT_S:g} s ({got.get('error')})")
    return {"samples": samples, "marks": marks, "scrapes": scrapes, "board": board,
            "errors": errors,
            "incidents": Counter(f"{i.get('state')}/L{i.get('level')}" for i in incidents)}


# ---------------------------------------------------------------- one run

async def enrol(store_url: str, names: list[str]) -> dict[str, str]:
    from collector.store import Store

    store = await Store.open(store_url)
    try:
        now = datetime.now(UTC)
        return {name: await store.add_agent(name, now) for name in names}
    finally:
        await store.close()


async def preseed(store_url: str, names: list[str], checks: list[list[SimCheck]],
                  interval: float) -> int:
    """An open `ok` interval for every check, its last result just now: the store of a
    collector that has been running (written straight into check_intervals, as bench/board.py
    does). The first results then extend these intervals instead of each opening one."""
    import sqlalchemy as sa

    from collector.schema import check_intervals
    from collector.store import Store

    now = datetime.now(UTC)
    rows = [{"agent_id": names[h], "check_id": c.spec.check_id, "system": c.spec.system,
             "kind": c.spec.kind, "status": "ok", "reason": "ok", "summary": "",
             "start": now - timedelta(hours=1), "end": now + timedelta(seconds=interval),
             "last_result_at": now, "results": int(3600 / interval), "is_open": True}
            for h, host_checks in enumerate(checks) for c in host_checks]
    store = await Store.open(store_url)
    try:
        async with store.transaction() as conn:
            for i in range(0, len(rows), 5000):
                await conn.execute(sa.insert(check_intervals), rows[i:i + 5000])
    finally:
        await store.close()
    return len(rows)


def window_figures(args: argparse.Namespace, load: dict[str, Any], seen: dict[str, Any]
                   ) -> dict[str, Any]:
    start_at = load["start_at"]
    w0, w1 = int(args.warmup), int(args.warmup + args.duration)
    offered = sum(load["offered"][w0:w1]) / args.duration
    acked = sum(load["acked"][w0:w1]) / args.duration
    requests = sum(load["requests"][w0:w1]) / args.duration
    lat = [ms for t, ms, _n in load["latencies"] if w0 <= t < w1]
    lags = [lag for t, lag in load["lags"] if w0 <= t < w1]
    cum_offered = cum_acked = 0
    backlog = []
    for o, a in zip(load["offered"], load["acked"], strict=True):
        cum_offered += o
        cum_acked += a
        backlog.append(cum_offered - cum_acked)
    a, b = seen["marks"].get("start"), seen["marks"].get("end")
    grown = (backlog[min(w1, len(backlog)) - 1] - (backlog[w0 - 1] if w0 > 0 else 0))
    out: dict[str, Any] = {
        "offered_rps": offered, "acked_rps": acked,
        # results wait up to a push interval by design: keeping up means the backlog does not
        # grow by more than that over the window (acked/offered alone moves with where the
        # window cuts the push rounds)
        "backlog_growth_rps": grown / args.duration,
        "keeps_up": grown <= offered * args.push_interval,
        "acked_ratio": acked / offered if offered else None,
        "requests_per_s": requests,
        "backlog_at_window_start": backlog[w0 - 1] if w0 > 0 else 0,
        "backlog_at_window_end": backlog[min(w1, len(backlog)) - 1],
        "backlog_at_end": load["backlog_at_end"],
        "lag_p50_s": pct(lags, 50), "lag_p95_s": pct(lags, 95),
        "lag_max_s": max(lags) if lags else None,
        "ingest_p50_ms": pct(lat, 50), "ingest_p95_ms": pct(lat, 95),
        "ingest_max_ms": max(lat) if lat else None,
        "failures": load["failures"],
        "load_cpu_pct": load["load_cpu_s"] / (load["end_at"] - start_at) * 100,
    }
    if a is not None and b is not None:
        dt = b["t"] - a["t"]
        out["window_s"] = dt
        out["collector_cpu_pct"] = (b["cpu_s"] - a["cpu_s"]) / dt * 100
        out["threads_cpu_pct"] = {
            name: round((b["threads"].get(name, 0.0) - a["threads"].get(name, 0.0)) / dt * 100,
                        1) for name in sorted(set(a["threads"]) | set(b["threads"]))}
        out["loop_thread_cpu_pct"] = out["threads_cpu_pct"].get("loop")
        out["rss_mb_end"] = b["rss_kb"] / 1024
        out["rss_mb_max"] = max(s["rss_kb"] for s in seen["samples"]) / 1024
        growth = (b["db_bytes"] - a["db_bytes"]) / dt
        stored = (b["results"] - a["results"]) / dt
        out["db_bytes_per_s"] = growth
        out["stored_results_per_s"] = stored
        out["db_bytes_per_result"] = growth / stored if stored else None
        out["db_gb_per_day"] = growth * 86400 / 1e9
        out["db_gb_at_raw_retention"] = growth * 86400 * RAW_RETENTION_DAYS / 1e9
    sa, sb = seen["scrapes"]["start"], seen["scrapes"]["end"]
    out["metrics_answered_s"] = [None if s.get("answered") is None
                                 else round(s["answered"] - s["asked"], 2) for s in (sa, sb)]
    if sa.get("answered") and sb.get("answered"):
        # between the two answers of /metrics (late when the loop is busy)
        span = sb["answered"] - sa["answered"]
        ev = histogram(sa["metrics"], sb["metrics"],
                       "wardwatch_collector_incident_evaluation_seconds")
        out["evaluations"] = ev["count"]
        out["evaluation_mean_ms"] = ev["mean_ms"]
        out["evaluation_p95_bucket_s"] = ev["p95_bucket_le_s"]
        out["evaluation_share_pct"] = ev["sum_s"] / span * 100 if span > 0 else None
        ing = histogram(sa["metrics"], sb["metrics"],
                        "wardwatch_collector_ingest_duration_seconds")
        out["server_ingest_mean_ms"] = ing["mean_ms"]
    board = seen["board"]
    for key in ("board_ms", "board_server_ms", "systems_ms"):
        values = board.get(key) or []
        out[f"{key.removesuffix('_ms')}_p50_ms"] = pct(values, 50)
        out[f"{key.removesuffix('_ms')}_p95_ms"] = pct(values, 95)
        out[f"{key.removesuffix('_ms')}_n"] = len(values)
    out["board_failed_n"] = len(board.get("board_failed") or [])
    out["systems_failed_n"] = len(board.get("systems_failed") or [])
    # a percentile of nothing is NaN: None in the JSON (NaN is not JSON)
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


def limits_hit(f: dict[str, Any], push_interval: float) -> list[str]:
    """What gave way, in the order a reader should look."""
    hit = []
    if not f.get("keeps_up"):
        hit.append(f"ingest does not keep up: {f['acked_rps']:,.0f} of {f['offered_rps']:,.0f} "
                   f"results/s acknowledged, the backlog grows by "
                   f"{f['backlog_growth_rps']:,.0f} results/s")
    if (f.get("lag_p95_s") or 0) > 2 * push_interval:
        hit.append(f"delivery lag p95 {f['lag_p95_s']:.1f} s (> 2 push intervals)")
    if sum(f.get("failures", {}).values()):
        hit.append(f"push failures {f['failures']} (agents retry and re-send)")
    if (f.get("loop_thread_cpu_pct") or 0) >= 85:
        hit.append(f"event loop thread at {f['loop_thread_cpu_pct']:.0f} % of a core")
    if None in (f.get("metrics_answered_s") or []):
        hit.append(f"/metrics did not answer within {HTTP_TIMEOUT_S:g} s")
    if f.get("board_failed_n") or f.get("systems_failed_n"):
        hit.append(f"UI/API requests failed or timed out: board.json {f['board_failed_n']}, "
                   f"/api/v1/systems {f['systems_failed_n']}")
    if (f.get("board_p95_ms") or 0) > 100:
        hit.append(f"board.json p95 {f['board_p95_ms']:.0f} ms (target 100 ms)")
    if (f.get("evaluation_share_pct") or 0) > 25:
        hit.append(f"incident evaluation takes {f['evaluation_share_pct']:.0f} % of the window")
    return hit


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    offered = args.hosts * args.checks / args.interval
    log(f"scale: {args.hosts} hosts x {args.checks} checks at {args.interval:g} s = "
        f"{offered:,.0f} results/s, pushed every {args.push_interval:g} s "
        f"({args.hosts / args.push_interval:,.0f} requests/s), {args.systems} systems, "
        f"store {args.store}, {args.warmup:g} s warm-up + {args.duration:g} s window")
    report: dict[str, Any] = {"args": vars(args) | {"json": str(args.json or "")},
                              "machine": machine(sqlite=sqlite3.sqlite_version)}
    workdir = Path(tempfile.mkdtemp(prefix="ww-bench-scale-"))
    procs = Processes(workdir)
    pg = Postgres()
    try:
        if args.store == "postgresql":
            if not pg.available():
                raise SystemExit("PostgreSQL on 127.0.0.1:5432 not reachable")
            store_url = pg.create()
            report["machine"]["postgresql"] = Postgres.version()
        else:
            store_url = f"sqlite:///{workdir}/collector.db"
        port = free_port()
        config = workdir / "collector.yaml"
        config.write_text(yaml.safe_dump({
            "listen": f"127.0.0.1:{port}", "store": store_url,
            "systems": systems_config(args.hosts, args.systems, args.members)},
            sort_keys=False, allow_unicode=True))
        t0 = time.monotonic()
        names = host_names(args.hosts, args.systems)
        tokens = asyncio.run(enrol(store_url, names))
        report["enrol_s"] = time.monotonic() - t0
        tokens_path = workdir / "tokens.json"
        tokens_path.write_text(json.dumps(tokens))
        password_file = workdir / "password"
        password_file.write_text(PASSWORD)
        subprocess.run([*COLLECTOR_CMD, "users", "add", "bench", "--role", "viewer",
                        "--password-file", str(password_file), "--config", str(config)],
                       check=True, capture_output=True, timeout=120, cwd=REPO)
        log(f"{args.hosts} agents enrolled in {report['enrol_s']:.1f} s")
        if not args.cold:
            t0 = time.monotonic()
            n = asyncio.run(preseed(store_url, names, fleet(
                args.hosts, args.checks, args.interval, args.systems, args.seed), args.interval))
            log(f"{n:,} open intervals written in {time.monotonic() - t0:.1f} s (a running "
                "collector's store; --cold starts from an empty one)")
        log("starting the collector")
        collector = procs.start("collector", [*COLLECTOR_CMD, "run", "--config", str(config)],
                                cwd=REPO)
        wait_ready(port, collector)
        base = f"http://127.0.0.1:{port}"
        start_at = time.time() + 3.0
        warm_end = start_at + args.warmup
        end_at = warm_end + args.duration
        conf = {"hosts": args.hosts, "checks": args.checks, "interval": args.interval,
                "systems": args.systems, "seed": args.seed, "push_interval": args.push_interval,
                "batch_size": args.batch_size, "request_timeout": args.request_timeout,
                "tokens": str(tokens_path), "url": base, "start_at": start_at,
                "end_at": end_at}
        conf_path, load_out = workdir / "load-conf.json", workdir / "load.json"
        conf_path.write_text(json.dumps(conf))
        load_proc = procs.start("load", [sys.executable, str(Path(__file__).resolve()),
                                         "--internal-load", str(conf_path), "--out",
                                         str(load_out)], cwd=REPO)
        log("load running")
        spy_out = workdir / "py-spy.txt"
        spy: list[Any] = []

        def profile() -> None:
            if args.profile and PY_SPY:
                spy.append(procs.start("py-spy", [
                    PY_SPY, "record", "--pid", str(collector.proc.pid), "--rate", "100",
                    "--duration", str(int(min(args.duration, 60))), "--format", "raw",
                    "--threads", "--nonblocking", "--output", str(spy_out)]))

        seen = asyncio.run(observe(collector.proc.pid, load_proc.proc, base, store_url,
                                   warm_end, end_at, "bench", profile))
        if spy:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy[0].proc.wait(timeout=90)
            if spy_out.exists():
                report["profile"] = summarise_py_spy(spy_out.read_text())
            else:
                report["profile"] = {"error": tail(spy[0].log)}
        try:
            load_proc.proc.wait(timeout=max(10.0, end_at - time.time() + args.request_timeout
                                            + 30))
        except subprocess.TimeoutExpired:
            raise RuntimeError("the load process did not finish:\n"
                               + tail(load_proc.log)) from None
        if load_proc.proc.returncode != 0 or not load_out.exists():
            raise RuntimeError(f"the load process failed ({load_proc.proc.returncode}):\n"
                               + tail(load_proc.log))
        load = json.loads(load_out.read_text())
        collector_log = tail(collector.log, 15)
        procs.stop(collector)
    finally:
        procs.stop_all()
        pg.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    figures = window_figures(args, load, seen)
    statuses = load["statuses"]
    total = sum(statuses.values()) or 1
    report.update({
        "figures": figures, "limits_hit": limits_hit(figures, args.push_interval),
        "statuses_pct": {s: round(n / total * 100, 2) for s, n in statuses.items()},
        "incidents_at_end": seen["incidents"], "errors": load["errors"] + seen["errors"],
        "timeline": {"offered": load["offered"], "acked": load["acked"],
                     "requests": load["requests"]},
        "samples": [{k: v for k, v in s.items() if k != "threads"} for s in seen["samples"]],
        "collector_log_tail": collector_log, "wall_s": time.monotonic() - started})
    report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print_report(args, report)
    out = args.json or (REPO / "bench" / "out" /
                        f"scale-{args.hosts}-{args.store}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
    print(f"\nJSON: {out}")
    return 0


def print_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    f = report["figures"]
    m = report["machine"]

    def n(key: str, digits: int = 0, unit: str = "") -> str:
        value = f.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:,.{digits}f}{unit}"

    print()
    print(f"wardwatch scale simulation: {args.hosts} hosts x {args.checks} checks at "
          f"{args.interval:g} s, push every {args.push_interval:g} s, {args.systems} systems, "
          f"store {args.store}, members as a {args.members}, "
          + ("cold start (empty store)" if args.cold else "running store (open intervals)"))
    print(f"  machine: {m['nproc']} cpu {m['cpu_model']}, load average "
          f"{' '.join(m['loadavg_at_start'])} at start, {' '.join(m['loadavg_at_end'])} at end "
          "(other work on the machine: figures are noisy)")
    print(f"  window {n('window_s', 0)} s after {args.warmup:g} s warm-up; results "
          + ", ".join(f"{s} {p} %" for s, p in sorted(report["statuses_pct"].items()))
          + f"; incidents at end {dict(report['incidents_at_end'])}")
    rows = [
        ("results/s offered / acknowledged", f"{n('offered_rps')} / {n('acked_rps')} "
         f"({n('acked_ratio', 3)})"),
        ("push requests/s", n("requests_per_s")),
        ("keeps up (backlog growth, results/s)",
         f"{'yes' if f.get('keeps_up') else 'NO'} ({n('backlog_growth_rps')})"),
        ("backlog at window start / end (results)",
         f"{n('backlog_at_window_start')} / {n('backlog_at_window_end')}"),
        ("delivery lag p50 / p95 / max, s", f"{n('lag_p50_s', 1)} / {n('lag_p95_s', 1)} / "
         f"{n('lag_max_s', 1)}"),
        ("push request p50 / p95 / max, ms", f"{n('ingest_p50_ms', 1)} / "
         f"{n('ingest_p95_ms', 1)} / {n('ingest_max_ms', 0)}"),
        ("server ingest mean per batch, ms", n("server_ingest_mean_ms", 1)),
        ("push failures", str(f.get("failures") or "none")),
        ("collector CPU, % of a core", n("collector_cpu_pct")),
        ("  its event-loop thread, % of a core", n("loop_thread_cpu_pct")),
        ("  per thread, % of a core", str(f.get("threads_cpu_pct"))),
        ("collector RSS end / max, MB", f"{n('rss_mb_end', 0)} / {n('rss_mb_max', 0)}"),
        ("load process CPU, % of a core", n("load_cpu_pct")),
        ("store growth, bytes/s (per stored result)",
         f"{n('db_bytes_per_s')} ({n('db_bytes_per_result')} B)"),
        ("store growth, GB/day; at 35 days raw", f"{n('db_gb_per_day', 1)}; "
         f"{n('db_gb_at_raw_retention', 0)} GB"),
        ("incident evaluations in window, mean ms, p95 bucket",
         f"{n('evaluations')}, {n('evaluation_mean_ms', 1)} ms, "
         f"<= {f.get('evaluation_p95_bucket_s')} s"),
        ("  share of the window spent evaluating", n("evaluation_share_pct", 1, " %")),
        ("board.json round trip p50 / p95, ms (n ok, failed)", f"{n('board_p50_ms', 1)} / "
         f"{n('board_p95_ms', 1)} ({n('board_n')}, {n('board_failed_n')})"),
        ("board.json server time p50 / p95, ms", f"{n('board_server_p50_ms', 1)} / "
         f"{n('board_server_p95_ms', 1)}"),
        ("GET /api/v1/systems p50 / p95, ms (n ok, failed)", f"{n('systems_p50_ms', 1)} / "
         f"{n('systems_p95_ms', 1)} ({n('systems_n')}, {n('systems_failed_n')})"),
        ("/metrics answered in, s (window start, end)", str(f.get("metrics_answered_s"))),
    ]
    width = max(len(label) for label, _v in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    profile = report.get("profile") or {}
    if profile.get("categories_pct"):
        print(f"  where the collector's time goes (py-spy, {profile['samples']} samples, "
              f"threads {profile['threads_pct']}):")
        for label, share in list(profile["categories_pct"].items())[:10]:
            print(f"    {share:5.1f} %  {label}")
    print("limits hit: " + ("; ".join(report["limits_hit"]) or "none"))
    if report["errors"]:
        print("errors (sample): " + "; ".join(report["errors"][:5]))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--checks", type=int, default=50, help="checks per host")
    parser.add_argument("--interval", type=float, default=30.0, help="check interval, s")
    parser.add_argument("--push-interval", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--systems", type=int, default=50)
    parser.add_argument("--duration", type=float, default=120.0, help="measured window, s")
    parser.add_argument("--warmup", type=float,
                        help="before the window, s (default: one check interval + two push "
                        "intervals, so every check has reported and the start-up burst of new "
                        "intervals is over)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--members", choices=("list", "glob"), default="list",
                        help="app servers in a system's rule: one pattern per host (list) or "
                        "one glob per system (glob)")
    parser.add_argument("--cold", action="store_true",
                        help="start from a store without intervals: every check's first "
                        "result opens one, as after a fresh start or a collector outage longer "
                        "than stale_after x interval")
    parser.add_argument("--profile", action="store_true",
                        help="sample the collector with py-spy over (up to 60 s of) the window")
    parser.add_argument("--json", type=Path, help="write the figures here instead of "
                        "bench/out/scale-HOSTS-STORE-TIMESTAMP.json")
    parser.add_argument("--internal-load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = args.interval + 2 * args.push_interval
    if args.internal_load:
        conf = json.loads(args.internal_load.read_text())
        tokens = json.loads(Path(conf["tokens"]).read_text())
        result = asyncio.run(load_main(conf, tokens))
        args.out.write_text(json.dumps(result))
        return 0
    if not (1 <= args.hosts <= 20_000 and 4 <= args.checks <= 500 and args.interval >= 1
            and 5 <= args.duration <= 1800 and 0 <= args.warmup <= 600
            and args.push_interval > 0):
        parser.error("out of range: 1-20,000 hosts, 4-500 checks, interval >= 1 s, "
                     "duration 5-1,800 s, warm-up 0-600 s")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)   # unwinds through the finally that kills everything

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
