"""Build the offline installation bundles (issue 9, item 3) on a machine that reaches PyPI.

One archive per target platform: the wardwatch wheel, a wheelhouse of every runtime dependency
as binary wheels for CPython 3.11 on that platform, a pinned requirements file with the sha256
of every wheel (the offline install runs pip in `--require-hashes` mode), the sample configs,
the service files found in deploy/ when this runs, the install / uninstall scripts, and a
manifest (MANIFEST.json + SHA256SUMS) with the version and sha256 of every file.

    .venv/bin/python deploy/bundle/build.py                      # this machine's platform
    .venv/bin/python deploy/bundle/build.py --platform all       # x86_64, aarch64, win_amd64
    deploy/build-bundle --platform linux-aarch64 --out dist/bundles

Resolution runs `pip install --dry-run --report` with `--platform/--python-version/--abi`, so
the versions are the newest that have wheels for the target. pip evaluates environment markers
against the *building* interpreter, not the target; every resolved package's requirements are
therefore re-evaluated for the target here, and a dependency pip left out (say a
`sys_platform == "win32"` one) is added and the resolution repeated. `--requirements FILE`
skips resolution and rebuilds exactly a previous pin (reproducible rebuilds).

Downloaded wheels are cached under `--cache` (default .cache/wheelhouse in the repository),
keyed by the sha256 of the pinned requirements, so a rebuild with the same pins is offline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a runtime-only venv: pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment,unused-ignore]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef,assignment,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PYTHON_VERSION = "3.11"
# Sources that make up the wheel; everything else in the working tree stays out
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "agent", "probes", "collector",
                 "alerts")


@dataclass(frozen=True)
class Target:
    """A platform the bundle is built for."""

    name: str                      # used in the archive's name
    os: str                        # linux | windows
    machine: str                   # platform_machine as the target reports it
    arch: str                      # the wheel tag's architecture

    def pip_platforms(self, glibc: tuple[int, int]) -> list[str]:
        if self.os == "windows":
            return [self.arch]
        # manylinux_2_N for every N up to the target's glibc (and the legacy aliases), so
        # wheels tagged for any older glibc are accepted too
        major, minor = glibc
        tags = [f"manylinux_{major}_{n}_{self.arch}" for n in range(minor, 4, -1)]
        tags += [f"manylinux2014_{self.arch}"]
        if self.arch == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    def marker_environment(self) -> dict[str, str]:
        windows = self.os == "windows"
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{PYTHON_VERSION}.0",
            "os_name": "nt" if windows else "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Windows" if windows else "Linux",
            "platform_version": "",
            "python_full_version": f"{PYTHON_VERSION}.0",
            "python_version": PYTHON_VERSION,
            "sys_platform": "win32" if windows else "linux",
            "extra": "",
        }

    @property
    def archive_suffix(self) -> str:
        return ".zip" if self.os == "windows" else ".tar.gz"


TARGETS = {
    "linux-x86_64": Target("linux-x86_64", "linux", "x86_64", "x86_64"),
    "linux-aarch64": Target("linux-aarch64", "linux", "aarch64", "aarch64"),
    "windows-amd64": Target("windows-amd64", "windows", "AMD64", "win_amd64"),
}


def this_machine() -> str:
    machine = platform.machine().lower()
    if sys.platform == "win32":
        return "windows-amd64"
    return {"x86_64": "linux-x86_64", "amd64": "linux-x86_64", "aarch64": "linux-aarch64",
            "arm64": "linux-aarch64"}.get(machine, "linux-x86_64")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    filename: str
    sha256: str


@dataclass
class BuildReport:
    """What one platform's build produced, for the caller and bench/bundle.py."""

    platform: str
    archive: Path
    archive_bytes: int
    wheel_count: int
    wheelhouse_bytes: int
    requirements_sha256: str
    cache_hit: bool
    seconds: dict[str, float] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def log(message: str) -> None:
    print(f"build-bundle: {message}", file=sys.stderr, flush=True)


def pip(args: list[str], *, quiet: bool = True) -> None:
    cmd = [sys.executable, "-m", "pip", *(["-q"] if quiet else []),
           "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"build-bundle: `{' '.join(cmd)}` failed:\n{proc.stdout}")


def build_wheel(out: Path) -> Path:
    """The wardwatch wheel, built from a clean copy of the sources (no build/ left behind
    in the working tree, no caches or tests inside)."""
    with tempfile.TemporaryDirectory(prefix="wardwatch-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in WHEEL_SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.is_file():
                shutil.copy2(path, src / name)
        pip(["wheel", "--no-deps", "-w", str(out), str(src)])
    wheels = sorted(out.glob("wardwatch-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"build-bundle: expected one wardwatch wheel in {out}, found {wheels}")
    return wheels[0]


def wheel_metadata(wheel: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(name).decode())
    return meta["Version"], meta.get_all("Requires-Dist") or []


def target_requirements(requires: list[str], target: Target) -> list[Requirement]:
    env = target.marker_environment()
    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def resolve(wheel: Path, target: Target, glibc: tuple[int, int], index: list[str],
            workdir: Path) -> list[Pin]:
    """Pins for `wheel` and all its runtime dependencies on `target`."""
    extra: dict[str, str] = {}
    for _attempt in range(5):
        report_path = workdir / f"report-{target.name}.json"
        args = ["install", "--dry-run", "--ignore-installed", "--report", str(report_path),
                "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
                "--target", str(workdir / "unused-target"), *index]
        for tag in target.pip_platforms(glibc):
            args += ["--platform", tag]
        pip([*args, str(wheel), *extra.values()])
        report = json.loads(report_path.read_text())
        resolved = {canonicalize_name(item["metadata"]["name"]): item
                    for item in report["install"]}
        missing: dict[str, str] = {}
        for item in report["install"]:
            requires = item["metadata"].get("requires_dist") or []
            for req in target_requirements(requires, target):
                key = canonicalize_name(req.name)
                if key not in resolved:
                    missing[key] = str(Requirement(f"{req.name}{req.specifier}"))
        if not missing:
            break
        log(f"{target.name}: pip skipped {sorted(missing)} (markers evaluated for the build "
            "host); resolving again with them")
        extra.update(missing)
    else:
        raise SystemExit(f"build-bundle: {target.name}: resolution did not settle: {extra}")

    pins = []
    for item in report["install"]:
        name = item["metadata"]["name"]
        if canonicalize_name(name) == "wardwatch":
            continue
        info = item["download_info"]
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        if sha is None:
            raise SystemExit(f"build-bundle: no sha256 from the index for {name}")
        pins.append(Pin(name, item["metadata"]["version"],
                        info["url"].rsplit("/", 1)[-1].split("#", 1)[0], sha))
    return sorted(pins, key=lambda p: canonicalize_name(p.name))


def requirements_text(pins: list[Pin], target: Target) -> str:
    lines = [f"# wardwatch runtime dependencies for {target.name}, CPython {PYTHON_VERSION}",
             "# generated by deploy/bundle/build.py; install with pip --require-hashes"]
    for pin in pins:
        lines.append(f"{pin.name}=={pin.version} \\\n    --hash=sha256:{pin.sha256}")
    return "\n".join(lines) + "\n"


def read_requirements(path: Path) -> list[Pin]:
    """A pinned file written by this script (for a reproducible rebuild)."""
    text = path.read_text().replace("\\\n", " ")
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if match:
            pins.append(Pin(match[1], match[2], "", match[3]))
    if not pins:
        raise SystemExit(f"build-bundle: no pins in {path}")
    return pins


def fill_wheelhouse(pins: list[Pin], requirements: Path, target: Target, glibc: tuple[int, int],
                    index: list[str], cache_root: Path, wheelhouse: Path) -> bool:
    """Put every pinned wheel into `wheelhouse`; True when the cache already had them all."""
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    cache = cache_root / f"{target.name}-{key}"
    wanted = {p.sha256 for p in pins}
    have = {sha256_file(w): w for w in cache.glob("*.whl")} if cache.is_dir() else {}
    hit = wanted <= have.keys()
    if not hit:
        partial = cache.with_name(cache.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        args = ["download", "--no-deps", "--require-hashes", "-r", str(requirements),
                "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
                "-d", str(partial), *index]
        for tag in target.pip_platforms(glibc):
            args += ["--platform", tag]
        pip(args)
        shutil.rmtree(cache, ignore_errors=True)
        partial.rename(cache)
        have = {sha256_file(w): w for w in cache.glob("*.whl")}
        if not wanted <= have.keys():
            raise SystemExit(f"build-bundle: {cache} lacks wheels after download")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for sha in sorted(wanted):
        shutil.copy2(have[sha], wheelhouse / have[sha].name)
    return hit


def git_describe() -> dict[str, object]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def copy_payload(stage: Path, target: Target) -> None:
    """Configs, service files and the install scripts for `target`'s OS."""
    config = stage / "config"
    config.mkdir()
    for sample in sorted(DEPLOY.glob("*.sample.yaml")):
        shutil.copy2(sample, config / sample.name)
    if target.os == "linux":
        scripts = ["install.sh", "uninstall.sh"]
        service_dirs = ["systemd"]
    else:
        scripts = ["install.ps1", "uninstall.ps1"]
        service_dirs = ["windows"]
    for script in scripts:
        shutil.copy2(DEPLOY / script, stage / script)
    for name in service_dirs:
        if (DEPLOY / name).is_dir():
            shutil.copytree(DEPLOY / name, stage / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            log(f"{target.name}: deploy/{name}/ does not exist yet; bundle has no {name} files")
    if (ROOT / "docs" / "deploy.md").is_file():
        (stage / "docs").mkdir()
        shutil.copy2(ROOT / "docs" / "deploy.md", stage / "docs" / "deploy.md")


def write_manifest(stage: Path, target: Target, version: str, pins: list[Pin], wheel: Path,
                   glibc: tuple[int, int]) -> None:
    files = {}
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        rel = path.relative_to(stage).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "name": "wardwatch",
        "version": version,
        "platform": target.name,
        "python": {"implementation": "CPython", "version": PYTHON_VERSION},
        "glibc_min": f"{glibc[0]}.{glibc[1]}" if target.os == "linux" else None,
        "built_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "source": git_describe(),
        "wheel": {"file": wheel.name, "sha256": sha256_file(wheel)},
        "packages": [{"name": p.name, "version": p.version, "sha256": p.sha256} for p in pins],
        "files": files,
    }
    (stage / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sums = "".join(f"{meta['sha256']}  {rel}\n" for rel, meta in files.items())
    sums += f"{sha256_file(stage / 'MANIFEST.json')}  MANIFEST.json\n"
    (stage / "SHA256SUMS").write_text(sums)


def _archive(stage: Path, out: Path, target: Target) -> Path:
    archive = out / f"{stage.name}{target.archive_suffix}"
    tmp = archive.with_name(archive.name + ".tmp")
    # fixed mtimes and owners: the same inputs give the same archive contents
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    if target.os == "windows":
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{stage.name}/{path.relative_to(stage).as_posix()}")
    else:
        def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if epoch is not None:
                info.mtime = epoch
            return info

        with tarfile.open(tmp, "w:gz") as tf:
            tf.add(stage, arcname=stage.name, filter=clean)
    tmp.replace(archive)
    return archive


def build(target: Target, *, out: Path, cache: Path, glibc: tuple[int, int], index: list[str],
          pinned: Path | None, wheel_dir: Path) -> BuildReport:
    seconds: dict[str, float] = {}
    wheel = next(wheel_dir.glob("wardwatch-*.whl"))
    version, _requires = wheel_metadata(wheel)
    stage_name = f"wardwatch-{version}-{target.name}"
    with tempfile.TemporaryDirectory(prefix="wardwatch-bundle-") as tmp:
        work = Path(tmp)
        stage = work / stage_name
        wheels = stage / "wheels"
        wheels.mkdir(parents=True)
        started = time.monotonic()
        if pinned is not None:
            pins = read_requirements(pinned)
        else:
            pins = resolve(wheel, target, glibc, index, work)
        seconds["resolve"] = time.monotonic() - started
        deps = work / "deps.txt"
        deps.write_text(requirements_text(pins, target))
        started = time.monotonic()
        hit = fill_wheelhouse(pins, deps, target, glibc, index, cache, wheels)
        seconds["download"] = time.monotonic() - started
        shutil.copy2(wheel, wheels / wheel.name)
        (stage / "requirements.txt").write_text(
            requirements_text(pins, target)
            + f"wardwatch=={version} \\\n    --hash=sha256:{sha256_file(wheel)}\n")
        copy_payload(stage, target)
        write_manifest(stage, target, version, pins, wheel, glibc)
        out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        archive = _archive(stage, out, target)
        seconds["archive"] = time.monotonic() - started
        wheelhouse_bytes = sum(w.stat().st_size for w in wheels.glob("*.whl"))
        (out / f"{stage_name}.requirements.txt").write_text(
            (stage / "requirements.txt").read_text())
    return BuildReport(platform=target.name, archive=archive,
                       archive_bytes=archive.stat().st_size, wheel_count=len(pins) + 1,
                       wheelhouse_bytes=wheelhouse_bytes,
                       requirements_sha256=sha256_file(out / f"{stage_name}.requirements.txt"),
                       cache_hit=hit, seconds=seconds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build-bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", action="append", metavar="NAME",
                        choices=[*TARGETS, "all"],
                        help=f"one of {', '.join(TARGETS)} or all (repeatable; "
                             f"default: this machine's, {this_machine()})")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "bundles",
                        help="where the archives go (default dist/bundles)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("WARDWATCH_WHEELHOUSE_CACHE",
                                                    ROOT / ".cache" / "wheelhouse")),
                        help="downloaded wheels, keyed by the pinned requirements' sha256")
    parser.add_argument("--glibc", default="2.28",
                        help="oldest glibc of the Linux targets (2.28: RHEL 8, Kylin V10, "
                             "UOS 20)")
    parser.add_argument("--index-url", help="a PyPI mirror (default: pip's configuration)")
    parser.add_argument("--requirements", type=Path,
                        help="rebuild exactly these pins (a previous bundle's "
                             "requirements.txt) instead of resolving; one platform only")
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.platform or [this_machine()]
    if "all" in names:
        names = list(TARGETS)
    if args.requirements is not None and len(names) != 1:
        raise SystemExit("build-bundle: --requirements pins one platform; give one --platform")
    major, _, minor = args.glibc.partition(".")
    glibc = (int(major), int(minor))
    index = ["--index-url", args.index_url] if args.index_url else []
    reports = []
    with tempfile.TemporaryDirectory(prefix="wardwatch-wheel-") as wheel_dir:
        started = time.monotonic()
        wheel = build_wheel(Path(wheel_dir))
        log(f"built {wheel.name} in {time.monotonic() - started:.1f}s")
        for name in names:
            report = build(TARGETS[name], out=args.out.resolve(), cache=args.cache.resolve(),
                           glibc=glibc, index=index, pinned=args.requirements,
                           wheel_dir=Path(wheel_dir))
            log(f"{name}: {report.archive} ({report.archive_bytes / 1e6:.1f} MB, "
                f"{report.wheel_count} wheels, cache {'hit' if report.cache_hit else 'miss'})")
            reports.append(report)
    if args.json:
        json.dump([{"platform": r.platform, "archive": str(r.archive),
                    "archive_bytes": r.archive_bytes, "wheel_count": r.wheel_count,
                    "wheelhouse_bytes": r.wheelhouse_bytes,
                    "requirements_sha256": r.requirements_sha256, "cache_hit": r.cache_hit,
                    "seconds": {k: round(v, 2) for k, v in r.seconds.items()}}
                   for r in reports], sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
