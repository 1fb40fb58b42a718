"""The wire model: time-ordered ids, UTC times, Nagios exit codes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from probes.result import CheckResult, Status, time_ordered_uuid, worst, worst_exit_code


def test_ids_are_uuid7_and_ordered_by_time() -> None:
    first = time_ordered_uuid()
    time.sleep(0.002)  # ids of different milliseconds sort by time
    second = time_ordered_uuid()
    assert first.version == 7 and second.version == 7
    assert str(first) < str(second)
    assert (first.int >> 80) <= time.time_ns() // 1_000_000
    assert len({time_ordered_uuid() for _ in range(10_000)}) == 10_000


def test_started_at_is_stored_in_utc_and_must_be_aware() -> None:
    shanghai = timezone(timedelta(hours=8))
    res = CheckResult(agent_id="a", check_id="c", kind="tcp", status=Status.OK, reason="ok",
                      started_at=datetime(2026, 5, 1, 8, 0, tzinfo=shanghai), duration_s=0)
    assert res.started_at == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    assert res.id.version == 7
    with pytest.raises(ValidationError, match="must carry a timezone"):
        CheckResult(agent_id="a", check_id="c", kind="tcp", status=Status.OK, reason="ok",
                    started_at=datetime(2026, 5, 1, 8, 0), duration_s=0)


def test_worst_and_exit_codes() -> None:
    assert worst([Status.OK, Status.UNKNOWN, Status.WARNING]) is Status.WARNING
    assert worst([]) is Status.OK
    assert worst_exit_code([Status.OK, Status.UNKNOWN, Status.WARNING]) == 3
    assert worst_exit_code([Status.OK, Status.CRITICAL]) == 2
