"""Storing and reading SBOMs and VEX statements.

`save_sbom` writes one SBOM and its components in one transaction, replacing the SBOM stored
for the same device model and version (if any): a failure leaves what was stored untouched.
`save_vex` adds statements, skipping those already stored (content-keyed).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError

from medsentry.errors import InputError, StoreError
from medsentry.intel.sbom_model import Component, DeviceModel, Sbom, VexStatement
from medsentry.intel.sbom_tables import sbom_components, sboms, vex_statements
from medsentry.store import Store

_SPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    return _SPACE.sub(" ", (text or "").strip().casefold())


def device_key(manufacturer: str, model: str, version: str) -> str:
    return "\x1f".join(fold(x) for x in (manufacturer, model, version))


def _component_row(sbom_row: int, i: int, c: Component) -> dict[str, Any]:
    return {
        "sbom_row": sbom_row,
        "position": i,
        "name": c.name,
        "version": c.version or None,
        "bom_ref": c.bom_ref or None,
        "type": c.type[:32] or None,
        "supplier": c.supplier[:255] or None,
        "grp": c.group[:255] or None,
        "purl": c.purl or None,
        "cpe": c.cpe or None,
        "hashes": json.dumps(c.hashes, sort_keys=True),
        "licenses": json.dumps(list(c.licenses)),
        "level_of_support": c.level_of_support or None,
        "level_of_support_raw": c.level_of_support_raw[:255] or None,
        "end_of_support": c.end_of_support[:255] or None,
        "end_of_support_date": c.end_of_support_date or None,
        "parent": c.parent or None,
    }


def save_sbom(store: Store, sbom: Sbom) -> tuple[int, str | None]:
    """Store `sbom`; returns (row id, sbom_id it replaced or None)."""
    d = sbom.device
    key = device_key(d.manufacturer, d.model, d.version)
    try:
        with store.writing() as conn:
            old = conn.execute(select(sboms.c.id, sboms.c.sbom_id).where(sboms.c.device_key == key))
            old_row = old.first()
            replaced = None
            if old_row is not None:
                replaced = old_row.sbom_id
                conn.execute(
                    delete(sbom_components).where(sbom_components.c.sbom_row == old_row.id)
                )
                conn.execute(delete(sboms).where(sboms.c.id == old_row.id))
            row_id = conn.execute(
                insert(sboms).returning(sboms.c.id),
                {
                    "sbom_id": sbom.sbom_id,
                    "manufacturer": d.manufacturer,
                    "model": d.model,
                    "version": d.version,
                    "device_key": key,
                    "format": sbom.format,
                    "spec_version": sbom.spec_version,
                    "encoding": sbom.encoding,
                    "source": sbom.source,
                    "serial_number": sbom.serial_number or None,
                    "name": sbom.name or None,
                    "created": sbom.created[:40] or None,
                    "authors": json.dumps(list(sbom.authors)),
                    "tools": json.dumps(list(sbom.tools)),
                    "lifecycles": json.dumps(list(sbom.lifecycles)),
                    "component_count": len(sbom.components),
                    "imported_at": datetime.now(UTC),
                },
            ).scalar_one()
            rows = [_component_row(row_id, i, c) for i, c in enumerate(sbom.components)]
            for start in range(0, len(rows), 1000):
                conn.execute(insert(sbom_components), rows[start : start + 1000])
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot store SBOM {sbom.source}: {_first_line(exc)}") from exc
    return row_id, replaced


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _sbom_record(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "sbom_id": r.sbom_id,
        "manufacturer": r.manufacturer,
        "model": r.model,
        "version": r.version,
        "format": r.format,
        "spec_version": r.spec_version,
        "encoding": r.encoding,
        "components": r.component_count,
        "name": r.name or "",
        "serial_number": r.serial_number or "",
        "created": r.created or "",
        "authors": json.loads(r.authors),
        "tools": json.loads(r.tools),
        "lifecycles": json.loads(r.lifecycles),
        "source": r.source,
        "imported_at": r.imported_at.isoformat() if r.imported_at else "",
    }


def list_sboms(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(sboms).order_by(sboms.c.manufacturer, sboms.c.model, sboms.c.version)
        ).all()
    return [_sbom_record(r) for r in rows]


def find_sbom(store: Store, key: str) -> dict[str, Any]:
    """An SBOM by row id, a prefix (>= 6 hex) of its sha256, or "manufacturer/model/version"."""
    key = key.strip()
    conds = []
    if key.isascii() and key.isdigit():
        conds.append(sboms.c.id == int(key))
    if re.fullmatch(r"[0-9a-fA-F]{6,64}", key):
        conds.append(sboms.c.sbom_id.like(key.lower() + "%"))
    parts = [p for p in key.split("/")]
    if len(parts) == 3:
        conds.append(sboms.c.device_key == device_key(*parts))
    if not conds:
        raise InputError(
            f"no SBOM {key!r}: give its id, a sha256 prefix, or MANUFACTURER/MODEL/VERSION"
        )
    with store.engine.connect() as conn:
        rows = conn.execute(select(sboms).where(or_(*conds))).all()
    if not rows:
        raise InputError(f"no SBOM {key!r} is stored (see `medsentry sbom list`)")
    if len(rows) > 1:
        raise InputError(f"{key!r} names {len(rows)} SBOMs; give more of the id")
    return _sbom_record(rows[0])


def _component(r: Any) -> Component:
    return Component(
        name=r.name,
        version=r.version or "",
        bom_ref=r.bom_ref or "",
        type=r.type or "",
        supplier=r.supplier or "",
        group=r.grp or "",
        purl=r.purl or "",
        cpe=r.cpe or "",
        hashes=json.loads(r.hashes),
        licenses=tuple(json.loads(r.licenses)),
        level_of_support=r.level_of_support or "",
        level_of_support_raw=r.level_of_support_raw or "",
        end_of_support=r.end_of_support or "",
        end_of_support_date=r.end_of_support_date or "",
        parent=r.parent or "",
    )


def load_components(store: Store, sbom_row: int) -> list[Component]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(sbom_components)
            .where(sbom_components.c.sbom_row == sbom_row)
            .order_by(sbom_components.c.position)
        ).all()
    return [_component(r) for r in rows]


def sbom_for_device(store: Store, manufacturer: str, model: str, version: str) -> dict | None:
    """The SBOM attached to this device model and version (case/space-insensitive), or None."""
    with store.engine.connect() as conn:
        r = conn.execute(
            select(sboms).where(sboms.c.device_key == device_key(manufacturer, model, version))
        ).first()
    return None if r is None else _sbom_record(r)


def device_model_of(rec: dict[str, Any]) -> DeviceModel:
    return DeviceModel(rec["manufacturer"], rec["model"], rec["version"])


def count_components(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sbom_components)).scalar_one()


# -- VEX -------------------------------------------------------------------------------------

_vex_enc = msgspec.json.Encoder(order="sorted")


def statement_key(s: VexStatement) -> str:
    body = msgspec.structs.replace(s, document="")  # the same statement from a copy is the same
    return hashlib.sha256(_vex_enc.encode(body)).hexdigest()


def save_vex(store: Store, statements: Sequence[VexStatement], document_sha256: str) -> int:
    """Store new statements (one transaction); returns how many were new."""
    if not statements:
        return 0
    keyed = {statement_key(s): s for s in statements}
    now = datetime.now(UTC)
    try:
        with store.writing() as conn:
            have = set()
            keys = list(keyed)
            for start in range(0, len(keys), 500):
                have |= set(
                    conn.execute(
                        select(vex_statements.c.statement_key).where(
                            vex_statements.c.statement_key.in_(keys[start : start + 500])
                        )
                    ).scalars()
                )
            rows = [
                {
                    "statement_key": k,
                    "document_sha256": document_sha256,
                    "document": s.document,
                    "format": s.format,
                    "vulnerability": s.vulnerability[:128],
                    "status": s.status,
                    "purl": s.purl or None,
                    "cpe": s.cpe or None,
                    "bom_ref": s.bom_ref or None,
                    "product_name": s.product_name or None,
                    "product_version": s.product_version or None,
                    "supplier": s.supplier[:255] or None,
                    "justification": s.justification or None,
                    "justification_raw": s.justification_raw[:64] or None,
                    "impact_statement": s.impact_statement or None,
                    "action_statement": s.action_statement or None,
                    "responses": json.dumps(list(s.responses)),
                    "aliases": json.dumps(list(s.aliases)),
                    "timestamp": s.timestamp[:40] or None,
                    "imported_at": now,
                }
                for k, s in keyed.items()
                if k not in have
            ]
            if rows:
                conn.execute(insert(vex_statements), rows)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot store VEX statements: {_first_line(exc)}") from exc
    return len(rows)


def load_vex(store: Store, vulnerabilities: Iterable[str] | None = None) -> list[VexStatement]:
    q = select(vex_statements).order_by(vex_statements.c.id)
    if vulnerabilities is not None:
        q = q.where(vex_statements.c.vulnerability.in_(list(vulnerabilities)))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [
        VexStatement(
            vulnerability=r.vulnerability,
            status=r.status,
            format=r.format,
            document=r.document,
            purl=r.purl or "",
            cpe=r.cpe or "",
            bom_ref=r.bom_ref or "",
            product_name=r.product_name or "",
            product_version=r.product_version or "",
            supplier=r.supplier or "",
            justification=r.justification or "",
            justification_raw=r.justification_raw or "",
            impact_statement=r.impact_statement or "",
            action_statement=r.action_statement or "",
            responses=tuple(json.loads(r.responses)),
            aliases=tuple(json.loads(r.aliases)),
            timestamp=r.timestamp or "",
        )
        for r in rows
    ]
