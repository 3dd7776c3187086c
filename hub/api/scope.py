"""Write checks against the viewer's row scope: a mutation may only touch rows its role could
read, and may not create a row it could not read back. A target outside the scope is NOT_FOUND,
exactly like one that does not exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz import Access
from hub.authz.access import TYPE_OF_MODEL
from hub.errors import BadUserInput, NotFound
from hub.grids.models import Grid


async def visible(session: AsyncSession, access: Access, model: type[Any], condition: Any) -> bool:
    statement = access.rows(select(model.id).where(condition), model)
    return await session.scalar(statement.limit(1)) is not None


async def require_visible(
    session: AsyncSession, access: Access, model: type[Any], pk: int, what: str
) -> None:
    if not await visible(session, access, model, model.id == pk):
        raise NotFound(f"{what} not found")


async def require_created_in_scope(
    session: AsyncSession, access: Access, model: type[Any], pk: int, *, field: str
) -> None:
    """After an insert (in the same transaction): the new row must lie in the viewer's scope,
    or the transaction is rolled back."""
    if not await visible(session, access, model, model.id == pk):
        raise BadUserInput(f"{field} is outside your scope", field=field)


async def require_grid_in_scope(
    session: AsyncSession, access: Access, model: type[Any], grid_code: str, *, field: str
) -> None:
    """Before a write that puts a row of `model` in the grid `grid_code`: refuse a grid outside
    the viewer's grid scope before anything else is checked, so that what would be said about
    the rest of the input (e.g. that an ID number already exists) is never said about rows the
    viewer cannot see. Scopes that are not about grids are checked after the write."""
    type_name = TYPE_OF_MODEL[model]
    scopes = access.profile.scopes.get(type_name, frozenset())
    if "all" in scopes or "own_grids" not in scopes:
        return
    path = await session.scalar(select(Grid.path).where(Grid.code == grid_code))
    if path is None:
        return  # an unknown code: the service says so, as for anyone
    roots = (*access.viewer.grid_paths, *access.emergency_paths)
    if not any(path.startswith(root) for root in roots):
        raise BadUserInput(f"{field} is outside your scope", field=field)
