"""The hash-chained audit log: appending, tampering of every kind, concurrency, queries, the CLI.

Tampering goes around `append` on purpose: raw SQL (or Core statements that skip the hashing),
as somebody with write access to the database would do it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, text, update

from hub.authz.audit import (
    GENESIS_HASH,
    MAX_RECORD_IDS,
    AuditEntry,
    AuditFilter,
    ChainReport,
    append,
    append_now,
    list_statement,
    record_hash,
    verify,
)
from hub.authz.models import AuditHead, AuditRecord
from hub.commands.audit import audit
from hub.config import Settings
from hub.db import Database

T0 = datetime(2026, 11, 3, 9, 30, 15, 123456, tzinfo=UTC)
RECORDS = AuditRecord.__table__
HEAD = AuditHead.__table__


def entry(n: int, **changes: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "kind": "read",
        "actor": f"user{n % 3}",
        "role": "grid_worker",
        "outcome": "ok",
        "department": "civil_affairs",
        "operation": f"Residents{n}",
        "fields": ("Resident.idNumber", "Resident.phone"),
        "records": (f"Resident:{n}",),
        "purpose": "case_handling",
        "detail": {"n": n},
    }
    values.update(changes)
    return AuditEntry(**values)


async def seed(db: Database, count: int) -> list[AuditRecord]:
    """`count` records, one a minute from T0, in two transactions."""
    records = []
    async with db.transaction() as session:
        for n in range(1, count // 2 + 1):
            records.append(await append(session, entry(n), at=T0 + timedelta(minutes=n)))
    async with db.transaction() as session:
        for n in range(count // 2 + 1, count + 1):
            records.append(await append(session, entry(n), at=T0 + timedelta(minutes=n)))
    return records


async def check(db: Database, *, batch: int = 5000) -> ChainReport:
    async with db.reader() as session:
        return await verify(session, batch=batch)


async def tamper(db: Database, statement: Any, **params: Any) -> None:
    if isinstance(statement, str):
        statement = text(statement)
    async with db.transaction() as session:
        await session.execute(statement, params)


async def row(db: Database, seq: int) -> dict[str, Any]:
    async with db.reader() as session:
        return dict(
            (await session.execute(select(RECORDS).where(RECORDS.c.seq == seq))).one()._mapping
        )


def broken(report: ChainReport, seq: int | None, reason: str) -> None:
    assert (report.ok, report.first_broken_seq, report.reason) == (False, seq, reason)


# --- the chain as written ---------------------------------------------------------------------


def test_record_hash_is_sha256_of_the_canonical_json() -> None:
    values = {
        "seq": 7,
        "at": datetime(2026, 11, 3, 17, 30, 15, 5, tzinfo=UTC),
        "kind": "read",
        "actor": "张三",
        "role": "grid_worker",
        "department": None,
        "operation": "Q",
        "fields": ["Resident.idNumber"],
        "records": ["Resident:4"],
        "purpose": "核查",
        "outcome": "ok",
        "detail": {"b": 1, "a": [1, 2]},
        "prev_hash": GENESIS_HASH,
        "hash": "ignored",
    }
    # Written out by hand: sorted keys, no spaces, non-ASCII as is, `at` in UTC to microseconds.
    canonical = (
        '{"actor":"张三","at":"2026-11-03T17:30:15.000005+00:00","department":null,'
        '"detail":{"a":[1,2],"b":1},"fields":["Resident.idNumber"],"kind":"read",'
        '"operation":"Q","outcome":"ok","prev_hash":"' + GENESIS_HASH + '","purpose":"核查",'
        '"records":["Resident:4"],"role":"grid_worker","seq":7}'
    )
    assert record_hash(values) == hashlib.sha256(canonical.encode()).hexdigest()
    # The same instant in another zone hashes the same; any other change does not.
    shanghai = values | {"at": values["at"].astimezone(timezone(timedelta(hours=8)))}
    assert record_hash(shanghai) == record_hash(values)
    assert record_hash(values | {"purpose": "核查 "}) != record_hash(values)


async def test_appended_records_form_a_chain(db: Database) -> None:
    records = await seed(db, 6)
    report = await check(db)
    assert report == ChainReport(True, 6, None, None, records[-1].hash)
    stored = [await row(db, seq) for seq in range(1, 7)]
    assert [r["seq"] for r in stored] == [1, 2, 3, 4, 5, 6]
    assert stored[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(stored):
        assert after["prev_hash"] == before["hash"]
    for values in stored:
        assert record_hash(values) == values["hash"]
    assert stored[2]["at"] == T0 + timedelta(minutes=3)
    assert stored[2]["records"] == ["Resident:3"]
    async with db.reader() as session:
        head = (await session.execute(select(HEAD))).one()
    assert (head.id, head.seq, head.hash) == (1, 6, records[-1].hash)


async def test_an_empty_log_is_intact(db: Database) -> None:
    assert await check(db) == ChainReport(True, 0, None, None, GENESIS_HASH)


async def test_entries_are_normalised_and_still_verify(db: Database) -> None:
    many = [f"Resident:{n}" for n in range(MAX_RECORD_IDS + 25)]
    record = await append_now(
        db,
        AuditEntry(
            kind="mutation",
            actor="bad\x00actor\ud800",
            role="dept_officer",
            outcome="ok",
            operation="Op" * 100,
            fields=["Resident.phone", "Resident.idNumber", "Resident.phone"],
            records=[*many, "Resident:1"],
            purpose="走访核查",
            detail={"ids": (1, 2), "when": T0, 3: "three"},
        ),
    )
    stored = await row(db, record.seq)
    assert stored["fields"] == ["Resident.idNumber", "Resident.phone"]
    assert len(stored["records"]) == MAX_RECORD_IDS
    assert stored["records"] == sorted(many)[:MAX_RECORD_IDS]
    assert stored["detail"]["records_truncated"] == 25
    assert stored["detail"]["clipped"] == ["operation"]
    assert stored["operation"] == ("Op" * 100)[:128]
    assert stored["actor"] == "bad\ufffdactor?"
    assert stored["detail"]["ids"] == [1, 2]
    assert stored["detail"]["when"] == str(T0)
    assert stored["detail"]["3"] == "three"
    assert stored["purpose"] == "走访核查"
    assert record_hash(stored) == stored["hash"] == record.hash
    assert (await check(db)).ok


async def test_bad_entries_are_refused(db: Database) -> None:
    async with db.transaction() as session:
        with pytest.raises(ValueError, match="kind"):
            await append(session, entry(1, kind="peek"))
        with pytest.raises(ValueError, match="outcome"):
            await append(session, entry(1, outcome="meh"))
        with pytest.raises(TypeError, match="not a string"):
            await append(session, entry(1, records="Resident:1"))
        with pytest.raises(ValueError, match="timezone"):
            await append(session, entry(1), at=datetime(2026, 1, 1))
    assert await check(db) == ChainReport(True, 0, None, None, GENESIS_HASH)


# --- tampering ----------------------------------------------------------------------------------


async def test_an_edited_column_names_its_record(db: Database) -> None:
    await seed(db, 5)
    await tamper(db, "UPDATE audit_records SET purpose = 'curiosity' WHERE seq = 3")
    broken(await check(db), 3, "record 3 was edited (hash mismatch)")


@pytest.mark.parametrize(
    "values",
    [
        {"actor": "someone_else"},
        {"records": ["Resident:99"]},
        {"fields": []},
        {"at": T0 + timedelta(days=1)},
        {"at": T0 + timedelta(minutes=4, microseconds=1)},
        {"detail": {"n": 4, "extra": True}},
        {"outcome": "denied"},
        {"department": None},
    ],
    ids=lambda values: next(iter(values)),
)
async def test_every_column_is_covered_by_the_hash(db: Database, values: dict[str, Any]) -> None:
    await seed(db, 5)
    await tamper(db, update(RECORDS).where(RECORDS.c.seq == 4).values(**values))
    broken(await check(db), 4, "record 4 was edited (hash mismatch)")


async def test_a_deleted_record_is_named(db: Database) -> None:
    await seed(db, 5)
    await tamper(db, "DELETE FROM audit_records WHERE seq = 3")
    broken(await check(db), 4, "record 4 does not follow record 2 (record 3 missing)")


async def test_deleted_records_at_the_start_are_named(db: Database) -> None:
    await seed(db, 5)
    await tamper(db, "DELETE FROM audit_records WHERE seq <= 2")
    broken(await check(db), 3, "the log starts at record 3 (records 1 to 2 missing)")


async def test_a_forged_record_with_a_valid_hash_but_a_wrong_link_is_named(db: Database) -> None:
    await seed(db, 5)
    forged = await row(db, 3)
    del forged["hash"]
    forged.update(actor="nobody", prev_hash=(await row(db, 1))["hash"])
    await tamper(db, "DELETE FROM audit_records WHERE seq = 3")
    await tamper(db, insert(RECORDS).values(**forged, hash=record_hash(forged)))
    broken(await check(db), 3, "record 3's prev_hash does not match record 2")


@pytest.mark.parametrize("rehash_shifted", [False, True])
async def test_a_record_shifted_in_is_named(db: Database, rehash_shifted: bool) -> None:
    """The forger moves records 3..5 up by one, writes a perfect record 3 linked to record 2 and
    moves the head along; with or without recomputing the moved records' hashes, record 4 breaks."""
    await seed(db, 5)
    # Two steps, so PostgreSQL's per-row unique check never sees two rows with one seq.
    await tamper(db, "UPDATE audit_records SET seq = seq + 100 WHERE seq >= 3")
    await tamper(db, "UPDATE audit_records SET seq = seq - 99 WHERE seq >= 100")
    forged = await row(db, 4) | {
        "seq": 3,
        "actor": "ghost",
        "prev_hash": (await row(db, 2))["hash"],
    }
    del forged["hash"]
    await tamper(db, insert(RECORDS).values(**forged, hash=record_hash(forged)))
    if rehash_shifted:
        for seq in (4, 5, 6):
            moved = await row(db, seq)
            await tamper(
                db, update(RECORDS).where(RECORDS.c.seq == seq).values(hash=record_hash(moved))
            )
    last = await row(db, 6)
    await tamper(db, update(HEAD).values(seq=6, hash=last["hash"]))
    report = await check(db)
    if rehash_shifted:
        broken(report, 4, "record 4's prev_hash does not match record 3")
    else:
        broken(report, 4, "record 4 was edited (hash mismatch)")


async def test_a_rewritten_and_rehashed_record_breaks_the_next_link(db: Database) -> None:
    await seed(db, 5)
    edited = await row(db, 3) | {"purpose": "routine"}
    await tamper(
        db,
        update(RECORDS)
        .where(RECORDS.c.seq == 3)
        .values(purpose="routine", hash=record_hash(edited)),
    )
    broken(await check(db), 4, "record 4's prev_hash does not match record 3")


async def test_a_rewritten_and_rehashed_last_record_is_caught_by_the_head(db: Database) -> None:
    await seed(db, 5)
    edited = await row(db, 5) | {"actor": "nobody"}
    await tamper(
        db,
        update(RECORDS).where(RECORDS.c.seq == 5).values(actor="nobody", hash=record_hash(edited)),
    )
    broken(
        await check(db),
        5,
        "the head's hash does not match record 5's hash (the last record replaced or the head edited)",
    )


async def test_a_deleted_tail_is_caught_by_the_head(db: Database) -> None:
    await seed(db, 6)
    await tamper(db, "DELETE FROM audit_records WHERE seq >= 5")
    broken(
        await check(db),
        5,
        "the log ends at record 4 but the head says 6 (records deleted from the end)",
    )
    await tamper(db, "DELETE FROM audit_records")
    broken(
        await check(db), 1, "the log is empty but the head says 6 (records deleted from the end)"
    )


async def test_a_record_past_the_head_is_named(db: Database) -> None:
    """A perfectly chained record 6 that the head never heard of."""
    await seed(db, 5)
    last = await row(db, 5)
    forged = last | {"seq": 6, "prev_hash": last["hash"], "at": last["at"] + timedelta(seconds=1)}
    del forged["hash"]
    await tamper(db, insert(RECORDS).values(**forged, hash=record_hash(forged)))
    report = await check(db)
    assert (report.ok, report.first_broken_seq, report.records) == (False, 6, 6)
    assert report.reason is not None and report.reason.startswith("record 6 lies past the head")


async def test_a_missing_head_is_reported(db: Database) -> None:
    await seed(db, 3)
    await tamper(db, "DELETE FROM audit_head")
    broken(await check(db), None, "the audit head row is missing (deleted or never written)")


async def test_verify_reads_in_batches(db: Database) -> None:
    await seed(db, 9)
    assert (await check(db, batch=2)).records == 9
    assert (await check(db, batch=1)).ok
    await tamper(db, "UPDATE audit_records SET role = 'admin' WHERE seq = 8")
    report = await check(db, batch=3)
    broken(report, 8, "record 8 was edited (hash mismatch)")
    assert report.records == 7


# --- transactions and concurrency --------------------------------------------------------------


async def test_concurrent_appends_take_contiguous_seqs(db: Database) -> None:
    """30 transactions at once, the first ones racing to create the head row as well."""

    async def one(n: int) -> int:
        async with db.transaction() as session:
            record = await append(session, entry(n))
            return record.seq

    seqs = await asyncio.gather(*(one(n) for n in range(30)))
    assert sorted(seqs) == list(range(1, 31))
    report = await check(db)
    assert (report.ok, report.records) == (True, 30), report.reason
    async with db.reader() as session:
        stored = list(await session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
        ops = set(await session.scalars(select(AuditRecord.operation)))
    assert stored == list(range(1, 31))
    assert ops == {f"Residents{n}" for n in range(30)}


async def test_a_rolled_back_transaction_leaves_no_record_and_no_gap(db: Database) -> None:
    await seed(db, 2)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as session:
            written = await append(session, entry(3, kind="mutation"))
            assert written.seq == 3
            raise Boom
    async with db.reader() as session:
        assert list(await session.scalars(select(AuditRecord.seq))) == [1, 2]
    record = await append_now(db, entry(4))
    assert record.seq == 3
    assert (await check(db)).records == 3


async def test_append_commits_with_the_callers_transaction_only(db: Database) -> None:
    async with db.transaction() as session:
        await append(session, entry(1))
        async with db.reader() as other:
            assert await other.scalar(select(AuditRecord.seq)) is None
    async with db.reader() as other:
        assert await other.scalar(select(AuditRecord.seq)) == 1


# --- queries ----------------------------------------------------------------------------------


async def query(db: Database, **filter: Any) -> list[int]:
    async with db.reader() as session:
        statement = list_statement(AuditFilter(**filter)).order_by(AuditRecord.seq)
        return [record.seq for record in await session.scalars(statement)]


async def test_list_statement_filters(db: Database) -> None:
    cases = [
        # (actor, fields, records, at, purpose, kind)
        ("alice", ["Resident.idNumber"], ["Resident:42"], T0, "case_handling", "read"),
        (
            "alice",
            ["Resident.idNumber", "Resident.phone"],
            ["Resident:4", "Resident:7"],
            T0 + timedelta(days=2),
            "case_handling",
            "read",
        ),
        ("bob", ["Resident.phone"], ["Resident:4"], T0 + timedelta(days=3), "visit", "read"),
        (
            "bob",
            ["Resident.idNumber"],
            ["Resident:40", "Resident:4_", 'x"Resident:4'],
            T0 + timedelta(days=4),
            None,
            "read",
        ),
        (
            "carol",
            ["Resident.idNumber"],
            ["Resident:4"],
            T0 + timedelta(days=40),
            "case_handling",
            "mutation",
        ),
    ]
    async with db.transaction() as session:
        for actor, fields, records, at, purpose, kind in cases:
            await append(
                session,
                AuditEntry(
                    kind=kind,
                    actor=actor,
                    role="worker",
                    outcome="ok",
                    fields=fields,
                    records=records,
                    purpose=purpose,
                ),
                at=at,
            )
    assert await query(db) == [1, 2, 3, 4, 5]
    # Exact elements: not "Resident:42", "Resident:40", "Resident:4_" or a quote-smuggled id.
    assert await query(db, record="Resident:4") == [2, 3, 5]
    assert await query(db, record="Resident:42") == [1]
    assert await query(db, record="Resident:4_") == [4]
    assert await query(db, record="Resident:%") == []
    assert await query(db, record='x"Resident:4') == [4]
    assert await query(db, record="Resident") == []
    assert await query(db, field="Resident.idNumber") == [1, 2, 4, 5]
    assert await query(db, field="Resident.id") == []
    assert await query(db, actor="bob") == [3, 4]
    assert await query(db, kind="mutation") == [5]
    assert await query(db, purpose="visit") == [3]
    assert await query(db, outcome="denied") == []
    assert await query(db, role="worker") == [1, 2, 3, 4, 5]
    # since is inclusive, until exclusive.
    assert await query(db, since=T0 + timedelta(days=2)) == [2, 3, 4, 5]
    assert await query(db, until=T0 + timedelta(days=3)) == [1, 2]
    # "Who read resident 4's ID number this month?"
    month = {"since": datetime(2026, 11, 1, tzinfo=UTC), "until": datetime(2026, 12, 1, tzinfo=UTC)}
    assert await query(
        db, record="Resident:4", field="Resident.idNumber", kind="read", **month
    ) == [2]
    with pytest.raises(ValueError, match="timezone-aware"):
        list_statement(AuditFilter(since=datetime(2026, 11, 1)))


# --- the command line -------------------------------------------------------------------------


async def cli(*args: str) -> Any:
    # The command runs its own event loop (asyncio.run), so it runs off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, audit, list(args))


async def test_cli_verify_and_tail(db: Database, settings: Settings) -> None:
    url = settings.database_url
    result = await cli("verify", "--db", url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit chain intact: 0 records\n")

    await seed(db, 3)
    await append_now(db, entry(4, actor="evil\x1b[2Jactor"))
    result = await cli("verify", "--db", url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit chain intact: 4 records\n")
    assert (await row(db, 4))["hash"] in result.output

    result = await cli("tail", "--db", url, "-n", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("3  2026-11-03T09:33:15+00:00  read  user0  grid_worker  Residents3")
    assert (
        "fields=Resident.idNumber,Resident.phone  records=Resident:3  purpose=case_handling  ok"
        in lines[0]
    )
    # A control character from the actor name is shown escaped, not sent to the terminal.
    assert lines[1].startswith("4  ") and "evil\\x1b[2Jactor" in lines[1]
    assert "\x1b" not in result.output

    await tamper(db, "UPDATE audit_records SET purpose = 'curiosity' WHERE seq = 2")
    result = await cli("verify", "--db", url)
    assert result.exit_code == 1
    assert result.output == "audit chain BROKEN at record 2: record 2 was edited (hash mismatch)\n"
