"""notices published_at index: the keyset ordering PUBLISHED_AT (published_at, id)

The public pages list notices by when they were published; without this index each page would
sort every notice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_notices_published_at_id", "notices", ["published_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_notices_published_at_id", table_name="notices")
