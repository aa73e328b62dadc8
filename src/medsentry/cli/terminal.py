"""What reaches the analyst's terminal: text observed on the network or read from a document is
printed as text, never as terminal controls (`medsentry.controlchars`) or as rich markup (a
"[/bold]" in a host name stopped a listing with a MarkupError). So:

- `printable(text)`: C0 controls but tab and newline, DEL, C1 controls and the bidirectional
  embedding, override and isolate characters become visible escapes (`\\x1b`, `\\u202e`);
- `console(...)`: a rich Console that reads no markup in what it prints and passes everything it
  renders through `printable` (rich's own cursor controls excepted);
- `echo(text)`: `click.echo` of `printable(text)`.

JSON output is left to its encoder: RFC 8259 §7 escapes every C0 control in strings.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console, ConsoleOptions, RenderableType, RenderHook, RenderResult
from rich.segment import Segment

from medsentry.controlchars import UNSAFE, printable

__all__ = ["console", "data_console", "echo", "printable"]


class _Printable:
    """A renderable rendered as the wrapped one, its text passed through `printable`."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for seg in console.render(self.renderable, options):
            if seg.control or not UNSAFE.search(seg.text):
                yield seg
            else:
                yield Segment(printable(seg.text), seg.style)


class _PrintableHook(RenderHook):
    def process_renderables(self, renderables: list[Any]) -> list[Any]:
        return [_Printable(r) for r in renderables]


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (`| head`): the command ends as any other (cli: exit 141), not
        with rich's SystemExit(1), which reads as a failure under `set -o pipefail`."""
        self.quiet = True
        raise BrokenPipeError


def console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A Console for data: no markup is read from it, every control it would print is shown."""
    con = _Console(stderr=stderr, width=width, markup=False, highlight=False)
    con.push_render_hook(_PrintableHook())
    return con


def data_console() -> Console:
    """`console()` on stdout at the terminal's width, or whole rows when piped (`| grep` and
    `> file` see whole values rather than cells cut to 80 columns)."""
    return console(width=None if sys.stdout.isatty() else 1000)


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    click.echo(printable(text), err=err, nl=nl)


def warn_line(out: Console, text: str) -> None:
    """A warning on `out` (a stderr console): one line, never read as markup."""
    out.print(f"medsentry: warning: {text}", markup=False, highlight=False, soft_wrap=True)
