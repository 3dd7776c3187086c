"""The one gate every read and write passes through: a viewer, its role's compiled profile and
its open emergency grants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, false, or_

from hub.authz.profile import Level, Profile
from hub.authz.scopes import SCOPED_TYPES, UNDER_GRIDS, scope_clause
from hub.authz.viewer import Viewer

S = TypeVar("S", bound=Select[Any])

TYPE_OF_MODEL: dict[type[Any], str] = {model: name for name, model in SCOPED_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Access:
    viewer: Viewer
    profile: Profile
    # Grid paths of the viewer's open emergency grants: rows under them are in scope while a
    # grant lasts, and the masked fields of those rows (and only those) show in full.
    emergency_paths: tuple[str, ...] = ()
    # The ids of the grids under `emergency_paths` (hub.authz.grants.grid_ids_under), which
    # tell a row's masking resolver whether the row lies under a grant.
    emergency_grid_ids: frozenset[int] = frozenset()

    def rows(self, statement: S, entity: type[Any]) -> S:
        """Narrow a SELECT over `entity` to the rows this viewer may see."""
        type_name = TYPE_OF_MODEL.get(entity)
        if type_name is None:
            raise LookupError(f"{entity.__name__} has no row scope")  # a programming error
        if not self.profile.sees_type(type_name):
            return statement.where(false())
        scopes = self.profile.scopes.get(type_name, frozenset())
        if "all" in scopes:
            return statement
        clauses = [scope_clause(entity, scope, self.viewer) for scope in sorted(scopes)]
        if self.emergency_paths and entity in UNDER_GRIDS:
            clauses.append(UNDER_GRIDS[entity](self.emergency_paths))
        return statement.where(or_(*clauses) if clauses else false())

    def writable(self, statement: S, entity: type[Any]) -> S:
        """Narrow a SELECT over `entity` to the rows this viewer may change (its write scopes).
        Emergency grants widen what a viewer reads, never what it writes."""
        type_name = TYPE_OF_MODEL.get(entity)
        if type_name is None:
            raise LookupError(f"{entity.__name__} has no row scope")  # a programming error
        scopes = self.profile.write_scopes.get(type_name, frozenset())
        if "all" in scopes:
            return statement
        clauses = [
            scope_clause(entity, scope, self.viewer, writing=True) for scope in sorted(scopes)
        ]
        return statement.where(or_(*clauses) if clauses else false())

    def tracks(self, entity: type[Any]) -> bool:
        """Whether naming a row's secret tracking code is enough to see it (scope `tracked`):
        the resident who submitted a feedback item follows it with its code."""
        type_name = TYPE_OF_MODEL[entity]
        return self.profile.sees_type(type_name) and "tracked" in self.profile.scopes.get(
            type_name, frozenset()
        )

    def can_call(self, operation: str) -> bool:
        return operation in self.profile.operations

    def level(self, field: str) -> Level:
        return self.profile.level(field)

    @property
    def emergency(self) -> bool:
        """This viewer has an open emergency grant."""
        return bool(self.emergency_paths)

    def unmasks(self, row: Any) -> bool:
        """Whether `row`'s masked fields show in full: it lies in a grid under one of the
        viewer's open grants. Rows without a grid of their own (members) stay masked."""
        grid_id = getattr(row, "grid_id", None)
        return grid_id is not None and grid_id in self.emergency_grid_ids

    def actor(self) -> str:
        """How this viewer is named in timelines and the audit log."""
        return self.viewer.subject
