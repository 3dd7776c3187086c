"""Grid tree reads and writes. A subtree is one indexed range over the materialised path."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.errors import BadUserInput
from hub.grids.models import PATH_END, Grid

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def subtree_of(path: str) -> ColumnElement[bool]:
    """Grids at or under the grid whose path is `path`: one range scan on ix_grids_path."""
    return (Grid.path >= path) & (Grid.path < path + PATH_END)


async def resolve_code(session: AsyncSession, *, code: str, field: str = "inGrid") -> Grid:
    """The grid with this code; an unknown code in a filter or input is the client's mistake."""
    grid = await session.scalar(select(Grid).where(Grid.code == code))
    if grid is None:
        raise BadUserInput(f"unknown grid code {validation.echoed(code)}", field=field)
    return grid


async def resolve_codes(session: AsyncSession, *, codes: Sequence[str], field: str) -> list[Grid]:
    """The grids with these codes, in the order given (each once), in one query. The caller
    bounds `codes`: each distinct code is a bound parameter."""
    wanted = list(dict.fromkeys(codes))
    if not wanted:
        return []
    found = {g.code: g for g in await session.scalars(select(Grid).where(Grid.code.in_(wanted)))}
    unknown = [n for n, code in enumerate(codes) if code not in found]
    if unknown:
        # Positions, not values: a long list may hold anything pasted into it.
        raise BadUserInput(
            f"{len(unknown)} unknown grid code(s)", field=field, unknownIndexes=unknown[:100]
        )
    return [found[code] for code in wanted]


async def subtree_ids(session: AsyncSession, *, code: str) -> Select[int]:
    """A sub-select of the ids of the grid `code` and everything under it."""
    grid = await resolve_code(session, code=code)
    return select(Grid.id).where(subtree_of(grid.path))


def list_statement(*, level: str | None = None, parent_id: int | None = None) -> Select[Any]:
    statement = select(Grid)
    if level is not None:
        statement = statement.where(Grid.level == level)
    if parent_id is not None:
        statement = statement.where(Grid.parent_id == parent_id)
    return statement


async def create(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    level: str,
    parent: Grid | None,
    center: tuple[float, float] | None = None,
    boundary: dict[str, Any] | None = None,
) -> Grid:
    if not CODE_PATTERN.match(code):
        raise BadUserInput("grid code may hold only letters, digits, '_' and '-'", field="code")
    path = (parent.path if parent else "/") + code + "/"
    grid = Grid(
        code=code,
        name=name,
        level=level,
        depth=(parent.depth + 1) if parent else 0,
        parent_id=parent.id if parent else None,
        path=path,
        boundary=boundary,
        center_lng=center[0] if center else None,
        center_lat=center[1] if center else None,
    )
    session.add(grid)
    await session.flush()
    return grid


def ancestor_codes(grid: Grid) -> list[str]:
    return [code for code in grid.path.split("/") if code]


@dataclasses.dataclass(slots=True)
class Subtree:
    """Membership in one grid's subtree, for a long-lived reader such as a subscription.

    The subtree's ids are read once (`load`); a grid created later is classified on first sight
    (`classify`, one indexed lookup) and remembered, so a feed never re-reads the tree per change.
    Grids are never moved between parents, so a classification stays true.
    """

    path: str
    inside: set[int]
    # Grids that existed at load time have ids up to this; any not `inside` are outside.
    known_up_to: int
    new_outside: set[int] = dataclasses.field(default_factory=set)

    @classmethod
    async def load(cls, session: AsyncSession, *, code: str, field: str = "inGrid") -> Subtree:
        root = await resolve_code(session, code=code, field=field)
        ids = await session.scalars(select(Grid.id).where(subtree_of(root.path)))
        newest = await session.scalar(select(func.max(Grid.id)))
        return cls(path=root.path, inside=set(ids.all()), known_up_to=newest or 0)

    def known(self, grid_id: int) -> bool | None:
        """Whether the grid is in the subtree, or None when it is newer than what was loaded."""
        if grid_id in self.inside:
            return True
        if grid_id <= self.known_up_to or grid_id in self.new_outside:
            return False
        return None

    async def classify(self, session: AsyncSession, grid_id: int) -> bool:
        """Look a grid newer than the load up, and remember the answer."""
        found = await session.scalar(
            select(Grid.id).where(Grid.id == grid_id, subtree_of(self.path))
        )
        (self.inside if found is not None else self.new_outside).add(grid_id)
        return found is not None
