"""What is installed on a host and what is waiting to be installed: the OS release, the kernel
running against the newest installed, the package list, pending updates (with advisory and
severity where the repository supplies them) and whether a reboot is pending.

Written against `HostAccess`, so the same code inspects this host (LocalAccess) or another
over SSH (agentless mode). Read-only: every command below only reads; the one exception is
`refresh_metadata`, which runs `apt-get -q update` / `dnf -q makecache` / `yum -q makecache`
(privileged; it writes package *metadata* only, never installs anything). Everything else runs
as the agent's own user — none of it needs root (docs/probes/patches.md has the sudoers line
for the refresh and the reasons).

Linux, by package manager (decided from os-release `ID`/`ID_LIKE`; Kylin and UOS exist both
Debian-based (desktop) and rpm-based (server), so for them, and for unknown IDs, by whether
`/var/lib/dpkg/status` exists):

dpkg   `dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\t
       ${db-fsys:Last-Modified}\\t${Source}\\n'` — dpkg records no install time;
       `db-fsys:Last-Modified` (dpkg >= 1.19.3) is the mtime of the package's file list in
       the dpkg database, which dpkg rewrites when it installs or upgrades the package:
       "installed or last upgraded at", read by dpkg-query itself in one pass (older dpkg
       prints nothing: None).
       `Source` is empty when the source package has the binary's name and version, else
       `name` or `name (version)` (a binNMU or a library such as libssl3 from openssl):
       advisories (Debian, Ubuntu, OSV) name source packages.
       `apt-get -s -o Debug::NoLocking=1 dist-upgrade`: `Inst pkg [old] (new Origin:Ver/Suite
       [arch])` lines; an update is a security update when one of its sources' suite ends in
       `-security` (Debian, Ubuntu) or its label names Security. apt gives no severity.
       Reboot: `/var/run/reboot-required` (+ `.pkgs`, written by the kernel and libc postinst
       hooks), and the newest installed `linux-image-<release>` against `uname -r`.
rpm    `rpm -qa --qf '%{NAME}\\t%{EPOCH}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{INSTALLTIME}\\t
       %{SOURCERPM}\\n'` (gpg-pubkey pseudo-packages left out; the source rpm's name is kept
       when it differs from the binary's, e.g. openssl-libs from openssl);
       `dnf -C -q check-update` (exit 100 = updates, 0 = none, 1 = error; `yum` when there
       is no dnf) joined with `dnf -C -q updateinfo list --updates` / `yum -C -q updateinfo
       list updates` (`ADVISORY SEVERITY/Sec.|TYPE NEVRA` lines). `-C` (cache only) keeps
       dnf from refreshing metadata and lets an ordinary user read the system cache
       read-only (dnf(8) `--cacheonly`). Reboot: `needs-restarting -r` (exit 1 = needed;
       from dnf-utils/yum-utils, noted when absent) and the newest installed
       `kernel`/`kernel-core` against `uname -r`.

Oracle homes (`InventoryOptions.oracle_homes`, Linux): `HOME/OPatch/opatch lspatches -oh HOME`
per configured home — as the agent's user, or as the home's owner through `sudo -n -u OWNER --`
when the home says `user` — with its own time limit (`opatch_limit_s`, within the budget) and
its output cut at `opatch_max_bytes`. opatch prints `ID;DESCRIPTION` lines and `OPatch
succeeded.` (an empty home: `There are no Interim patches installed in this Oracle Home`);
`parse_lspatches` reads them and `oracle_release` finds the WebLogic PSU (`WLS PATCH SET UPDATE
12.2.1.4.230702`) or the database Release Update (`Database Release Update : 19.22.0.0.240116`)
whose version, ending in its YYMMDD date, is the product version to compare with advisories
(the REST version of WebLogic stays `12.2.1.4.0`). opatch only reads the home and its
inventory; it writes its own log under `HOME/cfgtoollogs/opatch/`.

Windows: one PowerShell script (`WINDOWS_SCRIPT`, run as `powershell.exe -NoProfile
-NonInteractive -ExecutionPolicy Bypass -EncodedCommand …`) printing one JSON document, parsed
by the pure `parse_windows`. Hotfixes come from `Win32_QuickFixEngineering`, which lists only
updates installed by Component Based Servicing: updates installed by Windows Installer (MSI,
e.g. Office, SQL Server) or by other installers are missing, as are superseded updates removed
by component cleanup — the Windows Update Agent history (`QueryHistory`) is reported beside it
for that reason. Pending updates come from `IUpdateSearcher::Search("IsInstalled=0 and
Type='Software' and IsHidden=0")`; with `refresh_metadata` false the search is offline
(`Online = $false`: the result of the Windows Update service's own last scan), true makes it
ask the configured source (WSUS or Microsoft Update). A reboot is pending when any of the CBS
`RebootPending` key, the WindowsUpdate `Auto Update\\RebootRequired` key or Session Manager
`PendingFileRenameOperations` is present. PowerShell 3.0+ (`ConvertTo-Json`): Server 2012+.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probes.access import DEFAULT_MAX_BYTES, CommandOutput, HostAccess

REBOOT_REQUIRED_PATH = "/var/run/reboot-required"

DPKG_QUERY = ("dpkg-query", "-W", "-f",
              "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t"
              "${db-fsys:Last-Modified}\t${Source}\n")
APT_SIMULATE = ("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
APT_REFRESH = ("apt-get", "-q", "update")
RPM_QUERY = ("rpm", "-qa", "--qf",
             "%{NAME}\t%{EPOCH}:%{VERSION}-%{RELEASE}\t%{ARCH}\t%{INSTALLTIME}\t"
             "%{SOURCERPM}\n")
NEEDS_RESTARTING = ("needs-restarting", "-r")
POWERSHELL = ("powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
              "-EncodedCommand")

_DEBIAN_IDS = {"debian", "ubuntu", "deepin", "linuxmint", "raspbian", "kali"}
_RPM_IDS = {"rhel", "centos", "openeuler", "rocky", "almalinux", "ol", "fedora", "anolis",
            "opencloudos", "tencentos", "alinux", "euleros", "amzn", "sles", "opensuse-leap"}
_SEVERITIES = ("Critical", "Important", "Moderate", "Low")
_RPM_KERNELS = {"kernel", "kernel-core", "kernel-uek", "kernel-uek-core"}


@dataclass(frozen=True)
class InventoryOptions:
    limit_s: float = 120.0
    """The whole inventory's time budget; each command is killed when it runs out."""
    refresh_metadata: bool = False
    """Refresh package metadata first (the only writing command); Windows: online search."""
    reboot_required_path: str = REBOOT_REQUIRED_PATH
    history_limit: int = 50
    """Windows Update history entries to read (newest first)."""
    oracle_homes: tuple[OracleHomeSpec, ...] = ()
    """Oracle homes (WebLogic / Fusion Middleware, database, grid) to list patches of."""
    opatch_limit_s: float = 120.0
    """Time limit of one `opatch lspatches` (a JVM start: usually 5-30 s)."""
    opatch_max_bytes: int = 1 << 20
    """Output kept of one `opatch lspatches` (a home lists tens of patches, ~60 bytes each)."""


@dataclass(frozen=True)
class OracleHomeSpec:
    path: str
    """The Oracle home (ORACLE_HOME), absolute."""
    user: str | None = None
    """Run opatch as this user through `sudo -n -u USER --` (the home's owner); None: as the
    agent's (or scan) user."""


@dataclass(frozen=True)
class OsRelease:
    id: str
    """os-release ID, lower case (`debian`, `kylin`, `openeuler`), or `windows`."""
    name: str
    version: str
    family: str
    """How it is inventoried: `debian` (dpkg/apt), `rhel` (rpm/dnf/yum), `windows`, or
    `unknown`."""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip() or self.id or "unknown OS"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    installed_at: float | None
    """Epoch seconds; dpkg: when last installed or upgraded (see the module docstring)."""
    source: str | None = None
    """The source package, when it differs from the binary's name or version."""
    source_version: str | None = None

    def row(self) -> list[Any]:
        """`[name, version, arch, installed_at]`, then `source, source_version` only when
        the source package differs (most rows stay four long)."""
        row = [self.name, self.version, self.arch,
               None if self.installed_at is None else int(self.installed_at)]
        if self.source is not None:
            row += [self.source, self.source_version or self.version]
        return row


@dataclass(frozen=True)
class PendingUpdate:
    name: str
    """Package name (rpm: with `.arch`), or the KB number on Windows."""
    current: str | None
    available: str
    """The version to be installed; on Windows the update's title."""
    security: bool
    severity: str | None = None
    """Critical / Important / Moderate / Low, when the repository (or MSRC) gives one."""
    advisories: tuple[str, ...] = ()
    """Advisory ids (RHSA-2024:1234, KB5034439), the most severe first."""
    repo: str = ""

    @property
    def advisory(self) -> str | None:
        return self.advisories[0] if self.advisories else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "current": self.current, "available": self.available,
                "security": self.security, "severity": self.severity,
                "advisories": list(self.advisories), "repo": self.repo}


@dataclass(frozen=True)
class HistoryEntry:
    """One Windows Update history entry."""

    date: str | None
    title: str
    result: str


@dataclass(frozen=True)
class OraclePatch:
    id: str
    description: str


@dataclass(frozen=True)
class OracleHome:
    """What `opatch lspatches` says of one Oracle home."""

    path: str
    patches: tuple[OraclePatch, ...] = ()
    product: str | None = None
    """`weblogic` (a WLS PSU is installed), `oracle` (a database RU/PSU/BP), or None."""
    version: str | None = None
    """That PSU's / RU's version (`12.2.1.4.230702`, `19.22.0.0.240116`): the product version
    the home runs, for the advisory rules."""
    patch_date: str | None = None
    """The PSU / RU date its version ends with (`230702` -> `2023-07-02`)."""
    error: str | None = None
    """Why the patches could not be read (then `patches` is empty and proves nothing)."""

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "product": self.product, "version": self.version,
                "patch_date": self.patch_date,
                "patches": [[p.id, p.description] for p in self.patches],
                "error": self.error}


@dataclass
class Inventory:
    os: OsRelease
    package_manager: str = ""
    kernel_running: str | None = None
    kernel_newest: str | None = None
    packages: list[Package] = field(default_factory=list)
    pending: list[PendingUpdate] = field(default_factory=list)
    pending_known: bool = False
    """Whether `pending` was read (an empty list then means: nothing pending)."""
    reboot_required: bool = False
    reboot_reasons: list[str] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    oracle_homes: list[OracleHome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Parts that could not be read (a failed command, a time limit): our side."""
    notes: list[str] = field(default_factory=list)
    """Things absent but not wrong (needs-restarting not installed, no kernel package)."""
    collected_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def need_reboot(self, why: str) -> None:
        self.reboot_required = True
        if why not in self.reboot_reasons:
            self.reboot_reasons.append(why)


class _Budget:
    """One deadline for all commands of an inventory."""

    def __init__(self, access: HostAccess, limit_s: float) -> None:
        self.access = access
        self._deadline = time.monotonic() + limit_s

    async def run(self, argv: Sequence[str], *, privileged: bool = False,
                  limit_s: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES
                  ) -> CommandOutput:
        left = max(self._deadline - time.monotonic(), 0.5)
        if limit_s is not None:
            left = min(left, limit_s)
        return await self.access.run(argv, limit_s=left, privileged=privileged,
                                     max_bytes=max_bytes)


# --- Linux -------------------------------------------------------------------------------


async def linux_inventory(access: HostAccess, options: InventoryOptions) -> Inventory:
    budget = _Budget(access, options.limit_s)
    release = await _os_release(access)
    inventory = Inventory(os=release)
    uname = await budget.run(["uname", "-r"])
    if uname.ok:
        inventory.kernel_running = uname.text().strip() or None
    else:
        inventory.errors.append(_failure("uname -r", uname))
    if release.family == "unknown":
        inventory.os = await _family_by_package_manager(access, release)
    if inventory.os.family == "debian":
        await _dpkg_inventory(budget, options, inventory)
    elif inventory.os.family == "rhel":
        await _rpm_inventory(budget, options, inventory)
    inventory.oracle_homes = await _oracle_homes(budget, options)
    inventory.errors.extend(f"opatch lspatches {home.path}: {home.error}"
                            for home in inventory.oracle_homes if home.error is not None)
    inventory.collected_at = datetime.now(UTC)
    return inventory


async def _os_release(access: HostAccess) -> OsRelease:
    raw = await access.read_file("/etc/os-release", max_bytes=64 * 1024)
    if raw is None:
        raw = await access.read_file("/usr/lib/os-release", max_bytes=64 * 1024)
    fields = parse_os_release(raw.decode("utf-8", "replace") if raw else "")
    os_id = fields.get("ID", "").lower()
    like = set(fields.get("ID_LIKE", "").lower().split())
    name = fields.get("NAME", "")
    version = fields.get("VERSION_ID", "") or fields.get("VERSION", "")
    if os_id == "debian":
        point = await access.read_file("/etc/debian_version", max_bytes=256)
        text = point.decode("utf-8", "replace").strip() if point else ""
        if re.fullmatch(r"\d+\.\d+", text):   # 12.11; testing/sid say "trixie/sid"
            version = text
    if os_id in _DEBIAN_IDS or ("debian" in like and os_id not in {"kylin", "uos"}):
        family = "debian"
    elif os_id in _RPM_IDS or (like & {"rhel", "centos", "fedora"} and os_id not in
                               {"kylin", "uos"}):
        family = "rhel"
    else:
        family = "unknown"   # kylin, uos and anything else: decided by the package manager
    return OsRelease(id=os_id or "linux", name=_short_name(name), version=version,
                     family=family)


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally shell-quoted."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        fields[key] = " ".join(parts)
    return fields


def _short_name(name: str) -> str:
    # "Debian GNU/Linux" reads better as "Debian"; vendor names are otherwise kept
    return name.removesuffix(" GNU/Linux")


async def _family_by_package_manager(access: HostAccess, release: OsRelease) -> OsRelease:
    family = "unknown"
    if await access.read_file("/var/lib/dpkg/status", max_bytes=1) is not None:
        family = "debian"
    else:
        rpm = await access.run(["rpm", "--version"], limit_s=30)
        if rpm.ok:
            family = "rhel"
    return OsRelease(id=release.id, name=release.name, version=release.version,
                     family=family)


async def _dpkg_inventory(budget: _Budget, options: InventoryOptions,
                          inventory: Inventory) -> None:
    inventory.package_manager = "dpkg"
    if options.refresh_metadata:
        refresh = await budget.run(APT_REFRESH, privileged=True)
        if not refresh.ok:
            inventory.errors.append(_failure("apt-get update", refresh))
    listing = await budget.run(DPKG_QUERY)
    if listing.ok:
        inventory.packages = parse_dpkg_query(listing.text())
    else:
        inventory.errors.append(_failure("dpkg-query -W", listing))
    simulation = await budget.run(APT_SIMULATE)
    if simulation.ok:
        inventory.pending = parse_apt_simulation(simulation.text())
        inventory.pending_known = True
    else:
        inventory.errors.append(_failure("apt-get -s dist-upgrade", simulation))
    flag = await budget.access.read_file(options.reboot_required_path, max_bytes=64 * 1024)
    if flag is not None:
        pkgs = await budget.access.read_file(options.reboot_required_path + ".pkgs",
                                             max_bytes=64 * 1024)
        names = sorted(set(pkgs.decode("utf-8", "replace").split())) if pkgs else []
        inventory.need_reboot(f"{options.reboot_required_path} present"
                              + (f" ({', '.join(names)})" if names else ""))
    kernels = [release for p in inventory.packages
               if (release := debian_kernel_release(p.name)) is not None]
    _judge_kernel(inventory, kernels, flavoured=True)


def parse_dpkg_query(text: str) -> list[Package]:
    """Rows of DPKG_QUERY; packages only removed (config files left) are not installed."""
    packages = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        status, name, version, arch = parts[:4]
        # second letter of Status-Abbrev: n not-installed, c config-files; the rest is on disk
        if len(status) < 2 or status[1] in "nc":
            continue
        stamp = parts[4].strip() if len(parts) > 4 else ""
        source, source_version = _dpkg_source(parts[5] if len(parts) > 5 else "", name,
                                              version)
        packages.append(Package(name, version, arch, float(stamp) if stamp.isdigit() else None,
                                source, source_version))
    return packages


def _dpkg_source(field: str, name: str, version: str) -> tuple[str | None, str | None]:
    """dpkg's Source field: '' (same as the binary), 'openssl' or 'openssl (3.0.11-1)'."""
    field = field.strip()
    if not field:
        return None, None
    source, _, rest = field.partition(" ")
    source_version = rest.strip().removeprefix("(").removesuffix(")").strip() or version
    if source == name and source_version == version:
        return None, None
    return source, source_version


_APT_INST = re.compile(r"^Inst (\S+)(?: \[([^\]]*)\])? \((\S+)(.*?) \[([^\]]+)\]\)")


def parse_apt_simulation(text: str) -> list[PendingUpdate]:
    """`Inst` lines of `apt-get -s dist-upgrade` (apt-get(8) --simulate): `Inst NAME [OLD]
    (NEW Label:Version/Suite[, …] [ARCH])`; no `[OLD]` for a newly pulled-in package."""
    pending = []
    for line in text.splitlines():
        match = _APT_INST.match(line)
        if not match:
            continue
        name, old, new, sources, _arch = match.groups()
        origins = [s.strip() for s in sources.split(",") if s.strip()]
        security = any(_apt_security(origin) for origin in origins)
        pending.append(PendingUpdate(name=name, current=old or None, available=new,
                                     security=security, repo=", ".join(origins)))
    return pending


def _apt_security(origin: str) -> bool:
    label, _, suite = origin.partition("/")
    return suite.endswith("-security") or "security" in label.lower()


def debian_kernel_release(package: str) -> str | None:
    """`linux-image-6.1.0-26-amd64` -> `6.1.0-26-amd64` (what `uname -r` says when it runs);
    metapackages (`linux-image-amd64`) and debug images -> None."""
    match = re.fullmatch(r"linux-image-(?:unsigned-)?(\d[^\s]*?)(-unsigned)?", package)
    if not match or match.group(1).endswith("-dbg"):
        return None
    return match.group(1)


async def _rpm_inventory(budget: _Budget, options: InventoryOptions,
                         inventory: Inventory) -> None:
    inventory.package_manager = "rpm"
    listing = await budget.run(RPM_QUERY)
    if listing.ok:
        inventory.packages = parse_rpm_query(listing.text())
    else:
        inventory.errors.append(_failure("rpm -qa", listing))
    tool = "dnf"
    check = await budget.run(["dnf", "-C", "-q", "check-update"])
    if check.error is not None and check.error.startswith("cannot run"):
        tool = "yum"
        check = await budget.run(["yum", "-C", "-q", "check-update"])
    if options.refresh_metadata:
        # after finding which tool exists; then the check-update is read again, fresh
        refresh = await budget.run([tool, "-q", "makecache"], privileged=True)
        if refresh.ok:
            check = await budget.run([tool, "-C", "-q", "check-update"])
        else:
            inventory.errors.append(_failure(f"{tool} makecache", refresh))
    inventory.package_manager = f"rpm/{tool}"
    if check.exit_code in (0, 100) and not check.timed_out:
        updates = parse_check_update(check.text())
        info_argv = (["dnf", "-C", "-q", "updateinfo", "list", "--updates"] if tool == "dnf"
                     else ["yum", "-C", "-q", "updateinfo", "list", "updates"])
        info = await budget.run(info_argv)
        advisories: list[Advisory] = []
        if info.ok:
            advisories = parse_updateinfo(info.text())
        else:
            inventory.errors.append(_failure(" ".join(info_argv), info))
        installed = {f"{p.name}.{p.arch}": p.version for p in inventory.packages}
        inventory.pending = join_rpm_updates(updates, advisories, installed)
        inventory.pending_known = True
    else:
        inventory.errors.append(_failure(f"{tool} check-update", check))
    restart = await budget.run(NEEDS_RESTARTING)
    if restart.error is not None and restart.error.startswith("cannot run") and tool == "dnf":
        restart = await budget.run(["dnf", "-C", "-q", "needs-restarting", "-r"])
    if restart.exit_code == 1 and "reboot" in restart.text().lower():
        inventory.need_reboot("needs-restarting -r: " + _needs_restarting_what(restart.text()))
    elif restart.exit_code != 0:
        inventory.notes.append("needs-restarting -r unavailable (install dnf-utils or "
                               f"yum-utils): {_failure('needs-restarting -r', restart)}")
    kernels = [f"{p.version.partition(':')[2] or p.version}.{p.arch}"
               for p in inventory.packages if p.name in _RPM_KERNELS]
    _judge_kernel(inventory, kernels, flavoured=False)


def parse_rpm_query(text: str) -> list[Package]:
    packages = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or parts[0] == "gpg-pubkey":
            continue
        name, evr, arch, stamp = parts[:4]
        source = _srpm_name(parts[4]) if len(parts) > 4 else None
        packages.append(Package(name, _evr(evr), arch,
                                float(stamp) if stamp.strip().isdigit() else None,
                                source if source not in (None, name) else None))
    return packages


def _srpm_name(field: str) -> str | None:
    """'openssl-3.0.7-25.el9_3.src.rpm' -> 'openssl' (NAME-VERSION-RELEASE: the name is
    what is left of the last two hyphens); '(none)' for gpg keys and odd packages -> None."""
    field = field.strip()
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if field.endswith(suffix):
            parts = field[:-len(suffix)].rsplit("-", 2)
            return parts[0] if len(parts) == 3 and parts[0] else None
    return None


def _evr(evr: str) -> str:
    """`(none):1.2-3` and `0:1.2-3` -> `1.2-3`; `1:1.2-3` stays (dnf prints it so)."""
    epoch, sep, rest = evr.partition(":")
    if sep and epoch in ("(none)", "0", ""):
        return rest
    return evr


@dataclass(frozen=True)
class RpmUpdate:
    name_arch: str
    version: str
    repo: str


def parse_check_update(text: str) -> list[RpmUpdate]:
    """`dnf/yum check-update` (dnf(8), yum(8)): `NAME.ARCH  [EPOCH:]VERSION-RELEASE  REPO`
    lines, a long name wrapped onto its own line; the "Obsoleting Packages" section ends
    the list."""
    updates = []
    carry: list[str] = []
    for line in text.splitlines():
        if line.startswith("Obsoleting Packages"):
            break
        if line.startswith(("Security:", "Loaded plugins", "Last metadata")):
            continue
        tokens = carry + line.split()
        if not tokens:
            continue
        if len(tokens) < 3:
            carry = tokens
            continue
        carry = []
        if len(tokens) == 3 and "." in tokens[0]:
            updates.append(RpmUpdate(tokens[0], _evr(tokens[1]), tokens[2]))
    return updates


@dataclass(frozen=True)
class Advisory:
    id: str
    security: bool
    severity: str | None
    kind: str
    name_arch: str


def parse_updateinfo(text: str) -> list[Advisory]:
    """`dnf updateinfo list` / `yum updateinfo list` lines: `ID LABEL NEVRA`, LABEL being
    `Critical/Sec.` … `Low/Sec.`, `Unknown/Sec.`, or a type (`bugfix`, `enhancement`,
    `security`, `newpackage`)."""
    advisories = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) != 3:
            continue
        advisory_id, label, nevra = tokens
        name_arch = _nevra_name_arch(nevra)
        if name_arch is None:
            continue
        if label.endswith("/Sec."):
            severity = label.removesuffix("/Sec.")
            advisories.append(Advisory(advisory_id, True,
                                       severity if severity in _SEVERITIES else None,
                                       "security", name_arch))
        elif label.isalpha():
            advisories.append(Advisory(advisory_id, label == "security", None, label,
                                       name_arch))
    return advisories


def _nevra_name_arch(nevra: str) -> str | None:
    """`openssl-libs-1:3.0.7-25.el9_3.x86_64` -> `openssl-libs.x86_64`."""
    rest, dot, arch = nevra.rpartition(".")
    parts = rest.rsplit("-", 2)
    if not dot or len(parts) != 3:
        return None
    return f"{parts[0]}.{arch}"


def join_rpm_updates(updates: list[RpmUpdate], advisories: list[Advisory],
                     installed: dict[str, str]) -> list[PendingUpdate]:
    by_package: dict[str, list[Advisory]] = {}
    for advisory in advisories:
        by_package.setdefault(advisory.name_arch, []).append(advisory)
    pending = []
    for update in updates:
        found = sorted({a.id: a for a in by_package.get(update.name_arch, [])}.values(),
                       key=_advisory_rank)
        severity = next((a.severity for a in found if a.severity), None)
        pending.append(PendingUpdate(
            name=update.name_arch, current=installed.get(update.name_arch),
            available=update.version, security=any(a.security for a in found),
            severity=severity, advisories=tuple(a.id for a in found), repo=update.repo))
    return pending


def _advisory_rank(advisory: Advisory) -> tuple[int, int, str]:
    severity = (_SEVERITIES.index(advisory.severity) if advisory.severity in _SEVERITIES
                else len(_SEVERITIES))
    return (0 if advisory.security else 1, severity, advisory.id)


def _needs_restarting_what(text: str) -> str:
    items = [line.strip().removeprefix("* ").strip() for line in text.splitlines()
             if line.strip().startswith("*")]
    return ("updated since boot: " + ", ".join(items)) if items else "reboot required"


# --- Oracle homes ------------------------------------------------------------------------


def opatch_argv(spec: OracleHomeSpec) -> list[str]:
    """`HOME/OPatch/opatch lspatches -oh HOME`, through `sudo -n -u USER --` when the home
    names its owner (the exact line for the sudoers whitelist: docs/probes/patches.md)."""
    home = spec.path.rstrip("/") or "/"
    argv = [f"{home}/OPatch/opatch", "lspatches", "-oh", home]
    return ["sudo", "-n", "-u", spec.user, "--", *argv] if spec.user else argv


async def read_oracle_homes(access: HostAccess, options: InventoryOptions) -> list[OracleHome]:
    """The patches of `options.oracle_homes`, one opatch at a time (each a JVM), within
    `options.limit_s` (on its own, outside a whole inventory)."""
    return await _oracle_homes(_Budget(access, options.limit_s), options)


async def _oracle_homes(budget: _Budget, options: InventoryOptions) -> list[OracleHome]:
    homes = []
    for spec in options.oracle_homes:
        out = await budget.run(opatch_argv(spec), limit_s=options.opatch_limit_s,
                               max_bytes=options.opatch_max_bytes)
        homes.append(oracle_home_from(spec.path, out))
    return homes


def oracle_home_from(path: str, out: CommandOutput) -> OracleHome:
    """The home from opatch's answer; an error says why the answer proves nothing."""
    text = out.text()
    if out.error is not None or out.exit_code != 0:
        return OracleHome(path, error=_opatch_failure(out, text))
    if out.truncated:
        return OracleHome(path, error=f"output longer than {len(out.stdout)} bytes, cut: "
                                      "not read")
    listing = parse_lspatches(text)
    if not listing.patches and not listing.empty:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return OracleHome(path, error="no patch list in the output"
                                      + (f" ({first[:160]})" if first else " (empty)"))
    product, version = oracle_release(listing.patches)
    return OracleHome(path, listing.patches, product, version, _patch_date(version))


@dataclass(frozen=True)
class LsPatches:
    patches: tuple[OraclePatch, ...]
    empty: bool
    """opatch said the home has no interim patches."""
    succeeded: bool
    """The closing `OPatch succeeded.` line was there."""


_LSPATCH = re.compile(r"^(\d+);(.*)$")


def parse_lspatches(text: str) -> LsPatches:
    """`opatch lspatches` output: one `PATCH_ID;DESCRIPTION` line per installed patch (newest
    applied first), then `OPatch succeeded.`; an empty home prints `There are no Interim
    patches installed in this Oracle Home` (older OPatch with a final `.`, newer with the
    home's path in quotes). Other lines (banners, blank lines) are skipped."""
    patches = []
    empty = succeeded = False
    for raw in text.splitlines():
        line = raw.strip()
        match = _LSPATCH.match(line)
        if match:
            patches.append(OraclePatch(match.group(1), match.group(2).strip()))
        elif line.startswith("There are no Interim patches installed in this Oracle Home"):
            empty = True
        elif line == "OPatch succeeded.":
            succeeded = True
    return LsPatches(tuple(patches), empty, succeeded)


_WLS_PSU = re.compile(r"\bWLS PATCH SET UPDATE\s+(\d+(?:\.\d+){4})\b", re.IGNORECASE)
_DB_UPDATE = re.compile(r"\bDatabase (?:Release Update(?: Revision)?|Patch Set Update|Bundle "
                        r"Patch)\s*:?\s*(\d+(?:\.\d+){4})\b", re.IGNORECASE)


def oracle_release(patches: Sequence[OraclePatch]) -> tuple[str | None, str | None]:
    """(product, version) a home's patches show: the newest WebLogic PSU (`weblogic`), else the
    newest database RU / PSU / bundle patch (`oracle`), else (None, None). A Fusion Middleware
    home's database client update (`... FOR FMW DBCLIENT`) does not make it a database."""
    for product, pattern in (("weblogic", _WLS_PSU), ("oracle", _DB_UPDATE)):
        versions = [m.group(1) for p in patches
                    if (m := pattern.search(p.description))
                    and not (product == "oracle" and "FMW" in p.description.upper())]
        if versions:
            return product, max(versions, key=lambda v: tuple(int(n) for n in v.split(".")))
    return None, None


def _patch_date(version: str | None) -> str | None:
    """`12.2.1.4.230702` -> `2023-07-02`: PSUs and RUs end with their YYMMDD."""
    last = version.rsplit(".", 1)[-1] if version else ""
    if len(last) != 6 or not last.isdigit():
        return None
    try:
        return datetime.strptime(last, "%y%m%d").date().isoformat()
    except ValueError:
        return None


def _opatch_failure(out: CommandOutput, text: str) -> str:
    err = out.stderr.decode("utf-8", "replace")
    if out.argv[:1] == ("sudo",) and "sudo:" in err and (
            "password is required" in err or "not allowed" in err):
        # sudo -n without a matching rule: say so, not just "exit 1"
        line = next(line for line in err.splitlines() if "sudo:" in line)
        return (f"refused by sudo, not in the sudoers whitelist ({line.strip()}); "
                "docs/probes/patches.md has the line to add")
    if out.error is not None:
        return out.error
    # opatch reports its errors on stdout (`OPatch failed with error code 73`, the reason
    # a few lines above it)
    lines = [line.strip() for line in (text + "\n" + err).splitlines() if line.strip()]
    telling = [line for line in lines if re.search(r"error|fail|exception|not |cannot|denied",
                                                   line, re.IGNORECASE)]
    tail = "; ".join(telling[-2:] or lines[-1:])
    return f"exit {out.exit_code}" + (f": {tail[:300]}" if tail else "")


# --- kernels -----------------------------------------------------------------------------


def newest_kernel(running: str | None, installed: Sequence[str], *, flavoured: bool
                  ) -> str | None:
    """The newest installed kernel release comparable with `running`: on Debian-style
    releases (`6.1.0-26-cloud-amd64`) only those of the running flavour."""
    candidates = list(dict.fromkeys(installed))
    if flavoured and running is not None:
        flavour = _kernel_flavour(running)
        same = [k for k in candidates if _kernel_flavour(k) == flavour]
        candidates = same or candidates
    if not candidates:
        return None
    best = candidates[0]
    for kernel in candidates[1:]:
        if compare_versions(kernel, best) > 0:
            best = kernel
    return best


def kernel_reboot_reason(running: str | None, installed: Sequence[str], *,
                         flavoured: bool = True) -> str | None:
    """Why a reboot is needed for the kernel (a newer one installed than runs), or None."""
    newest = newest_kernel(running, installed, flavoured=flavoured)
    if running is None or newest is None or newest == running:
        return None
    if compare_versions(newest, running) > 0:
        return f"kernel {newest} installed, {running} running"
    return None


def _judge_kernel(inventory: Inventory, kernels: list[str], *, flavoured: bool) -> None:
    running = inventory.kernel_running
    if not inventory.packages:
        return
    inventory.kernel_newest = newest_kernel(running, kernels, flavoured=flavoured)
    if not kernels:
        inventory.notes.append("no kernel package installed (a container?): the running "
                               "kernel is not the package manager's")
        return
    why = kernel_reboot_reason(running, kernels, flavoured=flavoured)
    if why is not None:
        inventory.need_reboot(why)


def _kernel_flavour(release: str) -> str:
    return re.sub(r"^[\d.]+-[\d.]+-?", "", release)


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 as `a` sorts before, with, after `b`: an optional numeric `epoch:`, then
    dpkg's ordering (deb-version(7)) on the rest — digit runs numerically, `~` before
    anything, letters before other characters. rpm's rpmvercmp orders the versions the
    kernel and package names carry the same way."""
    epoch_a, rest_a = _split_epoch(a)
    epoch_b, rest_b = _split_epoch(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _verrevcmp(rest_a, rest_b)


def _split_epoch(version: str) -> tuple[int, str]:
    epoch, sep, rest = version.partition(":")
    if sep and epoch.isdigit():
        return int(epoch), rest
    return 0, version


def _char_order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        # the non-digit run, character by character ("end" sorts between ~ and the rest)
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _char_order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _char_order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        start_i, start_j = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        na = int(a[start_i:i] or "0")
        nb = int(b[start_j:j] or "0")
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _failure(what: str, out: CommandOutput) -> str:
    if out.error:
        return f"{what}: {out.error}"
    err = out.stderr.decode("utf-8", "replace").strip().splitlines()
    tail = err[-1] if err else ""
    return f"{what}: exit {out.exit_code}" + (f": {tail[:200]}" if tail else "")


# --- Windows -----------------------------------------------------------------------------

WINDOWS_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$out = [ordered]@{ errors = @() }
function Iso($d) { if ($d -is [datetime]) { $d.ToUniversalTime().ToString('o') } else { $null } }
try {
  $cv = Get-ItemProperty 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
  $out.os = [ordered]@{ ProductName = $cv.ProductName; DisplayVersion = $cv.DisplayVersion;
    ReleaseId = $cv.ReleaseId; CurrentBuild = $cv.CurrentBuild; UBR = $cv.UBR;
    EditionID = $cv.EditionID; InstallationType = $cv.InstallationType }
} catch { $out.errors += "CurrentVersion registry key: $($_.Exception.Message)" }
try {
  $out.hotfixes = @(Get-CimInstance -ClassName Win32_QuickFixEngineering | ForEach-Object {
    $on = $_.InstalledOn
    if ($on -is [datetime]) { $on = $on.ToString('yyyy-MM-dd') } else { $on = [string]$on }
    [ordered]@{ HotFixID = $_.HotFixID; Description = $_.Description; InstalledOn = $on } })
} catch { $out.errors += "Win32_QuickFixEngineering: $($_.Exception.Message)" }
try {
  $session = New-Object -ComObject Microsoft.Update.Session
  $searcher = $session.CreateUpdateSearcher()
  $searcher.Online = @ONLINE@
  $found = $searcher.Search("IsInstalled=0 and Type='Software' and IsHidden=0")
  $out.pending = @(foreach ($u in $found.Updates) { [ordered]@{ Title = $u.Title;
    KBArticleIDs = @($u.KBArticleIDs); MsrcSeverity = $u.MsrcSeverity;
    Categories = @($u.Categories | ForEach-Object { $_.Name });
    LastDeploymentChangeTime = Iso $u.LastDeploymentChangeTime } })
  $count = $searcher.GetTotalHistoryCount()
  $entries = @()
  if ($count -gt 0) { $entries = $searcher.QueryHistory(0, [Math]::Min($count, @HISTORY@)) }
  $out.history = @(foreach ($h in $entries) { [ordered]@{ Date = Iso $h.Date; Title = $h.Title;
    ResultCode = [int]$h.ResultCode; Operation = [int]$h.Operation } })
} catch { $out.errors += "Windows Update Agent: $($_.Exception.Message)" }
$sm = Get-ItemProperty 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' `
  -ErrorAction SilentlyContinue
$cvk = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion'
$out.reboot = [ordered]@{
  CbsRebootPending = Test-Path "$cvk\Component Based Servicing\RebootPending"
  WuRebootRequired = Test-Path "$cvk\WindowsUpdate\Auto Update\RebootRequired"
  PendingFileRenameOperations = ($null -ne $sm.PendingFileRenameOperations) }
$out.collected_at = (Get-Date).ToUniversalTime().ToString('o')
$out | ConvertTo-Json -Depth 5 -Compress
"""

# IUpdateHistoryEntry::ResultCode (OperationResultCode)
_RESULT_CODES = {0: "not_started", 1: "in_progress", 2: "succeeded",
                 3: "succeeded_with_errors", 4: "failed", 5: "aborted"}
_REBOOT_KEYS = {
    "CbsRebootPending": "Component Based Servicing\\RebootPending",
    "WuRebootRequired": "WindowsUpdate\\Auto Update\\RebootRequired",
    "PendingFileRenameOperations": "Session Manager PendingFileRenameOperations",
}


def windows_script(options: InventoryOptions) -> str:
    return (WINDOWS_SCRIPT.replace("@ONLINE@", "$true" if options.refresh_metadata else "$false")
            .replace("@HISTORY@", str(int(options.history_limit))))


async def windows_inventory(access: HostAccess, options: InventoryOptions) -> Inventory:
    # -EncodedCommand (base64 of UTF-16LE) rather than -Command: Windows hands a process one
    # command line, and the double quotes inside the script would not survive its re-parsing
    encoded = base64.b64encode(windows_script(options).encode("utf-16-le")).decode("ascii")
    out = await access.run([*POWERSHELL, encoded], limit_s=options.limit_s)
    if not out.ok or not out.stdout.strip():
        inventory = Inventory(os=OsRelease("windows", "Windows", "", "windows"),
                              package_manager="windows",
                              errors=[_failure("powershell inventory script", out)])
    else:
        inventory = parse_windows(out.stdout.decode("utf-8-sig", "replace"))
    if options.oracle_homes:
        inventory.notes.append("oracle_homes are read on Linux only (opatch.bat is not run)")
    return inventory


def parse_windows(json_text: str) -> Inventory:
    """The inventory from the JSON that WINDOWS_SCRIPT prints."""
    try:
        doc = json.loads(json_text)
    except ValueError as exc:
        return Inventory(os=OsRelease("windows", "Windows", "", "windows"),
                         package_manager="windows",
                         errors=[f"inventory script output is not JSON: {exc}"])
    if not isinstance(doc, dict):
        doc = {}
    info = doc.get("os") or {}
    build = str(info.get("CurrentBuild") or "")
    ubr = info.get("UBR")
    running = f"{build}.{ubr}" if build and ubr is not None else (build or None)
    name = str(info.get("ProductName") or "Windows")
    if info.get("InstallationType") == "Client" and build.isdigit() and int(build) >= 22000:
        name = name.replace("Windows 10", "Windows 11")   # the registry keeps saying 10
    display = info.get("DisplayVersion") or info.get("ReleaseId")
    version = f"{display} (build {running})" if display else f"build {running or '?'}"
    inventory = Inventory(os=OsRelease("windows", name, version, "windows"),
                          package_manager="windows", kernel_running=running)
    inventory.errors.extend(str(e) for e in _as_list(doc.get("errors")))
    for fix in _as_list(doc.get("hotfixes")):
        if isinstance(fix, dict) and fix.get("HotFixID"):
            inventory.packages.append(Package(str(fix["HotFixID"]),
                                              str(fix.get("Description") or ""), "",
                                              _windows_date(fix.get("InstalledOn"))))
    inventory.pending_known = "pending" in doc
    for update in _as_list(doc.get("pending")):
        if not isinstance(update, dict):
            continue
        kbs = tuple(f"KB{kb}" for kb in _as_list(update.get("KBArticleIDs")) if kb)
        categories = [str(c) for c in _as_list(update.get("Categories"))]
        severity = update.get("MsrcSeverity") or None
        title = str(update.get("Title") or "")
        inventory.pending.append(PendingUpdate(
            name=kbs[0] if kbs else title, current=None, available=title,
            security=severity is not None or any("Security" in c for c in categories),
            severity=str(severity) if severity in _SEVERITIES else None,
            advisories=kbs, repo=", ".join(categories)))
    for entry in _as_list(doc.get("history")):
        if isinstance(entry, dict):
            code = entry.get("ResultCode")
            inventory.history.append(HistoryEntry(
                entry.get("Date"), str(entry.get("Title") or ""),
                _RESULT_CODES.get(code, str(code)) if isinstance(code, int) else "unknown"))
    reboot = doc.get("reboot") or {}
    for key, what in _REBOOT_KEYS.items():
        if reboot.get(key) is True:
            inventory.need_reboot(what)
    stamp = doc.get("collected_at")
    if isinstance(stamp, str):
        parsed = _parse_iso(stamp)
        if parsed is not None:
            inventory.collected_at = parsed
    return inventory


def _as_list(value: Any) -> list[Any]:
    """ConvertTo-Json writes a one-element array as the element itself on PowerShell 3/4."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _windows_date(value: Any) -> float | None:
    """InstalledOn: `2024-03-12` (the script's format), `3/12/2024` (the WMI string), or a
    16-digit hex FILETIME that some updates leave there."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for pattern in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    if re.fullmatch(r"[0-9A-Fa-f]{16}", text):
        return int(text, 16) / 10_000_000 - 11_644_473_600
    return None


def _parse_iso(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
