"""`medsentry vulns`: known vulnerabilities of the devices, by device or by advisory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.errors import InputError
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


def _summary_rows(matches: list[Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    by_adv: dict[str, dict[str, Any]] = {}
    for m in matches:
        row = by_adv.setdefault(
            m.advisory_id,
            {
                "advisory_id": m.advisory_id,
                "affected": 0,
                "potentially_affected": 0,
                "kev": "",
                "max_cvss": None,
                "title": titles.get(m.advisory_id, ""),
                "device_ids": [],
            },
        )
        if m.status in ("affected", "potentially_affected"):
            row[m.status] += 1
        if m.kev:
            row["kev"] = "KEV"
        if m.max_cvss is not None:
            row["max_cvss"] = max(row["max_cvss"] or 0.0, m.max_cvss)
        row["device_ids"].append(m.device_id)
    rows = sorted(
        by_adv.values(),
        key=lambda r: (-r["affected"], -(r["max_cvss"] or 0), r["advisory_id"]),
    )
    for r in rows:
        ids = r["device_ids"]
        r["devices"] = ", ".join(ids[:3]) + (f" (+{len(ids) - 3})" if len(ids) > 3 else "")
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
@click.option(
    "--summary",
    is_flag=True,
    help="One row per advisory: how many devices are affected or potentially affected.",
)
@FORMAT_OPTION
def vulns_cmd(
    db_url: str | None,
    devices_csv: Path | None,
    device_filter: str | None,
    advisory: str | None,
    by: str,
    kev_only: bool,
    show_all: bool,
    summary: bool,
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
            try:
                from medsentry.inventory.store import load_devices
            except ImportError as exc:  # an installation without the inventory
                raise InputError("no device inventory here; give --devices FILE.csv") from exc
            devices = list(load_devices(store))
        index = load_index(store)
    if device_filter:
        devices = [d for d in devices if d.device_id == device_filter]
    matches = match_devices(index, devices, include_resolved=show_all)
    if advisory:
        matches = [m for m in matches if m.advisory_id.lower() == advisory.lower()]
    if kev_only:
        matches = [m for m in matches if m.kev]
    if summary:
        titles = {a.advisory_id: a.title for a in index.advisories}
        emit(
            _summary_rows(matches, titles),
            [
                "advisory_id",
                "affected",
                "potentially_affected",
                "kev",
                "max_cvss",
                "title",
                "devices",
            ],
            fmt,
            title=f"advisories concerning {len(devices)} devices",
        )
        return
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
