"""Failed agent-token checks per source address, and when an address is refused for a while.

The ingest endpoint asks `refusal(address, token)` before it looks a token up, and calls
`failed` / `succeeded` after. An address with `limit` failures within `window_s` is refused
(429 with Retry-After) until its oldest counted failure leaves the window; the token is then
not looked up at all, so guessing costs the database nothing and gets no answer.

Agents behind one NAT share an address, and one box with a stale token must not cut off the
others: a token that already authenticated from that address (its SHA-256 is remembered, a
few per address) is still let through during a refusal. Tokens are 256-bit random values, so
this exemption gives a guesser nothing; the limit itself is the second line of defence, the
first being the token's size (docs/security.md).

An IPv6 address counts by its /64: one host usually holds a whole /64 and could otherwise
take a fresh address for every guess.

Memory is bounded: at most `max_addresses` addresses (least recently seen dropped first),
each with at most `limit` failure times and `max_known` token digests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def address_key(address: str) -> str:
    """What failures are counted by: the address, or an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


@dataclass
class _Address:
    failures: deque[float]
    known: OrderedDict[str, None] = field(default_factory=OrderedDict)


class FailureLimiter:
    """Failed authentications per source address in a sliding window, LRU-bounded."""

    def __init__(self, limit: int = 20, window_s: float = 60.0, *, max_addresses: int = 10_000,
                 max_known: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0 or max_addresses < 1 or max_known < 0:
            raise ValueError("limit, window_s and max_addresses must be positive")
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.max_known = max_known
        self._clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def __len__(self) -> int:
        return len(self._addresses)

    def _entry(self, address: str) -> _Address:
        address = address_key(address)
        entry = self._addresses.get(address)
        if entry is None:
            entry = _Address(deque(maxlen=self.limit))
            self._addresses[address] = entry
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        return entry

    def refusal(self, address: str, token: str) -> float | None:
        """Seconds until `address` may try an unknown token again, or None to go ahead."""
        entry = self._addresses.get(address_key(address))
        if entry is None or len(entry.failures) < self.limit:
            return None
        wait = entry.failures[0] + self.window_s - self._clock()
        if wait <= 0:
            return None
        if self.max_known and token_digest(token) in entry.known:
            return None
        return wait

    def failed(self, address: str) -> None:
        self._entry(address).failures.append(self._clock())

    def succeeded(self, address: str, token: str) -> None:
        """Remember the token as good from this address (failures are not forgiven)."""
        if not self.max_known:
            return
        known = self._entry(address).known
        digest = token_digest(token)
        known[digest] = None
        known.move_to_end(digest)
        while len(known) > self.max_known:
            known.popitem(last=False)
