"""Statistics. Aggregates read through the same scoped statements as the lists, so a count can
never include a row the viewer could not list."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import strawberry

from hub import models
from hub.api.audit import note_sensitive_inputs
from hub.api.context import Info
from hub.api.filters import (
    EventFilter,
    ResidentFilter,
    distinct_items,
    event_filter,
    resident_filter,
)
from hub.api.types.events import EventCategory, EventStatus, Severity
from hub.api.types.org import GridType
from hub.events import service as events
from hub.events.states import Status
from hub.residents import service as residents
from hub.stats import service as stats


@strawberry.enum
class EventDimension(Enum):
    CATEGORY = "category"
    STATUS = "status"
    SEVERITY = "severity"
    MONTH = "month"
    GRID = "grid"


@strawberry.type(description="A count of events; only the dimensions grouped by are set.")
class EventCount:
    count: int
    category: EventCategory | None
    status: EventStatus | None  # type: ignore[valid-type]
    severity: Severity | None
    month: str | None = strawberry.field(
        description="YYYY-MM of the report time at the requested UTC offset (default +08:00)."
    )
    grid_id: strawberry.Private[int | None]

    @strawberry.field
    async def grid(self, info: Info) -> GridType | None:
        if self.grid_id is None:
            return None
        return await info.context.loaders.grid.load(self.grid_id)  # type: ignore[return-value]


@strawberry.type
class EventTimes:
    events: int
    accepted: int
    resolved: int
    average_response_seconds: float | None = strawberry.field(
        description="Mean seconds from report to acceptance, over accepted events."
    )
    average_resolution_seconds: float | None = strawberry.field(
        description="Mean seconds from report to resolution, over resolved events."
    )


@strawberry.type
class TagCount:
    tag: str
    count: int
    grid_id: strawberry.Private[int]

    @strawberry.field
    async def grid(self, info: Info) -> GridType | None:
        return await info.context.loaders.grid.load(self.grid_id)  # type: ignore[return-value]


@strawberry.type
class Stats:
    @strawberry.field(
        description="Event counts grouped by the given dimensions. With GRID, `gridLevel` names "
        "the level to roll up to (e.g. community); without it, each event's own grid."
    )
    async def event_counts(
        self,
        info: Info,
        group_by: list[EventDimension],
        filter: EventFilter | None = None,
        grid_level: str | None = None,
        utc_offset_minutes: Annotated[
            int,
            strawberry.argument(
                description="The clock MONTH is counted on, in minutes east of UTC (480: Beijing)."
            ),
        ] = stats.CHINA_STANDARD_TIME_MINUTES,
    ) -> list[EventCount]:
        note_sensitive_inputs(info.context, filter, *group_by)
        async with info.context.db.reader() as session:
            domain_filter = await event_filter(session, filter)
            scoped = info.context.access.rows(events.list_statement(domain_filter), models.Event)
            rows = await stats.event_counts(
                session,
                events=scoped,
                by=list(dict.fromkeys(d.value for d in group_by)),
                grid_level=grid_level,
                utc_offset_minutes=utc_offset_minutes,
            )
        return [
            EventCount(
                count=r.count,
                category=EventCategory(r.category) if r.category else None,
                status=Status(r.status) if r.status else None,
                severity=Severity(r.severity) if r.severity else None,
                month=r.month,
                grid_id=r.grid_id,
            )
            for r in rows
        ]

    @strawberry.field(description="Average response and resolution times of the matching events.")
    async def event_times(self, info: Info, filter: EventFilter | None = None) -> EventTimes:
        note_sensitive_inputs(info.context, filter)
        async with info.context.db.reader() as session:
            domain_filter = await event_filter(session, filter)
            scoped = info.context.access.rows(events.list_statement(domain_filter), models.Event)
            times = await stats.event_times(session, events=scoped)
        return EventTimes(
            events=times.events,
            accepted=times.accepted,
            resolved=times.resolved,
            average_response_seconds=times.average_response_seconds,
            average_resolution_seconds=times.average_resolution_seconds,
        )

    @strawberry.field(
        description="Residents per tag in each grid at `level`, e.g. elderly living alone per "
        "community."
    )
    async def resident_tag_counts(
        self,
        info: Info,
        level: str,
        tags: list[str] | None = None,
        filter: ResidentFilter | None = None,
    ) -> list[TagCount]:
        note_sensitive_inputs(info.context, filter)
        async with info.context.db.reader() as session:
            domain_filter = await resident_filter(session, filter)
            scoped = info.context.access.rows(
                residents.list_statement(domain_filter), models.Resident
            )
            rows = await stats.resident_tag_counts(
                session,
                residents=scoped,
                level=level,
                tags=distinct_items(tags, field="tags"),
            )
        return [TagCount(tag=r.tag, count=r.count, grid_id=r.grid_id) for r in rows]
