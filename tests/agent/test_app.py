"""Agent HTTP: /metrics (lint-clean for promtool), /healthz, basic auth, reload."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from agent.app import AGENT_KEY, create_app
from agent.config import load_agent_config
from tests.services import free_port, needs

PROMTOOL = shutil.which("promtool")


def write_config(path: Path, checks: list[dict[str, object]], **agent: object) -> Path:
    path.write_text(yaml.safe_dump({"agent": {"id": "app-test", **agent}, "checks": checks}))
    return path


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def wait_results(app: web.Application, count: int, within: float = 5) -> None:
    agent = app[AGENT_KEY]
    arrived = asyncio.Event()
    agent.add_result_listener(lambda _result: arrived.set())
    async with asyncio.timeout(within):
        while len(agent.state.latest) < count:
            arrived.clear()
            await arrived.wait()


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def checks_for(port: int) -> list[dict[str, object]]:
    return [
        {"id": "db", "kind": "tcp", "system": "EMR", "host": "127.0.0.1", "port": port,
         "interval": "1s", "timeout": "0.5s", "labels": {"role": "oracle"}},
        {"id": "closed", "kind": "tcp", "system": "HIS", "host": "127.0.0.1",
         "port": free_port(), "interval": "1s", "timeout": "0.5s"},
    ]


async def test_metrics_render_latest_results_and_pass_promtool(
        tmp_path: Path, listener: int) -> None:
    app = create_app(load_agent_config(write_config(tmp_path / "a.yaml", checks_for(listener))))
    runner, url = await serve(app)
    try:
        await wait_results(app, 2)
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
            async with session.get(url + "/healthz") as health:
                assert (await health.json())["results"] == 2
    finally:
        await runner.cleanup()
    assert 'wardwatch_check_up{check="db",kind="tcp",role="oracle",system="EMR"} 1.0' in text
    assert 'wardwatch_check_up{check="closed",kind="tcp",system="HIS"} 0.0' in text
    assert 'wardwatch_check_status{check="closed",kind="tcp",system="HIS"} 2.0' in text
    assert 'wardwatch_tcp_connect_seconds{check="db"' in text
    assert "wardwatch_agent_resident_memory_bytes " in text
    needs(PROMTOOL is not None, "promtool (Debian package prometheus)")
    assert PROMTOOL is not None
    lint = await asyncio.to_thread(subprocess.run, [PROMTOOL, "check", "metrics"],
                                   input=text.encode(), capture_output=True, timeout=30)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


async def test_basic_auth_guards_every_endpoint(tmp_path: Path, listener: int) -> None:
    (tmp_path / "pw").write_text("correct horse\n")
    cfg = write_config(tmp_path / "a.yaml", checks_for(listener), listen="0.0.0.0:9810",
                       basic_auth={"username": "prom", "password": {"file": str(tmp_path / "pw")}})
    runner, url = await serve(create_app(load_agent_config(cfg)))
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz"):
                async with session.get(url + path) as resp:
                    assert resp.status == 401
                    assert resp.headers["WWW-Authenticate"].startswith("Basic")
                wrong = {"Authorization": aiohttp.encode_basic_auth("prom", "wrong")}
                async with session.get(url + path, headers=wrong) as resp:
                    assert resp.status == 401
                right = {"Authorization": aiohttp.encode_basic_auth("prom", "correct horse")}
                async with session.get(url + path, headers=right) as resp:
                    assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_reload_swaps_checks_and_keeps_running_config_on_error(
        tmp_path: Path, listener: int) -> None:
    path = write_config(tmp_path / "a.yaml", checks_for(listener))
    app = create_app(load_agent_config(path))
    runner, _url = await serve(app)
    agent = app[AGENT_KEY]
    try:
        await wait_results(app, 2)
        path.write_text("checks: [ {id: broken, kind: tcp} ]\n")
        assert agent.reload() is False
        assert agent.state.reload_ok is False
        assert set(agent.state.checks) == {"db", "closed"}
        write_config(path, checks_for(listener)[:1])
        assert agent.reload() is True
        assert agent.state.reload_ok is True
        assert set(agent.state.checks) == {"db"} and set(agent.state.latest) == {"db"}
    finally:
        await runner.cleanup()
