"""Every mapped model, imported once so Base.metadata is complete (Alembic, tests, demo)."""

from hub.authz.models import ApiKey, AuditHead, AuditRecord, EmergencyGrant, PolicyVersion
from hub.db import Base
from hub.departments.models import Department
from hub.events.models import Event, EventTransition
from hub.feedback.models import Feedback
from hub.grids.models import Grid
from hub.members.models import Member, member_grids
from hub.notices.models import Notice, notice_grids
from hub.residents.models import Resident, ResidentExternalId, ResidentTag

__all__ = [
    "ApiKey",
    "AuditHead",
    "AuditRecord",
    "Base",
    "Department",
    "EmergencyGrant",
    "Event",
    "EventTransition",
    "Feedback",
    "Grid",
    "Member",
    "Notice",
    "PolicyVersion",
    "Resident",
    "ResidentExternalId",
    "ResidentTag",
    "member_grids",
    "notice_grids",
]
