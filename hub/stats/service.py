"""Statistics. Each takes an already-scoped statement so counts never see rows the viewer can't."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hub.errors import BadUserInput
from hub.events.models import Event
from hub.grids.models import PATH_END, Grid
from hub.residents.models import Resident, ResidentTag
from hub.sqlfuncs import seconds_between, year_month

EVENT_DIMENSIONS = ("category", "status", "severity", "month", "grid")
# Months are counted on the reporting clock, not in UTC: an event at 2024-02-29T20:00Z belongs to
# March in Beijing. China keeps one offset all year, so minutes suffice (no DST rules needed).
CHINA_STANDARD_TIME_MINUTES = 8 * 60


@dataclass(frozen=True, slots=True)
class EventCount:
    count: int
    category: str | None = None
    status: str | None = None
    severity: str | None = None
    month: str | None = None
    grid_id: int | None = None


async def event_counts(
    session: AsyncSession,
    *,
    events: Select[Any],
    by: list[str],
    grid_level: str | None,
    utc_offset_minutes: int = CHINA_STANDARD_TIME_MINUTES,
) -> list[EventCount]:
    if not -12 * 60 <= utc_offset_minutes <= 14 * 60:
        raise BadUserInput(
            "UTC offset must be between -720 and 840 minutes", field="utcOffsetMinutes"
        )
    scoped = events.subquery()
    source = aliased(Event, scoped)
    columns: dict[str, Any] = {
        "category": source.category,
        "status": source.status,
        "severity": source.severity,
        "month": year_month(source.reported_at, literal_column(str(int(utc_offset_minutes)))),
    }
    selected = [columns[d].label(d) for d in by if d != "grid"]
    statement = select(*selected, func.count().label("count")).select_from(scoped)
    if "grid" in by:
        own, ancestor = aliased(Grid), aliased(Grid)
        statement = statement.join(own, own.id == source.grid_id)
        if grid_level is None:
            grid_column = own.id
        else:
            statement = statement.join(
                ancestor,
                (own.path >= ancestor.path)
                & (own.path < ancestor.path + PATH_END)
                & (ancestor.level == grid_level),
            )
            grid_column = ancestor.id
        statement = statement.add_columns(grid_column.label("grid_id"))
        selected.append(grid_column)
    statement = statement.group_by(*[c for c in selected]).order_by(*[c for c in selected])
    rows = (await session.execute(statement)).mappings().all()
    return [EventCount(**dict(row)) for row in rows]


@dataclass(frozen=True, slots=True)
class EventTimes:
    events: int
    accepted: int
    resolved: int
    average_response_seconds: float | None
    average_resolution_seconds: float | None


async def event_times(session: AsyncSession, *, events: Select[Any]) -> EventTimes:
    scoped = events.subquery()
    source = aliased(Event, scoped)
    response = seconds_between(source.reported_at, source.accepted_at)
    resolution = seconds_between(source.reported_at, source.resolved_at)
    row = (
        await session.execute(
            select(
                func.count(),
                func.count(source.accepted_at),
                func.count(source.resolved_at),
                func.avg(response),
                func.avg(resolution),
            ).select_from(scoped)
        )
    ).one()
    return EventTimes(
        events=row[0],
        accepted=row[1],
        resolved=row[2],
        average_response_seconds=float(row[3]) if row[3] is not None else None,
        average_resolution_seconds=float(row[4]) if row[4] is not None else None,
    )


@dataclass(frozen=True, slots=True)
class TagCount:
    grid_id: int
    tag: str
    count: int


async def resident_tag_counts(
    session: AsyncSession, *, residents: Select[Any], level: str, tags: list[str] | None
) -> list[TagCount]:
    """How many residents carry each tag, per grid at `level` (e.g. per community)."""
    scoped = residents.subquery()
    source = aliased(Resident, scoped)
    own, ancestor = aliased(Grid), aliased(Grid)
    statement = (
        select(ancestor.id, ResidentTag.tag, func.count())
        .select_from(scoped)
        .join(ResidentTag, ResidentTag.resident_id == source.id)
        .join(own, own.id == source.grid_id)
        .join(
            ancestor,
            (own.path >= ancestor.path)
            & (own.path < ancestor.path + PATH_END)
            & (ancestor.level == level),
        )
        .group_by(ancestor.id, ResidentTag.tag)
        .order_by(ancestor.id, ResidentTag.tag)
    )
    if tags:
        statement = statement.where(ResidentTag.tag.in_(tags))
    rows = (await session.execute(statement)).all()
    return [TagCount(grid_id=r[0], tag=r[1], count=r[2]) for r in rows]
