"""rate hits: the log of the limit on anonymous writes, shared by every worker

(The revision id names the first design, a counter per window; 0008 already chains after it.)

Revision ID: 0007_rate_windows
Revises: 0006
Create Date: 2026-12-08 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_rate_windows"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_hits")),
    )
    op.create_index("ix_rate_hits_key_at", "rate_hits", ["key", "at"], unique=False)
    op.create_index(op.f("ix_rate_hits_until"), "rate_hits", ["until"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_hits_until"), table_name="rate_hits")
    op.drop_index("ix_rate_hits_key_at", table_name="rate_hits")
    op.drop_table("rate_hits")
