"""`medsentry vex import|list|export`: VEX statements in (CycloneDX, OpenVEX, CSAF) and out."""

from __future__ import annotations

import json
from pathlib import Path

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.cli.terminal import echo
from medsentry.store import open_store


@click.group("vex")
def vex_cmd() -> None:
    """Vulnerability Exploitability eXchange: import statements, export device VEX."""


@vex_cmd.command("import")
@DB_OPTION
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@FORMAT_OPTION
def import_cmd(db_url: str | None, paths: tuple[Path, ...], fmt: str) -> None:
    """Import VEX documents (CycloneDX VEX, OpenVEX, CSAF VEX). Every file is read and checked
    before any is stored; a malformed one stops the import with nothing written."""
    from medsentry.intel.sbom_store import save_vex
    from medsentry.intel.vex import read_vex
    from medsentry.ledger import record

    docs = [read_vex(p) for p in paths]
    rows = []
    with open_store(db_url) as store:
        for doc in docs:
            added = save_vex(store, doc.statements, doc.sha256)
            counts: dict[str, int] = {}
            for s in doc.statements:
                counts[s.status] = counts.get(s.status, 0) + 1
            record(
                "intel.imported",
                {
                    "kind": "vex",
                    "format": doc.format,
                    "source": doc.source,
                    "sha256": doc.sha256,
                    "statements": len(doc.statements),
                    "added": added,
                },
                actor="cli",
            )
            rows.append(
                {
                    "source": doc.source,
                    "format": doc.format,
                    "statements": len(doc.statements),
                    "added": added,
                    **counts,
                }
            )
    emit(
        rows,
        [
            "source",
            "format",
            "statements",
            "added",
            "not_affected",
            "affected",
            "fixed",
            "under_investigation",
        ],
        fmt,
        title="VEX import",
    )


@vex_cmd.command("list")
@DB_OPTION
@click.option("--vulnerability", metavar="ID", help="Only statements about this id.")
@FORMAT_OPTION
def list_cmd(db_url: str | None, vulnerability: str | None, fmt: str) -> None:
    """The stored VEX statements."""
    import msgspec

    from medsentry.intel.sbom_store import load_vex

    with open_store(db_url) as store:
        stmts = load_vex(store, [vulnerability] if vulnerability else None)
    rows = []
    for s in stmts:
        r = msgspec.to_builtins(s)
        r["product"] = s.purl or s.cpe or s.bom_ref or s.product_name or f"supplier {s.supplier}"
        rows.append(r)
    emit(
        rows,
        [
            "vulnerability",
            "product",
            "product_version",
            "status",
            "justification",
            "format",
            "document",
        ],
        fmt,
        title=f"{len(rows)} VEX statements",
    )


@vex_cmd.command("export")
@DB_OPTION
@click.argument("sbom_key", metavar="SBOM")
@click.option(
    "--format",
    "vex_format",
    type=click.Choice(["cyclonedx", "csaf"]),
    default="cyclonedx",
    show_default=True,
    help="CycloneDX (1.5/1.6 vulnerabilities with analysis) or CSAF 2.0 VEX profile.",
)
@click.option(
    "--spec",
    type=click.Choice(["1.5", "1.6"]),
    default="1.6",
    show_default=True,
    help="CycloneDX specification version.",
)
@click.option("--publisher", default="medsentry user", show_default=True, help="CSAF publisher.")
@click.option(
    "--namespace",
    default="https://medsentry.invalid",
    show_default=True,
    help="CSAF publisher namespace (a URL of the publishing organization).",
)
@click.option(
    "--publisher-category",
    type=click.Choice(["vendor", "user", "coordinator", "discoverer", "other", "translator"]),
    default="user",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write here.")
def export_cmd(
    db_url: str | None,
    sbom_key: str,
    vex_format: str,
    spec: str,
    publisher: str,
    namespace: str,
    publisher_category: str,
    output: Path | None,
) -> None:
    """Export the VEX of a device model (SBOM: id, sha256 prefix or MANUFACTURER/MODEL/VERSION):
    the advisories naming the device and its components' vulnerabilities, with the stored VEX
    statements applied."""
    from medsentry.intel.match import DeviceQuery, match_components, match_devices
    from medsentry.intel.sbom_store import device_model_of, find_sbom, load_components, load_vex
    from medsentry.intel.store import load_index
    from medsentry.intel.vex_apply import apply_vex, component_key
    from medsentry.intel.vex_export import csaf_vex, cyclonedx_vex

    with open_store(db_url) as store:
        rec = find_sbom(store, sbom_key)
        comps = load_components(store, rec["id"])
        dm = device_model_of(rec)
        index = load_index(store)
        # the advisories that name the device model itself, and those of its components
        query = DeviceQuery(vendor=dm.manufacturer, product=dm.model, version=dm.version)
        matches = match_devices(index, [query], include_resolved=True)
        matches += match_components(index, comps, include_resolved=True)
        vexed = apply_vex(
            matches, load_vex(store), components={component_key(c): c for c in comps}, device=dm
        )
    if vex_format == "cyclonedx":
        doc = cyclonedx_vex(dm, comps, vexed, spec=spec)
    else:
        doc = csaf_vex(
            dm,
            comps,
            vexed,
            publisher=publisher,
            namespace=namespace,
            publisher_category=publisher_category,
        )
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        echo(f"wrote {vex_format} VEX for {dm.label()} to {output}", err=True)
