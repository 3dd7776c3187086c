"""The sync engine over real household files: matching, idempotence, quarantine and replay,
ownership under the policy, conflicts, dry runs and the one-run-at-a-time lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.authz.models import AuditRecord
from hub.config import Settings
from hub.connectors.engine import replay_quarantine, run_connector
from hub.db import Database
from hub.models import Resident, ResidentExternalId
from hub.sync.locks import AlreadyRunning, connector_lock
from hub.sync.models import SyncConflict, SyncLink, SyncQuarantine, SyncState
from tests.connector_helpers import (
    count,
    counters,
    household_definition,
    household_row,
    id_number,
    live_policy,
    write_household,
)
from tests.world import World, valid_id_number


@pytest.fixture
async def policy(settings: Settings, db: Database, world: World) -> Any:
    return await live_policy(settings, db)


async def _sync_audit(db: Database) -> list[AuditRecord]:
    async with db.reader() as session:
        statement = select(AuditRecord).where(AuditRecord.kind == "sync").order_by(AuditRecord.seq)
        return list(await session.scalars(statement))


async def test_import_creates_links_and_audits(tmp_path: Path, db: Database, policy: Any) -> None:
    data = write_household(tmp_path / "dump.csv", [household_row(n) for n in range(10)])
    definition = household_definition(tmp_path, data)
    run = await run_connector(db, definition, policy)
    assert run.status == "ok", run.error
    assert counters(run) == dict(
        fetched=10, created=10, updated=0, unchanged=0, quarantined=0, conflicts=0
    )
    async with db.reader() as session:
        created = (await session.scalars(select(Resident).where(Resident.name == "住户3"))).one()
        assert created.id_number == id_number(3)
        external = await session.scalar(
            select(ResidentExternalId.external_id).where(
                ResidentExternalId.resident_id == created.id
            )
        )
        assert external == "P000003"
        state = await session.get(SyncState, "household")
        assert state is not None and state.cursor is not None and state.cursor.get("done")
    records = await _sync_audit(db)
    # One audit record per committed page (page_size 4): the connector is the actor.
    assert len(records) == 3
    assert {r.actor for r in records} == {"connector:household"}
    assert "Resident.idNumber" in records[0].fields
    assert sum(len(r.records) for r in records) == 10


async def test_second_run_writes_nothing(tmp_path: Path, db: Database, policy: Any) -> None:
    data = write_household(tmp_path / "dump.csv", [household_row(n) for n in range(9)])
    definition = household_definition(tmp_path, data)
    await run_connector(db, definition, policy)
    async with db.reader() as session:
        before = {r.id: r.updated_at for r in await session.scalars(select(Resident))}
        links_before = {
            link.id: link.updated_at for link in await session.scalars(select(SyncLink))
        }
    audit_before = len(await _sync_audit(db))

    again = await run_connector(db, definition, policy, full=True)
    assert counters(again) == dict(
        fetched=9, created=0, updated=0, unchanged=9, quarantined=0, conflicts=0
    )
    async with db.reader() as session:
        assert {r.id: r.updated_at for r in await session.scalars(select(Resident))} == before
        assert {
            link.id: link.updated_at for link in await session.scalars(select(SyncLink))
        } == links_before
    assert len(await _sync_audit(db)) == audit_before
    # Incremental, the finished file is not read again at all.
    incremental = await run_connector(db, definition, policy)
    assert incremental.fetched == 0 and incremental.status == "ok"


async def test_existing_resident_is_matched_by_id_number(
    tmp_path: Path, db: Database, policy: Any, world: World
) -> None:
    known = world.residents[0]
    row = [
        "P900001",
        known.name,
        valid_id_number(0),
        "13912345678",
        known.address,
        "",
        "G1",
        "2026-11-02",
    ]
    data = write_household(tmp_path / "dump.csv", [row])
    run = await run_connector(db, household_definition(tmp_path, data), policy)
    assert (run.created, run.updated) == (0, 1)
    async with db.reader() as session:
        assert await count(db, select(Resident)) == len(world.residents)
        resident = await session.get(Resident, known.id)
        assert resident is not None and resident.phone == "13912345678"


async def test_bad_records_are_quarantined_and_replayed(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    rows = [household_row(n) for n in range(6)]
    rows[1][2] = "110108196001010000"  # a wrong check digit
    rows[4][6] = "OLD-7"  # a grid code the registry still uses after a re-gridding
    rows.append(["P777777", "住户X"])  # a short row: no grid code at all
    data = write_household(tmp_path / "dump.csv", rows)
    run = await run_connector(db, household_definition(tmp_path, data), policy)
    assert run.status == "partial"
    assert counters(run) == dict(
        fetched=7, created=4, updated=0, unchanged=0, quarantined=3, conflicts=0
    )
    async with db.reader() as session:
        items = list(await session.scalars(select(SyncQuarantine).order_by(SyncQuarantine.id)))
    assert [i.code for i in items] == ["BAD_USER_INPUT", "BAD_USER_INPUT", "MISSING_FIELD"]
    assert [i.position for i in items] == ["line 3", "line 6", "line 8"]
    assert items[1].payload["网格编码"] == "OLD-7"  # the raw record, as the source sent it

    # The operator fixes the mapping (old grid codes to new) and replays.
    fixed = household_definition(
        tmp_path,
        data,
        mapping="""
        name = "姓名"
        idNumber = { from = "公民身份号码", transform = "digits" }
        phone = "联系电话"
        address = "现住址"
        householdCode = "户号"
        gridCode = { from = "网格编码", transform = "upper", required = true, map = { "OLD-7" = "G2" } }
        """,
    )
    replay = await replay_quarantine(db, fixed, policy)
    assert (replay.created, replay.quarantined) == (1, 2)
    async with db.reader() as session:
        items = list(await session.scalars(select(SyncQuarantine).order_by(SyncQuarantine.id)))
        assert [i.status for i in items] == ["open", "replayed", "open"]
        assert items[0].attempts == 2
        moved = await session.scalar(select(Resident).where(Resident.name == "住户4"))
        assert moved is not None


async def test_a_field_the_connector_does_not_own_refuses_the_run(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    data = write_household(tmp_path / "dump.csv", [household_row(n) for n in range(3)])
    # connector:health owns healthNotes and tags, not ID numbers or names.
    definition = household_definition(tmp_path, data, name="rogue", subject="connector:health")
    run = await run_connector(db, definition, policy)
    assert run.status == "refused"
    assert "ResidentInput.idNumber" in (run.error or "")
    assert await count(db, select(Resident).where(Resident.name.like("住户%"))) == 0
    async with db.reader() as session:
        denied = await session.scalar(select(AuditRecord).where(AuditRecord.outcome == "denied"))
    assert denied is not None and denied.actor == "connector:health" and denied.kind == "sync"


async def test_older_update_is_a_conflict_and_changes_nothing(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    newer = household_row(1, version="2026-11-03T10:00:00+08:00")
    newer[3] = "13711112222"
    data = write_household(tmp_path / "dump.csv", [newer])
    definition = household_definition(tmp_path, data)
    await run_connector(db, definition, policy)

    older = household_row(1, version="2026-11-01T10:00:00+08:00")
    older[3] = "13700000000"
    write_household(data, [older])
    run = await run_connector(db, definition, policy)
    assert (run.conflicts, run.updated) == (1, 0)
    async with db.reader() as session:
        resident = await session.scalar(select(Resident).where(Resident.name == "住户1"))
        assert resident is not None and resident.phone == "13711112222"
        conflict = await session.scalar(select(SyncConflict))
        assert conflict is not None and (conflict.kind, conflict.kept) == ("stale", "ours")


async def test_two_systems_writing_one_field_newest_wins(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    first = household_row(2, version="2026-11-05T09:00:00+08:00")
    first[3] = "13755556666"
    registry = household_definition(tmp_path, write_household(tmp_path / "a.csv", [first]))
    await run_connector(db, registry, policy)

    # A second registry system (the street's own roster) knows an older phone number.
    stale = household_row(2, version="2026-10-01T09:00:00+08:00")
    stale[0] = "R-2"
    stale[3] = "13799990000"
    roster = household_definition(
        tmp_path, write_household(tmp_path / "b.csv", [stale]), name="roster", system="roster"
    )
    run = await run_connector(db, roster, policy)
    assert run.conflicts == 1
    async with db.reader() as session:
        resident = await session.scalar(select(Resident).where(Resident.name == "住户2"))
        assert resident is not None and resident.phone == "13755556666"
        conflict = await session.scalar(select(SyncConflict))
        assert conflict is not None
        assert (conflict.kind, conflict.kept, conflict.field) == ("other_source", "ours", "phone")
        assert conflict.detail == {"other_system": "household-registry"}


async def test_dry_run_reports_and_writes_nothing(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    rows = [household_row(n) for n in range(5)]
    rows[2][6] = "NOPE"
    data = write_household(tmp_path / "dump.csv", rows)
    run = await run_connector(db, household_definition(tmp_path, data), policy, dry_run=True)
    assert run.dry_run and (run.created, run.quarantined) == (4, 1)
    assert await count(db, select(Resident).where(Resident.name.like("住户%"))) == 0
    assert await count(db, select(SyncQuarantine)) == 0
    assert await count(db, select(SyncLink)) == 0
    async with db.reader() as session:
        state = await session.get(SyncState, "household")
    assert state is None or state.cursor is None


async def test_gbk_file_imports(tmp_path: Path, db: Database, policy: Any) -> None:
    data = write_household(
        tmp_path / "gbk.csv", [household_row(n) for n in range(3)], encoding="gbk"
    )
    run = await run_connector(db, household_definition(tmp_path, data), policy)
    assert run.created == 3
    async with db.reader() as session:
        names = set(await session.scalars(select(Resident.name).where(Resident.name.like("住户%"))))
    assert names == {"住户0", "住户1", "住户2"}


async def test_only_one_run_at_a_time(tmp_path: Path, db: Database, policy: Any) -> None:
    data = write_household(tmp_path / "dump.csv", [household_row(1)])
    definition = household_definition(tmp_path, data)
    async with connector_lock(db, "household"):
        with pytest.raises(AlreadyRunning):
            await run_connector(db, definition, policy)
    run = await run_connector(db, definition, policy)
    assert run.created == 1


EXPORT_TOML = """
name = "{name}"
kind = "file"
direction = "push"
entity = "resident"
subject = "{subject}"
page_size = 5

[source]
path = "{path}"

[mapping]
name = "姓名"
idNumber = "公民身份号码"
phone = "联系电话"
gridCode = "网格编码"
"""


async def test_export_writes_what_the_connector_may_read(
    tmp_path: Path, db: Database, policy: Any, world: World
) -> None:
    from hub.connectors.definition import load_file
    from hub.connectors.files import open_source
    from hub.connectors.records import SourceContext

    target = tmp_path / "out" / "register.csv"
    target.parent.mkdir()
    spec = tmp_path / "register.toml"
    spec.write_text(
        EXPORT_TOML.format(name="register", subject="connector:household", path=target),
        encoding="utf-8",
    )
    run = await run_connector(db, load_file(spec), policy)
    assert (run.status, run.fetched) == ("ok", len(world.residents))
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel in China reads the BOM
    source = open_source(SourceContext(connector="check", options={"path": str(target)}))
    rows = [r.payload async for page in source.pages(None) for r in page.records]
    assert rows[0] == {
        "姓名": world.residents[0].name,
        "公民身份号码": valid_id_number(0),
        "联系电话": world.residents[0].phone,
        "网格编码": "G1",
    }
    async with db.reader() as session:
        reads = list(
            await session.scalars(
                select(AuditRecord).where(AuditRecord.operation == "export:register")
            )
        )
    assert len(reads) == 3  # one per batch of 5
    assert {r.actor for r in reads} == {"connector:household"}
    assert "Resident.idNumber" in reads[0].fields and reads[0].purpose

    # A connector whose policy hides residents cannot export them: refused before reading.
    spec = tmp_path / "leak.toml"
    spec.write_text(
        EXPORT_TOML.format(name="leak", subject="connector:hotline", path=tmp_path / "leak.csv"),
        encoding="utf-8",
    )
    refused = await run_connector(db, load_file(spec), policy)
    assert refused.status == "refused" and "Resident.idNumber" in (refused.error or "")
    assert not (tmp_path / "leak.csv").exists()


async def test_xlsx_dump_imports(tmp_path: Path, db: Database, policy: Any) -> None:
    from hub.connectors.files import write_xlsx
    from tests.connector_helpers import HOUSEHOLD_HEADER

    data = tmp_path / "dump.xlsx"
    write_xlsx(data, HOUSEHOLD_HEADER, [household_row(n) for n in range(6)])
    run = await run_connector(db, household_definition(tmp_path, data), policy)
    assert (run.status, run.created) == ("ok", 6), run.error
    async with db.reader() as session:
        numbers = set(
            await session.scalars(select(Resident.id_number).where(Resident.name.like("住户%")))
        )
    assert numbers == {id_number(n) for n in range(6)}


class ChangingPolicy:
    """The hub's own registry, whose policy changes (as another worker's changePolicy would)
    once the run has synced `after` times: the engine must write each page under the policy
    as it is when the page starts."""

    def __init__(self, registry: Any, *, after: int, remove: str) -> None:
        self.registry = registry
        self.after = after
        self.remove = remove
        self.syncs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)

    async def sync(self, db: Database) -> bool:
        self.syncs += 1
        if self.syncs > self.after:
            return False  # the changed policy stays (the database still holds the old one)
        if self.syncs < self.after:
            return await self.registry.sync(db)
        text = self.registry.file_policy_text().replace(self.remove + "\n", "")
        self.registry.install(self.registry.compile(text, version=self.registry.version + 1))
        return True


async def test_a_policy_change_during_a_run_applies_from_the_next_page(
    tmp_path: Path, db: Database, policy: Any
) -> None:
    data = write_household(tmp_path / "dump.csv", [household_row(n) for n in range(8)])
    changing = ChangingPolicy(
        policy, after=3, remove="p, connector:household, ResidentInput.phone, set, allow"
    )
    run = await run_connector(db, household_definition(tmp_path, data), changing)
    # Synced at the start and before pages 1 and 2: page 1 (4 records) was written, then the
    # household registry lost the phone field and the run stopped, refused, before page 2.
    assert run.status == "refused" and "ResidentInput.phone" in (run.error or "")
    assert await count(db, select(Resident).where(Resident.name.like("住户%"))) == 4
