"""Rate limits shared by every worker and host: one interface, two stores.

The window slides, exactly: a key may take `limit` hits in any `window_seconds`, and the hit
after that waits until enough of its counted hits have left the window. Each store keeps a
key's counted hits of the last window (at most `limit` of them) and decides atomically:

- the database (`rate_hits`, SQLite or PostgreSQL): one row per counted hit; the decision runs
  in one transaction, serialised per key (SQLite's write lock, a PostgreSQL advisory lock), and
  every admitted hit deletes the rows that have left their window, this key's and any other's;
- Redis, when one is configured: one sorted set per key, decided by one script, expiring with
  its last hit.

A refused hit is not counted, so a client that keeps retrying gets in as soon as the window
has room. Both stores read the wall clock of the host deciding: keep the hosts' clocks in sync
(NTP), or a host whose clock runs behind counts hits that another already let go.

An exact log rather than a pair of weighted fixed windows: with limits as small as five a
window, a weighted count overestimates enough to make a resident wait a fifth of a window
past the hour the rule promises.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import Float, Index, Integer, String, delete, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from hub.config import RateRule, Settings
from hub.db import Base, Database

# Longer keys are hashed to fit the column (a mutation name and an address never are).
MAX_KEY_LENGTH = 200


class RateHit(Base):
    """Hits one key took at one moment, counted while they are inside its window."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    # Wall-clock seconds since 1970, the clock every worker and host shares.
    at: Mapped[float] = mapped_column(Float)
    hits: Mapped[int] = mapped_column(Integer)
    # When the hits leave the window and the row may go (at + the window's length).
    until: Mapped[float] = mapped_column(Float, index=True)


class LimiterUnavailable(Exception):
    """The store could not be asked. Callers refuse the hit: a limit that lapses whenever its
    store is down is no limit."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Seconds until the same hit would be allowed; 0 when this one was.
    retry_after: float

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up and at least 1 (0 would invite a retry still refused)."""
        return max(1, math.ceil(self.retry_after))


# A key's counted hits inside the window: (when, how many), oldest first.
Log = Sequence[tuple[float, int]]


def admits(log: Log, rule: RateRule, cost: int) -> bool:
    return sum(hits for _, hits in log) + cost <= rule.limit


def wait(log: Log, rule: RateRule, cost: int, now: float) -> float:
    """Seconds until `cost` more hits fit, if nobody else hits the key meanwhile: until the
    oldest hits that must make room have left the window."""
    if cost > rule.limit:
        return rule.window_seconds  # Never fits; say a window rather than forever.
    excess = sum(hits for _, hits in log) + cost - rule.limit
    for at, hits in log:
        if excess <= 0:
            break
        excess -= hits
        if excess <= 0:
            return max(0.0, at + rule.window_seconds - now)
    return 0.0


def _fitted(key: str) -> str:
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class RateLimiter(ABC):
    """Counts hits per key under a rule, wherever the log is kept."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    async def hit(self, key: str, *, rule: RateRule, cost: int = 1) -> Decision:
        """Take `cost` hits of `key` if they all fit in the window, else none."""
        now = self._clock()
        # The window's length is part of the key: a changed rule starts afresh rather than
        # reading a log kept for a window of another length.
        scoped = _fitted(f"{key}@{rule.window_seconds:g}")
        try:
            allowed, log = await self._take(scoped, now=now, rule=rule, cost=cost)
        except (RedisError, SQLAlchemyError, OSError) as error:
            raise LimiterUnavailable(f"{type(error).__name__}: {error}") from error
        if allowed:
            return Decision(True, 0.0)
        return Decision(False, wait(log, rule, cost, now))

    @abstractmethod
    async def _take(self, key: str, *, now: float, rule: RateRule, cost: int) -> tuple[bool, Log]:
        """Atomically: count `cost` hits at `now` if `admits` says they fit in the log of the
        window ending now. Returns whether it did, and that log (before the hits)."""

    @abstractmethod
    async def close(self) -> None:
        """Let go of connections of the limiter's own."""


class DatabaseRateLimiter(RateLimiter):
    """The log in the `rate_hits` table: SQLite or PostgreSQL, shared by every worker."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.db = db

    async def _take(self, key: str, *, now: float, rule: RateRule, cost: int) -> tuple[bool, Log]:
        async with self.db.transaction() as session:
            await self._serialise(session, key)
            log = await self._log(session, key, since=now - rule.window_seconds)
            if not admits(log, rule, cost):
                return False, log
            await session.execute(
                insert(RateHit).values(key=key, at=now, hits=cost, until=now + rule.window_seconds)
            )
            # Indexed, and each row is deleted once: whichever admitted hit comes after it.
            await session.execute(delete(RateHit).where(RateHit.until <= now))
            return True, log

    async def _serialise(self, session: AsyncSession, key: str) -> None:
        """Two workers deciding on one key take turns, or both could take its last hit. On
        SQLite the transaction already holds the database's write lock (BEGIN IMMEDIATE)."""
        if self.db.dialect == "postgresql":
            lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            await session.execute(select(func.pg_advisory_xact_lock(lock)))

    @staticmethod
    async def _log(session: AsyncSession, key: str, *, since: float) -> Log:
        rows = await session.execute(
            select(RateHit.at, RateHit.hits)
            .where(RateHit.key == key, RateHit.at > since)
            .order_by(RateHit.at)
        )
        return [(at, hits) for at, hits in rows.all()]

    async def close(self) -> None:
        """Nothing of its own: the app disposes of the database."""


# KEYS: the key's sorted set (member: a unique hit, score: when). ARGV: now, the window's
# start (hits at or before it have left), limit, cost, the set's lifetime in milliseconds, a
# unique id for the new members. Returns whether the hits were taken, then the log before them
# (members and scores alternating).
_TAKE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #log / 2
local cost = tonumber(ARGV[4])
if count + cost > tonumber(ARGV[3]) then
  return {0, log}
end
for n = 1, cost do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[6] .. ':' .. n)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, log}
"""


class RedisRateLimiter(RateLimiter):
    """The log in Redis: a sorted set per key, expiring a window after its last hit."""

    def __init__(self, url: str, *, namespace: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.namespace = namespace
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._script = self._client.register_script(_TAKE_SCRIPT)

    async def _take(self, key: str, *, now: float, rule: RateRule, cost: int) -> tuple[bool, Log]:
        allowed, flat = await self._script(
            keys=[self.namespace + key],
            args=[
                repr(now),
                repr(now - rule.window_seconds),
                rule.limit,
                cost,
                math.ceil(rule.window_seconds * 1000),
                uuid.uuid4().hex,
            ],
        )
        # Members and scores alternate; each member is one hit.
        log = [(float(flat[n + 1]), 1) for n in range(0, len(flat), 2)]
        return bool(allowed), log

    async def close(self) -> None:
        await self._client.aclose()


def redis_namespace(database_url: str) -> str:
    """Keys per database, like the broker's channel: deployments (or test runs) that share a
    Redis but not a database never share counts (never a password in the name)."""
    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        database = os.path.abspath(database)
    identity = f"{url.get_backend_name()}:{database}"
    return f"gridhub:rate:{hashlib.sha256(identity.encode()).hexdigest()[:16]}:"


def create_limiter(settings: Settings, db: Database) -> RateLimiter:
    redis_url = settings.effective_redis_url
    if redis_url is not None:
        return RedisRateLimiter(redis_url, namespace=redis_namespace(db.url))
    return DatabaseRateLimiter(db)
