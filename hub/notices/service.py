"""Notices: drafted by a department for some grids, then published, then possibly retracted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm.attributes import flag_modified

from hub import validation
from hub.db import utcnow
from hub.departments import service as departments
from hub.errors import BadUserInput, InvalidTransition, NotFound
from hub.grids import service as grids
from hub.grids.models import Grid
from hub.notices.models import Notice, notice_grids

STATUSES = frozenset({"draft", "published", "retracted"})
SEARCH_MAX_LENGTH = 100


@dataclass(frozen=True, slots=True)
class NoticeFilter:
    statuses: tuple[str, ...] = ()
    grid_ids: Select[int] | None = None
    # Notices addressed to any of these grids (see `applies_to_ids`).
    applies_to_ids: Select[int] | None = None
    department_id: int | None = None
    # Text to find in the title or the body (see `search_text`).
    search: str | None = None


def search_text(value: str | None, *, field: str = "search") -> str | None:
    """The words of a keyword search, checked like any input; blank means no search."""
    return validation.optional_text(value, field=field, max_length=SEARCH_MAX_LENGTH)


async def applies_to_ids(
    session: AsyncSession, *, code: str, field: str = "appliesTo"
) -> Select[int]:
    """A sub-select of the grids whose notices apply in the grid `code`: the grid itself, every
    grid below it, and every grid above it (a notice to the whole district is one to each of its
    residents). The grids above are the codes on its materialised path, a handful at most."""
    grid = await grids.resolve_code(session, code=code, field=field)
    inside = grids.subtree_of(grid.path)
    above = grids.ancestor_codes(grid)[:-1]
    return select(Grid.id).where((inside | Grid.code.in_(above)) if above else inside)


def _addressed_to(grid_ids: Select[int]) -> Select[int]:
    return select(notice_grids.c.notice_id).where(notice_grids.c.grid_id.in_(grid_ids))


def list_statement(filter: NoticeFilter) -> Select[Any]:
    statement = select(Notice)
    if filter.statuses:
        statement = statement.where(Notice.status.in_(filter.statuses))
    if filter.grid_ids is not None:
        statement = statement.where(Notice.id.in_(_addressed_to(filter.grid_ids)))
    if filter.applies_to_ids is not None:
        statement = statement.where(Notice.id.in_(_addressed_to(filter.applies_to_ids)))
    if filter.department_id is not None:
        statement = statement.where(Notice.department_id == filter.department_id)
    if filter.search:
        # autoescape: a % or _ in the search is a character to find, not a LIKE wildcard.
        # A substring scan of every candidate notice: fine at a district's few thousand notices.
        statement = statement.where(
            or_(
                Notice.title.icontains(filter.search, autoescape=True),
                Notice.body.icontains(filter.search, autoescape=True),
            )
        )
    return statement


MAX_GRIDS = 100  # grids one notice may name; a bigger audience names a parent grid


async def get(session: AsyncSession, *, notice_id: int) -> Notice:
    # populate_existing: a row this session holds may predate a conditional UPDATE (_move).
    notice = await session.get(Notice, notice_id, populate_existing=True)
    if notice is None:
        raise NotFound("notice not found")
    return notice


async def create(
    session: AsyncSession, *, title: str, body: str, department_code: str, grid_codes: list[str]
) -> Notice:
    title = validation.text(title, field="title", max_length=200)
    body = validation.text(body, field="body", max_length=20_000)
    codes = list(dict.fromkeys(grid_codes))  # a code named twice is one grid, not a PK violation
    if len(codes) > MAX_GRIDS:
        raise BadUserInput(
            f"a notice may name at most {MAX_GRIDS} grids; name a parent grid instead",
            field="gridCodes",
            maximum=MAX_GRIDS,
        )
    department = await departments.resolve_code(session, code=department_code)
    scope = await grids.resolve_codes(session, codes=grid_codes, field="gridCodes")
    notice = Notice(
        title=title,
        body=body,
        status="draft",
        department_id=department.id,
        created_at=utcnow(),
    )
    session.add(notice)
    await session.flush()
    if scope:
        await session.execute(
            notice_grids.insert(), [{"notice_id": notice.id, "grid_id": g.id} for g in scope]
        )
    return notice


async def _move(
    session: AsyncSession,
    notice_id: int,
    *,
    source: str,
    target: str,
    stamp: InstrumentedAttribute[datetime | None],
) -> Notice:
    """Move a notice from status `source` to `target`, setting the timestamp `stamp` to now.

    One conditional UPDATE decides: of two concurrent attempts exactly one finds the notice still
    in `source`; the other is told the transition is invalid. (Checking a status read earlier
    would let both pass: PostgreSQL READ COMMITTED, and on SQLite a read before the first write
    is not even inside the transaction.)
    """
    written = await session.execute(
        update(Notice)
        .where(Notice.id == notice_id, Notice.status == source)
        .values({Notice.status: target, stamp: utcnow()})
        .execution_options(synchronize_session=False)
    )
    notice = await get(session, notice_id=notice_id)  # NotFound if there is none
    if cast("CursorResult[Any]", written).rowcount != 1:
        raise InvalidTransition(
            f"only a {source} notice can be {target}; this one is {notice.status}"
        )
    # The UPDATE went around the unit of work, where the access log's tracker looks (at each
    # flush): show the ORM what it wrote, so the mutation's record names this notice and these
    # fields. The flush writes the same values again by primary key, to a row this transaction
    # already holds; the decision above stays the conditional UPDATE's.
    for column in (Notice.status, stamp):
        flag_modified(notice, column.key)
    await session.flush()
    return notice


async def publish(session: AsyncSession, *, notice_id: int) -> Notice:
    return await _move(
        session, notice_id, source="draft", target="published", stamp=Notice.published_at
    )


async def retract(session: AsyncSession, *, notice_id: int) -> Notice:
    return await _move(
        session, notice_id, source="published", target="retracted", stamp=Notice.retracted_at
    )
