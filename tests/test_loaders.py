"""DataLoaders: fresh per operation, cleared after each commit, bounded per parent, and scoped
through access.rows (children follow their parent's scope). On both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import strawberry
from sqlalchemy import Select, insert
from strawberry.types import ExecutionResult
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from hub.api.context import Context
from hub.api.ids import pk_of, to_global_id
from hub.api.loaders import GRID_MEMBERS, TIMELINE_LINES, Loaders
from hub.api.schema import PerOperationContext
from hub.authz import Access
from hub.config import Settings
from hub.db import Database, utcnow
from hub.models import Event, EventTransition, Member, Resident, ResidentExternalId, member_grids
from tests.conftest import GraphQLClient
from tests.live import in_process_server
from tests.policy_clients import SUPERUSER, access_as, credentials
from tests.world import World

S = TypeVar("S", bound=Select[Any])

REPORT = """mutation($title: String!) {
  reportEvent(input: {category: SANITATION, title: $title, gridCode: "G1", reporterSystem: "t"}) {
    id
  }
}"""
TIMELINE = "query($id: ID!) { node(id: $id) { ... on Event { timeline { action note } } } }"
ADD_NOTE = "mutation($id: ID!, $note: String!) { addEventNote(id: $id, note: $note) { note } }"


async def report(gql: GraphQLClient, title: str = "垃圾堆放") -> str:
    data = await gql.data(REPORT, {"title": title})
    return str(data["reportEvent"]["id"])


# --- fresh caches -------------------------------------------------------------------------------


async def test_aliased_mutations_each_see_their_own_writes(
    gql: GraphQLClient, world: World
) -> None:
    resident = to_global_id("Resident", world.residents[1].id)
    query = """mutation($id: ID!) {
      a: updateResident(id: $id, input: {tags: ["elderly"]}) { tags }
      b: updateResident(id: $id, input: {tags: ["pregnant"]}) { tags }
      c: updateResident(id: $id, input: {tags: ["veteran", "disabled"]}) { tags }
    }"""
    data = await gql.data(query, {"id": resident})
    assert data == {
        "a": {"tags": ["elderly"]},
        "b": {"tags": ["pregnant"]},
        "c": {"tags": ["disabled", "veteran"]},
    }


async def test_every_operation_gets_its_own_context(app: Any) -> None:
    """strawberry hands resolvers the context PerOperationContext made, subscriptions included:
    each operation has its own copy and loaders, and the copies share the request's state."""
    seen: list[Context] = []

    @strawberry.type
    class Query:
        @strawberry.field
        def mark(self, info: strawberry.Info[Context, None]) -> int:
            seen.append(info.context)
            return len(seen)

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def marks(self, info: strawberry.Info[Context, None]) -> AsyncIterator[int]:
            seen.append(info.context)
            yield len(seen)

    schema = strawberry.Schema(
        query=Query, subscription=Subscription, extensions=[PerOperationContext]
    )
    base = Context.build(
        app.state.db,
        settings=app.state.settings,
        access=access_as(SUPERUSER, app.state.settings.policy_dir),
        broker=app.state.broker,
    )
    assert (await schema.execute("{ mark }", context_value=base)).errors is None
    assert (await schema.execute("{ mark }", context_value=base)).errors is None
    stream = await schema.subscribe("subscription { marks }", context_value=base)
    assert not isinstance(stream, ExecutionResult)
    async for result in stream:
        assert result.errors is None
    assert len(seen) == 3
    assert all(context is not base for context in seen)
    assert len({id(context) for context in seen}) == 3
    assert len({id(context.loaders) for context in seen} | {id(base.loaders)}) == 4
    assert all(context.state is base.state for context in seen)


@dataclass
class Socket:
    ws: ClientConnection
    next_id: int = 0

    async def run(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One query or mutation on this connection: its `next` payload's data."""
        self.next_id += 1
        op_id = str(self.next_id)
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        result: dict[str, Any] | None = None
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("id") != op_id:
                continue  # ping/pong
            if message["type"] == "complete":
                assert result is not None
                return result
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            result = message["payload"]["data"]


async def test_websocket_operations_do_not_share_caches(
    app: Any, gql: GraphQLClient, world: World, settings: Settings
) -> None:
    """A WebSocket connection keeps one context for its lifetime; each of its operations still
    reads the database afresh."""
    event = await report(gql)
    variables = {"id": event, "note": "已派人处理"}
    async with in_process_server(app) as address:
        url = f"ws://{address}/graphql"
        protocol = Subprotocol("graphql-transport-ws")
        headers = credentials(settings, SUPERUSER)
        async with connect(
            url, subprotocols=[protocol], additional_headers=headers, open_timeout=10
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            socket = Socket(ws)
            before = await socket.run(TIMELINE, variables)
            assert [line["action"] for line in before["node"]["timeline"]] == ["report"]
            await socket.run(ADD_NOTE, variables)
            after = await socket.run(TIMELINE, variables)
            assert [line["note"] for line in after["node"]["timeline"]] == ["", "已派人处理"]
            # The same on the next operation, after a change made elsewhere (over HTTP).
            await gql.data(ADD_NOTE, {"id": event, "note": "已完成"})
            later = await socket.run(TIMELINE, variables)
            assert [line["note"] for line in later["node"]["timeline"]][-1] == "已完成"


# --- bounded lists ------------------------------------------------------------------------------


async def test_timeline_keeps_the_latest_lines_oldest_first(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    long, short = await report(gql, "长"), await report(gql, "短")
    extra = TIMELINE_LINES + 5
    async with db.transaction() as session:
        await session.execute(
            insert(EventTransition),
            [
                {
                    "event_id": pk_of(long, "Event"),
                    "action": "note",
                    "from_status": "reported",
                    "to_status": "reported",
                    "actor": "test",
                    "note": f"line {n}",
                    "at": utcnow(),
                }
                for n in range(extra)
            ],
        )
    query = """query($a: ID!, $b: ID!) {
      a: node(id: $a) { ... on Event { timeline { note } } }
      b: node(id: $b) { ... on Event { timeline { action } } }
    }"""
    data = await gql.data(query, {"a": long, "b": short})
    notes = [line["note"] for line in data["a"]["timeline"]]
    # 1 report line + `extra` notes; the bound keeps the newest, still in time order.
    assert notes == [f"line {n}" for n in range(extra - TIMELINE_LINES, extra)]
    # The other event in the same batch keeps its own (short) timeline.
    assert data["b"]["timeline"] == [{"action": "report"}]


async def test_grid_members_are_bounded(gql: GraphQLClient, db: Database, world: World) -> None:
    grid = world.grids["G2"]
    async with db.transaction() as session:
        created = [
            Member(name=f"志愿者{n}", phone=f"1370000{n:04d}", is_party_member=False)
            for n in range(GRID_MEMBERS + 3)
        ]
        session.add_all(created)
        await session.flush()
        await session.execute(
            insert(member_grids), [{"member_id": m.id, "grid_id": grid.id} for m in created]
        )
    data = await gql.data(
        '{ a: grid(code: "G2") { members { name } } b: grid(code: "G1") { members { name } } }'
    )
    names = [member["name"] for member in data["a"]["members"]]
    # The world's own member of G2 (lowest id) first, then the volunteers in id order.
    assert len(names) == GRID_MEMBERS
    assert names == ["网格员1"] + [f"志愿者{n}" for n in range(GRID_MEMBERS - 1)]
    assert data["b"]["members"] == [{"name": "网格员0"}]


# --- scoped through access.rows -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HidingAccess(Access):
    """A row scope that hides some residents and events: their children must go with them."""

    hidden_resident: int = 0
    hidden_event: int = 0

    def rows(self, statement: S, entity: type[Any]) -> S:
        if entity is Resident:
            return statement.where(Resident.id != self.hidden_resident)
        if entity is Event:
            return statement.where(Event.id != self.hidden_event)
        return statement


async def test_child_loaders_follow_their_parents_scope(
    gql: GraphQLClient, db: Database, world: World, policy_dir: Path
) -> None:
    shown, hidden = world.residents[0], world.residents[3]  # both tagged elderly, living_alone
    async with db.transaction() as session:
        await session.execute(
            insert(ResidentExternalId),
            [
                {"resident_id": shown.id, "system": "hospital", "external_id": "H-1"},
                {"resident_id": hidden.id, "system": "hospital", "external_id": "H-2"},
            ],
        )
    shown_event, hidden_event = await report(gql, "a"), await report(gql, "b")
    pks = {e: pk_of(e, "Event") for e in (shown_event, hidden_event)}

    superuser = access_as(SUPERUSER, policy_dir)
    open_loaders = Loaders(db, superuser)
    scoped = Loaders(
        db,
        HidingAccess(
            superuser.viewer,
            superuser.profile,
            hidden_resident=hidden.id,
            hidden_event=pks[hidden_event],
        ),
    )
    residents = [shown.id, hidden.id]
    events = [pks[shown_event], pks[hidden_event]]

    # Open access: everything, one batch per loader.
    assert await open_loaders.resident_tags.load_many(residents) == [
        ["elderly", "living_alone"],
        ["elderly", "living_alone"],
    ]
    external = await open_loaders.resident_external_ids.load_many(residents)
    assert [[e.external_id for e in group] for group in external] == [["H-1"], ["H-2"]]
    timeline = await open_loaders.event_timeline.load_many(events)
    assert [[line.action for line in group] for group in timeline] == [["report"], ["report"]]

    # The hidden parent's children are hidden with it; the other parent's stay.
    assert await scoped.resident_tags.load_many(residents) == [["elderly", "living_alone"], []]
    external = await scoped.resident_external_ids.load_many(residents)
    assert [[e.external_id for e in group] for group in external] == [["H-1"], []]
    timeline = await scoped.event_timeline.load_many(events)
    assert [[line.action for line in group] for group in timeline] == [["report"], []]
