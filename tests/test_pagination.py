"""Keyset pagination through the API: every ordering both ways, inserts between pages, ties,
cursor checks and limits, and proof in the SQL that pages are found by key, not by OFFSET."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from hub.api.ids import to_global_id
from hub.db import Database
from hub.events import service as events
from hub.events.models import Event
from hub.residents import idcard
from hub.residents import service as residents
from hub.residents.models import Resident, ResidentTag
from tests.conftest import GraphQLClient
from tests.sql_capture import captured_sql
from tests.world import World

PAGE = "totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
LISTS = {
    "residents": f"query($order: ResidentOrder, $first: Int, $after: String, $last: Int, $before: String, $filter: ResidentFilter) {{ residents(orderBy: $order, first: $first, after: $after, last: $last, before: $before, filter: $filter) {{ {PAGE} }} }}",
    "events": f"query($order: EventOrder, $first: Int, $after: String, $last: Int, $before: String, $filter: EventFilter) {{ events(orderBy: $order, first: $first, after: $after, last: $last, before: $before, filter: $filter) {{ {PAGE} }} }}",
}
# The attribute each ordering sorts by, per list.
ORDERINGS = {
    "residents": {
        "ID": "id",
        "NAME": "name",
        "BIRTH_DATE": "birth_date",
        "UPDATED_AT": "updated_at",
    },
    "events": {"ID": "id", "REPORTED_AT": "reported_at", "UPDATED_AT": "updated_at"},
}
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
_sequence = iter(range(600, 1000))


@dataclass(frozen=True)
class Row:
    gid: str
    id: int
    values: dict[str, Any]

    def position(self, attr: str) -> tuple[Any, int]:
        return (self.values[attr], self.id)


async def add_resident(db: Database, *, name: str, born: date, grid: str = "G1") -> None:
    async with db.transaction() as session:
        await residents.create(
            session,
            changes=residents.ResidentChanges(
                name=name,
                id_number=idcard.make("110105", born, next(_sequence)),
                address="测试地址",
                grid_code=grid,
            ),
        )


async def add_event(db: Database, *, reported_at: datetime, updated_at: datetime) -> None:
    async with db.transaction() as session:
        created = await events.report(
            session,
            report=events.EventReport(
                category="sanitation", title="t", grid_code="G2", reporter_system="12345"
            ),
            actor="test",
        )
        await session.execute(
            update(Event)
            .where(Event.id == created.id)
            .values(reported_at=reported_at, updated_at=updated_at)
        )


@pytest.fixture
async def crowd(db: Database, world: World) -> None:
    """Ties in every non-unique key: same names, same birth dates, same times."""
    for name, born in [
        ("张三", date(1980, 5, 5)),
        ("张三", date(1980, 5, 5)),
        ("张三", date(1980, 5, 5)),
        ("居民05", date(1955, 6, 6)),  # the name and birth date of a world resident
        ("居民05", date(1955, 6, 6)),
        ("Li Lei", date(1990, 1, 1)),
    ]:
        await add_resident(db, name=name, born=born)
    for n in range(14):
        await add_event(
            db,
            reported_at=T0 + timedelta(hours=n // 3),
            updated_at=T0 + timedelta(minutes=(n * 7) % 5),
        )


async def table(db: Database, kind: str) -> list[Row]:
    async with db.reader() as session:
        if kind == "residents":
            found = (await session.scalars(select(Resident))).all()
            type_name, attrs = "Resident", ORDERINGS["residents"].values()
        else:
            found = (await session.scalars(select(Event))).all()
            type_name, attrs = "Event", ORDERINGS["events"].values()
    return [
        Row(to_global_id(type_name, r.id), r.id, {a: getattr(r, a) for a in attrs}) for r in found
    ]


def in_order(rows: list[Row], attr: str, descending: bool) -> list[str]:
    return [r.gid for r in sorted(rows, key=lambda r: r.position(attr), reverse=descending)]


async def page(gql: GraphQLClient, kind: str, **variables: Any) -> dict[str, Any]:
    return (await gql.data(LISTS[kind], variables))[kind]


def ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def walk(
    gql: GraphQLClient,
    kind: str,
    order: dict[str, str],
    *,
    size: int,
    backwards: bool = False,
    cursor: str | None = None,
    filter: dict[str, Any] | None = None,
) -> list[str]:
    """Every id from `cursor` to the end (or start, backwards), in list order; checks pageInfo
    and cursors on the way."""
    pages: list[list[str]] = []
    while True:
        if backwards:
            got = await page(gql, kind, order=order, last=size, before=cursor, filter=filter)
        else:
            got = await page(gql, kind, order=order, first=size, after=cursor, filter=filter)
        info = got["pageInfo"]
        edges = got["edges"]
        assert len(edges) <= size
        if edges:
            assert info["startCursor"] == edges[0]["cursor"]
            assert info["endCursor"] == edges[-1]["cursor"]
        ahead = info["hasPreviousPage"] if backwards else info["hasNextPage"]
        behind = info["hasNextPage"] if backwards else info["hasPreviousPage"]
        # Behind us there is something exactly when we started from a cursor.
        assert behind is (cursor is not None), info
        pages.append(ids(got))
        if not ahead:
            break
        assert len(edges) == size, "a page that is not the last one is full"
        cursor = info["startCursor"] if backwards else info["endCursor"]
    if backwards:
        pages.reverse()
    return [gid for chunk in pages for gid in chunk]


@pytest.mark.parametrize("kind", ["residents", "events"])
async def test_every_ordering_both_ways(
    kind: str, gql: GraphQLClient, db: Database, crowd: None
) -> None:
    rows = await table(db, kind)
    for field, attr in ORDERINGS[kind].items():
        for direction in ["ASC", "DESC"]:
            order = {"field": field, "direction": direction}
            expected = in_order(rows, attr, direction == "DESC")
            for size in (4, 5):
                assert await walk(gql, kind, order, size=size) == expected, (order, size)
                assert await walk(gql, kind, order, size=size, backwards=True) == expected, (
                    order,
                    size,
                    "backwards",
                )


async def test_ties_are_broken_by_id(gql: GraphQLClient, db: Database, crowd: None) -> None:
    rows = await table(db, "residents")
    twins = sorted(r.id for r in rows if r.values["name"] == "张三")
    assert len(twins) == 3
    # Pages of one, so each tie is crossed by a cursor that holds the same name.
    order = {"field": "NAME", "direction": "DESC"}
    walked = await walk(gql, "residents", order, size=1)
    assert walked == in_order(rows, "name", True)
    positions = [walked.index(to_global_id("Resident", i)) for i in twins]
    assert positions == sorted(positions, reverse=True) and positions[0] - positions[2] == 2


def after_in_walk(row: tuple[Any, int], cursor: tuple[Any, int], *, descending: bool) -> bool:
    return row < cursor if descending else row > cursor


INSERT_CASES = [
    ("residents", "NAME", "ASC", False),
    ("residents", "NAME", "DESC", False),
    ("residents", "BIRTH_DATE", "ASC", False),
    ("residents", "BIRTH_DATE", "DESC", True),
    ("events", "REPORTED_AT", "ASC", False),
    ("events", "REPORTED_AT", "DESC", False),
    ("events", "ID", "DESC", False),
    ("events", "REPORTED_AT", "ASC", True),
]


@pytest.mark.parametrize("kind", ["residents", "events"])
async def test_inserts_between_pages_neither_repeat_nor_skip(
    kind: str, gql: GraphQLClient, db: Database, crowd: None
) -> None:
    for case_kind, field, direction, backwards in INSERT_CASES:
        if case_kind != kind:
            continue
        attr = ORDERINGS[kind][field]
        descending = direction == "DESC"
        order = {"field": field, "direction": direction}
        before = await table(db, kind)
        expected = in_order(before, attr, descending)

        first = await page(gql, kind, order=order, **({"last": 5} if backwards else {"first": 5}))
        seen = ids(first)
        edge = first["edges"][0] if backwards else first["edges"][-1]
        at = next(r for r in before if r.gid == edge["node"]["id"]).position(attr)
        cursor = edge["cursor"]

        # Rows sorting before, after and level with the cursor's row (the last one wins the
        # tie by its larger id).
        if kind == "residents" and attr == "name":
            for name in ["Aaron", "龥龥", at[0]]:
                await add_resident(db, name=name, born=date(1970, 1, 1))
        elif kind == "residents":
            for born in [date(1901, 1, 1), date(2020, 2, 29), at[0]]:
                await add_resident(db, name="新居民", born=born)
        else:
            for when in [T0 - timedelta(days=400), T0 + timedelta(days=400), T0]:
                await add_event(db, reported_at=when, updated_at=when)
        after = await table(db, kind)
        added = [r for r in after if r.gid not in {b.gid for b in before}]
        assert len(added) == 3

        rest = await walk(gql, kind, order, size=4, backwards=backwards, cursor=cursor)
        seen = rest + seen if backwards else seen + rest
        assert len(seen) == len(set(seen)), f"duplicates in {order}"
        assert [gid for gid in seen if gid not in {a.gid for a in added}] == expected, order
        # Keyset semantics for the new rows: those beyond the cursor show up, the others not.
        walking_down = descending != backwards
        for row in added:
            beyond = after_in_walk(row.position(attr), at, descending=walking_down)
            assert (row.gid in seen) is beyond, (order, backwards, row)


async def test_after_and_before_make_a_window(
    gql: GraphQLClient, db: Database, crowd: None
) -> None:
    order = {"field": "BIRTH_DATE", "direction": "ASC"}
    everything = await page(gql, "residents", order=order, first=100)
    cursors = [edge["cursor"] for edge in everything["edges"]]
    all_ids = ids(everything)
    window = dict(order=order, after=cursors[2], before=cursors[9])
    assert ids(await page(gql, "residents", first=100, **window)) == all_ids[3:9]
    head = await page(gql, "residents", first=2, **window)
    assert ids(head) == all_ids[3:5] and head["pageInfo"]["hasNextPage"] is True
    tail = await page(gql, "residents", last=2, **window)
    assert ids(tail) == all_ids[7:9] and tail["pageInfo"]["hasPreviousPage"] is True
    upto = await page(gql, "residents", order=order, first=2, before=cursors[1])
    assert ids(upto) == all_ids[:1] and upto["pageInfo"]["hasNextPage"] is False


async def test_total_count_follows_the_filter_not_the_page(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    async with db.reader() as session:
        tagged = set(
            (
                await session.scalars(
                    select(ResidentTag.resident_id).where(ResidentTag.tag == "elderly")
                )
            ).all()
        )
        grid_of = {r.id: r.grid_id for r in (await session.scalars(select(Resident))).all()}
        female = set(
            (await session.scalars(select(Resident.id).where(Resident.gender == "female"))).all()
        )
    s1 = {world.grids[c].id for c in ["G1", "G2", "G3"]}
    cases = [
        ({"inGrid": "S1"}, {i for i, g in grid_of.items() if g in s1}),
        ({"tag": "elderly"}, tagged),
        ({"tag": "elderly", "gender": "FEMALE"}, tagged & female),
        ({}, set(grid_of)),
    ]
    for filter, expected in cases:
        assert 0 < len(expected) < len(grid_of) or filter == {}
        first = await page(gql, "residents", first=2, filter=filter)
        assert first["totalCount"] == len(expected), filter
        later = await page(
            gql, "residents", first=2, after=first["pageInfo"]["endCursor"], filter=filter
        )
        assert later["totalCount"] == len(expected)
        walked = await walk(
            gql, "residents", {"field": "ID", "direction": "ASC"}, size=3, filter=filter
        )
        assert walked == [to_global_id("Resident", i) for i in sorted(expected)]


async def test_page_size_limits(gql: GraphQLClient, world: World) -> None:
    for args in ["first: 101", "last: 101", "first: 5000"]:
        error = await gql.error(f"{{ residents({args}) {{ totalCount }} }}")
        assert error["extensions"] == {"code": "PAGE_SIZE_LIMIT", "maximum": 100}
    error = await gql.error("{ residents(first: 2, last: 2) { totalCount } }")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    for args in ["first: -1", "last: -3"]:
        error = await gql.error(f"{{ events({args}) {{ totalCount }} }}")
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert len((await page(gql, "residents", first=100))["edges"]) == 12
    empty = await page(gql, "residents", first=0)
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is True


def forge(real_cursor: str, *, tag: Any = None, value: Any = ..., row_id: Any = ...) -> str:
    """A cursor like a real one with parts replaced: what a client could send."""
    parts = orjson.loads(base64.urlsafe_b64decode(real_cursor + "=" * (-len(real_cursor) % 4)))
    if tag is not None:
        parts[0] = tag
    if value is not ...:
        parts[1] = value
    if row_id is not ...:
        parts[2] = row_id
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


async def test_bad_cursors_are_refused(gql: GraphQLClient, db: Database, crowd: None) -> None:
    async def cursor_of(kind: str, field: str) -> str:
        got = await page(gql, kind, order={"field": field, "direction": "ASC"}, first=1)
        return got["pageInfo"]["endCursor"]  # type: ignore[no-any-return]

    name = await cursor_of("residents", "NAME")
    born = await cursor_of("residents", "BIRTH_DATE")
    resident_id = await cursor_of("residents", "ID")
    reported = await cursor_of("events", "REPORTED_AT")
    raw = lambda text: base64.urlsafe_b64encode(text).decode()  # noqa: E731
    refused: list[tuple[str, str, str]] = [
        # a cursor of another ordering, or of another list with an ordering of the same name
        ("residents", "BIRTH_DATE", name),
        ("residents", "NAME", born),
        ("events", "ID", resident_id),
        ("residents", "UPDATED_AT", reported),
        # garbage
        ("residents", "ID", "!!!"),
        ("residents", "ID", ""),
        ("residents", "ID", "bm90IGpzb24"),
        ("residents", "ID", raw(b"[1, 2]")),
        ("residents", "ID", raw(b'{"a": 1, "b": 2, "c": 3}')),
        ("residents", "ID", raw(b"\xff\xfe")),
        # the right ordering with values no cursor of ours holds
        ("residents", "BIRTH_DATE", forge(born, value="not a date")),
        ("residents", "BIRTH_DATE", forge(born, value=19800505)),
        ("residents", "NAME", forge(name, value=12)),
        ("residents", "NAME", forge(name, row_id="1")),
        ("residents", "NAME", forge(name, row_id=True)),
        ("residents", "NAME", forge(name, row_id=2**40)),
        ("residents", "ID", forge(resident_id, value="1")),
        ("residents", "ID", forge(resident_id, value=-(2**63))),
        ("events", "REPORTED_AT", forge(reported, value="2024-03-01T08:00:00")),
        ("events", "REPORTED_AT", forge(reported, value=None)),
    ]
    for kind, field, cursor in refused:
        for args in [{"first": 2, "after": cursor}, {"last": 2, "before": cursor}]:
            error = await gql.error(
                LISTS[kind], {"order": {"field": field, "direction": "ASC"}, **args}
            )
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "cursor"}, (
                kind,
                field,
                cursor,
                error,
            )
    # A cursor is a position, not a direction: the same ordering read the other way accepts
    # it. `name` is the smallest name, so descending nothing comes after it.
    descending = {"field": "NAME", "direction": "DESC"}
    assert (await page(gql, "residents", order=descending, first=2, after=name))["edges"] == []
    assert len((await page(gql, "residents", order=descending, last=2, before=name))["edges"]) == 2


def no_real_offset(statement: str, parameters: Any) -> bool:
    """SQLite's compiler writes `LIMIT ? OFFSET ?` with an offset of 0 on every LIMIT."""
    if "OFFSET" not in statement.upper():
        return True
    return bool(re.search(r"OFFSET \?\s*$", statement)) and list(parameters)[-1] == 0


async def test_pages_are_found_by_key_not_offset(gql: GraphQLClient, app: Any, crowd: None) -> None:
    for kind, field, column in [
        ("residents", "NAME", "residents.name"),
        ("residents", "BIRTH_DATE", "residents.birth_date"),
        ("events", "REPORTED_AT", "events.reported_at"),
    ]:
        order = {"field": field, "direction": "DESC"}
        first = await page(gql, kind, order=order, first=3)
        with captured_sql(app.state.db.engine.sync_engine) as statements:
            await gql.data(
                f"query($order: {kind[:-1].capitalize()}Order, $after: String) {{ {kind}(orderBy: $order, first: 3, after: $after) {{ edges {{ node {{ id }} }} }} }}",
                {"order": order, "after": first["pageInfo"]["endCursor"]},
            )
        pages = [(s, p) for s, p in statements if f"FROM {kind}" in s and "ORDER BY" in s]
        assert len(pages) == 1, statements
        statement, parameters = pages[0]
        assert no_real_offset(statement, parameters), statement
        ids = f"{kind}.id"
        where = rf"WHERE .*\({re.escape(column)}, {re.escape(ids)}\) <"
        assert re.search(where, statement), statement
        assert re.search(rf"ORDER BY {re.escape(column)} DESC, {re.escape(ids)} DESC", statement)
