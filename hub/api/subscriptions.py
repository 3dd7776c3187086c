"""Live event changes over graphql-transport-ws. Every delivered event is re-read through the
viewer's scope, so a subscription never shows more than a query would.

Delivery follows hub.events.changes: changes committed after the subscription started, each once,
from whichever worker or host made them; not durable. Arguments are checked before the stream
starts, so a bad `inGrid` or `departmentCode` fails the operation with a protocol "error" message
(extensions.code BAD_USER_INPUT) rather than a `next` carrying errors.

A `departmentCode` feed gets the changes of events dispatched to that department, and also the
re-dispatch that hands one of them to another department (its last change for that feed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import strawberry
from graphql import GraphQLError
from sqlalchemy import select

from hub import models
from hub.api.audit import flush_reads
from hub.api.context import Context, Info
from hub.api.loaders import Loaders
from hub.api.types.events import EventStatus, EventType
from hub.authz import sessions
from hub.db import utcnow
from hub.departments import service as departments
from hub.events import states
from hub.events.changes import EventChange
from hub.grids import service as grids


@strawberry.type(name="EventChange", description="One committed change to an event.")
class EventChangeType:
    action: str = strawberry.field(description="report, accept, dispatch, start, resolve, ...")
    version: int = strawberry.field(
        description="The event's version after this change: orders the changes of one event."
    )
    status: EventStatus = strawberry.field(  # type: ignore[valid-type]
        description="The status this change moved the event to."
    )
    at: datetime = strawberry.field(description="When the change was made.")
    event: EventType = strawberry.field(
        description="The event as it is now (a later change may already have moved it on)."
    )


log = logging.getLogger(__name__)


@dataclass(slots=True)
class ChangeFilter:
    """Which changes a subscription wants: a department's, and/or a grid subtree's."""

    department_id: int | None = None
    subtree: grids.Subtree | None = None

    @classmethod
    async def build(
        cls, context: Context, in_grid: str | None, department_code: str | None
    ) -> ChangeFilter:
        selection = cls()
        async with context.db.reader() as session:
            if in_grid is not None:
                selection.subtree = await grids.Subtree.load(session, code=in_grid)
            if department_code is not None:
                department = await departments.resolve_code(session, code=department_code)
                selection.department_id = department.id
        return selection

    async def matches(self, context: Context, change: EventChange) -> bool:
        # A department's feed also gets the re-dispatch that hands its event to another
        # department: the last it hears of the event, and the reason it stops hearing.
        if self.department_id is not None and self.department_id not in (
            change.department_id,
            change.previous_department_id,
        ):
            return False
        if self.subtree is None:
            return True
        inside = self.subtree.known(change.grid_id)
        if inside is None:
            async with context.db.reader() as session:
                inside = await self.subtree.classify(session, change.grid_id)
        return inside


def token_expired() -> GraphQLError:
    return GraphQLError(
        "the token expired: reconnect with a fresh one", extensions={"code": "UNAUTHENTICATED"}
    )


def still_allowed(context: Context) -> None:
    """End the stream once its credential expires, the policy changes or the viewer's emergency
    grants do: its schema and scope were compiled for what was true when it subscribed."""
    viewer = context.access.viewer
    if viewer.expires_at is not None and viewer.expires_at <= utcnow():
        raise token_expired()
    registry = context.registry
    if registry is not None and (
        registry.version != context.access.profile.version
        or registry.grant_paths(viewer) != context.access.emergency_paths
    ):
        raise GraphQLError(
            "your access changed (the policy, or an emergency grant opened, closed or expired): "
            "subscribe again",
            extensions={"code": "POLICY_CHANGED"},
        )


async def credential_not_withdrawn(context: Context) -> None:
    """End the stream once its browser session is signed out or its API key revoked. Only
    such viewers pay the read; a token's expiry is checked by still_allowed."""
    viewer = context.access.viewer
    if viewer.session_nonce is None and viewer.via != "api_key":
        return
    async with context.db.reader() as session:
        reason = await sessions.withdrawn(session, viewer)
    if reason is not None:
        raise GraphQLError(f"{reason}: sign in again", extensions={"code": "UNAUTHENTICATED"})


async def next_change(changes: AsyncIterator[EventChange], context: Context) -> EventChange:
    """The next change (StopAsyncIteration when the broker stops), or UNAUTHENTICATED at the
    viewer's token expiry: a quiet feed must end then, not at whatever change comes next. The
    wait cancelled at the expiry ends `changes` too, and nothing reads them after it."""
    expires_at = context.access.viewer.expires_at
    if expires_at is None:
        return await anext(changes)
    try:
        return await asyncio.wait_for(anext(changes), _seconds_until(expires_at))
    except TimeoutError:
        # wait_for keeps the loop's clock, tokens the wall's: not a moment before the expiry.
        await asyncio.sleep(_seconds_until(expires_at))
        raise token_expired() from None


def _seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - utcnow()).total_seconds())


async def _stream(
    context: Context, selection: ChangeFilter
) -> AsyncGenerator[EventChangeType, None]:
    # The broker subscription lives exactly as long as this generator: when the client completes
    # the operation or disconnects, strawberry cancels and closes it and the queue goes away.
    try:
        async with context.broker.subscribe() as changes:
            while True:
                try:
                    change = await next_change(changes, context)
                except StopAsyncIteration:
                    break
                # What the previous delivery read of sensitive fields goes on the record first.
                await flush_reads(context, "eventChanged")
                still_allowed(context)
                await credential_not_withdrawn(context)
                if not await selection.matches(context, change):
                    continue
                statement = context.access.rows(
                    select(models.Event).where(models.Event.id == change.event_id), models.Event
                )
                async with context.db.reader() as session:
                    event = await session.scalar(statement)
                if event is None:
                    continue
                # The context lives as long as the WebSocket; fresh loaders per change keep nested
                # fields (timeline, department) current and their caches from growing for hours.
                context.loaders = Loaders(context.db, context.access)
                yield EventChangeType(
                    action=change.action,
                    version=change.version,
                    status=states.Status(change.status),
                    at=change.at,
                    event=event,  # type: ignore[arg-type]
                )
    finally:
        # The last delivery's reads, when the client completes or disconnects.
        await asyncio.shield(_flush_quietly(context))


async def _flush_quietly(context: Context) -> None:
    try:
        await flush_reads(context, "eventChanged")
    except Exception:  # a closing stream has nobody to report to; the log has it
        log.exception("could not record a subscription's last reads")


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Changes to events, optionally only in a grid subtree or for a department. "
        "A live feed: changes committed while subscribed, each once, from any worker or host."
    )
    async def event_changed(
        self, info: Info, in_grid: str | None = None, department_code: str | None = None
    ) -> AsyncGenerator[EventChangeType, None]:
        # Not a generator itself: argument errors raise here, before the stream exists, which
        # strawberry reports as the operation's "error" message.
        selection = await ChangeFilter.build(info.context, in_grid, department_code)
        return _stream(info.context, selection)
