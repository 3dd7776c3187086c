"""What the connectors did, for operators: runs, quarantined records, conflicts and webhook
deliveries, and one write, discarding a quarantined record someone has dealt with.

Running a connector and replaying its quarantine are `gridhub sync run NAME` and
`gridhub sync replay NAME`: they take the connector's lock and hold a long unit of work, which
has no place in a request. Who sees which of these is the policy's business
(policies/policy.csv); every statement passes through `access.rows`.
"""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import Select, select

from hub import models
from hub.api.compiled.shapes import listing
from hub.api.context import Context, Info
from hub.api.ids import pk_of
from hub.api.scope import writes
from hub.api.types.common import Connection, Listing, SortDirection, paginate
from hub.api.types.sync import (
    QuarantineStatus,
    SyncConflictType,
    SyncQuarantineItemType,
    SyncRunType,
    WebhookDeliveryType,
)
from hub.db import utcnow
from hub.errors import BadUserInput, InvalidTransition, NotFound
from hub.pagination import SortKey
from hub.sync import service as sync

# Every list pages by id: an id orders runs, items and deliveries as they were written, and
# each table's (connector|subscription, ..., id) index serves the filtered lists.
RUN_KEY = SortKey("ID", models.SyncRun.id)
QUARANTINE_KEY = SortKey("ID", models.SyncQuarantine.id)
CONFLICT_KEY = SortKey("ID", models.SyncConflict.id)
DELIVERY_KEY = SortKey("ID", models.WebhookDelivery.id)
DEFAULT_PAGE = 20
MAX_DISCARD_REASON = 500


def deliveries_statement(
    *, subscription: str | None = None, status: str | None = None
) -> Select[Any]:
    statement = select(models.WebhookDelivery)
    if subscription is not None:
        statement = statement.where(models.WebhookDelivery.subscription == subscription)
    if status is not None:
        statement = statement.where(models.WebhookDelivery.status == status)
    return statement


def _listing(context: Context, statement: Select[Any], model: type[Any], key: SortKey) -> Listing:
    # The services order their statements for the CLI; the page orders by its key itself.
    scoped = context.access.rows(statement.order_by(None), model)
    direction = SortDirection.ASC if model is models.SyncQuarantine else SortDirection.DESC
    return Listing(model, scoped, key, direction)


# The lists, as Listing builders (hub.api.queries): newest first, the quarantine oldest first.


async def list_sync_runs(context: Context, connector: str | None = None) -> Listing:
    statement = sync.runs_statement(connector=connector)
    return _listing(context, statement, models.SyncRun, RUN_KEY)


async def list_sync_quarantine(
    context: Context,
    connector: str | None = None,
    status: QuarantineStatus | None = QuarantineStatus.OPEN,
) -> Listing:
    statement = sync.quarantine_statement(
        connector=connector, status=status.value if status is not None else None
    )
    return _listing(context, statement, models.SyncQuarantine, QUARANTINE_KEY)


async def list_sync_conflicts(context: Context, connector: str | None = None) -> Listing:
    statement = sync.conflicts_statement(connector=connector)
    return _listing(context, statement, models.SyncConflict, CONFLICT_KEY)


async def list_webhook_deliveries(
    context: Context, subscription: str | None = None, status: str | None = None
) -> Listing:
    statement = deliveries_statement(subscription=subscription, status=status)
    return _listing(context, statement, models.WebhookDelivery, DELIVERY_KEY)


@strawberry.type
class SyncQuery:
    @strawberry.field(
        description="Connector runs, newest first. Start one with `gridhub sync run NAME`.",
        metadata=listing(list_sync_runs),
    )
    async def sync_runs(
        self,
        info: Info,
        connector: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncRunType]:
        listed = await list_sync_runs(info.context, connector)
        return await paginate(info, listed, first=first, after=after, last=None, before=None)

    @strawberry.field(
        description="Quarantined records, oldest first; `status: null` for all of them. "
        "Replay the open ones with "
        "`gridhub sync replay NAME`; discard one with `discardQuarantined`.",
        metadata=listing(list_sync_quarantine),
    )
    async def sync_quarantine(
        self,
        info: Info,
        connector: str | None = None,
        status: QuarantineStatus | None = QuarantineStatus.OPEN,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncQuarantineItemType]:
        listed = await list_sync_quarantine(info.context, connector, status)
        return await paginate(info, listed, first=first, after=after, last=None, before=None)

    @strawberry.field(
        description="Conflicts the connectors decided, newest first.",
        metadata=listing(list_sync_conflicts),
    )
    async def sync_conflicts(
        self,
        info: Info,
        connector: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncConflictType]:
        listed = await list_sync_conflicts(info.context, connector)
        return await paginate(info, listed, first=first, after=after, last=None, before=None)

    @strawberry.field(
        description="Webhook deliveries, newest first; `status` is pending, delivered or dead.",
        metadata=listing(list_webhook_deliveries),
    )
    async def webhook_deliveries(
        self,
        info: Info,
        subscription: str | None = None,
        status: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[WebhookDeliveryType]:
        listed = await list_webhook_deliveries(info.context, subscription, status)
        return await paginate(info, listed, first=first, after=after, last=None, before=None)


@strawberry.type
class SyncMutation:
    @strawberry.mutation(
        description="Mark an open quarantined record as dealt with: it leaves the open list "
        'and `reason` keeps "discarded: <your reason>". To take it in again instead, fix the '
        "source or the mapping and run `gridhub sync replay NAME`.",
        metadata=writes("SyncQuarantineItem"),
    )
    async def discard_quarantined(
        self, info: Info, id: strawberry.ID, reason: str
    ) -> SyncQuarantineItemType:
        pk = pk_of(id, "SyncQuarantineItem")
        why = reason.strip()
        if not why:
            raise BadUserInput("say why the record is discarded", field="reason")
        if len(why) > MAX_DISCARD_REASON:
            raise BadUserInput(
                f"reason takes at most {MAX_DISCARD_REASON} characters", field="reason"
            )
        context = info.context
        model = models.SyncQuarantine
        # FOR UPDATE: of two operators discarding the same item at once, the second waits and
        # then sees it discarded (PostgreSQL; SQLite serialises writers anyway).
        statement = context.access.rows(select(model).where(model.id == pk), model)
        async with context.db.transaction() as session:
            item = await session.scalar(statement.with_for_update())
            if item is None:
                raise NotFound("quarantined record not found")
            if item.status != "open":
                raise InvalidTransition(
                    f"the quarantined record is already {item.status}", status=item.status
                )
            item.status = "discarded"
            item.resolved_at = utcnow()
            item.reason = f"{item.reason}\ndiscarded: {why}"
            await session.flush()
        return item  # type: ignore[return-value]
