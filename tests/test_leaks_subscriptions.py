"""No leaks over subscriptions: `eventChanged` delivers what a query would, under the leak suite's
oracle (tests/markers.py).

For every role, whether it has `Subscription.eventChanged` at all is Casbin's `enforce()`'s
answer. Each role that has it subscribes over graphql-transport-ws (a real WebSocket to the app
served by uvicorn) with the widest selection its own schema allows: every field of EventChange,
of Event and of every type reachable from it, to a bounded depth, every member of each union.
The superuser then adds a note to every marker event. The deliveries must be exactly the events
in the role's scope, show no marker the oracle hides from the role nor a masked one in full, show
every marker of those events the oracle lets it read in full, and equal, event by event, the
same selection asked for by a query as the same role. The dispatch board's own live feed (its
persisted BoardLive over the session cookie, as board.js subscribes) is held to the same, for
each role that may open the board.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    get_named_type,
    parse,
    print_ast,
)
from graphql.pyutils import Undefined

from hub.authz.policy import Policy
from hub.authz.profile import Level
from hub.authz.sessions import SESSION_COOKIE
from hub.config import DEFAULT_POLICY_DIR, Settings
from hub.db import Database
from hub.web.operations import Operations
from tests.markers import EVENTS, VIEWPOINTS, MarkerWorld, Oracle, Viewpoint, leaked, seed_markers
from tests.policy_clients import token
from tests.test_policy_leaks import (
    Socket,
    client_as,
    headers_of,
    live,
    post,
    role_graphql_schema,
    text_of,
    until_first,
)
from tests.test_ws_cookie import session_cookie
from tests.world import World

POLICY = Policy.from_directory(DEFAULT_POLICY_DIR)
# Deep enough for event -> reporter -> resident -> externalIds and event -> timeline, shallow
# enough to stay far under the cost limits.
MAX_DEPTH = 4
REPORT = (
    "mutation M($title: String!, $grid: String!) { reportEvent(input: {category: SANITATION, "
    'title: $title, gridCode: $grid, reporterSystem: "test"}) { id code } }'
)
ACCEPT = "mutation M($id: ID!) { acceptEvent(id: $id) { status } }"
START = "mutation M($id: ID!) { startEvent(id: $id) { status } }"
DISPATCH = (
    "mutation M($id: ID!, $department: String!) "
    "{ dispatchEvent(id: $id, departmentCode: $department) { status } }"
)
VERSION = "query Q($id: ID!) { node(id: $id) { ... on Event { version } } }"


@pytest.fixture(params=["compiled", "normal"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Both executors: the comparison query runs through each (subscriptions always run on the
    normal one)."""
    return replace(settings, compiled_execution=request.param == "compiled")


@pytest.fixture
async def marked(db: Database, world: World, app: Any) -> MarkerWorld:
    async with db.transaction() as session:
        seeded = await seed_markers(session, world)
    await app.state.registry.sync(app.state.db)
    return seeded


@pytest.fixture
def oracle(marked: MarkerWorld) -> Oracle:
    return Oracle(POLICY, marked)


# --- the widest selection a role's schema allows -----------------------------------------------


def selection_of(
    schema: GraphQLSchema,
    type_: Any,
    depth: int,
    path: tuple[str, ...],
    clashes: frozenset[str] = frozenset(),
) -> str:
    """Every field of `type_` that takes no required argument; object fields to MAX_DEPTH, and
    never back into a type already on the path (Event -> reporter -> ... -> Event). Fields in
    `clashes` (a name the members of a union type differently) get an alias of their type's."""
    if isinstance(type_, GraphQLUnionType | GraphQLInterfaceType):
        members = sorted(schema.get_possible_types(type_), key=lambda t: t.name)
        types: dict[str, set[str]] = {}
        for member in members:
            for name, definition in member.fields.items():
                types.setdefault(name, set()).add(str(definition.type))
        clashing = frozenset(name for name, found in types.items() if len(found) > 1)
        parts = ["__typename"]
        for member in members:
            inner = selection_of(schema, member, depth, path, clashing)
            parts.append(f"... on {member.name} {{ {inner} }}")
        return " ".join(parts)
    assert isinstance(type_, GraphQLObjectType), type_
    parts = ["__typename"]
    for name, definition in sorted(type_.fields.items()):
        if any(
            isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
            for arg in definition.args.values()
        ):
            continue
        head = f"{type_.name}_{name}: {name}" if name in clashes else name
        target = get_named_type(definition.type)
        if isinstance(target, GraphQLScalarType | GraphQLEnumType):
            parts.append(head)
        elif depth < MAX_DEPTH and target.name not in path:
            inner = selection_of(schema, target, depth + 1, (*path, target.name))
            parts.append(f"{head} {{ {inner} }}")
    return " ".join(parts)


def feed_of(schema: GraphQLSchema) -> tuple[str, str]:
    """The subscription, and the selection of Event inside it (for the comparison query)."""
    subscription = schema.subscription_type
    assert subscription is not None
    change = get_named_type(subscription.fields["eventChanged"].type)
    assert isinstance(change, GraphQLObjectType)
    event = get_named_type(change.fields["event"].type)
    event_selection = "{ " + selection_of(schema, event, 2, ("EventChange", "Event")) + " }"
    change_selection = selection_of(schema, change, 1, ("EventChange",))
    return f"subscription S {{ eventChanged {{ {change_selection} }} }}", event_selection


def event_selection_in(document: str) -> str:
    """The selection of `event` inside a persisted subscription's `eventChanged`."""
    (operation,) = parse(document).definitions
    assert isinstance(operation, OperationDefinitionNode)
    (changed,) = operation.selection_set.selections
    assert isinstance(changed, FieldNode) and changed.selection_set is not None
    (event,) = [
        f
        for f in changed.selection_set.selections
        if isinstance(f, FieldNode) and f.name.value == "event"
    ]
    assert event.selection_set is not None
    return print_ast(event.selection_set)


def selects(document: str, field: str) -> bool:
    """Whether `document` selects `Type.field` by name (a rough reading, enough for the
    persisted feeds: a field of the event or of a type under it)."""
    return re.search(rf"\b{field.split('.')[1]}\b", document) is not None


def has_feed(app: Any, role: str) -> bool:
    subscription = role_graphql_schema(app, role).subscription_type
    return subscription is not None and "eventChanged" in subscription.fields


def test_the_roles_with_a_feed_are_the_policys(app: Any) -> None:
    """Which roles may subscribe is enforce()'s answer, and the check below is not vacuous."""
    enforcer = POLICY.enforcer()
    for role in VIEWPOINTS:
        allowed = bool(enforcer.enforce(role, "Subscription.eventChanged", "call"))
        assert has_feed(app, role) == allowed, role
    assert sum(has_feed(app, role) for role in VIEWPOINTS) >= 5


# --- the check ---------------------------------------------------------------------------------


async def version_of(http: Any, event_id: str) -> int:
    body = await post(http, VERSION, {"id": event_id})
    assert "errors" not in body, body
    return int(body["data"]["node"]["version"])


def delivered_change(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next", message
    payload = message["payload"]
    assert "errors" not in payload, payload
    change: dict[str, Any] = payload["data"]["eventChanged"]
    return change


async def check_the_feed_obeys_the_oracle(
    role: str,
    app: Any,
    settings: Settings,
    marked: MarkerWorld,
    oracle: Oracle,
    *,
    board: bool = False,
) -> None:
    """`board`: the dispatch board's own feed (BoardLive) over the session cookie, as board.js
    subscribes, instead of the role's widest selection over an Authorization header."""
    view: Viewpoint = VIEWPOINTS[role]
    schema = role_graphql_schema(app, role)
    if board:
        document = Operations.load()["BoardLive"].document
        event_selection = event_selection_in(document)
    else:
        document, event_selection = feed_of(schema)
    events = {k: row for k, row in marked.rows.items() if row.type == "Event"}
    # What names an event in a delivery: its id, or its code when the selection has no id.
    key_of = {row.global_id: k for k, row in events.items()}
    key_of |= {str(row.code): k for k, row in events.items()}
    in_scope = sorted(k for k, row in events.items() if oracle.in_scope(view, row))
    assert in_scope, f"{role} sees no marker event: nothing would be checked"
    async with live(app, settings) as (address, changes):
        superuser = changes.http

        async def run(query: str, **variables: Any) -> dict[str, Any]:
            body = await post(superuser, query, variables)
            assert "errors" not in body, body
            return body

        async def beacon() -> str:
            """A new event (no marker in it) that the role sees by its last change: reported in
            G1 and dispatched to the role's department. Its id and code name it."""
            found = await run(REPORT, title="beacon", grid="G1")
            beacon_id = str(found["data"]["reportEvent"]["id"])
            await run(ACCEPT, id=beacon_id)
            await run(DISPATCH, id=beacon_id, department=view.department or "health")
            return beacon_id + " " + str(found["data"]["reportEvent"]["code"])

        if board:
            credential = token(
                settings,
                role,
                subject=view.subject,
                grids=view.grids,
                department=view.department,
            )
            cookie = await session_cookie(address, credential)
            headers = {"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": f"http://{address}"}
        else:
            headers = headers_of(settings, view)
        async with Socket.open(address, headers) as socket:
            feed = await socket.start(document)
            first = await until_first(socket, feed, beacon)
            delivered_change(first)
            # Each marker event's version now: the feed started after every one of them.
            before = {k: await version_of(superuser, row.global_id) for k, row in events.items()}
            # One change to every marker event, in scope or not; none changes its scope.
            for _key, row in sorted(events.items()):
                await run(START if row.department else ACCEPT, id=row.global_id)
            # Changes arrive in order: once the last beacon's dispatch is delivered, all are.
            last = await beacon()
            messages = [first]
            latest: dict[str, dict[str, Any]] = {}
            seen: dict[str, list[int]] = {}
            while True:
                message = await socket.message(feed)
                messages.append(message)
                change = delivered_change(message)
                event_id = change["event"].get("id") or change["event"]["code"]
                if event_id in last.split() and change["action"] == "dispatch":
                    break
                if event_id in key_of:
                    key = key_of[event_id]
                    latest[key] = change["event"]
                    seen.setdefault(key, []).append(int(change["version"]))
    text = text_of(messages)
    found = leaked(text, oracle.forbidden(view))
    assert not found, f"the feed showed {found} to {role}\n{text[:3000]}"
    # Exactly the events in scope, each once.
    assert seen == {k: [before[k] + 1] for k in in_scope}, role
    # Every marker of those events and of their reporters that the role reads is there, in
    # full or in its masked form: the selection is complete and masks as documented.
    reporters = {f"event{key}": reporter for key, _, _, reporter, _ in EVENTS}
    for key in in_scope:
        reaches = (
            "reporter" in document
            and reporters[key] in marked.rows
            and oracle.level(role, "Event.reporter") in (Level.FULL, Level.MASKED)
        )
        shown_rows = [key, reporters[key]] if reaches else [key]
        for marker in [m for k in shown_rows for m in marked.of(k)]:
            if not all(selects(document, name) for name in (*marker.via, marker.field)):
                continue  # the board's feed reads only what a row shows
            level = oracle.shown(view, marker)
            if level is Level.FULL:
                assert marker.value in text, (role, marker)
            elif level is Level.MASKED and marker.masked is not None:
                assert marker.masked in text, (role, marker)
    # And each event is what a query of the same selection answers now, as the same role.
    query = f"query Q($id: ID!) {{ node(id: $id) {{ ... on Event {event_selection} }} }}"
    async with client_as(app, settings, role) as http:
        for key in in_scope:
            body = await post(http, query, {"id": events[key].global_id})
            assert "errors" not in body, (role, body)
            assert body["data"]["node"] == latest[key], (role, key)


SUBSCRIBERS = [
    role
    for role in VIEWPOINTS
    if POLICY.enforcer().enforce(role, "Subscription.eventChanged", "call")
]


@pytest.mark.parametrize("role", SUBSCRIBERS)
async def test_the_event_feed_shows_what_a_query_would(
    role: str, app: Any, settings: Settings, marked: MarkerWorld, oracle: Oracle
) -> None:
    await asyncio.wait_for(check_the_feed_obeys_the_oracle(role, app, settings, marked, oracle), 60)


@pytest.mark.parametrize("role", ["dispatcher", "community_admin"])
async def test_the_boards_live_feed_shows_what_a_query_would(
    role: str, app: Any, settings: Settings, marked: MarkerWorld, oracle: Oracle
) -> None:
    """The dispatch board's rows as board.js keeps them live: its persisted BoardLive over the
    session cookie, as each role that may open the board."""
    check = check_the_feed_obeys_the_oracle(role, app, settings, marked, oracle, board=True)
    await asyncio.wait_for(check, 60)
