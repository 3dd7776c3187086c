"""Small input checks shared by every domain. Errors name the field, never echo the value."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

from hub.errors import BadUserInput

# ASCII only: without re.ASCII, \d also matches full-width and other Unicode digits, which
# would then be stored beside (and never compared equal to) the ASCII number.
_PHONE = re.compile(r"(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})", re.ASCII)
# C0 controls except tab, newline and carriage return, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Not text at all: lone surrogates (UTF-8 cannot encode them, so PostgreSQL's driver fails on
# them) and the 66 Unicode non-characters (U+FDD0..U+FDEF and the last two code points of
# every plane).
_NOT_TEXT = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)


def storable(value: str) -> bool:
    """Whether `value` holds no control character (but tab, newline, carriage return) and no
    code point that is not a character: the text every text column may hold."""
    return not _CONTROL.search(value) and not _NOT_TEXT.search(value)


def ascii_form(value: str) -> str:
    """NFKC: full-width digits, letters and punctuation become their ASCII forms, so a number
    typed on a Chinese input method is the same number as the ASCII one."""
    return unicodedata.normalize("NFKC", value)


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
    if _NOT_TEXT.search(value):
        raise BadUserInput(f"{field} contains code points that are not characters", field=field)
    return value


# What someone states for the record (a break-glass or policy reason, a purpose): a sentence or
# two. Bounded so that a 100,000-character reason cannot swell the access log, the policy
# history and every page that shows them.
MAX_STATEMENT_LENGTH = 500
# Every control character, the line breaks included: a statement is one line wherever it is
# shown, and a line break would let it forge lines in a text export of the log.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def statement(value: str, *, field: str, max_length: int = MAX_STATEMENT_LENGTH) -> str:
    """A reason or purpose stated for the record: one line of text, not empty, at most
    `max_length` characters, with no control characters. The one check of all of them."""
    value = value.strip()
    if not value:
        raise BadUserInput(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise BadUserInput(
            f"{field} is longer than {max_length} characters", field=field, maxLength=max_length
        )
    if _ANY_CONTROL.search(value):
        raise BadUserInput(
            f"{field} must be one line of text, without control characters", field=field
        )
    if _NOT_TEXT.search(value):
        raise BadUserInput(f"{field} contains code points that are not characters", field=field)
    return value


def optional_text(value: str | None, *, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    return text(value, field=field, max_length=max_length, required=False) or None


def phone(value: str | None, *, field: str = "phone") -> str | None:
    if value is None:
        return None
    value = ascii_form(value).strip().replace(" ", "")
    if not value:
        return None
    if not _PHONE.fullmatch(value):
        raise BadUserInput("phone must be a mainland mobile or landline number", field=field)
    return value


# How much of a value an error message quotes back: enough to recognise a typo, never a
# caller's 100 KB string echoed into the answer and the log.
ECHO_LENGTH = 40


def echoed(value: str) -> str:
    """`value` as an error message quotes it: repr, cut to ECHO_LENGTH characters."""
    if len(value) <= ECHO_LENGTH:
        return repr(value)
    return repr(value[:ECHO_LENGTH]) + f"… ({len(value)} characters)"


def one_of(value: str, allowed: frozenset[str], *, field: str) -> str:
    if value not in allowed:
        raise BadUserInput(f"{field} must be one of {', '.join(sorted(allowed))}", field=field)
    return value


# Services add at most a day or so to a given time (a day's end, a month bucket at an offset
# under a day): times within two days of the ends of Python's range are refused, so no such step
# can overflow either.
_MARGIN = timedelta(days=2)
EARLIEST = datetime.min.replace(tzinfo=UTC) + _MARGIN
LATEST = datetime.max.replace(tzinfo=UTC) - _MARGIN


def time_in_range(value: datetime) -> bool:
    """Whether `value` (aware; naive is read as UTC) is within EARLIEST..LATEST in UTC.

    `0001-01-01T00:00:00+14:00` is valid ISO 8601, but in UTC it is a day of year 0: comparing it
    with a stored (UTC) time, binding it, or converting it raises OverflowError. Every time that
    comes from a client (the DateTime scalar, cursors) passes through here first."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:
        return False
