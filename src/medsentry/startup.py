"""The cyclic garbage collector while the `medsentry` command starts and ends.

Loading modules and knowledge makes objects that live as long as the process (numba's
registries, SQLAlchemy's constructs, parsed data files), and every full collection walks all of
them again: start-up triggers several, a fifth of a one-packet scan's CPU time (measured with
`gc.callbacks`). In the command (`entry.run` calls `enable()`), a `loading()` block runs without
collections and ends with `gc.freeze()`, which moves what it loaded out of the collector's
sight: later collections walk only what the command makes after it. At exit the same freeze
comes last, after every other exit handler: the interpreter's final collections would otherwise
walk everything once more, only to find what the process is about to drop with its memory.

Anywhere else (a test session, a program using medsentry as a library) `loading()` does
nothing: a freeze there would keep whatever garbage its caller had not collected yet.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

_enabled = False


def enable() -> None:
    """This process is one `medsentry` command: `loading()` blocks pause and freeze, and the
    exit freezes. Called first thing, so the exit's freeze runs after every other handler."""
    global _enabled
    if not _enabled:
        _enabled = True
        atexit.register(gc.freeze)  # exit handlers run last-registered first


@contextmanager
def loading() -> Iterator[None]:
    """A block that loads what the process keeps: no collection during it, frozen after it.
    Nested blocks are one block; outside the command, a block changes nothing."""
    if not _enabled or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
