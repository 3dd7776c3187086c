"""Security review of the live dispatch board and its cookie-authenticated WebSocket (issue 5):
each test demonstrates one problem found in review, over real HTTP and real WebSockets
(tests/live.py), and is expected to fail until the problem is fixed.

The board's WebSocket is authenticated once, when it opens (hub.api.http.GraphQLView.identify).
After that, the connection (TransportWSHandler._still_valid) and every running eventChanged
stream (hub.api.subscriptions.still_allowed) re-check only the token's expiry and the policy
version: not the session's sign-out, not the session cookie's own expiry, not an API key's
revocation. An API key has no expiry at all, so such a socket lives as long as it stays open."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hub.authz import apikeys
from hub.authz.sessions import ANONYMOUS_COOKIE, SESSION_COOKIE
from hub.config import Settings
from hub.db import Database
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
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def server(app: Any, world: World) -> AsyncIterator[str]:
    """The app on a real port: "127.0.0.1:PORT"."""
    async with in_process_server(app) as address:
        yield address


def csrf_in(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


async def sign_in(address: str, credential: str) -> str:
    """Sign in through the page, as a browser does; the session cookie's value. (The cookies
    are Secure, which a jar keeps from plain http: the test hands them back itself.)"""
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        form = await http.get("/signin")
        nonce = form.cookies[ANONYMOUS_COOKIE]
        response = await http.post(
            "/signin",
            data={"csrf_token": csrf_in(form.text), "credential": credential},
            headers={"Cookie": f"{ANONYMOUS_COOKIE}={nonce}"},
        )
        assert response.status_code == 303, response.text
        cookie = response.cookies.get(SESSION_COOKIE)
        assert cookie
        return cookie


async def sign_out(address: str, cookie: str) -> None:
    """Sign out with the board's own CSRF token, then check the server has ended the session
    (a copy of the cookie no longer opens the board)."""
    jar = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        board = await http.get("/dispatch", headers=jar)
        assert board.status_code == 200, board.text
        signed_out = await http.post(
            "/signout", data={"csrf_token": csrf_in(board.text)}, headers=jar
        )
        assert signed_out.status_code == 303, signed_out.text
        replay = await http.get("/dispatch", headers=jar)
        assert replay.status_code == 303, "sign-out did not end the session"


async def board_socket(address: str, cookie: str) -> ClientConnection:
    """What board.js opens: the page's origin, the session cookie, an empty connection_init."""
    ws = await connect(
        f"ws://{address}/graphql",
        subprotocols=[PROTOCOL],
        additional_headers={
            "Cookie": f"{SESSION_COOKIE}={cookie}",
            "Origin": f"http://{address}",
        },
        open_timeout=10,
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack["type"] == "connection_ack", ack
    return ws


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping (answered on the way)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] != "ping":
            return message
        await ws.send(json.dumps({"type": "pong"}))


async def report(api: httpx.AsyncClient) -> str:
    response = await api.post("/graphql", json={"query": REPORT, "variables": {"title": "堆物"}})
    code: str = response.json()["data"]["reportEvent"]["code"]
    return code


async def listening(ws: ClientConnection, api: httpx.AsyncClient) -> None:
    """Subscribe to the board's feed and wait until it delivers: the protocol does not say
    when a subscription has started, so report until one arrives."""
    live = Operations.load()["BoardLive"].document
    await ws.send(json.dumps({"id": "live", "type": "subscribe", "payload": {"query": live}}))
    reported: set[str] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        reported.add(await report(api))
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
        except TimeoutError:
            continue
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        assert message["type"] == "next", message
        assert message["payload"]["data"]["eventChanged"]["event"]["code"] in reported
        # Drain what the other reports may still deliver, so the next message is fresh.
        while True:
            try:
                extra = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
            except TimeoutError:
                return
            if extra["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
    pytest.fail("the subscription delivered nothing")


async def delivered_after(ws: ClientConnection, api: httpx.AsyncClient) -> dict[str, Any] | None:
    """Report one more event: the change the running subscription delivers for it, or None
    when the server ended the stream or the connection instead."""
    code = await report(api)
    try:
        message = await next_message(ws)
    except ConnectionClosed:
        return None
    if message["type"] != "next" or "errors" in message["payload"]:
        return None
    change: dict[str, Any] = message["payload"]["data"]["eventChanged"]
    assert change["event"]["code"] == code
    return change


async def answer_to_me(ws: ClientConnection, op_id: str) -> dict[str, Any] | None:
    """A new operation `op_id` on the open connection: `me`, or None when it is refused."""
    try:
        await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": ME}}))
        while True:
            message = await next_message(ws)
            if message.get("id") == op_id:
                break
    except ConnectionClosed:
        return None
    if message["type"] != "next" or "errors" in message["payload"]:
        return None
    me: dict[str, Any] = message["payload"]["data"]["me"]
    return me


async def api_key(db: Database, role: str) -> str:
    async with db.transaction() as session:
        _, key = await apikeys.create(session, name=f"board-{role}", role=role)
    return key


# --- an open board socket outlives the end of its session ----------------------------------


@pytest.mark.parametrize("kind", ["token", "api_key"])
async def test_sign_out_ends_the_live_feed_of_an_open_board(
    server: str, settings: Settings, db: Database, kind: str
) -> None:
    """A user signs out (say on a shared computer, or because the cookie was copied): the
    board's socket opened before (in another tab, or by whoever holds the copy) still gets
    every change in the dispatcher's scope. With an API key, which has no expiry, it never
    stops while the socket stays open; with a token, not until the token expires."""
    credential = (
        token(settings, "dispatcher", subject="dispatcher:li")
        if kind == "token"
        else await api_key(db, "dispatcher")
    )
    cookie = await sign_in(server, credential)
    async with (
        httpx.AsyncClient(
            base_url=f"http://{server}", headers=credentials(settings, SUPERUSER)
        ) as api,
        await board_socket(server, cookie) as ws,
    ):
        await listening(ws, api)
        await sign_out(server, cookie)
        change = await delivered_after(ws, api)
    assert change is None, f"the signed-out session's socket still got {change}"


async def test_sign_out_ends_new_operations_on_an_open_board_socket(
    server: str, settings: Settings
) -> None:
    cookie = await sign_in(server, token(settings, "dispatcher", subject="dispatcher:li"))
    async with await board_socket(server, cookie) as ws:
        assert await answer_to_me(ws, "before") == {
            "role": "dispatcher",
            "subject": "dispatcher:li",
        }
        await sign_out(server, cookie)
        me = await answer_to_me(ws, "after")
    assert me is None, f"the signed-out session's socket still acts as {me}"


async def test_revoking_the_key_ends_the_live_feed_of_an_open_board(
    server: str, settings: Settings, db: Database
) -> None:
    cookie = await sign_in(server, await api_key(db, "dispatcher"))
    async with (
        httpx.AsyncClient(
            base_url=f"http://{server}", headers=credentials(settings, SUPERUSER)
        ) as api,
        await board_socket(server, cookie) as ws,
    ):
        await listening(ws, api)
        async with db.transaction() as session:
            await apikeys.revoke(session, name="board-dispatcher")
        # The pages see the revocation at once.
        async with httpx.AsyncClient(base_url=f"http://{server}") as http:
            page = await http.get("/dispatch", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        assert page.status_code == 303
        change = await delivered_after(ws, api)
    assert change is None, f"the revoked key's socket still got {change}"
