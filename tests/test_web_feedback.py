"""The resident feedback form and the tracking page, over HTTP against the real app and
database: CSRF, the same-origin check, the honeypot, the rate limit, the API's validation shown
beside the fields, POST/redirect/GET and the lookup. The rate limit itself is the API's
(tests/test_public_write_limit.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from hub.app import create_app
from hub.config import Settings
from hub.db import Database
from hub.feedback import service as feedback_service
from hub.feedback.models import Feedback
from hub.web.feedback import CONTENT_MAX_LENGTH
from tests.world import World

ORIGIN = "https://testserver"


# --- helpers -------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag with its attributes, and which element ids a <label for> names."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.labelled: set[str] = set()
        # The attributes of each open <div>, innermost last, to find what an input sits in.
        self._open: list[dict[str, str]] = []
        self.inside: dict[str, list[dict[str, str]]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.append((tag, values))
        if tag == "label" and "for" in values:
            self.labelled.add(values["for"])
        if tag == "div":
            self._open.append(values)
        if "id" in values:
            self.inside[values["id"]] = list(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._open:
            self._open.pop()

    def by_id(self, element_id: str) -> dict[str, str]:
        found = [attrs for _, attrs in self.tags if attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id}"
        return found[0]

    def options(self, select_id: str) -> list[str]:
        values: list[str] = []
        inside = False
        for tag, attrs in self.tags:
            if tag == "select":
                inside = attrs.get("id") == select_id
            elif tag == "option" and inside:
                values.append(attrs.get("value", ""))
        return values


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def textarea_text(html: str) -> str:
    found = re.search(r'<textarea id="content"[^>]*>\n?(.*?)</textarea>', html, re.S)
    assert found, html
    return found.group(1)


async def form_token(http: httpx.AsyncClient) -> str:
    page = await http.get("/feedback")
    assert page.status_code == 200
    return csrf_in(page.text)


async def post_feedback(http: httpx.AsyncClient, **fields: str) -> httpx.Response:
    data = {"csrf_token": await form_token(http), "kind": "suggestion", "content": "多装几盏路灯"}
    data.update(fields)
    return await http.post("/feedback", data=data, headers={"Origin": ORIGIN})


async def stored(db: Database) -> list[Feedback]:
    async with db.reader() as session:
        return list(await session.scalars(select(Feedback).order_by(Feedback.id)))


async def count(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(Feedback)) or 0)


def tracking_code_in(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/feedback/track"
    query = parse_qs(parts.query)
    assert query["new"] == ["1"]
    return query["code"][0]


@pytest.fixture
async def browser(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    # https: the site's cookies are Secure, and the cookie jar sends them over https only.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


# --- the form ------------------------------------------------------------------------------


async def test_the_form_labels_every_field_and_hides_its_honeypot(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/feedback")
    assert page.status_code == 200
    html = Elements(page.text)
    form = html.by_id("feedback-form")
    assert (form["method"], form["action"]) == ("post", "/feedback")
    for field in ("kind", "content", "grid", "website"):
        assert field in html.labelled, f"{field} has no label"
    assert html.options("kind") == ["suggestion", "complaint"]
    assert html.by_id("content")["maxlength"] == str(CONTENT_MAX_LENGTH)
    # No grid chosen, each community (as a whole), and the grids inside it.
    assert html.options("grid") == ["", "C1", "G1", "G2", "C2", "G3", "C3", "G4"]
    honeypot = html.by_id("website")
    assert (honeypot["name"], honeypot["type"]) == ("website", "text")
    assert (honeypot["tabindex"], honeypot["autocomplete"]) == ("-1", "off")
    wrapper = html.inside["website"][-1]
    assert "honeypot" in wrapper["class"].split()
    assert wrapper["aria-hidden"] == "true"
    assert "<title>意见反馈" in page.text


async def test_feedback_is_submitted_and_tracked_by_its_code(
    browser: httpx.AsyncClient, db: Database, world: World
) -> None:
    response = await post_feedback(
        browser, kind="complaint", content="  G1 的路灯\r\n坏了三天  ", grid="G1"
    )
    assert response.status_code == 303
    code = tracking_code_in(response.headers["location"])

    [item] = await stored(db)
    assert item.tracking_code == code
    assert (item.kind, item.status) == ("complaint", "submitted")
    assert item.content == "G1 的路灯\n坏了三天"
    assert item.grid_id == world.grids["G1"].id

    page = await browser.get(response.headers["location"])
    assert page.status_code == 200
    assert f'<output id="tracking-code" class="tracking-code">{code}</output>' in page.text
    assert 'data-status="submitted"' in page.text
    assert 'id="feedback-submitted"' in page.text
    assert "投诉" in page.text
    # POST/redirect/GET: reloading the tracking page stores nothing more.
    await browser.get(response.headers["location"])
    assert await count(db) == 1
    # The tracking page never shows what was written.
    assert "路灯" not in page.text


async def test_a_lookup_shows_the_answer_once_there_is_one(
    browser: httpx.AsyncClient, db: Database, world: World
) -> None:
    async with db.transaction() as session:
        item = await feedback_service.submit(
            session, kind="suggestion", content="增加垃圾分类点", grid_code=None
        )
        code = item.tracking_code
    page = await browser.get("/feedback/track", params={"code": code})
    assert 'data-status="submitted"' in page.text
    assert 'id="feedback-response"' not in page.text
    # Only a fresh submission is told to keep its code.
    assert 'id="feedback-submitted"' not in page.text

    async with db.transaction() as session:
        await feedback_service.respond(
            session,
            tracking_code=code,
            response="已在小区东门增设<b>分类点</b>\n感谢建议",
            department_code="environment",
        )
    # Codes are typed from paper: case and blanks around them do not matter.
    page = await browser.get("/feedback/track", params={"code": f"  {code.lower()} "})
    assert page.status_code == 200
    assert f'<output id="tracking-code" class="tracking-code">{code}</output>' in page.text
    assert 'data-status="responded"' in page.text
    assert "已在小区东门增设&lt;b&gt;分类点&lt;/b&gt;<br>感谢建议" in page.text
    assert page.text.count("<time datetime=") == 2


async def test_a_code_typed_in_groups_or_full_width_is_found(
    browser: httpx.AsyncClient, db: Database
) -> None:
    async with db.transaction() as session:
        code = (
            await feedback_service.submit(session, kind="suggestion", content="x", grid_code=None)
        ).tracking_code
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code.lower())
    typed_ways = [
        f"{code[:4].lower()}-{code[4:8]} {code[8:].lower()}",
        f" {code[:6]} - {code[6:]} ",
        f"{code[:4]}\u2014{code[4:8]}\u3000{code[8:]}",  # an em dash, an ideographic space
        f"{full_width[:6]}\uff0d{full_width[6:]}",  # full width, with a full-width hyphen
    ]
    for typed in typed_ways:
        page = await browser.get("/feedback/track", params={"code": typed})
        assert page.status_code == 200, typed
        assert f'<output id="tracking-code" class="tracking-code">{code}</output>' in page.text
        # The field shows the code as it is stored.
        assert f'value="{code}"' in page.text
    # Separators only join a code's characters: other characters still make it unknown.
    for typed in (f"{code}_", f"{code[:-1]}", f"{code}.", f"{code}X"):
        page = await browser.get("/feedback/track", params={"code": typed})
        assert page.status_code == 404, typed


async def test_the_tracking_page_shows_the_code_large_with_beijing_times(
    browser: httpx.AsyncClient, db: Database
) -> None:
    async with db.transaction() as session:
        code = (
            await feedback_service.submit(session, kind="suggestion", content="x", grid_code=None)
        ).tracking_code
    page = await browser.get("/feedback/track", params={"code": code})
    assert '<link rel="stylesheet" href="/static/feedback.css">' in page.text
    assert "</time>（北京时间）</dd>" in page.text and "(北京时间)" not in page.text
    english = await browser.get("/feedback/track", params={"code": code, "lang": "en"})
    assert "</time> (Beijing time)</dd>" in english.text
    css = await browser.get("/static/feedback.css")
    assert css.status_code == 200
    rule = re.search(r"\.tracking-code \{([^}]*)\}", css.text)
    assert rule and "monospace" in rule.group(1) and "font-size: 1.75rem" in rule.group(1)


async def test_an_unknown_tracking_code_is_only_not_found(browser: httpx.AsyncClient) -> None:
    for code in ("FB2222222222", "x" * 200, "' OR 1=1 --"):
        page = await browser.get("/feedback/track", params={"code": code, "lang": "en"})
        assert page.status_code == 404
        assert 'id="feedback-not-found"' in page.text
        assert "No feedback was found for this tracking code" in page.text
        assert 'id="feedback-status"' not in page.text
    empty = await browser.get("/feedback/track")
    assert empty.status_code == 200
    html = Elements(empty.text)
    assert html.by_id("track-form")["method"] == "get"
    assert "code" in html.labelled
    assert 'id="feedback-not-found"' not in empty.text


async def test_the_pages_speak_english(browser: httpx.AsyncClient, db: Database) -> None:
    page = await browser.get("/feedback?lang=en")
    assert '<html lang="en">' in page.text
    assert "<title>Feedback" in page.text
    assert ">Suggestion</option>" in page.text and ">Complaint</option>" in page.text
    assert "Website (leave this empty)" in page.text
    response = await post_feedback(browser, content="More benches, please")
    tracked = await browser.get(response.headers["location"])
    assert "Submitted, awaiting an answer" in tracked.text
    assert "Write down or save your tracking code" in tracked.text


# --- what is refused -----------------------------------------------------------------------


async def test_a_missing_or_wrong_csrf_token_is_refused(
    app: Any, browser: httpx.AsyncClient, db: Database
) -> None:
    await browser.get("/feedback")
    fields = {"kind": "suggestion", "content": "x"}
    missing = await browser.post("/feedback", data=fields)
    wrong = await browser.post("/feedback", data={**fields, "csrf_token": "forged"})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    # A token from another visitor's cookie is no good either.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN
    ) as someone_else:
        theirs = await form_token(someone_else)
    borrowed = await browser.post("/feedback", data={**fields, "csrf_token": theirs})
    assert borrowed.status_code == 403
    assert await count(db) == 0


async def test_a_cross_origin_post_is_refused(browser: httpx.AsyncClient, db: Database) -> None:
    token = await form_token(browser)
    response = await browser.post(
        "/feedback",
        data={"csrf_token": token, "kind": "suggestion", "content": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert await count(db) == 0


async def test_a_filled_honeypot_looks_like_success_and_stores_nothing(
    browser: httpx.AsyncClient, db: Database
) -> None:
    response = await post_feedback(browser, website="https://spam.example")
    assert response.status_code == 303
    assert response.headers["location"] == "/feedback/track?new=1"
    assert await count(db) == 0
    page = await browser.get(response.headers["location"])
    assert page.status_code == 200
    assert 'id="feedback-received"' in page.text
    assert 'id="tracking-code"' not in page.text


async def test_invalid_content_comes_back_beside_its_field(
    browser: httpx.AsyncClient, db: Database
) -> None:
    empty = await post_feedback(browser, content="   ", kind="complaint", grid="G2")
    assert empty.status_code == 400
    html = Elements(empty.text)
    assert html.by_id("content-error")["role"] == "alert"
    assert "content-error" in html.by_id("content")["aria-describedby"].split()
    assert "请填写反馈内容" in empty.text
    # What the visitor chose is kept.
    assert '<option value="complaint" selected>' in empty.text
    assert '<option value="G2" selected>' in empty.text

    too_long = "长" * (CONTENT_MAX_LENGTH + 1)
    refused = await post_feedback(browser, content=too_long)
    assert refused.status_code == 400
    assert f"内容不能超过 {CONTENT_MAX_LENGTH} 字" in refused.text
    assert textarea_text(refused.text) == too_long
    assert await count(db) == 0

    # The form's maxlength is exactly the API's limit: that many characters go through.
    fits = await post_feedback(browser, content="长" * CONTENT_MAX_LENGTH)
    assert fits.status_code == 303
    assert await count(db) == 1


async def test_an_unknown_grid_or_kind_comes_back_beside_its_field(
    browser: httpx.AsyncClient, db: Database
) -> None:
    grid = await post_feedback(browser, grid="NOPE", content="关于<script>x</script>")
    assert grid.status_code == 400
    assert Elements(grid.text).by_id("grid-error")["role"] == "alert"
    # Kept, and escaped.
    assert textarea_text(grid.text) == "关于&lt;script&gt;x&lt;/script&gt;"
    kind = await post_feedback(browser, kind="praise")
    assert kind.status_code == 400
    assert Elements(kind.text).by_id("kind-error")["role"] == "alert"
    assert await count(db) == 0


async def test_submissions_past_the_rate_limit_get_429(
    settings: Settings, db: Database, world: World
) -> None:
    limited = dataclasses.replace(settings, feedback_per_window=2, feedback_window_seconds=3600)
    app = create_app(limited)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http,
    ):
        for n in range(2):
            assert (await post_feedback(http, content=f"第{n}条")).status_code == 303
        refused = await post_feedback(http, content="第三条建议")
        assert refused.status_code == 429
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 3600
        assert 'id="feedback-error"' in refused.text
        # Nothing the visitor wrote is lost.
        assert textarea_text(refused.text) == "第三条建议"
        # The honeypot stores nothing and asks the API nothing: it keeps its fake success.
        assert (await post_feedback(http, website="x")).status_code == 303
    assert await count(db) == 2
