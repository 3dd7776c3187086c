"""The context every resolver receives, and the database facade it reaches the database through.

Lifetimes: the view builds one Context per HTTP request (the operations of a batch included)
and one per WebSocket connection. `PerOperationContext` (hub.api.schema) gives every operation
its own copy with fresh DataLoaders, so no operation reads another one's cached rows (over
WebSocket a connection lives for hours). What the copies share is the request's `RequestState`:
the batch cost budget and the cap on concurrent database sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import AdaptedConnection, ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from strawberry.types import Info as StrawberryInfo

from hub.api.loaders import Loaders
from hub.authz import Access
from hub.authz.ratelimit import RateLimiter
from hub.authz.reads import ReadLog
from hub.config import Settings
from hub.db import Database
from hub.events.changes import Broker


@dataclass(slots=True)
class RequestState:
    """Shared by every operation of one HTTP request or one WebSocket connection."""

    # At most this many database sessions at once, so that one request full of aliased heavy
    # fields cannot take the whole connection pool and starve every other request.
    sessions: asyncio.Semaphore
    # The estimated cost of the request's operations so far (the limits extension keeps it).
    cost: int = 0


class RequestDatabase:
    """What resolvers see as `context.db`: hub.db.Database for one operation.

    - Every session waits for a slot of the request's semaphore (`Limits.max_sessions_per_request`).
      Nothing may open a second session while holding one, or a request could wait on itself.
    - `transaction()` runs `after_commit` once its unit of work is committed: the operation's
      DataLoaders are cleared there, so fields read after a mutation see what it wrote.

    A statement whose task is cancelled (the execution timeout) stops: see interrupt_on_cancel.
    """

    __slots__ = ("_after_commit", "_database", "_sessions", "before_commit")

    def __init__(
        self,
        database: Database,
        sessions: asyncio.Semaphore,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._database = database
        self._sessions = sessions
        self._after_commit = after_commit
        # Runs inside every unit of work just before it commits: a mutation's audit record is
        # written there, in the same transaction as the change it describes (hub.api.audit).
        self.before_commit: Callable[[AsyncSession], Awaitable[None]] | None = None

    def for_operation(self, after_commit: Callable[[], None]) -> RequestDatabase:
        """The same database and session cap, with this operation's own commit hook."""
        return RequestDatabase(self._database, self._sessions, after_commit)

    @property
    def database(self) -> Database:
        return self._database

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions, self._database.reader() as session:
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for Core reads (compiled execution), under the same cap."""
        async with self._sessions, self._database.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions:
            async with self._database.transaction() as session:
                yield session
                if self.before_commit is not None:
                    await self.before_commit(session)
            # Committed (an error would have left the block above by raising).
            if self._after_commit is not None:
                self._after_commit()


def interrupt_on_cancel(database: Database) -> None:
    """On SQLite, interrupt a statement whose task is cancelled (the execution timeout).

    aiosqlite runs each statement on a worker thread that cancelling the task does not stop;
    SQLAlchemy then invalidates the connection, and its close waits behind the statement, so a
    timed-out query would keep the database busy, its task alive and its connection taken until
    it finished by itself. PostgreSQL needs nothing: asyncpg sends a cancel request itself (and
    API sessions have a statement_timeout, hub.app)."""
    if database.dialect == "sqlite":
        event.listen(database.engine.sync_engine, "handle_error", _interrupt_cancelled)


def _interrupt_cancelled(context: ExceptionContext) -> None:
    # Runs before SQLAlchemy invalidates the connection (and waits to close it).
    if not isinstance(context.original_exception, asyncio.CancelledError):
        return
    connection = context.connection
    if connection is None or connection.invalidated or connection.closed:
        return
    try:
        adapted = connection.connection.dbapi_connection
    except SQLAlchemyError:
        return
    if isinstance(adapted, AdaptedConnection):
        # sqlite3's interrupt() is thread-safe, and aiosqlite calls it right away rather than
        # queueing it behind the running statement.
        adapted.run_async(lambda driver: driver.interrupt())


@dataclass(slots=True)
class Context:
    db: RequestDatabase
    settings: Settings
    access: Access
    broker: Broker
    loaders: Loaders
    state: RequestState
    # The purpose the request states for reading sensitive fields (hub.api.audit).
    purpose: str | None = None
    # The sensitive fields and records this operation has read, for its audit record.
    reads: ReadLog = field(default_factory=ReadLog)
    # The live policy (hub.api.registry.SchemaRegistry): subscriptions check its version.
    registry: Any = None
    # The audit record kind of this operation's writes, when not "mutation" (policy, emergency).
    audit_kind: str | None = None
    request: Any = None
    response: Any = None
    # The worker's compiled execution (hub.api.compiled.execution.CompiledQueries), or None
    # for the normal executor only.
    compiled: Any = None
    # The worker's limiter of anonymous writes (hub.api.ratelimit), or None for no limit.
    rate_limiter: RateLimiter | None = None

    @classmethod
    def build(
        cls,
        database: Database,
        *,
        settings: Settings,
        access: Access,
        broker: Broker,
        purpose: str | None = None,
        registry: Any = None,
        request: Any = None,
        response: Any = None,
        compiled: Any = None,
        rate_limiter: RateLimiter | None = None,
    ) -> Context:
        state = RequestState(asyncio.Semaphore(settings.limits.max_sessions_per_request))
        db = RequestDatabase(database, state.sessions)
        return cls(
            db=db,
            settings=settings,
            access=access,
            broker=broker,
            loaders=Loaders(db, access),
            state=state,
            purpose=purpose,
            registry=registry,
            request=request,
            response=response,
            compiled=compiled,
            rate_limiter=rate_limiter,
        )

    def for_operation(self) -> Context:
        """A copy for one operation: its own DataLoaders (cleared after each commit) and its
        own record of what it read."""
        operation = replace(self)
        operation.db = self.db.for_operation(operation.clear_loaders)
        operation.loaders = Loaders(operation.db, self.access)
        operation.reads = ReadLog()
        return operation

    def clear_loaders(self) -> None:
        self.loaders.clear()


Info = StrawberryInfo[Context, None]
