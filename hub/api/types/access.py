"""Access control in the API: who am I, the access log, policy versions, emergency grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

from hub import models
from hub.api.compiled.shapes import reads
from hub.api.types.common import Node
from hub.db import utcnow


@strawberry.type(description="The identity this request acts as, and what its role may do.")
class Viewer:
    subject: str
    role: str
    department_code: str | None
    grid_codes: list[str]
    policy_version: int
    emergency: bool = strawberry.field(
        description="An emergency grant is open: its rows are in scope, masked fields in full."
    )
    sensitive_fields: list[str] = strawberry.field(
        description="Fields this role reads only with a stated purpose (X-GridHub-Purpose)."
    )


@strawberry.type(name="AuditRecord", description="One entry of the hash-chained access log.")
class AuditRecordType:
    seq: int
    at: datetime
    kind: str = strawberry.field(description="read, mutation, policy, auth_failure, emergency")
    actor: str
    role: str
    department: str | None
    operation: str | None
    fields: list[str]
    records: list[str] = strawberry.field(description='Records touched, e.g. "Resident:42".')
    purpose: str | None
    outcome: str
    hash: str
    prev_hash: str

    @strawberry.field(metadata=reads("detail"))
    @staticmethod
    def detail(root: Parent[models.AuditRecord]) -> JSON:
        return cast(JSON, root.detail)


@strawberry.type(name="AuditChainStatus", description="The result of verifying the whole chain.")
class AuditChainStatus:
    ok: bool
    records: int
    first_broken_seq: int | None
    reason: str | None


@strawberry.type(name="PolicyVersion", description="One version of the live policy.")
class PolicyVersionType:
    version: int
    created_at: datetime
    actor: str
    reason: str
    text: str = strawberry.field(description="The whole policy, in Casbin's CSV format.")
    diff: str = strawberry.field(description="Lines removed (-) and added (+) against the last.")
    restores: int | None = strawberry.field(description="Set on a rollback: the version restored.")


@strawberry.type(name="EmergencyGrant", description="A time-boxed emergency widening (突发事件).")
class EmergencyGrantType(Node):
    subject: str
    role: str
    reason: str
    grid_code: str
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None

    @strawberry.field(
        description="Neither closed nor expired.", metadata=reads("closed_at", "expires_at")
    )
    @staticmethod
    def active(root: Parent[models.EmergencyGrant]) -> bool:
        return root.closed_at is None and root.expires_at > utcnow()

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        return isinstance(obj, models.EmergencyGrant)
