"""Who is asking: the identity a request (or a connector run) acts as."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

PUBLIC_ROLE = "public"


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated subject acting as exactly one role.

    `grid_codes` and `department_code` come from the token or API key; `grid_paths` and
    `department_id` are what they resolve to in this database (hub.authz.identity), which is what
    the row scopes use. `expires_at` is when the credential stops being valid (None: never, as
    for the public role and API keys): a subscription stops delivering then.
    """

    subject: str = "anonymous"
    role: str = PUBLIC_ROLE
    # token | api_key | anonymous | system (the CLI and the demo loader)
    via: str = "anonymous"
    department_code: str | None = None
    department_id: int | None = None
    grid_codes: tuple[str, ...] = ()
    grid_paths: tuple[str, ...] = field(default=())
    expires_at: datetime | None = None
    # Set when a browser session's cookie authenticated a long-lived connection (the board's
    # WebSocket): signing out of that session ends the connection too (hub.authz.sessions).
    session_nonce: str | None = None


ANONYMOUS = Viewer()
