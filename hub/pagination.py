"""Keyset (cursor) pagination pushed into SQL.

A page is `WHERE (sort, id) > (:sort, :id) ORDER BY sort, id LIMIT n + 1`: its cost does not grow
with the table, and rows inserted between pages neither repeat nor vanish. Cursors are opaque to
clients and name the ordering they belong to, so a cursor from another ordering is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from hub.errors import BadUserInput, LimitExceeded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SortKey:
    """A sortable, non-null column and how its values travel inside a cursor."""

    name: str
    column: InstrumentedAttribute[Any]
    decode: Callable[[Any], Any] = lambda value: value


def datetime_key(name: str, column: InstrumentedAttribute[Any]) -> SortKey:
    return SortKey(name, column, datetime.fromisoformat)


def date_key(name: str, column: InstrumentedAttribute[Any]) -> SortKey:
    return SortKey(name, column, date.fromisoformat)


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    descending: bool = False


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool


def encode_cursor(key: SortKey, value: Any, row_id: int) -> str:
    if isinstance(value, date | datetime):
        value = value.isoformat()
    raw = orjson.dumps([key.name, value, row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(key: SortKey, cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, value, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        if name != key.name or not isinstance(row_id, int):
            raise ValueError
        return key.decode(value), row_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadUserInput(
            "cursor is not valid for this list and ordering", field="cursor"
        ) from None


def page_size(request: PageRequest, *, default: int, maximum: int) -> tuple[int, bool]:
    """The number of rows asked for and whether the client pages backwards."""
    if request.first is not None and request.last is not None:
        raise BadUserInput("pass either first or last, not both", field="first")
    backwards = request.last is not None
    size = request.last if backwards else request.first
    if size is None:
        return default, backwards
    if size < 0:
        raise BadUserInput("page size must not be negative", field="last" if backwards else "first")
    if size > maximum:
        raise LimitExceeded(
            "PAGE_SIZE_LIMIT",
            f"page size {size} is above the maximum of {maximum}",
            maximum=maximum,
        )
    return size, backwards


async def fetch_page(
    session: AsyncSession,
    statement: Select[Any],
    *,
    key: SortKey,
    id_column: InstrumentedAttribute[int],
    request: PageRequest,
    default_size: int,
    max_size: int,
) -> Page[Any]:
    size, backwards = page_size(request, default=default_size, maximum=max_size)
    # Walking backwards is walking forwards in the opposite order, then flipping the result.
    descending = request.descending != backwards
    boundary = request.before if backwards else request.after
    if boundary is not None:
        value, row_id = decode_cursor(key, boundary)
        row = tuple_(key.column, id_column)
        bound = tuple_(value, row_id)  # type: ignore[arg-type]
        statement = statement.where(row < bound if descending else row > bound)
    if descending:
        statement = statement.order_by(key.column.desc(), id_column.desc())
    else:
        statement = statement.order_by(key.column.asc(), id_column.asc())
    rows: Sequence[Any] = (await session.scalars(statement.limit(size + 1))).all()
    more = len(rows) > size
    items = list(rows[:size])
    if backwards:
        items.reverse()
    cursors = [
        encode_cursor(key, getattr(item, key.column.key), getattr(item, id_column.key))
        for item in items
    ]
    return Page(
        items=items,
        cursors=cursors,
        has_next_page=more if not backwards else boundary is not None,
        has_previous_page=more if backwards else boundary is not None,
    )


async def count(session: AsyncSession, statement: Select[Any]) -> int:
    counted = select(func.count()).select_from(statement.order_by(None).subquery())
    return int((await session.scalar(counted)) or 0)
