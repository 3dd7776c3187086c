from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (
        Index("ix_residents_grid_id_id", "grid_id", "id"),
        # One (sort column, id) index per keyset ordering the API offers: a page reads
        # LIMIT + 1 index entries instead of sorting the table (pagination.keyset).
        Index("ix_residents_name_id", "name", "id"),
        Index("ix_residents_birth_date_id", "birth_date", "id"),
        Index("ix_residents_updated_at_id", "updated_at", "id"),
        # One registration per ID number. A pending registration (a second record of a
        # registered number, made by someone who could not see the first: a resident moving
        # between grids, 迁移) waits beside it until a role that reads ID numbers in full
        # reconciles the two.
        Index(
            "uq_residents_id_number_registered",
            "id_number",
            unique=True,
            sqlite_where=text("duplicate_of_id IS NULL"),
            postgresql_where=text("duplicate_of_id IS NULL"),
        ),
        Index("ix_residents_duplicate_claimed_by", "duplicate_claimed_by", "duplicate_claimed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    gender: Mapped[str] = mapped_column(String(8))  # "male" | "female", derived from the ID number
    birth_date: Mapped[date] = mapped_column(Date)
    id_number: Mapped[str] = mapped_column(String(18), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(200))
    household_code: Mapped[str | None] = mapped_column(String(32), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    health_notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set while this record's ID number is registered to another resident (a pending
    # registration), with who made the claim and when: reconciliation and auditors' alerts.
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    duplicate_claimed_by: Mapped[str | None] = mapped_column(String(200))
    duplicate_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ResidentTag(Base):
    """One row per (resident, tag): tags filter and count through an index, not a JSON scan."""

    __tablename__ = "resident_tags"
    __table_args__ = (Index("ix_resident_tags_tag_resident_id", "tag", "resident_id"),)

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(32), primary_key=True)


class ResidentExternalId(Base):
    """The resident's id in an external departmental system (household registry, health...)."""

    __tablename__ = "resident_external_ids"
    __table_args__ = (UniqueConstraint("system", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    system: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(64))
