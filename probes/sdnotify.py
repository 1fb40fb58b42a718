"""The systemd notification protocol (sd_notify(3)), spoken without libsystemd.

Owns what the agent and the collector tell their service manager: `READY=1` once they serve,
`STATUS=` lines, `RELOADING=1`, `STOPPING=1`, and `WATCHDOG=1` pings. It lives in `probes`
because that is the one package both services import (docs/deploy.md, "systemd").

The protocol is one datagram per notification, newline-separated `KEY=VALUE` lines, sent to
the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
Without `$NOTIFY_SOCKET` every call is a no-op, so the same code runs from a shell, under
systemd, in containers and on Windows.

The watchdog pinger is a task on the service's own event loop, not a thread: a loop wedged by
a blocking call stops the pings, and systemd (`WatchdogSec=`) kills and restarts the service.
A thread would keep pinging for a dead loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

log = logging.getLogger("wardwatch.sdnotify")

# the variables systemd sets for the main process; removed after reading so that children
# (Nagios plugins run by `command` checks) cannot notify in our name
ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class Notifier:
    """Sends notifications to one socket; `address` None means "not under systemd"."""

    address: str | bytes | None = None
    watchdog_interval: float | None = None
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    recommends; None when no watchdog is asked of this process."""

    def __post_init__(self) -> None:
        self._warned = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *,
                     unset: bool = True, pid: int | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if unset:
            for name in ENV_NAMES:
                env.pop(name, None)
        address: str | bytes | None = None
        if raw.startswith("@"):
            address = b"\0" + raw[1:].encode()  # Linux abstract namespace
        elif raw.startswith("/"):
            address = raw
        elif raw:
            # systemd ≥ 254 also offers vsock: addresses (VMs); we serve hosts and containers
            log.warning("NOTIFY_SOCKET=%r is not a unix socket; notifications disabled", raw)
        interval = None
        if address is not None and watchdog_usec:
            mine = pid if pid is not None else os.getpid()
            try:
                usec = int(watchdog_usec)
                for_us = not watchdog_pid or int(watchdog_pid) == mine
            except ValueError:
                log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r",
                            watchdog_usec, watchdog_pid)
            else:
                if usec > 0 and for_us:
                    interval = usec / 2 / 1_000_000
        return cls(address=address, watchdog_interval=interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; True when it was sent.

        Never blocks and never raises: a full or missing socket costs one warning, because
        a service must not fail for want of telling systemd about itself.
        """
        if self.address is None or not lines:
            return False
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager at %r: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", "STATUS=reloading the configuration")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    async def run_watchdog(self, status: Callable[[], str] | None = None) -> None:
        """Ping every `watchdog_interval` until cancelled; returns at once without a watchdog.

        `status`, when given, is asked on every tick and a changed line is sent as STATUS=,
        so `systemctl status` shows the service's current figures.
        """
        interval = self.watchdog_interval
        if self.address is None or interval is None:
            return
        last_status = ""
        while True:
            lines = ["WATCHDOG=1"]
            if status is not None:
                try:
                    current = status()
                except Exception:  # a status bug must not stop the pings
                    log.exception("building the service status line failed")
                    current = last_status
                if current != last_status:
                    lines.append(f"STATUS={current}")
            # a status line lost to a full socket is sent again on the next tick
            if self.notify(*lines) and len(lines) > 1:
                last_status = lines[1].removeprefix("STATUS=")
            await asyncio.sleep(interval)
