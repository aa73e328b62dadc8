"""Saving and loading vulnerability intelligence (tables in `intel/tables.py`).

Every save is one transaction: a batch either lands whole or not at all, so a malformed
document found half-way through an import leaves everything imported before untouched.
Saves are idempotent: a record whose bytes (sha256) are already stored is counted as
unchanged and not written again; a changed one replaces the stored version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, update

from medsentry.intel.model import Advisory, EpssScore, KevEntry, PackageVuln
from medsentry.intel.tables import (
    intel_advisories,
    intel_advisory_cves,
    intel_epss,
    intel_imports,
    intel_kev,
)
from medsentry.store.damage import decode_stored
from medsentry.store.db import Store

_enc = msgspec.json.Encoder()
_adv_dec = msgspec.json.Decoder(Advisory)
_pkg_dec = msgspec.json.Decoder(PackageVuln)
_BATCH = 2000


@dataclass
class ImportCounts:
    kind: str
    origin: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    ids: list[str] = field(default_factory=list)  # ids added or updated (first 50 kept)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "origin": self.origin,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _row(rec: Advisory | PackageVuln, origin: str) -> dict[str, Any]:
    doc = _enc.encode(rec)
    if isinstance(rec, Advisory):
        return {
            "source": "csaf",
            "advisory_id": rec.advisory_id,
            "title": rec.title,
            "publisher": rec.publisher,
            "version": rec.version,
            "modified": rec.current_release,
            "origin": origin or rec.source,
            "sha256": rec.sha256,
            "doc": doc.decode(),
        }
    return {
        "source": rec.source,
        "advisory_id": rec.id,
        "title": rec.summary[:200] or rec.id,
        "publisher": None,
        "version": None,
        "modified": rec.modified,
        "origin": origin,
        "sha256": hashlib.sha256(doc).hexdigest(),
        "doc": doc.decode(),
    }


def _cves(rec: Advisory | PackageVuln) -> list[str]:
    if isinstance(rec, Advisory):
        return list(dict.fromkeys(v.cve for v in rec.vulnerabilities if v.cve))
    return list(rec.cves)


def save_records(
    store: Store,
    records: Sequence[tuple[Advisory | PackageVuln, str]],
    counts: ImportCounts,
) -> ImportCounts:
    """Store (record, origin) pairs in one transaction; updates `counts`."""
    now = _now()
    with store.writing() as conn:
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            rows = [_row(r, o) for r, o in chunk]
            by_source: dict[str, list[str]] = {}
            for row in rows:
                by_source.setdefault(row["source"], []).append(row["advisory_id"])
            have: dict[tuple[str, str], str] = {}
            for source, ids in by_source.items():
                q = select(intel_advisories.c.advisory_id, intel_advisories.c.sha256).where(
                    intel_advisories.c.source == source, intel_advisories.c.advisory_id.in_(ids)
                )
                for aid, sha in conn.execute(q):
                    have[(source, aid)] = sha
            new_rows, cve_rows = [], []
            seen: set[tuple[str, str]] = set()
            for (rec, _), row in zip(chunk, rows, strict=True):
                key = (row["source"], row["advisory_id"])
                if key in seen:  # the same id twice in one batch: the last one wins
                    counts.unchanged += 1
                    continue
                seen.add(key)
                old = have.get(key)
                if old == row["sha256"]:
                    counts.unchanged += 1
                    continue
                row["imported_at"] = now
                if old is None:
                    new_rows.append(row)
                    counts.added += 1
                else:
                    conn.execute(
                        update(intel_advisories)
                        .where(
                            intel_advisories.c.source == key[0],
                            intel_advisories.c.advisory_id == key[1],
                        )
                        .values(
                            **{k: v for k, v in row.items() if k not in ("source", "advisory_id")}
                        )
                    )
                    conn.execute(
                        delete(intel_advisory_cves).where(
                            intel_advisory_cves.c.source == key[0],
                            intel_advisory_cves.c.advisory_id == key[1],
                        )
                    )
                    counts.updated += 1
                if len(counts.ids) < 50:
                    counts.ids.append(key[1])
                cve_rows.extend(
                    {"source": key[0], "advisory_id": key[1], "cve": c} for c in _cves(rec)
                )
            if new_rows:
                conn.execute(insert(intel_advisories), new_rows)
            if cve_rows:
                conn.execute(insert(intel_advisory_cves), cve_rows)
        _log_import(conn, counts, None, now)
    return counts


def _log_import(conn: Any, counts: ImportCounts, sha256: str | None, now: datetime) -> None:
    conn.execute(
        insert(intel_imports).values(
            kind=counts.kind,
            origin=counts.origin,
            sha256=sha256,
            added=counts.added,
            updated=counts.updated,
            unchanged=counts.unchanged,
            imported_at=now,
        )
    )


def save_kev(
    store: Store, catalog_version: str, entries: Sequence[KevEntry], origin: str, sha256: str
) -> ImportCounts:
    """Replace the stored KEV catalog by this one (an entry CISA removed goes too)."""
    counts = ImportCounts("kev", origin)
    now = _now()
    with store.writing() as conn:
        old = {
            r.cve: (r.date_added, r.due_date, r.ransomware, r.catalog_version)
            for r in conn.execute(select(intel_kev))
        }
        rows = []
        for e in entries:
            prev = old.pop(e.cve, None)
            if prev is None:
                counts.added += 1
            elif prev[:3] == (e.date_added, e.due_date, e.ransomware):
                counts.unchanged += 1
            else:
                counts.updated += 1
            rows.append(
                {
                    "cve": e.cve,
                    "vendor": e.vendor,
                    "product": e.product,
                    "name": e.name,
                    "date_added": e.date_added,
                    "due_date": e.due_date or None,
                    "ransomware": e.ransomware or None,
                    "catalog_version": catalog_version,
                }
            )
        conn.execute(delete(intel_kev))
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(intel_kev), rows[start : start + _BATCH])
        _log_import(conn, counts, sha256, now)
    return counts


def save_epss(
    store: Store, meta: dict[str, str], scores: Sequence[EpssScore], origin: str, sha256: str
) -> ImportCounts:
    """Replace stored EPSS scores by this day's file (EPSS publishes a full set daily)."""
    counts = ImportCounts("epss", origin)
    now = _now()
    with store.writing() as conn:
        old = {r.cve: (r.epss, r.percentile) for r in conn.execute(select(intel_epss))}
        rows = []
        for s in scores:
            prev = old.get(s.cve)
            if prev is None:
                counts.added += 1
            elif prev == (s.epss, s.percentile):
                counts.unchanged += 1
            else:
                counts.updated += 1
            rows.append(
                {
                    "cve": s.cve,
                    "epss": s.epss,
                    "percentile": s.percentile,
                    "model_version": meta.get("model_version"),
                    "score_date": meta.get("score_date"),
                }
            )
        conn.execute(delete(intel_epss))
        for start in range(0, len(rows), _BATCH * 5):
            conn.execute(insert(intel_epss), rows[start : start + _BATCH * 5])
        _log_import(conn, counts, sha256, now)
    return counts


# -- loading ---------------------------------------------------------------------------------


def load_advisories(store: Store) -> list[Advisory]:
    q = select(intel_advisories.c.advisory_id, intel_advisories.c.doc).where(
        intel_advisories.c.source == "csaf"
    )
    with store.engine.connect() as conn:
        return [_doc(_adv_dec, d, a) for a, d in conn.execute(q)]


def load_package_vulns(store: Store) -> list[PackageVuln]:
    q = select(intel_advisories.c.advisory_id, intel_advisories.c.doc).where(
        intel_advisories.c.source != "csaf"
    )
    with store.engine.connect() as conn:
        return [_doc(_pkg_dec, d, a) for a, d in conn.execute(q)]


def _doc(decoder: msgspec.json.Decoder, doc: Any, advisory_id: str) -> Any:
    return decode_stored(decoder, doc, "intel_advisories", "doc", advisory_id)


def load_kev(store: Store) -> dict[str, KevEntry]:
    with store.engine.connect() as conn:
        return {
            r.cve: KevEntry(
                cve=r.cve,
                vendor=r.vendor,
                product=r.product,
                name=r.name,
                date_added=r.date_added,
                due_date=r.due_date or "",
                ransomware=r.ransomware or "",
            )
            for r in conn.execute(select(intel_kev))
        }


def load_epss(store: Store) -> dict[str, EpssScore]:
    with store.engine.connect() as conn:
        return {
            r.cve: EpssScore(r.cve, r.epss, r.percentile) for r in conn.execute(select(intel_epss))
        }


def load_index(store: Store) -> Any:
    """Everything stored, as an `IntelIndex` ready to match."""
    from medsentry.intel.match import IntelIndex

    return IntelIndex(
        advisories=load_advisories(store),
        packages=load_package_vulns(store),
        kev=load_kev(store),
        epss=load_epss(store),
    )


def status(store: Store) -> list[dict[str, Any]]:
    """Per source: how many records, when last imported, from where."""
    out: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(intel_advisories.c.source, func.count()).group_by(intel_advisories.c.source)
            ).all()
        )
        counts["kev"] = conn.execute(select(func.count()).select_from(intel_kev)).scalar_one()
        counts["epss"] = conn.execute(select(func.count()).select_from(intel_epss)).scalar_one()
        for kind in ("csaf", "osv", "nvd", "kev", "epss"):
            last = conn.execute(
                select(intel_imports)
                .where(intel_imports.c.kind == kind)
                .order_by(intel_imports.c.import_id.desc())
                .limit(1)
            ).first()
            extra = ""
            if kind == "kev" and counts["kev"]:
                extra = conn.execute(select(func.max(intel_kev.c.catalog_version))).scalar_one()
            if kind == "epss" and counts["epss"]:
                row = conn.execute(
                    select(intel_epss.c.model_version, intel_epss.c.score_date).limit(1)
                ).first()
                extra = f"{row[0]} {row[1]}" if row else ""
            out.append(
                {
                    "source": kind,
                    "records": int(counts.get(kind, 0)),
                    "version": extra or None,
                    "last_import": last.imported_at.isoformat(timespec="seconds") if last else None,
                    "last_origin": last.origin if last else None,
                }
            )
    return out


def advisory_ids_for_cves(store: Store, cves: Iterable[str]) -> dict[str, list[str]]:
    cves = list(cves)
    out: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        q = select(intel_advisory_cves.c.cve, intel_advisory_cves.c.advisory_id).where(
            intel_advisory_cves.c.cve.in_(cves)
        )
        for cve, aid in conn.execute(q):
            out.setdefault(cve, []).append(aid)
    return out
