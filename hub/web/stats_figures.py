"""The figures the statistics page shows: the published event figures exactly as the API gives
them to the public role (`Stats.publishedEvents`), read into tables the page can lay out.

The page suppresses nothing itself. The API computes the release, withholds its small figures
and their partners (hub.stats.published over hub.stats.disclosure) and keeps it for a minute,
so /stats, /graphql and any channel over the public role publish the same figures and withhold
the same ones. One persisted operation a page view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.stats.disclosure import DisclosedMeans, DisclosedTable, Figure, Mean
from hub.web.site import Site
from hub.web.vocabulary import beijing_time

# The count tables, each one row per community; their names key Figures.tables.
COUNT_TABLES = ("category", "status", "month")
# The month table's column for everything before the last twelve months (the API's null month).
EARLIER = "earlier"
# Where each table's line is in the API's PublishedLine, and what names its column.
LINE_FIELDS = {
    "category": ("byCategory", "category"),
    "status": ("byStatus", "status"),
    "month": ("byMonth", "month"),
}


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


async def read_figures(site: Site) -> Figures:
    published = (await site.query("PublicStatsFigures"))["stats"]["publishedEvents"]
    return figures_of(published)


def figures_of(published: Mapping[str, Any]) -> Figures:
    """The API's PublishedEvents as the page's tables, figure for figure."""
    lines = [line for line in published["communities"] if line.get("grid") is not None]
    communities = tuple(Community(line["grid"]["code"], line["grid"]["name"]) for line in lines)
    overall = published["allCommunities"]
    by_code = {c.code: line for c, line in zip(communities, lines, strict=True)}
    return Figures(
        communities=communities,
        months=tuple(published["months"]),
        tables={name: table_of(name, by_code, overall, communities) for name in COUNT_TABLES},
        response=means_of("averageResponse", by_code, overall),
        resolution=means_of("averageResolution", by_code, overall),
        k=int(published["minimumCount"]),
        as_of=beijing_time(published["asOf"]),
    )


def table_of(
    name: str,
    lines: Mapping[str, Mapping[str, Any]],
    overall: Mapping[str, Any],
    communities: Sequence[Community],
) -> DisclosedTable:
    field, column_field = LINE_FIELDS[name]

    def column(item: Mapping[str, Any]) -> str:
        value = item[column_field]
        return EARLIER if value is None else str(value)

    columns = tuple(column(item) for item in overall[field])
    rows = tuple(c.code for c in communities)
    return DisclosedTable(
        rows=rows,
        columns=columns,
        cells={(code, column(item)): figure(item) for code in rows for item in lines[code][field]},
        row_totals={code: figure(lines[code]["events"]) for code in rows},
        column_totals={column(item): figure(item) for item in overall[field]},
        total=figure(overall["events"]),
    )


def figure(item: Mapping[str, Any]) -> Figure:
    return Figure(None if item["withheld"] else int(item["count"]))


def means_of(
    field: str, lines: Mapping[str, Mapping[str, Any]], overall: Mapping[str, Any]
) -> DisclosedMeans:
    return DisclosedMeans(
        means={code: mean(line[field]) for code, line in lines.items()},
        overall=mean(overall[field]),
    )


def mean(item: Mapping[str, Any]) -> Mean:
    if item["withheld"]:
        return Mean(None, suppressed=True)
    seconds = item["seconds"]
    return Mean(None if seconds is None else float(seconds))
