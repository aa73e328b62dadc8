"""SBOM and VEX tables (on the shared `medsentry.store.schema.metadata`).

- `sboms`: one row per device model and version (manufacturer, model, version); importing an
  SBOM for the same model and version again replaces it in one transaction. `sbom_id` is the
  SHA-256 of the document's bytes.
- `sbom_components`: the components of each SBOM, with the identifiers matching uses (purl,
  CPE, name, version, supplier) and the FDA support fields (level of support, end of support).
- `vex_statements`: VEX statements as imported (CycloneDX VEX, OpenVEX, CSAF VEX), normalized to
  the CISA vocabulary; `statement_key` is a content hash, so importing a document twice stores
  each statement once.

This module imports nothing from medsentry except the store schema (no cycles).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from medsentry.store.schema import metadata

_RowId = BigInteger().with_variant(Integer(), "sqlite")

sboms = Table(
    "sboms",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("sbom_id", String(64), nullable=False),  # sha256 hex of the document
    Column("manufacturer", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    # folded "manufacturer\x1fmodel\x1fversion", the key a device is looked up by
    Column("device_key", String(512), nullable=False),
    Column("format", String(16), nullable=False),  # cyclonedx | spdx
    Column("spec_version", String(16), nullable=False),
    Column("encoding", String(8), nullable=False),  # json | xml
    Column("source", Text, nullable=False),
    Column("serial_number", Text, nullable=True),
    Column("name", Text, nullable=True),
    Column("created", String(40), nullable=True),
    Column("authors", Text, nullable=False),  # JSON list
    Column("tools", Text, nullable=False),  # JSON list
    Column("lifecycles", Text, nullable=False),  # JSON list (CycloneDX 1.5+ lifecycle phases)
    Column("component_count", Integer, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("device_key"),
    Index(None, "sbom_id"),
)

sbom_components = Table(
    "sbom_components",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("sbom_row", _RowId, ForeignKey("sboms.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", String(200), nullable=True),
    Column("bom_ref", Text, nullable=True),
    Column("type", String(32), nullable=True),
    Column("supplier", String(255), nullable=True),
    Column("grp", String(255), nullable=True),  # CycloneDX group
    Column("purl", Text, nullable=True),
    Column("cpe", Text, nullable=True),
    Column("hashes", Text, nullable=False),  # JSON object alg -> hex
    Column("licenses", Text, nullable=False),  # JSON list
    Column("level_of_support", String(32), nullable=True),
    Column("level_of_support_raw", String(255), nullable=True),
    Column("end_of_support", String(255), nullable=True),
    Column("end_of_support_date", String(10), nullable=True),
    Column("parent", Text, nullable=True),
    Index(None, "sbom_row"),
)

vex_statements = Table(
    "vex_statements",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("statement_key", String(64), nullable=False),
    Column("document_sha256", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("format", String(16), nullable=False),  # cyclonedx | openvex | csaf
    Column("vulnerability", String(128), nullable=False),
    Column("status", String(24), nullable=False),
    Column("purl", Text, nullable=True),
    Column("cpe", Text, nullable=True),
    Column("bom_ref", Text, nullable=True),
    Column("product_name", Text, nullable=True),
    Column("product_version", Text, nullable=True),
    Column("supplier", String(255), nullable=True),
    Column("justification", String(64), nullable=True),
    Column("justification_raw", String(64), nullable=True),
    Column("impact_statement", Text, nullable=True),
    Column("action_statement", Text, nullable=True),
    Column("responses", Text, nullable=False),  # JSON list
    Column("aliases", Text, nullable=False),  # JSON list
    Column("timestamp", String(40), nullable=True),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("statement_key"),
    Index(None, "vulnerability"),
)
