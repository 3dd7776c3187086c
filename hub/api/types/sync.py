"""What the connectors did, for operators: runs, quarantined records, conflicts the engine
decided, and webhook deliveries (hub.sync.models). Read-only but for discarding a quarantined
record; running and replaying connectors is the `gridhub sync` command's job."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import cast

import orjson
import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

from hub import models
from hub.api.compiled.shapes import global_id, reads
from hub.api.ids import to_global_id


@strawberry.enum(description="Where a quarantined record stands.")
class QuarantineStatus(Enum):
    OPEN = "open"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


# Resolvers, so that each type lists its fields in the order a reader expects (id first).


def _run_id(root: Parent[models.SyncRun]) -> strawberry.ID:
    return to_global_id("SyncRun", root.id)


def _faults(root: Parent[models.SyncRun]) -> JSON:
    return cast(JSON, root.faults or {})


def _item_id(root: Parent[models.SyncQuarantine]) -> strawberry.ID:
    return to_global_id("SyncQuarantineItem", root.id)


def _item_run_id(root: Parent[models.SyncQuarantine]) -> strawberry.ID:
    return to_global_id("SyncRun", root.run_id)


def _item_status(root: Parent[models.SyncQuarantine]) -> QuarantineStatus:
    return QuarantineStatus(root.status)


def _payload(root: Parent[models.SyncQuarantine]) -> str:
    # Keys sorted, so that a record reads the same from both databases' JSON columns.
    return orjson.dumps(root.payload, option=orjson.OPT_SORT_KEYS).decode()


def _conflict_id(root: Parent[models.SyncConflict]) -> strawberry.ID:
    return to_global_id("SyncConflict", root.id)


def _conflict_run_id(root: Parent[models.SyncConflict]) -> strawberry.ID:
    return to_global_id("SyncRun", root.run_id)


def _record_id(root: Parent[models.SyncConflict]) -> strawberry.ID | None:
    # The engine's entities ("resident", "event") are the GraphQL types in lower case.
    if root.record_id is None:
        return None
    return to_global_id(root.entity.capitalize(), root.record_id)


def _detail(root: Parent[models.SyncConflict]) -> JSON:
    return cast(JSON, root.detail or {})


def _event_id(root: Parent[models.WebhookDelivery]) -> strawberry.ID:
    return to_global_id("Event", root.event_id)


@strawberry.type(name="SyncRun", description="One run of one connector, and what it did.")
class SyncRunType:
    id: strawberry.ID = strawberry.field(resolver=_run_id, metadata=global_id())
    connector: str
    trigger: str = strawberry.field(description="cli, schedule or replay (`gridhub sync`).")
    status: str = strawberry.field(
        description="running, ok, partial (some records quarantined), failed, refused "
        "(circuit breaker open) or interrupted."
    )
    dry_run: bool
    full: bool = strawberry.field(description="Read the source from its beginning.")
    policy_version: int | None
    started_at: datetime
    finished_at: datetime | None
    fetched: int
    created: int
    updated: int
    unchanged: int
    quarantined: int
    conflicts: int
    faults: JSON = strawberry.field(
        resolver=_faults,
        description='What the source did wrong, by kind: {"http_429": 2}.',
        metadata=reads("faults"),
    )
    error: str | None


@strawberry.type(
    name="SyncQuarantineItem",
    description="A record a run could not take, kept with its raw payload and why. Replay "
    "open items with `gridhub sync replay NAME`; discard one with `discardQuarantined`.",
)
class SyncQuarantineItemType:
    id: strawberry.ID = strawberry.field(resolver=_item_id, metadata=global_id())
    connector: str
    run_id: strawberry.ID = strawberry.field(
        resolver=_item_run_id, description="The run that quarantined it.", metadata=reads("run_id")
    )
    external_id: str | None
    position: str = strawberry.field(description='Where in the source: "line 42".')
    code: str = strawberry.field(description="MAPPING, INVALID, FORBIDDEN_FIELD, MALFORMED...")
    reason: str = strawberry.field(description='Why; once discarded, also "discarded: ...".')
    payload: str = strawberry.field(
        resolver=_payload,
        description="The source's own record as JSON text: personal data.",
        metadata=reads("payload"),
    )
    status: QuarantineStatus = strawberry.field(resolver=_item_status, metadata=reads("status"))
    attempts: int
    received_at: datetime
    resolved_at: datetime | None


@strawberry.type(
    name="SyncConflict",
    description="A disagreement the engine decided: a stale update, or two systems writing one "
    "field. Values are not kept, only the decision.",
)
class SyncConflictType:
    id: strawberry.ID = strawberry.field(resolver=_conflict_id, metadata=global_id())
    connector: str
    run_id: strawberry.ID = strawberry.field(resolver=_conflict_run_id, metadata=reads("run_id"))
    entity: str
    record_id: strawberry.ID | None = strawberry.field(
        resolver=_record_id,
        description="The GridHub record's global id.",
        metadata=reads("record_id", "entity"),
    )
    external_id: str | None
    field: str | None
    kind: str = strawberry.field(description="stale or other_source.")
    kept: str = strawberry.field(description="ours (GridHub's value stayed) or theirs.")
    at: datetime
    detail: JSON = strawberry.field(
        resolver=_detail, description="The two source times.", metadata=reads("detail")
    )


@strawberry.type(
    name="WebhookDelivery",
    description="One delivery of one event change to one webhook subscriber.",
)
class WebhookDeliveryType:
    delivery_id: str = strawberry.field(description="What the receiver deduplicates by.")
    subscription: str
    change_seq: int
    event_id: strawberry.ID = strawberry.field(
        resolver=_event_id, description="The event's id.", metadata=reads("event_id")
    )
    status: str = strawberry.field(
        description="pending, delivered or dead (gave up after its retries; replayable)."
    )
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
