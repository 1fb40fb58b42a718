"""The DingTalk (钉钉) custom robot channel.

Protocol (https://open.dingtalk.com/document/robots/custom-robot-access): POST
`{"msgtype": "markdown", "markdown": {"title": …, "text": …}}` to the robot's webhook
address, whose `access_token=` is the secret; `{"errcode": 0, "errmsg": "ok"}` is success.
`title` is what the notification preview shows.

With 加签 (https://open.dingtalk.com/document/robots/customize-robot-security-settings) each
request carries `timestamp` (ms since the epoch) and
`sign = urlencode(base64(hmac_sha256(key=secret, msg=f"{timestamp}\\n{secret}")))` as query
parameters; DingTalk refuses a timestamp more than an hour off, so a fresh signature is made
for every attempt.

Retried: connection errors, timeouts, HTTP 408/429/5xx, errcode 130101 (sending too fast:
20 messages a minute per robot) and -1 (system busy). Other errcodes (310000 keyword / sign /
IP check failed, 300001 bad token, …) fail at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import parse_qsl, quote_plus, urlsplit

from pydantic import JsonValue
from yarl import URL

from alerts.channel_config import DingTalkConfig
from alerts.channels import Channel, Delivery, Outcome, send_with_retries
from alerts.message import Message
from alerts.render import RenderedText
from alerts.webhook import post_json
from alerts.wecom import RobotChannel, cut_bytes, robot_reply

TEXT_LIMIT = 20000
"""Bytes of markdown text sent; DingTalk rejects very long messages."""

RETRYABLE_ERRCODES = frozenset({-1, 130101})


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature for `timestamp_ms`, URL-encoded, ready for the query string."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(webhook_url: str, secret: str, timestamp_ms: int) -> str:
    separator = "&" if urlsplit(webhook_url).query else "?"
    return f"{webhook_url}{separator}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


class DingTalkChannel(RobotChannel):
    def __init__(self, config: DingTalkConfig) -> None:
        super().__init__(config)
        self.config = config

    def __repr__(self) -> str:
        return (f"DingTalkChannel(name={self.name!r}, url={self._shown!r}, "
                f"signed={self.config.secret is not None})")

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        webhook_url = self.config.webhook_url.get()
        secret = self.config.secret.get() if self.config.secret is not None else None
        secrets = [webhook_url, *(value for _key, value in parse_qsl(urlsplit(webhook_url).query))]
        if secret:
            secrets.append(secret)
        body: JsonValue = {"msgtype": "markdown",
                "markdown": {"title": text.title, "text": cut_bytes(text.markdown, TEXT_LIMIT)}}

        async def attempt() -> Outcome:
            url = webhook_url
            if secret:
                url = signed_url(webhook_url, secret, int(time.time() * 1000))
            reply = await post_json(self.config, URL(url, encoded=True), body, self._shown,
                                    tls=self._tls)
            return robot_reply(reply.json(), self._shown, reply.status, RETRYABLE_ERRCODES)

        return await send_with_retries(self.config, attempt, secrets)


def channel(config: DingTalkConfig) -> Channel:
    return DingTalkChannel(config)
