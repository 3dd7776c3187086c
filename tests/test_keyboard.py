"""The pages by keyboard alone, in the real browser (tests/browser.py): Tab, Enter, Space and
typing, never a click or a script filling a field.

- From the top of /feedback, Tab reaches the skip link first, and it shows when focused;
  following it, Tab goes through the form's fields in order, never into the honeypot, and
  every stop is on screen.
- A resident writes and sends feedback, then looks a code up, with the keyboard only.

Whether each interactive element shows a visible focus indicator is part of the page audit
(tests/test_page_audit_offline.py), on every page it crawls.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page

from tests.browser import Browsing, Hub, contrast_problems, unique

pytest_plugins = ["tests.browser_fixtures"]
# Keyboard behaviour is the browser's and the markup's, not the database's: SQLite only (the
# feedback itself is stored on both backends in tests/test_browser_pages.py).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# More Tab presses than /feedback has stops: a page that traps focus fails instead of hanging.
MAX_STOPS = 60

# What has focus, and whether it is on screen (Chromium scrolls a focused element into view,
# so one that is not is hidden or pushed off the page).
FOCUSED_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute('name') || '',
    classes: el.className || '', type: el.getAttribute('type') || '',
    form: el.form ? el.form.id : '', text: (el.textContent || '').trim().slice(0, 30),
    onScreen: box.width >= 2 && box.height >= 2 && box.right > 0 && box.bottom > 0
      && box.left < window.innerWidth && box.top < window.innerHeight
      && el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}),
  };
}
"""


async def focused(page: Page) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await page.evaluate(FOCUSED_JS)
    return found


async def tab(page: Page) -> dict[str, Any]:
    await page.keyboard.press("Tab")
    stop = await focused(page)
    assert stop is not None, "Tab left the page"
    return stop


def name(stop: dict[str, Any]) -> str:
    """A focused element as a test reads it: #id, else the submit button of #form."""
    if stop["id"]:
        return "#" + stop["id"]
    if stop["tag"] == "button" and stop["form"]:
        return f"#{stop['form']} button"
    return f"{stop['tag']}.{stop['classes']} {stop['text']!r}"


async def tab_stops(page: Page) -> list[dict[str, Any]]:
    """Every element Tab reaches from the top of the page, once round."""
    stops: list[dict[str, Any]] = []
    for _ in range(MAX_STOPS):
        await page.keyboard.press("Tab")
        stop = await focused(page)
        # Past the last stop the focus leaves the document, then starts over.
        if stop is None or (stops and stop == stops[0]):
            return stops
        stops.append(stop)
    raise AssertionError(f"more than {MAX_STOPS} Tab stops: {[name(s) for s in stops]}")


async def skip_to_main(page: Page) -> None:
    """The first Tab reaches the skip link, shown on screen and readable; Enter follows it."""
    stop = await tab(page)
    assert "skip" in stop["classes"].split(), f"the first Tab stop is {name(stop)}"
    assert stop["onScreen"], "the focused skip link is not on screen"
    checked, problems = await contrast_problems(page, "a.skip:focus")
    assert checked == 1 and not problems, problems
    await page.keyboard.press("Enter")
    assert urlsplit(page.url).fragment == "main"


class TestKeyboard:
    async def test_the_feedback_page_in_tab_order(self, hub: Hub, browsing: Browsing) -> None:
        page = await browsing.new_page()
        await page.goto(hub.url + "/feedback")
        stops = await tab_stops(page)
        names = [name(stop) for stop in stops]

        assert "skip" in stops[0]["classes"].split(), names
        off_screen = [name(stop) for stop in stops if not stop["onScreen"]]
        assert not off_screen, f"focus lands where nobody sees it: {off_screen}"
        # The trap for bots is out of the tab order, however it is hidden.
        assert "#website" not in names and not [s for s in stops if s["name"] == "website"]
        in_form = [name(stop) for stop in stops if stop["form"] == "feedback-form"]
        assert in_form == ["#kind", "#content", "#grid", "#feedback-form button"], names
        # The form comes after the site's header, and the header after the skip link.
        assert names.index("#kind") > names.index(name(stops[0])) + 1

    async def test_send_feedback_and_look_it_up_by_keyboard(
        self, hub: Hub, browsing: Browsing
    ) -> None:
        page = await browsing.new_page()
        await page.goto(hub.url + "/feedback")
        await skip_to_main(page)

        # Past the skip link, the next stop is the form's first field, not the header's links.
        assert name(await tab(page)) == "#kind"
        first_kind = await page.eval_on_selector("#kind", "(el) => el.value")
        await page.keyboard.press("ArrowDown")
        kind = await page.eval_on_selector("#kind", "(el) => el.value")
        assert kind != first_kind, "the arrow key did not change the kind"

        assert name(await tab(page)) == "#content"
        content = unique("键盘提交的反馈 ")
        await page.keyboard.type(content)

        assert name(await tab(page)) == "#grid"
        await page.keyboard.press("ArrowDown")
        grid = await page.eval_on_selector("#grid", "(el) => el.value")
        assert grid, "the arrow key chose no community or grid"

        # Next is the button: the honeypot between them is skipped.
        assert name(await tab(page)) == "#feedback-form button"
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        url = urlsplit(page.url)
        query = parse_qs(url.query)
        assert url.path == "/feedback/track" and query.get("new") == ["1"], page.url
        code = (await page.locator("dl#feedback-status #tracking-code").inner_text()).strip()
        assert query.get("code") == [code]

        # What the keyboard chose is what was stored.
        stored = await hub.graphql(
            "query($code: String!) { feedback(trackingCode: $code) { content kind } }",
            {"code": code},
        )
        assert stored["feedback"] == {"content": content, "kind": kind.upper()}

        # Later, the code typed into the lookup form and sent with Space on its button.
        await page.goto(hub.url + "/feedback/track")
        await skip_to_main(page)
        assert name(await tab(page)) == "#code"
        await page.keyboard.type(code.lower())
        assert name(await tab(page)) == "#track-form button"
        async with page.expect_navigation():
            await page.keyboard.press("Space")
        shown = (await page.locator("dl#feedback-status #tracking-code").inner_text()).strip()
        assert shown == code
