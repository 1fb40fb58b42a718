"""The offline bundle (issue 9, item 3): built for this machine, installed with pip unable to
reach any index, the agent run from it, re-installed, uninstalled and purged.

Building needs PyPI (`pip download`); the wheels are cached under .cache/wheelhouse keyed by
the pinned requirements, so a second run only re-resolves. The install runs with
PIP_NO_INDEX=1, every index and proxy pointed at a closed loopback port and the host's pip
configuration ignored, so any attempt to fetch a package fails the install.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port, needs

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "bundle" / "build.py"
CLOSED = "http://127.0.0.1:9"   # discard port, nothing listens: any network attempt fails
TOKEN = "enrol-test-7f3a9c1e"


def pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k.lower() not in {"http_proxy", "https_proxy",
                                                              "all_proxy", "no_proxy"}}
    env.update({"PIP_NO_INDEX": "1", "PIP_INDEX_URL": f"{CLOSED}/simple",
                "PIP_PROXY": CLOSED, "http_proxy": CLOSED, "https_proxy": CLOSED,
                "HTTP_PROXY": CLOSED, "HTTPS_PROXY": CLOSED, "PIP_RETRIES": "0",
                "PIP_TIMEOUT": "2"})
    return env


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    needs(pypi_reachable(), "network to PyPI (pypi.org:443) for pip download")
    out = tmp_path_factory.mktemp("bundles")
    proc = subprocess.run([sys.executable, str(BUILD), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    archive = Path(report["archive"])
    assert archive.name.endswith("-linux-x86_64.tar.gz") or "aarch64" in archive.name
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(archive) as tf:
        tf.extractall(unpacked, filter="data")
    [top] = list(unpacked.iterdir())
    return top


def test_bundle_manifest_lists_every_file_with_its_sha256(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / "MANIFEST.json").read_text())
    files = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"MANIFEST.json", "SHA256SUMS"}
    for rel, meta in manifest["files"].items():
        assert sha256(bundle_dir / rel) == meta["sha256"], rel
    # every wheel is pinned by exact version and hash, wardwatch included
    requirements = (bundle_dir / "requirements.txt").read_text().replace("\\\n", " ")
    pins = re.findall(r"^(\S+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", requirements, re.M)
    wheel_hashes = {sha256(w) for w in (bundle_dir / "wheels").glob("*.whl")}
    assert {h for _n, _v, h in pins} == wheel_hashes
    names = {n.lower() for n, _v, _h in pins}
    assert {"wardwatch", "aiohttp", "pydantic", "psutil", "prometheus_client"} <= names
    assert manifest["version"] in {v for n, v, _h in pins if n == "wardwatch"}
    assert (bundle_dir / "config" / "agent.sample.yaml").is_file()
    assert os.access(bundle_dir / "install.sh", os.X_OK)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[dict[str, Path]]:
    paths = {"prefix": tmp_path / "opt" / "wardwatch", "config": tmp_path / "etc" / "wardwatch",
             "state": tmp_path / "var" / "lib" / "wardwatch", "token": tmp_path / "token"}
    paths["token"].write_text(TOKEN + "\n")
    yield paths


def install(bundle_dir: Path, layout: dict[str, Path], *extra: str
            ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(bundle_dir / "install.sh"), "--prefix", str(layout["prefix"]),
         "--config-dir", str(layout["config"]), "--state-dir", str(layout["state"]),
         "--no-user", "--no-service", *extra],
        capture_output=True, text=True, timeout=900, env=offline_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    return proc


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:   # loopback only
        return response.status, response.read().decode()


def metrics_with_host_check(url: str, proc: subprocess.Popen[bytes]) -> str:
    """/metrics once the first host check has run (bounded wait, no timed assertion)."""
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status, body = get(url)
            if status == 200 and 'wardwatch_check_up{check="host"' in body:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no host check on {url} (agent exit {proc.poll()}); last: {body[:500]}")


def test_offline_install_run_upgrade_uninstall_purge(bundle_dir: Path,
                                                     layout: dict[str, Path]) -> None:
    first = install(bundle_dir, layout, "--token-file", str(layout["token"]),
                    "--collector-url", "http://127.0.0.1:9", "--system", "HIS")
    assert "service: skipped (--no-service)" in first.stdout
    prefix, config_dir, state = layout["prefix"], layout["config"], layout["state"]
    agent = prefix / "bin" / "wardwatch-agent"
    config = config_dir / "agent.yaml"
    token = config_dir / "agent.token"
    assert token.read_text().strip() == TOKEN
    assert stat.S_IMODE(token.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    text = config.read_text()
    assert f"state_dir: {state}" in text and f"token_file: {token}" in text
    assert "system: HIS" in text

    # the installed venv holds exactly the bundle's pins, wardwatch from the bundle's wheel
    venv_python = prefix / "venv" / "bin" / "python"
    listed = subprocess.run([str(venv_python), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True, env=offline_env())
    installed = {p["name"].lower().replace("_", "-"): p["version"]
                 for p in json.loads(listed.stdout)}
    manifest = json.loads((bundle_dir / "MANIFEST.json").read_text())
    for package in manifest["packages"]:
        assert installed[package["name"].lower().replace("_", "-")] == package["version"]
    assert installed["wardwatch"] == manifest["version"]

    validate = subprocess.run([str(agent), "validate", "--config", str(config)],
                              capture_output=True, text=True, timeout=60)
    assert validate.returncode == 0, validate.stderr
    assert "1 checks" in validate.stdout
    check = subprocess.run([str(agent), "check", "--config", str(config), "--json"],
                           capture_output=True, text=True, timeout=120)
    [result] = json.loads(check.stdout)
    assert (result["check_id"], result["kind"], result["system"]) == ("host", "host", "HIS")
    assert check.returncode == {"ok": 0, "warning": 1, "critical": 2,
                                "unknown": 3}[result["status"]]

    # a port of our own, then run the daemon from the installed venv and scrape it
    port = free_port()
    config.write_text(re.sub(r"listen: 127\.0\.0\.1:\d+", f"listen: 127.0.0.1:{port}", text))
    edited = sha256(config)
    log = (layout["prefix"].parent / "agent.log").open("wb")
    proc = subprocess.Popen([str(agent), "run", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = metrics_with_host_check(f"http://127.0.0.1:{port}/metrics", proc)
        assert re.search(r'wardwatch_check_up\{[^}]*check="host"[^}]*system="HIS"', body)
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    # the collector is unreachable, so the results wait in the spool
    spooled = sorted(p.relative_to(state) for p in state.rglob("*") if p.is_file())
    assert any(p.parts[0] == "spool" for p in spooled), spooled

    # re-run (an upgrade in place from the same or a newer bundle): config, token, state kept
    again = install(bundle_dir, layout)
    assert f"kept the existing {config}" in again.stdout
    assert sha256(config) == edited
    assert token.read_text().strip() == TOKEN
    assert sorted(p.relative_to(state) for p in state.rglob("*") if p.is_file()) == spooled
    assert subprocess.run([str(agent), "validate", "--config", str(config)],
                          capture_output=True, timeout=60).returncode == 0

    uninstall = subprocess.run(["bash", str(bundle_dir / "uninstall.sh"),
                                "--prefix", str(prefix)], capture_output=True, text=True,
                               timeout=120)
    assert uninstall.returncode == 0, uninstall.stderr
    assert not prefix.exists()
    assert sha256(config) == edited and token.is_file() and (state / "spool").is_dir()

    # install again onto the kept config, then purge
    install(bundle_dir, layout)
    assert sha256(config) == edited
    purge = subprocess.run(["bash", str(prefix / "uninstall.sh"), "--prefix", str(prefix),
                            "--purge"], capture_output=True, text=True, timeout=120)
    assert purge.returncode == 0, purge.stderr
    assert not prefix.exists() and not config_dir.exists() and not state.exists()


def test_install_refuses_a_tampered_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    subprocess.run(["cp", "-a", str(bundle_dir), str(copy)], check=True)
    sample = copy / "config" / "agent.sample.yaml"
    sample.write_text(sample.read_text() + "\n# changed in transit\n")
    proc = subprocess.run(["bash", str(copy / "install.sh"), "--prefix", str(tmp_path / "p"),
                           "--config-dir", str(tmp_path / "c"), "--state-dir",
                           str(tmp_path / "s"), "--no-user", "--no-service"],
                          capture_output=True, text=True, timeout=120, env=offline_env())
    assert proc.returncode != 0
    assert "do not match SHA256SUMS" in proc.stderr
    assert not (tmp_path / "p").exists()
