"""One run of a connector at a time, across processes, released when a process dies.

A lease row with an expiry would leave a `kill -9`ed run's lock behind until it expired, so the
lock is one the operating system or the database drops with its holder:

- PostgreSQL: a session-level advisory lock on a connection held for the run; the server releases
  it when that connection closes, including when the process is killed.
- SQLite (one machine by nature): an exclusive `flock` on a file beside the database file; the
  kernel releases it when the process exits, however it exits.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import make_url, text

from hub.db import Database


class AlreadyRunning(RuntimeError):
    """Another process (or task) is running this connector now."""


def _advisory_key(name: str) -> int:
    digest = hashlib.sha256(f"gridhub-sync:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_path(database: Database, name: str) -> Path:
    database_file = make_url(database.url).database
    if not database_file or database_file == ":memory:":
        raise RuntimeError("connector runs need a database file (not :memory:)")
    return Path(f"{database_file}.sync-{name}.lock")


@asynccontextmanager
async def connector_lock(database: Database, name: str) -> AsyncIterator[None]:
    """Hold the lock of connector `name` for the block, or raise AlreadyRunning at once."""
    if database.dialect == "postgresql":
        async with database.engine.connect() as connection:
            key = _advisory_key(name)
            taken = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            await connection.commit()
            if not taken:
                raise AlreadyRunning(f"connector {name} is running in another process")
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await connection.commit()
        return
    path = _lock_path(database, name)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"connector {name} is running in another process") from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
