"""What a notification says: one `Message` rendered as a title, plain text, markdown (WeCom,
DingTalk) and simple HTML (e-mail), in Chinese (default) or English, times in the hospital's
zone.

Only the message's own fields are rendered, so nothing here can carry a secret. Free text from
probes and people (`cause`, `note`) is folded onto one line and capped, because a stack trace
pasted into a cause must not bury the deadlines under it or blow the robots' size limits.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from alerts.message import Event, Message

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

CAUSE_LIMIT = 500
"""Characters of `cause` (and `note`) kept; longer text ends with `…`."""


@dataclass(frozen=True)
class RenderedText:
    title: str
    text: str
    """Plain text: the title, then one `label：value` line per fact."""
    markdown: str
    """The same for the robots' markdown (WeCom, DingTalk)."""
    html: str = ""
    """The same as a small HTML document (e-mail's text/html part)."""
    language: Language = "zh-CN"


@dataclass(frozen=True)
class _Words:
    levels: dict[int, str]
    level_tag: dict[int, str]
    event_tag: dict[Event, str]
    deadline: dict[str, str]
    colon: str
    level: str
    system: str
    cause: str
    opened: str
    by: dict[str, str]
    recovered_at: str
    duration: str
    acknowledged_at: str
    closed_at: str
    escalated_at: str
    reminder: str
    breach: str
    note: str
    link: str
    view: str
    under_a_minute: str
    units: tuple[str, str, str]
    time_format: str


_ZH = _Words(
    levels={1: "一级（紧急）", 2: "二级（严重）", 3: "三级（一般）", 4: "四级（咨询）"},
    level_tag={1: "一级故障", 2: "二级故障", 3: "三级故障", 4: "四级故障"},
    event_tag={Event.REMINDER: "提醒", Event.BREACH: "超时", Event.ESCALATED: "升级",
               Event.ACKNOWLEDGED: "已响应", Event.RECOVERED: "已恢复", Event.CLOSED: "已关闭"},
    deadline={"respond": "响应", "recover": "恢复", "report": "报告"},
    colon="：",
    level="级别",
    system="系统",
    cause="原因",
    opened="发生时间",
    by={"respond": "响应时限", "recover": "恢复时限", "report": "报告时限"},
    recovered_at="恢复时间",
    duration="持续时间",
    acknowledged_at="响应时间",
    closed_at="关闭时间",
    escalated_at="升级时间",
    reminder="提醒",
    breach="超时",
    note="备注",
    link="链接",
    view="查看故障",
    under_a_minute="不足 1 分钟",
    units=("天", "小时", "分钟"),
    time_format="%Y-%m-%d %H:%M:%S",
)

_EN = _Words(
    levels={1: "Level 1 (urgent)", 2: "Level 2 (severe)", 3: "Level 3 (normal)",
            4: "Level 4 (consultation)"},
    level_tag={1: "Level 1 incident", 2: "Level 2 incident", 3: "Level 3 incident",
               4: "Level 4 incident"},
    event_tag={Event.REMINDER: "reminder", Event.BREACH: "overdue", Event.ESCALATED: "escalated",
               Event.ACKNOWLEDGED: "acknowledged", Event.RECOVERED: "recovered",
               Event.CLOSED: "closed"},
    deadline={"respond": "response", "recover": "recovery", "report": "report"},
    colon=": ",
    level="Level",
    system="System",
    cause="Cause",
    opened="Opened",
    by={"respond": "Respond by", "recover": "Recover by", "report": "Report by"},
    recovered_at="Recovered",
    duration="Duration",
    acknowledged_at="Acknowledged",
    closed_at="Closed",
    escalated_at="Escalated",
    reminder="Reminder",
    breach="Overdue",
    note="Note",
    link="Link",
    view="Open incident",
    under_a_minute="under 1 min",
    units=("d", "h", "min"),
    time_format="%Y-%m-%d %H:%M:%S %z",
)

_WORDS: dict[str, _Words] = {"zh-CN": _ZH, "en": _EN}
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]+")


def one_line(value: str, limit: int = CAUSE_LIMIT) -> str:
    """Whitespace and control characters folded to single spaces, cut to `limit` characters."""
    flat = _CONTROL.sub(" ", value).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def format_duration(seconds: float, language: Language = "zh-CN") -> str:
    """`2 分钟`, `1 小时 5 分钟`, `2 天 3 小时` (en: `2 min`, `1 h 5 min`, `2 d 3 h`).

    Rounded to the nearest minute; the two largest units only.
    """
    words = _words(language)
    minutes = math.floor(max(seconds, 0.0) / 60.0 + 0.5)
    if minutes < 1:
        return words.under_a_minute
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    day_unit, hour_unit, minute_unit = words.units
    parts = [(days, day_unit), (hours, hour_unit), (mins, minute_unit)]
    while parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n} {unit}" for n, unit in parts[:2] if n)


def format_time(value: datetime, zone: ZoneInfo, language: Language = "zh-CN") -> str:
    """`2026-11-26 09:30:05` in `zone` (English adds the UTC offset). Naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime(_words(language).time_format)


def level_name(level: int, language: Language = "zh-CN") -> str:
    """一级（紧急） … 四级（咨询）; a level outside 1..4 is shown as its number."""
    words = _words(language)
    return words.levels.get(level, f"{level} 级" if language == "zh-CN" else f"Level {level}")


def render(message: Message, language: Language, zone: ZoneInfo,
           now: datetime | None = None) -> RenderedText:
    """The title and bodies for `message`.

    `now` (aware; default the current time) is what a reminder counts the time left from and
    what a recovery without `message.at` measures the outage to.
    """
    words = _words(language)
    now = _aware(now) if now is not None else datetime.now(UTC)
    title = _title(message, words, language, zone, now)
    facts = _facts(message, words, language, zone, now)
    link = _safe_link(message.link)

    text_lines = [title, *(f"{label}{words.colon}{value}" for label, value in facts)]
    if link:
        text_lines.append(f"{words.link}{words.colon}{link}")

    # Robots' markdown: blank lines between facts, because DingTalk joins single-newline lines.
    md_lines = [f"### {title}", *(f"**{label}**{words.colon}{value}" for label, value in facts)]
    if link:
        md_lines.append(f"[{words.view} {one_line(message.incident_id, 64)}]({link})")

    rows = "".join(f'<tr><th align="left">{html.escape(label)}</th>'
                   f"<td>{html.escape(value)}</td></tr>" for label, value in facts)
    link_html = (f'<p><a href="{html.escape(link)}">{html.escape(words.view)} '
                 f"{html.escape(message.incident_id)}</a></p>") if link else ""
    lang_attr = "zh-CN" if language == "zh-CN" else "en"
    document = (f'<!DOCTYPE html><html lang="{lang_attr}"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title></head><body>"
                f"<h3>{html.escape(title)}</h3><table>{rows}</table>{link_html}</body></html>")
    return RenderedText(title=title, text="\n".join(text_lines),
                        markdown="\n\n".join(md_lines), html=document, language=language)


def _words(language: str) -> _Words:
    try:
        return _WORDS[language]
    except KeyError:
        raise ValueError(f"unknown language {language!r}; use one of {LANGUAGES}") from None


def _title(message: Message, words: _Words, language: Language, zone: ZoneInfo,
           now: datetime) -> str:
    tag = words.level_tag.get(message.level, level_name(message.level, language))
    if message.event in words.event_tag:
        tag += "·" + words.event_tag[message.event]
    prefix = f"【{tag}】" if language == "zh-CN" else f"[{tag.replace('·', ' · ')}]"
    system = one_line(f"{message.system_name} {message.system_id}", 200)
    incident = one_line(message.incident_id, 64)
    if message.event is Event.OPENED:
        opened = "故障已开启" if language == "zh-CN" else "incident opened"
        return f"{prefix}{system} {opened} {incident}" if language == "zh-CN" else (
            f"{prefix} {system} {opened} {incident}")
    phrase = _phrase(message, words, language, now)
    sep = "" if language == "zh-CN" else " "
    return f"{prefix}{sep}{system} {incident} {phrase}"


def _phrase(message: Message, words: _Words, language: Language, now: datetime) -> str:
    zh = language == "zh-CN"
    which = words.deadline.get(message.deadline or "", message.deadline or "")
    match message.event:
        case Event.REMINDER:
            due = message.deadline_time()
            if due is None:
                return f"{which}时限将到" if zh else f"{which} deadline approaching"
            left = (_aware(due) - now).total_seconds()
            if left <= 0:
                return f"{which}时限已到" if zh else f"{which} deadline reached"
            span = format_duration(left, language)
            return f"距{which}时限还有 {span}" if zh else f"{which} deadline in {span}"
        case Event.BREACH:
            return f"{which}已超时" if zh else f"{which} deadline missed"
        case Event.ESCALATED:
            level = level_name(message.level, language)
            return f"故障已升级为{level}" if zh else f"escalated to {level}"
        case Event.ACKNOWLEDGED:
            return "已响应" if zh else "acknowledged"
        case Event.RECOVERED:
            span = format_duration(_outage_seconds(message, now), language)
            return f"已恢复，持续 {span}" if zh else f"recovered after {span}"
        case Event.CLOSED:
            return "已关闭" if zh else "closed"
        case _:
            return str(message.event)


def _facts(message: Message, words: _Words, language: Language, zone: ZoneInfo,
           now: datetime) -> list[tuple[str, str]]:
    def when(value: datetime) -> str:
        return format_time(value, zone, language)

    facts = [
        (words.level, level_name(message.level, language)),
        (words.system, one_line(f"{message.system_name}（{message.system_id}）"
                                if language == "zh-CN"
                                else f"{message.system_name} ({message.system_id})", 200)),
        (words.cause, one_line(message.cause)),
        (words.opened, when(message.opened_at)),
    ]
    for key, due in (("respond", message.respond_by), ("recover", message.recover_by),
                     ("report", message.report_by)):
        if due is not None:
            facts.append((words.by[key], when(due)))
    if message.event in (Event.REMINDER, Event.BREACH):
        label = words.reminder if message.event is Event.REMINDER else words.breach
        facts.append((label, _phrase(message, words, language, now)))
    at = message.at
    if message.event is Event.RECOVERED:
        facts.append((words.recovered_at, when(at or now)))
        facts.append((words.duration, format_duration(_outage_seconds(message, now), language)))
    elif at is not None:
        at_label = {Event.ACKNOWLEDGED: words.acknowledged_at, Event.CLOSED: words.closed_at,
                    Event.ESCALATED: words.escalated_at}.get(message.event)
        if at_label:
            facts.append((at_label, when(at)))
    if message.note:
        facts.append((words.note, one_line(message.note)))
    return facts


def _outage_seconds(message: Message, now: datetime) -> float:
    return (_aware(message.at or now) - _aware(message.opened_at)).total_seconds()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _safe_link(link: str | None) -> str | None:
    """Only http(s) links, with the characters that would end a markdown link escaped."""
    if not link:
        return None
    link = link.strip()
    if not re.match(r"^https?://[^\s]+$", link, re.IGNORECASE):
        return None
    return link.replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")
