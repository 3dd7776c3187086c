"""The pages in a real browser (tests/browser.py): both languages with screenshots, feedback and
its tracking code, drafts and hostile notice bodies, the live dispatch board, and the auditors'
matrix against the CLI's.

Screenshots land in $GRIDHUB_ARTIFACTS/screenshots/<backend>/ (default test-artifacts/).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from datetime import UTC, datetime
from functools import cache
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Dialog, Locator, Page, Response
from playwright.async_api import TimeoutError as PlaywrightTimeout

from hub.web.i18n import Catalogue
from tests.browser import (
    Browsing,
    Hub,
    create_notice,
    event_state,
    eventually,
    in_future,
    message_keys,
    report_event,
    screenshot_path,
    seeded,
    sign_in,
    unique,
)
from tests.live import server_env

pytest_plugins = ["tests.browser_fixtures"]


@cache
def catalogue() -> Catalogue:
    return Catalogue.load()


# The notice detail page's URL is known only once the server has seeded it.
NOTICE = "/notices/{notice_id}"

# (name, path, role to sign in as or None). The name is the screenshot's file name.
PAGES = [
    ("home", "/", None),
    ("notices", "/notices", None),
    ("notice", NOTICE, None),
    ("stats", "/stats", None),
    ("stats-community", "/stats?community=C1", None),
    ("feedback", "/feedback", None),
    ("feedback-track", "/feedback/track", None),
    ("signin", "/signin", None),
    ("dispatch", "/dispatch", "dispatcher"),
    ("audit", "/audit", "auditor"),
    ("audit-matrix", "/audit/matrix", "auditor"),
    ("audit-schema", "/audit/schema", "auditor"),
    ("audit-policies", "/audit/policies", "auditor"),
    ("audit-log", "/audit/log", "auditor"),
    ("audit-grants", "/audit/grants", "auditor"),
]


async def html_lang(page: Page) -> str:
    return str(await page.get_attribute("html", "lang"))


async def only_h1(page: Page) -> str:
    headings = await page.locator("h1").all_inner_texts()
    assert len(headings) == 1, f"{page.url}: expected one <h1>, found {headings}"
    return headings[0].strip()


def checked(response: Response | None, url: str) -> Response:
    assert response is not None, url
    assert response.status == 200, f"{url}: HTTP {response.status}"
    return response


# Screenshots and markup do not depend on the database (the pages only run GraphQL): once, on
# SQLite. The behaviour below runs on both backends.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestBothLanguages:
    @pytest.mark.parametrize(("name", "path", "role"), PAGES, ids=[p[0] for p in PAGES])
    async def test_page_in_chinese_then_english(
        self, hub: Hub, browsing: Browsing, name: str, path: str, role: str | None
    ) -> None:
        page = await browsing.new_page()
        if role is not None:
            await sign_in(page, hub, role)
        target = hub.url + path.format(notice_id=seeded(hub).notice_id)

        # zh-CN by default (the browser asks for zh-CN too, but the site must not need it).
        checked(await page.goto(target), target)
        assert await html_lang(page) == "zh-CN"
        zh_heading = await only_h1(page)
        await page.screenshot(
            path=str(screenshot_path(hub.backend, f"{name}.zh-CN")), full_page=True
        )

        # The language switch: a link, not a script.
        async with page.expect_navigation() as switched:
            await page.click("a.lang-switch")
        checked(await switched.value, "the language switch")
        assert await html_lang(page) == "en"
        en_heading = await only_h1(page)
        await page.screenshot(path=str(screenshot_path(hub.backend, f"{name}.en")), full_page=True)

        if name == "notice":
            # The heading is the notice's own title, the same in both languages.
            assert zh_heading == en_heading == seeded(hub).notice_title
        else:
            zh_keys = message_keys(catalogue(), "zh-CN", zh_heading)
            en_keys = message_keys(catalogue(), "en", en_heading)
            assert zh_keys & en_keys, (
                f"{path}: headings {zh_heading!r} / {en_heading!r} are not one message in the "
                "catalogue's two languages"
            )

    async def test_the_choice_of_language_sticks(self, hub: Hub, browsing: Browsing) -> None:
        page = await browsing.new_page()
        checked(await page.goto(hub.url + "/notices?lang=en"), "/notices?lang=en")
        assert await html_lang(page) == "en"
        # A URL without `lang` keeps the visitor's choice (a cookie), until the switch changes it.
        checked(await page.goto(hub.url + "/feedback"), "/feedback")
        assert await html_lang(page) == "en"
        async with page.expect_navigation():
            await page.click("a.lang-switch")
        checked(await page.goto(hub.url + "/"), "/")
        assert await html_lang(page) == "zh-CN"


class TestFeedback:
    async def test_submit_then_look_the_tracking_code_up(
        self, hub: Hub, browsing: Browsing
    ) -> None:
        page = await browsing.new_page()
        content = unique("楼下路灯坏了，晚上很黑。编号 ")
        checked(await page.goto(hub.url + "/feedback"), "/feedback")
        form = page.locator("form#feedback-form")
        await choose_first_option(form.locator("#kind"))
        await form.locator("#content").fill(content)
        if await form.locator("#grid").count():
            await choose_option(form.locator("#grid"), "G1")
        async with page.expect_navigation():
            await form.locator("[type=submit]").click()

        url = urlsplit(page.url)
        query = parse_qs(url.query)
        assert url.path == "/feedback/track" and query.get("new") == ["1"], page.url
        shown = (await page.locator("dl#feedback-status #tracking-code").inner_text()).strip()
        assert shown and query.get("code") == [shown]
        await page.screenshot(
            path=str(screenshot_path(hub.backend, "feedback-submitted.zh-CN")), full_page=True
        )

        # The API knows the same item under the code shown.
        stored = await hub.graphql(
            "query($code: String!) { feedback(trackingCode: $code) { content status } }",
            {"code": shown},
        )
        assert stored["feedback"]["content"] == content

        # A visitor who comes back later types the code into the lookup form.
        later = await browsing.new_page()
        checked(await later.goto(hub.url + "/feedback/track"), "/feedback/track")
        await later.fill("form#track-form #code", shown)
        async with later.expect_navigation():
            await later.locator("form#track-form [type=submit]").click()
        status = later.locator("dl#feedback-status")
        assert (await status.locator("#tracking-code").inner_text()).strip() == shown

        # An unknown code shows no status at all.
        checked(await later.goto(hub.url + "/feedback/track"), "/feedback/track")
        await later.fill("form#track-form #code", "NOSUCHCODE00")
        async with later.expect_navigation():
            await later.locator("form#track-form [type=submit]").click()
        assert await later.locator("dl#feedback-status").count() == 0

    async def test_a_filled_honeypot_stores_nothing(self, hub: Hub, browsing: Browsing) -> None:
        page = await browsing.new_page()
        content = unique("机器人填写的内容 ")
        checked(await page.goto(hub.url + "/feedback"), "/feedback")
        form = page.locator("form#feedback-form")
        await choose_first_option(form.locator("#kind"))
        await form.locator("#content").fill(content)
        # What a bot does and a person cannot: fill the field the page hides.
        await form.locator("input[name=website]").evaluate("(el) => { el.value = 'http://spam' }")
        async with page.expect_navigation():
            await form.locator("[type=submit]").click()
        listed = await hub.graphql("{ feedbackList(first: 100) { nodes { content } } }")
        assert content not in [item["content"] for item in listed["feedbackList"]["nodes"]]


async def choose_first_option(select: Locator) -> None:
    values = [
        value
        for value in await select.locator("option").evaluate_all("(os) => os.map(o => o.value)")
        if value
    ]
    assert values, "the select has no option with a value"
    await select.select_option(values[0])


async def choose_option(select: Locator, value: str) -> None:
    tag = await select.evaluate("(el) => el.tagName")
    if tag == "SELECT":
        await select.select_option(value)
    else:
        await select.fill(value)


class TestNotices:
    async def test_drafts_and_retracted_notices_never_show(
        self, hub: Hub, browsing: Browsing
    ) -> None:
        marker = unique("标记")
        published = await create_notice(hub, title=f"已发布 {marker}")
        draft = await create_notice(hub, title=f"草稿 {marker}", publish=False)
        retracted = await create_notice(hub, title=f"已撤回 {marker}")
        await hub.graphql(
            "mutation($id: ID!) { retractNotice(id: $id) { status } }", {"id": retracted}
        )
        elsewhere = await create_notice(hub, title=f"幸福社区 {marker}", grids=("C3",))
        page = await browsing.new_page()

        async def listed() -> list[str]:
            return [
                text.strip()
                for text in await page.locator(
                    'ul#notice-list li.notice-item a[href^="/notices/"]'
                ).all_inner_texts()
            ]

        checked(await page.goto(hub.url + "/notices"), "/notices")
        titles = await listed()
        assert f"已发布 {marker}" in titles
        assert not [t for t in titles if t.startswith(("草稿", "已撤回"))]

        # The search finds the published notice by the word all four share, and only it.
        await page.fill("form#notice-search #q", marker)
        async with page.expect_navigation():
            await page.locator("form#notice-search #q").press("Enter")
        found = await listed()
        assert sorted(found) == sorted([f"已发布 {marker}", f"幸福社区 {marker}"])

        # The community filter narrows it to the notices addressed there.
        await choose_option(page.locator("form#notice-search #community"), "C3")
        async with page.expect_navigation():
            await page.locator("form#notice-search [type=submit]").click()
        assert await listed() == [f"幸福社区 {marker}"]

        # Only the draft's own words: nothing at all.
        checked(await page.goto(hub.url + "/notices"), "/notices")
        await page.fill("form#notice-search #q", f"草稿 {marker}")
        async with page.expect_navigation():
            await page.locator("form#notice-search #q").press("Enter")
        assert await listed() == []
        assert await page.locator("#no-results").is_visible()

        # Nor on the home page's latest notices, nor in the Atom feeds.
        for path in ("/", "/notices/feed.atom", "/communities/C1/feed.atom"):
            served = await hub.api.get(path)
            assert served.status_code == 200, path
            assert f"已发布 {marker}" in served.text, path
            assert f"草稿 {marker}" not in served.text, path
            assert f"已撤回 {marker}" not in served.text, path

        # Detail pages: the published ones open, the others are not there at all.
        for notice_id in (published, elsewhere):
            checked(await page.goto(f"{hub.url}/notices/{notice_id}"), notice_id)
        for notice_id in (draft, retracted):
            response = await page.goto(f"{hub.url}/notices/{notice_id}")
            assert response is not None and response.status == 404, notice_id
            assert marker not in await page.content()

    async def test_a_hostile_notice_body_renders_inert(self, hub: Hub, browsing: Browsing) -> None:
        title = unique("带脚本的通知 ")
        body = "\n\n".join(
            [
                "**加粗的正文**",
                "<script>window.__pwned = 1</script>",
                '<img src="x" onerror="window.__pwned = 2; alert(2)">',
                "<svg onload=\"alert('svg')\"></svg>",
                "[点我](javascript:window.__pwned=3;alert(3))",
                '<a href="javascript:alert(4)" id="raw-link">原始链接</a>',
                '<iframe src="javascript:alert(5)"></iframe>',
            ]
        )
        notice_id = await create_notice(hub, title=title, body=body)
        page = await browsing.new_page()
        dialogs: list[str] = []

        async def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        checked(await page.goto(f"{hub.url}/notices/{notice_id}"), notice_id)
        await page.wait_for_load_state("load")
        article = page.locator("article#notice")
        assert (await article.locator("h1").inner_text()).strip() == title
        content = article.locator(".notice-body")
        # The Markdown did render: the harmless part is there.
        assert (await content.locator("strong").inner_text()).strip() == "加粗的正文"

        # Nothing executable survived the sanitiser, whatever the CSP would have stopped.
        survivors = await content.evaluate(
            """(root) => {
                const found = [];
                for (const el of root.querySelectorAll('*')) {
                    const tag = el.tagName.toLowerCase();
                    if (['script', 'iframe', 'object', 'embed', 'svg'].includes(tag)) found.push(tag);
                    for (const attr of el.attributes) {
                        if (attr.name.startsWith('on')) found.push(tag + '[' + attr.name + ']');
                        if (/^\\s*javascript:/i.test(attr.value)) found.push(tag + '[' + attr.name + ']');
                    }
                }
                return found;
            }"""
        )
        assert survivors == []

        # Click every link the body kept; still nothing runs.
        for link in await content.locator("a").all():
            await link.click(no_wait_after=True)
        await page.evaluate("() => new Promise(r => setTimeout(r, 100))")
        assert await page.evaluate("() => typeof window.__pwned") == "undefined"
        assert dialogs == []
        assert urlsplit(page.url).path == f"/notices/{notice_id}"


OVERDUE_AFTER_SECONDS = 1.5


class TestDispatchBoard:
    async def test_a_reported_event_appears_live_and_is_accepted_and_dispatched(
        self, hub: Hub, browsing: Browsing
    ) -> None:
        deadline = in_future(OVERDUE_AFTER_SECONDS)
        late = await report_event(hub, title=unique("逾期事件 "), grid="G2", deadline=deadline)
        page = await browsing.new_page()
        await sign_in(page, hub, "dispatcher")
        # The overdue event must be past its deadline when the board renders it.
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() + 0.2))
        checked(await page.goto(hub.url + "/dispatch"), "/dispatch")
        board = page.locator("table#board")
        late_row = board.locator(f'tr[data-event-code="{late["code"]}"]')
        assert "overdue" in (await late_row.get_attribute("class") or "").split()

        navigations: list[str] = []
        page.on(
            "framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
        )
        await page.evaluate("() => { window.__boardMarker = 'not reloaded' }")

        await until_live(hub, page, grid="G1")
        event = await report_event(
            hub, title=unique("新上报事件 "), grid="G1", role="grid_worker", grids=["G1"]
        )
        row = board.locator(f'tr[data-event-code="{event["code"]}"]')
        await row.wait_for(state="attached")
        assert await page.evaluate("() => window.__boardMarker") == "not reloaded"
        assert navigations == []
        assert "overdue" not in (await row.get_attribute("class") or "").split()
        await page.screenshot(path=str(screenshot_path(hub.backend, "dispatch-live.zh-CN")))

        # Accept, then dispatch to a department, from the board.
        await row.locator("form.accept [type=submit]").click()
        await eventually(
            lambda: status_is(hub, event["code"], "ACCEPTED"), what="the event to be accepted"
        )
        row = page.locator(f'table#board tr[data-event-code="{event["code"]}"]')
        await row.locator("form.dispatch select[name=departmentCode]").select_option("health")
        await row.locator("form.dispatch [type=submit]").click()
        state = await eventually(
            lambda: status_is(hub, event["code"], "DISPATCHED"), what="the event to be dispatched"
        )
        assert state["department"] == {"code": "health"}

    async def test_a_community_admin_sees_only_their_communities(
        self, hub: Hub, browsing: Browsing
    ) -> None:
        outside = await report_event(hub, title=unique("外社区事件 "), grid="G4")
        page = await browsing.new_page()
        await sign_in(page, hub, "community_admin", grids=["C1"])
        checked(await page.goto(hub.url + "/dispatch"), "/dispatch")
        board = page.locator("table#board")
        assert await board.locator(f'tr[data-event-code="{outside["code"]}"]').count() == 0
        assert await board.locator("tr[data-event-code]").count() > 0  # C1's own events

        await until_live(hub, page, grid="G1")
        # Reported in this order, the change from outside reaches the board's feed first if
        # at all; once the inside one is shown, the outside one has been left out.
        later_outside = await report_event(hub, title=unique("外社区事件 "), grid="G4")
        inside = await report_event(hub, title=unique("本社区事件 "), grid="G2")
        await board.locator(f'tr[data-event-code="{inside["code"]}"]').wait_for(state="attached")
        for code in (outside["code"], later_outside["code"]):
            assert await board.locator(f'tr[data-event-code="{code}"]').count() == 0


async def until_live(hub: Hub, page: Page, *, grid: str) -> None:
    """Report warm-up events until one shows on the open board.

    The subscription protocol has no "subscribed" acknowledgement, and the feed does not replay
    what happened before the board subscribed (as tests/test_subscriptions.py's until_live)."""
    board = page.locator("table#board")
    seen = 0

    async def shown() -> bool:
        nonlocal seen
        warm_up = await report_event(hub, title=unique("warm-up "), grid=grid)
        seen += 1
        row = board.locator(f'tr[data-event-code="{warm_up["code"]}"]')
        try:
            await row.wait_for(state="attached", timeout=500)
        except PlaywrightTimeout:  # not live yet: another warm-up
            return False
        return True

    await eventually(shown, what="the board's live feed")


async def status_is(hub: Hub, code: str, status: str) -> dict[str, object] | None:
    state = await event_state(hub, code)
    return state if state["status"] == status else None


CHANGE_POLICY = """mutation($remove: [String!]!) {
  changePolicy(input: {remove: $remove, reason: "health no longer calls residents"}) { version }
}"""
HEALTH_PHONE = "p, health, Resident.phone, read_masked, allow"


class TestAuditConsole:
    async def test_the_matrix_is_the_clis_matrix(self, hub: Hub, browsing: Browsing) -> None:
        page = await browsing.new_page()
        await sign_in(page, hub, "auditor")
        # A change made after the server started: the console shows the live policy, and can
        # still show the version before it.
        changed = await hub.graphql(
            CHANGE_POLICY, {"remove": [HEALTH_PHONE]}, role="policy_admin", subject="admin"
        )
        version = changed["changePolicy"]["version"]
        checked(await page.goto(hub.url + "/audit/matrix"), "/audit/matrix")
        assert await page.get_attribute("#matrix-version", "data-version") == str(version)
        console = await matrix_cells(page)
        assert console[("health", "Resident.phone")] == "hidden"
        checked(await page.goto(f"{hub.url}/audit/matrix?version={version - 1}"), "older")
        assert (await matrix_cells(page))[("health", "Resident.phone")] == "masked"

        cli = await cli_matrix(hub)
        roles_shown = {role for role, _ in console}
        expected_roles = {role for role, _ in cli if not role.startswith("connector:")}
        assert expected_roles <= roles_shown, f"roles missing: {expected_roles - roles_shown}"
        wanted = {key: level for key, level in cli.items() if key[0] in roles_shown}
        missing = sorted(set(wanted) - set(console))
        extra = sorted(set(console) - set(wanted))
        differ = sorted(
            (key, console[key], wanted[key])
            for key in set(console) & set(wanted)
            if console[key] != wanted[key]
        )
        assert not missing, f"{len(missing)} cells missing, e.g. {missing[:5]}"
        assert not extra, f"{len(extra)} cells the CLI does not have, e.g. {extra[:5]}"
        assert not differ, f"{len(differ)} cells differ (console, CLI), e.g. {differ[:5]}"


async def matrix_cells(page: Page) -> dict[tuple[str, str], str]:
    """The console's matrix: (role, field) -> level."""
    cells = await page.locator(
        "table#policy-matrix td[data-role][data-field][data-level]"
    ).evaluate_all("(tds) => tds.map(td => [td.dataset.role, td.dataset.field, td.dataset.level])")
    found = {(role, obj): level for role, obj, level in cells}
    assert len(found) == len(cells), "a (role, field) cell appears twice"
    return found


async def cli_matrix(hub: Hub) -> dict[tuple[str, str], str]:
    """`gridhub policy matrix --live` for the server's database: (role, field) -> level."""
    settings = hub.server.settings
    assert settings is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "policy",
        "matrix",
        "--format",
        "csv",
        "--live",
        "--db",
        settings.database_url,
        env={**os.environ, **server_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    rows = list(csv.reader(io.StringIO(out.decode())))
    header, body = rows[0], rows[1:]
    roles = header[2:]
    return {
        (role, row[1]): level
        for row in body
        if row[0] == "field"
        for role, level in zip(roles, row[2:], strict=True)
    }
