"""Web UI fixtures: a real collector app (SQLite in a temp dir) behind aiohttp's test server,
users of each role, and a client that logs in through the form as a browser does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import STORE_KEY, create_app, evaluate_incidents
from collector.config import parse_collector_config
from collector.store import Store, utcnow
from collector.web.accounts import Accounts
from collector.web.auth import ACCOUNTS_KEY
from probes.result import CheckResult, Status

PASSWORD = "correct horse battery"

SYSTEMS = [
    {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-01/*"]},
    {"id": "HIS", "name": "<b>HIS</b> & co", "members": ["his-01/*"]},
]


class Ui:
    """A logged-out browser-like client of one collector app."""

    def __init__(self, client: TestClient[Any, Any], app: web.Application) -> None:
        self.client = client
        self.app = app
        self.store: Store = app[STORE_KEY]
        self.accounts: Accounts = app[ACCOUNTS_KEY]

    async def login(self, name: str, password: str = PASSWORD, *, next_path: str = "/"
                    ) -> Any:
        form = await self.client.get("/login")
        token = hidden(await form.text(), "csrf_token")
        return await self.client.post("/login", data={
            "name": name, "password": password, "csrf_token": token, "next": next_path},
            allow_redirects=False)

    async def page(self, path: str, **params: str) -> tuple[int, str]:
        resp = await self.client.get(path, params=params, allow_redirects=False)
        return resp.status, await resp.text()

    async def csrf(self) -> str:
        status, text = await self.page("/")
        assert status == 200, text
        return hidden(text, "csrf_token")

    async def post(self, path: str, data: dict[str, str], *, token: str | None = None
                   ) -> Any:
        form = dict(data)
        if token is not None:
            form["csrf_token"] = token
        return await self.client.post(path, data=form, allow_redirects=False)

    async def feed(self, agent: str, status: Status, count: int, start_ago: timedelta,
                   check: str = "web") -> None:
        now = utcnow()
        start = now - start_ago
        await self.store.ingest(agent, [
            CheckResult(agent_id=agent, check_id=check, kind="tcp", status=status,
                        reason="ok" if status is Status.OK else "connect_refused",
                        started_at=start + timedelta(seconds=10 * i), duration_s=0.01,
                        interval_s=10, summary=f"{check} {status.value}")
            for i in range(count)], now)

    async def open_incident(self) -> int:
        """A level-1 incident on EMR, opened by the evaluation step from failing results."""
        await self.feed("emr-01", Status.CRITICAL, 3, timedelta(seconds=25))
        await evaluate_incidents(self.app)
        [incident] = await self.app_incidents()
        return int(incident.id)

    async def app_incidents(self) -> list[Any]:
        from collector.app import INCIDENTS_KEY

        return await self.app[INCIDENTS_KEY].find(state="open")


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no hidden {name} field in the page"
    return found.group(1)


def ui_config(tmp_path: Path, **ui: Any) -> Any:
    return parse_collector_config({"store": f"sqlite:///{tmp_path}/collector.db",
                                   "systems": SYSTEMS, "ui": ui})


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    async with TestClient(TestServer(create_app(ui_config(tmp_path, login_attempts=3)))
                          ) as client:
        app = client.server.app
        assert app is not None
        accounts = app[ACCOUNTS_KEY]
        now = utcnow()
        for name, role in (("viewer1", "viewer"), ("op1", "operator"), ("admin1", "admin")):
            await accounts.add_user(name, PASSWORD, role, now)
        yield Ui(client, app)


def at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)


VOLATILE = {("web_sessions", "last_seen")}
"""Touched by any request of a session (at most once a minute): not a state change."""


async def snapshot(store: Any) -> dict[str, list[str]]:
    """Every row of every table, as text: compared before and after a refused request."""
    import sqlalchemy as sa

    from collector.schema import metadata

    out: dict[str, list[str]] = {}
    async with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.c if (table.name, c.name) not in VOLATILE]
            rows = (await conn.execute(sa.select(*columns))).all()
            out[table.name] = sorted(repr(tuple(row)) for row in rows)
    return out
