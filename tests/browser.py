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
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright
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
# The window of every context (browsing_in); the audit looks at pages this wide and as a phone.
DEFAULT_VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
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
    context = await browser.new_context(locale="zh-CN", viewport=DEFAULT_VIEWPORT)
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


FIRST_MEMBER = "{ members(first: 1) { edges { node { id } } } }"


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
    """Report through the API as `role`; returns {id, code, status}. The superuser names a
    system as the reporter; another role (which may not, without on_behalf) names a member."""
    event: dict[str, Any] = {"category": category, "title": title, "gridCode": grid}
    if role == SUPERUSER:
        event["reporterSystem"] = "browser-test"
    else:
        members = await hub.graphql(FIRST_MEMBER, role=role, **claims)
        event["reporterMemberId"] = members["members"]["edges"][0]["node"]["id"]
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


# --- accessibility measurements ------------------------------------------------------------

# WCAG 2.x: 4.5:1 for text, 3:1 for large text (24px, or 18.66px = 14pt when bold) and for what
# shows a state, such as a focus ring (1.4.11).
TEXT_CONTRAST = 4.5
LARGE_TEXT_CONTRAST = 3.0

# Colour arithmetic shared by the scripts below, run in the page. Colours are {r, g, b, a} with
# channels 0-255; getComputedStyle gives rgb()/rgba() for every colour the stylesheets use, and
# anything else (a colour function a later stylesheet might use) is reported, not guessed.
_COLOUR_JS = """
  const parse = (value) => {
    const m = /^rgba?\\(([^)]*)\\)$/.exec((value || '').trim());
    if (!m) return null;
    const parts = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    if (parts.length < 3 || parts.some(Number.isNaN)) return null;
    return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
  };
  const WHITE = {r: 255, g: 255, b: 255, a: 1};
  // `top` painted over the opaque `bottom`.
  const over = (top, bottom) => {
    const mix = (k) => top[k] * top.a + bottom[k] * (1 - top.a);
    return {r: mix('r'), g: mix('g'), b: mix('b'), a: 1};
  };
  const channel = (c) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const luminance = (c) =>
    0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const ratio = (x, y) => {
    const [hi, lo] = [luminance(x), luminance(y)].sort((p, q) => q - p);
    return (hi + 0.05) / (lo + 0.05);
  };
  const hex = (c) => '#' + ['r', 'g', 'b']
    .map((k) => Math.round(c[k]).toString(16).padStart(2, '0')).join('');
  // What shows behind an element: every background from the root down, each composited over
  // the one below it, on white. null when a background image (a gradient, a picture) is in
  // the way: its colours cannot be read from the styles.
  const backgrounds = new Map();
  const backgroundOf = (el) => {
    if (!el) return WHITE;
    if (backgrounds.has(el)) return backgrounds.get(el);
    const below = backgroundOf(el.parentElement);
    const style = getComputedStyle(el);
    let found = below;
    if (below === null || style.backgroundImage !== 'none') found = null;
    else {
      const own = parse(style.backgroundColor);
      if (own && own.a > 0) found = over(own, below);
    }
    backgrounds.set(el, found);
    return found;
  };
  const describe = (el) => {
    const steps = [];
    for (let node = el; node && steps.length < 4 && node !== document.body;
         node = node.parentElement) {
      let step = node.tagName.toLowerCase();
      if (node.id) step += '#' + node.id;
      else {
        const classes = [...node.classList].slice(0, 2);
        if (classes.length) step += '.' + classes.join('.');
      }
      steps.unshift(step);
      if (node.id) break;
    }
    return steps.join(' > ');
  };
"""

# Every visible piece of text under `scope` (a selector; the whole page when null): its colour
# against what shows behind it. Returns {checked, offenders, unknown}.
CONTRAST_JS = (
    """
([scope, normalNeed, largeNeed]) => {
"""
    + _COLOUR_JS
    + """
  const root = scope ? document.querySelector(scope) : document.body;
  if (!root) return {checked: 0, offenders: [], unknown: ['no element matches ' + scope]};
  const SKIP = new Set(['SCRIPT', 'STYLE', 'TEMPLATE', 'NOSCRIPT', 'OPTION', 'OPTGROUP', 'TITLE']);
  const CONTROLS = new Set(['SELECT', 'TEXTAREA']);
  const TEXT_INPUTS = new Set(['text', 'search', 'email', 'url', 'tel', 'number', 'password',
    'date', 'time', 'datetime-local', 'month', 'week']);
  const ownText = (el) => [...el.childNodes]
    .filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('')
    .replace(/\\s+/g, ' ').trim();
  // Hidden from sight though rendered: the site's hiding classes, clipping, no size, or
  // pushed off the page (the skip link until it has focus).
  const unseen = (el) => {
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return true;
    if (el.closest('.visually-hidden, .honeypot')) return true;
    const box = el.getBoundingClientRect();
    if (box.width < 2 || box.height < 2) return true;
    if (box.right + window.scrollX <= 0 || box.bottom + window.scrollY <= 0) return true;
    for (let node = el; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.clip !== 'auto' || style.clipPath !== 'none') return true;
    }
    return false;
  };
  const opacityOf = (el) => {
    let value = 1;
    for (let node = el; node; node = node.parentElement)
      value *= Number(getComputedStyle(node).opacity);
    return value;
  };
  const offenders = [];
  const unknown = [];
  let checked = 0;
  const measure = (el, words, ink, behind, px, weight) => {
    if (!ink) { unknown.push(describe(el) + ': colour ' + getComputedStyle(el).color); return; }
    if (behind === null) return;  // over a background image: not measurable from styles
    const shown = over({...ink, a: ink.a * opacityOf(el)}, behind);
    const large = px >= 24 || (px >= 18.66 && weight >= 700);
    const need = large ? largeNeed : normalNeed;
    const value = ratio(shown, behind);
    checked += 1;
    if (value < need) {
      offenders.push({path: describe(el), text: words.slice(0, 40), colour: hex(shown),
        background: hex(behind), ratio: Math.floor(value * 100) / 100, need,
        size: Math.round(px * 10) / 10, weight});
    }
  };
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (SKIP.has(el.tagName) || el.closest('template')) continue;
    if (el instanceof SVGElement) {
      // SVG text: its fill against what shows behind the drawing (the charts draw no text
      // over their bars). A fill that is a paint server or none is not a colour to measure.
      if (!(el instanceof SVGTextContentElement) || !ownText(el) || unseen(el)) continue;
      const style = getComputedStyle(el);
      const fill = parse(style.fill);
      if (!fill) continue;
      fill.a *= Number(style.fillOpacity);
      const matrix = el.getScreenCTM();
      const scale = matrix ? Math.hypot(matrix.a, matrix.b) : 1;
      measure(el, ownText(el), fill, backgroundOf(el.ownerSVGElement),
        parseFloat(style.fontSize) * scale, Number(style.fontWeight));
      continue;
    }
    const type = (el.getAttribute('type') || 'text').toLowerCase();
    const control = CONTROLS.has(el.tagName) || (el.tagName === 'INPUT' && TEXT_INPUTS.has(type));
    const words = control ? (el.value || el.getAttribute('placeholder') || '(field)') : ownText(el);
    if (!words || unseen(el)) continue;
    const style = getComputedStyle(el);
    const px = parseFloat(style.fontSize);
    const weight = Number(style.fontWeight);
    measure(el, words, parse(style.color), backgroundOf(el), px, weight);
    if (control && el.getAttribute('placeholder')) {
      const hint = getComputedStyle(el, '::placeholder');
      measure(el, el.getAttribute('placeholder'), parse(hint.color), backgroundOf(el), px, weight);
    }
  }
  return {checked, offenders, unknown};
}
"""
)


async def contrast_problems(page: Page, scope: str | None = None) -> tuple[int, list[str]]:
    """How many pieces of text were measured, and each one below WCAG 2.x's contrast
    minimum (or whose colour could not be read) under `scope`, as readable lines."""
    found: dict[str, Any] = await page.evaluate(
        CONTRAST_JS, [scope, TEXT_CONTRAST, LARGE_TEXT_CONTRAST]
    )
    problems = [
        f"contrast {o['ratio']}:1 < {o['need']}:1 for {o['path']} {o['text']!r}: "
        f"{o['colour']} on {o['background']} ({o['size']}px, weight {o['weight']})"
        for o in found["offenders"]
    ]
    problems += [f"colour not measurable: {what}" for what in found["unknown"]]
    return found["checked"], problems


# What a keyboard reaches: the elements the focus indicator check samples.
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]"
# At most this many per page, one per kind of element (tag, type, classes, parent, landmark):
# a page's fifty rows of identical links share one look.
FOCUS_SAMPLE = 40

# Focuses a sample of what Tab reaches and compares its outline and box shadow with its look
# unfocused: one of them must change into something visible, and a solid outline must stand
# out 3:1 from what it is drawn on (1.4.11). Chromium's own `auto` ring is drawn in two
# colours, visible on any background. Returns {sampled, problems}.
FOCUS_JS = (
    """
([selector, most, need]) => {
"""
    + _COLOUR_JS
    + """
  const kinds = new Set();
  const sample = [];
  for (const el of document.querySelectorAll(selector)) {
    if (el.tabIndex < 0 || el.disabled || el.closest('template')) continue;
    if (!el.checkVisibility({checkVisibilityCSS: true})) continue;
    const landmark = el.closest('header, nav, main, footer, form, table, figure');
    const kind = [el.tagName, el.getAttribute('type'), el.className,
      el.parentElement && el.parentElement.tagName + '.' + el.parentElement.className,
      landmark && landmark.tagName].join('|');
    if (kinds.has(kind)) continue;
    kinds.add(kind);
    sample.push(el);
    if (sample.length >= most) break;
  }
  const look = (el) => {
    const s = getComputedStyle(el);
    return {style: s.outlineStyle, width: parseFloat(s.outlineWidth) || 0,
      colour: s.outlineColor, offset: parseFloat(s.outlineOffset) || 0, shadow: s.boxShadow};
  };
  const problems = [];
  for (const el of sample) {
    if (document.activeElement && document.activeElement !== document.body)
      document.activeElement.blur();
    const before = look(el);
    el.focus({preventScroll: true});
    if (document.activeElement !== el) {
      problems.push(describe(el) + ': cannot take focus');
      continue;
    }
    const after = look(el);
    el.blur();
    const ringColour = parse(after.colour);
    const ring = after.style !== 'none' && after.width >= 1 && (!ringColour || ringColour.a > 0);
    const ringChanged = ring && (before.style === 'none' || before.width < 1
      || before.colour !== after.colour || before.width !== after.width);
    const shadowChanged = after.shadow !== 'none' && after.shadow !== before.shadow;
    if (!ringChanged && !shadowChanged) {
      problems.push(describe(el) + ': no visible focus indicator (outline ' + after.style + ' '
        + after.width + 'px, box-shadow ' + after.shadow + ')');
      continue;
    }
    if (ringChanged && after.style !== 'auto' && ringColour) {
      // An outline outside the box is drawn on the parent's background, inside on its own.
      const behind = backgroundOf(after.offset >= 0 ? el.parentElement : el);
      if (behind) {
        const shown = over(ringColour, behind);
        const value = ratio(shown, behind);
        if (value < need)
          problems.push(describe(el) + ': focus outline ' + hex(shown) + ' on ' + hex(behind)
            + ' has contrast ' + value.toFixed(2) + ':1, less than ' + need + ':1');
      }
    }
  }
  return {sampled: sample.length, problems};
}
"""
)


async def focus_problems(page: Page) -> tuple[int, list[str]]:
    """How many interactive elements were focused, and each one that shows no visible focus
    indicator. Presses Tab first, so the page is in keyboard mode as for a keyboard user
    (:focus-visible then matches script focus too)."""
    await page.keyboard.press("Tab")
    found: dict[str, Any] = await page.evaluate(
        FOCUS_JS, [FOCUSABLE, FOCUS_SAMPLE, LARGE_TEXT_CONTRAST]
    )
    return found["sampled"], found["problems"]
