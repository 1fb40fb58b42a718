"""Offline bundle figures: archive size per platform, install time from the bundle on this
machine, and the installed agent's cold start to its first /metrics with a result.

    .venv/bin/python bench/bundle.py             # builds x86_64, aarch64, win_amd64 (needs PyPI)
    .venv/bin/python bench/bundle.py --runs 3    # install timed 3 times (fresh prefix each)

1. Size     each platform's archive as deploy/bundle/build.py writes it (wheel cache reused).
2. Install  wall time of install.sh into a fresh temp prefix (venv creation + pip from the
            wheelhouse, offline: no index, proxies at a closed port), then of a re-run onto
            the same prefix (the in-place upgrade path).
3. Start    from exec of `wardwatch-agent run` (the installed venv, one host check) to the
            first /metrics body that carries the host check's result.
Results: a table on stdout and bench/out/bundle-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.deploy.test_bundle import offline_env  # noqa: E402  (the test's offline setup)
from tests.services import free_port  # noqa: E402


def build(platforms: list[str], out: Path) -> list[dict[str, object]]:
    args = [sys.executable, str(ROOT / "deploy" / "bundle" / "build.py"), "--out", str(out),
            "--json"]
    for name in platforms:
        args += ["--platform", name]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    reports: list[dict[str, object]] = json.loads(proc.stdout)
    return reports


def timed_install(bundle: Path, base: Path) -> tuple[float, float]:
    layout = ["--prefix", str(base / "opt"), "--config-dir", str(base / "etc"),
              "--state-dir", str(base / "state"), "--no-user", "--no-service"]
    times = []
    for _ in range(2):      # fresh, then the in-place re-run
        started = time.monotonic()
        subprocess.run(["bash", str(bundle / "install.sh"), *layout], check=True,
                       capture_output=True, env=offline_env())
        times.append(time.monotonic() - started)
    return times[0], times[1]


def cold_start(base: Path) -> float:
    config = base / "etc" / "agent.yaml"
    port = free_port()
    config.write_text(re.sub(r"listen: 127\.0\.0\.1:\d+", f"listen: 127.0.0.1:{port}",
                             config.read_text()))
    started = time.monotonic()
    proc = subprocess.Popen([str(base / "opt" / "bin" / "wardwatch-agent"), "run", "--config",
                             str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and time.monotonic() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as response:
                    if 'wardwatch_check_up{check="host"' in response.read().decode():
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("the installed agent served no host result")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--platform", action="append",
                        default=None, help="default: all three")
    parser.add_argument("--json", type=Path, help="write the figures here instead of "
                        "bench/out/bundle-TIMESTAMP.json (bench/suite.py reads it)")
    args = parser.parse_args()
    platforms = args.platform or ["linux-x86_64", "linux-aarch64", "windows-amd64"]
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-bundle-") as tmp:
        work = Path(tmp)
        reports = build(platforms, work / "bundles")
        local = next(r for r in reports if r["platform"] == "linux-x86_64")
        with tarfile.open(str(local["archive"])) as tf:
            tf.extractall(work / "unpacked", filter="data")
        [bundle] = list((work / "unpacked").iterdir())
        fresh, rerun, starts = [], [], []
        for run in range(args.runs):
            base = work / f"run{run}"
            first, second = timed_install(bundle, base)
            fresh.append(first)
            rerun.append(second)
            starts.append(cold_start(base))
    load = os.getloadavg()
    bundles = [{k: r[k] for k in ("platform", "archive_bytes", "wheel_count",
                                  "wheelhouse_bytes", "cache_hit", "seconds")}
               for r in reports]
    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "nproc": os.cpu_count(),
        "load_average": load,
        "python": sys.version.split()[0],
        "bundles": bundles,
        "install_fresh_s": fresh, "install_rerun_s": rerun, "cold_start_s": starts,
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (args.json or out / f"bundle-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(figures, indent=2) + "\n")
    print("| platform | archive | wheels |")
    print("|---|---:|---:|")
    for r in bundles:
        print(f"| {r['platform']} | {int(str(r['archive_bytes'])) / 1e6:.1f} MB "
              f"| {r['wheel_count']} |")
    print(f"install (fresh prefix) median {statistics.median(fresh):.1f} s over {len(fresh)}; "
          f"re-run {statistics.median(rerun):.1f} s; cold start to first /metrics with a "
          f"result {statistics.median(starts):.2f} s; nproc {figures['nproc']}, load "
          + " ".join(f"{x:.2f}" for x in load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
