"""Listing output shared by every command: a readable table by default, JSON on request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import click
import msgspec
from rich.table import Table

from medsentry.cli.terminal import data_console, printable


class _Limit(click.ParamType):
    """--limit of every listing: a whole number of rows, at least one; at most what a 64-bit
    SQL LIMIT takes."""

    name = "N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number of rows", param, ctx)
        if not 1 <= n < 2**63:
            self.fail(f"{n} rows: give at least 1 (and fewer than 2^63)", param, ctx)
        return n


LIMIT = _Limit()

FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output a readable table or the same records as JSON.",
)


def emit(
    records: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str, title: str | None = None
) -> None:
    """Print records as a table (selected columns) or as a JSON array (all fields)."""
    rows = list(records)
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        # escapes shown before the layout, so that columns are as wide as what is printed
        table.add_row(*["" if row.get(c) is None else printable(str(row.get(c))) for c in columns])
    data_console().print(table)
