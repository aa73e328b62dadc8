"""SBOMs and VEX: sboms, sbom_components, vex_statements

Revision ID: sbom_1
Revises: controls_1
Create Date: 2026-11-23 16:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sbom_1"
down_revision: str | None = "controls_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sboms",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("sbom_id", sa.String(length=64), nullable=False),
        sa.Column("manufacturer", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("device_key", sa.String(length=512), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("spec_version", sa.String(length=16), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("serial_number", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("created", sa.String(length=40), nullable=True),
        sa.Column("authors", sa.Text(), nullable=False),
        sa.Column("tools", sa.Text(), nullable=False),
        sa.Column("lifecycles", sa.Text(), nullable=False),
        sa.Column("component_count", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sboms")),
        sa.UniqueConstraint("device_key", name=op.f("uq_sboms_device_key")),
    )
    op.create_index(op.f("ix_sboms_sbom_id"), "sboms", ["sbom_id"], unique=False)
    op.create_table(
        "sbom_components",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("sbom_row", _RowId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=True),
        sa.Column("bom_ref", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("supplier", sa.String(length=255), nullable=True),
        sa.Column("grp", sa.String(length=255), nullable=True),
        sa.Column("purl", sa.Text(), nullable=True),
        sa.Column("cpe", sa.Text(), nullable=True),
        sa.Column("hashes", sa.Text(), nullable=False),
        sa.Column("licenses", sa.Text(), nullable=False),
        sa.Column("level_of_support", sa.String(length=32), nullable=True),
        sa.Column("level_of_support_raw", sa.String(length=255), nullable=True),
        sa.Column("end_of_support", sa.String(length=255), nullable=True),
        sa.Column("end_of_support_date", sa.String(length=10), nullable=True),
        sa.Column("parent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sbom_row"],
            ["sboms.id"],
            name=op.f("fk_sbom_components_sbom_row_sboms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sbom_components")),
    )
    op.create_index(
        op.f("ix_sbom_components_sbom_row"), "sbom_components", ["sbom_row"], unique=False
    )
    op.create_table(
        "vex_statements",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("statement_key", sa.String(length=64), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("vulnerability", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("purl", sa.Text(), nullable=True),
        sa.Column("cpe", sa.Text(), nullable=True),
        sa.Column("bom_ref", sa.Text(), nullable=True),
        sa.Column("product_name", sa.Text(), nullable=True),
        sa.Column("product_version", sa.Text(), nullable=True),
        sa.Column("supplier", sa.String(length=255), nullable=True),
        sa.Column("justification", sa.String(length=64), nullable=True),
        sa.Column("justification_raw", sa.String(length=64), nullable=True),
        sa.Column("impact_statement", sa.Text(), nullable=True),
        sa.Column("action_statement", sa.Text(), nullable=True),
        sa.Column("responses", sa.Text(), nullable=False),
        sa.Column("aliases", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.String(length=40), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vex_statements")),
        sa.UniqueConstraint("statement_key", name=op.f("uq_vex_statements_statement_key")),
    )
    op.create_index(
        op.f("ix_vex_statements_vulnerability"), "vex_statements", ["vulnerability"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_vex_statements_vulnerability"), table_name="vex_statements")
    op.drop_table("vex_statements")
    op.drop_index(op.f("ix_sbom_components_sbom_row"), table_name="sbom_components")
    op.drop_table("sbom_components")
    op.drop_index(op.f("ix_sboms_sbom_id"), table_name="sboms")
    op.drop_table("sboms")
