"""`gridhub demo`: deterministic, realistic, consistent with the domain rules, never duplicated.

Every test here loads into databases of its own (a fresh SQLite file, or a fresh PostgreSQL
database), because the shared test database is emptied by other tests' fixtures.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, select
from sqlalchemy.engine import Row

from hub import validation
from hub.app import create_app
from hub.config import Settings
from hub.db import Database, create_engine
from hub.demo.loader import DatabaseNotEmpty, DatabaseNotMigrated, load, load_demo
from hub.events import service as events_service
from hub.events.states import OPEN_STATUSES, Action, Status, next_status
from hub.migrate import upgrade
from hub.models import (
    Base,
    Department,
    Event,
    EventTransition,
    Feedback,
    Grid,
    Member,
    Notice,
    Resident,
    ResidentExternalId,
    ResidentTag,
    member_grids,
    notice_grids,
)
from hub.residents import idcard
from hub.residents import service as residents_service
from tests.conftest import GraphQLClient, _drop_postgres_database, _fresh_postgres_database
from tests.policy_clients import TEST_SECRET, credentials

RESIDENTS = 300
SEED = 7
ANCHOR = date(2026, 11, 1)
MIDNIGHT = datetime(2026, 11, 1, tzinfo=UTC)

FreshDatabase = Callable[[], AbstractAsyncContextManager[str]]


@pytest.fixture(scope="module")
def fresh_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FreshDatabase:
    """A new, migrated, empty database on the backend under test."""

    @asynccontextmanager
    async def fresh() -> AsyncIterator[str]:
        if database_url.startswith("postgresql"):
            url = await _fresh_postgres_database()
            try:
                await upgrade(url)
                yield url
            finally:
                await _drop_postgres_database(url)
        else:
            path = tmp_path_factory.mktemp("demo") / "demo.db"
            url = f"sqlite+aiosqlite:///{path}"
            await upgrade(url)
            yield url

    return fresh


@pytest.fixture(scope="module")
async def loaded(fresh_database: FreshDatabase) -> AsyncIterator[str]:
    """One demo load shared by the read-only tests of this module."""
    async with fresh_database() as url:
        await load(url, residents=RESIDENTS, seed=SEED, anchor=ANCHOR, progress=False)
        yield url


async def rows(url: str, table: Table) -> list[Row[Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            statement = select(table).order_by(*table.primary_key.columns)
            return list((await connection.execute(statement)).all())
    finally:
        await engine.dispose()


async def fingerprint(url: str) -> dict[str, str]:
    """A hash of every table's rows, in primary-key order."""
    hashes = {}
    for table in Base.metadata.sorted_tables:
        content = repr([tuple(row) for row in await rows(url, table)])
        hashes[table.name] = hashlib.sha256(content.encode()).hexdigest()
    return hashes


# --- determinism, idempotency ---------------------------------------------------------------


async def test_the_same_seed_gives_the_same_rows_whatever_the_batch_size(
    loaded: str, fresh_database: FreshDatabase
) -> None:
    async with fresh_database() as other:
        # With the progress bar forced on (stderr is not a terminal here): it must not crash.
        await load(
            other, residents=RESIDENTS, seed=SEED, anchor=ANCHOR, batch_size=37, progress=True
        )
        assert await fingerprint(other) == await fingerprint(loaded)


async def test_the_anchor_moves_time_and_keeps_people_and_stories(
    loaded: str, fresh_database: FreshDatabase
) -> None:
    later = ANCHOR + timedelta(days=30)
    async with fresh_database() as other:
        await load(other, residents=RESIDENTS, seed=SEED, anchor=later, progress=False)
        people = [(r.name, r.id_number, r.address) for r in await rows(loaded, Resident.__table__)]
        moved = [(r.name, r.id_number, r.address) for r in await rows(other, Resident.__table__)]
        assert moved == people
        before, after = await rows(loaded, Event.__table__), await rows(other, Event.__table__)
        assert [(e.title, e.status) for e in after] == [(e.title, e.status) for e in before]
        assert {a.reported_at - b.reported_at for a, b in zip(after, before, strict=True)} == {
            timedelta(days=30)
        }


async def test_a_second_load_is_refused_and_reset_reloads_exactly(
    loaded: str, fresh_database: FreshDatabase
) -> None:
    expected = await fingerprint(loaded)
    with pytest.raises(DatabaseNotEmpty) as refused:
        await load_demo(loaded, residents=RESIDENTS, seed=SEED, anchor=ANCHOR, progress=False)
    assert refused.value.code == "DATABASE_NOT_EMPTY"
    assert "--reset" in refused.value.message
    assert await fingerprint(loaded) == expected

    async with fresh_database() as other:
        await load(other, residents=RESIDENTS + 50, seed=SEED + 1, anchor=ANCHOR, progress=False)
        assert await fingerprint(other) != expected  # another seed, other data
        await load(other, residents=RESIDENTS, seed=SEED, anchor=ANCHOR, reset=True, progress=False)
        assert await fingerprint(other) == expected  # nothing of the first load is left
        await _ids_continue_after_the_loaded_ones(other)


async def _ids_continue_after_the_loaded_ones(url: str) -> None:
    """The loader chose ids itself; new rows written through the services must not collide."""
    database = Database(url)
    try:
        async with database.transaction() as session:
            resident = await residents_service.create(
                session,
                changes=residents_service.ResidentChanges(
                    name="新居民",
                    id_number=idcard.make("110105", date(1990, 5, 17), 901),
                    address="翠湖街道翠湖东里1号楼1单元101室",
                    grid_code="G0101",
                ),
            )
            event = await events_service.report(
                session,
                report=events_service.EventReport(
                    category="other", title="新事件", grid_code="G0101", reporter_system="test"
                ),
                actor="test",
            )
        assert resident.id == RESIDENTS + 1
        assert event.id == len(await rows(url, Event.__table__))
    finally:
        await database.dispose()


async def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotMigrated):
        await load(f"sqlite:///{tmp_path / 'bare.db'}", residents=10, seed=SEED, progress=False)


def test_the_command_refuses_a_filled_database_until_reset(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    command = [sys.executable, "-m", "hub.cli", "demo", "--db", url, "--residents", "40"]
    command += ["--anchor", "2026-11-01"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120)

    first = run()
    assert first.returncode == 0, first.stderr
    assert "40 residents" in first.stdout
    again = run()
    assert again.returncode != 0
    assert "DATABASE_NOT_EMPTY" in again.stderr and "--reset" in again.stderr
    reset = run("--reset")
    assert reset.returncode == 0, reset.stderr
    assert timeless(reset.stdout) == timeless(first.stdout)  # the same data again


def timeless(summary: str) -> str:
    return re.sub(r" in [\d.]+ s|[\d,]+ rows/s", "", summary)


# --- the grid tree and its members ----------------------------------------------------------


async def test_grid_tree_has_four_levels_and_consistent_paths(loaded: str) -> None:
    grids = await rows(loaded, Grid.__table__)
    by_id = {grid.id: grid for grid in grids}
    levels = Counter(grid.level for grid in grids)
    assert levels == {"district": 1, "street": 5, "community": 12, "grid": 50}
    depth = {"district": 0, "street": 1, "community": 2, "grid": 3}
    for grid in grids:
        assert grid.depth == depth[grid.level]
        parent = by_id.get(grid.parent_id) if grid.parent_id else None
        assert (parent.path if parent else "/") + grid.code + "/" == grid.path
        if parent:
            assert depth[parent.level] == grid.depth - 1
        ring = grid.boundary["coordinates"][0]
        assert grid.boundary["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
        lngs, lats = [p[0] for p in ring], [p[1] for p in ring]
        assert min(lngs) < grid.center_lng < max(lngs) and min(lats) < grid.center_lat < max(lats)
        assert 115.4 < grid.center_lng < 117.6 and 39.4 < grid.center_lat < 41.1  # Beijing
        if parent:  # a child lies inside its parent
            outer = parent.boundary["coordinates"][0]
            assert min(p[0] for p in outer) <= min(lngs) and max(lngs) <= max(p[0] for p in outer)
            assert min(p[1] for p in outer) <= min(lats) and max(lats) <= max(p[1] for p in outer)


async def test_every_grid_has_one_to_three_named_members(loaded: str) -> None:
    grids = [g for g in await rows(loaded, Grid.__table__) if g.level == "grid"]
    members = {m.id: m for m in await rows(loaded, Member.__table__)}
    links = await rows(loaded, member_grids)
    per_grid = Counter(link.grid_id for link in links)
    assert all(1 <= per_grid[grid.id] <= 3 for grid in grids)
    per_member = Counter(link.member_id for link in links)
    assert max(per_member.values()) >= 2  # some members answer for several grids
    assert set(per_member) == set(members)
    assert {m.is_party_member for m in members.values()} == {True, False}
    assert all(validation.phone(m.phone) == m.phone and m.name for m in members.values())
    departments = {d.code for d in await rows(loaded, Department.__table__)}
    assert {"public_security", "health", "civil_affairs", "environment", "community_service"} <= (
        departments
    )


# --- residents ------------------------------------------------------------------------------


async def test_every_id_number_is_valid_and_agrees_with_gender_and_birth_date(
    loaded: str,
) -> None:
    residents = await rows(loaded, Resident.__table__)
    assert len(residents) == RESIDENTS
    assert [r.id for r in residents] == list(range(1, RESIDENTS + 1))
    for resident in residents:
        parsed = idcard.parse(resident.id_number)
        assert (parsed.gender, parsed.birth_date) == (resident.gender, resident.birth_date)
        assert resident.phone is None or validation.phone(resident.phone) == resident.phone
    assert len({r.id_number for r in residents}) == RESIDENTS
    assert Counter(r.gender for r in residents).keys() == {"male", "female"}


async def test_households_share_an_address_in_their_grid(loaded: str) -> None:
    residents = await rows(loaded, Resident.__table__)
    grids = {g.id: g for g in await rows(loaded, Grid.__table__)}
    households: dict[str, list[Row[Any]]] = defaultdict(list)
    for resident in residents:
        households[resident.household_code].append(resident)
    sizes = Counter(len(members) for members in households.values())
    assert max(sizes) >= 4 and sizes[1] > 0 and sizes[2] > 0
    for code, members in households.items():
        assert len({(m.address, m.grid_id) for m in members}) == 1
        grid = grids[members[0].grid_id]
        assert grid.level == "grid" and code.startswith(grid.code + "-")
        assert re.fullmatch(r".+街道.+\d+号楼\d+单元\d+室", members[0].address)
    addresses = {members[0].address for members in households.values()}
    assert len(addresses) == len(households)  # one flat, one household


async def test_tags_follow_age_and_household(loaded: str) -> None:
    residents = {r.id: r for r in await rows(loaded, Resident.__table__)}
    tags: dict[int, set[str]] = defaultdict(set)
    for row in await rows(loaded, ResidentTag.__table__):
        tags[row.resident_id].add(row.tag)
    household_size = Counter(r.household_code for r in residents.values())
    for resident in residents.values():
        born = resident.birth_date
        age = ANCHOR.year - born.year - ((ANCHOR.month, ANCHOR.day) < (born.month, born.day))
        assert ("elderly" in tags[resident.id]) == (age >= 60), resident.id
        if "living_alone" in tags[resident.id]:
            assert household_size[resident.household_code] == 1
    assert Counter(tag for found in tags.values() for tag in found)["elderly"] > 20
    assert any("low_income" in found for found in tags.values())
    external = await rows(loaded, ResidentExternalId.__table__)
    registry = {row.resident_id for row in external if row.system == "household_registry"}
    assert 0.85 * RESIDENTS < len(registry) < RESIDENTS  # most, not all


# --- events, notices, feedback --------------------------------------------------------------


async def test_events_walk_the_state_machine_into_every_status(loaded: str) -> None:
    events = {e.id: e for e in await rows(loaded, Event.__table__)}
    timelines: dict[int, list[Row[Any]]] = defaultdict(list)
    for line in await rows(loaded, EventTransition.__table__):
        timelines[line.event_id].append(line)
    assert {e.status for e in events.values()} == {s.value for s in Status}
    for event_id, event in events.items():
        lines = timelines[event_id]
        assert (lines[0].action, lines[0].from_status, lines[0].to_status) == (
            "report",
            None,
            "reported",
        )
        expected: dict[str, Any] = {"accepted_at": None, "resolved_at": None, "closed_at": None}
        status, version, department, changed = Status.REPORTED, 1, None, lines[0].at
        for before, line in itertools.pairwise(lines):
            assert line.at >= before.at
            assert line.from_status == status.value
            if line.action == Action.NOTE.value:
                assert line.to_status == status.value and line.note
                continue
            status = next_status(status, Action(line.action))  # raises on an illegal step
            assert line.to_status == status.value
            version, changed = version + 1, line.at
            if line.action == "dispatch":
                department = line.department_id
                assert department is not None
            if line.action in ("reject", "reopen"):
                assert line.note  # the service demands a reason
            if line.action == "accept" and expected["accepted_at"] is None:
                expected["accepted_at"] = line.at
            if line.action == "resolve":
                expected["resolved_at"] = line.at
            if line.action == "close":
                expected["closed_at"] = line.at
            if line.action == "reopen":
                expected["resolved_at"] = expected["closed_at"] = None
        assert event.status == status.value
        assert (event.version, event.department_id, event.updated_at) == (
            version,
            department,
            changed,
        )
        assert {k: getattr(event, k) for k in expected} == expected
        assert event.reported_at == lines[0].at <= lines[-1].at <= MIDNIGHT
        assert event.code.startswith(f"EV{event.reported_at:%Y%m%d}") and len(event.code) == 16


async def test_events_look_like_a_live_dispatch_board(loaded: str) -> None:
    events = await rows(loaded, Event.__table__)
    assert Counter(e.reporter_kind for e in events).keys() == {"member", "resident", "system"}
    assert "12345-hotline" in {e.reporter_system for e in events}
    for event in events:
        named = [event.reporter_member_id, event.reporter_resident_id, event.reporter_system]
        assert sum(value is not None for value in named) == 1
    open_ = [e for e in events if Status(e.status) in OPEN_STATUSES]
    assert max(e.reported_at for e in open_) > MIDNIGHT - timedelta(days=2)
    assert any(e.deadline and e.deadline < MIDNIGHT for e in open_)  # overdue
    assert any(e.deadline and e.deadline > MIDNIGHT for e in open_)  # still in time
    assert any(e.deadline is None for e in events)


async def test_event_and_public_text_carries_no_personal_data(loaded: str) -> None:
    residents = await rows(loaded, Resident.__table__)
    secrets = {r.name for r in residents} | {r.id_number for r in residents}
    secrets |= {r.phone for r in residents if r.phone} | {r.address for r in residents}
    texts = [e.title + " " + e.description for e in await rows(loaded, Event.__table__)]
    texts += [line.note for line in await rows(loaded, EventTransition.__table__)]
    texts += [n.title + " " + n.body for n in await rows(loaded, Notice.__table__)]
    texts += [f.content + " " + (f.response or "") for f in await rows(loaded, Feedback.__table__)]
    leaks = [(secret, text) for text in texts for secret in secrets if secret in text]
    assert not leaks


async def test_notices_and_feedback_in_every_state(loaded: str) -> None:
    notices = await rows(loaded, Notice.__table__)
    assert {n.status for n in notices} == {"draft", "published", "retracted"}
    for notice in notices:
        assert (notice.published_at is not None) == (notice.status != "draft")
        assert (notice.retracted_at is not None) == (notice.status == "retracted")
        assert notice.created_at <= (notice.published_at or notice.created_at) <= MIDNIGHT
        assert "\n" in notice.body  # Markdown, not one line
    scoped = {row.notice_id for row in await rows(loaded, notice_grids)}
    assert scoped == {n.id for n in notices}
    feedback = await rows(loaded, Feedback.__table__)
    assert {f.status for f in feedback} == {"submitted", "responded"}
    assert len({f.tracking_code for f in feedback}) == len(feedback)
    for item in feedback:
        assert re.fullmatch(r"FB[A-HJ-NP-Z2-9]{10}", item.tracking_code)
        answered = item.status == "responded"
        assert (item.response is not None, item.responder_department_id is not None) == (
            answered,
            answered,
        )
        if answered:
            assert item.created_at < item.responded_at <= MIDNIGHT


# --- the API over the loaded data ------------------------------------------------------------


async def test_the_api_pages_through_every_loaded_resident(loaded: str, tmp_path: Path) -> None:
    # The shipped policy; public_security reads every resident, ID numbers and tags in full.
    settings = Settings(database_url=loaded, jwt_secret=TEST_SECRET, data_dir=tmp_path / "data")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = credentials(settings, "public_security")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as http:
            gql = GraphQLClient(http)
            seen: list[str] = []
            after = None
            while True:
                page = (
                    await gql.data(
                        "query($after: String) { residents(first: 100, after: $after) { totalCount edges { node { id idNumber tags grid { code } } } pageInfo { hasNextPage endCursor } } }",
                        {"after": after},
                    )
                )["residents"]
                assert page["totalCount"] == RESIDENTS
                seen += [edge["node"]["idNumber"] for edge in page["edges"]]
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
            assert len(seen) == len(set(seen)) == RESIDENTS
            elderly = await gql.data(
                '{ residents(first: 1, filter: {inGrid: "S01", tag: "elderly"}) { totalCount } }'
            )
            in_s01 = {g.id for g in await rows(loaded, Grid.__table__) if "/S01/" in g.path}
            tagged = {
                t.resident_id
                for t in await rows(loaded, ResidentTag.__table__)
                if t.tag == "elderly"
            }
            expected = sum(
                1
                for r in await rows(loaded, Resident.__table__)
                if r.grid_id in in_s01 and r.id in tagged
            )
            assert elderly["residents"]["totalCount"] == expected > 0
