"""The gate connector runs pass through: which policy subject a connector is, what it may set.

A connector is a Casbin subject like a role (`connector:health`), compiled into a Profile by the
same code. Its writes are checked field by field against the profile's `set` lines and its
creates and updates against `call` lines on the mutations that do the same thing through the API,
so one policy line governs both paths (`p, connector:health, ResidentInput.healthNotes, set`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select

from hub.authz.access import Access
from hub.authz.profile import Profile
from hub.authz.viewer import Viewer
from hub.db import Database

S = TypeVar("S", bound=Select[Any])


class LivePolicy(Protocol):
    """The compiled live policy, as the app's registry keeps it (hub.api.registry)."""

    @property
    def version(self) -> int: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    def profile_for(self, role: str) -> Profile: ...

    def access_for(self, viewer: Viewer, *, now: datetime | None = None) -> Access: ...

    async def sync(self, db: Database) -> bool: ...


class NotASubject(LookupError):
    """The policy says nothing about this connector's subject: it may do nothing."""


def connector_viewer(
    subject: str, *, department_code: str | None = None, department_id: int | None = None
) -> Viewer:
    return Viewer(
        subject=subject,
        role=subject,
        via="connector",
        department_code=department_code,
        department_id=department_id,
    )


@dataclass(frozen=True, slots=True)
class WritePermit:
    """What one connector may write under one policy version."""

    access: Access

    @classmethod
    def of(cls, policy: LivePolicy, viewer: Viewer) -> WritePermit:
        if viewer.role not in policy.roles:
            raise NotASubject(f"the policy (version {policy.version}) has no subject {viewer.role}")
        return cls(access=policy.access_for(viewer))

    @property
    def subject(self) -> str:
        return self.access.viewer.subject

    @property
    def version(self) -> int:
        return self.access.profile.version

    def may_set(self, input_object: str) -> bool:
        return input_object in self.access.profile.inputs

    def may_call(self, operation: str) -> bool:
        return self.access.can_call(operation)

    def narrowed(self, type_name: str) -> bool:
        """Whether this connector sees or writes only some rows of `type_name` (not `all`)."""
        profile = self.access.profile
        return "all" not in profile.scopes.get(type_name, frozenset()) or "all" not in (
            profile.write_scopes.get(type_name, frozenset())
        )

    def writable(self, statement: S, entity: type[Any]) -> S:
        """`statement` narrowed to the rows this connector may both read and write."""
        return self.access.writable(self.access.rows(statement, entity), entity)

    def refused(self, input_objects: Iterable[str]) -> list[str]:
        """The input fields among `input_objects` this connector may not set, sorted."""
        return sorted({o for o in input_objects if not self.may_set(o)})
