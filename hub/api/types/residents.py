from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import Parent

from hub import models
from hub.api.compiled.shapes import reads, to_many, to_one
from hub.api.context import Info
from hub.api.types.common import Node
from hub.api.types.org import GridType


@strawberry.enum
class Gender(Enum):
    MALE = "male"
    FEMALE = "female"


@strawberry.type(description="The resident's id in an external departmental system.")
class ExternalId:
    system: str
    external_id: str


@strawberry.type(
    name="Resident", description="A resident. Personal data: policy decides who sees what."
)
class ResidentType(Node):
    name: str
    birth_date: date
    id_number: str = strawberry.field(description="18-digit PRC resident identity number.")
    phone: str | None
    address: str
    household_code: str | None
    health_notes: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(metadata=reads("gender"))
    @staticmethod
    def gender(root: Parent[models.Resident]) -> Gender:
        return Gender(root.gender)

    @strawberry.field(metadata=to_one("grid_id"))
    @staticmethod
    async def grid(root: Parent[models.Resident], info: Info) -> GridType | None:
        return await info.context.loaders.grid.load(root.grid_id)  # type: ignore[return-value]

    @strawberry.field(
        description="Care tags: elderly, living_alone, disabled, low_income, key_care...",
        metadata=to_many("resident_tags"),
    )
    @staticmethod
    async def tags(root: Parent[models.Resident], info: Info) -> list[str]:
        return await info.context.loaders.resident_tags.load(root.id)

    @strawberry.field(
        description="A pending registration: the registered resident whose ID number this record "
        "also gives (a move between grids, 迁移, until reconciled). Null for a registered record.",
        metadata=to_one("duplicate_of_id"),
    )
    @staticmethod
    async def duplicate_of(root: Parent[models.Resident], info: Info) -> ResidentType | None:
        if root.duplicate_of_id is None:
            return None
        return await info.context.loaders.resident.load(root.duplicate_of_id)  # type: ignore[return-value]

    @strawberry.field(metadata=to_many("resident_external_ids"))
    @staticmethod
    async def external_ids(root: Parent[models.Resident], info: Info) -> list[ExternalId]:
        return await info.context.loaders.resident_external_ids.load(root.id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Resident)
