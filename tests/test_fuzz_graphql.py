"""No input makes /graphql fail with a server error: hostile values of every argument's type.

For every role of the default policy, every argument of every field reachable from its own
schema's Query and Mutation (nested ones too: `stats { eventCounts(filter:) }`), and every field
of every input object under them, gets values at the edges of its type: dates at the ends of
their range with every offset, integers beyond 32 and 64 bits, NaN and infinities, control
characters and lone surrogates, over-long text, cursors and global ids of every shape, unknown
enum values. Each is sent over HTTP to the app as a role whose schema has that place (the same
route, argument and type in several roles' schemas is one place: each example draws which of
them sends it, which keeps an example to about 300 requests). Nothing may answer 500 or
INTERNAL_SERVER_ERROR, and the server may log no stack trace: bad input is the client's fault.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
)
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hub.api.ids import to_global_id
from hub.config import Settings
from tests.markers import VIEWPOINTS, Viewpoint
from tests.policy_clients import SUPERUSER, credentials
from tests.world import World

# Fields below the root that take arguments are reached through at most this many fields.
MAX_ROUTE = 3

# --- where hostile values go ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One place a value goes: an argument of a field reached through `route` from the root
    operation, or a field of an input object inside that argument (`inside`)."""

    operation: str  # "query" or "mutation"
    route: tuple[tuple[GraphQLField, str], ...]  # (field, name) from the root down
    argument: str
    inside: tuple[str, ...]  # input object fields, from the argument down
    type_: GraphQLInputType  # the type of the place the value goes

    def describe(self) -> str:
        names = ".".join(name for _, name in self.route)
        return f"{self.operation} {names}({self.argument}{''.join('.' + i for i in self.inside)})"


def targets(schema: GraphQLSchema) -> list[Target]:
    found: list[Target] = []
    for operation, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        if root is not None:
            found += _walk(operation, root, (), set())
    return found


def _walk(
    operation: str,
    parent: GraphQLObjectType | GraphQLInterfaceType,
    route: tuple[tuple[GraphQLField, str], ...],
    seen: set[tuple[str, str]],
) -> list[Target]:
    found: list[Target] = []
    for name, field in sorted(parent.fields.items()):
        if (parent.name, name) in seen:
            continue
        here = (*route, (field, name))
        for argument, definition in field.args.items():
            found += _places(operation, here, argument, (), definition.type, set())
        target = get_named_type(field.type)
        if isinstance(target, GraphQLObjectType) and len(here) < MAX_ROUTE:
            found += _walk(operation, target, here, seen | {(parent.name, name)})
    return found


def _places(
    operation: str,
    route: tuple[tuple[GraphQLField, str], ...],
    argument: str,
    inside: tuple[str, ...],
    type_: GraphQLInputType,
    expanded: set[str],
) -> list[Target]:
    found = [Target(operation, route, argument, inside, type_)]
    named = get_named_type(type_)
    if isinstance(named, GraphQLInputObjectType) and named.name not in expanded:
        for name, field in sorted(named.fields.items()):
            found += _places(
                operation, route, argument, (*inside, name), field.type, expanded | {named.name}
            )
    return found


# --- values: plausible ones for what must be given, hostile ones for the target ---------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A value written into the document (GraphQL literals reach types JSON cannot: `1e400`
    parses as infinity)."""

    text: str


def has_literal(value: Any) -> bool:
    if isinstance(value, list):
        return any(has_literal(v) for v in value)
    if isinstance(value, dict):
        return any(has_literal(v) for v in value.values())
    return isinstance(value, Literal)


def literal_of(value: Any) -> str:
    """A JSON-ish Python value as a GraphQL literal (enum names are passed as Literal)."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal_of(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal_of(v) for v in value) + "]"
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


PLAUSIBLE_STRINGS = {
    "gridCode": "G1",
    "inGrid": "C1",
    "code": "G1",
    "departmentCode": "health",
    "name": "王五",
    "title": "标题",
    "body": "正文",
    "reporterSystem": "12345",
}


def plausible(type_: GraphQLInputType, name: str) -> Any:
    """A value of `type_` that passes coercion, so the request reaches the code behind it."""
    if isinstance(type_, GraphQLNonNull):
        return plausible(type_.of_type, name)
    if isinstance(type_, GraphQLList):
        return [plausible(type_.of_type, name)]
    if isinstance(type_, GraphQLEnumType):
        return Literal(sorted(type_.values)[0])
    if isinstance(type_, GraphQLInputObjectType):
        return {
            n: plausible(f.type, n)
            for n, f in sorted(type_.fields.items())
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        }
    return {
        "ID": str(to_global_id("Event", 1)),
        "Int": 1,
        "Float": 1.0,
        "Boolean": True,
        "Date": "2000-01-01",
        "DateTime": "2030-01-01T00:00:00+08:00",
        "JSON": {},
    }.get(type_.name, PLAUSIBLE_STRINGS.get(name, "x"))


EDGE_DATETIMES = [
    f"{day}T{time}{offset}"
    for day, time in (("0001-01-01", "00:00:00"), ("9999-12-31", "23:59:59.999999"))
    for offset in ("+14:00", "-14:00", "+23:59", "-23:59", "+00:00", "Z", "")
]
EDGE_DATES = [
    "0001-01-01",
    "9999-12-31",
    "0000-01-01",
    "2000-02-30",
    "10000-01-01",
    "１９９９-01-01",
]
HUGE_INTS = [2**31, -(2**31) - 1, 2**31 - 1, -(2**31), 2**63, -(2**63) - 1, 10**40, -1, 0]
# Model names and ordering names a cursor may carry: every pairing, whether the API has it.
GLOBAL_TYPES = ["Event", "Resident", "Notice", "Grid", "Feedback", "Member", "Department"]
GLOBAL_TYPES += ["EmergencyGrant", "AuditRecord", "Nope", ""]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def awkward_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                # Past every column's length: PostgreSQL refuses what SQLite stores.
                "x" * 100_000,
                "",
                " ",
                "\x01",
                "\x00",
                "a\x1fb",
                "\x7f",
                "\ud800",
                "\udfff x",
                "\ufffe",
                "%_\\'\"",
                "測" * 20_000,
                "😀" * 300,
                "NaN",
                "-1",
                "99999999999999999999999",
            ]
        ),
        st.text(max_size=40),
    )


def edge_scalar(type_: GraphQLScalarType, name: str) -> st.SearchStrategy[Any]:
    """Values at and past the edges of a scalar type, well formed or not."""
    text = awkward_text()
    numbers = st.one_of(st.sampled_from(HUGE_INTS), st.integers(), st.floats())
    if type_.name == "DateTime":
        return st.one_of(
            st.sampled_from(EDGE_DATETIMES),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            text,
            numbers,
        )
    if type_.name == "Date":
        return st.one_of(st.sampled_from(EDGE_DATES), st.dates().map(str), text, numbers)
    if type_.name == "Int":
        return st.one_of(st.sampled_from(HUGE_INTS), st.integers(), text)
    if type_.name == "Float":
        return st.one_of(
            st.sampled_from(
                [Literal("1e400"), Literal("-1e400"), 1e308, -1e308, 5e-324, 180.0, -90.0, 1e30]
            ),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([float("nan"), float("inf"), -float("inf")]),
            text,
        )
    if type_.name == "Boolean":
        return st.one_of(st.sampled_from(["true", 1, 0, None]), text)
    if type_.name == "ID":
        return st.one_of(global_ids(), text, numbers)
    if type_.name == "JSON":
        return st.one_of(
            st.recursive(
                st.none() | st.booleans() | numbers | text,
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
            st.just(nested(300)),
        )
    return st.one_of(text, numbers, global_ids())


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# A cursor's key value at the edges of its ordering's type, sharpest first (the first example
# draws first elements): the type is read off the ordering's name.
KEY_EDGES: dict[str, list[Any]] = {
    "time": [*EDGE_DATETIMES, "2020-01-01T00:00:00"],
    "date": EDGE_DATES,
    "number": [2**63, *HUGE_INTS, 1.5, "1"],
    "text": ["\x00", "a\x00b", "\x01", "\ufffe", "\U0010ffff", "x" * 5000, ""],
}


def key_kind(ordering: str | None) -> str:
    if ordering is None or ordering in ("ID", "SEQ", "VERSION"):
        return "number"
    if ordering.endswith("_AT"):
        return "time"
    return "date" if ordering.endswith("_DATE") else "text"


def cursors(tags: list[str], kind: str) -> st.SearchStrategy[str]:
    """Cursors of every shape: well formed ones naming `tags` (the list's own ordering, which
    the server decodes) with key values of `kind` and of every other type at their edges,
    and malformed ones."""
    values: st.SearchStrategy[Any] = st.one_of(
        st.sampled_from(KEY_EDGES[kind]),
        st.sampled_from([v for edges in KEY_EDGES.values() for v in edges]),
        st.sampled_from([None, [], {}]),
        st.text(max_size=10),
    )
    # A valid row id first, so the key value is what the first example tests.
    ids = st.one_of(st.sampled_from([1, *HUGE_INTS, "1", None, 1.5]), st.integers())
    well_formed = st.builds(
        lambda *p: b64(json.dumps(list(p)).encode()), st.sampled_from(tags), values, ids
    )
    return st.one_of(
        well_formed,
        st.sampled_from(
            [
                "",
                "!!!",
                "====",
                "a",
                b64(b"\xff\xfe"),
                b64(b"[]"),
                b64(b"[1,2,3,4]"),
                b64(b'"x"'),
                b64(b"null"),
                b64(b"[NaN, 1, 2]"),
                b64(b'["Event.ID", 1, ' + b"9" * 5000 + b"]"),
            ]
        ),
        st.binary(max_size=30).map(b64),
    )


def global_ids() -> st.SearchStrategy[str]:
    pks = st.one_of(
        st.sampled_from(["1", "-1", "0", str(2**31), str(2**63), str(10**40), "x", "", "1:2"]),
        st.sampled_from(["١", " 1", "1_0", "+1", "1e3", "0x10"]),
        st.integers().map(str),
    )
    return st.one_of(
        st.builds(lambda t, p: b64(f"{t}:{p}".encode()), st.sampled_from(GLOBAL_TYPES), pks),
        st.sampled_from(["", "!!!", "a", b64(b"\xff\xfe:1"), b64(b"Event"), "RXZlbnQ6MQ=="]),
        st.binary(max_size=20).map(b64),
    )


@dataclass(frozen=True, slots=True)
class Paging:
    """For a cursor argument: the orderings its list offers (`orderBy: {field:}`), each with
    the tag its cursors carry ("Resident.NAME"), so a forged cursor is decoded, not refused
    for naming another list."""

    node: str
    orderings: tuple[str, ...]

    def tags(self, ordering: str | None) -> list[str]:
        return [f"{self.node}.{ordering or 'ID'}", f"{self.node}.SEQ", f"{self.node}.VERSION"]


def paging_of(target: Target) -> Paging | None:
    if target.argument not in ("after", "before") or target.inside:
        return None
    field = target.route[-1][0]
    node = get_named_type(field.type).name.removesuffix("Connection")
    order = field.args.get("orderBy")
    named = get_named_type(order.type) if order is not None else None
    if isinstance(named, GraphQLInputObjectType) and "field" in named.fields:
        enum = get_named_type(named.fields["field"].type)
        assert isinstance(enum, GraphQLEnumType)
        return Paging(node, tuple(sorted(enum.values)))
    return Paging(node, ())


def paged(paging: Paging, ordering: str | None) -> st.SearchStrategy[tuple[Any, dict[str, Any]]]:
    """A cursor for a list in one of its orderings, and the argument naming that ordering."""
    extra = {} if ordering is None else {"orderBy": {"field": Literal(ordering)}}
    cursor = st.one_of(cursors(paging.tags(ordering), key_kind(ordering)), awkward_text())
    return cursor.map(lambda c: (c, extra))


def hostile(type_: GraphQLInputType, name: str) -> st.SearchStrategy[Any]:
    """A value for a place of `type_` (possibly of the wrong shape altogether)."""
    if isinstance(type_, GraphQLNonNull):
        return st.one_of(hostile(type_.of_type, name), st.none())
    if isinstance(type_, GraphQLList):
        item = hostile(type_.of_type, name)
        return st.one_of(
            st.lists(item, max_size=3),
            item.map(lambda v: [v] * 200),
            item,  # a single value coerces to a list of one
            st.just([None]),
        )
    if isinstance(type_, GraphQLEnumType):
        names = sorted(type_.values)
        return st.one_of(
            st.sampled_from(names).map(Literal),
            st.sampled_from([n.lower() for n in names] + ["NOPE", "", "null"]),
            st.sampled_from(names),  # a string where a literal needs a name: refused
            awkward_text(),
            st.integers(),
        )
    if isinstance(type_, GraphQLInputObjectType):
        return st.one_of(
            st.just(plausible(type_, name)),
            st.sampled_from([[], "x", 1, {"nope": 1}]),
        )
    assert isinstance(type_, GraphQLScalarType)
    return edge_scalar(type_, name)


# --- documents ---------------------------------------------------------------------------------


def selection(field: GraphQLField) -> str:
    """What to select of a field's result: its leaf fields without arguments, or nothing."""
    named = get_named_type(field.type)
    if isinstance(named, GraphQLObjectType):
        leaves = [
            n
            for n, f in sorted(named.fields.items())
            if not f.args
            and isinstance(get_named_type(f.type), GraphQLScalarType | GraphQLEnumType)
        ]
        return " { " + " ".join(["__typename", *leaves]) + " }"
    if isinstance(named, GraphQLInterfaceType | GraphQLUnionType):
        return " { __typename }"
    return ""


def request_for(target: Target, value: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request that puts `value` at `target`, `extra` arguments beside it, and plausible
    values everywhere they must be."""
    extra = extra or {}
    inline = has_literal(value)
    placed: Any = Literal(literal_of(value)) if inline else Literal("$v")
    parts: list[str] = []
    for depth, (field, name) in enumerate(target.route):
        last = depth == len(target.route) - 1
        args = []
        for arg_name, arg in field.args.items():
            chosen = last and arg_name == target.argument
            if chosen:
                args.append(f"{arg_name}: {literal_of(_put(arg.type, target.inside, placed))}")
            elif last and arg_name in extra:
                args.append(f"{arg_name}: {literal_of(extra[arg_name])}")
            elif isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined:
                args.append(f"{arg_name}: {literal_of(plausible(arg.type, arg_name))}")
        parts.append(f"{name}({', '.join(args)})" if args else name)
    tail = selection(target.route[-1][0])
    document = " { ".join(parts) + tail + " }" * (len(parts) - 1)
    if inline:
        return {"query": f"{target.operation} {{ {document} }}"}
    declared = print_type_ref(target.type_)
    return {
        "query": f"{target.operation}($v: {declared}) {{ {document} }}",
        "variables": {"v": value},
    }


def _put(type_: GraphQLInputType, inside: tuple[str, ...], placed: Any) -> Any:
    """The argument's value: plausible, with `placed` at the end of the path `inside`."""
    if not inside:
        return placed
    named = get_named_type(type_)
    assert isinstance(named, GraphQLInputObjectType)
    value = plausible(named, "")
    head, *rest = inside
    value[head] = _put(named.fields[head].type, tuple(rest), placed)
    return [value] if isinstance(_unwrap_non_null(type_), GraphQLList) else value


def _unwrap_non_null(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def print_type_ref(type_: Any) -> str:
    if isinstance(type_, GraphQLNonNull):
        return print_type_ref(type_.of_type) + "!"
    if isinstance(type_, GraphQLList):
        return "[" + print_type_ref(type_.of_type) + "]"
    return str(type_.name)


def body_bytes(request: dict[str, Any]) -> bytes:
    # json, not orjson: NaN and Infinity go out as the bare words some clients send.
    return json.dumps(request, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


# --- the test ----------------------------------------------------------------------------------


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in caplog.records
        if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR
    ]


def default_roles(app: Any) -> list[str]:
    """Every role of the default policy (the app's policy adds only the test superuser)."""
    roles = [role for role in app.state.registry.roles if role != SUPERUSER]
    assert set(VIEWPOINTS) <= set(roles) and "operator" in roles, roles
    return roles


def places_by_role(app: Any) -> dict[str, list[tuple[str, Target]]]:
    """Every place in every role's own schema, each under the roles whose schema has it (a
    place is the same wherever the route, the argument and the type are the same)."""
    places: dict[str, list[tuple[str, Target]]] = {}
    for role in default_roles(app):
        for target in targets(app.state.registry.schema_for(role)._schema):
            key = f"{target.describe()}: {print_type_ref(target.type_)}"
            places.setdefault(key, []).append((role, target))
    return places


def headers_for(settings: Settings, role: str) -> dict[str, str]:
    # The leak tests' viewpoints where they have one (a grid worker's grids, a department's
    # code); the other roles are scoped by their policy alone.
    view = VIEWPOINTS.get(role, Viewpoint(role))
    headers = credentials(
        settings, view.role, subject=view.subject, grids=view.grids, department=view.department
    )
    return {**headers, "Content-Type": "application/json"}


# Each example sends one hostile value to every place, as one of the roles whose schema has it
# (drawn, so the examples spread each place over its roles), and a cursor once per ordering.
EXAMPLES = 2


@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # A failure lists every place that failed; shrinking hundreds of draws would take minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_no_input_is_a_server_error(
    data: st.DataObject,
    app: Any,
    settings: Settings,
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()
    places = places_by_role(app)
    assert {role for holders in places.values() for role, _ in holders} == set(default_roles(app))
    transport = httpx.ASGITransport(app=app)
    failures: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for key, holders in sorted(places.items()):
            role, target = data.draw(st.sampled_from(holders), label=key)
            for value, extra in draw_values(data, target):
                request = request_for(target, value, extra)
                response = await http.post(
                    "/graphql", content=body_bytes(request), headers=headers_for(settings, role)
                )
                problem = _problem(response) or tracebacks(caplog)
                if problem:
                    failures.append(f"{role} {key}: {problem}\n  {str(request)[:400]}")
                caplog.clear()
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])


def draw_values(data: st.DataObject, target: Target) -> list[tuple[Any, dict[str, Any]]]:
    """The values to send to `target` in one example, each with any argument to send beside
    it: one hostile value, or for a cursor one per ordering of its list."""
    paging = paging_of(target)
    if paging is None:
        name = (target.inside or (target.argument,))[-1]
        return [(data.draw(hostile(target.type_, name)), {})]
    return [data.draw(paged(paging, ordering)) for ordering in paging.orderings or (None,)]


def _problem(response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code == 401:  # the request never reached the role's schema
        return f"credentials refused: {response.text[:200]}"
    try:
        body = response.json()
    except ValueError:
        return None
    for error in body.get("errors") or () if isinstance(body, dict) else ():
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL_SERVER_ERROR" or code is None:
            return f"code {code}: {error.get('message')}"
    return None
