"""The e-mail channel: one message over SMTP per notification, to every `to` address.

The standard library's `smtplib` runs in `asyncio.to_thread` with `timeout=` set on its
socket, because cancelling the awaiting task cannot stop the thread: the socket timeout does.
STARTTLS (default, port 587) and implicit TLS (port 465) verify the server's certificate
against the system's CAs or `ca_file`; `security: none` is accepted by the config only to a
loopback relay. The subject is the rendered title (UTF-8, RFC 2047-encoded on the wire); the
body is text/plain with a simple text/html alternative.

Retried: connection errors, timeouts, a dropped connection and 4xx replies (greylisting,
"try again later"). Not retried: 5xx replies (authentication failed, recipient unknown),
a server without STARTTLS, and certificate errors. Some recipients refused while others
accept is a delivery; the detail names the refused ones.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from alerts.channel_config import EmailConfig
from alerts.channels import Channel, Delivery, DeliveryError, Outcome, send_with_retries
from alerts.message import Message
from alerts.render import RenderedText


def compose(config: EmailConfig, message: Message, text: RenderedText) -> EmailMessage:
    """The e-mail for `text`: UTF-8 subject, text/plain plus text/html."""
    mail = EmailMessage()
    mail["Subject"] = text.title
    mail["From"] = config.sender
    mail["To"] = ", ".join(config.to)
    mail["Date"] = format_datetime(datetime.now(UTC))
    # An explicit domain: make_msgid() would otherwise ask DNS for this host's FQDN.
    domain = parseaddr(config.sender)[1].rpartition("@")[2] or "wardwatch.invalid"
    mail["Message-ID"] = make_msgid("wardwatch", domain=domain)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Wardwatch-Incident"] = message.incident_id
    mail["X-Wardwatch-Event"] = str(message.event)
    mail.set_content(text.text + "\n", charset="utf-8")
    if text.html:
        mail.add_alternative(text.html, subtype="html", charset="utf-8")
    return mail


class EmailChannel:
    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.name = config.name
        self.language = config.language
        self.time_budget = config.time_budget
        self._shown = f"smtp://{config.host}:{config.smtp_port}"
        self._tls: ssl.SSLContext | None = None
        if config.security != "none":
            self._tls = ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None)

    def __repr__(self) -> str:
        return (f"EmailChannel(name={self.name!r}, server={self._shown!r}, "
                f"security={self.config.security!r}, to={list(self.config.to)!r})")

    async def send(self, message: Message, text: RenderedText) -> Delivery:
        mail = compose(self.config, message, text)
        password = self.config.password.get() if self.config.password is not None else ""
        # a server's reply may quote the AUTH exchange: PLAIN sends base64("\0user\0pass"),
        # LOGIN base64("pass") (redact covers base64 forms)
        secrets = [password, f"\0{self.config.username}\0{password}"] if password else []

        async def attempt() -> Outcome:
            return await asyncio.to_thread(self._send_blocking, mail, password)

        return await send_with_retries(self.config, attempt, secrets)

    def _send_blocking(self, mail: EmailMessage, password: str) -> Outcome:
        config = self.config
        shown = self._shown
        # The host name without a DNS lookup (smtplib's default, getfqdn(), can stall).
        local = socket.gethostname() or "localhost"
        try:
            smtp: smtplib.SMTP
            if config.security == "tls":
                smtp = smtplib.SMTP_SSL(config.host, config.smtp_port, local_hostname=local,
                                        timeout=config.timeout, context=self._tls)
            else:
                smtp = smtplib.SMTP(config.host, config.smtp_port, local_hostname=local,
                                    timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise DeliveryError(f"{shown}: the server does not offer STARTTLS",
                                            retryable=False)
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if config.username is not None:
                    smtp.login(config.username, password)
                refused = smtp.send_message(mail, from_addr=_bare(config.sender),
                                            to_addrs=[_bare(to) for to in config.to])
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{shown}: authentication failed ({exc.smtp_code})",
                                retryable=False, status_code=exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _reply in exc.recipients.values()]
            code = codes[0] if codes else None
            raise DeliveryError(f"{shown}: all recipients refused: {_refusals(exc.recipients)}",
                                retryable=bool(codes) and all(400 <= c < 500 for c in codes),
                                status_code=code) from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"{shown}: {exc.smtp_code} {reply}",
                                retryable=400 <= exc.smtp_code < 500,
                                status_code=exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(f"{shown}: the server does not support a needed command "
                                "(AUTH?)", retryable=False) from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{shown}: the server closed the connection",
                                retryable=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{shown}: TLS certificate not trusted ({exc.verify_message})",
                                retryable=False) from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"{shown}: TLS failed ({exc.reason})", retryable=False) from None
        except TimeoutError:
            raise DeliveryError(f"{shown}: no answer within {config.timeout:g}s",
                                retryable=True) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"{shown}: {type(exc).__name__}", retryable=True) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DeliveryError(f"{shown}: cannot connect ({reason})", retryable=True) from None
        accepted = len(config.to) - len(refused)
        detail = f"250 accepted for {accepted} recipient(s)"
        if refused:
            detail += f"; refused: {_refusals(refused)}"
        return Outcome(250, detail)


def _bare(address: str) -> str:
    return parseaddr(address)[1]


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{to} ({code})" for to, (code, _reply) in recipients.items())


def channel(config: EmailConfig) -> Channel:
    return EmailChannel(config)
