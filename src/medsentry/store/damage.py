"""A damaged database, said as one clear error instead of a traceback.

Disks fail, copies end early, another program writes into the file: the database engine then
reports corruption (SQLite SQLITE_CORRUPT / SQLITE_NOTADB, result codes §1; PostgreSQL class XX,
data_corrupted / index_corrupted, Appendix A), a stored text is not UTF-8, or a stored JSON
value no longer decodes. Each becomes a `StoreError` naming what is damaged, never the stored
value itself (it may be anything), with what to do about it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from medsentry.errors import StoreError, raised_from

SQLITE_CORRUPT = 11  # "The database disk image is malformed" (sqlite.org/rescode.html)
SQLITE_NOTADB = 26  # "File opened that is not a database file"
_PG_CORRUPTION = ("XX001", "XX002")  # data_corrupted, index_corrupted
# Migrations bring every table to the schema `alembic_version` names (tests run them against
# both engines); a table or column missing afterwards was damaged or altered from outside.
_SCHEMA_MISMATCH = ("no such column: ", "no such table: ")
_PG_SCHEMA_MISMATCH = ("42703", "42P01")  # undefined_column, undefined_table

ADVICE = (
    "restore the database from a backup (for SQLite, `sqlite3 FILE .recover` saves what is"
    " still readable into a new file to use with --db)"
)


class DamagedStoreError(StoreError):
    """The database holds bytes its engine or medsentry can no longer read."""


def damaged(what: str) -> DamagedStoreError:
    return DamagedStoreError(f"the database is damaged: {what}; {ADVICE}")


def decode_stored(decoder: Any, raw: Any, table: str, column: str, key: object = None) -> Any:
    """`decoder.decode(raw)` for a value read from `table.column` (of the row `key`, when
    given); a DamagedStoreError naming them when it no longer decodes."""
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        problem = f"does not decode ({_first_line(exc)})"
    except TypeError:  # not text at all: a number or NULL where JSON was stored
        problem = f"holds {'NULL' if raw is None else type(raw).__name__}, not JSON"
    row = "" if key is None else f" of {key}"
    raise damaged(f"{table}.{column}{row} {problem}") from None


def damage_of(exc: BaseException) -> DamagedStoreError | None:
    """The damage `exc` (or an exception it was raised from) reports, or None when it is
    something else (a bug, a lost connection, a full disk)."""
    for e in raised_from(exc):
        if isinstance(e, DamagedStoreError):
            return e
        found = _damage_in(e)
        if found is not None:
            return found
    return None


def _damage_in(e: BaseException) -> DamagedStoreError | None:
    if isinstance(e, sqlite3.DatabaseError):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB):
            return damaged(f"SQLite says: {_first_line(e)}")
        text = str(e)
        if text.startswith(_SCHEMA_MISMATCH):
            return damaged(f"its schema is not the one its version says ({_first_line(e)})")
        if text.startswith("Could not decode to UTF-8 column"):
            # the message goes on with the stored text itself: not repeated
            column = text.split("'", 2)[1] if text.count("'") >= 2 else "?"
            return damaged(f"a stored text in column {column!r} is not UTF-8")
        return None
    sqlstate = getattr(e, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _PG_CORRUPTION:
        return damaged(f"PostgreSQL says ({sqlstate}): {_first_line(e)}")
    if isinstance(sqlstate, str) and sqlstate in _PG_SCHEMA_MISMATCH:
        return damaged(f"its schema is not the one its version says ({_first_line(e)})")
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


# -- after an unexpected failure: is it the data? ----------------------------------------------

_OPENED: list[str] = []  # SQLite URLs this process opened (store.db.open_store)
_DATETIME_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*"


def _not_address(c: str, nullable: bool = False) -> str:
    """SQL true when text column `c` cannot be an IPv4 or IPv6 address (RFC 4291 §2.2 text)."""
    v4 = "[0-9]*.[0-9]*.[0-9]*.[0-9]*"
    bad = (
        f"(NOT ({c} GLOB '*[.:]*') OR {c} GLOB '*[^0-9a-fA-F.:%]*'"
        f" OR (NOT ({c} GLOB '*:*') AND NOT ({c} GLOB '{v4}' AND {c} GLOB '*[0-9]')))"
    )
    return f"({c} IS NOT NULL AND {bad})" if nullable else bad


# What the storage class alone cannot tell: addresses that are no address, and a device row
# whose id is not the device its stored state describes (writes key both by the same id).
_SEMANTIC: dict[str, list[tuple[str, str]]] = {
    "flows": [("client", _not_address("client")), ("server", _not_address("server"))],
    "devices": [
        ("ip", _not_address("ip", nullable=True)),
        (
            "device_id",
            "(typeof(state) = 'text' AND json_valid(state)"
            " AND json_extract(state, '$.device_id') IS NOT device_id)",
        ),
    ],
    "device_addresses": [("ip", _not_address("ip"))],
}
_SEMANTIC_WHAT = {
    ("flows", "client"): "an IP address",
    ("flows", "server"): "an IP address",
    ("devices", "ip"): "an IP address",
    ("device_addresses", "ip"): "an IP address",
    ("devices", "device_id"): "the id its stored state names",
}


# Columns that hold one of a closed set (readers index tables by them).
_CLOSED = {
    ("alerts", "severity"): ("medsentry.detect.base", "SEVERITIES"),
    ("alerts", "status"): ("medsentry.detect.base", "STATUSES"),
    ("findings", "severity"): ("medsentry.controls.knowledge", "SEVERITIES"),
    ("devices", "criticality"): ("medsentry.inventory.model", "CRITICALITIES"),
}


def _closed_values(table: str, column: str) -> tuple[str, ...]:
    import importlib

    module, name = _CLOSED[(table, column)]
    return tuple(getattr(importlib.import_module(module), name))


def opened(url: str) -> None:
    if url not in _OPENED:
        _OPENED.append(url)


def forget_opened() -> None:
    """A new command begins (one process may run several: tests, the shell's CliRunner)."""
    _OPENED.clear()


def diagnose_opened(exc: BaseException | None = None) -> DamagedStoreError | None:
    """After an error nothing else explains: the first value of a wrong kind in an SQLite
    database this process opened, as a DamagedStoreError; None when there is none.

    SQLite keeps whatever a damaged record or another program puts in a column (datatypes
    §3, type affinity): text in an integer column, NULL in a NOT NULL one, a date that is no
    date. Readers then fail anywhere. One scan per table, only on this failure path. When
    `exc` is a constraint failure (writes here delete before they insert), the named table's
    indexes are also checked against its rows (PRAGMA integrity_check(TABLE)).
    """
    table = _constraint_table(exc) if exc is not None else None
    for url in _OPENED:
        try:
            found = _diagnose(url) or (_integrity(url, table) if table else None)
        except Exception:  # the diagnosis must never hide the original error
            continue
        if found is not None:
            return found
    return None


def _constraint_table(exc: BaseException) -> str | None:
    """The table an SQLite UNIQUE / NOT NULL / PRIMARY KEY failure names ("... failed: t.c")."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        orig = getattr(e, "orig", None)
        if isinstance(orig, sqlite3.IntegrityError):
            e = orig
        if isinstance(e, sqlite3.IntegrityError):
            _, _, named = str(e).partition(" constraint failed: ")
            table = named.split(".", 1)[0].strip()
            return table if table.isidentifier() else None
        e = e.__cause__ or e.__context__
    return None


def _read_only(url: str) -> sqlite3.Connection | None:
    """The SQLite file behind `url`, opened read-only (never created); None when there is none."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or not Path(database).is_file():
        return None
    return sqlite3.connect(f"{Path(database).resolve().as_uri()}?mode=ro", uri=True)


def _integrity(url: str, table: str) -> DamagedStoreError | None:
    conn = _read_only(url)
    if conn is None:
        return None
    try:
        rows = conn.execute(f'PRAGMA integrity_check("{table}")').fetchall()
    finally:
        conn.close()
    if rows and rows[0][0] != "ok":
        return damaged(f"table {table} and its indexes disagree (SQLite integrity check)")
    return None


def _diagnose(url: str) -> DamagedStoreError | None:
    from sqlalchemy import DateTime

    from medsentry.store.schema import metadata

    conn = _read_only(url)
    if conn is None:
        return None
    what: dict[tuple[str, str], str] = dict(_SEMANTIC_WHAT)  # (table, column) -> "is not ..."
    extra: dict[str, list[tuple[str, str]]] = {t: list(c) for t, c in _SEMANTIC.items()}
    for t, c in _CLOSED:
        values = _closed_values(t, c)
        listed = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
        extra.setdefault(t, []).append((c, f'"{c}" NOT IN ({listed})'))
        what[(t, c)] = "one of " + ", ".join(values)
    try:
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        for table in metadata.sorted_tables:
            if table.name not in present:
                continue
            checks: list[tuple[str, str]] = []  # (column, SQL true when its value is wrong)
            for col in table.columns:
                storage = _storage(col)
                if storage is None:
                    continue
                kinds, described = storage
                what.setdefault((table.name, col.name), described)
                q = f'"{col.name}"'
                wrong = f"typeof({q}) NOT IN ({', '.join(repr(k) for k in kinds)})"
                if isinstance(col.type, DateTime):  # as SQLAlchemy writes it, and a real date
                    wrong += (
                        f" OR (typeof({q}) = 'text' AND NOT ({q} GLOB '{_DATETIME_GLOB}'"
                        f" AND julianday({q}) IS NOT NULL))"
                    )
                checks.append((col.name, wrong))
            checks += extra.get(table.name, [])
            if not checks:
                continue
            cases = " ".join(f"WHEN {w} THEN '{c}'" for c, w in checks)
            where = " OR ".join(f"({w})" for _, w in checks)
            row = conn.execute(
                f'SELECT rowid, CASE {cases} END FROM "{table.name}" WHERE {where} LIMIT 1'
            ).fetchone()
            if row is not None:
                return damaged(
                    f"{table.name}.{row[1]} of row {row[0]} holds a value that is not"
                    f" {what[(table.name, row[1])]}"
                )
    finally:
        conn.close()
    return None


def _storage(column: Any) -> tuple[list[str], str] | None:
    """The SQLite storage classes (datatypes §2) a column's values may have, and what to call
    them; None for a type not checked."""
    from sqlalchemy import Boolean, DateTime, Float, Integer, LargeBinary, String

    t = column.type
    if isinstance(t, Integer | Boolean):
        kinds, what = ["integer"], "an integer"
    elif isinstance(t, Float):
        kinds, what = ["real", "integer"], "a number"
    elif isinstance(t, LargeBinary):
        kinds, what = ["blob"], "bytes"
    elif isinstance(t, DateTime):
        kinds, what = ["text"], "a date and time"
    elif isinstance(t, String):
        kinds, what = ["text"], "text"
    else:
        return None
    if column.nullable:
        return [*kinds, "null"], what
    return kinds, f"{what} (it may not be NULL)"
