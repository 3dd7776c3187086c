"""Every mapped model, imported once so Base.metadata is complete (Alembic, tests, demo)."""

from hub.db import Base
from hub.departments.models import Department
from hub.events.models import Event, EventTransition
from hub.feedback.models import Feedback
from hub.grids.models import Grid
from hub.members.models import Member, member_grids
from hub.notices.models import Notice, notice_grids
from hub.residents.models import Resident, ResidentExternalId, ResidentTag

__all__ = [
    "Base",
    "Department",
    "Event",
    "EventTransition",
    "Feedback",
    "Grid",
    "Member",
    "Notice",
    "Resident",
    "ResidentExternalId",
    "ResidentTag",
    "member_grids",
    "notice_grids",
]
