"""Web UI board benchmark: server time per request of the status board with 300 hosts and
50 systems.

    .venv/bin/python bench/board.py                  # 300 hosts, 50 systems, 300 requests
    .venv/bin/python bench/board.py --requests 100   # fewer requests
    .venv/bin/python bench/board.py --profile flapping  # every member changes every 2-10 h

The store (SQLite in a temp dir, synchronous=FULL as shipped) gets 300 hosts x 5 checks
(1,500 checks); each system has 6 hosts as members (`hNNN/*`). Every check has 30 days of
state intervals (a change every ~6 h, so some flapping history) written straight into
`check_intervals`, the newest one open and fresh; 12 checks are critical now, so the
incident engine (one `IncidentService.evaluate` round) opens incidents that the board lists.

The collector app runs in this process on a loopback port (`create_app`, the real routes and
middleware); a user logs in through the form, one warm-up request fills the year-to-date
cache (as housekeeping does every minute in a running collector), then N sequential
`GET /ui/board.json` are timed: the server's own figure (`Server-Timing: board;dur=…`, the
build and render of the board) and the client's round trip on loopback (adds the session
check, JSON encoding and HTTP). `GET /` (the full page) is timed the same way. The figures
are printed as a table and written to bench/out/board-TIMESTAMP.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import free_port, machine
from collector.app import INCIDENTS_KEY, STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.schema import check_intervals
from collector.web.auth import ACCOUNTS_KEY

TARGET_MS = 100.0
CHECKS = (("host", "host"), ("web", "http"), ("listener", "tcp"), ("proc", "process"),
          ("db", "oracle"))


def config(db: Path, hosts: int, systems: int) -> Any:
    per = hosts // systems
    return parse_collector_config({
        "store": f"sqlite:///{db}",
        "systems": [{"id": f"S{s:02d}", "name": f"系统 {s:02d}", "core": s < 10,
                     "members": [f"h{h:03d}/*" for h in range(s * per, (s + 1) * per)],
                     "rule": {"at_least": 4} if s % 3 else "all"}
                    for s in range(systems)]})


PROFILES = {"steady": (12.0, 144.0, 0.95), "flapping": (2.0, 10.0, 0.8)}
"""Interval lengths (hours, uniform) and the share of ok stretches: `steady` is a fleet whose
checks change state every half day to six days; `flapping` every 2-10 hours, 20 % warnings
(every system's members change state hundreds of times a day: the worst case)."""


async def populate(app: web.Application, hosts: int, now: datetime, profile: str = "steady",
                   seed: int = 7) -> int:
    shortest, longest, ok_share = PROFILES[profile]
    rng = random.Random(seed)
    rows = []
    failing = set(rng.sample(range(hosts), 12))
    for h in range(hosts):
        for check, kind in CHECKS:
            t = now - timedelta(days=30)
            while True:
                length = timedelta(hours=rng.uniform(shortest, longest))
                last = t + length >= now - timedelta(seconds=10)
                end = now if last else t + length
                status = ("critical" if last and h in failing and check == "listener"
                          else "ok" if last or rng.random() < ok_share else "warning")
                rows.append({"agent_id": f"h{h:03d}", "check_id": check, "system": "",
                             "kind": kind, "status": status,
                             "reason": "ok" if status == "ok" else "connect_refused",
                             "summary": f"{check} {status}", "start": t,
                             "end": end + timedelta(seconds=30) if last else end,
                             "last_result_at": end - timedelta(seconds=5) if last else end,
                             "results": max(1, int(length.total_seconds() // 30)),
                             "is_open": last})
                if last:
                    break
                t = end
    store = app[STORE_KEY]
    async with store.transaction() as conn:
        for i in range(0, len(rows), 5000):
            await conn.execute(sa.insert(check_intervals), rows[i:i + 5000])
    store._known = None   # the bench wrote behind the store's back: rescan known checks
    return len(rows)


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "median_ms": statistics.median(ordered),
            "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
            "max_ms": ordered[-1], "mean_ms": statistics.fmean(ordered)}


async def timed(session: aiohttp.ClientSession, url: str, n: int) -> dict[str, Any]:
    server, client = [], []
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
            timing = resp.headers.get("Server-Timing", "")
        client.append((time.perf_counter() - started) * 1000)
        found = re.search(r"dur=([\d.]+)", timing)
        if found:
            server.append(float(found.group(1)))
    return {"server": stats(server) if server else None, "round_trip": stats(client)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ww-board-") as tmp:
        app = create_app(config(Path(tmp) / "c.db", args.hosts, args.systems))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            now = datetime.now(UTC)
            intervals = await populate(app, args.hosts, now, args.profile)
            opened = await app[INCIDENTS_KEY].evaluate(datetime.now(UTC))
            await app[ACCOUNTS_KEY].add_user("bench", "bench password", "viewer", now)
            base = f"http://127.0.0.1:{port}"
            # unsafe=True: keep cookies of an IP-address host (127.0.0.1)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)
                                             ) as session:
                async with session.get(f"{base}/login") as resp:
                    token = re.search(r'name="csrf_token" value="([^"]*)"',
                                      await resp.text())
                assert token is not None
                async with session.post(f"{base}/login", data={
                        "name": "bench", "password": "bench password",
                        "csrf_token": token.group(1), "next": "/"}) as resp:
                    assert resp.status == 200, resp.status
                started = time.perf_counter()
                async with session.get(f"{base}/ui/board.json") as resp:
                    board = await resp.json()
                cold_ms = (time.perf_counter() - started) * 1000
                fragment = await timed(session, f"{base}/ui/board.json", args.requests)
                page = await timed(session, f"{base}/", max(20, args.requests // 5))
        finally:
            await runner.cleanup()
    states: dict[str, int] = {}
    for s in board["systems"]:
        states[s["state"]] = states.get(s["state"], 0) + 1
    return {"machine": machine(), "profile": args.profile, "hosts": args.hosts,
            "systems": args.systems,
            "checks": args.hosts * len(CHECKS), "intervals": intervals,
            "incidents_listed": len(board["incidents"]), "incidents_opened": len(opened),
            "states": states, "cold_first_request_ms": cold_ms,
            "board_json": fragment, "board_page": page}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--systems", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="steady")
    parser.add_argument("--json", type=Path, help="write the figures here instead of "
                        "bench/out/board-TIMESTAMP.json (bench/suite.py reads it)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = args.json or out / f"board-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"profile {result['profile']}: {result['hosts']} hosts, {result['checks']} checks, "
          f"{result['systems']} systems, "
          f"{result['intervals']} intervals, {result['incidents_listed']} incidents listed, "
          f"states {result['states']}")
    print(f"first request (year-to-date cache cold): {result['cold_first_request_ms']:.0f} ms")
    print(f"{'':28} {'n':>5} {'median':>9} {'p95':>9} {'max':>9}")
    ok = True
    for name, figures in (("board.json server", result["board_json"]["server"]),
                          ("board.json round trip", result["board_json"]["round_trip"]),
                          ("board page round trip", result["board_page"]["round_trip"])):
        print(f"{name:28} {figures['n']:>5} {figures['median_ms']:>7.1f}ms "
              f"{figures['p95_ms']:>7.1f}ms {figures['max_ms']:>7.1f}ms")
    p95 = result["board_json"]["round_trip"]["p95_ms"]
    ok = p95 <= TARGET_MS
    print(f"target: board.json p95 round trip <= {TARGET_MS:.0f} ms: "
          f"{'PASS' if ok else 'FAIL'}; written to {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
