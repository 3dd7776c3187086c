"""Write checks against the viewer's row scope: a mutation may only touch rows its role could
read, and may not create a row it could not read back. A target outside the scope is NOT_FOUND,
exactly like one that does not exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz import Access
from hub.errors import BadUserInput, NotFound


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
