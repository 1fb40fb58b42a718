"""How a notification is delivered: the `Channel` protocol, the record of a delivery, retries
(tenacity) and `deliver`, which sends one message to many channels at once.

A channel type is one module (`alerts/webhook.py`, `wecom.py`, `dingtalk.py`, `email.py`)
with a config model (in `alerts/channel_config.py`, so configs load without importing any
channel's client code) and a class with `async send(message, text) -> Delivery`. `send` makes
one attempt per `attempt()` call of `send_with_retries`, which owns retries, per-attempt
timeouts and the total time budget, and keeps a record of every attempt.

Nothing that leaves this package carries a secret: error texts are written by the channels
(never `str()` of a library exception, which may quote a URL with its key), URLs are shown
with their query values redacted, and every text passes through `redact` against the channel's
own secrets as a last guard. DeliveryError is raised `from None`, so no library exception with
a secret in its arguments rides along in `__cause__` into a logged traceback.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Protocol, cast
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from alerts.channel_config import (
    ChannelBase,
    ChannelConfig,
    Channels,
    DingTalkConfig,
    EmailConfig,
    WebhookConfig,
    WeComConfig,
    parse_channels,
    routes,
)
from alerts.message import Message
from alerts.render import Language, RenderedText, render

__all__ = [
    "Attempt",
    "Channel",
    "ChannelBase",
    "ChannelConfig",
    "Channels",
    "Delivery",
    "DeliveryError",
    "DingTalkConfig",
    "EmailConfig",
    "Outcome",
    "WeComConfig",
    "WebhookConfig",
    "build_channel",
    "deliver",
    "header_secrets",
    "parse_channels",
    "redact",
    "redact_url",
    "routes",
    "send_with_retries",
]

log = logging.getLogger(__name__)

DETAIL_LIMIT = 300
"""Characters of a detail text kept (a peer's error body can be long)."""

DEFAULT_DELIVER_TIMEOUT = 300.0
"""Outer bound in `deliver` for a channel that has no `time_budget` of its own."""


@dataclass(frozen=True)
class Attempt:
    """One try at delivering: its number (1-based), what the peer answered, how long it took."""

    number: int
    status_code: int | None
    detail: str
    seconds: float


@dataclass(frozen=True)
class Delivery:
    """A successful delivery, as the outbox records it."""

    channel: str
    attempts: int
    status_code: int | None
    """HTTP status, or the SMTP reply code."""
    detail: str
    """Short, secret-free: `HTTP 200`, `errcode 0`, `250 accepted for 2 recipients`."""
    history: tuple[Attempt, ...] = ()
    """Every attempt, the failed ones first."""


class DeliveryError(Exception):
    """A delivery that failed (after its retries); `str()` is safe to store and to log."""

    def __init__(self, detail: str, *, retryable: bool, channel: str = "",
                 status_code: int | None = None, attempts: int = 1,
                 history: tuple[Attempt, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        """Whether trying again later may help (network, timeout, 5xx, rate limit)."""
        self.channel = channel
        self.status_code = status_code
        self.attempts = attempts
        self.history = history

    def __repr__(self) -> str:
        return (f"DeliveryError({self.detail!r}, retryable={self.retryable}, "
                f"channel={self.channel!r}, status_code={self.status_code}, "
                f"attempts={self.attempts})")


class Channel(Protocol):
    name: str

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        """Deliver, retrying as configured; raises DeliveryError when it cannot."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What one successful attempt reports."""

    status_code: int | None
    detail: str


def redact_url(url: str) -> str:
    """The URL with every query value and any password replaced by `***`.

    `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc` ->
    `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***`.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    _userinfo, at, netloc = parts.netloc.rpartition("@")
    if at:
        netloc = "***@" + netloc
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each (non-trivial) secret, plain, URL-encoded or
    base64-encoded, replaced by `***`.

    Base64 because peers quote what they were sent: an SMTP server its AUTH exchange, a web
    server an `Authorization: Basic` header. The encoding of a secret's whole 3-byte groups
    is also what starts the encoding of any text that begins with it.
    """
    forms = set()
    for secret in secrets:
        forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
        raw = secret.encode("utf-8")
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(raw).decode("ascii")
            forms.update({encoded, encoded[: len(raw) // 3 * 4]})
    for secret in sorted({s for s in forms if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def header_secrets(value: str) -> list[str]:
    """What a peer may quote of a secret header value: the value, its credential without
    the scheme (`Bearer X` -> `X`), and for Basic the decoded `user:password` and the
    password."""
    out = [value]
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if credential:
        out.append(credential)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except ValueError:   # binascii.Error and UnicodeDecodeError are ValueErrors
                return out
            out += [decoded, decoded.partition(":")[2]]
    return [item for item in out if item]


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


async def send_with_retries(config: ChannelBase, attempt: Callable[[], Awaitable[Outcome]],
                            secrets: Iterable[str] = ()) -> Delivery:
    """Run `attempt` until it succeeds, fails for good, or the retries or the time budget
    run out. Each call is cut at `config.timeout`; the whole at `config.time_budget`.

    `attempt` raises DeliveryError (with `retryable`) for an answer that is not a success.
    Connection errors are the attempt's to translate; anything else escaping it is a bug
    and is reported as a non-retryable DeliveryError naming only the exception's type.
    """
    secret_list = [s for s in secrets if s]
    history: list[Attempt] = []
    in_flight: list[float] = []  # start of the attempt under way, if any

    async def one() -> Outcome:
        number = len(history) + 1
        started = time.monotonic()
        in_flight[:] = [started]
        error: DeliveryError | None = None
        try:
            async with asyncio.timeout(config.timeout):
                outcome = await attempt()
        except TimeoutError:
            error = DeliveryError(f"no answer within {config.timeout:g}s", retryable=True)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a channel's bug must not leak its arguments
            error = DeliveryError(f"internal error ({type(exc).__name__})", retryable=False)
        in_flight.clear()  # not on cancellation: the budget's handler records the cut attempt
        if error is None:
            history.append(Attempt(number, outcome.status_code,
                                   clip(redact(outcome.detail, secret_list)),
                                   time.monotonic() - started))
            return outcome
        detail = clip(redact(error.detail, secret_list))
        history.append(Attempt(number, error.status_code, detail, time.monotonic() - started))
        raise DeliveryError(detail, retryable=error.retryable, channel=config.name,
                            status_code=error.status_code, attempts=number) from None

    def before_sleep(state: RetryCallState) -> None:
        last = history[-1] if history else None
        log.warning("channel %s: attempt %d failed (%s); retrying", config.name,
                    state.attempt_number, last.detail if last else "?")

    retrying = AsyncRetrying(
        stop=stop_after_attempt(config.retries + 1),
        # exponential, capped, plus jitter so robots shared by many senders are not hit in step
        wait=wait_exponential(multiplier=config.backoff, max=config.backoff_max)
        + wait_random(0, config.backoff),
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    budget = config.time_budget
    try:
        async with asyncio.timeout(budget):
            outcome: Outcome = await retrying(one)
    except DeliveryError as exc:
        error = DeliveryError(exc.detail, retryable=exc.retryable, channel=config.name,
                              status_code=exc.status_code, attempts=len(history),
                              history=tuple(history))
        log.warning("channel %s: delivery failed after %d attempt(s): %s", config.name,
                    len(history), exc.detail)
        raise error from None
    except TimeoutError:
        if in_flight:
            history.append(Attempt(len(history) + 1, None, "cut by the total time budget",
                                   time.monotonic() - in_flight[0]))
        last = f"; last: {history[-1].detail}" if history else ""
        log.warning("channel %s: delivery gave up after %gs%s", config.name, budget, last)
        raise DeliveryError(f"gave up after {budget:g}s and {len(history)} attempt(s){last}",
                            retryable=True, channel=config.name,
                            status_code=history[-1].status_code if history else None,
                            attempts=len(history), history=tuple(history)) from None
    return Delivery(channel=config.name, attempts=len(history),
                    status_code=outcome.status_code,
                    detail=clip(redact(outcome.detail, secret_list)), history=tuple(history))


# Channel types by config `type`, imported lazily: the e-mail channel must not need aiohttp
# loaded, nor a config load need any channel's client code.
_MODULES = {
    "webhook": "alerts.webhook",
    "wecom": "alerts.wecom",
    "dingtalk": "alerts.dingtalk",
    "email": "alerts.email",
}


def build_channel(config: ChannelConfig) -> Channel:
    """The channel for `config` (cheap: no connection is made until `send`)."""
    module = import_module(_MODULES[config.type])
    factory = cast(Callable[[ChannelConfig], Channel], module.channel)
    return factory(config)


async def deliver(channels: Sequence[Channel], message: Message, language: Language,
                  zone: ZoneInfo, *, now: datetime | None = None,
                  limit: float | None = None) -> list[Delivery | DeliveryError]:
    """Send `message` to every channel at once; one result per channel, in order.

    The text is rendered once per language (a channel built from a config with `language:`
    uses that one, the others `language`). Each channel runs in its own task, bounded by its
    own time budget (or `limit` seconds when given), so a failing or hung channel delays nobody,
    and no exception other than cancellation escapes: a failure is a DeliveryError in the list.
    """
    texts: dict[str, RenderedText] = {}

    def text_for(channel: Channel) -> RenderedText:
        lang = cast(Language, getattr(channel, "language", None) or language)
        if lang not in texts:
            texts[lang] = render(message, lang, zone, now=now)
        return texts[lang]

    jobs = [_guarded(channel, message, text_for(channel), limit) for channel in channels]
    return list(await asyncio.gather(*jobs))


async def _guarded(channel: Channel, message: Message, text: RenderedText,
                   limit: float | None) -> Delivery | DeliveryError:
    name = str(getattr(channel, "name", "?"))
    seconds = limit
    if seconds is None:
        budget = getattr(channel, "time_budget", None)
        # a little slack so the channel's own, more precise error normally wins
        seconds = float(budget) + 1.0 if budget is not None else DEFAULT_DELIVER_TIMEOUT
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            return await channel.send(message, text)
    except DeliveryError as exc:
        if not exc.channel:
            exc.channel = name
        return exc
    except TimeoutError:
        log.warning("channel %s: no result within %gs", name, seconds)
        return DeliveryError(f"no result within {seconds:g}s", retryable=True, channel=name,
                             attempts=0)
    except Exception as exc:
        # Only the type: the message of a foreign exception may quote a secret.
        log.error("channel %s: failed with %s after %.1fs", name, type(exc).__name__,
                  time.monotonic() - started)
        return DeliveryError(f"internal error ({type(exc).__name__})", retryable=False,
                             channel=name, attempts=0)
