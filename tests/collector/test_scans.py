"""The collector's scheduled agentless scans against Debian's real sshd on a loopback port (the
helpers of tests/probes/test_ssh.py): results stored through the ingest path under the
configured agent id (inventory, hardening findings), an unknown host key refused and recorded
as a failed scan, the schedule kept across restarts, a missed schedule caught up once, and
result ids derived from the scan so storing it twice stores it once."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from collector.app import STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.scans import AgentlessConfig, ScanMetrics, Scanner
from collector.schema import agentless_scans, inventories, results
from collector.store import Store, utcnow
from probes.config import ConfigError
from probes.result import CheckResult
from tests.probes.test_opatch import make_home
from tests.probes.test_ssh import _known_hosts, _start_sshd, ssh_keys
from tests.services import free_port, stop_process

__all__ = ["ssh_keys"]   # the session fixture, shared with the ssh tests


@pytest.fixture(scope="module")
def sshd_port(ssh_keys: Path) -> Iterator[int]:
    port = free_port()
    proc = _start_sshd(ssh_keys, port)
    try:
        yield port
    finally:
        stop_process(proc)


def section(keys: Path, port: int, **extra: Any) -> dict[str, Any]:
    user = pwd.getpwuid(os.geteuid()).pw_name
    empty = keys / "known_hosts-empty"
    empty.write_text("")
    return {
        "every": "24h", "concurrency": 4, "per_host_limit": "120s", "connect_timeout": "5s",
        "key_file": str(keys / "user_key"), "known_hosts": str(_known_hosts(keys, [port])),
        "hosts": [
            {"host": "127.0.0.1", "port": port, "user": user, "agent_id": "lis-db-01",
             "system": "LIS", "policies": ["linux", "sshd"]},
            # a host whose key nobody has checked: its known_hosts has no entry
            {"host": "localhost", "port": port, "user": user, "agent_id": "pacs-01",
             "known_hosts": str(empty)},
        ], **extra}


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    base = {"key_file": "/k", "known_hosts": "/kh"}
    cases = [
        ({**base, "hosts": [{"host": "h", "user": "u", "agent_id": "a", "policies": ["x"]}]},
         "agentless.hosts[0].policies: unknown policy 'x'"),
        ({**base, "hosts": [{"host": "h", "user": "u"}]}, "agentless.hosts[0].agent_id"),
        ({**base, "concurrency": 0}, "agentless.concurrency"),
        ({**base, "hosts": [{"host": "h", "user": "u", "agent_id": "a"},
                            {"host": "g", "user": "u", "agent_id": "a"}]},
         "agent_id 'a' is used by two hosts"),
        ({"known_hosts": "/kh"}, "agentless.key_file"),
        ({**base, "every": "1m", "per_host_limit": "5m"}, "must not exceed every"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError) as caught:
            parse_collector_config({"agentless": data})
        assert message in str(caught.value), str(caught.value)
    parsed = parse_collector_config({"agentless": {**base, "every": "12h", "hosts": [
        {"host": "10.0.0.21", "user": "wardwatch", "agent_id": "lis-db-01"}]}})
    assert parsed.agentless is not None and parsed.agentless.every == 43200


async def _rows(store: Store, table: sa.Table) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(table))).mappings()]


async def test_collector_scans_on_schedule_and_stores_like_an_agent(
        ssh_keys: Path, sshd_port: int, tmp_path: Path) -> None:
    known_hosts = section(ssh_keys, sshd_port)["known_hosts"]
    before = await asyncio.to_thread(Path(known_hosts).read_bytes)
    scanned = section(ssh_keys, sshd_port)
    # a WebLogic home on the scanned host: its OPatch answers with Oracle's recorded listing
    home = make_home(tmp_path)
    scanned["hosts"][0]["oracle_homes"] = [{"path": str(home)}]
    config = parse_collector_config({"store": f"sqlite:///{tmp_path}/c.db",
                                     "agentless": scanned})
    app = create_app(config)
    async with TestClient(TestServer(app)) as client:
        store = app[STORE_KEY]
        # the loop scans both hosts at start-up (never scanned): wait for both records
        for _ in range(120 * 4):
            if len(await _rows(store, agentless_scans)) == 2:
                break
            await asyncio.sleep(0.25)
        runs = {r["agent_id"]: r for r in await _rows(store, agentless_scans)}
        assert set(runs) == {"lis-db-01", "pacs-01"}, "scans did not finish in 120 s"

        lis = runs["lis-db-01"]
        assert lis["last_ok"] is True and lis["runs"] == 1 and lis["failures"] == 0
        stored = [r for r in await _rows(store, results) if r["agent_id"] == "lis-db-01"]
        assert sorted((r["check_id"], r["kind"]) for r in stored) == [
            ("hardening", "hardening"), ("patches", "patches")]
        [inv] = [r for r in await _rows(store, inventories) if r["host"] == "lis-db-01"]
        assert inv["summary"]["os"]["id"] == "debian"
        assert len(inv["packages"]) > 100            # this machine's dpkg list, over SSH
        [wls] = inv["summary"]["oracle_homes"]
        assert (wls["path"], wls["product"], wls["error"]) == (str(home), "weblogic", None)
        assert wls["version"] and wls["patches"] > 0
        patches = await (await client.get("/api/v1/hosts/lis-db-01/patches")).json()
        assert patches["inventories"][0]["summary"]["package_manager"] == "dpkg"
        # the test sshd allows root login with a key: the sshd policy finds it
        keys = {f["key"] for f in patches["findings"]}
        assert any(k.startswith("hardening:sshd.") for k in keys), keys

        pacs = runs["pacs-01"]
        assert pacs["last_ok"] is False and pacs["last_reason"] == "host_key_unknown"
        assert "host key refused" in pacs["last_error"]
        assert "SHA256:" in pacs["last_error"]
        assert not [r for r in await _rows(store, results) if r["agent_id"] == "pacs-01"]
        assert await asyncio.to_thread(Path(known_hosts).read_bytes) == before   # not added

        text = await (await client.get("/metrics")).text()
        assert 'wardwatch_collector_agentless_scans_total{agent="lis-db-01"} 1.0' in text
        assert ('wardwatch_collector_agentless_scans_failed_total{agent="pacs-01",'
                'reason="host_key_unknown"} 1.0') in text
        assert 'wardwatch_collector_agentless_last_success_age_seconds{agent="lis-db-01"}' \
            in text

    # a restart: the schedule is read back, nothing is due before `every` has passed
    store = await Store.open(config.store)
    try:
        assert config.agentless is not None
        scanner = Scanner(config.agentless, store, _no_sink, ScanMetrics(CollectorRegistry()))
        assert await scanner.due(utcnow()) == []
        assert [h.agent_id for h in await scanner.due(utcnow() + timedelta(hours=24))] == [
            "lis-db-01", "pacs-01"]
    finally:
        await store.close()


async def _no_sink(_agent_id: str, _results: list[CheckResult]) -> None:
    raise AssertionError("nothing should be stored")


async def test_missed_schedule_catches_up_once_with_stable_result_ids(
        ssh_keys: Path, sshd_port: int, tmp_path: Path) -> None:
    data = section(ssh_keys, sshd_port)
    data["hosts"] = data["hosts"][:1]
    data["hosts"][0]["policies"] = []
    config = AgentlessConfig.model_validate(data)
    now = utcnow()
    clock = [now]
    ids: list[list[str]] = []
    for run in range(2):
        store = await Store.open(f"sqlite:///{tmp_path}/s{run}.db")
        stored: list[CheckResult] = []

        async def sink(agent_id: str, batch: list[CheckResult], store: Store = store,
                       stored: list[CheckResult] = stored) -> None:
            outcome = await store.ingest(agent_id, batch, utcnow())
            assert outcome.accepted == len(batch)
            stored.extend(batch)

        try:
            scanner = Scanner(config, store, sink, ScanMetrics(CollectorRegistry()),
                              clock=lambda: clock[0])
            clock[0] = now
            [first] = await scanner.run_due()
            assert first.ok, first.error
            # the collector was down for three periods: the host is due once, not three times
            clock[0] = now + timedelta(days=3, minutes=1)
            assert [h.agent_id for h in await scanner.due(clock[0])] == ["lis-db-01"]
            [second] = await scanner.run_due()
            assert second.ok
            assert await scanner.due(clock[0]) == []
            assert await scanner.run_due() == []
            [record] = await _rows(store, agentless_scans)
            assert record["runs"] == 2 and record["last_started_at"] == clock[0]
            assert await scanner.seconds_to_next(clock[0]) == pytest.approx(86400)
            # storing a scan again stores nothing new: ids come from agent, check and start
            again = await store.ingest("lis-db-01", stored[:1], utcnow())
            assert (again.accepted, again.duplicates) == (0, 1)
            ids.append(sorted(str(r.id) for r in stored))
        finally:
            await store.close()
    assert ids[0] == ids[1]          # the same scan (host, check, start) has the same ids

