"""intel: advisories (CSAF/OSV/NVD), advisory CVEs, KEV, EPSS, import runs

Revision ID: intel_1
Revises: detect_1
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "intel_1"
down_revision: str | None = "detect_1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "intel_advisories",
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("publisher", sa.String(length=256), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("modified", sa.String(length=40), nullable=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "advisory_id", name=op.f("pk_intel_advisories")),
    )
    op.create_table(
        "intel_advisory_cves",
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("cve", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "advisory_id", "cve", name=op.f("pk_intel_advisory_cves")
        ),
    )
    op.create_index(
        op.f("ix_intel_advisory_cves_cve"), "intel_advisory_cves", ["cve"], unique=False
    )
    op.create_table(
        "intel_kev",
        sa.Column("cve", sa.String(length=32), nullable=False),
        sa.Column("vendor", sa.String(length=256), nullable=False),
        sa.Column("product", sa.String(length=256), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("date_added", sa.String(length=10), nullable=False),
        sa.Column("due_date", sa.String(length=10), nullable=True),
        sa.Column("ransomware", sa.String(length=16), nullable=True),
        sa.Column("catalog_version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("cve", name=op.f("pk_intel_kev")),
    )
    op.create_table(
        "intel_epss",
        sa.Column("cve", sa.String(length=32), nullable=False),
        sa.Column("epss", sa.Float(), nullable=False),
        sa.Column("percentile", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=True),
        sa.Column("score_date", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("cve", name=op.f("pk_intel_epss")),
    )
    op.create_table(
        "intel_imports",
        sa.Column("import_id", _RowId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("import_id", name=op.f("pk_intel_imports")),
    )
    op.create_index(op.f("ix_intel_imports_kind"), "intel_imports", ["kind"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_intel_imports_kind"), table_name="intel_imports")
    op.drop_table("intel_imports")
    op.drop_table("intel_epss")
    op.drop_table("intel_kev")
    op.drop_index(op.f("ix_intel_advisory_cves_cve"), table_name="intel_advisory_cves")
    op.drop_table("intel_advisory_cves")
    op.drop_table("intel_advisories")
