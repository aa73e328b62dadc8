"""`medsentry sbom import|list|show`: SBOMs attached to device models and versions."""

from __future__ import annotations

from pathlib import Path

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.cli.terminal import echo
from medsentry.errors import InputError
from medsentry.store import open_store

COMPONENT_COLUMNS = [
    "name",
    "version",
    "supplier",
    "purl",
    "cpe",
    "level_of_support",
    "end_of_support",
]


@click.group("sbom")
def sbom_cmd() -> None:
    """Software bills of materials (CycloneDX 1.2-1.6 JSON/XML, SPDX 2.3 JSON)."""


def _device_model(manufacturer: str | None, model: str, version: str) -> tuple[str, str, str]:
    if not manufacturer:
        if "/" not in model:
            raise InputError(
                "give --manufacturer, or --device-model as MANUFACTURER/MODEL"
                " (e.g. --device-model 'BD/Alaris 8015')"
            )
        manufacturer, model = (p.strip() for p in model.split("/", 1))
    return manufacturer, model, version


@sbom_cmd.command("import")
@DB_OPTION
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--manufacturer", metavar="NAME", help="Device manufacturer.")
@click.option(
    "--device-model",
    "model",
    required=True,
    metavar="MODEL",
    help="Device model (or MANUFACTURER/MODEL when --manufacturer is not given).",
)
@click.option("--version", "version", required=True, metavar="VERSION", help="Device version.")
@FORMAT_OPTION
def import_cmd(
    db_url: str | None,
    path: Path,
    manufacturer: str | None,
    model: str,
    version: str,
    fmt: str,
) -> None:
    """Import an SBOM and attach it to a device model and version (replaces the one it had)."""
    from medsentry.intel.sbom import read_sbom
    from medsentry.intel.sbom_model import DeviceModel
    from medsentry.intel.sbom_store import save_sbom
    from medsentry.ledger import record

    dm = DeviceModel(*_device_model(manufacturer, model, version))
    sbom = read_sbom(path, dm)  # parsed and validated before anything is written
    with open_store(db_url) as store:
        row_id, replaced = save_sbom(store, sbom)
    comps = sbom.components
    summary = {
        "id": row_id,
        "sbom_id": sbom.sbom_id,
        "manufacturer": dm.manufacturer,
        "model": dm.model,
        "version": dm.version,
        "format": f"{sbom.format} {sbom.spec_version} {sbom.encoding}",
        "components": len(comps),
        "with_purl": sum(1 for c in comps if c.purl),
        "with_cpe": sum(1 for c in comps if c.cpe),
        "with_supplier": sum(1 for c in comps if c.supplier),
        "with_level_of_support": sum(1 for c in comps if c.level_of_support_raw),
        "with_end_of_support": sum(1 for c in comps if c.end_of_support),
        "replaced": replaced or "",
    }
    record(
        "intel.imported",
        {
            "kind": "sbom",
            "source": str(path),
            "sha256": sbom.sbom_id,
            "device_model": dm.label(),
            "format": summary["format"],
            "components": len(comps),
            "replaced": replaced or "",
        },
        actor="cli",
    )
    emit(
        [summary],
        [
            "id",
            "model",
            "version",
            "format",
            "components",
            "with_purl",
            "with_cpe",
            "with_level_of_support",
        ],
        fmt,
        title=f"SBOM imported: {dm.label()}",
    )
    for w in sbom.warnings:
        echo(f"warning: {path}: {w}", err=True)


@sbom_cmd.command("list")
@DB_OPTION
@FORMAT_OPTION
def list_cmd(db_url: str | None, fmt: str) -> None:
    """The stored SBOMs, one per device model and version."""
    from medsentry.intel.sbom_store import list_sboms

    with open_store(db_url) as store:
        rows = list_sboms(store)
    for r in rows:
        r["sbom_id"] = r["sbom_id"][:12] if fmt == "table" else r["sbom_id"]
    emit(
        rows,
        [
            "id",
            "manufacturer",
            "model",
            "version",
            "format",
            "spec_version",
            "components",
            "sbom_id",
            "imported_at",
        ],
        fmt,
        title=f"{len(rows)} SBOM{'' if len(rows) == 1 else 's'}",
    )


@sbom_cmd.command("show")
@DB_OPTION
@click.argument("key")
@click.option(
    "--vulns",
    is_flag=True,
    help="Match the components against the stored intelligence and apply stored VEX.",
)
@click.option(
    "--unsupported",
    is_flag=True,
    help="Only components no longer maintained or past end of support.",
)
@FORMAT_OPTION
def show_cmd(db_url: str | None, key: str, vulns: bool, unsupported: bool, fmt: str) -> None:
    """An SBOM's components (KEY: id, sha256 prefix, or MANUFACTURER/MODEL/VERSION)."""
    import msgspec

    from medsentry.intel.sbom_store import device_model_of, find_sbom, load_components, load_vex
    from medsentry.intel.sbom_support import today

    with open_store(db_url) as store:
        rec = find_sbom(store, key)
        comps = load_components(store, rec["id"])
        title = f"{rec['manufacturer']} {rec['model']} {rec['version']}"
        if vulns:
            from medsentry.intel.match import match_components
            from medsentry.intel.store import load_index
            from medsentry.intel.vex_apply import apply_vex, component_key, record

            matches = match_components(load_index(store), comps, include_resolved=True)
            vexed = apply_vex(
                matches,
                load_vex(store),
                components={component_key(c): c for c in comps},
                device=device_model_of(rec),
            )
            rows = [record(v) for v in vexed]
            emit(
                rows,
                [
                    "target",
                    "vulnerability",
                    "status",
                    "vex_status",
                    "justification",
                    "max_cvss",
                    "kev",
                    "explanation",
                ],
                fmt,
                title=f"{title}: {len(rows)} component vulnerabilities",
            )
            return
    now = today()
    rows = []
    for c in comps:
        r = msgspec.to_builtins(c)
        r.setdefault("level_of_support", "")
        r.setdefault("end_of_support", "")
        past = bool(c.end_of_support_date) and c.end_of_support_date < now
        r["past_end_of_support"] = past
        if unsupported and not (
            past or c.level_of_support in ("no longer maintained", "abandoned")
        ):
            continue
        rows.append(r)
    emit(rows, COMPONENT_COLUMNS, fmt, title=f"{title}: {len(rows)} components")


@sbom_cmd.command("check")
@DB_OPTION
@click.argument("key")
@FORMAT_OPTION
def check_cmd(db_url: str | None, key: str, fmt: str) -> None:
    """How complete an SBOM is: NTIA minimum elements and the FDA support fields, per component."""
    from medsentry.intel.sbom_store import find_sbom, load_components
    from medsentry.intel.sbom_support import completeness

    with open_store(db_url) as store:
        rec = find_sbom(store, key)
        comps = load_components(store, rec["id"])
    rows = completeness(comps)
    for r in rows:
        r["missing_examples"] = (
            ", ".join(r["missing_examples"]) if fmt == "table" else r["missing_examples"]
        )
    emit(
        rows,
        ["element", "required_by", "present", "total", "share", "missing_examples"],
        fmt,
        title=f"{rec['manufacturer']} {rec['model']} {rec['version']}: SBOM completeness",
    )
