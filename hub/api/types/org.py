"""Grids, departments and members: the organisation of the hub."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

from hub import models
from hub.api.compiled.shapes import reads, to_many, to_one
from hub.api.context import Info
from hub.api.loaders import GRID_MEMBERS
from hub.api.types.common import Coordinates, CoordinateSystem, Node, coordinates
from hub.grids.service import ancestor_codes


@strawberry.type(name="Department", description="A department that acts on events.")
class DepartmentType(Node):
    code: str
    name: str
    name_en: str

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Department)


@strawberry.type(
    name="Grid",
    description="A cell of the grid tree; `level` is data (district, street, community, grid...).",
)
class GridType(Node):
    code: str
    name: str
    level: str
    depth: int

    @strawberry.field(
        description="The codes from the root down to this grid, this one last.",
        metadata=reads("path"),
    )
    @staticmethod
    def path(root: Parent[models.Grid]) -> list[str]:
        return ancestor_codes(root)

    @strawberry.field(metadata=to_one("parent_id"))
    @staticmethod
    async def parent(root: Parent[models.Grid], info: Info) -> GridType | None:
        if root.parent_id is None:
            return None
        return await info.context.loaders.grid.load(root.parent_id)  # type: ignore[return-value]

    @strawberry.field(
        description="The grid's boundary as a GeoJSON geometry in WGS84.",
        metadata=reads("boundary"),
    )
    @staticmethod
    def boundary(root: Parent[models.Grid]) -> JSON | None:
        return cast(JSON | None, root.boundary)

    @strawberry.field(metadata=reads("center_lng", "center_lat"))
    @staticmethod
    def center(
        root: Parent[models.Grid], system: CoordinateSystem = CoordinateSystem.WGS84
    ) -> Coordinates | None:
        return coordinates(root.center_lng, root.center_lat, system)

    @strawberry.field(
        description=(
            f"Members responsible for this grid (责任到人): the first {GRID_MEMBERS} by id."
        ),
        metadata=to_many("grid_members"),
    )
    @staticmethod
    async def members(root: Parent[models.Grid], info: Info) -> list[MemberType]:
        return await info.context.loaders.grid_members.load(root.id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Grid)


@strawberry.type(name="Member", description="A grid worker or party member.")
class MemberType(Node):
    name: str
    phone: str
    is_party_member: bool
    role: str

    @strawberry.field(metadata=to_one("department_id"))
    @staticmethod
    async def department(root: Parent[models.Member], info: Info) -> DepartmentType | None:
        if root.department_id is None:
            return None
        return await info.context.loaders.department.load(root.department_id)  # type: ignore[return-value]

    @strawberry.field(
        description="The grids this member is responsible for.", metadata=to_many("member_grids")
    )
    @staticmethod
    async def grids(root: Parent[models.Member], info: Info) -> list[GridType]:
        return await info.context.loaders.member_grids.load(root.id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Member)
