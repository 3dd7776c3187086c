"""Live event changes over graphql-transport-ws. Every delivered event is re-read through the
viewer's scope, so a subscription never shows more than a query would."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from sqlalchemy import select

from hub import models
from hub.api.context import Info
from hub.api.types.events import EventType
from hub.departments import service as departments
from hub.grids import service as grids


@strawberry.type
class EventChangeType:
    action: str = strawberry.field(description="report, accept, dispatch, start, resolve, ...")
    event: EventType


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Changes to events, optionally only in a grid subtree or for a department."
    )
    async def event_changed(
        self, info: Info, in_grid: str | None = None, department_code: str | None = None
    ) -> AsyncGenerator[EventChangeType, None]:
        context = info.context
        grid_ids: set[int] | None = None
        department_id: int | None = None
        async with context.db.reader() as session:
            if in_grid is not None:
                subtree = await grids.subtree_ids(session, code=in_grid)
                grid_ids = set((await session.scalars(subtree)).all())
            if department_code is not None:
                department_id = (await departments.resolve_code(session, code=department_code)).id
        async with context.broker.subscribe() as changes:
            async for change in changes:
                if grid_ids is not None and change.grid_id not in grid_ids:
                    continue
                if department_id is not None and change.department_id != department_id:
                    continue
                statement = context.access.rows(
                    select(models.Event).where(models.Event.id == change.event_id), models.Event
                )
                async with context.db.reader() as session:
                    event = await session.scalar(statement)
                if event is not None:
                    yield EventChangeType(action=change.action, event=event)  # type: ignore[arg-type]
