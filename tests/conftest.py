"""Fixtures shared by every test package (see tests/services.py for the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
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
