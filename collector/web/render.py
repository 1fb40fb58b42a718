"""Jinja2 templates of the web UI: one environment per app, autoescaping everything (user
content such as notes, causes and reasons is shown as text, never as markup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from collector.config import CollectorConfig
from collector.reports.precision import percent_text
from collector.web.i18n import duration, local_time

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

TEMPLATES_KEY = web.AppKey("web_templates", jinja2.Environment)

SECURITY_HEADERS = {
    # everything the pages use is served by the collector itself; no inline script
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; frame-ancestors 'none'; "
                                "form-action 'self'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment(config: CollectorConfig) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    zone = config.zone
    env.filters["local"] = lambda value, seconds=False: local_time(value, zone, seconds)
    env.filters["duration"] = duration
    env.filters["percent"] = _percent
    env.globals["zone_name"] = config.timezone
    return env


def _percent(value: float | None, digits: int = 3) -> str:
    # truncated like the reports: a system one second short of 99.5 % never reads "99.500 %"
    return "—" if value is None else percent_text(value, digits)


def render(request: web.Request, name: str, context: dict[str, Any], status: int = 200
           ) -> web.Response:
    text = request.app[TEMPLATES_KEY].get_template(name).render(**context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)
