"""`wardwatch-collector demo` — the README's main-job command — run for real: the collector,
the agent probing this machine, the three demo systems filled with results, and the web UI
reachable with the first admin's password, which is written to a file and never printed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
from pathlib import Path

import aiohttp

from tests.services import free_port, start_module, stop_group, wait_for_port


async def _systems(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with session.get(f"{base}/api/v1/systems") as resp:
        assert resp.status == 200
        return {s["id"]: s["state"] for s in await resp.json()}


async def _until(session: aiohttp.ClientSession, base: str, system: str,
                 wanted: set[str]) -> dict[str, str]:
    """Poll the API (bounded: 180 tries, 0.5 s apart) until `system` is in a wanted state."""
    states: dict[str, str] = {}
    for _ in range(180):
        states = await _systems(session, base)
        if states.get(system) in wanted:
            return states
        await asyncio.sleep(0.5)
    raise AssertionError(f"{system} never reached {wanted}: {states}")


async def test_demo_runs_probes_this_machine_and_serves_the_ui(tmp_path: Path) -> None:
    port, agent_port = free_port(), free_port()
    data = tmp_path / "wardwatch-data"
    log = tmp_path / "demo.log"
    proc = start_module(["collector", "demo", "--data-dir", str(data), "--port", str(port),
                         "--agent-port", str(agent_port)], log)
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_for_port, port, "127.0.0.1", 60)
        # a cookie jar that keeps cookies of an IP address (the login form's CSRF cookie)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            # this machine's own state (a full disk is "degraded"), but known
            states = await _until(session, base, "DEMO-HOST", {"up", "degraded", "down"})
            assert set(states) == {"DEMO-HOST", "DEMO-AGENT", "DEMO-NET"}
            await _until(session, base, "DEMO-AGENT", {"up"})   # the agent's own endpoints

            password_file = data / "admin.password"
            assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
            password = password_file.read_text().strip()
            async with session.get(f"{base}/login") as form:
                token = re.search(r'name="csrf_token" value="([^"]*)"', await form.text())
            assert token is not None
            async with session.post(f"{base}/login", data={
                    "name": "admin", "password": password, "csrf_token": token.group(1),
                    "next": "/"}) as resp:
                assert resp.status == 200
                board = await resp.text()
            assert "本机主机" in board and "DEMO-AGENT" in board
    finally:
        stop_group(proc, signal.SIGTERM)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert f"{base}/" in output and str(data.resolve() / "admin.password") in output
    assert password not in output   # the password is in its file only
