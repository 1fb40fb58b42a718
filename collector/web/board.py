"""The status board's figures: every system's state now, its year-to-date availability and
error budget, and the incidents not yet closed with their deadlines.

A board is polled every few seconds by every duty screen, so one build must stay cheap with
hundreds of hosts (target ≤ 100 ms server time for 300 hosts / 50 systems, bench/board.py):
- states come from `Systems.last_stretches` for all systems at once: one read of the last
  hour's check intervals, and of the rest of the day only for the systems whose state did
  not change within that hour, swept the way `Systems.current` does it (the board and
  `GET /api/v1/systems` agree, a test checks it), with each system's compiled rule and its
  answers memoised across requests (`Systems.rules`);
- which checks belong to which system is matched once per change of the known checks
  (`Systems.member_map`);
- year-to-date figures are the cached ones `GET /api/v1/systems` serves
  (`Systems.recent_year_to_date`, refreshed by housekeeping every minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.config import CollectorConfig
from collector.incidents import Incident, IncidentService
from collector.store import Store
from collector.systems import Systems, SystemState


@dataclass(frozen=True)
class SystemRow:
    id: str
    name: str
    core: bool
    state: str
    since: datetime
    cause: str
    target: float
    availability_ytd: float | None
    met_ytd: bool | None
    budget_left_s: float
    budget_year_s: float
    ytd_as_of: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "core": self.core, "state": self.state,
                "since": self.since.isoformat(), "cause": self.cause, "target": self.target,
                "availability_ytd": self.availability_ytd, "met_ytd": self.met_ytd,
                "budget_left_s": self.budget_left_s, "budget_year_s": self.budget_year_s,
                "ytd_as_of": self.ytd_as_of.isoformat()}


@dataclass(frozen=True)
class BoardData:
    now: datetime
    systems: list[SystemRow]
    incidents: list[Incident]

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(),
                "systems": [s.as_dict() for s in self.systems],
                "incidents": [i.as_dict() for i in self.incidents]}


class Board:
    def __init__(self, config: CollectorConfig, store: Store, systems: Systems,
                 incidents: IncidentService) -> None:
        self.config = config
        self.store = store
        self.systems = systems
        self.incidents = incidents

    async def build(self, now: datetime) -> BoardData:
        states = await self.states(now)
        rows = []
        for system in self.config.systems:
            state = states[system.id]
            ytd = await self.systems.recent_year_to_date(system, now)
            rows.append(SystemRow(
                id=system.id, name=system.name, core=system.core, state=state.state,
                since=state.since, cause=state.cause, target=system.target,
                availability_ytd=ytd.report.availability, met_ytd=ytd.report.met,
                budget_left_s=ytd.budget_left_s, budget_year_s=ytd.budget_s,
                ytd_as_of=ytd.as_of))
        # open first, then recovered ones still owing a report or a close; newest first
        found = (await self.incidents.find(state="open")
                 + await self.incidents.find(state="recovered"))
        found.sort(key=lambda i: (i.state != "open", i.level, -i.opened_at.timestamp()))
        return BoardData(now=now, systems=rows, incidents=found)

    async def states(self, now: datetime) -> dict[str, SystemState]:
        """Every configured system's state at `now`: what `Systems.current` says, from the
        reads `Systems.last_stretches` makes for all systems at once."""
        members = await self.systems.member_map()
        lasts, _ = await self.systems.last_stretches(self.config.systems, members, now)
        return {sid: SystemState(system=sid, state=last.state, since=last.start,
                                 cause=last.cause) for sid, last in lasts.items()}
