"""The benchmark suite: every bench `--runs` times, each run a separate process of the bench's
own script, the headline figures of each run collected, and per figure the min / median / max
over the runs with the issues' targets (issue 10) and PASS/FAIL.

    .venv/bin/python bench/suite.py                              # the default set, 5 runs each
    .venv/bin/python bench/suite.py --only collector,board --runs 3
    .venv/bin/python bench/suite.py --quick                      # quick modes, 1 run: a smoke test
    .venv/bin/python bench/suite.py --list                       # benches, figures, targets

What it does not do is measure: each bench script does, as documented in its docstring and in
docs/benchmarks.md. The suite starts `python bench/NAME.py ARGS --json FILE` (scripts that print
their figures as JSON on stdout instead are read from there), reads the figures named in
`BENCHES` from that JSON, and aggregates them. Comparisons with a reference tool (agent vs
node_exporter / blackbox_exporter) are ratios computed inside one run, then aggregated as
ratios, so the machine's drift between runs cancels out of them.

Runs are interleaved (run 1 of every bench, then run 2, ...) so that load from other work on the
machine spreads over the benches instead of landing on one. The verdict is the median's against
the target; the `met` column says in how many runs the target held.

Output: a table on stdout; bench/out/suite-TIMESTAMP.json (machine, commit, every run's figures,
exit code, wall time and load average, the tail of its log when it failed); each run's own JSON
and log under bench/out/suite-TIMESTAMP/; and, unless `--no-docs`, the table in
docs/benchmarks.md between `<!-- suite:begin -->` and `<!-- suite:end -->` (the section is
created at the top of the file when missing, replaced otherwise).

Bounded: every run has a timeout (per bench, quick and full); on timeout, Ctrl-C, SIGTERM or
SIGHUP the running bench gets SIGINT (its `finally` stops its own processes and drops its
databases), then SIGTERM, then SIGKILL of its process group; benches start their own children
with PR_SET_PDEATHSIG, so nothing outlives the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as `python bench/suite.py`, sys.path[0] is bench/, where bench/collector.py would shadow
# the `collector` package; the repository root must come first instead.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

from bench.harness import Processes, Started, machine, tail  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- suite:begin -->"
END = "<!-- suite:end -->"
SIGINT_GRACE_S = 30.0
"""How long a bench gets to clean up after SIGINT (the collector bench drops databases)."""

Figures = dict[str, float | None]


# ---------------------------------------------------------------- what is measured

@dataclass(frozen=True)
class Target:
    op: str
    """`>=` or `<=`."""
    value: float

    def met(self, x: float) -> bool:
        return x >= self.value if self.op == ">=" else x <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.value:,g}"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    target: Target | None = None
    digits: int = 0
    """Decimals shown."""


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    """Path under the repository; run as `python -m bench.NAME` from the repository root
    (bench/reports.py needs that; the others run either way)."""
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    timeout_s: float
    quick_timeout_s: float
    figures: tuple[Figure, ...]
    extract: Callable[[Mapping[str, Any]], Figures]
    json_option: bool = True
    """The script takes `--json PATH`; otherwise its figures are the last JSON on stdout."""
    default: bool = True
    """In the set run without `--only`."""
    note: str = ""


def dig(data: Any, *path: str | int) -> Any:
    """data[p0][p1]...; None when any step is missing (older or newer JSON shapes)."""
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def median_of(values: Any) -> float | None:
    found = [v for v in (num(x) for x in values or ()) if v is not None]
    return statistics.median(found) if found else None


def agent_figures(d: Mapping[str, Any]) -> Figures:
    samples = dig(d, "rss_kb", "agent") or {}
    agent_kb = max((num(dig(s, "VmRSS")) or 0.0 for s in samples.values()), default=0.0)
    agent_rss = agent_kb / 1024 if agent_kb else None
    node_kb = num(dig(d, "rss_kb", "node_exporter", "VmRSS"))
    node_rss = node_kb / 1024 if node_kb else None
    cpu_a = num(dig(d, "scrapes", "agent/plain", "cpu_per_scrape_ms"))
    cpu_n = num(dig(d, "scrapes", "node_exporter/plain", "cpu_per_scrape_ms"))
    checks = num(dig(d, "throughput", "checks"))
    agent_wall = median_of(r.get("wall_s") for r in
                           (dig(d, "throughput", "agent_in_process", "rounds") or [])[1:])
    bb_wall = median_of(r.get("wall_s") for r in
                        (dig(d, "throughput", "blackbox", "rounds") or [])[1:])
    agent_pps = ratio(checks, agent_wall)
    bb_pps = ratio(checks, bb_wall)
    return {
        "agent.rss_mb": agent_rss, "agent.node_rss_mb": node_rss,
        "agent.rss_ratio": ratio(agent_rss, node_rss),
        "agent.scrape_cpu_ms": cpu_a, "agent.node_scrape_cpu_ms": cpu_n,
        "agent.scrape_cpu_ratio": ratio(cpu_a, cpu_n),
        "agent.scrape_median_ms": num(dig(d, "scrapes", "agent/plain", "median_ms")),
        "agent.idle_cpu_pct": num(dig(d, "idle", "agent_pct_of_core")),
        "agent.probes_per_s": agent_pps, "agent.blackbox_probes_per_s": bb_pps,
        "agent.probes_ratio": ratio(agent_pps, bb_pps),
    }


def collector_figures(d: Mapping[str, Any]) -> Figures:
    out: Figures = {}
    lost = 0.0
    for label in ("sqlite-full", "sqlite-normal", "postgresql"):
        run = dig(d, "ingest", label)
        if run is None:
            continue
        key = label.replace("-", "_")
        out[f"collector.ingest_{key}_rps"] = num(run.get("results_per_s"))
        out[f"collector.ingest_{key}_p95_ms"] = num(dig(run, "latency_ms", "p95"))
        out[f"collector.ingest_{key}_cpu_ms_per_1k"] = num(
            run.get("collector_cpu_ms_per_1000_results"))
        count = num(dig(run, "incident_evaluations", "count"))
        total = num(dig(run, "incident_evaluations", "sum_s"))
        out[f"collector.evaluation_{key}_ms"] = (total / count * 1000 if count and total
                                                 is not None else None)
        lost += 0.0 if run.get("all_stored") and not run.get("errors") else 1.0
    if dig(d, "ingest") is not None:
        out["collector.ingest_runs_lossy"] = lost
    for store in ("sqlite", "postgresql"):
        year = dig(d, "availability", store)
        if year is None:
            continue
        out[f"collector.availability_{store}_p95_ms"] = num(dig(year, "warm_ms", "p95"))
        out[f"collector.systems_api_{store}_s"] = median_of(
            g.get("wall_s") for g in year.get("get_systems") or [])
    out["collector.raw_bytes_per_result"] = num(dig(d, "growth", "sqlite", "bytes_per_result"))
    raw = num(dig(d, "growth", "sqlite", "raw_bytes_per_host_day"))
    out["collector.raw_mb_per_host_day"] = raw / 1e6 if raw is not None else None
    return out


def board_figures(d: Mapping[str, Any]) -> Figures:
    return {
        "board.p95_ms": num(dig(d, "board_json", "round_trip", "p95_ms")),
        "board.median_ms": num(dig(d, "board_json", "round_trip", "median_ms")),
        "board.server_p95_ms": num(dig(d, "board_json", "server", "p95_ms")),
        "board.page_p95_ms": num(dig(d, "board_page", "round_trip", "p95_ms")),
    }


def reports_figures(d: Mapping[str, Any]) -> Figures:
    return {"reports.annual_html_s": num(dig(d, "html", "total_s")),
            "reports.annual_xlsx_s": num(dig(d, "xlsx", "total_s"))}


def coldstart_figures(d: Mapping[str, Any]) -> Figures:
    return {"coldstart.first_metrics_s": num(dig(d, "summary", "first_metrics_s")),
            "coldstart.ready_s": num(dig(d, "summary", "ready_s")),
            "coldstart.import_agent_s": num(dig(d, "summary", "import_agent_s"))}


def osv_figures(d: Mapping[str, Any]) -> Figures:
    return {f"osv.{k}": num(d.get(k)) for k in
            ("import_s", "load_s", "match_rest_s", "observe_all_s", "observe_again_s")}


def middleware_figures(d: Mapping[str, Any]) -> Figures:
    out: Figures = {}
    for row in d.get("per_run") or []:
        out[f"middleware.{row.get('kind')}_median_ms"] = num(row.get("ms_median"))
    for row in d.get("agent") or []:
        name = str(row.get("name", "")).replace("agent-", "")
        out[f"middleware.agent_{name}_rss_mb"] = num(row.get("rss_mb"))
        out[f"middleware.agent_{name}_cpu_ms_per_run"] = num(row.get("cpu_ms_per_run"))
    return out


def outage_figures(d: Mapping[str, Any]) -> Figures:
    missing = d.get("missing")
    stored, distinct = num(d.get("rows_stored")), num(d.get("rows_distinct"))
    return {
        "outage.results_lost": (float(sum(missing.values())) if isinstance(missing, dict)
                                else None),
        "outage.results_duplicated": (stored - distinct if stored is not None
                                      and distinct is not None else None),
        "outage.split_intervals": num(d.get("checks_with_split_interval")),
        "outage.drain_s": num(d.get("drain_s")),
    }


def scale_figures(d: Mapping[str, Any]) -> Figures:
    return {f"scale.{k}": num(dig(d, "figures", k)) for k in
            ("offered_rps", "keeps_up", "lag_p95_s", "collector_cpu_pct",
             "loop_thread_cpu_pct", "ingest_p95_ms", "db_gb_per_day", "evaluation_mean_ms",
             "board_p95_ms")}


def bundle_figures(d: Mapping[str, Any]) -> Figures:
    out: Figures = {}
    for b in d.get("bundles") or []:
        size = num(b.get("archive_bytes"))
        out[f"bundle.{b.get('platform')}_mb"] = size / 1e6 if size is not None else None
    out["bundle.install_fresh_s"] = median_of(d.get("install_fresh_s"))
    out["bundle.cold_start_s"] = median_of(d.get("cold_start_s"))
    return out


F = Figure
BENCHES: tuple[Bench, ...] = (
    Bench("agent", "bench/agent.py", (), ("--quick",), 40 * 60, 12 * 60, (
        F("agent.rss_mb", "agent RSS, 50 checks, MB", digits=1),
        F("agent.node_rss_mb", "node_exporter RSS, MB", digits=1),
        F("agent.rss_ratio", "RSS ratio agent / node_exporter", Target("<=", 3), 2),
        F("agent.scrape_cpu_ms", "agent CPU per scrape, ms", digits=3),
        F("agent.node_scrape_cpu_ms", "node_exporter CPU per scrape, ms", digits=3),
        F("agent.scrape_cpu_ratio", "CPU per scrape ratio agent / node_exporter",
          Target("<=", 2), 2),
        F("agent.scrape_median_ms", "agent scrape median, ms", digits=2),
        F("agent.idle_cpu_pct", "agent idle CPU, % of a core", digits=3),
        F("agent.probes_per_s", "agent probes/s (1,000 http, warm round)"),
        F("agent.blackbox_probes_per_s", "blackbox_exporter probes/s, same targets"),
        F("agent.probes_ratio", "probes/s ratio agent / blackbox_exporter",
          Target(">=", 1), 2),
    ), agent_figures),
    Bench("collector", "bench/collector.py", ("--no-profile",), ("--quick", "--no-profile"),
          45 * 60, 25 * 60, (
        F("collector.ingest_sqlite_full_rps", "ingest results/s, SQLite FULL",
          Target(">=", 10_000)),
        F("collector.ingest_sqlite_normal_rps", "ingest results/s, SQLite NORMAL"),
        F("collector.ingest_postgresql_rps", "ingest results/s, PostgreSQL"),
        F("collector.ingest_sqlite_full_p95_ms", "ingest request p95 ms, SQLite FULL"),
        F("collector.ingest_postgresql_p95_ms", "ingest request p95 ms, PostgreSQL"),
        F("collector.ingest_sqlite_full_cpu_ms_per_1k",
          "collector CPU ms per 1,000 results, SQLite FULL"),
        F("collector.evaluation_sqlite_full_ms", "incident evaluation during ingest, ms, "
          "SQLite FULL", digits=1),
        F("collector.evaluation_postgresql_ms", "incident evaluation during ingest, ms, "
          "PostgreSQL", digits=1),
        F("collector.ingest_runs_lossy", "ingest runs with a result lost, doubled or refused",
          Target("<=", 0)),
        F("collector.availability_sqlite_p95_ms", "availability per system-year, warm p95 ms, "
          "SQLite", Target("<=", 200)),
        F("collector.availability_postgresql_p95_ms", "availability per system-year, warm p95 "
          "ms, PostgreSQL", Target("<=", 200)),
        F("collector.systems_api_sqlite_s", "GET /api/v1/systems, 50 systems, s, SQLite",
          digits=2),
        F("collector.raw_bytes_per_result", "SQLite bytes per raw result"),
        F("collector.raw_mb_per_host_day", "SQLite raw MB per host-day (50 checks / 30 s)",
          digits=1),
    ), collector_figures),
    Bench("board", "bench/board.py", (), ("--requests", "60"), 15 * 60, 8 * 60, (
        F("board.p95_ms", "board.json p95 round trip, ms (300 hosts, 50 systems)",
          Target("<=", 100), 1),
        F("board.median_ms", "board.json median round trip, ms", digits=1),
        F("board.server_p95_ms", "board.json p95 server time, ms", digits=1),
        F("board.page_p95_ms", "board page p95 round trip, ms", digits=1),
    ), board_figures),
    Bench("reports", "bench/reports.py", (), (), 15 * 60, 8 * 60, (
        F("reports.annual_html_s", "annual report html, s", Target("<=", 10), 2),
        F("reports.annual_xlsx_s", "annual report xlsx, s", Target("<=", 10), 2),
    ), reports_figures, json_option=False),
    Bench("coldstart", "bench/coldstart.py", (), ("--runs", "2"), 15 * 60, 8 * 60, (
        F("coldstart.first_metrics_s", "agent start to first /metrics, s", digits=2),
        F("coldstart.ready_s", "agent start to READY=1, s", digits=2),
        F("coldstart.import_agent_s", "import agent.__main__, s", digits=2),
    ), coldstart_figures),
    Bench("osv", "bench/osv.py", (), ("--records", "3000", "--hosts", "30"), 30 * 60, 8 * 60, (
        F("osv.import_s", "OSV bundle import, s", digits=2),
        F("osv.load_s", "OSV index load, s", digits=2),
        F("osv.match_rest_s", "match every host in memory, s", digits=2),
        F("osv.observe_all_s", "observe every host's inventory, s", digits=2),
        F("osv.observe_again_s", "observe again (steady state), s", digits=2),
    ), osv_figures, json_option=False),
    Bench("middleware", "bench/middleware.py", (), ("--quick",), 20 * 60, 8 * 60, (
        F("middleware.nginx_median_ms", "nginx probe median, ms", digits=2),
        F("middleware.tomcat_median_ms", "tomcat probe median, ms", digits=2),
        F("middleware.weblogic_median_ms", "weblogic probe median, ms", digits=2),
        F("middleware.agent_middleware_rss_mb", "agent RSS, 20 middleware checks, MB",
          digits=1),
        F("middleware.agent_middleware_cpu_ms_per_run", "agent CPU per middleware run, ms",
          digits=2),
    ), middleware_figures, json_option=False),
    Bench("outage", "bench/outage.py", (), ("--outage", "20", "--warm", "5"), 40 * 60,
          10 * 60, (
        F("outage.results_lost", "results lost across a collector outage", Target("<=", 0)),
        F("outage.results_duplicated", "results stored twice", Target("<=", 0)),
        F("outage.split_intervals", "checks whose state interval split", Target("<=", 0)),
        F("outage.drain_s", "spools drained after the collector returned, s", digits=1),
    ), outage_figures, json_option=False),
    Bench("scale", "bench/scale.py", (), ("--duration", "30", "--warmup", "10"), 15 * 60,
          8 * 60, (
        F("scale.offered_rps", "offered results/s (300 hosts x 50 checks / 30 s)"),
        F("scale.keeps_up", "keeps up (1 yes, 0 no: the backlog grows)", digits=0),
        F("scale.lag_p95_s", "delivery lag p95 (due to acknowledged), s", digits=1),
        F("scale.collector_cpu_pct", "collector CPU, % of a core"),
        F("scale.loop_thread_cpu_pct", "collector event-loop thread, % of a core"),
        F("scale.ingest_p95_ms", "push request p95, ms", digits=1),
        F("scale.db_gb_per_day", "store growth, GB/day", digits=1),
        F("scale.evaluation_mean_ms", "incident evaluation per round, ms", digits=1),
        F("scale.board_p95_ms", "board.json p95 under that load, ms", digits=1),
    ), scale_figures, note="300 hosts, the default; the 3,000-host runs (one collector "
          "does not carry them) and what breaks first are in [scale.md](scale.md)"),
    Bench("bundle", "bench/bundle.py", ("--runs", "1"), ("--platform", "linux-x86_64"),
          60 * 60, 30 * 60, (
        F("bundle.linux-x86_64_mb", "offline bundle linux-x86_64, MB", digits=1),
        F("bundle.install_fresh_s", "install from the bundle, s", digits=1),
        F("bundle.cold_start_s", "installed agent to first result, s", digits=2),
    ), bundle_figures, default=False,
          note="not in the default set: building the wheelhouse needs PyPI"),
)
BY_NAME = {b.name: b for b in BENCHES}


# ---------------------------------------------------------------- reading a run's output

def last_json(text: str) -> dict[str, Any] | None:
    """The last JSON object printed in `text` (a bench's stdout and stderr): the last line
    starting with `{` from which a whole object parses (trailing lines are ignored)."""
    lines = text.splitlines()
    decoder = json.JSONDecoder()
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].startswith("{"):
            continue
        try:
            value, _end = decoder.raw_decode("\n".join(lines[i:]))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


# ---------------------------------------------------------------- aggregation

@dataclass(frozen=True)
class Row:
    bench: str
    figure: Figure
    values: tuple[float, ...]
    runs: int

    @property
    def lo(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def hi(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def met(self) -> int | None:
        target = self.figure.target
        return None if target is None else sum(1 for v in self.values if target.met(v))

    @property
    def verdict(self) -> str:
        target, median = self.figure.target, self.median
        if target is None:
            return "info"
        if median is None:
            return "no data"
        return "PASS" if target.met(median) else "FAIL"


def aggregate(bench: Bench, runs: Sequence[Figures]) -> list[Row]:
    """One row per figure of `bench` over its runs (a run without the figure is left out)."""
    rows = []
    for figure in bench.figures:
        values = tuple(v for r in runs if (v := r.get(figure.key)) is not None)
        rows.append(Row(bench.name, figure, values, len(runs)))
    return rows


def fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table(rows: Sequence[Row]) -> str:
    """Markdown: one line per figure."""
    out = ["| bench | figure | n | min | median | max | target | met | result |",
           "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        d = r.figure.digits
        met = "" if r.met is None or not r.values else f"{r.met}/{len(r.values)}"
        result = f"**{r.verdict}**" if r.verdict in ("FAIL", "no data") else r.verdict
        out.append(f"| {r.bench} | {r.figure.label} | {len(r.values)}/{r.runs} | "
                   f"{fmt(r.lo, d)} | {fmt(r.median, d)} | {fmt(r.hi, d)} | "
                   f"{r.figure.target or ''} | {met} | {result} |")
    return "\n".join(out)


# ---------------------------------------------------------------- the machine and the tree

def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def git_state() -> dict[str, Any]:
    """Commit, `+dirty` when the tree has uncommitted changes (untracked files included: a
    new module changes what runs), and the changed paths."""
    commit, changed = "", []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, timeout=10,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, timeout=10,
                                 capture_output=True, text=True).stdout.splitlines()
    return {"commit": commit + ("+dirty" if changed else ""), "changed": changed}


def postgres_version() -> str | None:
    url = os.environ.get("WARDWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    with contextlib.suppress(Exception):
        import asyncio

        import asyncpg  # type: ignore[import-untyped]

        async def ask() -> str:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        return asyncio.run(ask())
    return None


def suite_machine() -> dict[str, Any]:
    return machine(sqlite=sqlite3.sqlite_version, postgresql=postgres_version())


# ---------------------------------------------------------------- running

@dataclass
class RunRecord:
    bench: str
    run: int
    argv: list[str]
    exit_code: int | None = None
    wall_s: float = 0.0
    loadavg_before: list[str] = field(default_factory=list)
    loadavg_after: list[str] = field(default_factory=list)
    figures: Figures = field(default_factory=dict)
    error: str | None = None
    log_tail: str | None = None


def interrupt(procs: Processes, started: Started) -> None:
    """SIGINT to the bench's group (Python unwinds through its `finally`), then the harness's
    SIGTERM / SIGKILL."""
    if started.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.proc.wait(timeout=SIGINT_GRACE_S)
    procs.stop(started)


def run_once(bench: Bench, run: int, quick: bool, procs: Processes, rundir: Path,
             log: Callable[[str], None]) -> RunRecord:
    json_path = rundir / f"{bench.name}-{run}.json"
    module = bench.script.removesuffix(".py").replace("/", ".")
    argv = [sys.executable, "-m", module, *(bench.quick_args if quick else bench.full_args)]
    if bench.json_option:
        argv += ["--json", str(json_path)]
    record = RunRecord(bench.name, run, argv[1:], loadavg_before=loadavg())
    timeout = bench.quick_timeout_s if quick else bench.timeout_s
    t0 = time.monotonic()
    started = procs.start(f"{bench.name}-{run}", argv, cwd=REPO)
    try:
        record.exit_code = started.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        record.error = f"timed out after {timeout:.0f} s"
    finally:
        interrupt(procs, started)   # a no-op when it exited; its group is cleared either way
    record.wall_s = round(time.monotonic() - t0, 1)
    record.loadavg_after = loadavg()
    text = started.log.read_text(errors="replace") if started.log.exists() else ""
    data: dict[str, Any] | None = None
    if bench.json_option and json_path.exists():
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(json_path.read_text())
    elif not bench.json_option:
        data = last_json(text)
        if data is not None:
            json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    if data is None:
        record.error = record.error or f"no JSON figures (exit {record.exit_code})"
    else:
        try:
            record.figures = bench.extract(data)
        except Exception as exc:   # a reshaped JSON must not sink the other benches
            record.error = f"figures not readable: {exc!r}"
    if record.error:
        record.log_tail = tail(started.log, 30)
        log(f"  {bench.name} run {run}: {record.error}\n"
            + "\n".join("    | " + line for line in (record.log_tail or "").splitlines()))
    else:
        found = sum(1 for v in record.figures.values() if v is not None)
        log(f"  {bench.name} run {run}: exit {record.exit_code}, {record.wall_s:.0f} s, "
            f"{found} figures, load {' '.join(record.loadavg_before)} -> "
            f"{' '.join(record.loadavg_after)}")
    return record


# ---------------------------------------------------------------- the report

def section(meta: Mapping[str, Any], rows: Sequence[Row], json_name: str) -> str:
    m = meta["machine"]
    benches = ", ".join(meta["benches"])
    mode = "quick modes (a smoke test, not reference figures)" if meta["quick"] else "full modes"
    notes = [f"- `{b.name}`: {b.note}" for b in BENCHES if b.name in meta["benches"] and b.note
             and b.default]
    paragraphs = [
        "Each run is a separate process of the bench's own script (the sections below say how "
        "each figure is taken); the suite reads its JSON, interleaves the runs of the benches, "
        "and shows min / median / max over the runs. Comparisons with the reference tools are "
        "ratios taken inside one run. The verdict is the median's; `met` counts the runs that "
        "met the target. The scale model built on these figures, with the simulation of 300 "
        "and 3,000 hosts and what breaks first, is in [scale.md](scale.md).",
        "This section is generated: the suite rewrites everything between the `suite:begin` "
        "and `suite:end` markers on each run (`--no-docs` leaves it alone).",
        f"Last run: {meta['date']}, commit `{meta['commit']}`, {mode}, {meta['runs']} run(s) "
        f"of {benches}; wall time {meta['wall_s'] / 60:.0f} min. Machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, kernel {m['kernel']}, Python "
        f"{m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'not reachable'}; "
        f"load average {' '.join(meta['loadavg_before'])} before, "
        f"{' '.join(meta['loadavg_after'])} after (other sessions share the machine: "
        f"wall-clock figures are noisy). Raw figures per run: `bench/out/{json_name}`.",
    ]
    return "\n".join([
        BEGIN,
        "## The suite: `bench/suite.py`",
        "",
        "```",
        ".venv/bin/python bench/suite.py                    # every bench but bundle, 5 runs each",
        ".venv/bin/python bench/suite.py --only agent,collector --runs 5",
        ".venv/bin/python bench/suite.py --quick            # quick modes, 1 run: a smoke test",
        "```",
        "",
        *(line for text in paragraphs for line in (textwrap.fill(text, 96), "")),
        table(rows),
        *(["", *notes] if notes else []),
        END,
    ])


def write_docs(text: str, block: str) -> str:
    """`text` with the suite's block replaced, or inserted under the first `# ` heading."""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        return head + block + after
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return "".join(lines[:i + 1]) + "\n" + block + "\n" + "".join(lines[i + 1:])
    return block + "\n\n" + text


def select(only: str | None) -> list[Bench]:
    if not only:
        return [b for b in BENCHES if b.default]
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown bench {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", help="comma list of benches (see --list)")
    parser.add_argument("--runs", type=int, help="runs per bench (default 5; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="the benches' quick modes")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not rewrite the suite section of docs/benchmarks.md")
    parser.add_argument("--list", action="store_true", help="list benches and figures")
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHES:
            print(f"{b.name:11} {b.script} {' '.join(b.full_args)} | quick: "
                  f"{' '.join(b.quick_args)}{'' if b.default else '  (not in the default set)'}")
            for f in b.figures:
                print(f"    {f.label}{f'  target {f.target}' if f.target else ''}")
        return 0
    benches = select(args.only)
    runs = args.runs or (1 if args.quick else 5)
    if not 1 <= runs <= 50:
        raise SystemExit("--runs must be 1..50")

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)   # unwinds through the finally that stops the bench

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    # Started in the background of a script, the suite inherits SIGINT ignored, and so would
    # every bench (an ignored signal stays ignored across exec): with a handler here, they
    # start with the default and turn SIGINT into KeyboardInterrupt, which `interrupt` uses.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:7.1f}s] {msg}", flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = REPO / "bench" / "out"
    rundir = outdir / f"suite-{stamp}"
    rundir.mkdir(parents=True, exist_ok=True)
    json_path = outdir / f"suite-{stamp}.json"
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **git_state(),
        "machine": suite_machine(), "quick": args.quick, "runs": runs,
        "benches": [b.name for b in benches], "loadavg_before": loadavg(),
        "loadavg_after": [], "wall_s": 0.0}
    log(f"suite: {', '.join(meta['benches'])} x {runs} run(s){' (quick)' if args.quick else ''}"
        f"; commit {meta['commit']}; load {' '.join(meta['loadavg_before'])}; "
        f"logs in {rundir.relative_to(REPO)}")
    records: dict[str, list[RunRecord]] = {b.name: [] for b in benches}
    procs = Processes(rundir)

    def save() -> None:
        meta["wall_s"] = time.monotonic() - t_start
        json_path.write_text(json.dumps(
            {**meta, "runs_by_bench": {name: [vars(r) for r in rs]
                                       for name, rs in records.items()},
             "summary": [{"bench": r.bench, "figure": r.figure.key, "label": r.figure.label,
                          "values": r.values, "min": r.lo, "median": r.median, "max": r.hi,
                          "target": str(r.figure.target or ""), "met": r.met,
                          "verdict": r.verdict} for r in rows()]},
            indent=2, ensure_ascii=False, default=str))

    def rows() -> list[Row]:
        return [row for b in benches
                for row in aggregate(b, [r.figures for r in records[b.name]])]

    try:
        for run in range(1, runs + 1):
            for bench in benches:
                log(f"{bench.name} run {run}/{runs}: {bench.script} "
                    f"{' '.join(bench.quick_args if args.quick else bench.full_args)}")
                records[bench.name].append(run_once(bench, run, args.quick, procs, rundir, log))
                save()
    except BaseException as exc:   # Ctrl-C, SIGTERM: what ran so far is kept, marked so
        meta["interrupted"] = repr(exc)
        raise
    finally:
        procs.stop_all()
        meta["loadavg_after"] = loadavg()
        save()
    final = rows()
    print()
    print(f"wardwatch bench suite, {meta['date']}, commit {meta['commit']}")
    m = meta["machine"]
    print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, kernel "
          f"{m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL "
          f"{m['postgresql']}; load {' '.join(meta['loadavg_before'])} -> "
          f"{' '.join(meta['loadavg_after'])}")
    print(table(final))
    print(f"\nJSON: {json_path.relative_to(REPO)}")
    if not args.no_docs:
        DOC.write_text(write_docs(DOC.read_text(), section(meta, final, json_path.name)))
        print(f"table written to {DOC.relative_to(REPO)}")
    failed = [r for r in final if r.verdict in ("FAIL", "no data")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
