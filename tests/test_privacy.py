"""Personal data stays out of logs and error messages: database errors are logged without their
text, graphql-core's coercion messages lose the value they quote, the access log loses query
strings, and the database URL's password is never printed."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    graphql_sync,
)
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition

from hub.api.errors import shape, without_values
from hub.db import safe_url
from hub.grids import service as grids
from hub.migrate import upgrade
from hub.models import Resident
from tests.conftest import GraphQLClient
from tests.live import live_server
from tests.world import World

# An ID number (valid shape, made up) and a name no other test uses: if either shows up in a
# log line or an error message, it leaked.
ID_NUMBER = "110101199003077774"
NAME = "隐私标记甲乙"
ADDRESS = "标记路7号-PRIVATE"


# --- database errors in the log ---------------------------------------------------------------


def formatted_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a real handler would write it, with its exception, plus the
    raw parts a structured handler would ship (message template, arguments)."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    parts = []
    for record in caplog.records:
        parts.append(formatter.format(record))  # appends the formatted exc_info, if any
        parts.append(str(record.msg))
        parts.append(repr(record.args))
        parts.append(record.exc_text or "")
    return "\n".join(parts)


async def test_a_database_error_is_logged_without_row_values(
    gql: GraphQLClient,
    world: World,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A statement that violates the unique ID number, with personal data in every column:
    PostgreSQL's error quotes the key (DETAIL: Key (id_number)=(...)), SQLAlchemy's quotes
    the parameters. The log gets the type, the stack and the correlation id, not the text."""
    taken = world.residents[0].id_number
    raised: list[BaseException] = []

    async def write_a_duplicate(session: AsyncSession, **_: Any) -> Any:
        try:
            await session.execute(
                insert(Resident).values(
                    name=NAME,
                    id_number=taken,
                    gender="male",
                    birth_date=date(1990, 3, 7),
                    address=ADDRESS,
                    phone="13800138000",
                    grid_id=world.grids["G1"].id,
                )
            )
        except Exception as error:
            raised.append(error)
            raise

    monkeypatch.setattr(grids, "subtree_ids", write_a_duplicate)
    caplog.set_level(logging.DEBUG)
    body = await gql('{ residents(filter: {inGrid: "G1"}) { totalCount } }')
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    correlation_id = error["extensions"]["correlationId"]

    # Compiled execution meets the error first and hands the query to the normal executor,
    # which meets it again: both went to the log, neither with its text.
    assert raised
    for original in raised:
        honest = "".join(traceback.format_exception(original))
        if "postgresql" in database_url:
            # The driver's own text holds the key: the check below is not vacuous.
            assert taken in honest
        assert NAME not in honest  # hide_parameters: SQLAlchemy no longer prints the row

    logged = formatted_log(caplog)
    for secret in (taken, NAME, ADDRESS, "13800138000"):
        assert secret not in logged, secret
    assert "DETAIL" not in logged and "[parameters" not in logged
    [record] = [r for r in caplog.records if correlation_id in r.getMessage()]
    line = record.getMessage()
    assert record.levelno == logging.ERROR and record.name == "hub.api"
    assert "sqlalchemy.exc.IntegrityError" in line
    # The stack is all there: the frame that ran the statement, down into the driver.
    assert "write_a_duplicate" in line and "Traceback (most recent call last)" in line
    assert "message withheld" in line
    if "postgresql" in database_url:
        assert "sqlstate=23505" in line  # unique_violation: what happened, without the key


def test_a_database_error_deep_in_the_chain_is_withheld_too() -> None:
    """Wrapped (raise ... from) or raised while handling one: the database error's text is
    withheld wherever it sits; the other exceptions keep theirs."""
    from sqlalchemy.exc import IntegrityError

    from hub.api.errors import describe

    def fail() -> None:
        try:
            raise IntegrityError("INSERT ...", {"id_number": ID_NUMBER}, Exception(ID_NUMBER))
        except IntegrityError as error:
            raise RuntimeError("could not save the resident") from error

    with pytest.raises(RuntimeError) as caught:
        fail()
    text = describe(caught.value)
    assert ID_NUMBER not in text
    assert "RuntimeError: could not save the resident" in text
    assert "sqlalchemy.exc.IntegrityError" in text and "direct cause" in text
    assert text.count("Traceback (most recent call last)") == 2
    group = ExceptionGroup("several", [caught.value])
    assert ID_NUMBER not in describe(group) and "could not save" in describe(group)


# --- coercion messages, template by template -------------------------------------------------


def _odd(value: Any) -> int:
    raise ValueError(f"not odd: {value}")


COLOR = GraphQLEnumType("Color", {"RED": "red"})
ODD = GraphQLScalarType("Odd", parse_value=_odd)
INNER = GraphQLInputObjectType("Inner", {"n": GraphQLInputField(GraphQLInt)})
PERSON = GraphQLInputObjectType(
    "Person",
    {
        "idNumber": GraphQLInputField(GraphQLNonNull(GraphQLString)),
        "count": GraphQLInputField(GraphQLInt),
        "inner": GraphQLInputField(INNER),
        "colors": GraphQLInputField(GraphQLList(GraphQLNonNull(COLOR))),
    },
)
ARGUMENTS: dict[str, GraphQLInputType] = {
    "s": GraphQLString,
    "n": GraphQLInt,
    "f": GraphQLFloat,
    "b": GraphQLBoolean,
    "i": GraphQLID,
    "c": COLOR,
    "o": ODD,
    "p": PERSON,
}
SCHEMA = GraphQLSchema(
    GraphQLObjectType(
        "Query",
        {
            "x": GraphQLField(
                GraphQLString,
                args={name: GraphQLArgument(kind) for name, kind in ARGUMENTS.items()},
                resolve=lambda *_, **__: "ok",
            )
        },
    )
)


def only_error(source: str, variables: dict[str, Any] | None = None) -> str:
    """graphql-core's own message for the one thing wrong with this request."""
    result = graphql_sync(SCHEMA, source, variable_values=variables)
    assert result.errors is not None and len(result.errors) == 1, result
    return result.errors[0].message


N = ID_NUMBER
# (request, variables, the message once the value is gone). Each graphql-core template in
# type/scalars.py, type/definition.py (enums), utilities/validate_input_value.py and
# execution/values.py, through a variable and through a literal.
TEMPLATES: list[tuple[str, dict[str, Any] | None, str | None]] = [
    # Scalars, through variables ("Variable '$v' has invalid value: ...").
    (
        "query($v: String) { x(s: $v) }",
        {"v": int(N)},
        "Variable '$v' has invalid value: String cannot represent a non string value.",
    ),
    (
        "query($v: Int) { x(n: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Int cannot represent non-integer value.",
    ),
    (
        "query($v: Int) { x(n: $v) }",
        {"v": int(N)},
        "Variable '$v' has invalid value: Int cannot represent non 32-bit signed integer value.",
    ),
    (
        "query($v: Float) { x(f: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Float cannot represent non numeric value.",
    ),
    (
        "query($v: Float) { x(f: $v) }",
        {"v": int(N) * 10**400},
        "Variable '$v' has invalid value: "
        "Float cannot represent non numeric value (value is too large).",
    ),
    (
        "query($v: Boolean) { x(b: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Boolean cannot represent a non boolean value.",
    ),
    (
        "query($v: ID) { x(i: $v) }",
        {"v": {"idNumber": N}},
        "Variable '$v' has invalid value: ID cannot represent value.",
    ),
    # Enums.
    (
        "query($v: Color) { x(c: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Value does not exist in 'Color' enum.",
    ),
    (
        "query($v: Color) { x(c: $v) }",
        {"v": int(N)},
        "Variable '$v' has invalid value: Enum 'Color' cannot represent non-string value.",
    ),
    # Input objects, with the path into the variable kept.
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"idNumber": int(N)}},
        "Variable '$v' has invalid value at .idNumber: String cannot represent a non string value.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"idNumber": "a", "inner": {"n": N}}},
        "Variable '$v' has invalid value at .inner.n: Int cannot represent non-integer value.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"idNumber": "a", "colors": ["RED", N]}},
        "Variable '$v' has invalid value at .colors[1]: Value does not exist in 'Color' enum.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Expected value of type 'Person' to be an object.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"count": 1, "inner": {"n": 1}, "colors": [], "note": N}},
        "Variable '$v' has invalid value: "
        "Expected value of type 'Person' to include required field 'idNumber'.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"idNumber": "a", N: 1}},  # a key that is no GraphQL name is not repeated
        "Variable '$v' has invalid value: "
        "Expected value of type 'Person' not to include an unknown field.",
    ),
    (
        "query($v: Person) { x(p: $v) }",
        {"v": {"idNumber": N, "nickname": N}},
        "Variable '$v' has invalid value: "
        "Expected value of type 'Person' not to include unknown field 'nickname'.",
    ),
    # A scalar that fails with an exception of its own, which may quote the value.
    (
        "query($v: Odd) { x(o: $v) }",
        {"v": N},
        "Variable '$v' has invalid value: Expected value of type 'Odd'.",
    ),
    # Literals (validation: no variable to name, the error's location points at the value).
    ("{ x(s: 110101199003077774) }", None, "String cannot represent a non string value."),
    ('{ x(n: "110101199003077774") }', None, "Int cannot represent non-integer value."),
    (
        "{ x(n: 110101199003077774) }",
        None,
        "Int cannot represent non 32-bit signed integer value.",
    ),
    ('{ x(f: "110101199003077774") }', None, "Float cannot represent non numeric value."),
    ('{ x(b: "110101199003077774") }', None, "Boolean cannot represent a non boolean value."),
    (
        "{ x(i: 1101011990.03077774) }",
        None,
        "ID cannot represent a non-string and non-integer value.",
    ),
    ("{ x(c: X110101199003077774) }", None, "Value does not exist in 'Color' enum."),
    ('{ x(c: "110101199003077774") }', None, "Enum 'Color' cannot represent non-enum value."),
    ('{ x(p: "110101199003077774") }', None, "Expected value of type 'Person' to be an object."),
    (
        '{ x(p: {count: 1, inner: {n: 1}, colors: RED, idNumber: null, x: "110101199003077774"}) }',
        None,
        None,  # several errors: checked below
    ),
    ('{ x(o: "110101199003077774") }', None, "Expected value of type 'Odd'."),
    # Parse errors name the token they did not expect, with its text.
    ("{ x(n: 1 110101199003077774) }", None, "Syntax Error: Expected Name, found Int."),
    ('{ x(s: "a" "110101199003077774") }', None, "Syntax Error: Expected Name, found String."),
    ("{ x(s: 110101199003077774 }", None, "Syntax Error: Expected Name, found '}'."),
    ("110101199003077774", None, "Syntax Error: Unexpected Int."),
    (
        "query($v: Int = 1 110101199003077774) { x }",
        None,
        "Syntax Error: Expected '$', found Int.",
    ),
]


@pytest.mark.parametrize(("source", "variables", "expected"), TEMPLATES)
def test_each_coercion_template_loses_the_value(
    source: str, variables: dict[str, Any] | None, expected: str | None
) -> None:
    result = graphql_sync(SCHEMA, source, variable_values=variables)
    assert result.errors, result
    for error in result.errors:
        scrubbed = without_values(error.message)
        assert N not in scrubbed and "1101011990" not in scrubbed, (error.message, scrubbed)
        assert "Did you mean" not in scrubbed
        if expected is not None and len(result.errors) == 1:
            assert scrubbed == expected, error.message
        # Rewriting is stable: a scrubbed message is left as it is.
        assert without_values(scrubbed) == scrubbed
    if expected is not None and N in json.dumps(variables) + source:
        # The library's message did quote it (the test is not vacuous), unless it is the
        # parser, which only sometimes does.
        quoted = any("1101011990" in e.message for e in result.errors)
        assert quoted or expected.startswith("Syntax Error"), result.errors


def test_the_literal_templates_that_quote_whole_objects() -> None:
    result = graphql_sync(SCHEMA, '{ x(p: {count: 1, x110101199003077774: "a"}) }')
    messages = sorted(without_values(e.message) for e in result.errors or [])
    assert messages == [
        "Expected value of type 'Person' not to include unknown field 'x110101199003077774'.",
        "Expected value of type 'Person' to include required field 'idNumber'.",
    ]
    # The original quoted the whole object, values and all.
    assert any('"a"' in e.message for e in result.errors or [])


def test_strawberry_scalar_templates_lose_the_value() -> None:
    for definition, kind in ((DateDefinition, "Date"), (DateTimeDefinition, "DateTime")):
        for value in (N, int(N)):
            assert definition.parse_value is not None
            with pytest.raises(GraphQLError) as caught:
                definition.parse_value(value)
            assert N in caught.value.message
            assert without_values(caught.value.message) == f"Value cannot represent a {kind}."
            prefixed = f"Variable '$d' has invalid value at .bornAfter: {caught.value.message}"
            assert without_values(prefixed) == (
                f"Variable '$d' has invalid value at .bornAfter: Value cannot represent a {kind}."
            )


def test_messages_without_values_are_left_alone() -> None:
    unchanged = [
        "Cannot query field 'nope' on type 'Query'.",
        "Variable '$n' of type 'String' used in position expecting type 'Int'.",
        "Unknown argument 'frist' on field 'Query.residents'.",
        "Variable '$v' has invalid value: Expected value of non-null type 'String!' not to be "
        "None.",
        "Variable '$v' has invalid value: Expected a value of non-null type 'ID!' to be provided.",
        "Syntax Error: Unexpected '}'.",
        "Syntax Error: Unterminated string.",
    ]
    for message in unchanged:
        assert without_values(message) == message
    # After a variable's prefix, an unknown complaint is about the value: replaced whole.
    odd = f"Variable '$v' has invalid value at .x: Odd cannot represent {N}"
    assert without_values(odd) == (
        "Variable '$v' has invalid value at .x: the value does not fit the expected type."
    )


def test_shaping_scrubs_once_and_keeps_the_location() -> None:
    result = graphql_sync(SCHEMA, '{ x(n: "110101199003077774") }')
    [error] = result.errors or []
    once = shape(error, "GRAPHQL_VALIDATION_FAILED")
    assert once.message == "Int cannot represent non-integer value."
    assert once.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert once.locations == error.locations
    assert shape(once).formatted == once.formatted


# --- the same through GridHub's API -----------------------------------------------------------

RESIDENTS = "query($f: ResidentFilter) { residents(filter: $f) { totalCount } }"
CREATE = "mutation($input: ResidentInput!) { createResident(input: $input) { id } }"
API_CASES: list[tuple[str, dict[str, Any] | None, str, str]] = [
    # (request, variables, code, what the message must still say)
    (CREATE, {"input": {"idNumber": int(N)}}, "BAD_USER_INPUT", "$input' has invalid value at"),
    (
        "query($n: Int) { residents(first: $n) { totalCount } }",
        {"n": N},
        "BAD_USER_INPUT",
        "Variable '$n' has invalid value: Int",
    ),
    (
        "query($id: ID!) { resident(id: $id) { name } }",
        {"id": {"n": N}},
        "BAD_USER_INPUT",
        "Variable '$id' has invalid value: ID",
    ),
    (RESIDENTS, {"f": {"gender": N}}, "BAD_USER_INPUT", "at .gender: Value does not exist in"),
    (RESIDENTS, {"f": {"bornAfter": N}}, "BAD_USER_INPUT", "at .bornAfter: Value cannot"),
    (RESIDENTS, {"f": {"idNumber": int(N)}}, "BAD_USER_INPUT", "at .idNumber: String cannot"),
    (RESIDENTS, {"f": N}, "BAD_USER_INPUT", "type 'ResidentFilter' to be an object"),
    (
        "{ residents(filter: {idNumber: 110101199003077774}) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "String cannot represent a non string value",
    ),
    (
        '{ residents(first: "110101199003077774") { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "Int cannot",
    ),
    (
        "{ resident(id: 1101011990.03077774) { name } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "ID cannot",
    ),
    (
        "{ residents(filter: {gender: X110101199003077774}) { totalCount } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "does not exist in 'Gender' enum",
    ),
    (
        '{ residents(filter: {bornAfter: "110101199003077774"}) { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "Value cannot represent a Date",
    ),
    (
        "{ residents(first: 1 110101199003077774) { totalCount } }",
        None,
        "GRAPHQL_PARSE_FAILED",
        "Syntax Error: Expected Name, found Int.",
    ),
    (
        '{ residents(filter: "110101199003077774") { totalCount } }',
        None,
        "GRAPHQL_VALIDATION_FAILED",
        "'ResidentFilter' to be an object",
    ),
]


async def test_the_api_never_repeats_the_value(
    gql: GraphQLClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for source, variables, code, kept in API_CASES:
        body = await gql(source, variables)
        text = json.dumps(body, ensure_ascii=False)
        assert "1101011990" not in text, (source, text)
        assert body["errors"][0]["extensions"]["code"] == code, (source, body)
        assert any(kept in e["message"] for e in body["errors"]), (source, body)
    assert "1101011990" not in formatted_log(caplog)


# --- the access log of `gridhub serve` --------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import asyncio

    path: Path = tmp_path_factory.mktemp("privacy") / "gridhub.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade(url))
    yield url


def test_the_access_log_has_no_query_strings(migrated_sqlite: str, policy_dir: Path) -> None:
    query = '{ residents(filter: {idNumber: "' + ID_NUMBER + '"}) { totalCount } }'
    with live_server(migrated_sqlite, policy_dir) as server:
        response = httpx.get(
            server.graphql_url,
            params={"query": query, "variables": json.dumps({"marker": NAME})},
            headers={**server.headers, "accept": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"residents": {"totalCount": 0}}}
        response = httpx.get(server.url + "/healthz?phone=13800138000", timeout=10)
        assert response.status_code == 200
        log = server.log_text()
    # The requests were logged: method, path (without the query) and status.
    lines = [line for line in log.splitlines() if '"GET /graphql HTTP/1.1" 200' in line]
    assert len(lines) == 1, log
    assert '"GET /healthz HTTP/1.1" 200' in log, log
    bearer = server.headers["Authorization"].removeprefix("Bearer ")
    for secret in (ID_NUMBER, "query=", "13800138000", "variables", bearer):
        assert secret not in log, (secret, log)


def test_the_access_log_filter_keeps_everything_but_the_query() -> None:
    from hub.cli import WithoutQueryStrings

    def record(name: str, msg: str, *args: Any) -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)

    access = record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        f"/graphql?query={N}",
        "1.1",
        200,
    )
    assert WithoutQueryStrings().filter(access)
    assert access.getMessage() == '127.0.0.1:5000 - "GET /graphql HTTP/1.1" 200'
    websocket = record(
        "uvicorn.error", '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/graphql?t={N}"
    )
    WithoutQueryStrings().filter(websocket)
    assert websocket.getMessage() == '127.0.0.1:5000 - "WebSocket /graphql" [accepted]'
    other = record("uvicorn.error", "Started server process [%d]", 42)
    WithoutQueryStrings().filter(other)
    assert other.getMessage() == "Started server process [42]"


# --- the database URL's password ----------------------------------------------------------------


def test_safe_url_masks_the_password() -> None:
    assert safe_url("postgresql://gridhub:s3cret@db:5432/hub") == (
        "postgresql://gridhub:***@db:5432/hub"
    )
    assert safe_url("postgresql+asyncpg://u:p%40ss@h/d") == "postgresql+asyncpg://u:***@h/d"
    assert safe_url("sqlite+aiosqlite:///var/gridhub.db") == "sqlite+aiosqlite:///var/gridhub.db"
    # Not a URL at all: not shown, since the password could not be told from the rest.
    assert "s3cret" not in safe_url("s3cret not a url")


def test_serve_prints_no_password_and_bounds_websocket_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    from hub.cli import main
    from hub.config import Limits

    # `serve` hands the URL to its workers through the environment: restore it afterwards.
    monkeypatch.delenv("GRIDHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("GRIDHUB_BROKER_URL", raising=False)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kwargs: calls.append(kwargs))
    url = "postgresql://gridhub:s3cret-pw@127.0.0.1:5432/hub"
    result = CliRunner().invoke(main, ["serve", "--db", url])
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output
    assert "postgresql://gridhub:***@127.0.0.1:5432/hub" in result.output
    [kwargs] = calls
    assert kwargs["ws_max_size"] == Limits().max_body_bytes
    filters = kwargs["log_config"]["loggers"]["uvicorn.access"]["filters"]
    assert filters == ["without_query_strings"]


async def test_the_demo_report_shows_no_password() -> None:
    from sqlalchemy import make_url

    from hub.demo.loader import load_demo
    from tests.conftest import _drop_postgres_database, _fresh_postgres_database
    from tests.services import need_postgres

    need_postgres()  # the only backend here with passwords (trust auth ignores this one)
    url = await _fresh_postgres_database()
    try:
        await upgrade(url)
        with_password = make_url(url).set(password="s3cret-pw")
        summary = await load_demo(
            with_password.render_as_string(hide_password=False), residents=0, seed=7, progress=False
        )
        assert with_password.render_as_string(hide_password=True) in summary
        assert "s3cret-pw" not in summary and ":***@" in summary
    finally:
        await _drop_postgres_database(url)
