"""Version ordering of OS packages.

dpkg: a table of known pairs (Debian Policy §5.6.12, deb-version(7): `~`, letters before
non-letters, digit runs as numbers, epochs, revisions; real Debian security versions), each
also confirmed by this machine's `dpkg --compare-versions` so the table itself cannot be
wrong, and a hypothesis property test against that binary on generated versions.

rpm: the cases of rpm's own test suite, tests/rpmvercmp.at
(https://github.com/rpm-software-management/rpm/blob/master/tests/rpmvercmp.at, RPMVERCMP(a, b,
expected) lines, including the tilde and caret blocks), plus EVR cases (epoch, release).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.versions import (
    VersionError,
    comparator,
    dpkg_compare,
    dpkg_key,
    rpm_evr_compare,
    rpmvercmp,
    split_evr,
)

DPKG = shutil.which("dpkg")
needs_dpkg = pytest.mark.skipif(DPKG is None, reason="dpkg is not installed")

# (a, b, expected dpkg_compare(a, b))
DPKG_PAIRS = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),
    ("1.0", "1.0.0", -1),
    ("1.0-1", "1.0-2", -1),
    ("1.0-10", "1.0-9", 1),
    ("1.0", "1.0-0", 0),
    ("1.00", "1.0", 0),
    ("01.0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0~~a", "1.0~", -1),
    ("1.0~", "1.0", -1),
    ("1.0~rc1-1", "1.0-1", -1),
    ("1.0a", "1.0", 1),
    ("1.0a", "1.0b", -1),
    ("1.0a", "1.0+", -1),
    ("1.0+", "1.0.", -1),
    ("1.0.", "1.0-0", 1),
    ("1.0+b1", "1.0", 1),
    ("1.0-1+b1", "1.0-1", 1),
    ("1.0-1+deb12u1", "1.0-1", 1),
    ("1.0-1+deb12u1", "1.0-1+deb12u2", -1),
    ("1.0-1~deb12u1", "1.0-1", -1),
    ("1.0-1+deb11u1", "1.0-1+deb12u1", -1),
    ("1:0.1", "2.0", 1),
    ("0:1.0", "1.0", 0),
    ("2:1.0", "10:0.1", -1),
    ("1.0-1ubuntu1", "1.0-1", 1),
    ("1.0-1ubuntu0.1", "1.0-1ubuntu1", -1),
    ("1.0-1ubuntu0.22.04.1", "1.0-1ubuntu0.22.04.2", -1),
    ("1.2.3-4-5", "1.2.3-4-6", -1),
    ("1a1", "1a2", -1),
    ("1:2.3", "1:2.3:4", -1),
    ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", -1),
    ("3.0.15-1~deb12u1", "3.0.11-1~deb12u2", 1),
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u8", -1),
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u2", 1),
    ("1:9.2p1-2", "9.9p1-1", 1),
    ("6.1.0-26", "6.1.0-9", 1),
    ("6.1.106-3", "6.1.112-1", -1),
    ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3", -1),
    ("20230311", "20230311.1", -1),
    ("1.2.3a", "1.2.3.a", -1),
    ("1.2a.3", "1.2.3", -1),
    ("1.2~a", "1.2~A", 1),
    ("1.2", "1.2+dfsg", -1),
    ("1.2+dfsg", "1.2.1", -1),
    ("1.2-1.1", "1.2-1a", 1),
    ("5.2.15-2+b2", "5.2.15-2+b7", -1),
    ("0", "0.0", -1),
]


def dpkg_says(a: str, b: str) -> int:
    assert DPKG is not None
    for op, result in (("lt", -1), ("eq", 0)):
        done = subprocess.run([DPKG, "--compare-versions", a, op, b], capture_output=True,
                              check=False, timeout=30)
        if done.returncode == 0:
            return result
        assert done.returncode == 1, done.stderr   # 2: dpkg refused the syntax
    return 1


@pytest.mark.parametrize(("a", "b", "expected"), DPKG_PAIRS)
def test_dpkg_known_pairs(a: str, b: str, expected: int) -> None:
    assert dpkg_compare(a, b) == expected
    assert dpkg_compare(b, a) == -expected


@needs_dpkg
def test_the_dpkg_table_is_what_dpkg_says() -> None:
    wrong = [(a, b, e, dpkg_says(a, b)) for a, b, e in DPKG_PAIRS if dpkg_says(a, b) != e]
    assert wrong == []


def test_dpkg_keys_sort_like_comparisons() -> None:
    versions = sorted({v for a, b, _ in DPKG_PAIRS for v in (a, b)}, key=dpkg_key)
    for older, newer in itertools.pairwise(versions):
        assert dpkg_compare(older, newer) <= 0


@pytest.mark.parametrize("bad", ["", "a1.0", "x:1.0", "1:", "-1", "1.0-"])
def test_dpkg_refuses_what_is_not_a_version(bad: str) -> None:
    with pytest.raises(VersionError):
        dpkg_key(bad)


# versions as Debian writes them: a digit first, then digits, letters and . + ~ -,
# an optional epoch and revision
_UPSTREAM_TAIL = st.text(alphabet="0123456789abzAZ.+~", max_size=8)
_REVISION = st.text(alphabet="0123456789abz.+~", min_size=1, max_size=6)
_VERSION = st.builds(
    lambda epoch, first, tail, revision: (f"{epoch}:" if epoch is not None else "")
    + first + tail + (f"-{revision}" if revision else ""),
    st.one_of(st.none(), st.integers(0, 3)),
    st.sampled_from("0123456789"),
    _UPSTREAM_TAIL,
    st.one_of(st.none(), _REVISION),
)


@needs_dpkg
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=_VERSION, b=_VERSION)
def test_dpkg_order_matches_the_dpkg_binary(a: str, b: str) -> None:
    assert dpkg_compare(a, b) == dpkg_says(a, b)


@needs_dpkg
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=_VERSION)
def test_dpkg_order_of_near_neighbours(a: str) -> None:
    # the interesting cases are versions that differ by one suffix
    for b in (a + "~", a + "+b1", a + "a", a + ".0", a + "-0"):
        if "-" in a and b.endswith("-0"):
            continue
        assert dpkg_compare(a, b) == dpkg_says(a, b), (a, b)


# rpm's tests/rpmvercmp.at, RPMVERCMP(a, b, expected), in its order
RPMVERCMP_AT = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0", "1.0", 1),
    ("2.0.1", "2.0.1", 0), ("2.0", "2.0.1", -1), ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1a", 0), ("2.0.1a", "2.0.1", 1), ("2.0.1", "2.0.1a", -1),
    ("5.5p1", "5.5p1", 0), ("5.5p1", "5.5p2", -1), ("5.5p2", "5.5p1", 1),
    ("5.5p10", "5.5p10", 0), ("5.5p1", "5.5p10", -1), ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1), ("10.1xyz", "10xyz", 1),
    ("xyz10", "xyz10", 0), ("xyz10", "xyz10.1", -1), ("xyz10.1", "xyz10", 1),
    ("xyz.4", "xyz.4", 0), ("xyz.4", "8", -1), ("8", "xyz.4", 1), ("xyz.4", "2", -1),
    ("2", "xyz.4", 1),
    ("5.5p2", "5.6p1", -1), ("5.6p1", "5.5p2", 1),
    ("5.6p1", "6.5p1", -1), ("6.5p1", "5.6p1", 1),
    ("6.0.rc1", "6.0", 1), ("6.0", "6.0.rc1", -1),
    ("10b2", "10a1", 1), ("10a2", "10b2", -1),
    ("1.0aa", "1.0aa", 0), ("1.0a", "1.0aa", -1), ("1.0aa", "1.0a", 1),
    ("10.0001", "10.0001", 0), ("10.0001", "10.1", 0), ("10.1", "10.0001", 0),
    ("10.0001", "10.0039", -1), ("10.0039", "10.0001", 1),
    ("4.999.9", "5.0", -1), ("5.0", "4.999.9", 1),
    ("20101121", "20101121", 0), ("20101121", "20101122", -1), ("20101122", "20101121", 1),
    ("2_0", "2_0", 0), ("2.0", "2_0", 0), ("2_0", "2.0", 0),
    # RhBug:178798
    ("a", "a", 0), ("a+", "a+", 0), ("a+", "a_", 0), ("a_", "a+", 0), ("+a", "+a", 0),
    ("+a", "_a", 0), ("_a", "+a", 0), ("+_", "+_", 0), ("_+", "+_", 0), ("_+", "_+", 0),
    ("+", "_", 0), ("_", "+", 0),
    # tilde
    ("1.0~rc1", "1.0~rc1", 0), ("1.0~rc1", "1.0", -1), ("1.0", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc2", "1.0~rc1", 1),
    ("1.0~rc1~git123", "1.0~rc1~git123", 0), ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0~rc1", "1.0~rc1~git123", 1),
    # caret
    ("1.0^", "1.0^", 0), ("1.0^", "1.0", 1), ("1.0", "1.0^", -1),
    ("1.0^git1", "1.0^git1", 0), ("1.0^git1", "1.0", 1), ("1.0", "1.0^git1", -1),
    ("1.0^git1", "1.0^git2", -1), ("1.0^git2", "1.0^git1", 1),
    ("1.0^git1", "1.01", -1), ("1.01", "1.0^git1", 1),
    ("1.0^20160101", "1.0^20160101", 0), ("1.0^20160101", "1.0.1", -1),
    ("1.0.1", "1.0^20160101", 1),
    ("1.0^20160101^git1", "1.0^20160101^git1", 0), ("1.0^20160102", "1.0^20160101^git1", 1),
    ("1.0^20160101^git1", "1.0^20160102", -1),
    # tilde and caret
    ("1.0~rc1^git1", "1.0~rc1^git1", 0), ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0~rc1", "1.0~rc1^git1", -1), ("1.0^git1~pre", "1.0^git1~pre", 0),
    ("1.0^git1", "1.0^git1~pre", 1), ("1.0^git1~pre", "1.0^git1", -1),
]


@pytest.mark.parametrize(("a", "b", "expected"), RPMVERCMP_AT)
def test_rpmvercmp_cases_of_rpms_own_suite(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("3.0.7-25.el9_3", "3.0.7-27.el9", -1),
    ("1:3.0.7-25.el9_3", "3.0.7-27.el9", 1),
    ("0:3.0.7-25.el9_3", "3.0.7-25.el9_3", 0),
    ("(none):1.2-3", "1.2-3", 0),
    ("1.1.1k-12.el8_9", "1.1.1k-9.el8_7", 1),
    ("2.28-251.el9_2.1", "2.28-251.el9_2", 1),
    ("4.18.0-513.24.1.el8_9", "4.18.0-553.el8_10", -1),
    ("5.14.0-427.13.1.el9_4", "5.14.0-427.13.1.el9_4", 0),
    ("1.2", "1.2-5", 0),            # no release on one side: versions decide
    ("1.3", "1.2-5", 1),
    ("1.1.1wa-1.oe2203sp1", "1.1.1m-20.oe2203", 1),
    ("9.0.2-1.el9~beta", "9.0.2-1.el9", -1),
])
def test_rpm_evr(a: str, b: str, expected: int) -> None:
    assert rpm_evr_compare(a, b) == expected
    assert rpm_evr_compare(b, a) == -expected


def test_evr_parts_and_schemes() -> None:
    assert split_evr("1:3.0.7-25.el9_3") == ("1", "3.0.7", "25.el9_3")
    assert split_evr("3.0.7") == ("0", "3.0.7", None)
    with pytest.raises(VersionError):
        split_evr("x:1-2")
    assert comparator("dpkg")("1.0~rc1", "1.0") == -1
    assert comparator("rpm")("1.0~rc1", "1.0") == -1
    with pytest.raises(ValueError, match="unknown version scheme"):
        comparator("apk")
