"""process probe against real processes this test starts: python sleepers with a unique marker
in their command line, a `sleep` run under a unique name, pid files written here, a zombie."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.process import ProcessCheck, probe
from probes.result import ProbeResult, Status

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def marker() -> str:
    return f"wardwatch-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start processes that are killed and reaped when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def sleeper(spawn: Spawn, marker: str) -> subprocess.Popen[bytes]:
    return spawn(sys.executable, "-c", "import time; time.sleep(30)", marker)


def check(**kw: object) -> ProcessCheck:
    return ProcessCheck.model_validate({"id": "p", "kind": "process", **kw})


def metric(res: ProbeResult, name: str) -> float | None:
    return next((m.value for m in res.metrics if m.name == name), None)


async def test_cmdline_match_is_ok_with_sane_metrics(spawn: Spawn, marker: str) -> None:
    proc = sleeper(spawn, marker)
    res = await probe(check(cmdline=marker))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert res.summary.startswith(f"1 process matches /{marker}/, rss ")
    assert res.details["pids"] == [proc.pid]
    assert metric(res, "process_matching") == 1
    rss = metric(res, "process_resident_memory_bytes")
    assert rss is not None and 1 << 20 < rss < 1 << 30
    cpu = metric(res, "process_cpu_seconds_total")
    assert cpu is not None and 0 <= cpu < 30
    started = metric(res, "process_oldest_start_time_seconds")
    assert started is not None and abs(started - psutil.Process(proc.pid).create_time()) < 1e-3
    assert started <= time.time()
    if hasattr(psutil.Process, "num_fds"):
        fds = metric(res, "process_open_fds")
        assert fds is not None and fds >= 3


async def test_sums_over_every_matching_process(spawn: Spawn, marker: str) -> None:
    procs = [sleeper(spawn, marker) for _ in range(3)]
    res = await probe(check(cmdline=marker))
    assert metric(res, "process_matching") == 3
    assert sorted(res.details["pids"]) == sorted(p.pid for p in procs)
    oldest = min(psutil.Process(p.pid).create_time() for p in procs)
    assert metric(res, "process_oldest_start_time_seconds") == pytest.approx(oldest)


@pytest.mark.skipif(sys.platform == "win32", reason="runs sleep(1) under another name")
async def test_exact_name_match(spawn: Spawn, tmp_path: Path, marker: str) -> None:
    sleep_bin = shutil.which("sleep")
    assert sleep_bin is not None
    name = f"ww{uuid.uuid4().hex[:10]}"  # within the kernel's 15-character comm
    (tmp_path / name).symlink_to(sleep_bin)
    spawn(str(tmp_path / name), "30")
    assert (await probe(check(name=name))).status is Status.OK
    missing = await probe(check(name=name[:-1]))  # a prefix is not the name
    assert (missing.status, missing.reason) == (Status.CRITICAL, "process_missing")
    both = await probe(check(name=name, cmdline=marker))  # every matcher must match
    assert both.reason == "process_missing"


async def test_no_match_is_critical_process_missing(marker: str) -> None:
    res = await probe(check(cmdline=marker))
    assert (res.status, res.reason) == (Status.CRITICAL, "process_missing")
    assert res.summary == f"no process matches /{marker}/"
    assert metric(res, "process_matching") == 0


async def test_no_match_is_fine_when_none_required(marker: str) -> None:
    res = await probe(check(cmdline=marker, min_count=0))
    assert (res.status, res.reason) == (Status.OK, "ok")


async def test_count_bounds(spawn: Spawn, marker: str) -> None:
    for _ in range(2):
        sleeper(spawn, marker)
    few = await probe(check(cmdline=marker, min_count=3))
    assert (few.status, few.reason) == (Status.CRITICAL, "too_few")
    assert few.summary == f"2 processes match /{marker}/, at least 3 required"
    many = await probe(check(cmdline=marker, max_count=1))
    assert (many.status, many.reason) == (Status.WARNING, "too_many")
    assert (await probe(check(cmdline=marker, min_count=2, max_count=2))).status is Status.OK


async def test_rss_levels(spawn: Spawn, marker: str) -> None:
    sleeper(spawn, marker)
    warn = await probe(check(cmdline=marker, rss_bytes={"warning": 1}))
    assert (warn.status, warn.reason) == (Status.WARNING, "rss_high")
    assert "(warning ≥ 1 B)" in warn.summary
    crit = await probe(check(cmdline=marker, rss_bytes={"warning": 1, "critical": 1024}))
    assert (crit.status, crit.reason) == (Status.CRITICAL, "rss_high")
    fine = await probe(check(cmdline=marker, rss_bytes={"critical": 1 << 40}))
    assert fine.status is Status.OK


async def test_pid_file_of_running_process(spawn: Spawn, marker: str, tmp_path: Path) -> None:
    proc = sleeper(spawn, marker)
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{proc.pid}\n")
    res = await probe(check(pid_file=str(pid_file), cmdline=marker))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert res.details["pid_file_pid"] == proc.pid


async def test_pid_file_pointing_at_another_program(spawn: Spawn, marker: str,
                                                    tmp_path: Path) -> None:
    other = sleeper(spawn, f"{marker}-other")
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(other.pid))
    res = await probe(check(pid_file=str(pid_file), cmdline=f"{marker}$"))
    assert (res.status, res.reason) == (Status.CRITICAL, "process_missing")
    assert f"pid {other.pid} from {pid_file} is " in res.summary
    assert "not the selected process" in res.summary


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


async def test_stale_pid_file(tmp_path: Path, dead_pid: int) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(dead_pid))
    res = await probe(check(pid_file=str(pid_file)))
    assert (res.status, res.reason) == (Status.CRITICAL, "process_missing")
    assert f"pid {dead_pid} from {pid_file} is not running" in res.summary


@pytest.mark.parametrize("content", ["", "not-a-pid\n", "-5", "0"])
async def test_pid_file_without_a_pid(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(content)
    res = await probe(check(pid_file=str(pid_file)))
    assert (res.status, res.reason) == (Status.CRITICAL, "pid_file_error")
    assert "does not hold a pid" in res.summary


async def test_missing_pid_file(tmp_path: Path) -> None:
    res = await probe(check(pid_file=str(tmp_path / "absent.pid")))
    assert (res.status, res.reason) == (Status.CRITICAL, "pid_file_error")
    assert res.summary.startswith(f"cannot read pid file {tmp_path / 'absent.pid'}")


@pytest.mark.skipif(sys.platform == "win32", reason="zombies are a POSIX matter")
async def test_zombie_does_not_count(spawn: Spawn, marker: str, tmp_path: Path) -> None:
    proc = sleeper(spawn, marker)
    assert (await probe(check(cmdline=marker))).status is Status.OK
    proc.kill()  # not reaped yet: a zombie until the fixture waits for it
    deadline = time.monotonic() + 5
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed process never became a zombie"
        await asyncio.sleep(0.01)
    res = await probe(check(cmdline=marker))
    assert (res.status, res.reason) == (Status.CRITICAL, "process_missing")
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(str(proc.pid))
    pid_file_res = await probe(check(pid_file=str(pid_file)))
    assert pid_file_res.reason == "process_missing"
    assert "a zombie" in pid_file_res.summary


async def test_the_agent_never_matches_itself() -> None:
    res = await probe(check(cmdline=".", min_count=0))
    assert os.getpid() not in res.details["pids"]


async def test_through_the_runner(spawn: Spawn, marker: str) -> None:
    sleeper(spawn, marker)
    res = await run_check(check(cmdline=marker, system="EMR"), "agent-1")
    assert (res.kind, res.status, res.target) == ("process", Status.OK, f"/{marker}/")


def test_config_needs_a_matcher_and_valid_bounds() -> None:
    with pytest.raises(ValidationError, match="at least one of name, cmdline or pid_file"):
        check()
    with pytest.raises(ValidationError, match="invalid regular expression"):
        check(cmdline="([unclosed")
    with pytest.raises(ValidationError, match="max_count"):
        check(name="java", min_count=3, max_count=2)
