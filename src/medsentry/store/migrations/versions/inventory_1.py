"""device inventory: devices, device_addresses, device_changes, assets

Revision ID: inventory_1
Revises: 0002
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_1"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=96), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("first_seen_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ns", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("category_confidence", sa.Float(), nullable=True),
        sa.Column("vendor", sa.String(length=128), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("software_version", sa.String(length=128), nullable=True),
        sa.Column("os", sa.String(length=128), nullable=True),
        sa.Column("criticality", sa.String(length=32), nullable=False),
        sa.Column("medical", sa.Boolean(), nullable=False),
        sa.Column("phi_observed", sa.Boolean(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_devices")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_mac"), ["mac"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_ip"), ["ip"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_vendor"), ["vendor"], unique=False)

    op.create_table(
        "device_addresses",
        sa.Column("device_id", sa.String(length=96), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("first_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_ns", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "ip", name=op.f("pk_device_addresses")),
    )
    with op.batch_alter_table("device_addresses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_addresses_ip"), ["ip"], unique=False)

    op.create_table(
        "device_changes",
        sa.Column("id", _RowId, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=96), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column("attribute", sa.String(length=32), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("capture_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_changes")),
    )
    with op.batch_alter_table("device_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_changes_device_id_ts_ns"), ["device_id", "ts_ns"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_device_changes_change"), ["change"], unique=False)

    op.create_table(
        "assets",
        sa.Column("asset_tag", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=96), nullable=True),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("serial_number", sa.String(length=128), nullable=True),
        sa.Column("vendor", sa.String(length=128), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("location", sa.String(length=255), nullable=True),
        sa.Column("department", sa.String(length=255), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("asset_tag", name=op.f("pk_assets")),
    )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assets_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_assets_mac"), ["mac"], unique=False)


def downgrade() -> None:
    op.drop_table("assets")
    op.drop_table("device_changes")
    op.drop_table("device_addresses")
    op.drop_table("devices")
