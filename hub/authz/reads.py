"""What one operation read of the sensitive fields: filled by the resolvers of the role's schema
(hub.api.roles), written to the audit log when the operation ends (hub.api.audit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadLog:
    fields: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)

    def add(self, key: str, source: Any) -> None:
        self.add_all(key, (source,))

    def add_all(self, key: str, sources: Sequence[Any]) -> None:
        """`key` read from each of `sources` (rows; a source without an id names no record).
        Read from none of them, it was not read at all."""
        if not sources:
            return
        self.fields.add(key)
        type_name = key.partition(".")[0]
        for source in sources:
            identity = getattr(source, "id", None)
            if identity is not None:
                self.records.add(f"{type_name}:{identity}")

    def update(self, other: ReadLog) -> None:
        self.fields |= other.fields
        self.records |= other.records

    def __bool__(self) -> bool:
        return bool(self.fields)

    def clear(self) -> None:
        self.fields.clear()
        self.records.clear()
