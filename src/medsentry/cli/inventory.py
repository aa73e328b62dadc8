"""`medsentry inventory`: the CMMS list in and out, reconciliation, rules, changes."""

from __future__ import annotations

from pathlib import Path

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.errors import InputError

FINGERPRINTS_OPTION = click.option(
    "--fingerprints",
    "fp_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Directory of extra fingerprint rules (*.yaml; repeatable). Also $MEDSENTRY_FINGERPRINTS"
    " and <data dir>/fingerprints.",
)


@click.group("inventory")
def inventory_grp() -> None:
    """The device inventory: CMMS import/export, reconciliation, fingerprints, changes."""


TABLE_ROWS = 50  # per section in a terminal; --format json lists every one


def _print_report(report: dict, fmt: str) -> None:
    if fmt == "json":
        emit([report], [], "json")
        return
    click.echo(
        f"{len(report['never_seen'])} listed assets never seen, "
        f"{len(report['unlisted'])} devices not on the list, "
        f"{len(report['mismatches'])} field mismatches"
        + (f", {len(report['shared'])} devices matched by several assets" * bool(report["shared"]))
    )
    sections = [
        ("shared", ["device_id", "asset_tags"], "several assets match one device"),
        ("mismatches", ["asset_tag", "device_id", "field", "listed", "observed"],
         "list and network disagree"),
        ("never_seen", ["asset_tag", "mac", "ip", "hostname", "vendor", "model", "location"],
         "on the list, never seen"),
        ("unlisted", ["device_id", "ip", "category", "vendor", "medical"],
         "seen on the network, not on the list"),
    ]  # fmt: skip
    for key, columns, title in sections:
        rows = report[key]
        if not rows:
            continue
        shown = [
            r | {"asset_tags": ", ".join(r["asset_tags"])} if "asset_tags" in r else r
            for r in rows[:TABLE_ROWS]
        ]
        emit(shown, columns, "table", title=title)
        if len(rows) > TABLE_ROWS:
            click.echo(
                f"... and {len(rows) - TABLE_ROWS} more"
                " (`medsentry inventory reconcile --format json` lists them all)"
            )


@inventory_grp.command("import")
@DB_OPTION
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@FORMAT_OPTION
def import_cmd(db_url: str | None, file: Path, fmt: str) -> None:
    """Import a CMMS asset list (CSV or JSON: asset tag, location, owner, serial number,
    department, vendor, model, MAC, IP, ...) and report where it disagrees with the network.
    Columns about a patient, free-text columns (notes, comments) and columns with person data
    in a cell are not imported: a warning names them, never their values."""
    from medsentry.cli.terminal import console, printable, warn_line
    from medsentry.inventory.cmms import import_assets
    from medsentry.ledger import record
    from medsentry.store import open_store
    from medsentry.store.writer import file_sha256

    with open_store(db_url) as store:
        report = import_assets(store, file)
    record(
        "inventory.assets_imported",
        {
            "sha256": file_sha256(file),  # not its name: see scan
            "assets": report["imported"],
            "skipped": report["skipped"],
            "never_seen": len(report["never_seen"]),
            "unlisted": len(report["unlisted"]),
            "mismatches": len(report["mismatches"]),
        },
        actor="cli",
    )
    err = console(stderr=True)
    for w in report["warnings"]:
        warn_line(err, w)
    if fmt != "json":
        click.echo(
            f"imported {report['imported']} assets from {printable(str(file))}"
            + (
                f" ({report['skipped']} rows without an asset tag skipped)"
                if report["skipped"]
                else ""
            )
        )
    _print_report(report, fmt)


@inventory_grp.command("reconcile")
@DB_OPTION
@FORMAT_OPTION
def reconcile_cmd(db_url: str | None, fmt: str) -> None:
    """Compare the imported CMMS list with what the network shows."""
    from medsentry.inventory.cmms import reconcile
    from medsentry.store import open_store

    with open_store(db_url) as store:
        _print_report(reconcile(store), fmt)


@inventory_grp.command("export")
@DB_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="CSV (CMMS import) or JSON.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def export_cmd(db_url: str | None, fmt: str, output: Path | None) -> None:
    """Export the inventory (observed devices merged with the CMMS list)."""
    from medsentry.inventory.cmms import export_rows, write_export
    from medsentry.store import open_store

    with open_store(db_url) as store:
        text = write_export(export_rows(store), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{output}: cannot write: {exc.strerror or exc}") from None


@inventory_grp.command("reidentify")
@DB_OPTION
@FINGERPRINTS_OPTION
def reidentify_cmd(db_url: str | None, fp_dirs: tuple[Path, ...]) -> None:
    """Identify every stored device again (after adding fingerprint rules)."""
    from medsentry.inventory.engine import reidentify
    from medsentry.inventory.fingerprints import load_library
    from medsentry.store import open_store

    library = load_library(fp_dirs)
    with open_store(db_url) as store:
        counts = reidentify(store, library)
    click.echo(f"{counts['devices']} devices identified again, {counts['changes']} changes")


@inventory_grp.command("fingerprints")
@FINGERPRINTS_OPTION
@FORMAT_OPTION
def fingerprints_cmd(fp_dirs: tuple[Path, ...], fmt: str) -> None:
    """Validate and list the fingerprint rules (shipped and your own)."""
    from medsentry.inventory.fingerprints import load_library

    lib = load_library(fp_dirs)
    emit(
        [
            {
                "id": r.id,
                "when": ", ".join(
                    f"{'!' if c.negated else ''}{c.key} {c.kind}" for c in r.conditions
                ),
                "sets": ", ".join(f"{k}={v}" for k, v in r.set.items()),
                "confidence": r.confidence,
                "file": r.file,
                "source": r.source,
            }
            for r in lib.rules
        ],
        ["id", "when", "sets", "confidence", "file"],
        fmt,
        title=f"{len(lib.rules)} rules from {len(lib.files)} files",
    )


@inventory_grp.command("changes")
@DB_OPTION
@click.option("--device", "device_key", metavar="ID", help="Only this device.")
@click.option("--limit", type=LIMIT, default=1000, show_default=True)
@FORMAT_OPTION
def changes_cmd(db_url: str | None, device_key: str | None, limit: int, fmt: str) -> None:
    """Inventory changes over time: new devices, identity, software, roles, addresses."""
    from medsentry.inventory.store import find_device, list_changes
    from medsentry.store import ns_to_iso, open_store

    with open_store(db_url) as store:
        did = None
        if device_key:
            dev = find_device(store, device_key)
            did = dev.device_id if dev else device_key
        rows = list_changes(store, did, limit)
    for r in rows:
        r["time"] = ns_to_iso(r.pop("ts_ns"))
        r["recorded_at"] = r["recorded_at"].isoformat() if r.get("recorded_at") else None
    emit(rows, ["time", "device_id", "change", "attribute", "old_value", "new_value"], fmt)
