"""Failures of the machine, not of medsentry: a full disk, a read-only or locked database, a
lost server. Each is the user's to fix, so each is one line with exit code 2, never "internal
error (a bug)".

SQLite result codes: https://www.sqlite.org/rescode.html (primary code = low byte);
PostgreSQL SQLSTATE: Appendix A, "PostgreSQL Error Codes"; errno: POSIX <errno.h>.
"""

from __future__ import annotations

import errno
import sqlite3

from medsentry.errors import StoreError, raised_from

# SQLite primary result codes (rescode.html §4)
_SQLITE = {
    3: "permission denied (SQLITE_PERM)",
    5: "the database is locked by another process (SQLITE_BUSY): run the command again"
    " when that one has finished",
    6: "a table is locked (SQLITE_LOCKED): run the command again",
    8: "the database is read-only (SQLITE_READONLY): check the file's and its directory's"
    " permissions",
    10: "a disk I/O error (SQLITE_IOERR)",
    13: "the database or its disk is full (SQLITE_FULL): free space and run the command again",
    14: "the database file cannot be opened (SQLITE_CANTOPEN)",
}
# PostgreSQL SQLSTATE classes and codes (Appendix A)
_PG_CLASSES = {
    "08": "the connection to the database server failed",
    "53": "the database server ran out of resources (disk, memory or connections)",
    "57": "the database server stopped the command (shutdown or cancel)",
}
_PG_CODES = {
    "25006": "the database connection is read-only",
    "42501": "the database user lacks the privilege",
    "40P01": "a deadlock with another session: run the command again",
    "55P03": "a lock held by another session: run the command again",
}
_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_ERRNO_OF_A_PATH = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}  # a file the user named

_KEPT = "what was stored before is intact"


def environment_of(exc: BaseException) -> StoreError | None:
    """The machine failure `exc` (or an exception it was raised from) reports, else None."""
    return next((f for f in map(_failure_in, raised_from(exc)) if f is not None), None)


def _failure_in(e: BaseException) -> StoreError | None:
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        what = _SQLITE.get(code & 0xFF) if isinstance(code, int) else None
        return StoreError(f"cannot write the database: {what}; {_KEPT}") if what else None
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        what = _PG_CODES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
        if what:
            first = (str(e).splitlines() or [""])[0][:160]
            return StoreError(f"database: {what} ({sqlstate}: {first}); {_KEPT}")
        return None
    if isinstance(e, OSError) and (
        e.errno in _ERRNO or (e.errno in _ERRNO_OF_A_PATH and e.filename)
    ):
        where = f"{e.filename}: " if e.filename else ""
        return StoreError(f"{where}{e.strerror or e}; {_KEPT}")
    return None
