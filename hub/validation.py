"""Small input checks shared by every domain. Errors name the field, never echo the value."""

from __future__ import annotations

import re

from hub.errors import BadUserInput

_PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise BadUserInput(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise BadUserInput(
            f"{field} is longer than {max_length} characters", field=field, maxLength=max_length
        )
    if _CONTROL.search(value):
        raise BadUserInput(f"{field} contains control characters", field=field)
    return value


def optional_text(value: str | None, *, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    return text(value, field=field, max_length=max_length, required=False) or None


def phone(value: str | None, *, field: str = "phone") -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip().replace(" ", "")
    if not _PHONE.match(value):
        raise BadUserInput("phone must be a mainland mobile or landline number", field=field)
    return value


def one_of(value: str, allowed: frozenset[str], *, field: str) -> str:
    if value not in allowed:
        raise BadUserInput(f"{field} must be one of {', '.join(sorted(allowed))}", field=field)
    return value
