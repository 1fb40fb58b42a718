"""The HTML form: one self-contained file (inline CSS with an A4 print stylesheet, charts as
inline SVG, no external URL), from templates/report.html.j2 and templates/report.css."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from collector.reports.catalogue import text
from collector.reports.model import ColumnType, Report, Strip
from collector.reports.precision import number_text, percent_text

CELL = 6      # px per day in the strip
HEIGHT = 14


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("collector.reports", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def display(value: Any, kind: ColumnType, lang: str, zone: ZoneInfo, key: str = "") -> str:
    """A value as people read it: hours with two decimals, percent with three, local time.
    Ratios and numbers are truncated, never rounded up (collector/reports/precision.py), so a
    figure just under a target never reads as the target."""
    if value is None:
        return text(lang, "na")
    if kind == "bool" and key == "met":
        return text(lang, "met") if value else text(lang, "not_met")
    if kind == "bool":
        return text(lang, "yes") if value else text(lang, "no")
    if kind == "ratio":
        return percent_text(value)
    if kind == "seconds":
        return f"{value / 3600:.2f}"
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "number" and isinstance(value, float):
        return number_text(value)
    return str(value)


def _colour(availability: float | None, target: float) -> str:
    if availability is None:
        return "#d0d0d0"
    if availability >= 1:
        return "#2e7d32"
    if availability >= target:
        return "#81c784"
    if availability >= 0.95:
        return "#f9a825"
    return "#c62828"


def strip_svg(strip: Strip, lang: str) -> Markup:
    """One rect per day, coloured by that day's availability; the figure in its <title>."""
    width = max(1, len(strip.days)) * CELL
    parts = [f'<svg class="strip" role="img" '
             f'width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}">',
             f"<title>{escape(strip.system)} {escape(text(lang, 'strip.title'))}</title>"]
    for i, day in enumerate(strip.days):
        figure = (text(lang, "na") if day.availability is None
                  else percent_text(day.availability))
        parts.append(
            f'<rect x="{i * CELL}" y="0" width="{CELL - 1}" height="{HEIGHT}" '
            f'fill="{_colour(day.availability, strip.target)}">'
            f"<title>{day.day.isoformat()}: {figure}, "
            f"{day.downtime_s / 3600:.2f} h</title></rect>")
    parts.append("</svg>")
    return Markup("".join(parts))


def render_html(report: Report) -> bytes:
    zone = ZoneInfo(report.timezone)
    lang = report.lang
    env = _environment()
    css = env.loader.get_source(env, "report.css")[0]  # type: ignore[union-attr]

    def show(value: Any, kind: ColumnType, key: str = "") -> str:
        return display(value, kind, lang, zone, key)

    page = env.get_template("report.html.j2").render(
        report=report, t=lambda key, **v: text(lang, key, **v), show=show,
        css=Markup(css), strips=[(s, strip_svg(s, lang)) for s in report.strips],
        period=f"{show(report.start, 'datetime')} – {show(report.end, 'datetime')}")
    return page.encode("utf-8")
