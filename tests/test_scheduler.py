"""Scheduled connector runs: due when the interval has passed, skipped while another process runs
the connector, and started with the server when it is asked to."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.app import create_app
from hub.config import Settings
from hub.connectors.definition import load_file
from hub.connectors.scheduler import Scheduler
from hub.db import Database
from hub.sync.locks import connector_lock
from hub.sync.models import SyncRun
from tests.connector_helpers import (
    household_definition,
    household_row,
    live_policy,
    write_household,
)
from tests.world import World


@pytest.fixture
def scheduled(tmp_path: Path) -> Path:
    folder = tmp_path / "connectors"
    folder.mkdir()
    data = write_household(tmp_path / "dump.csv", [household_row(n) for n in range(3)])
    household_definition(folder, data)
    path = folder / "household.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("page_size", 'schedule = "every 1h"\npage_size'),
        encoding="utf-8",
    )
    return folder


async def _runs(db: Database) -> list[SyncRun]:
    async with db.reader() as session:
        return list(await session.scalars(select(SyncRun).order_by(SyncRun.id)))


async def test_a_connector_runs_when_due_and_not_before(
    scheduled: Path, settings: Settings, db: Database, world: World
) -> None:
    definition = load_file(scheduled / "household.toml")
    assert definition.schedule_seconds == 3600
    scheduler = Scheduler(db, await live_policy(settings, db), {"household": definition})
    await scheduler.tick()
    await scheduler.tick()  # an hour has not passed
    runs = await _runs(db)
    assert [(r.trigger, r.status, r.created) for r in runs] == [("schedule", "ok", 3)]

    async with db.transaction() as session:
        run = await session.get(SyncRun, runs[0].id)
        assert run is not None
        run.started_at = run.started_at.replace(year=run.started_at.year - 1)
    async with connector_lock(db, "household"):
        await scheduler.tick()  # due, but another process is running it: skipped
    assert len(await _runs(db)) == 1
    await scheduler.tick()
    assert [r.unchanged + r.fetched for r in await _runs(db)][-1] == 0  # the file is done


async def test_the_server_runs_schedules_when_asked(
    scheduled: Path, settings: Settings, db: Database, world: World
) -> None:
    app: Any = create_app(replace(settings, connectors_dir=scheduled, run_connectors=True))
    async with app.router.lifespan_context(app):
        for _ in range(200):
            runs = await _runs(db)
            if runs and runs[0].status != "running":
                break
            await asyncio.sleep(0.05)
    assert [(r.trigger, r.status) for r in await _runs(db)] == [("schedule", "ok")]


def test_a_broken_definition_stops_the_server_starting(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "bad.toml").write_text('name = "bad"\nkind = "carrier-pigeon"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.toml:2: `kind` must be one of"):
        create_app(replace(settings, connectors_dir=tmp_path, run_connectors=True))
