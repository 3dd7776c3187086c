"""The event outbox: every change of an event, written in the transaction that made it.

`record_change` appends one `EventChangeRecord` beside the change itself, so the outbox holds a
change exactly when the change committed. Webhook delivery (hub.connectors.webhooks) reads it in
`seq` order later, whatever happened to the process in between.

The snapshot is what receivers outside GridHub may get, before each subscriber's policy narrows
it further: no reporter, no description (residents type personal data into it), no location.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.departments.models import Department
from hub.events.models import Event, EventChangeRecord
from hub.grids.models import Grid

# The snapshot's keys, in one place: hub.connectors.webhooks maps each to a policy field.
SNAPSHOT_KEYS = (
    "code",
    "category",
    "title",
    "status",
    "severity",
    "grid_id",
    "grid_code",
    "department_id",
    "department_code",
    "deadline",
    "reported_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
    "updated_at",
    "version",
    "action",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def snapshot_of(session: AsyncSession, *, event: Event, action: str) -> dict[str, Any]:
    """The event as it is now, JSON-able and without personal data."""
    # Both lookups hit the session's identity map on the usual paths (report resolved the grid,
    # dispatch the department), so they rarely cost a statement.
    grid = await session.get(Grid, event.grid_id)
    department = (
        None if event.department_id is None else await session.get(Department, event.department_id)
    )
    return {
        "code": event.code,
        "category": event.category,
        "title": event.title,
        "status": event.status,
        "severity": event.severity,
        "grid_id": event.grid_id,
        "grid_code": None if grid is None else grid.code,
        "department_id": event.department_id,
        "department_code": None if department is None else department.code,
        "deadline": _iso(event.deadline),
        "reported_at": _iso(event.reported_at),
        "accepted_at": _iso(event.accepted_at),
        "resolved_at": _iso(event.resolved_at),
        "closed_at": _iso(event.closed_at),
        "updated_at": _iso(event.updated_at),
        "version": event.version,
        "action": action,
    }


async def record_change(
    session: AsyncSession,
    *,
    event: Event,
    action: str,
    previous_department_id: int | None = None,
) -> None:
    """Append the change `action` just made to `event` (flushed, never committed: it commits or
    rolls back with the change). Call it after the event's own flush, so that `version` is the
    version the change left and, for two changes of one event, `seq` follows commit order: the
    second one's event UPDATE waits for the first to commit (optimistic lock), and its outbox row
    is inserted after that."""
    session.add(
        EventChangeRecord(
            event_id=event.id,
            version=event.version,
            action=action,
            previous_department_id=previous_department_id,
            snapshot=await snapshot_of(session, event=event, action=action),
        )
    )
    await session.flush()
