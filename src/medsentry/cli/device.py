"""`medsentry device ID`: everything known about one device, with its evidence."""

from __future__ import annotations

import click
import msgspec

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION
from medsentry.errors import InputError

_ATTRS = ("category", "vendor", "model", "software_version", "os")


@click.command("device")
@DB_OPTION
@click.argument("key")
@FORMAT_OPTION
def device_cmd(db_url: str | None, key: str, fmt: str) -> None:
    """Show one device (by id, MAC, IP or host name): identity with evidence and conflicts,
    roles, services, peers, address history, CMMS facts and changes."""
    from medsentry.inventory import store as inv_store
    from medsentry.store import ns_to_iso, open_store

    with open_store(db_url) as store:
        dev = inv_store.find_device(store, key)
        if dev is None:
            raise InputError(f"no device matches {key!r} (try `medsentry devices`)")
        addresses = inv_store.list_addresses(store, dev.device_id)
        changes = inv_store.list_changes(store, dev.device_id)
    for a in addresses:
        a["first_seen"], a["last_seen"] = ns_to_iso(a.pop("first_ns")), ns_to_iso(a.pop("last_ns"))
        a.pop("device_id", None)
    for c in changes:
        c["time"] = ns_to_iso(c.pop("ts_ns"))
        c["recorded_at"] = c["recorded_at"].isoformat() if c.get("recorded_at") else None
        c.pop("device_id", None)
        c.pop("id", None)
    if fmt == "json":
        doc = msgspec.to_builtins(dev) | {"addresses": addresses, "changes": changes}
        click.echo(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode())
        return
    _print(dev, addresses, changes, ns_to_iso)


def _print(dev, addresses, changes, ns_to_iso) -> None:
    from rich.table import Table
    from rich.text import Text

    from medsentry.cli.terminal import console, printable
    from medsentry.inventory.taxonomy import taxonomy

    con = console()
    cat = taxonomy().categories.get(dev.category.value) if dev.category else None
    head = Table(show_header=False, title=dev.device_id, title_justify="left")
    head.add_column("field", style="bold")
    head.add_column("value")
    rows = [
        ("MAC", dev.mac),
        ("addresses", ", ".join(dev.ips)),
        ("host name", dev.hostname),
        ("first seen", ns_to_iso(dev.first_seen_ns) if dev.first_seen_ns else None),
        ("last seen", ns_to_iso(dev.last_seen_ns) if dev.last_seen_ns else None),
        ("category", f"{dev.category.value} ({cat.name})" if cat else None),
        ("criticality", dev.criticality),
        ("FDA class", f"{dev.fda_class} - {cat.regulation}" if dev.fda_class and cat else None),
        ("medical device", "yes" if dev.medical else "no"),
        ("PHI observed", "yes" if dev.phi_observed else "no"),
        ("roles", ", ".join(dev.roles)),
        ("protocols", ", ".join(dev.protocols)),
        ("listening", ", ".join(dev.listening)),
        ("peers", ", ".join(dev.peers[:20]) + (" ..." if len(dev.peers) > 20 else "")),
        ("external peers", ", ".join(dev.external_peers[:20])),
    ]
    if dev.private_addresses:  # BLE: the rotating addresses it was seen under
        rows.append(("private addresses", ", ".join(dev.private_addresses)))
    rows += [(f"cmms {k}", v) for k, v in sorted(dev.asset.items())]
    for k, v in rows:
        head.add_row(k, "" if v is None else printable(str(v)))
    con.print(head)
    ev = Table(title="identity and evidence", title_justify="left")
    for col in ("attribute", "value", "conf", "evidence", "rule", "observed", "c"):
        ev.add_column(col)
    for attr in _ATTRS:
        a = getattr(dev, attr)
        if a is None:
            ev.add_row(attr, "(unknown)", "", "", "", "", "")
            continue
        first = True
        for e in a.evidence:
            ev.add_row(
                attr if first else "",
                printable(a.value) if first else "",
                f"{a.confidence:.2f}" if first else "",
                e.source,
                e.rule or "",
                printable(e.observed[:60]),
                f"{e.confidence:.2f}",
            )
            first = False
        for e in a.conflicts:
            ev.add_row(
                "",
                Text(f"conflict: {printable(e.value)}", style="red"),
                "",
                e.source,
                e.rule or "",
                printable(e.observed[:60]),
                f"{e.confidence:.2f}",
            )
    con.print(ev)
    if addresses:
        t = Table(title="address history", title_justify="left")
        for col in ("ip", "source", "first_seen", "last_seen"):
            t.add_column(col)
        for a in addresses:
            t.add_row(a["ip"], a["source"], a["first_seen"], a["last_seen"])
        con.print(t)
    if changes:
        t = Table(title="changes", title_justify="left")
        for col in ("time", "change", "attribute", "old_value", "new_value"):
            t.add_column(col)
        for c in changes:
            t.add_row(
                *[
                    str(c.get(k) or "")
                    for k in ("time", "change", "attribute", "old_value", "new_value")
                ]
            )
        con.print(t)
