"""What the incident engine hands to the notification channels: one `Message` per event.

The outbox (collector side) decides *when* a message is due and records each attempt; this
module only fixes the shape of what is said. A `Message` carries facts, never secrets, and
never text already rendered: rendering (language, time zone) happens in `alerts.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Event(StrEnum):
    OPENED = "opened"
    REMINDER = "reminder"
    BREACH = "breach"
    ESCALATED = "escalated"
    RECOVERED = "recovered"
    CLOSED = "closed"
    ACKNOWLEDGED = "acknowledged"


DEADLINES = ("respond", "recover", "report")
"""The values `Message.deadline` takes for REMINDER and BREACH."""


@dataclass(frozen=True)
class Message:
    event: Event
    incident_id: str
    """e.g. "INC-2026-0042"."""
    level: int
    """1..4, see REQUIREMENTS.md §2."""
    system_id: str
    """e.g. "EMR"."""
    system_name: str
    """e.g. "电子病历"."""
    cause: str
    """One line, e.g. "WebLogic EMR_Server2 FAILED; JDBC EMRDS waiting=37"."""
    opened_at: datetime
    """Aware, UTC."""
    respond_by: datetime | None
    recover_by: datetime | None
    report_by: datetime | None
    deadline: str | None = None
    """For REMINDER / BREACH: which deadline ("respond" | "recover" | "report")."""
    link: str | None = None
    """URL of the incident in the web UI."""
    note: str | None = None
    """Who acknowledged / recovered / closed, and their note."""
    at: datetime | None = None
    """When the event happened (recovery, acknowledgement, escalation, closing); aware.

    RECOVERED uses it for the outage duration; without it the rendering time stands in."""

    def deadline_time(self) -> datetime | None:
        """The time of `deadline` (None when no deadline is named or it is not set)."""
        return {
            "respond": self.respond_by,
            "recover": self.recover_by,
            "report": self.report_by,
        }.get(self.deadline or "")
