"""Browser sessions for the dispatch board and the auditors' console, in one sealed cookie.

A session holds the credential its user pasted at sign-in (a token or an API key) and is checked
again on every request exactly as an Authorization header would be: an expired token or a
revoked key ends the session. The cookie is sealed with AES-GCM (encrypted and authenticated),
so it can be neither read nor forged; it is HttpOnly, SameSite=Strict and Secure (hub.web).

CSRF: every state-changing form carries a token derived from the session's random nonce with
an HMAC. The same scheme, on a nonce cookie of its own, protects the anonymous feedback form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz.identity import IdentityConfigError, create_secret_file
from hub.authz.models import ApiKey, EndedSession
from hub.authz.viewer import Viewer
from hub.config import Settings
from hub.db import utcnow

SESSION_COOKIE = "gridhub_session"
# How hub.authz.identity names the subject of an API key.
API_KEY_SUBJECT_PREFIX = "apikey:"
ANONYMOUS_COOKIE = "gridhub_form"
SECRET_FILE = "session-secret"
MIN_SECRET_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Session:
    credential: str
    # The role picked at sign-in, for a credential that carries several (X-GridHub-Role).
    role: str | None
    nonce: str
    expires: int

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires


def session_secret(settings: Settings, *, create: bool = True) -> bytes:
    """The sealing secret: Settings.session_secret, else a file generated once into data_dir
    (every worker of one hub shares it). Never a built-in default."""
    if settings.session_secret is not None:
        text = settings.session_secret
        what = "the configured session secret (GRIDHUB_SESSION_SECRET)"
    else:
        path: Path = settings.data_dir / SECRET_FILE
        if not path.exists():
            if not create:
                raise IdentityConfigError(f"no session secret at {path}")
            create_secret_file(path)
        text = path.read_text(encoding="utf-8").strip()
        what = f"the session secret in {path}"
    if len(text.encode("utf-8")) < MIN_SECRET_BYTES:
        raise IdentityConfigError(f"{what} is shorter than {MIN_SECRET_BYTES} bytes")
    return text.encode("utf-8")


class Sealer:
    """Seals and opens session cookies and derives CSRF tokens, all from one secret."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(_derive(secret, b"gridhub session cookie"))
        self._csrf_key = _derive(secret, b"gridhub csrf")

    def seal(self, credential: str, *, role: str | None, lifetime_seconds: float) -> str:
        payload = {
            "c": credential,
            "r": role,
            "n": secrets.token_urlsafe(16),
            "e": int(time.time() + lifetime_seconds),
        }
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return _b64(nonce + self._aead.encrypt(nonce, plain, SESSION_COOKIE.encode()))

    def open(self, cookie: str | None) -> Session | None:
        """The session in a cookie, or None when it is missing, forged, damaged or expired."""
        if not cookie or len(cookie) > 8192:
            return None
        try:
            raw = _unb64(cookie)
            plain = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], SESSION_COOKIE.encode()
            )
            payload = json.loads(plain)
            session = Session(
                credential=str(payload["c"]),
                role=payload["r"] if isinstance(payload["r"], str) else None,
                nonce=str(payload["n"]),
                expires=int(payload["e"]),
            )
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None
        return None if session.expired() else session

    def csrf_token(self, nonce: str) -> str:
        return _b64(hmac.new(self._csrf_key, nonce.encode("utf-8"), hashlib.sha256).digest())

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)


async def end(session: AsyncSession, ended: Session) -> None:
    """Sign-out: the session stops working everywhere, copies of its cookie included. Rows of
    sessions past their own expiry are dropped on the way."""
    await session.execute(delete(EndedSession).where(EndedSession.expires_at < utcnow()))
    key = _nonce_hash(ended.nonce)
    if await session.get(EndedSession, key) is None:
        session.add(
            EndedSession(
                nonce_hash=key,
                expires_at=datetime.fromtimestamp(ended.expires, UTC),
            )
        )


async def has_ended(session: AsyncSession, nonce: str) -> bool:
    found = await session.execute(
        select(EndedSession.nonce_hash).where(EndedSession.nonce_hash == _nonce_hash(nonce))
    )
    return found.first() is not None


async def withdrawn(session: AsyncSession, viewer: Viewer) -> str | None:
    """Why a long-lived connection's credential no longer holds, or None while it does: its
    browser session was signed out, or its API key was revoked. (A token's own expiry is
    checked without the database, from Viewer.expires_at.)"""
    if viewer.session_nonce is not None and await has_ended(session, viewer.session_nonce):
        return "the session was signed out"
    if viewer.via == "api_key" and viewer.subject.startswith(API_KEY_SUBJECT_PREFIX):
        name = viewer.subject.removeprefix(API_KEY_SUBJECT_PREFIX)
        revoked = await session.scalar(select(ApiKey.revoked_at).where(ApiKey.name == name))
        if revoked is not None:
            return "the API key was revoked"
    return None


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def new_form_nonce() -> str:
    """The random value of an anonymous visitor's CSRF cookie."""
    return secrets.token_urlsafe(16)


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
