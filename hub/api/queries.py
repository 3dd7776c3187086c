"""Read side: lookups by id or code, keyset-paginated lists with filters and orderings."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from sqlalchemy import select

from hub import models
from hub.api.audit import note_sensitive_arguments, note_sensitive_inputs
from hub.api.compiled.shapes import listing, lookup_of
from hub.api.context import Context, Info
from hub.api.filters import (
    EventFilter,
    FeedbackFilter,
    GridFilter,
    MemberFilter,
    NoticeFilter,
    ResidentFilter,
    event_filter,
    grid_ids,
    notice_filter,
    resident_filter,
)
from hub.api.ids import parse_global_id, pk_of
from hub.api.types.common import (
    Connection,
    Listing,
    Lookup,
    Node,
    SortDirection,
    fetch,
    lookup,
    paginate,
)
from hub.api.types.events import EventType
from hub.api.types.feedback import FeedbackType
from hub.api.types.notices import NoticeType
from hub.api.types.org import DepartmentType, GridType, MemberType
from hub.api.types.residents import ResidentType
from hub.api.types.stats import Stats
from hub.departments import service as departments
from hub.errors import BadUserInput, NotFound
from hub.events import service as events
from hub.feedback import service as feedback
from hub.grids import service as grids
from hub.members import service as members
from hub.notices import service as notices
from hub.pagination import SortKey, date_key, datetime_key
from hub.residents import service as residents

NODE_MODELS: dict[str, type[Any]] = {
    "Grid": models.Grid,
    "Department": models.Department,
    "Member": models.Member,
    "Resident": models.Resident,
    "Event": models.Event,
    "Notice": models.Notice,
    "Feedback": models.Feedback,
    "EmergencyGrant": models.EmergencyGrant,
}


def one_lookup(**given: object) -> None:
    named = [name for name, value in given.items() if value is not None]
    if len(named) != 1:
        raise BadUserInput(f"pass exactly one of {', '.join(given)}", field=next(iter(given)))


# --- grids ------------------------------------------------------------------------------------


@strawberry.enum
class GridSortField(Enum):
    PATH = "path"
    CODE = "code"


@strawberry.input
class GridOrder:
    field: GridSortField = GridSortField.PATH
    direction: SortDirection = SortDirection.ASC


GRID_KEYS = {
    GridSortField.PATH: SortKey("PATH", models.Grid.path),
    GridSortField.CODE: SortKey("CODE", models.Grid.code),
}

# --- residents --------------------------------------------------------------------------------


@strawberry.enum
class ResidentSortField(Enum):
    ID = "id"
    NAME = "name"
    BIRTH_DATE = "birth_date"
    UPDATED_AT = "updated_at"


@strawberry.input
class ResidentOrder:
    field: ResidentSortField = ResidentSortField.ID
    direction: SortDirection = SortDirection.ASC


RESIDENT_KEYS = {
    ResidentSortField.ID: SortKey("ID", models.Resident.id),
    ResidentSortField.NAME: SortKey("NAME", models.Resident.name),
    ResidentSortField.BIRTH_DATE: date_key("BIRTH_DATE", models.Resident.birth_date),
    ResidentSortField.UPDATED_AT: datetime_key("UPDATED_AT", models.Resident.updated_at),
}

# --- events -----------------------------------------------------------------------------------


@strawberry.enum
class EventSortField(Enum):
    ID = "id"
    REPORTED_AT = "reported_at"
    UPDATED_AT = "updated_at"


@strawberry.input
class EventOrder:
    field: EventSortField = EventSortField.ID
    direction: SortDirection = SortDirection.ASC


EVENT_KEYS = {
    EventSortField.ID: SortKey("ID", models.Event.id),
    EventSortField.REPORTED_AT: datetime_key("REPORTED_AT", models.Event.reported_at),
    EventSortField.UPDATED_AT: datetime_key("UPDATED_AT", models.Event.updated_at),
}


# --- notices, feedback, members ---------------------------------------------------------------


@strawberry.enum
class NoticeSortField(Enum):
    ID = "id"
    CREATED_AT = "created_at"
    PUBLISHED_AT = strawberry.enum_value(
        "published_at",
        description=(
            "When the notice was published. Notices never published (drafts) have no such time "
            "and are left out of a list in this order."
        ),
    )


@strawberry.input
class NoticeOrder:
    field: NoticeSortField = NoticeSortField.ID
    direction: SortDirection = SortDirection.ASC


NOTICE_KEYS = {
    NoticeSortField.ID: SortKey("ID", models.Notice.id),
    NoticeSortField.CREATED_AT: datetime_key("CREATED_AT", models.Notice.created_at),
    NoticeSortField.PUBLISHED_AT: datetime_key("PUBLISHED_AT", models.Notice.published_at),
}


ID_ONLY = {
    "department": SortKey("ID", models.Department.id),
    "member": SortKey("ID", models.Member.id),
    "feedback": SortKey("ID", models.Feedback.id),
}


# --- the lists, before paging ----------------------------------------------------------------
# One builder per list field: the statement in the viewer's row scope and its ordering. The
# resolvers below page it; compiled execution (hub.api.compiled) reads the same Listing.


async def list_grids(
    context: Context, filter: GridFilter | None = None, order_by: GridOrder | None = None
) -> Listing:
    found_by, ordered_by = note_sensitive_inputs(context, filter, order_by)
    order = order_by or GridOrder()
    statement = grids.list_statement(level=None, parent_id=None)
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            parent_id = None
            if filter.parent_code is not None:
                parent = await grids.resolve_code(
                    session, code=filter.parent_code, field="parentCode"
                )
                parent_id = parent.id
            statement = grids.list_statement(level=filter.level, parent_id=parent_id)
            if filter.in_grid is not None:
                root = await grids.resolve_code(session, code=filter.in_grid)
                statement = statement.where(grids.subtree_of(root.path))
    statement = context.access.rows(statement, models.Grid)
    key = GRID_KEYS[order.field]
    return Listing(models.Grid, statement, key, order.direction, "id", found_by, ordered_by)


async def list_departments(context: Context) -> Listing:
    statement = context.access.rows(departments.list_statement(), models.Department)
    return Listing(models.Department, statement, ID_ONLY["department"])


async def list_members(context: Context, filter: MemberFilter | None = None) -> Listing:
    (found_by,) = note_sensitive_inputs(context, filter)
    domain_filter = members.MemberFilter()
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            department_id = None
            if filter.department_code is not None:
                department = await departments.resolve_code(session, code=filter.department_code)
                department_id = department.id
            domain_filter = members.MemberFilter(
                grid_ids=await grid_ids(session, filter.in_grid),
                department_id=department_id,
                is_party_member=filter.is_party_member,
            )
    statement = context.access.rows(members.list_statement(domain_filter), models.Member)
    return Listing(models.Member, statement, ID_ONLY["member"], found_by=found_by)


async def list_residents(
    context: Context,
    filter: ResidentFilter | None = None,
    order_by: ResidentOrder | None = None,
) -> Listing:
    found_by, ordered_by = note_sensitive_inputs(context, filter, order_by)
    order = order_by or ResidentOrder()
    domain_filter = residents.ResidentFilter()
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            domain_filter = await resident_filter(session, filter)
    statement = context.access.rows(residents.list_statement(domain_filter), models.Resident)
    key = RESIDENT_KEYS[order.field]
    return Listing(models.Resident, statement, key, order.direction, "id", found_by, ordered_by)


async def list_events(
    context: Context, filter: EventFilter | None = None, order_by: EventOrder | None = None
) -> Listing:
    found_by, ordered_by = note_sensitive_inputs(context, filter, order_by)
    order = order_by or EventOrder()
    domain_filter = events.EventFilter()
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            domain_filter = await event_filter(session, filter)
    statement = context.access.rows(events.list_statement(domain_filter), models.Event)
    key = EVENT_KEYS[order.field]
    return Listing(models.Event, statement, key, order.direction, "id", found_by, ordered_by)


async def list_notices(
    context: Context, filter: NoticeFilter | None = None, order_by: NoticeOrder | None = None
) -> Listing:
    found_by, ordered_by = note_sensitive_inputs(context, filter, order_by)
    order = order_by or NoticeOrder()
    domain_filter = notices.NoticeFilter()
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            domain_filter = await notice_filter(session, filter)
    statement = context.access.rows(notices.list_statement(domain_filter), models.Notice)
    if order.field is NoticeSortField.PUBLISHED_AT:
        # A keyset key is never NULL: a NULL sorts differently on SQLite and PostgreSQL and
        # makes no cursor. Drafts have no publication time, so they have no place here.
        statement = statement.where(models.Notice.published_at.is_not(None))
    key = NOTICE_KEYS[order.field]
    return Listing(models.Notice, statement, key, order.direction, "id", found_by, ordered_by)


async def list_feedback(context: Context, filter: FeedbackFilter | None = None) -> Listing:
    (found_by,) = note_sensitive_inputs(context, filter)
    domain_filter = feedback.FeedbackFilter()
    if filter is not None:  # codes to resolve: no filter needs no session
        async with context.db.reader() as session:
            domain_filter = feedback.FeedbackFilter(
                statuses=tuple(s.value for s in (filter.status or ())),
                kinds=tuple(k.value for k in (filter.kind or ())),
                grid_ids=await grid_ids(session, filter.in_grid),
            )
    statement = context.access.rows(feedback.list_statement(domain_filter), models.Feedback)
    return Listing(models.Feedback, statement, ID_ONLY["feedback"], found_by=found_by)


# --- lookups ----------------------------------------------------------------------------------
# One builder per lookup field: the row it names, in the viewer's scope. The resolvers below
# fetch it; compiled execution (hub.api.compiled) reads the same Lookup.


def find_grid(context: Context, id: strawberry.ID | None = None, code: str | None = None) -> Lookup:
    one_lookup(id=id, code=code)
    condition = models.Grid.id == pk_of(id, "Grid") if id is not None else models.Grid.code == code
    found_by = note_sensitive_arguments(context, "Query.grid", code=code)
    return lookup(context, models.Grid, condition, "grid", found_by)


def find_department(context: Context, code: str) -> Lookup:
    found_by = note_sensitive_arguments(context, "Query.department", code=code)
    condition = models.Department.code == code
    return lookup(context, models.Department, condition, "department", found_by)


def find_member(context: Context, id: strawberry.ID) -> Lookup:
    return lookup(context, models.Member, models.Member.id == pk_of(id, "Member"), "member")


def find_resident(context: Context, id: strawberry.ID) -> Lookup:
    condition = models.Resident.id == pk_of(id, "Resident")
    return lookup(context, models.Resident, condition, "resident")


def find_event(
    context: Context, id: strawberry.ID | None = None, code: str | None = None
) -> Lookup:
    one_lookup(id=id, code=code)
    if id is None and context.access.tracks(models.Event):
        # The code is the capability (30 random bits a day): whoever reported the event
        # follows it by its code, and nobody can list events to count them (issue 13).
        statement = select(models.Event).where(models.Event.code == code)
        return Lookup(models.Event, statement, "event")
    condition = (
        models.Event.id == pk_of(id, "Event") if id is not None else models.Event.code == code
    )
    found_by = note_sensitive_arguments(context, "Query.event", code=code)
    return lookup(context, models.Event, condition, "event", found_by)


def find_notice(context: Context, id: strawberry.ID) -> Lookup:
    return lookup(context, models.Notice, models.Notice.id == pk_of(id, "Notice"), "notice")


def find_feedback(
    context: Context, id: strawberry.ID | None = None, tracking_code: str | None = None
) -> Lookup:
    one_lookup(id=id, tracking_code=tracking_code)
    found_by = note_sensitive_arguments(context, "Query.feedback", trackingCode=tracking_code)
    if id is not None:
        condition = models.Feedback.id == pk_of(id, "Feedback")
        return lookup(context, models.Feedback, condition, "feedback")
    condition = models.Feedback.tracking_code == feedback.normalise_tracking_code(
        tracking_code or ""
    )
    if context.access.tracks(models.Feedback):
        # The code is the capability (50 random bits): whoever holds it follows the item.
        statement = select(models.Feedback).where(condition)
        return Lookup(models.Feedback, statement, "feedback", found_by)
    return lookup(context, models.Feedback, condition, "feedback", found_by)


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, pk = parse_global_id(id)
        model = NODE_MODELS.get(type_name)
        if model is None:
            raise NotFound("object not found")
        return await fetch(
            info.context, lookup(info.context, model, model.id == pk, type_name.lower())
        )

    # grids
    @strawberry.field(description="A grid by id or code.", metadata=lookup_of(find_grid))
    async def grid(
        self, info: Info, id: strawberry.ID | None = None, code: str | None = None
    ) -> GridType | None:
        return await fetch(info.context, find_grid(info.context, id=id, code=code))

    @strawberry.field(metadata=listing(list_grids))
    async def grids(
        self,
        info: Info,
        filter: GridFilter | None = None,
        order_by: GridOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[GridType]:
        listed = await list_grids(info.context, filter, order_by)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    # departments and members
    @strawberry.field(metadata=lookup_of(find_department))
    async def department(self, info: Info, code: str) -> DepartmentType | None:
        return await fetch(info.context, find_department(info.context, code=code))

    @strawberry.field(metadata=listing(list_departments))
    async def departments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[DepartmentType]:
        listed = await list_departments(info.context)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    @strawberry.field(metadata=lookup_of(find_member))
    async def member(self, info: Info, id: strawberry.ID) -> MemberType | None:
        return await fetch(info.context, find_member(info.context, id=id))

    @strawberry.field(metadata=listing(list_members))
    async def members(
        self,
        info: Info,
        filter: MemberFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[MemberType]:
        listed = await list_members(info.context, filter)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    # residents
    @strawberry.field(metadata=lookup_of(find_resident))
    async def resident(self, info: Info, id: strawberry.ID) -> ResidentType | None:
        return await fetch(info.context, find_resident(info.context, id=id))

    @strawberry.field(metadata=listing(list_residents))
    async def residents(
        self,
        info: Info,
        filter: ResidentFilter | None = None,
        order_by: ResidentOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ResidentType]:
        listed = await list_residents(info.context, filter, order_by)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    # events
    @strawberry.field(description="An event by id or code.", metadata=lookup_of(find_event))
    async def event(
        self, info: Info, id: strawberry.ID | None = None, code: str | None = None
    ) -> EventType | None:
        return await fetch(info.context, find_event(info.context, id=id, code=code))

    @strawberry.field(metadata=listing(list_events))
    async def events(
        self,
        info: Info,
        filter: EventFilter | None = None,
        order_by: EventOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[EventType]:
        listed = await list_events(info.context, filter, order_by)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    # notices
    @strawberry.field(metadata=lookup_of(find_notice))
    async def notice(self, info: Info, id: strawberry.ID) -> NoticeType | None:
        return await fetch(info.context, find_notice(info.context, id=id))

    @strawberry.field(metadata=listing(list_notices))
    async def notices(
        self,
        info: Info,
        filter: NoticeFilter | None = None,
        order_by: NoticeOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[NoticeType]:
        listed = await list_notices(info.context, filter, order_by)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    # feedback
    @strawberry.field(
        description="A feedback item by id or tracking code.", metadata=lookup_of(find_feedback)
    )
    async def feedback(
        self, info: Info, id: strawberry.ID | None = None, tracking_code: str | None = None
    ) -> FeedbackType | None:
        found = find_feedback(info.context, id=id, tracking_code=tracking_code)
        return await fetch(info.context, found)

    @strawberry.field(metadata=listing(list_feedback))
    async def feedback_list(
        self,
        info: Info,
        filter: FeedbackFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[FeedbackType]:
        listed = await list_feedback(info.context, filter)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    @strawberry.field(description="Aggregates for decisions.")
    def stats(self) -> Stats:
        return Stats()
