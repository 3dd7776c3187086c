"""Small counts are withheld on every channel the public role reads, not on one page.

The world of tests/test_web_stats.py: with k = 5, community C1's 3 sanitation events are
withheld on /stats, and so are its 6 fire hazards, C2's 8 sanitation and 9 fire hazards (their
partners). Each test below tries one way an anonymous reader could count one of those figures
anyway (the statistics API, the event list, one event at a time, Open311) and must come back
without it; the last ones hold /graphql and /stats to the same published figures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.authz import expectations
from hub.authz.policy import Policy
from hub.db import Database
from tests.sql_capture import captured_sql
from tests.test_web_stats import ACCEPTED, REPORTS, report_all
from tests.world import World

# The category cells /stats withholds (community, category) -> the true count.
WITHHELD = {
    ("C1", "SANITATION"): 3,
    ("C1", "FIRE_HAZARD"): 6,
    ("C2", "SANITATION"): 8,
    ("C2", "FIRE_HAZARD"): 9,
}
COMMUNITY_OF_GRID = {"G1": "C1", "G2": "C1", "G3": "C2", "G4": "C3"}


@pytest.fixture
async def made(db: Database, world: World) -> dict[str, list[int]]:
    return await report_all(db, REPORTS, ACCEPTED)


@pytest.fixture
async def anonymous(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def graphql(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query})
    return response.json()


def refused_with_a_code(body: dict[str, Any]) -> bool:
    errors = body.get("errors") or []
    return bool(errors) and all(e.get("extensions", {}).get("code") for e in errors)


async def test_the_statistics_api_gives_no_exact_count_by_community_and_category(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]]
) -> None:
    body = await graphql(
        anonymous,
        """{ stats { eventCounts(groupBy: [GRID, CATEGORY], gridLevel: "community") {
               count category grid { code } } } }""",
    )
    # The exact counts are not the public role's to read: the field is not in its schema.
    assert refused_with_a_code(body), body
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    body = await graphql(
        anonymous,
        """{ stats { eventTimes(filter: { inGrid: "C1" }) { accepted averageResponseSeconds } } }""",
    )
    assert refused_with_a_code(body), body


async def test_counting_listed_events_gives_no_withheld_figure(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]]
) -> None:
    # A filtered list's totalCount, then every listed event counted by hand.
    body = await graphql(
        anonymous,
        """{ events(filter: { inGrid: "C1", category: [SANITATION] }) { totalCount } }""",
    )
    assert refused_with_a_code(body), body
    body = await graphql(anonymous, "{ events(first: 100) { totalCount nodes { code } } }")
    listed = (body.get("data") or {}).get("events") or {"totalCount": 0, "nodes": []}
    # No list: an event shows to whoever names its code, and to nobody else.
    assert listed["totalCount"] == 0 and listed["nodes"] == []
    body = await graphql(
        anonymous, "{ events(first: 100) { nodes { code category grid { code } } } }"
    )
    # Nor what a listed event would be counted by.
    assert refused_with_a_code(body), body


async def test_one_event_by_its_code_shows_what_its_reporter_follows_and_no_more(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]], db: Database
) -> None:
    from sqlalchemy import select

    from hub.events.models import Event

    async with db.reader() as session:
        code = (await session.scalars(select(Event.code).where(Event.id == made["G1"][0]))).one()
    body = await graphql(
        anonymous, f'{{ event(code: "{code}") {{ code status acceptedAt resolvedAt }} }}'
    )
    assert "errors" not in body, body
    assert body["data"]["event"]["code"] == code
    assert body["data"]["event"]["status"] == "ACCEPTED"
    for field in ("category", "grid { code }", "reportedAt", "location { lng lat }"):
        body = await graphql(anonymous, f'{{ event(code: "{code}") {{ code {field} }} }}')
        assert refused_with_a_code(body), (field, body)


async def test_open311_lists_nothing_to_count(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]]
) -> None:
    counted: Counter[tuple[str, str]] = Counter()
    for service in ("sanitation", "fire_hazard"):
        response = await anonymous.get(
            "/open311/v2/requests.json", params={"service_code": service}
        )
        if response.status_code != 200:
            continue
        for request in response.json():
            grid = request.get("address_id")
            code = request.get("service_code")
            if grid in COMMUNITY_OF_GRID and code:
                counted[(COMMUNITY_OF_GRID[grid], code.upper())] += 1
    for key, count in WITHHELD.items():
        assert counted[key] != count, key
    assert not counted


async def test_open311_shows_one_request_by_its_id_without_what_it_is_counted_by(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]], db: Database
) -> None:
    from sqlalchemy import select

    from hub.events.models import Event

    async with db.reader() as session:
        code = (await session.scalars(select(Event.code).where(Event.id == made["G1"][0]))).one()
    response = await anonymous.get(f"/open311/v2/requests/{code}.json")
    assert response.status_code == 200, response.text
    (request,) = response.json()
    assert request["service_request_id"] == code and request["status"] == "open"
    for withheld in ("service_code", "address_id", "requested_datetime", "lat", "long"):
        assert request.get(withheld) is None, (withheld, request)


POLICIES = Path(__file__).resolve().parents[1] / "policies"


@pytest.mark.parametrize(
    "line",
    [
        "p, public, Stats.eventCounts, read, allow",
        "p, public, Stats.eventTimes, read, allow",
        "p, public, Event, rows:all, allow",
        "p, public, Event.category, read, allow",
        "p, public, Event.grid, read, allow",
        "p, public, Event.reportedAt, read, allow",
    ],
)
def test_a_policy_that_would_let_the_public_count_is_refused(line: str) -> None:
    """Who receives only disclosure-controlled figures is data: the public's lines, pinned by
    the auditors' expectations, which refuse any change (changePolicy, import) that breaks them."""
    policy = Policy.from_directory(POLICIES)
    assert not expectations.check(policy, expectations.load(POLICIES / "expectations.csv"))
    changed = policy.with_text(policy.text.rstrip("\n") + "\n" + line + "\n")
    failures = expectations.check(changed, expectations.load(POLICIES / "expectations.csv"))
    assert failures, line


PUBLISHED = """{ stats { publishedEvents {
  minimumCount
  communities {
    grid { code }
    events { count withheld }
    byCategory { category count withheld }
  }
  allCommunities { events { count withheld } byCategory { category count withheld } }
} } }"""


async def published(http: httpx.AsyncClient) -> dict[str, Any]:
    body = await graphql(http, PUBLISHED)
    assert "errors" not in body, body
    return body["data"]["stats"]["publishedEvents"]


async def test_graphql_publishes_what_the_page_publishes_and_withholds_the_same(
    anonymous: httpx.AsyncClient, made: dict[str, list[int]]
) -> None:
    figures = await published(anonymous)
    assert figures["minimumCount"] == 5
    cells = {
        (line["grid"]["code"], cell["category"]): cell
        for line in figures["communities"]
        for cell in line["byCategory"]
    }
    for key in WITHHELD:
        assert cells[key] == {"category": key[1], "count": None, "withheld": True}, key
    assert cells[("C1", "DISPUTE")] == {"category": "DISPUTE", "count": 7, "withheld": False}
    assert figures["allCommunities"]["events"] == {"count": 55, "withheld": False}

    page = (await anonymous.get("/stats")).text
    for line in figures["communities"]:
        code = line["grid"]["code"]
        for cell in line["byCategory"]:
            shown = _figure(page, f"category:{code}:{cell['category']}")
            assert shown == ("*" if cell["withheld"] else f"{cell['count']:,}"), (code, cell)


def _figure(html: str, key: str) -> str:
    """The table cell that carries the figure `key` on the page: its number, or "*" when the
    cell is marked withheld."""
    found = re.search(rf'<td[^>]*data-cell="{re.escape(key)}"([^>]*)>\s*([^<]*?)\s*<', html)
    assert found, key
    return "*" if 'data-suppressed="true"' in found.group(1) else found.group(2)


async def test_every_channel_reads_one_release_a_minute(
    app: Any, anonymous: httpx.AsyncClient, made: dict[str, list[int]]
) -> None:
    """The page and /graphql publish the same computation (so the same withheld figures), and
    the events are read once for both, not once a request."""
    engine = app.state.db.engine.sync_engine
    with captured_sql(engine) as statements:
        first = await published(anonymous)
        assert (await anonymous.get("/stats")).status_code == 200
        second = await published(anonymous)
    assert first == second
    grouped = [s for s, _ in statements if "GROUP BY" in s.upper() and "events" in s]
    assert len(grouped) == 1, grouped
