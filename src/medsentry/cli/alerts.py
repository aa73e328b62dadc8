"""`medsentry alerts`: list alerts (filters, JSON), show one, acknowledge or close it."""

from __future__ import annotations

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.errors import InputError

ALERT_COLUMNS = (
    "alert_id",
    "severity",
    "status",
    "rule_id",
    "technique",
    "device_id",
    "count",
    "first_seen",
    "last_seen",
    "title",
)
# what a narrow terminal leaves out first: the title says what happened, times can wait
ALERT_NARROW = ("last_seen", "first_seen", "technique", "count", "rule_id", "status", "device_id")


def alert_record(a) -> dict:  # type: ignore[no-untyped-def]
    """The listing record of an alert: its fields plus readable times and technique."""
    import msgspec

    from medsentry.store import ns_to_iso

    rec = msgspec.to_builtins(a)
    rec["technique"] = f"{a.technique_id} {a.technique_name}"
    rec["first_seen"] = ns_to_iso(a.first_seen_ns)
    rec["last_seen"] = ns_to_iso(a.last_seen_ns)
    return rec


@click.group("alerts", invoke_without_command=True)
@DB_OPTION
@click.option(
    "--severity",
    type=click.Choice(["info", "low", "medium", "high", "critical"]),
    help="At least this severity.",
)
@click.option("--device", metavar="ID", help="Device id (mac:.. / ip:..), MAC, IP or hostname.")
@click.option("--rule", metavar="ID", help="Rule id, or a prefix ending in '.' or '*'.")
@click.option(
    "--status",
    type=click.Choice(["new", "acknowledged", "closed", "open"]),
    help="Lifecycle status ('open' = new or acknowledged).",
)
@click.option("--since", metavar="TIME", help="Seen at/after this ISO time (UTC).")
@click.option("--limit", type=LIMIT, metavar="N", help="At most N alerts.")
@FORMAT_OPTION
@click.pass_context
def alerts_cmd(
    ctx: click.Context,
    db_url: str | None,
    severity: str | None,
    device: str | None,
    rule: str | None,
    status: str | None,
    since: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List alerts, most recent first; `ack` / `close` / `show` manage one."""
    if ctx.invoked_subcommand is not None:
        return
    from medsentry.detect.store import AlertFilter, list_alerts
    from medsentry.store import open_store, parse_time

    with open_store(db_url) as store:
        dev = _device_id(store, device) if device else None
        flt = AlertFilter(
            severity=severity,
            device=dev,
            rule=rule,
            status=status,
            since_ns=parse_time(since, "--since") if since else None,
            limit=limit,
        )
        rows = [alert_record(a) for a in list_alerts(store, flt)]
    emit(
        rows,
        ALERT_COLUMNS,
        fmt,
        title=f"{len(rows)} alert{'' if len(rows) == 1 else 's'}",
        narrow=ALERT_NARROW,
        least={"title": 40},
    )


def _device_id(store, key: str) -> str:  # type: ignore[no-untyped-def]
    """A device id as given, else the inventory's device for a MAC/IP/hostname, else ip:KEY."""
    if key.startswith(("mac:", "ip:", "host:")):
        return key
    try:
        from medsentry.inventory.store import find_device

        d = find_device(store, key)
    except Exception:
        d = None
    if d is not None:
        return d.device_id
    return f"mac:{key.lower()}" if key.count(":") == 5 else f"ip:{key}"


@alerts_cmd.command("show")
@DB_OPTION
@click.argument("alert_id")
@FORMAT_OPTION
def show_cmd(db_url: str | None, alert_id: str, fmt: str) -> None:
    """One alert with its evidence and lifecycle history."""
    from medsentry.detect.store import alert_history_of, get_alert
    from medsentry.store import ns_to_iso, open_store

    with open_store(db_url) as store:
        a = get_alert(store, alert_id)
        if a is None:
            raise InputError(f"alert {alert_id!r}: no such alert")
        rec = alert_record(a)
        rec["history"] = alert_history_of(store, a.alert_id)
    if fmt == "json":
        emit([rec], (), fmt)
        return
    emit(
        [rec],
        ALERT_COLUMNS,
        fmt,
        title=f"alert {a.alert_id}",
        narrow=ALERT_NARROW,
        least={"title": 40},
    )
    rows = [
        {"time": ns_to_iso(e.ts_ns), "kind": e.kind, "flow_id": e.flow_id, "ref": e.ref}
        for e in a.evidence
    ]
    emit(rows, ("time", "kind", "flow_id", "ref"), fmt, title="evidence")
    hist = [{**h, "at": ns_to_iso(h["at_ns"])} for h in rec["history"]]
    emit(hist, ("at", "action", "actor", "reason"), fmt, title="history")


def _lifecycle(status: str):  # type: ignore[no-untyped-def]
    @click.argument("alert_id")
    @click.option("--by", "by", required=True, metavar="NAME", help="Who does it.")
    @click.option("--reason", required=True, metavar="TEXT", help="Why.")
    @DB_OPTION
    @FORMAT_OPTION
    def cmd(alert_id: str, by: str, reason: str, db_url: str | None, fmt: str) -> None:
        from medsentry.detect.store import set_status
        from medsentry.store import open_store

        with open_store(db_url) as store:
            a = set_status(store, alert_id, status, by, reason)
        emit(
            [alert_record(a)],
            ALERT_COLUMNS,
            fmt,
            title=f"alert {a.alert_id} {status}",
            narrow=ALERT_NARROW,
            least={"title": 40},
        )

    return cmd


alerts_cmd.command("ack", help="Acknowledge an alert (who and why are recorded).")(
    _lifecycle("acknowledged")
)
alerts_cmd.command("close", help="Close an alert (who and why are recorded).")(_lifecycle("closed"))
