"""The WeCom (企业微信) group robot channel.

Protocol (https://developer.work.weixin.qq.com/document/path/91770): POST
`{"msgtype": "markdown", "markdown": {"content": …}}` to the robot's webhook address, whose
`key=` query parameter is the secret; the reply is `{"errcode": 0, "errmsg": "ok"}` on
success. Markdown content is limited to 4096 bytes (UTF-8), so longer text is cut at a
character boundary and ends with `…`. A robot takes at most 20 messages a minute.

Retried: connection errors, timeouts, HTTP 408/429/5xx, errcode 45009 (rate limit: too many
messages) and -1 (system busy). Any other errcode (93000 invalid webhook address, 40058
bad body, …) fails at once.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from pydantic import JsonValue
from yarl import URL

from alerts.channel_config import DingTalkConfig, WeComConfig
from alerts.channels import (
    Channel,
    Delivery,
    DeliveryError,
    Outcome,
    clip,
    redact_url,
    send_with_retries,
)
from alerts.message import Message
from alerts.render import RenderedText
from alerts.webhook import post_json, ssl_context

CONTENT_LIMIT = 4096
"""Bytes of markdown content WeCom accepts."""

RETRYABLE_ERRCODES = frozenset({-1, 45009})


def cut_bytes(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = limit - len(marker.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + marker


def robot_reply(reply_json: object, shown: str, status: int,
                retryable_codes: frozenset[int]) -> Outcome:
    """Success for `{"errcode": 0}`; otherwise DeliveryError naming errcode and errmsg."""
    if not isinstance(reply_json, dict) or not isinstance(reply_json.get("errcode"), int):
        raise DeliveryError(f"{shown}: HTTP {status} but no errcode in the reply",
                            retryable=False, status_code=status)
    code = reply_json["errcode"]
    errmsg = clip(str(reply_json.get("errmsg", "")), 200)
    if code == 0:
        return Outcome(status, f"errcode 0 {errmsg}".rstrip())
    raise DeliveryError(f"{shown}: errcode {code} {errmsg}".rstrip(),
                        retryable=code in retryable_codes, status_code=status)


class RobotChannel:
    """What the group robots (WeCom, DingTalk) share: a secret webhook URL, shown redacted."""

    def __init__(self, config: WeComConfig | DingTalkConfig) -> None:
        self.name = config.name
        self.language = config.language
        self.time_budget = config.time_budget
        self._tls = ssl_context(config)
        self._shown = redact_url(config.webhook_url.get())


class WeComChannel(RobotChannel):
    def __init__(self, config: WeComConfig) -> None:
        super().__init__(config)
        self.config = config

    def __repr__(self) -> str:
        return f"WeComChannel(name={self.name!r}, url={self._shown!r})"

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        url = self.config.webhook_url.get()
        secrets = [url, *(value for _key, value in parse_qsl(urlsplit(url).query))]
        body: JsonValue = {"msgtype": "markdown",
                "markdown": {"content": cut_bytes(text.markdown, CONTENT_LIMIT)}}

        async def attempt() -> Outcome:
            reply = await post_json(self.config, URL(url, encoded=True), body, self._shown,
                                    tls=self._tls)
            return robot_reply(reply.json(), self._shown, reply.status, RETRYABLE_ERRCODES)

        return await send_with_retries(self.config, attempt, secrets)


def channel(config: WeComConfig) -> Channel:
    return WeComChannel(config)
