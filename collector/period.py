"""Report periods as people write them: dates in the hospital's time zone, or exact times.

`from` is inclusive and `to` exclusive for exact times; a date-only `to` means the end of that
day, so `--from 2026-01-01 --to 2026-12-31` is the whole year 2026 in local time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class PeriodError(ValueError):
    pass


def parse_instant(value: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """A date (local midnight, or the next midnight with `end_of_day`) or an ISO 8601 time
    (with an offset, or else taken as local time) -> aware UTC datetime."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(), zone).astimezone(UTC)
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)
    except ValueError:
        raise PeriodError(f"{value!r} is not a date (2026-01-31) or an ISO 8601 time") from None
    except OverflowError:   # 0001-01-01 in a zone east of UTC, the day after 9999-12-31
        raise PeriodError(f"{value!r} is at the end of the calendar: use years 1-9998"
                          ) from None


def year_start(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    return datetime(local.year, 1, 1, tzinfo=zone).astimezone(UTC)


def parse_period(start: str | None, end: str | None, zone: ZoneInfo, now: datetime
                 ) -> tuple[datetime, datetime]:
    """Defaults: from the start of this year (local) to now."""
    begin = parse_instant(start, zone) if start else year_start(now, zone)
    finish = parse_instant(end, zone, end_of_day=True) if end else now
    if finish <= begin:
        raise PeriodError("to must be after from")
    return begin, finish
