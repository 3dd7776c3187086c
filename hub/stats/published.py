"""The published event figures: the one release of statistics a disclosure-controlled reader gets
(the public role, through `Stats.publishedEvents`; the /stats page shows the same).

Events per community by category, by status and by month (on Beijing's clock), and the average
response and resolution times per community, computed together and suppressed together
(hub.stats.disclosure): a figure withheld in one table is withheld in every one, and whoever
reads the release, through whichever channel, gets the same withheld figures.

The release answers no filter and no grouping of the reader's choice. Cell suppression protects
one set of linked tables; a reader who could ask for counts reported before one instant and then
before the next, or in one grid and then in its parent, would subtract their way to any single
event. So the release is fixed: every event reported before `as_of`, cut the same three ways.

It counts every event, not the reader's rows: the published figures are one thing, the same for
everyone allowed them, and the role that reads them (public) lists no event at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hub.events.models import Event
from hub.grids.models import PATH_END, Grid
from hub.sqlfuncs import seconds_between, year_month
from hub.stats.disclosure import (
    CountTable,
    DisclosedMeans,
    DisclosedTable,
    disclose_means,
    disclose_tables,
)
from hub.stats.service import CHINA_STANDARD_TIME_MINUTES

COMMUNITY_LEVEL = "community"
MONTHS = 12
# The count tables, one row per community; their names key PublishedFigures.tables.
COUNT_TABLES = ("category", "status", "month")
# The month table's column for everything before the last twelve months: with it, the month
# table counts the same events as the others, and its row totals are theirs.
EARLIER = "earlier"
# How long a worker keeps the release: each computation reads every event, and the role that
# asks for it needs no token.
CACHE_SECONDS = 60.0
REPORTING_CLOCK = timezone(timedelta(minutes=CHINA_STANDARD_TIME_MINUTES))


@dataclass(frozen=True, slots=True)
class Community:
    grid_id: int
    code: str


@dataclass(frozen=True, slots=True)
class PublishedFigures:
    """Everything the release publishes, every figure published or withheld."""

    # The rows of every table, in tree order.
    communities: tuple[Community, ...]
    # The last twelve months on the reporting clock, oldest first ("2025-03").
    months: tuple[str, ...]
    # One table per name of COUNT_TABLES, one row per community code.
    tables: Mapping[str, DisclosedTable]
    response: DisclosedMeans
    resolution: DisclosedMeans
    k: int
    # Events reported before this instant are counted.
    as_of: datetime


@dataclass(frozen=True, slots=True)
class Group:
    community: str
    category: str
    status: str
    month: str
    events: int
    accepted: int
    resolved: int
    response_seconds: float
    resolution_seconds: float


async def published_figures(
    session: AsyncSession,
    *,
    k: int,
    now: datetime,
    categories: Sequence[str],
    statuses: Sequence[str],
) -> PublishedFigures:
    """The release as of `now`, with every figure below `k` withheld (and its partners).
    `categories` and `statuses` order the columns; values met beyond them follow, sorted."""
    communities = await _communities(session)
    months = last_months(now)
    groups = await _groups(session, now)
    codes = tuple(c.code for c in communities)
    tables = count_tables(groups, codes, months, categories=categories, statuses=statuses)
    counted = {code: [g for g in groups if g.community == code] for code in codes}
    return PublishedFigures(
        communities=communities,
        months=months,
        tables=disclose_tables(tables, k),
        response=disclose_means(
            {code: sum(g.accepted for g in counted[code]) for code in codes},
            {code: _mean(counted[code], "accepted", "response_seconds") for code in codes},
            k,
        ),
        resolution=disclose_means(
            {code: sum(g.resolved for g in counted[code]) for code in codes},
            {code: _mean(counted[code], "resolved", "resolution_seconds") for code in codes},
            k,
        ),
        k=k,
        as_of=now,
    )


async def _communities(session: AsyncSession) -> tuple[Community, ...]:
    rows = await session.execute(
        select(Grid.id, Grid.code).where(Grid.level == COMMUNITY_LEVEL).order_by(Grid.path)
    )
    return tuple(Community(grid_id=row[0], code=row[1]) for row in rows)


async def _groups(session: AsyncSession, now: datetime) -> list[Group]:
    """Every event reported before `now`, counted by community, category, status and month in
    one statement: one snapshot, so the three tables count the same events. Events in no
    community (a district's own grid) are in none of them."""
    own, community = aliased(Grid), aliased(Grid)
    month = year_month(Event.reported_at, literal_column(str(CHINA_STANDARD_TIME_MINUTES)))
    response = seconds_between(Event.reported_at, Event.accepted_at)
    resolution = seconds_between(Event.reported_at, Event.resolved_at)
    keys = (community.code, Event.category, Event.status, month)
    statement = (
        select(
            *keys,
            func.count(),
            func.count(Event.accepted_at),
            func.count(Event.resolved_at),
            func.coalesce(func.sum(response), 0.0),
            func.coalesce(func.sum(resolution), 0.0),
        )
        .join(own, own.id == Event.grid_id)
        .join(
            community,
            (own.path >= community.path)
            & (own.path < community.path + PATH_END)
            & (community.level == COMMUNITY_LEVEL),
        )
        .where(Event.reported_at < now.astimezone(UTC))
        .group_by(*keys)
    )
    return [
        Group(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])
        for row in await session.execute(statement)
    ]


def _mean(groups: Sequence[Group], counted: str, seconds: str) -> float | None:
    count = sum(getattr(g, counted) for g in groups)
    return sum(float(getattr(g, seconds)) for g in groups) / count if count else None


def last_months(now: datetime) -> tuple[str, ...]:
    """The current month on the reporting clock and the eleven before it, oldest first."""
    local = now.astimezone(REPORTING_CLOCK)
    year, month = local.year, local.month
    found = []
    for _ in range(MONTHS):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return tuple(reversed(found))


def count_tables(
    groups: Sequence[Group],
    codes: Sequence[str],
    months: Sequence[str],
    *,
    categories: Sequence[str],
    statuses: Sequence[str],
) -> dict[str, CountTable]:
    """The three tables of counts, one row per community."""
    window = set(months)
    known = set(codes)
    by: dict[str, dict[tuple[str, str], int]] = {name: {} for name in COUNT_TABLES}
    for group in groups:
        if group.community not in known:
            continue
        month = group.month if group.month in window else EARLIER
        for name, column in (
            ("category", group.category),
            ("status", group.status),
            ("month", month),
        ):
            key = (group.community, column)
            by[name][key] = by[name].get(key, 0) + group.events
    rows = tuple(codes)
    return {
        "category": CountTable(rows, columns(categories, by["category"]), by["category"]),
        "status": CountTable(rows, columns(statuses, by["status"]), by["status"]),
        "month": CountTable(rows, (EARLIER, *months), by["month"]),
    }


def columns(known: Sequence[str], counts: Mapping[tuple[str, str], int]) -> tuple[str, ...]:
    """The values in their given order, then any other value met, sorted."""
    extra = sorted({column for _, column in counts} - set(known))
    return (*known, *extra)


class PublishedCache:
    """The last release for `seconds`, per minimum count, computed by one request while the
    others wait for it. A new month starts a new computation, whatever the age of the last."""

    def __init__(
        self,
        *,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._kept: dict[Hashable, tuple[float, str, PublishedFigures]] = {}

    async def get(
        self, key: Hashable, load: Callable[[datetime], Awaitable[PublishedFigures]]
    ) -> PublishedFigures:
        now = datetime.now(UTC)
        month = last_months(now)[-1]
        async with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                at, kept_month, figures = kept
                if kept_month == month and self._clock() - at < self._seconds:
                    return figures
            figures = await load(now)
            self._kept[key] = (self._clock(), month, figures)
            return figures
