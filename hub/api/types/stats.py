"""Statistics. Aggregates read through the same scoped statements as the lists, so a count can
never include a row the viewer could not list."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated
from weakref import WeakKeyDictionary

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
from hub.db import Database
from hub.events import service as events
from hub.events.states import Status
from hub.residents import service as residents
from hub.stats import published
from hub.stats import service as stats
from hub.stats.disclosure import DisclosedMeans, Figure, Mean


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


@strawberry.type(
    description="A published count: withheld (count null) when it is below minimumCount, or "
    "when it would let a reader work a withheld one out from the published ones."
)
class PublishedCount:
    count: int | None
    withheld: bool


@strawberry.type(description="Published events of one category.")
class PublishedCategoryCount:
    category: EventCategory
    count: int | None
    withheld: bool


@strawberry.type(description="Published events in one status.")
class PublishedStatusCount:
    status: EventStatus  # type: ignore[valid-type]
    count: int | None
    withheld: bool


@strawberry.type(description="Published events reported in one month.")
class PublishedMonthCount:
    month: str | None = strawberry.field(
        description="YYYY-MM on Beijing's clock; null for every month before the twelve."
    )
    count: int | None
    withheld: bool


@strawberry.type(
    description="A published average: withheld with the count it is taken over; seconds null "
    "and not withheld when there was nothing to average."
)
class PublishedAverage:
    seconds: float | None
    withheld: bool


@strawberry.type(description="One line of the published tables: a community, or all of them.")
class PublishedLine:
    events: PublishedCount
    by_category: list[PublishedCategoryCount]
    by_status: list[PublishedStatusCount]
    by_month: list[PublishedMonthCount]
    average_response: PublishedAverage = strawberry.field(
        description="From report to acceptance, over the accepted events."
    )
    average_resolution: PublishedAverage = strawberry.field(
        description="From report to resolution, over the resolved events."
    )
    grid_id: strawberry.Private[int | None]

    @strawberry.field(description="The community; null on the line of all communities.")
    async def grid(self, info: Info) -> GridType | None:
        if self.grid_id is None:
            return None
        return await info.context.loaders.grid.load(self.grid_id)  # type: ignore[return-value]


@strawberry.type(
    description="The published event figures: events reported before asOf, per community by "
    "category, status and month, with average times. Figures below minimumCount, and those "
    "that would give one away, are withheld; the same figures are withheld wherever they are "
    "published."
)
class PublishedEvents:
    minimum_count: int
    as_of: datetime
    months: list[str] = strawberry.field(description="The twelve months, oldest first.")
    communities: list[PublishedLine]
    all_communities: PublishedLine


# One cache per worker's database (the release counts every event, whoever asks).
_RELEASES: WeakKeyDictionary[Database, published.PublishedCache] = WeakKeyDictionary()


async def published_events(info: Info) -> PublishedEvents:
    database = info.context.db.database
    k = info.context.settings.public_min_count

    async def load(now: datetime) -> published.PublishedFigures:
        async with info.context.db.reader() as session:
            return await published.published_figures(
                session,
                k=k,
                now=now,
                categories=[c.value for c in EventCategory],
                statuses=[s.value for s in Status],
            )

    cache = _RELEASES.setdefault(database, published.PublishedCache())
    figures = await cache.get(k, load)
    lines = [_line(figures, c.code, c.grid_id) for c in figures.communities]
    return PublishedEvents(
        minimum_count=figures.k,
        as_of=figures.as_of,
        months=list(figures.months),
        communities=lines,
        all_communities=_line(figures, None, None),
    )


def _line(
    figures: published.PublishedFigures, code: str | None, grid_id: int | None
) -> PublishedLine:
    def cells(name: str) -> list[tuple[str, Figure]]:
        table = figures.tables[name]
        if code is None:
            return [(column, table.column_totals[column]) for column in table.columns]
        return [(column, table.cell(code, column)) for column in table.columns]

    first = figures.tables[published.COUNT_TABLES[0]]
    total = first.total if code is None else first.row_totals[code]
    return PublishedLine(
        events=_count(total),
        by_category=[
            PublishedCategoryCount(category=EventCategory(c), count=f.value, withheld=f.suppressed)
            for c, f in cells("category")
        ],
        by_status=[
            PublishedStatusCount(status=Status(c), count=f.value, withheld=f.suppressed)
            for c, f in cells("status")
        ],
        by_month=[
            PublishedMonthCount(
                month=None if c == published.EARLIER else c, count=f.value, withheld=f.suppressed
            )
            for c, f in cells("month")
        ],
        average_response=_average(_mean_of(figures.response, code)),
        average_resolution=_average(_mean_of(figures.resolution, code)),
        grid_id=grid_id,
    )


def _count(figure: Figure) -> PublishedCount:
    return PublishedCount(count=figure.value, withheld=figure.suppressed)


def _mean_of(means: DisclosedMeans, code: str | None) -> Mean:
    return means.overall if code is None else means.means[code]


def _average(mean: Mean) -> PublishedAverage:
    return PublishedAverage(seconds=mean.value, withheld=mean.suppressed)


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

    @strawberry.field(
        description="The published event figures, the same on every channel: small counts and "
        "the figures that would give them away are withheld."
    )
    async def published_events(self, info: Info) -> PublishedEvents:
        return await published_events(info)
