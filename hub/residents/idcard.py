"""The 18-digit PRC resident identity number (GB 11643-1999).

Six digits of region, eight of birth date, three of sequence (odd for men, even for women) and
an ISO 7064 MOD 11-2 check character (0-9 or X).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from hub.errors import BadUserInput

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^\d{17}[\dX]$")


def check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class IdNumber:
    value: str
    birth_date: date
    gender: str  # "male" | "female"


def parse(raw: str) -> IdNumber:
    """Validate shape, birth date and checksum. Errors never echo the number back."""
    value = raw.strip().upper()
    if not _SHAPE.match(value):
        raise BadUserInput("ID number must be 17 digits followed by a digit or X", field="idNumber")
    if check_character(value[:17]) != value[17]:
        raise BadUserInput("ID number checksum is wrong", field="idNumber")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise BadUserInput("ID number holds an impossible birth date", field="idNumber") from None
    if born.year < 1880 or born > date.today():
        raise BadUserInput("ID number holds an impossible birth date", field="idNumber")
    gender = "male" if int(value[16]) % 2 == 1 else "female"
    return IdNumber(value=value, birth_date=born, gender=gender)


def make(region: str, born: date, sequence: int) -> str:
    """Build a valid number; used by the demo data and tests."""
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
