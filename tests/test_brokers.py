"""The brokers in-process: publish, subscribe, stop and reconnect, on real PostgreSQL and Redis.

Two broker instances on one database stand for two processes: a change published on either
reaches the subscribers of both, each exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from hub.config import Settings
from hub.db import Database
from hub.events.brokers import (
    LISTENER_NAME,
    PostgresBroker,
    RedisBroker,
    create_broker,
    redis_channel_for,
)
from hub.events.changes import EventChange, MemoryBroker
from tests.live import free_port
from tests.services import REDIS_URL, need_postgres, need_redis

GRACE_SECONDS = 0.3
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
_ids = itertools.count(1)


def a_change(**fields: Any) -> EventChange:
    values: dict[str, Any] = {
        "event_id": next(_ids),
        "action": "report",
        "status": "reported",
        "version": 1,
        "grid_id": 7,
        "department_id": None,
        "at": datetime.now(UTC),
    }
    return EventChange(**{**values, **fields})


class Feed:
    """A subscriber that collects its changes in the background."""

    def __init__(self, changes: AsyncIterator[EventChange]) -> None:
        self.received: list[EventChange] = []
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._collect(changes))

    async def _collect(self, changes: AsyncIterator[EventChange]) -> None:
        async for change in changes:
            self.received.append(change)
        self.ended.set()

    async def wait_for(self, count: int) -> list[EventChange]:
        """Exactly `count` changes, with nothing more within the grace period."""
        await eventually(lambda: len(self.received) >= count)
        await asyncio.sleep(GRACE_SECONDS)
        assert len(self.received) == count, self.received
        return self.received

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def feed(broker: Any) -> AsyncIterator[Feed]:
    async with broker.subscribe() as changes:
        subscriber = Feed(changes)
        try:
            yield subscriber
        finally:
            await subscriber.close()


async def check_exactly_once_across(first: Any, second: Any) -> None:
    async with AsyncExitStack() as stack:
        feeds = [
            await stack.enter_async_context(feed(broker))
            for broker in (first, first, second, second)
        ]
        changes = [a_change(), a_change(department_id=3, action="dispatch", version=3)]
        await first.publish(changes[0])
        await second.publish(changes[1])
        for subscriber in feeds:
            received = await subscriber.wait_for(2)
            # One publisher's changes keep their order; two publishers may interleave.
            assert sorted(received, key=lambda c: c.event_id) == changes


async def check_stop_ends_streams(broker: Any) -> None:
    async with broker.subscribe() as changes:
        subscriber = Feed(changes)
        await broker.stop()
        await asyncio.wait_for(subscriber.ended.wait(), 5)
    assert broker.local.subscriber_count == 0


# --- memory -----------------------------------------------------------------------------------


async def test_memory_broker_fans_out_once_and_stops() -> None:
    broker = MemoryBroker()
    await broker.start()
    async with feed(broker) as one, feed(broker) as two:
        change = a_change()
        await broker.publish(change)
        assert await one.wait_for(1) == [change]
        assert await two.wait_for(1) == [change]
        assert broker.subscriber_count == 2
    assert broker.subscriber_count == 0
    async with broker.subscribe() as changes:
        subscriber = Feed(changes)
        await broker.stop()
        await asyncio.wait_for(subscriber.ended.wait(), 5)


async def test_memory_broker_slow_subscriber_loses_oldest() -> None:
    broker = MemoryBroker()
    broker.queue_size = 3
    async with broker.subscribe() as changes:
        published = [a_change() for _ in range(5)]
        for change in published:
            await broker.publish(change)
        assert [await anext(changes) for _ in range(3)] == published[2:]


def test_create_broker_picks_by_settings(tmp_path: Any) -> None:
    sqlite = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    postgres = Database("postgresql+asyncpg://postgres@127.0.0.1:5432/somewhere")
    assert isinstance(create_broker(Settings(database_url=sqlite.url), sqlite), MemoryBroker)
    assert isinstance(create_broker(Settings(database_url=postgres.url), postgres), PostgresBroker)
    redis_settings = Settings(database_url=sqlite.url, broker_url="redis://127.0.0.1:6379/1")
    assert isinstance(create_broker(redis_settings, sqlite), RedisBroker)
    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        create_broker(Settings(database_url=sqlite.url, broker_url="postgres"), sqlite)
    with pytest.raises(ValueError, match="unknown broker"):
        create_broker(Settings(database_url=sqlite.url, broker_url="kafka://x"), sqlite)


def test_postgres_dsn_and_redis_channels() -> None:
    broker = PostgresBroker(Database("postgresql+asyncpg://app:s%40cret@db.internal:5433/hub"))
    assert broker.dsn == "postgresql://app:s%40cret@db.internal:5433/hub"
    # One channel per database, whatever the host is called; a password never shows.
    assert redis_channel_for("postgresql+asyncpg://a:pw1@host-a/hub") == redis_channel_for(
        "postgresql+asyncpg://b:pw2@10.0.0.5:5432/hub"
    )
    assert redis_channel_for("sqlite+aiosqlite:////srv/a.db") != redis_channel_for(
        "sqlite+aiosqlite:////srv/b.db"
    )
    assert "pw1" not in redis_channel_for("postgresql+asyncpg://a:pw1@host-a/hub")
    chosen = RedisBroker("redis://r:6379/2?channel=ours&ssl_cert_reqs=none", database_url="x://")
    assert chosen.channel == "ours"
    assert chosen.url == "redis://r:6379/2?ssl_cert_reqs=none"


# --- PostgreSQL -------------------------------------------------------------------------------


@asynccontextmanager
async def postgres_brokers(database_url: str, count: int) -> AsyncIterator[list[PostgresBroker]]:
    databases = [Database(database_url) for _ in range(count)]
    brokers = [PostgresBroker(db) for db in databases]
    for broker in brokers:
        broker.backoff_initial = 0.05
        await broker.start()
    try:
        yield brokers
    finally:
        for broker in brokers:
            await broker.stop()
        for db in databases:
            await db.dispose()


@postgres_only
@pytest.mark.postgres
async def test_postgres_broker_delivers_across_processes_once(database_url: str) -> None:
    need_postgres()
    tasks_before = len(asyncio.all_tasks())
    async with postgres_brokers(database_url, 2) as (first, second):
        assert first.listening and second.listening
        await check_exactly_once_across(first, second)
        await check_stop_ends_streams(first)
    assert len(asyncio.all_tasks()) == tasks_before


async def listener_pids(admin: Database) -> set[int]:
    async with admin.engine.connect() as connection:
        rows = await connection.scalars(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": LISTENER_NAME},
        )
        return set(rows.all())


@postgres_only
@pytest.mark.postgres
async def test_postgres_broker_reconnects_after_losing_its_listener(database_url: str) -> None:
    need_postgres()
    async with postgres_brokers(database_url, 2) as (first, second), feed(first) as subscriber:
        admin = Database(database_url)
        try:
            killed = await listener_pids(admin)
            assert len(killed) == 2
            async with admin.engine.connect() as connection:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"
                    ),
                    {"pids": sorted(killed)},
                )
            # Both listen again, on new connections.
            deadline = time.monotonic() + 10
            while len(pids := await listener_pids(admin)) != 2 or pids & killed:
                assert time.monotonic() < deadline, "the listeners did not reconnect"
                await asyncio.sleep(0.05)
        finally:
            await admin.dispose()
        await eventually(lambda: first.listening and second.listening)
        change = a_change()
        await second.publish(change)
        assert await subscriber.wait_for(1) == [change]


@postgres_only
@pytest.mark.postgres
async def test_postgres_publish_of_an_oversized_change_is_dropped(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    need_postgres()
    async with postgres_brokers(database_url, 1) as (broker,), feed(broker) as subscriber:
        with caplog.at_level(logging.WARNING, logger="hub.events.brokers"):
            await broker.publish(a_change(action="x" * 8000, event_id=4343))  # logged, not raised
        assert "could not publish the change of event 4343 (ValueError)" in caplog.text
        small = a_change()
        await broker.publish(small)
        assert await subscriber.wait_for(1) == [small]


# --- Redis ------------------------------------------------------------------------------------


@asynccontextmanager
async def redis_brokers(count: int, name: str) -> AsyncIterator[list[RedisBroker]]:
    # A database nobody else uses: its own channel, so parallel runs do not cross.
    database_url = f"sqlite+aiosqlite:////tmp/{uuid.uuid4().hex}.db"
    brokers = [
        RedisBroker(REDIS_URL, database_url=database_url, client_name=name) for _ in range(count)
    ]
    for broker in brokers:
        broker.backoff_initial = 0.05
        await broker.start()
    try:
        yield brokers
    finally:
        for broker in brokers:
            await broker.stop()


@pytest.mark.redis
async def test_redis_broker_delivers_across_processes_once() -> None:
    need_redis()
    tasks_before = len(asyncio.all_tasks())
    async with redis_brokers(2, f"gridhub-test-{uuid.uuid4().hex[:8]}") as (first, second):
        assert first.channel == second.channel
        await check_exactly_once_across(first, second)
        # Another database's broker on the same Redis hears none of it.
        async with redis_brokers(1, "gridhub-test-other") as (other,), feed(other) as stranger:
            await first.publish(a_change())
            await asyncio.sleep(GRACE_SECONDS)
            assert stranger.received == []
        await check_stop_ends_streams(first)
    assert len(asyncio.all_tasks()) == tasks_before


@pytest.mark.redis
async def test_redis_broker_reconnects_after_losing_its_listener() -> None:
    need_redis()
    name = f"gridhub-test-{uuid.uuid4().hex[:8]}"
    async with redis_brokers(1, name) as (broker,), feed(broker) as subscriber:
        admin = aioredis.Redis.from_url(REDIS_URL)
        try:
            clients = await admin.client_list()
            listeners = [c["id"] for c in clients if c["name"] == name and int(c["sub"]) > 0]
            assert len(listeners) == 1
            await admin.client_kill_filter(_id=listeners[0])
        finally:
            await admin.aclose()
        # Not durable: what is published while the listener is away is lost, so publish until
        # one arrives; after that, every change arrives once.
        first = a_change()
        deadline = time.monotonic() + 10
        while not subscriber.received:
            assert time.monotonic() < deadline, "no delivery after the listener was killed"
            first = a_change()
            await broker.publish(first)
            await asyncio.sleep(0.05)
        assert subscriber.received[-1] == first
        count = len(subscriber.received)
        later = a_change()
        await broker.publish(later)
        assert (await subscriber.wait_for(count + 1))[-1] == later


class FlakyProxy:
    """A TCP proxy in front of a service that can cut every connection and refuse new ones: an
    outage longer than the client library's own retries."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            self._writers -= {writer, upstream_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.mark.redis
async def test_redis_broker_survives_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    need_redis()
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with FlakyProxy(redis_port) as proxy:
        database_url = f"sqlite+aiosqlite:////tmp/{uuid.uuid4().hex}.db"
        broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0", database_url=database_url)
        broker.backoff_initial = 0.05
        await broker.start()
        try:
            async with feed(broker) as subscriber:
                with caplog.at_level(logging.WARNING, logger="hub.events.brokers"):
                    proxy.cut()
                    await eventually(lambda: not broker.listening)
                    await broker.publish(a_change(event_id=4444))  # lost, logged, not raised
                    await asyncio.sleep(0.5)
                    proxy.up = True
                    await eventually(lambda: broker.listening)
                assert "listener disconnected" in caplog.text
                assert "could not publish the change of event 4444" in caplog.text
                change = a_change()
                await broker.publish(change)
                assert await subscriber.wait_for(1) == [change]
        finally:
            await broker.stop()


async def test_redis_broker_unreachable_fails_start_and_never_a_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A closed port: no Redis service needed.
    url = f"redis://127.0.0.1:{free_port()}/0"
    tasks_before = len(asyncio.all_tasks())
    broker = RedisBroker(url, database_url="sqlite://")
    broker.start_timeout = 0.5
    with pytest.raises(RuntimeError, match="could not listen"):
        await broker.start()
    assert len(asyncio.all_tasks()) == tasks_before

    publisher = RedisBroker(url, database_url="sqlite://")
    with caplog.at_level(logging.WARNING, logger="hub.events.brokers"):
        await publisher.publish(a_change(event_id=4242))  # the mutation has committed: no raise
    assert "could not publish the change of event 4242" in caplog.text
    await publisher.stop()
