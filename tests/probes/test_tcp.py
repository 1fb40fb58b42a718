"""tcp probe against real sockets on loopback: a line server, a silent server, a closed port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.runner import run_check
from probes.result import Status
from probes.tcp import TcpCheck, probe
from tests.services import free_port


@pytest.fixture
async def echo_server() -> AsyncIterator[int]:
    """Answers each line with 'OK <line>'; greets first with a banner."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        line = await reader.readline()
        writer.write(b"OK " + line)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def tcp(**kw: object) -> TcpCheck:
    return TcpCheck.model_validate({"id": "t", "kind": "tcp", "host": "127.0.0.1", **kw})


async def test_connect_ok_reports_connect_time(echo_server: int) -> None:
    res = await probe(tcp(port=echo_server))
    assert res.status is Status.OK
    assert res.reason == "ok"
    [metric] = res.metrics
    assert metric.name == "tcp_connect_seconds" and 0 < metric.value < 1


async def test_send_and_expect_match(echo_server: int) -> None:
    res = await probe(tcp(port=echo_server, send="PING\\r\\n", expect=r"OK PING"))
    assert res.status is Status.OK, res.summary
    assert {m.name for m in res.metrics} == {"tcp_connect_seconds", "tcp_response_seconds"}


async def test_expect_mismatch_is_critical(echo_server: int) -> None:
    res = await probe(tcp(port=echo_server, send="PING\\r\\n", expect=r"^PONG"))
    assert res.status is Status.CRITICAL
    assert res.reason == "connection_closed"
    assert "220 ready" in res.summary


async def test_refused_port_is_critical() -> None:
    res = await probe(tcp(port=free_port()))
    assert (res.status, res.reason) == (Status.CRITICAL, "connect_refused")


async def test_unresolvable_host_is_critical() -> None:
    res = await probe(tcp(host="no-such-host.invalid", port=80))
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_failed")


async def test_hung_port_is_cut_at_timeout(hung_port: int) -> None:
    check = tcp(port=hung_port, expect="anything", timeout=0.3)
    res = await run_check(check, "agent-1")
    assert (res.status, res.reason) == (Status.CRITICAL, "timeout")
    assert 0.3 <= res.duration_s < 1.0


async def test_slow_connect_threshold_warns(echo_server: int) -> None:
    # a threshold of 0 s: every real connect is "slow", so the level logic is exercised
    res = await probe(tcp(port=echo_server, connect_seconds={"warning": 0}))
    assert (res.status, res.reason) == (Status.WARNING, "slow_connect")
