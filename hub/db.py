"""Database plumbing: the declarative base, engine creation and the session factory.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is the scale path. Everything
above this module is written once for both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, String, event, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# aiosqlite logs every call at DEBUG with its bound parameters (residents' personal data): a
# process-wide DEBUG level must not switch that on. Configuring the logger explicitly still can.
_aiosqlite_log = logging.getLogger("aiosqlite")
if _aiosqlite_log.level == logging.NOTSET:
    _aiosqlite_log.setLevel(logging.INFO)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (which has no time zones) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def path_string(length: int) -> String:
    """A string compared byte by byte, so materialised-path range scans use the index on PG too."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def async_url(url: str) -> str:
    """Accept the plain URLs people type and pick the async drivers GridHub runs on."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL for people to read (banners, reports): the password masked. A URL that does not
    parse is not shown at all, since its password could not be told apart from the rest."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable database URL>"


def create_engine(
    url: str, *, echo: bool = False, statement_timeout_seconds: float | None = None
) -> AsyncEngine:
    url = async_url(url)
    # hide_parameters: SQLAlchemy puts the bound values ("[parameters: ...]") into the text of
    # every statement error and into echo logs; those values are residents' personal data.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        if statement_timeout_seconds is not None:
            # A connection setting, not a SET: it survives the pool's rollback on check-in.
            # At least 1 ms: 0 would switch the timeout off.
            milliseconds = max(1, round(statement_timeout_seconds * 1000))
            kwargs["connect_args"] = {"server_settings": {"statement_timeout": str(milliseconds)}}
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """The engine and its session factory; one per process, built from Settings."""

    def __init__(
        self, url: str, *, echo: bool = False, statement_timeout_seconds: float | None = None
    ) -> None:
        """`statement_timeout_seconds`: PostgreSQL stops any statement running longer (the API
        passes a little over its execution timeout); ignored on SQLite."""
        self.url = async_url(url)
        self.engine = create_engine(
            self.url, echo=echo, statement_timeout_seconds=statement_timeout_seconds
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The unit of work: services flush, only this commits (or rolls back on error)."""
        async with self.sessions() as session, session.begin():
            if self.dialect == "sqlite":
                # pysqlite opens SQLite's transaction lazily, just before the first INSERT,
                # UPDATE or DELETE. A SAVEPOINT issued before that is a transaction of its own
                # that its RELEASE commits, so the unit of work would not commit or roll back as
                # one. Opening it here (IMMEDIATE: writers queue on busy_timeout at the start,
                # never fail halfway on a stale snapshot) makes it one.
                await session.execute(text("BEGIN IMMEDIATE"))
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
