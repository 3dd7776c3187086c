"""Global object ids: opaque to clients, typed inside ("Resident:42", base64url)."""

from __future__ import annotations

import base64
import binascii

import strawberry

from hub.errors import BadUserInput


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    raw = f"{type_name}:{pk}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


# Primary keys are 32-bit INTEGER columns; a bigger number would fail the query on PostgreSQL
# (and SQLite) rather than find nothing, so it is no id of ours.
_PK_RANGE = range(1, 2**31)


def parse_global_id(value: str, *, field: str = "id") -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        type_name, pk = raw.split(":", 1)
        number = int(pk)
        if number not in _PK_RANGE:
            raise ValueError("out of range")
        return type_name, number
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadUserInput("not a valid id", field=field) from None


def pk_of(value: str, type_name: str, *, field: str = "id") -> int:
    kind, pk = parse_global_id(value, field=field)
    if kind != type_name:
        raise BadUserInput(f"expected the id of a {type_name}", field=field)
    return pk
