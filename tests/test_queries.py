"""The read side: node(id:), lookups by id or code, every list filter and orderings; expected
results are computed in Python from the rows themselves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.api.ids import to_global_id
from hub.db import Database, utcnow
from hub.events import service as events
from hub.events.models import Event
from hub.events.states import OPEN_STATUSES, Action
from hub.feedback import service as feedback
from hub.grids.models import Grid
from hub.notices import service as notices
from hub.residents.models import Resident, ResidentTag
from tests.conftest import GraphQLClient
from tests.world import World

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def gids(type_name: str, pks: Any) -> list[str]:
    return [to_global_id(type_name, pk) for pk in sorted(pks)]


async def listed(
    gql: GraphQLClient,
    field: str,
    args: str = "",
    variables: dict[str, tuple[str, Any]] | None = None,
) -> list[str]:
    """Ids of every row of a list (one page of at most 20), in list order. `variables` maps a
    name to its GraphQL type and value."""
    variables = variables or {}
    declared = ", ".join(f"${name}: {kind}" for name, (kind, _) in variables.items())
    params = f"({args})" if args else ""
    query = f"query{f'({declared})' if declared else ''} {{ {field}{params} {{ totalCount nodes {{ id }} }} }}"
    data = (await gql.data(query, {name: value for name, (_, value) in variables.items()}))[field]
    ids = [n["id"] for n in data["nodes"]]
    assert data["totalCount"] == len(ids)
    return ids


@pytest.fixture
async def scene(db: Database, world: World) -> dict[str, Any]:
    """Events in every grid with known statuses, categories, departments, times and deadlines;
    notices for a few grids; feedback."""
    plan = [
        # grid, category, severity, actions, department, reported_at, deadline offset (hours)
        ("G1", "sanitation", "low", [], None, T0, None),
        ("G1", "fire_hazard", "high", [Action.ACCEPT], None, T0 + timedelta(days=1), -5),
        (
            "G2",
            "sanitation",
            "medium",
            [Action.ACCEPT, Action.DISPATCH],
            "health",
            T0 + timedelta(days=2),
            -1,
        ),
        (
            "G3",
            "dispute",
            "critical",
            [Action.ACCEPT, Action.DISPATCH, Action.START],
            "civil_affairs",
            T0 + timedelta(days=3),
            48,
        ),
        ("G4", "dispute", "low", [Action.REJECT], None, T0 + timedelta(days=3), -2),
        (
            "G4",
            "health",
            "medium",
            [Action.ACCEPT, Action.DISPATCH, Action.START, Action.RESOLVE],
            "health",
            T0 + timedelta(days=10),
            -3,
        ),
        (
            "C1",
            "other",
            "high",
            [Action.ACCEPT, Action.DISPATCH],
            "environment",
            T0 + timedelta(days=40),
            None,
        ),
    ]
    async with db.transaction() as session:
        for grid, category, severity, actions, department, reported, deadline in plan:
            created = await events.report(
                session,
                report=events.EventReport(
                    category=category,
                    severity=severity,
                    title=f"{grid}-{category}",
                    grid_code=grid,
                    reporter_system="12345",
                ),
                actor="test",
            )
            for action in actions:
                await events.transition(
                    session,
                    event_id=created.id,
                    action=action,
                    actor="test",
                    note="理由",
                    department_code=department,
                )
            await session.execute(
                update(Event)
                .where(Event.id == created.id)
                .values(
                    reported_at=reported,
                    deadline=utcnow() + timedelta(hours=deadline) if deadline else None,
                )
            )
        made = {}
        for key, grids_, status in [
            ("c1", ["C1"], "published"),
            ("g4", ["G4"], "draft"),
            ("s2_g1", ["S2", "G1"], "published"),
            ("d1", ["D1"], "retracted"),
        ]:
            notice = await notices.create(
                session,
                title=key,
                body="内容",
                department_code="community_service" if key != "g4" else "health",
                grid_codes=grids_,
            )
            if status != "draft":
                await notices.publish(session, notice_id=notice.id)
            if status == "retracted":
                await notices.retract(session, notice_id=notice.id)
            made[key] = notice.id
        tracked = []
        for kind, grid in [("complaint", "G1"), ("suggestion", "G4"), ("complaint", None)]:
            item = await feedback.submit(session, kind=kind, content="意见", grid_code=grid)
            tracked.append((item.id, item.tracking_code))
        await feedback.respond(
            session, tracking_code=tracked[0][1], response="已处理", department_code="health"
        )
    return {"notices": made, "feedback": tracked}


async def test_node_fetches_every_type(
    gql: GraphQLClient, db: Database, world: World, scene: dict[str, Any]
) -> None:
    async with db.reader() as session:
        event_pk = await session.scalar(select(Event.id).where(Event.title == "G1-fire_hazard"))
    objects = [
        ("Grid", world.grids["C2"].id, "... on Grid { code }", {"code": "C2"}),
        (
            "Department",
            world.departments["health"].id,
            "... on Department { code }",
            {"code": "health"},
        ),
        ("Member", world.members[1].id, "... on Member { name }", {"name": "网格员1"}),
        ("Resident", world.residents[3].id, "... on Resident { name }", {"name": "居民03"}),
        ("Event", event_pk, "... on Event { title }", {"title": "G1-fire_hazard"}),
        ("Notice", scene["notices"]["g4"], "... on Notice { title }", {"title": "g4"}),
        (
            "Feedback",
            scene["feedback"][1][0],
            "... on Feedback { trackingCode }",
            {"trackingCode": scene["feedback"][1][1]},
        ),
    ]
    for type_name, pk, fragment, fields in objects:
        gid = to_global_id(type_name, pk)
        data = await gql.data(f'{{ node(id: "{gid}") {{ __typename id {fragment} }} }}')
        assert data["node"] == {"__typename": type_name, "id": gid, **fields}


async def test_lookups(gql: GraphQLClient, world: World, scene: dict[str, Any]) -> None:
    g2 = to_global_id("Grid", world.grids["G2"].id)
    by_code = await gql.data(
        '{ grid(code: "G2") { id code name level depth path parent { code } } }'
    )
    by_id = await gql.data(
        f'{{ grid(id: "{g2}") {{ id code name level depth path parent {{ code }} }} }}'
    )
    assert by_code == by_id
    assert by_code["grid"] == {
        "id": g2,
        "code": "G2",
        "name": "第2网格",
        "level": "grid",
        "depth": 3,
        "path": ["D1", "S1", "C1", "G2"],
        "parent": {"code": "C1"},
    }
    code = (await gql.data("{ events(first: 1) { nodes { id code } } }"))["events"]["nodes"][0]
    assert (await gql.data(f'{{ event(code: "{code["code"]}") {{ id }} }}'))["event"]["id"] == code[
        "id"
    ]
    assert (await gql.data(f'{{ event(id: "{code["id"]}") {{ code }} }}'))["event"]["code"] == code[
        "code"
    ]
    department = await gql.data('{ department(code: "civil_affairs") { id name nameEn } }')
    assert department["department"] == {
        "id": to_global_id("Department", world.departments["civil_affairs"].id),
        "name": "民政",
        "nameEn": "Civil Affairs",
    }
    # Tracking codes are read aloud and typed from paper: case and spaces do not matter.
    feedback_id, tracking = scene["feedback"][0]
    for typed in [tracking, tracking.lower(), f"  {tracking.lower()} "]:
        data = await gql.data(
            "query($c: String!) { feedback(trackingCode: $c) { id status response responder { code } } }",
            {"c": typed},
        )
        assert data["feedback"] == {
            "id": to_global_id("Feedback", feedback_id),
            "status": "RESPONDED",
            "response": "已处理",
            "responder": {"code": "health"},
        }
    member = to_global_id("Member", world.members[2].id)
    data = await gql.data(
        f'{{ member(id: "{member}") {{ name isPartyMember department {{ code }} grids {{ code }} }} }}'
    )
    assert data["member"] == {
        "name": "网格员2",
        "isPartyMember": True,
        "department": {"code": "community_service"},
        "grids": [{"code": "G3"}],
    }
    grid_members = await gql.data('{ grid(code: "G3") { members { id } } }')
    assert grid_members["grid"]["members"] == [{"id": member}]


async def resident_rows(db: Database) -> list[tuple[Resident, str, set[str]]]:
    async with db.reader() as session:
        found = (await session.scalars(select(Resident))).all()
        paths = {g.id: g.path for g in (await session.scalars(select(Grid))).all()}
        tags: dict[int, set[str]] = {}
        for rid, tag in (
            await session.execute(select(ResidentTag.resident_id, ResidentTag.tag))
        ).all():
            tags.setdefault(rid, set()).add(tag)
    return [(r, paths[r.grid_id], tags.get(r.id, set())) for r in found]


async def test_resident_filters(gql: GraphQLClient, db: Database, world: World) -> None:
    rows = await resident_rows(db)
    # Two residents share a household.
    async with db.transaction() as session:
        await session.execute(
            update(Resident)
            .where(Resident.id.in_([world.residents[4].id, world.residents[8].id]))
            .values(household_code="HH-0408")
        )
    boundary = world.residents[5].birth_date
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"inGrid": "S1"}, lambda r, p, t: "/S1/" in p),
        ({"inGrid": "C1"}, lambda r, p, t: "/C1/" in p),
        ({"inGrid": "G4"}, lambda r, p, t: p.endswith("/G4/")),
        ({"inGrid": "D1"}, lambda r, p, t: True),
        ({"tag": "elderly"}, lambda r, p, t: "elderly" in t),
        ({"tag": "disabled"}, lambda r, p, t: False),
        ({"gender": "MALE"}, lambda r, p, t: r.gender == "male"),
        (
            {"gender": "FEMALE", "inGrid": "S1"},
            lambda r, p, t: r.gender == "female" and "/S1/" in p,
        ),
        ({"bornAfter": boundary.isoformat()}, lambda r, p, t: r.birth_date >= boundary),
        ({"bornBefore": boundary.isoformat()}, lambda r, p, t: r.birth_date < boundary),
        (
            {"bornAfter": "1955-01-01", "bornBefore": "1960-01-01"},
            lambda r, p, t: date(1955, 1, 1) <= r.birth_date < date(1960, 1, 1),
        ),
        (
            {"householdCode": "HH-0408"},
            lambda r, p, t: r.id in {world.residents[4].id, world.residents[8].id},
        ),
        (
            {"idNumber": world.residents[7].id_number.lower()},
            lambda r, p, t: r.id == world.residents[7].id,
        ),
        (
            {"tag": "living_alone", "inGrid": "C1", "gender": "MALE"},
            lambda r, p, t: "living_alone" in t and "/C1/" in p and r.gender == "male",
        ),
    ]
    for filter, keep in cases:
        expected = gids("Resident", [r.id for r, p, t in rows if keep(r, p, t)])
        got = await listed(gql, "residents", "filter: $f", {"f": ("ResidentFilter", filter)})
        assert got == expected, filter
    # The boundary resident is in exactly one of the two halves.
    assert to_global_id("Resident", world.residents[5].id) in await listed(
        gql, "residents", f'filter: {{bornAfter: "{boundary}"}}'
    )


async def event_rows(db: Database) -> list[tuple[Event, str]]:
    async with db.reader() as session:
        found = (await session.scalars(select(Event))).all()
        paths = {g.id: g.path for g in (await session.scalars(select(Grid))).all()}
    return [(e, paths[e.grid_id]) for e in found]


async def test_event_filters(
    gql: GraphQLClient, db: Database, world: World, scene: dict[str, Any]
) -> None:
    rows = await event_rows(db)
    now = utcnow()
    open_ = {s.value for s in OPEN_STATUSES}
    health = world.departments["health"].id
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"inGrid": "C1"}, lambda e, p: "/C1/" in p),
        ({"inGrid": "S2"}, lambda e, p: "/S2/" in p),
        ({"status": ["REPORTED"]}, lambda e, p: e.status == "reported"),
        (
            {"status": ["DISPATCHED", "IN_PROGRESS", "REJECTED"]},
            lambda e, p: e.status in {"dispatched", "in_progress", "rejected"},
        ),
        (
            {"category": ["SANITATION", "DISPUTE"]},
            lambda e, p: e.category in {"sanitation", "dispute"},
        ),
        ({"severity": ["LOW", "CRITICAL"]}, lambda e, p: e.severity in {"low", "critical"}),
        ({"departmentCode": "health"}, lambda e, p: e.department_id == health),
        (
            {"overdue": True},
            lambda e, p: e.deadline is not None and e.deadline < now and e.status in open_,
        ),
        (
            {"reportedAfter": (T0 + timedelta(days=2)).isoformat()},
            lambda e, p: e.reported_at >= T0 + timedelta(days=2),
        ),
        (
            {"reportedBefore": (T0 + timedelta(days=3)).isoformat()},
            lambda e, p: e.reported_at < T0 + timedelta(days=3),
        ),
        # The same instant written in Beijing time.
        (
            {"reportedAfter": "2024-06-04T08:00:00+08:00"},
            lambda e, p: e.reported_at >= T0 + timedelta(days=3),
        ),
        (
            {"inGrid": "S1", "status": ["DISPATCHED"], "departmentCode": "health"},
            lambda e, p: "/S1/" in p and e.status == "dispatched" and e.department_id == health,
        ),
    ]
    for filter, keep in cases:
        expected = gids("Event", [e.id for e, p in rows if keep(e, p)])
        assert 0 < len(expected) < len(rows), filter
        got = await listed(gql, "events", "filter: $f", {"f": ("EventFilter", filter)})
        assert got == expected, filter
    # The overdue flag on each event agrees with the filter.
    data = await gql.data("{ events(first: 100) { nodes { id overdue } } }")
    overdue = await listed(gql, "events", "filter: {overdue: true}")
    assert len(overdue) == 2  # the rejected and the resolved one are past deadline but closed out
    assert [n["id"] for n in data["events"]["nodes"] if n["overdue"]] == overdue
    body = await gql("{ events(filter: {overdue: false}) { totalCount } }")
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "overdue"}


async def test_member_filters(gql: GraphQLClient, world: World) -> None:
    m = [to_global_id("Member", member.id) for member in world.members]
    cases = [
        ('filter: {inGrid: "S1"}', m[:3]),
        ('filter: {inGrid: "C3"}', m[3:]),
        ('filter: {inGrid: "G2"}', [m[1]]),
        ("filter: {isPartyMember: true}", [m[0], m[2]]),
        ('filter: {isPartyMember: false, inGrid: "C1"}', [m[1]]),
        ('filter: {departmentCode: "community_service"}', m),
        ('filter: {departmentCode: "health"}', []),
    ]
    for args, expected in cases:
        assert await listed(gql, "members", args) == expected, args


async def test_notice_filters(gql: GraphQLClient, world: World, scene: dict[str, Any]) -> None:
    n = {k: to_global_id("Notice", v) for k, v in scene["notices"].items()}
    cases = [
        ("filter: {status: [PUBLISHED]}", [n["c1"], n["s2_g1"]]),
        ("filter: {status: [DRAFT, RETRACTED]}", [n["g4"], n["d1"]]),
        # Addressed to the grid or any grid below it.
        ('filter: {inGrid: "C1"}', [n["c1"], n["s2_g1"]]),
        ('filter: {inGrid: "S2"}', [n["g4"], n["s2_g1"]]),
        ('filter: {inGrid: "C2"}', []),
        ('filter: {inGrid: "D1"}', list(n.values())),
        ('filter: {inGrid: "S2", status: [PUBLISHED]}', [n["s2_g1"]]),
        ('filter: {departmentCode: "health"}', [n["g4"]]),
        ("orderBy: {field: CREATED_AT, direction: DESC}", list(reversed(n.values()))),
    ]
    for args, expected in cases:
        assert await listed(gql, "notices", args) == expected, args
    scope = await gql.data(
        f'{{ notice(id: "{n["s2_g1"]}") {{ status department {{ code }} scope {{ code }} }} }}'
    )
    assert scope["notice"] == {
        "status": "PUBLISHED",
        "department": {"code": "community_service"},
        "scope": [{"code": "G1"}, {"code": "S2"}],  # in tree order: /D1/S1/C1/G1/ < /D1/S2/
    }


async def test_feedback_filters(gql: GraphQLClient, world: World, scene: dict[str, Any]) -> None:
    f = [to_global_id("Feedback", pk) for pk, _ in scene["feedback"]]
    cases = [
        ("filter: {status: [RESPONDED]}", [f[0]]),
        ("filter: {status: [SUBMITTED]}", f[1:]),
        ("filter: {kind: [COMPLAINT]}", [f[0], f[2]]),
        ('filter: {inGrid: "S2"}', [f[1]]),
        ('filter: {inGrid: "D1"}', f[:2]),  # the one without a grid is in no grid
        ("", f),
    ]
    for args, expected in cases:
        assert await listed(gql, "feedbackList", args) == expected, args


async def test_grid_filters_and_orderings(gql: GraphQLClient, db: Database, world: World) -> None:
    g = {code: to_global_id("Grid", grid.id) for code, grid in world.grids.items()}
    cases = [
        ('filter: {level: "community"}', [g["C1"], g["C2"], g["C3"]]),
        ('filter: {parentCode: "C1"}', [g["G1"], g["G2"]]),
        ('filter: {inGrid: "S1"}', [g[c] for c in ["S1", "C1", "G1", "G2", "C2", "G3"]]),
        ('filter: {inGrid: "S1", level: "grid"}', [g["G1"], g["G2"], g["G3"]]),
        ("", [g[c] for c in ["D1", "S1", "C1", "G1", "G2", "C2", "G3", "S2", "C3", "G4"]]),
        ("orderBy: {field: CODE}", [g[c] for c in sorted(g)]),
        ("orderBy: {field: CODE, direction: DESC}", [g[c] for c in sorted(g, reverse=True)]),
        (
            "orderBy: {field: PATH, direction: DESC}",
            [g[c] for c in reversed(["D1", "S1", "C1", "G1", "G2", "C2", "G3", "S2", "C3", "G4"])],
        ),
    ]
    for args, expected in cases:
        assert await listed(gql, "grids", args) == expected, args
    departments = await gql.data("{ departments { nodes { code } } }")
    assert [d["code"] for d in departments["departments"]["nodes"]] == [
        "public_security",
        "health",
        "civil_affairs",
        "environment",
        "community_service",
    ]


async def test_resident_orderings(gql: GraphQLClient, db: Database, world: World) -> None:
    rows = [r for r, _, _ in await resident_rows(db)]
    for field, attr in [
        ("NAME", "name"),
        ("BIRTH_DATE", "birth_date"),
        ("UPDATED_AT", "updated_at"),
        ("ID", "id"),
    ]:
        for direction in ["ASC", "DESC"]:
            expected = [
                to_global_id("Resident", r.id)
                for r in sorted(
                    rows, key=lambda r: (getattr(r, attr), r.id), reverse=direction == "DESC"
                )
            ]
            got = await listed(
                gql, "residents", f"orderBy: {{field: {field}, direction: {direction}}}"
            )
            assert got == expected, (field, direction)


async def test_resident_updated_at_moves_when_only_tags_change(
    gql: GraphQLClient, world: World
) -> None:
    rid = to_global_id("Resident", world.residents[0].id)
    update = (
        "mutation($id: ID!, $tags: [String!]!) { updateResident(id: $id, input: {tags: $tags}) "
        "{ id } }"
    )
    read = "query($id: ID!) { resident(id: $id) { tags updatedAt } }"

    async def state() -> tuple[list[str], datetime]:
        resident = (await gql.data(read, {"id": rid}))["resident"]
        return sorted(resident["tags"]), datetime.fromisoformat(resident["updatedAt"])

    tags, before = await state()
    changed = sorted({"pregnant", "veteran"} ^ set(tags))
    await gql.data(update, {"id": rid, "tags": changed})
    tags_after, after = await state()
    assert tags_after == changed and after > before
    # The same tags again change nothing, so the resident was not updated.
    await gql.data(update, {"id": rid, "tags": [" " + t for t in reversed(changed)]})
    assert await state() == (changed, after)
    # Ordering by UPDATED_AT sees the change: the resident is now the most recently updated.
    newest = await listed(gql, "residents", "orderBy: {field: UPDATED_AT, direction: DESC}")
    assert newest[0] == rid


def test_node_ids_name_the_graphql_type() -> None:
    # Node.id builds the global id from the ORM class name; node(id:) maps it back through
    # NODE_MODELS. Both only agree while each model is named like its GraphQL type.
    from hub.api.queries import NODE_MODELS
    from hub.api.schema import build_schema

    schema = build_schema()
    for type_name, model in NODE_MODELS.items():
        assert model.__name__ == type_name
        assert "Node" in [i.name for i in schema._schema.get_type(type_name).interfaces]  # type: ignore[union-attr]
