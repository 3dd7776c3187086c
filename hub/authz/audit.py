"""The tamper-evident access log: an append-only, hash-chained list of audit records.

Every record stores the hash of its predecessor (`prev_hash`) and a hash over all of its own
columns (`hash`). Editing a record breaks its own hash; inserting or deleting one breaks the
sequence or the link of the record after it; deleting records from the end is caught through the
head row (`audit_head`), which always names the last record's seq and hash. `verify` walks the
chain and names the first broken record.

Appending happens inside the caller's transaction, so the record commits (or rolls back) together
with the change it describes. The first statement of `append` updates the head row, which
serialises appenders: a row lock on PostgreSQL, the database write lock on SQLite.

What the chain cannot do on its own: somebody who can write to the database *and* recompute
hashes can rewrite the whole chain from some record onwards, head included. Keeping the head hash
somewhere else from time to time (`ChainReport.head_hash`, printed by `gridhub audit verify`)
closes that gap: a rewritten chain no longer reaches a hash that was written down before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hub.authz.models import AuditHead, AuditRecord
from hub.db import Database, utcnow

GENESIS_HASH = "0" * 64
HEAD_ID = 1

# sync: a connector run's writes; delivery: event changes a webhook sent out.
KINDS = frozenset({"read", "mutation", "policy", "auth_failure", "emergency", "sync", "delivery"})
OUTCOMES = frozenset({"ok", "denied", "error", "failed"})

# A read of a long list would otherwise write every id it returned into one record; past this
# many ids the record keeps the first ones (in sorted order) and counts the rest.
MAX_RECORD_IDS = 1_000

# Every column the hash covers, i.e. every column but `hash` itself.
HASHED_COLUMNS = (
    "seq",
    "at",
    "kind",
    "actor",
    "role",
    "department",
    "operation",
    "fields",
    "records",
    "purpose",
    "outcome",
    "detail",
    "prev_hash",
)

# Text columns with a length limit, and the limit. PostgreSQL refuses longer values, and an audit
# write that fails takes the request with it; an actor name from a failed login is whatever the
# client sent. Longer values are clipped, and the record says which ones were.
_CLIPPED_COLUMNS = {"actor": 128, "role": 64, "department": 32, "operation": 128}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What happened, as the caller knows it; `append` adds seq, time and the chain."""

    kind: str  # read | mutation | policy | auth_failure | emergency | sync | delivery
    actor: str
    role: str
    outcome: str  # ok | denied | error | failed
    department: str | None = None
    operation: str | None = None
    fields: Sequence[str] = ()  # ("Resident.idNumber",)
    records: Sequence[str] = ()  # ("Resident:42",)
    purpose: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChainReport:
    """The result of `verify`. `records` counts the records found intact (on a break, the ones
    before it); `first_broken_seq` is None when intact, and also when the break is not one
    record's (the head row itself is missing). `head_hash` is the hash the intact chain ends
    with: written down elsewhere, it lets a later check notice a chain rewritten wholesale."""

    ok: bool
    records: int
    first_broken_seq: int | None
    reason: str | None
    head_hash: str | None = None


@dataclass(frozen=True)
class AuditFilter:
    """Auditors' questions. `since` is inclusive and `until` exclusive (both timezone-aware);
    `record` and `field` match one exact element of the record's lists."""

    actor: str | None = None
    role: str | None = None
    kind: str | None = None
    record: str | None = None
    field: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


# --- hashing -----------------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(values: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of every column but `hash`: sorted keys, no
    whitespace, UTF-8, `at` as ISO 8601 in UTC with microseconds. Extra keys are ignored, so a
    whole row can be passed; a missing column is a KeyError."""
    payload = {name: values[name] for name in HASHED_COLUMNS}
    payload["at"] = _iso(payload["at"])
    return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()


# --- appending ---------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Text PostgreSQL and UTF-8 accept: lone surrogates (possible in a decoded JSON request)
    become "?", NUL becomes U+FFFD. Otherwise a client could make the audit write fail."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    if isinstance(value, dict):
        return {_clean(key): _clean_json(item) for key, item in value.items()}
    return value


def _normalised_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """`detail` as it will read back from the JSON column (tuples become lists, keys strings,
    values JSON cannot hold their str()), so the hash computed now matches the stored row."""
    text = json.dumps(dict(detail), default=str, allow_nan=False, ensure_ascii=False)
    normalised: dict[str, Any] = _clean_json(json.loads(text))
    return normalised


def _string_set(values: Sequence[str], name: str) -> list[str]:
    if isinstance(values, str):
        # A bare string would be taken apart into characters.
        raise TypeError(f"AuditEntry.{name} takes a sequence of strings, not a string")
    return sorted({_clean(str(value)) for value in values})


def _row_values(entry: AuditEntry) -> dict[str, Any]:
    """The columns an entry fills, validated and normalised; seq, at and the hashes come later."""
    if entry.kind not in KINDS:
        raise ValueError(f"unknown audit kind {entry.kind!r}")
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {entry.outcome!r}")
    detail = _normalised_detail(entry.detail)
    records = _string_set(entry.records, "records")
    if len(records) > MAX_RECORD_IDS:
        detail["records_truncated"] = len(records) - MAX_RECORD_IDS
        records = records[:MAX_RECORD_IDS]
    values: dict[str, Any] = {
        "kind": entry.kind,
        "actor": _clean(entry.actor),
        "role": _clean(entry.role),
        "department": None if entry.department is None else _clean(entry.department),
        "operation": None if entry.operation is None else _clean(entry.operation),
        "fields": _string_set(entry.fields, "fields"),
        "records": records,
        "purpose": None if entry.purpose is None else _clean(entry.purpose),
        "outcome": entry.outcome,
    }
    clipped = []
    for name, limit in _CLIPPED_COLUMNS.items():
        if values[name] is not None and len(values[name]) > limit:
            values[name] = values[name][:limit]
            clipped.append(name)
    if clipped:
        detail["clipped"] = clipped
    values["detail"] = detail
    return values


async def _advance_head(session: AsyncSession) -> tuple[int, str] | None:
    """Take the next seq and the current last hash. Being a write, this locks the head row on
    PostgreSQL (a concurrent appender waits, then sees the committed head) and takes the write
    lock on SQLite before anything is read."""
    statement = (
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


async def _create_head(session: AsyncSession) -> None:
    """Insert the empty head unless it exists. ON CONFLICT DO NOTHING makes two first appenders
    safe: on PostgreSQL the second waits for the first's insert to commit or roll back."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(AuditHead)
        .values(id=HEAD_ID, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(statement)


async def append(
    session: AsyncSession, entry: AuditEntry, *, at: datetime | None = None
) -> AuditRecord:
    """Append one record inside the caller's transaction (flushed, never committed).

    Fields and record ids are deduplicated and sorted; more than MAX_RECORD_IDS ids keep the
    first ones and put the number left out into detail["records_truncated"]. Over-long actor,
    role, department or operation values are clipped and named in detail["clipped"].

    The head row stays locked until the caller's transaction ends, and every other appender waits
    for it: append as the last step of a unit of work, after its own writes. That keeps the wait
    short, and a transaction holding the head never asks for another row lock (no deadlocks)."""
    values = _row_values(entry)
    # Everything that can fail is checked before the head moves: a caller that catches the
    # error and commits anyway must not leave a head pointing past the last record.
    if at is not None and at.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    # The head update must be the first statement: see _advance_head.
    head = await _advance_head(session)
    if head is None:
        await _create_head(session)
        head = await _advance_head(session)
        if head is None:
            raise RuntimeError("the audit head row could not be created")
    seq, prev_hash = head
    # Taken after the head lock, so times grow with seq even when appenders queued.
    when = utcnow() if at is None else at
    values.update(seq=seq, at=when.astimezone(UTC), prev_hash=prev_hash)
    record = AuditRecord(**values, hash=record_hash(values))
    session.add(record)
    await session.flush()
    await session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(hash=record.hash)
        .execution_options(synchronize_session=False)
    )
    return record


async def append_now(database: Database, entry: AuditEntry) -> AuditRecord:
    """Append in a transaction of its own: for reads and failed logins, which change nothing
    else. The record is committed when this returns."""
    async with database.transaction() as session:
        return await append(session, entry)


# --- verifying ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Walk:
    """Where the walk is: the last intact record's seq and hash."""

    seq: int = 0
    hash: str = GENESIS_HASH
    broken: ChainReport | None = None

    def fail(self, seq: int | None, reason: str) -> ChainReport:
        self.broken = ChainReport(ok=False, records=self.seq, first_broken_seq=seq, reason=reason)
        return self.broken


def _missing(first: int, last: int) -> str:
    return f"record {first} missing" if first == last else f"records {first} to {last} missing"


def _check(walk: _Walk, row: Mapping[Any, Any]) -> None:
    seq = row["seq"]
    expected = walk.seq + 1
    if seq != expected:
        if seq < expected:
            walk.fail(seq, f"record {seq} is out of sequence (expected record {expected})")
        elif walk.seq == 0:
            walk.fail(seq, f"the log starts at record {seq} ({_missing(1, seq - 1)})")
        else:
            walk.fail(
                seq,
                f"record {seq} does not follow record {walk.seq} ({_missing(expected, seq - 1)})",
            )
        return
    try:
        intact = record_hash(row) == row["hash"]
    except (TypeError, ValueError):
        # A value no append could have written (NaN, a naive time): edited as well.
        intact = False
    if not intact:
        walk.fail(seq, f"record {seq} was edited (hash mismatch)")
        return
    if row["prev_hash"] != walk.hash:
        if walk.seq == 0:
            walk.fail(seq, f"record {seq}'s prev_hash is not the genesis hash")
        else:
            walk.fail(seq, f"record {seq}'s prev_hash does not match record {walk.seq}")
        return
    walk.seq, walk.hash = seq, row["hash"]


async def _walk(session: AsyncSession, walk: _Walk, *, upto: int, batch: int) -> None:
    """Check records after walk.seq up to `upto`, `batch` rows at a time (keyset on seq)."""
    columns = AuditRecord.__table__.c
    while walk.broken is None and walk.seq < upto:
        statement = (
            select(*columns)
            .where(columns.seq > walk.seq, columns.seq <= upto)
            .order_by(columns.seq)
            .limit(batch)
        )
        rows = (await session.execute(statement)).mappings().all()
        for row in rows:
            _check(walk, row)
            if walk.broken is not None:
                return
        if len(rows) < batch:
            return


async def verify(session: AsyncSession, *, batch: int = 5000) -> ChainReport:
    """Walk the whole chain in seq order, `batch` records at a time, and check every hash, every
    link, that seqs run 1, 2, 3... and that the head names the last record.

    Appends may run meanwhile: the walk first goes up to the highest seq that existed when it
    started, then up to the head read after that. A record that was visible is committed, and its
    transaction had moved the head at least that far, so only tampering makes the head lag behind
    a record; and every record up to a head that was read is committed, so one missing at the end
    was deleted."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    walk = _Walk()
    highest = await session.scalar(select(func.max(AuditRecord.seq))) or 0
    await _walk(session, walk, upto=highest, batch=batch)
    if walk.broken is not None:
        return walk.broken
    head = (
        await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID))
    ).first()
    if head is None:
        if walk.seq == 0:
            return ChainReport(
                ok=True, records=0, first_broken_seq=None, reason=None, head_hash=GENESIS_HASH
            )
        return walk.fail(None, "the audit head row is missing (deleted or never written)")
    head_seq, head_hash = head
    if head_seq < walk.seq:
        return walk.fail(
            head_seq + 1,
            f"record {head_seq + 1} lies past the head, which says the log ends at record "
            f"{head_seq} (records added behind the log's back, or the head edited)",
        )
    await _walk(session, walk, upto=head_seq, batch=batch)
    if walk.broken is not None:
        return walk.broken
    if walk.seq < head_seq:
        end = "the log is empty" if walk.seq == 0 else f"the log ends at record {walk.seq}"
        return walk.fail(
            walk.seq + 1, f"{end} but the head says {head_seq} (records deleted from the end)"
        )
    if head_hash != walk.hash:
        last = "the genesis hash" if walk.seq == 0 else f"record {walk.seq}'s hash"
        return walk.fail(
            walk.seq or None,
            f"the head's hash does not match {last} (the last record replaced or the head edited)",
        )
    return ChainReport(
        ok=True, records=walk.seq, first_broken_seq=None, reason=None, head_hash=walk.hash
    )


# --- querying ----------------------------------------------------------------------------------


class json_list_contains(FunctionElement[bool]):
    """Whether a JSON array column holds one element equal to a string.

    An exact element match, compiled to each database's JSON functions rather than a LIKE over
    the JSON text: "Resident:4" must not match "Resident:42", and a LIKE would also depend on how
    the JSON serializer spaces and escapes its output. Neither form can use an index; narrow by
    time (`since`/`until`, indexed) or actor (indexed) to keep the scan short."""

    type = Boolean()
    inherit_cache = True
    name = "json_list_contains"


@compiles(json_list_contains, "sqlite")
def _contains_sqlite(element: json_list_contains, compiler: Any, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({column}) AS element "
        f"WHERE element.type = 'text' AND element.value = {value})"
    )


@compiles(json_list_contains, "postgresql")
def _contains_pg(element: json_list_contains, compiler: Any, **kw: Any) -> str:
    column, value = (compiler.process(clause, **kw) for clause in element.clauses)
    # Containment on jsonb: an array holds ["x"] when one of its elements is the string "x".
    # Unlike json_array_elements_text it does not fail on a (tampered) non-array value.
    return f"(CAST({column} AS JSONB) @> jsonb_build_array(CAST({value} AS TEXT)))"


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"AuditFilter.{name} must be timezone-aware")
    return value


def _conditions(filter: AuditFilter) -> Iterable[ColumnElement[bool]]:
    for name in ("actor", "role", "kind", "purpose", "outcome"):
        value = getattr(filter, name)
        if value is not None:
            yield getattr(AuditRecord, name) == value
    if filter.record is not None:
        yield json_list_contains(AuditRecord.records, literal(filter.record))
    if filter.field is not None:
        yield json_list_contains(AuditRecord.fields, literal(filter.field))
    if filter.since is not None:
        yield AuditRecord.at >= _aware(filter.since, "since")
    if filter.until is not None:
        yield AuditRecord.at < _aware(filter.until, "until")


def list_statement(filter: AuditFilter) -> Select[AuditRecord]:
    """The records matching a filter, unordered: the caller orders or pages (by seq)."""
    return select(AuditRecord).where(*_conditions(filter))
