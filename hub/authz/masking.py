"""How a masked value is shown, defined once per kind of value.

The policy says which field holds which kind (`g2, Resident.phone, mask:phone`) and which roles
see it masked; these functions are the only place the shapes are written down. A masked value
keeps what a caller needs to recognise a record on the phone or at the door, and no more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

# An address is cut before its first number: "锦安路幸福里小区3号楼2单元501室" keeps the
# road and compound ("锦安路幸福里小区…"), which is the community, and drops building and flat.
_FIRST_NUMBER = re.compile(r"[0-9０-９一二三四五六七八九十百]+\s*(号|栋|幢|单元|室|弄|巷|楼)")


def id_number(value: str) -> str:
    """`110105199003071234` -> `110105********1234`: region code and last four kept."""
    if len(value) < 11:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def phone(value: str) -> str:
    """`13812345678` -> `138****5678`: carrier prefix and last four kept."""
    digits = len(value)
    if digits < 8:
        return "*" * digits
    return value[:3] + "*" * (digits - 7) + value[-4:]


def name(value: str) -> str:
    """`张三` -> `张*`, `欧阳娜娜` -> `欧***`: the first character kept."""
    if len(value) <= 1:
        return "*"
    return value[0] + "*" * (len(value) - 1)


def address(value: str) -> str:
    """Cut to the community: everything from the first building or house number on is dropped."""
    found = _FIRST_NUMBER.search(value)
    kept = value[: found.start()] if found else value[: max(1, len(value) // 2)]
    return kept.rstrip() + "…"


def birth_date(value: date | str) -> str:
    """`1990-03-07` -> `1990`: the year only."""
    return str(value)[:4]


KINDS: dict[str, Callable[[Any], str]] = {
    "id_number": id_number,
    "phone": phone,
    "name": name,
    "address": address,
    "birth_date": birth_date,
}


def mask(kind: str, value: Any) -> str | None:
    """The masked form of `value` (None stays None)."""
    if value is None:
        return None
    return KINDS[kind](value)
