"""One error hierarchy for expected failures. hub.api maps it to GraphQL errors in one place.

Messages are written for the client: they never carry personal data, SQL or exception text.
"""

from __future__ import annotations

from typing import Any


class GridHubError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class BadUserInput(GridHubError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None, **extensions: Any) -> None:
        if field is not None:
            extensions["field"] = field
        super().__init__(message, **extensions)


class NotFound(GridHubError):
    code = "NOT_FOUND"


class Forbidden(GridHubError):
    """The caller can see the row but its policy does not let it change it (its write scope)."""

    code = "FORBIDDEN"


class InvalidTransition(GridHubError):
    code = "INVALID_TRANSITION"


class Conflict(GridHubError):
    code = "CONFLICT"


class LimitExceeded(GridHubError):
    """A request went past an abuse limit; `code` names the limit so clients can tell them apart."""

    def __init__(self, code: str, message: str, **extensions: Any) -> None:
        super().__init__(message, **extensions)
        self.code = code


class Unauthenticated(GridHubError):
    """The credential is missing where one is needed, expired, tampered with or unknown."""

    code = "UNAUTHENTICATED"


class PurposeRequired(GridHubError):
    """Sensitive fields are read only with a stated purpose (hub.api.purpose)."""

    code = "PURPOSE_REQUIRED"


class PolicyRejected(GridHubError):
    """A policy change that does not load, or breaks an auditors' expectation."""

    code = "POLICY_REJECTED"
