"""Agent cold start: process start to the first successful `GET /metrics`, median of N runs.

    .venv/bin/python bench/coldstart.py            # N=5
    .venv/bin/python bench/coldstart.py --runs 9

Each run starts `wardwatch-agent run` (the venv's console script, as the systemd unit and the
Windows service start it) in a fresh process with a small real config (a host check, two
tcp checks against a loopback listener, a process check), and times from just before
`Popen` to the first 200 of `GET /metrics`, polled every 5 ms over fresh connections. The
same run also records when READY=1 arrived on a NOTIFY_SOCKET opened by the bench (what
systemd waits for with Type=notify; read between polls, so it is timed to within one poll),
when /metrics first carries a result of every check (set by the scheduler's stable phase
offsets within the 30 s interval, not by start-up cost) and, for scale, the bare interpreter start
(`python -c pass`) and `import agent.__main__`. Nothing leaves loopback; every started
process is killed in a `finally` (bench/harness.py). Prints a table and writes the raw
numbers to bench/out/coldstart-TIMESTAMP.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Processes, free_port, machine, tail

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0


def agent_command() -> list[str]:
    script = Path(sys.executable).with_name("wardwatch-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent"]


def write_config(directory: Path, port: int, target_port: int) -> Path:
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "agent": {"id": "coldstart", "listen": f"127.0.0.1:{port}",
                  "state_dir": str(directory / "state")},
        "checks": [
            {"id": "host", "kind": "host", "system": "BENCH"},
            {"id": "tcp-1", "kind": "tcp", "system": "BENCH", "host": "127.0.0.1",
             "port": target_port},
            {"id": "tcp-2", "kind": "tcp", "system": "BENCH", "host": "127.0.0.1",
             "port": target_port},
            {"id": "self", "kind": "process", "system": "BENCH", "name": "python3"},
        ]}))
    return path


CHECK_IDS = ("host", "tcp-1", "tcp-2", "self")


def metrics_body(port: int) -> str | None:
    """The /metrics text on a 200, else None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        return body.decode() if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def has_every_result(body: str) -> bool:
    return all(f'wardwatch_check_status{{check="{c}"' in body for c in CHECK_IDS)


def one_run(processes: Processes, workdir: Path, index: int, target_port: int) -> dict[str, float]:
    run_dir = workdir / f"run{index}"
    run_dir.mkdir()
    port = free_port()
    config = write_config(run_dir, port, target_port)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(run_dir / "notify.sock"))
    notify.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(run_dir / "notify.sock")}
    ready_s: float | None = None

    def poll_ready() -> None:
        nonlocal ready_s
        while ready_s is None:
            try:
                datagram = notify.recv(4096)
            except BlockingIOError:
                return
            if b"READY=1" in datagram.split(b"\n"):
                ready_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    started = processes.start(f"agent{index}", [*agent_command(), "run", "--config",
                                                str(config)], env=env)
    try:
        while True:
            elapsed = time.perf_counter() - t0
            poll_ready()
            if metrics_body(port) is not None:
                first_metrics_s = time.perf_counter() - t0
                break
            if started.proc.poll() is not None or elapsed > DEADLINE_S:
                raise SystemExit(f"agent did not serve /metrics:\n{tail(started.log)}")
            time.sleep(0.005)
        # then until /metrics carries a result of every check (the host check is the slow one)
        while True:
            poll_ready()
            body = metrics_body(port)
            if body is not None and has_every_result(body):
                all_results_s = time.perf_counter() - t0
                break
            if started.proc.poll() is not None or time.perf_counter() - t0 > DEADLINE_S:
                raise SystemExit(f"agent produced no result for every check:\n"
                                 f"{tail(started.log)}")
            time.sleep(0.005)
        poll_ready()
    finally:
        processes.stop(started)
        notify.close()
    return {"first_metrics_s": first_metrics_s, "ready_s": ready_s or float("nan"),
            "all_results_s": all_results_s}


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, timeout=DEADLINE_S, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the raw numbers here instead of "
                        "bench/out/coldstart-TIMESTAMP.json (bench/suite.py reads it)")
    args = parser.parse_args()
    info = machine(command=" ".join(agent_command()))
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="wardwatch-coldstart-") as tmp, \
            socket.create_server(("127.0.0.1", 0)) as target:
        workdir = Path(tmp)
        processes = Processes(workdir)
        try:
            timed([*agent_command(), "--help"])  # warm the page cache once, not measured
            for i in range(args.runs):
                runs.append(one_run(processes, workdir, i, target.getsockname()[1]))
        finally:
            processes.stop_all()
    python_s = [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
    import_s = [timed([sys.executable, "-c", "import agent.__main__"]) for _ in range(args.runs)]
    summary = {
        "first_metrics_s": statistics.median(r["first_metrics_s"] for r in runs),
        "ready_s": statistics.median(r["ready_s"] for r in runs),
        "all_results_s": statistics.median(r["all_results_s"] for r in runs),
        "python_start_s": statistics.median(python_s),
        "import_agent_s": statistics.median(import_s),
    }
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(f"machine: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}, "
          f"load {' '.join(info['loadavg_at_start'])} -> {' '.join(info['loadavg_at_end'])}")
    print(f"{'figure':<44}{'median':>9}  runs")
    rows = [("process start -> first GET /metrics 200", "first_metrics_s",
             [r["first_metrics_s"] for r in runs]),
            ("process start -> READY=1 (sd_notify)", "ready_s", [r["ready_s"] for r in runs]),
            ("process start -> /metrics with every check", "all_results_s",
             [r["all_results_s"] for r in runs]),
            ("python -c pass", "python_start_s", python_s),
            ("python -c 'import agent.__main__'", "import_agent_s", import_s)]
    for label, key, values in rows:
        print(f"{label:<44}{summary[key] * 1000:>7.0f}ms  "
              + " ".join(f"{v * 1000:.0f}" for v in values))
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    path = args.json or out / f"coldstart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": info, "summary": summary, "runs": runs,
                                "python_start_s": python_s, "import_agent_s": import_s},
                               indent=2))
    print(f"raw numbers: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
