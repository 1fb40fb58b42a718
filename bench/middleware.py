"""Middleware probes: cost per run of `nginx`, `tomcat` and `weblogic`, and the agent with 20
middleware checks configured.

Real peers on loopback: Debian's nginx (stub_status) and Tomcat 10.1 (manager), and the
stand-in WebLogic admin server serving the recorded 12.2.1.4 / 14.1.1 documents
(tests/weblogic.py; WebLogic cannot run here).

1. Per run, in this process: `--runs` probe runs per kind, one after another, through a
   byte-counting TCP relay, so "bytes" are what crossed the wire both ways, headers included.
   Wall time per run (median, p95) includes the relay hop (~0.1 ms).
2. The agent: a real `wardwatch-agent` process with 20 middleware checks (7 nginx, 7 tomcat,
   6 weblogic) at `--interval`, against the same servers, for `--window` seconds; then the
   same agent with 20 tcp checks. Reported: steady RSS (VmRSS after the window), CPU seconds
   per probe run (the agent's utime+stime over the window / runs made).

    .venv/bin/python bench/middleware.py             # ~3 min
    .venv/bin/python bench/middleware.py --quick     # ~1 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import Processes, Started, cpu_seconds, free_port, memory_kb, tail  # noqa: E402
from probes.memory import ProbeMemory  # noqa: E402
from probes.registry import get_kind  # noqa: E402
from tests.services import start_nginx, stop_process, wait_for_port  # noqa: E402
from tests.tomcat import ADMIN, start_tomcat  # noqa: E402
from tests.weblogic import PASSWORD, USER  # noqa: E402

NGINX_CONF = "location = /status { stub_status; }"


@dataclass
class Relay:
    """A TCP relay on loopback that counts the bytes it carries."""

    target_port: int
    port: int = 0
    sent: int = 0
    received: int = 0
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task[None]] | None = None

    async def start(self) -> Relay:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.handlers is None:
            self.handlers = set()
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        with contextlib.suppress(asyncio.CancelledError):   # closed by the bench at the end
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.handlers or ()):
            task.cancel()
        await asyncio.gather(*(self.handlers or ()), return_exceptions=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def per_run(kind: str, spec: dict[str, Any], port: int, runs: int) -> dict[str, Any]:
    """`runs` runs of one check through a byte-counting relay to `port`."""
    relay = await Relay(port).start()
    probe_kind = get_kind(kind)
    check = probe_kind.config.model_validate(
        {**spec, "id": kind, "kind": kind,
         "url": spec["url"].replace(f":{port}", f":{relay.port}")})
    memory = ProbeMemory()
    times = []
    statuses: dict[str, int] = {}
    try:
        for _ in range(runs):
            started = time.perf_counter()
            res = await probe_kind.probe(check, memory)
            times.append((time.perf_counter() - started) * 1000)
            statuses[res.status.value] = statuses.get(res.status.value, 0) + 1
    finally:
        await relay.close()
    return {"kind": kind, "runs": runs, "ms_median": statistics.median(times),
            "ms_p95": pct(times, 0.95), "ms_first": times[0],
            "bytes_sent_per_run": relay.sent / runs,
            "bytes_received_per_run": relay.received / runs, "statuses": statuses}


def metrics_body(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def runs_made(body: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(
        r"^wardwatch_check_runs_total\{[^}]*\} ([0-9.e+-]+)$", body, re.M))


def agent_window(procs: Processes, workdir: Path, name: str, checks: list[dict[str, Any]],
                 window: float) -> dict[str, Any]:
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"id": name, "listen": f"127.0.0.1:{port}", "state_dir": str(workdir / name)},
        "checks": checks}))
    started: Started = procs.start(name, [sys.executable, "-m", "agent", "run", "--config",
                                          str(config)], cwd=REPO)
    try:
        wait_for_port(port, timeout=30)
        time.sleep(min(10.0, window / 3))            # imports done, first rounds run
        cpu0, runs0 = cpu_seconds(started.proc.pid), runs_made(metrics_body(port))
        time.sleep(window)
        cpu1, body = cpu_seconds(started.proc.pid), metrics_body(port)
        runs1 = runs_made(body)
        memory = memory_kb(started.proc.pid)
        statuses = re.findall(r'^wardwatch_check_status\{[^}]*check="([^"]+)"[^}]*\} (\S+)$',
                              body, re.M)
    except Exception:
        print(tail(started.log), file=sys.stderr)
        raise
    finally:
        procs.stop(started)
    runs = runs1 - runs0
    return {"name": name, "checks": len(checks), "window_s": window, "runs": runs,
            "cpu_ms_per_run": (cpu1 - cpu0) * 1000 / runs if runs else None,
            "cpu_percent": (cpu1 - cpu0) / window * 100, "rss_mb": memory["VmRSS"] / 1024,
            "not_ok": sorted(c for c, v in statuses if float(v) != 0)}


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="ww-middleware-"))
    procs = Processes(workdir)
    nginx_proc, nginx = start_nginx(workdir / "nginx", NGINX_CONF)
    tomcat_proc, tomcat = start_tomcat(workdir / "tomcat")
    wls_port = free_port()
    procs.start("weblogic", [sys.executable, "-m", "tests.weblogic", str(wls_port),
                                   "14.1.1"], cwd=REPO)
    (workdir / "wls.pw").write_text(PASSWORD)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        wait_for_port(wls_port, timeout=30)
        specs = {
            "nginx": ({"url": f"{nginx.base_url}/status"}, nginx.port),
            "tomcat": ({"url": tomcat.base_url, "username": ADMIN,
                        "password_file": str(tomcat.password_file(ADMIN))}, tomcat.port),
            "weblogic": ({"url": f"http://127.0.0.1:{wls_port}", "username": USER,
                          "password_file": str(workdir / "wls.pw")}, wls_port),
        }
        out["per_run"] = [asyncio.run(per_run(kind, spec, port, args.runs))
                          for kind, (spec, port) in specs.items()]
        middleware = []
        for i in range(20):
            kind = ("nginx", "tomcat", "weblogic")[i % 3]
            middleware.append({**specs[kind][0], "id": f"{kind}-{i:02d}", "kind": kind,
                               "interval": args.interval, "timeout": min(5.0, args.interval)})
        tcp = [{"id": f"tcp-{i:02d}", "kind": "tcp", "host": "127.0.0.1",
                "port": (nginx.port, tomcat.port, wls_port)[i % 3], "interval": args.interval,
                "timeout": min(5.0, args.interval)} for i in range(20)]
        out["agent"] = [agent_window(procs, workdir, "agent-middleware", middleware,
                                     args.window),
                        agent_window(procs, workdir, "agent-tcp", tcp, args.window)]
    finally:
        procs.stop_all()
        stop_process(nginx_proc)
        stop_process(tomcat_proc)

    print(f"\nper run ({args.runs} runs each, through a byte-counting relay)")
    print(f"{'kind':10} {'median ms':>10} {'p95 ms':>8} {'first ms':>9} {'sent B':>8} "
          f"{'recv B':>8}  statuses")
    for row in out["per_run"]:
        print(f"{row['kind']:10} {row['ms_median']:10.2f} {row['ms_p95']:8.2f} "
              f"{row['ms_first']:9.1f} {row['bytes_sent_per_run']:8.0f} "
              f"{row['bytes_received_per_run']:8.0f}  {row['statuses']}")
    print(f"\nagent process, {args.window:g} s window, checks every {args.interval:g} s")
    print(f"{'config':18} {'RSS MB':>7} {'CPU ms/run':>11} {'CPU %':>6} {'runs':>6}  not ok")
    for row in out["agent"]:
        per = row["cpu_ms_per_run"]
        print(f"{row['name']:18} {row['rss_mb']:7.1f} {per if per is None else round(per, 2)!s:>11}"
              f" {row['cpu_percent']:6.2f} {row['runs']:6.0f}  {row['not_ok'] or '-'}")
    print(json.dumps(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="50 runs, a 30 s window")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.window = 50, 30.0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
