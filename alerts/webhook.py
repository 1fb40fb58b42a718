"""The generic webhook channel: one JSON request per message to a configured URL.

The body is the config's `template` (a JSON document whose strings hold `{placeholders}`)
filled from the message, or, without a template, a fixed document of all fields (see
`default_body`). A string that is exactly one placeholder (`"{level}"`) takes the field's
JSON value (a number, or null for a missing deadline); elsewhere placeholders are replaced by
text. The result is serialised by `json.dumps`, so message text cannot break the JSON.

Success is any 2xx. Retried: connection errors, timeouts, 408, 429 and 5xx. Anything else
(a 4xx: bad URL, bad token, rejected body) fails at once: repeating it cannot help.

Also home of `post_json`, the one HTTP attempt the robot channels (WeCom, DingTalk) share.
"""

from __future__ import annotations

import json
import ssl
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from pydantic import JsonValue
from yarl import URL

from alerts.channel_config import HttpChannelBase, WebhookConfig
from alerts.channels import (
    Channel,
    Delivery,
    DeliveryError,
    Outcome,
    clip,
    header_secrets,
    redact_url,
    send_with_retries,
)
from alerts.message import Message
from alerts.render import RenderedText, level_name

REPLY_LIMIT = 64 * 1024
"""Bytes of a reply read; robots answer a few dozen."""

_USER_AGENT = "wardwatch-alerts"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def snippet(self) -> str:
        return clip(self.body.decode("utf-8", "replace"), 200)


def ssl_context(config: HttpChannelBase) -> ssl.SSLContext | bool:
    """A verifying context with the config's extra CA file, or True (the system's CAs)."""
    if config.ca_file is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(config.ca_file))
    return context


async def post_json(config: HttpChannelBase, url: URL, body: JsonValue, shown: str, *,
                    method: str = "POST", headers: Mapping[str, str] | None = None,
                    tls: ssl.SSLContext | bool = True) -> Reply:
    """One request with a JSON body; the reply when its status is 2xx.

    Raises DeliveryError (`retryable` for connection errors, 408, 429, 5xx). `shown` is the
    URL as it may appear in texts (redacted); `url` itself never does. The caller's timeout
    (`send_with_retries`) bounds the attempt; the session's own is a backstop.
    """
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    all_headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": _USER_AGENT, **(headers or {})}
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session, \
                session.request(method, url, data=data, headers=all_headers, ssl=tls,
                                proxy=config.proxy, allow_redirects=False) as response:
            reply = Reply(response.status, await response.content.read(REPLY_LIMIT))
    except TimeoutError:
        raise DeliveryError(f"{shown}: no answer within {config.timeout:g}s",
                            retryable=True) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise DeliveryError(f"{shown}: TLS certificate not trusted "
                            f"({type(exc.certificate_error).__name__})",
                            retryable=False) from None
    except aiohttp.ClientSSLError as exc:
        raise DeliveryError(f"{shown}: TLS handshake failed ({type(exc).__name__})",
                            retryable=False) from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        raise DeliveryError(f"{shown}: cannot connect ({reason})", retryable=True) from None
    except aiohttp.InvalidURL:
        raise DeliveryError(f"{shown}: invalid URL", retryable=False) from None
    except (aiohttp.ClientError, OSError) as exc:
        # Type only: aiohttp's messages can quote the full URL, key included.
        raise DeliveryError(f"{shown}: {type(exc).__name__}", retryable=True) from None
    if 200 <= reply.status < 300:
        return reply
    retryable = reply.status in (408, 429) or reply.status >= 500
    raise DeliveryError(f"{shown}: HTTP {reply.status} {reply.snippet()}".rstrip(),
                        retryable=retryable, status_code=reply.status)


def message_fields(message: Message, text: RenderedText) -> dict[str, JsonValue]:
    """Every field a template may use, as JSON values (times ISO 8601, missing ones null)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "event": str(message.event),
        "incident_id": message.incident_id,
        "level": message.level,
        "level_name": level_name(message.level, text.language),
        "system_id": message.system_id,
        "system_name": message.system_name,
        "cause": message.cause,
        "opened_at": iso(message.opened_at),
        "respond_by": iso(message.respond_by),
        "recover_by": iso(message.recover_by),
        "report_by": iso(message.report_by),
        "deadline": message.deadline,
        "link": message.link,
        "note": message.note,
        "at": iso(message.at),
        "title": text.title,
        "text": text.text,
        "markdown": text.markdown,
        "language": text.language,
    }


def default_body(message: Message, text: RenderedText) -> dict[str, JsonValue]:
    """The body without a template: all fields, as `message_fields` gives them."""
    return message_fields(message, text)


def fill_template(template: JsonValue, fields: Mapping[str, JsonValue]) -> JsonValue:
    """`template` with its placeholders filled (placeholders were checked at config load)."""
    if isinstance(template, str):
        whole = _single_placeholder(template)
        if whole is not None:
            return fields[whole]
        texts = {key: "" if value is None else str(value) for key, value in fields.items()}
        return string.Formatter().vformat(template, (), texts)
    if isinstance(template, dict):
        return {key: fill_template(value, fields) for key, value in template.items()}
    if isinstance(template, list):
        return [fill_template(value, fields) for value in template]
    return template


def _single_placeholder(text: str) -> str | None:
    parsed = list(string.Formatter().parse(text))
    if len(parsed) == 1:
        literal, field, spec, conversion = parsed[0]
        if not literal and field and not spec and not conversion:
            return field
    return None


class WebhookChannel:
    """A JSON POST (or PUT) of the message to `config.url`."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.name = config.name
        self.language = config.language
        self.time_budget = config.time_budget
        self._tls = ssl_context(config)
        self._shown = redact_url(config.url)

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={self._shown!r})"

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        fields = message_fields(message, text)
        body = (fill_template(self.config.template, fields) if self.config.template is not None
                else default_body(message, text))
        headers = dict(self.config.headers)
        headers.update({name: ref.get() for name, ref in self.config.secret_headers.items()})
        # the header values as a peer may quote them, and the URL's query values (a token
        # there is shown as *** in `_shown`, but a peer may echo the URL it was called with)
        secrets = [form for ref in self.config.secret_headers.values()
                   for form in header_secrets(ref.get())]
        secrets += [value for _key, value in parse_qsl(urlsplit(self.config.url).query)
                    if len(value) >= 8]   # not `format=json`: tokens are long

        async def attempt() -> Outcome:
            reply = await post_json(self.config, URL(self.config.url), body, self._shown,
                                    method=self.config.method, headers=headers, tls=self._tls)
            return Outcome(reply.status, f"HTTP {reply.status}")

        return await send_with_retries(self.config, attempt, secrets)


def channel(config: WebhookConfig) -> Channel:
    return WebhookChannel(config)
