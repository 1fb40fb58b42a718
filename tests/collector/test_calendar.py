"""The holiday calendar: the package's data, the bundled 2026 file, hospital files that add or
replace years, day-off semantics, and loading errors that name file and path."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from collector.calendar import BUNDLED_FILE, HolidayCalendar, official_years, read_calendar
from probes.config import ConfigError

BUNDLED = Path(__file__).parents[2] / "collector" / BUNDLED_FILE


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        read_calendar(write(tmp_path, text))
    assert caught.value.source.endswith("holidays.yaml")
    return caught.value.errors


def test_bundled_2026_matches_chinese_calendar() -> None:
    bundled = read_calendar(BUNDLED)
    assert list(bundled) == [2026]
    package = official_years()[2026]
    assert dict(bundled[2026].holidays) == dict(package.holidays)
    assert dict(bundled[2026].workdays) == dict(package.workdays)
    # and, by hand, the State Council's 2026 arrangement
    assert len(bundled[2026].holidays) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert sorted(bundled[2026].workdays) == [
        date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
        date(2026, 9, 20), date(2026, 10, 10)]


def test_layers_and_sources() -> None:
    calendar = HolidayCalendar.load()
    assert calendar.years[0] == 2004 and calendar.covers(2026) and not calendar.covers(2027)
    assert calendar.source(2026) == BUNDLED_FILE
    assert (calendar.source(2025) or "").startswith("chinese_calendar")
    assert calendar.holiday_name(date(2026, 2, 17)) == "春节"
    assert calendar.holiday_name(date(2025, 4, 4)) == "清明节"


def test_is_day_off() -> None:
    calendar = HolidayCalendar.load()
    assert calendar.is_day_off(date(2026, 10, 1))           # Thursday, 国庆节
    assert calendar.is_day_off(date(2026, 10, 3))           # Saturday inside the holiday
    assert not calendar.is_day_off(date(2026, 10, 10))      # Saturday, 调休上班
    assert calendar.is_makeup_workday(date(2026, 10, 10))
    assert calendar.is_day_off(date(2026, 10, 17))          # ordinary Saturday
    assert not calendar.is_day_off(date(2026, 10, 14))      # ordinary Wednesday
    assert not calendar.is_holiday(date(2026, 10, 17))      # weekends are not holidays
    # a year nobody described: weekends only
    assert calendar.is_day_off(date(2027, 1, 2)) and not calendar.is_day_off(date(2027, 1, 1))


def test_the_hospital_adds_a_year(tmp_path: Path) -> None:
    path = write(tmp_path, """
2027:
  holidays:
    - {date: 2027-01-01, name: 元旦}
    - {from: 2027-02-05, to: 2027-02-11, name: 春节}
    - 2027-04-05
  workdays:
    - 2027-02-14
    - {date: 2027-02-20, name: 春节}
""")
    calendar = HolidayCalendar.load(path)
    assert calendar.covers(2027) and calendar.source(2027) == str(path)
    assert calendar.is_day_off(date(2027, 1, 1))
    assert calendar.holiday_name(date(2027, 2, 8)) == "春节"
    assert all(calendar.is_holiday(date(2027, 2, 5) + timedelta(days=n)) for n in range(7))
    assert not calendar.is_holiday(date(2027, 2, 12))
    assert calendar.is_holiday(date(2027, 4, 5)) and calendar.holiday_name(date(2027, 4, 5)) == ""
    assert not calendar.is_day_off(date(2027, 2, 14))
    assert calendar.is_makeup_workday(date(2027, 2, 20))
    assert calendar.covers(2026)  # earlier years untouched


def test_a_year_in_the_file_replaces_that_whole_year(tmp_path: Path) -> None:
    path = write(tmp_path, "2025:\n  holidays:\n    - {date: 2025-10-01, name: 国庆节}\n")
    calendar = HolidayCalendar.load(path)
    assert calendar.is_holiday(date(2025, 10, 1))
    assert not calendar.is_holiday(date(2025, 10, 2))          # gone with the package's 2025
    assert not calendar.is_makeup_workday(date(2025, 9, 28))
    assert calendar.is_holiday(date(2024, 10, 2))              # other years keep their data
    assert HolidayCalendar.load(write(tmp_path, "2026:\n")).year(2026).holidays == {}


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    empty = write(tmp_path, "# nothing yet\n")
    assert HolidayCalendar.load(empty).years == HolidayCalendar.load().years


def test_invalid_date_names_file_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, """
2027:
  holidays:
    - {date: 2027-01-01, name: 元旦}
    - {date: 2027-01-02}
    - {date: 2027-01-03}
    - {date: 2027-02-30, name: 春节}
""")
    with pytest.raises(ConfigError) as caught:
        read_calendar(path)
    assert caught.value.errors == [
        "2027.holidays[3].date: invalid date '2027-02-30' (write YYYY-MM-DD)"]
    assert str(caught.value.args[0]) == (
        f"{path}: 2027.holidays[3].date: invalid date '2027-02-30' (write YYYY-MM-DD)")


@pytest.mark.parametrize(("text", "expected"), [
    ("2027:\n  holidays:\n    - {from: 2027-02-11, to: 2027-02-05}\n",
     ["2027.holidays[0]: from 2027-02-11 is after to 2027-02-05"]),
    ("2027:\n  holidays:\n    - {date: 2027-01-01, from: 2027-01-01, to: 2027-01-02}\n",
     ["2027.holidays[0]: give either `date:` or `from:` and `to:`, not both"]),
    ("2027:\n  holidays:\n    - {from: 2027-01-01}\n",
     ["2027.holidays[0]: give `date:`, or `from:` and `to:`"]),
    ("2027:\n  holidays:\n    - {date: 2027-01-01, nmae: 元旦}\n",
     ["2027.holidays[0].nmae: unknown key"]),
    ("2027:\n  workdays:\n    - {date: 2027-13-01}\n",
     ["2027.workdays[0].date: invalid date '2027-13-01' (write YYYY-MM-DD)"]),
    ("2027:\n  holidays:\n    - {date: 27-01-01}\n",
     ["2027.holidays[0].date: invalid date '27-01-01' (write YYYY-MM-DD)"]),
    ("2027:\n  holidays:\n    - {from: 2026-12-31, to: 2027-01-01}\n",
     ["2027.holidays[0]: 2026-12-31 is not in 2027 (write it under 2026:)"]),
    ("2027:\n  holidays:\n    - {from: 2027-10-01, to: 2027-10-07}\n    - 2027-10-07\n",
     ["2027.holidays[1].date: 2027-10-07 is already listed at 2027.holidays[0]"]),
    ("2027:\n  holidays:\n    - 2027-02-14\n  workdays:\n    - 2027-02-14\n",
     ["2027.workdays[0].date: 2027-02-14 is already listed at 2027.holidays[0].date"]),
    ("2027:\n  weekends: []\n", ["2027.weekends: unknown key"]),
    ("next year:\n  holidays: []\n", ["next year: not a year (write e.g. `2027:`)"]),
    ("- 2027-01-01\n",
     ["(top level): must be a mapping of year -> {holidays: [...], workdays: [...]}"]),
])
def test_loading_errors(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert load_errors(tmp_path, text) == expected


def test_every_error_at_once(tmp_path: Path) -> None:
    text = "2027:\n  holidays:\n    - 2027-02-30\n2028:\n  workdays: [2028-02-30]\n"
    errors = load_errors(tmp_path, text)
    assert [e.split(":")[0] for e in errors] == ["2027.holidays[0].date", "2028.workdays[0].date"]


def test_unreadable_or_broken_file(tmp_path: Path) -> None:
    assert load_errors(tmp_path, "2027: [unclosed\n")[0].startswith("YAML syntax error")
    with pytest.raises(ConfigError, match="cannot read file"):
        HolidayCalendar.load(tmp_path / "missing.yaml")
