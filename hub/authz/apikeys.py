"""API keys of department systems: `ghk_<prefix>_<secret>`, stored as a hash, shown once.

The prefix (8 letters and digits) finds the row; the secret (32 random bytes, url-safe base64)
is checked against its SHA-256. A plain hash is enough because the secret is random and long:
there is nothing to guess that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz.identity import MAX_CODE, MAX_GRIDS, MAX_ROLE, AuthenticationFailed
from hub.authz.models import ApiKey
from hub.departments import service as departments
from hub.errors import BadUserInput, Conflict, NotFound
from hub.grids import service as grids

KEY_PREFIX = "ghk_"
PREFIX_LENGTH = 8
PREFIX_ALPHABET = string.ascii_letters + string.digits
SECRET_BYTES = 32
# A key's last use is written at most this often, so a busy key does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME = 64

# The prefix has no "_", so the key splits unambiguously; the secret is url-safe base64.
KEY_PATTERN = re.compile(
    rf"^{KEY_PREFIX}(?P<prefix>[A-Za-z0-9]{{{PREFIX_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{43,128}})$"
)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


async def create(
    session: AsyncSession,
    *,
    name: str,
    role: str,
    department_code: str | None = None,
    grid_codes: Sequence[str] = (),
) -> tuple[ApiKey, str]:
    """A new key and its plain text, which is returned only here and never stored."""
    if not name or len(name) > MAX_NAME:
        raise BadUserInput(f"an API key name has 1 to {MAX_NAME} characters", field="name")
    if not role or len(role) > MAX_ROLE:
        raise BadUserInput(f"a role has 1 to {MAX_ROLE} characters", field="role")
    if len(grid_codes) > MAX_GRIDS:
        raise BadUserInput(f"an API key holds at most {MAX_GRIDS} grids", field="grids")
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"an API key named {name!r} already exists")
    # Codes are checked now, and again on every use (a department or grid may go away).
    if department_code is not None:
        if len(department_code) > MAX_CODE:
            raise BadUserInput(
                f"a department code has at most {MAX_CODE} characters", field="department"
            )
        await departments.resolve_code(session, code=department_code, field="department")
    codes = list(dict.fromkeys(grid_codes))
    await grids.resolve_codes(session, codes=codes, field="grids")
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(
        name=name,
        role=role,
        department_code=department_code,
        grid_codes=codes,
        prefix=prefix,
        secret_hash=hash_secret(secret),
    )
    session.add(key)
    await session.flush()
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


async def revoke(session: AsyncSession, *, name: str) -> ApiKey:
    """Revoke the key named `name`; revoking it again keeps the first revocation time."""
    key = await session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFound(f"no API key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()
    return key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def verify(session: AsyncSession, key: str, *, now: datetime | None = None) -> ApiKey:
    """The live key `key` is, recording its use; fails for a malformed, unknown or revoked key."""
    match = KEY_PATTERN.match(key)
    if match is None:
        raise AuthenticationFailed("malformed API key")
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == match["prefix"]))
    # One message for an unknown prefix and a wrong secret: a caller cannot probe for prefixes.
    if row is None or not hmac.compare_digest(hash_secret(match["secret"]), row.secret_hash):
        raise AuthenticationFailed("unknown API key")
    if row.revoked_at is not None:
        raise AuthenticationFailed("API key revoked")
    moment = now or datetime.now(UTC)
    if row.last_used_at is None or moment - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = moment
        await session.flush()
    return row
