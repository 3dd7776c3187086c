"""The public statistics page (/stats) over real HTTP and a real database: small figures and
their partners are withheld everywhere on the page, tables and charts alike."""

from __future__ import annotations

import asyncio
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
from hub.web.stats import EARLIER, FiguresCache, count_tables, last_months, rows_agree
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


@pytest.fixture
async def reported(db: Database, world: World) -> None:
    async with db.transaction() as session:
        made: dict[str, list[int]] = defaultdict(list)
        for grid, category, count in REPORTS:
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
        for grid, count, response in ACCEPTED:
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
    for words in ("Events by category", "Sanitation", "In progress", "Earlier", "withheld"):
        assert words in html, words
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
    # Communities, the three count tables, and the times of up to 16 communities.
    assert names == ["PublicStatsCommunities", "PublicStatsCounts", "PublicStatsTimes"]
    for url in ("/stats", "/stats?community=C2", "/stats?lang=en"):
        assert (await public.get(url)).status_code == 200
    assert len(names) == 3


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
    stats = {
        "byCategory": [
            {"count": 4, "category": "SANITATION", "grid": {"code": "C1"}},
            {"count": 9, "category": "SANITATION", "grid": {"code": "ELSEWHERE"}},
        ],
        "byStatus": [{"count": 4, "status": "REPORTED", "grid": {"code": "C1"}}],
        "byMonth": [
            {"count": 1, "month": "2020-01", "grid": {"code": "C1"}},
            {"count": 2, "month": "2021-06", "grid": {"code": "C1"}},
            {"count": 1, "month": "2024-03", "grid": {"code": "C1"}},
        ],
    }
    tables = count_tables(stats, ["C1", "C2"], last_months(datetime(2024, 3, 5, tzinfo=UTC)))
    assert tables["month"].count("C1", EARLIER) == 3
    assert tables["month"].count("C1", "2024-03") == 1
    assert tables["category"].row_total("C1") == 4 and tables["category"].row_total("C2") == 0
    assert rows_agree(tables.values())
    stats["byStatus"][0]["count"] = 5
    assert not rows_agree(count_tables(stats, ["C1", "C2"], ["2024-03"]).values())


async def test_the_cache_computes_once_for_everyone_until_it_expires() -> None:
    now = [0.0]
    loads: list[datetime] = []
    release = asyncio.Event()

    async def load(at: datetime) -> Any:
        loads.append(at)
        await release.wait()
        return f"figures {len(loads)}"

    cache = FiguresCache(load, seconds=60, clock=lambda: now[0])
    waiting = [asyncio.create_task(cache.get()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["figures 1"] * 5
    now[0] = 59.0
    assert await cache.get() == "figures 1"
    now[0] = 61.0
    assert await cache.get() == "figures 2"
    assert len(loads) == 2
