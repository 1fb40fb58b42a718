"""Real local services for tests, on loopback ports, and the one way to stop for a missing one.

`needs()` is the one place a test may stop for a missing service: in CI (CI=true) it fails the
test, because scripts/test installs everything the suite needs; on a developer's machine it
skips with the reason, so a partial machine can still run the rest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def needs(condition: bool, why: str) -> None:
    """Stop the test when a required local service or tool is missing (fail in CI)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test and missing in CI: {why}", pytrace=False)
    pytest.skip(f"missing locally: {why}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass(frozen=True)
class Nginx:
    port: int
    base_url: str
    root: Path
    prefix: Path


NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(prefix: Path, server_conf: str, *, tls: tuple[Path, Path] | None = None,
                http_conf: str = "", worker_connections: int = 1024
                ) -> tuple[subprocess.Popen[bytes], Nginx]:
    """Start Debian's nginx in the foreground on a free loopback port.

    `server_conf` is placed inside the `server { }` block, `http_conf` (upstream groups)
    before it; `root` serves files from prefix/html; the error log (level warn) is
    prefix/logs/error.log. With `tls=(cert, key)` the server speaks HTTPS.
    """
    needs(Path(NGINX_BIN).exists(), "nginx (Debian package nginx-light; scripts/test installs it)")
    port = free_port()
    html = prefix / "html"
    html.mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    tls_conf = f"ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};" if tls else ""
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  default_type application/octet-stream;
  {http_conf}
  server {{
    listen {listen};
    server_name localhost;
    root {html};
    {tls_conf}
    {server_conf}
  }}
}}
""")
    proc = subprocess.Popen([NGINX_BIN, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        _out, err = proc.communicate()
        raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}") from None
    scheme = "https" if tls else "http"
    return proc, Nginx(port=port, base_url=f"{scheme}://127.0.0.1:{port}", root=html,
                       prefix=prefix)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


POSTGRES_URL = os.environ.get("WARDWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def start_module(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m ARGS` (the agent or the collector) in its own process group, output to
    `log` (appended, so a restarted process keeps writing to the same file)."""
    import sys

    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send `sig` (SIGTERM by default; SIGKILL for a crash) to the process group and wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)
