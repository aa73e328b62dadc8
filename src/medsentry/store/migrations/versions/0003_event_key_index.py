"""events.event_key: unique index instead of a unique constraint

The same uniqueness (and the same `ON CONFLICT (event_key)` target), but as a named index that
SQLite can drop and rebuild: the writer bulk-loads a capture into an empty `events` table
without it and builds it once before the commit (see `medsentry.store.writer`).

Revision ID: 0003
Revises: sbom_1
Create Date: 2026-11-23 19:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "sbom_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:  # SQLite: table rebuild
        batch_op.drop_constraint("uq_events_event_key", type_="unique")
        batch_op.create_index("ix_events_event_key", ["event_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_event_key")
        batch_op.create_unique_constraint("uq_events_event_key", ["event_key"])
