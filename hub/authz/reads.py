"""What one operation read of the sensitive fields: filled by the resolvers of the role's schema
(hub.api.roles), written to the audit log when the operation ends (hub.api.audit)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadLog:
    fields: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)

    def add(self, key: str, source: Any) -> None:
        self.add_rows(key.partition(".")[0], (key,), (getattr(source, "id", None),))

    def add_rows(self, type_name: str, fields: Iterable[str], ids: Iterable[Any]) -> None:
        """`fields` (of `type_name`) read from each of the rows with these ids, at once."""
        self.fields.update(fields)
        self.records.update(f"{type_name}:{identity}" for identity in ids if identity is not None)

    def update(self, other: ReadLog) -> None:
        self.fields |= other.fields
        self.records |= other.records

    def __bool__(self) -> bool:
        return bool(self.fields)

    def clear(self) -> None:
        self.fields.clear()
        self.records.clear()
