from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import Parent

from hub import models
from hub.api.compiled.shapes import reads, to_many, to_one
from hub.api.context import Info
from hub.api.types.common import Node
from hub.api.types.org import DepartmentType, GridType


@strawberry.enum
class NoticeStatus(Enum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETRACTED = "retracted"


@strawberry.type(name="Notice", description="A notice to the residents of some grids.")
class NoticeType(Node):
    title: str
    body: str = strawberry.field(description="Markdown source.")
    created_at: datetime
    published_at: datetime | None
    retracted_at: datetime | None

    @strawberry.field(metadata=reads("status"))
    @staticmethod
    def status(root: Parent[models.Notice]) -> NoticeStatus:
        return NoticeStatus(root.status)

    @strawberry.field(metadata=to_one("department_id"))
    @staticmethod
    async def department(root: Parent[models.Notice], info: Info) -> DepartmentType | None:
        return await info.context.loaders.department.load(root.department_id)  # type: ignore[return-value]

    @strawberry.field(
        description="The grids the notice is addressed to.", metadata=to_many("notice_grids")
    )
    @staticmethod
    async def scope(root: Parent[models.Notice], info: Info) -> list[GridType]:
        return await info.context.loaders.notice_grids.load(root.id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Notice)
