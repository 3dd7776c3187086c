"""Event changes broadcast to subscribers, whichever worker or host made them.

A broker fans each change out to every subscriber in every process: `MemoryBroker` inside one
process (the embedded default); PostgreSQL LISTEN/NOTIFY and Redis pub/sub when several workers
share a database (hub.events.brokers).

Delivery semantics, which every broker keeps:

- Published after commit: a mutation publishes once its transaction has committed, so subscribers
  never see a change that was rolled back. Publishing never fails a committed mutation: a change
  the broker cannot send is logged (ids only) and dropped.
- A live feed, not a durable queue: a subscriber sees the changes published while it is
  subscribed. One that is not connected, or whose process has lost its broker connection, misses
  what happens meanwhile and catches up with a query (webhooks get an outbox later).
- Exactly once per subscriber while connected: a process delivers a change to each of its local
  subscribers once, whether the change was made in this process or another. The shared brokers
  deliver only what comes back from PostgreSQL or Redis (a process receives its own
  publications too), never a local shortcut as well.
- Order: the changes of one publisher arrive in the order it published them. Changes made
  concurrently in different requests may interleave; `version` orders the changes of one event.
- Bounded: each subscriber has a queue of `MemoryBroker.queue_size` changes; a subscriber that
  falls that far behind loses its oldest changes rather than stall everyone else.
- When a broker stops (server shutdown) every subscription's stream ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from hub.events.models import Event


@dataclass(frozen=True, slots=True)
class EventChange:
    """What a subscriber needs to filter a change and order it; never personal data, because it
    travels through PostgreSQL or Redis. Subscribers re-read the event itself through their
    access scope."""

    event_id: int
    action: str
    status: str
    version: int
    grid_id: int
    department_id: int | None
    at: datetime
    # The department the event had before this change, when the change moved it elsewhere (a
    # re-dispatch): that department's subscribers see the event leave. Defaulted, so a change
    # published by an older process still parses.
    previous_department_id: int | None = None

    @classmethod
    def of(
        cls, event: Event, action: str, *, previous_department_id: int | None = None
    ) -> EventChange:
        return cls(
            event_id=event.id,
            action=action,
            status=event.status,
            version=event.version,
            grid_id=event.grid_id,
            department_id=event.department_id,
            at=event.updated_at,
            previous_department_id=(
                previous_department_id if previous_department_id != event.department_id else None
            ),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> EventChange:
        data: dict[str, Any] = orjson.loads(raw)
        data["at"] = datetime.fromisoformat(data["at"])
        return cls(**data)


class Broker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, change: EventChange) -> None: ...
    def subscribe(self) -> Any:
        """An async context manager yielding an async iterator of changes."""
        ...


class MemoryBroker:
    """Fan-out to the subscribers of this process. Slow subscribers lose the oldest changes
    rather than stall publishers (bounded queues). The shared brokers use it for their local
    fan-out."""

    queue_size = 1000

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[EventChange | None]] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._queues)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for queue in list(self._queues):
            # None ends the subscriber's stream.
            _put_dropping_oldest(queue, None)
        self._queues.clear()

    async def publish(self, change: EventChange) -> None:
        self.deliver(change)

    def deliver(self, change: EventChange) -> None:
        for queue in list(self._queues):
            _put_dropping_oldest(queue, change)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[EventChange]]:
        queue: asyncio.Queue[EventChange | None] = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        try:
            yield _drain(queue)
        finally:
            # Runs when the subscription ends for any reason (client gone, task cancelled), so a
            # disconnected client leaves no queue behind.
            self._queues.discard(queue)


def _put_dropping_oldest(
    queue: asyncio.Queue[EventChange | None], item: EventChange | None
) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


async def _drain(queue: asyncio.Queue[EventChange | None]) -> AsyncIterator[EventChange]:
    while (change := await queue.get()) is not None:
        yield change
