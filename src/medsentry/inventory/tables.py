"""The inventory's tables (on the shared `medsentry.store.schema.metadata`).

- `devices`: one row per device (`device_id`: "mac:<mac>" or "ip:<addr>"). Typed columns for
  listing and filtering; `record` holds the full `Device` (msgspec JSON, the contract engines
  read); `state` the inventory's own accumulated observations, so later captures and live
  commits fold into the same device instead of replacing it.
- `device_addresses`: IP history per device: each address with when it was first and last seen
  and how it was learnt (arp, dhcp, ndp, flow). One IP held by several MACs over time has one row
  per device.
- `device_changes`: what changed and when (new device, identity, software version, role); also
  recorded in the audit ledger.
- `assets`: the clinical engineering (CMMS) list as imported, keyed by asset tag, with the device
  it matched (if any).

This module imports nothing from medsentry except the store schema (no cycles).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from medsentry.store.schema import metadata

_RowId = BigInteger().with_variant(Integer(), "sqlite")

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(96), primary_key=True),
    Column("mac", String(17), nullable=True),
    Column("ip", String(64), nullable=True),  # current (most recent) address
    Column("hostname", String(255), nullable=True),
    Column("first_seen_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=False),
    Column("category", String(64), nullable=True),
    Column("category_confidence", Float, nullable=True),
    Column("vendor", String(128), nullable=True),
    Column("model", String(255), nullable=True),
    Column("software_version", String(128), nullable=True),
    Column("os", String(128), nullable=True),
    Column("criticality", String(32), nullable=False),
    Column("medical", Boolean, nullable=False),
    Column("phi_observed", Boolean, nullable=False),
    Column("record", Text, nullable=False),  # msgspec JSON of medsentry.inventory.model.Device
    Column("state", Text, nullable=False),  # msgspec JSON of the inventory's observations
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "mac"),
    Index(None, "ip"),
    Index(None, "category"),
    Index(None, "vendor"),
)

device_addresses = Table(
    "device_addresses",
    metadata,
    Column("device_id", String(96), primary_key=True),
    Column("ip", String(64), primary_key=True),
    Column("first_ns", BigInteger, nullable=False),
    Column("last_ns", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),  # arp, dhcp, ndp, flow
    Index(None, "ip"),
)

device_changes = Table(
    "device_changes",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("device_id", String(96), nullable=False),
    Column("ts_ns", BigInteger, nullable=False),  # when the evidence for the change was observed
    # device_added, identity_changed, software_changed, role_added, address_changed
    Column("change", String(32), nullable=False),
    Column("attribute", String(32), nullable=True),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=True),
    Column("capture_id", String(64), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index(None, "device_id", "ts_ns"),
    Index(None, "change"),
)

assets = Table(
    "assets",
    metadata,
    Column("asset_tag", String(128), primary_key=True),
    Column("device_id", String(96), nullable=True),  # the observed device it matched
    Column("mac", String(17), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("hostname", String(255), nullable=True),
    Column("serial_number", String(128), nullable=True),
    Column("vendor", String(128), nullable=True),
    Column("model", String(255), nullable=True),
    Column("category", String(64), nullable=True),
    Column("location", String(255), nullable=True),
    Column("department", String(255), nullable=True),
    Column("owner", String(255), nullable=True),
    Column("extra", Text, nullable=True),  # JSON of other columns, kept as imported
    Column("source", Text, nullable=False),  # the file it came from
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Index(None, "device_id"),
    Index(None, "mac"),
)
