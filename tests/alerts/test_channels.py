"""Channels against real peers on loopback: an aiohttp server playing the webhook receiver,
the WeCom and the DingTalk robots (conftest.Peer), and aiosmtpd servers (conftest.smtp).
Assertions are on what the peer received and on the returned records."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.channels import (
    Channel,
    ChannelConfig,
    Delivery,
    DeliveryError,
    build_channel,
    deliver,
    parse_channels,
    redact_url,
    routes,
)
from alerts.message import Event, Message
from alerts.render import RenderedText
from alerts.wecom import cut_bytes
from probes.config import ConfigError
from tests.alerts.conftest import (
    DINGTALK_SECRET,
    HANG,
    SECRETS,
    SMTP_USER,
    WEBHOOK_TOKEN,
    WECOM_KEY,
    Answer,
    Mailbox,
    Peer,
)

ZONE = ZoneInfo("Asia/Shanghai")
OPENED = datetime(2026, 11, 26, 1, 30, 5, tzinfo=UTC)
FAST: dict[str, Any] = {"timeout": 2, "retries": 2, "backoff": 0.01, "backoff_max": 0.02}
TITLE = "【一级故障】电子病历 EMR 故障已开启 INC-2026-0042"


def message(**changes: Any) -> Message:
    base = Message(
        event=Event.OPENED, incident_id="INC-2026-0042", level=1, system_id="EMR",
        system_name="电子病历", cause="WebLogic EMR_Server2 FAILED; JDBC EMRDS waiting=37",
        opened_at=OPENED, respond_by=OPENED + timedelta(minutes=10),
        recover_by=OPENED + timedelta(minutes=30), report_by=OPENED + timedelta(hours=24),
        link="https://wardwatch.hospital.local/incidents/INC-2026-0042")
    return dataclasses.replace(base, **changes)


def config(**data: Any) -> ChannelConfig:
    return parse_channels([{**FAST, **data}])[0]


def channel(**data: Any) -> Channel:
    return build_channel(config(**data))


async def send_one(ch: Channel, msg: Message | None = None) -> Delivery | DeliveryError:
    [result] = await deliver([ch], msg or message(), "zh-CN", ZONE)
    return result


def webhook(peer: Peer, **data: Any) -> Channel:
    return channel(name="hook", type="webhook", url=f"{peer.base}/hook", **data)


# --- generic webhook ----------------------------------------------------------------------

async def test_webhook_default_body_carries_all_fields(peer: Peer, secret_env: None) -> None:
    ch = webhook(peer, secret_headers={"Authorization": {"env": "WW_WEBHOOK_AUTH"}},
                 headers={"X-Source": "wardwatch"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    assert (result.channel, result.attempts, result.status_code) == ("hook", 1, 200)
    [got] = peer.on("/hook")
    assert got.headers["Authorization"] == WEBHOOK_TOKEN
    assert got.headers["X-Source"] == "wardwatch"
    body = got.body
    assert body["event"] == "opened"
    assert body["incident_id"] == "INC-2026-0042"
    assert body["level"] == 1
    assert body["level_name"] == "一级（紧急）"
    assert body["system_name"] == "电子病历"
    assert body["opened_at"] == "2026-11-26T01:30:05+00:00"
    assert body["deadline"] is None
    assert body["title"] == TITLE
    assert "发生时间：2026-11-26 09:30:05" in body["text"]


async def test_webhook_template_is_filled_and_typed(peer: Peer) -> None:
    template = {
        "msgtype": "text",
        "text": {"content": "{title}\n原因：{cause}\n{{literal}}"},
        "level": "{level}",
        "respond_by": "{respond_by}",
        "note": "{note}",
        "tags": ["wardwatch", "{system_id}-{level}"],
        "count": 3,
    }
    result = await send_one(webhook(peer, template=template))

    assert isinstance(result, Delivery), result
    assert peer.on("/hook")[0].body == {
        "msgtype": "text",
        "text": {"content": f"{TITLE}\n原因：WebLogic EMR_Server2 FAILED; JDBC EMRDS waiting=37"
                            "\n{literal}"},
        "level": 1,
        "respond_by": "2026-11-26T01:40:05+00:00",
        "note": None,
        "tags": ["wardwatch", "EMR-1"],
        "count": 3,
    }


async def test_retries_then_success(peer: Peer) -> None:
    peer.script("/hook", Answer(500, {"error": "boom"}), Answer(429, {}))
    result = await send_one(webhook(peer))

    assert isinstance(result, Delivery), result
    assert result.attempts == 3
    assert [a.status_code for a in result.history] == [500, 429, 200]
    assert "HTTP 500" in result.history[0].detail
    assert len(peer.on("/hook")) == 3


async def test_client_error_fails_fast_with_one_attempt(peer: Peer) -> None:
    peer.script("/hook", Answer(400, {"error": "bad body"}))
    result = await send_one(webhook(peer))

    assert isinstance(result, DeliveryError)
    assert not result.retryable
    assert (result.attempts, result.status_code) == (1, 400)
    assert "HTTP 400" in str(result)
    assert len(peer.on("/hook")) == 1


async def test_retries_exhausted(peer: Peer) -> None:
    peer.script("/hook", *[Answer(503, {})] * 5)
    result = await send_one(webhook(peer))

    assert isinstance(result, DeliveryError)
    assert result.retryable
    assert result.attempts == 3 == len(peer.on("/hook"))
    assert [a.status_code for a in result.history] == [503, 503, 503]


async def test_connection_refused_is_retried(unused_tcp_port: int) -> None:
    ch = channel(name="nowhere", type="webhook", url=f"http://127.0.0.1:{unused_tcp_port}/x")
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert result.retryable
    assert result.attempts == 3
    assert "cannot connect" in str(result)


# --- WeCom --------------------------------------------------------------------------------

async def test_wecom_markdown_and_rate_limit_retry(peer: Peer, secret_env: None) -> None:
    peer.script("/cgi-bin/webhook/send",
                Answer(200, {"errcode": 45009, "errmsg": "api freq out of limit"}))
    ch = channel(name="ops-wecom", type="wecom", webhook_url={"env": "WW_WECOM_URL"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    assert result.attempts == 2
    assert result.detail == "errcode 0 ok"
    assert "errcode 45009" in result.history[0].detail
    last = peer.on("/cgi-bin/webhook/send")[-1]
    assert last.query["key"] == WECOM_KEY
    assert last.body["msgtype"] == "markdown"
    content = last.body["markdown"]["content"]
    assert content.startswith(f"### {TITLE}")
    assert "**响应时限**：2026-11-26 09:40:05" in content
    assert "(https://wardwatch.hospital.local/incidents/INC-2026-0042)" in content


async def test_wecom_bad_errcode_fails_fast(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WW_WECOM_URL", f"{peer.base}/cgi-bin/webhook/send?key=wrong-key-s3cr3t")
    ch = channel(name="ops-wecom", type="wecom", webhook_url={"env": "WW_WECOM_URL"})
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert not result.retryable
    assert result.attempts == 1
    assert "errcode 93000" in str(result)
    assert "wrong-key-s3cr3t" not in repr(result) + str(result) + repr(ch)
    assert "key=***" in str(result)


def test_wecom_content_is_cut_at_4096_bytes() -> None:
    text = "故障" * 3000
    cut = cut_bytes(text, 4096)
    assert len(cut.encode()) <= 4096
    assert cut.endswith("…")
    assert cut_bytes("short", 4096) == "short"


# --- DingTalk -----------------------------------------------------------------------------

async def test_dingtalk_signed_request_passes_dingtalk_check(peer: Peer,
                                                             secret_env: None) -> None:
    peer.dingtalk_secret = DINGTALK_SECRET
    ch = channel(name="ops-ding", type="dingtalk", webhook_url={"env": "WW_DINGTALK_URL"},
                 secret={"env": "WW_DINGTALK_SECRET"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    [got] = peer.on("/robot/send")
    assert {"access_token", "timestamp", "sign"} <= set(got.query)
    assert got.body["msgtype"] == "markdown"
    assert got.body["markdown"]["title"] == TITLE
    assert "**原因**：WebLogic EMR_Server2 FAILED" in got.body["markdown"]["text"]


async def test_dingtalk_wrong_secret_is_refused_without_retry(
        peer: Peer, secret_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    peer.dingtalk_secret = DINGTALK_SECRET
    monkeypatch.setenv("WW_DINGTALK_SECRET", "SECnot-the-right-one")
    ch = channel(name="ops-ding", type="dingtalk", webhook_url={"env": "WW_DINGTALK_URL"},
                 secret={"env": "WW_DINGTALK_SECRET"})
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert (result.retryable, result.attempts) == (False, 1)
    assert "errcode 310000 sign not match" in str(result)


async def test_dingtalk_too_fast_is_retried(peer: Peer, secret_env: None) -> None:
    peer.script("/robot/send", Answer(200, {"errcode": 130101, "errmsg": "send too fast"}))
    ch = channel(name="ops-ding", type="dingtalk", webhook_url={"env": "WW_DINGTALK_URL"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    assert result.attempts == 2


# --- deliver: concurrency, timeouts, languages --------------------------------------------

async def test_hung_channel_is_cut_while_another_delivers_promptly(peer: Peer,
                                                                   secret_env: None) -> None:
    peer.script("/hook", HANG)
    hung = channel(name="hung", type="webhook", url=f"{peer.base}/hook", timeout=1.0,
                   retries=0)
    good = channel(name="ops-wecom", type="wecom", webhook_url={"env": "WW_WECOM_URL"})
    started = time.monotonic()
    task = asyncio.create_task(deliver([hung, good], message(), "zh-CN", ZONE))

    # the good channel's request arrives and is answered while the hung one is still waiting
    await asyncio.wait_for(peer.arrived["/cgi-bin/webhook/send"].wait(), timeout=0.9)
    await asyncio.wait_for(peer.arrived["/hook"].wait(), timeout=0.9)
    assert not task.done()

    hung_result, good_result = await task
    elapsed = time.monotonic() - started
    assert isinstance(good_result, Delivery), good_result
    assert isinstance(hung_result, DeliveryError)
    assert hung_result.retryable
    assert "no answer within 1s" in str(hung_result)
    assert elapsed < 3.0


async def test_total_time_budget_bounds_a_delivery(peer: Peer) -> None:
    peer.script("/hook", HANG, HANG, HANG)
    ch = channel(name="slow", type="webhook", url=f"{peer.base}/hook", timeout=0.3,
                 retries=5, total_timeout=0.5)
    started = time.monotonic()
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert "gave up after 0.5s" in str(result)
    assert result.attempts == 2  # the first timed out, the second was cut by the budget
    assert result.history[-1].detail == "cut by the total time budget"
    assert time.monotonic() - started < 2.0


async def test_deliver_renders_each_language_once_per_channel_language(peer: Peer) -> None:
    zh = webhook(peer)
    en = channel(name="hook-en", type="webhook", url=f"{peer.base}/hook", language="en")
    results = await deliver([zh, en], message(), "zh-CN", ZONE)

    assert all(isinstance(r, Delivery) for r in results), results
    titles = sorted(r.body["title"] for r in peer.on("/hook"))
    assert titles == ["[Level 1 incident] 电子病历 EMR incident opened INC-2026-0042", TITLE]


class _Broken:
    """A channel with a bug: its exception message holds a secret."""

    name = "broken"

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        raise RuntimeError(f"oops {WECOM_KEY}")


async def test_a_broken_channel_does_not_fail_the_others(peer: Peer) -> None:
    broken, good = _Broken(), webhook(peer)
    results = await deliver([broken, good], message(), "zh-CN", ZONE)

    assert isinstance(results[1], Delivery)
    assert isinstance(results[0], DeliveryError)
    assert results[0].channel == "broken"
    assert str(results[0]) == "internal error (RuntimeError)"


# --- routing ------------------------------------------------------------------------------

def test_routing_by_level_system_and_event() -> None:
    emr_urgent = config(name="emr", type="webhook", url="https://x.example/h", levels=[1, 2],
                        systems=["EMR", "HIS-*"])
    everything = config(name="all", type="webhook", url="https://x.example/h")
    breaches = config(name="breaches", type="webhook", url="https://x.example/h",
                      events=["breach"])

    assert routes(emr_urgent, message())
    assert routes(emr_urgent, message(system_id="HIS-OUTPATIENT", level=2))
    assert not routes(emr_urgent, message(level=3))
    assert not routes(emr_urgent, message(system_id="PACS"))
    assert routes(everything, message(system_id="PACS", level=4))
    assert not routes(breaches, message())
    assert routes(breaches, message(event=Event.BREACH, deadline="respond"))


# --- e-mail -------------------------------------------------------------------------------

def email(box: Mailbox, **data: Any) -> Channel:
    return channel(name="duty-mail", type="email", host=box.host, port=box.port,
                   sender="wardwatch <wardwatch@hospital.local>",
                   to=["duty@hospital.local", "信息科 <it@hospital.local>"], **data)


def assert_chinese_mail(box: Mailbox) -> None:
    [(envelope, mail)] = box.received()
    assert envelope.mail_from == "wardwatch@hospital.local"
    assert envelope.rcpt_tos == ["duty@hospital.local", "it@hospital.local"]
    assert mail["Subject"] == TITLE
    assert mail["X-Wardwatch-Incident"] == "INC-2026-0042"
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert "级别：一级（紧急）" in text
    assert "发生时间：2026-11-26 09:30:05" in text
    assert "恢复时限：2026-11-26 10:00:05" in text
    assert '<a href="https://wardwatch.hospital.local/incidents/INC-2026-0042">' in \
        html.get_content()


async def test_email_starttls_with_auth(smtp: Callable[..., Mailbox], ca_file: Path,
                                        secret_env: None) -> None:
    box = await asyncio.to_thread(smtp, "starttls", True)
    ch = email(box, security="starttls", ca_file=str(ca_file), username=SMTP_USER,
               password={"env": "WW_SMTP_PASSWORD"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    assert (result.status_code, result.attempts) == (250, 1)
    assert result.detail == "250 accepted for 2 recipient(s)"
    assert box.logins and box.logins[-1].endswith(":ok")
    assert_chinese_mail(box)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_implicit_tls(smtp: Callable[..., Mailbox], ca_file: Path,
                                  secret_env: None) -> None:
    box = await asyncio.to_thread(smtp, "tls", True)
    ch = email(box, security="tls", ca_file=str(ca_file), username=SMTP_USER,
               password={"env": "WW_SMTP_PASSWORD"})
    result = await send_one(ch)

    assert isinstance(result, Delivery), result
    assert_chinese_mail(box)


async def test_email_plain_to_loopback_relay(smtp: Callable[..., Mailbox]) -> None:
    box = await asyncio.to_thread(smtp, "none", False)
    result = await send_one(email(box, security="none"))

    assert isinstance(result, Delivery), result
    assert_chinese_mail(box)


async def test_email_wrong_password_fails_fast(smtp: Callable[..., Mailbox], ca_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WW_SMTP_PASSWORD", "wrong-pass-s3cr3t")
    box = await asyncio.to_thread(smtp, "starttls", True)
    ch = email(box, security="starttls", ca_file=str(ca_file), username=SMTP_USER,
               password={"env": "WW_SMTP_PASSWORD"})
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert (result.retryable, result.attempts, result.status_code) == (False, 1, 535)
    assert "authentication failed" in str(result)
    assert "wrong-pass-s3cr3t" not in repr(result) + str(result)
    assert box.received() == []


async def test_email_untrusted_certificate_is_refused(smtp: Callable[..., Mailbox],
                                                      secret_env: None) -> None:
    box = await asyncio.to_thread(smtp, "starttls", True)
    ch = email(box, security="starttls", username=SMTP_USER,
               password={"env": "WW_SMTP_PASSWORD"})  # no ca_file: the system's CAs
    result = await send_one(ch)

    assert isinstance(result, DeliveryError)
    assert (result.retryable, result.attempts) == (False, 1)
    assert "certificate" in str(result)
    assert box.received() == []


# --- config -------------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "expected"), [
    ({"name": "w", "type": "wecom", "webhook_url": "https://qyapi.weixin.qq.com/x?key=abc"},
     "channels[0].webhook_url: must be a mapping with `env: VARIABLE` or `file: /path`"),
    ({"name": "w", "type": "wecom", "webhook_url": {"value": "https://q/x?key=abc"}},
     "channels[0].webhook_url: inline secrets are not accepted"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h",
      "template": {"text": "{title} {password}"}},
     "channels[0].template: template placeholder {password} is unknown"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h",
      "template": {"a": ["{cause.__class__}"]}},
     "channels[0].template: template placeholder {cause.__class__} is unknown"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h", "template": {"a": "{"}},
     "channels[0].template: template string '{'"),
    ({"name": "m", "type": "email", "host": "smtp.hospital.local", "security": "none",
      "sender": "a@hospital.local", "to": ["b@hospital.local"]},
     "security: none sends mail (and any password) in clear text"),
    ({"name": "h", "type": "webhook", "url": "http://x.example/h",
      "secret_headers": {"Authorization": {"env": "WW_WEBHOOK_AUTH"}}},
     "url carries a secret and must use https://"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h",
      "headers": {"Authorization": "Bearer inline"}},
     "header 'Authorization' carries credentials"),
    ({"name": "w", "type": "wecom", "webhook_url": {"env": "WW_PLAIN_HTTP"}},
     "webhook_url carries a secret and must use https://"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h", "levels": [5]},
     "channels[0].levels: Value error, levels must be"),
    ({"name": "h", "type": "webhook", "url": "https://x.example/h", "retry": 3},
     "channels[0].retry: unknown key"),
    ({"name": "h", "type": "pager"}, "does not match any of the expected tags"),
])
def test_config_errors_name_the_path(entry: dict[str, Any], expected: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WW_WEBHOOK_AUTH", WEBHOOK_TOKEN)
    monkeypatch.setenv("WW_PLAIN_HTTP", f"http://qyapi.weixin.qq.com/send?key={WECOM_KEY}")
    with pytest.raises(ConfigError) as caught:
        parse_channels([entry], "alerts.yaml")
    text = str(caught.value)
    assert expected.replace("Value error, ", "") in text
    assert WECOM_KEY not in text and "webhook-token" not in text


def test_channel_names_are_unique() -> None:
    entry = {"name": "dup", "type": "webhook", "url": "https://x.example/h"}
    with pytest.raises(ConfigError, match="channel name 'dup' is used twice"):
        parse_channels([entry, entry])


def test_redact_url() -> None:
    assert redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc") == \
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"
    assert redact_url("https://user:pw@oapi.dingtalk.com/robot/send?access_token=t&x=1") == \
        "https://***@oapi.dingtalk.com/robot/send?access_token=***&x=***"


# --- secrets never show -------------------------------------------------------------------

async def test_no_secret_in_any_record_repr_or_log(
        peer: Peer, secret_env: None, smtp: Callable[..., Mailbox], ca_file: Path,
        caplog: pytest.LogCaptureFixture, unused_tcp_port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG, logger="alerts")
    box = await asyncio.to_thread(smtp, "starttls", True)
    configs = parse_channels([
        {**FAST, "name": "hook", "type": "webhook", "url": f"{peer.base}/hook",
         "secret_headers": {"Authorization": {"env": "WW_WEBHOOK_AUTH"}}},
        {**FAST, "name": "wecom", "type": "wecom", "webhook_url": {"env": "WW_WECOM_URL"}},
        {**FAST, "name": "ding", "type": "dingtalk", "webhook_url": {"env": "WW_DINGTALK_URL"},
         "secret": {"env": "WW_DINGTALK_SECRET"}},
        {**FAST, "name": "mail", "type": "email", "host": box.host, "port": box.port,
         "security": "starttls", "ca_file": str(ca_file), "username": SMTP_USER,
         "password": {"env": "WW_SMTP_PASSWORD"}, "sender": "ww@hospital.local",
         "to": ["duty@hospital.local"]},
    ])
    channels = [build_channel(c) for c in configs]
    # first round: every peer fails in a different way (retryable, then not)
    peer.script("/hook", Answer(500, {"echo": WEBHOOK_TOKEN}), Answer(403, {}))
    peer.script("/cgi-bin/webhook/send", Answer(502, {}), Answer(200, {"errcode": 40058}))
    peer.script("/robot/send", Answer(200, {"errcode": 130101, "errmsg": DINGTALK_SECRET}),
                Answer(200, {"errcode": 310000, "errmsg": "sign not match"}))
    failed = await deliver(channels, message(), "zh-CN", ZONE)
    # second round: all succeed
    ok = await deliver(channels, message(event=Event.BREACH, deadline="respond"), "en", ZONE)
    # and a channel that cannot connect at all
    monkeypatch.setenv("WW_WECOM_URL", f"http://127.0.0.1:{unused_tcp_port}/s?key={WECOM_KEY}")
    [refused] = await deliver(
        [build_channel(config(name="w2", type="wecom", webhook_url={"env": "WW_WECOM_URL"}))],
        message(), "zh-CN", ZONE)

    assert all(isinstance(r, DeliveryError) for r in failed[:3]), failed
    assert all(isinstance(r, Delivery) for r in ok), ok
    assert isinstance(refused, DeliveryError)
    shown = [str(r) for r in [*failed, *ok, refused]] + [repr(r) for r in [*failed, *ok, refused]]
    shown += [repr(c) for c in configs] + [repr(c) for c in channels]
    shown += [c.model_dump_json() for c in configs]
    for r in [*failed, *ok, refused]:
        shown += [a.detail for a in r.history]
    # ours only: the test peers (aiohttp's access log, aiosmtpd) may log what they received
    shown += [r.getMessage() for r in caplog.records if r.name.startswith("alerts")]
    everything = "\n".join(shown)
    for secret in SECRETS:
        assert secret not in everything, secret
    assert "key=***" in everything
