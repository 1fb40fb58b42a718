"""The agent's aiohttp application: the scheduler as a cleanup_ctx, /metrics and /healthz.

`create_app(config)` is the only way in; `agent.__main__` runs it and wires signals. The app
owns every resource under a typed AppKey and releases it on shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.config import AgentConfig, load_agent_config
from agent.metrics import create_registry
from agent.scheduler import Scheduler
from agent.state import AgentState
from probes.config import ConfigError
from probes.result import CheckResult

if TYPE_CHECKING:
    from agent.push import Pusher, PushSnapshot
    from agent.spool import Spool

log = logging.getLogger("wardwatch.agent")


def agent_version() -> str:
    try:
        return version("wardwatch")
    except PackageNotFoundError:
        return "0+unknown"


class Agent:
    """Config, state and scheduler of one running agent; `reload` swaps the config whole."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state = AgentState(agent_id=config.agent.id)
        self.state.set_checks(config.checks)
        self.registry: CollectorRegistry = create_registry(self.state, agent_version(),
                                                           push=self._push_snapshot)
        self._scheduler: Scheduler | None = None
        self._result_listeners: list[Callable[[CheckResult], None]] = []
        self.pusher: Pusher | None = None
        self._spool: Spool | None = None

    def add_result_listener(self, listener: Callable[[CheckResult], None]) -> None:
        self._result_listeners.append(listener)

    def _record(self, result: CheckResult, lag_s: float) -> None:
        self.state.record(result, lag_s)
        for listener in self._result_listeners:
            listener(result)

    def _push_snapshot(self) -> PushSnapshot | None:
        return self.pusher.snapshot() if self.pusher is not None else None

    async def start(self) -> None:
        collector = self.config.collector
        if collector is not None:
            # imported here: an agent without a collector does not load the push machinery
            from agent.push import Pusher
            from agent.spool import Spool

            # before the scheduler, so no result is produced without a listener to spool it
            self._spool = await asyncio.to_thread(
                Spool, self.config.agent.state_dir / "spool", collector.spool_max_bytes)
            self.pusher = Pusher(collector, self.config.agent.id, self._spool,
                                 request_timeout=collector.timeout)
            self.add_result_listener(self.pusher.add)
            await self.pusher.start()
        self._scheduler = Scheduler(self.config.agent.id, self._record)
        counts = self._scheduler.apply(self.config.checks)
        log.info("agent %s started with %d checks", self.config.agent.id, counts["started"])

    async def stop(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.stop()
            self._scheduler = None
        # after the scheduler: the last results are queued, then spooled, then flushed
        if self.pusher is not None:
            await self.pusher.stop()
            self._result_listeners.remove(self.pusher.add)
            self.pusher = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def reload(self) -> bool:
        """Re-read the config file; on error keep the running config and say why."""
        try:
            new = load_agent_config(self.config.source)
        except ConfigError as exc:
            self.state.reload_ok = False
            log.error("reload failed, keeping the running configuration: %s", exc)
            return False
        for section in ("agent", "collector"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning("the %s section changed; it takes effect after a restart", section)
        self.config = AgentConfig(agent=self.config.agent, collector=self.config.collector,
                                  defaults=new.defaults, checks=new.checks, source=new.source)
        self.state.set_checks(new.checks)
        counts = self._scheduler.apply(new.checks) if self._scheduler else {}
        self.state.reload_ok = True
        self.state.reload_success_at = time.time()
        log.info("configuration reloaded: %s", counts)
        return True


AGENT_KEY = web.AppKey("agent", Agent)

# The classic text format, which every Prometheus release scrapes; our names are all
# legacy-valid, so generate_latest's output is exactly this format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(config: AgentConfig) -> web.Application:
    agent = Agent(config)
    middlewares = []
    if config.agent.basic_auth is not None:
        middlewares.append(_basic_auth(config.agent.basic_auth.username,
                                       config.agent.basic_auth.password.get()))
    app = web.Application(middlewares=middlewares)
    app[AGENT_KEY] = agent
    app.cleanup_ctx.append(_running_agent)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


async def _running_agent(app: web.Application) -> AsyncIterator[None]:
    agent = app[AGENT_KEY]
    await agent.start()
    yield
    await agent.stop()


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[AGENT_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[AGENT_KEY].state
    return web.json_response({
        "status": "ok",
        "agent_id": state.agent_id,
        "checks": len(state.checks),
        "results": len(state.latest),
        "config_reload_ok": state.reload_ok,
    })


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _basic_auth(username: str, password: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"{username}:{password}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="wardwatch"'})
        return await handler(request)

    return middleware
