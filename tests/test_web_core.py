"""The pages' shared machinery: sealed sessions, CSRF, sign-in and sign-out, the security headers,
the language switch, the message catalogue and the persisted operations' allow list."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import httpx
import pytest
from graphql import GraphQLEnumType, parse, validate

from hub.api.registry import SchemaRegistry
from hub.api.schema import build_schema
from hub.authz.identity import issue_token
from hub.authz.sessions import SESSION_COOKIE, Sealer
from hub.config import Settings
from hub.web import vocabulary
from hub.web.i18n import Catalogue, pick_language
from hub.web.operations import Operations
from hub.web.site import CONTENT_SECURITY_POLICY
from tests.policy_clients import token
from tests.world import World

# Which roles run each persisted operation, by the operation's name prefix: every operation
# must validate against the schema of each role that runs it.
RUNNERS = {
    "Public": ("public",),
    "SubmitFeedback": ("public",),
    "Board": ("dispatcher", "community_admin"),
    "Audit": ("auditor",),
}


def runners_of(name: str) -> tuple[str, ...]:
    for prefix, roles in RUNNERS.items():
        if name.startswith(prefix):
            return roles
    raise AssertionError(f"persisted operation {name} has no known runner prefix")


# --- sealed sessions ---------------------------------------------------------------------


def test_a_sealed_session_opens_with_its_secret_only() -> None:
    sealer = Sealer(b"x" * 40)
    cookie = sealer.seal("the-credential", role="dispatcher", lifetime_seconds=60)
    session = sealer.open(cookie)
    assert session is not None
    assert (session.credential, session.role) == ("the-credential", "dispatcher")
    # Encrypted, not merely signed: the credential cannot be read off the cookie.
    assert "the-credential" not in cookie
    assert Sealer(b"y" * 40).open(cookie) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_damaged_cookie_is_no_session(damage: str) -> None:
    sealer = Sealer(b"x" * 40)
    cookie = sealer.seal("c", role=None, lifetime_seconds=60)
    damaged = {
        "flip": cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1],
        "truncate": cookie[:20],
        "garbage": "not a cookie at all!",
        "empty": "",
    }[damage]
    assert sealer.open(damaged) is None


def test_an_expired_session_is_no_session() -> None:
    sealer = Sealer(b"x" * 40)
    assert sealer.open(sealer.seal("c", role=None, lifetime_seconds=-1)) is None


def test_csrf_tokens_bind_to_their_nonce() -> None:
    sealer = Sealer(b"x" * 40)
    token_a = sealer.csrf_token("nonce-a")
    assert sealer.csrf_valid("nonce-a", token_a)
    assert not sealer.csrf_valid("nonce-b", token_a)
    assert not sealer.csrf_valid("nonce-a", None)
    assert not sealer.csrf_valid(None, token_a)


# --- language and words ------------------------------------------------------------------


def test_language_is_chinese_unless_chosen() -> None:
    assert pick_language(None, None) == "zh-CN"
    assert pick_language("en", None) == "en"
    assert pick_language(None, "en") == "en"
    assert pick_language("zh-CN", "en") == "zh-CN"
    assert pick_language("fr", "xx") == "zh-CN"


def test_every_word_a_template_uses_exists_in_both_languages() -> None:
    catalogue = Catalogue.load()
    known = set(catalogue.keys())
    used: set[str] = set()
    folder = resources.files("hub.web") / "templates"
    for entry in folder.iterdir():
        if entry.name.endswith(".html"):
            text = entry.read_text(encoding="utf-8")
            used.update(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", text))
    assert used, "the templates use no messages?"
    # A key ending in "." is a prefix the template completes (e.g. "feedback.kind." ~ kind).
    missing = [
        key
        for key in used
        if (
            key not in known if not key.endswith(".") else not any(k.startswith(key) for k in known)
        )
    ]
    assert sorted(missing) == []
    for key in known:
        assert catalogue.text("zh-CN", key) and catalogue.text("en", key)


# --- persisted operations ----------------------------------------------------------------


def test_every_persisted_operation_is_valid_for_each_role_that_runs_it(
    settings: Settings,
) -> None:
    registry = SchemaRegistry(build_schema(settings.limits), settings)
    operations = Operations.load()
    assert len(operations) > 0
    for operation in operations:
        document = parse(operation.document)
        for role in runners_of(operation.name):
            schema = registry.schema_for(role)._schema
            errors = validate(schema, document)
            assert errors == [], f"{operation.name} as {role}: {errors}"


# --- sign-in, sessions and headers over HTTP -----------------------------------------------


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


async def sign_in(http: httpx.AsyncClient, credential: str, **extra: str) -> httpx.Response:
    csrf = await csrf_of(http, "/signin")
    return await http.post("/signin", data={"csrf_token": csrf, "credential": credential, **extra})


async def test_signing_in_starts_a_secure_session(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    response = await sign_in(browser, token(settings, "dispatcher"))
    assert response.status_code == 303
    assert response.headers["location"] == "/dispatch"
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith(SESSION_COOKIE + "=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict"} <= attributes
    home = await browser.get("/")
    assert "dispatcher" in home.text and 'action="/signout"' in home.text


async def test_a_bad_credential_starts_no_session(browser: httpx.AsyncClient) -> None:
    response = await sign_in(browser, "not-a-token")
    assert response.status_code == 401
    assert SESSION_COOKIE not in browser.cookies
    assert 'id="signin-error"' in response.text


async def test_an_expired_token_cannot_sign_in(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    expired = issue_token(
        settings,
        role="dispatcher",
        subject="t",
        ttl=timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    response = await sign_in(browser, expired)
    assert response.status_code == 401


async def test_sign_in_without_its_csrf_token_is_refused(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await browser.get("/signin")
    response = await browser.post(
        "/signin", data={"credential": token(settings, "dispatcher"), "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in browser.cookies


async def test_a_cross_origin_form_is_refused(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    csrf = await csrf_of(browser, "/signin")
    response = await browser.post(
        "/signin",
        data={"csrf_token": csrf, "credential": token(settings, "dispatcher")},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


async def test_sign_in_never_redirects_off_site(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await sign_in(browser, token(settings, "auditor"), next=target)
        assert response.status_code == 303
        assert response.headers["location"] == "/audit"
    response = await sign_in(browser, token(settings, "auditor"), next="/audit/log")
    assert response.headers["location"] == "/audit/log"


async def test_signing_out_needs_the_session_csrf_token_and_ends_it(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, token(settings, "dispatcher"))
    refused = await browser.post("/signout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    csrf = await csrf_of(browser, "/")
    response = await browser.post("/signout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert SESSION_COOKIE not in browser.cookies
    assert 'action="/signout"' not in (await browser.get("/")).text


async def test_a_session_ends_when_its_token_expires(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    # A token that expires in a few seconds: the session is checked again on every request.
    await sign_in(
        browser, issue_token(settings, role="dispatcher", subject="t", ttl=timedelta(seconds=5))
    )
    assert 'action="/signout"' in (await browser.get("/")).text
    deadline = time.monotonic() + 30
    while 'action="/signout"' in (await browser.get("/")).text:
        assert time.monotonic() < deadline, "the session outlived its token"
        await asyncio.sleep(0.2)


async def test_pages_carry_the_security_headers_and_language(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert '<html lang="zh-CN">' in page.text
    english = await browser.get("/?lang=en")
    assert '<html lang="en">' in english.text
    # The choice sticks for the next page.
    assert '<html lang="en">' in (await browser.get("/")).text


async def test_an_unknown_page_is_a_localised_404(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/no-such-page?lang=en")
    assert page.status_code == 404
    assert "There is no such page" in page.text


async def test_a_role_without_a_page_lands_home_told_why(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    response = await sign_in(browser, token(settings, "health", department="health"))
    assert response.headers["location"] == "/?flash=signed_in_no_page"
    home = await browser.get(response.headers["location"] + "&lang=en")
    assert 'id="site-flash"' in home.text and "uses GridHub through its API" in home.text


async def test_signing_out_says_so_and_a_crafted_flash_shows_nothing(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, token(settings, "dispatcher"))
    csrf = await csrf_of(browser, "/")
    response = await browser.post("/signout", data={"csrf_token": csrf})
    assert response.headers["location"] == "/?flash=signed_out"
    assert 'id="site-flash"' in (await browser.get(response.headers["location"])).text
    crafted = await browser.get("/?flash=%3Cb%3Eyou+won%3C%2Fb%3E")
    assert 'id="site-flash"' not in crafted.text and "you won" not in crafted.text


def test_the_pages_vocabulary_is_the_schemas(settings: Settings) -> None:
    schema = build_schema(settings.limits)._schema
    for enum_name, copy in (
        ("EventCategory", vocabulary.CATEGORIES),
        ("EventStatus", vocabulary.STATUSES),
        ("Severity", vocabulary.SEVERITIES),
    ):
        enum = schema.get_type(enum_name)
        assert isinstance(enum, GraphQLEnumType)
        assert set(copy) == set(enum.values), enum_name
    assert set(vocabulary.OPEN_STATUSES) <= set(vocabulary.STATUSES)
