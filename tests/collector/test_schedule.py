"""Schedules: config shapes and errors, planned intervals in local time against UTC, holidays and
make-up working days, midnight-crossing windows, DST, and a brute-force property check."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collector.availability import Interval, total
from collector.calendar import CalendarYear, HolidayCalendar
from collector.schedule import WEEKDAYS, Schedule, planned_intervals
from probes.config import validation_messages

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
H = 3600
CALENDAR = HolidayCalendar.load()
NO_HOLIDAYS = HolidayCalendar()


def local(text: str, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def planned(schedule: Any, start: str, end: str, tz: ZoneInfo = SHANGHAI,
            calendar: HolidayCalendar = CALENDAR) -> list[Interval]:
    return planned_intervals(Schedule.model_validate(schedule), calendar, tz,
                             local(start, tz), local(end, tz))


def spans(intervals: list[Interval], tz: ZoneInfo = SHANGHAI) -> list[tuple[str, str]]:
    """Intervals as local 'YYYY-MM-DD HH:MM' pairs, for readable assertions."""
    fmt = "%Y-%m-%d %H:%M"
    return [(i.start.astimezone(tz).strftime(fmt), i.end.astimezone(tz).strftime(fmt))
            for i in intervals]


def errors(data: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Schedule.model_validate(data)
    return validation_messages(caught.value, prefix="schedule")


# --- config -----------------------------------------------------------------------------------

def test_shapes_and_defaults() -> None:
    always = Schedule.model_validate("24x7")
    assert always.is_24x7 and always.holidays == "ignore"
    assert Schedule.model_validate("7x24") == always
    clinic = Schedule.model_validate([{"days": "mon-sat", "start": "07:30", "end": "18:00"}])
    assert clinic.holidays == "follow_calendar" and clinic.workday_windows_from == "mon"
    assert clinic.windows[0].days == ("mon", "tue", "wed", "thu", "fri", "sat")
    full = Schedule.model_validate({
        "windows": [{"days": ["sat", "Monday", "wed-thu"], "start": "22:00", "end": "06:00"}],
        "holidays": "ignore",
        "workday_windows_from": "sat",
    })
    assert full.windows[0].days == ("mon", "wed", "thu", "sat")
    assert (full.windows[0].start_s, full.windows[0].end_s) == (22 * H, 30 * H)
    assert Schedule.model_validate({"windows": "24x7", "holidays": "follow_calendar"}).holidays == \
        "follow_calendar"
    wrapped = Schedule.model_validate([{"days": "fri-mon", "start": "00:00", "end": "24:00"}])
    assert wrapped.windows[0].days == ("mon", "fri", "sat", "sun")
    assert wrapped.windows[0].end_s == 24 * H and not wrapped.is_24x7
    # what model_dump gives back validates to the same schedule (config reload compares whole)
    assert Schedule.model_validate(full.model_dump()) == full


def test_errors_name_the_path() -> None:
    assert errors([{"days": "mon-fri", "start": "08:00", "end": 1080}]) == [
        "schedule.windows[0].end: time must be a string \"HH:MM\", got 1080 "
        "(YAML reads an unquoted 18:00 as a number: quote it)"]
    assert errors([{"days": "mon-fri", "start": "8:00", "end": "18:00"}]) == [
        "schedule.windows[0].start: time '8:00' must be HH:MM or HH:MM:SS"]
    assert errors([{"days": "mon-fri", "start": "24:00", "end": "06:00"}]) == [
        "schedule.windows[0].start: start cannot be 24:00 (write 00:00)"]
    assert errors([{"days": "mon-fri", "start": "08:00", "end": "24:30"}]) == [
        "schedule.windows[0].end: time '24:30' is not a time of day"]
    assert errors([{"days": "mon-fir", "start": "08:00", "end": "18:00"}]) == [
        "schedule.windows[0].days: unknown day 'fir'; use mon, tue, wed, thu, fri, sat, sun "
        "or a range such as mon-fri"]
    assert errors([{"days": [], "start": "08:00", "end": "18:00"}]) == [
        "schedule.windows[0].days: days must name at least one day"]
    assert errors([{"days": "mon", "start": "08:00", "end": "08:00"}]) == [
        "schedule.windows[0]: start and end are both 08:00; a whole day is "
        "start: \"00:00\", end: \"24:00\""]
    assert errors([{"days": "mon", "start": "08:00", "end": "18:00", "lunch": True}]) == [
        "schedule.windows[0].lunch: unknown key"]
    assert errors([]) == ["schedule.windows: give at least one window, or 24x7"]
    assert errors("office hours")[0].startswith("schedule: schedule 'office hours' must be 24x7")
    assert errors({"windows": "24x7", "holidays": "skip"})[0].startswith("schedule.holidays:")


# --- planned time -----------------------------------------------------------------------------

def test_shanghai_window_in_utc() -> None:
    got = planned([{"days": "mon-fri", "start": "08:00", "end": "18:00"}],
                  "2026-05-06 00:00", "2026-05-07 00:00")
    assert got == [Interval(utc("2026-05-06 00:00"), utc("2026-05-06 10:00"))]
    # the same window read in UTC is another eight hours later
    got = planned([{"days": "mon-fri", "start": "08:00", "end": "18:00"}],
                  "2026-05-06 00:00", "2026-05-07 00:00", tz=ZoneInfo("UTC"))
    assert got == [Interval(utc("2026-05-06 08:00"), utc("2026-05-06 18:00"))]


def test_24x7_is_the_whole_period() -> None:
    assert planned("24x7", "2026-01-01 00:00", "2027-01-01 00:00") == [
        Interval(local("2026-01-01 00:00"), local("2027-01-01 00:00"))]
    assert planned("24x7", "2026-01-02 00:00", "2026-01-01 00:00") == []


def test_24x7_following_the_calendar_loses_holidays() -> None:
    got = planned({"windows": "24x7", "holidays": "follow_calendar"},
                  "2026-09-30 00:00", "2026-10-09 00:00")
    assert spans(got) == [("2026-09-30 00:00", "2026-10-01 00:00"),
                          ("2026-10-08 00:00", "2026-10-09 00:00")]


def test_a_holiday_removes_planned_time_on_a_clinic_hours_system() -> None:
    clinic = [{"days": "mon-sat", "start": "07:30", "end": "18:00"}]
    # National Day week: 10-01..10-07 off, Saturday 10-03 included
    got = planned(clinic, "2026-09-28 00:00", "2026-10-11 00:00")
    days = [a[:10] for a, _ in spans(got)]
    assert days == ["2026-09-28", "2026-09-29", "2026-09-30",
                    "2026-10-08", "2026-10-09", "2026-10-10"]
    assert total(got) == timedelta(hours=10.5 * 6)
    # the same system ignoring the calendar runs through the holiday
    ignoring = planned({"windows": clinic, "holidays": "ignore"},
                       "2026-09-28 00:00", "2026-10-11 00:00")
    assert len(ignoring) == 12  # every day but the two Sundays


def test_an_ordinary_saturday_keeps_its_windows() -> None:
    clinic = [{"days": "mon-sat", "start": "07:30", "end": "18:00"}]
    assert spans(planned(clinic, "2026-03-07 00:00", "2026-03-08 00:00")) == [
        ("2026-03-07 07:30", "2026-03-07 18:00")]


def test_a_make_up_working_day_adds_planned_time() -> None:
    clinic = [{"days": "mon-fri", "start": "08:00", "end": "18:00"},
              {"days": "sat", "start": "08:00", "end": "12:00"}]
    # Saturday 2026-10-10 is 调休上班: it runs Monday's window, not Saturday's half day
    assert spans(planned(clinic, "2026-10-10 00:00", "2026-10-11 00:00")) == [
        ("2026-10-10 08:00", "2026-10-10 18:00")]
    # Sunday 2026-09-20 too, where a Sunday has no window at all
    assert spans(planned(clinic, "2026-09-20 00:00", "2026-09-21 00:00")) == [
        ("2026-09-20 08:00", "2026-09-20 18:00")]
    # the next, ordinary Saturday is the half day
    assert spans(planned(clinic, "2026-10-17 00:00", "2026-10-18 00:00")) == [
        ("2026-10-17 08:00", "2026-10-17 12:00")]
    # a hospital whose make-up days run the Saturday timetable says so
    own = planned({"windows": clinic, "workday_windows_from": "sat"},
                  "2026-10-10 00:00", "2026-10-11 00:00")
    assert spans(own) == [("2026-10-10 08:00", "2026-10-10 12:00")]


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    night = [{"days": "fri", "start": "22:00", "end": "06:00"}]
    assert spans(planned(night, "2026-03-06 00:00", "2026-03-08 00:00")) == [
        ("2026-03-06 22:00", "2026-03-07 06:00")]
    # a period starting on Saturday still sees Friday night's tail
    assert spans(planned(night, "2026-03-07 00:00", "2026-03-08 00:00")) == [
        ("2026-03-07 00:00", "2026-03-07 06:00")]
    # Friday 2026-10-02 is a holiday: no night shift; Thursday's would run into the holiday
    thu_fri = [{"days": "thu-fri", "start": "22:00", "end": "06:00"}]
    assert spans(planned(thu_fri, "2026-09-30 00:00", "2026-10-05 00:00")) == []
    assert spans(planned(thu_fri, "2026-09-24 00:00", "2026-09-26 00:00")) == [
        ("2026-09-24 22:00", "2026-09-25 06:00")]  # Fri 09-25 is 中秋节: its own shift is off


def test_end_2400_and_next_morning_merge() -> None:
    shifts = [{"days": "mon-sun", "start": "18:00", "end": "24:00"},
              {"days": "mon-sun", "start": "00:00", "end": "06:00"}]
    got = planned(shifts, "2026-03-02 12:00", "2026-03-04 12:00", calendar=NO_HOLIDAYS)
    assert spans(got) == [("2026-03-02 18:00", "2026-03-03 06:00"),
                          ("2026-03-03 18:00", "2026-03-04 06:00")]


def test_overlapping_windows_merge_and_period_clips() -> None:
    windows = [{"days": "mon", "start": "08:00", "end": "12:00"},
               {"days": "mon", "start": "11:00", "end": "14:00"}]
    got = planned(windows, "2026-03-02 09:15", "2026-03-02 13:00", calendar=NO_HOLIDAYS)
    assert spans(got) == [("2026-03-02 09:15", "2026-03-02 13:00")]


def test_dst_zone_uses_real_offsets() -> None:
    office = [{"days": "mon-fri", "start": "08:00", "end": "18:00"}]
    # CET (+01:00) before 2026-03-29, CEST (+02:00) after
    got = planned(office, "2026-03-27 00:00", "2026-03-31 00:00", tz=BERLIN, calendar=NO_HOLIDAYS)
    assert got == [Interval(utc("2026-03-27 07:00"), utc("2026-03-27 17:00")),
                   Interval(utc("2026-03-30 06:00"), utc("2026-03-30 16:00"))]
    sundays = [{"days": "sun", "start": "00:00", "end": "24:00"}]
    spring = planned(sundays, "2026-03-29 00:00", "2026-03-30 00:00", BERLIN, NO_HOLIDAYS)
    autumn = planned(sundays, "2026-10-25 00:00", "2026-10-26 00:00", BERLIN, NO_HOLIDAYS)
    assert total(spring) == timedelta(hours=23)
    assert total(autumn) == timedelta(hours=25)
    # Shanghai has no DST: every day is 24 hours
    shanghai = planned(sundays, "2026-03-29 00:00", "2026-03-30 00:00", SHANGHAI, NO_HOLIDAYS)
    assert total(shanghai) == timedelta(hours=24)


# --- property: planned time against a per-minute wall-clock check -----------------------------

WINDOW = st.builds(
    lambda days, a, length: {"days": list(days), "start": f"{a // 60:02d}:{a % 60:02d}",
                             "end": f"{(a + length) % 1440 // 60:02d}:{(a + length) % 60:02d}"
                             if (a + length) != 1440 else "24:00"},
    st.sets(st.sampled_from(WEEKDAYS), min_size=1),
    st.integers(0, 95).map(lambda q: q * 15),
    st.integers(1, 95).map(lambda q: q * 15),
)


def _brute(schedule: Schedule, holidays: set[date], workdays: set[date], tz: ZoneInfo,
           start: datetime, minutes: int) -> set[datetime]:
    def windows(day: date) -> list[tuple[int, int]]:
        weekday = day.weekday()
        if schedule.holidays == "follow_calendar":
            if day in holidays:
                return []
            if day in workdays:
                weekday = WEEKDAYS.index(schedule.workday_windows_from)
        out = []
        for w in schedule.windows:
            if WEEKDAYS[weekday] in w.days:
                a = int(w.start[:2]) * 60 + int(w.start[3:5])
                b = int(w.end[:2]) * 60 + int(w.end[3:5])
                out.append((a, b if b > a else b + 1440))
        return out

    hits = set()
    for n in range(minutes):
        t = start + timedelta(minutes=n)
        wall = t.astimezone(tz)
        m = wall.hour * 60 + wall.minute
        today = any(a <= m < b for a, b in windows(wall.date()))
        tail = any(a <= m + 1440 < b for a, b in windows(wall.date() - timedelta(days=1)))
        if today or tail:
            hits.add(t)
    return hits


@settings(max_examples=40, deadline=None)
@given(
    windows=st.lists(WINDOW, min_size=1, max_size=3),
    follow=st.booleans(),
    from_day=st.sampled_from(WEEKDAYS),
    holidays=st.sets(st.integers(0, 20), max_size=5),
    workdays=st.sets(st.integers(0, 20), max_size=3),
    offset=st.integers(0, 14 * 1440 - 1),
    minutes=st.integers(1, 3 * 1440),
    tz=st.sampled_from([SHANGHAI, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"), BERLIN]),
)
def test_planned_time_matches_a_per_minute_check(
        windows: list[dict[str, Any]], follow: bool, from_day: str, holidays: set[int],
        workdays: set[int], offset: int, minutes: int, tz: ZoneInfo) -> None:
    schedule = Schedule.model_validate({"windows": windows, "workday_windows_from": from_day,
                                        "holidays": "follow_calendar" if follow else "ignore"})
    first = date(2026, 6, 1)  # summer: Berlin stays on CEST, so wall clock is unambiguous
    off = {first + timedelta(days=d) for d in holidays}
    work = {first + timedelta(days=d) for d in workdays} - off
    year = CalendarYear(dict.fromkeys(off, "h"), dict.fromkeys(work, "w"))
    calendar = HolidayCalendar({2026: year})
    start = datetime(2026, 6, 2, tzinfo=UTC) + timedelta(minutes=offset)
    end = start + timedelta(minutes=minutes)

    got = planned_intervals(schedule, calendar, tz, start, end)
    assert all(a.end < b.start for a, b in itertools.pairwise(got))
    minutes_in = {i.start + timedelta(minutes=n) for i in got
                  for n in range(int(i.duration / timedelta(minutes=1)))}
    assert minutes_in == _brute(schedule, off, work, tz, start, minutes)
