"""The notification outbox: which message is due to which channel and when, and what became
of each delivery.

Incident changes queue rows in `notifications` *in the same transaction* as the change (so a
crash cannot lose a message nor send one for a change that was rolled back), one per routed
channel, each with a `dedup` key that makes the row unique however many collectors ask:
`opened` / `escalated` / `recovered` / `acknowledged` / `closed` at once, `breach` when an
overtime is counted, and `reminder`s at `incidents.remind_at` fractions of the respond and
recover windows (80 % by default: 8 minutes into a level-1 incident's 10).

`dispatch(now)` claims due rows one by one (`UPDATE … WHERE state = 'pending'`: one collector
wins each row), renders each message once, sends to its channels concurrently, and records the
outcome on the row (attempts, last error, sent time) and in the incident's timeline. A
delivery that failed for a reason that may pass (the channel down, a 5xx, a rate limit) is
due again later, for up to REDELIVER_FOR; a refusal that will not pass (a wrong secret, a
4xx) fails at once. A
reminder whose deadline was met, or whose incident closed, is skipped. A row left `sending`
by a collector that died is taken up again after `RECLAIM_AFTER`. A failing channel never
blocks another, nor the incident: delivery runs after the incident's transaction committed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from alerts.channel_config import ChannelConfig, routes
from alerts.channels import Channel, Delivery, DeliveryError, build_channel, deliver
from alerts.config import DeadlineKind
from alerts.message import Event, Message
from collector.config import CollectorConfig
from collector.incidents import Change, Incident, IncidentService
from collector.schema import incident_events, notifications
from collector.store import Store

log = logging.getLogger("wardwatch.collector.outbox")

RECLAIM_AFTER = timedelta(minutes=5)
REDELIVER_FOR = timedelta(hours=24)
"""A message whose channel keeps failing with a passing fault is tried again this long."""
REDELIVER_MIN_WAIT = timedelta(minutes=1)
REDELIVER_MAX_WAIT = timedelta(minutes=15)
BATCH = 50

_EVENTS = {"opened": Event.OPENED, "reopened": Event.OPENED, "escalated": Event.ESCALATED,
           "recovered": Event.RECOVERED, "acknowledged": Event.ACKNOWLEDGED,
           "closed": Event.CLOSED, "overtime": Event.BREACH}
_MET = {"respond": "responded_at", "recover": "recovered_at", "report": "report_submitted_at"}


class Outbox:
    def __init__(self, config: CollectorConfig, store: Store,
                 incidents: IncidentService) -> None:
        self.config = config
        self.store = store
        self.incidents = incidents
        self.configs: dict[str, ChannelConfig] = {c.name: c for c in config.channels}
        self.channels: dict[str, Channel] = {c.name: build_channel(c)
                                             for c in config.channels}

    # -- queueing (inside the incident's transaction) ---------------------------------------

    async def on_change(self, conn: AsyncConnection, change: Change, now: datetime) -> None:
        incident = change.incident
        event = _EVENTS.get(change.event)
        if event is None or not self.configs:
            return
        # what makes this message once-only: the incident's round (re-openings), its level
        # (escalations), the deadline (breaches), the moment (people's actions)
        if change.event in ("acknowledged", "closed"):
            round_ = now.isoformat()
        elif change.event == "overtime":
            round_ = f"L{incident.level}"
        else:
            round_ = f"{incident.reopened}.L{incident.level}"
        await self._queue(conn, incident, event, change.deadline, now, round_, now)
        if change.event in ("opened", "reopened", "escalated"):
            await self._queue_reminders(conn, incident, now, round_)

    async def _queue_reminders(self, conn: AsyncConnection, incident: Incident, now: datetime,
                               round_: str) -> None:
        kinds: tuple[DeadlineKind, ...] = ("respond", "recover")
        for kind in kinds:
            due = incident.due(kind)
            if due is None or incident.met(kind) is not None:
                continue
            for fraction in self.config.incidents.remind_at:
                at = incident.level_since + (due - incident.level_since) * fraction
                if at > now:
                    await self._queue(conn, incident, Event.REMINDER, kind, at,
                                      f"{round_}@{fraction:g}", now)

    async def _queue(self, conn: AsyncConnection, incident: Incident, event: Event,
                     deadline: str | None, due_at: datetime, round_: str,
                     now: datetime) -> None:
        probe = self._message(incident, event, deadline, None)
        for name, config in self.configs.items():
            if not routes(config, probe):
                continue
            dedup = f"{incident.id}:{event.value}:{deadline or '-'}:{round_}:{name}"
            await conn.execute(self.store.insert_ignore(notifications).values(
                incident_id=incident.id, dedup=dedup[:256], event=event.value,
                deadline=deadline, level=incident.level, channel=name, due_at=due_at,
                state="pending", attempts=0, created_at=now))

    # -- delivery ---------------------------------------------------------------------------

    async def next_due(self) -> datetime | None:
        async with self.store.engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.min(notifications.c.due_at)).where(
                notifications.c.state == "pending"))).scalar_one_or_none()
        if isinstance(value, str):   # an aggregate bypasses the column type on SQLite
            from collector.schema import UtcDateTime

            value = UtcDateTime().process_result_value(value, self.store.engine.dialect)
        return value if isinstance(value, datetime) else None

    async def dispatch(self, now: datetime) -> int:
        """Send what is due at `now`; returns how many rows were settled."""
        rows = await self._claim(now)
        if not rows:
            return 0
        groups: dict[tuple[int, str, str | None], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[(row["incident_id"], row["event"], row["deadline"])].append(row)
        for (incident_id, event_name, deadline), group in groups.items():
            incident = await self.incidents.get(incident_id)
            event = Event(event_name)
            if self._stale(incident, event, deadline):
                await self._settle(group, "skipped", now, None)
                continue
            message = self._message(incident, event, deadline, now)
            channels = [self.channels[r["channel"]] for r in group
                        if r["channel"] in self.channels]
            outcomes = await deliver(channels, message, self.config.language,
                                     self.config.zone, now=now)
            await self._record(incident, group, outcomes, now)
        return len(rows)

    async def _claim(self, now: datetime) -> list[dict[str, Any]]:
        query = (sa.select(notifications).where(sa.or_(
            sa.and_(notifications.c.state == "pending", notifications.c.due_at <= now),
            sa.and_(notifications.c.state == "sending",
                    notifications.c.claimed_at < now - RECLAIM_AFTER)))
            .order_by(notifications.c.due_at, notifications.c.id).limit(BATCH))
        async with self.store.engine.connect() as conn:
            candidates = [dict(r) for r in (await conn.execute(query)).mappings()]
        claimed = []
        for row in candidates:
            async with self.store.transaction() as conn:
                result = await conn.execute(notifications.update().where(
                    notifications.c.id == row["id"], notifications.c.state == row["state"],
                    sa.or_(notifications.c.claimed_at.is_(None),
                           notifications.c.claimed_at == row["claimed_at"]))
                    .values(state="sending", claimed_at=now))
            if result.rowcount == 1:
                claimed.append(row)
        return claimed

    def _stale(self, incident: Incident, event: Event, deadline: str | None) -> bool:
        if event is not Event.REMINDER:
            return False
        met = getattr(incident, _MET.get(deadline or "", "closed_at"), None)
        return incident.state == "closed" or met is not None or (
            deadline == "recover" and incident.state != "open")

    async def _record(self, incident: Incident, group: list[dict[str, Any]],
                      outcomes: list[Delivery | DeliveryError], now: datetime) -> None:
        by_channel = {outcome.channel: outcome for outcome in outcomes}
        async with self.store.transaction() as conn:
            for row in group:
                found = by_channel.get(row["channel"])
                if found is None:
                    await self._settle_one(conn, row, "failed", now,
                                           "channel no longer configured", 0)
                    continue
                outcome = found
                ok = isinstance(outcome, Delivery)
                detail = outcome.detail
                again = None if ok else self._next_try(row, outcome, now)
                if again is not None:
                    # the channel is away (network, 5xx, rate limit): the row waits again
                    detail = f"{detail}; next try {again.isoformat(timespec='seconds')}"
                    await conn.execute(notifications.update()
                                       .where(notifications.c.id == row["id"])
                                       .values(state="pending", due_at=again, last_error=detail,
                                               attempts=row["attempts"] + outcome.attempts))
                else:
                    await self._settle_one(conn, row, "sent" if ok else "failed", now,
                                           None if ok else detail, outcome.attempts)
                await conn.execute(incident_events.insert().values(
                    incident_id=incident.id, at=now, kind="notified" if ok else "notify_failed",
                    by="wardwatch", level=row["level"],
                    note=f"{row['event']} → {row['channel']}: {detail}"[:2000],
                    data={"channel": row["channel"], "event": row["event"],
                          "deadline": row["deadline"], "attempts": outcome.attempts,
                          "status_code": outcome.status_code}))
                if not ok:
                    log.warning("notification %s of %s to %s failed: %s", row["event"],
                                incident.number, row["channel"], detail)

    @staticmethod
    def _next_try(row: dict[str, Any], outcome: Delivery | DeliveryError, now: datetime
                  ) -> datetime | None:
        """When to try a failed delivery again, or None to give up: a failure that may pass
        (network, timeout, 5xx, rate limit) is tried again for REDELIVER_FOR after the
        message was queued, each wait a quarter of its age so far (1 minute to 15), so a
        channel down for an hour gets the message a few minutes after it is back."""
        if not isinstance(outcome, DeliveryError) or not outcome.retryable:
            return None
        age: timedelta = now - row["created_at"]
        if age >= REDELIVER_FOR:
            return None
        return now + min(REDELIVER_MAX_WAIT, max(REDELIVER_MIN_WAIT, age / 4))

    async def _settle(self, group: list[dict[str, Any]], state: str, now: datetime,
                      error: str | None) -> None:
        async with self.store.transaction() as conn:
            for row in group:
                await self._settle_one(conn, row, state, now, error, 0)

    @staticmethod
    async def _settle_one(conn: AsyncConnection, row: dict[str, Any], state: str,
                          now: datetime, error: str | None, attempts: int) -> None:
        await conn.execute(notifications.update().where(notifications.c.id == row["id"])
                           .values(state=state, last_error=error,
                                   attempts=row["attempts"] + attempts,
                                   sent_at=now if state == "sent" else None))

    def _message(self, incident: Incident, event: Event, deadline: str | None,
                 now: datetime | None) -> Message:
        system = next((s for s in self.config.systems if s.id == incident.system), None)
        link = None
        if self.config.public_url:
            link = f"{self.config.public_url.rstrip('/')}/incidents/{incident.id}"
        note = None
        if event is Event.ACKNOWLEDGED and incident.responded_by:
            note = incident.responded_by
        elif event is Event.RECOVERED and incident.recovered_by:
            note = incident.recovered_by
        elif event is Event.CLOSED and incident.closed_by:
            note = incident.closed_by
        at = {Event.RECOVERED: incident.recovered_at, Event.ACKNOWLEDGED: incident.responded_at,
              Event.CLOSED: incident.closed_at, Event.ESCALATED: incident.level_since}.get(event)
        return Message(event=event, incident_id=incident.number, level=incident.level,
                       system_id=incident.system,
                       system_name=system.name if system is not None else incident.system,
                       cause=incident.cause, opened_at=incident.opened_at,
                       respond_by=incident.respond_by, recover_by=incident.recover_by,
                       report_by=incident.report_by, deadline=deadline, link=link, note=note,
                       at=at or now)

    async def history(self, incident_id: int) -> list[dict[str, Any]]:
        query = (sa.select(notifications.c.event, notifications.c.deadline,
                           notifications.c.channel, notifications.c.due_at,
                           notifications.c.state, notifications.c.attempts,
                           notifications.c.last_error, notifications.c.sent_at)
                 .where(notifications.c.incident_id == incident_id)
                 .order_by(notifications.c.due_at, notifications.c.id))
        async with self.store.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]
