"""keyset indexes: one (sort column, id) index per ordering the API offers, and the overdue filter

Without them a page in a non-id ordering sorts the whole table (residents NAME, BIRTH_DATE,
UPDATED_AT; events UPDATED_AT; notices CREATED_AT; grids CODE on PostgreSQL), and the overdue
filter scans every event.

Plain CREATE INDEX: on PostgreSQL it blocks writes to the table while it builds (about a second
per 200,000 residents); CONCURRENTLY cannot run inside the migration's transaction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns), created in this order and dropped in the reverse one.
NEW_INDEXES: list[tuple[str, str, list[str]]] = [
    ("ix_residents_name_id", "residents", ["name", "id"]),
    ("ix_residents_birth_date_id", "residents", ["birth_date", "id"]),
    ("ix_residents_updated_at_id", "residents", ["updated_at", "id"]),
    ("ix_events_updated_at_id", "events", ["updated_at", "id"]),
    ("ix_events_status_deadline", "events", ["status", "deadline"]),
    ("ix_notices_created_at_id", "notices", ["created_at", "id"]),
    ("ix_grids_code_id", "grids", ["code", "id"]),
]


def upgrade() -> None:
    for name, table, columns in NEW_INDEXES:
        op.create_index(name, table, columns, unique=False)
    # ix_grids_path keeps its name and gains id, so it also serves the ordering PATH.
    op.drop_index("ix_grids_path", table_name="grids")
    op.create_index("ix_grids_path", "grids", ["path", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_grids_path", table_name="grids")
    op.create_index("ix_grids_path", "grids", ["path"], unique=False)
    for name, table, _columns in reversed(NEW_INDEXES):
        op.drop_index(name, table_name=table)
