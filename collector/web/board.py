"""The status board's figures: every system's state now, its year-to-date availability and
error budget, and the incidents not yet closed with their deadlines.

A board is polled every few seconds by every duty screen, so one build must stay cheap with
hundreds of hosts (target ≤ 100 ms server time for 300 hosts / 50 systems, bench/board.py):
- states come from one read of the last hour's check intervals for all systems, and a read
  of the last day only for the systems whose state did not change within that hour, swept
  per system the way `Systems.current` does it (same standing rule, same sweep; the board
  and `GET /api/v1/systems` agree, a test checks it), with the system's compiled rule and
  its answers memoised across requests (`Systems.rules`), instead of one query and a fresh
  rule evaluation per system and boundary;
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
from collector.config import CollectorConfig, SystemConfig
from collector.incidents import Incident, IncidentService
from collector.store import CheckInterval, Store
from collector.systems import (
    RECENT,
    CheckKey,
    RuleFn,
    Systems,
    SystemState,
    state_changes,
    sweep_keys,
)


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
        stretch of the system's timeline over the last day).

        The state at an instant depends only on the intervals that cover it, so a last
        stretch that starts inside a shorter window is the day's last stretch too. The last
        RECENT are read for all systems first; only for the systems whose state did not
        change in that window (the stretch starts at its edge) are the intervals that ended
        before it read too (their members' only, when they are few). Either way no row is
        read twice: a flapping fleet is mostly decided by the first, small, read."""
        members = await self.systems.member_map()
        day, recent = now - timedelta(days=1), now - RECENT
        every = sorted({key for keys in members.values() for key in keys})
        by_check = await self._read(every, now, recent, now, open_after=day)
        out: dict[str, SystemState] = {}
        undecided = []
        for system in self.config.systems:
            last = self._last(system, members[system.id], by_check, recent, now)
            if last.start == recent:
                undecided.append(system)
            else:
                out[system.id] = SystemState(system=system.id, state=last.state,
                                             since=last.start, cause=last.cause)
        if undecided:
            wanted = sorted({key for system in undecided for key in members[system.id]})
            earlier = await self._read(wanted, now, day, recent, closed_only=True)
            for key, found in earlier.items():
                by_check[key] = found + by_check.get(key, [])
            for system in undecided:
                last = self._last(system, members[system.id], by_check, day, now)
                out[system.id] = SystemState(system=system.id, state=last.state,
                                             since=last.start, cause=last.cause)
        return out

    def _last(self, system: SystemConfig, keys: Sequence[CheckKey],
              by_check: dict[CheckKey, list[CheckInterval]], start: datetime, now: datetime
              ) -> StateInterval:
        mine = [iv for key in keys for iv in by_check.get(key, ())]
        rule = self.systems.rules.rule(system, sweep_keys(mine, keys))
        return last_stretch(mine, start, now, keys, rule)

    async def _read(self, wanted: Sequence[CheckKey], now: datetime, start: datetime,
                    end: datetime, *, open_after: datetime | None = None,
                    closed_only: bool = False) -> dict[CheckKey, list[CheckInterval]]:
        """`wanted` checks' intervals of [start, end) (`Store.intervals`), open ones standing
        at `now` as `Systems.current` has them. The two reads of `states` together are the
        day's read of `Systems.current`, no row twice: the first has every open interval
        that ends within the day, the second only closed ones."""
        by_check: dict[CheckKey, list[CheckInterval]] = defaultdict(list)
        if not wanted:
            return by_check
        # a long OR of pairs costs more than reading every row of the window
        scope = None if len(wanted) > WHOLE_READ_KEYS else wanted
        keep = set(wanted)
        for iv in await self.store.intervals(start, end, scope, open_after=open_after,
                                             closed_only=closed_only):
            key = (iv.agent_id, iv.check_id)
            if key in keep:
                by_check[key].append(self.systems._standing(iv, now))
        return by_check


WHOLE_READ_KEYS = 400
"""Above this many checks a read takes every row of its window instead of an OR of pairs."""


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
