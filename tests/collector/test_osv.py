"""OSV bundles for OS packages: imported with the CLI from a zip shaped like osv.dev's all.zip,
a directory or one file; host inventories (the `patches` results' package rows) matched in the
host's ecosystem with exact dpkg / rpm ordering; findings `osv:<ID>` opened, KEV-marked and
fixed by a later inventory. Fixture records: tests/collector/fixtures/osv/README.md (shape per
the OSV schema, https://ossf.github.io/osv-schema/)."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.findings import FindingsService
from collector.osv import IndexBuilder, OsvAdvisories, OsvIndex, host_ecosystems, read_records
from collector.store import Store, StoreError, utcnow
from collector.versions import dpkg_compare
from probes.inventory import DPKG_QUERY, parse_dpkg_query
from probes.result import CheckResult, Status
from tests.services import needs

FIXTURES = Path(__file__).parent / "fixtures" / "osv"
T0 = utcnow() - timedelta(days=10)
DEBIAN_12 = {"id": "debian", "name": "Debian", "version": "12.11", "family": "debian"}
RHEL_9 = {"id": "rhel", "name": "Red Hat Enterprise Linux", "version": "9.4", "family": "rhel"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def all_zip(tmp_path: Path) -> Path:
    """The fixture records as osv.dev exports them: all.zip, one `<file>.json` per record."""
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(FIXTURES.glob("*.json")):
            archive.write(file, file.name)
    return path


def inventory(host: str, days: float, os: dict[str, str], packages: list[list[Any]] | None,
              digest: str) -> CheckResult:
    details: dict[str, Any] = {"os": os, "pending": [], "packages_hash": digest}
    if packages is not None:
        details["packages"] = packages
    return CheckResult(agent_id=host, check_id="patches", kind="patches", status=Status.OK,
                       reason="ok", started_at=T0 + timedelta(days=days), duration_s=1.0,
                       interval_s=21600, summary="", details=details)


def row(name: str, version: str, arch: str = "amd64") -> list[Any]:
    return [name, version, arch, 1_700_000_000]


@pytest.mark.parametrize(("os", "expected"), [
    (DEBIAN_12, ("dpkg", ("Debian:12", "Debian"), ())),
    ({"id": "ubuntu", "version": "22.04"}, ("dpkg", ("Ubuntu:22.04:LTS",), ())),
    ({"id": "ubuntu", "version": "23.10"}, ("dpkg", ("Ubuntu:23.10",), ())),
    (RHEL_9, ("rpm", (), ("Red Hat:enterprise_linux:9::",))),
    ({"id": "almalinux", "version": "9.4"}, ("rpm", ("AlmaLinux:9", "AlmaLinux"), ())),
    ({"id": "rocky", "version": "8.10"}, ("rpm", ("Rocky Linux:8", "Rocky Linux"), ())),
    ({"id": "openeuler", "version": "22.03"}, ("rpm", (), ("openEuler:22.03-LTS",))),
])
def test_host_ecosystems_from_the_inventory_os(os: dict[str, str],
                                               expected: tuple[Any, ...]) -> None:
    found = host_ecosystems(os)
    assert found is not None
    assert (found.scheme, found.exact, found.prefixes) == expected


@pytest.mark.parametrize("os_id", ["kylin", "uos", "centos", "windows", ""])
def test_families_without_an_osv_feed(os_id: str) -> None:
    assert host_ecosystems({"id": os_id, "version": "10"}) is None


def test_index_keeps_ranges_skips_withdrawn_and_other_ecosystems() -> None:
    records, _digest = read_records(FIXTURES)
    builder = IndexBuilder()
    for record in records:
        builder.add(record)
    index = builder.index()
    assert "DEBIAN-CVE-2022-00001" not in index["vulns"]          # withdrawn
    assert builder.skipped == {"npm": 1}
    assert index["packages"]["Debian:12"]["bash"] == [
        ["DEBIAN-CVE-2023-99991", "r", "5.1-1", "5.1-6"],
        ["DEBIAN-CVE-2023-99991", "l", "5.2.15-2+b5", "5.2.15-2+b7"]]
    assert index["vulns"]["DSA-5808-1"]["cves"] == ["CVE-2023-22809", "CVE-2023-28486"]
    ubuntu = index["vulns"]["UBUNTU-CVE-2024-6119"]
    assert ubuntu["severity"] == "high" and ubuntu["cvss"].startswith("CVSS:3.1/")
    assert index["vulns"]["RHSA-2024:2447"]["severity"] == "medium"
    assert index["vulns"]["OESA-2024-1234"]["severity"] == "high"
    # a later `modified` of the same id replaces the earlier record
    newer = dict(records[[r["id"] for r in records].index("DSA-5808-1")])
    newer["modified"] = "2026-11-30T00:00:00Z"
    newer["affected"] = [{"package": {"ecosystem": "Debian:12", "name": "sudo"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.9.16p2-1"}]}]}]
    builder.add(newer)
    assert builder.index()["packages"]["Debian:12"]["sudo"] == [
        ["DSA-5808-1", "r", "0", "1.9.16p2-1"]]


def _index() -> OsvIndex:
    records, _digest = read_records(FIXTURES)
    builder = IndexBuilder()
    for record in records:
        builder.add(record)
    return OsvIndex([(1, builder.index())])


def test_ranges_in_dpkg_order() -> None:
    index = _index()
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    hits = {(h.vuln_id, h.version) for h in index.match(debian, [
        row("openssl", "3.0.11-1~deb12u2"),       # before the fix: affected
        row("openssl", "3.0.14-1~deb12u2"),       # the fixed version itself: not
        row("openssl", "3.0.14-1~deb12u1"),       # ~ sorts before: affected
        row("bash", "5.1-5"),                     # inside [5.1-1, 5.1-6)
        row("bash", "5.1-6"),                     # fixed
        row("bash", "5.2.15-2+b7"),               # last_affected, included
        row("bash", "5.2.15-2+b8"),               # after it
        row("sudo", "1.9.13p3-1"),                # p3-1 < p3-1+deb12u1
        row("libssl3", "3.0.11-1~deb12u2"),       # binary named otherwise: not matched
    ])}
    assert hits == {("DEBIAN-CVE-2024-6119", "3.0.11-1~deb12u2"),
                    ("DEBIAN-CVE-2024-6119", "3.0.14-1~deb12u1"),
                    ("DEBIAN-CVE-2023-99991", "5.1-5"),
                    ("DEBIAN-CVE-2023-99991", "5.2.15-2+b7"),
                    ("DSA-5808-1", "1.9.13p3-1")}
    # Debian 11's range is not Debian 12's
    bullseye = host_ecosystems({"id": "debian", "version": "11.9"})
    assert bullseye is not None
    assert [h.fixed for h in index.match(bullseye, [row("openssl", "3.0.11-1~deb12u2")])] == []
    assert [h.fixed for h in index.match(bullseye, [row("openssl", "1.1.1w-0+deb11u1")])] == [
        "1.1.1w-0+deb11u2"]


def test_ranges_in_rpm_order_with_epochs_and_streams() -> None:
    index = _index()
    rhel = host_ecosystems(RHEL_9)
    assert rhel is not None
    # the inventory drops a zero epoch and keeps others (probes/inventory.py `_evr`)
    hits = [(h.package, h.version, h.fixed) for h in index.match(rhel, [
        row("openssl-libs", "1:3.0.7-25.el9_3", "x86_64"),
        row("openssl-libs", "1:3.0.7-27.el9", "i686"),
        row("openssl-libs", "3.0.7-99.el9", "x86_64"),       # epoch 0 < 1: still affected
    ])]
    assert hits == [("openssl-libs", "1:3.0.7-25.el9_3", "1:3.0.7-27.el9"),
                    ("openssl-libs", "3.0.7-99.el9", "1:3.0.7-27.el9")]
    alma = host_ecosystems({"id": "almalinux", "version": "9.4"})
    assert alma is not None
    assert len(index.match(alma, [row("openssl", "1:3.0.7-25.el9_3")])) == 1
    # openEuler: the stream (LTS-SP1 / SP3) comes from each package's release tag
    euler = host_ecosystems({"id": "openeuler", "version": "22.03"})
    assert euler is not None
    sp1 = index.match(euler, [row("openssl", "1:1.1.1m-20.oe2203sp1")])
    assert [(h.ecosystem, h.fixed) for h in sp1] == [
        ("openEuler:22.03-LTS-SP1", "1:1.1.1m-22.oe2203sp1")]
    assert index.match(euler, [row("openssl", "1:1.1.1m-22.oe2203sp1")]) == []
    assert [h.ecosystem for h in index.match(euler, [row("openssl", "1:1.1.1wa-1.oe2203sp3")])
            ] == ["openEuler:22.03-LTS-SP3"]


async def test_cli_import_then_inventories_open_and_fix_findings(tmp_path: Path) -> None:
    data = {"store": f"sqlite:///{tmp_path}/c.db"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    conf = ["--config", str(tmp_path / "c.yaml")]
    kev = tmp_path / "kev.json"
    kev.write_text(json.dumps({"catalogVersion": "2026.11.20", "dateReleased":
                               "2026-11-20T17:00:00.000Z",
                               "vulnerabilities": [{"cveID": "CVE-2023-22809"}]}))
    done = await asyncio.to_thread(cli, "advisories", "import", str(kev), "--kind", "kev",
                                   *conf)
    assert done.returncode == 0, done.stderr

    store = await Store.open(data["store"])
    try:
        service = FindingsService(store)
        packages = [row("openssl", "3.0.11-1~deb12u2"), row("libssl3", "3.0.11-1~deb12u2"),
                    row("sudo", "1.9.13p3-1"), row("bash", "5.2.15-2+b8")]
        await service.observe([inventory("deb-01", 0, DEBIAN_12, packages, "h1"),
                               inventory("rhel-01", 0, RHEL_9,
                                         [row("openssl-libs", "1:3.0.7-27.el9", "x86_64")],
                                         "r1")])
        assert (await service.host("deb-01", utcnow()))["findings"] == []   # no bundle yet
    finally:
        await store.close()

    bundle = all_zip(tmp_path)
    done = await asyncio.to_thread(cli, "advisories", "import", str(bundle), "--kind", "osv",
                                   "--by", "信息科", *conf)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["source_date"] == "2026-11-10T10:00:00Z"      # newest `modified`
    assert imported["entries"] == 7 and imported["skipped"] == {"npm": 1}
    assert imported["findings_opened"] == 2                        # openssl and sudo on deb-01
    again = await asyncio.to_thread(cli, "advisories", "import", str(bundle), "--kind", "osv",
                                    *conf)
    assert again.returncode == 0 and "imported before" in again.stderr
    listed = await asyncio.to_thread(cli, "advisories", "list", *conf)
    assert [json.loads(line)["kind"] for line in listed.stdout.splitlines()] == ["kev", "osv"]

    store = await Store.open(data["store"])
    try:
        service = FindingsService(store)
        found = {f["key"]: f for f in (await service.host("deb-01", utcnow()))["findings"]}
        assert set(found) == {"osv:DEBIAN-CVE-2024-6119", "osv:DSA-5808-1"}
        openssl = found["osv:DEBIAN-CVE-2024-6119"]
        assert openssl["first_seen"] == T0.isoformat()    # seen in the inventory of day 0
        assert openssl["data"]["fixed"] == "3.0.14-1~deb12u2"
        assert openssl["data"]["cves"] == ["CVE-2024-6119"]
        assert openssl["data"]["kev"] is False
        assert found["osv:DSA-5808-1"]["data"]["kev"] is True       # CVE-2023-22809 in KEV
        assert "fixed in 1.9.13p3-1+deb12u1" in found["osv:DSA-5808-1"]["title"]
        assert (await service.host("rhel-01", utcnow()))["findings"] == []   # already fixed
        [deb] = [h for h in await service.fleet(utcnow()) if h["host"] == "deb-01"]
        assert deb["kev_findings"] == 1

        # day 1: nothing changed, the agent sends only the hash: the stored list is matched
        await service.observe([inventory("deb-01", 1, DEBIAN_12, None, "h1")])
        found = {f["key"]: f for f in (await service.host("deb-01", utcnow()))["findings"]}
        assert {f["state"] for f in found.values()} == {"open"}
        assert found["osv:DSA-5808-1"]["last_seen"] == (T0 + timedelta(days=1)).isoformat()
        # day 3: openssl upgraded past the fix, sudo not yet
        upgraded = [row("openssl", "3.0.15-1~deb12u1"), row("libssl3", "3.0.15-1~deb12u1"),
                    row("sudo", "1.9.13p3-1"), row("bash", "5.2.15-2+b8")]
        await service.observe([inventory("deb-01", 3, DEBIAN_12, upgraded, "h2")])
        found = {f["key"]: f for f in (await service.host("deb-01", utcnow()))["findings"]}
        assert found["osv:DEBIAN-CVE-2024-6119"]["state"] == "fixed"
        assert found["osv:DEBIAN-CVE-2024-6119"]["time_to_fix_s"] == 3 * 86400
        assert found["osv:DSA-5808-1"]["state"] == "open"
        # an inventory that carries no package list and an unknown hash fixes nothing
        await service.observe([inventory("deb-01", 4, DEBIAN_12, None, "unknown")])
        found = {f["key"]: f for f in (await service.host("deb-01", utcnow()))["findings"]}
        assert found["osv:DSA-5808-1"]["state"] == "open"
    finally:
        await store.close()


async def test_newest_bundle_per_ecosystem_is_in_force(store: Store, tmp_path: Path) -> None:
    osv = OsvAdvisories(store)
    first = await osv.import_path(FIXTURES, source="dir", source_date="", by="t", now=utcnow())
    assert first["new"] and "Debian:12" in first["ecosystems"]
    newer = tmp_path / "DSA-5808-2.json"
    newer.write_text(json.dumps({
        "id": "DSA-5808-2", "modified": "2026-12-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": "Debian:12", "name": "sudo"},
             "ranges": [{"type": "ECOSYSTEM",
                         "events": [{"introduced": "0"}, {"fixed": "1.9.16p2-1"}]}]}]}))
    second = await osv.import_path(newer, source="one file", source_date="2026-12-01",
                                   by="t", now=utcnow())
    assert second["entries"] == 1 and second["ecosystems"] == ["Debian:12"]
    index = await osv.in_force()
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    # Debian:12 now comes from the newer bundle only; Red Hat still from the first
    assert [h.vuln_id for h in index.match(debian, [row("openssl", "3.0.9-1"),
                                                    row("sudo", "1.9.13p3-1")])] == [
        "DSA-5808-2"]
    assert index.bundle_of["Debian:12"] != index.bundle_of["Red Hat:enterprise_linux:9::baseos"]


async def test_not_osv_is_refused(store: Store, tmp_path: Path) -> None:
    osv = OsvAdvisories(store)
    bad = tmp_path / "kev.json"
    bad.write_text(json.dumps({"vulnerabilities": []}))
    with pytest.raises(StoreError, match="not an OSV record"):
        await osv.import_path(bad, source="x", source_date="", by="t", now=utcnow())
    npm_only = tmp_path / "npm"
    npm_only.mkdir()
    (npm_only / "a.json").write_bytes((FIXTURES / "GHSA-7fh5-64p2-3v2j.json").read_bytes())
    with pytest.raises(StoreError, match="skipped: npm 1"):
        await osv.import_path(npm_only, source="x", source_date="", by="t", now=utcnow())


async def test_this_machines_dpkg_inventory_is_matched(tmp_path: Path) -> None:
    """Real rows of this Debian machine: a record whose fix is one revision past the
    installed dpkg matches it; one fixed at the installed version does not."""
    listing = await asyncio.to_thread(
        subprocess.run, ["dpkg-query", "-W", "-f",
                         "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t\n"],
        capture_output=True, text=True, check=True, timeout=60)
    packages = [p.row() for p in parse_dpkg_query(listing.stdout)]
    [dpkg] = [r for r in packages if r[0] == "dpkg"]
    records = [
        {"id": "TEST-1", "modified": "2026-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": "Debian:12", "name": "dpkg"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                 {"fixed": dpkg[1] + "+deb12u1"}]}]}]},
        {"id": "TEST-2", "modified": "2026-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": "Debian:12", "name": "dpkg"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": dpkg[1]}]}]}]},
    ]
    builder = IndexBuilder()
    for record in records:
        builder.add(record)
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    hits = OsvIndex([(1, builder.index())]).match(debian, packages)
    assert [(h.vuln_id, h.package) for h in hits] == [("TEST-1", "dpkg")]


async def test_a_library_is_matched_through_its_source_package() -> None:
    """Debian's feed names source packages: this machine's libssl3 (source openssl) is hit
    by an openssl advisory fixed one revision past the installed openssl, and the finding
    names libssl3; an advisory fixed at the installed version hits nothing."""
    listing = await asyncio.to_thread(subprocess.run, list(DPKG_QUERY), capture_output=True,
                                      text=True, check=True, timeout=60)
    packages = [p.row() for p in parse_dpkg_query(listing.stdout)]
    [libssl] = [r for r in packages if r[0] == "libssl3"]
    assert libssl[4] == "openssl"
    source_version = libssl[5]
    records = [
        {"id": f"TEST-{n}", "modified": "2026-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": "Debian:12", "name": "openssl"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}
        for n, fixed in ((1, source_version + "+deb12u9"), (2, source_version))]
    builder = IndexBuilder()
    for record in records:
        builder.add(record)
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    hits = OsvIndex([(1, builder.index())]).match(debian, packages)
    assert {h.vuln_id for h in hits} == {"TEST-1"}
    assert ("libssl3", libssl[1]) in {(h.package, h.version) for h in hits}
    assert all(h.vuln_id != "TEST-2" for h in hits)


KERNEL_FIXTURES = Path(__file__).parents[1] / "probes" / "fixtures" / "kernel"


def _index_of(*records: dict[str, Any]) -> OsvIndex:
    builder = IndexBuilder()
    for record in records:
        builder.add(record)
    return OsvIndex([(1, builder.index())])


def test_a_real_linux_dsa_matches_installed_kernel_images_running_or_not() -> None:
    """DSA-5900-1 (source `linux`, fixed 6.1.133-1) against a recorded Debian 12 inventory:
    the old image 6.1.0-32 (from linux-signed-amd64, not running) is affected; the running
    6.1.0-33 is fixed; linux-libc-dev and linux-perf, built from `linux` at the vulnerable
    version, carry no kernel and are not findings; nor is the linux-image-amd64 metapackage
    or an image removed with its configuration files left."""
    record = json.loads((KERNEL_FIXTURES / "DSA-5900-1.json").read_text())
    packages = [p.row() for p in parse_dpkg_query(
        (KERNEL_FIXTURES / "dpkg-query-debian12.txt").read_text())]
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    index = _index_of(record)
    found = index.findings(debian, packages, kernel_running="6.1.0-33-amd64")
    assert list(found) == ["osv:DSA-5900-1"]
    finding = found["osv:DSA-5900-1"]
    assert finding["data"]["packages"] == [
        {"name": "linux-image-6.1.0-32-amd64", "version": "6.1.129-1", "fixed": "6.1.133-1",
         "ecosystem": "Debian:12", "running": False}]
    assert len(finding["data"]["cves"]) == 108 and "CVE-2025-21756" in finding["data"]["cves"]
    assert finding["title"].startswith(
        "DSA-5900-1 linux-image-6.1.0-32-amd64 6.1.129-1 (fixed in 6.1.133-1)")
    # booted into the old image: the same finding, and the row says it is the running one
    booted_old = index.findings(debian, packages, kernel_running="6.1.0-32-amd64")
    assert booted_old["osv:DSA-5900-1"]["data"]["packages"][0]["running"] is True
    # the old image removed: nothing affected is left
    rest = [r for r in packages if r[0] != "linux-image-6.1.0-32-amd64"]
    assert index.findings(debian, rest) == {}


def test_kernel_images_from_this_machines_apt_lists_are_matched_on_linux() -> None:
    """This machine's own data: the kernel image Debian's archive offers it (apt lists, the
    same fields dpkg would record once it is installed) and every package dpkg has installed.
    An advisory for `linux` fixed just past that image's version hits the image through its
    signing source; the machine's installed linux-libc-dev / linux-perf (source `linux`) are
    not findings even where their version lies in the range."""
    apt_cache = shutil.which("apt-cache")
    needs(apt_cache is not None, "apt-cache (Debian)")
    assert apt_cache is not None
    meta = _apt_fields(apt_cache, "linux-image-amd64")
    # apt lists are empty until `apt-get update` ran once (scripts/install-system-packages
    # runs it): in CI this must be there
    needs(bool(meta.get("Depends")), "apt lists that know linux-image-amd64 (apt-get update)")
    image_name = meta["Depends"].split()[0]
    image = _apt_fields(apt_cache, image_name)
    source, _, source_version = image["Source"].partition(" ")
    assert source == "linux-signed-amd64"
    # the premise of the mapping: the signing source's version is not the kernel's
    assert source_version.strip("()") != image["Version"]
    line = (f"ii \t{image_name}\t{image['Version']}\tamd64\t1700000000\t{image['Source']}\n")
    listing = subprocess.run(list(DPKG_QUERY), capture_output=True, text=True, check=True,
                             timeout=60).stdout
    packages = [p.row() for p in parse_dpkg_query(listing + line)]
    from_linux = [r for r in packages if len(r) > 4 and r[4] == "linux"]
    fixed = max([image["Version"], *(r[5] for r in from_linux)],
                key=functools.cmp_to_key(dpkg_compare)) + "+1"
    index = _index_of({"id": "TEST-LINUX", "modified": "2026-01-01T00:00:00Z", "affected": [
        {"package": {"ecosystem": "Debian:12", "name": "linux"}, "ranges": [
            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]})
    debian = host_ecosystems(DEBIAN_12)
    assert debian is not None
    hits = index.match(debian, packages)
    assert [(h.package, h.version) for h in hits] == [(image_name, image["Version"])]


def _apt_fields(apt_cache: str, package: str) -> dict[str, str]:
    """The first (candidate) stanza of `apt-cache show PACKAGE`."""
    out = subprocess.run([apt_cache, "show", package], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    fields: dict[str, str] = {}
    for line in out.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[key] = value
    return fields


def test_ubuntu_signed_kernels_and_flavours_but_not_metapackages() -> None:
    """Ubuntu names kernel advisories `linux` / `linux-<flavour>`; images come from
    `linux-signed` / `linux-signed-<flavour>` at the kernel's version. The metapackage
    (source linux-meta, its own version scheme 5.15.0.91.88) is not compared with kernel
    versions."""
    rows = [
        ["linux-image-5.15.0-91-generic", "5.15.0-91.101", "amd64", 1, "linux-signed",
         "5.15.0-91.101"],
        ["linux-image-6.5.0-14-generic", "6.5.0-14.14~22.04.1", "amd64", 1,
         "linux-signed-hwe-6.5", "6.5.0-14.14~22.04.1"],
        ["linux-image-generic", "5.15.0.91.88", "amd64", 1, "linux-meta", "5.15.0.91.88"],
        ["linux-libc-dev", "5.15.0-91.101", "amd64", 1, "linux", "5.15.0-91.101"],
    ]
    ecosystem = "Ubuntu:22.04:LTS"
    index = _index_of(
        {"id": "UBUNTU-CVE-2024-0001", "modified": "2026-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": ecosystem, "name": "linux"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                 {"fixed": "5.15.0-92.102"}]}]}]},
        {"id": "UBUNTU-CVE-2024-0002", "modified": "2026-01-01T00:00:00Z", "affected": [
            {"package": {"ecosystem": ecosystem, "name": "linux-hwe-6.5"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                 {"fixed": "6.5.0-15.15~22.04.1"}]}]}]})
    ubuntu = host_ecosystems({"id": "ubuntu", "version": "22.04"})
    assert ubuntu is not None
    hits = {(h.vuln_id, h.package) for h in index.match(ubuntu, rows)}
    assert hits == {("UBUNTU-CVE-2024-0001", "linux-image-5.15.0-91-generic"),
                    ("UBUNTU-CVE-2024-0002", "linux-image-6.5.0-14-generic")}
