"""controls: findings, finding_history, report_runs

Revision ID: controls_1
Revises: intel_1
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "controls_1"
down_revision: str | None = "intel_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("finding_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=96), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger(), nullable=False),
        sa.Column("evidence_count", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("peers", sa.Text(), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("closed_ns", sa.BigInteger(), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("closed_reason", sa.Text(), nullable=True),
        sa.Column("closed_last_seen_ns", sa.BigInteger(), nullable=True),
        sa.Column("capture_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("finding_id"),
    )
    op.create_index(op.f("ix_findings_status"), "findings", ["status"])
    op.create_index(op.f("ix_findings_device_id"), "findings", ["device_id"])
    op.create_index(op.f("ix_findings_type"), "findings", ["type"])
    op.create_index(op.f("ix_findings_severity"), "findings", ["severity"])
    op.create_table(
        "finding_history",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("finding_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_finding_history_finding_id"), "finding_history", ["finding_id"])
    op.create_table(
        "report_runs",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_report_runs_created_ns"), "report_runs", ["created_ns"])


def downgrade() -> None:
    op.drop_index(op.f("ix_report_runs_created_ns"), table_name="report_runs")
    op.drop_table("report_runs")
    op.drop_index(op.f("ix_finding_history_finding_id"), table_name="finding_history")
    op.drop_table("finding_history")
    for col in ("severity", "type", "device_id", "status"):
        op.drop_index(op.f(f"ix_findings_{col}"), table_name="findings")
    op.drop_table("findings")
