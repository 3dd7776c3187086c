"""The event state machine through the GraphQL mutations: every (status, action) pair.

Expectations come from hub.events.states.TRANSITIONS, and a short hand-written list of facts
checks the table itself, so a wrong table cannot pass by agreeing with itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from hub.db import Database
from hub.errors import Conflict, InvalidTransition
from hub.events import service as events
from hub.events.models import Event
from hub.events.states import TRANSITIONS, Action, Status, next_status
from tests.conftest import GraphQLClient
from tests.world import World

EVENT = """fragment E on Event {
  id status version reportedAt acceptedAt resolvedAt closedAt updatedAt deadline
  department { code }
  timeline { action fromStatus toStatus actor note department { code } }
}"""

REPORT = (
    'mutation { reportEvent(input: {category: SANITATION, title: "垃圾堆放", gridCode: "G1", '
    'reporterSystem: "12345"}) { ...E } } ' + EVENT
)

# What each mutation needs besides the id, chosen valid so only the status decides the outcome.
ARGS: dict[Action, dict[str, str]] = {
    Action.ACCEPT: {},
    Action.DISPATCH: {"departmentCode": "health"},
    Action.START: {},
    Action.RESOLVE: {},
    Action.CLOSE: {},
    Action.REJECT: {"reason": "重复上报"},
    Action.REOPEN: {"reason": "问题仍未解决"},
}

# Facts written by hand from the domain, not read from the table: (from, action, to or None).
KEY_FACTS: list[tuple[Status, Action, Status | None]] = [
    (Status.REPORTED, Action.ACCEPT, Status.ACCEPTED),
    (Status.REPORTED, Action.REJECT, Status.REJECTED),
    (Status.REPORTED, Action.CLOSE, None),
    (Status.REPORTED, Action.DISPATCH, None),
    (Status.REPORTED, Action.RESOLVE, None),
    (Status.ACCEPTED, Action.DISPATCH, Status.DISPATCHED),
    (Status.ACCEPTED, Action.ACCEPT, None),
    (Status.DISPATCHED, Action.DISPATCH, Status.DISPATCHED),
    (Status.DISPATCHED, Action.START, Status.IN_PROGRESS),
    (Status.DISPATCHED, Action.RESOLVE, None),
    (Status.IN_PROGRESS, Action.RESOLVE, Status.RESOLVED),
    (Status.IN_PROGRESS, Action.REJECT, None),
    (Status.RESOLVED, Action.CLOSE, Status.CLOSED),
    (Status.RESOLVED, Action.REOPEN, Status.REOPENED),
    (Status.CLOSED, Action.REOPEN, Status.REOPENED),
    (Status.CLOSED, Action.CLOSE, None),
    (Status.CLOSED, Action.ACCEPT, None),
    (Status.REJECTED, Action.REOPEN, Status.REOPENED),
    (Status.REJECTED, Action.ACCEPT, None),
    (Status.REOPENED, Action.ACCEPT, Status.ACCEPTED),
    (Status.REOPENED, Action.REJECT, Status.REJECTED),
    (Status.REOPENED, Action.DISPATCH, None),
]


def gql_status(status: Status) -> str:
    return status.name


def allowed_from(status: Status) -> list[str]:
    return sorted(action.value for action, (sources, _) in TRANSITIONS.items() if status in sources)


def path_to(status: Status) -> list[Action]:
    """The shortest run of legal actions from REPORTED to `status`, found in the table."""
    paths: dict[Status, list[Action]] = {Status.REPORTED: []}
    queue = deque([Status.REPORTED])
    while queue:
        current = queue.popleft()
        for action, (sources, target) in TRANSITIONS.items():
            if current in sources and target not in paths:
                paths[target] = [*paths[current], action]
                queue.append(target)
    return paths[status]


def mutation(action: Action, args: dict[str, str]) -> str:
    params = "".join(f", ${name}: String!" for name in args)
    call = "".join(f", {name}: ${name}" for name in args)
    return f"mutation($id: ID!{params}) {{ {action.value}Event(id: $id{call}) {{ ...E }} }} {EVENT}"


async def report(gql: GraphQLClient) -> dict[str, Any]:
    return (await gql.data(REPORT))["reportEvent"]


async def fetch(gql: GraphQLClient, event_id: str) -> dict[str, Any]:
    return (
        await gql.data("query($id: ID!) { event(id: $id) { ...E } } " + EVENT, {"id": event_id})
    )["event"]


async def apply(
    gql: GraphQLClient, event_id: str, action: Action, args: dict[str, str] | None = None
) -> dict[str, Any]:
    args = ARGS[action] if args is None else args
    data = await gql.data(mutation(action, args), {"id": event_id, **args})
    return data[f"{action.value}Event"]


async def attempt(
    gql: GraphQLClient, event_id: str, action: Action, args: dict[str, str] | None = None
) -> dict[str, Any]:
    args = ARGS[action] if args is None else args
    return await gql.error(mutation(action, args), {"id": event_id, **args})


async def event_in(gql: GraphQLClient, status: Status) -> dict[str, Any]:
    event = await report(gql)
    for action in path_to(status):
        event = await apply(gql, event["id"], action)
    assert event["status"] == gql_status(status)
    return event


def check_applied(before: dict[str, Any], after: dict[str, Any], action: Action) -> None:
    target = TRANSITIONS[action][1]
    assert after["status"] == gql_status(target)
    assert after["version"] == before["version"] + 1
    assert after["updatedAt"] >= before["updatedAt"]
    assert after["timeline"][:-1] == before["timeline"]
    line = after["timeline"][-1]
    assert line["action"] == action.value
    assert line["fromStatus"] == before["status"]
    assert line["toStatus"] == gql_status(target)
    # The same viewer reported the event; its name must appear on every line it causes.
    assert line["actor"] and line["actor"] == before["timeline"][0]["actor"]
    assert line["note"] == ARGS[action].get("reason", "")

    if action is Action.ACCEPT and before["acceptedAt"] is None:
        assert after["acceptedAt"] is not None and after["acceptedAt"] >= after["reportedAt"]
    else:
        assert after["acceptedAt"] == before["acceptedAt"]  # kept from the first acceptance
    if action is Action.RESOLVE:
        assert after["resolvedAt"] is not None and after["resolvedAt"] >= after["reportedAt"]
    elif action is Action.REOPEN:
        assert after["resolvedAt"] is None
    else:
        assert after["resolvedAt"] == before["resolvedAt"]
    if action is Action.CLOSE:
        assert after["closedAt"] is not None and after["closedAt"] >= after["resolvedAt"]
    elif action is Action.REOPEN:
        assert after["closedAt"] is None
    else:
        assert after["closedAt"] == before["closedAt"]
    if action is Action.DISPATCH:
        assert after["department"] == {"code": ARGS[action]["departmentCode"]}
        assert line["department"] == {"code": ARGS[action]["departmentCode"]}
    else:
        assert after["department"] == before["department"]
        assert line["department"] is None


def test_key_facts_hold_in_the_table() -> None:
    for status, action, expected in KEY_FACTS:
        if expected is None:
            with pytest.raises(InvalidTransition):
                next_status(status, action)
        else:
            assert next_status(status, action) is expected, (status, action)


def test_table_shape() -> None:
    # Only real transitions are in the table; every status is reachable and can be left.
    assert Action.REPORT not in TRANSITIONS and Action.NOTE not in TRANSITIONS
    for status in Status:
        assert path_to(status) is not None
        assert allowed_from(status), f"{status} is a dead end"


def test_invalid_transition_names_the_allowed_actions() -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_status(Status.RESOLVED, Action.START)
    assert caught.value.extensions == {
        "status": "resolved",
        "action": "start",
        "allowedActions": ["close", "reopen"],
    }


@pytest.mark.parametrize("status", list(Status), ids=[s.value for s in Status])
async def test_every_action_from(status: Status, gql: GraphQLClient, world: World) -> None:
    event = await event_in(gql, status)
    legal = [a for a in TRANSITIONS if status in TRANSITIONS[a][0]]
    # Illegal first: refused with the actions that are allowed, and nothing changes. The same
    # event takes every refusal in turn, so each one is checked against untouched state.
    for action in [a for a in TRANSITIONS if a not in legal]:
        error = await attempt(gql, event["id"], action)
        assert error["extensions"]["code"] == "INVALID_TRANSITION", (status, action, error)
        assert error["extensions"]["allowedActions"] == allowed_from(status)
        assert error["extensions"]["status"] == status.value
        assert error["extensions"]["action"] == action.value
        assert await fetch(gql, event["id"]) == event
    # Each legal action on its own event in this status (the first one reuses `event`).
    for n, action in enumerate(legal):
        before = event if n == 0 else await event_in(gql, status)
        check_applied(before, await apply(gql, before["id"], action), action)


async def test_accept_after_reopen_keeps_the_first_acceptance(
    gql: GraphQLClient, world: World
) -> None:
    event = await event_in(gql, Status.CLOSED)
    reopened = await apply(gql, event["id"], Action.REOPEN)
    assert reopened["resolvedAt"] is None and reopened["closedAt"] is None
    again = await apply(gql, event["id"], Action.ACCEPT)
    assert again["acceptedAt"] == event["acceptedAt"] is not None
    assert again["version"] == event["version"] + 2
    actions = [line["action"] for line in again["timeline"]]
    assert actions == ["report", *[a.value for a in path_to(Status.CLOSED)], "reopen", "accept"]


async def test_reject_and_reopen_need_a_reason(gql: GraphQLClient, world: World) -> None:
    for action, status in [(Action.REJECT, Status.REPORTED), (Action.REOPEN, Status.REJECTED)]:
        event = await event_in(gql, status)
        for reason in ["", "   \n\t"]:
            error = await attempt(gql, event["id"], action, {"reason": reason})
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (action, reason)
            assert error["extensions"]["field"] == "reason"
            assert await fetch(gql, event["id"]) == event


async def test_an_overlong_reason_is_refused_as_the_reason(
    gql: GraphQLClient, world: World
) -> None:
    event = await report(gql)
    error = await attempt(gql, event["id"], Action.REJECT, {"reason": "因" * 2001})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "reason"
    assert await fetch(gql, event["id"]) == event


async def test_dispatch_needs_a_known_department(gql: GraphQLClient, world: World) -> None:
    event = await event_in(gql, Status.ACCEPTED)
    for code in ["no_such_department", ""]:
        error = await attempt(gql, event["id"], Action.DISPATCH, {"departmentCode": code})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == "departmentCode"
        assert await fetch(gql, event["id"]) == event


async def test_redispatch_changes_the_department(gql: GraphQLClient, world: World) -> None:
    event = await event_in(gql, Status.ACCEPTED)
    first = await apply(gql, event["id"], Action.DISPATCH, {"departmentCode": "health"})
    second = await apply(gql, event["id"], Action.DISPATCH, {"departmentCode": "civil_affairs"})
    assert first["department"] == {"code": "health"}
    assert second["department"] == {"code": "civil_affairs"}
    assert second["status"] == "DISPATCHED" and second["version"] == event["version"] + 2
    dispatches = [line for line in second["timeline"] if line["action"] == "dispatch"]
    assert [(d["fromStatus"], d["department"]["code"]) for d in dispatches] == [
        ("ACCEPTED", "health"),
        ("DISPATCHED", "civil_affairs"),
    ]


async def test_dispatch_deadline_must_be_in_the_future(gql: GraphQLClient, world: World) -> None:
    event = await event_in(gql, Status.ACCEPTED)
    document = (
        "mutation($id: ID!, $at: DateTime!) { dispatchEvent(id: $id, departmentCode: "
        '"health", deadline: $at) { ...E } } ' + EVENT
    )
    error = await gql.error(document, {"id": event["id"], "at": "2001-01-01T00:00:00+00:00"})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "deadline"}
    assert await fetch(gql, event["id"]) == event
    done = await gql.data(document, {"id": event["id"], "at": "2999-01-01T08:00:00+08:00"})
    assert done["dispatchEvent"]["deadline"] == "2999-01-01T00:00:00+00:00"


async def test_concurrent_accepts_one_wins(gql: GraphQLClient, world: World) -> None:
    events_ = [await report(gql) for _ in range(4)]
    document = mutation(Action.ACCEPT, {})
    results = await asyncio.gather(
        *[gql(document, {"id": e["id"]}) for e in events_ for _ in range(2)]
    )
    for n, event in enumerate(events_):
        pair = results[2 * n : 2 * n + 2]
        winners = [r for r in pair if not r.get("errors")]
        losers = [r for r in pair if r.get("errors")]
        assert len(winners) == 1 and len(losers) == 1, pair
        assert losers[0]["errors"][0]["extensions"]["code"] in {"CONFLICT", "INVALID_TRANSITION"}
        final = await fetch(gql, event["id"])
        assert final["status"] == "ACCEPTED" and final["version"] == 2
        assert [line["action"] for line in final["timeline"]] == ["report", "accept"]


async def test_a_stale_version_is_a_conflict(db: Database, world: World) -> None:
    """The optimistic lock itself: B read the event before A's accept committed; B's write
    must not land on top of A's, even though B saw a status that allowed it."""
    async with db.transaction() as session:
        created = await events.report(
            session,
            report=events.EventReport(
                category="sanitation", title="t", grid_code="G1", reporter_system="12345"
            ),
            actor="test",
        )
    async with db.sessions() as late:
        stale = await late.get(Event, created.id)
        assert stale is not None and stale.version == 1
        async with db.transaction() as early:
            await events.transition(early, event_id=created.id, action=Action.ACCEPT, actor="a")
        with pytest.raises(Conflict):
            await events.transition(late, event_id=created.id, action=Action.ACCEPT, actor="b")
        await late.rollback()
    async with db.reader() as session:
        final = await session.get(Event, created.id)
        assert final is not None and (final.status, final.version) == ("accepted", 2)
