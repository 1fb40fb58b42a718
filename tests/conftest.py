"""Fixtures shared by every test package (see tests/services.py for the helpers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.services import Nginx, start_nginx, stop_process


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """Plain-HTTP nginx with a few fixed locations the probe tests use."""
    proc, server = start_nginx(tmp_path / "nginx", """
    location = /health { default_type application/json;
                         return 200 '{"status": "UP", "db": {"status": "UP", "latency_ms": 4}}'; }
    location = /down { default_type application/json; return 503 '{"status": "DOWN"}'; }
    location = /moved { return 301 /health; }
    location = /nginx_status { stub_status; }
    """)
    (server.root / "index.html").write_text("<html><body>wardwatch test page</body></html>")
    try:
        yield server
    finally:
        stop_process(proc)


@pytest.fixture
async def hung_port() -> AsyncIterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
