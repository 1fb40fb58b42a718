"""DNS probe: ask `server` (or the resolvers of the agent's host) for `name` / `record_type`.

ok        NOERROR with at least one record of the type, every `expect` answer present (and no
          other one with `expect_exact`), lookup time below `lookup_seconds`
warning   lookup time >= `lookup_seconds.warning`
critical  NXDOMAIN, SERVFAIL, an empty answer, answers other than expected, no answer within
          the probe's lifetime, any other failure of the server (REFUSED, a closed port, a
          malformed reply), lookup time >= `lookup_seconds.critical`
unknown   no `server` given and the agent's host has no resolver configuration
Reason codes: ok, nxdomain, servfail, no_answer, answer_mismatch, dns_timeout, dns_error,
slow_lookup.

`name` is always taken as absolute (no search domains): a monitored name should not depend on
the agent host's resolv.conf. For `record_type: PTR` an IP address is turned into its reverse
name. Expected answers are written in the record type's presentation format (`192.0.2.1`,
`10 mail.example.org`, `0 5 389 dc1.example.org`; names are absolute) and compared as DNS data
(case-insensitive names, canonical IPv6); TXT answers are compared as their text with the
character strings joined.

The probe gives up a little before the check's timeout (`dns_timeout`), so a silent server is
reported with what was tried rather than cut by the runner. UDP queries are retransmitted
within that lifetime as any stub resolver does, and a truncated answer is retried over TCP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import time
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.txtbase
import dns.resolver
import dns.reversename
from pydantic import Field, field_validator, model_validator

from probes.config import CheckConfig, Threshold
from probes.result import Metric, ProbeResult, Status, result

KIND = "dns"

METRICS = {
    "dns_lookup_seconds": "Time from the query until the answer (including retransmissions).",
    "dns_answers": "Number of records of the asked type in the answer.",
}

_TEXT_TYPES = {dns.rdatatype.TXT, dns.rdatatype.SPF}
_ATTEMPT_SECONDS = 2.0  # per query attempt: dnspython's default
_SUMMARY_ANSWERS = 5


class DnsCheck(CheckConfig):
    kind: Literal["dns"]
    name: str = Field(min_length=1)
    record_type: str = "A"
    server: str | None = None
    """`IP`, `IP:port` or `[IPv6]:port`; without it, the agent host's resolver configuration."""
    protocol: Literal["udp", "tcp"] = "udp"
    expect: tuple[str, ...] = ()
    """Answers that must all be present."""
    expect_exact: bool = False
    """The answer must be exactly `expect`, nothing more."""
    lookup_seconds: Threshold = Threshold()

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        try:
            rdtype = dns.rdatatype.from_text(value.strip().upper())
        except dns.exception.DNSException:
            raise ValueError(f"unknown record type {value!r}") from None
        if dns.rdatatype.is_metatype(rdtype):
            raise ValueError(f"{value!r} is a meta type, not a record type to look up")
        return dns.rdatatype.to_text(rdtype)

    @field_validator("server")
    @classmethod
    def _server_address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_server(value)
        return value

    @model_validator(mode="after")
    def _valid_name_and_answers(self) -> DnsCheck:
        try:
            query_name(self.name, self.rdtype)
        except dns.exception.DNSException as exc:
            raise ValueError(f"name {self.name!r} is not a valid DNS name: {exc}") from None
        for answer in self.expect:
            try:
                expected_key(self.rdtype, answer)
            except dns.exception.DNSException as exc:
                raise ValueError(
                    f"expected answer {answer!r} is not a valid {self.record_type} record: {exc}"
                ) from None
        if self.expect_exact and not self.expect:
            raise ValueError("expect_exact needs the answers in `expect`")
        return self

    @property
    def rdtype(self) -> dns.rdatatype.RdataType:
        return dns.rdatatype.from_text(self.record_type)

    @property
    def target(self) -> str:
        at = f" @{self.server}" if self.server else ""
        return f"{self.name} {self.record_type}{at}"


CONFIG = DnsCheck


def parse_server(text: str) -> tuple[str, int]:
    """`10.0.0.53`, `10.0.0.53:5353`, `fd00::53` or `[fd00::53]:5353` -> (address, port)."""
    host, port = text.strip(), 53
    if host.startswith("["):
        host, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"server {text!r}: write an IPv6 address with a port as [addr]:port")
        if rest:
            port = _port(text, rest[1:])
    elif host.count(":") == 1:
        host, _, rest = host.partition(":")
        port = _port(text, rest)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"server {text!r} must be an IP address with an optional port, e.g. 10.0.0.53, "
            "10.0.0.53:5353 or [fd00::53]:53") from None
    return str(address), port


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"server {text!r}: port must be a number from 1 to 65535")
    return int(value)


def query_name(name: str, rdtype: dns.rdatatype.RdataType) -> dns.name.Name:
    """The absolute name to ask for; an IP address for PTR becomes its reverse name."""
    if rdtype == dns.rdatatype.PTR:
        try:
            return dns.reversename.from_address(name)
        except (ValueError, dns.exception.SyntaxError):
            pass
    return dns.name.from_text(name, origin=dns.name.root)


def expected_key(rdtype: dns.rdatatype.RdataType, text: str) -> object:
    """What an expected answer is compared by (see `answer_key`)."""
    if rdtype in _TEXT_TYPES:
        return text.encode()
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root,
                               relativize=False)


def answer_key(rdata: dns.rdata.Rdata) -> object:
    """Rdata compare as DNS data (names case-insensitively); TXT by its joined text."""
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return b"".join(rdata.strings)
    return rdata


def answer_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.txtbase.TXTBase):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return str(rdata.to_text())


def lifetime(timeout: float) -> float:
    """The probe's own deadline: a little before the runner's, so its own report wins."""
    return timeout - min(0.25, timeout * 0.2)


async def probe(check: DnsCheck) -> ProbeResult:
    qname = query_name(check.name, check.rdtype)
    limit = lifetime(check.timeout)
    try:
        resolver = _resolver(check, limit)
    except dns.resolver.NoResolverConfiguration as exc:
        return result(Status.UNKNOWN, "dns_error",
                      f"no server given and this host has no resolver configuration: {exc}")
    servers = [_endpoint(str(ns), resolver.port) for ns in resolver.nameservers]
    asked = f"{qname} {check.record_type}"
    details: dict[str, Any] = {"query": asked, "servers": servers, "protocol": check.protocol}

    started = time.perf_counter()
    try:
        # dnspython's lifetime is not checked during its back-off between retransmissions,
        # so the limit is also enforced here.
        async with asyncio.timeout(limit):
            answer = await resolver.resolve(qname, check.rdtype, tcp=check.protocol == "tcp",
                                            raise_on_no_answer=False, lifetime=limit)
    except dns.resolver.NXDOMAIN as exc:
        elapsed = time.perf_counter() - started
        return result(Status.CRITICAL, "nxdomain", f"{asked}: no such name (NXDOMAIN)",
                      metrics=_metrics(elapsed, 0),
                      details={**details, "rcode": "NXDOMAIN",
                               "canonical_name": str(exc.canonical_name)})
    except (TimeoutError, dns.resolver.LifetimeTimeout):
        return result(Status.CRITICAL, "dns_timeout",
                      f"{asked}: no answer from {', '.join(servers)} within {limit:.3g}s",
                      details=details)
    except dns.resolver.NoNameservers as exc:
        elapsed = time.perf_counter() - started
        return _server_failure(asked, elapsed, details, exc.kwargs.get("errors", []))
    except dns.exception.DNSException as exc:
        return result(Status.CRITICAL, "dns_error", f"{asked}: {exc}", details=details)
    elapsed = time.perf_counter() - started

    records = list(answer.rrset) if answer.rrset is not None else []
    texts = [answer_text(rdata) for rdata in records]
    details.update(rcode=dns.rcode.to_text(answer.response.rcode()),
                   server=_endpoint(str(answer.nameserver), answer.port or 53),
                   answers=texts,
                   canonical_name=str(answer.canonical_name))
    if answer.rrset is not None:
        details["ttl"] = answer.rrset.ttl
    metrics = _metrics(elapsed, len(records))
    took = f"in {elapsed * 1000:.1f} ms"

    if not records:
        return result(Status.CRITICAL, "no_answer",
                      f"{asked}: no {check.record_type} record (NOERROR, empty answer) {took}",
                      metrics=metrics, details=details)
    mismatch = _mismatch(check, records)
    if mismatch:
        return result(Status.CRITICAL, "answer_mismatch",
                      f"{asked}: {mismatch}; got {_shortlist(texts)}",
                      metrics=metrics, details=details)
    summary = f"{asked}: {_shortlist(texts)} {took}"
    level = check.lookup_seconds.evaluate(elapsed)
    if level is not Status.OK:
        return result(level, "slow_lookup", summary + " (slow)", metrics=metrics,
                      details=details)
    return result(Status.OK, "ok", summary, metrics=metrics, details=details)


def _resolver(check: DnsCheck, limit: float) -> dns.asyncresolver.Resolver:
    if check.server is None:
        resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf, or the registry on Windows
    else:
        address, port = parse_server(check.server)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
    resolver.cache = None  # each run asks the server
    resolver.lifetime = limit
    resolver.timeout = min(resolver.timeout, _ATTEMPT_SECONDS, limit)
    return resolver


def _mismatch(check: DnsCheck, records: list[dns.rdata.Rdata]) -> str:
    """What is wrong with the answers against `expect`; empty when they fit."""
    if not check.expect:
        return ""
    expected = {expected_key(check.rdtype, text): text for text in check.expect}
    got = {answer_key(rdata): answer_text(rdata) for rdata in records}
    problems = []
    missing = [text for key, text in expected.items() if key not in got]
    if missing:
        problems.append(f"missing {_shortlist(missing)}")
    if check.expect_exact:
        extra = [text for key, text in got.items() if key not in expected]
        if extra:
            problems.append(f"unexpected {_shortlist(extra)}")
    return ", ".join(problems)


def _server_failure(asked: str, elapsed: float, details: dict[str, Any],
                    errors: list[Any]) -> ProbeResult:
    """Every server failed: SERVFAIL if one said so, else the first other failure."""
    rcodes = [error[4].rcode() for error in errors
              if len(error) > 4 and isinstance(error[4], dns.message.Message)]
    details = {**details, "errors": _errors(errors)}
    if dns.rcode.SERVFAIL in rcodes:
        return result(Status.CRITICAL, "servfail", f"{asked}: server failure (SERVFAIL)",
                      metrics=_metrics(elapsed, 0), details={**details, "rcode": "SERVFAIL"})
    if rcodes:
        rcode = dns.rcode.to_text(rcodes[0])
        return result(Status.CRITICAL, "dns_error", f"{asked}: the server answered {rcode}",
                      metrics=_metrics(elapsed, 0), details={**details, "rcode": rcode})
    first = details["errors"][0] if details["errors"] else "no server could be asked"
    return result(Status.CRITICAL, "dns_error", f"{asked}: {first}", details=details)


def _errors(errors: list[Any]) -> list[str]:
    """dnspython's (server, tcp, port, error, response) tuples as lines for people."""
    lines = []
    for error in errors:
        server, tcp, port, problem = str(error[0]), error[1], error[2], error[3]
        if isinstance(problem, OSError) and problem.errno:
            problem = os.strerror(problem.errno)  # not asyncio's "Connect call failed (...)"
        # dnspython names a server "Do53:ADDRESS@PORT"
        match = re.fullmatch(r"\w+:(.+)@\d+", server)
        lines.append(f"{_endpoint(match.group(1) if match else server, port)} "
                     f"({'tcp' if tcp else 'udp'}): {problem}")
    return lines


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _metrics(elapsed: float, answers: int) -> tuple[Metric, ...]:
    return (Metric(name="dns_lookup_seconds", value=elapsed),
            Metric(name="dns_answers", value=answers))


def _shortlist(items: list[str]) -> str:
    shown = ", ".join(items[:_SUMMARY_ANSWERS])
    more = len(items) - _SUMMARY_ANSWERS
    return f"{shown} and {more} more" if more > 0 else shown
