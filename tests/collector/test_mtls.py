"""Mutual TLS between agent and collector, over real TLS on loopback.

A real collector app (SQLite store) serves HTTPS with the context `collector.tls` builds for
`wardwatch-collector run`; the agent side is the real `Pusher` or an aiohttp client with its
own context. Certificates come from two trustme CAs: one signs the collector's server
certificate (the agents' `ca_file`), the other the agents' client certificates (the
collector's `client_ca_file`); a third, unrelated CA plays a certificate the collector must
not accept. Every wait is bounded (`asyncio.timeout`, client timeouts).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from agent.config import CollectorSection, parse_agent_config
from agent.push import Pusher
from agent.spool import Spool
from collector.app import STORE_KEY, create_app
from collector.config import parse_collector_config
from collector.store import Store, utcnow
from collector.tls import client_cert_refusal, server_context
from probes.config import ConfigError
from probes.result import CheckResult, Status

AGENT, OTHER = "emr-app-01", "emr-app-02"
MiB = 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    server_ca: Path
    """Signs the collector's certificate: the agents' `collector.ca_file`."""
    server: Pair
    agents_ca: Path
    """Signs the agents' client certificates: the collector's `tls.client_ca_file`."""
    agents: dict[str, Pair]
    """Client certificates by agent id (subject CN = the id)."""
    foreign: Pair
    """CN=emr-app-01, but signed by a CA the collector does not know."""
    san_only: Pair
    """Signed by the agents' CA, with the agent id only as a DNS SAN (no CN)."""


def _write(leaf: trustme.LeafCert, directory: Path, name: str) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    leaf.cert_chain_pems[0].write_to_path(str(pair.cert))
    leaf.private_key_pem.write_to_path(str(pair.key))
    return pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    server_ca = trustme.CA(organization_name="wardwatch test server CA")
    agents_ca = trustme.CA(organization_name="wardwatch test agents CA")
    stranger = trustme.CA(organization_name="somebody else's CA")
    server_ca.cert_pem.write_to_path(str(d / "server-ca.pem"))
    agents_ca.cert_pem.write_to_path(str(d / "agents-ca.pem"))
    return Pki(
        server_ca=d / "server-ca.pem",
        server=_write(server_ca.issue_cert("127.0.0.1"), d, "collector"),
        agents_ca=d / "agents-ca.pem",
        # the host name as SAN, as a hospital CA would issue it; the CN carries the agent id
        agents={agent: _write(agents_ca.issue_cert(f"{agent}.hospital.local",
                                                   common_name=agent), d, agent)
                for agent in (AGENT, OTHER)},
        foreign=_write(stranger.issue_cert(f"{AGENT}.hospital.local", common_name=AGENT),
                       d, "foreign"),
        san_only=_write(agents_ca.issue_cert(AGENT), d, "san-only"),
    )


@dataclass
class Collector:
    url: str
    store: Store
    tokens: dict[str, str]
    client_ssl: ssl.SSLContext
    """A context this collector lets in (the first agent's certificate)."""

    async def rejected(self, reason: str) -> float:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.client_ssl), timeout=TIMEOUT
        ) as session, session.get(self.url + "/metrics") as resp:
            text = await resp.text()
        line = f'wardwatch_collector_batches_rejected_total{{reason="{reason}"}} '
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)),
                    0.0)


@asynccontextmanager
async def running(pki: Pki, tmp_path: Path, **tls: Any) -> AsyncIterator[Collector]:
    """A collector on 127.0.0.1 (port 0) with `agents_ca` as client CA and both agents
    enrolled; `tls` overrides keys of the tls section."""
    config = parse_collector_config({
        "store": f"sqlite:///{tmp_path}/collector.db",
        "tls": {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key),
                "client_ca_file": str(pki.agents_ca), **tls},
    })
    assert config.tls is not None
    context = await asyncio.to_thread(server_context, config.tls)  # as `serve` does
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        store = app[STORE_KEY]
        tokens = {agent: await store.add_agent(agent, utcnow()) for agent in (AGENT, OTHER)}
        yield Collector(f"https://127.0.0.1:{runner.addresses[0][1]}", store, tokens,
                        client_context(pki, pki.agents[AGENT]))
    finally:
        await runner.cleanup()


@pytest.fixture
async def collector(pki: Pki, tmp_path: Path) -> AsyncIterator[Collector]:
    async with running(pki, tmp_path) as started:
        yield started


def client_context(pki: Pki, pair: Pair | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.server_ca)
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def result(agent: str, n: int = 0) -> CheckResult:
    return CheckResult(agent_id=agent, check_id="web", kind="http", system="EMR",
                       status=Status.OK, reason="ok",
                       started_at=datetime.now(UTC) - timedelta(seconds=60 - n),
                       duration_s=0.01, summary="ok")


async def push(collector: Collector, context: ssl.SSLContext, token_of: str,
               agent: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST one result as `agent` with `token_of`'s token: (status, body)."""
    agent = agent or token_of
    body = {"agent_id": agent, "results": [result(agent).model_dump(mode="json")]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                     timeout=TIMEOUT) as session, session.post(
            collector.url + "/api/v1/results", json=body,
            headers={"Authorization": f"Bearer {collector.tokens[token_of]}"}) as resp:
        return resp.status, await resp.json()


async def get(url: str, context: ssl.SSLContext) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                     timeout=TIMEOUT) as session, session.get(
            url, allow_redirects=False) as resp:
        await resp.read()
        return resp.status


async def poll(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for the pusher's own bookkeeping (no peer can signal it), every 10 ms."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (nothing to await: see the docstring)
            await asyncio.sleep(0.01)


@pytest.fixture
async def pushers() -> AsyncIterator[list[tuple[Pusher, Spool]]]:
    made: list[tuple[Pusher, Spool]] = []
    yield made
    for pusher, spool in made:
        await pusher.stop()   # a no-op for those the test stopped
        spool.close()


def make_pusher(collector: Collector, pki: Pki, tmp_path: Path, made: list[tuple[Pusher, Spool]],
                pair: Pair | None, agent: str = AGENT) -> Pusher:
    token_file = tmp_path / f"{agent}-{len(made)}.token"
    token_file.write_text(collector.tokens[agent] + "\n")
    section = CollectorSection.model_validate({
        "url": collector.url, "token_file": token_file, "ca_file": pki.server_ca,
        "push_interval": 0.05,
        **({"cert_file": pair.cert, "key_file": pair.key} if pair else {})})
    spool = Spool(tmp_path / f"spool-{len(made)}", MiB)
    pusher = Pusher(section, agent, spool, backoff=(0.01, 0.05), request_timeout=3.0,
                    stop_deadline=2.0)
    made.append((pusher, spool))
    return pusher


# -- the agent pushes with its certificate -----------------------------------------------------

async def test_the_agent_with_its_certificate_delivers(
        collector: Collector, pki: Pki, tmp_path: Path,
        pushers: list[tuple[Pusher, Spool]]) -> None:
    pusher = make_pusher(collector, pki, tmp_path, pushers, pki.agents[AGENT])
    for n in range(5):
        pusher.add(result(AGENT, n))
    await pusher.start()
    try:
        await poll(lambda: pusher.snapshot().results_pushed_total >= 5)
    finally:
        await pusher.stop()
    assert await collector.store.count_results() == 5
    snap = pusher.snapshot()
    assert sum(snap.failures_total.values()) == 0 and snap.spool_pending_results == 0


async def test_the_agent_process_presents_the_certificate_from_its_config(
        collector: Collector, pki: Pki, tmp_path: Path,
        pushers: list[tuple[Pusher, Spool]]) -> None:
    """The agent's own config file path: agent.yaml's collector section → Pusher."""
    token_file = tmp_path / "agent.token"
    token_file.write_text(collector.tokens[AGENT])
    config = parse_agent_config({
        "agent": {"id": AGENT, "state_dir": str(tmp_path)},
        "collector": {"url": collector.url, "token_file": str(token_file),
                      "ca_file": str(pki.server_ca), "push_interval": "0.05s",
                      "cert_file": str(pki.agents[AGENT].cert),
                      "key_file": str(pki.agents[AGENT].key)},
    })
    assert config.collector is not None
    spool = Spool(tmp_path / "spool", MiB)
    pushers.append((pusher := Pusher(config.collector, AGENT, spool, backoff=(0.01, 0.05)),
                    spool))
    pusher.add(result(AGENT))
    await pusher.start()
    try:
        await poll(lambda: pusher.snapshot().results_pushed_total >= 1)
    finally:
        await pusher.stop()
    assert await collector.store.count_results() == 1


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_the_certificate_is_seen_with_tls_1_3_and_1_2(
        collector: Collector, pki: Pki, version: ssl.TLSVersion) -> None:
    # asked for in the handshake (CERT_OPTIONAL), so TLS 1.3 needs no post-handshake auth
    # (the client allows only `version`, so a reply means the connection used it)
    status, body = await push(collector, client_context(pki, pki.agents[AGENT], version), AGENT)
    assert (status, body) == (200, {"accepted": 1, "duplicates": 0})


# -- refusals ----------------------------------------------------------------------------------

async def test_without_a_certificate_ingest_is_refused_but_the_ui_works(
        collector: Collector, pki: Pki, tmp_path: Path,
        pushers: list[tuple[Pusher, Spool]]) -> None:
    browser = client_context(pki)  # trusts the collector, has no client certificate
    for path in ("/healthz", "/login", "/api/v1/systems"):
        assert await get(collector.url + path, browser) == 200, path
    status, body = await push(collector, browser, AGENT)
    assert status == 403
    assert "needs a client certificate for agent emr-app-01" in body["error"]
    assert "collector.cert_file" in body["error"]
    assert await collector.rejected("client_cert") == 1
    # the real agent without cert_file: refused on every round, nothing stored or dropped
    pusher = make_pusher(collector, pki, tmp_path, pushers, None)
    pusher.add(result(AGENT))
    await pusher.start()
    try:
        await poll(lambda: pusher.snapshot().failures_total["unauthorized"] >= 1)
    finally:
        await pusher.stop()
    assert pusher.snapshot().spool_pending_results == 1
    assert await collector.store.count_results() == 0


async def test_another_agents_certificate_is_refused(collector: Collector, pki: Pki) -> None:
    status, body = await push(collector, client_context(pki, pki.agents[OTHER]), AGENT)
    assert status == 403
    assert "(CN=emr-app-02) is not agent emr-app-01's" in body["error"]
    # its own certificate with the other agent's id in the batch: the token rule refuses it
    status, body = await push(collector, client_context(pki, pki.agents[AGENT]), AGENT,
                                 agent=OTHER)
    assert (status, body["error"]) == (403, "this token belongs to agent emr-app-01")
    assert await collector.rejected("client_cert") == 1
    assert await collector.store.count_results() == 0


async def test_the_rule_is_the_subject_cn_not_a_san(collector: Collector, pki: Pki) -> None:
    status, body = await push(collector, client_context(pki, pki.san_only), AGENT)
    assert status == 403 and "(no CN)" in body["error"]


async def test_a_certificate_from_another_ca_fails_the_handshake(
        collector: Collector, pki: Pki, tmp_path: Path,
        pushers: list[tuple[Pusher, Spool]]) -> None:
    """CERT_OPTIONAL lets a client send no certificate, but one that is sent must verify:
    the server's handshake fails and asyncio drops the connection (a reset, the alert is
    usually lost), so no HTTP request is read and nothing reaches the app. With TLS 1.2 the
    client's handshake fails (while connecting); with TLS 1.3 the client has finished its
    side before the server checks, so it learns it when it sends the request."""
    with pytest.raises(aiohttp.ClientConnectorError):
        await push(collector, client_context(pki, pki.foreign, ssl.TLSVersion.TLSv1_2), AGENT)
    with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        await push(collector, client_context(pki, pki.foreign, ssl.TLSVersion.TLSv1_3), AGENT)
    pusher = make_pusher(collector, pki, tmp_path, pushers, pki.foreign)
    pusher.add(result(AGENT))
    await pusher.start()
    try:
        await poll(lambda: sum(pusher.snapshot().failures_total.values()) >= 1)
    finally:
        await pusher.stop()
    failures = pusher.snapshot().failures_total
    # in practice a reset ("connection"): asyncio aborts the connection before the alert is
    # sent (docs/security.md); "tls" would be the alert arriving first
    assert failures["connection"] + failures["tls"] >= 1, failures
    assert await collector.store.count_results() == 0
    assert await collector.rejected("client_cert") == 0   # never reached the app


async def test_required_refuses_clients_without_a_certificate_at_the_handshake(
        pki: Pki, tmp_path: Path) -> None:
    async with running(pki, tmp_path, client_certs="required") as collector:
        with pytest.raises(aiohttp.ClientError):
            await get(collector.url + "/healthz", client_context(pki))
        assert await get(collector.url + "/healthz", client_context(pki, pki.agents[OTHER])
                         ) == 200
        status, _ = await push(collector, client_context(pki, pki.agents[AGENT]), AGENT)
        assert status == 200
        # required at the handshake does not relax the CN rule
        status, _ = await push(collector, client_context(pki, pki.agents[OTHER]), AGENT)
        assert status == 403


async def test_without_client_ca_file_no_certificate_is_asked(pki: Pki, tmp_path: Path) -> None:
    config = parse_collector_config({"tls": {"cert_file": str(pki.server.cert),
                                             "key_file": str(pki.server.key)}})
    assert config.tls is not None
    context = server_context(config.tls)
    assert context.verify_mode == ssl.CERT_NONE
    assert client_cert_refusal(config.tls, None, AGENT) is None


def test_only_the_client_ca_is_trusted_for_client_certificates(pki: Pki) -> None:
    config = parse_collector_config({"tls": {
        "cert_file": str(pki.server.cert), "key_file": str(pki.server.key),
        "client_ca_file": str(pki.agents_ca)}})
    assert config.tls is not None and config.tls.client_certs == "optional"
    context = server_context(config.tls)
    assert context.verify_mode == ssl.CERT_OPTIONAL
    # the system store is not loaded: a public CA's certificate with a matching CN fails
    subjects = [ca["subject"] for ca in context.get_ca_certs()]
    assert len(subjects) == 1
    assert (("organizationName", "wardwatch test agents CA"),) in subjects[0]


# -- config validation -------------------------------------------------------------------------

def _collector_error(pki: Pki, **tls: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_collector_config({"tls": {"cert_file": str(pki.server.cert),
                                        "key_file": str(pki.server.key), **tls}},
                               "collector.yaml")
    return str(info.value)


def test_collector_config_errors_name_the_path(pki: Pki, tmp_path: Path) -> None:
    assert "tls.client_certs: client certificates need tls.client_ca_file" in _collector_error(
        pki, client_certs="required")
    assert "tls.client_certs: Input should be 'optional' or 'required'" in _collector_error(
        pki, client_ca_file=str(pki.agents_ca), client_certs="yes")
    error = _collector_error(pki, client_ca_file=str(tmp_path / "missing.pem"),
                             client_certs="required")
    assert "tls.client_ca_file: cannot read" in error and "client_certs" not in error
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert "tls.client_ca_file: " + f"{junk} holds no PEM certificate" in _collector_error(
        pki, client_ca_file=str(junk))
    assert "holds no CA certificate" in _collector_error(pki, client_ca_file=str(
        pki.agents[AGENT].cert))
    error = _collector_error(pki, key_file=str(pki.agents[AGENT].key))
    assert "tls: key_file" in error and "is not the key of cert_file" in error
    assert "BEGIN" not in error   # no key material in messages


def _agent_error(collector: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_agent_config({"agent": {"id": AGENT}, "collector": {
            "url": "https://collector.hospital.local:9800", **collector}}, "agent.yaml")
    return str(info.value)


def test_agent_config_errors_name_the_path(pki: Pki, tmp_path: Path) -> None:
    pair = pki.agents[AGENT]
    assert "collector: cert_file and key_file go together" in _agent_error(
        {"cert_file": str(pair.cert)})
    assert "collector: cert_file and key_file go together" in _agent_error(
        {"key_file": str(pair.key)})
    assert f"collector.cert_file: cannot read {tmp_path}/nope.crt" in _agent_error(
        {"cert_file": str(tmp_path / "nope.crt"), "key_file": str(pair.key)})
    assert "collector.key_file: cannot read" in _agent_error(
        {"cert_file": str(pair.cert), "key_file": str(tmp_path)})
    error = _agent_error({"cert_file": str(pair.cert), "key_file": str(pki.foreign.key)})
    assert "collector: key_file" in error and "is not the key of cert_file" in error
    assert "BEGIN" not in error
    assert "do not load: not PEM, or an encrypted key" in _agent_error(
        {"cert_file": str(pair.key), "key_file": str(pair.key)})
    with pytest.raises(ConfigError, match="need an https:// url"):
        parse_agent_config({"agent": {"id": AGENT}, "collector": {
            "url": "http://127.0.0.1:9800", "cert_file": str(pair.cert),
            "key_file": str(pair.key)}}, "agent.yaml")


def test_an_encrypted_key_is_an_error_not_a_prompt(pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = pki.agents[AGENT]
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    assert "an encrypted key (keys must be unencrypted" in _agent_error(
        {"cert_file": str(pair.cert), "key_file": str(encrypted)})
