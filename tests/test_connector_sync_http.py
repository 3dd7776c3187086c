"""Whole syncs against fake departmental systems over real HTTP on 127.0.0.1: a flaky health
system, a hotline's Open311 server, a dead system and its circuit breaker, and a sync killed
with SIGKILL halfway, then resumed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.config import Settings
from hub.connectors.definition import Definition, load_file
from hub.connectors.engine import replay_quarantine, run_connector
from hub.db import Database
from hub.models import Event, EventTransition, Resident, ResidentTag
from hub.sync.models import SyncLink, SyncQuarantine, SyncRun, SyncState
from tests.connector_helpers import (
    count,
    household_definition,
    household_row,
    id_number,
    live_policy,
    write_household,
)
from tests.fake_systems import FakeSystem, FaultPlan, make_requests
from tests.world import World, valid_id_number

TOKEN = "health-token-123"


@pytest.fixture
async def policy(settings: Settings, db: Database, world: World) -> Any:
    return await live_policy(settings, db)


def _definition(folder: Path, name: str, text: str) -> Definition:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_file(path)


def health_definition(folder: Path, url: str, *, page_size: int = 5) -> Definition:
    return _definition(
        folder,
        "health",
        f"""
        name = "health"
        kind = "rest"
        direction = "pull"
        entity = "resident"
        subject = "connector:health"
        page_size = {page_size}

        [source]
        url = "{url}/api/cursor"
        items = "data"
        pagination = "cursor"
        cursor_param = "cursor"
        next_cursor = "meta.next"
        since_param = "updated_since"
        since_field = "updated_at"
        retries = 8
        backoff_base = 0.01
        backoff_cap = 0.05

        [auth]
        scheme = "Bearer"
        secret_env = "TEST_HEALTH_TOKEN"

        [match]
        external_id = "id"
        natural_key = {{ idNumber = {{ from = "id_number", transform = "digits" }} }}
        version = "updated_at"

        [mapping]
        healthNotes = "notes"
        tags = {{ from = "care_tags", separator = ";" }}
        """,
    )


def health_records(numbers: list[int], *, minute: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": f"H{n:03d}",
            "id_number": valid_id_number(n),
            "notes": f"血压偏高，每月随访 #{n}",
            "care_tags": "chronic_illness;key_care" if n % 2 else "key_care",
            "updated_at": f"2026-11-0{1 + n % 9}T08:{minute + n:02d}:00Z",
        }
        for n in numbers
    ]


async def test_health_sync_through_faults_and_drift(
    tmp_path: Path, db: Database, policy: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HEALTH_TOKEN", TOKEN)
    records = health_records(list(range(12)))
    records[3]["unexpected"] = {"new": "field"}  # schema drift: a field nobody mapped
    del records[5]["notes"]  # and one the source stopped sending
    plan = FaultPlan(
        seed=3,
        script={2: "503", 3: "malformed"},
        error_rate=0.1,
        slow_rate=0.1,
        slow_seconds=0.05,
        overlap=2,
        shuffle=True,
        require_headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with FakeSystem(records=records, plan=plan, page_size=5) as fake:
        run = await run_connector(db, health_definition(tmp_path, fake.url), policy)
        assert run.status == "ok", run.error
        assert run.created == 0  # connector:health never creates residents
        assert run.updated == 12
        assert run.faults, "the fake's 5xx answers were retried and counted"
        async with db.reader() as session:
            notes = dict(
                (await session.execute(select(Resident.id_number, Resident.health_notes))).all()
            )
            assert notes[valid_id_number(4)] == "血压偏高，每月随访 #4"
            assert notes[valid_id_number(5)] is None  # missing field: left as it was
            tags = set(
                await session.scalars(
                    select(ResidentTag.tag).where(ResidentTag.resident_id == world.residents[1].id)
                )
            )
            assert tags == {"chronic_illness", "key_care"}
            # Duplicated (overlapping) pages linked each record once.
            assert await count(db, select(SyncLink)) == 12

        # Nothing changed at the source: the next incremental run writes nothing.
        again = await run_connector(db, health_definition(tmp_path, fake.url), policy)
        assert (again.created, again.updated) == (0, 0) and again.status == "ok"


async def test_health_record_without_a_resident_waits_in_quarantine(
    tmp_path: Path, db: Database, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HEALTH_TOKEN", TOKEN)
    newcomer = {
        "id": "H900",
        "id_number": id_number(900),
        "notes": "新生儿家访",
        "care_tags": "key_care",
        "updated_at": "2026-11-05T08:00:00Z",
    }
    with FakeSystem(records=[newcomer]) as fake:
        run = await run_connector(db, health_definition(tmp_path, fake.url), policy)
    assert (run.status, run.quarantined) == ("partial", 1)
    async with db.reader() as session:
        item = await session.scalar(select(SyncQuarantine))
    assert item is not None and item.code == "NO_MATCH" and item.payload == newcomer

    # The household registry brings the resident in; the health record is replayed onto them.
    data = write_household(tmp_path / "dump.csv", [household_row(900)])
    await run_connector(db, household_definition(tmp_path, data), policy)
    replay = await replay_quarantine(db, health_definition(tmp_path, "http://127.0.0.1:9"), policy)
    assert (replay.updated, replay.quarantined) == (1, 0)
    async with db.reader() as session:
        resident = await session.scalar(
            select(Resident).where(Resident.id_number == id_number(900))
        )
        assert resident is not None and resident.health_notes == "新生儿家访"
        assert resident.name == "住户900"  # the registry's name, untouched by health


async def test_dead_system_opens_the_circuit_breaker(
    tmp_path: Path, db: Database, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HEALTH_TOKEN", TOKEN)
    with FakeSystem(records=health_records([1]), plan=FaultPlan(status=503)) as fake:
        definition = health_definition(tmp_path, fake.url)
        runs = [await run_connector(db, definition, policy) for _ in range(3)]
        assert [r.status for r in runs] == ["failed"] * 3
        assert runs[0].faults.get("http_5xx", 0) > 0
        asked = len(fake.seen)
        refused = await run_connector(db, definition, policy)
        assert refused.status == "failed" and "circuit open" in (refused.error or "")
        assert len(fake.seen) == asked  # not even tried
    async with db.reader() as session:
        state = await session.get(SyncState, "health")
    assert state is not None and state.consecutive_failures == 3 and state.open_until is not None


def _hotline(folder: Path, url: str) -> Definition:
    return _definition(
        folder,
        "hotline",
        f"""
        name = "hotline"
        kind = "open311"
        direction = "pull"
        entity = "event"
        subject = "connector:hotline"
        system = "12345-hotline"
        page_size = 4

        [source]
        base_url = "{url}/open311/v2"
        retries = 6
        backoff_base = 0.01

        [match]
        external_id = "service_request_id"
        version = "updated_datetime"

        [mapping]
        title = {{ from = "service_name", required = true }}
        description = "description"
        gridCode = {{ from = "address_id", default = "G2" }}
        category = {{ from = "service_code", map = {{ "001" = "infrastructure" }} }}
        status = "status"
        statusNotes = "status_notes"
        """,
    )


async def test_hotline_requests_become_events_once(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    requests = make_requests(9)
    with FakeSystem(requests=requests, plan=FaultPlan(seed=5, error_rate=0.1)) as fake:
        run = await run_connector(db, _hotline(tmp_path, fake.url), policy)
        assert (run.status, run.created) == ("ok", 9), run.error
        again = await run_connector(db, _hotline(tmp_path, fake.url), policy, full=True)
        assert (again.created, again.updated, again.unchanged) == (0, 0, 9)

        # The hotline closes one request later: the event's timeline says so.
        fake.requests[2] = {
            **fake.requests[2],
            "status": "closed",
            "status_notes": "已修复",
            "updated_datetime": "2024-06-01T00:00:00Z",
        }
        update = await run_connector(db, _hotline(tmp_path, fake.url), policy)
        assert update.updated == 1 and update.created == 0
    async with db.reader() as session:
        events = list(
            await session.scalars(select(Event).where(Event.reporter_system == "12345-hotline"))
        )
        assert len(events) == 9 and {e.category for e in events} == {"infrastructure"}
        link = await session.scalar(select(SyncLink).where(SyncLink.external_id == "SR00003"))
        assert link is not None
        notes = list(
            await session.scalars(
                select(EventTransition.actor).where(
                    EventTransition.event_id == link.record_id, EventTransition.action == "note"
                )
            )
        )
    assert notes == ["connector:hotline"]


def _engine_env(settings: Settings, folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GRIDHUB_DATABASE_URL=settings.database_url,
        GRIDHUB_POLICY_DIR=str(settings.policy_dir),
        GRIDHUB_CONNECTORS_DIR=str(folder),
        GRIDHUB_DATA_DIR=str(settings.data_dir),
        TEST_HEALTH_TOKEN=TOKEN,
    )
    return env


async def _committed_pages(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.coalesce(func.max(SyncRun.fetched), 0))) or 0)


@pytest.mark.slow
async def test_kill_9_mid_sync_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, db: Database, policy: Any, settings: Settings
) -> None:
    # 40 registry records over a slow REST listing; the engine runs as `gridhub sync run` in
    # its own process, which is killed with SIGKILL once a few pages have committed.
    folder = tmp_path / "connectors"
    folder.mkdir()
    records = [
        dict(
            zip(
                [
                    "人员编号",
                    "姓名",
                    "公民身份号码",
                    "联系电话",
                    "现住址",
                    "户号",
                    "网格编码",
                    "更新时间",
                ],
                household_row(n, version=f"2026-11-01T08:{n:02d}:00Z"),
                strict=True,
            )
        )
        for n in range(40)
    ]
    definition_text = """
        name = "registry"
        kind = "rest"
        direction = "pull"
        entity = "resident"
        subject = "connector:household"
        page_size = 4

        [source]
        url = "{url}/api/page"
        items = "data"
        pagination = "page"
        page_param = "page"
        size_param = "page_size"
        since_param = "updated_since"
        since_field = "更新时间"

        [match]
        external_id = "人员编号"
        natural_key = ["idNumber"]
        version = "更新时间"

        [mapping]
        name = "姓名"
        idNumber = "公民身份号码"
        phone = "联系电话"
        address = "现住址"
        gridCode = "网格编码"
        """
    plan = FaultPlan(seed=1, slow_rate=1.0, slow_seconds=0.3)
    with FakeSystem(records=records, plan=plan, page_size=4, since_field="更新时间") as fake:
        (folder / "registry.toml").write_text(
            textwrap.dedent(definition_text).replace("{url}", fake.url), encoding="utf-8"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "sync",
            "run",
            "registry",
            env=_engine_env(settings, folder),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            for _ in range(600):
                if await _committed_pages(db) >= 12 or process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert process.returncode is None, "the sync ended before it could be killed"
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        killed_at = await _committed_pages(db)
        assert 12 <= killed_at < 40
        assert await count(db, select(Resident).where(Resident.name.like("住户%"))) == killed_at

        # Resume: the interrupted run is marked so, and the rest comes in exactly once.
        fake.plan = FaultPlan()
        resumed = await run_connector(db, load_file(folder / "registry.toml"), policy)
        assert resumed.status == "ok", resumed.error
        assert resumed.created == 40 - killed_at
    assert await count(db, select(Resident).where(Resident.name.like("住户%"))) == 40
    assert await count(db, select(SyncLink)) == 40
    async with db.reader() as session:
        statuses = list(await session.scalars(select(SyncRun.status).order_by(SyncRun.id)))
        duplicates = await session.scalar(
            select(func.count()).select_from(
                select(Resident.id_number)
                .group_by(Resident.id_number)
                .having(func.count() > 1)
                .subquery()
            )
        )
    assert statuses == ["interrupted", "ok"]
    assert duplicates == 0


async def test_a_hotline_that_may_not_name_itself_reports_nothing(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    from tests.test_connector_engine import ChangingPolicy

    # The engine sets reporterSystem itself, not the mapping: the policy still decides.
    changing = ChangingPolicy(
        policy, after=1, remove="p, connector:hotline, ReportEventInput.reporterSystem, set, allow"
    )
    with FakeSystem(requests=make_requests(3)) as fake:
        run = await run_connector(db, _hotline(tmp_path, fake.url), changing)
    assert (run.status, run.created, run.quarantined) == ("partial", 0, 3)
    async with db.reader() as session:
        codes = set(await session.scalars(select(SyncQuarantine.code)))
        assert await session.scalar(select(func.count()).select_from(Event)) == 0
    assert codes == {"FORBIDDEN_FIELD"}
