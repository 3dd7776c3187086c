"""Picks the broker that carries event changes between processes (see hub.events.changes)."""

from __future__ import annotations

from hub.config import Settings
from hub.db import Database
from hub.events.changes import Broker, MemoryBroker


def create_broker(settings: Settings, db: Database) -> Broker:
    kind = settings.effective_broker
    if kind == "memory":
        return MemoryBroker()
    raise ValueError(f"unknown broker {kind!r}: use memory, postgres or a redis:// URL")
