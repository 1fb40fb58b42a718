"""Agent benchmark: memory, scrape cost, idle CPU, HTTP throughput and lint, measured in one
run against the reference tools (node_exporter, blackbox_exporter) on the same machine.

    .venv/bin/python bench/agent.py            # full: 10-minute idle window (~12 min)
    .venv/bin/python bench/agent.py --quick    # 60 s idle window, fewer scrapes (~2 min)

Everything runs on loopback: the bench starts nginx (the HTTP target), node_exporter,
blackbox_exporter and the agent itself, each in its own process group, and kills every group
on the way out. Figures and how they are taken:

1. RSS      VmRSS of the agent from /proc/PID/status with 50 checks, after one full round
            and warm-up scrapes; the reported figure is the largest sample taken afterwards.
2. Scrape   CPU per /metrics scrape = delta of utime+stime (/proc/PID/stat) over N sequential
            keep-alive scrapes / N. Probe work is kept out twice over: before scraping, the
            agent is reloaded (SIGHUP) with the same checks at a 1 h interval, so no probe is
            due, and the CPU it burns over an idle baseline (no scrapes) is subtracted pro rata.
            Latency is client-side wall time per request.
3. Idle     50 checks at 30 s, no scrapes: agent CPU seconds over the window / window.
4. Round    1,000 HTTP checks against the loopback nginx, all due at once, run the way the
            scheduler runs them (run_check under its concurrency limit) in a fresh process;
            one cold round then timed warm rounds. Reference: the same 1,000 probes through
            blackbox_exporter's /probe with the same concurrency. The CLI
            (`wardwatch-agent check --json`) is timed too, start-up included.
5. Lint     `promtool check metrics` on both /metrics bodies.

A probe kind that is not present (or whose module does not import or validate) is replaced by
tcp checks, and the output says so. Results: a table on stdout and bench/out/agent-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import inspect
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as `python bench/agent.py`, sys.path[0] is bench/, where this very file would shadow
# the `agent` package; the repository root must come first instead.
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

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AGENT_CMD = ([str(Path(sys.executable).parent / "wardwatch-agent")]
             if (Path(sys.executable).parent / "wardwatch-agent").exists()
             else [sys.executable, "-m", "agent"])

# What Prometheus 2.x sends when it scrapes (text or OpenMetrics, gzip).
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
}

TARGET_RSS_MB = 50.0
TARGET_SCRAPE_MEDIAN_MS = 5.0
TARGET_IDLE_PCT = 1.0
TARGET_ROUND_S = 2.0
THROUGHPUT_CHECKS = 1000
MIX = {"host": 1, "http": 20, "tcp": 20, "process": 9}


# ---------------------------------------------------------------- processes and /proc

def wait_for_port(port: int, started: Started, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.name} exited ({started.proc.returncode}):\n"
                               + tail(started.log))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{started.name} not listening on {port} after {timeout}s:\n"
                       + tail(started.log))


def rss_mb(pid: int) -> float:
    return memory_kb(pid)["VmRSS"] / 1024


# ---------------------------------------------------------------- reference services

def start_nginx(procs: Processes, workdir: Path) -> tuple[Started, int]:
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"status": "UP"}}'; }}
  }}
}}
""")
    started = procs.start("nginx", [NGINX, "-p", str(prefix), "-c", str(conf),
                                    "-g", "daemon off;"])
    wait_for_port(port, started)
    return started, port


def start_node_exporter(procs: Processes) -> tuple[Started, int]:
    port = free_port()
    started = procs.start("node_exporter", [NODE_EXPORTER,
                                            f"--web.listen-address=127.0.0.1:{port}"])
    wait_for_port(port, started)
    return started, port


def start_blackbox(procs: Processes, workdir: Path) -> tuple[Started, int]:
    port = free_port()
    conf = workdir / "blackbox.yml"
    conf.write_text(yaml.safe_dump({"modules": {"http_2xx": {
        "prober": "http", "timeout": "10s",
        "http": {"preferred_ip_protocol": "ip4", "valid_status_codes": [200]}}}}))
    started = procs.start("blackbox_exporter", [
        BLACKBOX, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}"])
    wait_for_port(port, started)
    return started, port


# ---------------------------------------------------------------- the check mix

@dataclass
class Mix:
    checks: list[dict[str, Any]]
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


def kind_checks(kind: str, count: int, env: dict[str, Any]) -> list[dict[str, Any]]:
    """`count` checks of `kind` aimed at what the bench runs (nginx, exporters, itself)."""
    nginx = env["nginx_port"]
    if kind == "tcp":
        ports = [nginx, env["node_port"], env["blackbox_port"]]
        return [{"id": f"tcp-{i:02d}", "kind": "tcp", "system": "BENCH",
                 "host": "127.0.0.1", "port": ports[i % len(ports)]} for i in range(count)]
    if kind == "http":
        return [{"id": f"http-{i:02d}", "kind": "http", "system": "BENCH",
                 "url": f"http://127.0.0.1:{nginx}/health/{i}"} for i in range(count)]
    if kind == "host":
        return [{"id": "host" if count == 1 else f"host-{i}", "kind": "host", "system": "BENCH"}
                for i in range(count)]
    if kind == "process":
        names = ["nginx", "prometheus-node-exporter", "prometheus-blackbox-exporter"]
        return [{"id": f"process-{i:02d}", "kind": "process", "system": "BENCH",
                 "name": names[i % len(names)]} for i in range(count)]
    raise ValueError(kind)


def kind_problem(kind: str, sample: dict[str, Any]) -> str | None:
    """Why `kind` cannot be used in this tree (module missing, broken or config rejected)."""
    from agent.config import parse_agent_config

    try:
        parse_agent_config({"agent": {"id": "bench"}, "checks": [sample]})
    except Exception as exc:  # ConfigError, or a module being written that does not import
        errors = getattr(exc, "errors", None)
        if isinstance(errors, list):
            return "; ".join(map(str, errors))
        return f"{type(exc).__name__}: {exc}"
    return None


def build_mix(env: dict[str, Any]) -> Mix:
    checks: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    notes: list[str] = []
    fallback = 0
    for kind, count in MIX.items():
        if kind != "tcp":
            problem = kind_problem(kind, kind_checks(kind, 1, env)[0])
            if problem is not None:
                notes.append(f"kind {kind!r} not usable ({problem[:160]}); "
                             f"{count} tcp checks instead")
                fallback += count
                continue
        checks += kind_checks(kind, count, env)
        counts[kind] = counts.get(kind, 0) + count
    if fallback:
        extra = kind_checks("tcp", MIX["tcp"] + fallback, env)[MIX["tcp"]:]
        checks += extra
        counts["tcp"] = counts.get("tcp", 0) + fallback
    return Mix(checks, counts, notes)


def write_agent_config(path: Path, port: int, state_dir: Path, checks: list[dict[str, Any]],
                       interval: str) -> None:
    path.write_text(yaml.safe_dump({
        "agent": {"id": "bench", "listen": f"127.0.0.1:{port}", "state_dir": str(state_dir),
                  "log_level": "info"},
        "defaults": {"interval": interval, "timeout": "10s"},
        "checks": checks,
    }, sort_keys=False))


# ---------------------------------------------------------------- HTTP client bits

def http_get(port: int, path: str, timeout: float = 10.0) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET :{port}{path} -> {resp.status}")
        return body
    finally:
        conn.close()


@dataclass
class ScrapeRun:
    n: int
    wall_s: float
    cpu_raw_s: float
    baseline_rate: float
    latencies_ms: list[float]
    body_bytes: int
    encoding: str

    @property
    def cpu_per_scrape_ms(self) -> float:
        corrected = self.cpu_raw_s - self.baseline_rate * self.wall_s
        return max(0.0, corrected) / self.n * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=20, method="inclusive")[18]

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "wall_s": self.wall_s, "cpu_raw_s": self.cpu_raw_s,
                "baseline_cpu_rate": self.baseline_rate,
                "cpu_per_scrape_ms": self.cpu_per_scrape_ms, "median_ms": self.median_ms,
                "p95_ms": self.p95_ms, "max_ms": max(self.latencies_ms),
                "body_bytes": self.body_bytes, "content_encoding": self.encoding}


def scrape_run(pid: int, port: int, n: int, headers: dict[str, str],
               baseline_s: float) -> ScrapeRun:
    """Idle baseline of `pid` for `baseline_s`, then `n` sequential keep-alive scrapes."""
    c0 = cpu_seconds(pid)
    time.sleep(baseline_s)
    rate = (cpu_seconds(pid) - c0) / baseline_s
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    body_bytes, encoding = 0, "identity"
    try:
        conn.connect()
        start_cpu, start = cpu_seconds(pid), time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"scrape of :{port} -> {resp.status}")
            body_bytes = len(body)
            encoding = resp.getheader("Content-Encoding") or "identity"
        wall = time.perf_counter() - start
        cpu = cpu_seconds(pid) - start_cpu
    finally:
        conn.close()
    return ScrapeRun(n, wall, cpu, rate, latencies, body_bytes, encoding)


def count_series(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def promtool_lint(body: bytes) -> dict[str, Any]:
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                          timeout=60)
    lines = [ln for ln in (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
             if ln.strip()]
    return {"exit_code": proc.returncode, "complaints": len(lines), "output": lines[:50]}


# ---------------------------------------------------------------- throughput

def round_in_process(config_path: Path, rounds: int) -> dict[str, Any]:
    """Run in a fresh interpreter (`--internal-round`): all checks of the file at once, the
    way the scheduler runs due checks (run_check under its concurrency limit)."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.config import load_agent_config
    from agent.runner import run_check
    from agent.scheduler import Scheduler

    limit = inspect.signature(Scheduler.__init__).parameters["max_concurrency"].default
    config = load_agent_config(config_path)

    async def main() -> list[dict[str, Any]]:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(config.agent.probe_threads, thread_name_prefix="probe"))
        slots = asyncio.Semaphore(limit)

        async def one(check: Any) -> Any:
            async with slots:
                return await run_check(check, config.agent.id)

        out = []
        for _ in range(rounds):
            cpu0, t0 = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(one(c) for c in config.checks))
            wall = time.perf_counter() - t0
            statuses: dict[str, int] = {}
            for r in results:
                statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
            reasons = sorted({r.reason for r in results if r.status.value != "ok"})
            out.append({"wall_s": wall, "cpu_s": time.process_time() - cpu0,
                        "results": len(results), "statuses": statuses, "reasons": reasons,
                        "max_duration_s": max((r.duration_s for r in results), default=0)})
        return out

    return {"concurrency": limit, "probe_threads": config.agent.probe_threads,
            "rounds": asyncio.run(main())}


async def blackbox_rounds(port: int, targets: list[str], concurrency: int, rounds: int,
                          pid: int) -> list[dict[str, Any]]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    out = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(target: str) -> bool:
            url = f"http://127.0.0.1:{port}/probe"
            async with session.get(url, params={"module": "http_2xx", "target": target}) as r:
                body = await r.text()
                return r.status == 200 and "\nprobe_success 1" in body

        for _ in range(rounds):
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            ok = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
            wall = time.perf_counter() - t0
            out.append({"wall_s": wall, "cpu_s": cpu_seconds(pid) - cpu0,
                        "results": len(ok), "success": sum(1 for x in ok if x is True),
                        "errors": sum(1 for x in ok if isinstance(x, BaseException))})
    return out


# ---------------------------------------------------------------- report

@dataclass
class Row:
    figure: str
    agent: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "FAIL")


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def print_table(rows: list[Row]) -> str:
    head = Row("figure", "wardwatch agent", "reference", "ratio", "target", "result")
    table = [head, *rows]
    cols = ("figure", "agent", "reference", "ratio", "target", "verdict")
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


def source_state() -> dict[str, Any]:
    return harness_source_state(REPO, ("agent", "probes"), ("agent/*.py", "probes/*.py"))


def versions() -> dict[str, str]:
    out = {}
    for name, argv in (("node_exporter", [NODE_EXPORTER, "--version"]),
                       ("blackbox_exporter", [BLACKBOX, "--version"]),
                       ("promtool", [PROMTOOL, "--version"]), ("nginx", [NGINX, "-v"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out[name] = (p.stdout + p.stderr).splitlines()[0].strip()
    return out


# ---------------------------------------------------------------- the run

def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_results(port: int, count: int, started: Started, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise RuntimeError(f"agent exited ({started.proc.returncode}):\n" + tail(started.log))
        with contextlib.suppress(OSError, RuntimeError):
            health = json.loads(http_get(port, "/healthz"))
            if health.get("results", 0) >= count:
                return health
        time.sleep(0.5)
    raise RuntimeError(f"agent has {health.get('results')} of {count} results after "
                       f"{timeout:.0f}s:\n" + tail(started.log))


def status_counts(body: bytes) -> dict[str, int]:
    names = {"0": "ok", "1": "warning", "2": "critical", "3": "unknown"}
    counts: dict[str, int] = {}
    for line in body.decode().splitlines():
        if line.startswith("wardwatch_check_status{"):
            value = line.rsplit(" ", 1)[1].split(".")[0]
            counts[names.get(value, value)] = counts.get(names.get(value, value), 0) + 1
    return counts


def run(args: argparse.Namespace) -> int:
    quick = args.quick
    idle_window = args.idle_window or (60.0 if quick else 600.0)
    n_scrapes = args.scrapes or (200 if quick else 1000)
    timed_rounds = 3 if quick else 5
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    report: dict[str, Any] = {"machine": machine(), "versions": versions(),
                              "source": source_state(),
                              "command": " ".join([".venv/bin/python", "bench/agent.py",
                                                   *sys.argv[1:]]),
                              "mode": "quick" if quick else "full",
                              "idle_window_s": idle_window, "scrapes": n_scrapes}
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="wardwatch-bench-"))
    procs = Processes(workdir)
    try:
        log(f"workdir {workdir}; idle window {idle_window:.0f}s, {n_scrapes} scrapes per target")
        _nginx, nginx_port = start_nginx(procs, workdir)
        node, node_port = start_node_exporter(procs)
        blackbox, blackbox_port = start_blackbox(procs, workdir)
        env = {"nginx_port": nginx_port, "node_port": node_port, "blackbox_port": blackbox_port}

        # -- 1. the 50-check agent, warm-up --------------------------------------------
        mix = build_mix(env)
        report["mix"] = mix.counts
        report["mix_notes"] = mix.notes
        log("check mix: " + ", ".join(f"{n} {k}" for k, n in mix.counts.items()))
        for note in mix.notes:
            log("FALLBACK: " + note)
        agent_port = free_port()
        agent_conf = workdir / "agent.yaml"
        write_agent_config(agent_conf, agent_port, workdir / "state", mix.checks, "30s")
        agent = procs.start("agent", [*AGENT_CMD, "run", "--config", str(agent_conf)],
                            cwd=REPO)
        t_start = time.monotonic()
        wait_for_port(agent_port, agent, timeout=30)
        report["agent_startup_s"] = time.monotonic() - t_start
        report["agent_rss_after_start_mb"] = rss_mb(agent.proc.pid)
        log(f"agent up in {report['agent_startup_s']:.2f}s, waiting for one full round "
            "(checks are spread over the 30 s interval)")
        wait_results(agent_port, len(mix.checks), agent, timeout=30 + 30)
        for _ in range(20):  # warm both /metrics handlers
            http_get(agent_port, "/metrics")
            http_get(node_port, "/metrics")
        time.sleep(1)
        agent_body = http_get(agent_port, "/metrics")
        node_body = http_get(node_port, "/metrics")
        report["check_statuses"] = status_counts(agent_body)
        log(f"first round done in {time.monotonic() - t_start:.1f}s; statuses "
            f"{report['check_statuses']}")
        rss_samples = {"after_warmup": memory_kb(agent.proc.pid)}

        # -- 3. idle CPU over the window (no scrapes) --------------------------------------
        log(f"idle window: {idle_window:.0f}s with 50 checks at 30s, no scrapes")
        a0, n0, t0 = cpu_seconds(agent.proc.pid), cpu_seconds(node.proc.pid), time.monotonic()
        end = t0 + idle_window
        rss_during: list[float] = []
        for _ in range(int(idle_window // 10) + 2):
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(10.0, left))
            rss_during.append(rss_mb(agent.proc.pid))
            if agent.proc.poll() is not None:
                raise RuntimeError("agent exited during the idle window:\n" + tail(agent.log))
        window = time.monotonic() - t0
        agent_idle = cpu_seconds(agent.proc.pid) - a0
        node_idle = cpu_seconds(node.proc.pid) - n0
        rss_samples["after_idle_window"] = memory_kb(agent.proc.pid)
        report["idle"] = {"window_s": window, "agent_cpu_s": agent_idle,
                          "agent_pct_of_core": agent_idle / window * 100,
                          "node_exporter_unscraped_cpu_s": node_idle,
                          "agent_rss_mb_samples": rss_during}
        log(f"idle: agent {agent_idle:.2f} CPU-s in {window:.0f}s = "
            f"{agent_idle / window * 100:.3f}% of a core")

        # -- 2. CPU and latency per scrape -------------------------------------------------
        # Same checks at 1 h: after the reload no probe is due during the scrapes.
        write_agent_config(agent_conf, agent_port, workdir / "state", mix.checks, "1h")
        os.kill(agent.proc.pid, signal.SIGHUP)
        time.sleep(2)
        reload_body = http_get(agent_port, "/metrics")
        reloaded = b"wardwatch_agent_config_last_reload_successful 1.0" in reload_body
        if not reloaded:
            log("WARNING: the reload to a 1 h interval did not succeed; relying on the "
                "baseline subtraction alone")
        report["scrape_reload_ok"] = reloaded
        baseline = 3.0 if quick else 5.0
        scrapes: dict[str, dict[str, Any]] = {}
        runs: dict[tuple[str, str], ScrapeRun] = {}
        for mode, headers in (("plain", {}), ("prometheus", PROMETHEUS_HEADERS)):
            for name, pid, port in (("agent", agent.proc.pid, agent_port),
                                    ("node_exporter", node.proc.pid, node_port)):
                run_ = scrape_run(pid, port, n_scrapes, headers, baseline)
                runs[(name, mode)] = run_
                scrapes[f"{name}/{mode}"] = run_.as_dict()
                log(f"scrapes {name} ({mode}): {run_.cpu_per_scrape_ms:.3f} ms CPU, "
                    f"median {run_.median_ms:.2f} ms, p95 {run_.p95_ms:.2f} ms, "
                    f"{run_.body_bytes} B {run_.encoding}")
        report["scrapes"] = scrapes
        report["series"] = {"agent": count_series(agent_body),
                            "node_exporter": count_series(node_body)}
        rss_samples["after_scrapes"] = memory_kb(agent.proc.pid)
        node_mem = memory_kb(node.proc.pid)
        report["rss_kb"] = {"agent": rss_samples, "node_exporter": node_mem,
                            "blackbox_exporter_idle": memory_kb(blackbox.proc.pid)}

        # -- 5. lint ------------------------------------------------------------------------
        report["promtool"] = {"agent": promtool_lint(agent_body),
                              "node_exporter": promtool_lint(node_body)}
        procs.stop(agent)

        # -- 4. 1,000 HTTP checks in one round ---------------------------------------------
        throughput_checks: list[dict[str, Any]] = [
            {"id": f"http-{i:04d}", "kind": "http", "system": "BENCH",
             "url": f"http://127.0.0.1:{nginx_port}/t/{i}"} for i in range(THROUGHPUT_CHECKS)]
        http_problem = kind_problem("http", throughput_checks[0])
        round_kind = "http"
        if http_problem is not None:
            round_kind = "tcp"
            note = (f"kind 'http' not usable ({http_problem[:160]}); the round uses "
                    f"{THROUGHPUT_CHECKS} tcp checks against nginx instead")
            report["mix_notes"].append(note)
            log("FALLBACK: " + note)
            throughput_checks = [{"id": f"tcp-{i:04d}", "kind": "tcp", "system": "BENCH",
                                  "host": "127.0.0.1", "port": nginx_port}
                                 for i in range(THROUGHPUT_CHECKS)]
        round_conf = workdir / "round.yaml"
        write_agent_config(round_conf, free_port(), workdir / "state-round", throughput_checks,
                           "30s")
        log(f"round: {THROUGHPUT_CHECKS} {round_kind} checks in-process, 1 cold + "
            f"{timed_rounds} warm rounds")
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                               "--internal-round", str(round_conf),
                               "--rounds", str(timed_rounds + 1)],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError("in-process round failed:\n" + proc.stderr[-3000:])
        in_process = json.loads(proc.stdout)
        log(f"  rounds: {[round(r['wall_s'], 3) for r in in_process['rounds']]} s; statuses "
            f"{in_process['rounds'][-1]['statuses']}")
        t0 = time.perf_counter()
        cli = subprocess.run([*AGENT_CMD, "check", "--config", str(round_conf), "--json"],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
        cli_wall = time.perf_counter() - t0
        try:
            cli_results = json.loads(cli.stdout)
        except json.JSONDecodeError:
            cli_results = []
        cli_ok = sum(1 for r in cli_results if r.get("status") == "ok")
        log(f"  CLI: {cli_wall:.2f}s wall, {len(cli_results)} results ({cli_ok} ok), "
            f"exit {cli.returncode}")

        targets = [c.get("url") or f"http://127.0.0.1:{nginx_port}/" for c in throughput_checks]
        bb = asyncio.run(blackbox_rounds(blackbox_port, targets, in_process["concurrency"],
                                         timed_rounds + 1, blackbox.proc.pid))
        log(f"  blackbox rounds: {[round(r['wall_s'], 3) for r in bb]} s; "
            f"success {bb[-1]['success']}/{bb[-1]['results']}")
        report["throughput"] = {
            "kind": round_kind, "checks": THROUGHPUT_CHECKS,
            "agent_in_process": in_process,
            "agent_cli": {"wall_s": cli_wall, "results": len(cli_results), "ok": cli_ok,
                          "exit_code": cli.returncode, "stderr": cli.stderr[-2000:]},
            "blackbox": {"concurrency": in_process["concurrency"], "rounds": bb},
        }

        # -- the table ----------------------------------------------------------------------
        rss_max = max(v["VmRSS"] for v in rss_samples.values()) / 1024
        node_rss = node_mem["VmRSS"] / 1024
        rows.append(Row("1. RSS, 50 checks (VmRSS, MB)", f"{rss_max:.1f}", f"{node_rss:.1f}",
                        fmt_ratio(rss_max, node_rss), f"<= {TARGET_RSS_MB:.0f} MB",
                        verdict(rss_max <= TARGET_RSS_MB)))
        peak = max(rss_samples.values(), key=lambda v: v["VmRSS"])
        rows.append(Row("1. RSS private / file-backed (MB)",
                        f"{peak['RssAnon'] / 1024:.1f} / {peak['RssFile'] / 1024:.1f}",
                        f"{node_mem['RssAnon'] / 1024:.1f} / {node_mem['RssFile'] / 1024:.1f}",
                        "", "", "info"))
        rows.append(Row("1. RSS at start-up, port open (MB)",
                        f"{report['agent_rss_after_start_mb']:.1f}", "", "", "", "info"))
        for mode in ("plain", "prometheus"):
            a, n = runs[("agent", mode)], runs[("node_exporter", mode)]
            label = "text" if mode == "plain" else "Prometheus headers, gzip"
            rows.append(Row(f"2. CPU per scrape, ms ({label})", f"{a.cpu_per_scrape_ms:.3f}",
                            f"{n.cpu_per_scrape_ms:.3f}",
                            fmt_ratio(a.cpu_per_scrape_ms, n.cpu_per_scrape_ms),
                            "<= node_exporter" if mode == "plain" else "",
                            verdict(a.cpu_per_scrape_ms <= n.cpu_per_scrape_ms
                                    if mode == "plain" else None)))
            rows.append(Row(f"2. scrape median / p95, ms ({label})",
                            f"{a.median_ms:.2f} / {a.p95_ms:.2f}",
                            f"{n.median_ms:.2f} / {n.p95_ms:.2f}",
                            fmt_ratio(a.median_ms, n.median_ms),
                            f"median <= {TARGET_SCRAPE_MEDIAN_MS:g} ms" if mode == "plain"
                            else "",
                            verdict(a.median_ms <= TARGET_SCRAPE_MEDIAN_MS
                                    if mode == "plain" else None)))
        a_plain, n_plain = runs[("agent", "plain")], runs[("node_exporter", "plain")]
        rows.append(Row("2. series / body bytes per scrape",
                        f"{report['series']['agent']} / {a_plain.body_bytes}",
                        f"{report['series']['node_exporter']} / {n_plain.body_bytes}",
                        "", "", "info"))
        idle_pct = report["idle"]["agent_pct_of_core"]
        rows.append(Row(f"3. idle CPU, % of a core ({window:.0f}s window)", f"{idle_pct:.3f}",
                        f"{node_idle / window * 100:.3f} (unscraped)", "",
                        f"<= {TARGET_IDLE_PCT:g} %", verdict(idle_pct <= TARGET_IDLE_PCT)))
        warm = in_process["rounds"][1:]
        warm_wall = statistics.median(r["wall_s"] for r in warm)
        warm_cpu = statistics.median(r["cpu_s"] for r in warm)
        warm_ok = min(r["statuses"].get("ok", 0) for r in warm)
        bb_warm = bb[1:]
        bb_wall = statistics.median(r["wall_s"] for r in bb_warm)
        bb_cpu = statistics.median(r["cpu_s"] for r in bb_warm)
        bb_ok = min(r["success"] for r in bb_warm)
        rows.append(Row(f"4. {THROUGHPUT_CHECKS} {round_kind} checks, one round, s (warm)",
                        f"{warm_wall:.3f}", f"{bb_wall:.3f}", fmt_ratio(warm_wall, bb_wall),
                        f"<= {TARGET_ROUND_S:g} s",
                        verdict(warm_wall <= TARGET_ROUND_S
                                and warm_ok == THROUGHPUT_CHECKS)))
        rows.append(Row("4. results/s (warm round)", f"{THROUGHPUT_CHECKS / warm_wall:.0f}",
                        f"{THROUGHPUT_CHECKS / bb_wall:.0f}", fmt_ratio(bb_wall, warm_wall),
                        "", "info"))
        rows.append(Row("4. ok results (worst warm round)", f"{warm_ok}/{THROUGHPUT_CHECKS}",
                        f"{bb_ok}/{THROUGHPUT_CHECKS}", "", "all ok",
                        verdict(warm_ok == THROUGHPUT_CHECKS)))
        rows.append(Row("4. CPU-s per round (warm, prober process)", f"{warm_cpu:.3f}",
                        f"{bb_cpu:.3f}", fmt_ratio(warm_cpu, bb_cpu), "", "info"))
        cold = in_process["rounds"][0]
        rows.append(Row("4. cold first round, s (in-process)", f"{cold['wall_s']:.3f}",
                        f"{bb[0]['wall_s']:.3f}", fmt_ratio(cold["wall_s"], bb[0]["wall_s"]),
                        "", "info"))
        rows.append(Row("4. `wardwatch-agent check --json`, s", f"{cli_wall:.2f}",
                        "", "", "", "info"))
        lint_a, lint_n = report["promtool"]["agent"], report["promtool"]["node_exporter"]
        rows.append(Row("5. promtool check metrics: exit (complaints)",
                        f"{lint_a['exit_code']} ({lint_a['complaints']})",
                        f"{lint_n['exit_code']} ({lint_n['complaints']})", "", "exit 0",
                        verdict(lint_a["exit_code"] == 0)))
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    source_end = source_state()
    report["sources_changed_during_run"] = (
        source_end["sources_sha256"] != report["source"]["sources_sha256"])

    print()
    print(f"wardwatch agent benchmark ({report['mode']}); checks: "
          + ", ".join(f"{n} {k}" for k, n in report["mix"].items()))
    for note in report["mix_notes"]:
        print(f"  fallback: {note}")
    m = report["machine"]
    print(f"  machine: {m['nproc']} cpu {m['cpu_model']}, {m['memory_gib']} GiB, "
          f"kernel {m['kernel']}, Python {m['python']}, {m['date']}")
    print(f"  load average (1/5/15 min) at start {' '.join(m['loadavg_at_start'])}, at end "
          f"{' '.join(m['loadavg_at_end'])}: other work on the machine skews wall-clock figures")
    src = report["source"]
    print(f"  source: commit {src['commit']}, agent+probes digest {src['sources_sha256']}"
          + (f", uncommitted: {' '.join(src['uncommitted'])}"
             if src["uncommitted"] else ""))
    if report["sources_changed_during_run"]:
        print("  WARNING: agent/ or probes/ changed during the run; figures mix two versions "
              "of the code: run again")
    print(f"  ratio = agent / reference (lower is better; for results/s it is agent's "
          f"speed-up). Idle window {window:.0f}s, {n_scrapes} scrapes per target.")
    print()
    report["table"] = print_table(rows)
    report["rows"] = [r.__dict__ for r in rows]
    outdir = REPO / "bench" / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    out = args.json or outdir / f"agent-{report['mode']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {out}")
    failed = [r.figure for r in rows if r.verdict == "FAIL"]
    if failed:
        print("missed targets: " + "; ".join(failed))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="60 s idle window and 200 scrapes instead of 600 s and 1000")
    parser.add_argument("--idle-window", type=float, help="override the idle window, seconds")
    parser.add_argument("--scrapes", type=int, help="override scrapes per target")
    parser.add_argument("--json", type=Path, help="write the raw figures here instead of "
                        "bench/out/agent-MODE-TIMESTAMP.json (bench/suite.py reads it)")
    parser.add_argument("--internal-round", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.internal_round:
        print(json.dumps(round_in_process(args.internal_round, args.rounds)))
        return 0

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that kills everything

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
