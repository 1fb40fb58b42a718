"""Stored evidence with known answers for the report tests: a 2025 service year of three
systems written straight as check state intervals (what ingest would have produced)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from collector.config import CollectorConfig, parse_collector_config
from collector.schema import check_intervals
from collector.store import Store

ZONE = ZoneInfo("Asia/Shanghai")
Y0 = datetime(2025, 1, 1, tzinfo=ZONE).astimezone(UTC)
Y1 = datetime(2026, 1, 1, tzinfo=ZONE).astimezone(UTC)
NOW = datetime(2026, 2, 1, tzinfo=UTC)
EMR_DOWN = datetime(2025, 3, 10, tzinfo=ZONE).astimezone(UTC)   # local midnight
ALLOWED = timedelta(hours=43.8)   # 0.5 % of a 24×7 non-leap year
HIS_DOWN = datetime(2025, 6, 1, 9, 0, tzinfo=ZONE).astimezone(UTC)
HIS_MAINT = (datetime(2025, 7, 1, 22, 0, tzinfo=ZONE).astimezone(UTC),
             datetime(2025, 7, 2, 0, 0, tzinfo=ZONE).astimezone(UTC))

SYSTEMS: list[dict[str, Any]] = [
    {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-01/web"]},
    {"id": "HIS", "name": "医院信息系统", "core": True, "members": ["his-01/web"]},
    {"id": "NUR", "name": "护理管理", "core": False, "members": ["nur-01/web"]},
]


def year_config(store_url: str, **extra: Any) -> CollectorConfig:
    return parse_collector_config({"store": store_url, "systems": SYSTEMS, **extra})


async def add_intervals(store: Store, agent: str, check: str, system: str,
                        spans: list[tuple[datetime, datetime, str]], kind: str = "http",
                        reason: str = "connect_refused") -> None:
    rows = [{"agent_id": agent, "check_id": check, "system": system, "kind": kind,
             "status": status, "reason": "ok" if status == "ok" else reason,
             "summary": f"{check} {status}", "start": start, "end": end,
             "last_result_at": end - timedelta(seconds=60), "results": 1, "is_open": False}
            for start, end, status in spans]
    async with store.transaction() as conn:
        await conn.execute(check_intervals.insert(), rows)


async def seed_year(store: Store) -> None:
    """EMR down exactly 43.8 h (99.5 %), HIS one second more (missed), NUR always up; a
    planned 2 h maintenance window of HIS with its approver."""
    await add_intervals(store, "emr-01", "web", "EMR", [
        (Y0, EMR_DOWN, "ok"), (EMR_DOWN, EMR_DOWN + ALLOWED, "critical"),
        (EMR_DOWN + ALLOWED, Y1, "ok")])
    his_up = HIS_DOWN + ALLOWED + timedelta(seconds=1)
    await add_intervals(store, "his-01", "web", "HIS", [
        (Y0, HIS_DOWN, "ok"), (HIS_DOWN, his_up, "critical"), (his_up, Y1, "ok")])
    await add_intervals(store, "nur-01", "web", "NUR", [(Y0, Y1, "ok")])
    await store.add_maintenance(system="HIS", start=HIS_MAINT[0], end=HIS_MAINT[1],
                                kind="planned", reason="Oracle 季度补丁",
                                approved_by="信息科 张主任", by="vendor", now=Y0)
