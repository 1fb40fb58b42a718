"""A collector killed with SIGKILL mid-ingest keeps every result it acknowledged
(SQLite and PostgreSQL), and comes back on the same store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from collector.store import Store
from tests.services import free_port, wait_for_port

# recent: results older than the retention (35 days) are deleted when the collector starts
T0 = datetime.now(UTC) - timedelta(hours=1)


def collector(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "collector", *args, "--config", str(config)]


def batch(agent: str, n: int, offset: int) -> dict[str, Any]:
    return {"agent_id": agent, "results": [
        {"id": str(uuid.uuid4()), "agent_id": agent, "check_id": f"c{i % 10}", "kind": "tcp",
         "system": "EMR", "status": "ok", "reason": "ok",
         "started_at": (T0 + timedelta(seconds=offset + i)).isoformat(),
         "duration_s": 0.001, "interval_s": 30, "summary": "ok"} for i in range(n)]}


async def push_until_killed(url: str, token: str, acked: list[str], stop: asyncio.Event,
                            progress: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    offset = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            body = batch("a1", 50, offset)
            offset += 50
            try:
                async with session.post(url + "/api/v1/results", json=body,
                                        headers=headers) as resp:
                    if resp.status == 200:
                        acked.extend(r["id"] for r in body["results"])
                        progress.set()
            except (aiohttp.ClientError, OSError):
                return


async def test_sigkill_mid_ingest_loses_no_acknowledged_result(
        tmp_path: Path, store_url: str) -> None:
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "store": store_url}))
    enrol = await asyncio.to_thread(subprocess.run, collector(config, "agents", "add", "a1"),
                                    capture_output=True, text=True, timeout=60, check=True)
    token = enrol.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    for _round in range(2):  # kill, restart on the same store, kill again
        proc = await asyncio.to_thread(
            subprocess.Popen, collector(config, "run"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            await asyncio.to_thread(wait_for_port, port, "127.0.0.1", 30)
            stop, progress = asyncio.Event(), asyncio.Event()
            pusher = asyncio.gather(*(push_until_killed(url, token, acked, stop, progress)
                                      for _ in range(4)))
            before = len(acked)
            async with asyncio.timeout(30):
                while len(acked) < before + 1000:
                    progress.clear()
                    await progress.wait()
            os.killpg(proc.pid, signal.SIGKILL)  # mid-ingest: 4 pushers are busy
            stop.set()
            await pusher
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            import sqlalchemy as sa

            from collector.schema import results

            stored = set((await conn.execute(sa.select(results.c.id))).scalars())
    finally:
        await store.close()
    missing = set(acked) - stored
    assert len(acked) >= 2000
    assert not missing, f"{len(missing)} acknowledged results lost"
