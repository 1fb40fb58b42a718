"""The shape every report has, whatever its kind: a period, summary figures, tables with typed
columns, and daily availability strips. Renderers (HTML, XLSX, JSON, CSV) read only this.

Values are kept raw: durations in seconds, ratios 0–1, times as aware UTC datetimes. Each
renderer chooses how to show them (hours, percent, local time), so the JSON form carries
every figure exactly as computed and every other form can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

ColumnType = Literal["text", "int", "number", "ratio", "seconds", "datetime", "bool", "date"]
"""text; int; number (a float); ratio (0–1, shown as percent); seconds (a duration, shown as
hours); datetime (aware UTC, shown in the display zone); bool (met / not met); date (local)."""


@dataclass(frozen=True)
class Column:
    key: str
    type: ColumnType
    label: str


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def records(self) -> list[dict[str, Any]]:
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Figure:
    """One summary figure (a headline number of the report)."""

    key: str
    label: str
    type: ColumnType
    value: Any


@dataclass(frozen=True)
class DayCell:
    day: date
    """Local calendar day."""
    availability: float | None
    """That day's availability (None: no counted time that day)."""
    downtime_s: float
    counted_s: float


@dataclass(frozen=True)
class Strip:
    """A system's daily availability over the period: one cell per local day."""

    system: str
    name: str
    target: float
    days: list[DayCell]


@dataclass
class Report:
    kind: str
    title: str
    lang: str
    timezone: str
    start: datetime
    end: datetime
    """Exclusive; never after `generated_at`."""
    generated_at: datetime
    summary: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    strips: list[Strip] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    """What needs someone's action (inspection, annual): sentences for people."""
    systems: list[str] = field(default_factory=list)
    """The systems the report was limited to; empty: all configured."""

    def table(self, key: str) -> Table:
        for table in self.tables:
            if table.key == key:
                return table
        raise KeyError(key)

    def figure(self, key: str) -> Any:
        for figure in self.summary:
            if figure.key == key:
                return figure.value
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: every figure, times as ISO 8601 UTC, durations in seconds."""
        return {
            "kind": self.kind, "title": self.title, "lang": self.lang,
            "timezone": self.timezone, "from": _plain(self.start), "to": _plain(self.end),
            "generated_at": _plain(self.generated_at), "systems": self.systems,
            "summary": {f.key: _plain(f.value) for f in self.summary},
            "summary_labels": {f.key: {"label": f.label, "type": f.type} for f in self.summary},
            "actions": self.actions,
            "tables": [{
                "key": t.key, "title": t.title, "note": t.note,
                "columns": [{"key": c.key, "type": c.type, "label": c.label}
                            for c in t.columns],
                "rows": [{k: _plain(v) for k, v in r.items()} for r in t.records()],
            } for t in self.tables],
            "strips": [{
                "system": s.system, "name": s.name, "target": s.target,
                "days": [{"day": d.day.isoformat(), "availability": d.availability,
                          "downtime_s": d.downtime_s, "counted_s": d.counted_s}
                         for d in s.days],
            } for s in self.strips],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
