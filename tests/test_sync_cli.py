"""`gridhub sync`: list, run (with its exit codes), status and replay, as an operator uses them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hub.commands.sync import EXIT_BUSY, EXIT_FAILED, sync_group
from hub.config import Settings
from hub.db import Database
from hub.sync.locks import connector_lock
from tests.connector_helpers import household_definition, household_row, write_household
from tests.world import World


def _env(settings: Settings, folder: Path) -> dict[str, str]:
    return {
        "GRIDHUB_DATABASE_URL": settings.database_url,
        "GRIDHUB_POLICY_DIR": str(settings.policy_dir),
        "GRIDHUB_CONNECTORS_DIR": str(folder),
        "GRIDHUB_DATA_DIR": str(settings.data_dir),
    }


async def gridhub_sync(*args: str, env: dict[str, str]) -> Result:
    # The commands run their own event loop (asyncio.run): off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, sync_group, list(args), env=env)


def test_list_shows_the_shipped_connectors() -> None:
    result = CliRunner().invoke(sync_group, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("household", "health", "hotline-12345", "public-security"):
        assert name in result.output
    assert "connector:health" in result.output


async def test_run_status_and_replay(
    tmp_path: Path, settings: Settings, db: Database, world: World
) -> None:
    folder = tmp_path / "connectors"
    folder.mkdir()
    rows = [household_row(n) for n in range(5)]
    rows[3][6] = "G404"  # no such grid yet
    data = write_household(tmp_path / "dump.csv", rows)
    household_definition(folder, data)
    env = _env(settings, folder)

    result = await gridhub_sync("run", "household", env=env)
    assert result.exit_code == 0, result.output
    assert "run 1 partial: fetched 5, created 4, updated 0, unchanged 0, quarantined 1" in (
        result.output
    )

    status = await gridhub_sync("status", "household", env={**env, "COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "quarantine 1 open" in status.output and "partial" in status.output

    # The grid is created; replaying the quarantined record now succeeds.
    from hub.grids import service as grids

    async with db.transaction() as session:
        await grids.create(
            session, code="G404", name="新网格", level="grid", parent=world.grids["C1"], center=None
        )
    replay = await gridhub_sync("replay", "household", env=env)
    assert replay.exit_code == 0, replay.output
    assert "created 1" in replay.output and "quarantined 0" in replay.output


async def test_exit_codes_for_busy_refused_and_broken(
    tmp_path: Path, settings: Settings, db: Database, world: World
) -> None:
    folder = tmp_path / "connectors"
    folder.mkdir()
    data = write_household(tmp_path / "dump.csv", [household_row(1)])
    household_definition(folder, data)
    env = _env(settings, folder)

    async with connector_lock(db, "household"):
        busy = await gridhub_sync("run", "household", env=env)
    assert busy.exit_code == EXIT_BUSY, busy.output

    household_definition(folder, data, name="rogue", subject="connector:health")
    refused = await gridhub_sync("run", "rogue", env=env)
    assert refused.exit_code == EXIT_FAILED
    assert "refused" in refused.output and "ResidentInput.idNumber" in refused.output

    (folder / "zz-broken.toml").write_text('name = "zz-broken"\nkind = "fax"\n', encoding="utf-8")
    broken = await gridhub_sync("run", "household", env=env)
    assert broken.exit_code != 0
    assert f"{folder / 'zz-broken.toml'}:2: `kind` must be one of" in broken.output


@pytest.mark.parametrize("name", ["nope"])
def test_unknown_connector_is_named(name: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        sync_group, ["run", name], env={"GRIDHUB_CONNECTORS_DIR": str(tmp_path)}
    )
    assert result.exit_code != 0 and f"no connector {name!r}" in result.output


async def test_redeliver_puts_dead_deliveries_back(
    tmp_path: Path, settings: Settings, db: Database, world: World
) -> None:
    from sqlalchemy import select

    from hub.sync.models import WebhookDelivery

    folder = tmp_path / "connectors"
    folder.mkdir()
    (folder / "dispatch.toml").write_text(
        'name = "dispatch"\nkind = "webhook"\ndirection = "push"\nentity = "event"\n'
        'subject = "connector:public_security"\ndepartment = "public_security"\n\n'
        '[source]\nurl = "http://127.0.0.1:9/hook"\nsecret_env = "DISPATCH_SECRET"\n',
        encoding="utf-8",
    )
    async with db.transaction() as session:
        for n, status in enumerate(["dead", "dead", "delivered"], start=1):
            session.add(
                WebhookDelivery(
                    delivery_id=f"d{n}",
                    subscription="dispatch",
                    change_seq=n,
                    event_id=n,
                    status=status,
                    attempts=12,
                )
            )
    result = await gridhub_sync(
        "redeliver", "dispatch", "--delivery", "d2", env=_env(settings, folder)
    )
    assert result.exit_code == 0, result.output
    assert "1 dead delivery back in line for dispatch" in result.output
    async with db.reader() as session:
        rows = {
            d.delivery_id: (d.status, d.attempts)
            for d in await session.scalars(select(WebhookDelivery))
        }
    assert rows == {"d1": ("dead", 12), "d2": ("pending", 0), "d3": ("delivered", 12)}
