from __future__ import annotations

from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from sqlalchemy import Select

from hub import pagination
from hub.api.context import Info
from hub.api.ids import to_global_id
from hub.events.geo import wgs84_to_gcj02

T = TypeVar("T")


@strawberry.interface(description="An object with a global id, fetchable through `node(id:)`.")
class Node:
    @strawberry.field(description="Opaque global id; `node(id:)` fetches the object back.")
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
    statement: strawberry.Private[Select[Any]]

    @strawberry.field(description="All rows matching the filter, across every page.")
    async def total_count(self, info: Info) -> int:
        async with info.context.db.reader() as session:
            return await pagination.count(session, self.statement)


async def paginate(
    info: Info,
    statement: Select[Any],
    *,
    key: pagination.SortKey,
    id_column: Any,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    direction: SortDirection,
) -> Connection[Any]:
    limits = info.context.settings.limits
    request = pagination.PageRequest(
        first=first,
        after=after,
        last=last,
        before=before,
        descending=direction is SortDirection.DESC,
    )
    async with info.context.db.reader() as session:
        page = await pagination.fetch_page(
            session,
            statement,
            key=key,
            id_column=id_column,
            request=request,
            default_size=min(20, limits.max_page_size),
            max_size=limits.max_page_size,
        )
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
        statement=statement,
    )
