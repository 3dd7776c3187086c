"""Abuse limits on the GraphQL endpoint: each one is hit (status and `extensions.code`) and
approached from just under (the request still works)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import get_introspection_query, parse
from graphql.language import Lexer, Source, TokenKind
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from hub.api.context import RequestDatabase, interrupt_on_cancel
from hub.api.filters import MAX_LIST_ITEMS
from hub.api.limits import GraphQLLimits, weigh
from hub.api.schema import build_schema
from hub.app import create_app
from hub.config import Limits, Settings
from hub.db import Database
from hub.migrate import upgrade
from hub.residents import service as residents
from tests.conftest import GraphQLClient
from tests.live import LiveServer, live_server
from tests.policy_clients import SUPERUSER, credentials
from tests.world import World, valid_id_number

DEFAULTS = Limits()


@asynccontextmanager
async def limited(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app (same database) whose limits differ from the defaults by `changes`,
    acting as superuser with a purpose (as the `client` fixture does)."""
    async with limited_app(settings, **changes) as (http, _app):
        yield http


@asynccontextmanager
async def limited_app(
    settings: Settings, **changes: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(replace(settings, limits=replace(settings.limits, **changes)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = credentials(settings, SUPERUSER)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            yield http, app


def code_of(body: Any) -> str:
    return body["errors"][0]["extensions"]["code"]


SCHEMA = build_schema()


def cost_of(query: str, limits: Limits = DEFAULTS) -> int:
    (weight,) = weigh(SCHEMA._schema, parse(query), limits).values()
    return weight.estimate


def tokens(query: str) -> int:
    lexer = Lexer(Source(query))
    count = 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


# --- request body -------------------------------------------------------------------------------


def padded_body(size: int) -> bytes:
    """A valid GraphQL request of exactly `size` bytes (JSON whitespace pads it)."""
    body = json.dumps({"query": '{ grid(code: "G1") { code } }'}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_at_the_limit_passes(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/graphql",
        content=padded_body(DEFAULTS.max_body_bytes),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"grid": {"code": "G1"}}}


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, world: World) -> None:
    big = padded_body(DEFAULTS.max_body_bytes + 1)
    response = await client.post(
        "/graphql", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert code_of(body) == "REQUEST_TOO_LARGE"
    assert str(DEFAULTS.max_body_bytes) in body["errors"][0]["message"]

    # A declared length over the limit is refused before any of the body is read.
    pulled = 0

    async def declared() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield big

    response = await client.post(
        "/graphql",
        content=declared(),
        headers={"content-type": "application/json", "content-length": str(len(big))},
    )
    assert response.status_code == 413
    assert code_of(response.json()) == "REQUEST_TOO_LARGE"
    assert pulled == 0


async def test_body_without_length_is_cut_off_while_streaming(
    client: httpx.AsyncClient, world: World
) -> None:
    chunk = b" " * 65536
    total_chunks = 64  # 4 MiB, far past the limit
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"query": "{ __typename }"'
        for _ in range(total_chunks):
            sent += 1
            yield chunk
        yield b"}"

    response = await client.post(
        "/graphql", content=stream(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert code_of(response.json()) == "REQUEST_TOO_LARGE"
    # The app stopped pulling the body soon after the limit, not at its end.
    assert sent <= DEFAULTS.max_body_bytes // len(chunk) + 1 < total_chunks


# --- source length and tokens -------------------------------------------------------------------


async def test_query_length(gql: GraphQLClient, world: World) -> None:
    base = '{ grid(code: "G1") { code } }'
    # Comments are no tokens: only the length limit stops a comment-padded query.
    padding = "#" + "x" * 98 + "\n"
    at_limit = base + "\n" + "#" * (DEFAULTS.max_query_chars - len(base) - 1)
    assert len(at_limit) == DEFAULTS.max_query_chars
    assert (await gql.data(at_limit))["grid"] == {"code": "G1"}

    over = base + padding * (DEFAULTS.max_query_chars // len(padding) + 1)
    assert tokens(over) == tokens(base)
    error = await gql.error(over)
    assert error["extensions"]["code"] == "QUERY_TOO_LONG"
    assert error["extensions"]["maximum"] == DEFAULTS.max_query_chars
    assert f"{len(over)} characters" in error["message"]


def group_by_query(token_count: int) -> str:
    """A valid query of exactly `token_count` tokens."""
    base = "{ stats { eventCounts(groupBy: [%s]) { count status } } }"
    return base % " ".join(["STATUS"] * (token_count - tokens(base % "")))


async def test_tokens(gql: GraphQLClient, world: World) -> None:
    at_limit = group_by_query(DEFAULTS.max_tokens)
    assert tokens(at_limit) == DEFAULTS.max_tokens
    assert len(at_limit) < DEFAULTS.max_query_chars
    assert "stats" in await gql.data(at_limit)

    over = group_by_query(DEFAULTS.max_tokens + 1)
    assert len(over) < DEFAULTS.max_query_chars
    error = await gql.error(over)
    assert error["extensions"]["code"] == "TOO_MANY_TOKENS"
    assert str(DEFAULTS.max_tokens) in error["message"]


async def test_ordinary_syntax_errors_keep_their_code(gql: GraphQLClient, world: World) -> None:
    error = await gql.error("{ grids { ")
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


# --- depth --------------------------------------------------------------------------------------


def parents(levels: int) -> str:
    """`grid { parent { ... code } }`: `levels` + 2 levels deep."""
    return '{ grid(code: "G1") { ' + "parent { " * levels + "code" + " }" * levels + " } }"


async def test_depth(gql: GraphQLClient, world: World) -> None:
    data = await gql.data(parents(DEFAULTS.max_depth - 2))
    assert data["grid"]["parent"]["parent"]["parent"] == {"parent": None}  # D1, the root

    error = await gql.error(parents(DEFAULTS.max_depth - 1))
    assert error["extensions"]["code"] == "QUERY_TOO_DEEP"
    assert error["extensions"]["depth"] == DEFAULTS.max_depth + 1


async def test_depth_counts_through_fragments(gql: GraphQLClient, world: World) -> None:
    # Each part is shallow; the spread puts the fragment's two levels under nine others.
    fragment = "fragment Up on Grid { parent { code } }"
    levels = DEFAULTS.max_depth - 2
    shell = '{ grid(code: "G1") { ' + "parent { " * levels + "...Up" + " }" * levels + " } }"
    error = await gql.error(shell + " " + fragment)
    assert error["extensions"]["code"] == "QUERY_TOO_DEEP"

    shell = shell.replace("parent { ", "", 1).replace(" }", "", 1)
    assert await gql.data(shell + " " + fragment)


@pytest.mark.parametrize("options", ["default", "everything"])
async def test_introspection_query_passes_default_limits(
    gql: GraphQLClient, world: World, options: str
) -> None:
    kwargs: dict[str, Any] = {}
    if options == "everything":
        kwargs = dict(
            descriptions=True,
            specified_by_url=True,
            directive_is_repeatable=True,
            schema_description=True,
            input_value_deprecation=True,
            one_of=True,
        )
    data = await gql.data(get_introspection_query(**kwargs))
    names = {t["name"] for t in data["__schema"]["types"]}
    assert {"Resident", "Grid", "Query"} <= names


async def test_nested_introspection_is_refused(gql: GraphQLClient, world: World) -> None:
    error = await gql.error(
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    )
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# --- aliases ------------------------------------------------------------------------------------


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: __typename" for i in range(count)) + " }"


async def test_aliases(gql: GraphQLClient, world: World) -> None:
    assert len(await gql.data(aliased(DEFAULTS.max_aliases))) == DEFAULTS.max_aliases
    error = await gql.error(aliased(DEFAULTS.max_aliases + 1))
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert error["extensions"]["aliases"] == DEFAULTS.max_aliases + 1


async def test_aliases_count_at_every_spread(gql: GraphQLClient, world: World) -> None:
    half = DEFAULTS.max_aliases // 2 + 1
    inner = " ".join(f"x{i}: code" for i in range(half))
    fragment = f"fragment Codes on Grid {{ {inner} }}"
    once = '{ grid(code: "G1") { ...Codes } } ' + fragment
    assert await gql.data(once)

    twice = '{ g: grid(code: "G1") { ...Codes } h: grid(code: "G2") { ...Codes } } ' + fragment
    error = await gql.error(twice)
    assert error["extensions"]["code"] == "TOO_MANY_ALIASES"
    assert error["extensions"]["aliases"] == 2 * half + 2

    # Through a fragment that spreads another one twice.
    nested = (
        '{ grid(code: "G1") { ...Twice } } fragment Twice on Grid { ...Codes parent { ...Codes } } '
        + fragment
    )
    assert (await gql.error(nested))["extensions"]["aliases"] == 2 * half


# --- cost ---------------------------------------------------------------------------------------


def test_cost_multiplies_pages_and_lists() -> None:
    limits = Limits(max_page_size=50, list_size_estimate=7)
    # residents + edges + 3 x (node + name): the connection's edges are as long as its page.
    assert cost_of("{ residents(first: 3) { edges { node { name } } } }", limits) == 8
    # A variable or no first: the largest page there can be.
    variable = "query($n: Int) { residents(first: $n) { totalCount edges { node { name } } } }"
    absent = "{ residents { totalCount edges { node { name } } } }"
    largest = "{ residents(first: 50) { totalCount edges { node { name } } } }"
    assert cost_of(variable, limits) == cost_of(absent, limits) == cost_of(largest, limits)
    # residents + totalCount (an aggregate) + edges + 50 x (node + name).
    assert cost_of(largest, limits) == 1 + limits.aggregate_cost + 1 + 50 * 2
    # A list without first/last counts `list_size_estimate` items.
    members = '{ grid(code: "G1") { members { name } } }'
    assert cost_of(members, limits) == 1 + 1 + 7 * 1


async def test_cost_per_operation(settings: Settings, world: World) -> None:
    query = (
        "{ residents(first: 100) { totalCount edges { node { name tags "
        "grid { code members { name grids { code } } } } } } }"
    )
    cost = cost_of(query)
    assert cost <= DEFAULTS.max_cost  # the shipped limit lets this page through
    async with limited(settings, max_cost=cost) as http:
        body = (await http.post("/graphql", json={"query": query})).json()
        assert "errors" not in body, body
        assert len(body["data"]["residents"]["edges"]) == len(world.residents)
    async with limited(settings, max_cost=cost - 1) as http:
        body = (await http.post("/graphql", json={"query": query})).json()
        assert code_of(body) == "COST_LIMIT"
        assert body["errors"][0]["extensions"] == {
            "code": "COST_LIMIT",
            "cost": cost,
            "maximum": cost - 1,
        }
        assert "data" not in body or body["data"] is None


async def test_cost_over_the_shipped_limit(gql: GraphQLClient, world: World) -> None:
    query = "{ grids(first: 100) { edges { node { members { grids { members { grids { code } } } } } } } }"
    assert cost_of(query) > DEFAULTS.max_cost
    error = await gql.error(query)
    assert error["extensions"]["code"] == "COST_LIMIT"


def aggregates(count: int) -> str:
    fields = " ".join(
        f'a{i}: residentTagCounts(level: "community") {{ tag count }}' for i in range(count)
    )
    return "{ stats { " + fields + " } }"


async def test_aggregates_are_priced_as_heavy(gql: GraphQLClient, world: World) -> None:
    """Each stats field and totalCount reads every matching row: a few of them fill an
    operation's budget, however short their answers."""
    each = DEFAULTS.aggregate_cost
    # stats + n x (the aggregate + 10 estimated rows x (tag + count)).
    assert cost_of(aggregates(3)) == 1 + 3 * (each + DEFAULTS.list_size_estimate * 2)
    fits = DEFAULTS.max_cost // (each + DEFAULTS.list_size_estimate * 2)
    assert 1 < fits < DEFAULTS.max_aliases
    data = await gql.data(aggregates(fits))
    assert len(data["stats"]) == fits

    error = await gql.error(aggregates(DEFAULTS.max_aliases))
    assert error["extensions"]["code"] == "COST_LIMIT"
    error = await gql.error(
        "{ stats { "
        + " ".join(f"a{i}: eventTimes {{ events }}" for i in range(DEFAULTS.max_aliases))
        + " } }"
    )
    assert error["extensions"]["code"] == "COST_LIMIT"
    counts = " ".join(
        f"a{i}: residents(first: 1) {{ totalCount }}" for i in range(DEFAULTS.max_aliases)
    )
    assert cost_of("{ " + counts + " }") > DEFAULTS.max_cost
    assert (await gql.error("{ " + counts + " }"))["extensions"]["code"] == "COST_LIMIT"


async def test_cost_per_batch(settings: Settings, world: World) -> None:
    query = "{ residents(first: 5) { edges { node { name } } } }"
    cost = cost_of(query)
    async with limited(settings, max_cost=cost, max_batch_cost=2 * cost) as http:
        for _ in range(2):  # the budget is per request: the second batch starts from zero
            response = await http.post("/graphql", json=[{"query": query}] * 3)
            assert response.status_code == 200
            first, second, third = response.json()
            assert len(first["data"]["residents"]["edges"]) == 5
            assert second == first
            assert code_of(third) == "COST_LIMIT"
            assert third["errors"][0]["extensions"]["cost"] == 3 * cost
            assert third["errors"][0]["extensions"]["maximum"] == 2 * cost


async def test_page_size(gql: GraphQLClient, world: World) -> None:
    query = "query($n: Int) { residents(first: $n) { edges { node { name } } } }"
    assert await gql.data(query, {"n": DEFAULTS.max_page_size})
    error = await gql.error(query, {"n": DEFAULTS.max_page_size + 1})
    assert error["extensions"]["code"] == "PAGE_SIZE_LIMIT"
    assert error["extensions"]["maximum"] == DEFAULTS.max_page_size
    size = DEFAULTS.max_page_size + 1
    literal = f"{{ residents(last: {size}) {{ edges {{ node {{ name }} }} }} }}"
    assert (await gql.error(literal))["extensions"]["code"] == "PAGE_SIZE_LIMIT"


# --- execution time -----------------------------------------------------------------------------


async def test_timeout_stops_a_query_that_waits_on_the_database(
    settings: Settings, world: World
) -> None:
    """With a timeout shorter than any database round trip, a query that reads is stopped at
    its first read; one that needs no I/O still completes."""
    async with limited_app(settings, execution_timeout_seconds=1e-6) as (http, app):
        reading = "{ residents(first: 100) { totalCount edges { node { name grid { code } } } } }"
        response = await http.post(
            "/graphql",
            json={"query": reading},
            headers={"accept": "application/graphql-response+json"},
        )
        # Out of the server's time budget: a gateway timeout, not the client's mistake.
        assert response.status_code == 504
        body = response.json()
        assert code_of(body) == "TIMEOUT"
        assert "did not finish" in body["errors"][0]["message"]
        # The cancelled reads gave their connections back.
        pool = app.state.db.engine.pool
        for _ in range(100):
            if pool.checkedout() == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.checkedout() == 0

        body = (await http.post("/graphql", json={"query": "{ __typename }"})).json()
        assert body == {"data": {"__typename": "Query"}}


async def test_timeout_cancels_the_resolver() -> None:
    """Through a schema built with the same extension: a resolver that never finishes is
    cancelled (its cleanup runs), one that yields to the loop and returns is not."""
    cleaned_up: list[str] = []

    @strawberry.type
    class Query:
        @strawberry.field
        async def stuck(self) -> int:
            try:
                await asyncio.Event().wait()
            finally:
                cleaned_up.append("stuck")
            return 0  # pragma: no cover

        @strawberry.field
        async def quick(self) -> int:
            await asyncio.sleep(0)
            return 1

    guard = GraphQLLimits(Limits(execution_timeout_seconds=0.05))
    schema = strawberry.Schema(query=Query, extensions=[guard.extension])

    # The outer bound only turns a regression into a failure instead of a hang.
    result = await asyncio.wait_for(schema.execute("{ stuck }"), 30)
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "TIMEOUT", "seconds": 0.05}
    assert cleaned_up == ["stuck"]

    result = await schema.execute("{ quick }")
    assert result.errors is None
    assert result.data == {"quick": 1}


# --- a heavy query does not stall others --------------------------------------------------------


async def test_heavy_query_does_not_stall_a_light_one(
    app: Any, client: httpx.AsyncClient, world: World
) -> None:
    db = app.state.db
    async with db.transaction() as session:
        for n in range(100, 300):
            await residents.create(
                session,
                changes=residents.ResidentChanges(
                    name=f"居民{n}",
                    id_number=valid_id_number(n),
                    address=f"望京西园{n}号楼",
                    grid_code=["G1", "G2", "G3", "G4"][n % 4],
                    tags=["elderly"] if n % 2 else [],
                ),
            )
    heavy = (
        "{ residents(first: 100) { totalCount edges { node { name tags externalIds { system } "
        "grid { code parent { code members { name grids { code } } } } } } } }"
    )
    assert cost_of(heavy) <= DEFAULTS.max_cost

    heavy_started = asyncio.Event()

    def on_statement(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM residents" in statement:  # only the heavy query reads residents
            heavy_started.set()

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_statement)
    try:
        heavy_task = asyncio.create_task(client.post("/graphql", json={"query": heavy}))
        await heavy_started.wait()  # the heavy query is reading
        light = await client.post("/graphql", json={"query": '{ grid(code: "G1") { name } }'})
        heavy_done_first = heavy_task.done()
        heavy_response = await heavy_task
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", on_statement)

    assert light.json() == {"data": {"grid": {"name": "第1网格"}}}
    assert not heavy_done_first, "the light query waited for the heavy one"
    body = heavy_response.json()
    assert "errors" not in body
    assert len(body["data"]["residents"]["edges"]) == 100


async def test_one_request_holds_a_bounded_number_of_sessions(
    app: Any, client: httpx.AsyncClient, world: World
) -> None:
    """Requests full of aliased fields, each field on its own session, all stuck in the
    database: each holds at most `max_sessions_per_request` sessions, and a light request
    still gets a connection from the pool and completes while they wait.

    The normal executor resolves the aliases concurrently, so it reaches the cap; compiled
    execution reads them one after another on one session, far below it. The normal executor
    is the one to bound here."""
    app.state.compiled.enabled = False
    db = app.state.db
    cap = app.state.settings.limits.max_sessions_per_request
    requests = 3
    assert requests * cap < db.engine.pool.size() + db.engine.pool._max_overflow
    heavy = (
        "{ "
        + " ".join(
            f"a{i}: residents(first: 5) {{ edges {{ node {{ name }} }} }}"
            for i in range(DEFAULTS.max_aliases)
        )
        + " }"
    )
    which: ContextVar[int | None] = ContextVar("which", default=None)
    release = asyncio.Event()
    arrived = asyncio.Event()
    holding: Counter[int] = Counter()
    peak: Counter[int] = Counter()
    original = db.reader

    @asynccontextmanager
    async def stuck_reader() -> AsyncIterator[Any]:
        """A heavy request's session takes a pooled connection and stays in the database (as a
        slow statement would) until released."""
        async with original() as session:
            request = which.get()
            if request is not None:
                await session.connection()
                holding[request] += 1
                peak[request] = max(peak[request], holding[request])
                arrived.set()
                await release.wait()
                holding[request] -= 1
            yield session

    async def send(request: int) -> httpx.Response:
        which.set(request)  # the app runs in this task (and tasks it starts): they inherit it
        return await client.post("/graphql", json={"query": heavy})

    db.reader = stuck_reader
    try:
        tasks = [asyncio.create_task(send(n)) for n in range(requests)]
        while sum(holding.values()) < requests * cap:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 30)
        # Every heavy request is in the database with all the sessions it may hold.
        light = await asyncio.wait_for(
            client.post("/graphql", json={"query": '{ grid(code: "G1") { name } }'}), 30
        )
        assert light.json() == {"data": {"grid": {"name": "第1网格"}}}
        assert not any(task.done() for task in tasks), "a heavy request finished first"
        release.set()
        responses = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        release.set()
        del db.reader
    for response in responses:
        body = response.json()
        assert "errors" not in body, body["errors"]
        assert len(body["data"]) == DEFAULTS.max_aliases
    assert dict(peak) == {n: cap for n in range(requests)}


async def test_statement_timeout_on_postgres(settings: Settings, world: World) -> None:
    """API sessions run with a statement_timeout a little over the execution timeout, so the
    server stops a statement nobody waits for any more."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's statement_timeout (SQLite statements are interrupted)")
    async with limited_app(settings, execution_timeout_seconds=0.25) as (_http, app):
        database = app.state.db
        async with database.reader() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "1250ms"
            with pytest.raises(DBAPIError, match="statement timeout"):
                await session.execute(text("SELECT pg_sleep(30)"))


async def test_a_cancelled_session_stops_its_statement(db: Database) -> None:
    """Cancelling the task (as the execution timeout does) stops the running statement: on
    SQLite it is interrupted (aiosqlite runs it in a thread that cancelling does not stop), on
    PostgreSQL asyncpg cancels it. Either way the session ends and its connection is back."""
    interrupt_on_cancel(db)  # as the app's view does for its database
    facade = RequestDatabase(db, asyncio.Semaphore(1))
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        if db.dialect == "sqlite"
        else "SELECT pg_sleep(3600)"
    )
    started = asyncio.Event()

    def on_statement(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement == endless:
            started.set()

    async def run() -> None:
        async with facade.reader() as session:
            await session.execute(text(endless))

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_statement)
    try:
        task = asyncio.create_task(run())
        await asyncio.wait_for(started.wait(), 30)
        await asyncio.sleep(0.05)  # let the statement get going in the driver
        task.cancel()
        # The outer bound only turns a regression (a statement that never stops) into a failure.
        done, _ = await asyncio.wait([task], timeout=30)
        assert done, "the cancelled session did not end"
        assert task.cancelled()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", on_statement)
    async with facade.reader() as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


# --- list arguments -----------------------------------------------------------------------------


async def test_long_list_arguments(gql: GraphQLClient, world: World) -> None:
    """Enum lists are deduplicated (far more items than asyncpg's 32767 parameters, in a body
    under the size limit); lists of free values are refused past MAX_LIST_ITEMS distinct."""
    many = 33_000  # more than 32767, and still under the body size limit
    query = "query($s: [Severity!]) { events(filter: {severity: $s}) { totalCount } }"
    data = await gql.data(query, {"s": ["LOW", "HIGH"] * (many // 2)})
    assert data == {"events": {"totalCount": 0}}

    tags = 'query($t: [String!]) { stats { residentTagCounts(level: "grid", tags: $t) { count } } }'
    data = await gql.data(tags, {"t": ["elderly", *["x"] * many]})
    assert sum(row["count"] for row in data["stats"]["residentTagCounts"]) == 4
    distinct = [f"tag{n}" for n in range(MAX_LIST_ITEMS)]
    assert await gql.data(tags, {"t": distinct})
    error = await gql.error(tags, {"t": [*distinct, "one_more"]})
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "tags",
        "maximum": MAX_LIST_ITEMS,
    }


# --- over real HTTP and WebSocket ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def live(
    tmp_path_factory: pytest.TempPathFactory, policy_dir: Path
) -> AsyncIterator[LiveServer]:
    path: Path = tmp_path_factory.mktemp("live") / "gridhub.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    with live_server(url, policy_dir) as server:
        yield server


async def test_live_body_limit(live: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=30, headers=live.headers) as http:
        big = padded_body(DEFAULTS.max_body_bytes + 1)
        response = await http.post(
            live.graphql_url, content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert code_of(response.json()) == "REQUEST_TOO_LARGE"

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 16384):
                yield big[start : start + 16384]

        response = await http.post(
            live.graphql_url, content=chunked(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert code_of(response.json()) == "REQUEST_TOO_LARGE"

        response = await http.post(live.graphql_url, json={"query": "{ __typename }"})
        assert response.json() == {"data": {"__typename": "Query"}}


@asynccontextmanager
async def ws_session(live: LiveServer) -> AsyncIterator[Any]:
    """A graphql-transport-ws connection; yields `run(query)`, which runs one operation and
    returns its messages up to complete or error."""
    protocol = Subprotocol("graphql-transport-ws")
    async with connect(live.ws_url, subprotocols=[protocol], additional_headers=live.headers) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        ids = iter(range(1, 1000))

        async def run(query: str) -> list[dict[str, Any]]:
            payload = {"query": query}
            await ws.send(
                json.dumps({"id": str(next(ids)), "type": "subscribe", "payload": payload})
            )
            messages: list[dict[str, Any]] = []
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] in ("ping", "pong"):
                    continue
                messages.append(message)
                if message["type"] in ("complete", "error"):
                    return messages

        yield run


async def ws_operation(live: LiveServer, query: str) -> list[dict[str, Any]]:
    async with ws_session(live) as run:
        return await run(query)


async def test_live_websocket_works_and_is_limited(live: LiveServer) -> None:
    messages = await ws_operation(live, "{ __typename }")
    assert [m["type"] for m in messages] == ["next", "complete"]
    assert messages[0]["payload"] == {"data": {"__typename": "Query"}}

    deep = "subscription { eventChanged { event { grid { %s } } } }" % (
        "parent { " * DEFAULTS.max_depth + "code" + " }" * DEFAULTS.max_depth
    )
    (error,) = await ws_operation(live, deep)
    assert error["type"] == "error"
    assert error["payload"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"

    selections = " ".join(f"a{i}: action" for i in range(DEFAULTS.max_aliases + 1))
    aliases = "subscription { eventChanged { " + selections + " } }"
    (error,) = await ws_operation(live, aliases)
    assert error["payload"][0]["extensions"]["code"] == "TOO_MANY_ALIASES"


async def test_live_websocket_has_no_batch_budget(live: LiveServer) -> None:
    """A WebSocket context lives as long as the connection: its operations are not summed."""
    query = "{ residents(first: 100) { edges { node { grid { members { grids { code } } } } } } }"
    cost = cost_of(query)
    assert cost <= DEFAULTS.max_cost
    rounds = DEFAULTS.max_batch_cost // cost + 1
    async with ws_session(live) as run:
        for _ in range(rounds):
            messages = await run(query)
            assert [m["type"] for m in messages] == ["next", "complete"]
            assert "errors" not in messages[0]["payload"]
    # Over HTTP, the same operations in one request do go past the budget.
    async with httpx.AsyncClient(timeout=30, headers=live.headers) as http:
        response = await http.post(live.graphql_url, json=[{"query": query}] * rounds)
        assert code_of(response.json()[-1]) == "COST_LIMIT"
