"""Version ordering of OS packages, exactly as the package managers order them — what decides
whether an installed package lies in an advisory's affected range.

dpkg   Debian Policy §5.6.12 and deb-version(7): `[epoch:]upstream[-revision]`; the epoch is
       compared as a number, then upstream, then revision (absent = empty = "0"), each by
       alternating runs: a non-digit run compared character by character where `~` sorts
       before everything (even the end of the string), the end before letters, letters before
       every other character (by ASCII), then a digit run compared as a number (empty = 0).
       `dpkg_key` turns a version into a tuple whose ordinary tuple order *is* that order, so
       versions are parsed once and then compared, sorted and bisected cheaply.
rpm    rpm's `rpmvercmp` (lib/rpmvercmp.c; the cases of rpm's tests/rpmvercmp.at hold, see
       tests/collector/test_versions.py): strings split into alphanumeric segments, anything
       else a separator; a numeric segment is newer than an alphabetic one; numbers compare
       without leading zeros; `~` sorts before anything, even the end (pre-releases);
       `^` sorts after the end but before any further segment (post-release snapshots).
       `rpm_evr_compare` compares `[epoch:]version[-release]`: epoch (absent = 0), version,
       then release only when both sides have one (rpm's rpmverCmp).

Pure Python, no dependency; nothing here knows about advisories.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

_DIGITS = re.compile(r"\d+")


class VersionError(ValueError):
    """A string that is not a version of the scheme asked for."""


# --- dpkg --------------------------------------------------------------------------------


def _dpkg_order(char: str) -> int:
    # deb-version(7): "~" before all, even the end; letters before non-letters
    if char == "~":
        return -1
    if char.isascii() and char.isalpha():
        return ord(char)
    return ord(char) + 256


_END: tuple[int, ...] = (0,)


def _dpkg_part(text: str) -> tuple[Any, ...]:
    """Alternating (non-digit run as orders + end marker 0, digit run as int) from the start;
    always at least one pair, so "" and "0" are the same, and a final end marker so that a
    string running out compares like dpkg's padding (end = 0, empty digits = 0)."""
    key: list[Any] = []
    pos = 0
    while True:
        match = _DIGITS.search(text, pos)
        stop = match.start() if match else len(text)
        key.append((*(_dpkg_order(c) for c in text[pos:stop]), 0))
        key.append(int(match.group()) if match else 0)
        pos = match.end() if match else len(text)
        if pos >= len(text):
            break
    key.append(_END)
    return tuple(key)


@functools.lru_cache(maxsize=65536)
def dpkg_key(version: str) -> tuple[Any, ...]:
    """Sort key: `dpkg_key(a) < dpkg_key(b)` exactly when `dpkg --compare-versions a lt b`."""
    text = version.strip()
    if not text:
        raise VersionError("empty dpkg version")
    epoch_text, sep, rest = text.partition(":")
    if sep:
        if not epoch_text.isdigit():
            raise VersionError(f"dpkg version {version!r}: epoch {epoch_text!r} is not a number")
        epoch = int(epoch_text)
    else:
        epoch, rest = 0, text
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    elif not revision:
        raise VersionError(f"dpkg version {version!r}: empty revision after '-'")
    if not upstream or not upstream[0].isdigit():
        raise VersionError(f"dpkg version {version!r}: upstream version must start with a digit")
    return (epoch, _dpkg_part(upstream), _dpkg_part(revision))


def dpkg_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, the same as, or newer than `b`."""
    ka, kb = dpkg_key(a), dpkg_key(b)
    return (ka > kb) - (ka < kb)


# --- rpm ---------------------------------------------------------------------------------


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison of one version (or release) string: -1, 0 or 1."""
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not _is_alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < lb and not _is_alnum(b[j]) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        if ca == "~" or cb == "~":          # tilde: older than anything, even the end
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":          # caret: newer than the end, older than the rest
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        numeric = ca.isdigit()
        si, sj = i, j
        if numeric:
            while i < la and a[i].isascii() and a[i].isdigit():
                i += 1
            while j < lb and b[j].isascii() and b[j].isdigit():
                j += 1
        else:
            while i < la and a[i].isascii() and a[i].isalpha():
                i += 1
            while j < lb and b[j].isascii() and b[j].isalpha():
                j += 1
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:                       # different kinds: a number is newer than letters
            return 1 if numeric else -1
        if numeric:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    if i >= la and j >= lb:
        return 0
    return 1 if i < la else -1


def split_evr(evr: str) -> tuple[str, str, str | None]:
    """`1:3.0.7-25.el9_3` -> ("1", "3.0.7", "25.el9_3"); no epoch -> "0"; no release -> None."""
    text = evr.strip()
    if not text:
        raise VersionError("empty rpm version")
    epoch, sep, rest = text.partition(":")
    if not sep:
        epoch, rest = "0", text
    elif not epoch.isdigit():
        if epoch != "(none)":
            raise VersionError(f"rpm version {evr!r}: epoch {epoch!r} is not a number")
        epoch = "0"
    version, hyphen, release = rest.rpartition("-")
    if not hyphen:
        return epoch, rest, None
    return epoch, version, release


def rpm_evr_compare(a: str, b: str) -> int:
    """Compare two `[epoch:]version[-release]` strings the way rpm does (rpmverCmp)."""
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    result = rpmvercmp(ea, eb) or rpmvercmp(va, vb)
    if result == 0 and ra is not None and rb is not None:
        result = rpmvercmp(ra, rb)
    return result


# --- by scheme ---------------------------------------------------------------------------

SCHEMES = ("dpkg", "rpm")


def comparator(scheme: str) -> Callable[[str, str], int]:
    """The three-way comparison of a scheme (`dpkg` or `rpm`)."""
    if scheme == "dpkg":
        return dpkg_compare
    if scheme == "rpm":
        return rpm_evr_compare
    raise ValueError(f"unknown version scheme {scheme!r}: one of {', '.join(SCHEMES)}")
