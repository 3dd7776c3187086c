"""pending registrations: a second record of a registered ID number waits for reconciliation

A role that reads ID numbers masked must get the same answer for a number registered outside
its view as for a new one, so a duplicate no longer fails with CONFLICT for it: the record is
kept as a pending registration (duplicate_of_id) beside the registered one. The unique
constraint on id_number becomes a partial unique index over registered records.

Revision ID: 0008_pending_registrations
Revises: 0007_rate_windows
Create Date: 2026-12-08 03:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = "0008_pending_registrations"
down_revision: str | None = "0007_rate_windows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REGISTERED = sa.text("duplicate_of_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("residents") as batch:
        batch.add_column(sa.Column("duplicate_of_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("duplicate_claimed_by", sa.String(length=200), nullable=True))
        batch.add_column(
            sa.Column("duplicate_claimed_at", hub.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.drop_constraint("uq_residents_id_number", type_="unique")
        batch.create_foreign_key(
            "fk_residents_duplicate_of_id_residents", "residents", ["duplicate_of_id"], ["id"]
        )
    op.create_index("ix_residents_id_number", "residents", ["id_number"])
    op.create_index(
        "uq_residents_id_number_registered",
        "residents",
        ["id_number"],
        unique=True,
        sqlite_where=REGISTERED,
        postgresql_where=REGISTERED,
    )
    op.create_index(
        "ix_residents_duplicate_claimed_by",
        "residents",
        ["duplicate_claimed_by", "duplicate_claimed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_residents_duplicate_claimed_by", table_name="residents")
    op.drop_index("uq_residents_id_number_registered", table_name="residents")
    op.drop_index("ix_residents_id_number", table_name="residents")
    with op.batch_alter_table("residents") as batch:
        batch.drop_constraint("fk_residents_duplicate_of_id_residents", type_="foreignkey")
        batch.create_unique_constraint("uq_residents_id_number", ["id_number"])
        batch.drop_column("duplicate_claimed_at")
        batch.drop_column("duplicate_claimed_by")
        batch.drop_column("duplicate_of_id")
