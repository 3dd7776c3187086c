from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry import Parent

from hub import models
from hub.api.compiled.shapes import first_of, option, reads, to_many, to_one, wraps
from hub.api.context import Info
from hub.api.loaders import TIMELINE_LINES
from hub.api.types.common import Coordinates, CoordinateSystem, Node, coordinates
from hub.api.types.org import DepartmentType, GridType, MemberType
from hub.api.types.residents import ResidentType
from hub.db import utcnow
from hub.events import service as events
from hub.events import states

EventStatus = strawberry.enum(states.Status, name="EventStatus")


@strawberry.enum
class EventCategory(Enum):
    PUBLIC_SAFETY = "public_safety"
    FIRE_HAZARD = "fire_hazard"
    SANITATION = "sanitation"
    INFRASTRUCTURE = "infrastructure"
    ENVIRONMENT = "environment"
    HEALTH = "health"
    ELDERLY_CARE = "elderly_care"
    DISPUTE = "dispute"
    HOUSING = "housing"
    OTHER = "other"


@strawberry.enum
class Severity(Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@strawberry.type(description="An external system that reported an event (e.g. the 12345 hotline).")
class ExternalSystem:
    name: str


Reporter = Annotated[
    MemberType | ResidentType | ExternalSystem,
    strawberry.union("Reporter", description="Who reported an event."),
]


@strawberry.type(name="EventTransition", description="One line of an event's timeline.")
class EventTransitionType:
    action: str
    from_status: EventStatus | None  # type: ignore[valid-type]
    to_status: EventStatus  # type: ignore[valid-type]
    actor: str
    note: str
    at: datetime

    @strawberry.field(
        description="The department an event was dispatched to, on dispatch lines.",
        metadata=to_one("department_id"),
    )
    @staticmethod
    async def department(root: Parent[models.EventTransition], info: Info) -> DepartmentType | None:
        if root.department_id is None:
            return None
        return await info.context.loaders.department.load(root.department_id)  # type: ignore[return-value]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


@strawberry.type(name="Event", description="An incident, need or complaint in a grid.")
class EventType(Node):
    code: str
    title: str
    description: str
    status: EventStatus  # type: ignore[valid-type]
    deadline: datetime | None
    reported_at: datetime
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    version: int

    @strawberry.field(metadata=reads("category"))
    @staticmethod
    def category(root: Parent[models.Event]) -> EventCategory:
        return EventCategory(root.category)

    @strawberry.field(metadata=reads("severity"))
    @staticmethod
    def severity(root: Parent[models.Event]) -> Severity:
        return Severity(root.severity)

    @strawberry.field(
        description="Where it happened, in the datum asked for (stored as WGS84).",
        metadata=reads("lng", "lat"),
    )
    @staticmethod
    def location(
        root: Parent[models.Event], system: CoordinateSystem = CoordinateSystem.WGS84
    ) -> Coordinates | None:
        return coordinates(root.lng, root.lat, system)

    @strawberry.field(metadata=to_one("grid_id"))
    @staticmethod
    async def grid(root: Parent[models.Event], info: Info) -> GridType | None:
        return await info.context.loaders.grid.load(root.grid_id)  # type: ignore[return-value]

    @strawberry.field(
        description="The department the event is dispatched to, if any.",
        metadata=to_one("department_id"),
    )
    @staticmethod
    async def department(root: Parent[models.Event], info: Info) -> DepartmentType | None:
        if root.department_id is None:
            return None
        return await info.context.loaders.department.load(root.department_id)  # type: ignore[return-value]

    @strawberry.field(
        metadata=first_of(
            option("reporter_member_id", "Member"),
            option("reporter_resident_id", "Resident"),
            wraps("reporter_system", ExternalSystem, "name"),
        )
    )
    @staticmethod
    async def reporter(root: Parent[models.Event], info: Info) -> Reporter | None:
        if root.reporter_member_id is not None:
            return await info.context.loaders.member.load(root.reporter_member_id)  # type: ignore[return-value]
        if root.reporter_resident_id is not None:
            return await info.context.loaders.resident.load(root.reporter_resident_id)  # type: ignore[return-value]
        if root.reporter_system is not None:
            return ExternalSystem(name=root.reporter_system)
        return None

    @strawberry.field(
        description="Seconds from report to acceptance; null until accepted.",
        metadata=reads("reported_at", "accepted_at"),
    )
    @staticmethod
    def response_seconds(root: Parent[models.Event]) -> float | None:
        return _seconds(root.reported_at, root.accepted_at)

    @strawberry.field(
        description="Seconds from report to resolution; null until resolved.",
        metadata=reads("reported_at", "resolved_at"),
    )
    @staticmethod
    def resolution_seconds(root: Parent[models.Event]) -> float | None:
        return _seconds(root.reported_at, root.resolved_at)

    @strawberry.field(
        description="Open and past its deadline.", metadata=reads("status", "deadline")
    )
    @staticmethod
    def overdue(root: Parent[models.Event]) -> bool:
        return events.is_overdue(root, now=utcnow())

    @strawberry.field(
        description=f"Transitions and notes: the latest {TIMELINE_LINES}, oldest first.",
        metadata=to_many("event_timeline"),
    )
    @staticmethod
    async def timeline(root: Parent[models.Event], info: Info) -> list[EventTransitionType]:
        return await info.context.loaders.event_timeline.load(root.id)  # type: ignore[return-value]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.Event)
