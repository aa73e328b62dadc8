"""`medsentry flows`: list stored flows, filtered and sorted."""

from __future__ import annotations

import os

import click

from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.store import FLOW_TABLE_COLUMNS, SORT_KEYS, FlowFilter, list_flows, open_store
from medsentry.store.queries import APP_COLUMN


def _kept_database(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A database that lasts longer than the command: SQLite in memory (`sqlite://`,
    `sqlite:///:memory:`) would take a whole scan and drop it at exit."""
    from medsentry.store.db import ENV_DB, in_memory

    given = value or os.environ.get(ENV_DB)
    if given and in_memory(given):
        where = "--db" if value else f"${ENV_DB}"
        raise click.BadParameter(
            f"{where} {given!r} is an in-memory database, gone when the command ends;"
            " give a file (sqlite:///path/medsentry.db) or a server",
            ctx=ctx,
            param=param,
        )
    return value


DB_OPTION = click.option(
    "--db",
    "db_url",
    metavar="URL",
    default=None,
    callback=_kept_database,
    help="SQLAlchemy database URL (default: $MEDSENTRY_DB, else SQLite in the data directory).",
)


@click.command("flows")
@DB_OPTION
@click.option(
    "--protocol",
    metavar="NAME",
    help="Application protocol, e.g. dicom; hl7 also matches hl7-mllp; 'unknown' = none.",
)
@click.option("--host", metavar="IP", help="Client or server address.")
@click.option("--port", type=int, metavar="N", help="Client or server port.")
@click.option("--transport", metavar="tcp|udp", help="Transport (tcp, udp, icmp, icmp6, arp).")
@click.option("--capture", metavar="ID", help="Capture id or a prefix of it (see `scan` output).")
@click.option(
    "--app",
    metavar="NAME",
    help="Flows of an app the capture names (PCAPdroid, Apple PKTAP): part of its package,"
    " process or display name, any case.",
)
@click.option("--since", metavar="TIME", help="Flows still active at/after this ISO time (UTC).")
@click.option("--until", metavar="TIME", help="Flows started at/before this ISO time (UTC).")
@click.option(
    "--sort",
    default="start",
    show_default=True,
    metavar="FIELD",
    help=f"One of {', '.join(SORT_KEYS)}; prefix '-' for descending (e.g. -bytes).",
)
@click.option("--limit", type=LIMIT, metavar="N", help="At most N flows.")
@FORMAT_OPTION
def flows_cmd(
    db_url: str | None,
    protocol: str | None,
    host: str | None,
    port: int | None,
    transport: str | None,
    capture: str | None,
    app: str | None,
    since: str | None,
    until: str | None,
    sort: str,
    limit: int | None,
    fmt: str,
) -> None:
    """List the flows stored by `scan` and `monitor`."""
    flt = FlowFilter.parse(
        protocol=protocol,
        host=host,
        port=port,
        transport=transport,
        capture=capture,
        app=app,
        since=since,
        until=until,
        sort=sort,
        limit=limit,
    )
    with open_store(db_url) as store:
        rows = list_flows(store, flt)
    columns = FLOW_TABLE_COLUMNS
    if any(r[APP_COLUMN] for r in rows):  # the capture named the apps: show them
        columns = (*columns[:-1], APP_COLUMN, columns[-1])
    emit(rows, columns, fmt, title=f"{len(rows)} flow{'' if len(rows) == 1 else 's'}")
