"""Real-browser tests' helpers: Debian's Chromium driven by Playwright against a real
`gridhub serve` (the fixtures that use them are in tests/browser_fixtures.py).

- The browser is Debian's package (`scripts/setup.sh test` installs it), never one Playwright
  downloads. Missing chromium skips, or fails under GRIDHUB_REQUIRE_SERVICES=1 like a missing
  service.
- A hub is the tables emptied, the small world of tests/world.py plus a little public content,
  then `gridhub serve` on 127.0.0.1 (tests/live.py) with the tests' policy.
- Playwright's async API: the tests and the database fixtures run on pytest-asyncio's session
  loop, and the sync API refuses to run inside a running loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import text

from hub.db import Base, Database
from hub.web.i18n import Catalogue
from tests.live import LiveServer, live_server
from tests.policy_clients import PURPOSE, SUPERUSER, credentials, token
from tests.services import REQUIRE_SERVICES
from tests.world import World, build_world

T = TypeVar("T")

LOCAL_HOST = "127.0.0.1"
# As the machine notes prescribe for Debian's chromium as root in a closed network: without the
# background-networking flags it tries Google's hosts at every start. Playwright adds a fresh,
# empty user-data dir of its own for every launch (and removes it at close).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_ENV = "GRIDHUB_ARTIFACTS"
REPOSITORY = Path(__file__).resolve().parent.parent
# Long enough for a loaded CI machine; nothing asserts on time, these only bound a hang.
WAIT_MS = 20_000


# --- the browser ---------------------------------------------------------------------------


def chromium_executable() -> str:
    """Debian's chromium, or a skip (a failure when every service is required)."""
    path = shutil.which("chromium")
    if path is not None:
        return path
    message = "Debian's chromium is not installed (`sh scripts/setup.sh test` installs it as root)"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and GRIDHUB_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def artifacts_dir() -> Path:
    """Where screenshots go: $GRIDHUB_ARTIFACTS, else test-artifacts/ (gitignored)."""
    configured = os.environ.get(ARTIFACTS_ENV)
    return Path(configured) if configured else REPOSITORY / "test-artifacts"


def screenshot_path(backend: str, name: str) -> Path:
    path = artifacts_dir() / "screenshots" / backend / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Traffic:
    """Every URL the browser asked for in one context: requests and WebSockets."""

    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        return [url for url in self.urls if not is_local(url)]


def is_local(url: str) -> bool:
    """True for 127.0.0.1 over http(s)/ws(s), and for URLs that fetch nothing (data:, blob:,
    about:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == LOCAL_HOST


@dataclass
class Browsing:
    context: BrowserContext
    traffic: Traffic

    async def new_page(self) -> Page:
        return await self.context.new_page()


@asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def browsing_in(browser: Browser) -> AsyncIterator[Browsing]:
    """A fresh context (cookies, storage) that records every URL it loads and every console
    error; the browser asks for zh-CN, as most of the site's visitors' browsers do."""
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    traffic = Traffic()
    context.on("request", lambda req: traffic.urls.append(req.url))

    def watch(page: Page) -> None:
        page.on("websocket", lambda socket: traffic.urls.append(socket.url))
        page.on(
            "console",
            lambda message: (
                traffic.console_errors.append(f"{page.url}: {message.text}")
                if message.type == "error"
                else None
            ),
        )

    context.on("page", watch)
    try:
        yield Browsing(context, traffic)
    finally:
        await context.close()


async def keep_screenshots(context: BrowserContext, name: str) -> None:
    """A full-page screenshot of every open page, under artefacts/failures/."""
    folder = artifacts_dir() / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "_", name)
    for n, page in enumerate(context.pages):
        # A closed or crashed page has nothing to keep.
        with suppress(PlaywrightError):
            await page.screenshot(path=str(folder / f"{safe}-{n}.png"), full_page=True)


# --- the server and its data ---------------------------------------------------------------


@dataclass
class Seeded:
    """Public content every module's server starts with."""

    notice_id: str
    notice_title: str
    other_notice_id: str
    other_notice_title: str


@dataclass
class Hub:
    server: LiveServer
    backend: str
    world: World
    api: httpx.AsyncClient
    seeded: Seeded | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, role: str, **claims: Any) -> str:
        assert self.server.settings is not None
        return token(self.server.settings, role, **claims)

    async def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        role: str = SUPERUSER,
        **claims: Any,
    ) -> dict[str, Any]:
        """The data of an API request as `role` (with its token's `claims`) that must not
        fail."""
        assert self.server.settings is not None
        headers = credentials(self.server.settings, role, purpose=PURPOSE, **claims)
        response = await self.api.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]


CREATE_NOTICE = """mutation($input: CreateNoticeInput!) { createNotice(input: $input) { id } }"""
PUBLISH_NOTICE = "mutation($id: ID!) { publishNotice(id: $id) { id status } }"
RETRACT_NOTICE = "mutation($id: ID!) { retractNotice(id: $id) { id status } }"
REPORT_EVENT = """mutation($input: ReportEventInput!) {
  reportEvent(input: $input) { id code status } }"""
EVENT = "query($code: String!) { event(code: $code) { status department { code } } }"


async def create_notice(
    hub: Hub,
    *,
    title: str,
    body: str = "",
    grids: tuple[str, ...] = ("C1",),
    department: str = "community_service",
    publish: bool = True,
) -> str:
    data = await hub.graphql(
        CREATE_NOTICE,
        {
            "input": {
                "title": title,
                "body": body or f"{title}。",
                "departmentCode": department,
                "gridCodes": list(grids),
            }
        },
    )
    notice_id: str = data["createNotice"]["id"]
    if publish:
        await hub.graphql(PUBLISH_NOTICE, {"id": notice_id})
    return notice_id


async def report_event(
    hub: Hub,
    *,
    title: str,
    grid: str = "G1",
    category: str = "SANITATION",
    deadline: datetime | None = None,
    role: str = SUPERUSER,
    **claims: Any,
) -> dict[str, Any]:
    """Report through the API as `role`; returns {id, code, status}."""
    event: dict[str, Any] = {
        "category": category,
        "title": title,
        "gridCode": grid,
        "reporterSystem": "browser-test",
    }
    if deadline is not None:
        event["deadline"] = deadline.isoformat()
    data = await hub.graphql(REPORT_EVENT, {"input": event}, role=role, **claims)
    return data["reportEvent"]


async def event_state(hub: Hub, code: str) -> dict[str, Any]:
    data = await hub.graphql(EVENT, {"code": code})
    return data["event"]


async def _empty_tables(database: Database) -> None:
    # As tests/conftest.py does for each test: this module's server starts from the same
    # state whatever ran before it on this database.
    async with database.engine.begin() as connection:
        tables = list(reversed(Base.metadata.sorted_tables))
        if database.dialect == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(table.delete())


async def _seed(hub: Hub) -> Seeded:
    """A little public content so the pages are not empty: two published notices and enough
    events in community C1 to pass the statistics' suppression threshold."""
    title = "垃圾分类宣传周"
    other = "幸福社区停水通知"
    notice_id = await create_notice(
        hub, title=title, body="## 活动安排\n\n周六上午在**社区广场**。", grids=("C1",)
    )
    other_id = await create_notice(
        hub, title=other, body="周三 9:00-12:00 停水。", grids=("C3",), department="civil_affairs"
    )
    for n in range(6):
        await report_event(hub, title=f"楼道堆物 {n}", grid="G1")
    return Seeded(notice_id, title, other_id, other)


@asynccontextmanager
async def running_hub(database_url: str, policy_dir: Path) -> AsyncIterator[Hub]:
    database = Database(database_url)
    try:
        await _empty_tables(database)
        async with database.transaction() as session:
            world = await build_world(session)
    finally:
        await database.dispose()
    backend = "postgres" if database_url.startswith("postgresql") else "sqlite"
    with ExitStack() as stack:
        # In a thread: live_server polls /healthz with blocking sleeps.
        server = await asyncio.to_thread(stack.enter_context, live_server(database_url, policy_dir))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
                hub = Hub(server, backend, world, api)
                hub.seeded = await _seed(hub)
                yield hub
        finally:
            await asyncio.to_thread(stack.close)


def seeded(hub: Hub) -> Seeded:
    assert hub.seeded is not None
    return hub.seeded


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- in the browser ------------------------------------------------------------------------


async def sign_in(page: Page, hub: Hub, role: str, **claims: Any) -> None:
    """Sign in through the sign-in form with a freshly issued token for `role`."""
    await page.goto(hub.url + "/signin")
    await page.fill("form#signin-form #credential", hub.token(role, **claims))
    async with page.expect_navigation():
        await page.click("form#signin-form [type=submit]")
    assert urlsplit(page.url).path != "/signin", f"sign-in as {role} failed: {page.url}"


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, what: str, within: float = WAIT_MS / 1000
) -> T:
    """The first truthy value of `check`, polled for up to `within` seconds (only a bound on a
    hang: nothing asserts how fast)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


def message_keys(catalogue: Catalogue, language: str, heading: str) -> set[str]:
    """The catalogue keys whose `language` text is `heading` (placeholders match any text)."""
    found = set()
    for key in catalogue.keys():  # noqa: SIM118 - Catalogue is not a mapping
        template = catalogue.text(language, key)
        pattern = re.sub(r"\\\{\w+\\\}", ".+", re.escape(template))
        if re.fullmatch(pattern, heading.strip()):
            found.add(key)
    return found


def in_future(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
