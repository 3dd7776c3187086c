"""ID numbers on the write side: a registered number answers the same as a new one to whoever
cannot read it in full.

A role that reads `Resident.idNumber` masked could otherwise recover a whole number from its
masked form: set a resident of its own to each checksum-valid candidate (about 30) and watch
which one fails with CONFLICT. So for such a caller, and for a number registered outside the
caller's scope, a second record of a registered number is kept as a pending registration (a
resident moving between grids, 迁移, is the real case) and the answer is exactly the answer for
a new number. Only a caller that reads ID numbers in full and can see the registered record is
told CONFLICT: it could have looked the number up anyway.

A role that reads ID numbers in full reconciles pending registrations (`pendingRegistration`
filter, `reconcileRegistration`); auditors see who made many (`registrationAlerts`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

import strawberry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import models
from hub.api.context import Info
from hub.api.ids import pk_of
from hub.api.scope import require_writable, visible, writes
from hub.api.types.residents import ResidentType
from hub.authz import Access
from hub.authz.profile import Level
from hub.db import utcnow
from hub.errors import BadUserInput, Conflict, Forbidden
from hub.events import service as events
from hub.feedback import service as feedback
from hub.residents import idcard
from hub.residents import service as residents

ID_NUMBER = "Resident.idNumber"
# Pending registrations one subject may make in ALERT_WINDOW before auditors see an alert.
ALERT_AFTER = 3
ALERT_WINDOW = timedelta(hours=24)


async def duplicate_claim(
    session: AsyncSession, access: Access, id_number: str | None, *, excluding: int | None
) -> residents.DuplicateClaim | None:
    """What giving `id_number` means for this caller: nothing (a new number), a pending
    registration (registered to a record the caller may not see in full), or CONFLICT (registered
    to a record the caller sees, number and all). The same statements run in every case, so the
    time taken does not tell them apart either."""
    if id_number is None:
        return None
    number = idcard.parse(id_number).value
    holder = await residents.registered_holder(session, id_number=number, excluding=excluding)
    if access.level(ID_NUMBER) is Level.FULL:
        # Id 0 names no row: the visibility check runs whether or not there is a holder.
        condition = models.Resident.id == (holder or 0)
        if await visible(session, access, models.Resident, condition):
            raise Conflict("a resident with this ID number already exists", field="idNumber")
    if holder is None:
        return None
    return residents.DuplicateClaim(holder_id=holder, subject=access.actor())


@strawberry.enum(description="How a pending registration is settled.")
class ReconcileOutcome(Enum):
    MOVED = residents.PendingOutcome.MOVED.value
    REJECTED = residents.PendingOutcome.REJECTED.value


@strawberry.type(description="A subject that made many pending registrations: a possible probe.")
class RegistrationAlert:
    subject: str
    count: int
    first_at: datetime
    last_at: datetime


async def _repoint(session: AsyncSession, removed: int, by: int | None) -> None:
    if by is None and await events.count_reported_by_resident(session, resident_id=removed):
        raise BadUserInput(
            "events name this record as their reporter: reconcile it as MOVED instead",
            field="outcome",
        )
    await events.replace_reporter_resident(session, resident_id=removed, by=by)
    await feedback.replace_resident(session, resident_id=removed, by=by)


@strawberry.type
class RegistrationMutation:
    @strawberry.mutation(
        description="Settle a pending registration (a second record of a registered ID number): "
        "MOVED merges it into the registered record, REJECTED removes it. Needs ID numbers in "
        "full.",
        metadata=writes("Resident"),
    )
    async def reconcile_registration(
        self, info: Info, id: strawberry.ID, outcome: ReconcileOutcome
    ) -> ResidentType:
        access = info.context.access
        resident_id = pk_of(id, "Resident")
        async with info.context.db.transaction() as session:
            await require_writable(
                session, access, models.Resident, models.Resident.id == resident_id, "resident"
            )
            if access.level(ID_NUMBER) is not Level.FULL:
                raise Forbidden("reconciling registrations needs ID numbers in full")
            result = await residents.reconcile(
                session,
                resident_id=resident_id,
                outcome=residents.PendingOutcome(outcome.value),
            )
            moved = outcome is ReconcileOutcome.MOVED
            await _repoint(session, result.removed_id, result.registered.id if moved else None)
            await residents.remove_reconciled(session, resident_id=result.removed_id)
        return result.registered  # type: ignore[return-value]


@strawberry.type
class RegistrationQuery:
    @strawberry.field(
        description="Subjects with at least 3 pending registrations in the last 24 hours: "
        "each is a number registered elsewhere, which is how probing for ID numbers looks."
    )
    async def registration_alerts(self, info: Info) -> list[RegistrationAlert]:
        since = utcnow() - ALERT_WINDOW
        claimed = models.Resident.duplicate_claimed_at
        statement = (
            select(
                models.Resident.duplicate_claimed_by,
                func.count(),
                func.min(claimed),
                func.max(claimed),
            )
            .where(models.Resident.duplicate_claimed_by.is_not(None), claimed >= since)
            .group_by(models.Resident.duplicate_claimed_by)
            .having(func.count() >= ALERT_AFTER)
            .order_by(models.Resident.duplicate_claimed_by)
        )
        async with info.context.db.reader() as session:
            rows = (await session.execute(statement)).all()
        # The WHERE clause makes every grouped column non-null.
        return [
            RegistrationAlert(subject=s, count=c, first_at=first, last_at=last)
            for s, c, first, last in rows
            if s is not None and first is not None and last is not None
        ]
