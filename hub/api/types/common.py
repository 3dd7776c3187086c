from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hub import pagination
from hub.api.compiled.shapes import global_id
from hub.api.context import Context, Info
from hub.api.ids import to_global_id
from hub.authz.reads import ReadLog
from hub.config import Limits
from hub.errors import NotFound
from hub.events.geo import wgs84_to_gcj02

T = TypeVar("T")

# A page's size when the client names none (at most the page size limit).
DEFAULT_PAGE_SIZE = 20


@strawberry.interface(description="An object with a global id, fetchable through `node(id:)`.")
class Node:
    @strawberry.field(
        description="Opaque global id; `node(id:)` fetches the object back.", metadata=global_id()
    )
    @staticmethod
    def id(root: strawberry.Parent[Any]) -> strawberry.ID:
        # Roots are ORM rows whose class names are the GraphQL type names (a test holds this).
        return to_global_id(type(root).__name__, root.id)


@strawberry.enum
class SortDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum(description="A geodetic datum. GridHub stores WGS84; Chinese map SDKs use GCJ-02.")
class CoordinateSystem(Enum):
    WGS84 = "WGS84"
    GCJ02 = "GCJ02"


@strawberry.type(description="A point; `system` says which datum the numbers are in.")
class Coordinates:
    lng: float
    lat: float
    system: CoordinateSystem


@strawberry.input
class CoordinatesInput:
    lng: float
    lat: float
    system: CoordinateSystem = CoordinateSystem.WGS84


def coordinates(
    lng: float | None, lat: float | None, system: CoordinateSystem
) -> Coordinates | None:
    if lng is None or lat is None:
        return None
    if system is CoordinateSystem.GCJ02:
        lng, lat = wgs84_to_gcj02(lng, lat)
    return Coordinates(lng=lng, lat=lat, system=system)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A page of a list, with cursors for keyset pagination.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    listing: strawberry.Private[Listing]

    @strawberry.field(description="All rows matching the filter, across every page.")
    async def total_count(self, info: Info) -> int:
        async with info.context.db.reader() as session:
            return await self.listing.count(session, info.context.reads)


@dataclass(frozen=True, slots=True)
class Listing:
    """What a list field reads, before paging: its statement over `model` in the viewer's row
    scope, and its ordering. The list resolvers page it through `paginate`; compiled
    execution (hub.api.compiled) selects only the columns a query asks for from the same
    statement."""

    model: type[Any]
    statement: Select[Any]
    key: pagination.SortKey
    direction: SortDirection = SortDirection.ASC
    # The unique column that breaks ties in the ordering (the audit log's is `seq`).
    id_name: str = "id"
    # The sensitive fields its filter and its sort key use (hub.api.audit.note_sensitive_inputs).
    found_by: frozenset[str] = frozenset()
    ordered_by: frozenset[str] = frozenset()

    @property
    def id_column(self) -> Any:
        return getattr(self.model, self.id_name)

    def note_found(self, reads: ReadLog, ids: Iterable[Any]) -> None:
        """A page found through a sensitive filter or sort key names its rows on the read
        record, whatever the query selects of them: an id alone, found by an ID number, says
        whose number it is."""
        revealing = self.found_by | self.ordered_by
        if revealing:
            reads.add_rows(self.model.__name__, revealing, ids)

    async def count(self, connection: AsyncSession | AsyncConnection, reads: ReadLog) -> int:
        """`totalCount`. Through a sensitive filter the count itself answers a question about
        the rows (one ID number: is this person registered here?), so it is taken by reading
        their ids, and every one goes on the read record (audit.append keeps the first
        thousand and counts the rest). A sensitive sort key changes no count."""
        if not self.found_by:
            return await pagination.count(connection, self.statement)
        ids = self.statement.with_only_columns(self.id_column).order_by(None)
        found = (await connection.scalars(ids)).all()
        reads.add_rows(self.model.__name__, self.found_by, found)
        return len(found)

    def page_request(
        self, *, first: int | None, after: str | None, last: int | None, before: str | None
    ) -> pagination.PageRequest:
        return pagination.PageRequest(
            first=first,
            after=after,
            last=last,
            before=before,
            descending=self.direction is SortDirection.DESC,
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup field reads: the one row of `model` that `statement` finds, in the
    viewer's row scope (or, for a feedback tracking code, by the code alone). The lookup
    resolvers fetch it; compiled execution selects only the columns a query asks for."""

    model: type[Any]
    statement: Select[Any]
    what: str  # "event": named in the NOT_FOUND error
    # The sensitive fields its arguments name (hub.api.audit.note_sensitive_arguments).
    found_by: frozenset[str] = frozenset()

    def not_found(self) -> NotFound:
        # Out of scope reads exactly like missing.
        return NotFound(f"{self.what} not found")

    def note_found(self, reads: ReadLog, row_id: Any) -> None:
        """A row found by the value of a sensitive field goes on the read record, whatever the
        query selects of it (as `Listing.note_found`)."""
        if self.found_by:
            reads.add_rows(self.model.__name__, self.found_by, (row_id,))


def lookup(
    context: Context,
    model: type[Any],
    condition: Any,
    what: str,
    found_by: frozenset[str] = frozenset(),
) -> Lookup:
    """The row of `model` that `condition` names, through the viewer's row scope."""
    statement = context.access.rows(select(model).where(condition), model)
    return Lookup(model, statement, what, found_by)


async def fetch(context: Context, found: Lookup) -> Any:
    """The row a lookup names; out of scope is NOT_FOUND, exactly like missing."""
    async with context.db.reader() as session:
        row = await session.scalar(found.statement)
    if row is None:
        raise found.not_found()
    if found.found_by:
        # Only rows found by a sensitive value have an id to note (a policy version has none).
        found.note_found(context.reads, row.id)
    return row


def page_sizes(limits: Limits) -> dict[str, int]:
    """`default_size` and `max_size` for pagination.keyset under these limits."""
    return {
        "default_size": min(DEFAULT_PAGE_SIZE, limits.max_page_size),
        "max_size": limits.max_page_size,
    }


async def paginate(
    info: Info,
    listing: Listing,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Connection[Any]:
    query = pagination.keyset(
        listing.statement,
        key=listing.key,
        id_column=listing.id_column,
        request=listing.page_request(first=first, after=after, last=last, before=before),
        **page_sizes(info.context.settings.limits),
    )
    async with info.context.db.reader() as session:
        page = pagination.page_of(query, (await session.scalars(query.statement)).all())
    listing.note_found(info.context.reads, (getattr(r, listing.id_name) for r in page.items))
    edges = [Edge(cursor=c, node=n) for c, n in zip(page.cursors, page.items, strict=True)]
    return Connection(
        edges=edges,
        nodes=page.items,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        listing=listing,
    )
