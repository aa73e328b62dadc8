"""The relational schema: captures, flows and the generic event log.

- `captures`: one row per capture file (keyed by the SHA-256 of its bytes, so the same file
  under another name is the same capture) or per live session.
- `flows`: one row per `FlowRecord`, typed columns mirroring its fields (the two `StreamStats`
  are flattened into `stream_c2s_*` / `stream_s2c_*`). Unique on `flow_id`.
- `events`: every other event kind, as its msgspec JSON payload plus the columns needed to find
  it (kind, time, flow, capture). `event_key` is a keyed content hash, so writing the same event
  twice stores it once. Events of later issues land here with no schema change.

Room for the device inventory: it will add `devices` (one row per device, keyed by a
`device_id`) and `device_evidence` (device_id -> events.id / flows.flow_id) in its own
migration; flows already index the MAC and IP columns those tables will join on.

Every change to these tables ships as an Alembic revision in `migrations/versions/`;
`tests/store/test_migrations.py` fails when this module and the migrations disagree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# Deterministic constraint names, so migrations can name what they alter (SQLite batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# An auto-increment 64-bit key (SQLite only auto-increments a column typed INTEGER).
_RowId = BigInteger().with_variant(Integer(), "sqlite")

# Capture status values.
STATUS_COMPLETE = "complete"  # read to the end, no damage
STATUS_DAMAGED = "damaged"  # read up to damage the reader reported (DecodeWarning); rest skipped
STATUS_RUNNING = "running"  # live session in progress (or killed before it could finish)
STATUS_STOPPED = "stopped"  # live session ended cleanly (Ctrl-C or --duration)
# How deep a capture was read: every dissector, or flows and protocol identification only
# (`medsentry scan --flows-only`). A capture read fully once stays "full" when read again.
DEPTH_FULL = "full"
DEPTH_FLOWS = "flows"

captures = Table(
    "captures",
    metadata,
    Column("capture_id", String(64), primary_key=True),  # sha256 hex of the file's bytes
    Column("source", Text, nullable=False),  # path as given, or "live:<interface>"
    Column("size_bytes", BigInteger, nullable=True),
    Column("format", String(16), nullable=False),  # pcap, pcapng, live
    Column("link_types", String(128), nullable=True),  # comma-separated LINKTYPE_ numbers
    Column("packets", BigInteger, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("flows", BigInteger, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("first_ns", BigInteger, nullable=True),
    Column("last_ns", BigInteger, nullable=True),
    Column("scanned_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("medsentry_version", String(32), nullable=True),
    Column("depth", String(16), nullable=False, server_default=DEPTH_FULL),
)

flows = Table(
    "flows",
    metadata,
    Column("flow_id", String(64), primary_key=True),
    Column(
        "capture_id",
        String(64),
        ForeignKey("captures.capture_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ts_ns", BigInteger, nullable=False),  # first packet
    Column("last_ns", BigInteger, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("ip_version", Integer, nullable=False),
    Column("client", String(64), nullable=False),
    Column("server", String(64), nullable=False),
    Column("client_port", Integer, nullable=False),
    Column("server_port", Integer, nullable=False),
    Column("client_mac", String(17), nullable=True),
    Column("server_mac", String(17), nullable=True),
    Column("vlan", Integer, nullable=True),
    Column("packets_c2s", BigInteger, nullable=False),
    Column("packets_s2c", BigInteger, nullable=False),
    Column("bytes_c2s", BigInteger, nullable=False),
    Column("bytes_s2c", BigInteger, nullable=False),
    Column("payload_c2s", BigInteger, nullable=False),
    Column("payload_s2c", BigInteger, nullable=False),
    Column("tcp_flags_c2s", Integer, nullable=False),
    Column("tcp_flags_s2c", Integer, nullable=False),
    Column("iat_mean_us", Float, nullable=False),
    Column("iat_std_us", Float, nullable=False),
    Column("iat_min_us", Float, nullable=False),
    Column("iat_max_us", Float, nullable=False),
    Column("end_reason", String(8), nullable=False),
    Column("app_protocol", String(64), nullable=True),
    Column("app_method", String(16), nullable=True),
    Column("app_confidence", Float, nullable=False),
    # StreamStats per direction, flattened (NULL when the flow had no reassembly).
    Column("stream_c2s_bytes_in_order", BigInteger, nullable=True),
    Column("stream_c2s_retransmitted_segments", BigInteger, nullable=True),
    Column("stream_c2s_out_of_order_segments", BigInteger, nullable=True),
    Column("stream_c2s_gaps", BigInteger, nullable=True),
    Column("stream_c2s_gap_bytes", BigInteger, nullable=True),
    Column("stream_s2c_bytes_in_order", BigInteger, nullable=True),
    Column("stream_s2c_retransmitted_segments", BigInteger, nullable=True),
    Column("stream_s2c_out_of_order_segments", BigInteger, nullable=True),
    Column("stream_s2c_gaps", BigInteger, nullable=True),
    Column("stream_s2c_gap_bytes", BigInteger, nullable=True),
    Index(None, "capture_id"),
    Index(None, "ts_ns"),
    Index(None, "client"),
    Index(None, "server"),
    Index(None, "server_port"),
    Index(None, "app_protocol"),
    Index(None, "client_mac"),
    Index(None, "server_mac"),
)

events = Table(
    "events",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("event_key", String(32), nullable=False),  # blake2b-128 hex, unique (index below)
    Column("kind", String(64), nullable=False),  # the event tag
    Column("ts_ns", BigInteger, nullable=False),
    Column("flow_id", String(64), nullable=True),  # no FK: a flow's record may come later
    Column(
        "capture_id",
        String(64),
        ForeignKey("captures.capture_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("payload", Text, nullable=False),  # msgspec JSON of the event
    # A unique INDEX rather than a UNIQUE constraint: the same guarantee (and `ON CONFLICT
    # (event_key)` target), but SQLite can drop and rebuild it, which the writer does when it
    # bulk-loads a capture into an empty table (migration 0003).
    Index(None, "event_key", unique=True),
    Index(None, "kind", "ts_ns"),
    Index(None, "flow_id"),
    Index(None, "capture_id"),
)

STREAM_FIELDS = (
    "bytes_in_order",
    "retransmitted_segments",
    "out_of_order_segments",
    "gaps",
    "gap_bytes",
)

# Each engine defines its tables on this metadata in its own module; importing them here puts
# them in `metadata` for Alembic and the schema check (one line per area).
from medsentry.controls import tables as _controls_tables  # noqa: E402,F401
from medsentry.detect import tables as _detect_tables  # noqa: E402,F401
from medsentry.intel import sbom_tables as _sbom_tables  # noqa: E402,F401
from medsentry.intel import tables as _intel_tables  # noqa: E402,F401
from medsentry.inventory import tables as _inventory_tables  # noqa: E402,F401
