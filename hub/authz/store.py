"""The live policy in the database: versions, who changed what and why, rollbacks.

The highest version is live. The first one is seeded from policies/policy.csv when the hub
first starts on a database; after that, changes go through `save` (GraphQL mutations, `gridhub
policy import`), each checked by the caller before it is stored (hub.authz.changes).
"""

from __future__ import annotations

import difflib

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz.models import PolicyVersion
from hub.errors import Conflict, NotFound


def policy_lines(text: str) -> list[str]:
    """The policy's lines without comments and blanks, normalised (", " between values)."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(", ".join(token.strip() for token in line.split(",")))
    return lines


def line_diff(old_text: str, new_text: str) -> str:
    """Lines removed (-) and added (+), order-insensitive: what an auditor reads."""
    old, new = set(policy_lines(old_text)), set(policy_lines(new_text))
    removed = sorted(old - new)
    added = sorted(new - old)
    return "\n".join([*(f"- {line}" for line in removed), *(f"+ {line}" for line in added)])


def text_diff(old_text: str, new_text: str) -> str:
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), "old", "new"
        )
    )


async def latest_version(session: AsyncSession) -> int:
    return (await session.scalar(select(func.max(PolicyVersion.version)))) or 0


async def current(session: AsyncSession) -> PolicyVersion | None:
    version = await latest_version(session)
    return await session.get(PolicyVersion, version) if version else None


async def get(session: AsyncSession, *, version: int) -> PolicyVersion:
    found = await session.get(PolicyVersion, version)
    if found is None:
        raise NotFound(f"policy version {version} not found")
    return found


async def save(
    session: AsyncSession,
    *,
    base: PolicyVersion | None,
    text: str,
    actor: str,
    reason: str,
    restores: int | None = None,
) -> PolicyVersion:
    """Store `text` as the version after `base` (the latest version the caller read and built
    on; None on an empty table). Two changes built on the same base cannot both win: the
    version number is the primary key, so the second fails with CONFLICT and nothing is lost."""
    version = PolicyVersion(
        version=(base.version if base else 0) + 1,
        actor=actor,
        reason=reason,
        text=text,
        diff=line_diff(base.text if base else "", text),
        restores=restores,
    )
    session.add(version)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("the policy changed meanwhile; reload and try again") from exc
    return version


async def seed(session: AsyncSession, *, text: str) -> PolicyVersion | None:
    """Store the policy files as version 1 on a database that has no policy yet."""
    if await latest_version(session):
        return None
    return await save(
        session, base=None, text=text, actor="system", reason="initial policy from policy.csv"
    )
