"""backup_files probe on real files: ages and sizes set with os.utime, sha256sum-style
sidecars, a directory the agent cannot read, a hash cut by the runner's timeout."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.backup_files import METRICS, BackupFilesCheck, probe
from probes.memory import ProbeMemory
from probes.result import ProbeResult, Status

HOUR = 3600.0


def check(path: Path | str, **kw: object) -> BackupFilesCheck:
    return BackupFilesCheck.model_validate({"id": "b", "kind": "backup_files",
                                            "path": str(path), **kw})


def backup(directory: Path, name: str, size: int, hours_ago: float) -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    stamp = time.time() - hours_ago * HOUR
    os.utime(path, (stamp, stamp))
    return path


def value(res: ProbeResult, name: str) -> float:
    [found] = [m.value for m in res.metrics if m.name == name]
    return found


async def test_fresh_nightly_dumps_are_ok(tmp_path: Path) -> None:
    backup(tmp_path, "HIS_20261124.dmp", 4000, 49)
    backup(tmp_path, "HIS_20261125.dmp", 4100, 25)
    backup(tmp_path, "HIS_20261126.dmp", 4200, 1)
    backup(tmp_path, "notes.txt", 10, 0.5)           # does not match the pattern
    res = await probe(check(tmp_path, pattern="HIS_*.dmp"), ProbeMemory())
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert "newest HIS_20261126.dmp is 60 min old, 4.1 KiB, 3 file(s)" in res.summary
    assert value(res, "backup_files_count") == 3
    assert value(res, "backup_files_last_day_count") == 1
    assert value(res, "backup_files_previous_size_bytes") == 4100
    assert value(res, "backup_files_newest_age_seconds") == pytest.approx(HOUR, abs=5)
    assert {m.name for m in res.metrics} <= set(METRICS)


async def test_stale_shrunk_and_too_few(tmp_path: Path) -> None:
    backup(tmp_path, "a.bkp", 10_000, 60)
    backup(tmp_path, "b.bkp", 3_000, 30)
    res = await probe(check(tmp_path, expected_per_day=2, min_size_bytes=100), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "backup_stale")
    assert res.summary.startswith(f"backups {tmp_path}/*: newest b.bkp is 30.0 h old "
                                  "(limit 26.0 h); b.bkp is 2.9 KiB, 30% of the previous a.bkp")
    assert "0 file(s) in the last 24 h, expected 2" in res.summary
    warn = await probe(check(tmp_path, max_age="2d", warning_age="1d", shrink_ratio=None),
                       ProbeMemory())
    assert (warn.status, warn.reason) == (Status.WARNING, "backup_stale")
    small = await probe(check(tmp_path, max_age="2d", min_size_bytes=5000, shrink_ratio=None),
                        ProbeMemory())
    assert small.reason == "backup_too_small"


async def test_missing_empty_and_still_written(tmp_path: Path) -> None:
    gone = await probe(check(tmp_path / "nope"), ProbeMemory())
    assert (gone.status, gone.reason) == (Status.CRITICAL, "path_missing")
    (tmp_path / "file").write_text("x")
    not_dir = await probe(check(tmp_path / "file"), ProbeMemory())
    assert not_dir.reason == "path_missing" and "is not a directory" in not_dir.summary
    empty = tmp_path / "empty"
    empty.mkdir()
    none = await probe(check(empty), ProbeMemory())
    assert (none.status, none.reason) == (Status.CRITICAL, "no_backup")
    backup(empty, "writing.bkp", 10, 30 / HOUR)          # modified 30 s ago
    writing = await probe(check(empty), ProbeMemory())    # settle: 60 s by default
    assert writing.reason == "no_backup" and "1 still being written" in writing.summary
    assert (await probe(check(empty, settle="10s"), ProbeMemory())).status is Status.OK


async def test_recursive_and_windows_style_path(tmp_path: Path) -> None:
    (tmp_path / "2026-11-26").mkdir()
    backup(tmp_path / "2026-11-26", "full.bkp", 100, 2)
    flat = await probe(check(tmp_path, pattern="*.bkp"), ProbeMemory())
    assert flat.reason == "no_backup"
    deep = await probe(check(tmp_path, pattern="*.bkp", recursive=True), ProbeMemory())
    assert deep.status is Status.OK
    # a Windows path is taken as written; on Linux it simply does not exist
    windows = check("D:\\backup\\rman", pattern="*.BKP")
    assert windows.target.startswith("D:\\backup\\rman")
    assert (await probe(windows, ProbeMemory())).reason == "path_missing"


UNREADABLE_PROBE = """
import asyncio, sys
from probes.backup_files import BackupFilesCheck, probe
from probes.memory import ProbeMemory
check = BackupFilesCheck.model_validate({"id": "b", "kind": "backup_files", "path": sys.argv[1]})
res = asyncio.run(probe(check, ProbeMemory()))
print(res.status.value, res.reason, res.summary)
"""


async def test_unreadable_directory_is_our_problem_not_the_hospitals(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    argv = [sys.executable, "-c", UNREADABLE_PROBE, str(locked)]
    if os.geteuid() == 0:   # root reads anything: probe as nobody, as an unprivileged agent
        os.chmod(tmp_path, 0o755)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    try:
        proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                       timeout=60, cwd=Path(__file__).parents[2], check=False)
    finally:
        locked.chmod(0o755)
    assert proc.stdout.startswith("unknown probe_error"), proc.stdout + proc.stderr
    assert "the agent cannot read" in proc.stdout


async def test_checksum_sidecars(tmp_path: Path) -> None:
    good = backup(tmp_path, "a.dmp", 5000, 3)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    (tmp_path / "a.dmp.sha256").write_text(f"{digest}  a.dmp\n")
    memory = ProbeMemory()
    res = await probe(check(tmp_path, verify_checksum="sha256"), memory)
    assert res.status is Status.OK and res.details["checksum"] == "sha256 matches"
    assert value(res, "backup_files_checksum_ok") == 1
    assert value(res, "backup_files_count") == 1          # the sidecar is not a backup
    # remembered by (size, mtime): a second run does not hash again
    assert memory.values["checksum"][1] == digest
    newer = backup(tmp_path, "b.dmp", 5000, 1)
    missing = await probe(check(tmp_path, verify_checksum="sha256"), memory)
    assert (missing.status, missing.reason) == (Status.WARNING, "checksum_missing")
    (tmp_path / "b.dmp.sha256").write_text(digest + "\n")   # a's digest: wrong for b
    bad = await probe(check(tmp_path, verify_checksum="sha256"), memory)
    assert (bad.status, bad.reason) == (Status.CRITICAL, "checksum_mismatch")
    assert value(bad, "backup_files_checksum_ok") == 0
    (tmp_path / "b.dmp.sha256").write_text("not a digest\n")
    junk = await probe(check(tmp_path, verify_checksum="sha256"), memory)
    assert (junk.status, junk.reason) == (Status.UNKNOWN, "probe_error")
    big = await probe(check(tmp_path, verify_checksum="sha256", checksum_max_bytes=10),
                      ProbeMemory())
    assert big.status is Status.UNKNOWN or "not verified" in big.details.get("checksum", "")
    assert newer.exists()


async def test_a_long_hash_is_cut_by_the_timeout(tmp_path: Path) -> None:
    big = tmp_path / "huge.bkp"
    with big.open("wb") as handle:
        handle.truncate(3 << 30)   # sparse: 3 GiB to hash, no disk used
    stamp = time.time() - HOUR
    os.utime(big, (stamp, stamp))
    (tmp_path / "huge.bkp.sha256").write_text("0" * 64 + "\n")
    res = await run_check(check(tmp_path, verify_checksum="sha256", timeout=0.3, interval=1),
                          "a1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="warning_age must be shorter"):
        check("/x", max_age="1h", warning_age="2h")
    with pytest.raises(ValidationError, match="path must name a directory"):
        check(" ")
    with pytest.raises(ValidationError, match="shrink_ratio"):
        check("/x", shrink_ratio=1.5)
