"""The limit on anonymous writes (hub.api.ratelimit over hub.authz.ratelimit): one budget per
(mutation, client) on every channel (/graphql over HTTP and WebSocket, batches, the feedback
page through the gateway) and across workers, counted in the database or in Redis."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from graphql import parse
from sqlalchemy import func, select
from starlette.requests import Request
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from hub.api.ratelimit import client_key, mutation_calls
from hub.app import create_app
from hub.authz.ratelimit import (
    DatabaseRateLimiter,
    RateHit,
    RateLimiter,
    RedisRateLimiter,
    redis_namespace,
)
from hub.config import RateRule, Settings
from hub.db import Database
from hub.feedback.models import Feedback
from tests.live import free_port, in_process_server
from tests.policy_clients import SUPERUSER, credentials
from tests.services import REDIS_URL, need_redis
from tests.world import World

ORIGIN = "https://testserver"
SUBMIT = (
    "mutation Submit($content: String!) { "
    "submitFeedback(input: {kind: SUGGESTION, content: $content}) { trackingCode } }"
)
LIMIT = 5
# Long enough that no test comes near a window's end, short of the sliding-window unit tests.
WINDOW = 3600.0


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return replace(settings, feedback_per_window=LIMIT, feedback_window_seconds=WINDOW)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Any]:
    """One app, as one worker process would run it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def visitor(app: Any, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client connecting from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        yield http


async def submit(http: httpx.AsyncClient, content: str = "多装几盏路灯") -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": SUBMIT, "variables": {"content": content}},
        headers={"Accept": "application/graphql-response+json"},
    )


def accepted(response: httpx.Response) -> bool:
    body = response.json()
    return "errors" not in body and bool(body["data"]["submitFeedback"]["trackingCode"])


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    """The extensions of a RATE_LIMITED answer."""
    errors = body.get("errors") or []
    assert errors, body
    extensions: dict[str, Any] = errors[0]["extensions"]
    assert extensions["code"] == "RATE_LIMITED", body
    assert extensions["retryAfter"] >= 1
    return extensions


async def stored(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(Feedback)) or 0)


async def page_submit(http: httpx.AsyncClient, content: str) -> httpx.Response:
    form = await http.get("/feedback")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    data = {"csrf_token": token.group(1), "kind": "suggestion", "content": content}
    return await http.post("/feedback", data=data, headers={"Origin": ORIGIN})


# --- /graphql ---------------------------------------------------------------------------------


async def test_the_sixth_anonymous_submission_in_the_window_is_refused(
    limited: Settings, db: Database, world: World
) -> None:
    async with running(limited) as app, visitor(app) as http:
        for n in range(LIMIT):
            assert accepted(await submit(http, f"第{n}条"))
        refused = await submit(http, "第六条")
        assert refused.status_code == 429
        extensions = refusal(refused.json())
        assert extensions["limit"] == LIMIT
        assert refused.headers["retry-after"] == str(extensions["retryAfter"])
        assert "data" not in refused.json()
        # Another client has a budget of its own, and so does a signed-in role.
        async with visitor(app, "203.0.113.7") as other:
            assert accepted(await submit(other))
        staff = await http.post(
            "/graphql",
            json={"query": SUBMIT, "variables": {"content": "工作人员代录"}},
            headers=credentials(limited, SUPERUSER),
        )
        assert accepted(staff)
    assert await stored(db) == LIMIT + 2


async def test_a_batch_counts_each_mutation_and_each_alias(
    limited: Settings, db: Database, world: World
) -> None:
    twice = (
        'mutation Twice { a: submitFeedback(input: {kind: SUGGESTION, content: "甲"}) '
        '{ trackingCode } b: submitFeedback(input: {kind: SUGGESTION, content: "乙"}) '
        "{ trackingCode } }"
    )
    once = {"query": SUBMIT, "variables": {"content": "丙"}}
    async with running(limited) as app, visitor(app) as http:
        # 2 + 1 + 1 + 1: the budget, exactly.
        answers = (await http.post("/graphql", json=[{"query": twice}, once, once, once])).json()
        assert [sorted(answer["data"]) for answer in answers] == [
            ["a", "b"],
            ["submitFeedback"],
            ["submitFeedback"],
            ["submitFeedback"],
        ]
        answers = (await http.post("/graphql", json=[once, {"query": twice}])).json()
        for answer in answers:
            refusal(answer)
    assert await stored(db) == LIMIT


async def test_an_operation_takes_all_its_calls_or_none(
    limited: Settings, db: Database, world: World
) -> None:
    calls = " ".join(
        f'c{n}: submitFeedback(input: {{kind: SUGGESTION, content: "{n}"}}) {{ trackingCode }}'
        for n in range(LIMIT + 1)
    )
    async with running(limited) as app, visitor(app) as http:
        refusal((await http.post("/graphql", json={"query": f"mutation {{ {calls} }}"})).json())
        # Nothing was taken by the refused operation: the whole budget is left.
        for _ in range(LIMIT):
            assert accepted(await submit(http))
    assert await stored(db) == LIMIT


async def ws_submit(ws: ClientConnection, op_id: str) -> dict[str, Any]:
    """The first message about operation `op_id`, after reading up to its end."""
    payload = {"query": SUBMIT, "variables": {"content": f"ws {op_id}"}}
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
    messages = []
    while not messages or messages[-1]["type"] not in ("complete", "error"):
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("id") == op_id:
            messages.append(message)
    return messages[0]  # type: ignore[no-any-return]


async def test_websocket_mutations_share_the_budget(
    limited: Settings, db: Database, world: World
) -> None:
    async with running(limited) as app, in_process_server(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            for _ in range(3):
                assert accepted(await submit(http))
        async with connect(
            f"ws://{address}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            answers = [await ws_submit(ws, str(n)) for n in range(3)]
    assert [answer["type"] for answer in answers] == ["next", "next", "error"], answers
    assert "errors" not in answers[0]["payload"] and "errors" not in answers[1]["payload"]
    # graphql-transport-ws sends an error before execution as "error", its payload the errors.
    refusal({"errors": answers[2]["payload"]})
    assert await stored(db) == LIMIT


# --- the page -----------------------------------------------------------------------------------


async def test_the_page_and_graphql_share_one_budget(
    limited: Settings, db: Database, world: World
) -> None:
    async with running(limited) as app, visitor(app) as http:
        for n in range(3):
            assert (await page_submit(http, f"表单{n}")).status_code == 303
        for n in range(2):
            assert accepted(await submit(http, f"接口{n}"))
        refused = await page_submit(http, "第六条")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "第六条" in refused.text  # What the visitor wrote is kept.
        refusal((await submit(http)).json())
    assert await stored(db) == LIMIT


# --- across workers -----------------------------------------------------------------------------


async def alternate(apps: list[Any], address: str) -> list[bool]:
    """LIMIT + 1 anonymous submissions from one client, taking turns between the workers."""
    results = []
    async with visitor(apps[0], address) as first, visitor(apps[1], address) as second:
        for n in range(LIMIT + 1):
            results.append(accepted(await submit((first, second)[n % 2], f"第{n}条")))
    return results


async def test_two_workers_over_one_database_share_one_budget(
    limited: Settings, db: Database, world: World
) -> None:
    async with running(limited) as one, running(limited) as two:
        assert [accepted for accepted in await alternate([one, two], "127.0.0.1")] == [
            *[True] * LIMIT,
            False,
        ]
    assert await stored(db) == LIMIT


@pytest.mark.redis
async def test_two_workers_share_one_budget_in_redis(
    limited: Settings, db: Database, world: World
) -> None:
    need_redis()
    # Redis outlives the test's tables: a client address of its own keeps earlier runs out.
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    with_redis = replace(limited, redis_url=REDIS_URL)
    async with running(with_redis) as one, running(with_redis) as two:
        assert await alternate([one, two], address) == [*[True] * LIMIT, False]
    assert await stored(db) == LIMIT
    async with db.reader() as session:
        # Counted in Redis, not in the database.
        assert await session.scalar(select(func.count()).select_from(RateHit)) == 0


async def test_workers_racing_for_the_last_calls_take_no_more_than_the_limit(
    limited: Settings, db: Database, world: World
) -> None:
    async with (
        running(limited) as one,
        running(limited) as two,
        visitor(one) as first,
        visitor(two) as second,
    ):
        answers = await asyncio.gather(
            *(submit((first, second)[n % 2], f"并发{n}") for n in range(2 * LIMIT))
        )
    assert sum(accepted(answer) for answer in answers) == LIMIT
    for answer in answers:
        if not accepted(answer):
            refusal(answer.json())
    assert await stored(db) == LIMIT


async def test_a_store_that_cannot_be_asked_refuses_the_write(
    limited: Settings, db: Database, world: World
) -> None:
    # Nothing listens there: the write is refused as our fault, not let through unlimited.
    unreachable = replace(limited, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(unreachable) as app, visitor(app) as http:
        body = (await submit(http)).json()
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert await stored(db) == 0


# --- the client's address -----------------------------------------------------------------------


async def test_forwarded_addresses_count_only_from_configured_proxies(
    limited: Settings, db: Database, world: World
) -> None:
    async def forwarded(app: Any, address: str) -> httpx.Response:
        async with visitor(app) as http:
            return await http.post(
                "/graphql",
                json={"query": SUBMIT, "variables": {"content": "经代理"}},
                headers={"X-Forwarded-For": address},
            )

    async with running(limited) as app:
        # Not configured: the header names nobody, and every "address" is the peer's budget.
        results = [accepted(await forwarded(app, f"198.51.100.{n}")) for n in range(LIMIT + 1)]
        assert results == [*[True] * LIMIT, False]
    trusted = replace(limited, forwarded_allow_ips="127.0.0.1")
    async with running(trusted) as app:
        # From a trusted proxy, each forwarded client has its own budget.
        assert all([accepted(await forwarded(app, f"198.51.100.{n}")) for n in range(3)])


def test_an_ipv6_client_counts_as_its_64() -> None:
    def key(host: str) -> str:
        return client_key(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert key("2001:db8:1:2:aaaa::1") == key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:203.0.113.5") == key("203.0.113.5") == "203.0.113.5"
    assert client_key(None) == "unknown"


def test_calls_are_counted_per_response_key_through_fragments_and_directives() -> None:
    document = parse(
        """
        mutation M($no: Boolean!) {
          a: submitFeedback(input: $i) { id }
          a: submitFeedback(input: $i) { id }
          ...F
          ... on Mutation { c: submitFeedback(input: $i) { id } }
          d: submitFeedback(input: $i) @skip(if: true) { id }
          e: submitFeedback(input: $i) @include(if: $no) { id }
          other(x: 1)
        }
        fragment F on Mutation { b: submitFeedback(input: $i) { id } }
        """
    )
    assert mutation_calls(document, "M", {"no": False}) == {"submitFeedback": 3, "other": 1}
    assert mutation_calls(document, "M", {"no": True})["submitFeedback"] == 4


# --- the stores, on a clock of their own ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["database", "redis"])
async def store(
    request: pytest.FixtureRequest, db: Database
) -> AsyncIterator[Callable[[Clock], RateLimiter]]:
    made: list[RateLimiter] = []

    def make(clock: Clock) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "redis":
            namespace = redis_namespace(db.url) + uuid.uuid4().hex + ":"
            limiter = RedisRateLimiter(REDIS_URL, namespace=namespace, clock=clock)
        else:
            limiter = DatabaseRateLimiter(db, clock=clock)
        made.append(limiter)
        return limiter

    if request.param == "redis":
        need_redis()
    yield make
    for limiter in made:
        await limiter.close()


RULE = RateRule(limit=3, window_seconds=60)


async def test_a_window_full_then_when_to_retry(store: Callable[[Clock], RateLimiter]) -> None:
    clock = Clock()
    limiter = store(clock)
    for _ in range(3):
        assert (await limiter.hit("a", rule=RULE)).allowed
        clock.now += 10
    refused = await limiter.hit("a", rule=RULE)
    assert not refused.allowed
    # The first hit (at +0) leaves the window at +60; it is +30.
    assert refused.retry_after == pytest.approx(30)
    assert refused.retry_after_seconds == 30
    assert (await limiter.hit("b", rule=RULE)).allowed  # Another key, another budget.
    clock.now += 30
    assert (await limiter.hit("a", rule=RULE)).allowed
    refused = await limiter.hit("a", rule=RULE)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(10)  # The second (+10) leaves at +70.


async def test_refused_hits_are_not_counted(store: Callable[[Clock], RateLimiter]) -> None:
    clock = Clock()
    limiter = store(clock)
    for _ in range(3):
        assert (await limiter.hit("a", rule=RULE)).allowed
    for _ in range(50):
        clock.now += 1
        assert not (await limiter.hit("a", rule=RULE)).allowed
    clock.now += 10  # +60: the three hits have left; the fifty refused ones never counted.
    assert (await limiter.hit("a", rule=RULE, cost=3)).allowed


async def test_several_hits_at_once_wait_for_room_for_all(
    store: Callable[[Clock], RateLimiter],
) -> None:
    clock = Clock()
    limiter = store(clock)
    assert (await limiter.hit("a", rule=RULE)).allowed
    clock.now += 20
    assert (await limiter.hit("a", rule=RULE)).allowed
    refused = await limiter.hit("a", rule=RULE, cost=3)
    assert not refused.allowed
    # Both must leave: the second, at +80, is 60 seconds away.
    assert refused.retry_after == pytest.approx(60)
    assert not (await limiter.hit("a", rule=RULE, cost=4)).allowed  # Never fits.
    assert (await limiter.hit("a", rule=RULE)).allowed  # One still does.


async def test_the_table_keeps_only_hits_inside_their_window(db: Database) -> None:
    clock = Clock()
    limiter = DatabaseRateLimiter(db, clock=clock)
    for key in ("a", "b", "c"):
        await limiter.hit(key, rule=RULE)
    clock.now += RULE.window_seconds
    await limiter.hit("d", rule=RULE)
    async with db.reader() as session:
        keys = list(await session.scalars(select(RateHit.key)))
    assert [key.split("@")[0] for key in keys] == ["d"]


# --- settings -----------------------------------------------------------------------------------


def test_the_rules_and_the_store_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "GRIDHUB_FEEDBACK_RATE": "3/60",
            "GRIDHUB_PUBLIC_WRITE_RATE": "10/3600",
            "GRIDHUB_FORWARDED_ALLOW_IPS": "10.0.0.1",
        }
    )
    assert settings.write_rule("submitFeedback") == RateRule(3, 60)
    assert settings.write_rule("anotherMutation") == RateRule(10, 3600)
    assert settings.forwarded_allow_ips == "10.0.0.1"
    assert settings.effective_redis_url is None
    broker = Settings.from_env({"GRIDHUB_BROKER_URL": "redis://cache:6379/1?channel=hub"})
    assert broker.effective_redis_url == "redis://cache:6379/1"
    own = Settings.from_env(
        {"GRIDHUB_BROKER_URL": "redis://cache/1", "GRIDHUB_REDIS_URL": "redis://other/2"}
    )
    assert own.effective_redis_url == "redis://other/2"
    with pytest.raises(ValueError):
        RateRule.parse("0/60")
