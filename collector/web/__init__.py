"""The collector's web UI: status board, system / host / incident / maintenance / reports
pages, users with roles, sessions with CSRF protection, and an audit log of every action.

`setup_web(app)` is the one entry point: `create_app` calls it. Server-rendered Jinja2
templates, a little vanilla JS for the board's auto-refresh and deadline countdowns, all
served by the collector (no internet at run time). docs/ui.md describes it for people.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


def setup_web(app: web.Application) -> None:
    """Add the UI's routes, its templates and (once the store is open) its services."""
    from collector.app import CONFIG_KEY, INCIDENTS_KEY, STORE_KEY, SYSTEMS_KEY
    from collector.web import auth, views
    from collector.web.accounts import Accounts
    from collector.web.board import Board
    from collector.web.render import STATIC, TEMPLATES_KEY, environment

    config = app[CONFIG_KEY]
    app[TEMPLATES_KEY] = environment(config)

    async def services(app: web.Application) -> AsyncIterator[None]:
        # after the store's own cleanup context (create_app appends it first)
        app[auth.ACCOUNTS_KEY] = Accounts(app[STORE_KEY], config.ui)
        app[views.BOARD_KEY] = Board(config, app[STORE_KEY], app[SYSTEMS_KEY],
                                     app[INCIDENTS_KEY])
        yield

    app.cleanup_ctx.append(services)
    r = app.router
    r.add_get("/login", auth.login_form)
    r.add_post("/login", auth.login)
    r.add_post("/logout", auth.logout)
    r.add_get("/", views.board_page)
    r.add_get("/ui/board.json", views.board_json)
    r.add_get("/systems/{id}", views.system_page)
    r.add_get("/hosts/{host}", views.host_page)
    r.add_get("/incidents", views.incidents_page)
    r.add_get("/incidents/{id}", views.incident_page)
    r.add_post("/incidents/{id}/{action}", views.incident_action)
    r.add_get("/maintenance", views.maintenance_page)
    r.add_post("/maintenance", views.maintenance_add)
    r.add_post("/maintenance/{id}/cancel", views.maintenance_cancel)
    r.add_get("/reports", views.reports_page)
    r.add_post("/reports", views.reports_build)
    r.add_get("/users", views.users_page)
    r.add_post("/users", views.users_add)
    r.add_post("/users/{name}/disable", views.users_disable)
    r.add_static("/ui/static", STATIC)
