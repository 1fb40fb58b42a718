"""Planned operating time (计划运行时间) of a system: its schedule config and the planned
intervals it yields over a period.

A schedule is `24x7`, or weekly windows in the collector's local time zone:

    schedule: 24x7
    schedule:                                     # a list of windows
      - {days: mon-fri, start: "07:30", end: "18:00"}
      - {days: [sat], start: "08:00", end: "12:00"}
    schedule:                                     # the full form
      windows:
        - {days: mon-sat, start: "07:30", end: "18:00"}
        - {days: mon-sun, start: "22:00", end: "06:00"}   # crosses midnight: into the next day
      holidays: follow_calendar                   # or ignore
      workday_windows_from: mon

Times are `HH:MM` (or `HH:MM:SS`) and must be quoted (YAML reads an unquoted 18:00 as the
number 1080). `end: "24:00"` is the end of the day. An end earlier than the start means the
window runs into the next day; it belongs to the day it starts on.

Holidays, per calendar date (collector/calendar.py):
- `ignore` (default for 24x7): every date runs the windows of its weekday.
- `follow_calendar` (default for windows): a public holiday (法定节假日) has no planned time;
  a make-up working day (调休上班日) runs the windows of `workday_windows_from` (default
  Monday) *instead of* its own weekday's; every other date runs its weekday's windows, so a
  clinic open on ordinary Saturdays stays open on them.

Window edges are local wall-clock times converted to UTC with zoneinfo, so a day is 23 or 25
hours long across a DST change where the zone has one (Asia/Shanghai has none). An edge that
falls in a DST gap or repeat is read with the offset in force before the change (PEP 495,
fold=0).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import field_validator, model_validator

from collector.availability import Interval, normalize
from collector.calendar import HolidayCalendar
from probes.config import StrictModel

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
DAY_S = 86400

_ALWAYS = {"24x7", "7x24", "24×7", "7×24"}


_FULL_NAMES = {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday",
               "fri": "friday", "sat": "saturday", "sun": "sunday"}


def _weekday(name: str) -> Weekday:
    key = name.strip().lower()
    for day in WEEKDAYS:
        if key in (day, _FULL_NAMES[day]):
            return day
    raise ValueError(f"unknown day {name.strip()!r}; use {', '.join(WEEKDAYS)} or a range "
                     "such as mon-fri")


def _parse_days(value: Any) -> tuple[Weekday, ...]:
    """`mon-fri`, `mon,wed,fri`, `fri-mon` (wraps), or a list of such -> days in week order."""
    items = value if isinstance(value, list | tuple) else [value]
    chosen: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"days must be names such as mon or ranges such as mon-fri, "
                             f"got {item!r}")
        for part in item.split(","):
            if "-" in part:
                first, _, last = part.partition("-")
                a, b = WEEKDAYS.index(_weekday(first)), WEEKDAYS.index(_weekday(last))
                chosen.update(n % 7 for n in range(a, b + 1 if b >= a else b + 8))
            else:
                chosen.add(WEEKDAYS.index(_weekday(part)))
    if not chosen:
        raise ValueError("days must name at least one day")
    return tuple(WEEKDAYS[n] for n in sorted(chosen))


def _parse_clock(value: Any, allow_24: bool) -> str:
    if isinstance(value, time):
        value = value.isoformat()
    if isinstance(value, bool) or not isinstance(value, str):
        hint = (" (YAML reads an unquoted 18:00 as a number: quote it)"
                if isinstance(value, int) and not isinstance(value, bool) else "")
        raise ValueError(f"time must be a string \"HH:MM\", got {value!r}{hint}")
    parts = value.strip().split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"time {value!r} must be HH:MM or HH:MM:SS")
    h, m, s = (int(p) for p in [*parts, "00"][:3])
    if (h, m, s) == (24, 0, 0):
        if not allow_24:
            raise ValueError("start cannot be 24:00 (write 00:00)")
    elif h > 23 or m > 59 or s > 59:
        raise ValueError(f"time {value!r} is not a time of day")
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def _clock_s(value: str) -> int:
    parts = [int(p) for p in value.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


class Window(StrictModel):
    """Weekly window: on each of `days`, from `start` to `end` local time."""

    days: tuple[Weekday, ...]
    start: str
    end: str

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> tuple[Weekday, ...]:
        return _parse_days(value)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> str:
        return _parse_clock(value, allow_24=False)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: Any) -> str:
        return _parse_clock(value, allow_24=True)

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}; a whole day is "
                             "start: \"00:00\", end: \"24:00\"")
        return self

    @property
    def start_s(self) -> int:
        """Seconds after local midnight of the day the window starts on."""
        return _clock_s(self.start)

    @property
    def end_s(self) -> int:
        """Seconds after that same midnight; above 86400 when the window crosses midnight."""
        end = _clock_s(self.end)
        return end + DAY_S if end <= self.start_s else end


class Schedule(StrictModel):
    """When a system is planned to run. Build from config with `Schedule.model_validate(x)`,
    where x is `"24x7"`, a list of windows, or `{windows, holidays, workday_windows_from}`."""

    windows: tuple[Window, ...]
    holidays: Literal["follow_calendar", "ignore"]
    workday_windows_from: Weekday = "mon"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str | list | tuple):
            data = {"windows": data}
        if not isinstance(data, dict):
            return data
        windows = data.get("windows")
        always = isinstance(windows, str) and windows.strip().lower() in _ALWAYS
        if isinstance(windows, str) and not always:
            raise ValueError(f"schedule {windows!r} must be 24x7 or a list of windows "
                             "such as {days: mon-fri, start: \"08:00\", end: \"18:00\"}")
        if always:
            data = {**data, "windows": [{"days": "mon-sun", "start": "00:00", "end": "24:00"}]}
        if "holidays" not in data:
            data = {**data, "holidays": "ignore" if always else "follow_calendar"}
        return data

    @field_validator("windows")
    @classmethod
    def _some(cls, value: tuple[Window, ...]) -> tuple[Window, ...]:
        if not value:
            raise ValueError("give at least one window, or 24x7")
        return value

    @field_validator("workday_windows_from", mode="before")
    @classmethod
    def _workday(cls, value: Any) -> Any:
        return _weekday(value) if isinstance(value, str) else value

    @property
    def is_24x7(self) -> bool:
        return any(len(w.days) == 7 and w.start_s == 0 and w.end_s == DAY_S
                   for w in self.windows)

    def windows_on(self, day: date, calendar: HolidayCalendar) -> list[Window]:
        """The windows that start on local date `day` (see the module docstring)."""
        weekday = WEEKDAYS[day.weekday()]
        if self.holidays == "follow_calendar":
            if calendar.is_holiday(day):
                return []
            if calendar.is_makeup_workday(day):
                weekday = self.workday_windows_from
        return [w for w in self.windows if weekday in w.days]


def _local_to_utc(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    extra_days, rest = divmod(seconds, DAY_S)
    wall = datetime.combine(day + timedelta(days=extra_days),
                            time(rest // 3600, rest % 3600 // 60, rest % 60), tzinfo=tz)
    return wall.astimezone(UTC)


def planned_intervals(schedule: Schedule, calendar: HolidayCalendar, tz: ZoneInfo,
                      start: datetime, end: datetime) -> list[Interval]:
    """Planned time within [start, end): sorted, merged, non-overlapping UTC intervals.

    Walks the local dates from the day before `start` (its windows may cross midnight into
    the period) to the date of `end`; each date contributes the windows `windows_on` gives,
    converted from local wall-clock time to UTC and clipped to the period. O(days × windows).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start >= end:
        return []
    if schedule.is_24x7 and schedule.holidays == "ignore":
        return [Interval(start, end)]
    out: list[Interval] = []
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    while day <= last:
        for window in schedule.windows_on(day, calendar):
            lo = max(_local_to_utc(day, window.start_s, tz), start)
            hi = min(_local_to_utc(day, window.end_s, tz), end)
            if lo < hi:
                out.append(Interval(lo, hi))
        day += timedelta(days=1)
    return normalize(out)
