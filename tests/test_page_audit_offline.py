"""A Lighthouse-style check of every page, offline, in the real browser (tests/browser.py).

Each page is crawled in Chromium, the public ones anonymously, the board and the console signed
in, starting from an explicit list and following same-site links (so a page added later and
linked from anywhere is checked too). Every page must have:

- a non-empty, page-specific <title> and <html lang>, a viewport for phones;
- exactly one <h1>;
- a label for every form field (input except hidden and buttons, select, textarea), through
  <label for>, an enclosing <label>, aria-label or aria-labelledby; no label pointing nowhere;
- alt text on every image, a name on every SVG image, button and link; no duplicate ids;
- no inline script, style attribute or event-handler attribute (the CSP would block them, so
  each is a broken feature), and no CSP violation in the console;
- a Content-Security-Policy header without 'unsafe-inline', 'unsafe-eval' or wildcards;
- WCAG 2.x contrast for every visible piece of text, SVG text included (4.5:1, large text
  3:1), as a phone shows the page and at the browser's default width;
- a visible focus indicator on a sample of what Tab reaches (one of each kind), a solid
  outline standing out 3:1 from what it is drawn on (tests/browser.py: CONTRAST_JS, FOCUS_JS;
  TestTheChecks shows both find what they look for).

And the browser may load nothing from anywhere but 127.0.0.1: every request and WebSocket of
the crawl is recorded and checked.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, ViewportSize

from hub.web.i18n import Catalogue
from tests.browser import (
    DEFAULT_VIEWPORT,
    Browsing,
    Hub,
    contrast_problems,
    focus_problems,
    screenshot_path,
    seeded,
    sign_in,
)

pytest_plugins = ["tests.browser_fixtures"]

# (path, expected HTTP status). "{notice}" is a published notice's id.
PUBLIC = [
    ("/", 200),
    ("/notices", 200),
    ("/notices?q=%E9%80%9A%E7%9F%A5", 200),
    ("/notices?community=C1", 200),
    ("/notices/{notice}", 200),
    ("/stats", 200),
    ("/stats?community=C1", 200),
    ("/feedback", 200),
    ("/feedback/track", 200),
    # An unknown code is a 404 page that says only that.
    ("/feedback/track?code=NOSUCHCODE00", 404),
    ("/signin", 200),
    ("/no-such-page", 404),
]
STAFF = {
    "dispatcher": [("/dispatch", 200)],
    "auditor": [
        ("/audit", 200),
        ("/audit/matrix", 200),
        ("/audit/schema", 200),
        ("/audit/policies", 200),
        ("/audit/log", 200),
        ("/audit/grants", 200),
        # An error inside the console is a console page too.
        ("/audit/schema?from=99", 404),
    ],
}
# Not pages: the API, its IDE, Open311, static files, feeds (XML) and the health check.
NOT_PAGES = ("/graphql", "/open311", "/static/", "/healthz", "/metrics")
# A crawl that finds more than this many distinct pages has met a link generator.
MAX_PAGES = 60

# Mobile first: the crawl looks at every page as a phone does.
PHONE: ViewportSize = {"width": 390, "height": 844}


def site_names() -> list[str]:
    catalogue = Catalogue.load()
    return [catalogue.text(language, "site.name") for language in ("zh-CN", "en")]


# Runs in the page; returns what is wrong with it, and its links.
AUDIT_JS = """
(siteNames) => {
  const problems = [];
  const text = (el) => (el ? (el.textContent || '').trim() : '');
  const show = (el) => el.outerHTML.replace(/\\s+/g, ' ').slice(0, 140);
  const byIds = (value) => (value || '').split(/\\s+/).filter(Boolean)
      .map((id) => document.getElementById(id));
  const ariaNamed = (el) => {
    if ((el.getAttribute('aria-label') || '').trim()) return true;
    const refs = byIds(el.getAttribute('aria-labelledby'));
    return refs.length > 0 && refs.every(Boolean) && refs.some((ref) => text(ref));
  };

  const title = document.title.trim();
  if (!title) problems.push('no <title>');
  if (siteNames.some((name) => title === name + ' · ' + name))
    problems.push('the default <title>, not one of its own: ' + title);
  const lang = document.documentElement.getAttribute('lang') || '';
  if (!['zh-CN', 'en'].includes(lang)) problems.push('<html lang> is "' + lang + '"');
  const viewport = document.querySelector('meta[name=viewport]');
  if (!viewport || !/width=device-width/.test(viewport.content))
    problems.push('no <meta name=viewport content="width=device-width ...">');
  const h1 = document.querySelectorAll('h1');
  if (h1.length !== 1) problems.push(h1.length + ' <h1> elements, not one');

  const labels = [...document.querySelectorAll('label[for]')];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    const type = (el.getAttribute('type') || 'text').toLowerCase();
    if (el.tagName === 'INPUT' && ['hidden', 'submit', 'button', 'reset', 'image'].includes(type))
      continue;
    const labelled = ariaNamed(el)
      || (el.id && labels.some((label) => label.htmlFor === el.id && text(label)))
      || text(el.closest('label'));
    if (!labelled) problems.push('form field without a label: ' + show(el));
  }
  for (const label of labels) {
    if (!document.getElementById(label.htmlFor))
      problems.push('label for a missing id: ' + show(label));
  }
  for (const img of document.querySelectorAll('img:not([alt]), input[type=image]:not([alt])'))
    problems.push('image without alt: ' + show(img));
  for (const svg of document.querySelectorAll('svg[role=img]')) {
    if (!ariaNamed(svg) && !text(svg.querySelector(':scope > title')))
      problems.push('SVG image without a name: ' + show(svg));
  }
  const buttons = 'button, [role=button], input[type=submit], input[type=button], input[type=reset]';
  for (const button of document.querySelectorAll(buttons)) {
    if (!text(button) && !ariaNamed(button) && !(button.value || '').trim()
        && !button.getAttribute('title'))
      problems.push('button without a name: ' + show(button));
  }
  for (const link of document.querySelectorAll('a[href]')) {
    const alts = [...link.querySelectorAll('img[alt]')].map((img) => img.alt.trim()).join('');
    if (!text(link) && !ariaNamed(link) && !alts) problems.push('link without a name: ' + show(link));
  }
  const seen = new Set();
  for (const el of document.querySelectorAll('[id]')) {
    if (seen.has(el.id)) problems.push('duplicate id "' + el.id + '"');
    seen.add(el.id);
  }
  for (const el of document.querySelectorAll('[style]')) problems.push('style attribute: ' + show(el));
  for (const el of document.querySelectorAll('script:not([src])'))
    problems.push('inline script: ' + show(el));
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      if (/^on/i.test(attr.name)) problems.push('event-handler attribute: ' + show(el));
    }
  }
  const wide = document.documentElement.scrollWidth;
  if (wide > window.innerWidth)
    problems.push('wider than the screen: ' + wide + 'px on a ' + window.innerWidth + 'px phone');
  const links = [...document.querySelectorAll('a[href]')].map((a) => a.href);
  return {problems, links};
}
"""


@dataclass
class Crawl:
    hub: Hub
    page: Page
    # Only links under these paths are followed (None: every page of the site).
    within: tuple[str, ...] | None
    problems: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    shapes: set[str] = field(default_factory=set)
    # Every page of the site some crawled page links to.
    linked: set[str] = field(default_factory=set)
    # How many interactive elements the focus check focused, over all pages.
    focused: int = 0

    async def run(self, start: list[tuple[str, int]]) -> None:
        queue: deque[tuple[str, int]] = deque(start)
        for path, _ in start:
            self.shapes.add(shape(path))
        while queue:
            path, status = queue.popleft()
            self.visited.append(path)
            assert len(self.visited) <= MAX_PAGES, f"more than {MAX_PAGES} pages: {self.visited}"
            for link in await self.check(path, status):
                key = shape(link)
                self.linked.add(key)
                if key not in self.shapes and self.follows(link):
                    self.shapes.add(key)
                    queue.append((link, 200))

    def follows(self, path: str) -> bool:
        bare = urlsplit(path).path
        if bare.startswith(NOT_PAGES) or bare.endswith(".atom"):
            return False
        return self.within is None or bare.startswith(self.within)

    async def check(self, path: str, status: int) -> list[str]:
        response = await self.page.goto(self.hub.url + path)
        if await self.page.locator("script[src]").count():
            # What scripts ask for after load (the board's WebSocket) is recorded too.
            await self.page.wait_for_load_state("networkidle")
        if response is None:
            self.problems.append(f"{path}: no response")
            return []
        if response.status != status:
            self.problems.append(f"{path}: HTTP {response.status}, expected {status}")
        headers = await response.all_headers()
        if not headers.get("content-type", "").startswith("text/html"):
            self.problems.append(f"{path}: not an HTML page ({headers.get('content-type')})")
            return []
        self.problems += [f"{path}: {problem}" for problem in csp_problems(headers)]
        found: dict[str, Any] = await self.page.evaluate(AUDIT_JS, site_names())
        await self.page.screenshot(
            path=str(screenshot_path(self.hub.backend, f"phone/{slug(path)}")), full_page=True
        )
        self.problems += [f"{path}: {problem}" for problem in found["problems"]]
        self.problems += [f"{path}: {problem}" for problem in await self.accessibility()]
        return [
            same_site(self.hub, link) for link in found["links"] if is_same_site(self.hub, link)
        ]

    async def accessibility(self) -> list[str]:
        """Text contrast as the page is and at the browser's default width (the stylesheets
        change with the width), and the focus indicators (whatever the width)."""
        problems = []
        phone_size = self.page.viewport_size
        for size in (phone_size, DEFAULT_VIEWPORT):
            if size is None:
                continue
            if size != self.page.viewport_size:
                await self.page.set_viewport_size(size)
            checked, found = await contrast_problems(self.page)
            width = f"{size['width']}px wide"
            if not checked:
                problems.append(f"{width}: no text measured for contrast")
            problems += [f"{width}: {problem}" for problem in found]
        if phone_size is not None and phone_size != self.page.viewport_size:
            await self.page.set_viewport_size(phone_size)
        sampled, found = await focus_problems(self.page)
        self.focused += sampled
        problems += found
        return problems


def slug(path: str) -> str:
    """A file name for a page's screenshot."""
    return re.sub(r"[^\w.=-]+", "_", path.strip("/")) or "home"


def csp_problems(headers: dict[str, str]) -> list[str]:
    policy = headers.get("content-security-policy")
    if not policy:
        return ["no Content-Security-Policy header"]
    weak = [
        word
        for word in ("'unsafe-inline'", "'unsafe-eval'", "*")
        if word in policy.replace(";", " ").split()
    ]
    return [f"the Content-Security-Policy allows {word}" for word in weak]


def is_same_site(hub: Hub, url: str) -> bool:
    parts, site = urlsplit(url), urlsplit(hub.url)
    return (parts.scheme, parts.netloc) == (site.scheme, site.netloc)


def same_site(hub: Hub, url: str) -> str:
    """The path and query of a same-site URL, without its fragment."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def shape(path: str) -> str:
    """What makes two URLs the same page for the crawl: the path, with segments that look like
    ids (a digit, '=', or long) as '*'. Query strings are the same page with other data."""
    segments = urlsplit(path).path.split("/")
    return "/".join("*" if re.search(r"[0-9=]", s) or len(s) > 24 else s for s in segments)


def report(crawl: Crawl, browsing: Browsing) -> str:
    lines = [*crawl.problems]
    lines += [f"loaded from outside 127.0.0.1: {url}" for url in browsing.traffic.foreign()]
    lines += [
        f"CSP violation: {message}"
        for message in browsing.traffic.console_errors
        if "Content Security Policy" in message
    ]
    return "\n".join(lines)


def explicit(hub: Hub, pages: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(path.format(notice=seeded(hub).notice_id), status) for path, status in pages]


async def phone(browsing: Browsing) -> Page:
    page = await browsing.new_page()
    await page.set_viewport_size(PHONE)
    return page


# Markup does not depend on the database (the pages only run GraphQL): SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestOfflineAudit:
    async def test_public_pages(self, hub: Hub, browsing: Browsing) -> None:
        crawl = Crawl(hub, await phone(browsing), within=None)
        await crawl.run(explicit(hub, PUBLIC))
        assert not (problems := report(crawl, browsing)), problems
        # The crawl reads links (so it would find a new page): the navigation's are there.
        assert {"/notices", "/stats", "/feedback", "/signin", "/notices/*"} <= crawl.linked
        assert browsing.traffic.urls, "no request was recorded"

    async def test_dispatch_board_signed_in(self, hub: Hub, browsing: Browsing) -> None:
        page = await phone(browsing)
        await sign_in(page, hub, "dispatcher")
        crawl = Crawl(hub, page, within=("/dispatch",))
        await crawl.run(STAFF["dispatcher"])
        assert not (problems := report(crawl, browsing)), problems
        sockets = [url for url in browsing.traffic.urls if url.startswith("ws")]
        assert sockets, "the board opened no WebSocket: is it live?"

    async def test_audit_console_signed_in(self, hub: Hub, browsing: Browsing) -> None:
        page = await phone(browsing)
        await sign_in(page, hub, "auditor")
        crawl = Crawl(hub, page, within=("/audit",))
        await crawl.run(STAFF["auditor"])
        assert not (problems := report(crawl, browsing)), problems


# A page made to fail: what each check must find in it, and what it must let pass.
BAD_PAGE = """<!doctype html><html lang="en"><head><title>bad</title><style>
  body { background: #ffffff; color: #1a1a1a; font-size: 16px; }
  .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
    clip: rect(0 0 0 0); }
  a:focus { outline: 3px solid #0b5394; outline-offset: 2px; }
  #no-ring:focus { outline: none; }
  #faint-ring:focus { outline: 2px solid #dddddd; outline-offset: 2px; }
  #shadow:focus { outline: none; box-shadow: 0 0 0 3px #1a1a1a; }
</style><style>
  #just-enough { color: #767676; }
  #just-short { color: #777777; }
  #large { color: #949494; font-size: 24px; }
  #bold-not-large { color: #949494; font-size: 18px; font-weight: 700; }
  #bold-large { color: #949494; font-size: 19px; font-weight: 700; }
  .veil { background: rgba(0, 0, 0, 0.5); }
  #see-through { color: rgba(0, 0, 0, 0.3); }
  .dim { opacity: 0.3; }
  #field { color: #999999; }
  #unseen { color: #ffffff; }
</style></head><body>
  <p id="just-enough">4.54:1</p>
  <p id="just-short">4.48:1</p>
  <p id="large">3.03:1, large</p>
  <p id="bold-not-large">3.03:1, bold but small</p>
  <p id="bold-large">3.03:1, bold and large</p>
  <div class="veil"><p id="veiled">dark on half-black</p></div>
  <p id="see-through">30% black</p>
  <div class="dim"><p id="dimmed">dark, but faded</p></div>
  <p class="visually-hidden" id="unseen">white, but hidden</p>
  <svg width="300" height="60"><text id="svg-faint" x="0" y="20" fill="#bbbbbb">faint</text>
    <text id="svg-dark" x="0" y="45" fill="#1a1a1a">dark</text></svg>
  <input id="field" value="typed">
  <a href="#x" id="ringed">link</a>
  <button id="no-ring" class="a">no ring</button>
  <button id="faint-ring" class="b">faint ring</button>
  <button id="shadow" class="c">shadow</button>
</body></html>"""


class TestTheChecks:
    async def test_they_find_what_they_look_for(self, browsing: Browsing) -> None:
        page = await browsing.new_page()
        await page.set_content(BAD_PAGE)
        checked, contrast = await contrast_problems(page)
        # Each line names the element: "contrast 4.47:1 < 4.5:1 for p#just-short '...': ...".
        failing = {line.split(" for ", 1)[1].split(" ", 1)[0] for line in contrast}
        assert failing == {
            "p#just-short",
            "p#bold-not-large",
            "p#veiled",
            "p#see-through",
            "p#dimmed",
            "text#svg-faint",
            "input#field",
        }, contrast
        # Everything visible was measured; the hidden text was not.
        assert checked == 15, contrast
        sampled, focus = await focus_problems(page)
        # One of each kind (classes tell these buttons apart).
        assert sampled == 5
        assert len(focus) == 2, focus
        assert "button#no-ring: no visible focus indicator" in focus[0]
        assert "button#faint-ring: focus outline #dddddd on #ffffff" in focus[1]
