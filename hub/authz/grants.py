"""Break-glass: time-boxed emergency grants (突发事件).

A role whose policy lets it call `openEmergencyGrant` opens a grant for itself: a reason, a grid
subtree and a duration (at most MAX_MINUTES). While it lasts, every row under that grid is in
the subject's scope (for the types its role sees at all) and its masked fields show in full. It
ends by itself at `expires_at` (or earlier with `closeEmergencyGrant`); opening and closing are
audit records of kind `emergency`, and auditors list every grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.authz.models import EmergencyGrant
from hub.authz.scopes import in_subtrees
from hub.db import utcnow
from hub.errors import BadUserInput, NotFound
from hub.grids.models import Grid

MAX_MINUTES = 240


@dataclass(frozen=True, slots=True)
class ActiveGrant:
    id: int
    subject: str
    role: str
    grid_path: str
    expires_at: datetime


async def open_grant(
    session: AsyncSession,
    *,
    subject: str,
    role: str,
    reason: str,
    grid_code: str,
    minutes: int,
    levels: frozenset[str],
    now: datetime | None = None,
) -> EmergencyGrant:
    """Open a grant over `grid_code`, whose level must be one of `levels` (the role's
    `EmergencyGrant, grant:<level>` lines): the policy bounds how much one grant unmasks."""
    # Bounded, one line: it is shown on the auditors' pages and kept with the grant for good.
    reason = validation.statement(reason, field="reason")
    if not 1 <= minutes <= MAX_MINUTES:
        raise BadUserInput(
            f"minutes must be between 1 and {MAX_MINUTES}", field="minutes", maximum=MAX_MINUTES
        )
    level = await session.scalar(select(Grid.level).where(Grid.code == grid_code))
    if level is None:
        raise BadUserInput(f"unknown grid code {validation.echoed(grid_code)}", field="gridCode")
    if level not in levels:
        raise BadUserInput(
            f"your role may open grants on a {' or '.join(sorted(levels)) or 'no grid'}, "
            f"not a {level}",
            field="gridCode",
            allowedLevels=sorted(levels),
        )
    opened = now or utcnow()
    grant = EmergencyGrant(
        subject=subject,
        role=role,
        reason=reason,
        grid_code=grid_code,
        opened_at=opened,
        expires_at=opened + timedelta(minutes=minutes),
    )
    session.add(grant)
    await session.flush()
    return grant


async def close_grant(
    session: AsyncSession, *, grant_id: int, subject: str, now: datetime | None = None
) -> EmergencyGrant:
    """Close one of the subject's own grants (another subject's is NOT_FOUND, like a missing
    one)."""
    grant = await session.scalar(
        select(EmergencyGrant).where(
            EmergencyGrant.id == grant_id, EmergencyGrant.subject == subject
        )
    )
    if grant is None:
        raise NotFound("emergency grant not found")
    if grant.closed_at is None:
        grant.closed_at = now or utcnow()
        await session.flush()
    return grant


def active_statement(now: datetime) -> Select[str, str, int, str, datetime]:
    return (
        select(
            EmergencyGrant.subject,
            EmergencyGrant.role,
            EmergencyGrant.id,
            Grid.path,
            EmergencyGrant.expires_at,
        )
        .join(Grid, Grid.code == EmergencyGrant.grid_code)
        .where(EmergencyGrant.closed_at.is_(None), EmergencyGrant.expires_at > now)
    )


async def active_grants(session: AsyncSession, *, now: datetime | None = None) -> list[ActiveGrant]:
    """Every open grant, for the registry's in-memory copy (refreshed with the policy)."""
    rows = await session.execute(active_statement(now or utcnow()))
    return [
        ActiveGrant(id=i, subject=s, role=r, grid_path=p, expires_at=e) for s, r, i, p, e in rows
    ]


async def grid_ids_under(session: AsyncSession, *, paths: tuple[str, ...]) -> frozenset[int]:
    """The grids at or under `paths`: the rows a grant unmasks are the ones in these grids."""
    if not paths:
        return frozenset()
    return frozenset(await session.scalars(select(Grid.id).where(in_subtrees(Grid.path, paths))))


def list_statement(*, active_at: datetime | None = None) -> Select[EmergencyGrant]:
    statement = select(EmergencyGrant)
    if active_at is not None:
        statement = statement.where(
            EmergencyGrant.closed_at.is_(None), EmergencyGrant.expires_at > active_at
        )
    return statement
