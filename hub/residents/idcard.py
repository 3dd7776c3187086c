"""The 18-digit PRC resident identity number (GB 11643-1999).

Six digits of region, eight of birth date, three of sequence (odd for men, even for women) and
an ISO 7064 MOD 11-2 check character (0-9 or X).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from hub.errors import BadUserInput
from hub.validation import ascii_form

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
# ASCII digits only (\d would take any Unicode digit); input is NFKC-normalised first, so
# full-width digits are read as the ASCII number they stand for, not as a second number.
_SHAPE = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)


def check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class IdNumber:
    value: str
    birth_date: date
    gender: str  # "male" | "female"


def normalise(raw: str) -> str:
    """The canonical form numbers are stored and compared in: ASCII digits, capital X."""
    return ascii_form(raw).strip().upper()


def parse(raw: str) -> IdNumber:
    """Validate shape, birth date and checksum. Errors never echo the number back."""
    value = normalise(raw)
    if not _SHAPE.fullmatch(value):
        raise BadUserInput("ID number must be 17 digits followed by a digit or X", field="idNumber")
    if check_character(value[:17]) != value[17]:
        raise BadUserInput("ID number checksum is wrong", field="idNumber")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise BadUserInput("ID number holds an impossible birth date", field="idNumber") from None
    # The server's calendar day in UTC, not its local one: the answer must not depend on the
    # time zone the host happens to be set to.
    if born.year < 1880 or born > datetime.now(UTC).date():
        raise BadUserInput("ID number holds an impossible birth date", field="idNumber")
    gender = "male" if int(value[16]) % 2 == 1 else "female"
    return IdNumber(value=value, birth_date=born, gender=gender)


def make(region: str, born: date, sequence: int) -> str:
    """Build a valid number; used by the demo data and tests."""
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)
