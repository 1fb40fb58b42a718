"""Password hashing for web UI users: scrypt (stdlib) with a per-user random salt.

The stored form is `scrypt$N$r$p$SALT$HASH` (salt and hash base64), so the cost can be raised
later without invalidating stored hashes: each hash is checked with its own parameters.
Hashing takes tens of milliseconds on purpose; callers in the event loop run it in a thread.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
COST_N = 2**14
BLOCK_R = 8
PARALLEL_P = 1
KEY_BYTES = 32
MIN_LENGTH = 8


class PasswordError(ValueError):
    """A password that cannot be accepted (too short); the message is for people."""


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    check_policy(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, COST_N, BLOCK_R, PARALLEL_P)
    return "$".join([SCHEME, str(COST_N), str(BLOCK_R), str(PARALLEL_P),
                     _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; the comparison takes constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user name is unknown, so a probe for names takes as long as a
    wrong password (the answer does not reveal which names exist)."""
    return hash_password("no such user, constant work")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * n * r * p + 1024 * 1024, dklen=KEY_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
