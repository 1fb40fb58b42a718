"""`wardwatch-collector incidents …` on a real store: list, ack, show, and a clear error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import yaml

from collector.calendar import HolidayCalendar
from collector.config import parse_collector_config
from collector.incidents import IncidentService
from collector.store import Store, utcnow
from collector.systems import Systems
from probes.result import CheckResult, Status


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=60, check=False)


async def test_incidents_cli(tmp_path: Path) -> None:
    data = {"store": f"sqlite:///{tmp_path}/c.db",
            "systems": [{"id": "PACS", "name": "影像", "core": True, "members": ["p1/*"]}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    config = parse_collector_config(data)
    store = await Store.open(config.store)
    calendar = HolidayCalendar.load(None)
    service = IncidentService(config, store, Systems(config, store, calendar), calendar)
    now = utcnow()
    await store.ingest("p1", [
        CheckResult(agent_id="p1", check_id="dicom", kind="tcp", status=Status.CRITICAL,
                    reason="connect_refused", started_at=now - timedelta(seconds=20 - 10 * i),
                    duration_s=0.01, interval_s=10, summary="104 refused")
        for i in range(2)], now)
    [opened] = await service.evaluate(now)
    await store.close()
    number = opened.incident.number
    conf = ["--config", str(tmp_path / "c.yaml")]

    listed = await asyncio.to_thread(cli, "incidents", "list", "--state", "open", *conf)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout.splitlines()[0])["number"] == number
    acked = await asyncio.to_thread(cli, "incidents", "ack", number, "--by", "王工",
                                    "--note", "远程处理中", *conf)
    assert acked.returncode == 0 and json.loads(acked.stdout)["responded_by"] == "王工"
    shown = await asyncio.to_thread(cli, "incidents", "show", number, *conf)
    timeline = json.loads(shown.stdout)["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "acknowledged"]
    assert timeline[1]["note"] == "远程处理中"
    closing = await asyncio.to_thread(cli, "incidents", "close", number, "--by", "x", *conf)
    assert closing.returncode == 1 and "still open: recover it first" in closing.stderr
    bad = await asyncio.to_thread(cli, "incidents", "show", "INC-x", *conf)
    assert bad.returncode == 1 and "is not an incident id" in bad.stderr
