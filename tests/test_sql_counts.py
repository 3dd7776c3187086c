"""No N+1: a page of events with its nested objects runs a small, constant number of SQL
statements, however many events are on the page (every nested field loads through a
DataLoader batch)."""

from __future__ import annotations

from typing import Any

from hub.db import Database
from hub.events import service as events
from hub.events.states import Action
from hub.grids import service as grids
from hub.members.models import Member, member_grids
from hub.notices import service as notices
from hub.residents import service as residents
from hub.residents.models import ResidentExternalId
from tests.conftest import GraphQLClient
from tests.sql_capture import captured_sql
from tests.world import World, valid_id_number

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


async def statements_for(gql: GraphQLClient, app: Any, query: str) -> tuple[list[str], Any]:
    await gql.data(query)  # warm: first-connection queries are not the page's
    with captured_sql(app.state.db.engine.sync_engine) as statements:
        data = await gql.data(query)
    return [statement for statement, _ in statements], data


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


# --- the other lists and the grid-grouped statistics ------------------------------------------
#
# Each list is filled to at least 100 rows, then a page of 10 and a page of 100 must run the same
# small number of statements; the nested objects of every row are checked, so batching cannot
# hand a row another's objects.

SOME = 10
MANY = 100


async def statements_with(
    gql: GraphQLClient, app: Any, query: str, variables: dict[str, Any]
) -> tuple[list[str], Any]:
    await gql.data(query, variables)  # warm: first-connection queries are not the page's
    with captured_sql(app.state.db.engine.sync_engine) as statements:
        data = await gql.data(query, variables)
    return [statement for statement, _ in statements], data


def nodes(data: dict[str, Any], field: str) -> list[dict[str, Any]]:
    return [edge["node"] for edge in data[field]["edges"]]


def assert_constant(few: list[str], many: list[str], bound: int) -> None:
    assert len(many) == len(few), ("\n\n".join(few), "\n\n".join(many))
    assert len(many) <= bound, "\n\n".join(many)
    for statement in many:
        assert statement.lstrip().upper().startswith("SELECT"), statement


def resident_tags(n: int) -> list[str]:
    return ["elderly", "living_alone"] if n % 3 == 0 else []


def resident_external_ids(n: int) -> list[dict[str, str]]:
    if n % 2:
        return []
    return [
        {"system": "household", "externalId": f"H{n:03d}"},
        {"system": "health", "externalId": f"M{n:03d}"},
    ]


async def add_residents(db: Database, world: World) -> None:
    """Residents 12..99 after the world's 0..11, on the world's rule (name, grid, tags), and
    external ids for every even-numbered one."""
    async with db.transaction() as session:
        for n in range(len(world.residents), MANY):
            world.residents.append(
                await residents.create(
                    session,
                    changes=residents.ResidentChanges(
                        name=f"居民{n:02d}",
                        id_number=valid_id_number(n),
                        address=f"望京西园{n}号楼",
                        grid_code=GRIDS[n % 4],
                        tags=resident_tags(n),
                    ),
                )
            )
        for n, resident in enumerate(world.residents):
            for line in resident_external_ids(n):
                session.add(
                    ResidentExternalId(
                        resident_id=resident.id,
                        system=line["system"],
                        external_id=line["externalId"],
                    )
                )


RESIDENTS_PAGE = """query($n: Int!) { residents(first: $n) { edges { node {
  name tags externalIds { system externalId } grid { code parent { code } }
} } } }"""


async def test_a_page_of_residents_runs_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    await add_residents(db, world)
    few, _ = await statements_with(gql, app, RESIDENTS_PAGE, {"n": SOME})
    many, data = await statements_with(gql, app, RESIDENTS_PAGE, {"n": MANY})

    page = nodes(data, "residents")
    assert len(page) == MANY
    parents = {"G1": "C1", "G2": "C1", "G3": "C2", "G4": "C3"}
    for n, node in enumerate(page):
        assert node["name"] == f"居民{n:02d}"
        assert node["tags"] == resident_tags(n)
        assert node["externalIds"] == resident_external_ids(n)
        assert node["grid"] == {"code": GRIDS[n % 4], "parent": {"code": parents[GRIDS[n % 4]]}}
    # page + tags + external ids + grid + parent grid
    assert_constant(few, many, 5)


def member_department(n: int) -> str | None:
    return None if n % 6 == 5 else DEPARTMENTS[n % 5]


def member_grid_codes(n: int) -> list[str]:
    return sorted({GRIDS[n % 4], GRIDS[(n * 3) % 4]})


async def add_members(db: Database, world: World) -> None:
    """Members 4..99 after the world's four (网格员0..3, community_service, one grid each)."""
    async with db.transaction() as session:
        for n in range(len(world.members), MANY):
            department = member_department(n)
            member = Member(
                name=f"网格员{n}",
                phone=f"1380000{n:04d}",
                department_id=world.departments[department].id if department else None,
            )
            session.add(member)
            await session.flush()
            await session.execute(
                member_grids.insert(),
                [
                    {"member_id": member.id, "grid_id": world.grids[code].id}
                    for code in member_grid_codes(n)
                ],
            )
            world.members.append(member)


MEMBERS_PAGE = """query($n: Int!) { members(first: $n) { edges { node {
  name department { code } grids { code }
} } } }"""


async def test_a_page_of_members_runs_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    await add_members(db, world)
    few, _ = await statements_with(gql, app, MEMBERS_PAGE, {"n": SOME})
    many, data = await statements_with(gql, app, MEMBERS_PAGE, {"n": MANY})

    page = nodes(data, "members")
    assert len(page) == MANY
    for n, node in enumerate(page):
        assert node["name"] == f"网格员{n}"
        if n < 4:  # the world's members
            assert node["department"] == {"code": "community_service"}
            assert node["grids"] == [{"code": GRIDS[n]}]
        else:
            department = member_department(n)
            assert node["department"] == ({"code": department} if department else None)
            assert node["grids"] == [{"code": code} for code in member_grid_codes(n)]
    # page + department + grids
    assert_constant(few, many, 3)


def notice_scope(n: int) -> list[str]:
    # Grid paths sort like the codes here, and a notice's scope is ordered by path.
    return sorted({GRIDS[n % 4], GRIDS[(n + 2) % 4]} if n % 3 == 0 else {GRIDS[n % 4]})


async def add_notices(db: Database) -> None:
    async with db.transaction() as session:
        for n in range(MANY):
            await notices.create(
                session,
                title=f"通知{n}",
                body="正文",
                department_code=DEPARTMENTS[n % 5],
                grid_codes=notice_scope(n),
            )


NOTICES_PAGE = """query($n: Int!) { notices(first: $n) { edges { node {
  title department { code } scope { code }
} } } }"""


async def test_a_page_of_notices_runs_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    await add_notices(db)
    few, _ = await statements_with(gql, app, NOTICES_PAGE, {"n": SOME})
    many, data = await statements_with(gql, app, NOTICES_PAGE, {"n": MANY})

    page = nodes(data, "notices")
    assert len(page) == MANY
    for n, node in enumerate(page):
        assert node["title"] == f"通知{n}"
        assert node["department"] == {"code": DEPARTMENTS[n % 5]}
        assert node["scope"] == [{"code": code} for code in notice_scope(n)]
    # page + department + scope
    assert_constant(few, many, 3)


COMMUNITIES = ["C1", "C2", "C3"]


async def add_grids(db: Database, world: World, count: int) -> list[str]:
    """`count` more grids X00, X01... under the communities in turn; the world's member n % 4
    is responsible for every even one. Returns their codes."""
    codes = []
    async with db.transaction() as session:
        for n in range(count):
            code = f"X{n:02d}"
            parent = world.grids[COMMUNITIES[n % 3]]
            world.grids[code] = await grids.create(
                session, code=code, name=f"网格{code}", level="grid", parent=parent
            )
            if n % 2 == 0:
                await session.execute(
                    member_grids.insert(),
                    {"member_id": world.members[n % 4].id, "grid_id": world.grids[code].id},
                )
            codes.append(code)
    return codes


GRIDS_PAGE = """query($n: Int!) { grids(first: $n) { edges { node {
  code parent { code } members { name }
} } } }"""


async def test_a_page_of_grids_runs_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    world_grids = dict(world.grids)
    added = await add_grids(db, world, MANY - len(world_grids))
    few, _ = await statements_with(gql, app, GRIDS_PAGE, {"n": SOME})
    many, data = await statements_with(gql, app, GRIDS_PAGE, {"n": MANY})

    page = {node["code"]: node for node in nodes(data, "grids")}
    assert sorted(page) == sorted([*world_grids, *added])
    world_parents = {"D1": None, "S1": "D1", "S2": "D1", "C1": "S1", "C2": "S1", "C3": "S2"}
    world_parents |= {"G1": "C1", "G2": "C1", "G3": "C2", "G4": "C3"}
    for code, parent in world_parents.items():
        assert page[code]["parent"] == ({"code": parent} if parent else None)
    for n, code in enumerate(added):
        assert page[code]["parent"] == {"code": COMMUNITIES[n % 3]}
        assert page[code]["members"] == ([{"name": f"网格员{n % 4}"}] if n % 2 == 0 else [])
    for n, code in enumerate(GRIDS):
        assert page[code]["members"] == [{"name": f"网格员{n}"}]
    # page + parent + members
    assert_constant(few, many, 3)


async def report_in(db: Database, codes: list[str], per_grid: Any) -> None:
    async with db.transaction() as session:
        for n, code in enumerate(codes):
            for k in range(per_grid(n)):
                await events.report(
                    session,
                    report=events.EventReport(
                        category="sanitation",
                        title=f"事件{code}-{k}",
                        grid_code=code,
                        reporter_system="12345",
                    ),
                    actor="test",
                )


EVENT_COUNTS_BY_GRID = "{ stats { eventCounts(groupBy: [GRID]) { count grid { code } } } }"


async def test_event_counts_by_grid_run_a_constant_number_of_statements(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    def per_grid(n: int) -> int:
        return 1 + n % 3

    # Ten groups: one per grid of the world (events may sit on any level of the tree).
    first_codes = list(world.grids)
    assert len(first_codes) == SOME
    await report_in(db, first_codes, per_grid)
    few, data = await statements_with(gql, app, EVENT_COUNTS_BY_GRID, {})
    assert len(data["stats"]["eventCounts"]) == SOME

    # A hundred groups.
    more_codes = await add_grids(db, world, MANY - SOME)
    await report_in(db, more_codes, lambda n: per_grid(n + SOME))
    many, data = await statements_with(gql, app, EVENT_COUNTS_BY_GRID, {})

    counted = {row["grid"]["code"]: row["count"] for row in data["stats"]["eventCounts"]}
    expected = {code: per_grid(n) for n, code in enumerate(first_codes + more_codes)}
    assert counted == expected
    # the grouped count + the grids of the groups
    assert_constant(few, many, 2)
