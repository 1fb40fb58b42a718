"""Collector benchmark: HTTP ingest rate, availability query time over a year of intervals, and
store growth per host-day, on SQLite and PostgreSQL, in one run.

    .venv/bin/python bench/collector.py            # full: 200,000 results per ingest run (~7 min)
    .venv/bin/python bench/collector.py --quick    # 20,000 results, 1/10 host-day (~3.5 min)

Options: --only ingest,availability,growth (a subset), --results N, --no-profile.

Everything runs on loopback. SQLite stores live in a temp dir; PostgreSQL stores are databases
created on 127.0.0.1:5432 for the run (`ww_bench_*`) and dropped on the way out, as is every
process the bench starts (each in its own process group, with PR_SET_PDEATHSIG).

1. Ingest   `wardwatch-collector run` as a real process; agents enrolled with
            `wardwatch-collector agents add ID`; a separate load process (aiohttp, 8 concurrent
            connections, 16 agents with their own tokens, each agent's batches sent in order)
            posts batches of 100 realistic results (10 checks per agent at 30 s, status
            changing now and then, 3 metric samples each, silences that split intervals).
            Results/s over the timed phase (after two warm-up batches per agent), client-side
            request latency, collector CPU from /proc/PID/stat. SQLite with synchronous=FULL
            (default) and NORMAL, and PostgreSQL (where the server runs without autovacuum,
            the bench stands in for it: see `Autovacuum`). A further SQLite/FULL run is
            sampled with py-spy and the profile summarised (--no-profile skips it).
2. Query    50 systems, one year of 15-second results expressed as the check state intervals
            they would produce (generated, bulk-inserted into check_intervals), plus maintenance
            windows; `Systems.availability(system, now - 365 d, now, now)` timed per system in a
            fresh interpreter (first round = cold-ish, then warm rounds), with a breakdown of
            where the time goes; `GET /api/v1/systems` timed against a collector process.
3. Growth   one simulated host-day (50 checks at 30 s = 144,000 results; --quick: 1/10,
            scaled) ingested through `Store.ingest` into a fresh store; size after checkpoint +
            VACUUM with the raw results, and again after the store's retention step
            (`Store.expire_results`: hourly roll-up, then delete; `delete_results_before` in
            older trees) leaves the intervals and roll-ups. PostgreSQL: pg_total_relation_size
            per table (after VACUUM FULL for the second figure).

Results: a table on stdout (target, PASS/FAIL) and bench/out/collector-*.json. Exit 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pickle
import pstats
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as `python bench/collector.py`, sys.path[0] is bench/, where this very file would shadow
# the `collector` package; the repository root must come first instead.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

import yaml  # noqa: E402

from bench.harness import (  # noqa: E402
    Processes,
    Started,
    cpu_seconds,
    free_port,
    machine,
    memory_kb,
    tail,
)
from bench.harness import source_state as harness_source_state  # noqa: E402

VENV_BIN = Path(sys.executable).parent
COLLECTOR_CMD = ([str(VENV_BIN / "wardwatch-collector")]
                 if (VENV_BIN / "wardwatch-collector").exists()
                 else [sys.executable, "-m", "collector"])
PY_SPY = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
PG_ADMIN_URL = os.environ.get("WARDWATCH_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")
PG_AUTOVACUUM = True  # read from the server at the start of a run

TARGET_INGEST_RPS = 10_000
TARGET_QUERY_MS = 200.0

# 1. ingest
BATCH = 100
AGENTS = 16
CHECKS_PER_AGENT = 10
CONCURRENCY = 8
INTERVAL_S = 30
FULL_RESULTS = 200_000
QUICK_RESULTS = 20_000
PROFILE_RESULTS = {False: 60_000, True: 10_000}
# chance per result that an ok check fails (per check of an agent): most are steady, two flap
P_FAIL_INGEST = (0.0, 0.002, 0.005, 0.01, 0.02, 0.0, 0.002, 0.005, 0.05, 0.1)
P_RECOVER = 0.35
P_SILENCE_INGEST = 0.002   # per agent round: the agent goes quiet for 3-8 rounds

# 2. availability
SYSTEMS = 50
SLOT_S = 15
YEAR_DAYS = 365

# 3. growth
HOST_CHECKS = 50
HOST_MIX = (("host", 1), ("http", 20), ("tcp", 20), ("process", 9))
HOST_DAY_ROUNDS = 86_400 // INTERVAL_S          # 2,880 results per check per day
P_FAIL_HOST = 4 / HOST_DAY_ROUNDS                # ~4 failure episodes per check-day
P_SILENCE_HOST = 1 / HOST_DAY_ROUNDS             # ~1 agent silence per day


# ---------------------------------------------------------------- processes and /proc

def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(port: int, started: Started, timeout: float = 60.0) -> float:
    """Wait for /readyz of a collector; returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited ({started.proc.returncode}):\n"
                               + tail(started.log))
        with contextlib.suppress(OSError):
            status, _ = http_get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if status == 200:
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"{started.name} not ready on {port} after {timeout}s:\n"
                       + tail(started.log))


def pct(values: list[float], q: float) -> float:
    """Percentile q (0-100) by linear interpolation (q=50: the median)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---------------------------------------------------------------- PostgreSQL

def _asyncpg() -> Any:
    import asyncpg  # type: ignore[import-untyped]

    return asyncpg


class Postgres:
    """Temporary databases on the machine's server, dropped in `drop_all`."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.base = PG_ADMIN_URL.rsplit("/", 1)[0]

    def available(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 5432), timeout=1):
                return True
        except OSError:
            return False

    def create(self) -> str:
        name = f"ww_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return f"{self.base}/{name}"

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            try:
                self.drop(f"{self.base}/{name}")
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)

    @staticmethod
    async def _admin(sql: str) -> None:
        asyncpg = _asyncpg()
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    @staticmethod
    async def query(url: str, sql: str) -> list[Any]:
        asyncpg = _asyncpg()
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    @staticmethod
    async def execute(url: str, *sqls: str) -> None:
        asyncpg = _asyncpg()
        conn = await asyncpg.connect(url)
        try:
            for sql in sqls:
                await conn.execute(sql)
        finally:
            await conn.close()

    @staticmethod
    def version() -> str:
        with contextlib.suppress(Exception):
            rows = asyncio.run(Postgres.query(PG_ADMIN_URL, "SHOW server_version"))
            return str(rows[0][0])
        return "?"


PG_VACUUM_EVERY_S = 15.0


class Autovacuum:
    """Stands in for PostgreSQL's autovacuum where the server runs without it (this test
    server has `autovacuum = off`; production servers have it on): `VACUUM ANALYZE` of the
    bench database every PG_VACUUM_EVERY_S seconds while the block runs. Without fresh
    statistics the planner keeps a sequential scan for ingest's `SELECT id FROM results
    WHERE id IN (...)`, and ingest slows down as the table grows (measured: 5,900 -> 600
    results/s over 90 s). Statistics are also taken once after the warm-up, so the timed
    phase starts from the state a production server is in: tables with statistics."""

    def __init__(self, url: str | None, enabled: bool) -> None:
        self.url = url if enabled else None
        self.runs: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Autovacuum:
        if self.url is not None:
            self._thread = threading.Thread(target=self._loop, name="autovacuum", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        assert self.url is not None
        for _ in range(10_000):  # bounded; stopped by __exit__
            if self._stop.wait(PG_VACUUM_EVERY_S):
                return
            t0 = time.perf_counter()
            try:
                asyncio.run(Postgres.execute(self.url, "VACUUM ANALYZE"))
            except Exception as exc:  # the database may be going away
                print(f"warning: VACUUM ANALYZE failed: {exc}", file=sys.stderr)
                return
            self.runs.append(time.perf_counter() - t0)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def record(self) -> dict[str, Any]:
        return {"emulated": self.url is not None, "every_s": PG_VACUUM_EVERY_S,
                "runs": len(self.runs), "seconds": round(sum(self.runs), 2)}


def pg_autovacuum_on() -> bool | None:
    with contextlib.suppress(Exception):
        rows = asyncio.run(Postgres.query(PG_ADMIN_URL, "SHOW autovacuum"))
        return str(rows[0][0]) == "on"
    return None


# ---------------------------------------------------------------- realistic results

KIND_CHECKS = {"host": ["host"], "http": ["web-1", "web-2", "api", "portal"],
               "tcp": ["db", "mq", "ldap"], "process": ["nginx", "java"]}
INGEST_CHECKS = [(check_id, kind) for kind, ids in KIND_CHECKS.items() for check_id in ids]
assert len(INGEST_CHECKS) == CHECKS_PER_AGENT


@dataclass
class CheckSpec:
    check_id: str
    kind: str
    system: str
    target: str
    offset_s: float
    p_fail: float


def _metrics(kind: str, status: str, rng: random.Random) -> list[dict[str, Any]]:
    slow = status != "ok"
    if kind == "host":
        return [{"name": "host_cpu_usage_ratio", "value": round(rng.uniform(0.05, 0.9), 4),
                 "labels": {}},
                {"name": "host_memory_used_ratio", "value": round(rng.uniform(0.3, 0.8), 4),
                 "labels": {}},
                {"name": "host_filesystem_used_ratio", "value": round(rng.uniform(0.2, 0.95), 4),
                 "labels": {"mountpoint": "/"}}]
    if kind == "http":
        return [{"name": "probe_duration_seconds",
                 "value": round(rng.uniform(2, 10) if slow else rng.uniform(0.002, 0.05), 6),
                 "labels": {}},
                {"name": "http_status_code", "value": 503 if status == "critical" else 200,
                 "labels": {}},
                {"name": "http_content_length_bytes", "value": rng.randint(200, 40_000),
                 "labels": {}}]
    if kind == "tcp":
        return [{"name": "probe_duration_seconds",
                 "value": round(rng.uniform(1, 10) if slow else rng.uniform(0.0002, 0.004), 6),
                 "labels": {}},
                {"name": "tcp_connect_seconds", "value": round(rng.uniform(0.0001, 0.003), 6),
                 "labels": {}},
                {"name": "probe_success", "value": 0 if status == "critical" else 1,
                 "labels": {}}]
    return [{"name": "process_count", "value": 0 if status == "critical" else rng.randint(1, 8),
             "labels": {}},
            {"name": "process_resident_memory_bytes", "value": rng.randint(10**7, 4 * 10**9),
             "labels": {}},
            {"name": "process_cpu_seconds_total", "value": round(rng.uniform(10, 10**6), 2),
             "labels": {}}]


SUMMARIES = {
    ("http", "ok"): ("ok", "HTTP 200 in {ms} ms"),
    ("http", "warning"): ("slow", "HTTP 200 in {ms} ms (warning above 2000 ms)"),
    ("http", "critical"): ("http_status", "HTTP 503 Service Unavailable in {ms} ms"),
    ("tcp", "ok"): ("ok", "{target} connected in {ms} ms"),
    ("tcp", "warning"): ("slow", "{target} connected in {ms} ms (warning above 1000 ms)"),
    ("tcp", "critical"): ("timeout", "{target}: connect timed out after 10 s"),
    ("host", "ok"): ("ok", "cpu 23 %, memory 61 %, / 48 % used"),
    ("host", "warning"): ("disk_high", "/ 91 % used (warning above 90 %)"),
    ("host", "critical"): ("disk_full", "/ 98 % used (critical above 95 %)"),
    ("process", "ok"): ("ok", "3 processes matching {target}"),
    ("process", "warning"): ("memory_high", "{target}: 3.9 GB resident (warning above 3.5 GB)"),
    ("process", "critical"): ("not_running", "no process matching {target}"),
}


def _target(kind: str, check_id: str, agent_id: str) -> str:
    if kind == "http":
        return f"https://{agent_id}.hospital.local/{check_id}/health"
    if kind == "tcp":
        return f"10.0.{sum(map(ord, agent_id)) % 250}.{sum(map(ord, check_id)) % 250}:1521"
    if kind == "process":
        return check_id
    return agent_id


def result_dict(agent_id: str, c: CheckSpec, status: str, ts: float,
                rng: random.Random) -> dict[str, Any]:
    metrics = _metrics(c.kind, status, rng)
    reason, summary = SUMMARIES[(c.kind, status)]
    duration = metrics[0]["value"] if c.kind in ("http", "tcp") else rng.uniform(0.001, 0.02)
    return {
        # as agents make them (probes.result.time_ordered_uuid): UUIDv7 of the run's time
        "id": str(uuid.UUID(int=(int(ts * 1000) & ((1 << 48) - 1)) << 80
                            | (0x7 << 76) | (rng.getrandbits(12) << 64)
                            | (0x2 << 62) | rng.getrandbits(62))),
        "agent_id": agent_id, "check_id": c.check_id, "kind": c.kind, "target": c.target,
        "system": c.system, "status": status, "reason": reason,
        "started_at": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
        "duration_s": round(float(duration), 6), "interval_s": INTERVAL_S,
        "summary": summary.format(ms=int(float(duration) * 1000), target=c.target),
        "metrics": metrics, "details": {"attempts": 1, "address": c.target[:40]},
        "labels": {},
    }


def agent_stream(agent_id: str, checks: list[CheckSpec], n_results: int, t0: float,
                 rng: random.Random, p_silence: float, stats: Counter[str]
                 ) -> list[dict[str, Any]]:
    """`n_results` results of one agent in time order: rounds of all its checks every 30 s,
    each check at its own offset in the round; statuses follow a two-state chain (an ok check
    fails with its p_fail, a failing one recovers with P_RECOVER); now and then the agent is
    silent for 3-8 rounds (longer than stale_after x interval: the intervals are closed)."""
    status = {c.check_id: "ok" for c in checks}
    out: list[dict[str, Any]] = []
    r = 0
    for _ in range(n_results * 2):  # bounded: every pass either emits a round or skips one
        if len(out) >= n_results:
            break
        if rng.random() < p_silence:
            gap = rng.randint(3, 8)
            r += gap
            stats["silences"] += 1
            stats["silent_rounds"] += gap
            continue
        for c in checks:
            if len(out) >= n_results:
                break
            before = status[c.check_id]
            if before == "ok":
                if rng.random() < c.p_fail:
                    status[c.check_id] = "critical" if rng.random() < 0.67 else "warning"
            elif rng.random() < P_RECOVER:
                status[c.check_id] = "ok"
            if status[c.check_id] != before:
                stats["status_changes"] += 1
            stats[status[c.check_id]] += 1
            ts = t0 + r * INTERVAL_S + c.offset_s + rng.uniform(-0.3, 0.3)
            out.append(result_dict(agent_id, c, status[c.check_id], ts, rng))
        r += 1
    stats["rounds"] += r
    return out


def ingest_agents() -> list[str]:
    return [f"ward-{i:02d}" for i in range(AGENTS)]


def ingest_checks(agent_index: int, rng: random.Random) -> list[CheckSpec]:
    agent_id = f"ward-{agent_index:02d}"
    system = f"SYS{agent_index % 4}"
    return [CheckSpec(check_id, kind, "HOST" if kind == "host" else system,
                      _target(kind, check_id, agent_id), offset_s=j * 2.9 + rng.uniform(0, 1),
                      p_fail=P_FAIL_INGEST[j])
            for j, (check_id, kind) in enumerate(INGEST_CHECKS)]


def build_ingest_payload(total: int, path: Path, seed: int = 1) -> dict[str, Any]:
    """Bodies of BATCH results per agent, in each agent's time order, pickled to `path`."""
    rng = random.Random(seed)
    per_agent = total // AGENTS
    t0 = time.time() - per_agent / CHECKS_PER_AGENT * INTERVAL_S * 1.3 - 3600
    stats: Counter[str] = Counter()
    bodies: dict[str, list[bytes]] = {}
    body_bytes = 0
    for i, agent_id in enumerate(ingest_agents()):
        checks = ingest_checks(i, rng)
        stream = agent_stream(agent_id, checks, per_agent, t0, rng, P_SILENCE_INGEST, stats)
        bodies[agent_id] = []
        for k in range(0, len(stream), BATCH):
            body = json.dumps({"agent_id": agent_id, "results": stream[k:k + BATCH]},
                              separators=(",", ":")).encode()
            body_bytes += len(body)
            bodies[agent_id].append(body)
    with path.open("wb") as f:
        pickle.dump(bodies, f, protocol=pickle.HIGHEST_PROTOCOL)
    n = sum(len(b) for b in bodies.values())
    results = per_agent * AGENTS
    return {"results": results, "batches": n, "agents": AGENTS,
            "checks_per_agent": CHECKS_PER_AGENT, "batch": BATCH,
            "mean_body_bytes": body_bytes / n, "bytes_per_result": body_bytes / results,
            "status_changes": stats["status_changes"],
            "status_change_ratio": stats["status_changes"] / results,
            "silences": stats["silences"], "simulated_hours_per_agent":
                stats["rounds"] / AGENTS * INTERVAL_S / 3600,
            "statuses": {s: stats[s] for s in ("ok", "warning", "critical")}}


# ---------------------------------------------------------------- 1. the load process

WARMUP_BATCHES = 2  # per agent


async def load_phases(bodies: dict[str, list[bytes]], url: str, tokens: dict[str, str],
                      concurrency: int, collector_pid: int, analyze_url: str | None = None
                      ) -> dict[str, Any]:
    """Warm-up (the first WARMUP_BATCHES of every agent), then the timed phase (the rest).
    With `analyze_url`, statistics are taken between the two (see Autovacuum)."""
    import aiohttp

    agents = sorted(bodies)
    per_worker = [agents[w::concurrency] for w in range(concurrency)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    errors: list[str] = []

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(agent: str, body: bytes, rec: dict[str, Any]) -> None:
            headers = {"Authorization": f"Bearer {tokens[agent]}",
                       "Content-Type": "application/json"}
            t0 = time.perf_counter()
            async with session.post(url + "/api/v1/results", data=body,
                                    headers=headers) as resp:
                text = await resp.read()
                t1 = time.perf_counter()
            if resp.status != 200:
                rec["errors"] += 1
                if len(errors) < 5:
                    errors.append(f"{resp.status}: {text[:300]!r}")
                return
            answer = json.loads(text)
            rec["accepted"] += answer["accepted"]
            rec["duplicates"] += answer["duplicates"]
            rec["latencies_ms"].append((t1 - t0) * 1000)
            rec["done_at"].append(t1)

        async def worker(mine: list[str], first: int, last: int | None,
                         rec: dict[str, Any]) -> None:
            # each agent's batches go in order, one at a time, as a real agent sends them
            longest = max((len(bodies[a]) for a in mine), default=0)
            for i in range(first, longest if last is None else min(last, longest)):
                for agent in mine:
                    if i < len(bodies[agent]):
                        await post(agent, bodies[agent][i], rec)

        def record() -> dict[str, Any]:
            return {"accepted": 0, "duplicates": 0, "errors": 0, "latencies_ms": [],
                    "done_at": []}

        warm, timed = record(), record()
        async with asyncio.timeout(900):
            await asyncio.gather(*(worker(m, 0, WARMUP_BATCHES, warm)
                                   for m in per_worker if m))
            if analyze_url:
                await Postgres.execute(analyze_url, "VACUUM ANALYZE")
            c0, l0, t0 = cpu_seconds(collector_pid), time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(m, WARMUP_BATCHES, None, timed)
                                   for m in per_worker if m))
            wall = time.perf_counter() - t0
            c1, l1 = cpu_seconds(collector_pid), time.process_time()

    done = sorted(t - t0 for t in timed.pop("done_at"))
    quarters = []
    for q in range(4):  # results/s in each quarter of the timed phase (does it sustain?)
        a, b = wall * q / 4, wall * (q + 1) / 4
        n = sum(1 for t in done if a <= t < b) * BATCH
        quarters.append(n / (b - a) if b > a else 0.0)
    warm.pop("done_at")
    return {
        "concurrency": concurrency, "agents": len(agents),
        "warmup": {"batches": len(warm["latencies_ms"]), "accepted": warm["accepted"],
                   "errors": warm["errors"]},
        "timed": {**{k: v for k, v in timed.items() if k != "latencies_ms"},
                  "batches": len(timed["latencies_ms"]), "wall_s": wall,
                  "collector_cpu_s": c1 - c0, "load_cpu_s": l1 - l0,
                  "results_per_s_by_quarter": quarters},
        "latencies_ms": timed["latencies_ms"], "errors_sample": errors}


# ---------------------------------------------------------------- 1. one ingest run

def collector_config(path: Path, port: int, store: str, synchronous: str,
                     systems: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "store": store,
                                    "store_synchronous": synchronous, "systems": systems},
                                   sort_keys=False, allow_unicode=True))


def ingest_systems() -> list[dict[str, Any]]:
    """Four systems over the load agents' checks (the housekeeping loop computes their state
    and year-to-date availability every 30 s while the load runs, as in production)."""
    out = []
    for k in range(4):
        agents = [a for i, a in enumerate(ingest_agents()) if i % 4 == k]
        out.append({"id": f"SYS{k}", "core": True,
                    "rule": {"all": [f"{a}/db" for a in agents]
                             + [{"at_least": 1, "of": [f"{a}/web-*" for a in agents]}]}})
    return out


def enrol(config: Path, agents: list[str]) -> dict[str, str]:
    tokens = {}
    for agent in agents:
        proc = subprocess.run([*COLLECTOR_CMD, "agents", "add", agent, "--config", str(config)],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"agents add {agent} failed: {proc.stderr[-2000:]}")
        tokens[agent] = proc.stdout.strip().splitlines()[-1]
    return tokens


def metric_value(body: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body, re.M)
    return float(m.group(1)) if m else None


async def count_store(url: str) -> dict[str, int]:
    """Rows per table (results_hourly only where the schema has it)."""
    import sqlalchemy as sa

    from collector import schema
    from collector.store import Store

    tables = {"results": schema.results, "intervals": schema.check_intervals}
    hourly = getattr(schema, "results_hourly", None)
    if hourly is not None:
        tables["results_hourly"] = hourly
    store = await Store.open(url)
    out = {}
    try:
        async with store.engine.connect() as conn:
            for name, table in tables.items():
                out[name] = int((await conn.execute(
                    sa.select(sa.func.count()).select_from(table))).scalar_one())
    finally:
        await store.close()
    return out


def ingest_run(label: str, store_url: str, synchronous: str, payload: Path, expected: int,
               workdir: Path, procs: Processes, profile: bool = False,
               log: Any = print) -> dict[str, Any]:
    run_dir = workdir / label
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = run_dir / "collector.yaml"
    collector_config(config, port, store_url, synchronous, ingest_systems())
    t0 = time.monotonic()
    tokens = enrol(config, ingest_agents())
    enrol_s = time.monotonic() - t0
    tokens_path = run_dir / "tokens.json"
    tokens_path.write_text(json.dumps(tokens))
    collector = procs.start(f"collector-{label}", [*COLLECTOR_CMD, "run", "--config",
                                                   str(config)], cwd=REPO)
    spy: Started | None = None
    try:
        ready_s = wait_ready(port, collector)
        time.sleep(1.0)  # the first housekeeping round (empty store) is over
        rss0 = memory_kb(collector.proc.pid)
        spy_out = run_dir / "py-spy.txt"
        if profile:
            assert PY_SPY is not None
            spy = procs.start(f"py-spy-{label}", [PY_SPY, "record", "--pid",
                                                  str(collector.proc.pid), "--rate", "250",
                                                  "--format", "raw", "--threads",
                                                  "--output", str(spy_out)])
            time.sleep(1.0)
        out = run_dir / "load.json"
        log(f"  {label}: {expected:,} results, {AGENTS} agents, {CONCURRENCY} connections"
            + (" (py-spy sampling the collector)" if profile else ""))
        is_pg = store_url.startswith("postgresql")
        with Autovacuum(store_url, is_pg and not PG_AUTOVACUUM) as vacuum:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                   "--internal-load", str(payload), "--url",
                                   f"http://127.0.0.1:{port}", "--tokens", str(tokens_path),
                                   "--concurrency", str(CONCURRENCY), "--collector-pid",
                                   str(collector.proc.pid), "--out", str(out),
                                   *(["--analyze-url", store_url] if vacuum.url else [])],
                                  capture_output=True, text=True, timeout=1200, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed:\n{proc.stderr[-3000:]}\n"
                               + tail(collector.log))
        load = json.loads(out.read_text())
        profile_summary = None
        if spy is not None:
            spy.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("  WARNING: py-spy did not stop on SIGINT")
            procs.stop(spy)
            spy = None
            if spy_out.exists():
                profile_summary = summarise_py_spy(spy_out.read_text())
                shutil.copy(spy_out, REPO / "bench" / "out" / f"collector-py-spy-{label}.txt")
            else:
                log("  WARNING: py-spy wrote no profile:\n" + tail(run_dir / f"py-spy-{label}.log"))
        _status, metrics_body = http_get(f"http://127.0.0.1:{port}/metrics")
        text = metrics_body.decode()
        server_sum = metric_value(text, "wardwatch_collector_ingest_duration_seconds_sum")
        server_count = metric_value(text, "wardwatch_collector_ingest_duration_seconds_count")
        evaluations = {
            "count": metric_value(text, "wardwatch_collector_incident_evaluation_seconds_count"),
            "sum_s": metric_value(text, "wardwatch_collector_incident_evaluation_seconds_sum")}
        rss1 = memory_kb(collector.proc.pid)
    finally:
        if spy is not None:
            procs.stop(spy, signal.SIGINT)
        procs.stop(collector)
    counts = asyncio.run(count_store(store_url))
    timed = load["timed"]
    lat = load["latencies_ms"]
    results_timed = timed["accepted"] + timed["duplicates"]
    rate = results_timed / timed["wall_s"] if timed["wall_s"] else 0.0
    record = {
        "label": label, "store": store_url.split("://")[0], "synchronous": synchronous,
        "enrol_s": enrol_s, "ready_s": ready_s, "load": {k: v for k, v in load.items()
                                                          if k != "latencies_ms"},
        "results_per_s": rate,
        "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                       "max": max(lat) if lat else None},
        "collector_cpu_pct_of_core": timed["collector_cpu_s"] / timed["wall_s"] * 100,
        "collector_cpu_ms_per_1000_results": timed["collector_cpu_s"] / max(results_timed, 1)
        * 1e6,
        "load_cpu_pct_of_core": timed["load_cpu_s"] / timed["wall_s"] * 100,
        "server_ingest_mean_ms": (server_sum / server_count * 1000
                                  if server_sum and server_count else None),
        "collector_rss_kb": {"before": rss0, "after": rss1},
        "incident_evaluations": evaluations,
        "stored": counts, "expected_results": expected,
        "all_stored": counts["results"] == expected,
        "errors": timed["errors"] + load["warmup"]["errors"],
        "errors_sample": load["errors_sample"], "profile": profile_summary,
        "pg_vacuum": vacuum.record(),
    }
    if store_url.startswith("sqlite"):
        db = Path(store_url.split(":///", 1)[1])
        record["sqlite_bytes"] = {p.name: p.stat().st_size
                                  for p in db.parent.glob(db.name + "*")}
    log(f"  {label}: {rate:,.0f} results/s; latency p50 {record['latency_ms']['p50']:.1f} ms, "
        f"p95 {record['latency_ms']['p95']:.1f} ms; collector CPU "
        f"{record['collector_cpu_pct_of_core']:.0f}% of a core, load process "
        f"{record['load_cpu_pct_of_core']:.0f}%; stored {counts['results']:,}/{expected:,} "
        f"results, {counts['intervals']:,} intervals; quarters "
        f"{[round(q) for q in timed['results_per_s_by_quarter']]}")
    if evaluations["count"]:
        log(f"  {label}: incident evaluations during the run: {evaluations['count']:.0f}, "
            f"{evaluations['sum_s']:.2f} s in all, "
            f"{evaluations['sum_s'] / evaluations['count'] * 1000:.1f} ms each")
    return record


# ---------------------------------------------------------------- 1. the profile

PROFILE_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    # Each sample goes to the first category matched by its innermost matching frame (the
    # stack is scanned from the leaf up), so the shares add up to 100 %.
    ("pydantic: IngestRequest.model_validate_json", ("model_validate_json (",)),
    ("Store.ingest: _result_row (rows from models, metrics model_dump)",
     ("_result_row",)),
    ("SQLAlchemy: JSON columns (json.dumps per row)",
     ("json/encoder.py", "dumps (json/__init__.py)", "JSON._make_bind_processor")),
    ("SQLAlchemy: UtcDateTime bind/result processing",
     ("UtcDateTime.process_bind_param", "UtcDateTime.process_result_value")),
    ("SQLAlchemy: statement compile, cache keys, parameters",
     ("sqlalchemy/sql/compiler.py", "sqlalchemy/sql/cache_key.py", "_init_compiled")),
    ("SQLAlchemy: other (execution, pool, results, greenlet switches)", ("sqlalchemy/",)),
    ("aiosqlite / asyncpg drivers (Python side)", ("aiosqlite/", "asyncpg/")),
    ("Store: interval upkeep (_update_intervals, _advance)",
     ("Store._update_intervals", "Store._advance")),
    ("Store: authenticate, ingest (other Python)", ("collector/store.py",)),
    ("housekeeping: system states, year-to-date (every 30 s)",
     ("collector/systems.py", "collector/availability.py", "collector/rules.py",
      "collector/schedule.py")),
    ("collector.app handler (other: metrics, response)", ("collector/app.py",
                                                          "prometheus_client/")),
    ("aiohttp: HTTP parsing, request/response", ("aiohttp/", "multidict/", "yarl/")),
    ("event loop: waiting in epoll (idle)", ("select (selectors.py)",)),
    ("event loop: scheduling, callbacks", ("asyncio/",)),
]
WORKER_C = "_connection_worker_thread (aiosqlite/core.py)"


def _frame_key(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (pkg/file.py)' with the site-packages prefix cut."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.group(1), m.group(2)
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


def summarise_py_spy(raw: str) -> dict[str, Any]:
    """py-spy `--format raw --threads` lines: 'thread (TID): NAME;frame;...;frame COUNT'.

    Shares are of all samples of both threads (the event loop and aiosqlite's worker, which
    runs sqlite3's C code without the GIL), so they approximate shares of the collector's CPU.
    """
    total = 0
    threads: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        head = frames[0] if frames[0].startswith(("thread", "process")) else ""
        keys = [_frame_key(f) for f in frames[1 if head else 0:]]
        worker = "MainThread" not in head
        threads["aiosqlite worker thread" if worker else "event loop (main thread)"] += count
        total += count
        if keys and keys[-1] == WORKER_C:
            category = "sqlite3 C library, in aiosqlite's worker thread (SQL, B-trees, fsync)"
        else:
            category = "other"
            for frame in reversed(keys):
                hit = next((label for label, needles in PROFILE_CATEGORIES
                            if any(n in frame for n in needles)), None)
                if hit is not None:
                    category = hit
                    break
            if worker and category.startswith("event loop"):
                category = "aiosqlite worker: handing results back to the loop"
        categories[category] += count
        for k in set(keys):
            inclusive[k] += count
        if keys:
            leaf[keys[-1]] += count

    def share(n: int) -> float:
        return round(n / total * 100, 1) if total else 0.0

    return {
        "samples": total,
        "threads_pct": {k: share(v) for k, v in threads.most_common()},
        "categories_pct": {k: share(v) for k, v in categories.most_common()},
        "top_inclusive_pct": {k: share(v) for k, v in inclusive.most_common(60)},
        "top_self_pct": {k: share(v) for k, v in leaf.most_common(30)},
    }


# ---------------------------------------------------------------- 2. a year of intervals

@dataclass
class YearModel:
    systems: list[dict[str, Any]]
    intervals: list[dict[str, Any]]
    maintenance: list[dict[str, Any]]
    now: datetime
    stats: dict[str, Any]


def _poisson_arrivals(rng: random.Random, per_slot: float, horizon: int,
                      cap: int = 100_000) -> Iterator[int]:
    t = 0.0
    for _ in range(cap):
        t += rng.expovariate(per_slot)
        if t >= horizon:
            return
        yield int(t)


def _log_uniform_slots(rng: random.Random, lo_s: float, hi_s: float) -> int:
    return max(1, round(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s))) / SLOT_S))


CLINIC_HOURS = [{"days": "mon-fri", "start": "07:30", "end": "18:00"},
                {"days": "sat", "start": "07:30", "end": "12:00"}]
PRIO = {"ok": 0, "warning": 2, "critical": 3, "silent": 4}


def build_year(seed: int = 7) -> YearModel:
    """50 systems; a year of 15-second results per member check, as state intervals.

    Per system: outages at 3 a month (Poisson), lasting 2 min-4 h (log-uniform), hitting one
    member check or (40 %) all of them (critical). Per check: short blips at 2 a day (a
    failed or slow probe, 1-4 results, critical 70 % / warning 30 %) and slow periods at
    2 a month (warning, 5 min-2 h). Per agent: silences at 1 a month, 2 min-3 h, during which
    its checks have no intervals (unknown time). Priority where they overlap: silence,
    critical, warning, ok. Each maximal run of one status becomes one interval, as the store
    builds them; the last interval of every check is still open at `now`. Per system, one
    planned maintenance window a month (1-3 h at night) and, for every third system, one force
    majeure window in the year.
    """
    rng = random.Random(seed)
    now_ts = (int(time.time()) // SLOT_S) * SLOT_S
    now = datetime.fromtimestamp(now_ts, UTC)
    horizon = (YEAR_DAYS + 1) * 86_400 // SLOT_S        # one day more than the queried year
    begin_ts = now_ts - horizon * SLOT_S
    per_day = 86_400 / SLOT_S
    systems: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    maintenance: list[dict[str, Any]] = []
    episodes_by = Counter[str]()
    per_check_counts: list[int] = []
    for i in range(SYSTEMS):
        sid = f"SYS{i:02d}"
        layout = i % 5
        if layout in (0, 1):
            members = [(f"s{i:02d}-app-1", "web"), (f"s{i:02d}-db-1", "oracle")]
            rule: Any = "all"
            member_cfg: list[str] | None = [f"{a}/{c}" for a, c in members]
        elif layout in (2, 3):
            members = [(f"s{i:02d}-app-1", "web"), (f"s{i:02d}-app-2", "web"),
                       (f"s{i:02d}-db-1", "oracle")]
            rule = {"all": [f"s{i:02d}-db-1/oracle",
                            {"at_least": 1, "of": [f"s{i:02d}-app-*/web"]}]}
            member_cfg = None
        else:
            members = [(f"s{i:02d}-app-{k}", "web") for k in (1, 2, 3)]
            rule = {"at_least": 2}
            member_cfg = [f"s{i:02d}-app-*/web"]
        system: dict[str, Any] = {"id": sid, "name": f"系统 {i:02d}", "core": i % 10 < 7,
                                  "schedule": CLINIC_HOURS if i % 5 == 4 else "24x7",
                                  "rule": rule}
        if member_cfg is not None:
            system["members"] = member_cfg
        systems.append(system)

        # episodes: check key -> list of (start_slot, end_slot, status)
        eps: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
        for start in _poisson_arrivals(rng, 3 / (30.4 * per_day), horizon):
            length = _log_uniform_slots(rng, 120, 4 * 3600)
            hit = members if rng.random() < 0.4 else [rng.choice(members)]
            for key in hit:
                eps[key].append((start, start + length, "critical"))
            episodes_by["system outage"] += 1
        for key in members:
            for start in _poisson_arrivals(rng, 2 / per_day, horizon):
                eps[key].append((start, start + rng.randint(1, 4),
                                 "critical" if rng.random() < 0.7 else "warning"))
                episodes_by["check blip"] += 1
            for start in _poisson_arrivals(rng, 2 / (30.4 * per_day), horizon):
                eps[key].append((start, start + _log_uniform_slots(rng, 300, 7200), "warning"))
                episodes_by["slow period"] += 1
        for agent in sorted({a for a, _ in members}):
            for start in _poisson_arrivals(rng, 1 / (30.4 * per_day), horizon):
                length = _log_uniform_slots(rng, 120, 3 * 3600)
                for key in members:
                    if key[0] == agent:
                        eps[key].append((start, start + length, "silent"))
                episodes_by["agent silence"] += 1
        for key in members:
            offset = rng.uniform(0, SLOT_S - 1)
            rows = _intervals_for(key, sid, eps[key], horizon, begin_ts + offset)
            per_check_counts.append(len(rows))
            intervals.extend(rows)

        for month in range(12):
            day_start = now_ts - (month + 1) * 30 * 86_400 + rng.randint(0, 27) * 86_400
            start = day_start - day_start % 86_400 + 18 * 3600  # 02:00 Asia/Shanghai
            length = rng.randint(1, 3) * 3600
            maintenance.append(_window(sid, start, start + length, "planned",
                                       "monthly patching"))
        if i % 3 == 0:
            start = now_ts - rng.randint(10, 350) * 86_400
            maintenance.append(_window(sid, start, start + rng.randint(1, 6) * 3600,
                                       "force_majeure", "city power cut"))
    n_checks = len(per_check_counts)
    per_system = Counter[str]()
    for row in intervals:
        per_system[row["system"]] += 1
    stats = {
        "systems": SYSTEMS, "member_checks": n_checks, "intervals": len(intervals),
        "intervals_per_check_year": {"median": statistics.median(per_check_counts),
                                     "min": min(per_check_counts),
                                     "max": max(per_check_counts)},
        "intervals_per_system_year": {"median": statistics.median(per_system.values()),
                                      "min": min(per_system.values()),
                                      "max": max(per_system.values())},
        "results_represented": sum(r["results"] for r in intervals),
        "episodes": dict(episodes_by), "maintenance_windows": len(maintenance),
        "slot_s": SLOT_S, "days": YEAR_DAYS + 1,
    }
    return YearModel(systems, intervals, maintenance, now, stats)


def _window(system: str, start: int, end: int, kind: str, reason: str) -> dict[str, Any]:
    return {"system": system, "start": datetime.fromtimestamp(start, UTC),
            "end": datetime.fromtimestamp(end, UTC), "kind": kind, "reason": reason,
            "approved_by": "信息科", "created_at": datetime.fromtimestamp(start - 86_400, UTC),
            "created_by": "bench", "cancelled_at": None, "cancelled_by": None}


def _intervals_for(key: tuple[str, str], system: str, episodes: list[tuple[int, int, str]],
                   horizon: int, t0: float) -> list[dict[str, Any]]:
    """Sweep the episodes over the slot grid: top-priority status per stretch, merged runs."""
    events: list[tuple[int, int, str]] = []
    for a, b, status in episodes:
        b = min(b, horizon)
        if a < b:
            events.append((a, 1, status))
            events.append((b, -1, status))
    events.sort()
    active = Counter[str]()
    runs: list[list[Any]] = []  # [start_slot, end_slot, status]
    cursor = 0
    k = 0
    while cursor < horizon:
        while k < len(events) and events[k][0] <= cursor:
            active[events[k][2]] += events[k][1]
            k += 1
        following = events[k][0] if k < len(events) else horizon
        status = max((s for s, n in active.items() if n > 0), key=PRIO.__getitem__,
                     default="ok")
        if runs and runs[-1][2] == status:
            runs[-1][1] = following
        else:
            runs.append([cursor, following, status])
        cursor = following
    agent, check = key
    kind = "http" if check == "web" else "tcp"
    rows = []
    for n, (a, b, status) in enumerate(runs):
        if status == "silent":
            continue
        is_open = n == len(runs) - 1
        reason, summary = SUMMARIES[(kind, status)]
        rows.append({
            "agent_id": agent, "check_id": check, "system": system, "kind": kind,
            "status": status, "reason": reason,
            "summary": summary.format(ms=12 if status == "ok" else 2300, target="10.0.0.5:1521"),
            "start": datetime.fromtimestamp(t0 + a * SLOT_S, UTC),
            "end": datetime.fromtimestamp(t0 + b * SLOT_S, UTC),
            "last_result_at": datetime.fromtimestamp(t0 + (b - 1) * SLOT_S, UTC),
            "results": b - a, "is_open": is_open,
        })
    return rows


async def load_year(url: str, model: YearModel) -> dict[str, Any]:
    """Bulk-insert the generated intervals and windows (SQLAlchemy Core executemany)."""
    from collector.schema import check_intervals, maintenance
    from collector.store import Store

    store = await Store.open(url)
    t0 = time.perf_counter()
    try:
        chunk = 10_000
        for k in range(0, len(model.intervals), chunk):
            async with store.engine.begin() as conn:
                await conn.execute(check_intervals.insert(), model.intervals[k:k + chunk])
        async with store.engine.begin() as conn:
            await conn.execute(maintenance.insert(), model.maintenance)
    finally:
        await store.close()
    return {"insert_s": time.perf_counter() - t0}


async def query_main(config_path: Path, now_iso: str, warm_rounds: int) -> dict[str, Any]:
    """In a fresh interpreter: time Systems.availability per system, cold-ish then warm,
    then a breakdown of one more round, a cProfile'd round and the query plans."""
    import sqlalchemy as sa

    from collector.availability import Exclusion, compute_availability
    from collector.calendar import HolidayCalendar
    from collector.config import load_collector_config
    from collector.schedule import planned_intervals
    from collector.schema import check_intervals
    from collector.store import Store, _members
    from collector.systems import Systems, member_checks, timeline

    config = load_collector_config(config_path)
    now = datetime.fromisoformat(now_iso)
    start, end = now - timedelta(days=YEAR_DAYS), now
    store = await Store.open(config.store, synchronous=config.store_synchronous,
                             stale_after=config.stale_after)
    calendar = HolidayCalendar.load(config.calendar)
    systems = Systems(config, store, calendar)
    rounds: list[dict[str, dict[str, float]]] = []
    reports: dict[str, Any] = {}
    try:
        for r in range(1 + warm_rounds):
            times: dict[str, dict[str, float]] = {}
            for system in config.systems:
                c0, t0 = time.process_time(), time.perf_counter()
                report = await systems.availability(system, start, end, now)
                times[system.id] = {"wall_ms": (time.perf_counter() - t0) * 1000,
                                    "cpu_ms": (time.process_time() - c0) * 1000}
                if r == 0:
                    reports[system.id] = {
                        "availability": report.availability, "met": report.met,
                        "downtime_s": report.downtime_s, "unknown_s": report.unknown_s,
                        "excluded_s": report.excluded_s, "planned_s": report.planned_s,
                        "windows": len(report.windows),
                        "unknown_policy": report.unknown_policy}
            rounds.append(times)

        # breakdown: the same steps Systems.availability takes, timed one by one
        steps: dict[str, list[float]] = defaultdict(list)
        sizes: dict[str, list[int]] = defaultdict(list)
        for system in config.systems:
            t = time.perf_counter()
            known = await store.known_checks()
            members = member_checks(system, known)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["store.known_checks + member_checks"].append(dt * 1000)
            q = sa.select(sa.func.count()).select_from(check_intervals).where(
                check_intervals.c.end > start, check_intervals.c.start < end,
                sa.tuple_(check_intervals.c.agent_id, check_intervals.c.check_id).in_(members))
            async with store.engine.connect() as conn:
                await conn.execute(q)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["  SQL only: SELECT count(*) with a tuple IN (the old filter)"].append(dt * 1000)
            q = sa.select(sa.func.count()).select_from(check_intervals).where(
                check_intervals.c.end > start, check_intervals.c.start < end,
                sa.or_(*(sa.and_(check_intervals.c.agent_id == a, check_intervals.c.check_id == c)
                         for a, c in members)))
            async with store.engine.connect() as conn:
                await conn.execute(q)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["  SQL only, members as OR of (agent_id = ? AND check_id = ?)"].append(
                dt * 1000)
            ivs = await store.intervals(start, end, members)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["store.intervals (SQL + rows -> CheckInterval)"].append(dt * 1000)
            sizes["intervals"].append(len(ivs))
            ivs = [systems._standing(iv, now) for iv in ivs]
            states = timeline(system, ivs, start, end, members)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["timeline (sweep + rule per boundary)"].append(dt * 1000)
            sizes["state_intervals"].append(len(states))
            planned = planned_intervals(system.schedule, calendar, config.zone, start, end)
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["planned_intervals (schedule + calendar)"].append(dt * 1000)
            windows = await store.maintenance_windows(system=system.id, start=start, end=end)
            exclusions = [Exclusion(start=w.start, end=w.end, kind=w.kind,  # type: ignore
                                    reason=w.reason, approved_by=w.approved_by, id=str(w.id))
                          for w in windows]
            t, dt = time.perf_counter(), time.perf_counter() - t
            steps["maintenance windows (SQL)"].append(dt * 1000)
            compute_availability(states, planned, exclusions, system.unknown_counts_as,
                                 system.target)
            dt = time.perf_counter() - t
            steps["compute_availability"].append(dt * 1000)

        # one round under cProfile: which functions the time is spent in
        prof = cProfile.Profile()
        prof.enable()
        for system in config.systems:
            await systems.availability(system, start, end, now)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        profile_text = buf.getvalue()

        # query plans
        plans: dict[str, list[str]] = {}
        members = member_checks(config.systems[0], await store.known_checks())
        iq = sa.select(check_intervals).where(
            check_intervals.c.end > start, check_intervals.c.start < end,
            _members(members)
        ).order_by(check_intervals.c.start)
        kq = sa.select(check_intervals.c.agent_id, check_intervals.c.check_id,
                       check_intervals.c.system, check_intervals.c.kind).distinct()
        async with store.engine.connect() as conn:
            for name, query in (("intervals", iq), ("known_checks", kq)):
                compiled = query.compile(dialect=store.engine.dialect,
                                         compile_kwargs={"literal_binds": True})
                sql = str(compiled)
                prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
                rows = (await conn.exec_driver_sql(prefix + sql)).all()
                plans[name] = [" | ".join(str(x) for x in row) for row in rows]
    finally:
        await store.close()
    return {"rounds": rounds, "reports": reports,
                               "breakdown_ms": {k: {"median": statistics.median(v),
                                                    "p95": pct(v, 95)}
                                                for k, v in steps.items()},
                               "sizes": {k: {"median": statistics.median(v), "max": max(v)}
                                         for k, v in sizes.items()},
                               "cprofile_tottime_top25": profile_text, "plans": plans}


def availability_run(label: str, store_url: str, model: YearModel, workdir: Path,
                     procs: Processes, warm_rounds: int, systems_gets: int,
                     log: Any = print) -> dict[str, Any]:
    run_dir = workdir / f"year-{label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = run_dir / "collector.yaml"
    collector_config(config, port, store_url, "full", model.systems)
    load = asyncio.run(load_year(store_url, model))
    if store_url.startswith("postgresql"):
        asyncio.run(Postgres.execute(store_url, "VACUUM ANALYZE"))  # what autovacuum does
    log(f"  {label}: {len(model.intervals):,} intervals inserted in {load['insert_s']:.1f}s")
    out = run_dir / "query.json"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--internal-query",
                           str(config), "--now", model.now.isoformat(),
                           "--rounds", str(warm_rounds), "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"query process failed:\n{proc.stderr[-3000:]}")
    query = json.loads(out.read_text())
    query_wall = time.monotonic() - t0
    cold = [v["wall_ms"] for v in query["rounds"][0].values()]
    first_system = next(iter(query["rounds"][0].values()))["wall_ms"]
    warm_per_system = [statistics.median(r[sid]["wall_ms"] for r in query["rounds"][1:])
                       for sid in query["rounds"][0]]
    warm_cpu = [statistics.median(r[sid]["cpu_ms"] for r in query["rounds"][1:])
                for sid in query["rounds"][0]]
    result: dict[str, Any] = {
        "label": label, "load": load, "query_process_s": query_wall,
        "cold_ms": {"median": pct(cold, 50), "p95": pct(cold, 95), "max": max(cold),
                    "first_system": first_system},
        "warm_ms": {"median": pct(warm_per_system, 50), "p95": pct(warm_per_system, 95),
                    "max": max(warm_per_system)},
        "warm_cpu_ms": {"median": pct(warm_cpu, 50), "p95": pct(warm_cpu, 95)},
        **{k: v for k, v in query.items() if k != "rounds"},
        "rounds": query["rounds"],
    }
    log(f"  {label}: availability per system-year: cold-ish median "
        f"{result['cold_ms']['median']:.0f} ms, p95 {result['cold_ms']['p95']:.0f} ms "
        f"(first {first_system:.0f} ms); warm median "
        f"{result['warm_ms']['median']:.0f} ms, p95 {result['warm_ms']['p95']:.0f} ms")
    for step, v in query["breakdown_ms"].items():
        log(f"      {step}: median {v['median']:.1f} ms")

    # GET /api/v1/systems against a collector process on the same store. The collector's
    # housekeeping does the same work (state + year-to-date of every system) right after start
    # and then 30 s after finishing each round; each GET is sent just after a round ends, so the
    # two never overlap.
    collector = procs.start(f"collector-year-{label}", [*COLLECTOR_CMD, "run", "--config",
                                                        str(config)], cwd=REPO)
    try:
        wait_ready(port, collector, timeout=120)
        pid = collector.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        deadline = t0 + 600
        first_round_s = first_round_cpu = None
        for _ in range(100_000):
            if time.monotonic() > deadline or collector.proc.poll() is not None:
                break
            _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=120)
            if body.count(b"wardwatch_collector_system_budget_left_seconds{") >= len(
                    model.systems):
                first_round_s = time.monotonic() - t0
                first_round_cpu = cpu_seconds(pid) - c0
                break
            time.sleep(0.25)
        gets = []
        for n in range(systems_gets):
            if n > 0:
                wait_next_round(pid, timeout=120)
            c1, t1 = cpu_seconds(pid), time.perf_counter()
            status, body = http_get(f"http://127.0.0.1:{port}/api/v1/systems", timeout=600)
            wall = time.perf_counter() - t1
            gets.append({"status": status, "wall_s": wall,
                         "collector_cpu_s": cpu_seconds(pid) - c1,
                         "systems": len(json.loads(body)) if status == 200 else 0})
    finally:
        procs.stop(collector)
    result["housekeeping_first_round_cpu_s"] = first_round_cpu
    result["housekeeping_first_round_s"] = first_round_s
    result["get_systems"] = gets
    log(f"  {label}: GET /api/v1/systems (50 systems): "
        + ", ".join(f"{g['wall_s']:.2f}s" for g in gets)
        + (f"; first housekeeping round (same work): {first_round_s:.1f}s, "
           f"{first_round_cpu:.1f} CPU-s" if first_round_s else ""))
    return result


def wait_next_round(pid: int, timeout: float) -> None:
    """Wait until the collector has been busy (a housekeeping round) and is idle again."""
    deadline = time.monotonic() + timeout
    busy, quiet = False, 0
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        rate, last = (now - last) / 0.5, now
        if rate > 0.5:
            busy, quiet = True, 0
        elif busy and rate < 0.05:
            quiet += 1
            if quiet >= 2:
                return


# ---------------------------------------------------------------- 3. store growth

def host_checks(rng: random.Random) -> list[CheckSpec]:
    out: list[CheckSpec] = []
    n = 0
    for kind, count in HOST_MIX:
        for k in range(count):
            check_id = kind if count == 1 else f"{kind}-{k:02d}"
            out.append(CheckSpec(check_id, kind, "EMR" if n % 2 else "HIS",
                                 _target(kind, check_id, "emr-app-01"),
                                 offset_s=n * (INTERVAL_S / HOST_CHECKS) + rng.uniform(0, 0.5),
                                 p_fail=P_FAIL_HOST))
            n += 1
    return out


def sqlite_compact(path: Path) -> dict[str, Any]:
    """Checkpoint the WAL into the file, VACUUM, and read the size and per-table pages."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables: dict[str, int] = {}
        with contextlib.suppress(sqlite3.DatabaseError):
            for name, size in conn.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"):
                tables[name] = int(size)
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return {"file_bytes": path.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0, "by_object": tables}


async def growth_ingest(url: str, batches: list[list[Any]], agent: str,
                        analyze: bool = False) -> dict[str, Any]:
    from collector.store import Store, utcnow

    store = await Store.open(url)
    try:
        with contextlib.suppress(Exception):
            await store.add_agent(agent, utcnow())
        t0 = time.perf_counter()
        for i, batch in enumerate(batches):
            if analyze and i == 10:  # statistics once the tables hold some rows (Autovacuum)
                await Postgres.execute(url, "VACUUM ANALYZE")
            await store.ingest(agent, batch, utcnow(), address="127.0.0.1")
        wall = time.perf_counter() - t0
    finally:
        await store.close()
    n = sum(len(b) for b in batches)
    return {"results": n, "wall_s": wall, "results_per_s": n / wall}


async def growth_expire(url: str, cutoff: datetime) -> dict[str, Any]:
    """The store's retention step: `expire_results` (roll raw results up hourly, then delete)
    where the store has it, else `delete_results_before` (delete only)."""
    from collector.store import Store

    store = await Store.open(url)
    try:
        legacy = "delete_results_before"  # the name before the hourly roll-up came in
        method = getattr(store, "expire_results", None) or getattr(store, legacy)
        t0 = time.perf_counter()
        deleted = await method(cutoff)
        return {"method": f"Store.{method.__name__}", "deleted": int(deleted),
                "wall_s": time.perf_counter() - t0}
    finally:
        await store.close()


PG_SIZES = ("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
            "('results', 'check_intervals', 'results_hourly', 'agents') AND relkind = 'r' "
            "ORDER BY relname")


def _objects(by_object: dict[str, int], prefix: str) -> int:
    """Bytes of a table and its indexes from dbstat (names: table, ix_table_*, autoindex)."""
    return sum(v for k, v in by_object.items()
               if k == prefix or k.startswith((f"ix_{prefix}_", f"sqlite_autoindex_{prefix}_",
                                               f"uq_{prefix}_", f"pk_{prefix}")))


def growth_run(pg: Postgres | None, workdir: Path, fraction: float, log: Any = print
               ) -> dict[str, Any]:
    from probes.result import CheckResult

    rng = random.Random(3)
    checks = host_checks(rng)
    n_results = int(HOST_CHECKS * HOST_DAY_ROUNDS * fraction)
    day_start = (int(time.time()) // 86_400 - 2) * 86_400
    stats: Counter[str] = Counter()
    stream = agent_stream("emr-app-01", checks, n_results, day_start, rng, P_SILENCE_HOST,
                          stats)
    models = [CheckResult.model_validate(r) for r in stream]
    batches = [models[k:k + BATCH] for k in range(0, len(models), BATCH)]
    cutoff = datetime.fromtimestamp(day_start + 2 * 86_400, UTC)  # after the whole day
    scale = 1 / fraction
    per_day = HOST_CHECKS * HOST_DAY_ROUNDS
    out: dict[str, Any] = {"fraction_of_day": fraction, "scale": scale,
                           "results": len(models), "checks": HOST_CHECKS,
                           "status_changes": stats["status_changes"],
                           "silences": stats["silences"],
                           "wire_bytes_per_result": statistics.mean(
                               len(json.dumps(r, separators=(",", ":"))) for r in stream[:2000])}

    # SQLite
    path = workdir / "growth" / "collector.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    asyncio.run(count_store(url))  # creates the schema
    empty = sqlite_compact(path)
    ing = asyncio.run(growth_ingest(url, batches, "emr-app-01"))
    raw = sqlite_compact(path)
    counts_raw = asyncio.run(count_store(url))
    expired = asyncio.run(growth_expire(url, cutoff))
    rolled = sqlite_compact(path)
    counts_after = asyncio.run(count_store(url))
    raw_b = (raw["file_bytes"] - empty["file_bytes"]) * scale
    after_b = (rolled["file_bytes"] - empty["file_bytes"]) * scale
    by_raw, by_after = raw["by_object"], rolled["by_object"]
    out["sqlite"] = {
        "ingest": ing, "empty": empty, "with_raw": raw, "after_retention": rolled,
        "expire": expired, "counts_raw": counts_raw, "counts_after": counts_after,
        "raw_bytes_per_host_day": raw_b,
        "results_table_bytes_per_host_day": _objects(by_raw, "results") * scale
        if by_raw else None,
        "after_retention_bytes_per_host_day": after_b,
        "intervals_bytes_per_host_day": _objects(by_after, "check_intervals") * scale
        if by_after else None,
        "hourly_bytes_per_host_day": _objects(by_after, "results_hourly") * scale
        if by_after else None,
        "bytes_per_result": raw_b / per_day,
        "intervals_per_host_day": counts_after["intervals"] * scale,
        "hourly_rows_per_host_day": counts_after.get("results_hourly", 0) * scale,
    }
    log(f"  SQLite: {len(models):,} results ({ing['results_per_s']:,.0f}/s through "
        f"Store.ingest, no HTTP): {raw_b / 1e6:.1f} MB per host-day with raw results; after "
        f"{expired['method']} ({expired['wall_s']:.1f}s) {after_b / 1e3:.1f} kB per host-day "
        f"({counts_after['intervals']} interval rows, "
        f"{counts_after.get('results_hourly', 0)} hourly rows, x {scale:g})")

    if pg is not None:
        url = pg.create()
        try:
            asyncio.run(count_store(url))
            asyncio.run(Postgres.execute(url, "VACUUM ANALYZE"))
            empty_pg = dict(asyncio.run(Postgres.query(url, PG_SIZES)))
            with Autovacuum(url, not PG_AUTOVACUUM) as vacuum:
                ing = asyncio.run(growth_ingest(url, batches, "emr-app-01",
                                                analyze=vacuum.url is not None))
            ing["pg_vacuum"] = vacuum.record()
            asyncio.run(Postgres.execute(url, "VACUUM ANALYZE"))
            raw_pg = dict(asyncio.run(Postgres.query(url, PG_SIZES)))
            expired = asyncio.run(growth_expire(url, cutoff))
            asyncio.run(Postgres.execute(url, *(f"VACUUM FULL {t}" for t in raw_pg)))
            after_pg = dict(asyncio.run(Postgres.query(url, PG_SIZES)))
            counts_pg = asyncio.run(count_store(url))
        finally:
            pg.drop(url)

        def grown(sizes: dict[str, int], *tables: str) -> float:
            return float(sum(sizes.get(t, 0) - empty_pg.get(t, 0) for t in tables) * scale)

        # the agents table is left out: its growth is dead row versions of last_seen updates
        raw_b = grown(raw_pg, "results", "check_intervals", "results_hourly")
        after_b = grown(after_pg, "check_intervals", "results_hourly")
        out["postgresql"] = {
            "ingest": ing, "empty": empty_pg, "with_raw": raw_pg, "after_retention": after_pg,
            "expire": expired, "counts_after": counts_pg,
            "raw_bytes_per_host_day": raw_b,
            "results_table_bytes_per_host_day": grown(raw_pg, "results"),
            "after_retention_bytes_per_host_day": after_b,
            "intervals_bytes_per_host_day": grown(after_pg, "check_intervals"),
            "hourly_bytes_per_host_day": grown(after_pg, "results_hourly"),
            "bytes_per_result": raw_b / per_day,
        }
        log(f"  PostgreSQL: {raw_b / 1e6:.1f} MB per host-day with raw results "
            f"(pg_total_relation_size: heap, indexes, TOAST); after retention "
            f"{after_b / 1e3:.1f} kB per host-day ({ing['results_per_s']:,.0f} results/s through"
            f" Store.ingest)")
    return out


# ---------------------------------------------------------------- report

@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    verdict: str = "info"


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "FAIL")


def print_table(rows: list[Row]) -> str:
    head = Row("figure", "measured", "target", "result")
    table = [head, *rows]
    cols = ("figure", "value", "target", "verdict")
    widths = [max(len(getattr(r, c)) for r in table) for c in cols]
    lines = []
    for i, r in enumerate(table):
        lines.append(" | ".join(getattr(r, c).ljust(w) for c, w in zip(cols, widths,
                                                                         strict=True)))
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text)
    return text


def collector_machine() -> dict[str, Any]:
    import aiohttp
    import pydantic
    import sqlalchemy

    return machine(sqlite=sqlite3.sqlite_version, aiohttp=aiohttp.__version__,
                   sqlalchemy=sqlalchemy.__version__, pydantic=pydantic.VERSION)


def source_state() -> dict[str, Any]:
    return harness_source_state(REPO, ("collector", "probes"),
                                ("collector/*.py", "collector/migrations/*/*.py", "probes/*.py"))


def fmt_mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    quick = args.quick
    parts = set(args.only.split(",")) if args.only else {"ingest", "availability", "growth"}
    total = args.results or (QUICK_RESULTS if quick else FULL_RESULTS)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    report: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": collector_machine(),
                              "source": source_state(), "targets": {
                                  "ingest_results_per_s_sqlite": TARGET_INGEST_RPS,
                                  "availability_ms_per_system_year": TARGET_QUERY_MS}}
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="ww-bench-collector-"))
    procs = Processes(workdir)
    pg = Postgres()
    have_pg = pg.available()
    report["machine"]["postgresql"] = Postgres.version() if have_pg else None
    global PG_AUTOVACUUM
    PG_AUTOVACUUM = bool(have_pg and pg_autovacuum_on())
    report["machine"]["postgresql_autovacuum"] = PG_AUTOVACUUM
    if have_pg and not PG_AUTOVACUUM:
        log(f"PostgreSQL runs with autovacuum off: the bench runs VACUUM ANALYZE every "
            f"{PG_VACUUM_EVERY_S:g}s on its database while loading it, as autovacuum would")
    if not have_pg:
        log("PostgreSQL on 127.0.0.1:5432 not reachable: its figures are skipped")
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    try:
        # -- 1. ingest -------------------------------------------------------------------
        if "ingest" in parts:
            payload = workdir / "payload.pickle"
            t0 = time.monotonic()
            report["ingest_payload"] = build_ingest_payload(total, payload)
            pl = report["ingest_payload"]
            log(f"ingest: payload of {pl['results']:,} results in {pl['batches']:,} batches "
                f"({pl['mean_body_bytes'] / 1024:.0f} KiB each, {pl['bytes_per_result']:.0f} B "
                f"per result, {pl['status_change_ratio'] * 100:.1f}% status changes) built in "
                f"{time.monotonic() - t0:.1f}s")
            runs: dict[str, dict[str, Any]] = {}
            for label, sync in (("sqlite-full", "full"), ("sqlite-normal", "normal")):
                db = workdir / label / "collector.db"
                runs[label] = ingest_run(label, f"sqlite:///{db}", sync, payload,
                                         pl["results"], workdir, procs, log=log)
            if have_pg:
                url = pg.create()
                try:
                    runs["postgresql"] = ingest_run("postgresql", url, "full", payload,
                                                    pl["results"], workdir, procs, log=log)
                finally:
                    pg.drop(url)
            report["ingest"] = runs
            if not args.no_profile and PY_SPY:
                n = PROFILE_RESULTS[quick]
                ppayload = workdir / "payload-profile.pickle"
                build_ingest_payload(n, ppayload, seed=2)
                db = workdir / "profile" / "collector.db"
                log("ingest: one more SQLite/FULL run, sampled with py-spy (where time goes)")
                prof = ingest_run("profile-sqlite-full", f"sqlite:///{db}", "full", ppayload,
                                  n // AGENTS * AGENTS, workdir, procs, profile=True, log=log)
                report["ingest_profile"] = prof
                summary = prof.get("profile") or {}
                for label, share in (summary.get("categories_pct") or {}).items():
                    log(f"      {share:5.1f}%  {label}")
            labels = {"sqlite-full": "SQLite, synchronous=FULL",
                      "sqlite-normal": "SQLite, synchronous=NORMAL",
                      "postgresql": "PostgreSQL"}
            for key, r in runs.items():
                is_target = key == "sqlite-full"
                rows.append(Row(f"1. ingest results/s, {labels[key]}",
                                f"{r['results_per_s']:,.0f}",
                                f">= {TARGET_INGEST_RPS:,}" if is_target else "",
                                verdict(r["results_per_s"] >= TARGET_INGEST_RPS
                                        if is_target else None)))
            for key, r in runs.items():
                rows.append(Row(f"1. request p50 / p95 ms, {labels[key]}",
                                f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p95']:.1f}"))
            for key, r in runs.items():
                rows.append(Row(f"1. collector CPU % of a core (ms per 1k results), "
                                f"{labels[key]}",
                                f"{r['collector_cpu_pct_of_core']:.0f} % "
                                f"({r['collector_cpu_ms_per_1000_results']:.0f} ms)"))
            ok_stored = all(r["all_stored"] and r["errors"] == 0 for r in runs.values())
            rows.append(Row("1. every result stored once, no error (all runs)",
                            "yes" if ok_stored else "NO", "all", verdict(ok_stored)))

        # -- 2. availability ---------------------------------------------------------------
        if "availability" in parts:
            t0 = time.monotonic()
            model = build_year()
            report["year_model"] = model.stats
            st = model.stats
            log(f"availability: {st['intervals']:,} intervals for {st['member_checks']} checks "
                f"of {SYSTEMS} systems ({st['results_represented']:,} results at {SLOT_S}s "
                f"represented; median {st['intervals_per_system_year']['median']:,} intervals "
                f"per system-year) generated in {time.monotonic() - t0:.1f}s")
            warm_rounds = 2 if quick else 3
            gets = 1 if quick else 2
            years: dict[str, dict[str, Any]] = {}
            db = workdir / "year-sqlite" / "collector.db"
            years["sqlite"] = availability_run("sqlite", f"sqlite:///{db}", model, workdir,
                                               procs, warm_rounds, gets, log=log)
            if have_pg:
                url = pg.create()
                try:
                    years["postgresql"] = availability_run("postgresql", url, model, workdir,
                                                           procs, warm_rounds, gets, log=log)
                finally:
                    pg.drop(url)
            report["availability"] = years
            for key, y in years.items():
                name = "SQLite" if key == "sqlite" else "PostgreSQL"
                rows.append(Row(f"2. availability per system-year, warm median / p95 ms, {name}",
                                f"{y['warm_ms']['median']:.0f} / {y['warm_ms']['p95']:.0f}",
                                f"p95 <= {TARGET_QUERY_MS:.0f} ms",
                                verdict(y["warm_ms"]["p95"] <= TARGET_QUERY_MS)))
                rows.append(Row(f"2. availability per system-year, cold-ish median / p95 ms, "
                                f"{name}",
                                f"{y['cold_ms']['median']:.0f} / {y['cold_ms']['p95']:.0f}",
                                f"p95 <= {TARGET_QUERY_MS:.0f} ms",
                                verdict(y["cold_ms"]["p95"] <= TARGET_QUERY_MS)))
            for key, y in years.items():
                name = "SQLite" if key == "sqlite" else "PostgreSQL"
                walls = [g["wall_s"] for g in y["get_systems"]]
                rows.append(Row(f"2. GET /api/v1/systems, 50 systems, s, {name}",
                                " / ".join(f"{w:.2f}" for w in walls)))
                if y.get("housekeeping_first_round_s"):
                    rows.append(Row(f"2. housekeeping round, 50 systems (every 30 s), {name}",
                                    f"{y['housekeeping_first_round_s']:.1f} s, "
                                    f"{y['housekeeping_first_round_cpu_s']:.1f} CPU-s"))

        # -- 3. growth ----------------------------------------------------------------------
        if "growth" in parts:
            fraction = 0.1 if quick else 1.0
            log(f"growth: {fraction:g} host-day of {HOST_CHECKS} checks at {INTERVAL_S}s")
            report["growth"] = growth_run(pg if have_pg else None, workdir, fraction, log=log)
            g = report["growth"]
            s = g["sqlite"]
            after_what = ("intervals + hourly roll-up"
                          if s["counts_after"].get("results_hourly") else "intervals")
            rows.append(Row("3. SQLite, raw results kept, per host-day (50 checks / 30 s)",
                            f"{fmt_mb(s['raw_bytes_per_host_day'])} "
                            f"({s['bytes_per_result']:.0f} B/result)"))
            rows.append(Row(f"3. SQLite, after retention ({after_what}), per host-day",
                            f"{s['after_retention_bytes_per_host_day'] / 1e3:,.1f} kB "
                            f"({s['intervals_per_host_day']:,.0f} intervals"
                            + (f", {s['hourly_rows_per_host_day']:,.0f} hourly rows)"
                               if s["hourly_rows_per_host_day"] else ")")))
            rows.append(Row("3. SQLite steady state per host, 35-day retention",
                            fmt_mb(s["raw_bytes_per_host_day"] * 35)
                            + f" + {s['after_retention_bytes_per_host_day'] * 365 / 1e6:.1f}"
                              " MB/year kept"))
            if "postgresql" in g:
                p = g["postgresql"]
                dead = p["raw_bytes_per_host_day"] - p["results_table_bytes_per_host_day"]
                rows.append(Row("3. PostgreSQL, raw results kept, per host-day",
                                f"{fmt_mb(p['raw_bytes_per_host_day'])} "
                                f"({p['bytes_per_result']:.0f} B/result; results table "
                                f"{fmt_mb(p['results_table_bytes_per_host_day'])}, "
                                f"intervals {fmt_mb(dead)} before vacuum)"))
                rows.append(Row(f"3. PostgreSQL, after retention ({after_what}), per host-day",
                                f"{p['after_retention_bytes_per_host_day'] / 1e3:,.1f} kB"))
    finally:
        procs.stop_all()
        pg.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    report["sources_changed_during_run"] = (
        source_state()["sources_sha256"] != report["source"]["sources_sha256"])
    report["wall_s"] = time.monotonic() - started

    print()
    m = report["machine"]
    print(f"wardwatch collector benchmark ({report['mode']})")
    print(f"  machine: {m['nproc']} cpu {m['cpu_model']}, {m['memory_gib']} GiB, kernel "
          f"{m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL "
          f"{m['postgresql']}, {m['date']}")
    print(f"  load average at start {' '.join(m['loadavg_at_start'])}, at end "
          f"{' '.join(m['loadavg_at_end'])}")
    src = report["source"]
    print(f"  source: commit {src['commit']}, collector+probes digest {src['sources_sha256']}"
          + (f", uncommitted: {' '.join(src['uncommitted'])}"
             if src["uncommitted"] else ""))
    if report["sources_changed_during_run"]:
        print("  WARNING: collector/ or probes/ changed during the run: run again")
    print()
    report["table"] = print_table(rows)
    report["rows"] = [r.__dict__ for r in rows]
    out = args.json or REPO / "bench" / "out" / (f"collector-{report['mode']}-"
                                                 f"{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {out}  (total {report['wall_s']:.0f}s)")
    failed = [r.figure for r in rows if r.verdict == "FAIL"]
    if failed:
        print("missed targets: " + "; ".join(failed))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="20,000 results per ingest run and 1/10 host-day")
    parser.add_argument("--results", type=int, help="override results per ingest run")
    parser.add_argument("--only", help="comma list of ingest,availability,growth")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the extra SQLite run sampled with py-spy")
    parser.add_argument("--json", type=Path, help="write the raw figures here instead of "
                        "bench/out/collector-MODE-TIMESTAMP.json (bench/suite.py reads it)")
    # internal: the load process and the query process
    parser.add_argument("--internal-load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--internal-query", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    parser.add_argument("--collector-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    parser.add_argument("--analyze-url", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.internal_load:
        bodies = pickle.loads(args.internal_load.read_bytes())
        tokens = json.loads(args.tokens.read_text())
        result = asyncio.run(load_phases(bodies, args.url, tokens, args.concurrency,
                                         args.collector_pid, args.analyze_url))
        args.out.write_text(json.dumps(result))
        return 0
    if args.internal_query:
        result = asyncio.run(query_main(args.internal_query, args.now, args.rounds))
        args.out.write_text(json.dumps(result, default=str))
        return 0

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that kills everything

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
