"""dns probe against a real DNS server on loopback, written here with dnspython's message API.

The server answers a small zone over UDP and TCP on one port, NXDOMAIN for unknown names,
SERVFAIL / REFUSED for special names, never answers another one, and truncates a large answer
over UDP so the client must retry over TCP. It records every query it receives.
The system-resolver path (no `server:`) runs in a child process inside fresh network and mount
namespaces, where the server listens on 127.0.0.1:53 and a resolv.conf of ours is mounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from pydantic import ValidationError

from agent.runner import run_check
from probes.dns import DnsCheck, parse_server, probe
from probes.result import Status
from tests.services import free_port, needs

REPO = Path(__file__).resolve().parents[2]

ZONE: dict[tuple[str, str], list[str]] = {
    ("www.example.test.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("www.example.test.", "AAAA"): ["2001:db8::10"],
    ("example.test.", "MX"): ["10 mail.example.test."],
    ("mail.example.test.", "A"): ["192.0.2.25"],
    ("alias.example.test.", "CNAME"): ["www.example.test."],
    ("txt.example.test.", "TXT"): ['"v=spf1 " "-all"'],
    ("big.example.test.", "TXT"): [f'"record {i:03} {"x" * 100}"' for i in range(40)],
    ("10.2.0.192.in-addr.arpa.", "PTR"): ["www.example.test."],
}
NAMES = {name for name, _type in ZONE}
SERVFAIL = "servfail.example.test."
REFUSED = "refused.example.test."
SILENT = "silent.example.test."


@dataclass(frozen=True)
class Query:
    name: str
    rdtype: str
    protocol: str


@dataclass
class ZoneServer:
    port: int
    queries: list[Query] = field(default_factory=list)

    def answer(self, wire: bytes, protocol: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name, rdtype = question.name.to_text().lower(), question.rdtype
        self.queries.append(Query(name, dns.rdatatype.to_text(rdtype), protocol))
        if name == SILENT:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name == SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name == REFUSED:
            response.set_rcode(dns.rcode.REFUSED)
        elif name not in NAMES:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            owner = name
            target = ZONE.get((owner, "CNAME"))
            if target and rdtype != dns.rdatatype.CNAME:
                response.answer.append(self._rrset(owner, "CNAME", target))
                owner = target[0]
            records = ZONE.get((owner, dns.rdatatype.to_text(rdtype)))
            if records:
                response.answer.append(self._rrset(owner, dns.rdatatype.to_text(rdtype),
                                                   records))
        if protocol == "tcp":
            return response.to_wire()
        limit = query.payload if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    @staticmethod
    def _rrset(owner: str, rdtype: str, records: list[str]) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(owner, 300, dns.rdataclass.IN,
                                        dns.rdatatype.from_text(rdtype), records)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ZoneServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.server.answer(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _serve_tcp(server: ZoneServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = server.answer(await reader.readexactly(size), "tcp")
            if reply is None:
                await reader.read()  # silent: hold the connection until the client goes
                break
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def serve_zone(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[ZoneServer]:
    """The zone over UDP and TCP on one port of `host` (a free one when `port` is 0)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _attempt in range(10):
        udp_sock = socket.socket(family, socket.SOCK_DGRAM)
        udp_sock.bind((host, port))
        chosen = udp_sock.getsockname()[1]
        server = ZoneServer(port=chosen)
        handle = functools.partial(_serve_tcp, server)
        try:
            tcp = await asyncio.start_server(handle, host, chosen)
        except OSError:  # the TCP side of that port is taken: try another one
            udp_sock.close()
            continue
        transport, _protocol = await loop.create_datagram_endpoint(
            functools.partial(_Udp, server), sock=udp_sock)
        try:
            async with tcp:
                yield server
        finally:
            transport.close()
        return
    raise RuntimeError("no port free for both UDP and TCP")


@pytest.fixture
async def zone() -> AsyncIterator[ZoneServer]:
    async with serve_zone() as server:
        yield server


def dns_check(zone: ZoneServer | None, **kw: object) -> DnsCheck:
    at = {"server": f"127.0.0.1:{zone.port}"} if zone else {}
    return DnsCheck.model_validate({"id": "d", "kind": "dns", **at, **kw})


def metrics(res: Any) -> dict[str, float]:
    return {m.name: m.value for m in res.metrics}


# --- answers ----------------------------------------------------------------------------


async def test_a_record(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test"))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert sorted(res.details["answers"]) == ["192.0.2.10", "192.0.2.11"]
    assert res.details["rcode"] == "NOERROR"
    assert res.details["server"] == f"127.0.0.1:{zone.port}"
    assert metrics(res)["dns_answers"] == 2
    assert 0 < metrics(res)["dns_lookup_seconds"] < 1
    assert zone.queries == [Query("www.example.test.", "A", "udp")]


@pytest.mark.parametrize(("name", "record_type", "expect", "answers"), [
    ("www.example.test", "AAAA", ["2001:DB8:0::10"], ["2001:db8::10"]),  # canonical compare
    ("example.test", "mx", ["10 MAIL.example.test"], ["10 mail.example.test."]),
    ("alias.example.test", "CNAME", ["www.example.test"], ["www.example.test."]),
    ("txt.example.test", "TXT", ["v=spf1 -all"], ["v=spf1 -all"]),  # strings joined
    ("192.0.2.10", "PTR", ["www.example.test."], ["www.example.test."]),
])
async def test_record_types_and_expected_answers(zone: ZoneServer, name: str, record_type: str,
                                                 expect: list[str], answers: list[str]) -> None:
    res = await probe(dns_check(zone, name=name, record_type=record_type, expect=expect,
                                expect_exact=True))
    assert (res.status, res.reason) == (Status.OK, "ok"), res.summary
    assert res.details["answers"] == answers
    [query] = zone.queries
    assert query.rdtype == record_type.upper()


async def test_ptr_for_an_address_asks_the_reverse_name(zone: ZoneServer) -> None:
    await probe(dns_check(zone, name="192.0.2.10", record_type="PTR"))
    assert zone.queries == [Query("10.2.0.192.in-addr.arpa.", "PTR", "udp")]


async def test_cname_is_followed_to_the_asked_type(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="alias.example.test", expect=["192.0.2.10"]))
    assert res.status is Status.OK, res.summary
    assert res.details["canonical_name"] == "www.example.test."
    assert sorted(res.details["answers"]) == ["192.0.2.10", "192.0.2.11"]


async def test_tcp(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test", protocol="tcp"))
    assert res.status is Status.OK, res.summary
    assert zone.queries == [Query("www.example.test.", "A", "tcp")]


async def test_truncated_udp_answer_is_retried_over_tcp(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="big.example.test", record_type="TXT"))
    assert res.status is Status.OK, res.summary
    assert metrics(res)["dns_answers"] == 40
    assert [q.protocol for q in zone.queries] == ["udp", "tcp"]


async def test_ipv6_server() -> None:
    needs(socket.has_ipv6, "IPv6 on loopback")
    async with serve_zone("::1") as server:
        res = await probe(dns_check(None, name="www.example.test", record_type="AAAA",
                                    server=f"[::1]:{server.port}"))
    assert res.status is Status.OK, res.summary
    assert res.details["server"] == f"[::1]:{server.port}"


# --- failures ---------------------------------------------------------------------------


async def test_unknown_name_is_nxdomain(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="nope.example.test"))
    assert (res.status, res.reason) == (Status.CRITICAL, "nxdomain")
    assert res.details["rcode"] == "NXDOMAIN"
    assert metrics(res)["dns_answers"] == 0


async def test_servfail(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="servfail.example.test"))
    assert (res.status, res.reason) == (Status.CRITICAL, "servfail")
    assert res.details["rcode"] == "SERVFAIL"
    assert len(zone.queries) == 1  # no retries that would hide a flapping server


async def test_refused_is_dns_error_with_its_rcode(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="refused.example.test"))
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_error")
    assert res.details["rcode"] == "REFUSED"
    assert "REFUSED" in res.summary


async def test_name_without_records_of_the_type_is_no_answer(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test", record_type="MX"))
    assert (res.status, res.reason) == (Status.CRITICAL, "no_answer")
    assert res.details["rcode"] == "NOERROR"
    assert zone.queries == [Query("www.example.test.", "MX", "udp")]


async def test_missing_expected_answer(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test",
                                expect=["192.0.2.10", "192.0.2.99"]))
    assert (res.status, res.reason) == (Status.CRITICAL, "answer_mismatch")
    assert "missing 192.0.2.99" in res.summary


async def test_expect_exact_rejects_extra_answers(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test", expect=["192.0.2.10"],
                                expect_exact=True))
    assert (res.status, res.reason) == (Status.CRITICAL, "answer_mismatch")
    assert "unexpected 192.0.2.11" in res.summary


async def test_silent_server_is_dns_timeout_before_the_runner_cuts(zone: ZoneServer) -> None:
    res = await run_check(dns_check(zone, name="silent.example.test", timeout=0.5), "agent-1")
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_timeout")
    assert 0.35 <= res.duration_s < 0.5
    assert zone.queries[0] == Query("silent.example.test.", "A", "udp")


async def test_closed_tcp_port_is_dns_error() -> None:
    check = dns_check(None, name="www.example.test", protocol="tcp",
                      server=f"127.0.0.1:{free_port()}")
    res = await probe(check)
    assert (res.status, res.reason) == (Status.CRITICAL, "dns_error")
    assert "refused" in res.summary.lower()


async def test_slow_lookup_threshold_warns(zone: ZoneServer) -> None:
    res = await probe(dns_check(zone, name="www.example.test", lookup_seconds={"warning": 0}))
    assert (res.status, res.reason) == (Status.WARNING, "slow_lookup")


# --- the system resolver, in network + mount namespaces ----------------------------------


@functools.cache
def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    done = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True,
                          check=False)
    return done.returncode == 0


def with_resolv_conf(resolv_conf: Path, check: dict[str, Any]) -> dict[str, Any]:
    """Serve the zone on 127.0.0.1:53 in a new network namespace and run the probe there
    with `resolv_conf` mounted over /etc/resolv.conf."""
    needs(_can_unshare(), "`unshare --net --mount` and `ip` (root, util-linux, iproute2)")
    runner = (
        "import asyncio, json, sys\n"
        "from tests.probes.test_dns import serve_zone\n"
        "from probes.dns import DnsCheck, probe\n"
        "async def main():\n"
        "    async with serve_zone('127.0.0.1', 53) as server:\n"
        "        res = await probe(DnsCheck.model_validate(json.loads(sys.argv[1])))\n"
        "    print(json.dumps({'result': res.model_dump(mode='json'),\n"
        "                      'queries': [q.__dict__ for q in server.queries]}))\n"
        "asyncio.run(main())\n")
    shell = (f"ip link set lo up && mount --bind {resolv_conf} /etc/resolv.conf"
             ' && exec "$0" -c "$1" "$2"')
    done = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", shell, sys.executable, runner,
         json.dumps(check)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_without_server_the_system_resolver_is_asked(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.test\nnameserver 127.0.0.1\n")
    out = with_resolv_conf(conf, {"id": "d", "kind": "dns", "name": "www.example.test"})
    assert (out["result"]["status"], out["result"]["reason"]) == ("ok", "ok")
    assert out["result"]["details"]["servers"] == ["127.0.0.1:53"]
    # the name is absolute: the search domain was not appended
    assert out["queries"] == [{"name": "www.example.test.", "rdtype": "A", "protocol": "udp"}]


def test_without_server_and_without_resolver_config_is_unknown(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# no nameserver\n")
    out = with_resolv_conf(conf, {"id": "d", "kind": "dns", "name": "www.example.test"})
    assert (out["result"]["status"], out["result"]["reason"]) == ("unknown", "dns_error")
    assert out["queries"] == []


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.53", ("10.0.0.53", 53)),
    ("10.0.0.53:5353", ("10.0.0.53", 5353)),
    ("fd00::53", ("fd00::53", 53)),
    ("[fd00::53]:5353", ("fd00::53", 5353)),
    ("[fd00::53]", ("fd00::53", 53)),
])
def test_parse_server(text: str, parsed: tuple[str, int]) -> None:
    assert parse_server(text) == parsed


@pytest.mark.parametrize(("fields", "message"), [
    ({"record_type": "AX"}, "unknown record type 'AX'"),
    ({"record_type": "AXFR"}, "meta type"),
    ({"server": "ns1.example.test:53"}, "must be an IP address"),
    ({"server": "10.0.0.53:99999"}, "port must be a number"),
    ({"expect": ["not-an-address"]}, "'not-an-address' is not a valid A record"),
    ({"expect_exact": True}, "expect_exact needs"),
])
def test_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DnsCheck.model_validate({"id": "d", "kind": "dns", "name": "www.example.test",
                                 **fields})


def test_target_names_query_and_server() -> None:
    check = dns_check(None, name="www.example.test", record_type="mx", server="10.0.0.53")
    assert check.record_type == "MX"
    assert check.target == "www.example.test MX @10.0.0.53"
