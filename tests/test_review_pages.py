"""Security review of the server-rendered pages (issue 5): each test demonstrates one problem
found in review over real HTTP, and is expected to fail until the problem is fixed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hub.authz.sessions import SESSION_COOKIE
from hub.config import Settings
from tests.policy_clients import token
from tests.world import World

LANGUAGE_SWITCH = re.compile(r'class="lang-switch" href="([^"]*)"')


@pytest.fixture
async def browser(app: Any, world: World) -> AsyncIterator[httpx.AsyncClient]:
    # https: the session cookie is Secure, and a cookie jar sends it over https only.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def csrf_of(http: httpx.AsyncClient, path: str) -> str:
    page = await http.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, credential: str) -> httpx.Response:
    csrf = await csrf_of(http, "/signin")
    return await http.post("/signin", data={"csrf_token": csrf, "credential": credential})


async def test_a_session_cookie_is_dead_after_sign_out(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    signed_in = await sign_in(browser, token(settings, "auditor"))
    assert signed_in.status_code == 303
    stolen = browser.cookies.get(SESSION_COOKIE)
    assert stolen
    assert (await browser.get("/audit")).status_code == 200
    csrf = await csrf_of(browser, "/")
    signed_out = await browser.post("/signout", data={"csrf_token": csrf})
    assert signed_out.status_code == 303
    assert SESSION_COOKIE not in browser.cookies
    # The copy taken before sign-out (a shared computer, a proxy log, malware) replayed.
    replay = await browser.get("/audit", headers={"Cookie": f"{SESSION_COOKIE}={stolen}"})
    assert replay.status_code == 303, "the signed-out session still opens the audit console"
    assert replay.headers["location"].startswith("/signin")


async def test_the_language_switch_never_links_off_site(browser: httpx.AsyncClient) -> None:
    page = await browser.get("https://testserver//evil.example/login")
    assert page.status_code == 404
    links = LANGUAGE_SWITCH.findall(page.text)
    assert links, page.text
    for href in links:
        assert href.startswith("/") and not href.startswith(("//", "/\\")), href


async def test_the_feed_does_not_trust_the_host_header(browser: httpx.AsyncClient) -> None:
    feed = await browser.get("/notices/feed.atom", headers={"Host": "evil.example"})
    assert feed.status_code == 200
    assert "evil.example" not in feed.text
