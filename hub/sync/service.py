"""Statements over the sync tables. Functions flush; the engine's unit of work commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import utcnow
from hub.sync.models import (
    SyncConflict,
    SyncLink,
    SyncQuarantine,
    SyncRun,
    SyncState,
)

# The circuit breaker across runs: after this many failed runs in a row, runs are refused
# without trying for a cooldown that doubles with each further failure, up to the cap.
BREAKER_THRESHOLD = 3
BREAKER_BASE = timedelta(minutes=1)
BREAKER_CAP = timedelta(hours=1)


async def state(session: AsyncSession, *, connector: str) -> SyncState:
    found = await session.get(SyncState, connector)
    if found is None:
        found = SyncState(connector=connector, cursor=None, consecutive_failures=0)
        session.add(found)
        await session.flush()
    return found


async def start_run(
    session: AsyncSession, *, connector: str, trigger: str, dry_run: bool, full: bool
) -> SyncRun:
    # Any run still "running" died without finishing: the caller holds the connector's lock.
    await session.execute(
        update(SyncRun)
        .where(SyncRun.connector == connector, SyncRun.status == "running")
        .values(status="interrupted", finished_at=utcnow(), error="the process ended mid-run")
    )
    run = SyncRun(connector=connector, trigger=trigger, dry_run=dry_run, full=full)
    session.add(run)
    await session.flush()
    return run


def breaker_open_until(sync_state: SyncState, *, now: datetime) -> datetime | None:
    if sync_state.open_until is not None and sync_state.open_until > now:
        return sync_state.open_until
    return None


def note_failure(sync_state: SyncState, *, error: str, now: datetime) -> None:
    sync_state.consecutive_failures += 1
    sync_state.last_error = error
    over = sync_state.consecutive_failures - BREAKER_THRESHOLD
    if over >= 0:
        sync_state.open_until = now + min(BREAKER_CAP, BREAKER_BASE * 2**over)


def note_success(sync_state: SyncState) -> None:
    sync_state.consecutive_failures = 0
    sync_state.open_until = None
    sync_state.last_error = None


async def links(
    session: AsyncSession, *, system: str, entity: str, external_ids: Sequence[str]
) -> dict[str, SyncLink]:
    if not external_ids:
        return {}
    statement = select(SyncLink).where(
        SyncLink.system == system,
        SyncLink.entity == entity,
        SyncLink.external_id.in_(sorted(set(external_ids))),
    )
    return {link.external_id: link for link in await session.scalars(statement)}


async def links_of_records(
    session: AsyncSession, *, entity: str, record_ids: Sequence[int], other_than: str
) -> dict[int, list[SyncLink]]:
    """Other systems' links to these records: who else supplies their fields, and as of when."""
    if not record_ids:
        return {}
    statement = select(SyncLink).where(
        SyncLink.entity == entity,
        SyncLink.record_id.in_(sorted(set(record_ids))),
        SyncLink.system != other_than,
    )
    found: dict[int, list[SyncLink]] = {}
    for link in await session.scalars(statement):
        found.setdefault(link.record_id, []).append(link)
    return found


async def quarantine(
    session: AsyncSession,
    *,
    connector: str,
    run_id: int,
    position: str,
    code: str,
    reason: str,
    payload: Any,
    external_id: str | None = None,
) -> SyncQuarantine:
    item = SyncQuarantine(
        connector=connector,
        run_id=run_id,
        external_id=external_id,
        position=position[:128],
        code=code[:32],
        reason=reason,
        payload=payload,
    )
    session.add(item)
    return item


def conflict(
    session: AsyncSession,
    *,
    connector: str,
    run_id: int,
    entity: str,
    kind: str,
    kept: str,
    record_id: int | None,
    external_id: str | None,
    field: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        SyncConflict(
            connector=connector,
            run_id=run_id,
            entity=entity,
            record_id=record_id,
            external_id=external_id,
            field=field,
            kind=kind,
            kept=kept,
            detail=detail or {},
        )
    )


def runs_statement(*, connector: str | None = None) -> Select[SyncRun]:
    statement = select(SyncRun).order_by(SyncRun.id.desc())
    if connector is not None:
        statement = statement.where(SyncRun.connector == connector)
    return statement


def quarantine_statement(
    *, connector: str | None = None, status: str | None = "open"
) -> Select[SyncQuarantine]:
    statement = select(SyncQuarantine).order_by(SyncQuarantine.id)
    if connector is not None:
        statement = statement.where(SyncQuarantine.connector == connector)
    if status is not None:
        statement = statement.where(SyncQuarantine.status == status)
    return statement


def conflicts_statement(*, connector: str | None = None) -> Select[SyncConflict]:
    statement = select(SyncConflict).order_by(SyncConflict.id.desc())
    if connector is not None:
        statement = statement.where(SyncConflict.connector == connector)
    return statement
