"""captures.depth: how deep a capture was read ("full" or "flows")

`medsentry scan --flows-only` reads flows and protocol identification without the dissectors;
the capture row says so, so that a report can tell a capture with no payload findings from one
that was never looked into. Rows stored before this revision were read fully.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("depth", sa.String(length=16), nullable=False, server_default="full")
        )


def downgrade() -> None:
    with op.batch_alter_table("captures", schema=None) as batch_op:
        batch_op.drop_column("depth")
