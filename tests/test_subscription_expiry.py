"""A subscription ends when its token expires, over a real WebSocket, even when no change comes:
a quiet feed used to outlive its token until the next change happened to arrive."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.authz.identity import issue_token
from hub.config import Settings
from hub.db import utcnow
from tests.live import in_process_server
from tests.test_subscriptions import WSClient, eventually, local_subscribers
from tests.world import World

# Generous: the end is due at the expiry, this only bounds how long a broken build hangs.
WAIT_SECONDS = 15.0


async def test_a_quiet_subscription_ends_when_its_token_expires(
    app: Any, world: World, settings: Settings
) -> None:
    issued = utcnow()
    bearer = issue_token(
        settings, role="health", subject="brief", ttl=timedelta(seconds=2), now=issued
    )
    headers = {"Authorization": f"Bearer {bearer}"}
    async with (
        in_process_server(app) as address,
        WSClient.connect(f"ws://{address}/graphql", headers) as client,
    ):
        feed = await client.subscribe()
        # Nothing changes: the only message is the end.
        ended = await feed.message(within=WAIT_SECONDS)
        # A token's expiry has whole seconds: at least one second after it was issued.
        assert utcnow() >= issued + timedelta(seconds=1)
        errors = ended["payload"] if ended["type"] == "error" else ended["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"], ended
        assert errors[0]["message"] == "the token expired: reconnect with a fresh one"
        if ended["type"] == "next":
            assert (await feed.message())["type"] == "complete"
        # The broker's queue went with it.
        await eventually(lambda: local_subscribers(app.state.broker) == 0)


async def test_a_subscription_with_time_left_keeps_running(
    app: Any, world: World, settings: Settings
) -> None:
    """The deadline is the token's: a token with an hour left is not ended early."""
    bearer = issue_token(settings, role="health", subject="long", ttl=timedelta(hours=1))
    headers = {"Authorization": f"Bearer {bearer}"}
    async with (
        in_process_server(app) as address,
        WSClient.connect(f"ws://{address}/graphql", headers) as client,
    ):
        feed = await client.subscribe()
        await eventually(lambda: local_subscribers(app.state.broker) == 1)
        data = await client.execute("{ me { subject } }", {})
        assert data == {"me": {"subject": "long"}}
        assert feed.messages.empty()
