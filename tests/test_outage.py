"""End to end with real processes: an agent keeps probing while its collector is down; when
the collector returns, every result arrives, in order, none twice, and the state intervals
show no hole for the outage."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import yaml

from tests.services import free_port, start_module, stop_group, wait_for_port

INTERVAL = 0.5


def test_collector_outage_loses_nothing(tmp_path: Path) -> None:
    collector_port, agent_port = free_port(), free_port()
    db = tmp_path / "collector.db"
    collector_yaml = tmp_path / "collector.yaml"
    collector_yaml.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{collector_port}", "store": f"sqlite:///{db}"}))
    token = subprocess.run([sys.executable, "-m", "collector", "agents", "add", "a1",
                            "--config", str(collector_yaml)], capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    (tmp_path / "token").write_text(token)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(yaml.safe_dump({
        "agent": {"id": "a1", "listen": f"127.0.0.1:{agent_port}",
                  "state_dir": str(tmp_path / "state")},
        "collector": {"url": f"http://127.0.0.1:{collector_port}",
                      "token_file": str(tmp_path / "token"), "push_interval": 0.2},
        "checks": [{"id": f"c{i}", "kind": "tcp", "host": "127.0.0.1", "port": agent_port,
                    "interval": INTERVAL, "timeout": 0.4} for i in range(5)]}))
    log = tmp_path / "processes.log"
    collector = start_module(["collector", "run", "--config", str(collector_yaml)], log)
    agent = start_module(["agent", "run", "--config", str(agent_yaml)], log)
    try:
        wait_for_port(collector_port)
        wait_for_port(agent_port)
        time.sleep(2)   # results flow
        stop_group(collector, signal.SIGKILL)
        time.sleep(4)   # the outage: ~40 results wait in the agent's spool
        collector = start_module(["collector", "run", "--config", str(collector_yaml)], log)
        wait_for_port(collector_port)
        time.sleep(2)   # the spool drains, new results flow
        stop_group(agent)     # graceful: the last results are pushed
    finally:
        stop_group(agent, signal.SIGKILL)
        stop_group(collector)

    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT check_id, started_at FROM results ORDER BY started_at"
                            ).fetchall()
        distinct = conn.execute("SELECT COUNT(DISTINCT id) FROM results").fetchone()[0]
        intervals = conn.execute("SELECT check_id, COUNT(*) FROM check_intervals "
                                 "GROUP BY check_id").fetchall()
    assert distinct == len(rows)
    from datetime import datetime

    by_check: dict[str, list[datetime]] = {}
    for check_id, started in rows:
        by_check.setdefault(check_id, []).append(datetime.fromisoformat(started))
    assert sorted(by_check) == [f"c{i}" for i in range(5)]
    for check_id, times in by_check.items():
        span = (times[-1] - times[0]).total_seconds()
        # one result per interval over the whole run, the outage included
        assert len(times) >= span / INTERVAL - 1, (check_id, len(times), span)
        assert len(times) >= 14, (check_id, len(times))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < timedelta(seconds=INTERVAL * 1.9), (check_id, max(gaps))
    # each check is one unbroken "ok" interval: the outage left no hole in the evidence
    assert dict(intervals) == {f"c{i}": 1 for i in range(5)}, (intervals, log.read_text())
