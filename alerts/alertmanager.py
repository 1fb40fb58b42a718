"""Alertmanager webhook receiver: Prometheus alerts become incidents with SLA clocks.

The payload is Alertmanager's webhook format, version 4
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config). One incident per
alert *group* (`groupKey`): while any alert of the group fires, the incident is open (opened
back-dated to the earliest `startsAt`, its level the most severe of the firing alerts); when
Alertmanager sends the group `resolved`, the incident recovers at the latest `endsAt`.

Level: a `level` label of 1–4 wins; otherwise the `level_label` (default `severity`) is mapped
through `levels` (default critical → 2, warning → 3, page / emergency → 1); an alert that maps
to nothing opens nothing. System: the `system_label` (default `system`), else `alertmanager`.

    incidents:
      alertmanager:
        level_label: severity
        levels: {page: 1, critical: 2, warning: 3}
        system_label: system
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.config import AlertmanagerConfig
from alerts.engine import Finding, Wanted

_CAUSE_LIMIT = 500


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Loose):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    fingerprint: str = ""
    generatorURL: str = ""


class Notification(_Loose):
    version: Literal["4"]
    groupKey: str = Field(min_length=1, max_length=4096)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    alerts: tuple[Alert, ...] = Field(min_length=1, max_length=10_000)


def incident_key(group_key: str) -> str:
    """A bounded, stable key for the group (group keys can be long)."""
    return "alertmanager:" + hashlib.sha256(group_key.encode()).hexdigest()[:24]


def level_of(config: AlertmanagerConfig, labels: dict[str, str]) -> int | None:
    explicit = labels.get("level", "").strip()
    if explicit in ("1", "2", "3", "4"):
        return int(explicit)
    return config.levels.get(labels.get(config.level_label, "").strip().lower())


def wanted(config: AlertmanagerConfig, note: Notification) -> Wanted | None:
    """The incident the group should have while it fires; None when no alert maps to a
    level (or none fires)."""
    firing: list[tuple[int, Alert]] = []
    for alert in note.alerts:
        level = level_of(config, alert.labels)
        if alert.status == "firing" and level is not None:
            firing.append((level, alert))
    if not firing:
        return None
    firing.sort(key=lambda pair: (pair[0], pair[1].startsAt))
    level = firing[0][0]
    findings = tuple(
        Finding(key=f"alert:{alert.fingerprint or alert.labels.get('alertname', '?')}",
                condition="check_critical", level=alert_level, since=alert.startsAt,
                confirmed=True, text=_text(alert))
        for alert_level, alert in firing)
    system = (note.commonLabels.get(config.system_label)
              or firing[0][1].labels.get(config.system_label) or "alertmanager")
    cause = "; ".join(f.text for f in findings)
    if len(cause) > _CAUSE_LIMIT:
        cause = cause[:_CAUSE_LIMIT - 1] + "…"
    name = note.groupLabels.get("alertname") or firing[0][1].labels.get("alertname", "alert")
    return Wanted(key=incident_key(note.groupKey), system_id=system, level=level,
                  opened_at=min(a.startsAt for _l, a in firing),
                  level_since=min(a.startsAt for lv, a in firing if lv == level),
                  title=f"Alertmanager {name} ({system})", cause=cause, findings=findings)


def resolved_at(note: Notification) -> datetime:
    """When the group stopped firing: the latest `endsAt` (or `startsAt` when absent)."""
    return max((a.endsAt or a.startsAt) for a in note.alerts)


def _text(alert: Alert) -> str:
    name = alert.labels.get("alertname", "alert")
    words = (alert.annotations.get("summary") or alert.annotations.get("description")
             or alert.labels.get("instance", ""))
    return f"{name}: {' '.join(words.split())}" if words else name


def describe(note: Notification) -> dict[str, Any]:
    """What the timeline keeps of a notification (no annotations: they can be long)."""
    return {"groupKey": note.groupKey[:500], "status": note.status, "receiver": note.receiver,
            "alerts": [{"status": a.status, "fingerprint": a.fingerprint,
                        "alertname": a.labels.get("alertname", "")} for a in note.alerts[:50]]}
