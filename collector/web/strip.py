"""A system's state history as an inline SVG strip: one rectangle per stretch of one state,
each with its times and duration in a <title> (shown on hover); the page lists the same
stretches as a table, so the numbers are one click away."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.availability import StateInterval

WIDTH = 1000.0
MIN_WIDTH = 1.0
"""A one-minute outage in a 30-day strip is still visible."""


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    state: str
    start: datetime
    end: datetime
    cause: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def segments(states: list[StateInterval], start: datetime, end: datetime,
             width: float = WIDTH) -> list[Segment]:
    span = (end - start).total_seconds()
    if span <= 0:
        return []
    out = []
    for iv in states:
        x = (iv.start - start).total_seconds() / span * width
        w = (iv.end - iv.start).total_seconds() / span * width
        out.append(Segment(x=round(x, 2), width=round(max(w, MIN_WIDTH), 2), state=iv.state,
                           start=iv.start, end=iv.end, cause=iv.cause))
    return out
