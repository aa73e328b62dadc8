"""`medsentry baseline accept ALERT_ID | --device D`: take a departure into the baseline."""

from __future__ import annotations

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit


@click.group("baseline")
def baseline_cmd() -> None:
    """Behavioural baselines of devices."""


@baseline_cmd.command("accept")
@click.argument("alert_id", required=False)
@click.option("--device", metavar="ID", help="Accept every pending departure of this device.")
@click.option("--by", "by", default=None, metavar="NAME", help="Who accepts (default: $USER).")
@click.option("--reason", default="accepted into the baseline", show_default=True)
@DB_OPTION
@FORMAT_OPTION
def accept_cmd(
    alert_id: str | None,
    device: str | None,
    by: str | None,
    reason: str,
    db_url: str | None,
    fmt: str,
) -> None:
    """Accept the change a baseline alert reports (or all of a device's) and close the alert."""
    import getpass

    from medsentry.cli.alerts import _device_id
    from medsentry.detect.accept import accept_baseline
    from medsentry.errors import InputError
    from medsentry.store import open_store

    if (alert_id is None) == (device is None):
        raise InputError("give an ALERT_ID or --device (one of them)")
    who = by or getpass.getuser()
    with open_store(db_url) as store:
        dev = _device_id(store, device) if device else None
        rows = accept_baseline(store, alert_id=alert_id, device=dev, by=who, reason=reason)
    emit(
        rows,
        ("alert_id", "device_id", "dimension", "values", "status"),
        fmt,
        title=f"{sum(r['values'] for r in rows)} value(s) accepted",
    )
