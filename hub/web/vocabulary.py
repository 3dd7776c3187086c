"""The event enums' values as the API spells them, in the order the pages list them, and the
clock the pages show times on.

The pages may not import the domain (import-linter), so these are copies: a test holds them
equal to the GraphQL schema's enums, and the open statuses to hub/events/states.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

CATEGORIES = (
    "PUBLIC_SAFETY",
    "FIRE_HAZARD",
    "SANITATION",
    "INFRASTRUCTURE",
    "ENVIRONMENT",
    "HEALTH",
    "ELDERLY_CARE",
    "DISPUTE",
    "HOUSING",
    "OTHER",
)
# In the state machine's order: what a list of statuses reads best in.
STATUSES = (
    "REPORTED",
    "ACCEPTED",
    "DISPATCHED",
    "IN_PROGRESS",
    "RESOLVED",
    "CLOSED",
    "REJECTED",
    "REOPENED",
)
OPEN_STATUSES = ("REPORTED", "ACCEPTED", "DISPATCHED", "IN_PROGRESS", "REOPENED")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")

# The pages show times on Beijing time (China has one time zone and no daylight saving).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def beijing_time(value: str) -> datetime:
    """An API time (ISO 8601) on Beijing's clock. One without an offset is UTC, as every time
    the API stores is, and never the server's own zone."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(BEIJING)
