"""The dispatch board's WebSocket: a browser cannot set headers on it and the session cookie is
HttpOnly, so a same-origin upgrade may authenticate with the session cookie
(hub.api.http.GraphQLView.identify). Over real sockets (tests/live.py) with the `websockets`
client, as board.js connects."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.types import Message
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from hub.api.http import same_origin
from hub.authz.identity import issue_token
from hub.authz.sessions import ANONYMOUS_COOKIE, SESSION_COOKIE, Sealer, session_secret
from hub.config import Settings
from hub.web.operations import Operations
from tests.live import in_process_server
from tests.policy_clients import SUPERUSER, credentials, token
from tests.world import World

PROTOCOL = Subprotocol("graphql-transport-ws")
ME = "{ me { role subject } }"
REPORT = """
mutation($title: String!) {
  reportEvent(input: {category: SANITATION, title: $title, gridCode: "G1",
                      reporterSystem: "test"}) { code }
}"""


@pytest.fixture
async def server(app: Any, world: World) -> AsyncIterator[str]:
    """The app on a real port: "127.0.0.1:PORT"."""
    async with in_process_server(app) as address:
        yield address


async def session_cookie(address: str, credential: str, role: str | None = None) -> str:
    """Sign in through the page, as a browser does, and return the session cookie's value."""
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        form = await http.get("/signin")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found is not None
        # The form's nonce cookie is Secure, which a cookie jar keeps from plain http: the
        # test hands it back itself.
        nonce = form.cookies[ANONYMOUS_COOKIE]
        data = {"csrf_token": found.group(1), "credential": credential, "role": role or ""}
        response = await http.post(
            "/signin", data=data, headers={"Cookie": f"{ANONYMOUS_COOKIE}={nonce}"}
        )
        assert response.status_code == 303, response.text
        cookie = response.cookies.get(SESSION_COOKIE)
        assert cookie
        return cookie


def upgrade_headers(address: str, cookie: str | None, origin: str | None) -> dict[str, str]:
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    if origin is not None:
        headers["Origin"] = origin
    return headers


async def opened(address: str, headers: dict[str, str]) -> ClientConnection:
    ws = await connect(
        f"ws://{address}/graphql",
        subprotocols=[PROTOCOL],
        additional_headers=headers,
        open_timeout=10,
    )
    return ws


async def init(ws: ClientConnection, payload: dict[str, Any] | None = None) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack["type"] == "connection_ack", ack


async def reply(ws: ClientConnection, op_id: str, query: str) -> dict[str, Any]:
    """The first message for operation `op_id` (pings answered on the way)."""
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif message.get("id") == op_id:
            return message


async def me(ws: ClientConnection) -> dict[str, str]:
    message = await reply(ws, "me", ME)
    assert message["type"] == "next", message
    return message["payload"]["data"]["me"]


# --- same origin: the session's credential and role --------------------------------------------


async def test_a_same_origin_upgrade_subscribes_as_the_session(
    server: str, settings: Settings
) -> None:
    """What board.js does: the cookie, the page's own Origin, an empty connection_init, then
    the board's persisted subscription; an event reported through GraphQL arrives on it."""
    credential = token(settings, "dispatcher", subject="dispatcher:li")
    cookie = await session_cookie(server, credential)
    headers = upgrade_headers(server, cookie, f"http://{server}")
    async with await opened(server, headers) as ws:
        await init(ws)
        assert await me(ws) == {"role": "dispatcher", "subject": "dispatcher:li"}
        live = Operations.load()["BoardLive"].document
        await ws.send(json.dumps({"id": "live", "type": "subscribe", "payload": {"query": live}}))
        async with httpx.AsyncClient(
            base_url=f"http://{server}", headers=credentials(settings, SUPERUSER)
        ) as api:
            change = await first_change(ws, api)
    event = change["event"]
    assert change["action"] == "report"
    assert event["status"] == "REPORTED"
    assert event["grid"]["code"] == "G1"
    assert {"code", "title", "severity", "category", "overdue", "reportedAt"} <= set(event)


async def first_change(ws: ClientConnection, api: httpx.AsyncClient) -> dict[str, Any]:
    """Report events until the subscription delivers one: the protocol does not say when a
    subscription has started, so the first reports may come before it listens."""
    reported: set[str] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = await api.post(
            "/graphql", json={"query": REPORT, "variables": {"title": "垃圾堆放"}}
        )
        reported.add(response.json()["data"]["reportEvent"]["code"])
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
        except TimeoutError:
            continue
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        if message.get("id") != "live":
            continue  # the end of an earlier operation
        assert message["type"] == "next", message
        change: dict[str, Any] = message["payload"]["data"]["eventChanged"]
        assert change["event"]["code"] in reported
        return change
    pytest.fail("the subscription delivered nothing")


async def test_the_session_role_is_kept(server: str, settings: Settings) -> None:
    """A credential with several roles signed in as one of them stays that role."""
    credential = issue_token(settings, role=["grid_worker", "dispatcher"], subject="both")
    cookie = await session_cookie(server, credential, role="dispatcher")
    async with await opened(server, upgrade_headers(server, cookie, f"http://{server}")) as ws:
        await init(ws)
        assert await me(ws) == {"role": "dispatcher", "subject": "both"}


# --- anything else: the cookie does not count ------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null"], ids=["other-site", "opaque"])
async def test_a_cross_site_upgrade_is_refused(
    server: str, settings: Settings, origin: str
) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere opens the socket and the browser adds
    the cookie. strawberry refuses the handshake itself (403)."""
    cookie = await session_cookie(server, token(settings, "dispatcher"))
    with pytest.raises(InvalidStatus) as refused:
        await opened(server, upgrade_headers(server, cookie, origin))
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["https://{server}", None], ids=["other-scheme", "no-origin"])
async def test_the_cookie_counts_only_from_the_same_origin(
    server: str, settings: Settings, origin: str | None
) -> None:
    """Upgrades strawberry lets through (it compares host and port only; a client without an
    Origin header is no browser) but that are not from this server's own pages: the cookie is
    ignored, so the connection is the public role, whose schema has no eventChanged."""
    cookie = await session_cookie(server, token(settings, "dispatcher"))
    from_origin = origin.format(server=server) if origin else None
    async with await opened(server, upgrade_headers(server, cookie, from_origin)) as ws:
        await init(ws)
        assert await me(ws) == {"role": "public", "subject": "anonymous"}
        live = Operations.load()["BoardLive"].document
        message = await reply(ws, "live", live)
    assert message["type"] == "error", message
    assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


@pytest.mark.parametrize("forgery", ["garbage", "other-secret", "tampered"])
async def test_a_forged_cookie_is_anonymous(server: str, settings: Settings, forgery: str) -> None:
    credential = token(settings, "dispatcher")
    genuine = Sealer(session_secret(settings)).seal(credential, role=None, lifetime_seconds=600)
    cookie = {
        "garbage": "not-a-session",
        "other-secret": Sealer(b"z" * 40).seal(credential, role=None, lifetime_seconds=600),
        "tampered": genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB"),
    }[forgery]
    async with await opened(server, upgrade_headers(server, cookie, f"http://{server}")) as ws:
        await init(ws)
        assert (await me(ws))["role"] == "public"


async def test_a_session_whose_credential_no_longer_verifies_is_closed(
    server: str, settings: Settings
) -> None:
    """The cookie opens, but the token inside has expired: refused as a header with that token
    would be (4401), not quietly downgraded."""
    expired = issue_token(
        settings,
        role="dispatcher",
        subject="late",
        ttl=timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    cookie = Sealer(session_secret(settings)).seal(expired, role=None, lifetime_seconds=600)
    async with await opened(server, upgrade_headers(server, cookie, f"http://{server}")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# --- beside other credentials ------------------------------------------------------------


async def test_an_authorization_header_wins_over_the_cookie(
    server: str, settings: Settings
) -> None:
    cookie = await session_cookie(server, token(settings, "dispatcher"))
    headers = {
        **upgrade_headers(server, cookie, f"http://{server}"),
        **credentials(settings, "auditor", subject="the-auditor"),
    }
    async with await opened(server, headers) as ws:
        await init(ws)
        assert await me(ws) == {"role": "auditor", "subject": "the-auditor"}


async def test_a_second_credential_in_connection_init_is_refused(
    server: str, settings: Settings
) -> None:
    """The cookie is the connection's credential, as an Authorization header on the upgrade
    would be: another one in connection_init closes the socket (4403), never switches roles."""
    cookie = await session_cookie(server, token(settings, "dispatcher"))
    other = token(settings, "auditor")
    async with await opened(server, upgrade_headers(server, cookie, f"http://{server}")) as ws:
        payload = {"Authorization": f"Bearer {other}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert "already has a credential" in closed.value.rcvd.reason


async def test_http_requests_never_read_the_cookie(server: str, settings: Settings) -> None:
    """Plain /graphql ignores the cookie even from the same origin: a form or fetch another site
    makes a browser send carries no authority (no CSRF surface)."""
    cookie = await session_cookie(server, token(settings, "dispatcher"))
    async with httpx.AsyncClient(base_url=f"http://{server}") as http:
        response = await http.post(
            "/graphql",
            json={"query": ME},
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": f"http://{server}"},
        )
    assert response.json()["data"]["me"]["role"] == "public"


# --- what "same origin" means ------------------------------------------------------------


def upgrade(scheme: str, host: str, origin: str | None) -> WebSocket:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {"type": "websocket", "scheme": scheme, "path": "/graphql", "headers": headers}

    async def receive() -> Message:
        raise AssertionError("not used")

    async def send(message: Message) -> None:
        raise AssertionError("not used")

    return WebSocket(scope, receive, send)


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "same"),
    [
        ("ws", "hub.example:8000", "http://hub.example:8000", True),
        ("wss", "hub.example", "https://hub.example", True),
        ("ws", "Hub.Example", "http://hub.example", True),
        ("wss", "hub.example", "http://hub.example", False),
        ("ws", "hub.example", "https://hub.example", False),
        ("ws", "hub.example:8000", "http://hub.example", False),
        ("ws", "hub.example", "http://hub.example.evil.example", False),
        ("ws", "hub.example", "null", False),
        ("ws", "hub.example", None, False),
        ("ws", "", "http://", False),
    ],
)
def test_same_origin(scheme: str, host: str, origin: str | None, same: bool) -> None:
    assert same_origin(upgrade(scheme, host, origin)) is same
