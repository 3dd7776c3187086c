"""The dispatch board at /dispatch: who may see it, what it lists, and its accept and dispatch
forms, over real HTTP (httpx on the app) against a real database. board.js's live updates and
the session cookie's WebSocket are tested in tests/test_ws_cookie.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update

from hub.app import create_app
from hub.authz.policy import POLICY_FILE
from hub.config import Settings
from hub.db import Database, utcnow
from hub.events import states
from hub.events.models import Event
from hub.web import dispatch
from hub.web.operations import Operations
from tests.policy_clients import SUPERUSER, credentials, token, write_policy_dir
from tests.world import DEPARTMENTS, World

REPORT = """
mutation($title: String!, $grid: String!) {
  reportEvent(input: {category: FIRE_HAZARD, severity: HIGH, title: $title, gridCode: $grid,
                      reporterSystem: "test"}) { id code }
}"""
ACCEPT = "mutation($id: ID!) { acceptEvent(id: $id) { status } }"
DISPATCH = 'mutation($id: ID!) { dispatchEvent(id: $id, departmentCode: "health") { status } }'
START = "mutation($id: ID!) { startEvent(id: $id) { status } }"
RESOLVE = "mutation($id: ID!) { resolveEvent(id: $id) { status } }"
REJECT = 'mutation($id: ID!) { rejectEvent(id: $id, reason: "duplicate") { status } }'
EVENT = """
query($code: String!) {
  event(code: $code) { status version deadline department { code } timeline { action note } }
}"""


# --- a small view of the board's markup ------------------------------------------------------


class BoardRows(HTMLParser):
    """The rows of table#board: each row's attributes, its text and the forms in it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._in_board = False
        self._row: dict[str, Any] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "table" and attributes.get("id") == "board":
            self._in_board = True
        elif self._in_board and tag == "tr" and "data-event-code" in attributes:
            self._row = {"attrs": attributes, "text": "", "forms": [], "options": []}
        elif self._row is not None and tag == "form":
            self._row["forms"].append(attributes)
        elif self._row is not None and tag == "option":
            self._row["options"].append(attributes.get("value"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_board = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data


def rows_of(html: str) -> list[dict[str, Any]]:
    parser = BoardRows()
    parser.feed(html)
    return parser.rows


def codes_of(html: str) -> list[str]:
    return [row["attrs"]["data-event-code"] for row in rows_of(html)]


def row_of(html: str, code: str) -> dict[str, Any]:
    (row,) = [r for r in rows_of(html) if r["attrs"]["data-event-code"] == code]
    return row


def form_classes(row: dict[str, Any]) -> set[str]:
    return {form.get("class", "") for form in row["forms"]}


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
async def api(app: Any, world: World, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """GraphQL as superuser, to make and check events."""
    transport = httpx.ASGITransport(app=app)
    headers = credentials(settings, SUPERUSER)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", headers=headers
    ) as http:
        yield http


@pytest.fixture
async def browser(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    # https: the session cookie is Secure, and the jar sends it over https only.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def gql(api: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = (await api.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    return body["data"]


async def report(api: httpx.AsyncClient, grid: str, title: str = "楼道堆物") -> dict[str, str]:
    return (await gql(api, REPORT, title=title, grid=grid))["reportEvent"]


async def event_of(api: httpx.AsyncClient, code: str) -> dict[str, Any]:
    return (await gql(api, EVENT, code=code))["event"]


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, credential: str) -> None:
    form = await http.get("/signin")
    response = await http.post(
        "/signin", data={"csrf_token": csrf_in(form.text), "credential": credential}
    )
    assert response.status_code == 303, response.text


async def board(http: httpx.AsyncClient, path: str = "/dispatch") -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    return page.text


async def post_action(
    http: httpx.AsyncClient, code: str, action: str, **fields: str
) -> httpx.Response:
    """Submit the row's form as a browser would: with the board's CSRF token and the version
    the row shows (unless the test gives its own)."""
    html = await board(http)
    data = {"csrf_token": csrf_in(html)}
    if any(r["attrs"]["data-event-code"] == code for r in rows_of(html)):
        data["version"] = row_of(html, code)["attrs"]["data-version"]
    data.update(fields)
    return await http.post(f"/dispatch/events/{code}/{action}", data=data)


def flash_of(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/dispatch?"), location
    return parse_qs(urlsplit(location).query)


# --- who may see the board -------------------------------------------------------------------


async def test_not_signed_in_goes_to_sign_in(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/dispatch")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=%2Fdispatch"
    # A form posted after the session ended lands on the board after signing in, not on a
    # URL that only takes POST.
    action = await browser.post("/dispatch/events/EV1/accept", data={})
    assert action.status_code == 303
    assert action.headers["location"] == "/signin?next=%2Fdispatch"


@pytest.mark.parametrize("role", ["auditor", "grid_worker", "health"])
async def test_other_roles_are_refused(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, role: str
) -> None:
    event = await report(api, "G1")
    await sign_in(browser, token(settings, role, grids=["C1"], department="health"))
    page = await browser.get("/dispatch")
    assert page.status_code == 403
    assert 'id="board"' not in page.text
    csrf = csrf_in((await browser.get("/")).text)
    refused = await browser.post(
        f"/dispatch/events/{event['code']}/accept", data={"csrf_token": csrf}
    )
    assert refused.status_code == 403
    assert (await event_of(api, event["code"]))["status"] == "REPORTED"


async def test_the_public_cannot_sign_in_to_it(browser: httpx.AsyncClient) -> None:
    form = await browser.get("/signin")
    response = await browser.post(
        "/signin", data={"csrf_token": csrf_in(form.text), "credential": ""}
    )
    assert response.status_code == 401
    assert (await browser.get("/dispatch")).status_code == 303


# --- what the board lists ----------------------------------------------------------------


async def test_the_board_lists_open_events_newest_first(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    made = [await report(api, grid, f"事件{grid}") for grid in ("G1", "G3", "G4", "G2", "G1")]
    accepted, dispatched, started, resolved, rejected = made
    await gql(api, ACCEPT, id=accepted["id"])
    for query in (ACCEPT, DISPATCH):
        await gql(api, query, id=dispatched["id"])
    for query in (ACCEPT, DISPATCH, START):
        await gql(api, query, id=started["id"])
    for query in (ACCEPT, DISPATCH, START, RESOLVE):
        await gql(api, query, id=resolved["id"])
    await gql(api, REJECT, id=rejected["id"])
    newest = await report(api, "G2", "<script>alert(1)</script>")

    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser)
    assert codes_of(html) == [newest["code"], started["code"], dispatched["code"], accepted["code"]]
    statuses = [row["attrs"]["data-status"] for row in rows_of(html)]
    assert statuses == ["REPORTED", "IN_PROGRESS", "DISPATCHED", "ACCEPTED"]
    assert set(statuses) <= set(dispatch.OPEN_STATUSES)
    # Words, not codes: severity, category, status, grid; the title escaped.
    first = row_of(html, newest["code"])
    for word in ("高", "消防隐患", "已上报", "第2网格"):
        assert word in first["text"]
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<strong id="board-count">4</strong>' in html
    english = await board(browser, "/dispatch?lang=en")
    assert "Fire hazard" in row_of(english, newest["code"])["text"]
    assert "Health" in row_of(english, dispatched["code"])["text"]


async def test_a_community_office_sees_its_own_community_only(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    mine = [await report(api, grid) for grid in ("G1", "G2")]
    theirs = [await report(api, grid) for grid in ("G3", "G4")]
    await sign_in(browser, token(settings, "community_admin", grids=["C1"]))
    shown = set(codes_of(await board(browser)))
    assert shown == {event["code"] for event in mine}
    assert not shown & {event["code"] for event in theirs}
    # Nor can it act on another community's event: out of scope is "not found".
    response = await post_action(browser, theirs[0]["code"], "accept")
    assert flash_of(response) == {"error": ["not_found"], "code": [theirs[0]["code"]]}
    assert (await event_of(api, theirs[0]["code"]))["status"] == "REPORTED"


async def test_overdue_events_stand_out_in_words_too(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    late, on_time = await report(api, "G1"), await report(api, "G2")
    # The API refuses a deadline in the past, so the clock "moves" in the database instead.
    async with db.transaction() as session:
        await session.execute(
            update(Event)
            .where(Event.code == late["code"])
            .values(deadline=utcnow() - timedelta(hours=2))
        )
        await session.execute(
            update(Event)
            .where(Event.code == on_time["code"])
            .values(deadline=utcnow() + timedelta(hours=2))
        )
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser, "/dispatch?lang=en")
    late_row, on_time_row = row_of(html, late["code"]), row_of(html, on_time["code"])
    assert "overdue" in late_row["attrs"].get("class", "").split()
    assert "Overdue" in late_row["text"]
    assert "overdue" not in on_time_row["attrs"].get("class", "").split()
    assert "Overdue" not in on_time_row["text"]
    assert late_row["attrs"]["data-deadline"]
    # The filter keeps only the overdue ones.
    assert codes_of(await board(browser, "/dispatch?overdue=1")) == [late["code"]]


async def test_each_row_offers_only_what_its_status_allows(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    reported, accepted, started = [await report(api, g) for g in ("G1", "G2", "G3")]
    await gql(api, ACCEPT, id=accepted["id"])
    for query in (ACCEPT, DISPATCH, START):
        await gql(api, query, id=started["id"])
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser)
    assert form_classes(row_of(html, reported["code"])) == {"accept"}
    assert form_classes(row_of(html, accepted["code"])) == {"dispatch"}
    assert form_classes(row_of(html, started["code"])) == set()
    accept_form = row_of(html, reported["code"])["forms"][0]
    assert accept_form["action"] == f"/dispatch/events/{reported['code']}/accept"
    assert accept_form["method"] == "post"
    dispatch_row = row_of(html, accepted["code"])
    assert dispatch_row["forms"][0]["action"] == f"/dispatch/events/{accepted['code']}/dispatch"
    assert set(dispatch_row["options"]) == {"", *(code for code, _, _ in DEPARTMENTS)}
    # Every field has its label, and every form its CSRF token.
    for field in ("dept", "deadline", "note"):
        assert f'<label for="{field}-{accepted["code"]}">' in html
        assert f'id="{field}-{accepted["code"]}"' in html
    assert html.count('name="csrf_token"') >= 4


async def test_the_board_offers_only_what_the_role_may_call(
    settings: Settings, db: Database, world: World, tmp_path: Path
) -> None:
    """Under a policy whose community offices may not dispatch, their board has no dispatch
    form (nor the template board.js would build one from), while accepting stays."""
    policy_dir = write_policy_dir(tmp_path)
    policy = policy_dir / POLICY_FILE
    line = "p, community_admin, Mutation.dispatchEvent, call, allow\n"
    assert line in policy.read_text(encoding="utf-8")
    policy.write_text(policy.read_text(encoding="utf-8").replace(line, ""), encoding="utf-8")
    application = create_app(replace(settings, policy_dir=policy_dir))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with (
            httpx.AsyncClient(
                transport=transport,
                base_url="https://testserver",
                headers=credentials(settings, SUPERUSER),
            ) as api,
            httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser,
        ):
            reported, accepted = await report(api, "G1"), await report(api, "G2")
            await gql(api, ACCEPT, id=accepted["id"])
            await sign_in(browser, token(settings, "community_admin", grids=["C1"]))
            html = await board(browser)
    assert form_classes(row_of(html, reported["code"])) == {"accept"}
    assert form_classes(row_of(html, accepted["code"])) == set()
    assert 'id="board-accept-template"' in html
    assert 'id="board-dispatch-template"' not in html
    # What board.js reads to decide which forms a status gets.
    found = re.search(r"data-action-statuses='([^']*)'", html)
    assert found is not None
    assert json.loads(unescape(found.group(1))) == {"accept": ["REOPENED", "REPORTED"]}


async def test_the_page_gives_board_js_what_it_needs_without_inline_script(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, token(settings, "community_admin", grids=["C1"]))
    page = await browser.get("/dispatch")
    html = page.text
    assert '<script src="/static/board.js" defer></script>' in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert "style=" not in html
    for template in ("board-row-template", "board-accept-template", "board-dispatch-template"):
        assert f'<template id="{template}">' in html
    # The subscription board.js runs is the persisted BoardLive operation, as the page gives it.
    live = Operations.load()["BoardLive"].document
    assert 'data-subscription="' in html
    assert "subscription BoardLive" in live and "eventChanged" in live
    static = await browser.get("/static/board.js")
    assert static.status_code == 200
    assert "innerHTML" not in static.text
    assert (await browser.get("/static/board.css")).status_code == 200


async def test_a_bad_page_cursor_is_a_400(browser: httpx.AsyncClient, settings: Settings) -> None:
    await sign_in(browser, token(settings, "dispatcher"))
    page = await browser.get("/dispatch?after=not-a-cursor")
    assert page.status_code == 400


# --- acting from the board ---------------------------------------------------------------


async def test_accept_and_dispatch_through_the_board(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    event = await report(api, "G1")
    code = event["code"]
    await sign_in(browser, token(settings, "dispatcher", subject="dispatcher:wang"))

    accepted = await post_action(browser, code, "accept")
    assert flash_of(accepted) == {"done": ["accept"], "code": [code]}
    assert (await event_of(api, code))["status"] == "ACCEPTED"
    page = await browser.get(accepted.headers["location"] + "&lang=en")
    assert f'role="status" id="board-flash">Event {code} was accepted.</p>' in page.text
    assert form_classes(row_of(page.text, code)) == {"dispatch"}

    dispatched = await post_action(
        browser,
        code,
        "dispatch",
        departmentCode="health",
        deadline="2031-03-04T16:30",
        note="请卫健跟进",
    )
    assert flash_of(dispatched) == {"done": ["dispatch"], "code": [code]}
    after = await event_of(api, code)
    assert after["status"] == "DISPATCHED"
    assert after["department"] == {"code": "health"}
    # The deadline was typed in Beijing time.
    deadline = datetime.fromisoformat(after["deadline"])
    assert deadline == datetime(2031, 3, 4, 8, 30, tzinfo=UTC)
    assert after["timeline"][-1] == {"action": "dispatch", "note": "请卫健跟进"}


async def test_a_community_office_dispatches_in_its_community(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    event = await report(api, "G2")
    await sign_in(browser, token(settings, "community_admin", grids=["C1"]))
    assert flash_of(await post_action(browser, event["code"], "accept"))["done"] == ["accept"]
    response = await post_action(browser, event["code"], "dispatch", departmentCode="environment")
    assert flash_of(response)["done"] == ["dispatch"]
    assert (await event_of(api, event["code"]))["department"] == {"code": "environment"}


async def test_without_its_csrf_token_nothing_changes(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    event = await report(api, "G1")
    await sign_in(browser, token(settings, "dispatcher"))
    url = f"/dispatch/events/{event['code']}/accept"
    assert (await browser.post(url, data={})).status_code == 403
    assert (await browser.post(url, data={"csrf_token": "forged"})).status_code == 403
    csrf = csrf_in(await board(browser))
    cross_site = await browser.post(
        url, data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    assert (await event_of(api, event["code"]))["status"] == "REPORTED"


async def test_refusals_come_back_to_the_board_as_alerts(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    event = await report(api, "G1")
    code = event["code"]
    await sign_in(browser, token(settings, "dispatcher"))
    csrf = csrf_in(await board(browser))

    # Dispatching an event nobody accepted: the state machine refuses.
    refused = await browser.post(
        f"/dispatch/events/{code}/dispatch", data={"csrf_token": csrf, "departmentCode": "health"}
    )
    assert flash_of(refused) == {"error": ["invalid_transition"], "code": [code]}
    page = await browser.get(refused.headers["location"] + "&lang=en")
    alert = re.search(
        r'<p class="error flash" role="alert" id="board-error">([^<]+)</p>', page.text
    )
    assert alert is not None
    assert alert.group(1).startswith(f"Event {code}: The event&#39;s status no longer allows")

    unknown = await browser.post(
        "/dispatch/events/EV00000000NOPE00/accept", data={"csrf_token": csrf}
    )
    assert flash_of(unknown)["error"] == ["not_found"]

    # A form older than the event (someone else accepted it meanwhile): a conflict, not a
    # second action on an event its user has not seen.
    stale_version = row_of(await board(browser), code)["attrs"]["data-version"]
    await gql(api, ACCEPT, id=event["id"])
    stale = await browser.post(
        f"/dispatch/events/{code}/dispatch",
        data={"csrf_token": csrf, "version": stale_version, "departmentCode": "health"},
    )
    assert flash_of(stale) == {"error": ["conflict"], "code": [code]}
    assert (await event_of(api, code))["status"] == "ACCEPTED"

    no_department = await post_action(browser, code, "dispatch", departmentCode="")
    assert flash_of(no_department)["error"] == ["bad_input"]
    past = await post_action(
        browser, code, "dispatch", departmentCode="health", deadline="2001-01-01T00:00"
    )
    assert flash_of(past)["error"] == ["bad_input"]
    nonsense = await post_action(
        browser, code, "dispatch", departmentCode="health", deadline="tomorrow"
    )
    assert flash_of(nonsense)["error"] == ["bad_input"]
    unknown_department = await post_action(browser, code, "dispatch", departmentCode="nope")
    assert flash_of(unknown_department)["error"] == ["bad_input"]
    assert (await event_of(api, code))["status"] == "ACCEPTED"


async def test_a_crafted_link_cannot_put_words_on_the_board(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, token(settings, "dispatcher"))
    for query in (
        "done=accept&code=%3Cb%3Ecall%20110%3C%2Fb%3E",
        "error=please%20call%20110",
        "done=delete&code=EV1",
    ):
        html = await board(browser, f"/dispatch?{query}")
        assert 'id="board-flash"' not in html and 'id="board-error"' not in html
        assert "call 110" not in html


# --- the board's copy of the state machine -------------------------------------------------


def test_the_board_follows_the_state_machine() -> None:
    """The pages may not import the domain, so the board keeps its own copy of which statuses
    are open and which each action starts from; this holds the copy equal to the table."""
    assert set(dispatch.OPEN_STATUSES) == {s.name for s in states.OPEN_STATUSES}
    assert set(dispatch.STATUSES) == {s.name for s in states.Status}
    for name, action in dispatch.ACTIONS.items():
        sources, _ = states.TRANSITIONS[states.Action(name)]
        assert action.sources == {s.name for s in sources}
