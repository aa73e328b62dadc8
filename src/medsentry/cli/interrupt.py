"""Ctrl-C that Python lost on the way: remembered, and raised again at the next checkpoint.

CPython cannot raise KeyboardInterrupt everywhere: one raised inside a weakref or ctypes
callback (the import system's module locks, numba loading its cached kernels through
llvmlite) is printed as "Exception ignored" and dropped, and one raised inside a class's
`__set_name__` comes back wrapped in RuntimeError. A command that runs on then finishes as if
no one had pressed Ctrl-C. The handler here also records the request, so a long command's
loop (`check()` in scan's progress callback) stops at its next step, and the CLI reads a
wrapped interrupt as an interrupt (exit 130), not as an internal error.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

_requested = False


def _on_sigint(signum: int, frame: Any) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT here (main thread only; left alone where SIGINT is ignored)."""
    global _requested
    _requested = False
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed, even where it was lost."""
    if _requested:
        raise KeyboardInterrupt


def requested() -> bool:
    return _requested
