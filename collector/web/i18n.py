"""The UI's words in Chinese (the default, what the hospital's staff read) and English.

One table: key -> (zh-CN, en). A missing key is a bug the tests catch (every template is
rendered in both languages and `Translator` raises on an unknown key)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo

LANGUAGES = ("zh-CN", "en")

MESSAGES: Mapping[str, tuple[str, str]] = {
    "app": ("wardwatch 运维监控", "wardwatch monitoring"),
    "board": ("状态总览", "Status board"),
    "systems": ("业务系统", "Systems"),
    "system": ("系统", "System"),
    "host": ("主机", "Host"),
    "incidents": ("故障", "Incidents"),
    "incident": ("故障", "Incident"),
    "maintenance": ("维护窗口", "Maintenance"),
    "reports": ("报表", "Reports"),
    "users": ("用户", "Users"),
    "audit": ("审计日志", "Audit log"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "username": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "role": ("角色", "Role"),
    "role_viewer": ("只读", "viewer"),
    "role_operator": ("运维", "operator"),
    "role_admin": ("管理员", "admin"),
    "bad_login": ("用户名或密码错误", "Wrong user name or password"),
    "too_many_logins": ("登录失败次数过多，请稍后再试", "Too many failed logins; try again later"),
    "csrf_failed": ("请求已过期或来源无效，请刷新页面后重试",
                    "The form expired or did not come from this site; reload and try again"),
    "forbidden": ("当前角色无权执行此操作", "Your role does not allow this"),
    "not_found": ("未找到", "Not found"),
    "state": ("状态", "State"),
    "state_up": ("正常", "up"),
    "state_degraded": ("降级", "degraded"),
    "state_down": ("中断", "down"),
    "state_unknown": ("未知", "unknown"),
    "since": ("起始", "Since"),
    "cause": ("原因", "Cause"),
    "availability_ytd": ("本年可用率", "Availability YTD"),
    "target": ("目标", "Target"),
    "budget_left": ("剩余停机额度", "Downtime budget left"),
    "core": ("核心", "core"),
    "open_incidents": ("未关闭故障", "Open incidents"),
    "no_open_incidents": ("当前无未关闭故障", "No open incidents"),
    "level": ("级别", "Level"),
    "level_1": ("一级（紧急）", "Level 1 (urgent)"),
    "level_2": ("二级（严重）", "Level 2 (serious)"),
    "level_3": ("三级（一般）", "Level 3 (minor)"),
    "level_4": ("四级（咨询）", "Level 4 (consultation)"),
    "opened_at": ("发生时间", "Opened"),
    "respond_by": ("响应期限", "Respond by"),
    "recover_by": ("恢复期限", "Recover by"),
    "report_by": ("报告期限", "Report by"),
    "responded_at": ("响应时间", "Responded"),
    "recovered_at": ("恢复时间", "Recovered"),
    "reported_at": ("报告时间", "Reported"),
    "closed_at": ("关闭时间", "Closed"),
    "by": ("操作人", "By"),
    "note": ("备注", "Note"),
    "ref": ("报告编号或链接", "Report number or link"),
    "ack": ("响应", "Acknowledge"),
    "recover": ("确认恢复", "Mark recovered"),
    "report": ("提交报告", "File report"),
    "close": ("关闭", "Close"),
    "done_ack": ("已响应", "Acknowledged"),
    "done_recover": ("已恢复", "Recovered"),
    "done_report": ("已提交报告", "Report filed"),
    "done_close": ("已关闭", "Closed"),
    "timeline": ("时间线", "Timeline"),
    "overtimes": ("超时记录", "Overtimes"),
    "notifications": ("通知记录", "Notifications"),
    "remaining": ("剩余", "left"),
    "overdue": ("已超时", "overdue"),
    "met": ("已达成", "met"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "checks": ("检查项", "Checks"),
    "check": ("检查项", "Check"),
    "kind": ("类型", "Kind"),
    "status": ("状态", "Status"),
    "summary": ("说明", "Summary"),
    "last_result": ("最近结果", "Last result"),
    "history": ("状态历史", "State history"),
    "days_7": ("近 7 天", "Last 7 days"),
    "days_30": ("近 30 天", "Last 30 days"),
    "availability": ("可用率", "Availability"),
    "downtime": ("停机时长", "Downtime"),
    "unknown_time": ("无数据时长", "Unknown time"),
    "planned": ("计划运行时长", "Planned time"),
    "excluded": ("排除时长", "Excluded time"),
    "stretches": ("非正常时段", "Stretches not up"),
    "start": ("开始", "Start"),
    "end": ("结束", "End"),
    "duration": ("时长", "Duration"),
    "patches": ("补丁状态", "Patch state"),
    "findings": ("安全发现", "Findings"),
    "severity": ("严重程度", "Severity"),
    "first_seen": ("首次发现", "First seen"),
    "fixed_at": ("修复时间", "Fixed"),
    "waiver": ("风险接受", "Waiver"),
    "collected_at": ("采集时间", "Collected"),
    "no_data": ("暂无数据", "No data"),
    "reason": ("原因", "Reason"),
    "approved_by": ("批准人", "Approved by"),
    "created_by": ("登记人", "Recorded by"),
    "kind_planned": ("计划内维护", "planned maintenance"),
    "kind_force_majeure": ("不可抗力", "force majeure"),
    "add_window": ("登记维护窗口", "Record a window"),
    "save": ("保存", "Save"),
    "window_added": ("维护窗口已登记", "Window recorded"),
    "window_cancelled": ("维护窗口已撤销", "Window cancelled"),
    "cancel_window": ("撤销", "Cancel"),
    "cancel_confirm": ("撤销后该时段重新计入计划服务时间，可用率随之重算。确认撤销？",
                       "Cancelling counts this time as planned hours again and recomputes "
                       "availability. Cancel the window?"),
    "cancelled_by": ("已撤销：{by} · {at}", "cancelled by {by} · {at}"),
    "show_cancelled": ("显示已撤销的窗口", "Show cancelled windows"),
    "hide_cancelled": ("隐藏已撤销的窗口", "Hide cancelled windows"),
    "actions": ("操作", "Actions"),
    "window_not_active": ("维护窗口 #{id} 不存在或已撤销", "No active maintenance window #{id}"),
    "incident_error_not_open": ("{number} 不是处理中状态，不能执行此操作",
                                "{number} is not open"),
    "incident_error_still_open": ("{number} 仍在处理中：请先确认恢复",
                                  "{number} is still open: recover it first"),
    "incident_error_closed_already": ("{number} 已关闭", "{number} is closed already"),
    "incident_error_not_found": ("未找到该故障", "No such incident"),
    "times_in_zone": ("时间按 {zone} 显示", "Times in {zone}"),
    "report_kind": ("报表类型", "Report"),
    "from": ("起始日期", "From"),
    "to": ("结束日期", "To"),
    "format": ("格式", "Format"),
    "language": ("语言", "Language"),
    "download": ("生成并下载", "Build and download"),
    "reports_unavailable": ("报表模块尚未安装", "The reports module is not installed"),
    "report_kind_availability": ("可用率报表", "Availability"),
    "report_kind_incidents": ("故障报表", "Incidents"),
    "report_kind_inspection": ("月度巡检报告", "Monthly inspection"),
    "report_kind_patches": ("安全补丁审计", "Security patch audit"),
    "report_kind_annual": ("年度运维服务报告", "Annual service report"),
    "add_user": ("添加用户", "Add a user"),
    "disable": ("停用", "Disable"),
    "disabled": ("已停用", "disabled"),
    "created_at": ("创建时间", "Created"),
    "at": ("时间", "At"),
    "action": ("操作", "Action"),
    "address": ("来源地址", "Address"),
    "detail": ("详情", "Detail"),
    "all_incidents": ("全部故障", "All incidents"),
    "refresh_failed": ("刷新失败，正在重试", "Refresh failed; retrying"),
    "updated": ("更新于", "Updated"),
    "hosts": ("主机", "Hosts"),
    "members": ("成员检查项", "Member checks"),
    "error": ("错误", "Error"),
    "incident_state_open": ("处理中", "open"),
    "incident_state_recovered": ("已恢复", "recovered"),
    "incident_state_closed": ("已关闭", "closed"),
    "none": ("无", "none"),
    "hover_hint": ("鼠标悬停查看时段；下表列出全部非正常时段",
                   "Hover for a stretch; the table lists every stretch not up"),
}


class Translator:
    """`t(key, **values)` in one language."""

    def __init__(self, language: str) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        self.language = language
        self._index = LANGUAGES.index(language)

    def __call__(self, key: str, **values: object) -> str:
        text = MESSAGES[key][self._index]
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in MESSAGES


def local_time(value: datetime | str | None, zone: tzinfo, seconds: bool = False) -> str:
    """A stored UTC time as the hospital reads it: `2026-05-01 22:00` in the display zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """`3:05:07` (hours may exceed 24); negative values keep their sign."""
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
