"""Feedback: a resident submits, gets a tracking code, and a department responds."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from hub import validation
from hub.db import utcnow
from hub.departments import service as departments
from hub.errors import InvalidTransition, NotFound
from hub.feedback.models import Feedback
from hub.grids import service as grids

KINDS = frozenset({"suggestion", "complaint"})
STATUSES = frozenset({"submitted", "responded"})
# No 0/O/1/I: codes are read aloud over the phone and typed from paper.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_tracking_code() -> str:
    return "FB" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    grid_ids: Select[int] | None = None


def list_statement(filter: FeedbackFilter) -> Select[Any]:
    statement = select(Feedback)
    if filter.statuses:
        statement = statement.where(Feedback.status.in_(filter.statuses))
    if filter.kinds:
        statement = statement.where(Feedback.kind.in_(filter.kinds))
    if filter.grid_ids is not None:
        statement = statement.where(Feedback.grid_id.in_(filter.grid_ids))
    return statement


async def submit(
    session: AsyncSession, *, kind: str, content: str, grid_code: str | None
) -> Feedback:
    grid = (
        await grids.resolve_code(session, code=grid_code, field="gridCode") if grid_code else None
    )
    feedback = Feedback(
        tracking_code=new_tracking_code(),
        kind=validation.one_of(kind, KINDS, field="kind"),
        content=validation.text(content, field="content", max_length=5000),
        grid_id=grid.id if grid else None,
        status="submitted",
        created_at=utcnow(),
    )
    session.add(feedback)
    await session.flush()
    return feedback


def normalise_tracking_code(tracking_code: str) -> str:
    """Codes are read aloud and typed from paper: surrounding blanks and case do not matter."""
    return tracking_code.strip().upper()


async def get_by_tracking_code(session: AsyncSession, *, tracking_code: str) -> Feedback:
    statement = select(Feedback).where(
        Feedback.tracking_code == normalise_tracking_code(tracking_code)
    )
    # populate_existing: a row this session holds may predate a conditional UPDATE (respond).
    feedback = await session.scalar(statement.execution_options(populate_existing=True))
    if feedback is None:
        raise NotFound("no feedback with that tracking code")
    return feedback


async def respond(
    session: AsyncSession, *, tracking_code: str, response: str, department_code: str
) -> Feedback:
    text = validation.text(response, field="response", max_length=5000)
    department = await departments.resolve_code(session, code=department_code)
    code = normalise_tracking_code(tracking_code)
    # One conditional UPDATE decides who responds: of two concurrent responses exactly one finds
    # the feedback still "submitted". Reading the status first and writing after would let both
    # pass the check (PostgreSQL READ COMMITTED; on SQLite a read before the first write is not
    # even inside the transaction).
    answer = {
        Feedback.status: "responded",
        Feedback.response: text,
        Feedback.responder_department_id: department.id,
        Feedback.responded_at: utcnow(),
    }
    written = await session.execute(
        update(Feedback)
        .where(Feedback.tracking_code == code, Feedback.status == "submitted")
        .values(answer)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", written).rowcount != 1:
        await get_by_tracking_code(session, tracking_code=code)  # NotFound if there is none
        raise InvalidTransition("this feedback already has a response")
    feedback = await get_by_tracking_code(session, tracking_code=code)
    # The UPDATE went around the unit of work, where the access log's tracker looks (at each
    # flush): show the ORM what it wrote, so the mutation's record names this feedback and these
    # fields. The flush writes the same values again by primary key, to a row this transaction
    # already holds; the decision above stays the conditional UPDATE's.
    for column in answer:
        flag_modified(feedback, column.key)
    await session.flush()
    return feedback


async def replace_resident(session: AsyncSession, *, resident_id: int, by: int | None) -> None:
    """Feedback from `resident_id` now names `by` (a reconciled registration)."""
    statement = select(Feedback).where(Feedback.resident_id == resident_id)
    for item in (await session.scalars(statement)).all():
        item.resident_id = by
    await session.flush()
