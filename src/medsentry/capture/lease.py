"""Read leases on mapped capture files (Linux fcntl(2) F_SETLEASE).

A file mapped into memory must not shrink under the map: a page past the new end faults with
SIGBUS, which kills the process with no message. While a process holds a read lease, another
process that opens the file for writing or truncates it is made to wait (up to
/proc/sys/fs/lease-break-time seconds) and the holder is sent SIGIO; the reader then stops at
its next window, says the file changed, and lets go. A lease cannot be had for a file that is
open for writing elsewhere (a capture still being written), on a filesystem without leases,
by a user who neither owns the file nor has CAP_LEASE, or off the main thread (Python runs
signal handlers there only): the reader then reads the file instead of mapping it.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import threading
from typing import Any

_F_SETLEASE = getattr(fcntl, "F_SETLEASE", None)
_F_GETLEASE = getattr(fcntl, "F_GETLEASE", None)
_SIGIO = getattr(signal, "SIGIO", None)

_held: set[ReadLease] = set()
_previous: Any = None  # the SIGIO handler before the first lease


def _on_sigio(signum: int, frame: Any) -> None:
    """SIGIO: mark every lease the kernel is breaking (F_GETLEASE gives the target, F_UNLCK)."""
    for lease in list(_held):
        lease.check()
    if callable(_previous):
        _previous(signum, frame)


class ReadLease:
    """A read lease on an open file descriptor; `broken` once another process wants it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        self.held = False

    def acquire(self) -> bool:
        """Take the lease; False when it cannot be had (see the module's docstring)."""
        global _previous
        if _F_SETLEASE is None or _SIGIO is None:
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        if not _held:
            _previous = signal.signal(_SIGIO, _on_sigio)
            if _previous is None:  # a handler not set from Python: the default, then
                _previous = signal.SIG_DFL
        try:
            fcntl.fcntl(self.fd, _F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # EAGAIN: open for writing elsewhere; EINVAL, EACCES, ENOLCK
            if not _held:
                signal.signal(_SIGIO, _previous)
            return False
        self.held = True
        _held.add(self)
        return True

    def check(self) -> None:
        if not self.held or self.broken:
            return
        try:
            self.broken = fcntl.fcntl(self.fd, _F_GETLEASE) != fcntl.F_RDLCK
        except OSError:
            self.broken = True

    def release(self) -> None:
        """Let go: a process waiting to write the file goes on."""
        if not self.held:
            return
        self.held = False
        _held.discard(self)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, _F_SETLEASE, fcntl.F_UNLCK)
        if not _held and threading.current_thread() is threading.main_thread():
            signal.signal(_SIGIO, _previous)
