"""The public statistics page (/stats) over real HTTP and a real database: small figures and
their partners are withheld everywhere on the page, tables and charts alike."""

from __future__ import annotations

import asyncio
import html as html_module
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.routing import Mount

from hub.config import Settings
from hub.db import Database
from hub.events import service as events
from hub.events.models import Event
from hub.events.states import Action
from hub.stats.disclosure import CountTable, DisclosedMeans, Mean, disclose_tables
from hub.stats.published import EARLIER, Group, PublishedCache, count_tables, last_months
from hub.web.stats import Shown, chart, shown_columns, time_unit
from hub.web.vocabulary import BEIJING
from tests.world import World

# (community's grid, category, how many). With k = 5, C1's 3 sanitation events are withheld,
# and so is the next smallest figure of its row (6 fire hazards), or 16 - 7 would give 3 away.
REPORTS = [
    ("G1", "sanitation", 3),
    ("G2", "fire_hazard", 6),
    ("G1", "dispute", 7),
    ("G3", "sanitation", 8),
    ("G3", "fire_hazard", 9),
    ("G3", "dispute", 10),
    ("G4", "housing", 12),
]
# Accepted events per community and their response time: C1's two are too few, and C3's five
# are withheld with them, or the overall average with C2's would give C1's away. (The counts are
# chosen so that no withheld figure equals a published one: then no number on the page may be
# any of them.)
ACCEPTED = [
    ("G1", 2, timedelta(hours=1)),
    ("G3", 11, timedelta(hours=2)),
    ("G4", 5, timedelta(hours=4)),
]
# The category figures withheld: C1's 3 and 6, and C2's 8 and 9 that keep them company in
# their columns.
WITHHELD_NUMBERS = (3, 6, 8, 9)


async def report_all(
    db: Database,
    reports: list[tuple[str, str, int]],
    accepted: list[tuple[str, int, timedelta]] = [],  # noqa: B006 - never changed
) -> dict[str, list[int]]:
    """Reports the events, accepts the first of each grid's with the response time given;
    returns each grid's event ids in the order reported."""
    made: dict[str, list[int]] = defaultdict(list)
    async with db.transaction() as session:
        for grid, category, count in reports:
            for n in range(count):
                event = await events.report(
                    session,
                    report=events.EventReport(
                        category=category,
                        title=f"{category} {n}",
                        grid_code=grid,
                        reporter_system="12345",
                    ),
                    actor="test",
                )
                made[grid].append(event.id)
        for grid, count, response in accepted:
            for event_id in made[grid][:count]:
                event = await events.transition(
                    session, event_id=event_id, action=Action.ACCEPT, actor="test"
                )
                # Later rather than earlier: moving the report back could cross a month.
                await session.execute(
                    update(Event)
                    .where(Event.id == event_id)
                    .values(accepted_at=event.reported_at + response)
                )
    return made


@pytest.fixture
async def reported(db: Database, world: World) -> None:
    await report_all(db, REPORTS, ACCEPTED)


@pytest.fixture
async def public(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# --- reading the page back ---------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Every element that carries a figure (`data-cell`), with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[Element]] = defaultdict(list)
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if "data-cell" in element.attrs:
            self.figures[element.attrs["data-cell"]].append(element)
        if tag not in ("rect", "input", "meta", "link", "br"):
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            if "data-cell" in element.attrs:
                element.text += data

    def shown(self, key: str) -> str:
        """The figure as the tables show it: "*" when withheld."""
        cells = [e for e in self.figures[key] if e.tag == "td"]
        assert cells, f"no table cell for {key}"
        texts = {_visible(e) for e in cells}
        assert len(texts) == 1, f"{key} shows differently: {texts}"
        return texts.pop()

    def withheld(self, key: str) -> bool:
        return self.shown(key) == "*"


def _visible(element: Element) -> str:
    # A withheld cell reads "*" and, for screen readers, the word "withheld".
    if element.attrs.get("data-suppressed") == "true":
        return "*"
    return element.text.strip()


async def page(http: httpx.AsyncClient, url: str) -> tuple[httpx.Response, Page]:
    response = await http.get(url)
    parsed = Page()
    parsed.feed(response.text)
    return response, parsed


def check_withheld_everywhere(parsed: Page, html: str) -> set[str]:
    """Every figure is withheld in all of its places or in none, a withheld one never has a
    bar and never a number; returns the withheld keys."""
    withheld = set()
    for key, elements in parsed.figures.items():
        marked = {
            e.attrs.get("data-suppressed") == "true"
            or "withheld" in e.attrs.get("class", "").split()
            for e in elements
        }
        assert len(marked) == 1, f"{key} is withheld in some places only"
        if marked.pop():
            withheld.add(key)
            for element in elements:
                assert element.tag != "rect", f"{key} is withheld but has a bar"
                assert element.text.replace("已隐去", "").replace("withheld", "").strip() == "*"
    return withheld


# --- the tests ---------------------------------------------------------------------------------


async def test_a_small_count_and_its_partner_are_withheld(
    public: httpx.AsyncClient, reported: None, settings: Settings
) -> None:
    response, parsed = await page(public, "/stats")
    assert response.status_code == 200
    html = response.text
    assert settings.public_min_count == 5
    assert 'data-k="5"' in html
    withheld = check_withheld_everywhere(parsed, html)

    # C1: 3 sanitation (fewer than k), 6 fire hazards, 7 disputes, 16 in all.
    assert parsed.withheld("category:C1:SANITATION")
    assert parsed.withheld("category:C1:FIRE_HAZARD")
    assert parsed.shown("category:C1:DISPUTE") == "7"
    assert parsed.shown("events:C1") == "16"
    # The row minus what it publishes is 9, two withheld figures: neither is given away.
    # The same in the columns: sanitation's 11 has C2's 8 withheld beside C1's 3.
    assert parsed.withheld("category:C2:SANITATION")
    assert parsed.shown("category:all:SANITATION") == "11"
    # A figure of k or more shows, in the table and as a bar.
    assert parsed.shown("category:C3:HOUSING") == "12"
    assert parsed.shown("category:C2:DISPUTE") == "10"
    assert parsed.shown("events:all") == "55"
    bars = [e for e in parsed.figures["category:all:HOUSING"] if e.tag == "rect"]
    assert len(bars) == 1 and float(bars[0].attrs["width"]) > 0
    # Every line of the category table: withheld cells come two or more to a line, with k or
    # more events between them, so no published total minus published cells reveals one.
    truth = true_counts()
    for line in lines(truth):
        hidden = [truth[key] for key in line if key in withheld]
        if hidden:
            assert len(hidden) >= 2 and sum(hidden) >= 5, line
    # No withheld number is written anywhere as a figure: not as text, not in the SVG.
    for number in WITHHELD_NUMBERS:
        assert not re.search(rf">\s*{number}\s*<", html), number
    # The withheld bars are not drawn, and the page says so.
    for key in ("category:C1:SANITATION", "category:C1:FIRE_HAZARD"):
        assert not any(e.tag == "rect" for e in parsed.figures[key])
    assert "图表中不绘制已隐去数字的条形" in html


async def test_averages_are_withheld_with_their_counts(
    public: httpx.AsyncClient, reported: None
) -> None:
    response, parsed = await page(public, "/stats?lang=en")
    assert response.status_code == 200
    check_withheld_everywhere(parsed, response.text)
    # C1's average is over 2 accepted events; C3's (5, the next fewest) is withheld beside it.
    assert parsed.withheld("response:C1")
    assert parsed.withheld("response:C3")
    assert parsed.shown("response:C2") == "2.0 h"
    # (2 x 1 h + 11 x 2 h + 5 x 4 h) / 18 events.
    assert parsed.shown("response:all") == "2.4 h"
    # Nothing was resolved: no average to give, and nothing withheld either.
    assert parsed.shown("resolution:C2") == "none"
    assert "1.0 h" not in response.text and "4.0 h" not in response.text


async def test_one_community_withholds_what_the_district_view_withholds(
    public: httpx.AsyncClient, reported: None
) -> None:
    _, district = await page(public, "/stats")
    response, parsed = await page(public, "/stats?community=C1")
    assert response.status_code == 200
    assert "花家地社区" in response.text
    withheld = check_withheld_everywhere(parsed, response.text)
    assert {"category:C1:SANITATION", "category:C1:FIRE_HAZARD", "response:C1"} <= withheld
    assert parsed.shown("category:C1:DISPUTE") == "7"
    assert parsed.shown("events:C1") == "16"
    # The same figure, the same answer on both pages.
    for key in parsed.figures:
        if key in district.figures:
            assert parsed.withheld(key) == district.withheld(key), key
    for number in WITHHELD_NUMBERS[:2]:
        assert not re.search(rf">\s*{number}\s*<", response.text), number
    assert not any(e.tag == "rect" for e in parsed.figures["category:C1:SANITATION"])
    assert any(e.tag == "rect" for e in parsed.figures["category:C1:DISPUTE"])


async def test_an_unknown_community_is_not_found(public: httpx.AsyncClient) -> None:
    response = await public.get("/stats?community=NOPE")
    assert response.status_code == 404
    assert "没有这个社区" in response.text


async def test_english_renders_with_its_words(public: httpx.AsyncClient, reported: None) -> None:
    response = await public.get("/stats?lang=en")
    assert response.status_code == 200
    html = response.text
    assert '<html lang="en">' in html
    assert "<title>Public statistics" in html
    for words in ("Events by category", "Sanitation", "In progress", "withheld", "Table: "):
        assert words in html, words
    # Every event is of this month: the months before it are left out, and the page says so.
    assert "No events were reported before" in html and "Earlier" not in html
    # The averages' unit is named once, in the chart's caption, and every figure is in it.
    assert "Average response time by community (hours)" in html
    assert "no figure below 5 events is published" in html


async def test_charts_are_accessible_and_need_no_inline_style(
    public: httpx.AsyncClient, reported: None
) -> None:
    response, _ = await page(public, "/stats")
    html = response.text
    assert "style=" not in html and "<script" not in html
    charts = re.findall(r'<figure class="chart" id="([^"]+)">(.*?)</figure>', html, re.S)
    assert {name for name, _ in charts} >= {
        "chart-communities",
        "chart-category",
        "chart-status",
        "chart-month",
        "chart-response",
    }
    for name, body in charts:
        assert 'role="img" ' in body and f'aria-labelledby="{name}-title {name}-desc"' in body
        assert f'<title id="{name}-title">' in body and f'<desc id="{name}-desc">' in body
    assert re.search(r'<th scope="col"', html) and re.search(r'<th scope="row"', html)
    assert html.count("<caption>") >= 5
    # A table that may scroll sideways is a named region the keyboard can reach and scroll.
    captions = re.findall(r"<caption>([^<]+)</caption>", html)
    regions = re.findall(r'<div class="table-scroll"([^>]*)>\s*<table', html)
    assert len(regions) == len(captions)
    for attributes, caption in zip(regions, captions, strict=True):
        assert 'role="region"' in attributes and 'tabindex="0"' in attributes
        assert f'aria-label="{caption}"' in attributes
    # The district view's cross-tables start folded, under the charts of their totals.
    folds = re.findall(r'<details class="table-fold">\s*<summary>([^<]+)</summary>', html)
    assert folds == [
        "表格：各社区按类别的事件数",
        "表格：各社区按办理状态的事件数",
        "表格：各社区按月的事件数",
    ]
    assert html.index('id="chart-category"') < html.index('<details class="table-fold">')
    one = (await public.get("/stats?community=C1")).text
    assert "<details" not in one and 'role="region"' in one
    # A full-width colon in Chinese, a colon and a space in English.
    assert "事件总数：<strong" in html
    assert "Events in total: <strong" in (await public.get("/stats?lang=en")).text
    assert 'href="/static/stats.css"' in html
    css = await public.get("/static/stats.css")
    assert css.status_code == 200


async def test_a_bounded_number_of_operations_and_a_cache(
    app: Any, public: httpx.AsyncClient, reported: None
) -> None:
    site = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "").state.site
    names: list[str] = []
    execute = site.gateway.execute

    async def counting(document: str, *args: Any, **kwargs: Any) -> Any:
        names.append(kwargs.get("operation_name") or "")
        return await execute(document, *args, **kwargs)

    site.gateway.execute = counting
    assert (await public.get("/stats")).status_code == 200
    # The published figures, as the API gives them to the public role: one operation a view
    # (the API keeps the release for a minute: tests/test_stats_published.py).
    assert names == ["PublicStatsFigures"]
    for url in ("/stats", "/stats?community=C2", "/stats?lang=en"):
        assert (await public.get(url)).status_code == 200
    assert names == ["PublicStatsFigures"] * 4


# --- a short history, a community of small figures, long resolutions ---------------------------


def noon_on_the_15th(month: str) -> datetime:
    year, number = map(int, month.split("-"))
    return datetime(year, number, 15, 12, tzinfo=BEIJING)


async def move_reports(db: Database, category: str, to: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Event).where(Event.category == category).values(reported_at=to)
        )


async def test_months_before_the_first_event_are_left_out(
    db: Database, public: httpx.AsyncClient, reported: None
) -> None:
    window = last_months(datetime.now(UTC))
    first = window[-4]
    # C3's 12 housing events three months back are the district's first.
    await move_reports(db, "housing", noon_on_the_15th(first))
    response, parsed = await page(public, "/stats")
    html = response.text
    check_withheld_everywhere(parsed, html)
    assert parsed.shown(f"month:all:{first}") == "12"
    assert parsed.shown(f"month:C3:{first}") == "12"
    assert parsed.shown("events:C3") == "12"
    # The empty months after it stay: only the leading ones go.
    for month in window[-3:-1]:
        assert parsed.shown(f"month:all:{month}") == "0"
        assert parsed.shown(f"month:C1:{month}") == "0"
    # Before it: no column, no bar, no label.
    for month in (EARLIER, *window[:-4]):
        assert not any(
            key.startswith("month:") and key.endswith(f":{month}") for key in parsed.figures
        )
        assert f">{month}<" not in html
    assert ">更早<" not in html
    assert f"{first} 之前没有事件，不再列出更早的月份。" in html
    # The community page lists the same months.
    _, one = await page(public, "/stats?community=C1")
    assert one.shown(f"month:C1:{first}") == "0"
    assert not any(key.endswith(f":{window[-5]}") for key in one.figures)


async def test_every_month_stays_when_events_predate_the_twelve(
    db: Database, public: httpx.AsyncClient, reported: None
) -> None:
    await move_reports(db, "housing", datetime.now(UTC) - timedelta(days=400))
    response, parsed = await page(public, "/stats")
    assert parsed.shown("month:all:earlier") == "12"
    assert parsed.shown("month:C3:earlier") == "12"
    # The oldest month of the window (as the page saw it) is listed, empty as it is.
    oldest = re.findall(r'data-cell="month:all:(\d{4}-\d{2})"', response.text)[0]
    assert parsed.shown(f"month:all:{oldest}") == "0"
    assert len({key for key in parsed.figures if key.startswith("month:all:")}) == 13
    assert ">更早<" in response.text and "之前没有事件" not in response.text


def test_only_leading_columns_of_published_zeros_are_left_out() -> None:
    months = ("2024-01", "2024-02", "2024-03", "2024-04")

    def shown(counts: dict[tuple[str, str], int], name: str = "month") -> tuple[str, ...]:
        table = CountTable(("C1", "C2"), (EARLIER, *months), counts)
        return shown_columns(name, disclose_tables({name: table}, 5)[name])

    assert shown({("C1", "2024-02"): 7, ("C2", "2024-04"): 9}) == months[1:]
    assert shown({("C1", EARLIER): 6, ("C2", "2024-04"): 9}) == (EARLIER, *months)
    # No event at all: the last month stays, so that the table has a column.
    assert shown({}) == ("2024-04",)
    # A withheld total (3 events) is not known to be zero: it stays.
    assert shown({("C1", "2024-01"): 2, ("C2", "2024-01"): 1, ("C2", "2024-03"): 9}) == months
    # Other tables list every column.
    assert shown({("C2", "2024-04"): 9}, name="category") == (EARLIER, *months)


# With k = 5, C1's 3 sanitation and 2 fire-hazard events are both withheld (their row total, 5,
# is published), beside C2's 8 and 9 in their columns: every figure of C1's category chart but
# the zeros is withheld, while its status and month charts publish 5.
SMALL_REPORTS = [
    ("G1", "sanitation", 3),
    ("G2", "fire_hazard", 2),
    ("G3", "sanitation", 8),
    ("G3", "fire_hazard", 9),
    ("G3", "dispute", 10),
    ("G4", "housing", 12),
]
ALL_WITHHELD_ZH = (
    "该社区各类别的事件数或少于 5 件，或可据以推算出少于 5 件的数字，为保护个人信息均不予公布。"
)


async def test_a_chart_whose_every_figure_is_withheld_is_a_sentence(
    db: Database, world: World, public: httpx.AsyncClient
) -> None:
    await report_all(db, SMALL_REPORTS)
    response, parsed = await page(public, "/stats?community=C1")
    html = response.text
    withheld = check_withheld_everywhere(parsed, html)
    assert withheld == {"category:C1:SANITATION", "category:C1:FIRE_HAZARD"}
    # The sentence stands where the chart would, and no chart is drawn for it.
    assert re.search(
        rf'<p class="chart-withheld" id="chart-category"[^>]*>{ALL_WITHHELD_ZH}</p>', html
    )
    assert 'id="chart-category-title"' not in html
    assert '<figure class="chart" id="chart-category">' not in html
    # The table keeps its marks and zeros; the withheld figures appear nowhere else.
    assert parsed.shown("category:C1:DISPUTE") == "0"
    assert parsed.shown("events:C1") == "5"
    for key in withheld:
        assert [e.tag for e in parsed.figures[key]] == ["td"]
    for number in (3, 2, 8, 9):
        assert not re.search(rf">\s*{number}\s*<", html), number
    # Charts with a published figure are drawn as before.
    assert '<figure class="chart" id="chart-status">' in html
    assert any(e.tag == "rect" for e in parsed.figures["status:C1:REPORTED"])
    english = html_module.unescape((await public.get("/stats?community=C1&lang=en")).text)
    assert (
        "To protect privacy, none of this community's counts by category is published: "
        "each is below 5, or could reveal one that is." in english
    )
    # The district view publishes the category totals, so its chart is drawn, and it withholds
    # the same cells.
    _, district = await page(public, "/stats")
    assert district.withheld("category:C1:SANITATION")
    assert district.withheld("category:C2:FIRE_HAZARD")
    assert district.shown("category:all:SANITATION") == "11"
    assert any(e.tag == "rect" for e in district.figures["category:all:SANITATION"])


def test_a_chart_of_zeros_is_still_drawn_and_one_of_marks_is_not() -> None:
    def t(key: str, **values: Any) -> str:
        return key

    zero = Shown("a", "0", False)
    mark = Shown("b", "*", True)
    none = Shown("c", "none", False)
    assert chart("c", "title", [("a", zero, 0)], t, "note").svg is not None
    withheld = chart("c", "title", [("a", zero, 0), ("b", mark, 7), ("c", none, None)], t, "note")
    assert withheld.svg is None and withheld.withheld_note == "note"
    drawn = chart("c", "title", [("a", Shown("a", "6", False), 6), ("b", mark, 3)], t, "note")
    assert drawn.svg is not None and "7" not in drawn.svg


async def test_averages_are_written_in_the_unit_their_caption_names(
    db: Database, world: World, public: httpx.AsyncClient
) -> None:
    made = await report_all(db, REPORTS, ACCEPTED)
    # Six of C2's accepted events take three days to resolve, C3's five two days.
    async with db.transaction() as session:
        for grid, count, days in (("G3", 6, 3), ("G4", 5, 2)):
            for event_id in made[grid][:count]:
                for action, department in (
                    (Action.DISPATCH, "community_service"),
                    (Action.START, None),
                    (Action.RESOLVE, None),
                ):
                    event = await events.transition(
                        session,
                        event_id=event_id,
                        action=action,
                        actor="test",
                        department_code=department,
                    )
                await session.execute(
                    update(Event)
                    .where(Event.id == event_id)
                    .values(resolved_at=event.reported_at + timedelta(days=days))
                )
    response, parsed = await page(public, "/stats")
    html = response.text
    check_withheld_everywhere(parsed, html)
    assert "各社区平均办结时间（天）" in html and "各社区平均响应时间（小时）" in html
    assert "平均办结时间（小时）" not in html
    # (6 x 3 + 5 x 2) / 11 days.
    expected = {"resolution:C2": "3.0 天", "resolution:C3": "2.0 天", "resolution:all": "2.5 天"}
    for key, text in expected.items():
        assert parsed.shown(key) == text
    # The chart writes each figure as the table does.
    for key in ("resolution:C2", "resolution:C3"):
        assert [e.text for e in parsed.figures[key] if e.tag == "text"] == [expected[key]]
    assert parsed.shown("resolution:C1") == "无"
    assert parsed.shown("response:C2") == "2.0 小时"
    _, one = await page(public, "/stats?community=C3")
    assert one.shown("resolution:C3") == "2.0 天" and one.shown("resolution:all") == "2.5 天"
    response, english = await page(public, "/stats?lang=en")
    assert "Average resolution time by community (days)" in response.text
    assert english.shown("resolution:C2") == "3.0 days"
    assert "Average response time by community (hours)" in response.text


def test_one_unit_for_a_measure_from_its_published_averages() -> None:
    def unit(*hours: float | None, withheld: int = 0) -> str:
        means = {f"p{i}": Mean(None if h is None else h * 3600) for i, h in enumerate(hours)}
        means |= {f"w{i}": Mean(None, suppressed=True) for i in range(withheld)}
        overall = max((h for h in hours if h is not None), default=None)
        return time_unit(
            DisclosedMeans(means, Mean(None if overall is None else overall * 3600))
        ).key

    assert unit(0.2, 0.9) == "minutes"
    assert unit(0.2, 1.5) == "hours"
    assert unit(47.9) == "hours"
    assert unit(10.0, 50.0) == "days"
    assert unit(None, withheld=2) == "minutes"


# --- the truth, for the line checks ---------------------------------------------------------------

COMMUNITY_OF = {"G1": "C1", "G2": "C1", "G3": "C2", "G4": "C3"}


def true_counts() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for grid, category, count in REPORTS:
        community = COMMUNITY_OF[grid]
        counts[f"category:{community}:{category.upper()}"] += count
        counts[f"category:all:{category.upper()}"] += count
        counts[f"events:{community}"] += count
        counts["events:all"] += count
    return counts


def lines(counts: dict[str, int]) -> list[list[str]]:
    """The category table's rows and columns (cells only), and its row totals' column."""
    categories = sorted({key.split(":")[2] for key in counts if key.startswith("category:C")})
    communities = ["C1", "C2", "C3"]
    found = [[f"category:{c}:{k}" for k in categories] for c in communities]
    found += [[f"category:{c}:{k}" for c in communities] for k in categories]
    found.append([f"events:{c}" for c in communities])
    return found


# --- the parts without a database ---------------------------------------------------------------


def test_the_months_are_on_beijing_time() -> None:
    # 20:00 UTC on 29 February is already 1 March in Beijing.
    months = last_months(datetime(2024, 2, 29, 20, 0, tzinfo=UTC))
    assert months[0] == "2023-04" and months[-1] == "2024-03" and len(months) == 12
    assert last_months(datetime(2024, 2, 29, 15, 59, tzinfo=UTC))[-1] == "2024-02"


def test_months_before_the_window_count_as_earlier_and_other_grids_not_at_all() -> None:
    def group(community: str, category: str, month: str, events: int) -> Group:
        return Group(community, category, "reported", month, events, 0, 0, 0.0, 0.0)

    groups = [
        group("C1", "sanitation", "2020-01", 1),
        group("C1", "sanitation", "2021-06", 2),
        group("C1", "sanitation", "2024-03", 1),
        group("ELSEWHERE", "sanitation", "2024-03", 9),
    ]
    months = last_months(datetime(2024, 3, 5, tzinfo=UTC))
    tables = count_tables(
        groups, ["C1", "C2"], months, categories=["sanitation"], statuses=["reported"]
    )
    assert tables["month"].count("C1", EARLIER) == 3
    assert tables["month"].count("C1", "2024-03") == 1
    assert tables["category"].row_total("C1") == 4 and tables["category"].row_total("C2") == 0
    assert tables["status"].row_total("C1") == 4
    assert tables["month"].columns == (EARLIER, *months)


async def test_the_cache_computes_once_for_everyone_until_it_expires() -> None:
    now = [0.0]
    loads: list[datetime] = []
    release = asyncio.Event()

    async def load(at: datetime) -> Any:
        loads.append(at)
        await release.wait()
        return f"figures {len(loads)}"

    cache = PublishedCache(seconds=60, clock=lambda: now[0])
    waiting = [asyncio.create_task(cache.get(5, load)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["figures 1"] * 5
    now[0] = 59.0
    assert await cache.get(5, load) == "figures 1"
    # Another minimum count is another release.
    assert await cache.get(3, load) == "figures 2"
    now[0] = 61.0
    assert await cache.get(5, load) == "figures 3"
    assert len(loads) == 3
