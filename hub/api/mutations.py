"""Write side. Each mutation is one unit of work; event changes are published after commit."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from hub import models
from hub.api.context import Info
from hub.api.ids import pk_of
from hub.api.registrations import duplicate_claim
from hub.api.scope import (
    attributed_department,
    require_created_in_scope,
    require_grid_in_scope,
    require_on_behalf,
    require_writable,
    visible,
    writes,
)
from hub.api.types.common import CoordinatesInput
from hub.api.types.events import EventCategory, EventTransitionType, EventType, Severity
from hub.api.types.feedback import FeedbackKind, FeedbackType
from hub.api.types.notices import NoticeType
from hub.api.types.residents import ResidentType
from hub.authz import Access
from hub.errors import BadUserInput
from hub.events import service as events
from hub.events.changes import EventChange
from hub.events.states import Action
from hub.feedback import service as feedback
from hub.models import Event
from hub.notices import service as notices
from hub.residents import service as residents


@strawberry.input
class ReportEventInput:
    category: EventCategory
    title: str
    grid_code: str
    severity: Severity = Severity.MEDIUM
    description: str = ""
    location: CoordinatesInput | None = None
    deadline: datetime | None = None
    reporter_member_id: strawberry.ID | None = None
    reporter_resident_id: strawberry.ID | None = None
    reporter_system: str | None = strawberry.field(
        default=None, description="Name of the external system, e.g. 12345-hotline."
    )


@strawberry.input
class ResidentInput:
    name: str | None = None
    id_number: str | None = None
    phone: str | None = None
    address: str | None = None
    household_code: str | None = None
    grid_code: str | None = None
    tags: list[str] | None = None
    health_notes: str | None = None

    def changes(self) -> residents.ResidentChanges:
        # The input's fields are the service's, one for one: None leaves a field unchanged.
        return residents.ResidentChanges(**dataclasses.asdict(self))


@strawberry.input
class CreateNoticeInput:
    title: str
    body: str = strawberry.field(description="Markdown.")
    grid_codes: list[str]
    department_code: str | None = strawberry.field(
        default=None,
        description="The issuing department: your own (the default); another needs on_behalf.",
    )


@strawberry.input
class SubmitFeedbackInput:
    kind: FeedbackKind
    content: str
    grid_code: str | None = None


async def _transition(
    info: Info,
    id: str,
    action: Action,
    *,
    note: str = "",
    department_code: str | None = None,
    deadline: datetime | None = None,
) -> Event:
    context = info.context
    event_id = pk_of(id, "Event")
    async with context.db.transaction() as session:
        await require_writable(
            session, context.access, models.Event, models.Event.id == event_id, "event"
        )
        event, change = await events.transition_with_change(
            session,
            event_id=event_id,
            action=action,
            actor=context.access.actor(),
            note=note,
            department_code=department_code,
            deadline=deadline,
        )
    await context.broker.publish(change)
    return event


async def _require_reporter_in_scope(
    session: AsyncSession, access: Access, report: events.EventReport
) -> None:
    # Naming who reported is an attribution (on_behalf); a reporter outside the viewer's scope
    # is then refused exactly like one that does not exist.
    require_on_behalf(access, "ReportEventInput.reporterSystem", report.reporter_system)
    for kind, model, pk, attribution in (
        ("member", models.Member, report.reporter_member_id, "ReportEventInput.reporterMemberId"),
        (
            "resident",
            models.Resident,
            report.reporter_resident_id,
            "ReportEventInput.reporterResidentId",
        ),
    ):
        require_on_behalf(access, attribution, pk)
        if pk is not None and not await visible(session, access, model, model.id == pk):
            raise BadUserInput(f"unknown reporting {kind}", field="reporter")


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Report a new event; it starts as REPORTED.", metadata=writes("Event")
    )
    async def report_event(self, info: Info, input: ReportEventInput) -> EventType:
        context = info.context
        report = events.EventReport(
            category=input.category.value,
            title=input.title,
            grid_code=input.grid_code,
            severity=input.severity.value,
            description=input.description,
            location=events.Location(
                input.location.lng, input.location.lat, input.location.system.value
            )
            if input.location
            else None,
            deadline=input.deadline,
            reporter_member_id=pk_of(input.reporter_member_id, "Member", field="reporterMemberId")
            if input.reporter_member_id
            else None,
            reporter_resident_id=pk_of(
                input.reporter_resident_id, "Resident", field="reporterResidentId"
            )
            if input.reporter_resident_id
            else None,
            reporter_system=input.reporter_system,
        )
        async with context.db.transaction() as session:
            await require_grid_in_scope(
                session, context.access, models.Event, report.grid_code, field="gridCode"
            )
            await _require_reporter_in_scope(session, context.access, report)
            event = await events.report(session, report=report, actor=context.access.actor())
            await require_created_in_scope(
                session, context.access, models.Event, event.id, field="gridCode"
            )
            change = EventChange.of(event, Action.REPORT.value)
        await context.broker.publish(change)
        return event  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Event"))
    async def accept_event(self, info: Info, id: strawberry.ID, note: str = "") -> EventType:
        return await _transition(info, id, Action.ACCEPT, note=note)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Hand the event to a department (again, to re-dispatch).",
        metadata=writes("Event"),
    )
    async def dispatch_event(
        self,
        info: Info,
        id: strawberry.ID,
        department_code: str,
        deadline: datetime | None = None,
        note: str = "",
    ) -> EventType:
        return await _transition(  # type: ignore[return-value]
            info, id, Action.DISPATCH, note=note, department_code=department_code, deadline=deadline
        )

    @strawberry.mutation(metadata=writes("Event"))
    async def start_event(self, info: Info, id: strawberry.ID, note: str = "") -> EventType:
        return await _transition(info, id, Action.START, note=note)  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Event"))
    async def resolve_event(self, info: Info, id: strawberry.ID, note: str = "") -> EventType:
        return await _transition(info, id, Action.RESOLVE, note=note)  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Event"))
    async def close_event(self, info: Info, id: strawberry.ID, note: str = "") -> EventType:
        return await _transition(info, id, Action.CLOSE, note=note)  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Event"))
    async def reject_event(self, info: Info, id: strawberry.ID, reason: str) -> EventType:
        return await _transition(info, id, Action.REJECT, note=reason)  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Event"))
    async def reopen_event(self, info: Info, id: strawberry.ID, reason: str) -> EventType:
        return await _transition(info, id, Action.REOPEN, note=reason)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Add a note to an event's timeline without changing status.",
        metadata=writes("Event"),
    )
    async def add_event_note(self, info: Info, id: strawberry.ID, note: str) -> EventTransitionType:
        context = info.context
        event_id = pk_of(id, "Event")
        async with context.db.transaction() as session:
            await require_writable(
                session, context.access, models.Event, models.Event.id == event_id, "event"
            )
            line = await events.add_note(
                session, event_id=event_id, actor=context.access.actor(), note=note
            )
        return line  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Notice"))
    async def create_notice(self, info: Info, input: CreateNoticeInput) -> NoticeType:
        access = info.context.access
        department_code = attributed_department(
            access, input.department_code, attribution="CreateNoticeInput.departmentCode"
        )
        async with info.context.db.transaction() as session:
            notice = await notices.create(
                session,
                title=input.title,
                body=input.body,
                department_code=department_code,
                grid_codes=input.grid_codes,
            )
            await require_created_in_scope(
                session, access, models.Notice, notice.id, field="gridCodes"
            )
        return notice  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Notice"))
    async def publish_notice(self, info: Info, id: strawberry.ID) -> NoticeType:
        notice_id = pk_of(id, "Notice")
        async with info.context.db.transaction() as session:
            await require_writable(
                session, info.context.access, models.Notice, models.Notice.id == notice_id, "notice"
            )
            notice = await notices.publish(session, notice_id=notice_id)
        return notice  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Notice"))
    async def retract_notice(self, info: Info, id: strawberry.ID) -> NoticeType:
        notice_id = pk_of(id, "Notice")
        async with info.context.db.transaction() as session:
            await require_writable(
                session, info.context.access, models.Notice, models.Notice.id == notice_id, "notice"
            )
            notice = await notices.retract(session, notice_id=notice_id)
        return notice  # type: ignore[return-value]

    @strawberry.mutation(
        description="Submit a suggestion or complaint; returns its tracking code.",
        metadata=writes("Feedback"),
    )
    async def submit_feedback(self, info: Info, input: SubmitFeedbackInput) -> FeedbackType:
        async with info.context.db.transaction() as session:
            if input.grid_code is not None:
                await require_grid_in_scope(
                    session, info.context.access, models.Feedback, input.grid_code, field="gridCode"
                )
            item = await feedback.submit(
                session, kind=input.kind.value, content=input.content, grid_code=input.grid_code
            )
        return item  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Feedback"))
    async def respond_to_feedback(
        self, info: Info, tracking_code: str, response: str, department_code: str | None = None
    ) -> FeedbackType:
        code = feedback.normalise_tracking_code(tracking_code)
        access = info.context.access
        async with info.context.db.transaction() as session:
            await require_writable(
                session, access, models.Feedback, models.Feedback.tracking_code == code, "feedback"
            )
            # The answering department is the caller's own unless the policy grants on_behalf.
            item = await feedback.respond(
                session,
                tracking_code=tracking_code,
                response=response,
                department_code=attributed_department(
                    access, department_code, attribution="Feedback.responder"
                ),
            )
        return item  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("Resident"))
    async def create_resident(self, info: Info, input: ResidentInput) -> ResidentType:
        async with info.context.db.transaction() as session:
            if input.grid_code is not None:
                await require_grid_in_scope(
                    session, info.context.access, models.Resident, input.grid_code, field="gridCode"
                )
            claim = await duplicate_claim(
                session, info.context.access, input.id_number, excluding=None
            )
            resident = await residents.create(session, changes=input.changes(), claim=claim)
            await require_created_in_scope(
                session, info.context.access, models.Resident, resident.id, field="gridCode"
            )
        return resident  # type: ignore[return-value]

    @strawberry.mutation(
        description="Change the given fields; omitted fields stay as they are.",
        metadata=writes("Resident"),
    )
    async def update_resident(
        self, info: Info, id: strawberry.ID, input: ResidentInput
    ) -> ResidentType:
        resident_id = pk_of(id, "Resident")
        access = info.context.access
        async with info.context.db.transaction() as session:
            await require_writable(
                session, access, models.Resident, models.Resident.id == resident_id, "resident"
            )
            if input.grid_code is not None:
                await require_grid_in_scope(
                    session, access, models.Resident, input.grid_code, field="gridCode"
                )
            claim = await duplicate_claim(session, access, input.id_number, excluding=resident_id)
            resident = await residents.update(
                session, resident_id=resident_id, changes=input.changes(), claim=claim
            )
            await require_created_in_scope(
                session, access, models.Resident, resident.id, field="gridCode"
            )
        return resident  # type: ignore[return-value]
