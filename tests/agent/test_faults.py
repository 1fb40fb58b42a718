"""Fault injection on the agent (issue 10): a damaged spool, wall-clock steps, SIGKILL with a
full spool. What each fault does is written down in docs/agent-faults.md.

The spool's format is its module docstring's: `CRC32HEX JSON\\n` lines in `seg-N.jsonl`
segments, a `cursor.json`. Damage is made by writing those files directly, as a crash, a
failing disk or another program would. The process tests run the real agent and collector
(`python -m agent`, `python -m collector`) on loopback ports, like tests/test_outage.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import probes.result
from agent.config import CollectorSection, parse_agent_config
from agent.metrics import create_registry
from agent.push import Pusher
from agent.scheduler import Scheduler
from agent.spool import Spool
from agent.state import AgentState
from probes.result import CheckResult, Status
from tests.services import free_port, start_module, stop_group, wait_for_port

MiB = 1024 * 1024
T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = 3600.0


def result(n: int, *, agent_id: str = "emr-app-01", check_id: str = "db",
           t0: datetime = T0) -> CheckResult:
    return CheckResult(agent_id=agent_id, check_id=check_id, kind="tcp", system="EMR",
                       status=Status.OK, reason="ok", started_at=t0 + timedelta(seconds=n),
                       duration_s=0.002, interval_s=0.5, summary=f"r{n}")


def frame(payload: bytes) -> bytes:
    """A spool line with a valid checksum around `payload` (the documented format)."""
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.jsonl"))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def fill(directory: Path, count: int, **kw: Any) -> list[CheckResult]:
    """`count` results spooled one append (one fsync) each, as the agent writes them."""
    results = [result(n) for n in range(count)]
    with Spool(directory, MiB, **kw) as spool:
        for r in results:
            spool.append([r])
    return results


def summaries(spool: Spool) -> list[str]:
    return [json.loads(record)["summary"] for record in spool.peek(1_000_000).records]


def names(numbers: Iterable[int]) -> list[str]:
    return [f"r{n}" for n in numbers]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "wardwatch.agent.spool"]


# --- a damaged spool (unit level) -----------------------------------------------------------


def test_a_record_truncated_mid_line_is_cut_counted_and_appending_resumes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 10)
    [path] = segments(tmp_path)
    lines = lines_of(path)
    keep = sum(map(len, lines[:7]))
    os.truncate(path, keep + len(lines[7]) // 2)  # power loss inside the write of r7
    caplog.set_level(logging.WARNING, "wardwatch.agent.spool")
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(7))
        assert spool.dropped["corrupt"] == 1
        assert spool.corrupt_bytes == len(lines[7]) // 2
        spool.append([result(10)])
        assert summaries(spool) == names([*range(7), 10])
    [line] = warnings(caplog)
    assert f"skipped 1 damaged records ({len(lines[7]) // 2} bytes" in line
    assert "kept 7 readable ones" in line and "cut short" in line
    assert f"cut {len(lines[7]) // 2} bytes from the end of {path.name}" in line
    caplog.clear()
    with Spool(tmp_path, MiB) as spool:  # the file is whole again: nothing more to report
        assert summaries(spool) == names([*range(7), 10])
        assert spool.dropped_total == 0 and spool.corrupt_bytes == 0
    assert warnings(caplog) == []


def test_garbage_appended_is_skipped_without_losing_a_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 5)
    [path] = segments(tmp_path)
    garbage = b"\x00" * 300 + b"\n" + b"\xff\xfe not ours \x01\n" + b"\x13\x37 no newline"
    with open(path, "ab") as f:
        f.write(garbage)
    caplog.set_level(logging.WARNING, "wardwatch.agent.spool")
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(5))
        assert spool.dropped["corrupt"] == 0  # no record was lost, only foreign bytes
        assert spool.corrupt_bytes == len(garbage)
        spool.append([result(5), result(6)])
        assert summaries(spool) == names(range(7))
        assert spool.pending_count == 7
    [line] = warnings(caplog)
    assert f"({len(garbage)} bytes of damaged data in all)" in line
    assert "bytes that are not records at all" in line
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(7))  # appended after the damage, read back
        spool.ack(spool.peek(100))
        assert spool.pending_count == 0


def test_zeros_after_a_power_loss_are_cut(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    [path] = segments(tmp_path)
    with open(path, "ab") as f:  # the size was journalled, the data blocks were not
        f.write(b"\x00" * 4096)
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(3))
        assert spool.corrupt_bytes == 4096 and spool.dropped_total == 0
        spool.append([result(3)])
    assert path.stat().st_size == sum(map(len, lines_of(path)))
    assert lines_of(path)[-1].endswith(b"\n")


def test_zero_length_segments_and_cursor(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 4, segment_bytes=4096)
    first = segments(tmp_path)[0]
    # a crash right after rolling to a new segment leaves an empty newest file; a crash while
    # the cursor was being replaced (by another tool: the spool itself renames) leaves it empty
    empty = first.with_name("seg-0000000000000009.jsonl")
    empty.touch()
    (tmp_path / "cursor.json").write_bytes(b"")
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(4))  # replayed whole: sent again, stored once
        spool.append([result(4)])
        assert summaries(spool) == names(range(5))
    assert "unreadable" in caplog.text and "replaying from the oldest segment" in caplog.text
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(5))
        assert spool.dropped_total == 0


def test_a_cursor_past_a_truncated_end_does_not_swallow_later_records(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The saved cursor pointed at byte ~2000 of the newest segment; the disk gave that
    segment back empty. Records appended after the restart start at byte 0 again and must
    not count as acknowledged at the next open."""
    fill(tmp_path, 10)
    with Spool(tmp_path, MiB) as spool:
        assert spool.ack(spool.peek(6))
    [path] = segments(tmp_path)
    os.truncate(path, 0)
    with Spool(tmp_path, MiB) as spool:
        assert spool.pending_count == 0
        spool.append([result(n) for n in range(10, 13)])
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(10, 13))
    assert "is not at a record boundary" in caplog.text


def test_a_cursor_inside_a_line_moves_back_and_stays_there(tmp_path: Path) -> None:
    fill(tmp_path, 6)
    [path] = segments(tmp_path)
    lines = lines_of(path)
    inside = sum(map(len, lines[:3])) + 5
    (tmp_path / "cursor.json").write_text(json.dumps({"segment": 1, "offset": inside}))
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(range(3, 6))  # r3 is sent again rather than lost
    assert json.loads((tmp_path / "cursor.json").read_bytes())["offset"] == inside - 5


def test_valid_framing_around_invalid_json_is_never_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 4)
    [path] = segments(tmp_path)
    lines = lines_of(path)
    bad = [frame(b"not json at all"), frame(b"[1, 2, 3]"), frame(b"\xff\xfe{"),
           frame(b'{"truncated": ')]
    # 12 such records in a row: as a batch they cost the collector a 400 each, and one by one
    # they would pass the pusher's poison limit (10) and hold the spool for ever
    path.write_bytes(b"".join([lines[0], *bad * 3, *lines[1:]]))
    caplog.set_level(logging.WARNING, "wardwatch.agent.spool")
    with Spool(tmp_path, MiB) as spool:
        assert spool.pending_count == 16  # checksums fit: found when read, not at open
        batch = spool.peek(100)
        assert [json.loads(r)["summary"] for r in batch.records] == names(range(4))
        assert spool.dropped["corrupt"] == 12
        assert spool.corrupt_bytes == 3 * sum(map(len, bad))
        assert spool.pending_count == 4
        assert summaries(spool) == names(range(4))  # counted once
        assert spool.dropped["corrupt"] == 12
        assert spool.ack(batch)
        spool.append([result(4)])
        assert summaries(spool) == names([4])
    found = [m for m in warnings(caplog) if "not a JSON object" in m]
    assert len(found) == 12 and "dropped a damaged record in seg-" in found[0]


def test_damage_in_an_older_segment_keeps_order_around_it(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=4096)
    paths = segments(tmp_path)
    assert len(paths) >= 3
    older = lines_of(paths[0])
    older[2] = older[2].replace(b'"r2"', b'"rX"')  # a flipped byte: checksum mismatch
    paths[0].write_bytes(b"".join(older[:-1]) + older[-1][:20])  # and a torn tail
    lost = {2, len(older) - 1}
    with Spool(tmp_path, MiB) as spool:
        assert summaries(spool) == names(n for n in range(40) if n not in lost)
        assert spool.dropped["corrupt"] == 2


# --- wall-clock steps (±1 h) ------------------------------------------------------------------


class SteppedWallClock:
    """The wall clock (time.time, datetime.now) as `offset` seconds off the real one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real_time, real_time_ns, real_datetime = time.time, time.time_ns, datetime
        clock = self

        class SteppedDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> SteppedDatetime:
                moved = real_datetime.now(tz) + timedelta(seconds=clock.offset)
                return cls.fromtimestamp(moved.timestamp(), tz)

        monkeypatch.setattr(time, "time", lambda: real_time() + self.offset)
        monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(self.offset * 1e9))
        monkeypatch.setattr(probes.result, "datetime", SteppedDatetime)


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> SteppedWallClock:
    return SteppedWallClock(monkeypatch)


class Arrivals:
    """Results from a scheduler's sink with the monotonic time each arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[float, CheckResult, float]] = []
        self.changed = asyncio.Event()

    def __call__(self, res: CheckResult, lag: float) -> None:
        self.items.append((asyncio.get_running_loop().time(), res, lag))
        self.changed.set()

    async def count(self, n: int, within: float) -> list[tuple[float, CheckResult, float]]:
        """Wait for `n` more results; return them."""
        start = len(self.items)
        async with asyncio.timeout(within):
            while len(self.items) < start + n:
                self.changed.clear()
                await self.changed.wait()
        return self.items[start:start + n]


async def test_a_wall_clock_step_neither_bursts_nor_stalls_the_schedule(
        wall: SteppedWallClock, answer_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wardwatch.agent.scheduler")
    interval = 0.2
    cfg = parse_agent_config({"checks": [
        {"id": "db", "kind": "tcp", "host": "127.0.0.1", "port": answer_port,
         "expect": "READY", "interval": interval, "timeout": 0.15}]})
    arrivals = Arrivals()
    scheduler = Scheduler("clock", arrivals)
    scheduler.apply(cfg.checks)
    try:
        await arrivals.count(2, within=2)
        phases: list[tuple[float, list[tuple[float, CheckResult, float]]]] = []
        for offset in (HOUR, -HOUR, 0.0):
            wall.offset = offset
            phases.append((offset, await arrivals.count(5, within=5 * interval + 1.5)))
    finally:
        await scheduler.stop()
    for offset, runs in phases:
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(runs)]
        # one run per interval: no burst to "catch up" an hour, no hour of waiting
        assert all(0.5 * interval < gap < 1.5 * interval for gap in gaps), (offset, gaps)
        for _at, res, lag in runs[1:]:
            assert res.status is Status.OK, res.summary
            assert 0 <= res.duration_s < 0.1, (offset, res.duration_s)
            assert lag < 0.1, (offset, lag)
            # the timestamp is wall time, as the collector needs it (even a wrong one)
            skew = (res.started_at - datetime.now(UTC)).total_seconds()
            assert abs(skew - offset) < 5, (offset, skew)
    # each step is logged once, so that shifted evidence can be explained later
    steps = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert [m.split("by ")[1].split(".")[0] for m in steps] == ["+3600", "-7200", "+3600"]


async def test_a_timed_out_run_measures_its_duration_on_the_monotonic_clock(
        wall: SteppedWallClock, hung_port: int) -> None:
    from agent.runner import run_check
    from probes.tcp import TcpCheck

    check = TcpCheck.model_validate({"id": "hung", "kind": "tcp", "host": "127.0.0.1",
                                     "port": hung_port, "expect": "x", "timeout": 0.3})

    async def step_back() -> None:
        await asyncio.sleep(0.1)
        wall.offset = -HOUR  # NTP steps the clock back while the probe waits

    stepper = asyncio.create_task(step_back())
    res = await run_check(check, "clock")
    await stepper
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    assert 0.3 <= res.duration_s < 0.6


async def test_a_probe_that_hangs_in_its_clean_up_still_reports_on_time(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        hung_port: int) -> None:
    """A probe whose clean-up never ends after the cancellation (a close waiting on a peer
    that stopped reading; a library that swallows the cancellation) must not hold its check:
    the runner gives it CANCEL_GRACE_S, then reports the timeout and leaves it behind."""
    from agent import runner
    from probes.registry import ProbeKind, get_kind
    from probes.tcp import TcpCheck

    async def wedged(check: TcpCheck) -> Any:
        reader, writer = await asyncio.open_connection(check.host, check.port)
        try:
            await reader.read(1)  # the target never answers
        finally:
            try:
                await asyncio.Event().wait()  # and the clean-up never ends
            finally:
                writer.transport.abort()

    tcp = get_kind("tcp")
    monkeypatch.setattr(runner, "get_kind", lambda _kind: ProbeKind(
        kind="tcp", config=tcp.config, metrics=tcp.metrics, probe=wedged))
    check = TcpCheck.model_validate({"id": "wedged", "kind": "tcp", "host": "127.0.0.1",
                                     "port": hung_port, "timeout": 0.3})
    res = await runner.run_check(check, "a")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    assert 0.3 + runner.CANCEL_GRACE_S <= res.duration_s < 0.3 + runner.CANCEL_GRACE_S + 0.3
    assert "did not stop within" in caplog.text
    [left] = [t for t in asyncio.all_tasks() if t.get_name() == "probe:wedged"]
    left.cancel()  # the test's own tidy-up: a second cancellation ends the wedge
    await asyncio.gather(left, return_exceptions=True)


async def test_push_cadence_ignores_wall_clock_steps(
        wall: SteppedWallClock, tmp_path: Path) -> None:
    heartbeats: list[float] = []
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        heartbeats.append(asyncio.get_running_loop().time())
        arrived.set()
        return web.json_response({"accepted": 0, "duplicates": 0})

    app = web.Application()
    app.router.add_post("/api/v1/results", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    token = tmp_path / "token"
    token.write_text("t")
    spool = Spool(tmp_path / "spool", MiB)
    config = CollectorSection(url=f"http://127.0.0.1:{port}", token_file=token,
                              push_interval=0.2)
    pusher = Pusher(config, "clock", spool, backoff=(0.01, 0.05), request_timeout=2)

    async def beats(n: int) -> list[float]:
        start = len(heartbeats)
        async with asyncio.timeout(n * 0.2 + 2):
            while len(heartbeats) < start + n:
                arrived.clear()
                await arrived.wait()
        return heartbeats[start:start + n]

    await pusher.start()
    try:
        await beats(1)
        for offset in (HOUR, -HOUR):
            wall.offset = offset
            times = await beats(4)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(0.1 < gap < 0.35 for gap in gaps), (offset, gaps)
    finally:
        await pusher.stop()
        spool.close()
        await runner.cleanup()


def uptime(state: AgentState, registry: Any) -> float:
    for family in registry.collect():
        if family.name == "wardwatch_agent_uptime_seconds":
            return float(family.samples[0].value)
    raise AssertionError("no uptime metric")


def test_uptime_is_a_duration_not_a_wall_clock_difference(wall: SteppedWallClock) -> None:
    state = AgentState(agent_id="clock")
    registry = create_registry(state, "test")
    before = uptime(state, registry)
    wall.offset = HOUR
    ahead = uptime(state, registry)
    wall.offset = -HOUR
    behind = uptime(state, registry)
    assert 0 <= before <= ahead <= behind < before + 1, (before, ahead, behind)


# --- real processes ---------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """`name{label="v",...}` -> value from a /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def until(predicate: Callable[[], bool], within: float, what: str,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise AssertionError(f"not within {within}s: {what}\n{tail}")
        time.sleep(0.1)


def stored_ids(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT id FROM results")]
    except sqlite3.OperationalError:  # created, not yet migrated
        return []


class Site:
    """A collector config with one enrolled agent `a1`, and an agent config pointing at it:
    a 1 MiB spool (the smallest allowed), pushes every 0.2 s, two checks of the agent's own
    listener every 0.5 s (~4 results a second, ~1.7 KB/s of spool)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.collector_port, self.agent_port = free_port(), free_port()
        self.db = tmp_path / "collector.db"
        self.collector_yaml = tmp_path / "collector.yaml"
        self.collector_yaml.write_text(yaml.safe_dump({
            "listen": f"127.0.0.1:{self.collector_port}", "store": f"sqlite:///{self.db}"}))
        token = subprocess.run([sys.executable, "-m", "collector", "agents", "add", "a1",
                                "--config", str(self.collector_yaml)], capture_output=True,
                               text=True, check=True, timeout=60).stdout.strip()
        (tmp_path / "token").write_text(token)
        self.spool_dir = tmp_path / "state" / "spool"
        self.agent_yaml = tmp_path / "agent.yaml"
        self.agent_yaml.write_text(yaml.safe_dump({
            "agent": {"id": "a1", "listen": f"127.0.0.1:{self.agent_port}",
                      "state_dir": str(tmp_path / "state")},
            "collector": {"url": f"http://127.0.0.1:{self.collector_port}",
                          "token_file": str(tmp_path / "token"), "push_interval": 0.2,
                          "spool_max_bytes": MiB},
            "checks": [{"id": f"c{i}", "kind": "tcp", "host": "127.0.0.1",
                        "port": self.agent_port, "interval": 0.5, "timeout": 0.4}
                       for i in range(2)]}))
        self.procs: list[subprocess.Popen[bytes]] = []

    def agent(self, log: Path) -> subprocess.Popen[bytes]:
        proc = start_module(["agent", "run", "--config", str(self.agent_yaml)], log)
        self.procs.append(proc)
        return proc

    def collector(self, log: Path) -> subprocess.Popen[bytes]:
        proc = start_module(["collector", "run", "--config", str(self.collector_yaml)], log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_group(proc, signal.SIGKILL)


def spooled_ids(directory: Path) -> list[str]:
    """What the spool holds, read by the agent's own reader (the agent is not running)."""
    with Spool(directory, MiB) as spool:
        return [json.loads(record)["id"] for record in spool.peek(1_000_000).records]


def test_sigkill_with_a_full_spool_loses_nothing_it_held(tmp_path: Path) -> None:
    site = Site(tmp_path)
    # An outage of hours, compressed: the spool is filled to 8 KB below its 1 MiB bound
    # with the agent's own (older) results, so the running agent overflows within seconds.
    now = datetime.now(UTC)
    seeded: list[str] = []
    with Spool(site.spool_dir, MiB) as spool:
        n = 0
        while spool.disk_bytes < MiB - 8 * 1024:
            batch = [result(n + i, agent_id="a1", check_id=f"c{(n + i) % 2}",
                            t0=now - timedelta(hours=1)) for i in range(20)]
            spool.append(batch)
            seeded += [str(r.id) for r in batch]
            n += 20
    log1, log2 = tmp_path / "agent-1.log", tmp_path / "agent-2.log"
    collector_log = tmp_path / "collector.log"
    try:
        first = site.agent(log1)
        wait_for_port(site.agent_port)
        overflow = 'wardwatch_agent_spool_dropped_results_total{reason="overflow"}'
        seen: dict[str, float] = {}

        def dropped() -> bool:
            seen.update(scrape(site.agent_port))
            return seen.get(overflow, 0) > 0

        until(dropped, 15, "the agent drops its oldest results", log1)
        stop_group(first, signal.SIGKILL)
        held = spooled_ids(site.spool_dir)

        second = site.agent(log2)
        collector = site.collector(collector_log)
        wait_for_port(site.collector_port)
        until(lambda: set(held) <= set(stored_ids(site.db)), 25,
              "every held result reaches the collector", log2)
        after = scrape(site.agent_port)
        stop_group(second)  # graceful: its last results are pushed
        collector_metrics = scrape(site.collector_port)
        stop_group(collector)
    finally:
        site.stop_all()

    # the drop: counted on /metrics and logged, oldest first, whole segments
    spool_lines = [line for line in log1.read_text().splitlines() if "spool full" in line]
    logged = sum(int(line.split("dropped the ")[1].split()[0]) for line in spool_lines)
    assert spool_lines and all(" WARNING " in line for line in spool_lines)
    gone = [rid for rid in seeded if rid not in set(held)]
    assert gone == seeded[:len(gone)], "overflow drops the oldest first"
    assert len(gone) == logged >= seen[overflow] > 0
    # the restart found what the kill left
    assert f"spool: {len(held)} results" in log2.read_text()
    # delivery: everything held, nothing dropped, nothing twice
    ids = stored_ids(site.db)
    assert len(ids) == len(set(ids))
    assert set(held) <= set(ids)
    assert not set(gone) & set(ids)
    assert after.get(overflow) == 0, "the restarted agent had to drop: the test outran itself"
    assert collector_metrics["wardwatch_collector_results_duplicate_total"] == 0


def test_an_agent_starts_on_a_damaged_spool_and_delivers_the_rest(tmp_path: Path) -> None:
    site = Site(tmp_path)
    now = datetime.now(UTC)
    old = [result(n, agent_id="a1", check_id="c0", t0=now - timedelta(minutes=5))
           for n in range(20)]
    with Spool(site.spool_dir, MiB) as spool:
        for r in old:
            spool.append([r])
    [path] = segments(site.spool_dir)
    lines = lines_of(path)
    # valid checksums around what is not JSON, 12 in a row: more than the pusher's poison
    # limit (10), after which it holds the spool rather than drop what the collector refuses
    not_json = [frame(b'{"id": "half a record %d' % i) for i in range(12)]
    flipped = lines[10].replace(b'"r10"', b'"rXX"')          # checksum mismatch
    torn = lines[19][:len(lines[19]) // 2]                   # the last write, interrupted
    garbage = b"\x00" * 512                                  # and zeros after it
    path.write_bytes(b"".join([*lines[:5], *not_json, *lines[5:10], flipped, *lines[11:19],
                               torn, garbage]))
    (site.spool_dir / "cursor.json").write_bytes(b"")        # an empty cursor file
    damaged_bytes = sum(map(len, not_json)) + len(flipped) + len(torn) + len(garbage)
    expected = [str(r.id) for i, r in enumerate(old) if i not in (10, 19)]
    log, collector_log = tmp_path / "agent.log", tmp_path / "collector.log"
    try:
        agent = site.agent(log)
        collector = site.collector(collector_log)
        wait_for_port(site.agent_port)
        wait_for_port(site.collector_port)

        def new_results() -> list[str]:
            return [rid for rid in stored_ids(site.db) if rid not in set(expected)]

        until(lambda: set(expected) <= set(stored_ids(site.db)) and len(new_results()) >= 4,
              25, "the readable records and new results arrive", log)
        metrics = scrape(site.agent_port)
        stop_group(agent)
        collector_metrics = scrape(site.collector_port)
        stop_group(collector)
    finally:
        site.stop_all()
    text = log.read_text()
    [at_open] = [line for line in text.splitlines() if "damaged records" in line]
    assert " WARNING " in at_open
    assert "skipped 2 damaged records" in at_open and "cut short" in at_open
    assert "failing their checksum" in at_open and "kept 30 readable ones" in at_open
    at_read = [line for line in text.splitlines() if "not a JSON object" in line]
    assert len(at_read) == 12 and all(" WARNING " in line for line in at_read)
    assert metrics['wardwatch_agent_spool_dropped_results_total{reason="corrupt"}'] == 14
    assert metrics["wardwatch_agent_spool_corrupt_bytes_total"] == damaged_bytes
    ids = stored_ids(site.db)
    assert len(ids) == len(set(ids)) and set(expected) <= set(ids)
    # the damaged record never reached the collector as a request it had to refuse
    assert collector_metrics.get(
        'wardwatch_collector_batches_rejected_total{reason="invalid"}', 0) == 0
    assert collector_metrics["wardwatch_collector_results_duplicate_total"] == 0
    with Spool(site.spool_dir, MiB) as spool:  # appended after the damage, and readable
        assert spool.dropped_total == 0 and spool.pending_count == 0
