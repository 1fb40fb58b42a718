"""`wardwatch-collector demo`: the embedded default — a collector on SQLite under a data
directory plus one local agent probing this machine and pushing to it, in one process.

Everything it writes stays in the data directory (configs, the agent's token, the web UI's
first admin password, the database, the agent's spool), so a second run picks up where the
first stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

log = logging.getLogger("wardwatch.demo")

AGENT_ID = "demo-agent"
AGENT_PORT = 9810
DEMO_ADMIN = "admin"


def _collector_config(data_dir: Path, port: int) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "store": f"sqlite:///{(data_dir / 'collector.db').resolve()}",
        "timezone": "Asia/Shanghai",
        "systems": [
            {"id": "DEMO-HOST", "name": "本机主机", "core": True,
             "members": [f"{AGENT_ID}/host"], "rule": "all"},
            {"id": "DEMO-AGENT", "name": "本机监控代理", "core": False,
             "members": [f"{AGENT_ID}/agent-health", f"{AGENT_ID}/agent-port"],
             "rule": "all"},
            {"id": "DEMO-NET", "name": "本机网络", "core": False,
             "members": [f"{AGENT_ID}/loopback-ping"], "rule": "all",
             "schedule": [{"days": "mon-sat", "start": "07:30", "end": "18:00"}]},
        ],
    }


def _agent_config(data_dir: Path, collector_port: int, agent_port: int) -> dict[str, Any]:
    """An agent probing this machine: its host, its own endpoints, loopback ICMP."""
    listen = f"127.0.0.1:{agent_port}"
    return {
        "agent": {"id": AGENT_ID, "listen": listen,
                  "state_dir": str((data_dir / "agent").resolve())},
        "collector": {"url": f"http://127.0.0.1:{collector_port}",
                      "token_file": str((data_dir / "agent.token").resolve()),
                      "push_interval": "5s"},
        "defaults": {"interval": "15s", "timeout": "5s"},
        "checks": [
            {"id": "host", "kind": "host", "system": "DEMO-HOST"},
            {"id": "agent-health", "kind": "http", "system": "DEMO-AGENT",
             "url": f"http://{listen}/healthz", "json_path": "status", "json_expect": "ok"},
            {"id": "agent-port", "kind": "tcp", "system": "DEMO-AGENT",
             "host": "127.0.0.1", "port": agent_port},
            {"id": "loopback-ping", "kind": "icmp", "system": "DEMO-NET",
             "host": "127.0.0.1", "count": 3},
        ],
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text("# written by `wardwatch-collector demo`; edit freely\n"
                    + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")


async def _first_admin(config_path: Path, password_path: Path) -> None:
    """A store without users gets `admin` (role admin) with a random password, written to
    `password_path` (mode 0600) and never printed: the demo prints where it is."""
    from collector.config import load_collector_config
    from collector.store import Store, utcnow
    from collector.web.accounts import Accounts

    config = load_collector_config(config_path)
    store = await Store.open(config.store)
    try:
        accounts = Accounts(store, config.ui)
        if await accounts.users():
            return
        password = secrets.token_urlsafe(12)
        await asyncio.to_thread(_write_secret, password_path, password)
        await accounts.add_user(DEMO_ADMIN, password, "admin", utcnow())
    finally:
        await store.close()


def _write_secret(path: Path, value: str) -> None:
    path.touch(mode=0o600)
    path.write_text(value + "\n", encoding="utf-8")


async def _new_token(config_path: Path) -> str:
    """Enrol the demo agent (again, if its token file was lost) and return its token."""
    from collector.config import load_collector_config
    from collector.store import Store, utcnow

    config = load_collector_config(config_path)
    store = await Store.open(config.store)
    try:
        if any(a["id"] == AGENT_ID and a["revoked_at"] is None
               for a in await store.list_agents()):
            await store.revoke_agent(AGENT_ID, utcnow())  # token file lost: issue a new one
        token = await store.add_agent(AGENT_ID, utcnow())
    finally:
        await store.close()
    return token


def run_demo(data_dir: Path, port: int, agent_port: int = AGENT_PORT) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    collector_yaml = data_dir / "collector.yaml"
    agent_yaml = data_dir / "agent.yaml"
    if not collector_yaml.exists():
        _write(collector_yaml, _collector_config(data_dir, port))
    if not agent_yaml.exists():
        _write(agent_yaml, _agent_config(data_dir, port, agent_port))
    password_path = (data_dir / "admin.password").resolve()
    asyncio.run(_first_admin(collector_yaml, password_path))
    token_path = data_dir / "agent.token"
    if not token_path.is_file():
        token = asyncio.run(_new_token(collector_yaml))
        token_path.write_text(token + "\n", encoding="utf-8")
        os.chmod(token_path, 0o600)
    return asyncio.run(_run(collector_yaml, agent_yaml, password_path))


async def _run(collector_yaml: Path, agent_yaml: Path, password_path: Path) -> int:
    from agent.app import create_app as create_agent_app
    from agent.config import load_agent_config
    from collector.__main__ import serve
    from collector.config import load_collector_config

    collector_config = load_collector_config(collector_yaml)
    agent_config = load_agent_config(agent_yaml)
    stop, ready, shutdown = asyncio.Event(), asyncio.Event(), asyncio.Event()
    collector_task = asyncio.create_task(serve(collector_config, ready=ready, stop=stop))
    await ready.wait()
    agent_runner = web.AppRunner(create_agent_app(agent_config), handle_signals=False,
                                 access_log=None)
    await agent_runner.setup()
    host, agent_port = agent_config.agent.host_port
    try:
        await web.TCPSite(agent_runner, host, agent_port).start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", agent_config.agent.listen, exc.strerror or exc)
        stop.set()
        await agent_runner.cleanup()
        await collector_task
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, shutdown.set)
    base = f"http://{collector_config.listen}"
    print(f"""
wardwatch demo is running (Ctrl-C stops it); data in {collector_yaml.parent}
  web UI        {base}/   (user {DEMO_ADMIN}, password in {password_path})
  systems       {base}/api/v1/systems
  availability  {base}/api/v1/availability?system=DEMO-HOST
  collector     {base}/metrics   {base}/healthz
  agent         http://{agent_config.agent.listen}/metrics
""", flush=True)
    await shutdown.wait()
    # the agent first: its last results are spooled and pushed while the collector still serves
    await agent_runner.cleanup()
    stop.set()
    return await collector_task
