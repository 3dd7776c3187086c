"""Every mapped model, imported once so Base.metadata is complete (Alembic, tests, demo)."""

from hub.authz.models import ApiKey, AuditHead, AuditRecord, EmergencyGrant, PolicyVersion
from hub.authz.ratelimit import RateHit
from hub.db import Base
from hub.departments.models import Department
from hub.events.models import Event, EventChangeRecord, EventTransition
from hub.feedback.models import Feedback
from hub.grids.models import Grid
from hub.members.models import Member, member_grids
from hub.notices.models import Notice, notice_grids
from hub.residents.models import Resident, ResidentExternalId, ResidentTag
from hub.sync.models import (
    SyncConflict,
    SyncLink,
    SyncQuarantine,
    SyncRun,
    SyncState,
    WebhookDelivery,
)

__all__ = [
    "ApiKey",
    "AuditHead",
    "AuditRecord",
    "Base",
    "Department",
    "EmergencyGrant",
    "Event",
    "EventChangeRecord",
    "EventTransition",
    "Feedback",
    "Grid",
    "Member",
    "Notice",
    "PolicyVersion",
    "RateHit",
    "Resident",
    "ResidentExternalId",
    "ResidentTag",
    "SyncConflict",
    "SyncLink",
    "SyncQuarantine",
    "SyncRun",
    "SyncState",
    "WebhookDelivery",
    "member_grids",
    "notice_grids",
]
