"""Event reads and writes: reporting, the state machine's transitions and timeline notes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from hub import validation
from hub.db import utcnow
from hub.departments import service as departments
from hub.errors import BadUserInput, Conflict, NotFound
from hub.events import outbox
from hub.events.changes import EventChange
from hub.events.geo import gcj02_to_wgs84
from hub.events.models import Event, EventTransition
from hub.events.states import OPEN_STATUSES, TRANSITIONS, Action, Status, next_status
from hub.grids import service as grids
from hub.members.models import Member
from hub.residents.models import Resident

CATEGORIES = frozenset(
    {
        "public_safety",
        "fire_hazard",
        "sanitation",
        "infrastructure",
        "environment",
        "health",
        "elderly_care",
        "dispute",
        "housing",
        "other",
    }
)
SEVERITIES = ("low", "medium", "high", "critical")
REPORTER_KINDS = frozenset({"member", "resident", "system"})
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_code(at: datetime) -> str:
    return f"EV{at:%Y%m%d}" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


@dataclass(frozen=True, slots=True)
class Location:
    lng: float
    lat: float
    system: str = "WGS84"  # or "GCJ02"

    def to_wgs84(self) -> tuple[float, float]:
        if not (-180 <= self.lng <= 180 and -90 <= self.lat <= 90):
            raise BadUserInput(
                "location is outside the valid longitude/latitude range", field="location"
            )
        if self.system == "GCJ02":
            return gcj02_to_wgs84(self.lng, self.lat)
        return self.lng, self.lat


@dataclass(frozen=True, slots=True)
class EventReport:
    category: str
    title: str
    grid_code: str
    severity: str = "medium"
    description: str = ""
    location: Location | None = None
    deadline: datetime | None = None
    reporter_member_id: int | None = None
    reporter_resident_id: int | None = None
    reporter_system: str | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    grid_ids: Select[int] | None = None
    statuses: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    department_id: int | None = None
    reported_after: datetime | None = None
    reported_before: datetime | None = None
    overdue_at: datetime | None = None  # only open events whose deadline passed before this


def list_statement(filter: EventFilter) -> Select[Any]:
    statement = select(Event)
    if filter.grid_ids is not None:
        statement = statement.where(Event.grid_id.in_(filter.grid_ids))
    if filter.statuses:
        statement = statement.where(Event.status.in_(filter.statuses))
    if filter.categories:
        statement = statement.where(Event.category.in_(filter.categories))
    if filter.severities:
        statement = statement.where(Event.severity.in_(filter.severities))
    if filter.department_id is not None:
        statement = statement.where(Event.department_id == filter.department_id)
    if filter.reported_after is not None:
        statement = statement.where(Event.reported_at >= filter.reported_after)
    if filter.reported_before is not None:
        statement = statement.where(Event.reported_at < filter.reported_before)
    if filter.overdue_at is not None:
        statement = statement.where(overdue_clause(filter.overdue_at))
    return statement


# The overdue rule, once for Python and once for SQL, side by side so they cannot drift apart:
# an event is overdue when it is still open and its deadline has passed.
_OPEN_VALUES = frozenset(status.value for status in OPEN_STATUSES)


def is_overdue(event: Event, *, now: datetime) -> bool:
    return event.deadline is not None and event.status in _OPEN_VALUES and event.deadline < now


def overdue_clause(now: datetime) -> ColumnElement[bool]:
    # `deadline < now` is NULL, so not true, for an event without a deadline.
    return (Event.deadline < now) & Event.status.in_(sorted(_OPEN_VALUES))


def _reporter(report: EventReport) -> tuple[str, dict[str, Any]]:
    given = {
        "member": report.reporter_member_id,
        "resident": report.reporter_resident_id,
        "system": report.reporter_system,
    }
    named = [kind for kind, value in given.items() if value is not None]
    if len(named) != 1:
        raise BadUserInput(
            "name exactly one reporter: a member, a resident or a system", field="reporter"
        )
    kind = named[0]
    if kind == "system":
        system = validation.text(
            report.reporter_system or "", field="reporterSystem", max_length=64
        )
        return kind, {"reporter_system": system}
    return kind, {f"reporter_{kind}_id": given[kind]}


async def _check_reporter_exists(session: AsyncSession, kind: str, fields: dict[str, Any]) -> None:
    model = {"member": Member, "resident": Resident}.get(kind)
    if model is None:
        return
    if await session.get(model, fields[f"reporter_{kind}_id"]) is None:
        raise BadUserInput(f"unknown reporting {kind}", field="reporter")


def _deadline(value: datetime | None, *, now: datetime) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BadUserInput("deadline needs a time zone", field="deadline")
    if value <= now:
        raise BadUserInput("deadline must be in the future", field="deadline")
    # Stored and read back in UTC; the returned object must say the same as a later read.
    return value.astimezone(UTC)


async def report(session: AsyncSession, *, report: EventReport, actor: str) -> Event:
    now = utcnow()
    validation.one_of(report.category, CATEGORIES, field="category")
    validation.one_of(report.severity, frozenset(SEVERITIES), field="severity")
    grid = await grids.resolve_code(session, code=report.grid_code, field="gridCode")
    kind, reporter_fields = _reporter(report)
    await _check_reporter_exists(session, kind, reporter_fields)
    lng, lat = report.location.to_wgs84() if report.location else (None, None)
    event = Event(
        code=new_code(now),
        category=report.category,
        title=validation.text(report.title, field="title", max_length=200),
        description=validation.text(
            report.description, field="description", max_length=5000, required=False
        ),
        lng=lng,
        lat=lat,
        grid_id=grid.id,
        reporter_kind=kind,
        severity=report.severity,
        status=Status.REPORTED.value,
        deadline=_deadline(report.deadline, now=now),
        reported_at=now,
        updated_at=now,
        **reporter_fields,
    )
    session.add(event)
    await session.flush()
    session.add(
        EventTransition(
            event_id=event.id,
            action=Action.REPORT.value,
            from_status=None,
            to_status=event.status,
            actor=actor,
            at=now,
        )
    )
    await session.flush()
    await outbox.record_change(session, event=event, action=Action.REPORT.value)
    return event


async def get(session: AsyncSession, *, event_id: int) -> Event:
    event = await session.get(Event, event_id)
    if event is None:
        raise NotFound("event not found")
    return event


async def transition(
    session: AsyncSession,
    *,
    event_id: int,
    action: Action,
    actor: str,
    note: str = "",
    department_code: str | None = None,
    deadline: datetime | None = None,
) -> Event:
    event, _ = await transition_with_change(
        session,
        event_id=event_id,
        action=action,
        actor=actor,
        note=note,
        department_code=department_code,
        deadline=deadline,
    )
    return event


async def transition_with_change(
    session: AsyncSession,
    *,
    event_id: int,
    action: Action,
    actor: str,
    note: str = "",
    department_code: str | None = None,
    deadline: datetime | None = None,
) -> tuple[Event, EventChange]:
    """Apply `action`; also return the change to publish once the unit of work commits (it
    knows the department a re-dispatch took the event from, which the event no longer does)."""
    if action not in TRANSITIONS:
        raise BadUserInput(f"{action.value} is not a status transition", field="action")
    event = await get(session, event_id=event_id)
    target = next_status(Status(event.status), action)
    now = utcnow()
    # Reject and reopen take their note as the argument `reason`: errors name what was sent.
    note_field = "reason" if action in (Action.REJECT, Action.REOPEN) else "note"
    note = validation.text(note, field=note_field, max_length=2000, required=False)
    previous_department_id = event.department_id
    if action is Action.DISPATCH:
        if department_code is None:
            raise BadUserInput("dispatch needs a department", field="departmentCode")
        department = await departments.resolve_code(session, code=department_code)
        event.department_id = department.id
        if deadline is not None:
            event.deadline = _deadline(deadline, now=now)
    if action in (Action.REJECT, Action.REOPEN) and not note:
        raise BadUserInput(f"{action.value} needs a reason", field="reason")
    previous = event.status
    event.status = target.value
    event.updated_at = now
    event.version += 1
    if action is Action.ACCEPT and event.accepted_at is None:
        event.accepted_at = now
    elif action is Action.RESOLVE:
        event.resolved_at = now
    elif action is Action.CLOSE:
        event.closed_at = now
    elif action is Action.REOPEN:
        event.resolved_at = None
        event.closed_at = None
    session.add(
        EventTransition(
            event_id=event.id,
            action=action.value,
            from_status=previous,
            to_status=target.value,
            actor=actor,
            note=note,
            department_id=event.department_id if action is Action.DISPATCH else None,
            at=now,
        )
    )
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict("the event changed meanwhile; reload it and try again") from None
    await outbox.record_change(
        session, event=event, action=action.value, previous_department_id=previous_department_id
    )
    change = EventChange.of(event, action.value, previous_department_id=previous_department_id)
    return event, change


async def add_note(
    session: AsyncSession, *, event_id: int, actor: str, note: str
) -> EventTransition:
    # Locked (PostgreSQL; SQLite has one writer anyway) so that a note and a concurrent
    # transition of the event reach the outbox in the order they commit, and the note's
    # snapshot is the event as it is when the note commits.
    event = await session.get(Event, event_id, with_for_update=True, populate_existing=True)
    if event is None:
        raise NotFound("event not found")
    line = EventTransition(
        event_id=event.id,
        action=Action.NOTE.value,
        from_status=event.status,
        to_status=event.status,
        actor=actor,
        note=validation.text(note, field="note", max_length=2000),
        at=utcnow(),
    )
    session.add(line)
    await session.flush()
    await outbox.record_change(session, event=event, action=Action.NOTE.value)
    return line


async def replace_reporter_resident(
    session: AsyncSession, *, resident_id: int, by: int | None
) -> None:
    """Events reported by `resident_id` now name `by` (a reconciled registration); through the
    unit of work, so the access log names each event changed."""
    statement = select(Event).where(Event.reporter_resident_id == resident_id)
    for event in (await session.scalars(statement)).all():
        event.reporter_resident_id = by
    await session.flush()


async def count_reported_by_resident(session: AsyncSession, *, resident_id: int) -> int:
    statement = select(func.count()).where(Event.reporter_resident_id == resident_id)
    return int(await session.scalar(statement) or 0)
