"""TCP probe: connect to host:port, optionally send a line and expect a reply.

ok        connected (and the reply matched `expect`, when given) within the latency levels
warning   connect time >= `connect_seconds.warning`
critical  refused, unreachable, name not resolved, reply did not match, connection closed,
          connect time >= `connect_seconds.critical`
Reason codes: ok, connect_refused, connect_error, dns_failed, expect_mismatch,
connection_closed, slow_connect. A target that accepts and never answers, answers a byte at
a time, never accepts (a full backlog) or stops reading what we `send` is cut by the runner's
timeout (reason `timeout`); the reply is read up to `read_bytes` only (docs/agent-faults.md).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import socket
import time
from typing import Literal

from pydantic import Field

from probes.config import CheckConfig, Regex, Threshold
from probes.result import Metric, ProbeResult, Status, result

KIND = "tcp"

METRICS = {
    "tcp_connect_seconds": "Time to establish the TCP connection.",
    "tcp_response_seconds": "Time from sending `send` until `expect` matched.",
}


class TcpCheck(CheckConfig):
    kind: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    send: str | None = None
    """Sent after connecting; backslash escapes such as \\r\\n are understood."""
    expect: Regex | None = None
    """A regular expression the reply must match (searched in the first `read_bytes`)."""
    read_bytes: int = Field(default=4096, ge=1, le=1 << 20)
    connect_seconds: Threshold = Threshold()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


CONFIG = TcpCheck


async def probe(check: TcpCheck) -> ProbeResult:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(check.host, check.port)
    except socket.gaierror as exc:
        return result(Status.CRITICAL, "dns_failed",
                      f"cannot resolve {check.host}: {exc.strerror}")
    except ConnectionRefusedError:
        return result(Status.CRITICAL, "connect_refused", f"{check.target} refused the connection")
    except OSError as exc:
        return result(Status.CRITICAL, "connect_error",
                      f"cannot connect to {check.target}: {exc.strerror or exc}")
    connect_s = time.perf_counter() - started
    metrics = [Metric(name="tcp_connect_seconds", value=connect_s)]
    try:
        if check.send is not None:
            writer.write(codecs.decode(check.send, "unicode_escape").encode("latin-1"))
            await writer.drain()
        if check.expect is not None:
            sent_at = time.perf_counter()
            outcome = await _await_reply(reader, check)
            if outcome is not None:
                return result(Status.CRITICAL, outcome[0], outcome[1], metrics=tuple(metrics))
            metrics.append(Metric(name="tcp_response_seconds",
                                  value=time.perf_counter() - sent_at))
    finally:
        # A graceful close waits until unsent data is flushed. A peer that stopped reading
        # would hold this probe for ever, past its deadline (the runner's one cancellation is
        # spent by then): unsent data is dropped instead (RST rather than FIN).
        if writer.transport.get_write_buffer_size():
            writer.transport.abort()
        else:
            writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    level = check.connect_seconds.evaluate(connect_s)
    if level is not Status.OK:
        return result(level, "slow_connect",
                      f"{check.target} connected in {connect_s * 1000:.1f} ms (slow)",
                      metrics=tuple(metrics))
    return result(Status.OK, "ok", f"{check.target} connected in {connect_s * 1000:.1f} ms",
                  metrics=tuple(metrics))


async def _await_reply(reader: asyncio.StreamReader, check: TcpCheck) -> tuple[str, str] | None:
    """Read until `expect` matches; (reason, summary) on failure, None on a match."""
    assert check.expect is not None
    pattern = re.compile(check.expect.encode("latin-1"))
    received = b""
    while len(received) < check.read_bytes:
        chunk = await reader.read(check.read_bytes - len(received))
        if not chunk:
            return ("connection_closed",
                    f"{check.target} closed the connection before {check.expect!r} "
                    f"(got {_preview(received)})")
        received += chunk
        if pattern.search(received):
            return None
    return ("expect_mismatch",
            f"{check.target} answered {_preview(received)}, which does not match {check.expect!r}")


def _preview(data: bytes) -> str:
    return repr(data[:80].decode("latin-1")) if data else "nothing"
