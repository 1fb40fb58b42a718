"""Path traversal and header injection through report names (issue 10, security tests).

- The web UI's download (`POST /reports`): the file name in Content-Disposition is built only
  from the validated kind and format and the parsed period, so `../../etc/passwd`, CR/LF,
  quotes or markup in any form field either get a 400 (the value shown escaped) or a download
  whose header is exactly `attachment; filename*=UTF-8''wardwatch-KIND-DATE-DATE.FMT`; no
  extra header appears and no file is written on the server.
- The CLI's `-o FILE` is the operator's choice, used as given (collector/reports/command.py
  says so); nothing else builds a path: a kind, format or system from the command line never
  reaches the filesystem, and a path that cannot be written is an `error:` line, not a
  traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.config import parse_collector_config
from collector.reports import FORMATS, KINDS, build_report, render_report
from collector.store import Store, utcnow
from probes.result import Status
from tests.collector.web.conftest import PASSWORD, Ui, hidden, ui_config

EVIL = (
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "/etc/passwd",
    "availability/../../../tmp/x",
    "availability\r\nSet-Cookie: injected=1",
    "json\r\nX-Injected: 1",
    "availability\nX-Injected: 1",
    'availability"; filename="evil.sh',
    "availability'; filename=evil.sh",
    "<script>alert(1)</script>",
    "availability\x00.json",
    "\u202eavailability",
    "availability" + "A" * 5000,
)
DISPOSITION = re.compile(
    r"attachment; filename\*=UTF-8''wardwatch-(" + "|".join(KINDS) + r")"
    r"-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.(" + "|".join(FORMATS) + ")")


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")
            if not p.name.startswith("collector.db")}


@pytest.fixture
async def viewer(tmp_path: Path) -> AsyncIterator[Ui]:
    async with TestClient(TestServer(create_app(ui_config(tmp_path)))) as client:
        app = client.server.app
        assert app is not None
        ui = Ui(client, app)
        await ui.accounts.add_user("viewer1", PASSWORD, "viewer", utcnow())
        await ui.feed("emr-01", Status.OK, 3, timedelta(minutes=5))
        assert (await ui.login("viewer1")).status == 303
        yield ui


async def test_ui_download_name_comes_from_validated_values(viewer: Ui, tmp_path: Path
                                                            ) -> None:
    ui = viewer
    status, page = await ui.page("/reports")
    assert status == 200
    token = hidden(page, "csrf_token")
    today = datetime.now(UTC).date().isoformat()
    good = {"kind": "availability", "format": "json", "from": today, "to": today,
            "lang": "en"}
    resp = await ui.post("/reports", good, token=token)
    assert resp.status == 200 and DISPOSITION.fullmatch(resp.headers["Content-Disposition"])
    before = files_under(tmp_path, Path.cwd())
    for field in ("kind", "format", "from", "to", "lang"):
        for value in EVIL:
            resp = await ui.post("/reports", {**good, field: value}, token=token)
            text = await resp.text()
            where = f"{field}={value[:50]!r}: {resp.status}"
            assert resp.status in (200, 400), where
            assert "X-Injected" not in resp.headers, where
            assert "injected" not in resp.headers.get("Set-Cookie", ""), where
            for name, header in resp.headers.items():
                assert "\r" not in header and "\n" not in header, (where, name)
            if resp.status == 200:
                disposition = resp.headers["Content-Disposition"]
                assert DISPOSITION.fullmatch(disposition), (where, disposition)
                assert field == "lang", where   # only the language falls back (to zh-CN)
            else:
                assert "Content-Disposition" not in resp.headers, where
                assert 'id="form-error"' in text, where
                assert "<script>alert(1)" not in text, where   # shown as text
    assert files_under(tmp_path, Path.cwd()) == before, "the UI wrote a file"
    # every download is in the audit log with the validated kind only
    targets = {e["target"] for e in await ui.accounts.audit_entries(action="report_download")}
    assert targets == {"availability"}


async def test_report_kind_and_format_never_name_a_module_or_file(tmp_path: Path) -> None:
    config = parse_collector_config({"store": f"sqlite:///{tmp_path}/collector.db",
                                     "systems": [{"id": "EMR", "members": ["emr-01/*"]}]})
    store = await Store.open(config.store)
    try:
        now = utcnow()
        start = now - timedelta(days=1)
        for kind in ("../../etc/passwd", "os", "__init__", "context", "command",
                     "availability.sys", "availability/../command"):
            with pytest.raises(ValueError, match="unknown report kind"):
                await build_report(config, store, kind, start=start, end=now, now=now)
        with pytest.raises(ValueError, match="unknown system"):
            await build_report(config, store, "availability", start=start, end=now,
                               systems=["../../etc/passwd"], now=now)
        report = await build_report(config, store, "availability", start=start, end=now,
                                    now=now)
        for fmt in ("../x", "json/../../x", "pdf", ""):
            with pytest.raises(ValueError, match="unknown format"):
                render_report(report, fmt)
    finally:
        await store.close()
    # system ids cannot hold a path separator (the config refuses them)
    from probes.config import ConfigError

    with pytest.raises(ConfigError, match="systems"):
        parse_collector_config({"systems": [{"id": "../../etc/passwd"}]})


def cli(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", "report", *args, "--config",
                           str(config)], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})


async def test_cli_output_is_the_operators_path_and_nothing_else(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "out").mkdir()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path}/collector.db",
                                      "systems": [{"id": "EMR", "members": ["emr-01/*"]}]}))
    today = datetime.now(UTC).date().isoformat()
    period = ["--from", today, "--to", today]
    before = files_under(tmp_path)

    # `-o` is used as given, relative to the working directory, `..` included
    written = await asyncio.to_thread(cli, config, work, "availability", *period,
                                      "--format", "csv", "-o", "../out/report.csv")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out" / "report.csv").read_bytes().startswith(b"\xef\xbb\xbf")

    # a system or kind with a path in it writes nothing anywhere
    refused = await asyncio.to_thread(cli, config, work, "availability", *period,
                                      "--system", "../../out/evil", "-o", "-")
    assert refused.returncode == 2 and "unknown system ../../out/evil" in refused.stderr
    refused = await asyncio.to_thread(cli, config, work, "../../out/evil", *period)
    assert refused.returncode == 2 and "invalid choice" in refused.stderr

    # a path that cannot be written: one line saying so, no traceback
    for target in ("missing-dir/report.json", "."):
        failed = await asyncio.to_thread(cli, config, work, "availability", *period,
                                         "-o", target)
        assert failed.returncode == 2, (target, failed.stderr)
        assert failed.stderr.startswith(f"error: cannot write {target}: "), failed.stderr
        assert "Traceback" not in failed.stderr

    assert files_under(tmp_path) - before == {tmp_path / "out" / "report.csv"}
