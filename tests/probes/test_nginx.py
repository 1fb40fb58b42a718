"""nginx probe against Debian's nginx on loopback: stub_status healthy and behind basic
auth, connections dropped at a tiny worker_connections, upstream groups whose servers are
dead or hung (the error log then says `connect() failed`, `no live upstreams`, `upstream
timed out`), a location that is not stub_status, and nginx stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.memory import ProbeMemory
from probes.nginx import METRICS, NginxCheck, probe
from probes.registry import get_kind
from probes.result import ProbeResult, Status
from tests.services import NGINX_BIN, Nginx, free_port, start_nginx, stop_process

STATUS_CONF = """
    location = /status { stub_status; }
    location = /secure-status {
      stub_status;
      auth_basic "status";
      auth_basic_user_file %(prefix)s/htpasswd;
    }
    location = /not-status { return 200 "hello\\n"; }
    location = /gone { return 404; }
    location = /big { alias %(prefix)s/big.txt; }
    location /dead/ { proxy_pass http://dead_pool/; proxy_connect_timeout 1s; }
    location /slow/ { proxy_pass http://127.0.0.1:%(hung)d/; proxy_read_timeout 1s; }
"""

HTTP_CONF = """
  upstream dead_pool {
    server 127.0.0.1:%(dead1)d max_fails=1 fail_timeout=30s;
    server 127.0.0.1:%(dead2)d max_fails=1 fail_timeout=30s;
  }
"""


def nginx_check(url: str, **kw: object) -> NginxCheck:
    return NginxCheck.model_validate({"id": "n", "kind": "nginx", "url": url, **kw})


def values(res: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in res.metrics if m.name == name}


def value(res: ProbeResult, name: str) -> float:
    [found] = values(res, name).values()
    return found


@pytest.fixture
def dead_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def nginx(tmp_path: Path, hung_port: int, dead_ports: tuple[int, int]) -> Iterator[Nginx]:
    (tmp_path / "htpasswd").write_text("monitor:{PLAIN}s3cret\n")
    (tmp_path / "big.txt").write_text("x" * 5000)
    proc, server = start_nginx(
        tmp_path, STATUS_CONF % {"prefix": tmp_path, "hung": hung_port},
        http_conf=HTTP_CONF % {"dead1": dead_ports[0], "dead2": dead_ports[1]})
    yield server
    stop_process(proc)


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await resp.read()
        return resp.status


async def test_healthy_stub_status(nginx: Nginx) -> None:
    memory = ProbeMemory()
    first = await probe(nginx_check(f"{nginx.base_url}/status"), memory)
    assert first.status is Status.OK and first.reason == "ok", first.summary
    assert first.summary.startswith(f"nginx {nginx.base_url}/status: 1 active (0 reading, "
                                    "1 writing, 0 waiting)")
    assert value(first, "nginx_connections_active") == 1   # the probe's own connection
    assert value(first, "nginx_connections_dropped_total") == 0
    assert not values(first, "nginx_http_requests_per_second")   # no previous run yet
    for _ in range(5):
        assert await get(f"{nginx.base_url}/not-status") == 200
    second = await probe(nginx_check(f"{nginx.base_url}/status"), memory)
    # 5 requests plus the first probe's, between the two readings
    assert value(second, "nginx_http_requests_total") - value(
        first, "nginx_http_requests_total") == 6
    assert value(second, "nginx_http_requests_per_second") > 0
    # the version from the Server header (Debian ships server_tokens on)
    assert values(second, "nginx_info") and second.details["version"]
    [labels] = values(second, "nginx_info")
    assert dict(labels)["version"] == second.details["version"]
    assert {m.name for m in second.metrics} <= set(METRICS)


async def test_version_from_the_binary(nginx: Nginx) -> None:
    res = await probe(nginx_check(f"{nginx.base_url}/status", binary=NGINX_BIN), ProbeMemory())
    proc = await asyncio.create_subprocess_exec(NGINX_BIN, "-v",
                                                stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert res.details["version"] and res.details["version"] in err.decode()
    missing = await probe(nginx_check(f"{nginx.base_url}/status",
                                      binary="/nonexistent/nginx"), ProbeMemory())
    assert (missing.status, missing.reason) == (Status.UNKNOWN, "probe_error")
    assert "cannot run /nonexistent/nginx -v" in missing.summary


async def test_basic_auth(nginx: Nginx, tmp_path: Path) -> None:
    url = f"{nginx.base_url}/secure-status"
    anonymous = await probe(nginx_check(url), ProbeMemory())
    assert (anonymous.status, anonymous.reason) == (Status.CRITICAL, "auth_failed")
    assert "HTTP 401 with no credentials" in anonymous.summary
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")
    ok = await probe(nginx_check(url, username="monitor", password_file=tmp_path / "good"),
                     ProbeMemory())
    assert ok.status is Status.OK, ok.summary
    bad = await probe(nginx_check(url, username="monitor", password_file=tmp_path / "bad"),
                      ProbeMemory())
    assert bad.reason == "auth_failed" and "user 'monitor'" in bad.summary
    assert "wrong" not in bad.summary and "s3cret" not in ok.model_dump_json()


async def test_not_stub_status_and_wrong_status(nginx: Nginx) -> None:
    page = await probe(nginx_check(f"{nginx.base_url}/not-status"), ProbeMemory())
    assert (page.status, page.reason) == (Status.CRITICAL, "invalid_response")
    assert "not nginx stub_status output" in page.summary
    gone = await probe(nginx_check(f"{nginx.base_url}/gone"), ProbeMemory())
    assert (gone.status, gone.reason) == (Status.CRITICAL, "unexpected_status")


async def test_a_page_over_max_body_bytes_is_refused_unread(nginx: Nginx) -> None:
    res = await probe(nginx_check(f"{nginx.base_url}/big", max_body_bytes=4096), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "invalid_response")
    assert "larger than max_body_bytes (4096)" in res.summary


async def test_nginx_down() -> None:
    res = await probe(nginx_check(f"http://127.0.0.1:{free_port()}/status"), ProbeMemory())
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")


async def test_upstream_addresses(nginx: Nginx, dead_ports: tuple[int, int]) -> None:
    live = f"127.0.0.1:{nginx.port}"
    dead = [f"127.0.0.1:{p}" for p in dead_ports]
    some = await probe(nginx_check(f"{nginx.base_url}/status", upstreams=[live, dead[0]]),
                       ProbeMemory())
    assert (some.status, some.reason) == (Status.WARNING, "upstream_down")
    assert f"upstream down: {dead[0]} (refused) (1 of 2)" in some.summary
    assert values(some, "nginx_upstream_up") == {(("upstream", live),): 1,
                                                 (("upstream", dead[0]),): 0}
    every = await probe(nginx_check(f"{nginx.base_url}/status", upstreams=dead), ProbeMemory())
    assert (every.status, every.reason) == (Status.CRITICAL, "upstream_down")
    assert "(all)" in every.summary and every.details["upstreams_down"] == dead


async def test_error_log_counts_upstream_failures_since_last_run(nginx: Nginx) -> None:
    log = nginx.prefix / "logs" / "error.log"
    check = nginx_check(f"{nginx.base_url}/status", error_log=log)
    memory = ProbeMemory()
    first = await probe(check, memory)
    assert first.status is Status.OK and first.details["error_log"].startswith("first run")
    # both pool members refuse -> 2 x connect() failed, then the pool is empty: no live
    for _ in range(3):
        assert await get(f"{nginx.base_url}/dead/") == 502
    res = await probe(check, memory)
    counts = res.details["error_log_counts"]
    assert counts["upstream_connect_failures"] == 2, log.read_text()
    assert counts["no_live_upstreams"] >= 1
    assert (res.status, res.reason) == (Status.CRITICAL, "no_live_upstreams")
    assert res.summary.count(";") == 0 or res.summary.index("no live") < res.summary.index(";")
    quiet = await probe(check, memory)   # nothing new since: counted once only
    assert quiet.status is Status.OK and quiet.details["error_log_counts"] == {
        "upstream_timeouts": 0, "no_live_upstreams": 0, "upstream_connect_failures": 0}
    assert await get(f"{nginx.base_url}/slow/") == 504    # the hung upstream: read timeout
    slow = await probe(check, memory)
    assert (slow.status, slow.reason) == (Status.WARNING, "upstream_timeouts")
    assert value(slow, "nginx_error_log_upstream_timeouts") == 1


async def test_error_log_rotation_and_unreadable(nginx: Nginx, tmp_path: Path) -> None:
    log = tmp_path / "rotating.log"
    log.write_text("old line\n")
    check = nginx_check(f"{nginx.base_url}/status", error_log=log)
    memory = ProbeMemory()
    await probe(check, memory)
    log.rename(tmp_path / "rotating.log.1")
    log.write_text("2026/11/26 01:00:00 [error] 1#1: *5 no live upstreams while connecting "
                   "to upstream\n")
    res = await probe(check, memory)   # the new file is read from its start
    assert res.reason == "no_live_upstreams"
    log.unlink()
    gone = await probe(check, memory)
    assert (gone.status, gone.reason) == (Status.UNKNOWN, "probe_error")
    assert "cannot read error log" in gone.summary


async def test_dropped_connections(tmp_path: Path) -> None:
    # 4 connection slots, one taken by the listening socket: clients 4-6 are dropped
    proc, server = start_nginx(tmp_path, "location = /status { stub_status; }",
                               worker_connections=4)
    try:
        memory = ProbeMemory()
        check = nginx_check(f"{server.base_url}/status")
        assert (await probe(check, memory)).status is Status.OK
        held = []
        dropped = 0
        for _ in range(12):   # until nginx has visibly dropped two (it closes them at once)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # half a request header: nginx cannot reuse this slot for a newcomer
            writer.write(b"GET /status HTTP/1.1\r\n")
            await writer.drain()
            held.append((reader, writer))
            try:
                async with asyncio.timeout(0.5):
                    closed = await reader.read(1) == b""
            except TimeoutError:
                closed = False   # held open: it got a slot
            except ConnectionResetError:
                closed = True
            dropped += closed
            if dropped >= 2:
                break
        assert dropped >= 2, "nginx never dropped a connection"
        for _reader, writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        res = await probe(check, memory)
    finally:
        stop_process(proc)
    assert (res.status, res.reason) == (Status.WARNING, "connections_dropped"), res.summary
    assert value(res, "nginx_connections_dropped_total") >= 1
    assert value(res, "nginx_connections_dropped_per_second") > 0


async def test_hung_server_is_cut_by_the_runner(hung_port: int) -> None:
    check = nginx_check(f"http://127.0.0.1:{hung_port}/status", timeout=0.5, interval=1)
    res = await run_check(check, "a1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be host:port"):
        nginx_check("http://127.0.0.1/status", upstreams=["10.0.0.1"])
    with pytest.raises(ValidationError, match="inline passwords are not accepted"):
        nginx_check("http://127.0.0.1/status", username="u", password="p")
    with pytest.raises(ValidationError, match="username needs password_file"):
        nginx_check("http://127.0.0.1/status", username="u")
    with pytest.raises(ValidationError, match="cannot read secret file"):
        nginx_check("http://127.0.0.1/status", username="u", password_file=tmp_path / "none")
    with pytest.raises(ValidationError, match="absolute http"):
        nginx_check("ftp://127.0.0.1/status")
    assert get_kind("nginx").remembers and get_kind("nginx").config is NginxCheck
