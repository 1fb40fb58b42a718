"""Host probe: CPU, load, memory, swap, filesystems, disk I/O, network errors, uptime and the
kernel's clock discipline, read through psutil so the same check runs on Linux and Windows.

ok        every value below its warning level
warning   a value at or above its warning level
critical  a value at or above its critical level
Levels and their defaults (percentages are 0-100; a level left out of the config keeps its
default, `critical: null` switches one off):
    cpu_percent 90 / 95, memory_percent 90 / 95, swap_percent 80 / 95,
    filesystem_percent 85 / 95, inode_percent 85 / 95 (each filesystem),
    load_per_cpu none (load average of `load_minutes` divided by the logical CPUs),
    clock_offset_seconds 0.5 / 2 (absolute value; evaluated only while the kernel says the
    clock is synchronised, because an unsynchronised kernel's offset means nothing).
Reason codes: ok, cpu_high, memory_high, swap_high, filesystem_full, inodes_full, load_high,
clock_offset, clock_unsynced (only with `require_clock_sync: true`). The worst level wins;
among equal levels the order above decides, and within one kind the highest value. The summary
names that one finding and counts the others; `details.findings` lists them all.

A part of the host that cannot be read (no /proc/diskstats in a container, a seccomp profile
that denies adjtimex, a filesystem that refuses statvfs, Windows without inode counts) yields
fewer metrics and a note in `details.unreadable`, never a failed check.

psutil.disk_partitions(all=False) already leaves out pseudo and network filesystems (on Linux,
every "nodev" type of /proc/filesystems except zfs), so a hung NFS mount cannot stall the probe;
`ignore_fstypes` removes the pseudo types that still come through (squashfs, iso9660, ...).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil
from pydantic import model_validator

from probes.config import CheckConfig, Duration, Regex, Threshold
from probes.result import Metric, ProbeResult, Status, result

KIND = "host"

METRICS = {
    "host_cpu_usage_ratio": "Share of CPU time spent busy over the sample window (0-1).",
    "host_cpu_seconds_total": "CPU time spent in each mode, summed over all CPUs.",
    "host_cpus": "Logical CPUs.",
    "host_load1": "Load average over 1 minute.",
    "host_load5": "Load average over 5 minutes.",
    "host_load15": "Load average over 15 minutes.",
    "host_memory_total_bytes": "Physical memory.",
    "host_memory_available_bytes": "Memory available to new work without swapping.",
    "host_memory_used_ratio": "Share of physical memory not available (0-1).",
    "host_swap_total_bytes": "Swap space (the page file on Windows).",
    "host_swap_used_bytes": "Swap space in use.",
    "host_swap_used_ratio": "Share of swap space in use (0-1; 0 without swap).",
    "host_filesystem_size_bytes": "Filesystem size.",
    "host_filesystem_used_bytes": "Filesystem bytes in use.",
    "host_filesystem_free_bytes": "Filesystem bytes available to unprivileged users.",
    "host_filesystem_used_ratio": "Share of the filesystem in use, as df computes it (0-1).",
    "host_filesystem_inodes": "Inodes of the filesystem.",
    "host_filesystem_inodes_free": "Free inodes of the filesystem.",
    "host_filesystem_inodes_used_ratio": "Share of the filesystem's inodes in use (0-1).",
    "host_disk_read_bytes_total": "Bytes read from the disk.",
    "host_disk_written_bytes_total": "Bytes written to the disk.",
    "host_disk_reads_completed_total": "Read operations completed by the disk.",
    "host_disk_writes_completed_total": "Write operations completed by the disk.",
    "host_network_receive_errors_total": "Receive errors on the interface.",
    "host_network_transmit_errors_total": "Transmit errors on the interface.",
    "host_network_receive_drop_total": "Incoming packets dropped on the interface.",
    "host_network_transmit_drop_total": "Outgoing packets dropped on the interface.",
    "host_boot_time_seconds": "Boot time, seconds since the Unix epoch.",
    "host_uptime_seconds": "Seconds since boot.",
    "host_clock_offset_seconds": "Offset the kernel is still correcting (adjtimex; Linux only).",
    "host_clock_synchronized": "1 when the kernel considers the clock synchronised (Linux only).",
    "host_clock_max_error_seconds": "Kernel's maximum clock error bound (Linux only).",
    "host_clock_estimated_error_seconds": "Kernel's estimated clock error (Linux only).",
}

# Pseudo, image and read-only-media filesystems: always "full" or meaningless to monitor.
DEFAULT_IGNORE_FSTYPES = (
    "autofs", "binfmt_misc", "bpf", "cdfs", "cgroup", "cgroup2", "configfs", "debugfs",
    "devpts", "devtmpfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay",
    "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs",
    "tracefs", "udf",
)
# Partitions (counted again in their whole disk) and RAM/loop/floppy/optical devices, in the
# spirit of node_exporter's diskstats default.
DEFAULT_IGNORE_DISKS = (
    r"^(z?ram|loop|fd|sr)\d+$",
    r"^((h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$",
)
DEFAULT_IGNORE_INTERFACES = (r"^lo$", r"^veth", r"^Loopback Pseudo-Interface")

_LEVELS = ("cpu_percent", "memory_percent", "swap_percent", "filesystem_percent",
           "inode_percent", "load_per_cpu", "clock_offset_seconds")


class HostCheck(CheckConfig):
    """Levels in percent (0-100) except load (per logical CPU) and the clock (seconds).

    Mountpoint, disk and interface filters are regular expressions searched in the name
    (anchor them with ^...$ for an exact match); include empty means every mountpoint.
    """

    kind: Literal["host"]
    cpu_sample_seconds: Duration = 1.0
    cpu_percent: Threshold = Threshold(warning=90, critical=95)
    memory_percent: Threshold = Threshold(warning=90, critical=95)
    swap_percent: Threshold = Threshold(warning=80, critical=95)
    filesystem_percent: Threshold = Threshold(warning=85, critical=95)
    inode_percent: Threshold = Threshold(warning=85, critical=95)
    load_per_cpu: Threshold = Threshold()
    load_minutes: Literal[1, 5, 15] = 5
    clock_offset_seconds: Threshold = Threshold(warning=0.5, critical=2)
    require_clock_sync: bool = False
    """Warn (clock_unsynced) when the kernel reports its clock unsynchronised. Off by default:
    in containers and some VMs the host keeps time and the guest kernel always says unsynced."""
    include_mountpoints: tuple[Regex, ...] = ()
    exclude_mountpoints: tuple[Regex, ...] = ()
    ignore_fstypes: tuple[str, ...] = DEFAULT_IGNORE_FSTYPES
    ignore_disks: tuple[Regex, ...] = DEFAULT_IGNORE_DISKS
    ignore_interfaces: tuple[Regex, ...] = DEFAULT_IGNORE_INTERFACES

    @model_validator(mode="before")
    @classmethod
    def _keep_default_levels(cls, data: Any) -> Any:
        # `filesystem_percent: {warning: 80}` changes the warning level only; the default
        # critical level stays rather than silently disappearing.
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name in _LEVELS:
            given = data.get(name)
            if not isinstance(given, dict):
                continue
            default = cls.model_fields[name].default
            assert isinstance(default, Threshold)
            levels = {**default.model_dump(), **given}
            warning, critical = levels.get("warning"), levels.get("critical")
            if ("warning" not in given and levels.get("direction") == "above"
                    and isinstance(warning, int | float)
                    and isinstance(critical, int | float) and critical < warning):
                raise ValueError(f"{name}: critical {critical:g} is below the default warning "
                                 f"level {warning:g}; give `warning:` as well")
            merged[name] = levels
        return merged

    @model_validator(mode="after")
    def _sample_fits(self) -> HostCheck:
        if self.cpu_sample_seconds >= self.timeout:
            raise ValueError(f"cpu_sample_seconds ({self.cpu_sample_seconds:g}s) must be "
                             f"shorter than timeout ({self.timeout:g}s)")
        return self

    @property
    def target(self) -> str:
        return "localhost"


CONFIG = HostCheck


@dataclass(frozen=True)
class Memory:
    total: int
    available: int
    used_percent: float


@dataclass(frozen=True)
class Swap:
    total: int
    used: int
    used_percent: float


@dataclass(frozen=True)
class Filesystem:
    mountpoint: str
    device: str
    fstype: str
    size: int
    used: int
    free: int
    used_percent: float
    inodes: int | None = None
    inodes_free: int | None = None

    @property
    def inodes_percent(self) -> float | None:
        if not self.inodes or self.inodes_free is None:
            return None  # btrfs, vfat, NTFS: no fixed inode table to run out of
        return (self.inodes - self.inodes_free) / self.inodes * 100


@dataclass(frozen=True)
class DiskIO:
    read_bytes: int
    write_bytes: int
    reads: int
    writes: int


@dataclass(frozen=True)
class NicErrors:
    errin: int
    errout: int
    dropin: int
    dropout: int


@dataclass(frozen=True)
class Clock:
    """The kernel's NTP state from adjtimex(2) with modes 0 (a read; no privilege needed)."""

    offset_seconds: float
    synchronised: bool
    max_error_seconds: float
    estimated_error_seconds: float


@dataclass
class HostSample:
    """What one run read from the host; `None` / empty where that part was not readable."""

    cpu_percent: float | None = None
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpus: int | None = None
    load: tuple[float, float, float] | None = None
    memory: Memory | None = None
    swap: Swap | None = None
    filesystems: list[Filesystem] = field(default_factory=list)
    disks: dict[str, DiskIO] = field(default_factory=dict)
    interfaces: dict[str, NicErrors] = field(default_factory=dict)
    boot_time: float | None = None
    sampled_at: float = 0.0
    clock: Clock | None = None
    unreadable: dict[str, str] = field(default_factory=dict)


async def probe(check: HostCheck) -> ProbeResult:
    cpu, sample = await asyncio.gather(
        asyncio.to_thread(_cpu_percent, check.cpu_sample_seconds),
        asyncio.to_thread(collect, check))
    if isinstance(cpu, str):
        sample.unreadable["cpu_percent"] = cpu
    else:
        sample.cpu_percent = cpu
    return evaluate(sample, check)


def _cpu_percent(window: float) -> float | str:
    """Busy percent over `window` seconds (blocks for the window: run it in a thread)."""
    try:
        return float(psutil.cpu_percent(interval=window))
    except (OSError, psutil.Error, NotImplementedError) as exc:
        return _why(exc)


# Errors a host may raise for a part it does not have or will not show; anything else is
# our bug and reaches the runner as probe_error.
_UNREADABLE = (OSError, psutil.Error, NotImplementedError, RuntimeError)


def collect(check: HostCheck) -> HostSample:
    """Read everything but the CPU busy percent; blocking (a thread's work)."""
    sample = HostSample(sampled_at=time.time())
    try:
        times = psutil.cpu_times()._asdict()
        # guest time is already counted in user/nice; listing it again would double-count
        sample.cpu_seconds = {mode: float(value) for mode, value in times.items()
                              if mode not in {"guest", "guest_nice"}}
    except _UNREADABLE as exc:
        sample.unreadable["cpu_times"] = _why(exc)
    sample.cpus = psutil.cpu_count(logical=True)
    try:
        one, five, fifteen = psutil.getloadavg()
        sample.load = (float(one), float(five), float(fifteen))
    except _UNREADABLE as exc:
        sample.unreadable["load"] = _why(exc)
    try:
        vm = psutil.virtual_memory()
        sample.memory = Memory(total=vm.total, available=vm.available,
                               used_percent=float(vm.percent))
    except _UNREADABLE as exc:
        sample.unreadable["memory"] = _why(exc)
    try:
        sw = psutil.swap_memory()
        sample.swap = Swap(total=sw.total, used=sw.used, used_percent=float(sw.percent))
    except _UNREADABLE as exc:
        sample.unreadable["swap"] = _why(exc)
    _collect_filesystems(check, sample)
    _collect_disks(check, sample)
    _collect_interfaces(check, sample)
    try:
        sample.boot_time = float(psutil.boot_time())
    except _UNREADABLE as exc:
        sample.unreadable["boot_time"] = _why(exc)
    try:
        sample.clock = kernel_clock()
    except OSError as exc:
        sample.unreadable["clock"] = _why(exc)
    return sample


def _collect_filesystems(check: HostCheck, sample: HostSample) -> None:
    try:
        partitions = psutil.disk_partitions(all=False)
    except _UNREADABLE as exc:
        sample.unreadable["filesystems"] = _why(exc)
        return
    ignored = {fstype.lower() for fstype in check.ignore_fstypes}
    include = [re.compile(p) for p in check.include_mountpoints]
    exclude = [re.compile(p) for p in check.exclude_mountpoints]
    seen: set[str] = set()
    for part in partitions:
        mountpoint = part.mountpoint
        if (mountpoint in seen or part.fstype.lower() in ignored
                or (include and not any(p.search(mountpoint) for p in include))
                or any(p.search(mountpoint) for p in exclude)):
            continue
        seen.add(mountpoint)
        try:
            usage = psutil.disk_usage(mountpoint)
        except OSError as exc:  # an empty CD drive, a mount we may not stat
            sample.unreadable[f"filesystem {mountpoint}"] = _why(exc)
            continue
        inodes = inodes_free = None
        if hasattr(os, "statvfs"):  # not on Windows, where NTFS has no inode limit
            try:
                st = os.statvfs(mountpoint)
                inodes, inodes_free = st.f_files, st.f_ffree
            except OSError as exc:
                sample.unreadable[f"inodes {mountpoint}"] = _why(exc)
        sample.filesystems.append(Filesystem(
            mountpoint=mountpoint, device=part.device, fstype=part.fstype, size=usage.total,
            used=usage.used, free=usage.free, used_percent=float(usage.percent),
            inodes=inodes, inodes_free=inodes_free))


def _collect_disks(check: HostCheck, sample: HostSample) -> None:
    try:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=True)
    except _UNREADABLE as exc:
        sample.unreadable["disks"] = _why(exc)
        return
    ignore = [re.compile(p) for p in check.ignore_disks]
    for name, io in (counters or {}).items():
        if not any(p.search(name) for p in ignore):
            sample.disks[name] = DiskIO(read_bytes=io.read_bytes, write_bytes=io.write_bytes,
                                        reads=io.read_count, writes=io.write_count)


def _collect_interfaces(check: HostCheck, sample: HostSample) -> None:
    try:
        counters = psutil.net_io_counters(pernic=True, nowrap=True)
    except _UNREADABLE as exc:
        sample.unreadable["interfaces"] = _why(exc)
        return
    ignore = [re.compile(p) for p in check.ignore_interfaces]
    for name, nic in counters.items():
        if not any(p.search(name) for p in ignore):
            sample.interfaces[name] = NicErrors(errin=nic.errin, errout=nic.errout,
                                                dropin=nic.dropin, dropout=nic.dropout)


# --- the kernel clock (Linux adjtimex), as node_exporter's timex collector reads it ---------

_TIME_ERROR = 5  # adjtimex return value: clock not synchronised
_STA_NANO = 0x2000  # offset in nanoseconds rather than microseconds


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (glibc and musl; `long` fields on LP64 and ILP32)."""

    _fields_ = (
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


def kernel_clock() -> Clock | None:
    """The kernel's NTP discipline state; None where there is no adjtimex (not Linux).

    Raises OSError when the C library cannot be loaded or the call is refused (a seccomp
    profile may deny even the read).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    adjtimex = getattr(libc, "adjtimex", None)
    if adjtimex is None:
        return None
    timex = _Timex()  # modes = 0: a read, which needs no privilege
    state = int(adjtimex(ctypes.byref(timex)))
    if state == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    offset_unit = 1e-9 if timex.status & _STA_NANO else 1e-6
    return Clock(offset_seconds=timex.offset * offset_unit,
                 synchronised=state != _TIME_ERROR,
                 max_error_seconds=timex.maxerror * 1e-6,  # always microseconds
                 estimated_error_seconds=timex.esterror * 1e-6)


# --- evaluation (pure) ------------------------------------------------------------------------

_REASON_ORDER = ("cpu_high", "memory_high", "swap_high", "filesystem_full", "inodes_full",
                 "load_high", "clock_offset", "clock_unsynced")


@dataclass(frozen=True)
class Finding:
    status: Status
    reason: str
    text: str
    value: float


def evaluate(sample: HostSample, check: HostCheck) -> ProbeResult:
    """Status, summary and metrics for `sample` under the levels of `check`."""
    findings: list[Finding] = []

    def judge(reason: str, value: float, threshold: Threshold, what: str, unit: str) -> None:
        level = threshold.evaluate(value)
        if level is not Status.OK:
            bound = _level_text(level, threshold, unit)
            findings.append(Finding(level, reason, f"{what} ({bound})", value))

    if sample.cpu_percent is not None:
        judge("cpu_high", sample.cpu_percent, check.cpu_percent,
              f"cpu {sample.cpu_percent:.1f} % busy", " %")
    if sample.memory is not None:
        judge("memory_high", sample.memory.used_percent, check.memory_percent,
              f"memory {sample.memory.used_percent:.1f} % used", " %")
    if sample.swap is not None and sample.swap.total > 0:
        judge("swap_high", sample.swap.used_percent, check.swap_percent,
              f"swap {sample.swap.used_percent:.1f} % used", " %")
    for fs in sample.filesystems:
        judge("filesystem_full", fs.used_percent, check.filesystem_percent,
              f"filesystem {fs.mountpoint} {fs.used_percent:.1f} % used", " %")
        inodes = fs.inodes_percent
        if inodes is not None:
            judge("inodes_full", inodes, check.inode_percent,
                  f"filesystem {fs.mountpoint} {inodes:.1f} % of inodes used", " %")
    if sample.load is not None and sample.cpus:
        load = sample.load[{1: 0, 5: 1, 15: 2}[check.load_minutes]]
        per_cpu = load / sample.cpus
        judge("load_high", per_cpu, check.load_per_cpu,
              f"load {check.load_minutes}m {per_cpu:.2f} per cpu ({load:.2f} on "
              f"{sample.cpus} cpus)", "")
    if sample.clock is not None:
        if sample.clock.synchronised:
            offset = sample.clock.offset_seconds
            judge("clock_offset", abs(offset), check.clock_offset_seconds,
                  f"clock offset {offset:+.3f} s", " s")
        elif check.require_clock_sync:
            findings.append(Finding(Status.WARNING, "clock_unsynced",
                                    "clock not synchronised (kernel reports TIME_ERROR)", 1.0))

    findings.sort(key=lambda f: (-f.status.severity, _REASON_ORDER.index(f.reason), -f.value))
    metrics = tuple(_metrics(sample))
    details = _details(sample, findings)
    if not findings:
        return result(Status.OK, "ok", _ok_summary(sample, check), metrics=metrics,
                      details=details)
    worst = findings[0]
    summary = worst.text
    if len(findings) > 1:
        others = len(findings) - 1
        summary += f"; {others} more finding{'s' if others > 1 else ''}"
    return result(worst.status, worst.reason, summary, metrics=metrics, details=details)


def _level_text(level: Status, threshold: Threshold, unit: str) -> str:
    bound = threshold.critical if level is Status.CRITICAL else threshold.warning
    sign = "≥" if threshold.direction == "above" else "≤"
    return f"{level.value} {sign} {bound:g}{unit}"


def _ok_summary(sample: HostSample, check: HostCheck) -> str:
    parts: list[str] = []
    if sample.cpu_percent is not None:
        parts.append(f"cpu {sample.cpu_percent:.0f} %")
    if sample.memory is not None:
        parts.append(f"memory {sample.memory.used_percent:.0f} %")
    if sample.swap is not None and sample.swap.total > 0:
        parts.append(f"swap {sample.swap.used_percent:.0f} %")
    if sample.load is not None:
        parts.append("load " + "/".join(f"{v:.2f}" for v in sample.load))
    if sample.filesystems:
        fullest = max(sample.filesystems, key=lambda fs: fs.used_percent)
        count = len(sample.filesystems)
        parts.append(f"{count} filesystem{'s' if count > 1 else ''} "
                     f"(fullest {fullest.mountpoint} {fullest.used_percent:.0f} %)")
    if sample.boot_time is not None:
        parts.append(f"up {_duration(sample.sampled_at - sample.boot_time)}")
    if sample.unreadable:
        parts.append("not readable: " + ", ".join(sorted(sample.unreadable)))
    return ", ".join(parts) or "nothing readable on this host"


def _duration(seconds: float) -> str:
    days, rest = divmod(int(max(seconds, 0)), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours} h" if days else f"{hours} h {rest // 60} min"


def _metrics(sample: HostSample) -> list[Metric]:
    out: list[Metric] = []

    def add(name: str, value: float, **labels: str) -> None:
        out.append(Metric(name=name, value=value, labels=labels))

    if sample.cpu_percent is not None:
        add("host_cpu_usage_ratio", sample.cpu_percent / 100)
    for mode, seconds in sample.cpu_seconds.items():
        add("host_cpu_seconds_total", seconds, mode=mode)
    if sample.cpus:
        add("host_cpus", sample.cpus)
    if sample.load is not None:
        for minutes, value in zip((1, 5, 15), sample.load, strict=True):
            add(f"host_load{minutes}", value)
    if sample.memory is not None:
        add("host_memory_total_bytes", sample.memory.total)
        add("host_memory_available_bytes", sample.memory.available)
        add("host_memory_used_ratio", sample.memory.used_percent / 100)
    if sample.swap is not None:
        add("host_swap_total_bytes", sample.swap.total)
        add("host_swap_used_bytes", sample.swap.used)
        add("host_swap_used_ratio", sample.swap.used_percent / 100)
    for fs in sample.filesystems:
        labels = {"mountpoint": fs.mountpoint, "fstype": fs.fstype, "device": fs.device}
        add("host_filesystem_size_bytes", fs.size, **labels)
        add("host_filesystem_used_bytes", fs.used, **labels)
        add("host_filesystem_free_bytes", fs.free, **labels)
        add("host_filesystem_used_ratio", fs.used_percent / 100, **labels)
        inodes = fs.inodes_percent
        if inodes is not None and fs.inodes is not None and fs.inodes_free is not None:
            add("host_filesystem_inodes", fs.inodes, **labels)
            add("host_filesystem_inodes_free", fs.inodes_free, **labels)
            add("host_filesystem_inodes_used_ratio", inodes / 100, **labels)
    for name, io in sample.disks.items():
        add("host_disk_read_bytes_total", io.read_bytes, device=name)
        add("host_disk_written_bytes_total", io.write_bytes, device=name)
        add("host_disk_reads_completed_total", io.reads, device=name)
        add("host_disk_writes_completed_total", io.writes, device=name)
    for name, nic in sample.interfaces.items():
        add("host_network_receive_errors_total", nic.errin, interface=name)
        add("host_network_transmit_errors_total", nic.errout, interface=name)
        add("host_network_receive_drop_total", nic.dropin, interface=name)
        add("host_network_transmit_drop_total", nic.dropout, interface=name)
    if sample.boot_time is not None:
        add("host_boot_time_seconds", sample.boot_time)
        add("host_uptime_seconds", max(sample.sampled_at - sample.boot_time, 0.0))
    if sample.clock is not None:
        add("host_clock_offset_seconds", sample.clock.offset_seconds)
        add("host_clock_synchronized", 1.0 if sample.clock.synchronised else 0.0)
        add("host_clock_max_error_seconds", sample.clock.max_error_seconds)
        add("host_clock_estimated_error_seconds", sample.clock.estimated_error_seconds)
    return out


def _details(sample: HostSample, findings: list[Finding]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "findings": [{"status": f.status.value, "reason": f.reason, "text": f.text}
                     for f in findings],
        "filesystems": [{"mountpoint": fs.mountpoint, "device": fs.device, "fstype": fs.fstype,
                         "used_percent": round(fs.used_percent, 1),
                         "inodes_used_percent": (None if fs.inodes_percent is None
                                                 else round(fs.inodes_percent, 1))}
                        for fs in sample.filesystems],
    }
    if sample.cpu_percent is not None:
        details["cpu_percent"] = sample.cpu_percent
    if sample.memory is not None:
        details["memory_percent"] = sample.memory.used_percent
    if sample.swap is not None:
        details["swap_percent"] = sample.swap.used_percent
    if sample.load is not None:
        details["load"] = list(sample.load)
    if sample.clock is not None:
        details["clock"] = {"synchronised": sample.clock.synchronised,
                            "offset_seconds": sample.clock.offset_seconds,
                            "max_error_seconds": sample.clock.max_error_seconds}
    if sample.unreadable:
        details["unreadable"] = dict(sample.unreadable)
    return details


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
