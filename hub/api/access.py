"""Queries and mutations of access control: the access log for auditors, policy changes for
policy_admin, emergency grants for the roles allowed to open them. Which role sees which of
these is the policy's business like everything else (policies/policy.csv)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import strawberry
from sqlalchemy import select

from hub import models, validation
from hub.api.compiled.shapes import listing, lookup_of
from hub.api.context import Context, Info
from hub.api.ids import parse_global_id, pk_of
from hub.api.scope import writes
from hub.api.types.access import (
    AuditChainStatus,
    AuditRecordType,
    EmergencyGrantType,
    PolicyVersionType,
    Viewer,
)
from hub.api.types.common import (
    Connection,
    Listing,
    Lookup,
    SortDirection,
    fetch,
    lookup,
    paginate,
)
from hub.authz import audit, grants, store
from hub.db import utcnow
from hub.errors import BadUserInput
from hub.pagination import SortKey

AUDIT_KEY = SortKey("SEQ", models.AuditRecord.seq)
POLICY_KEY = SortKey("VERSION", models.PolicyVersion.version)
GRANT_KEY = SortKey("ID", models.EmergencyGrant.id)


@strawberry.input
class AuditFilter:
    actor: str | None = None
    role: str | None = None
    kind: str | None = strawberry.field(
        default=None, description="read, mutation, policy, auth_failure, emergency"
    )
    record: str | None = strawberry.field(
        default=None, description='A global id, or "Type:number" as the log stores it.'
    )
    field: str | None = strawberry.field(default=None, description='e.g. "Resident.idNumber"')
    purpose: str | None = None
    outcome: str | None = None
    since: datetime | None = strawberry.field(default=None, description="Inclusive.")
    until: datetime | None = strawberry.field(default=None, description="Exclusive.")

    def to_domain(self) -> audit.AuditFilter:
        record = self.record
        if record is not None and ":" not in record:
            type_name, pk = parse_global_id(record, field="record")
            record = f"{type_name}:{pk}"
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise BadUserInput(f"{name} needs a time zone offset", field=name)
        return audit.AuditFilter(
            actor=self.actor,
            role=self.role,
            kind=self.kind,
            record=record,
            field=self.field,
            purpose=self.purpose,
            outcome=self.outcome,
            since=self.since,
            until=self.until,
        )


@strawberry.input
class ChangePolicyInput:
    add: list[str] = strawberry.field(default_factory=list, description="Lines to add.")
    remove: list[str] = strawberry.field(default_factory=list, description="Lines to remove.")
    reason: str = strawberry.field(description="Why: kept with the version.")


@strawberry.input
class OpenEmergencyGrantInput:
    reason: str
    grid_code: str = strawberry.field(description="The grid subtree the grant opens.")
    minutes: int = strawberry.field(description=f"At most {grants.MAX_MINUTES}.")


# The lists and lookups of access control, as Listing and Lookup builders (hub.api.queries).


async def list_audit_log(
    context: Context,
    filter: AuditFilter | None = None,
    direction: SortDirection = SortDirection.DESC,
) -> Listing:
    statement = audit.list_statement((filter or AuditFilter()).to_domain())
    statement = context.access.rows(statement, models.AuditRecord)
    return Listing(models.AuditRecord, statement, AUDIT_KEY, direction, id_name="seq")


async def list_policy_versions(context: Context) -> Listing:
    statement = context.access.rows(select(models.PolicyVersion), models.PolicyVersion)
    return Listing(
        models.PolicyVersion, statement, POLICY_KEY, SortDirection.DESC, id_name="version"
    )


def find_policy_version(context: Context, version: int) -> Lookup:
    condition = models.PolicyVersion.version == version
    return lookup(context, models.PolicyVersion, condition, "policy version")


async def list_emergency_grants(context: Context, active: bool = False) -> Listing:
    statement = grants.list_statement(active_at=utcnow() if active else None)
    statement = context.access.rows(statement, models.EmergencyGrant)
    return Listing(models.EmergencyGrant, statement, GRANT_KEY, SortDirection.DESC)


@strawberry.type
class AccessQuery:
    @strawberry.field(description="Who this request acts as.")
    def me(self, info: Info) -> Viewer:
        access = info.context.access
        viewer = access.viewer
        return Viewer(
            subject=viewer.subject,
            role=viewer.role,
            department_code=viewer.department_code,
            grid_codes=list(viewer.grid_codes),
            policy_version=access.profile.version,
            emergency=access.emergency,
            sensitive_fields=sorted(access.profile.sensitive),
        )

    @strawberry.field(
        description="The access log, newest first unless `direction` says ASC.",
        metadata=listing(list_audit_log),
    )
    async def audit_log(
        self,
        info: Info,
        filter: AuditFilter | None = None,
        direction: SortDirection = SortDirection.DESC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[AuditRecordType]:
        listed = await list_audit_log(info.context, filter, direction)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    @strawberry.field(description="Verify the whole access log's hash chain now.")
    async def audit_chain(self, info: Info) -> AuditChainStatus:
        async with info.context.db.reader() as session:
            report = await audit.verify(session)
        return AuditChainStatus(
            ok=report.ok,
            records=report.records,
            first_broken_seq=report.first_broken_seq,
            reason=report.reason,
        )

    @strawberry.field(
        description="Policy versions, newest first.", metadata=listing(list_policy_versions)
    )
    async def policy_versions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[PolicyVersionType]:
        listed = await list_policy_versions(info.context)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)

    @strawberry.field(metadata=lookup_of(find_policy_version))
    async def policy_version(self, info: Info, version: int) -> PolicyVersionType | None:
        return await fetch(info.context, find_policy_version(info.context, version))

    @strawberry.field(
        description="Emergency grants, newest first; `active` for the open ones.",
        metadata=listing(list_emergency_grants),
    )
    async def emergency_grants(
        self,
        info: Info,
        active: bool = False,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[EmergencyGrantType]:
        listed = await list_emergency_grants(info.context, active)
        return await paginate(info, listed, first=first, after=after, last=last, before=before)


def _changed_text(current: str, *, add: list[str], remove: list[str]) -> str:
    """The current policy text without `remove` and with `add` appended. Lines compare in
    normalised form; removing a line that is not there or adding one that is, is refused."""
    wanted_out = {
        store.policy_lines(line)[0] if store.policy_lines(line) else "" for line in remove
    }
    present = set(store.policy_lines(current))
    missing = sorted(wanted_out - present)
    if missing:
        raise BadUserInput(f"not in the policy: {missing[0]}", field="remove")
    additions = [normal for line in add for normal in store.policy_lines(line)]
    if len(additions) != len(add):
        raise BadUserInput("an added line is empty or a comment", field="add")
    duplicates = sorted(set(additions) & (present - wanted_out))
    if duplicates:
        raise BadUserInput(f"already in the policy: {duplicates[0]}", field="add")
    kept = [
        raw
        for raw in current.splitlines()
        if not (store.policy_lines(raw) and store.policy_lines(raw)[0] in wanted_out)
    ]
    return "\n".join([*kept, *additions]) + "\n"


async def _store_policy(
    info: Info, new_text: Callable[[str], str], *, reason: str, restores: int | None
) -> object:
    """Store the next policy version, built from the latest one read inside the same
    transaction: a worker whose copy is stale cannot undo a change it has not seen, and of two
    concurrent changes one fails with CONFLICT (the version number is the primary key)."""
    context = info.context
    registry = context.registry
    reason = validation.statement(reason, field="reason")
    context.audit_kind = "policy"
    async with context.db.transaction() as session:
        latest = await store.current(session)
        text = new_text(latest.text if latest is not None else registry.file_policy_text())
        # Checked before it is stored: the model, the schema it names, the auditors'
        # expectations. PolicyRejected carries the reason.
        compiled = registry.compile(text, version=(latest.version if latest else 0) + 1)
        version = await store.save(
            session,
            base=latest,
            text=text,
            actor=context.access.actor(),
            reason=reason,
            restores=restores,
        )
    registry.install(compiled)
    return version


@strawberry.type
class AccessMutation:
    @strawberry.mutation(
        description="Add and remove policy lines; applies in every worker.",
        metadata=writes("PolicyVersion"),
    )
    async def change_policy(self, info: Info, input: ChangePolicyInput) -> PolicyVersionType:
        return await _store_policy(  # type: ignore[return-value]
            info,
            lambda current: _changed_text(current, add=input.add, remove=input.remove),
            reason=input.reason,
            restores=None,
        )

    @strawberry.mutation(
        description="Make an earlier version's policy the live one again.",
        metadata=writes("PolicyVersion"),
    )
    async def rollback_policy(self, info: Info, version: int, reason: str) -> PolicyVersionType:
        async with info.context.db.reader() as session:
            earlier = await store.get(session, version=version)
        return await _store_policy(  # type: ignore[return-value]
            info, lambda _current: earlier.text, reason=reason, restores=version
        )

    @strawberry.mutation(
        description="Break-glass: widen your own view for a while, on the record, over a grid "
        "of a level your policy allows (`EmergencyGrant, grant:<level>`).",
        metadata=writes("EmergencyGrant"),
    )
    async def open_emergency_grant(
        self, info: Info, input: OpenEmergencyGrantInput
    ) -> EmergencyGrantType:
        context = info.context
        viewer = context.access.viewer
        context.audit_kind = "emergency"
        async with context.db.transaction() as session:
            grant = await grants.open_grant(
                session,
                subject=viewer.subject,
                role=viewer.role,
                reason=input.reason,
                grid_code=input.grid_code,
                minutes=input.minutes,
                levels=context.access.profile.grant_levels,
            )
        await context.registry.sync(context.db.database)
        return grant  # type: ignore[return-value]

    @strawberry.mutation(metadata=writes("EmergencyGrant"))
    async def close_emergency_grant(self, info: Info, id: strawberry.ID) -> EmergencyGrantType:
        context = info.context
        context.audit_kind = "emergency"
        async with context.db.transaction() as session:
            grant = await grants.close_grant(
                session,
                grant_id=pk_of(id, "EmergencyGrant"),
                subject=context.access.viewer.subject,
            )
        await context.registry.sync(context.db.database)
        return grant  # type: ignore[return-value]
