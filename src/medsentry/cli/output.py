"""Listing output shared by every command: a readable table by default, JSON on request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import click
import msgspec
from rich.cells import cell_len
from rich.table import Table

from medsentry.cli.terminal import console, data_console, printable


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
    records: Iterable[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    title: str | None = None,
    narrow: Sequence[str] | None = None,
    least: dict[str, int] | None = None,
) -> None:
    """Print records as a table (selected columns) or as a JSON array (all fields).

    A table wider than the terminal leaves out whole columns, `narrow` first (default: from the
    right), until the rest fit, and says which on stderr: an address cut to "10.…" in every row
    of a 80-column terminal is worse than no model column. The first two columns are never cut;
    the others fold, down to 10 cells or their `least` width."""
    rows = list(records)
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    cells = [
        ["" if row.get(c) is None else printable(str(row.get(c))) for c in columns] for row in rows
    ]
    out = data_console()
    widths = _widths(columns, cells, least or {})
    shown = _fitting(columns, widths, out.width, narrow)
    if len(shown) < len(columns):
        hidden = [c for c in columns if c not in shown]
        warn = console(stderr=True)
        warn.print(
            f"medsentry: {out.width} columns show {len(shown)} of {len(columns)} fields;"
            f" not shown: {', '.join(hidden)} (a wider terminal or --format json shows them)",
            soft_wrap=True,
        )
    keep = [columns.index(c) for c in shown]
    given = _given_widths(shown, widths, out.width)
    table = Table(title=title, show_lines=False)
    for j, col in enumerate(shown):
        if j < 2:  # the row's identifiers: never cut, never folded
            table.add_column(col, no_wrap=True, width=given.get(col))
        else:  # the rest fold onto more lines rather than lose their end to "…"
            table.add_column(col, overflow="fold", width=given.get(col))
    for row in cells:
        # escapes shown before the layout, so that columns are as wide as what is printed
        table.add_row(*[row[i] for i in keep])
    out.print(table)


_FOLDED_MIN = 10  # a folded column is at least this wide (or as wide as its widest value)


def _widths(
    columns: Sequence[str], cells: list[list[str]], least: dict[str, int]
) -> dict[str, tuple[int, int]]:
    """Each column's (whole, least) width in cells: its widest value or header; the least a
    column folds to: the whole width for the first two, else up to `_FOLDED_MIN`."""
    out = {}
    for i, c in enumerate(columns):
        whole = max([cell_len(c)] + [cell_len(r[i]) for r in cells])
        low = whole if i < 2 else min(whole, max(cell_len(c), least.get(c, _FOLDED_MIN)))
        out[c] = (whole, low)
    return out


def _given_widths(
    shown: Sequence[str], widths: dict[str, tuple[int, int]], width: int
) -> dict[str, int]:
    """Nothing when the whole values fit (rich lays the table out); else each column's width:
    its least, and the room left shared among the folded ones by how much more they want."""
    room = width - 1 - 3 * len(shown)
    if sum(widths[c][0] for c in shown) <= room:
        return {}
    given = {c: widths[c][1] for c in shown}
    left = room - sum(given.values())
    want = {c: widths[c][0] - widths[c][1] for c in shown[2:]}
    total = sum(want.values())
    if left > 0 and total > 0:
        for c in want:
            given[c] += min(want[c], left * want[c] // total)
    return given


def _fitting(
    columns: Sequence[str],
    widths: dict[str, tuple[int, int]],
    width: int,
    narrow: Sequence[str] | None,
) -> list[str]:
    """The columns that fit `width` at their least widths in rich's default box (3 cells of
    padding and rule each, 1 for the table's edge), leaving out `narrow` first, then from the
    right; the first two always stay."""
    shown = list(columns)
    order = [c for c in (narrow or ()) if c in widths] + [
        c for c in reversed(columns) if c not in (narrow or ())
    ]
    for c in order:
        if 1 + sum(widths[k][1] + 3 for k in shown) <= width or len(shown) <= 2:
            break
        if c in shown[2:]:
            shown.remove(c)
    return shown
