"""No leaks on the server-rendered pages: the leak suite's oracle (tests/markers.py) over HTML and
Atom instead of /graphql.

Every page the site routes to (read from the app's own routes: a new page without URLs here
fails `test_every_page_of_the_site_is_fetched`) is fetched over the marker world, anonymously
and signed in as every role of the oracle, and searched for the markers that viewer may not see
in full: a hidden marker (and a hidden marker's token) must not appear at all, a masked one
never in full. The public site runs as the public role whoever is signed in ("the public site
runs as the `public` role"), so its pages answer to the public's oracle; the dispatch board and
the auditors' console run as the signed-in viewer and answer to its own. A role that may not
open a page gets the sign-in page or 403, and those answer to its oracle too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from html import unescape
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from starlette.routing import Mount, Route

from hub.authz.policy import Policy
from hub.authz.profile import Level
from hub.config import DEFAULT_POLICY_DIR, Settings
from hub.db import Database
from tests.markers import (
    RESIDENTS,
    VIEWPOINTS,
    MarkerWorld,
    Oracle,
    Viewpoint,
    leaked,
    seed_markers,
)
from tests.policy_clients import PURPOSE, credentials, token
from tests.world import World

POLICY = Policy.from_directory(DEFAULT_POLICY_DIR)
PUBLIC = VIEWPOINTS["public"]
# Who may open the pages that need a sign-in (hub/web/dispatch.py, hub/web/audit.py).
BOARD_ROLES = frozenset({"dispatcher", "community_admin"})
AUDITORS = frozenset({"auditor"})
# Paths the site routes to that show no data at all: fetched, but nothing to search for.
NO_DATA = frozenset({"/favicon.ico"})


@pytest.fixture(params=["compiled", "normal"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The pages run their operations through the same executors as /graphql: both of them."""
    return replace(settings, compiled_execution=request.param == "compiled")


@pytest.fixture
async def marked(db: Database, world: World, app: Any) -> MarkerWorld:
    async with db.transaction() as session:
        seeded = await seed_markers(session, world)
    await app.state.registry.sync(app.state.db)
    return seeded


@pytest.fixture
def oracle(marked: MarkerWorld) -> Oracle:
    return Oracle(POLICY, marked)


# --- the pages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    url: str
    # Who answers for what it shows: the public site always runs as the public role.
    public: bool
    # Who may open it besides everyone (None: everyone).
    roles: frozenset[str] | None = None


def site_routes(app: Any) -> Iterator[str]:
    """The path of every GET route of the site (mounted at "/" in hub.app)."""
    (site,) = [r for r in app.routes if isinstance(r, Mount) and r.path == ""]
    for route in site.routes:
        if isinstance(route, Route) and "GET" in (route.methods or ()):
            yield route.path


def urls_by_route(marked: MarkerWorld) -> dict[str, list[Page]]:
    """The URLs fetched for each route: every marker row it can name, and the variants (search,
    filters, language) that change what it reads."""
    notices = [marked.rows[k] for k in ("noticeA", "noticeB", "noticeC")]
    communities = ["C1", "C2", "C3", "S2"]
    tracking = [r.code for r in marked.rows.values() if r.type == "Feedback" and r.code]
    event_codes = [r.code for r in marked.rows.values() if r.type == "Event" and r.code]
    roles = [v for v in VIEWPOINTS if v != "public"]

    def public(*urls: str) -> list[Page]:
        return [Page(url, public=True) for url in urls]

    def board(*urls: str) -> list[Page]:
        return [Page(url, public=False, roles=BOARD_ROLES) for url in urls]

    def console(*urls: str) -> list[Page]:
        return [Page(url, public=False, roles=AUDITORS) for url in urls]

    return {
        "/": public("/", "/?lang=en"),
        "/notices": public(
            "/notices",
            "/notices?lang=en",
            "/notices?q=MARKER",
            *(f"/notices?community={c}" for c in communities),
        ),
        "/notices/feed.atom": public("/notices/feed.atom", "/notices/feed.atom?lang=en"),
        "/notices/{notice_id}": public(
            *(f"/notices/{quote(n.global_id)}" for n in notices),
            *(f"/notices/{n.pk}" for n in notices),
        ),
        "/communities/{code}/feed.atom": public(
            *(f"/communities/{c}/feed.atom" for c in communities)
        ),
        "/stats": public("/stats", *(f"/stats?community={c}" for c in communities)),
        "/feedback": public("/feedback"),
        "/feedback/track": public(
            "/feedback/track", *(f"/feedback/track?code={c}" for c in [*tracking, *event_codes])
        ),
        "/signin": public("/signin"),
        "/favicon.ico": public("/favicon.ico"),
        "/dispatch": board("/dispatch", "/dispatch?overdue=1", "/dispatch?lang=en"),
        "/audit": console("/audit"),
        "/audit/matrix": console("/audit/matrix", "/audit/matrix?differ=1&sensitive=1"),
        "/audit/schema": console("/audit/schema", *(f"/audit/schema?role={r}" for r in roles)),
        "/audit/policies": console("/audit/policies"),
        "/audit/log": console("/audit/log", "/audit/log?lang=en"),
        "/audit/grants": console("/audit/grants", "/audit/grants?active=1"),
    }


def test_every_page_of_the_site_is_fetched(app: Any, marked: MarkerWorld) -> None:
    """A page added to the site without URLs above fails here, so it cannot go unchecked."""
    assert set(site_routes(app)) == set(urls_by_route(marked))


# --- browsers ----------------------------------------------------------------------------------


@asynccontextmanager
async def browser_as(
    app: Any, settings: Settings, view: Viewpoint
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the site: anonymous for the public, otherwise signed in through /signin with
    a token carrying the viewpoint's grids and department. https: the session cookie is Secure."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        if view.role != "public":
            form = await http.get("/signin")
            found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert found, form.text
            credential = token(
                settings,
                view.role,
                subject=view.subject,
                grids=view.grids,
                department=view.department,
            )
            signed = await http.post(
                "/signin",
                data={"csrf_token": found.group(1), "credential": credential, "role": view.role},
            )
            assert signed.status_code == 303, (view.role, signed.text[:2000])
        yield http


def readings(text: str) -> str:
    """The page as fetched, as a reader sees it (entities decoded) and as its links carry it
    (percent-decoded): a marker must not hide behind an escape."""
    return "\n".join((text, unescape(text), unquote(text)))


def forbidden_on(oracle: Oracle, view: Viewpoint, page: Page) -> set[str]:
    """What `view` must not find on `page`. The URL may name tracking codes (`tracked` rows)."""
    if page.public:
        # Run as the public role whoever is signed in: the public's view, and nothing more.
        return oracle.forbidden(PUBLIC, page.url)
    return oracle.forbidden(view, page.url)


# --- the leak check ----------------------------------------------------------------------------

# What each viewer must find somewhere, so the check is not vacuous: a page that showed nothing
# would pass it.
MUST_SEE = {
    "public": {"MARKER-NOTICE-TITLE-B", "MARKER-NOTICE-BODY-B", "MARKER-FEEDBACK-RESPONSE-A"},
    "dispatcher": {"MARKER-TITLE-A1", "MARKER-TITLE-B1", "MARKER-DESCRIPTION-C1"},
    "community_admin": {"MARKER-TITLE-A1", "MARKER-TITLE-A4"},
    "auditor": {"MARKER-GRANT-REASON-B"},
}
SENSITIVE_READ = """
query Q($id: String!) { residents(filter: {idNumber: $id}) { totalCount nodes { id name } } }
"""


async def leave_traces(app: Any, settings: Settings) -> None:
    """Reads that go on the access log before the auditor opens it: every role asks for a
    resident by a marker's ID number where it may, so a log that copied what was asked would
    show the auditor an ID number."""
    transport = httpx.ASGITransport(app=app)
    for view in VIEWPOINTS.values():
        headers = credentials(
            settings,
            view.role,
            subject=view.subject,
            grids=view.grids,
            department=view.department,
            purpose=PURPOSE,
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            for seed in RESIDENTS:
                response = await http.post(
                    "/graphql", json={"query": SENSITIVE_READ, "variables": {"id": seed.id_number}}
                )
                assert response.status_code < 500, response.text


@pytest.mark.parametrize("role", list(VIEWPOINTS))
async def test_pages_show_nothing_the_policy_hides(
    role: str, app: Any, settings: Settings, marked: MarkerWorld, oracle: Oracle
) -> None:
    view = VIEWPOINTS[role]
    if role in AUDITORS:
        await leave_traces(app, settings)
    seen: set[str] = set()
    async with browser_as(app, settings, view) as http:
        for route, pages in sorted(urls_by_route(marked).items()):
            for page in pages:
                response = await http.get(page.url)
                allowed = page.roles is None or role in page.roles
                if allowed:
                    assert response.status_code < 500, (role, page.url, response.text[:2000])
                    if page.roles is not None:
                        assert response.status_code == 200, (role, page.url, response.text[:2000])
                elif role == "public":
                    assert response.status_code == 303, (role, page.url)
                    assert response.headers["location"].startswith("/signin?"), (role, page.url)
                else:
                    assert response.status_code == 403, (role, page.url)
                text = readings(response.text)
                found = leaked(text, forbidden_on(oracle, view, page))
                assert not found, (
                    f"{route}: {page.url} shows {found} to {role}\n{response.text[:3000]}"
                )
                if route not in NO_DATA:
                    judge = PUBLIC if page.public else view
                    seen |= {
                        m.value
                        for m in marked.markers
                        if m.value in text and oracle.shown(judge, m, page.url) is Level.FULL
                    }
    # The public site shows every viewer the same published things.
    assert MUST_SEE["public"] | MUST_SEE.get(role, set()) <= seen, (role, sorted(seen))
