"""An overloaded collector sheds load instead of queueing without bound: past CONCURRENT
batches in work and QUEUED waiting, a push is refused at once with 503 and Retry-After (the
agent keeps the batch); every batch that got a 200 is stored. Real app on loopback, a store
made slow for the test."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from collector import shedding
from collector.app import GATE_KEY, STORE_KEY, create_app
from collector.config import parse_collector_config
from tests.services import free_port


def batch(n: int) -> dict[str, Any]:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    return {"agent_id": "a1", "results": [
        {"id": str(uuid.uuid4()), "agent_id": "a1", "check_id": f"c{i}", "kind": "tcp",
         "status": "ok", "reason": "ok", "started_at": (t0 + timedelta(seconds=i)).isoformat(),
         "duration_s": 0.01, "interval_s": 30} for i in range(n)]}


async def test_past_its_limits_ingest_answers_503_at_once(tmp_path: Path) -> None:
    app = create_app(parse_collector_config({"store": f"sqlite:///{tmp_path}/c.db"}))
    app[GATE_KEY] = shedding.IngestGate(concurrent=2, queued=3)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        store = app[STORE_KEY]
        token = await store.add_agent("a1", datetime.now(UTC))
        real, release = store.ingest, asyncio.Event()

        async def slow(*args: Any, **kwargs: Any) -> Any:
            await release.wait()          # the store is slow: every slot stays taken
            return await real(*args, **kwargs)

        store.ingest = slow  # type: ignore[method-assign]
        url = f"http://127.0.0.1:{port}/api/v1/results"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        bodies = [batch(5) for _ in range(8)]
        async with aiohttp.ClientSession() as session:

            async def push(body: dict[str, Any]) -> tuple[int, str | None, dict[str, Any]]:
                async with session.post(url, data=json.dumps(body), headers=headers) as resp:
                    return resp.status, resp.headers.get("Retry-After"), await resp.json()

            tasks = [asyncio.create_task(push(b)) for b in bodies]
            for _ in range(100):          # until 2 in work and 3 queued
                if app[GATE_KEY].waiting == 3:
                    break
                await asyncio.sleep(0.02)
            done, _pending = await asyncio.wait(tasks, timeout=2)
            refused = [t.result() for t in done]
            assert len(refused) == 3                      # the 6th, 7th and 8th: at once
            assert all(status == 503 and retry == "5" and "busy" in reply["error"]
                       for status, retry, reply in refused), refused
            release.set()
            answers = await asyncio.gather(*tasks)
        del store.ingest
        stored = [b for b, (status, _, _) in zip(bodies, answers, strict=True) if status == 200]
        assert len(stored) == 5
        assert await store.count_results() == 5 * 5
    finally:
        await runner.cleanup()
