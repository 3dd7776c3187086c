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
from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from hub import validation
from hub.errors import BadUserInput, LimitExceeded

T = TypeVar("T")


# Ids and integer keys are 32-bit INTEGER columns: a bigger number from a forged cursor would
# make PostgreSQL fail the whole query instead of matching nothing.
_INT_RANGE = range(-(2**31), 2**31)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _INT_RANGE:
        raise ValueError("not an integer key")
    return value


def _str(value: Any) -> str:
    # No stored text holds a control character or a non-character (hub.validation refuses them
    # on the way in), and PostgreSQL fails the whole query on a NUL: such a key is forged.
    if not isinstance(value, str) or not validation.storable(value):
        raise ValueError("not a text key")
    return value


def _aware_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(_str(value))
    if parsed.tzinfo is None:
        raise ValueError("cursor times carry their offset")
    if not validation.time_in_range(parsed):
        raise ValueError("cursor time out of range")
    return parsed


@dataclass(frozen=True, slots=True)
class SortKey:
    """A sortable, non-null column and how its values travel inside a cursor. `decode` checks a
    value read back from a (client-held, so untrusted) cursor; it raises ValueError or TypeError."""

    name: str
    column: InstrumentedAttribute[Any]
    decode: Callable[[Any], Any] | None = None

    @property
    def tag(self) -> str:
        """What a cursor names: the list and the ordering, so a cursor of the residents' ID
        ordering is refused by the events list, whose ordering is also called ID."""
        return f"{self.column.class_.__name__}.{self.name}"

    def decode_value(self, value: Any) -> Any:
        if self.decode is not None:
            return self.decode(value)
        return _int(value) if self.column.type.python_type is int else _str(value)


def datetime_key(name: str, column: InstrumentedAttribute[Any]) -> SortKey:
    return SortKey(name, column, _aware_datetime)


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
    raw = orjson.dumps([key.tag, value, row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(key: SortKey, cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # validate: refuse characters outside the alphabet instead of skipping them.
        name, value, row_id = orjson.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        if name != key.tag:
            raise ValueError("cursor of another list or ordering")
        return key.decode_value(value), _int(row_id)
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


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A statement narrowed to one keyset page (`size + 1` rows, to tell whether there are
    more), and what reading its rows back needs to know."""

    statement: Select[Any]
    key: SortKey
    id_column: InstrumentedAttribute[int]
    request: PageRequest
    size: int
    backwards: bool


def keyset(
    statement: Select[Any],
    *,
    key: SortKey,
    id_column: InstrumentedAttribute[int],
    request: PageRequest,
    default_size: int,
    max_size: int,
) -> PageQuery:
    """Narrow `statement` to the page `request` asks for. Whatever the statement selects (ORM
    rows, or columns labelled as their attributes), its rows must name the sort key and the id
    as attributes: `page_of` reads the cursors off them. Run `query.statement`, then hand
    its rows to `page_of`."""
    size, backwards = page_size(request, default=default_size, maximum=max_size)
    # `after` and `before` both narrow the window (Relay allows them together); `first` takes
    # from its start, `last` from its end.
    if request.after is not None:
        statement = statement.where(
            _beyond(key, id_column, request.after, descending=request.descending)
        )
    if request.before is not None:
        statement = statement.where(
            _beyond(key, id_column, request.before, descending=not request.descending)
        )
    # Walking backwards is walking forwards in the opposite order, then flipping the result.
    descending = request.descending != backwards
    if descending:
        statement = statement.order_by(key.column.desc(), id_column.desc())
    else:
        statement = statement.order_by(key.column.asc(), id_column.asc())
    return PageQuery(statement.limit(size + 1), key, id_column, request, size, backwards)


def page_of(query: PageQuery, rows: Sequence[T], *, cursors: bool = True) -> Page[T]:
    """The page of what `query.statement` returned: at most `size` rows in the order asked
    for, their cursors (unless not wanted: `cursor_of` gives any one of them), and whether
    there are more either way."""
    request = query.request
    more = len(rows) > query.size
    items = list(rows[: query.size])
    if query.backwards:
        items.reverse()
    return Page(
        items=items,
        cursors=[cursor_of(query, item) for item in items] if cursors else [],
        has_next_page=more if not query.backwards else request.before is not None,
        has_previous_page=more if query.backwards else request.after is not None,
    )


def cursor_of(query: PageQuery, item: Any) -> str:
    """The cursor of one row of `query`'s page."""
    return encode_cursor(
        query.key, getattr(item, query.key.column.key), getattr(item, query.id_column.key)
    )


def _beyond(
    key: SortKey, id_column: InstrumentedAttribute[int], cursor: str, *, descending: bool
) -> ColumnElement[bool]:
    """Rows strictly past the cursor's row in the given direction: `(sort, id) > (:v, :id)`."""
    value, row_id = decode_cursor(key, cursor)
    row = tuple_(key.column, id_column)
    # Bound with the columns' own types, so values convert exactly as stored ones do.
    bound = tuple_(literal(value, key.column.type), literal(row_id, id_column.type))
    return row < bound if descending else row > bound


async def count(session: AsyncSession | AsyncConnection, statement: Select[Any]) -> int:
    counted = select(func.count()).select_from(statement.order_by(None).subquery())
    return int((await session.scalar(counted)) or 0)
