"""Incidents in the store, kept true to the evidence: opened, escalated, re-opened and
recovered from probe data; acknowledged, reported and closed by people; every missed deadline
counted once as an overtime (超时); every change written to the incident's append-only timeline.

`IncidentService.evaluate(now)` is the whole automatic part and takes the time as an argument,
so tests drive it with a simulated clock. It is safe to run from several collectors on one
PostgreSQL: "one open incident per key" and "one overtime per deadline" are database
constraints (`incidents.open_key` unique, `incident_overtimes` unique), not in-process state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from alerts.clock import Clocks, deadlines
from alerts.config import DEADLINE_KINDS, DeadlineKind, IncidentsConfig
from alerts.engine import SystemSnapshot, Wanted, findings, recovered_since, wanted
from collector.calendar import HolidayCalendar
from collector.config import CollectorConfig, SystemConfig
from collector.schema import incident_events, incident_overtimes, incidents
from collector.store import Store, StoreError
from collector.systems import Systems, member_checks

log = logging.getLogger("wardwatch.collector.incidents")

AUTO = "wardwatch"
"""`by` of what the collector does on its own."""

_MET_COLUMN: dict[DeadlineKind, str] = {"respond": "responded_at", "recover": "recovered_at",
                                        "report": "report_submitted_at"}
_DEADLINE_NAMES = {"respond": "响应", "recover": "恢复", "report": "报告"}


@dataclass(frozen=True)
class Incident:
    id: int
    key: str
    open_key: str | None
    source: str
    system: str
    level: int
    state: str
    """open, recovered or closed."""
    title: str
    cause: str
    opened_at: datetime
    detected_at: datetime
    level_since: datetime
    respond_by: datetime | None
    recover_by: datetime | None
    report_by: datetime | None
    responded_at: datetime | None
    responded_by: str | None
    recovered_at: datetime | None
    recovered_by: str | None
    report_submitted_at: datetime | None
    report_submitted_by: str | None
    report_ref: str | None
    closed_at: datetime | None
    closed_by: str | None
    reopened: int
    updated_at: datetime

    @property
    def number(self) -> str:
        return f"INC-{self.opened_at:%Y}-{self.id:04d}"

    def met(self, kind: DeadlineKind) -> datetime | None:
        value: datetime | None = getattr(self, _MET_COLUMN[kind])
        return value

    def due(self, kind: DeadlineKind) -> datetime | None:
        value: datetime | None = getattr(self, f"{kind}_by")
        return value

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"number": self.number}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        out.pop("open_key")
        return out


@dataclass(frozen=True)
class Change:
    """Something evaluation or a person did to an incident: what notifications follow."""

    incident: Incident
    event: str
    """opened, escalated, reopened, recovered, acknowledged, reported, closed, overtime."""
    deadline: DeadlineKind | None = None


class IncidentError(StoreError):
    """A person's action that cannot apply (unknown incident, wrong state). `code` names the
    case for the UI, which says it in the reader's language (`incident_error_<code>`):
    `not_found`, `not_open`, `still_open`, `closed_already`."""

    def __init__(self, message: str, code: str, number: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.number = number


ChangeSink = Callable[[AsyncConnection, Change, datetime], Any]


class IncidentService:
    def __init__(self, config: CollectorConfig, store: Store, systems: Systems,
                 calendar: HolidayCalendar, on_change: ChangeSink | None = None) -> None:
        self.config = config
        self.rules: IncidentsConfig = config.incidents
        self.store = store
        self.systems = systems
        self.calendar = calendar
        self.on_change = on_change
        """Called inside the transaction of every change (the outbox queues messages)."""
        self._columns = [incidents.c[f.name] for f in fields(Incident)]
        self.watching: set[str] = set()
        """Systems whose last evaluation found something failing (confirmed or not) or that
        have an open incident: time alone can change their incident (confirmation by
        duration, deadlines, silence), so the frequent rounds look at them only."""
        self.settled: set[str] = set()
        """Systems whose open incident already holds every failing finding, all confirmed:
        another failing result of a check that stays failing changes nothing there (a state
        change, a new failing check or a recovery does), so ingest need not wake the engine
        for them; the watch rounds still look every `evaluate_every`."""

    # -- evaluation -------------------------------------------------------------------------

    async def evaluate(self, now: datetime, only: set[str] | None = None) -> list[Change]:
        """Bring every system's incident (or the systems in `only`) in line with the evidence
        at `now`, then count the deadlines that have passed."""
        changes: list[Change] = []
        if not self.rules.enabled:
            return changes
        by_id = {s.id: s for s in self.config.systems}
        chosen = [s for s in self.config.systems if only is None or s.id in only]
        # one read each for what every system needs: open incidents, windows in force now
        open_now = await self._open_incidents()
        windows = await self.store.maintenance_windows(start=now,
                                                       end=now + timedelta(microseconds=1))
        in_maintenance = {w.system for w in windows}
        for system in chosen:
            snap = await self._snapshot(system, now, system.id in in_maintenance)
            host = next((by_id[other] for other in system.depends_on
                         if f"system:{other}" in open_now), None)
            try:
                changes += await self._reconcile(system, snap, now, host,
                                                 open_now.get(f"system:{system.id}"))
            except IncidentError as exc:
                # another collector on the same database changed it first (recovered it,
                # a person closed it): the next round sees its new state; the rest of this
                # round goes on
                log.info("incident of %s changed meanwhile (%s): next round", system.id, exc)
                continue
            for change in changes:   # a host opened in this round counts for the next system
                if change.incident.open_key is not None:
                    open_now[change.incident.open_key] = change.incident
        if only is None:
            changes += await self.count_overtimes(now)
        return changes

    def systems_of(self, checks: set[tuple[str, str]]) -> set[str]:
        """The systems that have any of these (agent, check) pairs as members."""
        return {s.id for s in self.config.systems if member_checks(s, checks)}

    async def _open_incidents(self) -> dict[str, Incident]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(*self._columns)
                                       .where(incidents.c.open_key.is_not(None)))).all()
        return {row.open_key: Incident(*row) for row in rows}

    async def _snapshot(self, system: SystemConfig, now: datetime, in_maintenance: bool
                        ) -> SystemSnapshot:
        state, members = await self.systems.snapshot(system, now)
        return SystemSnapshot(system_id=system.id, name=system.name, core=system.core,
                              state=state.state, state_since=state.since,
                              state_cause=state.cause, members=members,
                              in_maintenance=in_maintenance)

    async def _reconcile(self, system: SystemConfig, snap: SystemSnapshot, now: datetime,
                         host: SystemConfig | None, current: Incident | None
                         ) -> list[Change]:
        found = findings(self.rules, snap, now)
        failing = snap.state == "unknown" or bool(found)   # still_failing, from one sweep
        if current is not None or failing:
            self.watching.add(system.id)
        else:
            self.watching.discard(system.id)
        self.settled.discard(system.id)
        want = wanted(self.rules, snap, now)
        if current is not None:
            if not failing:
                return [await self._recover(current, recovered_since(snap), AUTO,
                                            "探测数据显示业务已恢复 (probes show the system back)",
                                            now)]
            if want is None:
                return []
            changes = await self._update(current, want, now)
            if not changes and found and all(f.confirmed for f in found):
                self.settled.add(system.id)
            return changes
        if want is None:
            return []
        if snap.in_maintenance:
            return []   # inside an approved window: the data is kept, no incident opens
        if host is not None:
            return await self._join(host, want, now)
        try:
            return [await self._open_or_reopen(want, now)]
        except _Raced:
            return []   # another collector on the same database opened it first

    async def _open(self, key: str) -> Incident | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(sa.select(*self._columns)
                                      .where(incidents.c.open_key == key))).first()
        return Incident(*row) if row else None

    async def _open_or_reopen(self, want: Wanted, now: datetime, source: str = "probe"
                              ) -> Change:
        merge_from = want.opened_at - timedelta(seconds=self.rules.merge_window)
        async with self.store.transaction() as conn:
            previous = (await conn.execute(
                sa.select(*self._columns).where(incidents.c.key == want.key)
                .order_by(incidents.c.opened_at.desc()).limit(1))).first()
            if (previous is not None and previous.recovered_at is not None
                    and previous.recovered_at >= merge_from and previous.state == "recovered"):
                return await self._reopen(conn, Incident(*previous), want, now)
            clocks = self._clocks(want.level, want.level_since, None)
            try:
                incident_id = (await conn.execute(incidents.insert().values(
                    key=want.key, open_key=want.key, source=source, system=want.system_id,
                    level=want.level, state="open", title=want.title, cause=want.cause,
                    opened_at=want.opened_at, detected_at=now, level_since=want.level_since,
                    respond_by=clocks.respond_by, recover_by=clocks.recover_by,
                    report_by=clocks.report_by, reopened=0, updated_at=now,
                ).returning(incidents.c.id))).scalar_one()
            except IntegrityError:
                raise _Raced(want.key) from None
            incident = await self._get(conn, incident_id)
            await self._event(conn, incident, now, "opened", AUTO, want.cause,
                              {"findings": [f.key for f in want.findings],
                               "opened_at": want.opened_at.isoformat()})
            change = Change(incident, "opened")
            await self._emit(conn, change, now)
        return change

    async def _reopen(self, conn: AsyncConnection, previous: Incident, want: Wanted,
                      now: datetime) -> Change:
        level = min(previous.level, want.level)
        values: dict[str, Any] = {"open_key": want.key, "state": "open", "recovered_at": None,
                                  "recovered_by": None, "cause": want.cause,
                                  "reopened": previous.reopened + 1, "updated_at": now}
        if level < previous.level:
            values.update(self._level_values(level, want.level_since, None))
        await conn.execute(incidents.update().where(incidents.c.id == previous.id)
                           .values(**values))
        incident = await self._get(conn, previous.id)
        await self._event(conn, incident, now, "reopened", AUTO,
                          f"{self.rules.merge_window / 60:g} 分钟内再次发生: {want.cause}",
                          {"recovered_at": previous.recovered_at.isoformat()
                           if previous.recovered_at else None})
        change = Change(incident, "reopened")
        await self._emit(conn, change, now)
        return change

    async def _update(self, current: Incident, want: Wanted, now: datetime) -> list[Change]:
        changes: list[Change] = []
        async with self.store.transaction() as conn:
            if want.level < current.level:
                await conn.execute(incidents.update().where(incidents.c.id == current.id)
                                   .values(cause=want.cause, updated_at=now,
                                           **self._level_values(want.level, want.level_since,
                                                                None)))
                incident = await self._get(conn, current.id)
                await self._event(conn, incident, now, "escalated", AUTO,
                                  f"{current.level} 级升为 {want.level} 级: {want.cause}",
                                  {"from": current.level, "to": want.level})
                changes.append(Change(incident, "escalated"))
                await self._emit(conn, changes[-1], now)
            elif want.cause != current.cause:
                await conn.execute(incidents.update().where(incidents.c.id == current.id)
                                   .values(cause=want.cause, updated_at=now))
                await self._event(conn, current, now, "cause", AUTO, want.cause, {})
        return changes

    async def _join(self, host: SystemConfig, want: Wanted, now: datetime) -> list[Change]:
        """A dependent system's fault while the system it depends on has an incident: told in
        that incident's timeline (once per finding), not opened on its own."""
        incident = await self._open(f"system:{host.id}")
        if incident is None:
            return []
        async with self.store.transaction() as conn:
            seen = set((await conn.execute(
                sa.select(incident_events.c.note).where(
                    incident_events.c.incident_id == incident.id,
                    incident_events.c.kind == "joined"))).scalars())
            for finding in want.findings:
                note = f"{want.system_id} 受影响 (depends on {host.id}): {finding.text}"
                if note not in seen:
                    await self._event(conn, incident, now, "joined", AUTO, note,
                                      {"system": want.system_id, "finding": finding.key})
        return []

    async def _recover(self, incident: Incident, at: datetime, by: str, note: str,
                       now: datetime) -> Change:
        at = min(max(at, incident.opened_at), now)
        async with self.store.transaction() as conn:
            values: dict[str, Any] = {"state": "recovered", "open_key": None,
                                      "recovered_at": at, "recovered_by": by, "updated_at": now}
            if self.rules.report_from == "recovered":
                values["report_by"] = self._clocks(incident.level, incident.level_since,
                                                   at).report_by
            result = await conn.execute(incidents.update().where(
                incidents.c.id == incident.id, incidents.c.state == "open").values(**values))
            if result.rowcount != 1:
                raise IncidentError(f"{incident.number} is not open", "not_open",
                                    incident.number)
            await self._met(conn, incident.id, "recover", at)
            recovered = await self._get(conn, incident.id)
            await self._event(conn, recovered, now, "recovered", by, note,
                              {"recovered_at": at.isoformat()})
            change = Change(recovered, "recovered")
            await self._emit(conn, change, now)
        return change

    # -- raised elsewhere (Alertmanager) ---------------------------------------------------

    async def raise_external(self, want: Wanted, source: str, now: datetime,
                             data: dict[str, Any]) -> list[Change]:
        """An incident from outside the probes: opened (or re-opened within the merge
        window), escalated or updated like a system's; not opened inside a maintenance
        window of a configured system."""
        current = await self._open(want.key)
        if current is not None:
            return await self._update(current, want, now)
        if any(s.id == want.system_id for s in self.config.systems):
            windows = await self.store.maintenance_windows(
                system=want.system_id, start=now, end=now + timedelta(microseconds=1))
            if windows:
                return []
        try:
            change = await self._open_or_reopen(want, now, source)
        except _Raced:
            return []
        async with self.store.transaction() as conn:
            await self._event(conn, change.incident, now, "received", source, "", data)
        return [change]

    async def resolve_external(self, key: str, at: datetime, by: str, now: datetime
                               ) -> list[Change]:
        current = await self._open(key)
        if current is None:
            return []
        return [await self._recover(current, at, by, f"{by}: resolved", now)]

    # -- people -----------------------------------------------------------------------------

    async def acknowledge(self, incident_id: int, by: str, note: str, now: datetime
                          ) -> Incident:
        """A person takes the incident (响应): `responded_at` is set once."""
        async with self.store.transaction() as conn:
            incident = await self._get(conn, incident_id)
            if incident.responded_at is None:
                await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                                   .values(responded_at=now, responded_by=by, updated_at=now))
                await self._met(conn, incident_id, "respond", now)
            incident = await self._get(conn, incident_id)
            await self._event(conn, incident, now, "acknowledged", by, note, {})
            await self._emit(conn, Change(incident, "acknowledged"), now)
        return incident

    async def recover(self, incident_id: int, by: str, note: str, now: datetime) -> Incident:
        """A person marks the business restored (the probes may not see everything)."""
        incident = await self.get(incident_id)
        self.settled.discard(incident.system)
        if incident.state != "open":
            raise IncidentError(f"{incident.number} is {incident.state}, not open", "not_open",
                                incident.number)
        return (await self._recover(incident, now, by, note, now)).incident

    async def report(self, incident_id: int, by: str, note: str, ref: str | None,
                     now: datetime) -> Incident:
        """The root-cause / handling report is filed (`ref`: a document number or link)."""
        async with self.store.transaction() as conn:
            incident = await self._get(conn, incident_id)
            await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                report_submitted_at=incident.report_submitted_at or now,
                report_submitted_by=incident.report_submitted_by or by,
                report_ref=ref or incident.report_ref, updated_at=now))
            if incident.report_submitted_at is None:
                await self._met(conn, incident_id, "report", now)
            incident = await self._get(conn, incident_id)
            await self._event(conn, incident, now, "reported", by, note, {"ref": ref})
            await self._emit(conn, Change(incident, "reported"), now)
        return incident

    async def close(self, incident_id: int, by: str, note: str, now: datetime) -> Incident:
        async with self.store.transaction() as conn:
            incident = await self._get(conn, incident_id)
            if incident.state == "open":
                raise IncidentError(f"{incident.number} is still open: recover it first",
                                    "still_open", incident.number)
            if incident.state == "closed":
                raise IncidentError(f"{incident.number} is closed already", "closed_already",
                                    incident.number)
            await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                               .values(state="closed", closed_at=now, closed_by=by,
                                       updated_at=now))
            incident = await self._get(conn, incident_id)
            await self._event(conn, incident, now, "closed", by, note, {})
            await self._emit(conn, Change(incident, "closed"), now)
        return incident

    # -- overtimes --------------------------------------------------------------------------

    async def count_overtimes(self, now: datetime) -> list[Change]:
        """Record each deadline missed (not met by its time, or met late) once."""
        changes: list[Change] = []
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(*self._columns).where(sa.or_(
                incidents.c.state != "closed",
                incidents.c.closed_at > now - timedelta(days=7))))).all()
        for row in rows:
            incident = Incident(*row)
            for kind in DEADLINE_KINDS:
                due, met = incident.due(kind), incident.met(kind)
                if due is None or (met is None and now <= due) or (met is not None
                                                                   and met <= due):
                    continue
                changes += await self._overtime(incident, kind, due, met, now)
        return changes

    async def _overtime(self, incident: Incident, kind: DeadlineKind, due: datetime,
                        met: datetime | None, now: datetime) -> list[Change]:
        local = self.config.zone
        what = _DEADLINE_NAMES[kind]
        reason = (f"{incident.level} 级{what}超时: 时限 {due.astimezone(local):%m-%d %H:%M}, "
                  + (f"实际 {met.astimezone(local):%m-%d %H:%M}" if met else f"未{what}"))
        async with self.store.transaction() as conn:
            inserted = (await conn.execute(
                self.store.insert_ignore(incident_overtimes).values(
                    incident_id=incident.id, level=incident.level, deadline=kind, due_at=due,
                    met_at=met, counted_at=now, reason=reason)
                .returning(incident_overtimes.c.id))).first()
            if inserted is None:
                return []
            await self._event(conn, incident, now, "overtime", AUTO, reason,
                              {"deadline": kind, "due_at": due.isoformat()})
            change = Change(incident, "overtime", kind)
            await self._emit(conn, change, now)
        return [change]

    async def _met(self, conn: AsyncConnection, incident_id: int, kind: DeadlineKind,
                   at: datetime) -> None:
        await conn.execute(incident_overtimes.update().where(
            incident_overtimes.c.incident_id == incident_id,
            incident_overtimes.c.deadline == kind,
            incident_overtimes.c.met_at.is_(None)).values(met_at=at))

    def year_start(self, now: datetime) -> datetime:
        local = now.astimezone(self.config.zone)
        month, day = (int(x) for x in self.rules.year_start.split("-"))
        start = local.replace(month=month, day=day, hour=0, minute=0, second=0, microsecond=0)
        if start > local:
            start = start.replace(year=start.year - 1)
        return start.astimezone(UTC)

    async def overtime_counts(self, now: datetime) -> dict[int, int]:
        """Overtimes per level in the service year that contains `now` (by deadline)."""
        start = self.year_start(now)
        query = (sa.select(incident_overtimes.c.level, sa.func.count())
                 .where(incident_overtimes.c.due_at >= start)
                 .group_by(incident_overtimes.c.level))
        async with self.store.engine.connect() as conn:
            counts = {int(level): int(n) for level, n in (await conn.execute(query)).all()}
        return {level: counts.get(level, 0) for level in (1, 2, 3, 4)}

    async def overtimes(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        query = (sa.select(incident_overtimes).where(incident_overtimes.c.due_at >= start,
                                                     incident_overtimes.c.due_at < end)
                 .order_by(incident_overtimes.c.due_at))
        async with self.store.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    # -- reading ----------------------------------------------------------------------------

    async def get(self, incident_id: int) -> Incident:
        async with self.store.engine.connect() as conn:
            return await self._get(conn, incident_id)

    async def find(self, *, state: str | None = None, level: int | None = None,
                   system: str | None = None, limit: int = 500) -> list[Incident]:
        query = sa.select(*self._columns).order_by(incidents.c.opened_at.desc()).limit(limit)
        if state == "open":
            query = query.where(incidents.c.state == "open")
        elif state == "closed":
            query = query.where(incidents.c.state == "closed")
        elif state == "recovered":
            query = query.where(incidents.c.state == "recovered")
        if level is not None:
            query = query.where(incidents.c.level == level)
        if system is not None:
            query = query.where(incidents.c.system == system)
        async with self.store.engine.connect() as conn:
            return [Incident(*row) for row in (await conn.execute(query)).all()]

    async def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        query = (sa.select(incident_events.c.at, incident_events.c.kind, incident_events.c.by,
                           incident_events.c.level, incident_events.c.note,
                           incident_events.c.data)
                 .where(incident_events.c.incident_id == incident_id)
                 .order_by(incident_events.c.id))
        async with self.store.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def incident_overtimes(self, incident_id: int) -> list[dict[str, Any]]:
        query = (sa.select(incident_overtimes.c.level, incident_overtimes.c.deadline,
                           incident_overtimes.c.due_at, incident_overtimes.c.met_at,
                           incident_overtimes.c.reason)
                 .where(incident_overtimes.c.incident_id == incident_id)
                 .order_by(incident_overtimes.c.id))
        async with self.store.engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]

    # -- helpers ----------------------------------------------------------------------------

    async def _get(self, conn: AsyncConnection, incident_id: int) -> Incident:
        row = (await conn.execute(sa.select(*self._columns)
                                  .where(incidents.c.id == incident_id))).first()
        if row is None:
            raise IncidentError(f"no incident {incident_id}", "not_found")
        return Incident(*row)

    def _clocks(self, level: int, since: datetime, recovered_at: datetime | None) -> Clocks:
        return deadlines(self.rules, level, since, recovered_at, self.calendar,
                         self.config.zone)

    def _level_values(self, level: int, since: datetime, recovered_at: datetime | None
                      ) -> dict[str, Any]:
        clocks = self._clocks(level, since, recovered_at)
        return {"level": level, "level_since": since, "respond_by": clocks.respond_by,
                "recover_by": clocks.recover_by, "report_by": clocks.report_by}

    async def _event(self, conn: AsyncConnection, incident: Incident, at: datetime,
                     kind: str, by: str, note: str, data: dict[str, Any]) -> None:
        await conn.execute(incident_events.insert().values(
            incident_id=incident.id, at=at, kind=kind, by=by, level=incident.level,
            note=note[:2000], data=data))

    async def _emit(self, conn: AsyncConnection, change: Change, now: datetime) -> None:
        if self.on_change is not None:
            await self.on_change(conn, change, now)


class _Raced(Exception):
    """Another collector opened the incident for this key first."""
