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
from hub.api.context import Info
from hub.api.ids import pk_of
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


async def _page(
    info: Info,
    statement: Select[Any],
    model: type[Any],
    key: SortKey,
    *,
    first: int | None,
    after: str | None,
    direction: SortDirection,
) -> Connection[Any]:
    # The services order their statements for the CLI; the page orders by its key itself.
    scoped = info.context.access.rows(statement.order_by(None), model)
    listed = Listing(model, scoped, key, direction)
    return await paginate(info, listed, first=first, after=after, last=None, before=None)


@strawberry.type
class SyncQuery:
    @strawberry.field(
        description="Connector runs, newest first. Start one with `gridhub sync run NAME`."
    )
    async def sync_runs(
        self,
        info: Info,
        connector: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncRunType]:
        return await _page(
            info,
            sync.runs_statement(connector=connector),
            models.SyncRun,
            RUN_KEY,
            first=first,
            after=after,
            direction=SortDirection.DESC,
        )

    @strawberry.field(
        description="Quarantined records, oldest first; `status: null` for all of them. "
        "Replay the open ones with "
        "`gridhub sync replay NAME`; discard one with `discardQuarantined`."
    )
    async def sync_quarantine(
        self,
        info: Info,
        connector: str | None = None,
        status: QuarantineStatus | None = QuarantineStatus.OPEN,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncQuarantineItemType]:
        return await _page(
            info,
            sync.quarantine_statement(
                connector=connector, status=status.value if status is not None else None
            ),
            models.SyncQuarantine,
            QUARANTINE_KEY,
            first=first,
            after=after,
            direction=SortDirection.ASC,
        )

    @strawberry.field(description="Conflicts the connectors decided, newest first.")
    async def sync_conflicts(
        self,
        info: Info,
        connector: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[SyncConflictType]:
        return await _page(
            info,
            sync.conflicts_statement(connector=connector),
            models.SyncConflict,
            CONFLICT_KEY,
            first=first,
            after=after,
            direction=SortDirection.DESC,
        )

    @strawberry.field(
        description="Webhook deliveries, newest first; `status` is pending, delivered or dead."
    )
    async def webhook_deliveries(
        self,
        info: Info,
        subscription: str | None = None,
        status: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Connection[WebhookDeliveryType]:
        return await _page(
            info,
            deliveries_statement(subscription=subscription, status=status),
            models.WebhookDelivery,
            DELIVERY_KEY,
            first=first,
            after=after,
            direction=SortDirection.DESC,
        )


@strawberry.type
class SyncMutation:
    @strawberry.mutation(
        description="Mark an open quarantined record as dealt with: it leaves the open list "
        'and `reason` keeps "discarded: <your reason>". To take it in again instead, fix the '
        "source or the mapping and run `gridhub sync replay NAME`."
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
