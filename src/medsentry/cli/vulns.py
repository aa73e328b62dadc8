"""`medsentry vulns`: known vulnerabilities of the devices, by device or by advisory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.store import open_store


def _match_rows(matches: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for m in matches:
        d = msgspec.to_builtins(m)
        d["subject"] = m.device_id or m.component
        d["cve_count"] = len(m.cves)
        d["kev"] = "KEV" if m.kev else ""
        rows.append(d)
    return rows


@click.command("vulns")
@DB_OPTION
@click.option(
    "--devices",
    "devices_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Hospital inventory CSV (manufacturer, model, software version) instead of the inventory.",
)
@click.option("--device", "device_filter", metavar="ID", help="Only this device id.")
@click.option("--advisory", metavar="ID", help="Only this advisory / record id.")
@click.option(
    "--by",
    type=click.Choice(["device", "advisory"]),
    default="device",
    show_default=True,
    help="Sort by device, or by advisory.",
)
@click.option("--kev-only", is_flag=True, help="Only matches with a CVE in CISA's KEV catalog.")
@click.option("--all", "show_all", is_flag=True, help="Also show fixed and not-affected results.")
@FORMAT_OPTION
def vulns_cmd(
    db_url: str | None,
    devices_csv: Path | None,
    device_filter: str | None,
    advisory: str | None,
    by: str,
    kev_only: bool,
    show_all: bool,
    fmt: str,
) -> None:
    """Known vulnerabilities of the devices (inventory or --devices CSV)."""
    from medsentry.intel.devices_csv import read_devices_csv
    from medsentry.intel.match import match_devices
    from medsentry.intel.store import load_index

    with open_store(db_url) as store:
        if devices_csv is not None:
            devices: list[Any] = list(read_devices_csv(devices_csv))
        else:
            from medsentry.inventory.store import load_devices

            devices = list(load_devices(store))
        index = load_index(store)
    if device_filter:
        devices = [d for d in devices if d.device_id == device_filter]
    matches = match_devices(index, devices, include_resolved=show_all)
    if advisory:
        matches = [m for m in matches if m.advisory_id.lower() == advisory.lower()]
    if kev_only:
        matches = [m for m in matches if m.kev]
    if by == "advisory":
        matches.sort(key=lambda m: (m.advisory_id, m.device_id))
    else:
        matches.sort(key=lambda m: (m.device_id, -m.confidence, m.advisory_id))
    rows = _match_rows(matches)
    emit(
        rows,
        [
            "subject",
            "device",
            "advisory_id",
            "status",
            "confidence",
            "max_cvss",
            "kev",
            "cve_count",
            "explanation",
        ],
        fmt,
        title=f"vulnerabilities of {len(devices)} devices",
    )
