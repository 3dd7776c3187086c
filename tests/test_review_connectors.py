"""Found in review of the connectors: each test shows one problem the review found, and asserts
the behaviour the issue asks for (poison pages, lost updates in a listing, merged people, a
dropped query string, a caller's words in titles, departures not sent to a department)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.api.open311 import _report
from hub.api.open311_operations import Open311Operations
from hub.api.roles import role_schema
from hub.api.schema import build_schema
from hub.authz.profile import Level
from hub.config import Settings
from hub.connectors import webhooks
from hub.connectors.definition import Definition, load_file
from hub.connectors.engine import Progress, run_connector
from hub.connectors.webhooks import Subscription
from hub.db import Database
from hub.events import service as events
from hub.events.states import Action
from hub.models import Resident, ResidentExternalId
from hub.sync.models import SyncLink, SyncQuarantine, SyncRun, WebhookDelivery
from tests.connector_helpers import (
    household_definition,
    household_row,
    id_number,
    live_policy,
    write_household,
)
from tests.fake_systems import FakeSystem
from tests.live import in_process_server
from tests.policy_clients import access_as
from tests.world import World, valid_id_number

SECRET = b"review-webhook-secret-0123456789"


@pytest.fixture
async def policy(settings: Settings, db: Database, world: World) -> Any:
    return await live_policy(settings, db)


def _definition(folder: Path, name: str, text: str) -> Definition:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_file(path)


async def _runs(db: Database) -> list[SyncRun]:
    async with db.reader() as session:
        return list(await session.scalars(select(SyncRun).order_by(SyncRun.id)))


# --- data integrity: residents ------------------------------------------------------------------


async def test_two_external_ids_with_one_id_number_are_not_merged_silently(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    first = household_row(1)
    second = household_row(1)
    second[0] = "P999999"  # another person number in the registry...
    second[1] = "李四"  # ...another name, the same ID number: a data error at the source
    data = write_household(tmp_path / "dump.csv", [first, second])
    run = await run_connector(db, household_definition(tmp_path, data, page_size=1), policy)
    async with db.reader() as session:
        resident = (
            await session.scalars(select(Resident).where(Resident.id_number == id_number(1)))
        ).one()
        links = list(await session.scalars(select(SyncLink).where(SyncLink.entity == "resident")))
    # What one page does with the same pair: the second waits in the quarantine.
    assert run.quarantined == 1, "the second record should wait for a person to decide"
    assert resident.name == first[1]
    assert len(links) == 1


async def test_a_collision_in_the_pages_final_flush_does_not_kill_the_run(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    # Run 1 links P000001 to a resident.
    data = write_household(tmp_path / "dump.csv", [household_row(1)])
    assert (await run_connector(db, household_definition(tmp_path, data), policy)).status == "ok"
    # Run 2, one page: a new person with ID number N, then P000001 corrected to that same N.
    newcomer = household_row(2)
    corrected = household_row(1, version="2026-11-02T08:00:00+08:00")
    corrected[2] = newcomer[2]
    data = write_household(tmp_path / "dump2.csv", [newcomer, corrected])
    definition = household_definition(tmp_path, data)
    run = await run_connector(db, definition, policy)
    assert run.status == "partial"
    assert run.quarantined == 1
    assert all(r.status != "running" for r in await _runs(db))


async def test_an_external_id_of_100_characters_is_taken_or_quarantined(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    # (SQLite would store it whatever the column says; PostgreSQL refuses it: both quarantine it.)
    row = household_row(3)
    row[0] = "P" * 100
    data = write_household(tmp_path / "dump.csv", [row, household_row(4)])
    run = await run_connector(db, household_definition(tmp_path, data), policy)
    assert (run.status, run.created, run.quarantined) == ("partial", 1, 1)
    async with db.reader() as session:
        assert await session.scalar(
            select(ResidentExternalId.id).where(ResidentExternalId.external_id == "P000004")
        )
        item = await session.scalar(select(SyncQuarantine))
    assert item is not None and item.code == "INVALID_VALUE"


# --- data integrity: the REST since -------------------------------------------------------------


def health_definition(folder: Path, url: str, *, path: str = "/api/cursor") -> Definition:
    return _definition(
        folder,
        "health",
        f"""
        name = "health"
        kind = "rest"
        direction = "pull"
        entity = "resident"
        subject = "connector:health"
        page_size = 3

        [source]
        url = "{url}{path}"
        items = "data"
        pagination = "cursor"
        cursor_param = "cursor"
        next_cursor = "meta.next"
        since_param = "updated_since"
        since_field = "updated_at"
        page_size = 3
        retries = 0

        [match]
        external_id = "id"
        natural_key = {{ idNumber = {{ from = "id_number", transform = "digits" }} }}
        version = "updated_at"

        [mapping]
        healthNotes = "notes"
        """,
    )


def _health(n: int, stamp: str, notes: str) -> dict[str, Any]:
    return {"id": f"H{n:03d}", "id_number": valid_id_number(n), "notes": notes, "updated_at": stamp}


async def test_an_update_during_a_listing_to_a_page_already_read_is_not_lost(
    tmp_path: Path, db: Database, policy: Any, world: World
) -> None:
    # Listed by id (like most cursor APIs), six records updated a minute apart.
    records = [_health(n, f"2026-11-01T08:0{n}:00Z", f"第一次随访 #{n}") for n in range(6)]
    with FakeSystem(records=records, page_size=3) as fake:

        def between_pages(progress: Progress) -> None:
            if progress.pages == 1:
                # While page 2 is still to come: the source updates record 0 (page 1, read) and
                # then record 4 (page 2, not yet read).
                fake.records[0] = _health(0, "2026-11-01T09:00:00Z", "已转诊")
                fake.records[4] = _health(4, "2026-11-01T09:01:00Z", "第二次随访 #4")

        definition = health_definition(tmp_path, fake.url)
        first = await run_connector(db, definition, policy, progress=between_pages)
        assert first.status == "ok", first.error
        again = await run_connector(db, definition, policy)
        assert again.status == "ok", again.error
    async with db.reader() as session:
        resident = await session.get(Resident, world.residents[0].id)
    assert resident is not None
    assert resident.health_notes == "已转诊"


# --- the source's URL ---------------------------------------------------------------------------


async def test_the_query_string_of_the_source_url_is_sent(
    tmp_path: Path, db: Database, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-query-secret-42"
    records = [_health(n, f"2026-11-01T08:0{n}:00Z", f"随访 #{n}") for n in range(6)]
    with FakeSystem(records=records, page_size=3) as fake:
        # As an operator writes it: the whole URL, key included, from the environment.
        monkeypatch.setenv("REVIEW_HEALTH_URL", f"{fake.url}/api/cursor?access_token={key}")
        definition = _definition(
            tmp_path,
            "health",
            """
            name = "health"
            kind = "rest"
            direction = "pull"
            entity = "resident"
            subject = "connector:health"
            page_size = 3

            [source]
            url = "${REVIEW_HEALTH_URL}"
            items = "data"
            pagination = "cursor"
            next_cursor = "meta.next"
            page_size = 3
            retries = 0

            [match]
            external_id = "id"
            natural_key = { idNumber = { from = "id_number", transform = "digits" } }

            [mapping]
            healthNotes = "notes"
            """,
        )
        run = await run_connector(db, definition, policy)
        asked = [seen.params for seen in fake.hits("/api/cursor")]
    assert run.status == "ok", run.error
    assert asked and all(params.get("access_token") == key for params in asked), asked


# --- what leaves GridHub ------------------------------------------------------------------------


def test_an_open311_title_does_not_repeat_the_description(policy_dir: Path) -> None:
    subscriber = access_as("connector:public_security", policy_dir)
    # The premise, read off the policy: the subscriber reads titles, not descriptions.
    assert subscriber.level("Event.title") is Level.FULL
    assert subscriber.level("Event.description") is Level.HIDDEN
    hotline = access_as("connector:hotline", policy_dir)
    # The variables Open311 gives reportEvent, as the hotline's role schema takes them.
    schema = role_schema(build_schema(), hotline.profile)._schema
    prepared = Open311Operations.load().prepare("Open311CreateRequest", schema, frozenset())
    description = "我是张三，电话13800000000，3号楼楼道堆满垃圾\n请尽快处理"
    report = _report(
        prepared,
        hotline.viewer,
        {"service_code": "sanitation", "grid_code": "G1", "description": description},
    )
    assert report["description"] == description
    assert "13800000000" not in report["title"]
    assert "张三" not in report["title"]


@pytest.fixture
async def receiver() -> Any:
    bodies: list[dict[str, Any]] = []

    async def endpoint(request: Request) -> Response:
        bodies.append(json.loads(await request.body()))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])
    async with in_process_server(app) as address:
        yield bodies, f"http://{address}/hook"


async def _report_event(db: Database, title: str) -> int:
    async with db.transaction() as session:
        event = await events.report(
            session,
            report=events.EventReport(
                category="public_safety", title=title, grid_code="G1", reporter_system="test"
            ),
            actor="test",
        )
        return event.id


async def _act(db: Database, event_id: int, action: Action, **kw: Any) -> None:
    async with db.transaction() as session:
        await events.transition(session, event_id=event_id, action=action, actor="test", **kw)


def _subscriber(policy_dir: Path, world: World) -> Any:
    department = world.departments["public_security"]
    return access_as(
        "connector:public_security",
        policy_dir,
        department_code=department.code,
        department_id=department.id,
    )


async def test_a_redispatch_away_from_the_department_is_delivered_to_it(
    db: Database, world: World, policy_dir: Path, receiver: Any
) -> None:
    bodies, url = receiver
    event_id = await _report_event(db, "可疑人员")
    await _act(db, event_id, Action.ACCEPT)
    await _act(db, event_id, Action.DISPATCH, department_code="public_security")
    sub = Subscription(
        name="ps_review", url=url, secret=SECRET, subject="connector:public_security"
    )
    access = _subscriber(policy_dir, world)
    async with httpx.AsyncClient() as client:
        first = await webhooks.run_once(db, subscription=sub, access=access, client=client)
        assert first.delivered == 3  # report, accept, dispatch
        await _act(db, event_id, Action.DISPATCH, department_code="health")
        second = await webhooks.run_once(db, subscription=sub, access=access, client=client)
    async with db.reader() as session:
        rows = list(await session.scalars(select(WebhookDelivery)))
    assert len(rows) == 4, "the dispatch that took the event away was not sent"
    assert second.delivered == 1
    assert [b["action"] for b in bodies] == ["report", "accept", "dispatch", "dispatch"]


async def test_the_shipped_subscriber_hears_the_grid_and_department(
    db: Database, world: World, policy_dir: Path, receiver: Any
) -> None:
    bodies, url = receiver
    event_id = await _report_event(db, "打架斗殴")
    await _act(db, event_id, Action.ACCEPT)
    await _act(db, event_id, Action.DISPATCH, department_code="public_security")
    access = _subscriber(policy_dir, world)
    assert access.level("Event.grid") is Level.FULL and access.level("Grid.code") is Level.FULL
    sub = Subscription(
        name="ps_review", url=url, secret=SECRET, subject="connector:public_security"
    )
    async with httpx.AsyncClient() as client:
        report = await webhooks.run_once(db, subscription=sub, access=access, client=client)
    assert report.delivered == 3
    assert bodies[-1]["event"].get("gridCode") == "G1"
    assert bodies[-1]["event"].get("departmentCode") == "public_security"
