"""The store fails under a running collector, and nobody comes to help (issue 10, fault
injection): PostgreSQL restarted under ingest, the SQLite file on a full filesystem.

Both with real processes: a collector (`python -m collector run`) and agents' pushes from
this test, which behave as the agent does (a 5xx or a refused connection: keep the batch,
retry it). Expected: while the store is away every push is refused with 503, a JSON message
that says why and a Retry-After (the agent keeps the batch); `/readyz` says unavailable; no
acknowledged result is lost; when the store is back the same collector process takes results
again, with no one restarting it.

PostgreSQL is a private cluster (Debian's initdb / pg_ctl, run as the `postgres` user, on a
free loopback port with its socket in the test's directory), so restarting it cannot disturb
the machine's server. The full filesystem is a 4 MB tmpfs mounted for the test (root only).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import yaml

from collector.schema import results
from collector.store import Store
from tests.collector.test_durability import batch, collector
from tests.services import free_port, needs, wait_for_port

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


@dataclass
class Pushes:
    """What the pushing side saw: acknowledged ids, refusals by status, their messages."""

    acked: list[str] = field(default_factory=list)
    refused: Counter[int] = field(default_factory=Counter)
    messages: list[dict[str, Any]] = field(default_factory=list)
    unreachable: int = 0


async def push(url: str, token: str, agent: str, seen: Pushes, stop: asyncio.Event,
               limit: int) -> None:
    """Push batches of 50 as an agent does: one batch until it is acknowledged, then the next
    (at most `limit` attempts in all)."""
    headers = {"Authorization": f"Bearer {token}"}
    offset = 0
    body = batch(agent, 50, offset)
    async with aiohttp.ClientSession() as session:
        for _attempt in range(limit):
            if stop.is_set():
                return
            try:
                async with session.post(url + "/api/v1/results", json=body,
                                        headers=headers) as resp:
                    if resp.status == 200:
                        seen.acked.extend(r["id"] for r in body["results"])
                        offset += 50
                        body = batch(agent, 50, offset)
                        continue
                    seen.refused[resp.status] += 1
                    seen.messages.append({"status": resp.status,
                                          "retry_after": resp.headers.get("Retry-After"),
                                          "body": await resp.text()})
            except (aiohttp.ClientError, OSError):
                seen.unreachable += 1
            await asyncio.sleep(0.05)


async def ready(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as resp:
        return resp.status


async def stored_ids(store_url: str) -> set[str]:
    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            return set((await conn.execute(sa.select(results.c.id))).scalars())
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running_collector(tmp_path: Path, store_url: str, agents: list[str]
                            ) -> AsyncIterator[tuple[str, dict[str, str],
                                                     subprocess.Popen[bytes]]]:
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "store": store_url}))
    tokens = {}
    for agent in agents:
        enrol = await asyncio.to_thread(subprocess.run, collector(config, "agents", "add", agent),
                                        capture_output=True, text=True, timeout=60, check=True)
        tokens[agent] = enrol.stdout.strip()
    log = (tmp_path / "collector.log").open("wb")
    proc = await asyncio.to_thread(subprocess.Popen, collector(config, "run"), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        await asyncio.to_thread(wait_for_port, port, "127.0.0.1", 30)
        yield f"http://127.0.0.1:{port}", tokens, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
        log.close()


async def until(condition: Any, seconds: float, what: str) -> None:
    """Wait for `condition()` (a bool, or an awaitable of one), bounded."""
    for _ in range(int(seconds / 0.1)):
        value = condition()
        if await value if inspect.isawaitable(value) else value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def refusals_are_clear(seen: Pushes, wanted: tuple[str, ...]) -> None:
    """Every refusal a 503 with Retry-After and a JSON message naming the cause (one of
    `wanted`, when given)."""
    assert set(seen.refused) == {503}, seen.refused
    for message in seen.messages:
        assert message["retry_after"] and int(message["retry_after"]) > 0, message
        assert "store unavailable, retry later (" in message["body"], message
        if wanted:
            assert any(word in message["body"].lower() for word in wanted), message


# -- PostgreSQL restarted under ingest -------------------------------------------------------

@dataclass
class PrivatePostgres:
    data: Path
    port: int
    log: Path
    home: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                        str(self.data), "-l", str(self.log), "-w", "-t", "60", *args],
                       check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        self.ctl("-o", f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                 f"-c unix_socket_directories={self.home} -c fsync=off", "start")


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    needs((PG_BIN / "initdb").exists(), "PostgreSQL server binaries (Debian postgresql)")
    needs(os.geteuid() == 0 and shutil.which("runuser") is not None,
          "root, to run a private PostgreSQL cluster as the postgres user")
    # pytest's tmp_path is under a root-only directory; the cluster's home must be reachable
    # by the postgres user
    home = Path(tempfile.mkdtemp(prefix="ww-pg-"))
    shutil.chown(home, "postgres", "postgres")
    pg = PrivatePostgres(data=home / "data", port=free_port(), log=home / "server.log",
                         home=home)
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D",
                        str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg.ctl("-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


async def test_postgresql_restarted_under_ingest(tmp_path: Path,
                                                 private_postgres: PrivatePostgres) -> None:
    pg = private_postgres
    agents = ["a1", "a2", "a3"]
    async with running_collector(tmp_path, pg.url, agents) as (url, tokens, proc):
        seen, stop = Pushes(), asyncio.Event()
        pushers = asyncio.gather(*(push(url, tokens[a], a, seen, stop, 5000) for a in agents))
        try:
            await until(lambda: len(seen.acked) >= 1500, 60, "1,500 results before")
            before = len(seen.acked)
            await asyncio.to_thread(pg.ctl, "-m", "fast", "stop")
            await until(lambda: sum(seen.refused.values()) >= 6, 30,
                        "pushes refused while PostgreSQL is down")
            assert await ready(url) == 503
            await asyncio.sleep(2)   # down for a while: every agent retries several times
            refused_while_down = sum(seen.refused.values())
            await asyncio.to_thread(pg.start)
            await until(lambda: len(seen.acked) >= before + 1500, 90,
                        "results acknowledged again after PostgreSQL returned")
            await until(lambda: _is(ready(url), 200), 30, "/readyz ok again")
        finally:
            stop.set()
            await pushers
        assert proc.poll() is None, "the collector must survive without a restart"
    assert refused_while_down >= 6
    # the cause varies with the moment the restart hits a connection (refused, shutting
    # down, terminated by the administrator, a connection left mid-operation): any is fine
    refusals_are_clear(seen, ())
    missing = set(seen.acked) - await stored_ids(pg.url)
    assert not missing, f"{len(missing)} acknowledged results lost"


# -- SQLite on a full filesystem -------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    needs(os.geteuid() == 0 and shutil.which("mount") is not None,
          "root and mount(8), for a small tmpfs")
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                              str(where)], capture_output=True, text=True, timeout=30)
    needs(mounted.returncode == 0, f"mounting a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


async def test_sqlite_on_a_full_filesystem(tmp_path: Path, small_filesystem: Path) -> None:
    db = small_filesystem / "collector.db"
    store_url = f"sqlite:///{db}"
    agents = ["a1", "a2"]
    async with running_collector(tmp_path, store_url, agents) as (url, tokens, proc):
        seen, stop = Pushes(), asyncio.Event()
        pushers = asyncio.gather(*(push(url, tokens[a], a, seen, stop, 20_000)
                                   for a in agents))
        try:
            await until(lambda: sum(seen.refused.values()) >= 4, 120,
                        "pushes refused when the filesystem is full")
            assert await ready(url) in (200, 503)   # reads may still work; it must answer
            full_at = len(seen.acked)
            await asyncio.sleep(1)
            assert len(seen.acked) - full_at <= 100   # nothing much gets in while full
            grown = await asyncio.to_thread(
                subprocess.run, ["mount", "-o", "remount,size=64m", str(small_filesystem)],
                capture_output=True, timeout=30)
            assert grown.returncode == 0, grown.stderr
            await until(lambda: len(seen.acked) >= full_at + 1000, 90,
                        "results acknowledged again once there is room")
            await until(lambda: _is(ready(url), 200), 30, "/readyz ok again")
        finally:
            stop.set()
            await pushers
        assert proc.poll() is None, "the collector must survive without a restart"
    refusals_are_clear(seen, ("database or disk is full",))
    missing = set(seen.acked) - await stored_ids(store_url)
    assert not missing, f"{len(missing)} acknowledged results lost"


async def _is(status: Any, wanted: int) -> bool:
    return bool(await status == wanted)



@pytest.mark.parametrize("command", [("incidents", "list"), ("agents", "add", "a9"),
                                     ("maintenance", "list"), ("run",)])
def test_commands_say_the_store_is_away_in_one_line(tmp_path: Path,
                                                    command: tuple[str, ...]) -> None:
    """No traceback, no URL, no password: one line and exit 1 (systemd restarts `run`)."""
    port = free_port()   # nothing listens there
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{free_port()}",
        "store": f"postgresql://ww:WWSECRET-store@127.0.0.1:{port}/ww"}))
    done = subprocess.run(collector(config, *command), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the store is unavailable"), lines
    assert "WWSECRET" not in done.stderr and "Traceback" not in done.stderr
