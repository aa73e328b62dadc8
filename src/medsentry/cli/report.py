"""`medsentry report --out DIR`: HTML, PDF, JSON and STIX 2.1 reports of what the store holds."""

from __future__ import annotations

from pathlib import Path

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.errors import InputError
from medsentry.store import open_store


@click.command("report")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write report.html, report.pdf, report.json, report.stix.json into.",
)
@click.option(
    "--formats",
    default="html,pdf,json,stix",
    show_default=True,
    help="Comma-separated subset of html, pdf, json, stix.",
)
@DB_OPTION
def report_cmd(out: Path, formats: str, db_url: str | None) -> None:
    """Executive summary, device risk, findings by framework and device, vulnerable devices
    (KEV first), segmentation, alerts and the audit ledger's checkpoint at report time."""
    from medsentry.ledger import record
    from medsentry.report.collect import collect, remember
    from medsentry.report.render import FORMATS, write_report

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise InputError(f"--formats: unknown format {bad[0] if bad else formats!r}")
    with open_store(db_url) as store:
        r = collect(store)
        written = write_report(r, out, chosen)
        remember(store, r)
    record(
        "user.action",
        {
            "action": "report.generated",
            "formats": list(chosen),
            "open_findings": r["summary"]["open_findings"],
            "ledger_size": r["ledger"]["size"] if r["ledger"] else None,
        },
        actor="cli",
    )
    for name, path in written.paths.items():
        click.echo(f"{name:5} {path}  ({written.seconds[name]:.2f} s)")
