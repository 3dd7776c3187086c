"""What one operation read of the sensitive fields: filled by the resolvers of the role's schema
(hub.api.roles), written to the audit log when the operation ends (hub.api.audit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadLog:
    fields: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)

    def add(self, key: str, source: Any) -> None:
        self.fields.add(key)
        identity = getattr(source, "id", None)
        if identity is not None:
            self.records.add(f"{key.partition('.')[0]}:{identity}")

    def __bool__(self) -> bool:
        return bool(self.fields)

    def clear(self) -> None:
        self.fields.clear()
        self.records.clear()
