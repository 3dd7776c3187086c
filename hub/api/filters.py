"""GraphQL filter inputs and their translation into the domain services' filters.

List-valued filters are deduplicated as the input is built and refused past `MAX_LIST_ITEMS`
distinct values: each value becomes a bound parameter (asyncpg takes at most 32767 per
statement), and no filter needs more than a few.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date, datetime
from typing import TypeVar

import strawberry
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.types.events import EventCategory, EventStatus, Severity
from hub.api.types.feedback import FeedbackKind, FeedbackStatus
from hub.api.types.notices import NoticeStatus
from hub.api.types.residents import Gender
from hub.departments import service as departments
from hub.errors import BadUserInput
from hub.events import service as events
from hub.grids import service as grids
from hub.notices import service as notices
from hub.residents import service as residents

MAX_LIST_ITEMS = 50

H = TypeVar("H", bound=Hashable)


def distinct_items(values: list[H] | None, *, field: str) -> list[H] | None:
    """`values` without repeats (first occurrences, in order), refused past MAX_LIST_ITEMS."""
    if values is None:
        return None
    unique = list(dict.fromkeys(values))
    if len(unique) > MAX_LIST_ITEMS:
        raise BadUserInput(
            f"{field} takes at most {MAX_LIST_ITEMS} distinct values",
            field=field,
            maximum=MAX_LIST_ITEMS,
        )
    return unique


async def grid_ids(session: AsyncSession, code: str | None) -> Select[int] | None:
    return None if code is None else await grids.subtree_ids(session, code=code)


@strawberry.input
class GridFilter:
    level: str | None = None
    in_grid: str | None = strawberry.field(default=None, description="This grid and all below.")
    parent_code: str | None = None


@strawberry.input
class ResidentFilter:
    in_grid: str | None = strawberry.field(default=None, description="This grid and all below.")
    tag: str | None = None
    gender: Gender | None = None
    born_after: date | None = strawberry.field(default=None, description="Inclusive.")
    born_before: date | None = strawberry.field(default=None, description="Exclusive.")
    household_code: str | None = None
    id_number: str | None = None
    pending_registration: bool | None = strawberry.field(
        default=None,
        description="true: only pending registrations (a registered ID number given again); "
        "false: only registered records.",
    )


@strawberry.input
class EventFilter:
    in_grid: str | None = strawberry.field(default=None, description="This grid and all below.")
    status: list[EventStatus] | None = None  # type: ignore[valid-type]
    category: list[EventCategory] | None = None
    severity: list[Severity] | None = None
    department_code: str | None = None
    reported_after: datetime | None = strawberry.field(default=None, description="Inclusive.")
    reported_before: datetime | None = strawberry.field(default=None, description="Exclusive.")
    overdue: bool | None = strawberry.field(
        default=None, description="true: only open events past their deadline."
    )

    def __post_init__(self) -> None:
        self.status = distinct_items(self.status, field="status")
        self.category = distinct_items(self.category, field="category")
        self.severity = distinct_items(self.severity, field="severity")


async def event_filter(session: AsyncSession, given: EventFilter | None) -> events.EventFilter:
    if given is None:
        return events.EventFilter()
    department_id = None
    if given.department_code is not None:
        department_id = (await departments.resolve_code(session, code=given.department_code)).id
    if given.overdue is False:
        raise BadUserInput("overdue filter takes only true", field="overdue")
    _need_zone(given.reported_after, field="reportedAfter")
    _need_zone(given.reported_before, field="reportedBefore")
    return events.EventFilter(
        grid_ids=await grid_ids(session, given.in_grid),
        statuses=tuple(str(s) for s in given.status or ()),  # Status is a StrEnum
        categories=tuple(c.value for c in given.category or ()),
        severities=tuple(s.value for s in given.severity or ()),
        department_id=department_id,
        reported_after=given.reported_after,
        reported_before=given.reported_before,
        overdue_at=datetime.now().astimezone() if given.overdue else None,
    )


def _need_zone(value: datetime | None, *, field: str) -> None:
    # Stored times are UTC; a time without an offset would be a guess (and fails the column).
    if value is not None and value.tzinfo is None:
        raise BadUserInput(f"{field} needs a time zone offset", field=field)


async def resident_filter(
    session: AsyncSession, given: ResidentFilter | None
) -> residents.ResidentFilter:
    if given is None:
        return residents.ResidentFilter()
    return residents.ResidentFilter(
        grid_ids=await grid_ids(session, given.in_grid),
        tag=given.tag,
        gender=given.gender.value if given.gender else None,
        born_after=given.born_after,
        born_before=given.born_before,
        household_code=given.household_code,
        id_number=given.id_number,
        pending=given.pending_registration,
    )


@strawberry.input
class NoticeFilter:
    status: list[NoticeStatus] | None = None
    in_grid: str | None = strawberry.field(
        default=None, description="Notices addressed to this grid or any grid below it."
    )
    applies_to: str | None = strawberry.field(
        default=None,
        description=(
            "Notices that apply in this grid: addressed to it, to any grid below it, or to any "
            "grid above it (a notice to a whole district applies in each of its communities)."
        ),
    )
    department_code: str | None = None
    search: str | None = strawberry.field(
        default=None,
        description=(
            "Text found in the title or the body (Latin letters in any case; % and _ are "
            "plain characters). Blank finds every notice."
        ),
    )

    def __post_init__(self) -> None:
        self.status = distinct_items(self.status, field="status")


async def notice_filter(session: AsyncSession, given: NoticeFilter | None) -> notices.NoticeFilter:
    if given is None:
        return notices.NoticeFilter()
    department_id = None
    if given.department_code is not None:
        department_id = (await departments.resolve_code(session, code=given.department_code)).id
    return notices.NoticeFilter(
        statuses=tuple(s.value for s in given.status or ()),
        grid_ids=await grid_ids(session, given.in_grid),
        applies_to_ids=(
            None
            if given.applies_to is None
            else await notices.applies_to_ids(session, code=given.applies_to)
        ),
        department_id=department_id,
        search=notices.search_text(given.search),
    )


@strawberry.input
class FeedbackFilter:
    status: list[FeedbackStatus] | None = None
    kind: list[FeedbackKind] | None = None
    in_grid: str | None = None

    def __post_init__(self) -> None:
        self.status = distinct_items(self.status, field="status")
        self.kind = distinct_items(self.kind, field="kind")


@strawberry.input
class MemberFilter:
    in_grid: str | None = strawberry.field(
        default=None, description="Members responsible for this grid or any grid below it."
    )
    department_code: str | None = None
    is_party_member: bool | None = None
