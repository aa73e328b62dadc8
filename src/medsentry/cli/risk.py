"""`medsentry risk [DEVICE]`: devices ranked by risk, every score with its breakdown."""

from __future__ import annotations

import click
import msgspec

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.cli.terminal import echo
from medsentry.errors import InputError
from medsentry.store import open_store

RANK_COLUMNS = [
    "rank",
    "device_id",
    "device",
    "risk",
    "band",
    "likelihood",
    "impact",
    "driver",
    "vulnerabilities",
]
FACTOR_COLUMNS = ["group", "name", "value", "points", "source"]
BREAKDOWNS = 10  # table output: the riskiest devices explained, unless --limit says how many


@click.command("risk")
@DB_OPTION
@click.argument("device", required=False)
@click.option("--limit", type=LIMIT, metavar="N", help="Only the N riskiest devices.")
@click.option(
    "--brief",
    is_flag=True,
    help=(
        "Ranking only, without the breakdowns (table output shows those of the"
        f" {BREAKDOWNS} riskiest, or of all --limit N)."
    ),
)
@FORMAT_OPTION
def risk_cmd(
    db_url: str | None, device: str | None, limit: int | None, brief: bool, fmt: str
) -> None:
    """Rank devices by risk (0-100 = sqrt(likelihood x impact); see docs/risk.md), or explain
    one DEVICE (id, MAC, IP or hostname)."""
    from medsentry.inventory.store import find_device
    from medsentry.risk.assess import assess

    with open_store(db_url) as store:
        only = None
        if device:
            d = find_device(store, device)
            if d is None:
                raise InputError(f"no device {device!r} in the inventory (see `medsentry scan`)")
            only = [d]
        scores = assess(store, only)
    if limit is not None:
        scores = scores[:limit]
    records = []
    for i, s in enumerate(scores, 1):
        r = msgspec.to_builtins(s)
        r["rank"] = i
        records.append(r)
    if fmt == "json":
        emit(records, RANK_COLUMNS, fmt)
        return
    emit(records, RANK_COLUMNS, fmt, title=f"risk: {len(records)} device(s), highest first")
    if not records:
        echo("no devices in the inventory yet: run `medsentry scan` first", err=True)
    if brief:
        return
    shown = records if (limit is not None or device) else records[:BREAKDOWNS]
    for r in shown:
        emit(
            r["factors"],
            FACTOR_COLUMNS,
            fmt,
            title=(
                f"#{r['rank']} {r['device']}: risk {r['risk']} ({r['band']}) ="
                f" sqrt(likelihood {r['likelihood']:g} x impact {r['impact']:g})"
                + (f"; driven by {r['driver']}" if r["driver"] else "; exposure only")
            ),
        )
        ids = r["vulnerability_ids"]
        if ids:
            more = f" (+{len(ids) - 10} more)" if len(ids) > 10 else ""
            echo(f"vulnerabilities counted: {'; '.join(ids[:10])}{more}")
    if len(shown) < len(records):
        echo(
            f"breakdowns of the {len(shown)} riskiest shown: `medsentry risk DEVICE` explains"
            " one, `--limit N` the first N, `--format json` all",
            err=True,
        )
