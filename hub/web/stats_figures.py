"""The figures the statistics page may publish: events by category, status and month per
community, and the average response and resolution times, with small figures withheld.

One computation covers every community at once (`Figures`), and its figures are suppressed
together (hub.stats.disclosure): a figure withheld on one page is withheld on every page, so
nobody can take it from the other. The figures are read through persisted operations as the
public role, a fixed handful per computation (one more per 16 communities), and kept for a
minute: the page is public, and each computation reads every event several times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.stats.disclosure import (
    CountTable,
    DisclosedMeans,
    DisclosedTable,
    disclose_means,
    disclose_tables,
)
from hub.web.site import Site
from hub.web.vocabulary import BEIJING, CATEGORIES, STATUSES

COMMUNITY_LEVEL = "community"
CACHE_SECONDS = 60.0
# A district has a few dozen communities; the page reads at most this many pages of 100.
MAX_COMMUNITY_PAGES = 10
# Aliased eventTimes slots in PublicStatsTimes.
TIMES_SLOTS = 16
MONTHS = 12
# The count tables, each one row per community; their names key Figures.tables.
COUNT_TABLES = ("category", "status", "month")
# The month table's column for everything before the last twelve months: with it, the month
# table counts the same events as the others, and its row totals are theirs.
EARLIER = "earlier"
# The three reads of PublicStatsCounts run as separate statements; if an event moves between
# them (an edit, a back-dated import), their totals disagree and the page reads them again.
READ_ATTEMPTS = 3


class StatsUnavailable(Exception):
    """The reads did not agree with each other, READ_ATTEMPTS times in a row."""


@dataclass(frozen=True, slots=True)
class Community:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the page may publish, for every community at once."""

    communities: tuple[Community, ...]
    # The last twelve months on Beijing's clock, oldest first ("2025-03").
    months: tuple[str, ...]
    # One table per name of COUNT_TABLES, one row per community code.
    tables: Mapping[str, DisclosedTable]
    response: DisclosedMeans
    resolution: DisclosedMeans
    k: int
    # Events reported before this instant are counted.
    as_of: datetime


async def compute_figures(site: Site, now: datetime) -> Figures:
    k = site.settings.public_min_count
    communities = await read_communities(site)
    codes = tuple(c.code for c in communities)
    months = last_months(now)
    before = now.astimezone(UTC).isoformat()
    for _ in range(READ_ATTEMPTS):
        data = await site.query("PublicStatsCounts", {"level": COMMUNITY_LEVEL, "before": before})
        tables = count_tables(data["stats"], codes, months)
        if rows_agree(tables.values()):
            break
    else:
        raise StatsUnavailable("the event counts kept changing between reads")
    times = await read_times(site, codes, before)
    return Figures(
        communities=communities,
        months=months,
        tables=disclose_tables(tables, k),
        response=disclose_means(
            {code: times[code]["accepted"] for code in codes},
            {code: times[code]["averageResponseSeconds"] for code in codes},
            k,
        ),
        resolution=disclose_means(
            {code: times[code]["resolved"] for code in codes},
            {code: times[code]["averageResolutionSeconds"] for code in codes},
            k,
        ),
        k=k,
        as_of=now,
    )


async def read_communities(site: Site) -> tuple[Community, ...]:
    nodes = await site.query_all(
        "PublicStatsCommunities",
        {"level": COMMUNITY_LEVEL},
        field="grids",
        max_pages=MAX_COMMUNITY_PAGES,
    )
    return tuple(Community(node["code"], node["name"]) for node in nodes)


async def read_times(site: Site, codes: Sequence[str], before: str) -> dict[str, dict[str, Any]]:
    """Each community's eventTimes, TIMES_SLOTS communities an operation."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(codes), TIMES_SLOTS):
        chunk = codes[start : start + TIMES_SLOTS]
        variables: dict[str, Any] = {"before": before}
        for slot in range(TIMES_SLOTS):
            code = chunk[slot] if slot < len(chunk) else None
            variables[f"g{slot}"] = code
            variables[f"use{slot}"] = code is not None
        stats = (await site.query("PublicStatsTimes", variables))["stats"]
        for slot, code in enumerate(chunk):
            found[code] = stats[f"t{slot}"]
    return found


def last_months(now: datetime) -> tuple[str, ...]:
    """The current month on Beijing's clock and the eleven before it, oldest first."""
    local = now.astimezone(BEIJING)
    year, month = local.year, local.month
    found = []
    for _ in range(MONTHS):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return tuple(reversed(found))


def count_tables(
    stats: Mapping[str, Any], codes: Sequence[str], months: Sequence[str]
) -> dict[str, CountTable]:
    """The three tables of counts, one row per community (rows of other grids are left out
    of all three alike)."""
    known = set(codes)
    window = set(months)

    def counts(
        rows: list[dict[str, Any]], column_of: Callable[[dict[str, Any]], str]
    ) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for row in rows:
            grid = row.get("grid")
            if grid is None or grid["code"] not in known:
                continue
            key = (grid["code"], column_of(row))
            found[key] = found.get(key, 0) + int(row["count"])
        return found

    by_category = counts(stats["byCategory"], lambda row: row["category"])
    by_status = counts(stats["byStatus"], lambda row: row["status"])
    by_month = counts(
        stats["byMonth"], lambda row: row["month"] if row["month"] in window else EARLIER
    )
    rows = tuple(codes)
    return {
        "category": CountTable(rows, columns(CATEGORIES, by_category), by_category),
        "status": CountTable(rows, columns(STATUSES, by_status), by_status),
        "month": CountTable(rows, (EARLIER, *months), by_month),
    }


def columns(known: Sequence[str], counts: Mapping[tuple[str, str], int]) -> tuple[str, ...]:
    """The enum's values as the page knows them, then any value added to the schema since."""
    extra = sorted({column for _, column in counts} - set(known))
    return (*known, *extra)


def rows_agree(tables: Iterable[CountTable]) -> bool:
    """Whether the tables count the same events in each row, as linked tables must."""
    listed = list(tables)
    return all(
        table.row_total(row) == listed[0].row_total(row)
        for table in listed[1:]
        for row in listed[0].rows
    )


class FiguresCache:
    """The last Figures for CACHE_SECONDS, computed by one request while the others wait for
    it. A new month starts a new computation, whatever the age of the last one."""

    def __init__(
        self,
        load: Callable[[datetime], Awaitable[Figures]],
        *,
        seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._seconds = seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._kept: tuple[float, str, Figures] | None = None

    async def get(self) -> Figures:
        now = datetime.now(UTC)
        month = last_months(now)[-1]
        async with self._lock:
            if self._kept is not None:
                at, kept_month, figures = self._kept
                if kept_month == month and self._clock() - at < self._seconds:
                    return figures
            figures = await self._load(now)
            self._kept = (self._clock(), month, figures)
            return figures
