"""What the notifications say, in Chinese (default) and English, times in the hospital's zone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.message import Event, Message
from alerts.render import format_duration, level_name, render

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENED = datetime(2026, 11, 26, 1, 30, 5, tzinfo=UTC)  # 09:30:05 in Shanghai
LINK = "https://wardwatch.hospital.local/incidents/INC-2026-0042"


def message(**changes: Any) -> Message:
    base = Message(
        event=Event.OPENED, incident_id="INC-2026-0042", level=1, system_id="EMR",
        system_name="电子病历", cause="WebLogic EMR_Server2 FAILED; JDBC EMRDS waiting=37",
        opened_at=OPENED, respond_by=OPENED + timedelta(minutes=10),
        recover_by=OPENED + timedelta(minutes=30), report_by=OPENED + timedelta(hours=24),
        link=LINK)
    return dataclasses.replace(base, **changes)


def test_opened_in_chinese() -> None:
    text = render(message(), "zh-CN", SHANGHAI)

    assert text.title == "【一级故障】电子病历 EMR 故障已开启 INC-2026-0042"
    assert text.text.splitlines() == [
        "【一级故障】电子病历 EMR 故障已开启 INC-2026-0042",
        "级别：一级（紧急）",
        "系统：电子病历（EMR）",
        "原因：WebLogic EMR_Server2 FAILED; JDBC EMRDS waiting=37",
        "发生时间：2026-11-26 09:30:05",
        "响应时限：2026-11-26 09:40:05",
        "恢复时限：2026-11-26 10:00:05",
        "报告时限：2026-11-27 09:30:05",
        f"链接：{LINK}",
    ]
    assert text.markdown.split("\n\n")[:3] == [
        "### 【一级故障】电子病历 EMR 故障已开启 INC-2026-0042",
        "**级别**：一级（紧急）",
        "**系统**：电子病历（EMR）",
    ]
    assert text.markdown.endswith(f"[查看故障 INC-2026-0042]({LINK})")


def test_opened_in_english() -> None:
    text = render(message(), "en", SHANGHAI)

    assert text.title == "[Level 1 incident] 电子病历 EMR incident opened INC-2026-0042"
    lines = text.text.splitlines()
    assert "Level: Level 1 (urgent)" in lines
    assert "System: 电子病历 (EMR)" in lines
    assert "Opened: 2026-11-26 09:30:05 +0800" in lines
    assert "Respond by: 2026-11-26 09:40:05 +0800" in lines
    assert f"Link: {LINK}" in lines


def test_reminder_at_80_percent_of_the_response_time() -> None:
    msg = message(event=Event.REMINDER, deadline="respond")
    now = OPENED + timedelta(minutes=8)

    zh = render(msg, "zh-CN", SHANGHAI, now=now)
    en = render(msg, "en", SHANGHAI, now=now)

    assert zh.title == "【一级故障·提醒】电子病历 EMR INC-2026-0042 距响应时限还有 2 分钟"
    assert "提醒：距响应时限还有 2 分钟" in zh.text.splitlines()
    assert en.title == ("[Level 1 incident · reminder] 电子病历 EMR INC-2026-0042 "
                        "response deadline in 2 min")


def test_reminder_sent_late_says_the_deadline_is_reached() -> None:
    msg = message(event=Event.REMINDER, deadline="recover")
    text = render(msg, "zh-CN", SHANGHAI, now=OPENED + timedelta(minutes=31))
    assert text.title.endswith("恢复时限已到")


def test_breach() -> None:
    msg = message(event=Event.BREACH, deadline="respond")
    assert render(msg, "zh-CN", SHANGHAI).title == \
        "【一级故障·超时】电子病历 EMR INC-2026-0042 响应已超时"
    assert render(msg, "en", SHANGHAI).title == \
        "[Level 1 incident · overdue] 电子病历 EMR INC-2026-0042 response deadline missed"


def test_recovered_shows_the_outage_duration_and_note() -> None:
    msg = message(event=Event.RECOVERED, at=OPENED + timedelta(hours=1, minutes=23),
                  note="张三：重启 EMR_Server2 后恢复")
    text = render(msg, "zh-CN", SHANGHAI)

    assert text.title == "【一级故障·已恢复】电子病历 EMR INC-2026-0042 已恢复，持续 1 小时 23 分钟"
    lines = text.text.splitlines()
    assert "恢复时间：2026-11-26 10:53:05" in lines
    assert "持续时间：1 小时 23 分钟" in lines
    assert "备注：张三：重启 EMR_Server2 后恢复" in lines
    assert render(msg, "en", SHANGHAI).title.endswith("recovered after 1 h 23 min")


@pytest.mark.parametrize(("event", "zh_title_end"), [
    (Event.ACKNOWLEDGED, "INC-2026-0042 已响应"),
    (Event.CLOSED, "INC-2026-0042 已关闭"),
    (Event.ESCALATED, "INC-2026-0042 故障已升级为一级（紧急）"),
])
def test_other_events(event: Event, zh_title_end: str) -> None:
    text = render(message(event=event, at=OPENED + timedelta(minutes=4)), "zh-CN", SHANGHAI)
    assert text.title.endswith(zh_title_end)


@pytest.mark.parametrize(("level", "zh", "en"), [
    (1, "一级（紧急）", "Level 1 (urgent)"),
    (2, "二级（严重）", "Level 2 (severe)"),
    (3, "三级（一般）", "Level 3 (normal)"),
    (4, "四级（咨询）", "Level 4 (consultation)"),
])
def test_level_names(level: int, zh: str, en: str) -> None:
    assert level_name(level, "zh-CN") == zh
    assert level_name(level, "en") == en
    assert render(message(level=level), "zh-CN", SHANGHAI).title.startswith(f"【{zh[:2]}故障】")


def test_missing_deadlines_are_left_out() -> None:
    text = render(message(level=4, recover_by=None, report_by=None), "zh-CN", SHANGHAI)
    assert "恢复时限" not in text.text
    assert "报告时限" not in text.text
    assert "响应时限：2026-11-26 09:40:05" in text.text


def test_times_are_shown_in_the_configured_zone() -> None:
    late = datetime(2026, 12, 31, 16, 30, 0, tzinfo=UTC)
    text = render(message(opened_at=late, respond_by=None, recover_by=None, report_by=None),
                  "zh-CN", SHANGHAI)
    assert "发生时间：2027-01-01 00:30:00" in text.text
    assert "发生时间：2026-12-31 16:30:00" in render(
        message(opened_at=late), "zh-CN", ZoneInfo("UTC")).text


def test_cause_is_one_line_and_capped() -> None:
    cause = "ORA-12541: TNS:no listener\n" + "x" * 2000
    text = render(message(cause=cause), "zh-CN", SHANGHAI)
    [line] = [line for line in text.text.splitlines() if line.startswith("原因：")]
    value = line.removeprefix("原因：")
    assert value.startswith("ORA-12541: TNS:no listener xxx")
    assert len(value) <= 500
    assert value.endswith("…")


def test_html_is_escaped_and_only_http_links_are_kept() -> None:
    text = render(message(cause="<script>alert(1)</script>", link="javascript:alert(1)"),
                  "zh-CN", SHANGHAI)
    assert "<script>" not in text.html
    assert "&lt;script&gt;" in text.html
    assert "javascript:" not in text.html + text.markdown + text.text
    assert "<th align=\"left\">发生时间</th><td>2026-11-26 09:30:05</td>" in text.html


@pytest.mark.parametrize(("seconds", "zh", "en"), [
    (20, "不足 1 分钟", "under 1 min"),
    (115, "2 分钟", "2 min"),
    (3600, "1 小时", "1 h"),
    (3600 + 5 * 60, "1 小时 5 分钟", "1 h 5 min"),
    (2 * 86400 + 3 * 3600 + 59, "2 天 3 小时", "2 d 3 h"),
])
def test_format_duration(seconds: float, zh: str, en: str) -> None:
    assert format_duration(seconds, "zh-CN") == zh
    assert format_duration(seconds, "en") == en


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        render(message(), "fr", SHANGHAI)  # type: ignore[arg-type]
