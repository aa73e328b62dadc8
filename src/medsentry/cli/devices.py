"""`medsentry devices`: the device inventory, filtered and sorted."""

from __future__ import annotations

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.inventory.model import CRITICALITIES
from medsentry.inventory.query import LIST_COLUMNS, SORT_KEYS, filter_devices, summary


@click.command("devices")
@DB_OPTION
@click.option("--category", metavar="KEY", help="Taxonomy category or a parent (e.g. imaging).")
@click.option("--vendor", metavar="NAME", help="Vendor (any spelling of the company).")
@click.option(
    "--criticality",
    multiple=True,
    type=click.Choice(CRITICALITIES, case_sensitive=False),
    help="Clinical criticality (repeatable).",
)
@click.option("--subnet", metavar="CIDR", help="Devices with an address in this network.")
@click.option("--medical/--non-medical", default=None, help="Only medical / only other devices.")
@click.option(
    "--sort",
    default="ip",
    show_default=True,
    metavar="FIELD",
    help=f"One of {', '.join(SORT_KEYS)}; prefix '-' for descending.",
)
@click.option("--limit", type=LIMIT, metavar="N", help="At most N devices.")
@FORMAT_OPTION
def devices_cmd(
    db_url: str | None,
    category: str | None,
    vendor: str | None,
    criticality: tuple[str, ...],
    subnet: str | None,
    medical: bool | None,
    sort: str,
    limit: int | None,
    fmt: str,
) -> None:
    """List the devices the inventory knows, with what they are and how critical."""
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    with open_store(db_url) as store:
        devs = load_devices(store)
    chosen = filter_devices(devs, category, vendor, criticality, subnet, medical, sort, limit)
    emit(
        [summary(d) for d in chosen],
        LIST_COLUMNS,
        fmt,
        title=f"{len(chosen)} devices",
        narrow=("last_seen", "conf", "roles", "phi", "software", "model", "hostname", "vendor"),
    )
