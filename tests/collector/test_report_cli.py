"""`wardwatch-collector report availability` and the admin commands, as a person runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from collector.store import Store
from probes.result import CheckResult, Status


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


async def seed(store_url: str, start: datetime) -> None:
    store = await Store.open(store_url)
    try:
        await store.add_agent("emr-01", start)
        await store.ingest("emr-01", [
            CheckResult(agent_id="emr-01", check_id="web", kind="http", system="EMR",
                        status=Status.CRITICAL if 30 <= m < 36 else Status.OK, reason="x",
                        started_at=start + timedelta(minutes=m), duration_s=0.1,
                        interval_s=60, summary="") for m in range(120)], start)
    finally:
        await store.close()


def test_availability_report_and_maintenance_commands(tmp_path: Path, store_url: str) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"store": store_url, "systems": [
        {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-*/web"]}]},
        allow_unicode=True))
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    asyncio.run(seed(store_url, start))
    period = ["--from", start.isoformat(), "--to", (start + timedelta(hours=2)).isoformat()]

    out = cli(config, "report", "availability", *period)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)["tables"][0]["rows"]   # the report's main table
    assert (row["system"], row["planned_s"], row["downtime_s"]) == ("EMR", 7200, 360)

    added = cli(config, "maintenance", "add", "--system", "EMR",
                "--start", (start + timedelta(minutes=30)).isoformat(),
                "--end", (start + timedelta(minutes=33)).isoformat(), "--kind", "planned",
                "--reason", "Oracle 补丁", "--approved-by", "信息科 张主任", "--by", "vendor-li")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["reason"] == "Oracle 补丁"

    csv_file = tmp_path / "availability.csv"
    out = cli(config, "report", "availability", *period, "--format", "csv", "-o", str(csv_file))
    assert out.returncode == 0, out.stderr
    [line] = list(csv.DictReader(io.StringIO(csv_file.read_text(encoding="utf-8-sig"))))
    assert (line["name"], float(line["excluded_s"]), float(line["downtime_s"])) == \
        ("电子病历", 180.0, 180.0)

    bad = cli(config, "maintenance", "add", "--system", "EMR", "--start", "2026-05-01T08:00",
              "--end", "2026-05-01T09:00", "--kind", "planned", "--reason", "x",
              "--approved-by", "y")
    assert bad.returncode == 2 and "has no UTC offset" in bad.stderr
    unknown = cli(config, "report", "availability", "--system", "NOPE")
    assert unknown.returncode == 2 and "unknown system NOPE" in unknown.stderr


def test_agents_commands_and_config_errors(tmp_path: Path, store_url: str) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"store": store_url}))
    added = cli(config, "agents", "add", "his-app-01")
    assert added.returncode == 0 and added.stdout.startswith("ww1_")
    assert "shown once" in added.stderr
    again = cli(config, "agents", "add", "his-app-01")
    assert again.returncode == 1 and "already enrolled" in again.stderr
    listed = cli(config, "agents", "list")
    assert json.loads(listed.stdout)["id"] == "his-app-01"
    assert added.stdout.strip() not in listed.stdout  # the token is never shown again
    assert cli(config, "agents", "revoke", "his-app-01").returncode == 0

    config.write_text("store: sqlite:///x.db\nsystems: [{id: EMR, rule: sometimes}]\n")
    broken = cli(config, "agents", "list")
    assert broken.returncode == 2
    assert "systems[0]: rule must be all, any" in broken.stderr
