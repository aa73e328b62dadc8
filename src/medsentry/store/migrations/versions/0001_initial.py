"""captures, flows and the generic event log

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 15:21:21.719696
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Written by alembic autogenerate from medsentry.store.schema, reviewed.
    op.create_table(
        "captures",
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("link_types", sa.String(length=128), nullable=True),
        sa.Column("packets", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("flows", sa.BigInteger(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("first_ns", sa.BigInteger(), nullable=True),
        sa.Column("last_ns", sa.BigInteger(), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("medsentry_version", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("capture_id", name=op.f("pk_captures")),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_key", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("flow_id", sa.String(length=64), nullable=True),
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["capture_id"],
            ["captures.capture_id"],
            name=op.f("fk_events_capture_id_captures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_events_event_key")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_capture_id"), ["capture_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_kind_ts_ns"), ["kind", "ts_ns"], unique=False)

    op.create_table(
        "flows",
        sa.Column("flow_id", sa.String(length=64), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_ns", sa.BigInteger(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("client_port", sa.Integer(), nullable=False),
        sa.Column("server_port", sa.Integer(), nullable=False),
        sa.Column("client_mac", sa.String(length=17), nullable=True),
        sa.Column("server_mac", sa.String(length=17), nullable=True),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("packets_c2s", sa.BigInteger(), nullable=False),
        sa.Column("packets_s2c", sa.BigInteger(), nullable=False),
        sa.Column("bytes_c2s", sa.BigInteger(), nullable=False),
        sa.Column("bytes_s2c", sa.BigInteger(), nullable=False),
        sa.Column("payload_c2s", sa.BigInteger(), nullable=False),
        sa.Column("payload_s2c", sa.BigInteger(), nullable=False),
        sa.Column("tcp_flags_c2s", sa.Integer(), nullable=False),
        sa.Column("tcp_flags_s2c", sa.Integer(), nullable=False),
        sa.Column("iat_mean_us", sa.Float(), nullable=False),
        sa.Column("iat_std_us", sa.Float(), nullable=False),
        sa.Column("iat_min_us", sa.Float(), nullable=False),
        sa.Column("iat_max_us", sa.Float(), nullable=False),
        sa.Column("end_reason", sa.String(length=8), nullable=False),
        sa.Column("app_protocol", sa.String(length=64), nullable=True),
        sa.Column("app_method", sa.String(length=16), nullable=True),
        sa.Column("app_confidence", sa.Float(), nullable=False),
        sa.Column("stream_c2s_bytes_in_order", sa.BigInteger(), nullable=True),
        sa.Column("stream_c2s_retransmitted_segments", sa.BigInteger(), nullable=True),
        sa.Column("stream_c2s_out_of_order_segments", sa.BigInteger(), nullable=True),
        sa.Column("stream_c2s_gaps", sa.BigInteger(), nullable=True),
        sa.Column("stream_c2s_gap_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stream_s2c_bytes_in_order", sa.BigInteger(), nullable=True),
        sa.Column("stream_s2c_retransmitted_segments", sa.BigInteger(), nullable=True),
        sa.Column("stream_s2c_out_of_order_segments", sa.BigInteger(), nullable=True),
        sa.Column("stream_s2c_gaps", sa.BigInteger(), nullable=True),
        sa.Column("stream_s2c_gap_bytes", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["capture_id"],
            ["captures.capture_id"],
            name=op.f("fk_flows_capture_id_captures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("flow_id", name=op.f("pk_flows")),
    )
    with op.batch_alter_table("flows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flows_app_protocol"), ["app_protocol"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_capture_id"), ["capture_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_client"), ["client"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_client_mac"), ["client_mac"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_server"), ["server"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_server_mac"), ["server_mac"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_server_port"), ["server_port"], unique=False)
        batch_op.create_index(batch_op.f("ix_flows_ts_ns"), ["ts_ns"], unique=False)


def downgrade() -> None:
    # Written by alembic autogenerate from medsentry.store.schema, reviewed.
    with op.batch_alter_table("flows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flows_ts_ns"))
        batch_op.drop_index(batch_op.f("ix_flows_server_port"))
        batch_op.drop_index(batch_op.f("ix_flows_server_mac"))
        batch_op.drop_index(batch_op.f("ix_flows_server"))
        batch_op.drop_index(batch_op.f("ix_flows_client_mac"))
        batch_op.drop_index(batch_op.f("ix_flows_client"))
        batch_op.drop_index(batch_op.f("ix_flows_capture_id"))
        batch_op.drop_index(batch_op.f("ix_flows_app_protocol"))

    op.drop_table("flows")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_kind_ts_ns"))
        batch_op.drop_index(batch_op.f("ix_events_flow_id"))
        batch_op.drop_index(batch_op.f("ix_events_capture_id"))

    op.drop_table("events")
    op.drop_table("captures")
