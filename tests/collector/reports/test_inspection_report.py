"""The monthly inspection report from real results ingested for one month, with known answers:
CPU peaks, a disk growing 1 GiB a day with 10 GiB free (10 days to full), a certificate
expiring 20 days after the month, database job failures, a backup gone stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from collector.config import parse_collector_config
from collector.reports import build_report, render_report
from collector.store import Store
from probes.result import CheckResult, Metric, Status

START = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)     # 2026-11-01 00:00 in Shanghai
END = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
GIB = 1024 ** 3


def result(check: str, kind: str, day: int, status: Status = Status.OK, reason: str = "ok",
           metrics: tuple[Metric, ...] = (), target: str = "") -> CheckResult:
    return CheckResult(agent_id="emr-db-01", check_id=check, kind=kind, system="EMR",
                       status=status, reason=reason, target=target,
                       started_at=START + timedelta(days=day, hours=1), duration_s=0.1,
                       interval_s=86400, summary=f"{check} {reason}", metrics=metrics)


def host(day: int) -> CheckResult:
    used = (100 + day) * GIB
    return result("host", "host", day, metrics=(
        Metric(name="host_cpu_usage_ratio", value=0.95 if day == 14 else 0.25),
        Metric(name="host_memory_used_ratio", value=0.5),
        Metric(name="host_filesystem_used_bytes", value=used, labels={"mountpoint": "/u01"}),
        Metric(name="host_filesystem_size_bytes", value=140 * GIB,
               labels={"mountpoint": "/u01"}),
        Metric(name="host_filesystem_free_bytes", value=140 * GIB - used,
               labels={"mountpoint": "/u01"}),
        Metric(name="host_filesystem_used_ratio", value=used / (140 * GIB),
               labels={"mountpoint": "/u01"})))


async def test_month_of_results(store_url: str) -> None:
    store = await Store.open(store_url)
    config = parse_collector_config({"store": store_url, "systems": [
        {"id": "EMR", "name": "电子病历", "core": True, "members": ["emr-db-01/*"]}]})
    expires = END + timedelta(days=20)
    batch = [host(day) for day in range(30)]
    batch += [result("portal", "http", day, target="https://emr.hospital.local/", metrics=(
        Metric(name="http_tls_cert_not_after_timestamp_seconds", value=expires.timestamp()),))
        for day in range(30)]
    batch += [result("oracle", "oracle", day, *((Status.CRITICAL, "job_failed")
                                                if day in (5, 6) else (Status.OK, "ok")))
              for day in range(30)]
    batch += [result("rman-files", "backup_files", day,
                     *((Status.CRITICAL, "backup_stale") if day >= 28 else (Status.OK, "ok")))
              for day in range(30)]
    try:
        await store.ingest("emr-db-01", batch, END)
        report = await build_report(config, store, "inspection", start=START, end=END,
                                    now=END + timedelta(days=1))
    finally:
        await store.close()
    [resources] = report.table("resources").records()
    assert resources["cpu_peak"] == 0.95 and resources["samples"] == 30
    assert resources["cpu_mean"] == pytest.approx((29 * 0.25 + 0.95) / 30)
    [disk] = report.table("disks").records()
    assert disk["growth_per_day"] == pytest.approx(GIB)
    last_used = 129 * GIB
    assert disk["free_bytes"] == 140 * GIB - last_used
    assert disk["days_to_full"] == pytest.approx(11)
    [cert] = report.table("certificates").records()
    assert cert["not_after"] == expires and cert["days_left"] == pytest.approx(20)
    [job] = report.table("jobs").records()
    assert (job["check"], job["failures"]) == ("oracle", 2)
    [backup] = report.table("backups").records()
    assert backup["last_ok"] == START + timedelta(days=27, hours=1)
    assert backup["last_status"] == "critical" and backup["failures"] == 2
    health = {r["check"]: r for r in report.table("middleware").records()}
    assert health["portal"]["ok_ratio"] == 1.0
    actions = "\n".join(report.actions)
    assert "/u01 预计 11 天内写满" in actions
    assert "证书将于 20 天内到期" in actions
    assert "数据库作业失败 2 次" in actions
    assert "rman-files" in actions and "CPU 峰值 95.0 %" in actions
    data = json.loads(render_report(report, "json"))
    assert data["actions"] == report.actions
    html = render_report(report, "html").decode()
    assert "月度巡检报告" in html and "需处理事项" in html and "https://" not in html.replace(
        "https://emr.hospital.local/", "")
