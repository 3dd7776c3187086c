"""Row scopes as SQL: which rows of a type a viewer sees, as one WHERE clause.

A policy line `p, grid_worker, Resident, rows:own_grids, allow` becomes, for a worker responsible
for grid G0101, `residents.grid_id IN (SELECT id FROM grids WHERE path in G0101's subtree)`.
Sub-selects use their own aliases and never correlate with the statement they are added to, so a
statement that already joins grids or member_grids (the loaders do) cannot capture them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import aliased

from hub.authz.models import AuditRecord, EmergencyGrant, PolicyVersion
from hub.authz.viewer import Viewer
from hub.departments.models import Department
from hub.events.models import Event
from hub.feedback.models import Feedback
from hub.grids.models import PATH_END, Grid
from hub.members.models import Member, member_grids
from hub.notices.models import Notice, notice_grids
from hub.residents.models import Resident
from hub.sync.models import SyncConflict, SyncQuarantine, SyncRun, WebhookDelivery

Clause = ColumnElement[bool]


def in_subtrees(path_column: Any, paths: Iterable[str]) -> Clause:
    """`path_column` lies in one of the subtrees rooted at `paths`."""
    ranges = [(path_column >= p) & (path_column < p + PATH_END) for p in paths]
    return or_(*ranges) if ranges else false()


def _grid_ids_under(paths: Iterable[str]) -> Any:
    grid = aliased(Grid)
    return select(grid.id).where(in_subtrees(grid.path, paths)).correlate(None)


def _grid_bound(column: Any) -> Callable[[tuple[str, ...]], Clause]:
    return lambda paths: column.in_(_grid_ids_under(paths))


def _linked_under(
    link: Any, owner_column: Any, owner: type[Any]
) -> Callable[[tuple[str, ...]], Clause]:
    """Rows linked to some grid under `paths` through a link table (member_grids,
    notice_grids): an EXISTS over an alias of it, correlated with `owner` only."""

    def clause(paths: tuple[str, ...]) -> Clause:
        alias = link.alias()
        grid = aliased(Grid)
        return exists(
            select(1)
            .select_from(alias)
            .join(grid, grid.id == alias.c.grid_id)
            .where(alias.c[owner_column] == owner.id, in_subtrees(grid.path, paths))
        ).correlate(owner)

    return clause


# Per type: the clause for "rows under these grid paths" (own_grids, emergency grants).
UNDER_GRIDS: Mapping[type[Any], Callable[[tuple[str, ...]], Clause]] = {
    Grid: lambda paths: in_subtrees(Grid.path, paths),
    Resident: _grid_bound(Resident.grid_id),
    Event: _grid_bound(Event.grid_id),
    Feedback: _grid_bound(Feedback.grid_id),
    Member: _linked_under(member_grids, "member_id", Member),
    Notice: _linked_under(notice_grids, "notice_id", Notice),
}


def _wholly_under(
    link: Any, owner_column: Any, owner: type[Any]
) -> Callable[[tuple[str, ...]], Clause]:
    """Rows all of whose linked grids lie under `paths` (a write must not reach past them: a
    notice for a community and the whole district is not the community office's to change)."""

    def clause(paths: tuple[str, ...]) -> Clause:
        alias = link.alias()
        grid = aliased(Grid)
        outside = exists(
            select(1)
            .select_from(alias)
            .join(grid, grid.id == alias.c.grid_id)
            .where(alias.c[owner_column] == owner.id, ~in_subtrees(grid.path, paths))
        ).correlate(owner)
        return _linked_under(link, owner_column, owner)(paths) & ~outside

    return clause


# For writes, per type linked to several grids: rows wholly under the grid paths.
WHOLLY_UNDER_GRIDS: Mapping[type[Any], Callable[[tuple[str, ...]], Clause]] = {
    Member: _wholly_under(member_grids, "member_id", Member),
    Notice: _wholly_under(notice_grids, "notice_id", Notice),
}

# Per type: the column that says which department a row is assigned to.
DEPARTMENT_COLUMN: Mapping[type[Any], Any] = {
    Event: Event.department_id,
    Notice: Notice.department_id,
    Member: Member.department_id,
    Feedback: Feedback.responder_department_id,
    Department: Department.id,
}

PUBLISHED: Mapping[type[Any], Clause] = {Notice: Notice.status == "published"}

# Per type: the column naming the subject a row belongs to (`own`: a subject's own grants).
SUBJECT_COLUMN: Mapping[type[Any], Any] = {EmergencyGrant: EmergencyGrant.subject}

# Types whose rows show to whoever names their secret tracking code (`tracked`): no list, no
# lookup by id, only the lookup by code (hub.api.queries.Query.feedback, Query.event: an
# event's code is what its reporter follows it by).
TRACKED: frozenset[type[Any]] = frozenset({Feedback, Event})

# The types with rows of their own, by GraphQL name, and the scopes each one supports.
SCOPED_TYPES: Mapping[str, type[Any]] = {
    "Grid": Grid,
    "Department": Department,
    "Member": Member,
    "Resident": Resident,
    "Event": Event,
    "Notice": Notice,
    "Feedback": Feedback,
    "AuditRecord": AuditRecord,
    "PolicyVersion": PolicyVersion,
    "EmergencyGrant": EmergencyGrant,
    # What the connectors did: operators' business, whole tables or nothing (scope `all`).
    "SyncRun": SyncRun,
    "SyncQuarantineItem": SyncQuarantine,
    "SyncConflict": SyncConflict,
    "WebhookDelivery": WebhookDelivery,
}


def supported_scopes(model: type[Any]) -> frozenset[str]:
    scopes = {"all"}
    if model in UNDER_GRIDS:
        scopes.add("own_grids")
    if model in DEPARTMENT_COLUMN:
        scopes.add("own_department")
    if model in PUBLISHED:
        scopes.add("published")
    if model in SUBJECT_COLUMN:
        scopes.add("own")
    if model in TRACKED:
        scopes.add("tracked")
    return frozenset(scopes)


def scope_clause(model: type[Any], scope: str, viewer: Viewer, *, writing: bool = False) -> Clause:
    """The rows of `model` in `scope` for `viewer`; `writing` narrows rows linked to several
    grids to those wholly inside the viewer's grids."""
    if scope == "all":
        return true()
    if scope == "own_grids":
        if writing and model in WHOLLY_UNDER_GRIDS:
            return WHOLLY_UNDER_GRIDS[model](viewer.grid_paths)
        return UNDER_GRIDS[model](viewer.grid_paths)
    if scope == "own_department":
        if viewer.department_id is None:
            return false()
        return DEPARTMENT_COLUMN[model] == viewer.department_id
    if scope == "published":
        return PUBLISHED[model]
    if scope == "own":
        return SUBJECT_COLUMN[model] == viewer.subject
    if scope == "tracked":
        # Only a lookup that names the tracking code reaches such a row (Access.tracks).
        return false()
    raise ValueError(f"unknown scope {scope}")  # compile_profiles refuses it first
