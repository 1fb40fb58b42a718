"""patches probe and the inventory behind it: real runs on this Debian machine (dpkg, apt
simulation, the reboot flag at a test-owned path), recorded RHEL 8/9, Kylin V10 and Windows
outputs through a stand-in host, and a hung command cut by LocalAccess."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.access import DEFAULT_MAX_BYTES, CommandOutput, LocalAccess
from probes.inventory import (
    APT_SIMULATE,
    DPKG_QUERY,
    NEEDS_RESTARTING,
    POWERSHELL,
    RPM_QUERY,
    Inventory,
    InventoryOptions,
    compare_versions,
    debian_kernel_release,
    kernel_reboot_reason,
    linux_inventory,
    parse_apt_simulation,
    parse_dpkg_query,
    parse_rpm_query,
    parse_windows,
    windows_inventory,
)
from probes.memory import ProbeMemory
from probes.patches import METRICS, PatchesCheck, judge, probe
from probes.registry import get_kind
from probes.result import ProbeResult, Status

FIXTURES = Path(__file__).parent / "fixtures" / "patches"
on_debian = pytest.mark.skipif(not Path("/var/lib/dpkg/status").exists(),
                               reason="needs a dpkg-based machine")


def check(**kw: object) -> PatchesCheck:
    return PatchesCheck.model_validate({"id": "patches", "kind": "patches", **kw})


def value(res: ProbeResult, name: str, **labels: str) -> float:
    [found] = [m.value for m in res.metrics if m.name == name and m.labels == labels]
    return found


class RecordedHost:
    """A host answering argv with recorded (exit code, stdout) and paths with recorded
    bytes; anything else is a command that does not exist there. It notes what it was asked
    to run, as a real host's audit log would."""

    name = "recorded"

    def __init__(self, commands: dict[tuple[str, ...], tuple[int, bytes]],
                 files: dict[str, bytes]) -> None:
        self.commands = commands
        self.files = files
        self.ran: list[tuple[tuple[str, ...], bool]] = []

    async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
        command = tuple(argv)
        self.ran.append((command, privileged))
        if command not in self.commands:
            return CommandOutput(command, None, b"", b"",
                                 error=f"cannot run {command[0]}: No such file or directory")
        code, out = self.commands[command]
        return CommandOutput(command, code, out, b"")

    async def read_file(self, path: str, *, max_bytes: int = DEFAULT_MAX_BYTES
                        ) -> bytes | None:
        data = self.files.get(path)
        return None if data is None else data[:max_bytes]

    async def close(self) -> None:
        return None


def rpm_host(name: str, *, needs_restarting: int | None) -> RecordedHost:
    d = FIXTURES / name
    commands = {
        ("uname", "-r"): (0, (d / "uname-r.txt").read_bytes()),
        ("rpm", "--version"): (0, b"RPM version 4.15.1\n"),
        RPM_QUERY: (0, (d / "rpm-qa.txt").read_bytes()),
        ("dnf", "-C", "-q", "check-update"): (100, (d / "dnf-check-update.txt").read_bytes()),
        ("dnf", "-C", "-q", "updateinfo", "list", "--updates"):
            (0, (d / "dnf-updateinfo-list-updates.txt").read_bytes()),
        ("dnf", "-q", "makecache"): (0, b""),
    }
    if needs_restarting is not None:
        commands[NEEDS_RESTARTING] = (needs_restarting,
                                      (d / "needs-restarting-r.txt").read_bytes())
    else:   # Kylin: the dnf plugin is missing too
        commands[("dnf", "-C", "-q", "needs-restarting", "-r")] = (
            1, b"No such command: needs-restarting. Please use /usr/bin/dnf --help\n")
    return RecordedHost(commands, {"/etc/os-release": (d / "os-release").read_bytes()})


# --- this machine ------------------------------------------------------------------------


async def _dpkg_installed_names() -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        "dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\n",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    rows = [line.split("\t") for line in out.decode().splitlines()]
    return [name for status, name in rows if status[1] not in "nc"]


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 50 ms timer fires while the inventory runs: what other checks would see."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.05
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
        lags.append(max(loop.time() - due, 0.0))


@on_debian
async def test_dpkg_inventory_and_apt_simulation_on_this_machine(tmp_path: Path) -> None:
    """Also the cost figures of docs/probes/patches.md (`pytest -s` prints them)."""
    options = InventoryOptions(limit_s=120, reboot_required_path=str(tmp_path / "none"))
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_loop_lag(stop, lags))
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    inventory = await linux_inventory(LocalAccess(), options)
    wall = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    await ticker
    agent_cpu = (self_after.ru_utime + self_after.ru_stime
                 - self_before.ru_utime - self_before.ru_stime)
    commands_cpu = (children_after.ru_utime + children_after.ru_stime
                    - children_before.ru_utime - children_before.ru_stime)
    print(f"\ninventory: {wall:.2f} s wall, agent CPU {agent_cpu:.2f} s, commands CPU "
          f"{commands_cpu:.2f} s, agent peak RSS {self_before.ru_maxrss / 1024:.1f} -> "
          f"{self_after.ru_maxrss / 1024:.1f} MiB, largest child peak RSS "
          f"{children_after.ru_maxrss / 1024:.1f} MiB, event-loop lag max "
          f"{max(lags) * 1000:.1f} ms over {len(lags)} ticks; {len(inventory.packages)} "
          f"packages, {len(inventory.pending)} pending")
    assert max(lags) < 0.5      # the agent's other checks keep their schedule
    assert agent_cpu < wall     # the work is in apt and dpkg, not in the agent
    assert inventory.errors == []
    assert inventory.os.family == "debian" and inventory.package_manager == "dpkg"
    assert inventory.os.id == "debian" and inventory.os.version.startswith("12")
    names = [p.name for p in inventory.packages]
    assert sorted(names) == sorted(await _dpkg_installed_names())
    assert {"nginx-light", "tomcat10", "dpkg"} <= set(names)
    dpkg = next(p for p in inventory.packages if p.name == "dpkg")
    assert dpkg.installed_at is not None and dpkg.installed_at > 1e9
    # the apt lists here may be old or fresh: whatever apt simulates parses into rows
    assert inventory.pending_known
    for update in inventory.pending:
        assert update.available and update.repo
    assert inventory.reboot_required is False
    assert inventory.kernel_running   # uname -r; this container has no linux-image package


@on_debian
async def test_probe_on_this_machine_reboot_flag_and_package_memory(tmp_path: Path) -> None:
    flag = tmp_path / "reboot-required"
    flag.write_text("*** System restart required ***\n")
    (tmp_path / "reboot-required.pkgs").write_text("libc6\nlinux-image-6.1.0-26-amd64\n")
    memory = ProbeMemory()
    first = await probe(check(reboot_required_path=str(flag), security_updates={}), memory)
    assert (first.status, first.reason) == (Status.WARNING, "reboot_required"), first.summary
    assert first.summary.startswith("Debian 12")
    assert f"reboot required ({flag} present (libc6, linux-image-6.1.0-26-amd64))" \
        in first.summary
    assert value(first, "patches_reboot_required") == 1
    assert value(first, "patches_installed_packages") == len(first.details["packages"])
    assert value(first, "patches_inventory_duration_seconds") > 0
    assert {m.name for m in first.metrics} <= set(METRICS)
    assert all(len(row) in (4, 6) for row in first.details["packages"])
    flag.unlink()
    second = await probe(check(reboot_required_path=str(flag), security_updates={}), memory)
    assert second.reason in {"ok", "updates_pending"} and second.status is Status.OK
    assert value(second, "patches_reboot_required") == 0
    # the package list did not change: only its hash and since when
    assert "packages" not in second.details
    assert second.details["packages_hash"] == first.details["packages_hash"]
    assert second.details["packages_unchanged_since"] == first.details["collected_at"]


@on_debian
async def test_a_hung_command_is_cut_and_is_our_failure(tmp_path: Path) -> None:
    class SlowAptHost(LocalAccess):
        """This machine, except that apt-get hangs (a dead mirror proxy, a held lock)."""

        async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
            if argv[0] == "apt-get":
                argv = [sys.executable, "-c", "import time; time.sleep(60)"]
            return await super().run(argv, limit_s=limit_s, privileged=privileged,
                                     max_bytes=max_bytes)

    started = time.monotonic()
    inventory = await linux_inventory(SlowAptHost(), InventoryOptions(
        limit_s=3, reboot_required_path=str(tmp_path / "none")))
    assert time.monotonic() - started < 10
    assert any("apt-get -s dist-upgrade" in e and "did not finish" in e
               for e in inventory.errors), inventory.errors
    res = judge(check(), inventory, ProbeMemory(), 3.0)
    assert (res.status, res.reason) == (Status.UNKNOWN, "inventory_failed")
    assert "patches_pending_security_updates" not in {m.name for m in res.metrics}


# --- apt, kernels ------------------------------------------------------------------------


def test_apt_simulation_recorded_on_debian_12() -> None:
    pending = parse_apt_simulation(
        (FIXTURES / "debian12" / "apt-get-s-dist-upgrade.txt").read_text())
    by_name = {u.name: u for u in pending}
    assert len(pending) == 123
    assert sum(u.security for u in pending) == 69
    assert by_name["libssl3"].security and by_name["libssl3"].current == "3.0.19-1~deb12u2"
    assert by_name["libssl3"].available == "3.0.22-1~deb12u2"
    assert by_name["libssl3"].repo == "Debian-Security:12/oldstable-security"
    assert not by_name["base-files"].security
    # in both the point release and the security suite: a security update
    assert by_name["libgcrypt20"].security
    assert by_name["e2fsprogs"].current == "1.47.0-2"   # trailing `[e2fsprogs:amd64 ]`
    assert all(u.severity is None for u in pending)     # apt gives none


def test_apt_simulation_ubuntu_new_kernel_and_non_root_note() -> None:
    pending = parse_apt_simulation(
        (FIXTURES / "ubuntu2204" / "apt-get-s-dist-upgrade.txt").read_text())
    by_name = {u.name: u for u in pending}
    assert len(pending) == 6
    assert by_name["linux-image-5.15.0-94-generic"].current is None
    assert by_name["openssl"].security and not by_name["tzdata"].security
    assert debian_kernel_release("linux-image-5.15.0-94-generic") == "5.15.0-94-generic"


def test_kernel_running_against_installed() -> None:
    assert debian_kernel_release("linux-image-amd64") is None
    assert debian_kernel_release("linux-image-6.1.0-26-amd64-unsigned") == "6.1.0-26-amd64"
    assert debian_kernel_release("linux-image-6.1.0-26-amd64-dbg") is None
    assert debian_kernel_release("linux-image-unsigned-5.15.0-94-generic") \
        == "5.15.0-94-generic"
    debian = ["6.1.0-18-amd64", "6.1.0-26-amd64", "6.1.0-9-amd64", "6.1.0-28-cloud-amd64"]
    assert kernel_reboot_reason("6.1.0-18-amd64", debian) \
        == "kernel 6.1.0-26-amd64 installed, 6.1.0-18-amd64 running"
    assert kernel_reboot_reason("6.1.0-26-amd64", debian) is None
    # the cloud flavour is another kernel line, not an update of the running one
    assert kernel_reboot_reason("6.1.0-26-amd64", debian[:3]) is None
    # running a kernel newer than any package (built by hand) or with no packages: no claim
    assert kernel_reboot_reason("6.1.0-30-amd64", debian) is None
    assert kernel_reboot_reason("6.18.44-fc-v782", []) is None
    rhel = ["4.18.0-477.10.1.el8_8.x86_64", "4.18.0-513.9.1.el8_9.x86_64",
            "4.18.0-80.el8.x86_64"]
    assert kernel_reboot_reason("4.18.0-477.10.1.el8_8.x86_64", rhel, flavoured=False) \
        == "kernel 4.18.0-513.9.1.el8_9.x86_64 installed, 4.18.0-477.10.1.el8_8.x86_64 running"
    assert compare_versions("1:1.0", "2.0") > 0
    assert compare_versions("1.0~rc1", "1.0") < 0
    assert compare_versions("3.0.2-0ubuntu1.14", "3.0.2-0ubuntu1.12") > 0
    assert compare_versions("1.9.5p2-1.el8_9", "1.9.5p2-0.el8") > 0


# --- recorded rpm hosts --------------------------------------------------------------------


async def test_rhel8_recorded() -> None:
    host = rpm_host("rhel8", needs_restarting=1)
    inventory = await linux_inventory(host, InventoryOptions())
    assert inventory.errors == [] and inventory.notes == []
    assert (inventory.os.id, inventory.os.family, inventory.os.label) \
        == ("rhel", "rhel", "Red Hat Enterprise Linux 8.8")
    assert inventory.package_manager == "rpm/dnf"
    assert len(inventory.packages) == 11          # gpg-pubkey left out
    openssl = next(p for p in inventory.packages if p.name == "openssl")
    assert (openssl.version, openssl.arch, openssl.installed_at) \
        == ("1:1.1.1k-9.el8_7", "x86_64", 1683799100)
    pending = {u.name: u for u in inventory.pending}
    assert len(pending) == 8                      # the obsoleting section is not counted
    assert pending["openssl-libs.x86_64"].advisories == ("RHSA-2023:7865", "RHSA-2023:7877")
    assert pending["openssl-libs.x86_64"].severity == "Moderate"
    assert pending["openssl.x86_64"].current == "1:1.1.1k-9.el8_7"
    assert pending["kernel.x86_64"].severity == "Important"
    assert pending["python3-dnf-plugin-versionlock.noarch"].available == "4.0.21-23.el8"
    assert not pending["tzdata.noarch"].security and pending["tzdata.noarch"].advisory \
        == "RHBA-2024:1081"
    assert inventory.reboot_required
    assert inventory.reboot_reasons == [
        "needs-restarting -r: updated since boot: kernel, glibc",
        "kernel 4.18.0-513.9.1.el8_9.x86_64 installed, 4.18.0-477.10.1.el8_8.x86_64 running"]
    # read-only: nothing privileged, no metadata refresh
    assert all(not privileged for _, privileged in host.ran)
    assert not any("makecache" in argv for argv, _ in host.ran)

    res = judge(check(), inventory, ProbeMemory(), 1.5)
    assert (res.status, res.reason) == (Status.WARNING, "security_updates_pending")
    assert res.summary.startswith(
        "Red Hat Enterprise Linux 8.8: 5 security updates pending (kernel-core.x86_64, "
        "kernel.x86_64, openssl-libs.x86_64, sudo.x86_64, openssl.x86_64); reboot required")
    assert value(res, "patches_pending_security_updates") == 5
    assert value(res, "patches_pending_updates", severity="important") == 2
    assert value(res, "patches_pending_updates", severity="low") == 1
    assert value(res, "patches_pending_updates", severity="none") == 3
    assert res.details["kernel"] == {"running": "4.18.0-477.10.1.el8_8.x86_64",
                                     "newest_installed": "4.18.0-513.9.1.el8_9.x86_64"}


async def test_rhel9_recorded_critical_advisory() -> None:
    inventory = await linux_inventory(rpm_host("rhel9", needs_restarting=0),
                                      InventoryOptions())
    assert inventory.errors == [] and not inventory.reboot_required
    assert inventory.kernel_newest == inventory.kernel_running
    res = judge(check(), inventory, ProbeMemory(), 2.0)
    assert (res.status, res.reason) == (Status.CRITICAL, "security_updates_pending")
    assert res.summary == (
        "Red Hat Enterprise Linux 9.3: 4 security updates pending, 2 rated Critical "
        "(openssh-server.x86_64, openssh.x86_64, nginx.x86_64, curl.x86_64)")
    assert value(res, "patches_pending_updates", severity="critical") == 2
    relaxed = judge(check(critical_updates={}, security_updates={"warning": 10}), inventory,
                    ProbeMemory(), 2.0)
    assert (relaxed.status, relaxed.reason) == (Status.OK, "ok")
    assert relaxed.summary == ("Red Hat Enterprise Linux 9.3: 9 packages installed; "
                               "4 updates pending, 4 security")


async def test_kylin_v10_rpm_server_recorded() -> None:
    host = rpm_host("kylin-v10", needs_restarting=None)
    inventory = await linux_inventory(host, InventoryOptions())
    # ID=kylin says nothing about the package manager: no dpkg database, rpm answers
    assert (inventory.os.id, inventory.os.family) == ("kylin", "rhel")
    assert inventory.errors == []
    assert any("needs-restarting -r unavailable" in note for note in inventory.notes)
    assert inventory.reboot_reasons == [
        "kernel 4.19.90-89.11.v2401.ky10.x86_64 installed, "
        "4.19.90-52.22.v2207.ky10.x86_64 running"]
    vim = next(u for u in inventory.pending if u.name == "vim-minimal.x86_64")
    assert (vim.current, vim.available, vim.advisory) \
        == ("2:8.2-1.p07.ky10", "2:9.0-3.p12.ky10", "KYSA-202402-1070")
    res = judge(check(), inventory, ProbeMemory(), 1.0)
    assert (res.status, res.reason) == (Status.WARNING, "security_updates_pending")
    assert res.summary.startswith("Kylin Linux Advanced Server V10: 3 security updates")


async def test_yum_fallback_refresh_and_failures() -> None:
    host = rpm_host("rhel8", needs_restarting=1)
    del host.commands[("dnf", "-C", "-q", "check-update")]
    host.commands[("yum", "-C", "-q", "check-update")] = (1, b"")   # yum error
    host.commands[("yum", "-q", "makecache")] = (0, b"")
    inventory = await linux_inventory(host, InventoryOptions(refresh_metadata=True))
    assert inventory.package_manager == "rpm/yum"
    assert (("yum", "-q", "makecache"), True) in host.ran        # the one privileged command
    assert [e for e in inventory.errors if "yum check-update: exit 1" in e]
    res = judge(check(), inventory, ProbeMemory(), 1.0)
    # the reboot is real and outranks our own failure; the failure still shows
    assert (res.status, res.reason) == (Status.WARNING, "reboot_required")
    assert "yum check-update: exit 1" in res.summary
    assert "patches_pending_security_updates" not in {m.name for m in res.metrics}


async def test_unknown_linux_is_unsupported() -> None:
    host = RecordedHost({("uname", "-r"): (0, b"6.6.1-arch1-1\n")},
                        {"/etc/os-release": b'NAME="Arch Linux"\nID=arch\n'})
    inventory = await linux_inventory(host, InventoryOptions())
    res = judge(check(), inventory, ProbeMemory(), 0.1)
    assert (res.status, res.reason) == (Status.UNKNOWN, "unsupported_os")


# --- Windows -----------------------------------------------------------------------------


def windows(name: str) -> Inventory:
    return parse_windows((FIXTURES / "windows" / name).read_text())


def test_windows_server_2012r2_powershell4_shapes() -> None:
    inventory = windows("server2012r2.json")
    assert inventory.os.label == "Windows Server 2012 R2 Standard build 9600.21620"
    assert [p.name for p in inventory.packages] == ["KB2919355", "KB5029312"]
    assert inventory.packages[1].installed_at == 1691539200      # 8/9/2023 UTC
    [pending] = inventory.pending                     # one object, not a list (PowerShell 4)
    assert (pending.name, pending.severity, pending.security) == ("KB5034171", "Important",
                                                                  True)
    assert [h.result for h in inventory.history] == ["succeeded", "failed"]
    assert not inventory.reboot_required
    res = judge(check(), inventory, ProbeMemory(), 20.0)
    assert (res.status, res.reason) == (Status.WARNING, "security_updates_pending")


def test_windows_server_2016_reboot_pending() -> None:
    inventory = windows("server2016.json")
    assert inventory.kernel_running == "14393.6614"
    assert inventory.os.version == "1607 (build 14393.6614)"
    filetime = inventory.packages[1].installed_at
    assert filetime is not None and time.gmtime(filetime)[:3] == (2024, 2, 11)
    assert inventory.packages[2].installed_at is None
    assert inventory.pending_known and inventory.pending == []
    assert inventory.reboot_reasons == ["Component Based Servicing\\RebootPending",
                                        "WindowsUpdate\\Auto Update\\RebootRequired"]
    res = judge(check(), inventory, ProbeMemory(), 20.0)
    assert (res.status, res.reason) == (Status.WARNING, "reboot_required")
    assert res.summary == ("Windows Server 2016 Datacenter 1607 (build 14393.6614): reboot "
                           "required (Component Based Servicing\\RebootPending; "
                           "WindowsUpdate\\Auto Update\\RebootRequired)")


async def test_windows_server_2022_through_powershell() -> None:
    recorded = (FIXTURES / "windows" / "server2022.json").read_bytes()

    class PowerShellHost(RecordedHost):
        async def run(self, argv: Sequence[str], *, limit_s: float, privileged: bool = False,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> CommandOutput:
            self.ran.append((tuple(argv), privileged))
            if tuple(argv[:-1]) == POWERSHELL:
                return CommandOutput(tuple(argv), 0, b"\xef\xbb\xbf" + recorded, b"")
            return await super().run(argv, limit_s=limit_s)

    host = PowerShellHost({}, {})
    inventory = await windows_inventory(host, InventoryOptions(limit_s=60))
    [(argv, privileged)] = host.ran
    assert not privileged and argv[:-1] == POWERSHELL
    script = base64.b64decode(argv[-1]).decode("utf-16-le")
    assert "$searcher.Online = $false" in script and "QueryHistory(0, [Math]::Min($count, 50))" \
        in script
    assert inventory.os.label == "Windows Server 2022 Standard 21H2 (build 20348.2227)"
    assert [u.name for u in inventory.pending] == ["KB5034770", "KB5034685", "KB2267602"]
    assert [u.security for u in inventory.pending] == [True, False, False]
    assert inventory.reboot_reasons == ["Session Manager PendingFileRenameOperations"]
    res = judge(check(), inventory, ProbeMemory(), 40.0)
    assert (res.status, res.reason) == (Status.CRITICAL, "security_updates_pending")
    assert res.summary.startswith("Windows Server 2022 Standard 21H2 (build 20348.2227): "
                                  "1 security update pending, 1 rated Critical (KB5034770)")
    assert res.details["history"][1]["result"] == "failed"


def test_windows_update_agent_failure_and_garbage() -> None:
    inventory = windows("wua-unavailable.json")
    assert not inventory.pending_known
    res = judge(check(), inventory, ProbeMemory(), 5.0)
    assert (res.status, res.reason) == (Status.UNKNOWN, "inventory_failed")
    assert "0x8024402C" in res.summary
    garbage = judge(check(), parse_windows("Get-CimInstance : Access denied"), ProbeMemory(),
                    1.0)
    assert (garbage.status, garbage.reason) == (Status.UNKNOWN, "inventory_failed")


# --- config, memory, registry --------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    c = check()
    assert (c.interval, c.timeout, c.refresh_metadata) == (6 * 3600.0, 300.0, False)
    assert get_kind("patches").remembers and get_kind("patches").config is PatchesCheck
    with pytest.raises(ValidationError, match="must not exceed interval"):
        check(interval="5m", timeout="10m")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        check(run_apt_update=True)


async def test_package_list_is_resent_when_changed_or_a_day_old() -> None:
    inventory = await linux_inventory(rpm_host("rhel9", needs_restarting=0),
                                      InventoryOptions())
    memory = ProbeMemory()
    first = judge(check(), inventory, memory, 1.0)
    assert len(first.details["packages"]) == 9
    assert judge(check(), inventory, memory, 1.0).details.get("packages") is None
    memory.values["packages"]["sent_at"] -= 86400 + 1
    assert len(judge(check(), inventory, memory, 1.0).details["packages"]) == 9
    inventory.packages.pop()
    changed = judge(check(), inventory, memory, 1.0)
    assert len(changed.details["packages"]) == 8
    assert changed.details["packages_hash"] != first.details["packages_hash"]


def test_commands_are_the_documented_ones() -> None:
    # docs/probes/patches.md lists these argv; the sudoers line depends on them
    assert APT_SIMULATE == ("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
    assert DPKG_QUERY[:3] == ("dpkg-query", "-W", "-f")
    assert NEEDS_RESTARTING == ("needs-restarting", "-r")


def test_source_packages_are_kept_when_they_differ() -> None:
    """Advisories name source packages (Debian, Ubuntu, OSV): libssl3 is openssl's."""
    rows = parse_dpkg_query(
        "ii \tlibssl3\t3.0.15-1~deb12u1\tamd64\t1700000000\topenssl\n"
        "ii \tbash\t5.2.15-2+b8\tamd64\t1700000000\tbash (5.2.15-2)\n"
        "ii \tdpkg\t1.21.22\tamd64\t1700000000\t\n"
        "ii \tolddpkg\t1.0\tamd64\t\n")   # a dpkg too old for the last fields
    assert [p.row() for p in rows] == [
        ["libssl3", "3.0.15-1~deb12u1", "amd64", 1700000000, "openssl", "3.0.15-1~deb12u1"],
        ["bash", "5.2.15-2+b8", "amd64", 1700000000, "bash", "5.2.15-2"],
        ["dpkg", "1.21.22", "amd64", 1700000000],
        ["olddpkg", "1.0", "amd64", None]]
    rpm = {p.name: p for p in parse_rpm_query(
        (FIXTURES / "rhel9" / "rpm-qa.txt").read_text())}
    assert rpm["openssl-libs"].row() == [
        "openssl-libs", "1:3.0.7-24.el9", "x86_64", 1700000400, "openssl", "1:3.0.7-24.el9"]
    assert rpm["kernel-core"].source == "kernel" and rpm["openssh-server"].source == "openssh"
    assert rpm["curl"].source is None and len(rpm["curl"].row()) == 4
    assert "gpg-pubkey" not in rpm


async def test_this_machines_libssl_comes_from_openssl() -> None:
    listing = await asyncio.to_thread(subprocess.run, list(DPKG_QUERY), capture_output=True,
                                      text=True, check=True, timeout=60)
    packages = {p.name: p for p in parse_dpkg_query(listing.stdout)}
    assert packages["libssl3"].source == "openssl"
    assert all(p.source != p.name or p.source_version != p.version for p in packages.values())
