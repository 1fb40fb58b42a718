"""icmp probe with real echo requests on loopback.

In this process: 127.0.0.1 and ::1 answer (raw socket as root, or a ping socket when the
machine's ping_group_range admits us). Conditions that need another network set-up run the
probe in a child process inside a fresh network namespace (`unshare --net`), so the machine's
own sysctls are never touched: a host that ignores echo requests, a loopback that is down,
a ping socket opened without CAP_NET_RAW, and an agent allowed neither kind of socket.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.icmp import (
    IcmpCheck,
    PingError,
    PingOutcome,
    Received,
    assess,
    checksum,
    echo_request,
    open_icmp_socket,
    parse_packet,
    parse_queued_error,
    probe,
    socket_order,
)
from probes.result import Status
from tests.services import needs

REPO = Path(__file__).resolve().parents[2]
TOKEN = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def icmp(**kw: object) -> IcmpCheck:
    return IcmpCheck.model_validate(
        {"id": "p", "kind": "icmp", "host": "127.0.0.1", "spacing": 0.05, "wait": 0.5, **kw})


@functools.cache
def _can_ping() -> bool:
    try:
        sock, _kind = open_icmp_socket(socket.AF_INET, ("dgram", "raw"))
    except OSError:
        return False
    sock.close()
    return True


def needs_icmp() -> None:
    needs(_can_ping(), "an ICMP socket (root, CAP_NET_RAW, or net.ipv4.ping_group_range)")


@functools.cache
def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return done.returncode == 0


def in_netns(setup: list[str], checks: list[dict[str, Any]], *,
             drop_net_raw: bool = False) -> list[dict[str, Any]]:
    """Run the probe for each check in a child process inside a new network namespace.

    `setup` lines run first in that namespace (shell). With `drop_net_raw` the child loses
    CAP_NET_RAW, as an agent running as an ordinary user would lack it.
    """
    needs(_can_unshare(), "`unshare --net` and `ip` (root, util-linux, iproute2)")
    if drop_net_raw:
        needs(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    runner = (
        "import asyncio, json, sys\n"
        "from probes.icmp import IcmpCheck, probe\n"
        "async def main():\n"
        "    for raw in json.loads(sys.argv[1]):\n"
        "        res = await probe(IcmpCheck.model_validate(raw))\n"
        "        print(res.model_dump_json(), flush=True)\n"
        "asyncio.run(main())\n")
    drop = "setpriv --bounding-set=-net_raw " if drop_net_raw else ""
    shell = " && ".join([*setup, f'exec {drop}"$0" -c "$1" "$2"'])
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", shell, sys.executable, runner, json.dumps(checks)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_dict(host: str, **kw: object) -> dict[str, Any]:
    return {"id": "p", "kind": "icmp", "host": host, "spacing": 0.05, "wait": 0.3, **kw}


LO_UP = "ip link set lo up"


# --- real echo requests in this process -------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_loopback_answers(host: str) -> None:
    needs_icmp()
    res = await probe(icmp(host=host))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    values = {(m.name, m.labels.get("stat")): m.value for m in res.metrics}
    assert values[("icmp_packets_sent", None)] == 3
    assert values[("icmp_packets_received", None)] == 3
    assert values[("icmp_loss_ratio", None)] == 0
    low, avg, high = (values[("icmp_rtt_seconds", s)] for s in ("min", "avg", "max"))
    assert 0 < low <= avg <= high < 0.5
    assert res.details["address"] == host
    assert res.details["socket"] in {"dgram", "raw"}
    assert len(res.details["rtts_seconds"]) == 3


async def test_name_is_resolved_and_shown_with_its_address() -> None:
    needs_icmp()
    res = await probe(icmp(host="localhost", ip_version=4, count=1))
    assert res.status is Status.OK, res.summary
    assert res.summary.startswith("localhost (127.0.0.1): 1/1 replies")


async def test_concurrent_runs_keep_their_own_replies() -> None:
    # Raw sockets each see every ICMP packet of the host: matching by id, seq and token
    # must keep each run to its own replies.
    needs_icmp()
    results = await asyncio.gather(*(probe(icmp(host=host, count=4))
                                     for host in ["127.0.0.1", "::1"] * 3))
    for res in results:
        assert res.status is Status.OK, res.summary
        assert res.summary.split(": ")[1].startswith("4/4 replies")


async def test_rtt_threshold_warns() -> None:
    needs_icmp()
    res = await probe(icmp(rtt_seconds={"warning": 0}))  # every real RTT is "slow"
    assert (res.status, res.reason) == (Status.WARNING, "slow_rtt")


async def test_unresolvable_host_is_dns_failed() -> None:
    res = await probe(icmp(host="no-such-host.invalid"))
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_failed")
    assert "no-such-host.invalid" in res.summary


# --- real echo requests in a network namespace -------------------------------------------


def test_host_ignoring_echo_is_total_loss() -> None:
    ignore = ["echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all",
              "echo 1 > /proc/sys/net/ipv6/icmp/echo_ignore_all"]
    results = in_netns([LO_UP, *ignore], [check_dict("127.0.0.1"), check_dict("::1")])
    for res in results:
        assert (res["status"], res["reason"]) == ("critical", "packet_loss")
        assert res["details"]["rtts_seconds"] == [None, None, None]
        metrics = {m["name"]: m["value"] for m in res["metrics"]}
        assert metrics == {"icmp_packets_sent": 3, "icmp_packets_received": 0,
                           "icmp_loss_ratio": 1.0}


def test_network_down_is_host_unreachable() -> None:
    [res] = in_netns(["true"], [check_dict("127.0.0.1")])  # lo stays down
    assert (res["status"], res["reason"]) == ("critical", "host_unreachable")
    assert "Network is unreachable" in res["summary"]
    assert [e["seq"] for e in res["details"]["errors"]] == [1, 2, 3]


def test_ping_socket_without_cap_net_raw() -> None:
    allow = 'echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range'
    results = in_netns([LO_UP, allow], [check_dict("127.0.0.1"), check_dict("::1")],
                       drop_net_raw=True)
    for res in results:
        assert (res["status"], res["reason"]) == ("ok", "ok"), res["summary"]
        assert res["details"]["socket"] == "dgram"


def test_neither_socket_kind_allowed_names_the_fix() -> None:
    forbid = 'echo "1 0" > /proc/sys/net/ipv4/ping_group_range'
    [res] = in_netns([LO_UP, forbid], [check_dict("127.0.0.1")], drop_net_raw=True)
    assert (res["status"], res["reason"]) == ("unknown", "icmp_not_permitted")
    assert 'net.ipv4.ping_group_range="0 2147483647"' in res["summary"]
    assert "CAP_NET_RAW" in res["summary"]
    assert res["details"]["ping_group_range"].split() == ["1", "0"]


# --- the decisions, as pure functions ----------------------------------------------------


@pytest.mark.parametrize(("group_range", "groups", "order"), [
    ("1\t0", {0}, ("raw",)),                     # the kernel default: nobody
    ("0 2147483647", {1000}, ("dgram", "raw")),  # systemd's default: everybody
    ("100 200", {150}, ("dgram", "raw")),
    ("100 200", {99, 201}, ("raw",)),
    ("100 200", {5, 200}, ("dgram", "raw")),     # a supplementary group is enough
    (None, {1000}, ("dgram", "raw")),            # not Linux: just try
])
def test_socket_order(group_range: str | None, groups: set[int],
                      order: tuple[str, ...]) -> None:
    assert socket_order(group_range, groups) == order


def outcome(*rtts: float | None, errors: tuple[PingError, ...] = ()) -> PingOutcome:
    return PingOutcome(address="192.0.2.7", socket_kind="raw", rtts=rtts, errors=errors)


@pytest.mark.parametrize(("rtts", "status", "reason", "loss"), [
    ((0.001, 0.002, 0.003), Status.OK, "ok", 0.0),
    ((0.001, None, 0.003), Status.WARNING, "packet_loss", 1 / 3),
    ((None, None, None), Status.CRITICAL, "packet_loss", 1.0),
    ((0.001,) * 9 + (None,), Status.OK, "ok", 0.1),  # 10 % is under the default 20 %
])
def test_loss_levels(rtts: tuple[float | None, ...], status: Status, reason: str,
                     loss: float) -> None:
    res = assess(icmp(host="gw", count=len(rtts)), outcome(*rtts))
    assert (res.status, res.reason) == (status, reason)
    metrics = {m.name: m.value for m in res.metrics if m.name != "icmp_rtt_seconds"}
    received = sum(r is not None for r in rtts)
    assert metrics == pytest.approx({"icmp_packets_sent": len(rtts),
                                     "icmp_packets_received": received,
                                     "icmp_loss_ratio": loss})


def test_total_loss_is_critical_even_without_a_critical_level() -> None:
    res = assess(icmp(loss_percent={"warning": 50}), outcome(None, None))
    assert (res.status, res.reason) == (Status.CRITICAL, "packet_loss")


def test_loss_outranks_rtt_at_equal_level_and_rtt_wins_when_worse() -> None:
    lossy = outcome(0.2, None, 0.2)
    res = assess(icmp(rtt_seconds={"warning": 0.1}), lossy)
    assert (res.status, res.reason) == (Status.WARNING, "packet_loss")
    res = assess(icmp(rtt_seconds={"critical": 0.1}), lossy)
    assert (res.status, res.reason) == (Status.CRITICAL, "slow_rtt")


def test_errors_without_replies_are_host_unreachable() -> None:
    errors = (PingError(1, "destination unreachable (code 1)"),)
    res = assess(icmp(), outcome(None, errors=errors))
    assert (res.status, res.reason) == (Status.CRITICAL, "host_unreachable")
    assert res.summary == "127.0.0.1 (192.0.2.7) unreachable (0/1 replies): " \
                          "destination unreachable (code 1)"
    assert res.details["errors"] == [{"seq": 1, "error": "destination unreachable (code 1)"}]


def test_run_must_fit_in_the_timeout() -> None:
    with pytest.raises(ValidationError, match=r"need 5\.5s, more than timeout \(5s\)"):
        icmp(count=10, spacing=0.5, wait=1, timeout=5)


# --- the wire format ---------------------------------------------------------------------


def test_echo_request_checksum_verifies() -> None:
    packet = echo_request(socket.AF_INET, 0x1234, 7, TOKEN + b"pad")
    assert packet[0] == 8 and struct.unpack_from("!HH", packet, 4) == (0x1234, 7)
    assert checksum(packet) == 0  # a correct checksum sums the whole message to zero


def ipv4_header(payload_len: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0, 64, 1, 0,
                       bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))


def test_reply_behind_an_ipv4_header_matches_id_seq_and_token() -> None:
    reply = bytes([0]) + echo_request(socket.AF_INET, 0x1234, 7, TOKEN)[1:]
    packet = ipv4_header(len(reply)) + reply
    assert parse_packet(packet, socket.AF_INET, 0x1234, TOKEN) == Received(seq=7)
    assert parse_packet(packet, socket.AF_INET, 0x9999, TOKEN) is None  # another run's id
    assert parse_packet(packet, socket.AF_INET, 0x1234, b"other!!!") is None
    assert parse_packet(packet, socket.AF_INET, None, TOKEN) == Received(seq=7)  # ping socket


def test_our_own_request_seen_by_a_raw_socket_is_ignored() -> None:
    request = echo_request(socket.AF_INET, 0x1234, 7, TOKEN)
    assert parse_packet(ipv4_header(len(request)) + request, socket.AF_INET, 0x1234,
                        TOKEN) is None


def test_unreachable_quoting_our_request_is_an_error_for_its_seq() -> None:
    request = echo_request(socket.AF_INET, 0x1234, 3, TOKEN)
    quoted = ipv4_header(len(request)) + request[:8]
    error = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    packet = ipv4_header(len(error)) + error
    assert parse_packet(packet, socket.AF_INET, 0x1234, TOKEN) == \
        Received(seq=3, error="destination unreachable (code 1)")
    assert parse_packet(packet, socket.AF_INET, 0x4321, TOKEN) is None


def test_icmpv6_unreachable_quoting_our_request() -> None:
    request = echo_request(socket.AF_INET6, 0x1234, 2, TOKEN)
    error = struct.pack("!BBHI", 1, 3, 0, 0) + bytes(40) + request[:8]
    assert parse_packet(error, socket.AF_INET6, 0x1234, TOKEN) == \
        Received(seq=2, error="destination unreachable (code 3)")


def test_queued_ping_socket_error() -> None:
    request = echo_request(socket.AF_INET, 0x1234, 5, TOKEN)
    extended = struct.pack("=IBBBBII", errno.EHOSTUNREACH, 2, 3, 1, 0, 0, 0)
    assert parse_queued_error(request, [(0, 11, extended)]) == \
        Received(seq=5, error=os.strerror(errno.EHOSTUNREACH))
    assert parse_queued_error(request, [(0, 99, extended)]) is None
