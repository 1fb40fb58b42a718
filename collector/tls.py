"""TLS on the collector's port: the server context, and the agent identity that mutual TLS
adds to a push (docs/security.md "Agent → collector: mutual TLS").

With `tls.client_ca_file` the handshake asks every client for a certificate signed by that CA.
The port also serves the web UI to browsers, which have none, so by default a certificate is
optional at the TLS layer (`CERT_OPTIONAL`: a certificate that is sent must verify, or the
handshake fails) and `POST /api/v1/results` enforces it: the verified certificate's subject
CN must be the agent id of the bearer token. `client_certs: required` makes the handshake
itself refuse clients without one. The certificate is asked for in the handshake, so TLS 1.3
needs no post-handshake authentication.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from collector.config import CollectorTls


def server_context(tls: CollectorTls) -> ssl.SSLContext:
    """The collector's TLS context (blocking: it reads the files; call it off the loop)."""
    # With cafile, only the client CA is trusted for client certificates: the system store is
    # never loaded for them (a public CA's certificate with a matching CN must not pass).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.client_ca_file)
    context.load_cert_chain(tls.cert_file, tls.key_file, password="")
    if tls.client_ca_file is not None:
        context.verify_mode = (ssl.CERT_REQUIRED if tls.client_certs == "required"
                               else ssl.CERT_OPTIONAL)
    return context


def common_names(peercert: dict[str, Any]) -> list[str]:
    """The subject CNs of a certificate as `SSLSocket.getpeercert()` decodes it."""
    return [value for rdn in peercert.get("subject", ()) for key, value in rdn
            if key == "commonName"]


def client_cert_refusal(tls: CollectorTls | None, transport: asyncio.BaseTransport | None,
                        agent_id: str) -> str | None:
    """Why this connection may not push results for `agent_id`, or None when it may.

    Only with `tls.client_ca_file`: the connection must carry a verified client certificate
    with exactly one subject CN, equal to `agent_id`. `peercert` is empty unless OpenSSL
    verified the certificate against that CA, so a present dict is a verified one.
    """
    if tls is None or tls.client_ca_file is None:
        return None
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    if not peercert:
        return (f"this collector needs a client certificate for agent {agent_id} (subject "
                f"CN={agent_id}, signed by the agents' CA): set collector.cert_file and "
                "collector.key_file in the agent's config")
    names = common_names(peercert)
    if names != [agent_id]:
        shown = ", ".join(f"CN={name}" for name in names) or "no CN"
        return (f"the client certificate ({shown}) is not agent {agent_id}'s, whose token "
                f"this is: each agent presents its own certificate (CN = its agent id)")
    return None
