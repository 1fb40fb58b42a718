"""ICMP probe: `count` echo requests to `host` (IPv4 or IPv6), packet loss and round-trip time.

ok        enough replies (loss below `loss_percent.warning`), average RTT below `rtt_seconds`
warning   loss >= `loss_percent.warning` (default 20 %: one lost of 3), or average RTT >=
          `rtt_seconds.warning`
critical  no reply at all (always critical, whatever the levels), loss >=
          `loss_percent.critical`, average RTT >= `rtt_seconds.critical`, a network that
          reports the host unreachable, a name that does not resolve
unknown   this agent may not send ICMP (no ping socket and no CAP_NET_RAW), or cannot open an
          ICMP socket at all (e.g. IPv6 disabled on the agent's host)
Reason codes: ok, packet_loss, host_unreachable, dns_failed, slow_rtt, icmp_not_permitted,
probe_error.

Sockets: an unprivileged datagram ICMP socket ("ping socket") first, which Linux allows when
the process's group is inside /proc/sys/net/ipv4/ping_group_range (it covers IPv6 too); then a
raw socket, which needs root or CAP_NET_RAW. With a ping socket the kernel rewrites the echo
id and delivers only this socket's replies, and reports ICMP errors through IP_RECVERR; with a
raw socket every ICMP packet of the host arrives, so replies are matched by id, sequence and a
random payload token, and errors are parsed from the quoted original packet.

A reply later than `wait` after its own request counts as lost. `(count - 1) * spacing + wait`
must fit in the check's timeout, so the runner's deadline never cuts an ordinary lossy run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from probes.config import CheckConfig, Duration, Threshold
from probes.result import Metric, ProbeResult, Status, result

KIND = "icmp"

METRICS = {
    "icmp_rtt_seconds": "Round-trip time of the last run's echo replies (stat: min, avg, max).",
    "icmp_packets_sent": "Echo requests sent in the last run.",
    "icmp_packets_received": "Echo replies received in time in the last run.",
    "icmp_loss_ratio": "Share of the last run's echo requests without a reply in time (0-1).",
}

SocketKind = Literal["dgram", "raw"]

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
PAYLOAD_BYTES = 56  # as ping(8): 64-byte ICMP messages
_TOKEN_BYTES = 8

# Not in the socket module of Python 3.11 (Linux values from <linux/in.h>, <linux/in6.h>).
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SOL_IP = 0
_SOL_IPV6 = 41

_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_ERRORS: dict[int, dict[int, str]] = {
    socket.AF_INET: {3: "destination unreachable", 11: "time exceeded"},
    socket.AF_INET6: {1: "destination unreachable", 3: "time exceeded"},
}


class IcmpCheck(CheckConfig):
    kind: Literal["icmp"]
    host: str = Field(min_length=1)
    ip_version: Literal[4, 6] | None = None
    """Force IPv4 or IPv6; by default the first address the resolver returns."""
    count: int = Field(default=3, ge=1, le=100)
    spacing: Duration = 0.2
    """Time between two echo requests."""
    wait: Duration = 1.0
    """How long a reply may take after its own request before it counts as lost."""
    loss_percent: Threshold = Threshold(warning=20, critical=100)
    rtt_seconds: Threshold = Threshold()
    """Levels for the average round-trip time."""

    @model_validator(mode="after")
    def _run_fits_timeout(self) -> IcmpCheck:
        needed = (self.count - 1) * self.spacing + self.wait
        if needed > self.timeout:
            raise ValueError(
                f"count, spacing and wait need {needed:g}s, more than timeout ({self.timeout:g}s)")
        return self

    @property
    def target(self) -> str:
        return self.host


CONFIG = IcmpCheck


@dataclass(frozen=True)
class PingError:
    seq: int | None
    """The echo request it concerns, when known."""
    text: str


@dataclass(frozen=True)
class PingOutcome:
    """What one run saw; `assess` turns it into a result."""

    address: str
    socket_kind: SocketKind
    rtts: tuple[float | None, ...]
    """One entry per echo request, in order: seconds, or None when no reply came in time."""
    errors: tuple[PingError, ...] = ()
    """Send failures and ICMP errors (unreachable, time exceeded), as seen."""


@dataclass(frozen=True)
class Received:
    """An ICMP message that answers one of our echo requests."""

    seq: int
    error: str | None = None
    """None for an echo reply; what went wrong for an ICMP error."""


async def probe(check: IcmpCheck) -> ProbeResult:
    loop = asyncio.get_running_loop()
    family = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}[check.ip_version]
    try:
        infos = await loop.getaddrinfo(check.host, None, family=family, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        return result(Status.CRITICAL, "dns_failed",
                      f"cannot resolve {check.host}: {exc.strerror}")
    family, _type, _proto, _name, sockaddr = infos[0]
    address = str(sockaddr[0])

    group_range = _read_group_range()
    try:
        sock, kind = open_icmp_socket(family, socket_order(group_range, _groups()))
    except PermissionError:
        return result(Status.UNKNOWN, "icmp_not_permitted", _NOT_PERMITTED,
                      details={"ping_group_range": group_range, "uid": _uid(),
                               "groups": sorted(_groups())})
    except OSError as exc:
        return result(Status.UNKNOWN, "probe_error",
                      f"cannot open an ICMP socket for {address}: {exc.strerror or exc}")
    with sock:
        outcome = await _ping(check, sock, kind, family, sockaddr, address)
    return assess(check, outcome)


_NOT_PERMITTED = (
    "this agent may not send ICMP: allow ping sockets with "
    '`sysctl -w net.ipv4.ping_group_range="0 2147483647"` (persist it in /etc/sysctl.d/) '
    "or grant CAP_NET_RAW (systemd unit: AmbientCapabilities=CAP_NET_RAW)")


def assess(check: IcmpCheck, outcome: PingOutcome) -> ProbeResult:
    """Status, reason, summary and metrics for one run's outcome."""
    sent = len(outcome.rtts)
    rtts = [rtt for rtt in outcome.rtts if rtt is not None]
    loss = (sent - len(rtts)) / sent if sent else 1.0
    metrics = [Metric(name="icmp_packets_sent", value=sent),
               Metric(name="icmp_packets_received", value=len(rtts)),
               Metric(name="icmp_loss_ratio", value=loss)]
    details: dict[str, object] = {
        "address": outcome.address, "socket": outcome.socket_kind,
        "rtts_seconds": list(outcome.rtts),
        "errors": [{"seq": error.seq, "error": error.text} for error in outcome.errors]}
    name = check.host if check.host == outcome.address else f"{check.host} ({outcome.address})"
    counts = f"{len(rtts)}/{sent} replies"

    if not rtts:
        if outcome.errors:
            return result(Status.CRITICAL, "host_unreachable",
                          f"{name} unreachable ({counts}): {outcome.errors[-1].text}",
                          metrics=tuple(metrics), details=details)
        return result(Status.CRITICAL, "packet_loss", f"{name}: no reply ({counts})",
                      metrics=tuple(metrics), details=details)

    low, avg, high = min(rtts), sum(rtts) / len(rtts), max(rtts)
    metrics += [Metric(name="icmp_rtt_seconds", value=value, labels={"stat": stat})
                for stat, value in (("min", low), ("avg", avg), ("max", high))]
    summary = (f"{name}: {counts}, {loss:.0%} loss, rtt min/avg/max "
               f"{low * 1000:.3f}/{avg * 1000:.3f}/{high * 1000:.3f} ms")
    loss_level = check.loss_percent.evaluate(loss * 100)
    rtt_level = check.rtt_seconds.evaluate(avg)
    # Loss first: at equal levels it is the more telling reason.
    if loss_level is not Status.OK and loss_level.severity >= rtt_level.severity:
        return result(loss_level, "packet_loss", summary, metrics=tuple(metrics), details=details)
    if rtt_level is not Status.OK:
        return result(rtt_level, "slow_rtt", summary + " (slow)", metrics=tuple(metrics),
                      details=details)
    return result(Status.OK, "ok", summary, metrics=tuple(metrics), details=details)


def socket_order(group_range: str | None, groups: Collection[int]) -> tuple[SocketKind, ...]:
    """Which ICMP socket kinds to try, in order, given ping_group_range's text and our groups.

    A ping socket when the range admits one of our groups ("1 0", the kernel default, admits
    nobody), then a raw socket. Without a readable range (not Linux), both are tried.
    """
    if group_range is None:
        return ("dgram", "raw")
    try:
        low, high = (int(part) for part in group_range.split())
    except ValueError:
        return ("dgram", "raw")
    if any(low <= gid <= high for gid in groups):
        return ("dgram", "raw")
    return ("raw",)


def open_icmp_socket(family: int, order: Sequence[SocketKind]
                     ) -> tuple[socket.socket, SocketKind]:
    """A non-blocking ICMP socket of the first kind in `order` that the kernel grants.

    Raises PermissionError when none is allowed, another OSError when ICMP is unavailable.
    """
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    failure: OSError = PermissionError("no ICMP socket kind to try")
    for kind in order:
        sock_type = socket.SOCK_DGRAM if kind == "dgram" else socket.SOCK_RAW
        try:
            sock = socket.socket(family, sock_type, proto)
        except OSError as exc:
            failure = exc
            continue
        sock.setblocking(False)
        if kind == "dgram" and sys.platform == "linux":
            # Without it, network-reported errors (host unreachable) never reach a ping socket.
            if family == socket.AF_INET:
                sock.setsockopt(_SOL_IP, _IP_RECVERR, 1)
            else:
                sock.setsockopt(_SOL_IPV6, _IPV6_RECVERR, 1)
        return sock, kind
    raise failure


async def _ping(check: IcmpCheck, sock: socket.socket, kind: SocketKind, family: int,
                sockaddr: tuple[Any, ...], address: str
                ) -> PingOutcome:
    loop = asyncio.get_running_loop()
    ident = random.getrandbits(16)  # a ping socket replaces it with its own id
    match_ident = ident if kind == "raw" else None
    token = os.urandom(_TOKEN_BYTES)
    payload = token + bytes(range(PAYLOAD_BYTES - _TOKEN_BYTES))
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    failed: set[int] = set()
    errors: list[PingError] = []

    def record(got: Received | None, now: float) -> None:
        if got is None or got.seq not in sent_at or got.seq in rtts or got.seq in failed:
            return  # someone else's packet, a duplicate, or our own request seen by a raw socket
        if got.error is not None:
            failed.add(got.seq)
            errors.append(PingError(got.seq, got.error))
        elif now - sent_at[got.seq] <= check.wait:
            rtts[got.seq] = now - sent_at[got.seq]

    def settled() -> bool:
        return all(seq in rtts or seq in failed for seq in sent_at)

    async def receive_until(deadline: float, stop_when_settled: bool) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while not (stop_when_settled and settled()):
                    try:
                        data = await loop.sock_recv(sock, 65535)
                    except OSError as exc:  # a ping socket's IP_RECVERR error
                        queued = _drain_error_queue(sock)
                        for got in queued:
                            record(got, time.perf_counter())
                        if not queued:
                            errors.append(PingError(None, exc.strerror or str(exc)))
                        continue
                    record(parse_packet(data, family, match_ident, token), time.perf_counter())

    for seq in range(1, check.count + 1):
        sent_at[seq] = time.perf_counter()
        try:
            await loop.sock_sendto(sock, echo_request(family, ident, seq, payload), sockaddr)
        except OSError as exc:  # e.g. no route: the kernel refuses before anything is sent
            failed.add(seq)
            errors.append(PingError(seq, exc.strerror or str(exc)))
        last = seq == check.count
        await receive_until(loop.time() + (check.wait if last else check.spacing),
                            stop_when_settled=last)
    return PingOutcome(address=address, socket_kind=kind,
                       rtts=tuple(rtts.get(seq) for seq in sorted(sent_at)),
                       errors=tuple(errors))


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (v4) or ICMPv6 echo request.

    The ICMPv6 checksum covers a pseudo-header with the source address, which only the kernel
    knows; it fills it in for ICMPv6 sockets, so it is left 0 here.
    """
    icmp_type = _ECHO_REQUEST[family]
    header = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq)
    if family == socket.AF_INET:
        header = struct.pack("!BBHHH", icmp_type, 0, checksum(header + payload), ident, seq)
    return header + payload


def parse_packet(data: bytes, family: int, ident: int | None, token: bytes) -> Received | None:
    """The echo reply or ICMP error in `data` that answers one of our requests, else None.

    `ident` is None for ping sockets (the kernel chose the id and filters by it). An IPv4
    header in front (raw sockets) is skipped. For an error, the quoted original request must
    be one of ours; only its first 8 bytes are guaranteed to be quoted, so the token is not
    checked there.
    """
    if family == socket.AF_INET:
        data = _strip_ipv4_header(data)
    if len(data) < 8:
        return None
    icmp_type, code, _checksum, packet_id, seq = struct.unpack_from("!BBHHH", data)
    if icmp_type == _ECHO_REPLY[family]:
        if ident is not None and packet_id != ident:
            return None
        if data[8:8 + len(token)] != token:
            return None
        return Received(seq=seq)
    error = _ERRORS[family].get(icmp_type)
    if error is None:
        return None
    quoted = data[8:]
    quoted = _strip_ipv4_header(quoted) if family == socket.AF_INET else quoted[40:]
    if len(quoted) < 8:
        return None
    inner_type, _code, _sum, inner_id, inner_seq = struct.unpack_from("!BBHHH", quoted)
    if inner_type != _ECHO_REQUEST[family] or (ident is not None and inner_id != ident):
        return None
    return Received(seq=inner_seq, error=f"{error} (code {code})")


def _strip_ipv4_header(data: bytes) -> bytes:
    # No ICMP type we read has 4 in its high nibble (types 64-79 are unassigned), so a
    # leading 0x4_ byte is an IPv4 header.
    if len(data) >= 20 and data[0] >> 4 == 4:
        return data[(data[0] & 0x0F) * 4:]
    return data


def parse_queued_error(data: bytes, ancdata: list[tuple[int, int, bytes]]) -> Received | None:
    """An error from a ping socket's error queue (IP_RECVERR): `data` is our original request,
    the control message a `struct sock_extended_err` whose first field is the errno."""
    if len(data) < 8:
        return None
    seq = struct.unpack_from("!H", data, 6)[0]
    for level, kind, cdata in ancdata:
        if (level, kind) in {(_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR)} \
                and len(cdata) >= 4:
            (errno_value,) = struct.unpack_from("=I", cdata)
            return Received(seq=seq, error=os.strerror(errno_value))
    return None


def _drain_error_queue(sock: socket.socket) -> list[Received]:
    """Everything waiting in the socket's error queue; the queue must be emptied, or the
    socket stays "readable" (EPOLLERR) and the receive loop spins."""
    found: list[Received] = []
    flag = getattr(socket, "MSG_ERRQUEUE", 0)
    if not flag:
        return found
    while True:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(2048, 1024, flag)
        except OSError:  # BlockingIOError: the queue is empty
            return found
        got = parse_queued_error(data, ancdata)
        if got is not None:
            found.append(got)


def _read_group_range() -> str | None:
    try:
        return PING_GROUP_RANGE.read_text().strip()
    except OSError:
        return None


def _groups() -> set[int]:
    if sys.platform == "win32":
        return set()
    # The kernel admits a ping socket for the effective gid or any supplementary group.
    return {os.getegid(), *os.getgroups()}


def _uid() -> int | None:
    return None if sys.platform == "win32" else os.geteuid()
