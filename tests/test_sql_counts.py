"""No N+1: a page of events with its nested objects runs a small, constant number of SQL
statements, however many events are on the page (every nested field loads through a
DataLoader batch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event

from hub.db import Database
from hub.events import service as events
from hub.events.states import Action
from tests.conftest import GraphQLClient
from tests.world import World

PAGE = """{ events(first: 100) { totalCount edges { node {
  id title
  grid { code name parent { code } }
  reporter {
    __typename
    ... on Member { name }
    ... on Resident { name }
    ... on ExternalSystem { name }
  }
  department { code }
  timeline { action fromStatus toStatus actor department { code } }
} } } }"""

# Everything above plus objects nested one more level: still batched, so still constant.
DEEPER = """{ events(first: 100) { edges { node {
  grid { code parent { code parent { code } } members { name } }
  reporter {
    ... on Member { department { code } grids { code } }
    ... on Resident { grid { code } tags }
  }
  timeline { department { name } }
} } } }"""

GRIDS = ["G1", "G2", "G3", "G4"]
DEPARTMENTS = ["public_security", "health", "civil_affairs", "environment", "community_service"]


async def add_events(db: Database, world: World, start: int, stop: int) -> None:
    """Events with every kind of reporter, some dispatched (so their timelines name a
    department), spread over the grids."""
    async with db.transaction() as session:
        for n in range(start, stop):
            kind = ("member", "resident", "system")[n % 3]
            reporter: dict[str, Any] = {
                "member": {"reporter_member_id": world.members[n % 4].id},
                "resident": {"reporter_resident_id": world.residents[n % 12].id},
                "system": {"reporter_system": "12345"},
            }[kind]
            created = await events.report(
                session,
                report=events.EventReport(
                    category="sanitation", title=f"事件{n}", grid_code=GRIDS[n % 4], **reporter
                ),
                actor="test",
            )
            if n % 2 == 0:
                await events.transition(
                    session, event_id=created.id, action=Action.ACCEPT, actor="test"
                )
                await events.transition(
                    session,
                    event_id=created.id,
                    action=Action.DISPATCH,
                    actor="test",
                    department_code=DEPARTMENTS[n % 5],
                )


@contextmanager
def counting(engine: Any) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)


async def statements_for(gql: GraphQLClient, app: Any, query: str) -> tuple[list[str], Any]:
    await gql.data(query)  # warm: first-connection queries are not the page's
    with counting(app.state.db.engine.sync_engine) as statements:
        data = await gql.data(query)
    return statements, data


def check_page(data: dict[str, Any], n: int) -> None:
    """The batched loads must still hand each event its own objects."""
    nodes = [edge["node"] for edge in data["events"]["edges"]]
    assert len(nodes) == n == data["events"]["totalCount"]
    parents = {"G1": "C1", "G2": "C1", "G3": "C2", "G4": "C3"}
    for i, node in enumerate(nodes):
        assert node["title"] == f"事件{i}"
        assert node["grid"]["code"] == GRIDS[i % 4]
        assert node["grid"]["parent"] == {"code": parents[GRIDS[i % 4]]}
        reporter = node["reporter"]
        assert reporter["__typename"] == ("Member", "Resident", "ExternalSystem")[i % 3]
        if i % 3 == 0:
            assert reporter["name"] == f"网格员{i % 4}"
        elif i % 3 == 1:
            assert reporter["name"] == f"居民{i % 12:02d}"
        else:
            assert reporter["name"] == "12345"
        if i % 2 == 0:
            assert node["department"] == {"code": DEPARTMENTS[i % 5]}
            assert [line["action"] for line in node["timeline"]] == ["report", "accept", "dispatch"]
            assert node["timeline"][2]["department"] == {"code": DEPARTMENTS[i % 5]}
        else:
            assert node["department"] is None
            assert [line["action"] for line in node["timeline"]] == ["report"]


async def test_a_page_of_events_runs_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    await add_events(db, world, 0, 10)
    few, data = await statements_for(gql, app, PAGE)
    check_page(data, 10)
    deeper_few, _ = await statements_for(gql, app, DEEPER)

    await add_events(db, world, 10, 100)
    many, data = await statements_for(gql, app, PAGE)
    check_page(data, 100)
    deeper_many, _ = await statements_for(gql, app, DEEPER)

    # page + count + grid + parent grid + member + resident + department + timeline
    assert len(many) <= 8, "\n\n".join(many)
    assert len(many) == len(few), (few, many)
    # One batch per loader and nesting level at most. When two batches of one loader at the
    # same level run apart depends on timing, so here the bound is what holds, not equality.
    assert len(deeper_few) <= 12, "\n\n".join(deeper_few)
    assert len(deeper_many) <= 12, "\n\n".join(deeper_many)
    # Every statement reads; none of them is per event (no `WHERE id = ?`).
    for statement in many + deeper_many:
        assert statement.lstrip().upper().startswith("SELECT"), statement
        assert (
            " IN (" in statement.upper()
            or "ORDER BY" in statement.upper()
            or ("count(" in statement.lower())
        ), statement
