"""Oracle homes in the patch inventory: `opatch lspatches` outputs recorded from Oracle's own
material parsed into patch rows, product and PSU / RU version (tests/probes/fixtures/opatch/
README.md), and the live path — a fake `opatch` (a real shell process) in a temporary Oracle
home, run by LocalAccess with the C locale, a time limit it hangs past, an exit 73, a missing
OPatch and an output over its bound — through to the `patches` result."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.access import CommandOutput, LocalAccess
from probes.inventory import (
    Inventory,
    InventoryOptions,
    OracleHomeSpec,
    OraclePatch,
    OsRelease,
    opatch_argv,
    oracle_home_from,
    oracle_release,
    parse_lspatches,
    read_oracle_homes,
)
from probes.memory import ProbeMemory
from probes.patches import PatchesCheck, judge, probe
from probes.result import Status

FIXTURES = Path(__file__).parent / "fixtures" / "opatch"
DEBIAN = OsRelease("debian", "Debian", "12.11", "debian")


def make_home(root: Path, listing: str = "lspatches-wls-12.2.1.4.txt",
              mode: str | None = None, name: str = "middleware") -> Path:
    """A temporary Oracle home whose OPatch/opatch is tests/probes/fixtures/opatch/
    fake-opatch.sh answering with `listing`."""
    home = root / name
    (home / "OPatch").mkdir(parents=True)
    shutil.copy(FIXTURES / "fake-opatch.sh", home / "OPatch" / "opatch")
    (home / "OPatch" / "opatch").chmod(0o755)
    shutil.copy(FIXTURES / listing, home / "lspatches.txt")
    shutil.copy(FIXTURES / "lspatches-error-73.txt", home / "lspatches-error.txt")
    if mode is not None:
        (home / "MODE").write_text(mode)
    return home


def recorded(name: str) -> str:
    """A recorded output without its `# ` header lines (opatch never prints such a line)."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("# "))


def ok(text: str) -> CommandOutput:
    """opatch's answer as LocalAccess returns it: exit 0, this standard output."""
    return CommandOutput(("opatch",), 0, text.encode(), b"")


# --- recorded outputs --------------------------------------------------------------------


def test_a_weblogic_home_recorded_by_oracle() -> None:
    text = recorded("lspatches-wls-12.2.1.4.txt")
    listing = parse_lspatches(text)
    assert listing.succeeded and not listing.empty and len(listing.patches) == 11
    assert listing.patches[0] == OraclePatch("31544353", "One-off")
    assert OraclePatch("31537019", "WLS PATCH SET UPDATE 12.2.1.4.200624") in listing.patches
    assert listing.patches[-1] == OraclePatch(
        "122145", "Bundle patch for Oracle Coherence Version 12.2.1.4.5")
    home = oracle_home_from("/u01/oracle", ok(text))
    assert home.error is None
    assert (home.product, home.version, home.patch_date) == (
        "weblogic", "12.2.1.4.200624", "2020-06-24")
    assert home.as_dict()["patches"][9] == ["31537019", "WLS PATCH SET UPDATE 12.2.1.4.200624"]


def test_a_database_home_recorded_by_oracle_livelabs() -> None:
    home = oracle_home_from("/u01/app/oracle/product/19", ok(
        recorded("lspatches-db-19.27.txt")))
    assert home.error is None and len(home.patches) == 5
    # the RU, not the OJVM update of the same date nor the OCW component at 19.3
    assert (home.product, home.version, home.patch_date) == (
        "oracle", "19.27.0.0.250415", "2025-04-15")


def test_a_home_without_interim_patches() -> None:
    text = recorded("lspatches-empty.txt")
    assert parse_lspatches(text).empty
    home = oracle_home_from("/u01/app/oracle/product/11.2.0/db", ok(text))
    assert home.error is None and home.patches == ()
    assert (home.product, home.version, home.patch_date) == (None, None, None)
    # the older wording, without the home
    older = parse_lspatches("There are no Interim patches installed in this Oracle Home.\n")
    assert older.empty and not older.succeeded


def test_output_without_a_patch_list_proves_nothing() -> None:
    for text in ("", "Java could not be started\n", "OPatch succeeded.\n"):
        home = oracle_home_from("/h", ok(text))
        assert home.error is not None and "no patch list" in home.error, text


@pytest.mark.parametrize(("descriptions", "expected"), [
    # Fusion Middleware homes carry a database client update: still WebLogic
    (["36615359;DATABASE RELEASE UPDATE 19.24.0.0.0 FOR FMW DBCLIENT",
      "37087476;WLS PATCH SET UPDATE 12.2.1.4.240922"], ("weblogic", "12.2.1.4.240922")),
    (["36615359;DATABASE RELEASE UPDATE 19.24.0.0.0 FOR FMW DBCLIENT"], (None, None)),
    (["30340202;Database Patch Set Update : 12.1.0.2.200414 (30340202)"],
     ("oracle", "12.1.0.2.200414")),
    (["30691015;Database Bundle Patch : 12.1.0.2.200414 (30691015)"],
     ("oracle", "12.1.0.2.200414")),
    (["30805558;Database PSU 12.1.0.2.200414, Oracle JavaVM Component (APR2020)"],
     (None, None)),
    (["34786990;OJVM RELEASE UPDATE: 19.18.0.0.230117 (34786990)"], (None, None)),
    # two PSUs listed: the newest, by number (230702 > 99999 as text would not say)
    (["1;WLS PATCH SET UPDATE 14.1.1.0.99999", "2;WLS PATCH SET UPDATE 14.1.1.0.230702"],
     ("weblogic", "14.1.1.0.230702")),
    (["3;One-off", "4;ADF BUNDLE PATCH 12.2.1.4.200613"], (None, None)),
])
def test_product_and_version_from_the_descriptions(descriptions: list[str],
                                                   expected: tuple[str | None, str | None]
                                                   ) -> None:
    patches = parse_lspatches("\n".join(descriptions)).patches
    assert oracle_release(patches) == expected


def test_argv_with_and_without_the_owner() -> None:
    assert opatch_argv(OracleHomeSpec("/u01/oracle/")) == [
        "/u01/oracle/OPatch/opatch", "lspatches", "-oh", "/u01/oracle"]
    assert opatch_argv(OracleHomeSpec("/u01/oracle", "oracle")) == [
        "sudo", "-n", "-u", "oracle", "--", "/u01/oracle/OPatch/opatch", "lspatches", "-oh",
        "/u01/oracle"]


def test_config_of_oracle_homes() -> None:
    check = PatchesCheck.model_validate({"id": "p", "kind": "patches", "oracle_homes": [
        {"path": "/u01/oracle/middleware/"}, {"path": "/u01/app/19", "user": "oracle"}]})
    assert [h.spec() for h in check.oracle_homes] == [
        OracleHomeSpec("/u01/oracle/middleware"), OracleHomeSpec("/u01/app/19", "oracle")]
    for bad in ([{"path": "u01/oracle"}], [{"path": "/u01/../etc"}],
                [{"path": "/u01/a"}, {"path": "/u01/a/"}],
                [{"path": "/u01/a", "user": "oracle; id"}],
                [{"path": "/u01/a", "owner": "oracle"}]):
        with pytest.raises(ValidationError):
            PatchesCheck.model_validate({"id": "p", "kind": "patches", "oracle_homes": bad})


# --- a real process: the fake opatch in a temporary home ----------------------------------


async def test_fake_opatch_answers_through_local_access(tmp_path: Path) -> None:
    wls = make_home(tmp_path, "lspatches-wls-12.2.1.4.txt", name="middleware")
    db = make_home(tmp_path, "lspatches-db-19.27.txt", name="dbhome_1")
    empty = make_home(tmp_path, "lspatches-empty.txt", name="client")
    homes = await read_oracle_homes(LocalAccess(), InventoryOptions(
        limit_s=60, oracle_homes=(OracleHomeSpec(str(wls)), OracleHomeSpec(str(db)),
                                  OracleHomeSpec(str(empty)))))
    assert [h.error for h in homes] == [None, None, None]
    assert [(h.path, h.product, h.version, len(h.patches)) for h in homes] == [
        (str(wls), "weblogic", "12.2.1.4.200624", 11),
        (str(db), "oracle", "19.27.0.0.250415", 5),
        (str(empty), None, None, 0)]
    result = judge(PatchesCheck.model_validate({"id": "p", "kind": "patches"}),
                   Inventory(os=DEBIAN, package_manager="dpkg", pending_known=True,
                             oracle_homes=homes), ProbeMemory(), 1.0)
    assert (result.status, result.reason) == (Status.OK, "ok"), result.summary
    assert f"{wls}: WebLogic PSU 12.2.1.4.200624, 11 patches" in result.summary
    assert f"{db}: Oracle RU 19.27.0.0.250415, 5 patches" in result.summary
    assert f"{empty}: no PSU/RU, 0 patches" in result.summary
    assert result.details["oracle_homes"][0] == {
        "path": str(wls), "product": "weblogic", "version": "12.2.1.4.200624",
        "patch_date": "2020-06-24", "error": None,
        "patches": [p.split(";", 1) for p in recorded("lspatches-wls-12.2.1.4.txt")
                    .splitlines() if ";" in p]}
    counts = {m.labels["home"]: m.value for m in result.metrics
              if m.name == "patches_oracle_home_patches"}
    assert counts == {str(wls): 11, str(db): 5, str(empty): 0}


def test_the_fake_refuses_another_locale_and_other_arguments(tmp_path: Path) -> None:
    """The control for the test above: the fake only answers the way the inventory calls
    it, so the inventory's argv and C locale are what made it answer."""
    home = make_home(tmp_path)
    opatch = str(home / "OPatch" / "opatch")
    env = {**os.environ, "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8"}
    localised = subprocess.run([opatch, "lspatches", "-oh", str(home)], env=env,
                               capture_output=True, text=True, timeout=30, check=False)
    assert localised.returncode == 1 and "not in the C locale" in localised.stdout
    env_c = {**os.environ, "LANG": "C", "LC_ALL": "C"}
    wrong = subprocess.run([opatch, "lsinventory"], env=env_c, capture_output=True,
                           text=True, timeout=30, check=False)
    assert wrong.returncode == 1 and "unexpected arguments" in wrong.stdout


async def _running(pattern: str) -> bool:
    out = await LocalAccess().run(["pgrep", "-f", pattern], limit_s=10)
    assert out.exit_code in (0, 1), out
    return out.exit_code == 0


async def test_a_hung_opatch_is_cut_at_its_limit_with_its_children(tmp_path: Path) -> None:
    seconds = f"{61 + uuid.uuid4().int % 1000 / 1000:.3f}"    # a unique `sleep` to find
    home = make_home(tmp_path, mode=f"hang {seconds}")
    task = asyncio.create_task(read_oracle_homes(LocalAccess(), InventoryOptions(
        limit_s=60, opatch_limit_s=1.5, oracle_homes=(OracleHomeSpec(str(home)),))))
    deadline = time.monotonic() + 10
    while not await _running(f"[s]leep {seconds}"):    # it really runs while we wait
        assert time.monotonic() < deadline, "the fake opatch never started"
    started = time.monotonic()
    [found] = await task
    assert time.monotonic() - started < 1.5 + 3
    assert found.error is not None and "did not finish in 1.5s" in found.error
    assert found.patches == () and found.version is None
    assert not await _running(f"[s]leep {seconds}")    # opatch's child is gone too
    result = judge(PatchesCheck.model_validate({"id": "p", "kind": "patches"}),
                   Inventory(os=DEBIAN, package_manager="dpkg", pending_known=True,
                             oracle_homes=[found],
                             errors=[f"opatch lspatches {home}: {found.error}"]),
                   ProbeMemory(), 2.0)
    assert (result.status, result.reason) == (Status.UNKNOWN, "inventory_failed")
    assert f"opatch lspatches {home}: " in result.summary
    assert "patches_oracle_home_patches" not in {m.name for m in result.metrics}


async def test_opatch_failing_missing_or_too_long(tmp_path: Path) -> None:
    failing = make_home(tmp_path, mode="fail", name="broken")
    missing = tmp_path / "no-opatch"
    missing.mkdir()
    big = make_home(tmp_path, mode="big", name="big")
    homes = await read_oracle_homes(LocalAccess(), InventoryOptions(
        limit_s=60, opatch_max_bytes=4096,
        oracle_homes=(OracleHomeSpec(str(failing)), OracleHomeSpec(str(missing)),
                      OracleHomeSpec(str(big)))))
    errors = [h.error or "" for h in homes]
    assert errors[0] == ("exit 73: LsInventorySession failed: RawInventory gets null "
                         "OracleHomeInfo; OPatch failed with error code 73")
    assert errors[1].startswith(f"cannot run {missing}/OPatch/opatch: No such file")
    assert errors[2] == "output longer than 4096 bytes, cut: not read"
    assert all(h.patches == () and h.product is None for h in homes)


@pytest.mark.skipif(not Path("/var/lib/dpkg/status").exists(),
                    reason="needs a dpkg-based machine (the rest of the inventory runs too)")
async def test_the_patches_probe_reads_its_oracle_homes(tmp_path: Path) -> None:
    """The agent's path end to end on this machine: the check's `oracle_homes` reach the
    inventory, a broken home makes the result unknown (our side) and names it."""
    good = make_home(tmp_path, name="middleware")
    broken = make_home(tmp_path, mode="fail", name="broken")
    check = PatchesCheck.model_validate({
        "id": "p", "kind": "patches", "security_updates": {},
        "reboot_required_path": str(tmp_path / "none"),
        "oracle_homes": [{"path": str(good)}, {"path": str(broken)}]})
    result = await probe(check, ProbeMemory())
    assert (result.status, result.reason) == (Status.UNKNOWN, "inventory_failed")
    assert f"opatch lspatches {broken}: exit 73" in result.summary
    homes = {h["path"]: h for h in result.details["oracle_homes"]}
    assert homes[str(good)]["version"] == "12.2.1.4.200624"
    assert homes[str(broken)]["error"].startswith("exit 73")
