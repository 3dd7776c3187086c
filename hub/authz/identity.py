"""Who a request is: bearer tokens (JWT) and department API keys, resolved to one Viewer.

A token is verified with the configured HS256 secret or with an RS256/ES256 public key from the
JWKS file, chosen by the token's `kid`. Which of the two applies depends only on the token's
`alg`, and each algorithm has its own key store, so a public key can never be used as an HMAC
secret. Every failure raises AuthenticationFailed with a short, stable reason; nothing falls
back to another role. No Authorization header at all is the public role.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz.viewer import ANONYMOUS, PUBLIC_ROLE, Viewer
from hub.config import Settings
from hub.db import Database
from hub.departments.models import Department
from hub.errors import GridHubError
from hub.grids.models import Grid

# Clock skew tolerated between the token issuer and this server (exp, nbf, iat).
LEEWAY = timedelta(seconds=30)
Scope = tuple[str | None, tuple[str, ...]]
# How many verified tokens each worker remembers (hub.authz.identity.TokenVerifier).
VERIFIED_TOKENS = 1024
# How long a token's department and grid codes stay resolved (to an id and to paths) without
# asking the database again. A code names the same row for as long as it exists: grids never
# move, departments are never renumbered. Only a resolution that succeeded is remembered.
SCOPE_SECONDS = 60.0
SECRET_FILE = "jwt-secret"
# RFC 7518 3.2: an HS256 key at least as long as the hash output.
MIN_SECRET_BYTES = 32
API_KEY_SCHEME_PREFIX = "ghk_"
ROLE_HEADER = "X-GridHub-Role"

# The only algorithms accepted, and the key type each one is verified with.
HMAC_ALGORITHM = "HS256"
PUBLIC_KEY_ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}
ACCEPTED_ALGORITHMS = (HMAC_ALGORITHM, *PUBLIC_KEY_ALGORITHMS.values())

# Column widths of the audit log (AuditRecord.actor/role/department) and of the grid code.
MAX_SUBJECT = 128
MAX_ROLE = 64
MAX_CODE = 32
# Each grid code is one bound parameter of the resolving query; a credential never needs more.
MAX_GRIDS = 500


class AuthenticationFailed(GridHubError):
    """The credential of a request is not acceptable. `reason` is safe to show to the client."""

    code = "UNAUTHENTICATED"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RoleNotCarried(AuthenticationFailed):
    """A valid credential asked to act as a role it does not carry (X-GridHub-Role)."""


class IdentityConfigError(ValueError):
    """The server's own token configuration is unusable (bad JWKS file, too short a secret).

    Raised when the verifier is built, so a misconfigured server fails at start, not per request.
    """


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified credential says about its holder, before database resolution."""

    subject: str
    roles: tuple[str, ...]
    department_code: str | None
    grid_codes: tuple[str, ...]
    expires_at: datetime | None
    via: str  # "token" | "api_key"


# --- the HS256 secret -----------------------------------------------------------------------


def secret_file(settings: Settings) -> Path:
    """Where the development signing secret lives (used only without Settings.jwt_secret)."""
    return settings.data_dir / SECRET_FILE


def signing_secret(settings: Settings, *, create: bool) -> str | None:
    """The HS256 secret: Settings.jwt_secret, else the development secret file in data_dir.

    With `create`, a missing file is generated (random, mode 0600); without it, a missing file
    means no secret (None). There is never a built-in default.
    """
    if settings.jwt_secret is not None:
        return _checked(settings.jwt_secret, "the configured JWT secret (GRIDHUB_JWT_SECRET)")
    path = secret_file(settings)
    if not path.exists():
        if not create:
            return None
        create_secret_file(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise IdentityConfigError(f"cannot read the signing secret {path}: {error}") from None
    return _checked(text, f"the signing secret in {path}")


def _checked(secret: str, what: str) -> str:
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise IdentityConfigError(f"{what} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def create_secret_file(path: Path) -> None:
    """Write a fresh secret atomically: a private temporary file, then a hard link to the final
    name, which fails if another process got there first (its secret then wins)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file with mode 0600, so the secret is never readable by others.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jwt-secret-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        os.chmod(temporary, 0o600)
        # Another process created it first: keep theirs, so every process signs alike.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


# --- issuing ----------------------------------------------------------------------------------


def issue_token(
    settings: Settings,
    *,
    role: str | Sequence[str],
    subject: str,
    grids: Sequence[str] = (),
    department: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> str:
    """An HS256 token signed with the (possibly just generated) signing secret."""
    roles = [role] if isinstance(role, str) else list(role)
    if not roles or not all(roles):
        raise ValueError("a token needs at least one non-empty role")
    if not subject:
        raise ValueError("a token needs a subject")
    if ttl <= timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    secret = signing_secret(settings, create=True)
    assert secret is not None  # create=True always yields one
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "roles": roles,
    }
    if grids:
        payload["grids"] = list(grids)
    if department is not None:
        payload["department"] = department
    return jwt.encode(payload, secret, algorithm=HMAC_ALGORITHM)


TTL_PATTERN = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_TTL = timedelta(days=366)


def parse_ttl(text: str) -> timedelta:
    """'90s', '15m', '1h', '7d' -> timedelta; anything else (or zero, or over a year) fails."""
    match = TTL_PATTERN.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h or d (e.g. 1h)")
    ttl = timedelta(**{TTL_UNITS[match.group(2)]: int(match.group(1))})
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise ValueError(f"invalid duration {text!r}: must be more than 0 and at most 366d")
    return ttl


# --- verifying --------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies bearer tokens against the keys configured when it was built (built once)."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._secret = signing_secret(settings, create=False)
        self._keys = load_jwks(settings.jwks_file) if settings.jwks_file is not None else {}
        # Tokens already verified, until they expire: a client sends the same token with every
        # request, and its signature does not change. Bounded, oldest out first.
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        # (department code, grid codes) -> (department id, grid paths, monotonic expiry).
        self._scopes: OrderedDict[Scope, tuple[int | None, tuple[str, ...], float]] = OrderedDict()

    def resolved(self, claims: Claims) -> tuple[int | None, tuple[str, ...]] | None:
        """The department id and grid paths of the claims' codes, if resolved lately."""
        key = (claims.department_code, claims.grid_codes)
        found = self._scopes.get(key)
        if found is None or found[2] < time.monotonic():
            return None
        return found[0], found[1]

    def remember(self, viewer: Viewer) -> None:
        key = (viewer.department_code, viewer.grid_codes)
        expires = time.monotonic() + SCOPE_SECONDS
        self._scopes[key] = (viewer.department_id, viewer.grid_paths, expires)
        self._scopes.move_to_end(key)
        if len(self._scopes) > VERIFIED_TOKENS:
            self._scopes.popitem(last=False)

    def verify(self, token: str) -> Claims:
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at is not None:
            if cached.expires_at + LEEWAY > datetime.now(UTC):
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        if self._secret is None and not self._keys:
            raise AuthenticationFailed("no token signing key is configured")
        key = self._key_for(token)
        alg = key.algorithm_name if isinstance(key, PyJWK) else HMAC_ALGORITHM
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            raise AuthenticationFailed(_reason(error)) from None
        return claims_from_payload(payload)

    def _key_for(self, token: str) -> str | PyJWK:
        """The key the token's header asks for, among the configured ones only."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("malformed token") from None
        alg = header.get("alg")
        if alg == HMAC_ALGORITHM:
            if self._secret is None:
                raise AuthenticationFailed("HS256 tokens are not accepted here (no secret)")
            return self._secret
        if alg not in ACCEPTED_ALGORITHMS:
            raise AuthenticationFailed("token algorithm not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("token has no key id (kid)")
        key = self._keys.get(kid)
        if key is None:
            raise AuthenticationFailed("token signed with an unknown key")
        if key.algorithm_name != alg:
            raise AuthenticationFailed("token algorithm does not match its key")
        return key


def _reason(error: jwt.PyJWTError) -> str:
    """A stable message for each way a token can fail (PyJWT's own texts may change)."""
    # Subclasses before their bases: InvalidSignatureError is a DecodeError.
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token has the wrong issuer"
    if isinstance(error, jwt.InvalidAudienceError):
        return "token has the wrong audience"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the {error.claim!r} claim"
    if isinstance(error, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "token algorithm not accepted"
    if isinstance(error, jwt.DecodeError):
        return "malformed token"
    return "invalid token"


def claims_from_payload(payload: Mapping[str, Any]) -> Claims:
    """The claims of a verified token, each checked for shape (an issuer may send anything)."""
    subject = payload.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
        raise AuthenticationFailed(f"token subject must be 1 to {MAX_SUBJECT} characters")
    roles: list[str] = []
    if "roles" in payload:
        roles.extend(_names(payload["roles"], "roles", MAX_ROLE))
    if "role" in payload:
        single = payload["role"]
        if not isinstance(single, str):
            raise AuthenticationFailed("token claim 'role' must be a string")
        roles.extend(_names([single], "role", MAX_ROLE))
    if not roles:
        raise AuthenticationFailed("token carries no role")
    department = payload.get("department")
    if department is not None:
        department = _names([department], "department", MAX_CODE)[0]
    grids = _names(payload.get("grids", []), "grids", MAX_CODE)
    if len(grids) > MAX_GRIDS:
        raise AuthenticationFailed(f"token lists more than {MAX_GRIDS} grids")
    return Claims(
        subject=subject,
        roles=tuple(dict.fromkeys(roles)),
        department_code=department,
        grid_codes=tuple(dict.fromkeys(grids)),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        via="token",
    )


def _names(value: object, claim: str, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and 0 < len(item) <= limit for item in value
    ):
        raise AuthenticationFailed(
            f"token claim {claim!r} must hold names of 1 to {limit} characters"
        )
    return value


# --- the JWKS file ----------------------------------------------------------------------------


def load_jwks(path: Path) -> dict[str, PyJWK]:
    """The RS256/ES256 public keys of a JWKS file by kid.

    Keys meant for something else (`use` other than "sig", an `alg` we do not accept) are left
    out; a symmetric key, a private key, a key without kid or a duplicate kid is a configuration
    error, since each suggests the wrong file.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise IdentityConfigError(f"cannot read the JWKS file {path}: {error}") from None
    except ValueError:
        raise IdentityConfigError(f"the JWKS file {path} is not valid JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise IdentityConfigError(f"the JWKS file {path} has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for n, entry in enumerate(entries):
        where = f"key {n} of the JWKS file {path}"
        key = _public_key(entry, where)
        if key is None:
            continue
        kid = str(entry["kid"])
        if kid in keys:
            raise IdentityConfigError(f"{where} repeats the kid {kid!r}")
        keys[kid] = key
    if not keys:
        raise IdentityConfigError(f"the JWKS file {path} holds no RS256 or ES256 signing key")
    return keys


def _public_key(entry: object, where: str) -> PyJWK | None:
    if not isinstance(entry, dict):
        raise IdentityConfigError(f"{where} is not a JSON object")
    kty = entry.get("kty")
    if kty == "oct":
        raise IdentityConfigError(
            f"{where} is a symmetric key: configure an HS256 secret as GRIDHUB_JWT_SECRET"
        )
    if "d" in entry:
        raise IdentityConfigError(f"{where} is a private key: the JWKS file needs public keys")
    if entry.get("use", "sig") != "sig":
        return None
    alg = PUBLIC_KEY_ALGORITHMS.get(str(kty))
    if alg is None or entry.get("alg", alg) != alg:
        return None
    if kty == "EC" and entry.get("crv") != "P-256":
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IdentityConfigError(f"{where} has no kid (tokens pick their key by kid)")
    try:
        key = PyJWK(entry, algorithm=alg)
    except jwt.PyJWTError as error:
        raise IdentityConfigError(f"{where} is not a usable {alg} key: {error}") from None
    if problem := key.Algorithm.check_key_length(key.key):
        raise IdentityConfigError(f"{where}: {problem}")
    return key


# --- a request's viewer -----------------------------------------------------------------------


async def authenticate(
    db: Database, verifier: TokenVerifier, *, authorization: str | None, role: str | None
) -> Viewer:
    """The Viewer of a request from its Authorization and X-GridHub-Role headers."""
    requested = role.strip() if role and role.strip() else None
    if authorization is None:
        if requested not in (None, PUBLIC_ROLE):
            raise AuthenticationFailed(f"role {requested!r} needs a credential that carries it")
        return ANONYMOUS
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("unsupported authorization scheme")
    credential = credential.strip()
    if not credential:
        raise AuthenticationFailed("empty bearer credential")
    if credential.startswith(API_KEY_SCHEME_PREFIX):
        # Imported here: apikeys imports this module for AuthenticationFailed.
        from hub.authz import apikeys

        # A transaction, not a reader: verifying may record when the key was last used.
        async with db.transaction() as session:
            key = await apikeys.verify(session, credential)
            claims = Claims(
                subject=f"apikey:{key.name}",
                roles=(key.role,),
                department_code=key.department_code,
                grid_codes=tuple(key.grid_codes or ()),
                expires_at=None,
                via="api_key",
            )
            chosen = select_role(claims.roles, requested)
            return await resolve_viewer(session, claims, chosen)
    claims = verifier.verify(credential)
    chosen = select_role(claims.roles, requested)
    if claims.department_code is None and not claims.grid_codes:
        return _viewer(claims, chosen, department_id=None, grid_paths=())
    resolved = verifier.resolved(claims)
    if resolved is not None:
        return _viewer(claims, chosen, department_id=resolved[0], grid_paths=resolved[1])
    async with db.reader() as session:
        viewer = await resolve_viewer(session, claims, chosen)
    verifier.remember(viewer)
    return viewer


def select_role(roles: Sequence[str], requested: str | None) -> str:
    """The one role a request acts as: the only one, or the one the client picked."""
    if requested is not None:
        if requested not in roles:
            raise RoleNotCarried(f"the credential does not carry the role {requested!r}")
        return requested
    if len(roles) == 1:
        return roles[0]
    raise AuthenticationFailed(
        f"the credential carries several roles ({', '.join(roles)}): "
        f"pick one with the {ROLE_HEADER} header"
    )


async def resolve_viewer(session: AsyncSession, claims: Claims, role: str) -> Viewer:
    """The Viewer with the credential's department and grid codes resolved in this database.
    An unknown code fails authentication: a credential naming nothing must not see anything."""
    department_id: int | None = None
    if claims.department_code is not None:
        department_id = await session.scalar(
            select(Department.id).where(Department.code == claims.department_code)
        )
        if department_id is None:
            raise AuthenticationFailed(
                f"the credential names an unknown department code {claims.department_code!r}"
            )
    paths: dict[str, str] = {}
    if claims.grid_codes:
        rows = await session.execute(
            select(Grid.code, Grid.path).where(Grid.code.in_(claims.grid_codes))
        )
        paths = {code: path for code, path in rows}
        unknown = [code for code in claims.grid_codes if code not in paths]
        if unknown:
            shown = ", ".join(repr(code) for code in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise AuthenticationFailed(f"the credential names unknown grid code(s) {shown}{more}")
    return _viewer(
        claims,
        role,
        department_id=department_id,
        grid_paths=tuple(paths[code] for code in claims.grid_codes),
    )


def _viewer(
    claims: Claims, role: str, *, department_id: int | None, grid_paths: tuple[str, ...]
) -> Viewer:
    return Viewer(
        subject=claims.subject,
        role=role,
        via=claims.via,
        department_code=claims.department_code,
        department_id=department_id,
        grid_codes=claims.grid_codes,
        grid_paths=grid_paths,
        expires_at=claims.expires_at,
    )
