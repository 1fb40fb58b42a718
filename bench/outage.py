"""Soak: the collector is down for ten minutes while real agents keep probing.

Real processes on loopback: one collector (SQLite by default, `--store postgresql` for the
machine's server) and `--agents` agent daemons with `--checks` tcp checks each at
`--interval`. After a warm-up the collector is SIGKILLed, stays down for `--outage` seconds,
and comes back; the bench waits until every agent's spool is empty, stops the agents
gracefully (their last results pushed) and counts, from the store:

  * every result the agents made is there: per agent, rows >= the runs its /metrics counted
    just before the stop, and each check has one result per interval across the outage
    (no gap longer than 1.9 intervals);
  * none twice: no two rows for the same (agent, check, started_at);
  * the evidence has no hole: every check is one unbroken state interval.

Bounded: warm-up + outage + drain (capped by --drain-timeout) + stop; every process is killed
with the bench. Prints a table and a JSON line; exit 1 when a count is off.

    .venv/bin/python bench/outage.py                      # the 10-minute soak (~13 min)
    .venv/bin/python bench/outage.py --outage 20 --warm 5  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Processes, Started, free_port, tail

PYTHON = sys.executable
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def metric_sum(body: str, name: str) -> float:
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", body, re.M):
        total += float(match.group(1))
    return total


def wait_port(port: int, started: Started, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited: {tail(started.log)}")
        try:
            metrics_text(port) if started.name.startswith("agent") else urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{started.name} not answering on {port}: {tail(started.log)}")


async def _pg(sql: str, url: str = POSTGRES_ADMIN) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def store_url(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'collector.db'}"
    name = f"ww_outage_{int(time.time())}"
    asyncio.run(_pg(f"CREATE DATABASE {name}"))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _rows(url: str) -> tuple[list[tuple[str, str, datetime]], list[tuple[str, str, int]]]:
    from sqlalchemy import text

    from collector.store import Store

    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT agent_id, check_id, started_at FROM results"))).all()
            intervals = (await conn.execute(text(
                "SELECT agent_id, check_id, COUNT(*) FROM check_intervals "
                "GROUP BY agent_id, check_id"))).all()
    finally:
        await store.close()
    parsed = [(a, c, s if isinstance(s, datetime) else datetime.fromisoformat(s))
              for a, c, s in rows]
    return parsed, [(a, c, int(n)) for a, c, n in intervals]


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ww-outage-"))
    procs = Processes(workdir)
    url = store_url(args.store, workdir)
    collector_port = free_port()
    collector_yaml = workdir / "collector.yaml"
    collector_yaml.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{collector_port}", "store": url}))
    agents = [f"soak{i}" for i in range(args.agents)]
    agent_ports: dict[str, int] = {}
    started_agents: dict[str, Started] = {}
    # half the checks aim at a closed port (critical), half at their agent (ok); the closed
    # port stays bound (not listening) so that nothing else on the machine can take it
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    target = closed.getsockname()[1]
    try:
        for agent in agents:
            token = subprocess.run(
                [PYTHON, "-m", "collector", "agents", "add", agent, "--config",
                 str(collector_yaml)], capture_output=True, text=True, check=True,
                timeout=120).stdout.strip().splitlines()[-1]
            (workdir / f"{agent}.token").write_text(token)
            port = agent_ports[agent] = free_port()
            (workdir / f"{agent}.yaml").write_text(yaml.safe_dump({
                "agent": {"id": agent, "listen": f"127.0.0.1:{port}",
                          "state_dir": str(workdir / agent)},
                "collector": {"url": f"http://127.0.0.1:{collector_port}",
                              "token_file": str(workdir / f"{agent}.token"),
                              "push_interval": args.push_interval},
                "checks": [{"id": f"c{i:03d}", "kind": "tcp", "host": "127.0.0.1",
                            "port": target if i % 2 else port, "interval": args.interval,
                            "timeout": min(2.0, args.interval)}
                           for i in range(args.checks)]}))
        collector = procs.start("collector", [PYTHON, "-m", "collector", "run", "--config",
                                              str(collector_yaml)])
        wait_port(collector_port, collector)
        for agent in agents:
            started_agents[agent] = procs.start(
                f"agent-{agent}", [PYTHON, "-m", "agent", "run", "--config",
                                   str(workdir / f"{agent}.yaml")])
            wait_port(agent_ports[agent], started_agents[agent])
        print(f"warm-up {args.warm:g}s: {args.agents} agents x {args.checks} checks "
              f"@ {args.interval:g}s", flush=True)
        time.sleep(args.warm)
        procs.stop(collector, signal.SIGKILL)
        down_at = time.monotonic()
        print(f"collector SIGKILLed; down for {args.outage:g}s", flush=True)
        peak_pending = 0.0
        while time.monotonic() - down_at < args.outage:
            time.sleep(min(30.0, args.outage))
            pending = sum(metric_sum(metrics_text(agent_ports[a]),
                                     "wardwatch_agent_spool_pending_results") for a in agents)
            peak_pending = max(peak_pending, pending)
            print(f"  {time.monotonic() - down_at:5.0f}s down, {pending:.0f} results spooled",
                  flush=True)
        collector = procs.start("collector2", [PYTHON, "-m", "collector", "run", "--config",
                                               str(collector_yaml)])
        wait_port(collector_port, collector)
        back_at = time.monotonic()
        drained_s = None
        while time.monotonic() - back_at < args.drain_timeout:
            pending = sum(metric_sum(metrics_text(agent_ports[a]),
                                     "wardwatch_agent_spool_pending_results") for a in agents)
            if pending <= args.checks * args.agents:   # only this round's fresh results left
                drained_s = time.monotonic() - back_at
                break
            time.sleep(1.0)
        print(f"collector back; spools drained in {drained_s}s", flush=True)
        runs = {}
        for agent in agents:
            runs[agent] = metric_sum(metrics_text(agent_ports[agent]),
                                     "wardwatch_check_runs_total")
            procs.stop(started_agents.pop(agent))   # SIGTERM: last results pushed
        drops = 0.0  # read from logs: a dropped spool result would say so
        for agent in agents:
            drops += len(re.findall("dropped", (workdir / f"agent-{agent}.log").read_text()))
        procs.stop(collector)
        rows, intervals = asyncio.run(_rows(url))
    finally:
        procs.stop_all()
        closed.close()

    per_agent: dict[str, int] = defaultdict(int)
    by_check: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for agent_id, check_id, started_at in rows:
        per_agent[agent_id] += 1
        by_check[(agent_id, check_id)].append(started_at)
    distinct = len({(a, c, s) for a, c, s in rows})
    worst_gap = 0.0
    for times in by_check.values():
        times.sort()
        for a, b in itertools.pairwise(times):
            worst_gap = max(worst_gap, (b - a).total_seconds())
    missing = {a: runs[a] - per_agent[a] for a in agents if per_agent[a] < runs[a]}
    broken = [(a, c, n) for a, c, n in intervals if n != 1]
    checks_seen = len(by_check)
    ok = (not missing and distinct == len(rows) and worst_gap < 1.9 * args.interval
          and not broken and checks_seen == args.agents * args.checks and drained_s is not None)
    summary: dict[str, Any] = {
        "store": args.store, "agents": args.agents, "checks": args.checks,
        "interval_s": args.interval, "outage_s": args.outage,
        "results_made": int(sum(runs.values())), "rows_stored": len(rows),
        "rows_distinct": distinct, "missing": missing, "peak_spooled": int(peak_pending),
        "drain_s": None if drained_s is None else round(drained_s, 1),
        "worst_gap_s": round(worst_gap, 2), "checks_with_split_interval": len(broken),
        "drop_log_lines": int(drops), "ok": ok}
    print()
    print(f"{'results made by the agents (runs counted before stop)':55} "
          f"{summary['results_made']:>10}")
    print(f"{'rows stored':55} {len(rows):>10}")
    print(f"{'rows distinct by (agent, check, started_at)':55} {distinct:>10}")
    print(f"{'peak results spooled during the outage':55} {summary['peak_spooled']:>10}")
    print(f"{'spools drained after the collector returned (s)':55} {summary['drain_s']!s:>10}")
    print(f"{'worst gap between a check results (s)':55} {summary['worst_gap_s']:>10}")
    print(f"{'checks whose state interval split':55} {len(broken):>10}")
    print(f"{'verdict':55} {'PASS' if ok else 'FAIL':>10}")
    print(json.dumps(summary))
    if args.store == "postgresql":
        name = url.rsplit("/", 1)[1]
        asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--push-interval", type=float, default=5.0)
    parser.add_argument("--warm", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=600.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
