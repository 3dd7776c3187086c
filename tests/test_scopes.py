"""Row scopes as SQL (hub/authz/scopes.py): each scope of each type returns exactly the rows it
means, on both databases, also inside statements that already join the tables it looks at."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from hub.authz import Access, Viewer
from hub.authz.profile import Level, Profile
from hub.authz.scopes import SCOPED_TYPES, supported_scopes
from hub.db import Database
from hub.models import Event, Grid, Member, Notice, Resident, member_grids, notice_grids
from hub.notices import service as notices
from tests.world import World


def access(type_name: str, scopes: set[str], viewer: Viewer) -> Access:
    profile = Profile(
        role="probe",
        version=0,
        fields={f"{type_name}.id": Level.FULL},
        scopes={type_name: frozenset(scopes)},
        operations=frozenset(),
        inputs=frozenset(),
        sensitive=frozenset(),
    )
    return Access(viewer, profile)


async def ids(db: Database, gate: Access, model: type[Any]) -> set[int]:
    async with db.reader() as session:
        return set(await session.scalars(gate.rows(select(model.id), model)))


def worker_of(world: World, *grid_codes: str, department: str | None = None) -> Viewer:
    return Viewer(
        subject="probe",
        role="probe",
        grid_codes=grid_codes,
        grid_paths=tuple(world.grids[code].path for code in grid_codes),
        department_code=department,
        department_id=world.departments[department].id if department else None,
    )


async def test_own_grids_means_the_subtree(db: Database, world: World) -> None:
    c1 = worker_of(world, "C1")  # C1 holds G1 and G2
    under_c1 = {world.grids[code].id for code in ("C1", "G1", "G2")}
    assert await ids(db, access("Grid", {"own_grids"}, c1), Grid) == under_c1
    expected = {r.id for r in world.residents if r.grid_id in under_c1}
    assert expected and await ids(db, access("Resident", {"own_grids"}, c1), Resident) == expected
    # Members are linked to grids through member_grids: members of G1 and G2 only.
    async with db.reader() as session:
        links = (await session.execute(select(member_grids))).all()
    members = {m for m, g in links if g in under_c1}
    assert members and await ids(db, access("Member", {"own_grids"}, c1), Member) == members
    # Nobody's grids: no rows at all, not every row.
    nobody = worker_of(world)
    assert await ids(db, access("Resident", {"own_grids"}, nobody), Resident) == set()


async def test_notices_in_own_grids_and_published(db: Database, world: World) -> None:
    async with db.transaction() as session:
        near = await notices.create(
            session, title="停水", body="b", department_code="health", grid_codes=["G1"]
        )
        far = await notices.create(
            session, title="停电", body="b", department_code="health", grid_codes=["G4"]
        )
        await notices.publish(session, notice_id=far.id)
    c1 = worker_of(world, "C1")
    assert await ids(db, access("Notice", {"own_grids"}, c1), Notice) == {near.id}
    assert await ids(db, access("Notice", {"published"}, c1), Notice) == {far.id}
    assert await ids(db, access("Notice", {"own_grids", "published"}, c1), Notice) == {
        near.id,
        far.id,
    }


async def test_own_department(db: Database, world: World) -> None:
    health = worker_of(world, department="health")
    async with db.transaction() as session:
        notice = await notices.create(
            session, title="义诊", body="b", department_code="health", grid_codes=["G1"]
        )
        await notices.create(
            session, title="巡逻", body="b", department_code="public_security", grid_codes=["G1"]
        )
    assert await ids(db, access("Notice", {"own_department"}, health), Notice) == {notice.id}
    # A viewer without a department sees nothing through this scope.
    assert await ids(db, access("Notice", {"own_department"}, worker_of(world)), Notice) == set()


async def test_scope_subselects_do_not_correlate_with_the_statement(
    db: Database, world: World
) -> None:
    """The loaders add scopes to statements that already join grids and member_grids: the
    scope's own sub-selects must not bind to those tables."""
    c1 = worker_of(world, "C1")
    gate = access("Member", {"own_grids"}, c1)
    statement = gate.rows(
        select(member_grids.c.grid_id, Member.id)
        .join(Member, Member.id == member_grids.c.member_id)
        .join(Grid, Grid.id == member_grids.c.grid_id),
        Member,
    )
    async with db.reader() as session:
        rows = set((await session.execute(statement)).all())
    under_c1 = {world.grids[code].id for code in ("G1", "G2")}
    assert {grid for grid, _ in rows} == under_c1
    gate = access("Notice", {"own_grids"}, c1)
    statement = gate.rows(
        select(Notice.id).join(notice_grids, notice_grids.c.notice_id == Notice.id), Notice
    )
    async with db.reader() as session:
        assert list(await session.scalars(statement)) == []


@pytest.mark.parametrize("type_name", sorted(SCOPED_TYPES))
async def test_a_type_the_role_cannot_see_has_no_rows(
    db: Database, world: World, type_name: str
) -> None:
    model = SCOPED_TYPES[type_name]
    hidden = Access(
        Viewer(subject="probe", role="probe"),
        Profile(
            role="probe",
            version=0,
            fields={},
            scopes={type_name: supported_scopes(model)},
            operations=frozenset(),
            inputs=frozenset(),
            sensitive=frozenset(),
        ),
    )
    id_column = getattr(model, "id", None) or model.__mapper__.primary_key[0]
    async with db.reader() as session:
        found = await session.scalars(hidden.rows(select(id_column), model))
    assert list(found) == []


async def test_events_by_department_and_grid(db: Database, world: World) -> None:
    from hub.events import service as events

    async with db.transaction() as session:
        ours = await events.report(
            session,
            report=events.EventReport(
                category="sanitation", title="a", grid_code="G1", reporter_system="12345"
            ),
            actor="t",
        )
        theirs = await events.report(
            session,
            report=events.EventReport(
                category="sanitation", title="b", grid_code="G4", reporter_system="12345"
            ),
            actor="t",
        )
        await events.transition(session, event_id=ours.id, action=events.Action.ACCEPT, actor="t")
        await events.transition(
            session,
            event_id=ours.id,
            action=events.Action.DISPATCH,
            actor="t",
            department_code="environment",
        )
    environment = worker_of(world, department="environment")
    assert await ids(db, access("Event", {"own_department"}, environment), Event) == {ours.id}
    c3 = worker_of(world, "C3")
    assert await ids(db, access("Event", {"own_grids"}, c3), Event) == {theirs.id}
