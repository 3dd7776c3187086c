"""Notices: drafted by a department for some grids, then published, then possibly retracted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.db import utcnow
from hub.departments import service as departments
from hub.errors import InvalidTransition, NotFound
from hub.grids import service as grids
from hub.notices.models import Notice, notice_grids

STATUSES = frozenset({"draft", "published", "retracted"})


@dataclass(frozen=True, slots=True)
class NoticeFilter:
    statuses: tuple[str, ...] = ()
    grid_ids: Select[int] | None = None
    department_id: int | None = None


def list_statement(filter: NoticeFilter) -> Select[Any]:
    statement = select(Notice)
    if filter.statuses:
        statement = statement.where(Notice.status.in_(filter.statuses))
    if filter.grid_ids is not None:
        scoped = select(notice_grids.c.notice_id).where(notice_grids.c.grid_id.in_(filter.grid_ids))
        statement = statement.where(Notice.id.in_(scoped))
    if filter.department_id is not None:
        statement = statement.where(Notice.department_id == filter.department_id)
    return statement


async def get(session: AsyncSession, *, notice_id: int) -> Notice:
    notice = await session.get(Notice, notice_id)
    if notice is None:
        raise NotFound("notice not found")
    return notice


async def create(
    session: AsyncSession, *, title: str, body: str, department_code: str, grid_codes: list[str]
) -> Notice:
    department = await departments.resolve_code(session, code=department_code)
    scope = [await grids.resolve_code(session, code=code, field="gridCodes") for code in grid_codes]
    notice = Notice(
        title=validation.text(title, field="title", max_length=200),
        body=validation.text(body, field="body", max_length=20_000),
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


async def publish(session: AsyncSession, *, notice_id: int) -> Notice:
    notice = await get(session, notice_id=notice_id)
    if notice.status != "draft":
        raise InvalidTransition(f"only a draft can be published; this notice is {notice.status}")
    notice.status = "published"
    notice.published_at = utcnow()
    await session.flush()
    return notice


async def retract(session: AsyncSession, *, notice_id: int) -> Notice:
    notice = await get(session, notice_id=notice_id)
    if notice.status != "published":
        raise InvalidTransition(
            f"only a published notice can be retracted; this one is {notice.status}"
        )
    notice.status = "retracted"
    notice.retracted_at = utcnow()
    await session.flush()
    return notice
