"""Global object ids: opaque to clients, typed inside ("Resident:42", base64url)."""

from __future__ import annotations

import base64
import binascii
import re

import strawberry

from hub.errors import BadUserInput


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    raw = f"{type_name}:{pk}".encode()
    return strawberry.ID(base64.urlsafe_b64encode(raw).decode().rstrip("="))


# Primary keys are 32-bit INTEGER columns; a bigger number would fail the query on PostgreSQL
# (and SQLite) rather than find nothing, so it is no id of ours.
_PK_RANGE = range(1, 2**31)
# What to_global_id writes inside: a GraphQL type name, a colon, the key in ASCII digits. Python's
# int() also takes " 1", "1_0", "+1" and other scripts' digits ("١"): one row would have many
# ids, and a digit string of any length costs int() quadratic time.
_INSIDE = re.compile(r"(?P<type>[_A-Za-z][_0-9A-Za-z]{0,63}):(?P<pk>[1-9][0-9]{0,9})")


def parse_global_id(value: str, *, field: str = "id") -> tuple[str, int]:
    """The type name and key inside an id that to_global_id wrote (with or without its padding);
    anything else is BAD_USER_INPUT."""
    try:
        padded = value + "=" * (-len(value) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        raise BadUserInput("not a valid id", field=field) from None
    inside = _INSIDE.fullmatch(raw)
    if inside is None or int(inside["pk"]) not in _PK_RANGE:
        raise BadUserInput("not a valid id", field=field)
    return inside["type"], int(inside["pk"])


def pk_of(value: str, type_name: str, *, field: str = "id") -> int:
    kind, pk = parse_global_id(value, field=field)
    if kind != type_name:
        raise BadUserInput(f"expected the id of a {type_name}", field=field)
    return pk
