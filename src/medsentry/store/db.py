"""Opening the database: URL resolution, SQLite settings, automatic migration.

`open_store()` resolves the URL (argument, then `MEDSENTRY_DB`, then a SQLite file in the data
directory), creates the engine and upgrades the schema to the newest Alembic revision shipped in
`medsentry/store/migrations/` (no alembic.ini needed). Every failure a user can fix (bad URL,
server down, unwritable directory, a database made by a newer medsentry) is a `StoreError`:
one line, exit code 2.

SQLite runs in WAL mode (readers never block the writer; a crash leaves committed data intact),
with foreign keys on and a busy timeout so a `flows` listing and a running `monitor` can share
the file. A new SQLite file gets 16 KiB pages (rows of the event log fit without overflow
pages).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from medsentry.errors import StoreError
from medsentry.paths import default_db_url

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ENV_DB = "MEDSENTRY_DB"
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_PAGE_SIZE = 16384  # bytes, for databases created by medsentry (SQLite's default: 4096)
SQLITE_WRITE_CACHE_KIB = 64 << 10  # page cache while a big write runs (SQLite: -KiB)
SQLITE_DEFAULT_CACHE_KIB = 2000  # SQLite's own default, restored for the pool


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else $MEDSENTRY_DB, else SQLite in the data directory."""
    if url:
        return url
    env = os.environ.get(ENV_DB)
    if env:
        return env
    try:
        return default_db_url()
    except OSError as exc:
        where = os.environ.get("MEDSENTRY_HOME") or "the user data directory"
        raise StoreError(
            f"cannot create data directory {where}: {exc.strerror or exc}"
            " (set MEDSENTRY_HOME or --db)"
        ) from exc


def in_memory(url: str) -> bool:
    """SQLite without a file: `sqlite://`, `sqlite:///:memory:`, `file::memory:` URIs."""
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):  # malformed: open_store says so in its own words
        return False
    if not u.drivername.startswith("sqlite"):
        return False
    db = u.database or ""
    return (
        db in ("", ":memory:") or db.startswith("file::memory:") or u.query.get("mode") == "memory"
    )


def redact(url: str | URL) -> str:
    """The URL as it may be printed: password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def _nul_safe_text(dbapi_conn, _record) -> None:
    """PostgreSQL text cannot hold NUL (U+0000; PostgreSQL docs §8.3 "Character Types"), which a
    CSAF title, an SBOM component name, a CMMS field or an HL7 field may carry: psycopg refuses
    the whole statement. Strings are sent with each NUL as U+FFFD (the replacement character,
    Unicode §23.8), as every other value that cannot be represented is. SQLite keeps NUL."""
    from medsentry.store.pg_text import register_nul_safe_text

    register_nul_safe_text(dbapi_conn)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    try:
        _set_pragmas(dbapi_conn.cursor())
    except UnicodeDecodeError:  # SQLite's error text quotes a damaged schema (not UTF-8)
        from medsentry.store.damage import damaged

        raise damaged(
            "its schema is not readable (SQLite's message about it is not UTF-8)"
        ) from None


def _set_pragmas(cur) -> None:
    # Takes effect only while the file is new (before the switch to WAL; a no-op afterwards):
    # event rows (msgspec JSON, often near 1 KiB) then fit in a page instead of spilling into
    # overflow pages, and a capture's bulk write touches fewer, fuller pages.
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal" and _ours_or_empty(cur):
        # the switch is written into the file's header: never into somebody else's database
        # (`migrate` then refuses it, and the file is left byte for byte as it was)
        cur.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL never corrupts: a process crash loses nothing committed, a power cut at
    # most the last transactions (each one whole capture, so a rescan restores it).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _ours_or_empty(cur) -> bool:
    """No table yet, or medsentry's revision table among them."""
    names = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return not names or "alembic_version" in names


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def create_store_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018  (a port that is no number raises here, not at connect)
    except (ArgumentError, ValueError) as exc:
        shown = f" {url!r}" if "@" not in url else ""  # may hold a password: not echoed
        raise StoreError(
            f"invalid database URL{shown}: expected e.g. sqlite:///file.db or"
            " postgresql://user@host/db"
        ) from exc
    if parsed.drivername == "postgresql":
        # The bare scheme means psycopg2 to SQLAlchemy; medsentry ships psycopg (3).
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open database {redact(parsed)}: {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise StoreError(f"cannot open database {redact(parsed)}: {parent} is not writable")
    elif parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"unsupported database URL {redact(parsed)}: {_first_line(exc)}"
            " (use sqlite:///... or postgresql+psycopg://...)"
        ) from exc
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {redact(parsed)}: {_first_line(exc)}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        event.listen(engine, "connect", _nul_safe_text)
    return engine


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


_REVISION = re.compile(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision(?::[^=]*)?=\s*(None|[\"'][^\"']+[\"'])\s*$", re.M)


@functools.cache  # the scripts ship with the package: read once per process
def _head_from_files() -> str | None:
    """The head revision read from the migration scripts' `revision` and `down_revision` lines,
    or None when they are not one plain chain (alembic then reads them itself)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        if down[0] != "None":
            parents.add(down[0].strip("\"'"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _is_current(engine: Engine) -> bool:
    """The database is at the scripts' head, checked without importing alembic (~0.3 s of
    start-up): one `alembic_version` row equal to the head. Anything else is alembic's to judge."""
    head = _head_from_files()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    except SQLAlchemyError:  # a new database: no version table yet
        return False
    return len(rows) == 1 and rows[0][0] == head


# The table alembic keeps its revision in, as alembic creates it (alembic/runtime/migration.py)
_VERSION_TABLE = (
    "CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n"
    "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)"
)


def _create_new_sqlite(engine: Engine) -> bool:
    """A new, empty SQLite file gets the schema straight from `metadata` and is stamped at
    head, in one transaction, without importing alembic (alembic's cookbook, "Building an Up to
    Date Database from Scratch"); `test_store_migrations` checks that the two schemas agree.
    False (nothing done) for anything but an empty SQLite database."""
    if engine.dialect.name != "sqlite":
        return False
    head = _head_from_files()
    if head is None:
        return False
    from medsentry.store.schema import metadata

    with engine.connect() as conn:
        # BEGIN IMMEDIATE takes the write lock first: a second process opening the same new
        # file waits, then finds the tables and leaves them be (SQLite DDL is transactional)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
            conn.rollback()
            return False
        metadata.create_all(conn)
        conn.exec_driver_sql(_VERSION_TABLE)
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES (?)", (head,))
        conn.commit()
    log.info("new database %s: schema created at revision %s", redact(engine.url), head)
    return True


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head (a no-op when it is current)."""
    if _is_current(engine) or _create_new_sqlite(engine):
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        if current is None:  # no revision: an empty database, or somebody else's
            from sqlalchemy import inspect

            theirs = sorted(t for t in inspect(conn).get_table_names() if t != "alembic_version")
            if theirs:
                shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
                raise StoreError(
                    f"database {redact(engine.url)} is not a medsentry database: it holds"
                    f" tables ({shown}) and no medsentry schema revision; nothing was changed"
                    " (give medsentry a new file or an empty database)"
                )
            conn.rollback()
        else:
            try:  # exactly one of ours: alembic also takes a unique prefix, and "" asserts
                known = script.get_revision(current)
            except (CommandError, AssertionError):
                known = None
            if known is None or known.revision != current:
                raise StoreError(
                    f"database {redact(engine.url)} has schema revision {str(current)[:40]!r},"
                    " unknown to this medsentry (made by a newer version, or damaged)"
                )
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # SQLite batch migrations rebuild tables (copy, drop, rename); with foreign keys on,
            # dropping `captures` would cascade into `flows` and `events`. Off, then checked.
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
        log.info("database %s: schema upgraded from %s to %s", redact(engine.url), current, head)
        if sqlite:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
            if broken:
                raise StoreError(
                    f"database {redact(engine.url)}: migration left {len(broken)} rows with"
                    " dangling references"
                )


_PG_WRITING_LOCK = 0x6D656477  # "medw"; the migration lock is "meds"


@dataclass
class Store:
    """An open, migrated database."""

    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return redact(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction that reads what it then writes (read, merge, write back), one at a time
        per database: a second process doing the same waits instead of inserting the same rows
        behind the first one's back. SQLite: the write lock first (BEGIN IMMEDIATE,
        sqlite.org/lang_transaction.html; the busy timeout waits). PostgreSQL: a transaction
        advisory lock (functions-admin.html#FUNCTIONS-ADVISORY-LOCKS), released at commit."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITING_LOCK})
                yield conn
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            # a merge rewrites rows all over the tables and their indexes: a page cache of
            # SQLITE_WRITE_CACHE_KIB keeps them in memory until the commit (sqlite.org/pragma
            # .html#pragma_cache_size); a third of the inventory write at 10,000 devices
            conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_WRITE_CACHE_KIB}")
            try:
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            finally:  # back to SQLite's default for the pool
                with contextlib.suppress(SQLAlchemyError):
                    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_DEFAULT_CACHE_KIB}")
                    conn.commit()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_store(url: str | None = None, *, upgrade: bool = True) -> Store:
    """Open (creating and migrating when needed) the database at `url`."""
    engine = create_store_engine(resolve_url(url))
    try:
        if upgrade:
            migrate(engine)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {redact(engine.url)}: {_first_line(exc)}") from exc
    except StoreError:
        engine.dispose()
        raise
    if engine.dialect.name == "sqlite":  # to look at should a command fail unexpectedly
        from medsentry.store.damage import opened

        opened(engine.url.render_as_string(hide_password=False))
    return Store(engine)
