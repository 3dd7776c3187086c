"""The one gate every read and write of the API (and later the connectors) passes through.

Today GridHub has one open profile: every row and field is visible. The policy issue replaces the
body of these functions with compiled Casbin profiles (row scopes, masked and hidden fields);
callers already route every statement and every write through here, so nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select

S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking. Identity (tokens, API keys) arrives with the policy issue."""

    subject: str = "anonymous"
    roles: tuple[str, ...] = ()
    department: str | None = None
    grids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Access:
    viewer: Viewer

    def rows(self, statement: S, entity: type[Any]) -> S:
        """Narrow a SELECT over `entity` to the rows this viewer may see."""
        return statement

    def actor(self) -> str:
        """How this viewer is named in timelines and (later) the audit log."""
        return self.viewer.subject


def open_access() -> Access:
    return Access(Viewer())
