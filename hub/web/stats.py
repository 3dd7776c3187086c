"""The public statistics page at /stats: the published figures as the API publishes them to
the public role (hub.web.stats_figures), as charts and tables. The page withholds what the API
withholds, marked and explained, and nothing of its own.

`/stats` shows every community as a row; `/stats?community=CODE` one community. Both show the
same computation's figures, so a figure withheld on one is withheld on the other.

On the district view the charts of district-wide figures come first and the per-community
cross-tables start folded; the month table leaves out leading months without any event; a chart
whose every figure is withheld gives way to a sentence saying so; each average is written in one
unit per measure, which the chart's caption names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.stats.disclosure import DisclosedMeans, DisclosedTable, Figure, Mean
from hub.web.charts import Bar, bar_chart
from hub.web.i18n import Translate
from hub.web.site import QueryFailed, Site
from hub.web.stats_figures import COUNT_TABLES, EARLIER, Community, Figures, read_figures
from hub.web.vocabulary import BEIJING

# The mark a withheld figure shows instead of its number (explained on the page).
WITHHELD = "*"


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


@dataclass(frozen=True, slots=True)
class ListedColumns:
    """A count table's columns as the page lists them (`shown_columns`), their labels in the
    page's language, and the sentence naming the months left out ("" when none were)."""

    keys: tuple[str, ...]
    labels: tuple[str, ...]
    note: str


def listed_columns(name: str, table: DisclosedTable, t: Translate) -> ListedColumns:
    keys = shown_columns(name, table)
    return ListedColumns(
        keys, tuple(column_labels(name, keys, t)), columns_note(name, table, keys, t)
    )


def line_shown(name: str, row: str, columns: Sequence[str], line: Sequence[Figure]) -> list[Shown]:
    """One line of a count table as shown, each figure keyed `name:row:column`."""
    return [
        count_shown(figure, f"{name}:{row}:{column}")
        for column, figure in zip(columns, line, strict=True)
    ]


def count_chart(
    name: str,
    scope: str,
    columns: ListedColumns,
    shown: Sequence[Shown],
    line: Sequence[Figure],
    k: int,
    t: Translate,
) -> ChartView:
    """The chart of one line of a count table (its column totals, or a community's row): a bar
    a listed column but "earlier", which is no month (the month chart draws the twelve)."""
    bars = [
        (label, cell, figure.value)
        for column, label, cell, figure in zip(
            columns.keys, columns.labels, shown, line, strict=True
        )
        if column != EARLIER
    ]
    return chart(f"chart-{name}", t(f"stats.by_{name}"), bars, t, all_withheld(scope, name, k, t))


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
    for name in COUNT_TABLES:
        table = figures.tables[name]
        columns = listed_columns(name, table, t)
        column_totals = [table.column_totals[c] for c in columns.keys]
        margins = line_shown(name, "all", columns.keys, column_totals)
        rows = []
        for community, total in zip(communities, totals, strict=True):
            line = [table.cell(community.code, c) for c in columns.keys]
            rows.append(
                (community.name, (*line_shown(name, community.code, columns.keys, line), total))
            )
        sections.append(
            SectionView(
                name,
                t(f"stats.by_{name}"),
                (count_chart(name, "district", columns, margins, column_totals, figures.k, t),),
                TableView(
                    t(f"stats.by_{name}_table"),
                    t("stats.community_label"),
                    (*columns.labels, t("stats.total")),
                    tuple(rows),
                    (all_label, (*margins, grand)),
                ),
                folded=True,
                note=columns.note,
            )
        )
    sections.append(times_section(figures, communities, t, with_charts=True))
    return sections


def community_sections(figures: Figures, code: str, t: Translate) -> list[SectionView]:
    """One community's row of each table, turned on its side."""
    total = count_shown(figures.tables["category"].row_totals[code], f"events:{code}")
    sections = []
    for name in COUNT_TABLES:
        table = figures.tables[name]
        columns = listed_columns(name, table, t)
        row = [table.cell(code, c) for c in columns.keys]
        cells = line_shown(name, code, columns.keys, row)
        sections.append(
            SectionView(
                name,
                t(f"stats.by_{name}"),
                (count_chart(name, "community", columns, cells, row, figures.k, t),),
                TableView(
                    t(f"stats.by_{name}"),
                    t(f"stats.{name}_header"),
                    (t("stats.events"),),
                    tuple(
                        (label, (cell,)) for label, cell in zip(columns.labels, cells, strict=True)
                    ),
                    (t("stats.total"), (total,)),
                ),
                note=columns.note,
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


# --- the route -----------------------------------------------------------------------------------


def routes(site: Site) -> list[BaseRoute]:
    async def stats_page(request: Request) -> Response:
        code = (request.query_params.get("community") or "").strip()
        try:
            figures = await read_figures(site)
        except QueryFailed:
            return site.error(request, 503, "stats.unavailable")
        t = site.catalogue.translator(site.language(request))
        names = {c.code: c.name for c in figures.communities}
        category = figures.tables["category"]
        if not code:
            sections = district_sections(figures, t)
            total = count_shown(category.total, "events:all")
        elif code in names:
            sections = community_sections(figures, code, t)
            total = count_shown(category.row_totals[code], f"events:{code}")
        else:
            return site.error(request, 404, "stats.unknown_community")
        return site.render(
            request,
            "stats.html",
            community=code,
            community_name=names.get(code),
            communities=figures.communities,
            sections=sections,
            total=total,
            k=figures.k,
            as_of=figures.as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
        )

    return [Route("/stats", stats_page)]
