"""The vulnerability intelligence tables (on the shared `medsentry.store.schema.metadata`).

- `intel_advisories`: one row per advisory or vulnerability record, keyed by (source, id):
  CSAF documents (source "csaf"), OSV records ("osv"), NVD CVE records ("nvd"). `doc` is the
  normalized record as msgspec JSON (`model.Advisory` / `model.PackageVuln`); `sha256` of the
  document's bytes (CSAF) or of the normalized record, so re-importing the same thing is a no-op
  and a changed document replaces the old one.
- `intel_advisory_cves`: (source, id) -> CVE, to find advisories by CVE and CVEs by advisory.
- `intel_kev`: the CISA KEV catalog, one row per CVE.
- `intel_epss`: FIRST EPSS scores, one row per CVE (the latest import wins).
- `intel_imports`: one row per import run (what, from where, counts), mirrored in the ledger.

This module imports nothing from medsentry except the store schema (no cycles).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

intel_advisories = Table(
    "intel_advisories",
    metadata,
    Column("source", String(8), primary_key=True),  # csaf, osv, nvd
    Column("advisory_id", String(128), primary_key=True),
    Column("title", Text, nullable=False),
    Column("publisher", String(256), nullable=True),
    Column("version", String(64), nullable=True),  # CSAF tracking.version
    Column("modified", String(40), nullable=True),  # current_release_date / modified
    Column("origin", Text, nullable=False),  # file path or URL it came from
    Column("sha256", String(64), nullable=False),
    Column("doc", Text, nullable=False),  # msgspec JSON of the normalized record
    Column("imported_at", DateTime(timezone=True), nullable=False),
)

intel_advisory_cves = Table(
    "intel_advisory_cves",
    metadata,
    Column("source", String(8), primary_key=True),
    Column("advisory_id", String(128), primary_key=True),
    Column("cve", String(32), primary_key=True),
    Index(None, "cve"),
)

intel_kev = Table(
    "intel_kev",
    metadata,
    Column("cve", String(32), primary_key=True),
    Column("vendor", String(256), nullable=False),
    Column("product", String(256), nullable=False),
    Column("name", Text, nullable=False),
    Column("date_added", String(10), nullable=False),
    Column("due_date", String(10), nullable=True),
    Column("ransomware", String(16), nullable=True),
    Column("catalog_version", String(32), nullable=False),
)

intel_epss = Table(
    "intel_epss",
    metadata,
    Column("cve", String(32), primary_key=True),
    Column("epss", Float, nullable=False),
    Column("percentile", Float, nullable=False),
    Column("model_version", String(32), nullable=True),
    Column("score_date", String(40), nullable=True),
)

intel_imports = Table(
    "intel_imports",
    metadata,
    Column("import_id", _RowId, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # csaf, kev, epss, osv, nvd
    Column("origin", Text, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("added", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Index(None, "kind"),
)
