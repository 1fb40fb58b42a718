"""The holiday calendar: public holidays (法定节假日, days off) and make-up working days
(调休上班日), date by date.

Three layers, each later one replacing whole years of the ones before it:

1. the `chinese_calendar` package (chinesecalendar): official data from 2004 through the last
   year it knows;
2. `collector/holidays_cn.yaml`, shipped with wardwatch: the current year written out;
3. the hospital's own file (`calendar:` in the collector config), where the hospital adds a
   year when the State Council publishes it, or corrects one.

A year present in a later layer replaces that calendar year *entirely* (every date from
1 January to 31 December), so a file can also remove a day the package got wrong. A year no
layer knows has no holidays: only weekends are days off (`covers(year)` says which years are
known, so the collector can warn).

File format (YAML), one key per year:

    2027:
      holidays:                          # days off: a date, or a from/to range (inclusive)
        - {date: 2027-01-01, name: 元旦}
        - {from: 2027-02-05, to: 2027-02-11, name: 春节}
      workdays:                          # make-up working days: a date, or {date, name}
        - 2027-02-14
        - {date: 2027-02-20, name: 春节}

Every date must fall in its year (a block across New Year is written in both years); a date
may be listed once, and not as both a holiday and a workday. Errors name the file and path:
`holidays.yaml: 2027.holidays[3].date: invalid date '2027-02-30' (write YYYY-MM-DD)`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from probes.config import ConfigError, StrictModel, validation_messages

BUNDLED_FILE = "holidays_cn.yaml"

# chinese_calendar names a few festivals by their short name; the State Council's notices
# use these.
_CHINESE_NAMES = {
    "Tomb-sweeping Day": "清明节",
    "Dragon Boat Festival": "端午节",
    "Mid-autumn Festival": "中秋节",
}

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{value.isoformat()} is a date and time; write a date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"invalid date {value!r} (write YYYY-MM-DD)")


CalendarDate = Annotated[date, BeforeValidator(_parse_date)]
_Day = date  # `date` is also a field name below


class _HolidayItem(StrictModel):
    date: CalendarDate | None = None
    from_: CalendarDate | None = Field(default=None, alias="from")
    to: CalendarDate | None = None
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bare_date(cls, data: Any) -> Any:
        return {"date": data} if isinstance(data, str | date) else data

    @model_validator(mode="after")
    def _one_form(self) -> _HolidayItem:
        if self.date is not None:
            if self.from_ is not None or self.to is not None:
                raise ValueError("give either `date:` or `from:` and `to:`, not both")
        elif self.from_ is None or self.to is None:
            raise ValueError("give `date:`, or `from:` and `to:`")
        elif self.from_ > self.to:
            raise ValueError(f"from {self.from_} is after to {self.to}")
        return self

    def dates(self) -> list[_Day]:
        if self.date is not None:
            return [self.date]
        assert self.from_ is not None and self.to is not None
        return [self.from_ + timedelta(days=n) for n in range((self.to - self.from_).days + 1)]


class _WorkdayItem(StrictModel):
    date: CalendarDate
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bare_date(cls, data: Any) -> Any:
        return {"date": data} if isinstance(data, str | date) else data


class _YearEntry(StrictModel):
    holidays: tuple[_HolidayItem, ...] = ()
    workdays: tuple[_WorkdayItem, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        return {} if data is None else data


@dataclass(frozen=True)
class CalendarYear:
    """One year's days off and make-up working days, date -> name."""

    holidays: Mapping[date, str] = field(default_factory=dict)
    workdays: Mapping[date, str] = field(default_factory=dict)


class _DateStrLoader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings, so a bad date becomes a path-named error of
    ours instead of a YAML constructor exception."""


_DateStrLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _year_key(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        year = key
    elif isinstance(key, str) and key.strip().isdigit():
        year = int(key)
    else:
        return None
    return year if 1900 <= year <= 2999 else None


def parse_calendar(data: Any, source: str = "<memory>") -> dict[int, CalendarYear]:
    """A calendar file's content (parsed YAML) -> year -> CalendarYear; ConfigError if bad."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping of year -> "
                                   "{holidays: [...], workdays: [...]}"])
    errors: list[str] = []
    years: dict[int, CalendarYear] = {}
    for key, value in data.items():
        year = _year_key(key)
        if year is None:
            errors.append(f"{key}: not a year (write e.g. `2027:`)")
            continue
        if year in years:
            errors.append(f"{year}: year listed twice")
            continue
        try:
            entry = _YearEntry.model_validate(value)
        except ValidationError as exc:
            errors.extend(validation_messages(exc, prefix=str(year)))
            continue
        holidays: dict[date, str] = {}
        workdays: dict[date, str] = {}
        where: dict[date, str] = {}

        def add(path: str, day: date, name: str, into: dict[date, str],
                year: int = year, where: dict[date, str] = where) -> bool:
            if day.year != year:
                errors.append(f"{path}: {day} is not in {year} (write it under {day.year}:)")
            elif day in where:
                errors.append(f"{path}: {day} is already listed at {where[day]}")
            else:
                where[day] = path
                into[day] = name
                return True
            return False

        for index, item in enumerate(entry.holidays):
            path = f"{year}.holidays[{index}]" + (".date" if item.date is not None else "")
            for day in item.dates():
                if not add(path, day, item.name, holidays):
                    break  # one error per item is enough
        for index, work in enumerate(entry.workdays):
            add(f"{year}.workdays[{index}].date", work.date, work.name, workdays)
        years[year] = CalendarYear(holidays, workdays)
    if errors:
        raise ConfigError(source, errors)
    return years


def read_calendar(path: str | Path) -> dict[int, CalendarYear]:
    """Read and check a calendar file; errors name the file and the path inside it."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror}"]) from None
    return _parse_text(text, source)


def _parse_text(text: str, source: str) -> dict[int, CalendarYear]:
    try:
        data = yaml.load(text, Loader=_DateStrLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"YAML syntax error: {exc}"]) from None
    return parse_calendar(data, source)


def official_years() -> dict[int, CalendarYear]:
    """The chinese_calendar package's data, year by year."""
    from chinese_calendar import constants  # type: ignore[import-untyped]

    def chinese(english: str) -> str:
        return _CHINESE_NAMES.get(english) or str(constants.Holiday(english).chinese)

    holidays: dict[int, dict[date, str]] = {}
    workdays: dict[int, dict[date, str]] = {}
    for day, english in constants.holidays.items():
        holidays.setdefault(day.year, {})[day] = chinese(english)
    for day, english in constants.workdays.items():
        workdays.setdefault(day.year, {})[day] = chinese(english)
    return {year: CalendarYear(holidays.get(year, {}), workdays.get(year, {}))
            for year in sorted(holidays.keys() | workdays.keys())}


class HolidayCalendar:
    """Days off and make-up working days by date.

    `is_day_off(d)`: a holiday is off; a make-up working day is a working day; otherwise
    Saturday and Sunday are off. Schedules use `is_holiday` and `is_makeup_workday` directly
    (collector/schedule.py), because a clinic open on ordinary Saturdays stays open on them.
    """

    def __init__(self, years: Mapping[int, CalendarYear] | None = None,
                 sources: Mapping[int, str] | None = None):
        self._years = dict(years or {})
        self._sources = {year: (sources or {}).get(year, "") for year in self._years}
        self._holidays: dict[date, str] = {}
        self._workdays: dict[date, str] = {}
        for entry in self._years.values():
            self._holidays.update(entry.holidays)
            self._workdays.update(entry.workdays)

    @classmethod
    def official(cls) -> HolidayCalendar:
        """Only the chinese_calendar package's data."""
        years = official_years()
        try:
            version = importlib.metadata.version("chinesecalendar")
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return cls(years, dict.fromkeys(years, f"chinese_calendar {version}"))

    @classmethod
    def load(cls, path: str | Path | None = None) -> HolidayCalendar:
        """The package's data, then the bundled holidays_cn.yaml, then `path` if given."""
        bundled = importlib.resources.files("collector").joinpath(BUNDLED_FILE)
        calendar = cls.official().overridden_by(
            _parse_text(bundled.read_text(encoding="utf-8"), BUNDLED_FILE), BUNDLED_FILE)
        if path is not None:
            calendar = calendar.overridden_by(read_calendar(path), str(path))
        return calendar

    def overridden_by(self, years: Mapping[int, CalendarYear], source: str) -> HolidayCalendar:
        """A new calendar in which each year of `years` replaces that whole year."""
        return HolidayCalendar({**self._years, **years},
                               {**self._sources, **dict.fromkeys(years, source)})

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(sorted(self._years))

    def covers(self, year: int) -> bool:
        """Whether some layer gave this year's holidays (else only weekends are off)."""
        return year in self._years

    def source(self, year: int) -> str | None:
        """Where this year's data comes from: the package, or a file's path."""
        return self._sources.get(year)

    def year(self, year: int) -> CalendarYear:
        return self._years.get(year, CalendarYear())

    def is_holiday(self, day: date) -> bool:
        return day in self._holidays

    def is_makeup_workday(self, day: date) -> bool:
        return day in self._workdays

    def holiday_name(self, day: date) -> str | None:
        return self._holidays.get(day)

    def is_day_off(self, day: date) -> bool:
        """Holiday -> off; make-up working day -> working; otherwise weekends are off."""
        if day in self._holidays:
            return True
        if day in self._workdays:
            return False
        return day.weekday() >= 5
