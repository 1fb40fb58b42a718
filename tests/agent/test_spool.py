"""Spool: order, acknowledgement, restart, torn and damaged lines, the size bound, kill -9."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.spool import Batch, Spool, SpoolError
from probes.result import CheckResult, Status

T0 = datetime(2026, 3, 2, tzinfo=UTC)
MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def result(n: int, padding: int = 0) -> CheckResult:
    return CheckResult(agent_id="emr-app-01", check_id="db", kind="tcp", system="EMR",
                       status=Status.OK, reason="ok", started_at=T0 + timedelta(seconds=n),
                       duration_s=0.002, summary=f"r{n}" + " " * padding)


def numbers(batch: Batch) -> list[int]:
    return [int(r.summary.split()[0][1:]) for r in batch.results()]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.jsonl"))


def everything(spool: Spool) -> list[int]:
    return numbers(spool.peek(1_000_000))


def test_append_peek_ack_keeps_order(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB) as spool:
        spool.append([result(n) for n in range(5)])
        spool.append([result(n) for n in range(5, 10)])
        assert spool.pending_count == 10
        first = spool.peek(4)
        assert numbers(first) == [0, 1, 2, 3]
        assert numbers(spool.peek(4)) == [0, 1, 2, 3]  # peeking moves nothing
        assert spool.ack(first)
        assert spool.pending_count == 6
        assert everything(spool) == [4, 5, 6, 7, 8, 9]
        assert spool.pending_bytes == sum(len(r) + 10 for r in spool.peek(100).records)
        assert not spool.ack(first)  # a second ack of the same batch moves nothing
        assert spool.pending_count == 6


def test_fully_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB, segment_bytes=4096) as spool:
        for n in range(60):
            spool.append([result(n)])
        assert len(segments(tmp_path)) > 3
        delivered: list[int] = []
        while batch := spool.peek(7):
            delivered += numbers(batch)
            spool.ack(batch)
        assert delivered == list(range(60))
        assert spool.pending_count == 0 and spool.pending_bytes == 0
        assert len(segments(tmp_path)) == 1  # the active one


def test_restart_resumes_exactly_at_the_cursor(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB, segment_bytes=4096) as spool:
        for n in range(40):
            spool.append([result(n)])
        spool.ack(spool.peek(17))
        pending, pending_bytes = spool.pending_count, spool.pending_bytes
    with Spool(tmp_path, MiB, segment_bytes=4096) as spool:
        assert (spool.pending_count, spool.pending_bytes) == (pending, pending_bytes)
        assert everything(spool) == list(range(17, 40))
        spool.append([result(40), result(41)])
        spool.ack(spool.peek(3))
    with Spool(tmp_path, MiB, segment_bytes=4096) as spool:
        assert everything(spool) == list(range(20, 42))
        assert spool.dropped_total == 0


def test_torn_last_line_is_cut_counted_and_the_rest_kept(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB) as spool:
        for n in range(10):
            spool.append([result(n)])
    last = segments(tmp_path)[-1]
    os.truncate(last, last.stat().st_size - 7)  # power loss in the middle of the last write
    with Spool(tmp_path, MiB) as spool:
        assert spool.pending_count == 9
        assert spool.dropped["corrupt"] == 1
        assert everything(spool) == list(range(9))
        spool.append([result(10)])  # lands on a clean line boundary
    with Spool(tmp_path, MiB) as spool:
        assert spool.dropped_total == 0
        assert everything(spool) == [*range(9), 10]


def test_damaged_line_is_skipped_and_counted(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB) as spool:
        spool.append([result(n) for n in range(10)])
    path = segments(tmp_path)[0]
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"r3"', b'"r9"')  # a flipped bit: the checksum no longer fits
    path.write_bytes(b"".join(lines))
    with Spool(tmp_path, MiB) as spool:
        assert spool.pending_count == 9
        assert spool.dropped["corrupt"] == 1
        assert everything(spool) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_damage_found_while_open_is_skipped_and_counted_once(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB) as spool:
        spool.append([result(n) for n in range(10)])
        path = segments(tmp_path)[0]
        data = path.read_bytes()
        at = data.index(b'"r5"')
        with open(path, "r+b") as f:  # a failing disk under a running agent
            f.seek(at + 2)
            f.write(b"X")
        assert everything(spool) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        assert everything(spool) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        assert spool.dropped["corrupt"] == 1
        assert spool.pending_count == 9
        spool.ack(spool.peek(100))
        assert spool.pending_count == 0


def test_overflow_drops_the_oldest_whole_segments_counted_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wardwatch.agent.spool")
    with Spool(tmp_path, 8192, segment_bytes=2048) as spool:
        for n in range(100):
            spool.append([result(n)])
            assert spool.disk_bytes <= 8192
        kept = everything(spool)
        dropped = spool.dropped["overflow"]
    assert kept == list(range(100 - len(kept), 100))  # the newest, contiguous
    assert dropped == 100 - len(kept) > 0
    assert spool.pending_count == len(kept)
    warnings = [r.getMessage() for r in caplog.records if "spool full" in r.getMessage()]
    assert sum(int(m.split("dropped the ")[1].split()[0]) for m in warnings) == dropped
    assert "started_at 2026-03-02T00:00:00Z to 2026-03-02T00:00:" in warnings[0]


def test_overflow_counts_only_unacknowledged_results(tmp_path: Path) -> None:
    with Spool(tmp_path, 8192, segment_bytes=2048) as spool:
        for n in range(20):
            spool.append([result(n)])
        spool.ack(spool.peek(3))
        for n in range(20, 100):
            spool.append([result(n)])
        kept = everything(spool)
        assert spool.dropped["overflow"] == 100 - 3 - len(kept)


def test_ack_of_a_batch_dropped_for_space_moves_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path, 8192, segment_bytes=2048) as spool:
        for n in range(5):
            spool.append([result(n)])
        in_flight = spool.peek(5)
        for n in range(5, 100):
            spool.append([result(n)])
        kept = everything(spool)
        assert kept[0] > 4
        assert not spool.ack(in_flight)
        assert everything(spool) == kept
        assert spool.pending_count == len(kept)


def test_an_append_larger_than_a_segment_still_fits_the_bound(tmp_path: Path) -> None:
    with Spool(tmp_path, 8192, segment_bytes=2048) as spool:
        spool.append([result(n, padding=1500) for n in range(3)])
        spool.append([result(n, padding=1500) for n in range(3, 6)])
        assert spool.disk_bytes <= 8192
        assert everything(spool) == [3, 4, 5]
        assert spool.dropped["overflow"] == 3


def test_unreadable_cursor_replays_from_the_oldest_segment(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path, MiB) as spool:
        spool.append([result(n) for n in range(5)])
        spool.ack(spool.peek(3))
    (tmp_path / "cursor.json").write_bytes(b'{"segment": ')
    with Spool(tmp_path, MiB) as spool:
        assert everything(spool) == [0, 1, 2, 3, 4]  # sent again (stored once), never lost
    assert "replaying from the oldest segment" in caplog.text


def test_cursor_file_is_replaced_whole(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB) as spool:
        spool.append([result(n) for n in range(5)])
        spool.ack(spool.peek(2))
        cursor = json.loads((tmp_path / "cursor.json").read_bytes())
        assert cursor == {"segment": 1, "offset": spool.peek(2).start.offset}
        assert not (tmp_path / "cursor.json.tmp").exists()


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, MiB), pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path, MiB)
    Spool(tmp_path, MiB).close()  # free again once closed


WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from agent.spool import Spool
from probes.result import CheckResult

spool = Spool(sys.argv[1], 64 * 1024 * 1024)
t0 = datetime(2026, 3, 2, tzinfo=UTC)
for n in range(1_000_000):
    spool.append([CheckResult(agent_id="emr-app-01", check_id="db", kind="tcp", status="ok",
                              reason="ok", started_at=t0 + timedelta(seconds=n),
                              duration_s=0.002, summary=f"r{n}" + " " * (n % 300))])
    print(n, flush=True)
"""


def test_every_returned_append_survives_kill_9(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        for line in proc.stdout:
            printed.append(int(line))
            if len(printed) >= 300:
                break
    finally:
        if sys.platform == "win32":
            proc.kill()
        else:
            os.kill(proc.pid, signal.SIGKILL)
        printed += [int(line) for line in proc.stdout.read().split()]
        proc.wait()
    assert proc.returncode != 0
    assert len(printed) >= 300
    with Spool(tmp_path, 64 * MiB) as spool:
        found = everything(spool)
        assert spool.pending_count == len(found)
    # every append that returned is there, in order, and nothing else but perhaps the one
    # that was in flight when the process died
    assert found[:len(printed)] == printed == list(range(len(printed)))
    assert len(found) - len(printed) <= 1
