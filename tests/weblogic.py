"""A stand-in WebLogic admin server for tests and benches: an aiohttp app serving the REST
resources the weblogic probe reads from recorded documents (tests/probes/fixtures/weblogic/,
shaped per Oracle's 12.2.1.4 and 14.1.1 REST reference), applying the probe's search query to
them as WebLogic does, enforcing basic auth and `X-Requested-By`; tests switch it to a failed
server, stuck threads, an exhausted pool, a stopped application, 403, 404 or garbage."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "probes" / "fixtures" / "weblogic"
USER = "wardwatch-monitor"
PASSWORD = "Pa55:w0rd-EMR!"
API = "/management/weblogic/latest"
# What the REST API treats as child beans rather than fields (everything else is a field).
CHILDREN = {"serverRuntimes", "threadPoolRuntime", "JVMRuntime", "JDBCServiceRuntime",
            "JDBCDataSourceRuntimeMBeans", "applicationRuntimes", "JDBCSystemResources",
            "JDBCResource", "JDBCConnectionPoolParams"}


def load(directory: str, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / directory / f"{name}.json").read_text())
    return document


def search(node: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    """A bean tree cut to a REST search query: only `fields` (all when absent), only the
    listed `children`, collections as {"items": [...]}."""
    fields = query.get("fields")
    out = {key: value for key, value in node.items()
           if key not in CHILDREN and key not in {"links", "identity"}
           and (fields is None or key in fields)}
    for child, sub in (query.get("children") or {}).items():
        value = node.get(child)
        if isinstance(value, dict) and "items" in value:
            out[child] = {"items": [search(item, sub) for item in value["items"]]}
        elif isinstance(value, dict):
            out[child] = search(value, sub)
    return out


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]


@dataclass
class AdminServer:
    """The fake admin server's state: tests edit the documents or set `answer`."""

    url: str = ""
    lifecycle: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    answer: int | str | None = None
    """None: serve the documents; 403, 404, ...: that status; "garbage": a non-JSON 200."""
    seen: list[Seen] = field(default_factory=list)

    def use(self, directory: str) -> None:
        self.lifecycle = load(directory, "serverLifeCycleRuntimes")
        self.runtime = load(directory, "domainRuntime")
        config = FIXTURES / directory / "domainConfig.json"
        self.config = json.loads(config.read_text()) if config.exists() else {}

    def server(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [s for s in self.runtime["serverRuntimes"]["items"]
                                       if s["name"] == name]
        return found[0]

    def datasource(self, server: str, name: str) -> dict[str, Any]:
        items = self.server(server)["JDBCServiceRuntime"]["JDBCDataSourceRuntimeMBeans"]
        found: list[dict[str, Any]] = [d for d in items["items"] if d["name"] == name]
        return found[0]

    def application(self, server: str, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            a for a in self.server(server)["applicationRuntimes"]["items"] if a["name"] == name]
        return found[0]

    def set_state(self, name: str, state: str) -> None:
        """The lifecycle state; a server not RUNNING leaves serverRuntimes, as in WebLogic."""
        for item in self.lifecycle["items"]:
            if item["name"] == name:
                item["state"] = state
        if state != "RUNNING":
            servers = self.runtime["serverRuntimes"]["items"]
            self.runtime["serverRuntimes"]["items"] = [s for s in servers if s["name"] != name]


ADMIN = web.AppKey("admin", AdminServer)


def make_app(admin: AdminServer, prefix: str = "", with_search: bool = True
             ) -> web.Application:
    app = web.Application()
    app[ADMIN] = admin

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (USER, PASSWORD)

    def refused(request: web.Request) -> web.Response | None:
        state = request.app[ADMIN]
        state.seen.append(Seen(request.method, request.path_qs, dict(request.headers)))
        if state.answer == 404:  # RESTful Management Services disabled
            return web.Response(status=404, text="<html>Error 404--Not Found</html>",
                                content_type="text/html")
        if not authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="WLS"'})
        if isinstance(state.answer, int):
            return web.json_response({"status": state.answer, "detail": "refused"},
                                     status=state.answer)
        if state.answer == "garbage":
            return web.Response(text='{"items": [{"name": "AdminServer", "sta',
                                content_type="application/json")
        return None

    async def lifecycle(request: web.Request) -> web.Response:
        if (answer := refused(request)) is not None:
            return answer
        document = request.app[ADMIN].lifecycle
        if "items" not in document:  # a test serving some other shape
            return web.json_response(document)
        fields = request.query.get("fields")
        query = {"fields": fields.split(",") if fields else None}
        return web.json_response({"items": [search(item, query) for item in document["items"]]})

    def searcher(tree: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if (answer := refused(request)) is not None:
                return answer
            if "X-Requested-By" not in request.headers:
                return web.json_response({"status": 400, "detail": "X-Requested-By missing"},
                                         status=400)
            document = getattr(request.app[ADMIN], tree)
            return web.json_response(search(document, await request.json()))
        return handler

    app.router.add_get(f"{prefix}{API}/domainRuntime/serverLifeCycleRuntimes", lifecycle)
    if with_search:
        app.router.add_post(f"{prefix}{API}/domainRuntime/search", searcher("runtime"))
        app.router.add_post(f"{prefix}{API}/domainConfig/search", searcher("config"))
    return app


@contextlib.asynccontextmanager
async def serve(admin: AdminServer, prefix: str = "", tls: ssl.SSLContext | None = None,
                with_search: bool = True) -> AsyncIterator[AdminServer]:
    runner = web.AppRunner(make_app(admin, prefix, with_search))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    scheme = "https" if tls else "http"
    admin.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}{prefix}"
    try:
        yield admin
    finally:
        await runner.cleanup()


def main() -> None:
    """`python -m tests.weblogic PORT [FIXTURE]`: serve a fixture domain until killed (benches)."""
    import asyncio
    import sys

    port = int(sys.argv[1])
    admin = AdminServer()
    admin.use(sys.argv[2] if len(sys.argv) > 2 else "14.1.1")

    async def run() -> None:
        runner = web.AppRunner(make_app(admin))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
