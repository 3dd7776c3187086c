"""GridHub's own definitions of standard scalars, where strawberry's accept values that no code
behind them can use.

`DateTime` is strawberry's (the same name, description, ISO 8601 parser and output), except that
it refuses a time whose UTC form falls outside years 1 to 9999: `0001-01-01T00:00:00+14:00` is a
valid ISO string, but it is 31 December of year 0 in UTC, and every comparison with a stored
(UTC) time, every bound parameter and every date computed from it would raise OverflowError.
Refused here, it is BAD_USER_INPUT at coercion, before any resolver, cursor or statement sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

import dateutil.parser
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

from hub import validation


def parse_datetime(value: object) -> datetime:
    """An ISO 8601 date and time within range; anything else is a coercion error that quotes
    nothing but the value (hub.api.errors drops that too)."""
    if not isinstance(value, str):
        raise StrawberryInputCoercionError(
            f'Value cannot represent a DateTime: "{value}". Expected a string.'
        )
    try:
        parsed = dateutil.parser.isoparse(value)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or not validation.time_in_range(parsed):
        raise StrawberryInputCoercionError(
            f'Value cannot represent a DateTime: "{value}". '
            "Expected an ISO 8601 time whose UTC form is within years 1 to 9999."
        )
    return parsed


# strawberry's definition with only the parser changed: the SDL and the output stay the same.
DATETIME: ScalarDefinition = replace(DateTimeDefinition, parse_value=parse_datetime)

# What hub.api.schema hands strawberry as `scalar_overrides`.
OVERRIDES: Mapping[object, ScalarDefinition] = {datetime: DATETIME}
