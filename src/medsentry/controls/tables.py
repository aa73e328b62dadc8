"""The controls tables (on the shared `medsentry.store.schema.metadata`).

- `findings`: one row per finding (a control weakness on a device), with its open/closed
  lifecycle and its evidence (flows and events with times) as msgspec JSON.
- `finding_history`: every lifecycle change (opened, reopened, closed): who, why, when. The
  same changes go to the audit ledger.
- `report_runs`: the summary of each generated report, so the next one shows the trend.

This module imports nothing from medsentry except the store schema (no cycles).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from medsentry.store.schema import metadata

_RowId = BigInteger().with_variant(Integer(), "sqlite")

findings = Table(
    "findings",
    metadata,
    Column("finding_id", String(32), primary_key=True),
    Column("type", String(48), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("device_id", String(96), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("title", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open, closed
    Column("first_seen_ns", BigInteger, nullable=False),
    Column("last_seen_ns", BigInteger, nullable=False),
    Column("evidence_count", BigInteger, nullable=False),
    Column("evidence", Text, nullable=False),  # msgspec JSON list of FindingEvidence
    Column("peers", Text, nullable=False),  # msgspec JSON list of addresses / device ids
    Column("opened_ns", BigInteger, nullable=False),
    Column("closed_ns", BigInteger, nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("closed_reason", Text, nullable=True),
    Column("closed_last_seen_ns", BigInteger, nullable=True),  # reopen on newer evidence
    Column("capture_id", String(64), nullable=True),
    Index(None, "status"),
    Index(None, "device_id"),
    Index(None, "type"),
    Index(None, "severity"),
)

finding_history = Table(
    "finding_history",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("finding_id", String(32), nullable=False),
    Column("action", String(16), nullable=False),  # opened, reopened, closed
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at_ns", BigInteger, nullable=False),
    Index(None, "finding_id"),
)

report_runs = Table(
    "report_runs",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("summary", Text, nullable=False),  # msgspec JSON of the report's headline numbers
    Index(None, "created_ns"),
)
