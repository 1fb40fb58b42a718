"""LocalAccess: real commands, the C locale, time limits that kill the process group, output
limits, files that are missing or unreadable."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from probes.access import LocalAccess


async def test_runs_argv_in_the_c_locale() -> None:
    out = await LocalAccess().run([sys.executable, "-c",
                                   "import os; print(os.environ['LC_ALL'], os.environ['LANG'])"],
                                  limit_s=10)
    assert out.ok and out.text().split() == ["C", "C"]


async def test_a_hung_command_and_its_children_are_killed_at_the_limit(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    script = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
              f"\"import time, pathlib; time.sleep(1.5); pathlib.Path({str(marker)!r})"
              f".write_text('x')\"]); time.sleep(60)")
    started = time.monotonic()
    out = await LocalAccess().run([sys.executable, "-c", script], limit_s=0.5)
    assert out.timed_out and out.exit_code is None and "did not finish in 0.5s" in str(out.error)
    assert time.monotonic() - started < 5
    # wait past the grandchild's 1.5 s with a command of our own: it must not have written
    waited = await LocalAccess().run([sys.executable, "-c", "import time; time.sleep(2)"],
                                     limit_s=10)
    assert waited.ok
    assert not marker.exists()   # the grandchild died with its group


async def test_output_is_cut_but_the_command_not_blocked() -> None:
    out = await LocalAccess().run([sys.executable, "-c", "print('x' * 200000)"], limit_s=10,
                                  max_bytes=1000)
    assert out.ok and out.truncated and len(out.stdout) == 1000


async def test_missing_command_and_files(tmp_path: Path) -> None:
    out = await LocalAccess().run(["/nonexistent/tool", "-v"], limit_s=5)
    assert not out.ok and "cannot run /nonexistent/tool" in str(out.error)
    access = LocalAccess()
    assert await access.read_file(str(tmp_path / "nope")) is None
    (tmp_path / "f").write_bytes(b"abcdef")
    assert await access.read_file(str(tmp_path / "f"), max_bytes=3) == b"abc"
