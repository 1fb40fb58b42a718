"""Availability arithmetic: exact interval cases a person can check by hand, the worked example
of docs/availability.md, and property tests against a brute-force per-second count."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.availability import (
    NO_DATA,
    Exclusion,
    Interval,
    StateInterval,
    allowed_downtime_s,
    compute_availability,
    intersect,
    normalize,
    subtract,
    total,
    union,
)
from collector.calendar import HolidayCalendar
from collector.schedule import Schedule, planned_intervals

SHANGHAI = ZoneInfo("Asia/Shanghai")
H = 3600


def sh(text: str) -> datetime:
    """'2026-05-06 17:30' in Shanghai local time, as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def iv(a: str, b: str) -> Interval:
    return Interval(utc(a), utc(b))


def state(a: str, b: str, value: str, cause: str = "") -> StateInterval:
    return StateInterval(utc(a), utc(b), value, cause)  # type: ignore[arg-type]


def maintenance(a: str, b: str, kind: str = "planned", id: int = 1) -> Exclusion:
    return Exclusion(utc(a), utc(b), kind, "Oracle patch", "信息科 张三", id)  # type: ignore[arg-type]


# --- intervals --------------------------------------------------------------------------------

def test_interval_is_utc_and_rejects_naive_or_empty() -> None:
    i = Interval(sh("2026-05-06 08:00"), sh("2026-05-06 18:00"))
    assert i.start == utc("2026-05-06 00:00") and i.start.tzinfo is UTC
    assert i.seconds == 10 * H
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="before end"):
        iv("2026-01-01 10:00", "2026-01-01 10:00")
    with pytest.raises(ValueError, match="state"):
        state("2026-01-01 10:00", "2026-01-01 11:00", "sideways")
    with pytest.raises(ValueError, match="kind"):
        maintenance("2026-01-01 10:00", "2026-01-01 11:00", kind="holiday")


def test_interval_in_a_dst_zone_measures_real_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # same ZoneInfo on both ends: naive datetime subtraction would say 24 h
    i = Interval(datetime(2026, 3, 29, tzinfo=berlin), datetime(2026, 3, 30, tzinfo=berlin))
    assert i.seconds == 23 * H


def test_normalize_union_intersect_subtract() -> None:
    a = normalize([iv("2026-01-01 05:00", "2026-01-01 06:00"),
                   iv("2026-01-01 01:00", "2026-01-01 03:00"),
                   iv("2026-01-01 03:00", "2026-01-01 04:00"),   # touches: merged
                   iv("2026-01-01 02:00", "2026-01-01 02:30")])  # inside: absorbed
    assert a == [iv("2026-01-01 01:00", "2026-01-01 04:00"),
                 iv("2026-01-01 05:00", "2026-01-01 06:00")]
    b = [iv("2026-01-01 00:00", "2026-01-01 01:30"), iv("2026-01-01 03:30", "2026-01-01 05:30")]
    assert intersect(a, b) == [iv("2026-01-01 01:00", "2026-01-01 01:30"),
                               iv("2026-01-01 03:30", "2026-01-01 04:00"),
                               iv("2026-01-01 05:00", "2026-01-01 05:30")]
    assert subtract(a, b) == [iv("2026-01-01 01:30", "2026-01-01 03:30"),
                              iv("2026-01-01 05:30", "2026-01-01 06:00")]
    assert union(a, b) == [iv("2026-01-01 00:00", "2026-01-01 06:00")]
    assert total(a) == timedelta(hours=4)
    # one interval of b cutting two of a
    two = [iv("2026-01-01 00:00", "2026-01-01 01:00"), iv("2026-01-01 02:00", "2026-01-01 03:00")]
    assert subtract(two, [iv("2026-01-01 00:30", "2026-01-01 02:30")]) == [
        iv("2026-01-01 00:00", "2026-01-01 00:30"), iv("2026-01-01 02:30", "2026-01-01 03:00")]
    with pytest.raises(ValueError, match="not normalized"):
        intersect(two[::-1], [])


# --- exact cases ------------------------------------------------------------------------------

def test_24x7_non_leap_year_with_43_8_hours_down_is_exactly_995() -> None:
    year = [iv("2025-01-01 00:00", "2026-01-01 00:00")]
    assert total(year) == timedelta(hours=8760)
    down_start = utc("2025-06-01 00:00")
    down_end = down_start + timedelta(hours=43, minutes=48)  # 43.8 h
    states = [StateInterval(utc("2025-01-01 00:00"), down_start, "up"),
              StateInterval(down_start, down_end, "down", "EMR app: connect_refused"),
              StateInterval(down_end, utc("2026-01-01 00:00"), "up")]
    report = compute_availability(states, year, [], "down", 0.995)
    assert report.availability_exact == Fraction(199, 200)
    assert report.availability == 0.995
    assert report.met is True
    assert report.downtime_s == 43.8 * H == 157680
    assert report.error_budget_s == 157680 and report.budget_left_s == 0
    # one second more and the year fails
    states[1] = StateInterval(down_start, down_end + timedelta(seconds=1), "down")
    states[2] = StateInterval(down_end + timedelta(seconds=1), utc("2026-01-01 00:00"), "up")
    report = compute_availability(states, year, [], "down", 0.995)
    assert report.met is False and report.budget_left_s == -1


def test_target_is_the_decimal_written_not_the_binary_float() -> None:
    # float 0.9 is 0.90000000000000002220...; exactly 90 % available must still meet it
    planned = [iv("2026-01-01 00:00", "2026-01-01 10:00")]
    states = [state("2026-01-01 00:00", "2026-01-01 09:00", "up"),
              state("2026-01-01 09:00", "2026-01-01 10:00", "down")]
    report = compute_availability(states, planned, [], "down", 0.9)
    assert report.availability_exact == Fraction(9, 10) and report.met is True
    assert compute_availability(states, planned, [], "down", "0.9").met is True
    assert compute_availability(states, planned, [], "down", Fraction(9, 10)).met is True


def clinic_day(day: str) -> list[Interval]:
    """08:00–18:00 Shanghai on `day` (a working day), as planned time."""
    return [Interval(sh(f"{day} 08:00"), sh(f"{day} 18:00"))]


def test_downtime_straddling_a_schedule_boundary() -> None:
    planned = clinic_day("2026-05-06")
    states = [StateInterval(sh("2026-05-06 00:00"), sh("2026-05-06 17:00"), "up"),
              StateInterval(sh("2026-05-06 17:00"), sh("2026-05-06 19:00"), "down",
                            "db: ORA-12541"),
              StateInterval(sh("2026-05-06 19:00"), sh("2026-05-07 00:00"), "up")]
    report = compute_availability(states, planned, [], "down", 0.995)
    assert report.planned_s == 10 * H
    assert report.downtime_s == 1 * H  # 17:00–18:00 only: 18:00–19:00 is not planned
    assert [(w.start, w.end, w.seconds, w.state, w.cause) for w in report.windows] == [
        (sh("2026-05-06 17:00"), sh("2026-05-06 18:00"), 3600.0, "down", "db: ORA-12541")]
    assert report.availability_exact == Fraction(9, 10)


def test_maintenance_window_overlapping_a_down_window() -> None:
    planned = clinic_day("2026-05-07")
    states = [StateInterval(sh("2026-05-07 08:00"), sh("2026-05-07 15:00"), "up"),
              StateInterval(sh("2026-05-07 15:00"), sh("2026-05-07 17:00"), "down", "patching"),
              StateInterval(sh("2026-05-07 17:00"), sh("2026-05-07 18:00"), "up")]
    window = Exclusion(sh("2026-05-07 16:00"), sh("2026-05-07 20:00"), "planned",
                       "Oracle 补丁", "信息科 张三", 7)
    report = compute_availability(states, planned, [window], "down", 0.995)
    assert report.excluded_s == 2 * H          # 16:00–18:00; 18:00–20:00 was not planned
    assert report.counted_s == 8 * H
    assert report.downtime_s == 1 * H          # 15:00–16:00
    assert report.availability_exact == Fraction(7, 8)
    assert [(w.start, w.end) for w in report.windows] == [
        (sh("2026-05-07 15:00"), sh("2026-05-07 16:00"))]
    assert [(a.exclusion.id, a.seconds) for a in report.exclusions] == [(7, 2 * H)]


def test_force_majeure_added_after_the_fact_changes_the_figure() -> None:
    planned = [iv("2026-03-01 00:00", "2026-04-01 00:00")]  # 31 days, 744 h
    states = [state("2026-03-01 00:00", "2026-03-10 02:00", "up"),
              state("2026-03-10 02:00", "2026-03-10 08:00", "down", "城市停电 / city power cut"),
              state("2026-03-10 08:00", "2026-04-01 00:00", "up")]
    before = compute_availability(states, planned, [], "down", 0.995)
    assert before.downtime_s == 6 * H
    assert before.availability_exact == Fraction(738, 744)
    assert before.met is False  # 6 h > 3.72 h allowed
    power_cut = Exclusion(utc("2026-03-10 01:30"), utc("2026-03-10 07:00"), "force_majeure",
                          "city power cut, grid operator notice 2026-17", "院办 李四", 12)
    after = compute_availability(states, planned, [power_cut], "down", 0.995)
    assert after.excluded_s == 5.5 * H
    assert after.downtime_s == 1 * H  # 07:00–08:00 stays the vendor's
    assert after.availability_exact == Fraction(744 * 2 - 11 - 2, 744 * 2 - 11)
    assert after.met is True
    assert [(w.start, w.end) for w in after.windows] == [
        (utc("2026-03-10 07:00"), utc("2026-03-10 08:00"))]


def test_unknown_time_under_each_policy() -> None:
    planned = [iv("2026-01-01 00:00", "2026-01-01 10:00")]
    states = [state("2026-01-01 00:00", "2026-01-01 06:00", "up"),
              state("2026-01-01 06:00", "2026-01-01 07:00", "down", "http 503"),
              state("2026-01-01 07:00", "2026-01-01 08:00", "unknown", "agent silent"),
              # 08:00–09:00: no state interval at all
              state("2026-01-01 09:00", "2026-01-01 10:00", "degraded", "slow")]
    down = compute_availability(states, planned, [], "down", 0.995)
    assert (down.counted_s, down.downtime_s, down.unknown_s, down.available_s) == (
        10 * H, 3 * H, 2 * H, 7 * H)
    assert down.degraded_s == 1 * H and down.availability_exact == Fraction(7, 10)
    assert [(w.state, w.cause) for w in down.windows] == [
        ("down", "http 503"), ("unknown", "agent silent"), ("unknown", NO_DATA)]

    up = compute_availability(states, planned, [], "up", 0.995)
    assert (up.counted_s, up.downtime_s, up.unknown_s, up.available_s) == (
        10 * H, 1 * H, 2 * H, 9 * H)
    assert [w.state for w in up.windows] == ["down"]

    excluded = compute_availability(states, planned, [], "excluded", 0.995)
    assert (excluded.counted_s, excluded.downtime_s, excluded.available_s) == (8 * H, 1 * H, 7 * H)
    assert excluded.availability_exact == Fraction(7, 8)
    assert excluded.error_budget_s == pytest.approx(0.005 * 8 * H)
    for report in (down, up, excluded):
        assert [(w.start, w.end) for w in report.unknown_windows] == [
            (utc("2026-01-01 07:00"), utc("2026-01-01 08:00")),
            (utc("2026-01-01 08:00"), utc("2026-01-01 09:00"))]


def test_no_states_at_all_is_all_unknown() -> None:
    planned = [iv("2026-01-01 00:00", "2026-01-01 01:00")]
    assert compute_availability([], planned, [], "down", 0.995).availability == 0.0
    assert compute_availability([], planned, [], "up", 0.995).availability == 1.0
    report = compute_availability([], planned, [], "excluded", 0.995)
    assert report.availability is None and report.met is None and report.unknown_s == H


def test_nothing_counted_gives_no_figure() -> None:
    report = compute_availability([], [], [], "down", 0.995)
    assert report.availability is None and report.met is None
    assert report.planned_s == report.error_budget_s == report.budget_left_s == 0
    planned = [iv("2026-01-01 00:00", "2026-01-01 01:00")]
    whole = maintenance("2025-12-31 23:00", "2026-01-01 02:00")
    report = compute_availability([state("2026-01-01 00:00", "2026-01-01 01:00", "down")],
                                  planned, [whole], "down", 0.995)
    assert report.availability is None and report.downtime_s == 0 and report.excluded_s == H


def test_split_down_states_with_one_cause_make_one_window() -> None:
    planned = [iv("2026-01-01 00:00", "2026-01-01 10:00")]
    states = [state("2026-01-01 01:00", "2026-01-01 02:00", "down", "x"),
              state("2026-01-01 02:00", "2026-01-01 03:00", "down", "x"),
              state("2026-01-01 03:00", "2026-01-01 04:00", "down", "y")]
    report = compute_availability(states, planned, [], "up", 0.995)
    assert [(w.start, w.end, w.cause) for w in report.windows] == [
        (utc("2026-01-01 01:00"), utc("2026-01-01 03:00"), "x"),
        (utc("2026-01-01 03:00"), utc("2026-01-01 04:00"), "y")]


def test_overlapping_states_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        compute_availability([state("2026-01-01 00:00", "2026-01-01 02:00", "up"),
                              state("2026-01-01 01:00", "2026-01-01 03:00", "down")],
                             [iv("2026-01-01 00:00", "2026-01-01 03:00")], [], "down", 0.995)
    with pytest.raises(ValueError, match="unknown_policy"):
        compute_availability([], [], [], "ignore", 0.995)  # type: ignore[arg-type]


def test_allowed_downtime_for_a_year() -> None:
    year = [iv("2025-01-01 00:00", "2026-01-01 00:00")]
    assert allowed_downtime_s(year, [], 0.995) == 43.8 * H
    ten_hours = maintenance("2025-03-01 00:00", "2025-03-01 10:00")
    assert allowed_downtime_s(year, [ten_hours], "0.995") == 0.005 * 8750 * H


def test_report_is_json_ready() -> None:
    planned = [iv("2026-01-01 00:00", "2026-01-01 10:00")]
    states = [state("2026-01-01 00:00", "2026-01-01 09:00", "up")]
    window = maintenance("2026-01-01 09:30", "2026-01-01 10:00")
    report = compute_availability(states, planned, [window], "down", 0.995)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["availability"] == 9 / 9.5
    assert data["windows"][0]["start"] == "2026-01-01T09:00:00+00:00"
    assert data["exclusions"][0]["approved_by"] == "信息科 张三"
    assert {"planned_s", "excluded_s", "downtime_s", "unknown_s", "available_s", "availability",
            "target", "met", "windows", "error_budget_s", "budget_left_s"} <= data.keys()


# --- the worked example of docs/availability.md -----------------------------------------------

def worked_example_inputs() -> tuple[list[StateInterval], list[Interval], list[Exclusion]]:
    schedule = Schedule.model_validate([{"days": "mon-fri", "start": "08:00", "end": "18:00"}])
    planned = planned_intervals(schedule, HolidayCalendar.load(), SHANGHAI,
                                sh("2026-05-04 00:00"), sh("2026-05-11 00:00"))
    states = [
        StateInterval(sh("2026-05-04 00:00"), sh("2026-05-06 17:30"), "up"),
        StateInterval(sh("2026-05-06 17:30"), sh("2026-05-06 18:30"), "down",
                      "emr-app-01/emr-web: connect_refused"),
        StateInterval(sh("2026-05-06 18:30"), sh("2026-05-07 15:00"), "up"),
        StateInterval(sh("2026-05-07 15:00"), sh("2026-05-07 17:00"), "down",
                      "emr-db-01/oracle: ORA-12541"),
        StateInterval(sh("2026-05-07 17:00"), sh("2026-05-08 10:00"), "up"),
        StateInterval(sh("2026-05-08 10:00"), sh("2026-05-08 11:00"), "degraded",
                      "emr-app-02/emr-web: connect_timeout"),
        StateInterval(sh("2026-05-08 11:00"), sh("2026-05-09 09:00"), "up"),
        # 2026-05-09 09:00–09:24: no data
        StateInterval(sh("2026-05-09 09:24"), sh("2026-05-11 00:00"), "up"),
    ]
    exclusions = [Exclusion(sh("2026-05-07 16:00"), sh("2026-05-07 20:00"), "planned",
                            "Oracle 季度补丁", "信息科 张三", 1)]
    return states, planned, exclusions


def test_worked_example_planned_time() -> None:
    _, planned, _ = worked_example_inputs()
    # 5-04, 5-05: 劳动节; 5-06..5-08: weekdays; 5-09 (Sat): 调休上班, Monday's window; 5-10: Sunday
    assert planned == [Interval(sh(f"2026-05-0{d} 08:00"), sh(f"2026-05-0{d} 18:00"))
                       for d in (6, 7, 8, 9)]
    assert planned[0] == iv("2026-05-06 00:00", "2026-05-06 10:00")


def test_worked_example_figures() -> None:
    states, planned, exclusions = worked_example_inputs()
    down = compute_availability(states, planned, exclusions, "down", 0.995)
    assert (down.planned_s, down.excluded_s, down.counted_s) == (144000, 7200, 136800)
    assert (down.downtime_s, down.unknown_s, down.degraded_s, down.available_s) == (
        6840, 1440, 3600, 129960)
    assert down.availability_exact == Fraction(19, 20) and down.met is False
    assert (down.error_budget_s, down.budget_left_s) == (684, -6156)
    assert [(w.start, w.end, w.seconds, w.state) for w in down.windows] == [
        (sh("2026-05-06 17:30"), sh("2026-05-06 18:00"), 1800, "down"),
        (sh("2026-05-07 15:00"), sh("2026-05-07 16:00"), 3600, "down"),
        (sh("2026-05-09 09:00"), sh("2026-05-09 09:24"), 1440, "unknown")]

    up = compute_availability(states, planned, exclusions, "up", 0.995)
    assert (up.counted_s, up.downtime_s, up.available_s) == (136800, 5400, 131400)
    assert up.availability_exact == Fraction(131400, 136800)
    assert up.budget_left_s == 684 - 5400

    excluded = compute_availability(states, planned, exclusions, "excluded", 0.995)
    assert (excluded.counted_s, excluded.downtime_s, excluded.available_s) == (135360, 5400, 129960)
    assert excluded.availability_exact == Fraction(129960, 135360)
    assert excluded.error_budget_s == pytest.approx(676.8)


def test_worked_example_force_majeure_confirmed_later() -> None:
    states, planned, exclusions = worked_example_inputs()
    confirmed = Exclusion(sh("2026-05-07 15:00"), sh("2026-05-07 16:00"), "force_majeure",
                          "机房市电中断 / utility power failure", "院办 李四", 2)
    report = compute_availability(states, planned, [*exclusions, confirmed], "down", 0.995)
    assert (report.excluded_s, report.counted_s, report.downtime_s) == (10800, 133200, 3240)
    assert report.availability_exact == Fraction(129960, 133200)
    assert f"{report.availability:.3%}" == "97.568%"


# --- performance ------------------------------------------------------------------------------

def test_a_year_of_100k_state_intervals_is_linear() -> None:
    start = utc("2025-01-01 00:00")
    step = timedelta(seconds=315)  # 100,000 intervals ≈ 364.6 days
    states = [StateInterval(start + n * step, start + (n + 1) * step,
                            "down" if n % 97 == 0 else "up", "c") for n in range(100_000)]
    planned = [iv("2025-01-01 00:00", "2026-01-01 00:00")]
    exclusions = [Exclusion(start + timedelta(days=d, hours=2), start + timedelta(days=d, hours=4),
                            "planned", "weekly", "x", d) for d in range(0, 365, 7)]
    began = time.perf_counter()
    report = compute_availability(states, planned, exclusions, "down", 0.995)
    elapsed = time.perf_counter() - began
    assert report.planned_s == 8760 * H
    # linear work is ~0.3 s here; quadratic would take minutes
    assert elapsed < 5.0


# --- properties: interval arithmetic against a per-second count -------------------------------

BASE = utc("2026-01-01 00:00")
N = 1800  # seconds in the little world the properties live in


def spans(max_size: int = 6) -> st.SearchStrategy[list[tuple[int, int]]]:
    pair = st.tuples(st.integers(0, N - 1), st.integers(1, 600)).map(
        lambda p: (p[0], min(N, p[0] + p[1])))
    return st.lists(pair, max_size=max_size)


def to_intervals(pairs: list[tuple[int, int]]) -> list[Interval]:
    return [Interval(BASE + timedelta(seconds=a), BASE + timedelta(seconds=b)) for a, b in pairs]


def seconds_of(pairs: list[tuple[int, int]]) -> set[int]:
    return {t for a, b in pairs for t in range(a, b)}


def seconds_in(intervals: list[Interval]) -> set[int]:
    return seconds_of([(int((i.start - BASE).total_seconds()), int((i.end - BASE).total_seconds()))
                       for i in intervals])


@settings(max_examples=150, deadline=None)
@given(spans(), spans())
def test_set_operations_match_seconds(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    na, nb = normalize(to_intervals(a)), normalize(to_intervals(b))
    for result in (na, nb, intersect(na, nb), subtract(na, nb), union(na, nb)):
        assert all(x.end < y.start for x, y in itertools.pairwise(result))
    assert seconds_in(na) == seconds_of(a)
    assert seconds_in(intersect(na, nb)) == seconds_of(a) & seconds_of(b)
    assert seconds_in(subtract(na, nb)) == seconds_of(a) - seconds_of(b)
    assert seconds_in(union(na, nb)) == seconds_of(a) | seconds_of(b)


@st.composite
def state_runs(draw: st.DrawFn) -> list[tuple[int, int, str | None]]:
    """Consecutive segments over [0, N); None is a gap with no state interval."""
    cuts = sorted(draw(st.sets(st.integers(1, N - 1), max_size=12)))
    bounds = [0, *cuts, N]
    values = st.sampled_from(["up", "degraded", "down", "unknown", None])
    return [(a, b, draw(values)) for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(spans(), spans(4), state_runs(), st.sampled_from(["down", "up", "excluded"]))
def test_availability_matches_a_per_second_count(planned: list[tuple[int, int]],
                                                 excluded: list[tuple[int, int]],
                                                 runs: list[tuple[int, int, str | None]],
                                                 policy: str) -> None:
    states = [StateInterval(BASE + timedelta(seconds=a), BASE + timedelta(seconds=b), s)  # type: ignore[arg-type]
              for a, b, s in runs if s is not None]
    exclusions = [Exclusion(i.start, i.end, "planned", "r", "p") for i in to_intervals(excluded)]
    report = compute_availability(states, to_intervals(planned), exclusions, policy, 0.995)  # type: ignore[arg-type]

    state_at = {t: s for a, b, s in runs for t in range(a, b)}
    p, x = seconds_of(planned), seconds_of(excluded)
    counted = p - x
    down = sum(1 for t in counted if state_at[t] == "down")
    unknown = sum(1 for t in counted if state_at[t] in ("unknown", None))
    degraded = sum(1 for t in counted if state_at[t] == "degraded")
    up = len(counted) - down - unknown - degraded
    downtime = down + unknown if policy == "down" else down
    available = up + degraded + (unknown if policy == "up" else 0)
    denominator = len(counted) - (unknown if policy == "excluded" else 0)

    assert report.planned_s == len(p)
    assert report.excluded_s == len(p & x)
    assert report.unknown_s == unknown and report.degraded_s == degraded
    assert report.downtime_s == downtime
    assert report.available_s == available
    assert report.counted_s == denominator
    assert report.availability_exact == (Fraction(available, denominator) if denominator else None)
    assert sum(w.seconds for w in report.windows) == downtime
    assert report.budget_left_s == pytest.approx(0.005 * denominator - downtime)
