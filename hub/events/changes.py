"""Event changes broadcast to subscribers, whichever worker or host made them.

A broker fans each change out to every subscriber in every process: `MemoryBroker` inside one
process (the embedded default); PostgreSQL LISTEN/NOTIFY and Redis pub/sub when several workers
share a database (hub.events.brokers). Changes are published after the transaction commits, so
subscribers never see a change that was rolled back. This is a live feed, not a durable queue:
a subscriber that is not connected misses what happens meanwhile (webhooks get an outbox).
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
    event_id: int
    action: str
    status: str
    version: int
    grid_id: int
    department_id: int | None
    at: datetime

    @classmethod
    def of(cls, event: Event, action: str) -> EventChange:
        return cls(
            event_id=event.id,
            action=action,
            status=event.status,
            version=event.version,
            grid_id=event.grid_id,
            department_id=event.department_id,
            at=event.updated_at,
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
    rather than stall publishers (bounded queues)."""

    queue_size = 1000

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[EventChange]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._queues.clear()

    async def publish(self, change: EventChange) -> None:
        self.deliver(change)

    def deliver(self, change: EventChange) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(change)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[EventChange]]:
        queue: asyncio.Queue[EventChange] = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        try:
            yield _drain(queue)
        finally:
            self._queues.discard(queue)


async def _drain(queue: asyncio.Queue[EventChange]) -> AsyncIterator[EventChange]:
    while True:
        yield await queue.get()
