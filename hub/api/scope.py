"""Write checks: a mutation changes only rows inside its role's write scope (`write:<scope>` lines,
hub.authz.profile), creates only rows inside it, and attributes what it writes to the caller
unless the policy grants `on_behalf`.

Every answer here depends only on what the caller can read: a target outside the read scope is
NOT_FOUND, exactly like one that does not exist; a target the caller can read but not change is
FORBIDDEN (the caller already knows it exists).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz import Access
from hub.authz.access import TYPE_OF_MODEL
from hub.errors import BadUserInput, Forbidden, NotFound
from hub.grids.models import Grid

# The strawberry field metadata key a mutation declares the type it writes under.
WRITES_KEY = "gridhub.writes"

# Inputs that attribute a row to someone: the department a notice is issued by, who reported an
# event, the department that answers feedback. Named by the input field, or, for a mutation
# argument, by the output field it sets (`Feedback.responder`). hub.authz.profile checks
# `on_behalf` lines against this set.
ATTRIBUTIONS = frozenset(
    {
        "CreateNoticeInput.departmentCode",
        "ReportEventInput.reporterMemberId",
        "ReportEventInput.reporterResidentId",
        "ReportEventInput.reporterSystem",
        "Feedback.responder",
    }
)


def writes(type_name: str) -> dict[str, str]:
    """A mutation's metadata: the type whose rows it changes or creates. A role that may call it
    needs a write scope for that type, or its policy does not compile."""
    return {WRITES_KEY: type_name}


async def visible(session: AsyncSession, access: Access, model: type[Any], condition: Any) -> bool:
    statement = access.rows(select(model.id).where(condition), model)
    return await session.scalar(statement.limit(1)) is not None


async def writable(session: AsyncSession, access: Access, model: type[Any], condition: Any) -> bool:
    statement = access.writable(select(model.id).where(condition), model)
    return await session.scalar(statement.limit(1)) is not None


async def require_visible(
    session: AsyncSession, access: Access, model: type[Any], pk: int, what: str
) -> None:
    if not await visible(session, access, model, model.id == pk):
        raise NotFound(f"{what} not found")


async def require_writable(
    session: AsyncSession, access: Access, model: type[Any], condition: Any, what: str
) -> None:
    """The target of a change: NOT_FOUND outside the read scope (as if missing), FORBIDDEN
    inside it but outside the write scope."""
    if not await visible(session, access, model, condition):
        raise NotFound(f"{what} not found")
    if not await writable(session, access, model, condition):
        raise Forbidden(f"this {what} is outside what you may change")


async def require_created_in_scope(
    session: AsyncSession, access: Access, model: type[Any], pk: int, *, field: str
) -> None:
    """After an insert or a change (in the same transaction): the row must lie in the viewer's
    read and write scopes, or the transaction is rolled back."""
    both = access.writable(access.rows(select(model.id).where(model.id == pk), model), model)
    if await session.scalar(both.limit(1)) is None:
        raise BadUserInput(f"{field} is outside your scope", field=field)


async def require_grid_in_scope(
    session: AsyncSession, access: Access, model: type[Any], grid_code: str, *, field: str
) -> None:
    """Before a write that puts a row of `model` in the grid `grid_code`: refuse a grid outside
    the viewer's grid write scope before anything else is checked, so that what would be said
    about the rest of the input is never said about rows the viewer may not write. Scopes that
    are not about grids are checked after the write."""
    type_name = TYPE_OF_MODEL[model]
    scopes = access.profile.write_scopes.get(type_name, frozenset())
    if "all" in scopes or "own_grids" not in scopes:
        return
    path = await session.scalar(select(Grid.path).where(Grid.code == grid_code))
    if path is None:
        return  # an unknown code: the service says so, as for anyone
    if not any(path.startswith(root) for root in access.viewer.grid_paths):
        raise BadUserInput(f"{field} is outside your scope", field=field)


def attributed_department(
    access: Access, given: str | None, *, attribution: str, field: str = "departmentCode"
) -> str:
    """The department a row is attributed to: the caller's own, or (with `on_behalf`) the one
    given in the input `field`."""
    own = access.viewer.department_code
    if given is None or given == own:
        if own is None:
            raise BadUserInput(
                f"{field} is required: your credential names no department", field=field
            )
        return own
    if attribution not in access.profile.on_behalf:
        raise BadUserInput(f"{field} must be your own department", field=field)
    return given


def require_on_behalf(access: Access, attribution: str, given: object) -> None:
    """An attribution with no "own" value for the caller (who reported an event, which system
    it came from) may be given only with `on_behalf`."""
    if given is not None and attribution not in access.profile.on_behalf:
        field = attribution.partition(".")[2]
        raise BadUserInput(f"you may not set {field}", field=field)
