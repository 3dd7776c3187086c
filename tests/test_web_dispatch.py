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
from urllib.parse import parse_qs, urlencode, urlsplit

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
mutation($title: String!, $grid: String!, $description: String! = "") {
  reportEvent(input: {category: FIRE_HAZARD, severity: HIGH, title: $title, gridCode: $grid,
                      description: $description, reporterSystem: "test"}) { id code }
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
    """The rows of table#board: each row's attributes, its text, the forms in it and its
    forms' hidden fields (name: value)."""

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
            self._row = {
                "attrs": attributes,
                "text": "",
                "forms": [],
                "options": [],
                "hidden": {},
            }
        elif self._row is not None and tag == "form":
            self._row["forms"].append(attributes)
        elif self._row is not None and tag == "input" and attributes.get("type") == "hidden":
            self._row["hidden"][attributes.get("name")] = attributes.get("value", "")
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


async def report(
    api: httpx.AsyncClient, grid: str, title: str = "楼道堆物", description: str = ""
) -> dict[str, str]:
    return (await gql(api, REPORT, title=title, grid=grid, description=description))["reportEvent"]


async def set_deadline(db: Database, code: str, hours: float) -> None:
    """Move an event's deadline to `hours` from now: the API refuses a deadline in the past,
    so the clock "moves" in the database instead."""
    async with db.transaction() as session:
        await session.execute(
            update(Event)
            .where(Event.code == code)
            .values(deadline=utcnow() + timedelta(hours=hours))
        )


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
    http: httpx.AsyncClient, code: str, action: str, path: str = "/dispatch", **fields: str
) -> httpx.Response:
    """Submit the row's form as a browser would, from the board at `path`: with its hidden
    fields (CSRF token, the version the row shows, return_to, next_code) unless the test gives
    its own."""
    html = await board(http, path)
    data = {"csrf_token": csrf_in(html)}
    if any(r["attrs"]["data-event-code"] == code for r in rows_of(html)):
        data.update(row_of(html, code)["hidden"])
    data.update(fields)
    return await http.post(f"/dispatch/events/{code}/{action}", data=data)


def flash_of(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/dispatch?"), location
    return parse_qs(urlsplit(location).query)


def anchor_of(response: httpx.Response) -> str:
    return urlsplit(response.headers["location"]).fragment


async def follow(http: httpx.AsyncClient, response: httpx.Response, **extra: str) -> str:
    """The board a redirect lands on (with `extra` query parameters, e.g. lang)."""
    parts = urlsplit(response.headers["location"])
    query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
    return await board(http, f"{parts.path}?{query}")


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
    await set_deadline(db, late["code"], -2)
    await set_deadline(db, on_time["code"], 2)
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
        assert re.search(rf'<label [^>]*for="{field}-{accepted["code"]}">', html)
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
    page = await follow(browser, accepted, lang="en")
    assert f'role="status" id="board-flash">Event {code} was accepted.</p>' in page
    assert form_classes(row_of(page, code)) == {"dispatch"}

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
    page = await follow(browser, refused, lang="en")
    alert = re.search(r'<p class="error flash" role="alert" id="board-error">([^<]+)</p>', page)
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


@pytest.mark.parametrize(
    ("deadline", "department", "note", "message", "english"),
    [
        ("2001-01-01T00:00", "health", "", "bad_deadline", "The deadline must be a time in the"),
        ("tomorrow", "health", "", "bad_deadline", "The deadline must be a time in the"),
        ("2031-01-01T00:00", "", "", "bad_department", "Choose the department from the list."),
        ("2031-01-01T00:00", "nope", "", "bad_department", "Choose the department from the"),
        ("", "health", "铃声\x07", "bad_note", "The note contains characters that are not"),
    ],
)
async def test_a_refused_dispatch_says_which_field_is_wrong(
    browser: httpx.AsyncClient,
    api: httpx.AsyncClient,
    settings: Settings,
    deadline: str,
    department: str,
    note: str,
    message: str,
    english: str,
) -> None:
    """The API's BAD_USER_INPUT names the argument it refused (extensions.field): a past
    deadline is not reported as a missing department."""
    event = await report(api, "G1")
    code = event["code"]
    await gql(api, ACCEPT, id=event["id"])
    await sign_in(browser, token(settings, "dispatcher"))
    refused = await post_action(
        browser, code, "dispatch", departmentCode=department, deadline=deadline, note=note
    )
    assert flash_of(refused) == {"error": [message], "code": [code]}
    page = await follow(browser, refused, lang="en")
    alert = re.search(r'role="alert" id="board-error">([^<]+)</p>', page)
    assert alert is not None and english in unescape(alert.group(1))
    assert (await event_of(api, code))["status"] == "ACCEPTED"


# --- coming back to where the user was -----------------------------------------------------


async def test_an_action_comes_back_to_the_same_view_and_row(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    first, second, third = [await report(api, g, f"超时{g}") for g in ("G1", "G2", "G3")]
    for event in (first, second, third):
        await set_deadline(db, event["code"], -1)
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser, "/dispatch?overdue=1")
    # Newest first: third, second, first. Each form knows its view and the row below it.
    assert codes_of(html)[:3] == [third["code"], second["code"], first["code"]]
    hidden = row_of(html, second["code"])["hidden"]
    assert hidden["return_to"] == "/dispatch?overdue=1"
    assert hidden["next_code"] == first["code"]
    assert row_of(html, first["code"])["hidden"]["next_code"] == second["code"]  # the last
    assert f'id="event-{second["code"]}"' in html

    # Accepted, the event is still overdue: back to the overdue view, at its row.
    accepted = await post_action(browser, second["code"], "accept", "/dispatch?overdue=1")
    location = accepted.headers["location"]
    assert flash_of(accepted) == {"overdue": ["1"], "done": ["accept"], "code": [second["code"]]}
    assert anchor_of(accepted) == f"event-{second['code']}"
    assert location.startswith("/dispatch?overdue=1&")
    assert second["code"] in codes_of(await follow(browser, accepted))

    # Dispatched with a new deadline, it is no longer overdue and leaves this view: back to
    # the row that followed it.
    dispatched = await post_action(
        browser,
        second["code"],
        "dispatch",
        "/dispatch?overdue=1",
        departmentCode="health",
        deadline="2031-01-01T00:00",
    )
    assert flash_of(dispatched) == {
        "overdue": ["1"],
        "done": ["dispatch"],
        "code": [second["code"]],
    }
    assert anchor_of(dispatched) == f"event-{first['code']}"
    assert second["code"] not in codes_of(await follow(browser, dispatched))

    # A refusal comes back to the same view and row too.
    refused = await post_action(browser, third["code"], "dispatch", "/dispatch?overdue=1")
    assert flash_of(refused)["overdue"] == ["1"]
    assert anchor_of(refused) == f"event-{third['code']}"

    # On the all-open view the page cursor is kept as well.
    kept = await post_action(
        browser, third["code"], "accept", return_to="/dispatch?after=QUJD-_x", next_code="x"
    )
    assert flash_of(kept) == {"after": ["QUJD-_x"], "done": ["accept"], "code": [third["code"]]}
    assert anchor_of(kept) == f"event-{third['code']}"


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/dispatch?overdue=1",
        "//evil.example/dispatch",
        "/\\evil.example/dispatch",
        "javascript:alert(1)",
        "/signout",
        "/dispatch/../signin?next=https://evil.example",
        "/dispatch/events/EV1/accept",
        "/dispatch?overdue=1&next=https://evil.example&lang=en",
        '/dispatch?after="><script>alert(1)</script>',
        "/dispatch?" + "a=1&" * 50,
        "",
    ],
)
async def test_return_to_only_ever_leads_back_to_the_board(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, return_to: str
) -> None:
    """return_to is read as a view of the board, and the redirect is built anew from it: no
    other path, host or query parameter can get through (no open redirect)."""
    event = await report(api, "G1")
    await sign_in(browser, token(settings, "dispatcher"))
    response = await post_action(
        browser, event["code"], "accept", return_to=return_to, next_code='"><b>'
    )
    parts = urlsplit(response.headers["location"])
    assert (parts.scheme, parts.netloc, parts.path) == ("", "", "/dispatch")
    params = parse_qs(parts.query)
    assert set(params) <= {"overdue", "after", "done", "code"}
    assert params["done"] == ["accept"]
    assert params.get("overdue", ["1"]) == ["1"]
    assert "after" not in params
    # Not overdue, the event is not in the overdue view: the row after it would be the anchor,
    # but the next_code sent is no event code.
    expected = "" if "overdue" in params else f"event-{event['code']}"
    assert parts.fragment == expected


async def test_a_bad_next_code_is_no_anchor(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    event = await report(api, "G1")
    await gql(api, ACCEPT, id=event["id"])
    await set_deadline(db, event["code"], -1)
    await sign_in(browser, token(settings, "dispatcher"))
    response = await post_action(
        browser,
        event["code"],
        "dispatch",
        "/dispatch?overdue=1",
        departmentCode="health",
        deadline="2031-01-01T00:00",
        next_code="<b>x</b>",
    )
    assert flash_of(response)["done"] == ["dispatch"]
    assert anchor_of(response) == ""


# --- overdue events stand out --------------------------------------------------------------


def overdue_banner(html: str) -> re.Match[str] | None:
    return re.search(r'<p id="board-overdue"([^>]*)><strong id="board-overdue-text">([^<]*)<', html)


async def test_the_overdue_count_heads_the_board(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings, db: Database
) -> None:
    await sign_in(browser, token(settings, "community_admin", grids=["C1"]))
    await report(api, "G1")
    # None overdue: the banner is there for board.js, hidden.
    banner = overdue_banner(await board(browser))
    assert banner is not None and "hidden" in banner.group(1)

    late = [await report(api, grid) for grid in ("G1", "G2")]
    elsewhere = await report(api, "G3")  # another community's: not counted
    resolved = await report(api, "G1")  # past its deadline, but no longer open
    for event in (*late, elsewhere, resolved):
        await set_deadline(db, event["code"], -1)
    for query in (ACCEPT, DISPATCH, START, RESOLVE):
        await gql(api, query, id=resolved["id"])

    html = await board(browser)
    banner = overdue_banner(html)
    assert banner is not None
    assert "hidden" not in banner.group(1) and 'role="status"' in banner.group(1)
    assert banner.group(2) == "2 件事件已超时"
    # It comes before the table, with a link to the overdue view; the filter link counts too.
    assert html.index('id="board-overdue"') < html.index('id="board"')
    assert re.search(
        r'id="board-overdue-text">[^<]*</strong> — <a href="/dispatch\?overdue=1">', html
    )
    assert re.search(
        r'<a href="/dispatch\?overdue=1" id="board-overdue-filter"[^>]*>仅超时（2）</a>', html
    )
    assert 'data-overdue-total="2"' in html

    english = await board(browser, "/dispatch?lang=en")
    banner = overdue_banner(english)
    assert banner is not None and banner.group(2) == "2 events are overdue"
    assert ">Overdue only (2)</a>" in english

    # The overdue view needs no banner; its filter link still counts.
    overdue_view = await board(browser, "/dispatch?overdue=1&lang=zh-CN")
    assert 'id="board-overdue"' not in overdue_view
    assert "仅超时（2）" in overdue_view
    assert set(codes_of(overdue_view)) == {event["code"] for event in late}

    await gql(api, REJECT, id=late[0]["id"])
    banner = overdue_banner(await board(browser, "/dispatch?lang=en"))
    assert banner is not None and banner.group(2) == "1 event is overdue"


# --- what each row shows and how ----------------------------------------------------------


async def test_a_row_shows_the_description_in_a_details(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    described = await report(
        api, "G1", "楼道堆物", description="三楼楼道堆满纸箱，\n<img src=x onerror=alert(1)>"
    )
    bare = await report(api, "G2")
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser, "/dispatch?lang=en")
    row = row_of(html, described["code"])
    assert "三楼楼道堆满纸箱" in row["text"]
    title_cell = re.search(
        rf'id="event-{described["code"]}".*?<td data-field="title"[^>]*>(.*?)</td>', html, re.S
    )
    assert title_cell is not None
    cell = title_cell.group(1)
    assert "<span data-title>楼道堆物</span>" in cell
    assert '<details class="event-description">' in cell
    assert (
        f'<summary>Description<span class="visually-hidden" data-code-text> {described["code"]}</span></summary>'
        in cell
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in cell
    assert "<img src=x" not in html
    # No description: the (empty) details is there for board.js, hidden.
    bare_cell = re.search(
        rf'id="event-{bare["code"]}".*?<td data-field="title"[^>]*>(.*?)</td>', html, re.S
    )
    assert bare_cell is not None
    assert '<details class="event-description" hidden>' in bare_cell.group(1)


async def test_a_row_keeps_the_deadline_and_note_behind_more_options(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, settings: Settings
) -> None:
    event = await report(api, "G1")
    await gql(api, ACCEPT, id=event["id"])
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser)
    code = event["code"]
    form = re.search(
        rf'<form class="dispatch" method="post" action="/dispatch/events/{code}/dispatch">(.*?)</form>',
        html,
        re.S,
    )
    assert form is not None
    main, _, more = form.group(1).partition('<details class="dispatch-more">')
    # The department and the button show in the row; the rest waits in the <details>.
    assert f'id="dept-{code}"' in main and 'type="submit"' in main
    assert f'id="deadline-{code}"' in more and f'id="note-{code}"' in more
    assert "<summary>更多选项" in more
    assert f'id="deadline-{code}"' not in main and f'id="note-{code}"' not in main


async def test_the_scrolling_table_is_a_named_region(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, token(settings, "dispatcher"))
    html = await board(browser, "/dispatch?lang=en")
    assert re.search(
        r'<div class="table-scroll" role="region" tabindex="0" aria-label="[^"]+">\s*<table id="board"',
        html,
    )


async def test_the_assets_carry_the_live_highlight_and_the_overdue_count(
    browser: httpx.AsyncClient,
) -> None:
    """board.js's live behaviour runs in tests/test_browser_pages.py; here, that the shipped
    assets have it: a class for rows that arrive live, removed again, and no inline style."""
    script = (await browser.get("/static/board.js")).text
    styles = (await browser.get("/static/board.css")).text
    assert 'classList.add("arrived")' in script and 'classList.remove("arrived")' in script
    assert "tr.arrived" in styles
    assert ".style" not in script and "innerHTML" not in script
    assert "board-overdue-text" in script and "next_code" in script


# --- sign-in with a role the credential does not carry -------------------------------------


async def test_signing_in_with_a_role_the_credential_lacks_says_so(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    form = await browser.get("/signin?lang=en")
    csrf = csrf_in(form.text)
    wrong_role = await browser.post(
        "/signin",
        data={"csrf_token": csrf, "credential": token(settings, "dispatcher"), "role": "auditor"},
    )
    assert wrong_role.status_code == 401
    assert "This credential does not carry that role." in wrong_role.text
    assert "not valid or has expired" not in wrong_role.text
    # A credential that does not verify says only that, whatever the role typed.
    bad = await browser.post(
        "/signin", data={"csrf_token": csrf, "credential": "not-a-token", "role": "auditor"}
    )
    assert bad.status_code == 401
    assert "The credential is not valid or has expired." in bad.text
    assert "does not carry that role" not in bad.text
    assert (await browser.get("/dispatch")).status_code == 303


# --- the board's copy of the state machine -------------------------------------------------


def test_the_board_follows_the_state_machine() -> None:
    """The pages may not import the domain, so the board keeps its own copy of which statuses
    are open and which each action starts from; this holds the copy equal to the table."""
    assert set(dispatch.OPEN_STATUSES) == {s.name for s in states.OPEN_STATUSES}
    assert set(dispatch.STATUSES) == {s.name for s in states.Status}
    for name, action in dispatch.ACTIONS.items():
        sources, _ = states.TRANSITIONS[states.Action(name)]
        assert action.sources == {s.name for s in sources}
