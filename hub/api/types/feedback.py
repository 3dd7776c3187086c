from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import Parent

from hub import models
from hub.api.compiled.shapes import reads, to_one
from hub.api.context import Info
from hub.api.types.common import Node
from hub.api.types.org import DepartmentType, GridType


@strawberry.enum
class FeedbackKind(Enum):
    SUGGESTION = "suggestion"
    COMPLAINT = "complaint"


@strawberry.enum
class FeedbackStatus(Enum):
    SUBMITTED = "submitted"
    RESPONDED = "responded"


@strawberry.type(name="Feedback", description="A resident's suggestion or complaint.")
class FeedbackType(Node):
    tracking_code: str
    content: str
    response: str | None
    created_at: datetime
    responded_at: datetime | None

    @strawberry.field(metadata=reads("kind"))
    @staticmethod
    def kind(root: Parent[models.Feedback]) -> FeedbackKind:
        return FeedbackKind(root.kind)

    @strawberry.field(metadata=reads("status"))
    @staticmethod
    def status(root: Parent[models.Feedback]) -> FeedbackStatus:
        return FeedbackStatus(root.status)

    @strawberry.field(metadata=to_one("grid_id"))
    @staticmethod
    async def grid(root: Parent[models.Feedback], info: Info) -> GridType | None:
        if root.grid_id is None:
            return None
        return await info.context.loaders.grid.load(root.grid_id)  # type: ignore[return-value]

    @strawberry.field(metadata=to_one("responder_department_id"))
    @staticmethod
    async def responder(root: Parent[models.Feedback], info: Info) -> DepartmentType | None:
        if root.responder_department_id is None:
            return None
        return await info.context.loaders.department.load(root.responder_department_id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Feedback)
