"""Every keyset ordering the API offers reads its page from an index in order: no sort of the
whole table, whatever the table's size.

The statements checked are the ones the API really runs (captured on the engine while a GraphQL
page is fetched), with their real parameters, explained on the same database:

- PostgreSQL: explained with enable_sort and enable_seqscan off. Those settings do not forbid a
  plan, they price it out: a Sort node still appears when no index yields the order. So on a
  small test table the plan shows what the planner can do at any size, independent of statistics:
  no Sort (nor Incremental Sort) node, and the (sort column, id) index from the models is used.
- SQLite: EXPLAIN QUERY PLAN must not mention a temporary B-tree for ORDER BY. SQLite has no such
  switches; the test database is never ANALYZEd, so its planner assumes big tables, as it does
  for any database without statistics.

The orderings come from hub.api.queries, so a new ordering is checked as soon as it exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Table, text

from hub.api.queries import EVENT_KEYS, GRID_KEYS, NOTICE_KEYS, RESIDENT_KEYS
from hub.db import Base, Database
from hub.events import service as events
from hub.notices import service as notices
from hub.pagination import SortKey
from tests.conftest import GraphQLClient
from tests.sql_capture import captured_sql
from tests.world import World

LISTS: dict[str, dict[Any, SortKey]] = {
    "residents": RESIDENT_KEYS,
    "events": EVENT_KEYS,
    "notices": NOTICE_KEYS,
    "grids": GRID_KEYS,
}

CASES = [
    pytest.param(field, key.name, direction, id=f"{field}-{key.name}-{direction}")
    for field, keys in LISTS.items()
    for key in keys.values()
    for direction in ("ASC", "DESC")
]


async def add_events_and_notices(db: Database) -> None:
    """The world has residents and grids; two events and two notices give every list a
    second page."""
    async with db.transaction() as session:
        for n, grid in enumerate(["G1", "G2"]):
            await events.report(
                session,
                report=events.EventReport(
                    category="sanitation", title=f"事件{n}", grid_code=grid, reporter_system="12345"
                ),
                actor="test",
            )
            notice = await notices.create(
                session,
                title=f"通知{n}",
                body="正文",
                department_code="community_service",
                grid_codes=[grid],
            )
            # Published: the PUBLISHED_AT order holds only notices that have a publication time.
            await notices.publish(session, notice_id=notice.id)


async def page_statements(
    gql: GraphQLClient, app: Any, field: str, ordering: str, direction: str
) -> list[tuple[str, Any]]:
    """The page statements of a forward page after a cursor and a backward page before it."""
    order = f"orderBy: {{field: {ordering}, direction: {direction}}}"
    first = await gql.data(f"{{ {field}(first: 1, {order}) {{ pageInfo {{ endCursor }} }} }}")
    cursor = first[field]["pageInfo"]["endCursor"]
    assert cursor, first
    pages = [f'first: 2, after: "{cursor}"', f'last: 2, before: "{cursor}"']
    found = []
    for page in pages:
        query = f"{{ {field}({page}, {order}) {{ edges {{ node {{ id }} }} }} }}"
        with captured_sql(app.state.db.engine.sync_engine) as statements:
            await gql.data(query)
        paged = [(s, p) for s, p in statements if "ORDER BY" in s.upper() and "LIMIT" in s.upper()]
        assert len(paged) == 1, statements
        found.append(paged[0])
    return found


def expected_index(table: Table, key: SortKey) -> str:
    """The models' index that serves the ordering: (sort column, id), or the primary key."""
    if key.column.key == "id":
        return str(table.primary_key.name)
    for index in table.indexes:
        if [column.name for column in index.columns] == [key.column.key, "id"]:
            return str(index.name)
    raise AssertionError(f"no ({key.column.key}, id) index on {table.name}")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def explain_postgres(db: Database, statement: str, parameters: Any) -> list[dict[str, Any]]:
    async with db.engine.connect() as connection, connection.begin():
        await connection.execute(text("SET LOCAL enable_sort = off"))
        await connection.execute(text("SET LOCAL enable_seqscan = off"))
        result = await connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
        raw = result.scalar_one()
    plan = json.loads(raw) if isinstance(raw, str) else raw
    return list(plan_nodes(plan[0]["Plan"]))


async def explain_sqlite(db: Database, statement: str, parameters: Any) -> list[str]:
    async with db.engine.connect() as connection:
        result = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [str(row[-1]) for row in result.all()]


@pytest.mark.parametrize(("field", "ordering", "direction"), CASES)
async def test_a_page_in_every_ordering_reads_an_index_in_order(
    gql: GraphQLClient,
    app: Any,
    db: Database,
    world: World,
    field: str,
    ordering: str,
    direction: str,
) -> None:
    await add_events_and_notices(db)
    key = next(k for k in LISTS[field].values() if k.name == ordering)
    table = Base.metadata.tables[key.column.class_.__tablename__]
    index = expected_index(table, key)

    for statement, parameters in await page_statements(gql, app, field, ordering, direction):
        if db.dialect == "postgresql":
            nodes = await explain_postgres(db, statement, parameters)
            summary = [(n["Node Type"], n.get("Index Name")) for n in nodes]
            assert not [n for n in nodes if "Sort" in n["Node Type"]], (statement, summary)
            assert index in [n.get("Index Name") for n in nodes], (statement, summary)
        else:
            details = await explain_sqlite(db, statement, parameters)
            assert not [d for d in details if "TEMP B-TREE" in d], (statement, details)
            scans = [d for d in details if d.split()[1:2] == [table.name]]
            assert scans and all("INDEX" in d or "PRIMARY KEY" in d for d in scans), details
