"""The detection tables (on the shared `medsentry.store.schema.metadata`).

- `alerts`: one row per alert (aggregated repeats of one rule/device/key), with its lifecycle
  status and the evidence (flow ids, event kinds and times) as msgspec JSON.
- `alert_history`: every lifecycle change (raised, acknowledged, closed, accepted into the
  baseline): who, why, when. The same changes go to the audit ledger.
- `detect_state`: what each detector learned (baselines, thresholds, windows), as msgspec
  JSON per detector, so a restart continues instead of relearning.

This module imports nothing from medsentry except the store schema (no cycles).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, String, Table, Text

from medsentry.store.schema import metadata

_RowId = BigInteger().with_variant(Integer(), "sqlite")

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(32), primary_key=True),
    Column("rule_id", String(96), nullable=False),
    Column("source", String(16), nullable=False),  # rule, baseline, model, log
    Column("severity", String(16), nullable=False),
    Column("device_id", String(96), nullable=True),
    Column("technique_id", String(16), nullable=False),  # ATT&CK for ICS, e.g. T0830
    Column("technique_name", String(128), nullable=False),
    Column("title", Text, nullable=False),
    Column("dedup_key", String(512), nullable=False),
    Column("first_seen_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("score", Float, nullable=True),
    Column("status", String(16), nullable=False),  # new, acknowledged, closed
    Column("status_by", String(128), nullable=True),
    Column("status_reason", Text, nullable=True),
    Column("status_ns", BigInteger, nullable=True),
    Column("capture_id", String(64), nullable=True),
    Column("evidence", Text, nullable=False),  # msgspec JSON list of EvidenceRef
    Column("detail", Text, nullable=False),  # msgspec JSON object of PHI-free facts
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "status"),
    Index(None, "device_id"),
    Index(None, "rule_id"),
    Index(None, "dedup_key"),
    Index(None, "first_seen_ns"),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("alert_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),  # raised, acknowledged, closed, accepted
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at_ns", BigInteger, nullable=False),
    Index(None, "alert_id"),
)

detect_state = Table(
    "detect_state",
    metadata,
    Column("detector_id", String(96), primary_key=True),
    Column("state", Text, nullable=False),  # msgspec JSON of Detector.state()
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
