"""End to end on loopback: a real agent process probes a port that refuses, pushes to a
collector; the collector confirms the fault, opens a level-1 incident and notifies a webhook
receiver and a real SMTP server (aiosmtpd); then the collector restarts and keeps the
incident, its clocks and its pending reminder, which it sends when due.

Also measured here: the time from the first failing result to the webhook delivery (the
issue's target: at most 2 s beyond the confirmation)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.services import free_port, start_module, stop_group, wait_for_port

INTERVAL = 0.5


@dataclass
class Inbox:
    posts: list[dict[str, Any]] = field(default_factory=list)
    mails: list[email.message.EmailMessage] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class _Smtp:
    def __init__(self, inbox: Inbox, loop: asyncio.AbstractEventLoop) -> None:
        self.inbox = inbox
        self.loop = loop

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.inbox.mails.append(parsed)  # type: ignore[arg-type]
        self.loop.call_soon_threadsafe(self.inbox.arrived.set)
        return "250 OK"


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int, int]]:
    box = Inbox()

    async def hook(request: web.Request) -> web.Response:
        box.posts.append({**await request.json(), "_received": time.time()})
        box.arrived.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    web_port, smtp_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()
    controller = Controller(_Smtp(box, asyncio.get_running_loop()), hostname="127.0.0.1",
                            port=smtp_port)
    await asyncio.to_thread(controller.start)
    try:
        yield box, web_port, smtp_port
    finally:
        await asyncio.to_thread(controller.stop)
        await runner.cleanup()


async def settled(port: int, incident_id: int, count: int) -> None:
    """Until `count` notifications of the incident are recorded as sent (bounded)."""
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/incidents/{incident_id}"
                                   ) as resp:
                shown = await resp.json()
            if sum(n["state"] == "sent" for n in shown["notifications"]) >= count:
                return
            await asyncio.sleep(0.1)


async def until(box: Inbox, predicate: Any, within: float) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            box.arrived.clear()
            await box.arrived.wait()


async def test_fault_to_webhook_and_mail_and_a_restart_keeps_the_reminder(
        tmp_path: Path, inbox: tuple[Inbox, int, int]) -> None:
    box, web_port, smtp_port = inbox
    collector_port, agent_port = free_port(), free_port()
    refused = free_port()
    db = tmp_path / "collector.db"
    collector_yaml = tmp_path / "collector.yaml"
    collector_yaml.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{collector_port}", "store": f"sqlite:///{db}",
        "public_url": "https://wardwatch.hospital.local",
        "systems": [{"id": "EMR", "name": "电子病历", "core": True, "members": ["a1/*"]}],
        "incidents": {"confirm": {"results": 2, "duration": "60s"}, "evaluate_every": "1s",
                      # respond in 12 s, so the 80 % reminder falls due while we watch
                      "deadlines": {1: {"respond": "12s"}}},
        "channels": [
            {"name": "itsm", "type": "webhook", "url": f"http://127.0.0.1:{web_port}/hook",
             "retries": 0},
            {"name": "duty-mail", "type": "email", "host": "127.0.0.1", "port": smtp_port,
             "security": "none", "sender": "wardwatch@hospital.local",
             "to": ["duty@hospital.local"], "events": ["opened"], "retries": 0}]},
        allow_unicode=True))
    token = (await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "collector", "agents", "add", "a1", "--config",
                         str(collector_yaml)], capture_output=True, text=True, check=True,
        timeout=60)).stdout.strip()
    (tmp_path / "token").write_text(token)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(yaml.safe_dump({
        "agent": {"id": "a1", "listen": f"127.0.0.1:{agent_port}",
                  "state_dir": str(tmp_path / "state")},
        "collector": {"url": f"http://127.0.0.1:{collector_port}",
                      "token_file": str(tmp_path / "token"), "push_interval": 0.1},
        "checks": [{"id": "web", "kind": "tcp", "host": "127.0.0.1", "port": refused,
                    "interval": INTERVAL, "timeout": 0.4}]}))
    log = tmp_path / "processes.log"
    collector = start_module(["collector", "run", "--config", str(collector_yaml)], log)
    agent = start_module(["agent", "run", "--config", str(agent_yaml)], log)
    try:
        await asyncio.to_thread(wait_for_port, collector_port)
        await until(box, lambda: any(p["event"] == "opened" for p in box.posts)
                    and box.mails, within=30)
        opened = next(p for p in box.posts if p["event"] == "opened")
        assert opened["level"] == 1 and opened["system_id"] == "EMR"
        assert opened["system_name"] == "电子病历"
        assert opened["link"].startswith("https://wardwatch.hospital.local/incidents/")
        assert "refused" in opened["cause"]
        [mail] = box.mails
        assert mail["To"] == "duty@hospital.local"
        assert "【一级故障】" in str(mail["Subject"]) and "电子病历" in str(mail["Subject"])

        # the delay: first failing result -> webhook received, beyond the confirmation
        first_failure = datetime.fromisoformat(opened["opened_at"]).timestamp()
        confirmed_at = first_failure + INTERVAL   # the second failing result confirms
        delay = opened["_received"] - confirmed_at
        print(f"\nnotification delay beyond confirmation: {delay:.2f} s")
        # the figure (target <= 2 s) is recorded in docs/benchmarks.md from an idle machine;
        # the test holds the path to "at once", well before the 5 s and 60 s rounds, so a
        # loaded CI machine does not make it flaky
        assert delay <= 4.0, delay

        # once the deliveries are recorded, the collector dies before the reminder (80 % of
        # 12 s) is due, and comes back
        incident_id = int(opened["link"].rsplit("/", 1)[1])
        await settled(collector_port, incident_id, 2)
        stop_group(collector, signal.SIGKILL)
        collector = start_module(["collector", "run", "--config", str(collector_yaml)], log)
        await asyncio.to_thread(wait_for_port, collector_port)
        await until(box, lambda: any(p["event"] == "reminder" for p in box.posts), within=30)
        reminder = next(p for p in box.posts if p["event"] == "reminder")
        assert reminder["incident_id"] == opened["incident_id"]
        assert reminder["deadline"] == "respond"
        await until(box, lambda: any(p["event"] == "breach" for p in box.posts), within=30)
    finally:
        stop_group(agent)
        stop_group(collector)
        print(log.read_text()[-3000:])
    # one incident, the same after the restart; each message once
    events = [p["event"] for p in box.posts]
    assert events.count("opened") == 1 and events.count("reminder") == 1
    assert events.count("breach") == 1
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 1
        states = dict(conn.execute("SELECT channel || ':' || event, state FROM notifications"
                                   ).fetchall())
    assert states["itsm:opened"] == "sent" and states["duty-mail:opened"] == "sent"
    assert json.dumps(box.posts).count(token) == 0
