"""GraphQL over HTTP: graphql-http's audit against a live server, and the behaviour it does not
pin down (error bodies and codes, GET safety, batching) checked in-process.

One backend is enough here: the HTTP layer (negotiation, status codes, body parsing) runs before
and around the database, and the audit only sends `{ __typename }`, which never reaches it. The
PostgreSQL run would repeat the same bytes, so these tests run on SQLite only.

The audit runs twice: as `public` (no credentials) and as `superuser` (audit.mjs adds the headers
to each request it sends); the other tests act as superuser with a purpose.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hub.config import Limits
from tests.http_audit.node import node_command
from tests.live import LiveServer, live_server
from tests.policy_clients import SUPERUSER
from tests.world import World

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
pytestmark = sqlite_only


# --- the audit ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_audit() -> list[str]:
    return node_command("audit.mjs")


@pytest.fixture(scope="module")
def server(database_url: str, policy_dir: Path) -> Iterator[LiveServer]:
    with live_server(database_url, policy_dir) as running:
        yield running


def _tally(results: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((result["name"].split(" ", 1)[0], result["status"]) for result in results)


def _failures(results: list[dict[str, Any]], level: str) -> list[str]:
    return [
        f"{r['id']} {r['name']}: {r['reason']} (response: {r['response']})"
        for r in results
        if r["name"].startswith(level + " ") and r["status"] != "ok"
    ]


# The audit's requests carry the headers given to audit.mjs (its fetch adds them). As public
# (no headers) it checks the path most generic clients take; as superuser the authenticated one.
# Its documents only use __typename and __type, which every role's schema has.
@pytest.mark.node
@pytest.mark.parametrize("role", ["public", SUPERUSER])
def test_graphql_http_audit(node_audit: list[str], server: LiveServer, role: str) -> None:
    headers = dict(server.headers) if role == SUPERUSER else {}
    run = subprocess.run(
        [*node_audit, server.graphql_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GRIDHUB_TEST_HEADERS": json.dumps(headers)},
    )
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    results: list[dict[str, Any]] = output["results"]
    # Every request went through audit.mjs's fetch, so each carried the role's headers.
    assert output["fetches"] >= len(results), output["fetches"]
    tally = _tally(results)
    summary = ", ".join(
        f"{level} {tally[level, 'ok']}/{sum(n for (lv, _), n in tally.items() if lv == level)} ok"
        for level in ("MUST", "SHOULD", "MAY")
    )
    print(f"graphql-http audit: {summary}")
    # graphql-http 1.23.1 runs 61 audits; far fewer means the audit itself went wrong.
    assert len(results) >= 50, summary
    assert not _failures(results, "MUST"), "\n".join(_failures(results, "MUST"))
    # Every SHOULD passes today (application/graphql-response+json included): keep it so.
    assert not _failures(results, "SHOULD"), "\n".join(_failures(results, "SHOULD"))
    assert not _failures(results, "MAY"), "\n".join(_failures(results, "MAY"))


PROTOCOL = Subprotocol("graphql-transport-ws")


def test_websocket_still_speaks_graphql_transport_ws(server: LiveServer) -> None:
    # On WebSocket the view changes only the operation-limit error and deep-JSON handling
    # (tested below): the protocol must be strawberry's.
    with websockets.sync.client.connect(
        server.ws_url,
        subprotocols=[PROTOCOL],
        additional_headers=server.headers,
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": "subscription { nope }"}}
            )
        )
        message = json.loads(ws.recv(timeout=10))
        assert message["type"] == "error" and message["id"] == "1"
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def _subscribe(ws: Any, op_id: str, query: str) -> None:
    ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))


def test_websocket_refuses_operations_past_the_limit(server: LiveServer) -> None:
    """graphql-transport-ws: an operation past the per-connection limit gets an `error` message
    (with a code) and the connection stays usable; completing one makes room again."""
    maximum = Limits().max_subscriptions_per_connection
    with websockets.sync.client.connect(
        server.ws_url,
        subprotocols=[PROTOCOL],
        additional_headers=server.headers,
        open_timeout=10,
    ) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        for n in range(maximum):
            _subscribe(ws, str(n), "subscription { eventChanged { action } }")
        _subscribe(ws, "over", "subscription { eventChanged { action } }")
        message = json.loads(ws.recv(timeout=10))
        assert message["type"] == "error" and message["id"] == "over", message
        assert message["payload"][0]["extensions"] == {
            "code": "TOO_MANY_SUBSCRIPTIONS",
            "maximum": maximum,
        }
        # Completing one frees its place: a query then runs on the same connection.
        ws.send(json.dumps({"id": "0", "type": "complete"}))
        for attempt in range(50):
            _subscribe(ws, f"query{attempt}", "{ __typename }")
            message = json.loads(ws.recv(timeout=10))
            if message["type"] != "error":  # the server may not have seen the complete yet
                break
            assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        assert message["type"] == "next", message
        assert message["payload"] == {"data": {"__typename": "Query"}}


def test_websocket_deeply_nested_message_closes_with_4400(server: LiveServer) -> None:
    with websockets.sync.client.connect(
        server.ws_url,
        subprotocols=[PROTOCOL],
        additional_headers=server.headers,
        open_timeout=10,
    ) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


# --- in-process: what the audit leaves open ----------------------------------------------------


def _media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def _code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {JSON}", JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, */*;q=0.1", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", JSON),
    ],
)
async def test_content_negotiation(
    client: httpx.AsyncClient, accept: str | None, expected: str
) -> None:
    headers = {"accept": accept} if accept is not None else {}
    if accept is None:
        # httpx adds `Accept: */*` by default; the spec's "no Accept header" case needs none.
        client.headers.pop("accept", None)
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert _media_type(response) == expected
    assert response.headers["content-type"].endswith("charset=utf-8")
    assert "accept" in response.headers["vary"].lower()
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_unacceptable_accept_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/plain"}
    )
    assert response.status_code == 406
    assert _code(response) == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    "query",
    [
        "{ grid(code: ",
        "{ nope }",
        "query($n: Int!) { residents(first: $n) { totalCount } }",
    ],
    ids=["parse", "validation", "variable-coercion"],
)
@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), (JSON, 200)])
async def test_request_errors_have_no_data(
    client: httpx.AsyncClient, query: str, accept: str, status: int
) -> None:
    # Which code each gets is hub/api/errors.py's business; here: no data entry, and the status
    # the spec gives each media type.
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"n": "many"}},
        headers={"accept": accept},
    )
    assert response.status_code == status
    assert _media_type(response) == accept
    body = response.json()
    assert set(body) == {"errors"}
    assert body["errors"][0]["message"]
    assert "path" not in body["errors"][0]


async def test_field_errors_keep_data_and_200(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/graphql",
        json={"query": '{ grid(code: "NOPE") { code } root: grid(code: "D1") { code } }'},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"grid": None, "root": {"code": "D1"}}
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_get_runs_queries(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query($c: String!) { grid(code: $c) { name } }",
            "variables": '{"c":"S1"}',
        },
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"grid": {"name": world.grids["S1"].name}}}


REPORT = 'mutation { reportEvent(input: {category: SANITATION, title: "t", gridCode: "G1", reporterSystem: "12345"}) { id } }'
COUNT = "{ events(first: 1) { totalCount } }"


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE_JSON, JSON])
async def test_mutation_over_get_is_405_and_not_executed(
    client: httpx.AsyncClient, world: World, accept: str
) -> None:
    response = await client.get("/graphql", params={"query": REPORT}, headers={"accept": accept})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _media_type(response) == accept
    assert _code(response) == "METHOD_NOT_ALLOWED"
    count = await client.post("/graphql", json={"query": COUNT})
    assert count.json()["data"]["events"]["totalCount"] == 0
    # The same document over POST does run: the 405 is about the method, not the mutation.
    assert "errors" not in (await client.post("/graphql", json={"query": REPORT})).json()
    count = await client.post("/graphql", json={"query": COUNT})
    assert count.json()["data"]["events"]["totalCount"] == 1


async def test_subscription_over_http_is_a_request_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "subscription { eventChanged { action } }"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    assert "data" not in response.json()
    assert _code(response) == "OPERATION_NOT_SUPPORTED"


async def test_unknown_operation_name_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { __typename }", "operationName": "B"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    assert _code(response) == "GRAPHQL_VALIDATION_FAILED"


async def test_several_operations_need_an_operation_name(client: httpx.AsyncClient) -> None:
    document = "query A { a: __typename } query B { b: __typename }"
    response = await client.post(
        "/graphql", json={"query": document}, headers={"accept": GRAPHQL_RESPONSE_JSON}
    )
    assert response.status_code == 400
    assert _code(response) == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in response.json()
    named = await client.post("/graphql", json={"query": document, "operationName": "B"})
    assert named.json() == {"data": {"b": "Query"}}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        (None, b'{"query":"{ __typename }"}', 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("text/plain", b'{"query":"{ __typename }"}', 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/graphql", b"{ __typename }", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            "application/json; charset=latin-1",
            b'{"query":"{ __typename }"}',
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("application/json", b'{"query": ', 400, "BAD_REQUEST"),
        ("application/json", b"", 400, "BAD_REQUEST"),
        ("application/json", b'"{ __typename }"', 400, "BAD_REQUEST"),
        ("application/json", b"[]", 400, "BAD_REQUEST"),
        ("application/json", b"[1]", 400, "BAD_REQUEST"),
        ("application/json", b'{"query":"{ __typename \xff }"}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": 1}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query":"{ __typename }","variables":[]}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query":"{ __typename }","extensions":"x"}', 400, "BAD_REQUEST"),
        ("application/json", b'{"variables":{}}', 400, "BAD_REQUEST"),
        # Past the JSON parser's recursion limit (a RecursionError, once a plain-text 500).
        ("application/json", b"[" * 100_000 + b"]" * 100_000, 400, "BAD_REQUEST"),
        (
            "application/json",
            b'{"query":"{ __typename }","variables":{"v":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}}",
            400,
            "BAD_REQUEST",
        ),
    ],
    ids=[
        "no-content-type",
        "text-plain",
        "application-graphql",
        "latin-1",
        "broken-json",
        "empty-body",
        "json-string",
        "empty-batch",
        "batch-of-numbers",
        "invalid-utf8",
        "query-not-string",
        "variables-not-object",
        "extensions-not-object",
        "no-query",
        "deeply-nested-body",
        "deeply-nested-variables",
    ],
)
@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE_JSON, JSON])
async def test_malformed_requests_get_graphql_error_bodies(
    client: httpx.AsyncClient,
    content_type: str | None,
    body: bytes,
    status: int,
    code: str,
    accept: str,
) -> None:
    headers = {"accept": accept}
    if content_type is not None:
        headers["content-type"] = content_type
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == status
    assert _media_type(response) == accept
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == code
    assert error["message"]


@pytest.mark.parametrize("variables", ["{", "[" * 5_000 + "]" * 5_000], ids=["broken", "deep"])
async def test_bad_variables_in_get_is_400(client: httpx.AsyncClient, variables: str) -> None:
    response = await client.get(
        "/graphql",
        params={"query": "{ __typename }", "variables": variables},
        headers={"accept": JSON},
    )
    assert response.status_code == 400
    assert _code(response) == "BAD_REQUEST"


async def test_batching_still_works(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/graphql",
        json=[{"query": '{ grid(code: "C1") { code } }'}, {"query": "{ nope }"}],
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 200
    first, second = response.json()
    assert first == {"data": {"grid": {"code": "C1"}}}
    assert "data" not in second
    assert second["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_batch_over_the_limit_is_rejected(client: httpx.AsyncClient, app: Any) -> None:
    limit = app.state.settings.limits.max_batch_operations
    response = await client.post("/graphql", json=[{"query": "{ __typename }"}] * (limit + 1))
    assert response.status_code == 400
    assert _code(response) == "BAD_REQUEST"
    ok = await client.post("/graphql", json=[{"query": "{ __typename }"}] * limit)
    assert ok.status_code == 200 and len(ok.json()) == limit


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert re.search(r"\bPOST\b", response.headers["allow"])
