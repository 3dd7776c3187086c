"""The public statistics page: events by category, status and month per community, and the
average response and resolution times, as charts and tables, with small figures withheld.

`/stats` shows every community as a row; `/stats?community=CODE` one community. Both show
figures from one computation over all communities (`Figures`), suppressed together
(hub.stats.disclosure): a figure withheld on one page is withheld on every page, so nobody can
take it from the other. The figures are read through persisted operations as the public role,
a fixed handful per computation (one more per 16 communities), and kept for a minute: the page
is public, and each computation reads every event several times.

On the district view the charts of district-wide figures come first and the per-community
cross-tables start folded; the month table leaves out leading months without any event; a chart
whose every figure is withheld gives way to a sentence saying so; each average is written in one
unit per measure, which the chart's caption names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.stats.disclosure import (
    CountTable,
    DisclosedMeans,
    DisclosedTable,
    Figure,
    Mean,
    disclose_means,
    disclose_tables,
)
from hub.web.charts import Bar, bar_chart
from hub.web.site import QueryFailed, Site
from hub.web.vocabulary import BEIJING, CATEGORIES, STATUSES

COMMUNITY_LEVEL = "community"
CACHE_SECONDS = 60.0
# A district has a few dozen communities; the page reads at most this many pages of 100.
MAX_COMMUNITY_PAGES = 10
# Aliased eventTimes slots in PublicStatsTimes.
TIMES_SLOTS = 16
MONTHS = 12
# Counts and months are on Beijing's clock; China keeps one offset all year.
# The month table's column for everything before the last twelve months: with it, the month
# table counts the same events as the others, and its row totals are theirs.
EARLIER = "earlier"
# The three reads of PublicStatsCounts run as separate statements; if an event moves between
# them (an edit, a back-dated import), their totals disagree and the page reads them again.
READ_ATTEMPTS = 3
# The mark a withheld figure shows instead of its number (explained on the page).
WITHHELD = "*"


class StatsUnavailable(Exception):
    """The reads did not agree with each other, READ_ATTEMPTS times in a row."""


# --- the figures ---------------------------------------------------------------------------------


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
    # "category", "status" and "month", one row per community code.
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
    found: list[Community] = []
    after: str | None = None
    for _ in range(MAX_COMMUNITY_PAGES):
        data = await site.query(
            "PublicStatsCommunities", {"level": COMMUNITY_LEVEL, "after": after}
        )
        grids = data["grids"]
        found.extend(Community(node["code"], node["name"]) for node in grids["nodes"])
        if not grids["pageInfo"]["hasNextPage"]:
            break
        after = grids["pageInfo"]["endCursor"]
    return tuple(found)


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


# --- what the page shows -----------------------------------------------------------------------

Translate = Callable[..., str]


@dataclass(frozen=True, slots=True)
class Shown:
    """One figure as the page shows it. `key` names the figure: the same figure carries the
    same key wherever it appears (tables, charts, both pages)."""

    key: str
    text: str
    withheld: bool


@dataclass(frozen=True, slots=True)
class TableView:
    caption: str
    corner: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Shown, ...]], ...]
    footer: tuple[str, tuple[Shown, ...]] | None = None


@dataclass(frozen=True, slots=True)
class ChartView:
    """A chart, or, when `svg` is None, the sentence (`withheld_note`) that stands in for a
    chart whose every figure but the zeros is withheld."""

    id: str
    title: str
    svg: Markup | None
    withheld_note: str = ""


@dataclass(frozen=True, slots=True)
class SectionView:
    """A heading, its charts, and one table holding the charts' figures (and maybe more)."""

    id: str
    heading: str
    charts: tuple[ChartView, ...]
    table: TableView
    # The table starts folded away (<details>): the district view's cross-tables are a screen
    # or more each on a phone, under charts of their district-wide totals.
    folded: bool = False
    # A sentence under the heading (which months the month table leaves out).
    note: str = ""


@dataclass(frozen=True, slots=True)
class TimeUnit:
    """How averages are written: `stats.<key>` formats one, `stats.unit.<key>` names the unit."""

    key: str
    seconds: int
    digits: int


MINUTES = TimeUnit("minutes", 60, 0)
HOURS = TimeUnit("hours", 3600, 1)
DAYS = TimeUnit("days", 86400, 1)
# Averages up to two days read best in hours; beyond that, in days.
DAYS_FROM_SECONDS = 48 * 3600


def time_unit(means: DisclosedMeans) -> TimeUnit:
    """One unit for every average of a measure, on both pages, so that the chart's caption can
    name it and the figures compare at a glance. Picked from the published averages only: a
    withheld one must not shape what the page shows."""
    published = [m.value for m in (*means.means.values(), means.overall) if m.value is not None]
    largest = max(published, default=0.0)
    if largest < HOURS.seconds:
        return MINUTES
    if largest < DAYS_FROM_SECONDS:
        return HOURS
    return DAYS


def count_shown(figure: Figure, key: str) -> Shown:
    if figure.value is None:
        return Shown(key, WITHHELD, True)
    return Shown(key, f"{figure.value:,}", False)


def mean_shown(mean: Mean, key: str, unit: TimeUnit, t: Translate) -> Shown:
    if mean.suppressed:
        return Shown(key, WITHHELD, True)
    if mean.value is None:
        return Shown(key, t("stats.no_data"), False)
    return Shown(
        key, t(f"stats.{unit.key}", n=f"{mean.value / unit.seconds:.{unit.digits}f}"), False
    )


def chart(
    chart_id: str,
    title: str,
    bars: Sequence[tuple[str, Shown, float | None]],
    t: Translate,
    withheld_note: str,
) -> ChartView:
    """A bar per (label, figure, length); a withheld figure gets no bar, whatever its length.

    When every figure but the zeros is withheld, the chart would be labels and withheld marks:
    `withheld_note` says so in a sentence instead (the table keeps its marks). Whether that
    happens depends on the published figures and the marks alone, so it tells nothing more."""
    if any(shown.withheld for _, shown, _ in bars) and not any(
        not shown.withheld and value for _, shown, value in bars
    ):
        return ChartView(chart_id, title, None, withheld_note)
    drawn = [
        Bar(
            label=label,
            value=None if shown.withheld else value,
            text=shown.text,
            key=shown.key,
            withheld=shown.withheld,
        )
        for label, shown, value in bars
    ]
    description = t("stats.chart_description", count=len(drawn))
    svg = bar_chart(chart_id=chart_id, title=title, description=description, bars=drawn)
    return ChartView(chart_id, title, svg)


def all_withheld(scope: str, name: str, k: int, t: Translate) -> str:
    """The sentence for a chart of `name` on the `scope` ("district" or "community") page with
    every figure withheld. It restates the rule, not the figures: a withheld figure may be k or
    more (withheld beside a smaller one), so "each is below k" would be false, and, where true,
    would narrow down figures the rule hides."""
    return t(f"stats.all_withheld.{scope}.{name}", k=k)


def shown_columns(name: str, table: DisclosedTable) -> tuple[str, ...]:
    """The columns a table lists. The month table leaves out its leading columns ("earlier",
    then the oldest months) while no community has an event in them, so that a district with
    a short history is not shown screens of zeros; the last month always stays. Only published
    zeros go (a zero is never withheld), and both pages leave out the same ones, so nothing is
    hidden that the zeros did not say, and every row still adds up to its total."""
    columns = table.columns
    if name != "month":
        return columns
    start = 0
    while start < len(columns) - 1 and table.column_totals[columns[start]].value == 0:
        start += 1
    return columns[start:]


def columns_note(name: str, table: DisclosedTable, shown: Sequence[str], t: Translate) -> str:
    if name != "month" or shown[0] == table.columns[0]:
        return ""
    return t("stats.months_from", month=shown[0])


def column_labels(name: str, columns: Sequence[str], t: Translate) -> list[str]:
    if name == "month":
        return [t("stats.earlier") if c == EARLIER else c for c in columns]
    labels = []
    for column in columns:
        try:
            labels.append(t(f"stats.{name}.{column}"))
        except KeyError:  # a value added to the schema after this page's words
            labels.append(column)
    return labels


def district_sections(figures: Figures, t: Translate) -> list[SectionView]:
    """Every community as a row."""
    communities = figures.communities
    category = figures.tables["category"]
    totals = [count_shown(category.row_totals[c.code], f"events:{c.code}") for c in communities]
    grand = count_shown(category.total, "events:all")
    all_label = t("stats.all_communities")
    sections = [
        SectionView(
            "communities",
            t("stats.by_community"),
            (
                chart(
                    "chart-communities",
                    t("stats.by_community"),
                    [
                        (c.name, shown, category.row_totals[c.code].value)
                        for c, shown in zip(communities, totals, strict=True)
                    ],
                    t,
                    all_withheld("district", "communities", figures.k, t),
                ),
            ),
            TableView(
                t("stats.by_community"),
                t("stats.community_label"),
                (t("stats.events"),),
                tuple((c.name, (s,)) for c, s in zip(communities, totals, strict=True)),
                (all_label, (grand,)),
            ),
        )
    ]
    for name in ("category", "status", "month"):
        table = figures.tables[name]
        shown = shown_columns(name, table)
        labels = column_labels(name, shown, t)
        margins = [count_shown(table.column_totals[c], f"{name}:all:{c}") for c in shown]
        rows = tuple(
            (
                community.name,
                (
                    *(
                        count_shown(table.cell(community.code, c), f"{name}:{community.code}:{c}")
                        for c in shown
                    ),
                    total,
                ),
            )
            for community, total in zip(communities, totals, strict=True)
        )
        bars = [
            (label, figure, table.column_totals[column].value)
            for label, figure, column in zip(labels, margins, shown, strict=True)
            if column != EARLIER
        ]
        sections.append(
            SectionView(
                name,
                t(f"stats.by_{name}"),
                (
                    chart(
                        f"chart-{name}",
                        t(f"stats.by_{name}"),
                        bars,
                        t,
                        all_withheld("district", name, figures.k, t),
                    ),
                ),
                TableView(
                    t(f"stats.by_{name}_table"),
                    t("stats.community_label"),
                    (*labels, t("stats.total")),
                    rows,
                    (all_label, (*margins, grand)),
                ),
                folded=True,
                note=columns_note(name, table, shown, t),
            )
        )
    sections.append(times_section(figures, communities, t, with_charts=True))
    return sections


def community_sections(figures: Figures, code: str, t: Translate) -> list[SectionView]:
    """One community's row of each table, turned on its side."""
    total = count_shown(figures.tables["category"].row_totals[code], f"events:{code}")
    sections = []
    for name in ("category", "status", "month"):
        table = figures.tables[name]
        shown = shown_columns(name, table)
        labels = column_labels(name, shown, t)
        cells = [count_shown(table.cell(code, c), f"{name}:{code}:{c}") for c in shown]
        bars = [
            (label, cell, table.cell(code, column).value)
            for label, cell, column in zip(labels, cells, shown, strict=True)
            if column != EARLIER
        ]
        sections.append(
            SectionView(
                name,
                t(f"stats.by_{name}"),
                (
                    chart(
                        f"chart-{name}",
                        t(f"stats.by_{name}"),
                        bars,
                        t,
                        all_withheld("community", name, figures.k, t),
                    ),
                ),
                TableView(
                    t(f"stats.by_{name}"),
                    t(f"stats.{name}_header"),
                    (t("stats.events"),),
                    tuple((label, (cell,)) for label, cell in zip(labels, cells, strict=True)),
                    (t("stats.total"), (total,)),
                ),
                note=columns_note(name, table, shown, t),
            )
        )
    community = next(c for c in figures.communities if c.code == code)
    sections.append(times_section(figures, (community,), t, with_charts=False))
    return sections


def times_section(
    figures: Figures, communities: Sequence[Community], t: Translate, *, with_charts: bool
) -> SectionView:
    """The averages of `communities`, and over all communities, each measure in one unit."""
    measures = (("response", figures.response), ("resolution", figures.resolution))
    units = {name: time_unit(means) for name, means in measures}
    rows = []
    charted: dict[str, list[tuple[str, Shown, float | None]]] = {"response": [], "resolution": []}
    for community in communities:
        shown = []
        for name, means in measures:
            mean = means.means[community.code]
            cell = mean_shown(mean, f"{name}:{community.code}", units[name], t)
            # Bars are drawn to scale in seconds; only their lengths' ratios matter.
            charted[name].append((community.name, cell, mean.value))
            shown.append(cell)
        rows.append((community.name, tuple(shown)))
    overall = tuple(
        mean_shown(means.overall, f"{name}:all", units[name], t) for name, means in measures
    )
    charts = tuple(
        chart(
            f"chart-{name}",
            t(f"stats.{name}_chart", unit=t(f"stats.unit.{units[name].key}")),
            charted[name],
            t,
            all_withheld("district", name, figures.k, t),
        )
        for name, _ in measures
        if with_charts
    )
    return SectionView(
        "times",
        t("stats.times"),
        charts,
        TableView(
            t("stats.times"),
            t("stats.community_label"),
            (t("stats.average_response"), t("stats.average_resolution")),
            tuple(rows),
            (t("stats.all_communities"), overall),
        ),
    )


# --- the routes ----------------------------------------------------------------------------------


def routes(site: Site) -> list[BaseRoute]:
    async def load(now: datetime) -> Figures:
        return await compute_figures(site, now)

    cache = FiguresCache(load)

    async def stats_page(request: Request) -> Response:
        code = (request.query_params.get("community") or "").strip()
        try:
            figures = await cache.get()
        except (QueryFailed, StatsUnavailable):
            return site.error(request, 503, "stats.unavailable")
        language = site.language(request)

        def t(key: str, **values: Any) -> str:
            return site.catalogue.text(language, key, **values)

        names = {c.code: c.name for c in figures.communities}
        if code and code not in names:
            return site.error(request, 404, "stats.unknown_community")
        sections = community_sections(figures, code, t) if code else district_sections(figures, t)
        total_key = f"events:{code}" if code else "events:all"
        total_figure = (
            figures.tables["category"].row_totals[code]
            if code
            else figures.tables["category"].total
        )
        return site.render(
            request,
            "stats.html",
            community=code,
            community_name=names.get(code),
            communities=figures.communities,
            sections=sections,
            total=count_shown(total_figure, total_key),
            k=figures.k,
            as_of=figures.as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
        )

    return [Route("/stats", stats_page)]
