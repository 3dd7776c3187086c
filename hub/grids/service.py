"""Grid tree reads and writes. A subtree is one indexed range over the materialised path."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.errors import BadUserInput, NotFound
from hub.grids.models import PATH_END, Grid

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def subtree_of(path: str) -> ColumnElement[bool]:
    """Grids at or under the grid whose path is `path`: one range scan on ix_grids_path."""
    return (Grid.path >= path) & (Grid.path < path + PATH_END)


async def get_by_code(session: AsyncSession, *, code: str) -> Grid:
    grid = await session.scalar(select(Grid).where(Grid.code == code))
    if grid is None:
        raise NotFound(f"no grid with code {code!r}", field="gridCode")
    return grid


async def resolve_code(session: AsyncSession, *, code: str, field: str = "inGrid") -> Grid:
    """Like get_by_code, but an unknown code in a filter or input is the client's mistake."""
    grid = await session.scalar(select(Grid).where(Grid.code == code))
    if grid is None:
        raise BadUserInput(f"unknown grid code {code!r}", field=field)
    return grid


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
