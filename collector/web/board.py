"""The status board's figures: every system's state now, its year-to-date availability and
error budget, and the incidents not yet closed with their deadlines.

A board is polled every few seconds by every duty screen, so one build must stay cheap with
hundreds of hosts (target ≤ 100 ms server time for 300 hosts / 50 systems, bench/board.py):
- states come from ONE read of the last day's check intervals for all systems, swept per
  system the way `Systems.current` does it (same standing rule, same sweep; the board and
  `GET /api/v1/systems` agree, a test checks it), with the system's compiled rule and its
  answers memoised across requests (`Systems.rules`), instead of one query and a fresh rule
  evaluation per system and boundary;
- which checks belong to which system is matched once per change of the known checks
  (`Systems.member_map`);
- year-to-date figures are the cached ones `GET /api/v1/systems` serves
  (`Systems.recent_year_to_date`, refreshed by housekeeping every minute).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.availability import StateInterval
from collector.config import CollectorConfig
from collector.incidents import Incident, IncidentService
from collector.store import CheckInterval, Store
from collector.systems import CheckKey, RuleFn, Systems, SystemState, state_changes, sweep_keys


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
        """Every configured system's state at `now`: what `Systems.current` says (the last
        stretch of the system's timeline over the last day), from one read of the store."""
        members = await self.systems.member_map()
        start = now - timedelta(days=1)
        wanted = {key for keys in members.values() for key in keys}
        by_check: dict[CheckKey, list[CheckInterval]] = defaultdict(list)
        if wanted:
            for iv in await self.store.intervals(start, now):
                key = (iv.agent_id, iv.check_id)
                if key in wanted:   # the rule Systems.current applies to an open interval
                    by_check[key].append(self.systems._standing(iv, now))
        out = {}
        for system in self.config.systems:
            keys = members[system.id]
            mine = [iv for key in keys for iv in by_check.get(key, ())]
            rule = self.systems.rules.rule(system, sweep_keys(mine, keys))
            last = last_stretch(mine, start, now, keys, rule)
            out[system.id] = SystemState(system=system.id, state=last.state, since=last.start,
                                         cause=last.cause)
        return out


def last_stretch(intervals: Sequence[CheckInterval], start: datetime, end: datetime,
                 members: Sequence[CheckKey], rule: RuleFn) -> StateInterval:
    """The last stretch of `collector.systems.timeline(system, intervals, start, end,
    members, rule)` — the same sweep (`state_changes`) — without building the stretches
    before it. `rule` is the system's rule over `sweep_keys(intervals, members)`
    (`RuleCache.rule`: compiled, its answers memoised across calls; a system whose 30 members
    changed a few times today has hundreds of boundaries, and the rule's answers for the same
    member states do not change from one board refresh to the next).

    tests/collector/web/test_pages.py checks it equals `Systems.current` on the same data."""
    changes = deque(state_changes(intervals, start, end, sweep_keys(intervals, members), rule),
                    maxlen=1)
    if not changes:
        raise ValueError("an empty period has no stretch")
    when, state, cause = changes[0]
    return StateInterval(when, end, state, cause)
