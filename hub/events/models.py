from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_status_id", "status", "id"),
        Index("ix_events_grid_id_id", "grid_id", "id"),
        Index("ix_events_department_id_id", "department_id", "id"),
        # Keyset orderings (sort column, id), see pagination.keyset.
        Index("ix_events_reported_at_id", "reported_at", "id"),
        Index("ix_events_updated_at_id", "updated_at", "id"),
        # The overdue filter: open statuses with a past deadline. Leading with status skips
        # the closed events that pile up over the years, whose deadlines have all passed.
        Index("ix_events_status_deadline", "status", "deadline"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Stored in WGS84; GCJ-02 from Chinese map SDKs is converted at the API edge.
    lng: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    reporter_kind: Mapped[str] = mapped_column(String(16))  # member | resident | system
    reporter_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    reporter_resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    reporter_system: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Bumped by every transition: subscribers and (later) connectors order changes by it.
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Optimistic locking: two concurrent transitions of one event cannot both win.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012


class EventTransition(Base):
    """One line of an event's timeline: a status change or a note, with its actor and time."""

    __tablename__ = "event_transitions"
    __table_args__ = (Index("ix_event_transitions_event_id_id", "event_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventChangeRecord(Base):
    """The outbox: one row per event change, written in the transaction that made the change.

    Webhook delivery (hub.connectors.webhooks) reads it in `seq` order, so a change is delivered
    only if it committed, and never lost if a process dies after the commit. `snapshot` is the
    event as the change left it, without personal data (no reporter, no location)."""

    __tablename__ = "event_changes"
    __table_args__ = (Index("ix_event_changes_event_id_seq", "event_id", "seq"),)

    seq: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    # The department a re-dispatch took the event away from: its subscribers hear of the
    # departure, though the event is no longer theirs.
    previous_department_id: Mapped[int | None] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
