"""SshAccess and agentless scans against Debian's real sshd on loopback ports: keys and
known_hosts made here with ssh-keygen, host key refusal (unknown and changed), key auth,
argv quoting, the C locale, remote kill at the time limit, and scans with a concurrency limit.
The throughput test prints the figures recorded in docs/agentless.md."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from probes.access import HostAccess
from probes.agentless import scan
from probes.ssh import SshAccess, SshError, SshTarget, remote_command
from tests.services import free_port, needs, stop_process, wait_for_port

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
FARM_SIZE = 20


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    keys: Path
    """host_key, other_host_key, user_key, stranger_key, locked_key (passphrase `locked-pw`)."""
    known_hosts: Path

    def target(self, **overrides: Any) -> SshTarget:
        fields: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "user": self.user,
                                  "key_file": self.keys / "user_key",
                                  "known_hosts": self.known_hosts, "connect_timeout": 5}
        return SshTarget.model_validate({**fields, **overrides})


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def _fingerprint(pub: Path) -> str:
    out = subprocess.run([SSH_KEYGEN, "-l", "-f", str(pub)], check=True, capture_output=True,
                         text=True).stdout
    return out.split()[1]


def _start_sshd(keys: Path, port: int) -> subprocess.Popen[bytes]:
    run_dir = keys / f"sshd-{port}"
    run_dir.mkdir()
    config = run_dir / "sshd_config"
    config.write_text(f"""
ListenAddress 127.0.0.1
Port {port}
HostKey {keys / "host_key"}
PidFile {run_dir / "sshd.pid"}
AuthorizedKeysFile {keys / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
MaxStartups 200
MaxSessions 10
UseDNS no
PrintMotd no
""")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=(run_dir / "sshd.log").open("wb"))
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"sshd did not start: {(run_dir / 'sshd.log').read_text()}") from None
    return proc


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    needs(Path(SSHD).exists() and Path(SSH_KEYGEN).exists(),
          "sshd and ssh-keygen (Debian package openssh-server)")
    if not Path("/run/sshd").is_dir():
        # sshd's privilege separation directory; Debian's service unit creates it the same way
        needs(os.geteuid() == 0, "/run/sshd (sshd's privilege separation directory) missing "
                                 "and not root to create it")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keys = tmp_path_factory.mktemp("ssh")
    for name in ("host_key", "other_host_key", "user_key", "stranger_key"):
        _keygen(keys / name)
    _keygen(keys / "locked_key", passphrase="locked-pw")
    authorized = (keys / "user_key.pub").read_text() + (keys / "locked_key.pub").read_text()
    (keys / "authorized_keys").write_text(authorized)
    return keys


def _known_hosts(keys: Path, ports: list[int], key: str = "host_key") -> Path:
    path = keys / f"known_hosts-{key}-{ports[0]}"
    public = (keys / f"{key}.pub").read_text().split()
    path.write_text("".join(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n" for port in ports))
    return path


@pytest.fixture(scope="session")
def sshd_farm(ssh_keys: Path) -> Iterator[list[Sshd]]:
    """FARM_SIZE sshd processes, one loopback port each, sharing the host key and the user."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for _ in range(FARM_SIZE):
            port = free_port()
            procs.append(_start_sshd(ssh_keys, port))
            ports.append(port)
        known_hosts = _known_hosts(ssh_keys, ports)
        yield [Sshd(port, user, ssh_keys, known_hosts) for port in ports]
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.fixture(scope="session")
def sshd(sshd_farm: list[Sshd]) -> Sshd:
    return sshd_farm[0]


async def _pgrep(sshd: Sshd, pattern: str) -> bool:
    """Whether a process whose command line matches `pattern` runs on the host (over SSH; write
    the pattern as `[s]leep 1.23` so it does not match the pgrep command line itself)."""
    access = SshAccess(sshd.target())
    try:
        out = await access.run(["pgrep", "-f", pattern], limit_s=10)
    finally:
        await access.close()
    assert out.exit_code in (0, 1), out
    return out.exit_code == 0


async def test_runs_argv_and_returns_output_and_exit_code(sshd: Sshd) -> None:
    access = SshAccess(sshd.target())
    try:
        out = await access.run(["uname", "-s"], limit_s=10)
        assert out.ok and out.exit_code == 0 and out.text() == "Linux\n"
        assert out.argv == ("uname", "-s")
        failed = await access.run(["sh", "-c", "echo oops >&2; exit 3"], limit_s=10)
        assert failed.exit_code == 3 and not failed.ok and failed.stderr == b"oops\n"
        missing = await access.run(["/nonexistent/tool", "-v"], limit_s=10)
        assert not missing.ok and "cannot run /nonexistent/tool" in str(missing.error)
        # the same connection serves every command of the access
        first = await access.run(["sh", "-c", "echo $SSH_CLIENT"], limit_s=10)
        second = await access.run(["sh", "-c", "echo $SSH_CLIENT"], limit_s=10)
        assert first.ok and first.stdout == second.stdout
    finally:
        await access.close()
    assert access.name == f"{sshd.user}@127.0.0.1:{sshd.port}"


async def test_arguments_reach_the_program_unchanged_and_no_shell_runs_them(sshd: Sshd,
                                                                          tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    args = [f"; touch {pwned}", f"$(touch {pwned})", f"`touch {pwned}`", "a b  c",
            "it's \"quoted\"", "*", "$HOME", "line\nbreak", f"| touch {pwned}", "-n"]
    access = SshAccess(sshd.target())
    try:
        out = await access.run(["printf", "<%s>", *args], limit_s=10)
    finally:
        await access.close()
    assert out.ok, out
    assert out.text() == "".join(f"<{arg}>" for arg in args)
    assert not pwned.exists()


async def test_commands_run_in_the_c_locale(sshd: Sshd) -> None:
    access = SshAccess(sshd.target())
    try:
        out = await access.run(["env"], limit_s=10)
    finally:
        await access.close()
    env = dict(line.split("=", 1) for line in out.text().splitlines() if "=" in line)
    assert (env["LANG"], env["LC_ALL"], env["LANGUAGE"]) == ("C", "C", "C")


async def test_output_is_cut_at_max_bytes_while_the_command_completes(sshd: Sshd) -> None:
    access = SshAccess(sshd.target())
    try:
        out = await access.run(["head", "-c", "5000000", "/dev/zero"], limit_s=20,
                               max_bytes=1000)
    finally:
        await access.close()
    assert out.ok and out.truncated and len(out.stdout) == 1000


async def test_read_file_existing_missing_and_limited(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "a file; with spaces"
    path.write_bytes(b"abcdef\n")
    access = SshAccess(sshd.target())
    try:
        assert await access.read_file(str(path)) == b"abcdef\n"
        assert await access.read_file(str(path), max_bytes=3) == b"abc"
        assert await access.read_file(str(tmp_path / "missing")) is None
        assert await access.read_file(str(tmp_path)) is None   # a directory
        assert await access.read_file("-n") is None            # not an option to cat
    finally:
        await access.close()


async def test_a_hung_command_is_cut_at_its_limit_and_killed_on_the_host(sshd: Sshd) -> None:
    marker = f"{61 + uuid.uuid4().int % 1000 / 1000:.3f}"     # a unique `sleep` duration
    pattern = f"[s]leep {marker}"
    access = SshAccess(sshd.target())
    try:
        task = asyncio.create_task(access.run(
            ["sh", "-c", f"sleep {marker} & sleep {marker}; echo never"], limit_s=1.5))
        deadline = time.monotonic() + 5
        while not await _pgrep(sshd, pattern):   # it runs on the host while we wait
            assert time.monotonic() < deadline, "the remote sleep never started"
        started = time.monotonic()
        out = await task
        elapsed = time.monotonic() - started
    finally:
        await access.close()
    assert out.timed_out and out.exit_code is None and not out.ok
    assert "did not finish in 1.5s" in str(out.error) and out.stdout == b""
    assert elapsed < 1.5 + 3
    assert not await _pgrep(sshd, pattern)   # both sleeps, child and background, are gone


async def test_unknown_host_key_is_refused_with_the_fingerprint(sshd: Sshd) -> None:
    empty = sshd.keys / "known_hosts-empty"
    empty.write_text("")
    target = sshd.target(known_hosts=empty)
    access = SshAccess(target)
    with pytest.raises(SshError) as caught:
        await access.connect()
    await access.close()
    message = str(caught.value)
    assert caught.value.reason == "host_key_unknown"
    assert message.startswith(f"{target.name}: host key refused: ssh-ed25519 ")
    assert _fingerprint(sshd.keys / "host_key.pub") in message
    assert str(empty) in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in message
    assert "\n" not in message
    assert empty.read_text() == ""   # never added
    # commands report the same refusal instead of running
    out = await SshAccess(target).run(["true"], limit_s=5)
    assert not out.ok and "host key refused" in str(out.error)


async def test_changed_host_key_is_refused(sshd: Sshd) -> None:
    wrong = _known_hosts(sshd.keys, [sshd.port], key="other_host_key")
    access = SshAccess(sshd.target(known_hosts=wrong))
    with pytest.raises(SshError) as caught:
        await access.connect()
    await access.close()
    message = str(caught.value)
    assert caught.value.reason == "host_key_mismatch"
    assert "host key CHANGED" in message and str(wrong) in message
    assert _fingerprint(sshd.keys / "host_key.pub") in message
    assert _fingerprint(sshd.keys / "other_host_key.pub") in message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in message


async def test_hashed_known_hosts_is_accepted(sshd: Sshd) -> None:
    hashed = sshd.keys / "known_hosts-hashed"
    shutil.copy(sshd.known_hosts, hashed)
    await asyncio.to_thread(subprocess.run, [SSH_KEYGEN, "-q", "-H", "-f", str(hashed)],
                            check=True, capture_output=True)
    assert "127.0.0.1" not in hashed.read_text()
    access = SshAccess(sshd.target(known_hosts=hashed))
    try:
        assert (await access.run(["true"], limit_s=10)).ok
    finally:
        await access.close()


async def test_wrong_user_key_fails_authentication(sshd: Sshd) -> None:
    target = sshd.target(key_file=sshd.keys / "stranger_key")
    with pytest.raises(SshError) as caught:
        await SshAccess(target).connect()
    assert caught.value.reason == "auth_failed"
    assert str(caught.value) == (f"{target.name}: authentication failed for user "
                                 f"{sshd.user!r} with key {sshd.keys / 'stranger_key'} (is its "
                                 f"public key in that user's authorized_keys?)")


async def test_encrypted_key_needs_its_passphrase(sshd: Sshd,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    locked = sshd.keys / "locked_key"
    with pytest.raises(SshError) as caught:
        await SshAccess(sshd.target(key_file=locked)).connect()
    assert caught.value.reason == "key_error" and "set key_passphrase" in str(caught.value)

    monkeypatch.setenv("TEST_SSH_PASSPHRASE", "not-the-pw")
    wrong = sshd.target(key_file=locked, key_passphrase={"env": "TEST_SSH_PASSPHRASE"})
    with pytest.raises(SshError) as caught:
        await SshAccess(wrong).connect()
    assert caught.value.reason == "key_error" and "not-the-pw" not in str(caught.value)

    monkeypatch.setenv("TEST_SSH_PASSPHRASE", "locked-pw")
    right = sshd.target(key_file=locked, key_passphrase={"env": "TEST_SSH_PASSPHRASE"})
    assert "locked-pw" not in repr(right)
    access = SshAccess(right)
    try:
        assert (await access.run(["true"], limit_s=10)).ok
    finally:
        await access.close()


async def test_closed_port_is_refused_quickly(sshd: Sshd) -> None:
    target = sshd.target(port=free_port())
    started = time.monotonic()
    with pytest.raises(SshError) as caught:
        await SshAccess(target).connect()
    assert caught.value.reason == "connect_refused"
    assert str(caught.value) == f"{target.name}: connection refused"
    assert time.monotonic() - started < 2


async def test_a_silent_server_times_out_at_connect_timeout(sshd: Sshd, hung_port: int) -> None:
    access = SshAccess(sshd.target(port=hung_port, connect_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(SshError) as caught:
        await access.connect()
    await access.close()
    assert caught.value.reason == "connect_timeout"
    assert "no SSH banner or key exchange within 0.5s" in str(caught.value)
    assert time.monotonic() - started < 3


async def test_missing_key_and_known_hosts_files(sshd: Sshd) -> None:
    with pytest.raises(SshError) as caught:
        await SshAccess(sshd.target(key_file=sshd.keys / "nope")).connect()
    assert caught.value.reason == "key_error" and "cannot read key file" in str(caught.value)
    with pytest.raises(SshError) as caught:
        await SshAccess(sshd.target(known_hosts=sshd.keys / "nope")).connect()
    assert caught.value.reason == "known_hosts_error"


async def test_sudo_only_for_privileged_commands_on_sudo_targets(sshd: Sshd) -> None:
    probe = ["sh", "-c", "echo ${SUDO_USER:-nosudo}"]
    plain, with_sudo = SshAccess(sshd.target()), SshAccess(sshd.target(sudo=True))
    try:
        assert (await plain.run(probe, limit_s=10, privileged=True)).text() == "nosudo\n"
        assert (await with_sudo.run(probe, limit_s=10)).text() == "nosudo\n"
        out = await with_sudo.run(probe, limit_s=10, privileged=True)
    finally:
        await plain.close()
        await with_sudo.close()
    assert out.argv == ("sudo", "-n", "--", *probe)
    # root's command is out of reach of the scan user's SIGKILL: sudo relays a SIGTERM instead
    assert remote_command(out.argv, 5).startswith(
        "timeout --signal=TERM --kill-after=2 5.000 env LANG=C LC_ALL=C LANGUAGE=C sudo -n -- ")
    assert remote_command(probe, 5).startswith("timeout --signal=KILL 5.000 env ")
    if shutil.which("sudo"):   # the sshd runs on this machine: same answer on the "remote"
        assert out.ok and out.text() == f"{sshd.user}\n"
    else:
        assert not out.ok and "cannot run sudo" in str(out.error)


async def test_commands_share_the_connection_within_max_sessions(sshd: Sshd) -> None:
    access = SshAccess(sshd.target(max_sessions=2))
    try:
        outs = await asyncio.gather(*(access.run(["sh", "-c", f"sleep 0.2; echo {n}"],
                                                 limit_s=10) for n in range(6)))
    finally:
        await access.close()
    assert [out.text() for out in outs] == [f"{n}\n" for n in range(6)]


async def test_model_is_strict() -> None:
    with pytest.raises(ValueError, match="password\n  Extra inputs are not permitted"):
        SshTarget.model_validate({"host": "h", "user": "u", "key_file": "/k",
                                  "known_hosts": "/kh", "password": "x"})
    with pytest.raises(ValueError, match="known_hosts"):
        SshTarget.model_validate({"host": "h", "user": "u", "key_file": "/k"})
    target = SshTarget.model_validate({"host": "db1", "user": "scan", "key_file": "/k",
                                       "known_hosts": "/kh", "connect_timeout": "3s"})
    assert (target.port, target.connect_timeout, target.sudo) == (22, 3.0, False)


async def test_scan_limits_concurrency_and_a_hung_host_delays_no_one(sshd_farm: list[Sshd],
                                                                   hung_port: int) -> None:
    marker = f"{71 + uuid.uuid4().int % 1000 / 1000:.3f}"
    hung = sshd_farm[3]
    good = sshd_farm[:3]
    targets = [*(s.target() for s in good), hung.target(),
               sshd_farm[0].target(port=free_port()),                  # nothing listening
               sshd_farm[0].target(port=hung_port, connect_timeout=30)]  # never says a word
    running = 0
    most = 0

    async def job(access: HostAccess) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            if access.name == hung.target().name:
                await access.run(["sleep", marker], limit_s=60)
            out = await access.run(["uname", "-r"], limit_s=10)
            return out.text().strip()
        finally:
            running -= 1

    started = time.monotonic()
    outcomes = await scan(targets, job, concurrency=3, per_host_limit_s=2)
    elapsed = time.monotonic() - started

    assert [o.host for o in outcomes] == [t.name for t in targets]
    assert most <= 3
    assert all(o.ok and o.result == os.uname().release for o in outcomes[:3])
    assert all(o.seconds < 2 for o in outcomes[:3])
    slow, dead, silent = outcomes[3:]
    assert (slow.ok, slow.reason, slow.result) == (False, "timeout", None)
    assert slow.error == f"{hung.target().name}: did not finish in 2s"
    assert 2 <= slow.seconds < 3.5
    assert (dead.reason, silent.reason) == ("connect_refused", "timeout")
    # the two slow hosts ran side by side with the fast ones, each bounded by its own limit
    assert elapsed < 2 * 2 + 2
    # the connection of the hung host was closed at the limit: its remote sleep was not left
    # behind (the remote `timeout` would only end it after 60 s)
    deadline = time.monotonic() + 5
    while await _pgrep(sshd_farm[0], f"[s]leep {marker}"):
        assert time.monotonic() < deadline, "the hung host's command outlived the scan"


async def test_scan_of_no_targets_and_bad_arguments() -> None:
    async def job(access: HostAccess) -> None:
        return None

    assert await scan([], job) == []
    with pytest.raises(ValueError, match="concurrency"):
        await scan([], job, concurrency=0)


async def test_scan_job_failure_is_an_outcome(sshd: Sshd) -> None:
    async def job(access: HostAccess) -> None:
        await access.run(["true"], limit_s=5)
        raise RuntimeError("parse error\nsecond line")

    [outcome] = await scan([sshd.target()], job)
    assert (outcome.ok, outcome.reason) == (False, "job_failed")
    assert outcome.error == f"{sshd.target().name}: job failed: RuntimeError: parse error"


async def _inventory(access: HostAccess) -> dict[str, Any]:
    """A small inventory-like job: kernel, OS release, number of installed packages."""
    kernel = await access.run(["uname", "-r"], limit_s=60)
    release = await access.read_file("/etc/os-release")
    packages = await access.run(["dpkg-query", "-W", "-f=${Package}\\n"], limit_s=60)
    assert kernel.ok, kernel
    assert release is not None
    assert packages.ok, packages.error or packages.stderr
    return {"kernel": kernel.text().strip(), "os_release_bytes": len(release),
            "packages": len(packages.stdout.splitlines())}


async def _shell_start_seconds(sshd: Sshd) -> float:
    """What one remote command costs before it runs: the login shell that sshd starts for it
    (bash reads ~/.bashrc for SSH commands), timed on this machine without SSH."""
    shell = pwd.getpwnam(sshd.user).pw_shell
    env = {**os.environ, "SSH_CLIENT": "127.0.0.1 1 22", "SHLVL": "0"}
    started = time.monotonic()
    for _ in range(5):
        await asyncio.to_thread(subprocess.run, [shell, "-c", "true"], env=env, check=True,
                                cwd=pwd.getpwnam(sshd.user).pw_dir)
    return (time.monotonic() - started) / 5


async def test_scan_throughput_over_twenty_sshd(sshd_farm: list[Sshd]) -> None:
    """Figures for docs/agentless.md. The normal run measures concurrency 10; the whole series
    (1, 5, 10, 20): `WARDWATCH_SSH_BENCH=1 .venv/bin/pytest -s -k throughput
    tests/probes/test_ssh.py`."""
    targets = [s.target() for s in sshd_farm]
    assert len({t.port for t in targets}) == FARM_SIZE
    series = (1, 5, 10, 20) if os.environ.get("WARDWATCH_SSH_BENCH") else (10,)
    await scan(targets[:2], _inventory)   # warm up (imports, first key exchange)
    lines = []
    packages = 0
    for concurrency in series:
        load = os.getloadavg()[0]
        started = time.monotonic()
        outcomes = await scan(targets, _inventory, concurrency=concurrency)
        wall = time.monotonic() - started
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        per_host = sorted(o.seconds for o in outcomes)
        packages = outcomes[0].result["packages"] if outcomes[0].result else 0
        lines.append(f"concurrency {concurrency:2d}: {len(outcomes)} hosts in {wall:5.2f} s = "
                     f"{len(outcomes) / wall * 60:5.0f} hosts/min; per host median "
                     f"{per_host[len(per_host) // 2]:.2f} s, max {per_host[-1]:.2f} s "
                     f"(load average before: {load:.1f})")
    shell = await _shell_start_seconds(sshd_farm[0])
    print(f"\nagentless scan, {FARM_SIZE} sshd on loopback ports, {os.cpu_count()} CPUs; job = "
          f"uname -r + cat /etc/os-release + dpkg-query -W ({packages} packages), "
          f"3 commands on one connection per host")
    print("\n".join(lines))
    print(f"login shell start-up per command on this machine (no SSH): {shell:.3f} s")
