"""Picks the broker that carries event changes between processes (see hub.events.changes for the
delivery semantics every broker keeps).

`PostgresBroker` and `RedisBroker` share one shape: publishing goes out through the shared
service, and one listener per process (a dedicated connection) receives every change, including
this process's own, and fans it out to the local subscribers through a `MemoryBroker`. Local
subscribers are fed only from the listener, so each gets each change exactly once.

When the listener's connection drops, the subscriptions stay open; the listener reconnects with
exponential backoff (with jitter, so the workers of a host do not reconnect in lockstep) and
delivery resumes. Changes published while it was disconnected are not replayed: they are lost to
this process's subscribers (a live feed; clients re-query after a reconnect of their own). A
publish that fails (service down) is logged with the event id only and dropped; the mutation that
made the change has committed and still succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from hub.config import Settings
from hub.db import Database
from hub.events.changes import Broker, EventChange, MemoryBroker

log = logging.getLogger("hub.events.brokers")

# PostgreSQL caps a NOTIFY payload at 8000 bytes; a change is about 200.
NOTIFY_PAYLOAD_LIMIT = 7999
POSTGRES_CHANNEL = "gridhub_event_changes"
# Shown in pg_stat_activity and CLIENT LIST, so operators can tell the listeners apart.
LISTENER_NAME = "gridhub-listener"


def create_broker(settings: Settings, db: Database) -> Broker:
    kind = settings.effective_broker
    if kind == "memory":
        return MemoryBroker()
    if kind == "postgres":
        if db.dialect != "postgresql":
            raise ValueError("the postgres broker needs a PostgreSQL database")
        return PostgresBroker(db)
    if kind.startswith(("redis://", "rediss://")):
        return RedisBroker(kind, database_url=db.url)
    raise ValueError(f"unknown broker {kind!r}: use memory, postgres or a redis:// URL")


Ready = Callable[[], None]


class _RelayBroker(ABC):
    """Publishes through a shared service; one supervised listener task feeds local subscribers."""

    name = "relay"
    # Reconnect backoff, in seconds: doubles from `backoff_initial` up to `backoff_max`.
    backoff_initial = 0.2
    backoff_max = 10.0
    # How long start() waits for the first listener connection before the app fails to start.
    start_timeout = 15.0
    # The most a publish adds to a mutation when the service is unreachable.
    publish_timeout = 2.0

    def __init__(self) -> None:
        self.local = MemoryBroker()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_error: BaseException | None = None
        self._stopped = False

    @property
    def listening(self) -> bool:
        """Whether the listener is connected right now (False while it reconnects)."""
        return self._ready.is_set()

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[EventChange]]:
        return self.local.subscribe()

    async def start(self) -> None:
        self._stopped = False
        self._listener = asyncio.create_task(self._supervise(), name=f"gridhub-{self.name}")
        waiter = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {waiter, self._listener},
                timeout=self.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
            with suppress(asyncio.CancelledError):
                await waiter
        if not self._ready.is_set():
            error = self._last_error
            await self.stop()
            raise RuntimeError(
                f"the {self.name} broker could not listen within {self.start_timeout:.0f}s"
                + (f": {type(error).__name__}: {error}" if error else "")
            )

    async def stop(self) -> None:
        self._stopped = True
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._ready.clear()
        await self._close_publisher()
        await self.local.stop()

    async def publish(self, change: EventChange) -> None:
        if self._stopped:
            # Shutting down: opening a connection now would outlive stop().
            log.debug(
                "%s broker stopped; change of event %s not published", self.name, change.event_id
            )
            return
        payload = change.to_json()
        try:
            await asyncio.wait_for(self._send(payload), self.publish_timeout)
        except Exception as error:
            # The change has committed; failing the request now would invite a retry that
            # repeats it. Ids only in the log: the payload has no personal data, but stay strict.
            log.warning(
                "%s broker could not publish the change of event %s (%s): subscribers miss it",
                self.name,
                change.event_id,
                type(error).__name__,
            )

    def _receive(self, payload: bytes | str) -> None:
        try:
            change = EventChange.from_json(payload)
        except (ValueError, TypeError, KeyError):
            log.warning("%s broker ignored a malformed message", self.name)
            return
        self.local.deliver(change)

    async def _supervise(self) -> None:
        delay = self.backoff_initial
        while True:
            try:
                await self._listen(self._on_ready)
                raise ConnectionError("listener ended")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._last_error = error
                if self._ready.is_set():
                    # It had been connected: start over with a short delay.
                    delay = self.backoff_initial
                self._ready.clear()
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(
                    "%s broker listener disconnected (%s: %s); reconnecting in %.1fs",
                    self.name,
                    type(error).__name__,
                    error,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)

    def _on_ready(self) -> None:
        if self._last_error is not None:
            log.info("%s broker listener reconnected", self.name)
        self._ready.set()

    @abstractmethod
    async def _listen(self, ready: Ready) -> None:
        """Connect, subscribe, call `ready()`, then receive until the connection is lost (raise)."""

    @abstractmethod
    async def _send(self, payload: bytes) -> None:
        """Publish one payload to every process."""

    async def _close_publisher(self) -> None:
        return None


class PostgresBroker(_RelayBroker):
    """LISTEN/NOTIFY on the application database.

    Publishing runs `pg_notify` on a pooled connection of the app's engine, not on the LISTEN
    connection: an asyncpg connection runs one statement at a time, so sharing it would serialise
    every publisher of the process behind a lock and fail them all while the listener
    reconnects; the pool is concurrent and independently health-checked. The LISTEN connection
    is a direct asyncpg connection (a transaction-pooling proxy such as PgBouncer would not keep
    LISTEN), checked every `keepalive` seconds so a silently dead network path is noticed too.
    """

    name = "postgres"
    keepalive = 15.0
    keepalive_timeout = 5.0

    def __init__(self, db: Database, *, channel: str = POSTGRES_CHANNEL) -> None:
        super().__init__()
        self.db = db
        self.channel = channel
        # The SQLAlchemy URL names its driver ("postgresql+asyncpg"); asyncpg wants plain libpq.
        self.dsn = make_url(db.url).set(drivername="postgresql").render_as_string(False)

    async def _send(self, payload: bytes) -> None:
        if len(payload) > NOTIFY_PAYLOAD_LIMIT:
            raise ValueError(f"change of {len(payload)} bytes exceeds the NOTIFY payload limit")
        async with self.db.engine.begin() as connection:
            # Its own short transaction: NOTIFY is delivered when it commits.
            await connection.execute(select(func.pg_notify(self.channel, payload.decode())))

    async def _listen(self, ready: Ready) -> None:
        connection = await asyncpg.connect(
            self.dsn,
            timeout=10,
            server_settings={"application_name": LISTENER_NAME},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self.channel, self._on_notify)
            ready()
            while not connection.is_closed():
                with suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                if lost.is_set() or connection.is_closed():
                    break
                await connection.fetchval("SELECT 1", timeout=self.keepalive_timeout)
            raise ConnectionError("LISTEN connection closed")
        finally:
            await _close_quietly(connection.close(timeout=2), connection.terminate)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._receive(payload)


class RedisBroker(_RelayBroker):
    """PUBLISH/SUBSCRIBE on a Redis channel.

    One client (own connection pool) per process: PUBLISH borrows pooled connections, the
    subscription holds one of its own. The channel is named after the database, so deployments
    (or test runs) that share a Redis but not a database never see each other's changes; add
    `?channel=NAME` to the broker URL to choose it yourself (say when hosts reach one database
    under different names).
    """

    name = "redis"
    poll_seconds = 1.0
    health_check_seconds = 10

    def __init__(
        self,
        url: str,
        *,
        database_url: str,
        channel: str | None = None,
        client_name: str = LISTENER_NAME,
    ) -> None:
        super().__init__()
        self.url, url_channel = _split_channel(url)
        self.channel = channel or url_channel or redis_channel_for(database_url)
        self.client_name = client_name
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url,
                client_name=self.client_name,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=self.health_check_seconds,
                # Few quick retries: the listener has its own reconnect loop, and a publish is
                # bounded by publish_timeout anyway.
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            )
        return self._client

    async def _send(self, payload: bytes) -> None:
        await self._redis().publish(self.channel, payload)

    async def _listen(self, ready: Ready) -> None:
        pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            ready()
            while True:
                # A bounded wait, so the health check (a PING) runs while the channel is quiet.
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.poll_seconds
                )
                if message is not None and message.get("type") == "message":
                    self._receive(message["data"])
        except RedisError as error:
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        finally:
            await _close_quietly(pubsub.aclose())

    async def _close_publisher(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await _close_quietly(client.aclose())


def redis_channel_for(database_url: str) -> str:
    """A channel per database: its name on PostgreSQL, its file on SQLite (never a password)."""
    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        database = os.path.abspath(database)
    identity = f"{url.get_backend_name()}:{database}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"gridhub:event_changes:{digest}"


def _split_channel(url: str) -> tuple[str, str | None]:
    """Take GridHub's `channel` parameter off a redis URL (redis-py would reject it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    channel = next((value for key, value in query if key == "channel"), None)
    rest = urlencode([(key, value) for key, value in query if key != "channel"])
    return urlunsplit(parts._replace(query=rest)), channel or None


async def _close_quietly(
    closing: Awaitable[Any], fallback: Callable[[], None] | None = None
) -> None:
    """Close a connection that may already be broken; shutdown must not hang or raise."""
    try:
        await asyncio.wait_for(closing, timeout=3)
    except asyncio.CancelledError:
        if fallback is not None:
            fallback()
        raise
    except Exception as error:
        log.debug("closing a broker connection failed: %s", type(error).__name__)
        if fallback is not None:
            fallback()
