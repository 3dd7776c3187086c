"""Resident reads and writes. Gender and birth date are derived from the ID number."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.db import utcnow
from hub.errors import BadUserInput, Conflict, NotFound
from hub.grids import service as grids
from hub.residents import idcard
from hub.residents.models import Resident, ResidentExternalId, ResidentTag

KNOWN_TAGS = frozenset(
    {
        "elderly",
        "living_alone",
        "disabled",
        "low_income",
        "key_care",
        "veteran",
        "left_behind_child",
        "chronic_illness",
        "pregnant",
        "unemployed",
    }
)


@dataclass(frozen=True, slots=True)
class ResidentFilter:
    grid_ids: Select[int] | None = None
    tag: str | None = None
    gender: str | None = None
    born_after: date | None = None
    born_before: date | None = None
    household_code: str | None = None
    id_number: str | None = None
    # True: only pending registrations; False: only registered records.
    pending: bool | None = None


def list_statement(filter: ResidentFilter) -> Select[Any]:
    statement = select(Resident)
    if filter.grid_ids is not None:
        statement = statement.where(Resident.grid_id.in_(filter.grid_ids))
    if filter.tag is not None:
        tagged = select(ResidentTag.resident_id).where(ResidentTag.tag == filter.tag)
        statement = statement.where(Resident.id.in_(tagged))
    if filter.gender is not None:
        statement = statement.where(Resident.gender == filter.gender)
    if filter.born_after is not None:
        statement = statement.where(Resident.birth_date >= filter.born_after)
    if filter.born_before is not None:
        statement = statement.where(Resident.birth_date < filter.born_before)
    if filter.household_code is not None:
        statement = statement.where(Resident.household_code == filter.household_code)
    if filter.id_number is not None:
        statement = statement.where(Resident.id_number == idcard.normalise(filter.id_number))
    if filter.pending is not None:
        pending = Resident.duplicate_of_id.is_not(None)
        statement = statement.where(pending if filter.pending else ~pending)
    return statement


def clean_tags(tags: Iterable[str]) -> list[str]:
    cleaned = sorted({tag.strip() for tag in tags})
    unknown = sum(1 for tag in cleaned if tag not in KNOWN_TAGS)
    if unknown:
        # Tags are care data (health, income...): a misspelt one may still say something about a
        # person, so the message counts the unknown tags and names only the vocabulary.
        known = sorted(KNOWN_TAGS)
        raise BadUserInput(
            f"{unknown} unknown tag(s); known tags are: {', '.join(known)}",
            field="tags",
            knownTags=known,
        )
    return cleaned


@dataclass(frozen=True, slots=True)
class ResidentChanges:
    """What a create or update sets; None leaves a field as it is (on update)."""

    name: str | None = None
    id_number: str | None = None
    phone: str | None = None
    address: str | None = None
    household_code: str | None = None
    grid_code: str | None = None
    tags: list[str] | None = None
    health_notes: str | None = None


async def _apply(
    session: AsyncSession,
    resident: Resident,
    changes: ResidentChanges,
    grid_ids: dict[str, int] | None = None,
) -> None:
    if changes.name is not None:
        resident.name = validation.text(changes.name, field="name", max_length=50)
    if changes.id_number is not None:
        parsed = idcard.parse(changes.id_number)
        resident.id_number = parsed.value
        resident.birth_date = parsed.birth_date
        resident.gender = parsed.gender
    if changes.phone is not None:
        resident.phone = validation.phone(changes.phone)
    if changes.address is not None:
        resident.address = validation.text(changes.address, field="address", max_length=200)
    if changes.household_code is not None:
        resident.household_code = validation.optional_text(
            changes.household_code, field="householdCode", max_length=32
        )
    if changes.grid_code is not None:
        if grid_ids is not None and changes.grid_code in grid_ids:
            resident.grid_id = grid_ids[changes.grid_code]
        else:
            grid = await grids.resolve_code(session, code=changes.grid_code, field="gridCode")
            resident.grid_id = grid.id
            if grid_ids is not None:
                grid_ids[grid.code] = grid.id
    if changes.health_notes is not None:
        resident.health_notes = validation.optional_text(
            changes.health_notes, field="healthNotes", max_length=2000
        )


async def _set_tags(session: AsyncSession, resident_id: int, tags: list[str]) -> None:
    """Replace the resident's tags. On update the caller holds the resident's row lock (see
    `update`), so two replacements of one resident's tags never interleave."""
    # Through the unit of work, and only the difference: the access log's tracker sees each tag
    # removed or added (a bulk DELETE went around it, so clearing tags was never on the record).
    statement = select(ResidentTag).where(ResidentTag.resident_id == resident_id)
    existing = {row.tag: row for row in (await session.scalars(statement)).all()}
    for tag, row in existing.items():
        if tag not in tags:
            await session.delete(row)
    session.add_all(
        ResidentTag(resident_id=resident_id, tag=tag) for tag in tags if tag not in existing
    )


async def _tags_of(session: AsyncSession, resident_id: int) -> list[str]:
    statement = select(ResidentTag.tag).where(ResidentTag.resident_id == resident_id)
    return sorted((await session.scalars(statement)).all())


async def _flush_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError:
        # The only unique column a client sets is the ID number; say so without echoing it.
        raise Conflict("a resident with this ID number already exists", field="idNumber") from None


@dataclass(frozen=True, slots=True)
class DuplicateClaim:
    """A record whose ID number is registered to `holder_id`: it is kept as a pending
    registration, made by `subject`, until someone who reads ID numbers in full reconciles it."""

    holder_id: int
    subject: str


async def registered_holder(
    session: AsyncSession, *, id_number: str, excluding: int | None = None
) -> int | None:
    """The registered resident (not a pending one) holding `id_number`, other than
    `excluding`."""
    statement = select(Resident.id).where(
        Resident.id_number == idcard.normalise(id_number), Resident.duplicate_of_id.is_(None)
    )
    if excluding is not None:
        statement = statement.where(Resident.id != excluding)
    return await session.scalar(statement.limit(1))


def _mark(resident: Resident, claim: DuplicateClaim | None) -> None:
    if claim is None:
        resident.duplicate_of_id = None
        resident.duplicate_claimed_by = None
        resident.duplicate_claimed_at = None
    else:
        resident.duplicate_of_id = claim.holder_id
        resident.duplicate_claimed_by = claim.subject
        resident.duplicate_claimed_at = utcnow()


async def claims_since(session: AsyncSession, *, subject: str, since: datetime) -> int:
    """How many pending registrations `subject` has made since `since` (auditors' alerts)."""
    statement = select(func.count()).where(
        Resident.duplicate_claimed_by == subject, Resident.duplicate_claimed_at >= since
    )
    return int(await session.scalar(statement) or 0)


async def get(session: AsyncSession, *, resident_id: int) -> Resident:
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("resident not found")
    return resident


async def create(
    session: AsyncSession, *, changes: ResidentChanges, claim: DuplicateClaim | None = None
) -> Resident:
    """A new resident; with `claim`, a pending registration of a number registered to another."""
    for required in ("name", "id_number", "address", "grid_code"):
        if getattr(changes, required) is None:
            raise BadUserInput(f"{required} is required", field=required)
    tags = clean_tags(changes.tags or [])
    resident = Resident()
    await _apply(session, resident, changes)
    _mark(resident, claim)
    session.add(resident)
    await _flush_unique(session)
    # A new resident has no tags to replace.
    session.add_all(ResidentTag(resident_id=resident.id, tag=tag) for tag in tags)
    await session.flush()
    return resident


@dataclass(slots=True)
class Built:
    """A resident checked and built but not yet added: imports add many with one flush."""

    resident: Resident
    tags: list[str]


async def build(
    session: AsyncSession, *, changes: ResidentChanges, grid_ids: dict[str, int]
) -> Built:
    """Check every value of a new resident and build it, adding nothing to the session.
    `grid_ids` caches grid codes across calls (an import resolves each code once)."""
    for required in ("name", "id_number", "address", "grid_code"):
        if getattr(changes, required) is None:
            raise BadUserInput(f"{required} is required", field=required)
    tags = clean_tags(changes.tags or [])
    resident = Resident()
    await _apply(session, resident, changes, grid_ids)
    return Built(resident=resident, tags=tags)


async def add_built(session: AsyncSession, built: list[Built]) -> None:
    """Add residents made by `build`, with their tags, in two flushes. Their ID numbers must be
    new: a duplicate fails the whole flush with CONFLICT (the caller's unit of work rolls back)."""
    session.add_all(b.resident for b in built)
    await _flush_unique(session)
    session.add_all(ResidentTag(resident_id=b.resident.id, tag=t) for b in built for t in b.tags)
    await session.flush()


async def _locked(session: AsyncSession, resident_id: int) -> Resident:
    """The resident, with its row locked until the unit of work ends (PostgreSQL: FOR UPDATE).

    Concurrent updates of one resident then run one after the other, and the tag replacement of
    the second sees the first's tags (under READ COMMITTED its statements would otherwise miss
    rows inserted meanwhile and collide on the primary key). SQLite has no row locks and needs
    none: its single database write lock serialises writers, and the first write below takes it.
    """
    statement = (
        select(Resident)
        .where(Resident.id == resident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    resident = await session.scalar(statement)
    if resident is None:
        raise NotFound("resident not found")
    return resident


async def update(
    session: AsyncSession,
    *,
    resident_id: int,
    changes: ResidentChanges,
    claim: DuplicateClaim | None = None,
) -> Resident:
    """Change the given fields. A new ID number is registered, or (with `claim`) pending."""
    tags = clean_tags(changes.tags) if changes.tags is not None else None
    resident = await _locked(session, resident_id)
    await _apply(session, resident, changes)
    if changes.id_number is not None:
        _mark(resident, claim)
    await _flush_unique(session)
    if tags is not None:
        if tags != await _tags_of(session, resident.id):
            # Tags live in their own table, so the resident's row would not change and its
            # `onupdate` would not fire: a change of tags is a change of the resident all the
            # same. (On SQLite this read may predate a concurrent writer's commit; the tags are
            # replaced regardless, so only the timestamp, never the tags, could be a beat off.)
            resident.updated_at = utcnow()
        await _set_tags(session, resident.id, tags)
        await session.flush()
    return resident


class PendingOutcome(StrEnum):
    """How a pending registration is reconciled by someone who reads ID numbers in full."""

    # The same person, moved (迁移): the registered record takes the pending one's grid, address,
    # contact and household, and its tags; the pending record goes.
    MOVED = "moved"
    # Not this person (a mistyped number, or a probe): the pending record goes.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Reconciled:
    registered: Resident
    removed_id: int


async def reconcile(
    session: AsyncSession, *, resident_id: int, outcome: PendingOutcome
) -> Reconciled:
    """Settle a pending registration. The caller re-points what other domains hold of the
    removed record (events' reporters, feedback) before the unit of work ends."""
    pending = await _locked(session, resident_id)
    if pending.duplicate_of_id is None:
        raise BadUserInput("this resident is not a pending registration", field="id")
    registered = await _locked(session, pending.duplicate_of_id)
    if outcome is PendingOutcome.MOVED:
        registered.name = pending.name
        registered.address = pending.address
        registered.phone = pending.phone or registered.phone
        registered.household_code = pending.household_code or registered.household_code
        registered.grid_id = pending.grid_id
        moved_tags = await _tags_of(session, pending.id)
        merged = sorted({*await _tags_of(session, registered.id), *moved_tags})
        await _set_tags(session, registered.id, merged)
        external = select(ResidentExternalId).where(ResidentExternalId.resident_id == pending.id)
        for row in (await session.scalars(external)).all():
            row.resident_id = registered.id
        registered.updated_at = utcnow()
    await _set_tags(session, pending.id, [])
    await session.flush()
    return Reconciled(registered=registered, removed_id=pending.id)


async def remove_reconciled(session: AsyncSession, *, resident_id: int) -> None:
    """Delete a reconciled pending record, once nothing else refers to it."""
    remaining = select(ResidentExternalId).where(ResidentExternalId.resident_id == resident_id)
    for row in (await session.scalars(remaining)).all():
        await session.delete(row)
    pending = await session.get(Resident, resident_id)
    if pending is not None:
        await session.delete(pending)
    await session.flush()
