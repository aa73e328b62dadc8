"""Writing events: bulk, idempotent, one transaction per capture file.

Transaction design (why this shape):

- A capture FILE is written in ONE transaction. The `captures` row, every flow and every event
  of that file commit together or not at all. A scan that fails midway (corrupt file, disk full,
  Ctrl-C, killed process) rolls back only the capture being written: captures committed before
  it stay as they were, and no half-written capture is ever visible, so no status column has to
  be trusted to tell "incomplete" rows apart. Rows go out batch by batch as the pipeline emits
  them (`write()` is the pipeline's sink), so memory stays bounded by one batch; only the commit
  waits for the end of the file. One commit per file is also the fastest shape on SQLite (one
  fsync) and on PostgreSQL (one WAL flush).
- A LIVE session never ends by itself, so it commits after every batch
  (`commit_each_batch=True`): its `captures` row says `running` until the session stops cleanly
  and becomes `stopped`. A row still `running` with no process behind it was killed; what it
  committed is consistent, batch by batch.
- Every insert is "insert, ignore conflicts" (`ON CONFLICT DO NOTHING` on SQLite and
  PostgreSQL; a select-then-insert fallback elsewhere): flows are unique on `flow_id`, events on
  `event_key` = BLAKE2b-128 of (capture_id, msgspec JSON of the event, how many identical
  events came before it in the file). Scanning the same file again therefore duplicates
  nothing, while two identical events of one file are both kept; the `captures` row is
  updated (new scan time and counts).
  A flow seen in two captures (one file a slice of the other) keeps the capture that stored it
  first.
- Bulk load (SQLite, a capture file written into an empty table, e.g. the first scan into a new
  database): the table's indexes are dropped at its first rows and built again just before the
  commit, in the same transaction (`CaptureWriter._defer_indexes`). One sorted build per index
  costs a fraction of updating it row by row at random places; the schema after the commit is
  the one before, and a failed scan rolls the drops back with everything else. Tables that
  already hold rows keep their indexes (rebuilding over stored rows would cost more).
- The Python side of a batch is one msgspec call (`encode_lines`) and one BLAKE2b call per
  event: the key of an event's first occurrence doubles as its identity when counting repeats.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from sqlalchemy import Connection, Dialect, Table, bindparam, case, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from medsentry import __version__
from medsentry.errors import InputError, StoreError
from medsentry.events import DecodeWarning, Event, FlowRecord, encode_json
from medsentry.events.base import _json_encoder  # the encoder behind `encode_json`
from medsentry.store.db import (
    SQLITE_DEFAULT_CACHE_KIB,
    Store,
    _first_line,
)
from medsentry.store.schema import (
    DEPTH_FULL,
    STATUS_COMPLETE,
    STATUS_RUNNING,
    STATUS_STOPPED,
    STREAM_FIELDS,
    captures,
    events,
    flows,
)

# Magic numbers of the capture formats (pcap: tcpdump.org/manpages/pcap-savefile.5;
# pcapng: draft-ietf-opsawg-pcapng §4.1, Section Header Block type).
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# Page cache while a capture is written (SQLite: -KiB), allocated as pages are touched. A
# capture whose rows and rebuilt indexes fit (the 400k-packet medical mix: ~100 MB) never spills
# to the WAL: spilled pages are read back by each deferred index build (4 scans of `events`) and
# the index sorter overflows to a temporary file.
SQLITE_CAPTURE_CACHE_KIB = 128 << 10


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """What identifies a capture before it is read."""

    capture_id: str  # sha256 hex of the file's bytes; random for a live session
    source: str
    format: str  # pcap, pcapng, live
    size_bytes: int | None = None
    depth: str = DEPTH_FULL  # DEPTH_FLOWS: read without dissectors (`scan --flows-only`)


def sniff_format(head: bytes) -> str | None:
    """`pcap`, `pcapng` or None from the first four bytes of a file."""
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if head[:4] == _PCAPNG_MAGIC:
        return "pcapng"
    return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex of a file's bytes (the capture id of a file)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_capture_info(path: str | os.PathLike[str]) -> CaptureInfo:
    """Hash a capture file (SHA-256 of its bytes) and sniff its format (pcap, pcapng, unknown).

    Raises `InputError` for a missing or unreadable file.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(4)
        digest = file_sha256(p)
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise InputError("no such file", source=str(path)) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory, not a capture file", source=str(path)) from exc
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    return CaptureInfo(
        capture_id=digest, source=str(path), format=sniff_format(head) or "unknown", size_bytes=size
    )


def live_capture_info(interface: str, depth: str = DEPTH_FULL) -> CaptureInfo:
    """A live session has no content to hash before it ends: its id is random (same width)."""
    token = f"live:{interface}:{time.time_ns()}:{secrets.token_hex(16)}"
    return CaptureInfo(
        capture_id=hashlib.sha256(token.encode()).hexdigest(),
        source=f"live:{interface}",
        format="live",
        depth=depth,
    )


def event_kind(ev: Event) -> str:
    return str(type(ev).__struct_config__.tag)


def event_key(capture_id: str, payload: bytes, occurrence: int = 0) -> str:
    """BLAKE2b-128 of (capture, event JSON, how many identical events came before it)."""
    return _event_key(capture_id.encode() + b"\0", payload, occurrence)


def _event_key(prefix: bytes, payload: bytes, occurrence: int) -> str:
    # one call over the concatenation: the same digest as updating part by part
    return hashlib.blake2b(
        prefix + payload + b"\0" + occurrence.to_bytes(8, "little"), digest_size=16
    ).hexdigest()


_FIRST = b"\0" + (0).to_bytes(8, "little")  # the key suffix of an event's first occurrence


def flow_row(rec: FlowRecord, capture_id: str) -> dict[str, Any]:
    """The `flows` row of a FlowRecord (StreamStats flattened)."""
    row = msgspec.structs.asdict(rec)
    for direction in ("c2s", "s2c"):
        stats = row.pop(f"stream_{direction}")
        for name in STREAM_FIELDS:
            row[f"stream_{direction}_{name}"] = None if stats is None else getattr(stats, name)
    row["capture_id"] = capture_id
    return row


# -- the bulk path: rows as tuples in table column order, no dict per row ----------------------

_FLOW_FIELDS = {name: i for i, name in enumerate(FlowRecord.__struct_fields__)}
_STREAM_NONE = (None,) * len(STREAM_FIELDS)


@functools.cache
def _columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if not (c.primary_key and c.autoincrement is True))


@functools.cache
def _flow_plan() -> tuple[Callable[[tuple], tuple], int, int, Callable[[Any], tuple]]:
    """How a `flows` row is picked from astuple(FlowRecord) + both StreamStats + capture id."""
    n = len(FlowRecord.__struct_fields__)
    k = len(STREAM_FIELDS)
    pos: dict[str, int] = dict(_FLOW_FIELDS)
    for j, direction in enumerate(("c2s", "s2c")):
        for m, name in enumerate(STREAM_FIELDS):
            pos[f"stream_{direction}_{name}"] = n + j * k + m
    pos["capture_id"] = n + 2 * k  # the writer's capture id, not the record's
    from operator import attrgetter, itemgetter

    pick = itemgetter(*(pos[c] for c in _columns(flows)))
    return pick, _FLOW_FIELDS["stream_c2s"], _FLOW_FIELDS["stream_s2c"], attrgetter(*STREAM_FIELDS)


def flow_tuples(recs: list[FlowRecord], capture_id: str) -> list[tuple]:
    """`flows` rows (column order of the table) of FlowRecords."""
    pick, ic, is_, stream = _flow_plan()
    astuple = msgspec.structs.astuple
    tail = (capture_id,)
    out = []
    for rec in recs:
        t = astuple(rec)
        sc, ss = t[ic], t[is_]
        out.append(
            pick(
                t
                + (_STREAM_NONE if sc is None else stream(sc))
                + (_STREAM_NONE if ss is None else stream(ss))
                + tail
            )
        )
    return out


_KINDS: dict[type, str] = {}
_ts_ns = operator.attrgetter("ts_ns")


def event_row(
    ev: Event, capture_id: str, occurrence: Callable[[bytes], int] | None = None
) -> dict[str, Any]:
    """The `events` row of any non-flow event; `occurrence` numbers identical payloads."""
    payload = encode_json(ev)
    return {
        "event_key": event_key(capture_id, payload, occurrence(payload) if occurrence else 0),
        "kind": event_kind(ev),
        "ts_ns": ev.ts_ns,
        "flow_id": getattr(ev, "flow_id", None),
        "capture_id": capture_id,
        "payload": payload.decode(),
    }


class _Occurrences:
    """Keys of the events of one capture file, identical events numbered: two C-STORE-RQs that
    encode to the same JSON (same flow, same timestamp) are two events, yet a rescan must give
    each the same key again. A file's events arrive in the same order on every scan, so
    counting repeats is stable.

    One hash per event: the key of an event's first occurrence (occurrence 0) also identifies
    its payload within the capture, so it is what repeats are counted by; only a repeat hashes
    again, with its number. Memory: one dict slot per distinct event of the file (the key
    string is the row's own)."""

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._seen: dict[str, int] = {}
        # the hash state after the capture's prefix, copied per event: the prefix is hashed
        # once and no payload is copied into a concatenation
        self._hashed_prefix = hashlib.blake2b(prefix, digest_size=16)

    def keys(self, payloads: list[bytes]) -> list[str]:
        prefix = self._prefix
        seen = self._seen
        first = _FIRST
        keys = []
        key = keys.append
        start = self._hashed_prefix.copy
        for payload in payloads:
            h = start()
            h.update(payload)
            h.update(first)
            key(h.hexdigest())
        if len(set(keys)) == len(keys) and seen.keys().isdisjoint(keys):
            seen.update(dict.fromkeys(keys, 1))  # no repeat in this batch (the usual case)
            return keys
        out = []
        for payload, key in zip(payloads, keys, strict=True):
            n = seen.get(key)
            if n is None:
                seen[key] = 1
            else:
                seen[key] = n + 1
                key = _event_key(prefix, payload, n)
            out.append(key)
        return out

    def __call__(self, payload: bytes) -> int:
        """How many identical events came before this one (and count this one)."""
        key = _event_key(self._prefix, payload, 0)
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        return n


class _Sequence:
    """A live session is never rescanned: each event simply gets the next number (no memory)."""

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._n = 0

    def keys(self, payloads: list[bytes]) -> list[str]:
        prefix = self._prefix
        n = self._n
        out = [_event_key(prefix, p, i) for i, p in enumerate(payloads, n + 1)]
        self._n = n + len(payloads)
        return out

    def __call__(self, _payload: bytes) -> int:
        self._n += 1
        return self._n


def _dialect_insert(name: str):
    """The dialect's INSERT, with ON CONFLICT; imported when used (SQLAlchemy's PostgreSQL
    dialect package loads asyncio and asyncpg support: 25 ms of a SQLite user's start-up)."""
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


@functools.cache
def _insert_sql(dialect: Dialect, table: Table, key: str) -> tuple[str, tuple[str, ...] | None]:
    """Compiled "insert, ignore conflicts on `key`" for one dialect: SQL and bind order.

    Rows go to the driver's executemany directly: SQLAlchemy's per-row parameter processing
    cost more than the database itself, and these columns (ints, floats, text) need none.
    """
    cols = [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]
    stmt = _dialect_insert(dialect.name)(table).values({c: bindparam(c) for c in cols})
    compiled = stmt.on_conflict_do_nothing(index_elements=[key]).compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positional else None  # type: ignore[arg-type]
    return str(compiled), order


def insert_tuples_ignoring_conflicts(
    conn: Connection, table: Table, rows: list[tuple], key: str
) -> None:
    """Like `insert_ignoring_conflicts`, rows given as tuples in the table's column order
    (without an autoincrement key): no dict per row on SQLite and PostgreSQL."""
    if not rows:
        return
    cols = _columns(table)
    name = conn.dialect.name
    if name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_insert(conn, table, rows, key, cols)
        return
    if name in ("sqlite", "postgresql"):
        sql, order = _insert_sql(conn.dialect, table, key)
        if order is not None and order != cols:
            from operator import itemgetter

            pick = itemgetter(*(cols.index(c) for c in order))
            rows = [pick(r) for r in rows]
        elif order is None:  # named parameters
            conn.exec_driver_sql(sql, [dict(zip(cols, r, strict=True)) for r in rows])
            return
        conn.exec_driver_sql(sql, rows)
        return
    insert_portable(conn, table, [dict(zip(cols, r, strict=True)) for r in rows], key)


@functools.cache
def _plain_insert_sql(dialect: Dialect, table: Table) -> tuple[str, tuple[str, ...] | None]:
    """Compiled plain INSERT of a table's columns (no autoincrement key): SQL and bind order."""
    stmt = insert(table).values({c: bindparam(c) for c in _columns(table)})
    compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positional else None  # type: ignore[arg-type]
    return str(compiled), order


def insert_tuples(conn: Connection, table: Table, rows: list[tuple]) -> None:
    """Plain bulk INSERT of tuples in the table's column order (a conflict is an error)."""
    if not rows:
        return
    cols = _columns(table)
    sql, order = _plain_insert_sql(conn.dialect, table)
    if order is None:  # named parameters
        conn.exec_driver_sql(sql, [dict(zip(cols, r, strict=True)) for r in rows])
        return
    if order != cols:
        from operator import itemgetter

        pick = itemgetter(*(cols.index(c) for c in order))
        rows = [pick(r) for r in rows]
    conn.exec_driver_sql(sql, rows)


def insert_ignoring_conflicts(
    conn: Connection, table: Table, rows: list[dict[str, Any]], key: str
) -> None:
    """Insert `rows`, skipping any whose `key` column already exists (bulk executemany)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_insert(conn, table, rows, key)
        return
    if conn.dialect.name in ("sqlite", "postgresql"):
        sql, order = _insert_sql(conn.dialect, table, key)
        if order is None:
            conn.exec_driver_sql(sql, rows)
        else:
            conn.exec_driver_sql(sql, [tuple(r[c] for c in order) for r in rows])
        return
    insert_portable(conn, table, rows, key)


def _copy_insert(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]] | list[tuple],
    key: str,
    tuple_cols: tuple[str, ...] | None = None,
) -> None:
    """PostgreSQL: COPY the batch into a temporary staging table, then one INSERT ... SELECT
    ... ON CONFLICT DO NOTHING (about ten times faster than executemany for wide rows).
    `tuple_cols`: the rows are tuples in that column order."""
    q = conn.dialect.identifier_preparer.quote
    cols = list(tuple_cols or _columns(table))
    col_list = ", ".join(q(c) for c in cols)
    stage = q(f"medsentry_stage_{table.name}")
    dbapi_conn = conn.connection.driver_connection
    with dbapi_conn.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS"
            f" SELECT {col_list} FROM {q(table.name)} WITH NO DATA"
        )
        with cur.copy(f"COPY {stage} ({col_list}) FROM STDIN") as copy:
            if tuple_cols is not None:
                for row in rows:
                    copy.write_row(row)
            else:
                for row in rows:
                    copy.write_row([row[c] for c in cols])  # type: ignore[call-overload]
        cur.execute(
            f"INSERT INTO {q(table.name)} ({col_list}) SELECT {col_list} FROM {stage}"
            f" ON CONFLICT ({q(key)}) DO NOTHING"
        )
        cur.execute(f"TRUNCATE {stage}")


def insert_portable(conn: Connection, table: Table, rows: list[dict[str, Any]], key: str) -> None:
    """Fallback for dialects without ON CONFLICT: drop keys stored or repeated, then insert."""
    unique: dict[Any, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row[key], row)
    col = table.c[key]
    keys = list(unique)
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        for (existing,) in conn.execute(select(col).where(col.in_(chunk))):
            unique.pop(existing, None)
    if unique:
        conn.execute(insert(table), list(unique.values()))


def _upsert_capture(conn: Connection, row: dict[str, Any]) -> None:
    """Insert the capture's row, or update it on a rescan. Its depth never drops: what a full
    read stored stays stored when the capture is read again with `--flows-only`."""
    name = conn.dialect.name
    changed = {k: v for k, v in row.items() if k != "capture_id"}
    if name in ("sqlite", "postgresql"):
        stmt = _dialect_insert(name)(captures).values(row)
        changed["depth"] = case(
            (captures.c.depth == DEPTH_FULL, DEPTH_FULL), else_=stmt.excluded.depth
        )
        conn.execute(stmt.on_conflict_do_update(index_elements=["capture_id"], set_=changed))
        return
    found = conn.execute(
        select(captures.c.depth).where(captures.c.capture_id == row["capture_id"])
    ).first()
    if found:
        if found[0] == DEPTH_FULL:
            changed["depth"] = DEPTH_FULL
        conn.execute(
            update(captures).where(captures.c.capture_id == row["capture_id"]).values(changed)
        )
    else:
        conn.execute(insert(captures).values(row))


def _driver_errors(store: Store) -> tuple[type[Exception], ...]:
    """The DB-API driver's own error class (raised by the COPY path, which bypasses SQLAlchemy)."""
    dbapi = store.engine.dialect.loaded_dbapi
    return (dbapi.Error,) if dbapi is not None and hasattr(dbapi, "Error") else ()


@dataclass
class CaptureTotals:
    """What the writer has been given for one capture."""

    flows: int = 0
    events: int = 0
    warnings: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class CaptureWriter:
    """Writes the events of one capture. Use as a context manager; call `finish()` to commit.

        with CaptureWriter(store, file_capture_info(path)) as w:
            stats = pipeline.scan_files([path], sink=w.write)
            w.finish(packets=stats.packets, ...)

    Leaving the block without `finish()` (an exception) rolls the capture back.
    """

    def __init__(self, store: Store, info: CaptureInfo, *, commit_each_batch: bool = False):
        self.store = store
        self.info = info
        self.commit_each_batch = commit_each_batch
        self.totals = CaptureTotals()
        self._conn: Connection | None = None
        self._finished = False
        # SQLite bulk load: the secondary indexes of a table that was empty when this capture
        # began are dropped and built again before the commit (see `_defer_indexes`)
        self._defer = not commit_each_batch
        self._deferred: dict[str, list[str]] = {}  # table -> CREATE INDEX statements
        self._plain: set[str] = set()  # tables whose conflict key has no index until finish()
        prefix = info.capture_id.encode() + b"\0"
        self._occurrence = _Sequence(prefix) if commit_each_batch else _Occurrences(prefix)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> CaptureWriter:
        try:
            self._conn = self.store.engine.connect()
            self._conn.begin()
            if self._conn.dialect.name == "sqlite":
                # random keys (flow ids, event keys) touch pages all over the indexes: a page
                # cache of SQLITE_CAPTURE_CACHE_KIB keeps them in memory until the commit
                self._conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CAPTURE_CACHE_KIB}")
            _upsert_capture(self._conn, self._capture_row(status=STATUS_RUNNING))
            if self.commit_each_batch:
                self._conn.commit()
        except SQLAlchemyError as exc:
            self._close()
            raise self._store_error(exc) from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._conn is not None and not self._finished:
                self._conn.rollback()
                if self.commit_each_batch:
                    # What earlier batches committed stays; the row says the session broke off.
                    self._conn.execute(
                        update(captures)
                        .where(captures.c.capture_id == self.info.capture_id)
                        .values(status="interrupted", **self._count_values())
                    )
                    self._conn.commit()
        except SQLAlchemyError:
            pass  # the original exception is the one to report
        finally:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            if self._conn.dialect.name == "sqlite":
                with contextlib.suppress(Exception):  # back to SQLite's default for the pool
                    self._conn.connection.driver_connection.execute(
                        f"PRAGMA cache_size=-{SQLITE_DEFAULT_CACHE_KIB}"
                    )
            self._conn.close()
            self._conn = None

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Iterable[Event]) -> None:
        """The pipeline's sink: store one batch of events (FlowRecords go to `flows`)."""
        if self._conn is None:
            raise RuntimeError("CaptureWriter.write() outside its `with` block")
        cid = self.info.capture_id
        kinds = _KINDS
        flow_recs: list[FlowRecord] = []
        evs: list[Event] = []
        for ev in batch:
            if type(ev) is FlowRecord:
                flow_recs.append(ev)  # type: ignore[arg-type]
            else:
                evs.append(ev)
        event_rows: list[tuple] = []
        totals = self.totals
        if evs:
            # One encoder call for the batch: JSON never holds a raw newline, so the lines are
            # the events' payloads, byte for byte what `encode_json` gives one by one.
            blob = _json_encoder.encode_lines(evs)
            payloads = blob.split(b"\n")[:-1]
            keys = self._occurrence.keys(payloads)
            classes = list(map(type, evs))
            counts = totals.kinds
            for cls, n in Counter(classes).items():
                kind = kinds.get(cls)
                if kind is None:
                    kind = kinds[cls] = str(cls.__struct_config__.tag)  # type: ignore[attr-defined]
                counts[kind] = counts.get(kind, 0) + n
                if cls is DecodeWarning:
                    totals.warnings += n
            # column order of `events`: event_key, kind, ts_ns, flow_id, capture_id, payload
            event_rows = list(
                zip(
                    keys,
                    map(kinds.__getitem__, classes),
                    map(_ts_ns, evs),
                    map(getattr, evs, repeat("flow_id"), repeat(None)),
                    repeat(cid),
                    [p.decode() for p in payloads],
                    strict=False,  # repeat(cid) is endless
                )
            )
        flow_rows = flow_tuples(flow_recs, cid)
        try:
            if self._defer:
                if flow_rows:
                    self._defer_indexes(flows)
                if event_rows:
                    self._defer_indexes(events, "event_key")
            insert_tuples_ignoring_conflicts(self._conn, flows, flow_rows, "flow_id")
            if "events" in self._plain:
                insert_tuples(self._conn, events, event_rows)
            else:
                insert_tuples_ignoring_conflicts(self._conn, events, event_rows, "event_key")
            if self.commit_each_batch:
                self._conn.execute(
                    update(captures)
                    .where(captures.c.capture_id == cid)
                    .values(**self._count_values(len(flow_rows)))
                )
                self._conn.commit()
        except (SQLAlchemyError, *_driver_errors(self.store)) as exc:
            raise self._store_error(exc) from exc
        totals.flows += len(flow_rows)
        totals.events += len(event_rows)

    def finish(
        self,
        *,
        packets: int = 0,
        bytes: int = 0,
        first_ns: int | None = None,
        last_ns: int | None = None,
        link_types: Sequence[int] = (),
        status: str | None = None,
    ) -> None:
        """Record the capture's totals and commit."""
        if self._conn is None:
            raise RuntimeError("CaptureWriter.finish() outside its `with` block")
        if status is None:
            status = STATUS_STOPPED if self.commit_each_batch else STATUS_COMPLETE
        row = self._capture_row(status=status)
        row.update(
            packets=packets,
            bytes=bytes,
            first_ns=first_ns,
            last_ns=last_ns,
            link_types=",".join(str(t) for t in sorted(set(link_types))) or None,
        )
        try:
            for ddl in self._deferred.values():
                for sql in ddl:
                    self._conn.exec_driver_sql(sql)
            _upsert_capture(self._conn, row)
            self._conn.commit()
        except SQLAlchemyError as exc:
            raise self._store_error(exc) from exc
        self._finished = True

    # -- helpers ---------------------------------------------------------------------------

    def _defer_indexes(self, table: Table, own_key: str | None = None) -> None:
        """SQLite, first rows of `table` in this capture: when the table is empty, drop its
        indexes now and build them in `finish()`, inside the same transaction.

        Building an index from the finished table (one sort, pages filled in order) costs a
        fraction of updating it row by row at random places, and makes a denser index. The
        schema is the same before and after the commit; a capture that fails rolls back the
        drops with everything else, and readers (WAL) keep their snapshot, indexes included.
        Only an empty table qualifies: rebuilding an index over rows already stored would cost
        more than it saves.

        Unique indexes stay (`ON CONFLICT` needs them), except the one on `own_key`: a column
        this writer never repeats within a capture (event keys are distinct by construction,
        see `_Occurrences`), so over an empty table nothing can conflict and its rows go in
        with a plain INSERT until the index is back.
        """
        conn = self._conn
        name = table.name
        if conn is None or name in self._deferred:
            return
        self._deferred[name] = []
        if conn.dialect.name != "sqlite":
            return
        q = conn.dialect.identifier_preparer.quote
        if conn.exec_driver_sql(f"SELECT 1 FROM {q(name)} LIMIT 1").first() is not None:
            return
        found = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL ORDER BY name",
            (name,),
        ).all()
        ddl = []
        for index, sql in found:
            if sql.lstrip()[:13].upper() == "CREATE UNIQUE":
                cols = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({q(index)})")]
                if own_key is None or cols != [own_key]:
                    continue
                self._plain.add(name)
            conn.exec_driver_sql(f"DROP INDEX {q(index)}")
            ddl.append(sql)
        self._deferred[name] = ddl

    def _count_values(self, more_flows: int = 0) -> dict[str, int]:
        return {"flows": self.totals.flows + more_flows, "warnings": self.totals.warnings}

    def _capture_row(self, *, status: str) -> dict[str, Any]:
        info = self.info
        return {
            "capture_id": info.capture_id,
            "source": info.source,
            "size_bytes": info.size_bytes,
            "format": info.format,
            "link_types": None,
            "packets": 0,
            "bytes": 0,
            "flows": self.totals.flows,
            "warnings": self.totals.warnings,
            "first_ns": None,
            "last_ns": None,
            "scanned_at": datetime.now(UTC),
            "status": status,
            "medsentry_version": __version__,
            "depth": info.depth,
        }

    def _store_error(self, exc: Exception) -> StoreError:
        return StoreError(
            f"cannot write capture {self.info.source} to {self.store.url}: {_first_line(exc)}"
        )
