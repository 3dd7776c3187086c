"""What a client sees when something fails: expected failures carry a stable code; an
unexpected one is a generic message with a correlation id that leads to the server log, and no
exception text, SQL or stack trace; validation errors give no "Did you mean" hints."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.api.types import org as org_types
from hub.db import Database
from hub.events import service as events
from hub.events.changes import EventChange
from hub.models import Event
from tests.conftest import GraphQLClient
from tests.world import World

SECRET = "secret SQL text: SELECT id_number FROM residents WHERE name = '居民01'"
LEAKS = ["secret", "SELECT", "RuntimeError", "Traceback", "居民01", 'File "']
REPORT = 'mutation { reportEvent(input: {category: SANITATION, title: "垃圾", gridCode: "G1", reporterSystem: "12345"}) { id } }'


def explode(*_: Any, **__: Any) -> Any:
    raise RuntimeError(SECRET)


def unexpected_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hub.api" and r.levelno >= logging.ERROR]


def assert_hidden(body: dict[str, Any]) -> list[str]:
    """The response says only 'Internal server error'; returns its correlation ids."""
    text = json.dumps(body, ensure_ascii=False)
    for leak in LEAKS:
        assert leak not in text, text
    ids = []
    for error in body["errors"]:
        assert error["message"] == "Internal server error"
        assert set(error["extensions"]) == {"code", "correlationId"}
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        ids.append(error["extensions"]["correlationId"])
    assert len(set(ids)) == len(ids) and all(len(i) >= 16 for i in ids)
    return ids


def assert_logged(caplog: pytest.LogCaptureFixture, correlation_id: str) -> None:
    """The log line with this id holds the traceback and the real exception."""
    matching = [r for r in unexpected_records(caplog) if correlation_id in r.getMessage()]
    assert len(matching) == 1, [r.getMessage() for r in caplog.records]
    record = matching[0]
    assert record.exc_info is not None
    logged = "".join(traceback.format_exception(*record.exc_info))
    assert "RuntimeError" in logged and SECRET in logged and "explode" in logged


async def test_an_unexpected_error_in_a_query(
    gql: GraphQLClient,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(events, "list_statement", explode)
    caplog.set_level(logging.ERROR, logger="hub.api")
    body = await gql("{ events(first: 5) { totalCount } }")
    assert body["data"] is None  # `events` is not nullable: the whole answer is null
    [correlation_id] = assert_hidden(body)
    assert body["errors"][0]["path"] == ["events"]
    assert_logged(caplog, correlation_id)


async def test_an_unexpected_error_in_a_mutation_rolls_back(
    gql: GraphQLClient,
    db: Database,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Fails after the event was written and flushed, inside the unit of work.
    monkeypatch.setattr(EventChange, "of", explode)
    caplog.set_level(logging.ERROR, logger="hub.api")
    body = await gql(REPORT)
    assert body["data"] is None
    [correlation_id] = assert_hidden(body)
    assert_logged(caplog, correlation_id)
    async with db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(Event)) == 0


async def test_an_unexpected_error_in_a_nested_field(
    gql: GraphQLClient,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await gql.data(REPORT)
    await gql.data(REPORT)
    monkeypatch.setattr(org_types, "ancestor_codes", explode)
    caplog.set_level(logging.ERROR, logger="hub.api")
    body = await gql("{ events(first: 5) { edges { node { title grid { code path } } } } }")
    # `grid` may be null: each event loses only its grid, and the titles still arrive.
    titles = [e["node"]["title"] for e in body["data"]["events"]["edges"]]
    assert titles == ["垃圾", "垃圾"]
    assert [e["node"]["grid"] for e in body["data"]["events"]["edges"]] == [None, None]
    correlation_ids = assert_hidden(body)
    assert len(correlation_ids) == 2  # one per event, each with its own id in the log
    for correlation_id in correlation_ids:
        assert_logged(caplog, correlation_id)


async def test_expected_errors_carry_a_code_and_nothing_else(
    gql: GraphQLClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="hub.api")
    cases = [
        ('{ grid(code: "NOPE") { name } }', "NOT_FOUND"),
        ('{ residents(filter: {inGrid: "NOPE"}) { totalCount } }', "BAD_USER_INPUT"),
        ("{ residents(first: 1000) { totalCount } }", "PAGE_SIZE_LIMIT"),
        ("{ residents(first: $n) { totalCount } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ residents { totalCount ", "GRAPHQL_PARSE_FAILED"),
    ]
    for query, code in cases:
        body = await gql(query)
        error = body["errors"][0]
        assert error["extensions"]["code"] == code, body
        assert not {"stacktrace", "exception", "correlationId"} & set(error["extensions"])
        assert "Traceback" not in json.dumps(body)
    # A bad variable is the client's mistake: no server error is logged for it.
    body = await gql("query($n: Int) { residents(first: $n) { totalCount } }", {"n": "ten"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert unexpected_records(caplog) == []


async def test_no_did_you_mean_hints(gql: GraphQLClient, world: World) -> None:
    # (query, what graphql-core would have suggested)
    misspelled = [
        ("{ residents { totalCont } }", "totalCount"),
        ("{ residnts { totalCount } }", "'residents'"),
        ("{ residents(frist: 2) { totalCount } }", "'first'"),
        ('{ residents(filter: {inGird: "C1"}) { totalCount } }', "'inGrid'"),
        ("{ events(filter: {status: [REPORTD]}) { totalCount } }", "'REPORTED'"),
        ("{ events(orderBy: {field: REPORTED}) { totalCount } }", "REPORTED_AT"),
        ("{ node(id: 1) { ... on Evnt { code } } }", "'Event'"),
        ("query($s: [EventStatus!]) { events(filter: {status: $s}) { totalCount } }", "'REPORTED'"),
    ]
    for query, hint in misspelled:
        body = await gql(query, {"s": ["REPORTD"]} if "$s" in query else None)
        assert body["errors"], body
        text = json.dumps(body)
        assert "did you mean" not in text.lower(), text
        assert hint not in text, (query, text)
        assert body["errors"][0]["extensions"]["code"] in {
            "GRAPHQL_VALIDATION_FAILED",
            "BAD_USER_INPUT",
        }


async def test_a_resolver_returning_bad_data_is_internal(
    gql: GraphQLClient,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """graphql-core refuses to serialise it and quotes the value: that quote is ours, not the
    client's, so it must not reach the client."""
    from hub.api.types import events as event_types

    await gql.data(REPORT)
    monkeypatch.setattr(event_types, "_seconds", lambda *_: SECRET)
    caplog.set_level(logging.ERROR, logger="hub.api")
    body = await gql("{ events(first: 1) { nodes { title responseSeconds } } }")
    assert body["data"] == {"events": {"nodes": [{"title": "垃圾", "responseSeconds": None}]}}
    [correlation_id] = assert_hidden(body)
    assert [r for r in unexpected_records(caplog) if correlation_id in r.getMessage()]


def test_shaping_twice_changes_nothing_and_never_fails() -> None:
    from graphql import GraphQLError

    from hub.api.errors import shape
    from hub.errors import NotFound

    located = GraphQLError("x", path=["a"], original_error=NotFound("grid not found"))
    once = shape(located)
    assert once.extensions == {"code": "NOT_FOUND"} and once.message == "grid not found"
    assert shape(once).formatted == once.formatted
    # A bare error on a path (no original exception, no code) is still shaped, as internal.
    bare = shape(GraphQLError(SECRET, path=["events", 0, "title"]))
    assert bare.message == "Internal server error"
    assert bare.extensions is not None and bare.extensions["code"] == "INTERNAL_SERVER_ERROR"
    assert shape(bare).formatted == bare.formatted


async def test_expected_errors_leave_no_personal_data_in_the_logs(
    gql: GraphQLClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # A bad variable value is quoted back by graphql-core; a wrong ID number is personal data.
    # Neither may reach a log line (strawberry logs every error unless told otherwise).
    id_number = "110105195001010019"
    caplog.set_level(logging.DEBUG)
    first = await gql.error(
        "query($n: Int) { residents(first: $n) { totalCount } }", {"n": id_number}
    )
    assert first["extensions"]["code"] == "BAD_USER_INPUT"
    second = await gql.error(
        'mutation { createResident(input: {name: "张三", idNumber: "110105195001010019", address: "x", gridCode: "G1"}) { id } }'
    )
    assert second["extensions"]["code"] == "BAD_USER_INPUT"
    assert id_number not in caplog.text
