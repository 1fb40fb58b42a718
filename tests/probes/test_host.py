"""host probe on this machine for real: sane values, every level triggered by setting it low,
the mountpoint filters; and evaluate() on a hand-made sample for the exact summary wording."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.host import Clock, Filesystem, HostCheck, HostSample, evaluate, kernel_clock, probe
from probes.result import ProbeResult, Status
from tests.services import needs

LEVELS = ("cpu_percent", "memory_percent", "swap_percent", "filesystem_percent",
          "inode_percent", "load_per_cpu", "clock_offset_seconds")
OFF = {"warning": None, "critical": None}
REASONS = {"ok", "cpu_high", "memory_high", "swap_high", "filesystem_full", "inodes_full",
           "load_high", "clock_offset", "clock_unsynced"}


def host(**kw: Any) -> HostCheck:
    """A host check with a short CPU window and the default levels."""
    return HostCheck.model_validate({"id": "h", "kind": "host", "cpu_sample_seconds": 0.05, **kw})


def only(**kw: Any) -> HostCheck:
    """A host check with every level switched off except those given."""
    return host(**{**{name: OFF for name in LEVELS}, **kw})


def values(res: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in res.metrics if m.name == name}


def value(res: ProbeResult, name: str) -> float:
    [v] = values(res, name).values()
    return v


def mountpoints(res: ProbeResult) -> set[str]:
    return {m.labels["mountpoint"] for m in res.metrics if m.name == "host_filesystem_size_bytes"}


def root_mountpoint() -> str:
    return os.path.abspath(os.sep) if sys.platform != "win32" else os.environ["SYSTEMDRIVE"] + "\\"


async def test_real_host_values_are_sane() -> None:
    started = time.time()
    res = await probe(host())
    assert res.status in {Status.OK, Status.WARNING, Status.CRITICAL}
    assert res.reason in REASONS
    assert 0 <= value(res, "host_cpu_usage_ratio") <= 1
    modes = values(res, "host_cpu_seconds_total")
    assert (("mode", "idle"),) in modes and all(v >= 0 for v in modes.values())
    assert value(res, "host_cpus") == psutil.cpu_count()
    for name in ("host_load1", "host_load5", "host_load15"):
        assert value(res, name) >= 0
    assert value(res, "host_memory_total_bytes") == psutil.virtual_memory().total
    assert 0 < value(res, "host_memory_used_ratio") < 1
    assert 0 <= value(res, "host_swap_used_ratio") <= 1
    assert root_mountpoint() in mountpoints(res)
    for labels, size in values(res, "host_filesystem_size_bytes").items():
        used = values(res, "host_filesystem_used_bytes")[labels]
        free = values(res, "host_filesystem_free_bytes")[labels]
        ratio = values(res, "host_filesystem_used_ratio")[labels]
        assert size > 0 and 0 <= used <= size and 0 <= free <= size and 0 <= ratio <= 1
        assert {k for k, _ in labels} == {"mountpoint", "fstype", "device"}
    assert all(v >= 0 for v in values(res, "host_disk_read_bytes_total").values())
    assert all(v >= 0 for v in values(res, "host_network_receive_errors_total").values())
    assert "lo" not in {m.labels.get("interface") for m in res.metrics}
    boot = value(res, "host_boot_time_seconds")
    assert boot < started
    assert value(res, "host_uptime_seconds") == pytest.approx(started - boot, abs=5)
    assert all(not set(m.labels) & {"check", "kind", "system"} for m in res.metrics)


async def test_ok_summary_on_quiet_levels() -> None:
    res = await probe(only())
    assert (res.status, res.reason) == (Status.OK, "ok")
    assert res.summary.startswith("cpu ")
    assert "filesystem" in res.summary and " up " in res.summary
    assert res.details["findings"] == []


@pytest.mark.parametrize(("level", "reason", "starts"), [
    ("cpu_percent", "cpu_high", "cpu "),
    ("memory_percent", "memory_high", "memory "),
    ("filesystem_percent", "filesystem_full", "filesystem "),
    ("load_per_cpu", "load_high", "load 5m "),
])
async def test_each_level_triggers_when_set_to_zero(level: str, reason: str,
                                                    starts: str) -> None:
    res = await probe(only(**{level: {"warning": 0}}))
    assert (res.status, res.reason) == (Status.WARNING, reason), res.summary
    assert res.summary.startswith(starts)
    assert "(warning ≥ 0" in res.summary
    crit = await probe(only(**{level: {"warning": 0, "critical": 0}}))
    assert (crit.status, crit.reason) == (Status.CRITICAL, reason)


async def test_inode_level() -> None:
    st = os.statvfs(root_mountpoint()) if hasattr(os, "statvfs") else None
    needs(st is not None and st.f_files > 0,
          "a root filesystem with an inode table (not Windows or btrfs)")
    res = await probe(only(inode_percent={"warning": 0},
                           include_mountpoints=[f"^{re.escape(root_mountpoint())}$"]))
    assert (res.status, res.reason) == (Status.WARNING, "inodes_full")
    assert res.summary.startswith(f"filesystem {root_mountpoint()} ")
    assert "% of inodes used (warning ≥ 0 %)" in res.summary


async def test_swap_level_only_where_there_is_swap() -> None:
    res = await probe(only(swap_percent={"warning": 0}))
    if psutil.swap_memory().total == 0:
        assert res.status is Status.OK  # no swap: nothing to fill
    else:
        assert (res.status, res.reason) == (Status.WARNING, "swap_high")


async def test_worst_finding_wins_and_the_rest_are_counted() -> None:
    res = await probe(only(cpu_percent={"warning": 0}, memory_percent={"warning": 0},
                           filesystem_percent={"warning": 0, "critical": 0},
                           include_mountpoints=[f"^{re.escape(root_mountpoint())}$"]))
    assert (res.status, res.reason) == (Status.CRITICAL, "filesystem_full")
    assert res.summary.endswith("; 2 more findings")
    assert [f["reason"] for f in res.details["findings"]] == \
        ["filesystem_full", "cpu_high", "memory_high"]


async def test_mountpoint_filters() -> None:
    root = root_mountpoint()
    included = await probe(only(include_mountpoints=[f"^{re.escape(root)}$"]))
    assert mountpoints(included) == {root}
    excluded = await probe(only(exclude_mountpoints=[f"^{re.escape(root)}$"]))
    assert root not in mountpoints(excluded)
    root_type = next(p.fstype for p in psutil.disk_partitions() if p.mountpoint == root)
    ignored = await probe(only(ignore_fstypes=[root_type]))
    assert root not in mountpoints(ignored)


async def test_kernel_clock_where_readable() -> None:
    try:
        clock = kernel_clock()
    except OSError as exc:
        needs(False, f"a kernel that answers adjtimex (refused here: {exc})")
        return
    if clock is None:
        assert not sys.platform.startswith("linux")
        return
    assert clock.max_error_seconds >= 0 and clock.estimated_error_seconds >= 0
    res = await probe(only(clock_offset_seconds={"warning": 0}))
    assert value(res, "host_clock_synchronized") == (1.0 if clock.synchronised else 0.0)
    if clock.synchronised:
        assert (res.status, res.reason) == (Status.WARNING, "clock_offset")
    else:
        # an unsynchronised kernel's offset means nothing: no offset finding ...
        assert res.status is Status.OK
        # ... unless synchronisation itself is required
        strict = await probe(only(require_clock_sync=True))
        assert (strict.status, strict.reason) == (Status.WARNING, "clock_unsynced")


async def test_through_the_runner() -> None:
    res = await run_check(host(system="EMR", timeout=5), "agent-1")
    assert (res.kind, res.target, res.system) == ("host", "localhost", "EMR")
    assert res.reason in REASONS and res.duration_s >= 0.05


def sample(**kw: Any) -> HostSample:
    return HostSample(sampled_at=1_800_000_000.0, boot_time=1_799_900_000.0, **kw)


def test_summary_names_the_worst_filesystem() -> None:
    fs = [Filesystem(mountpoint=mp, device="/dev/sda1", fstype="xfs", size=100, used=int(pct),
                     free=100 - int(pct), used_percent=pct, inodes=1000, inodes_free=900)
          for mp, pct in (("/", 96.1), ("/u01", 97.5), ("/var", 90.0))]
    res = evaluate(sample(filesystems=fs, cpu_percent=12.0), HostCheck.model_validate(
        {"id": "h", "kind": "host"}))
    assert (res.status, res.reason) == (Status.CRITICAL, "filesystem_full")
    assert res.summary == "filesystem /u01 97.5 % used (critical ≥ 95 %); 2 more findings"
    assert [f["text"] for f in res.details["findings"]] == [
        "filesystem /u01 97.5 % used (critical ≥ 95 %)",
        "filesystem / 96.1 % used (critical ≥ 95 %)",
        "filesystem /var 90.0 % used (warning ≥ 85 %)"]


def test_clock_offset_uses_the_absolute_value() -> None:
    clock = Clock(offset_seconds=-0.7, synchronised=True, max_error_seconds=0.1,
                  estimated_error_seconds=0.001)
    res = evaluate(sample(clock=clock), HostCheck.model_validate({"id": "h", "kind": "host"}))
    assert (res.status, res.reason) == (Status.WARNING, "clock_offset")
    assert res.summary == "clock offset -0.700 s (warning ≥ 0.5 s)"
    unsynced = Clock(offset_seconds=-5, synchronised=False, max_error_seconds=16,
                     estimated_error_seconds=16)
    quiet = evaluate(sample(clock=unsynced), HostCheck.model_validate({"id": "h", "kind": "host"}))
    assert quiet.status is Status.OK


def test_unreadable_parts_mean_fewer_metrics_not_failure() -> None:
    res = evaluate(sample(unreadable={"disks": "FileNotFoundError: /proc/diskstats"}),
                   HostCheck.model_validate({"id": "h", "kind": "host"}))
    assert (res.status, res.reason) == (Status.OK, "ok")
    assert "not readable: disks" in res.summary
    assert {m.name for m in res.metrics} == {"host_boot_time_seconds", "host_uptime_seconds"}


def test_partial_levels_keep_their_defaults() -> None:
    check = host(filesystem_percent={"warning": 80})
    assert (check.filesystem_percent.warning, check.filesystem_percent.critical) == (80, 95)
    assert host(cpu_percent={"critical": None}).cpu_percent.critical is None
    assert host().load_per_cpu.warning is None
    with pytest.raises(ValidationError, match="warning must be <= critical"):
        host(memory_percent={"warning": 97})
    with pytest.raises(ValidationError, match="below the default warning level 85"):
        host(filesystem_percent={"critical": 80})


def test_config_rejects_bad_regexes_and_a_cpu_window_past_the_timeout() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        host(include_mountpoints=["("])
    with pytest.raises(ValidationError, match="cpu_sample_seconds"):
        host(cpu_sample_seconds="10s", timeout="10s")
    with pytest.raises(ValidationError):
        host(load_minutes=3)
