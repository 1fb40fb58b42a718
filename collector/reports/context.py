"""What a report kind reads from: the collector's own services over one period.

Figures come from the services the API uses (`Systems`, `IncidentService`,
`FindingsService`), never from a second implementation, so a report and the live UI agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig, SystemConfig
from collector.findings import FindingsService
from collector.incidents import IncidentService
from collector.reports.catalogue import text
from collector.reports.model import Column, ColumnType, Figure, Report, Strip, Table
from collector.store import Store
from collector.systems import Systems, member_checks


@dataclass
class Context:
    config: CollectorConfig
    store: Store
    lang: str
    start: datetime
    end: datetime
    """Exclusive, and never after `now`: time that has not happened is not reported."""
    now: datetime
    systems: list[SystemConfig]
    """The systems asked for (all configured ones by default)."""
    limited: bool
    """True when the caller named systems: host-based tables keep only their hosts."""
    reader: Systems
    incidents: IncidentService
    findings: FindingsService

    @classmethod
    def make(cls, config: CollectorConfig, store: Store, *, start: datetime, end: datetime,
             now: datetime, systems: list[str] | None, lang: str) -> Context:
        known = {s.id for s in config.systems}
        unknown = [s for s in systems or [] if s not in known]
        if unknown:
            raise ValueError(f"unknown system {', '.join(unknown)}")
        calendar = HolidayCalendar.load(config.calendar)
        reader = Systems(config, store, calendar)
        chosen = [config.system(s) for s in systems] if systems else list(config.systems)
        return cls(config=config, store=store, lang=lang, start=start, end=min(end, now),
                   now=now, systems=chosen, limited=bool(systems), reader=reader,
                   incidents=IncidentService(config, store, reader, calendar),
                   findings=FindingsService(store))

    def t(self, key: str, **values: object) -> str:
        return text(self.lang, key, **values)

    def table(self, key: str, spec: list[tuple[str, ColumnType]], rows: list[list[Any]],
              note: str = "") -> Table:
        columns = [Column(name, kind, self.t(f"col.{name}")) for name, kind in spec]
        return Table(key=key, title=self.t(f"table.{key}"), columns=columns, rows=rows,
                     note=note)

    async def hosts(self) -> set[str] | None:
        """Agents whose checks are members of the chosen systems; None: no limit."""
        if not self.limited:
            return None
        known = await self.store.known_checks()
        return {agent for s in self.systems for agent, _check in member_checks(s, known)}

    def report(self, kind: str, *, summary: list[Figure], tables: list[Table],
               strips: list[Strip] | None = None, actions: list[str] | None = None) -> Report:
        return Report(kind=kind, title=self.t(f"kind.{kind}"), lang=self.lang,
                      timezone=self.config.timezone, start=self.start, end=self.end,
                      generated_at=self.now, summary=summary, tables=tables,
                      strips=strips or [], actions=actions or [])

    @property
    def system_ids(self) -> set[str]:
        return {s.id for s in self.systems}
