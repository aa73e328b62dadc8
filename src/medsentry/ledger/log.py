"""The append-only ledger: entries, their offsets, and the Merkle tree's stored hashes on disk.

Files in the ledger directory (see docs/ledger.md):

- `entries.bin`     framed records (records.py), each the RFC 8785 JSON of one entry
- `index.bin`       u64 big-endian byte offset of every entry in entries.bin
- `hashes.bin`      every complete-subtree hash, 32 bytes each, in tlog stored-hash order
- `checkpoints.bin` framed records, each a signed checkpoint note
- `quarantine/`     torn tails cut off on recovery, kept byte for byte
- `lock`            fcntl lock: one writer batch at a time across processes

An append is acknowledged (returns) only after entries.bin is fdatasync'ed and then index.bin and
hashes.bin are. index.bin and hashes.bin are derived data: on open they are completed from
entries.bin, never the reverse, so a crash can leave them short but never ahead. A record that is
torn at the end of entries.bin (never acknowledged) is moved to quarantine/ and reported, and a
`ledger.torn_tail` entry records the fact in the log itself.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

from medsentry import paths
from medsentry.errors import InputError, MedsentryError
from medsentry.ledger import merkle, records
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.keys import LOG_KEY_FILE, LedgerKeys, load_keys
from medsentry.ledger.note import Checkpoint, SignedCheckpoint, make_checkpoint, open_checkpoint

ENTRIES = "entries.bin"
INDEX = "index.bin"
HASHES = "hashes.bin"
CHECKPOINTS = "checkpoints.bin"
LOCK = "lock"
QUARANTINE = "quarantine"

_OFFSET = struct.Struct(">Q")
# the last offset at which a whole record (header and largest payload) can still be read
_LAST_READABLE = (1 << 63) - 1 - records.HEADER_SIZE - records.MAX_PAYLOAD
_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+$")
# A guard against obvious mistakes, not a PHI detector: callers pass only non-PHI fields.
_PHI_KEYS = frozenset(
    {"patientname", "patientid", "patientbirthdate", "birthdate", "dob", "mrn", "ssn", "patient"}
)


class LedgerError(MedsentryError):
    """The ledger cannot be opened or written: damaged files, impossible state."""


class _SeqOnly(msgspec.Struct):
    seq: int


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    root: bytes
    path: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    old: int
    new: int
    old_root: bytes
    new_root: bytes
    path: list[bytes]


def utc_now() -> str:
    """RFC 3339 UTC time with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seq_of(payload: bytes) -> int:
    try:
        return msgspec.json.decode(payload, type=_SeqOnly).seq
    except (msgspec.DecodeError, UnicodeDecodeError):
        return -1


def default_directory() -> Path:
    return paths.data_dir() / "ledger"


@lru_cache(maxsize=4096)
def _valid_kind(kind: str) -> bool:
    return bool(_KIND.match(kind))


@lru_cache(maxsize=65536)
def _phi_like(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in _PHI_KEYS


# field names found not to look like PHI (a str key equal to one of these is one of these)
_CHECKED_KEYS: set[str] = set()


@lru_cache(maxsize=4096)
def _json_string(s: str) -> bytes:
    """Canonical JSON of a kind or actor string (they repeat: cached)."""
    return canonical_json(s)


def check_entry_fields(kind: str, data: Any, actor: str) -> None:
    if not isinstance(kind, str) or not _valid_kind(kind):
        raise InputError(f"ledger entry kind {kind!r} must look like 'area.event' (lowercase)")
    if not isinstance(actor, str) or not actor or len(actor) > 200:
        raise InputError("ledger entry actor must be a non-empty string of at most 200 characters")
    if not isinstance(data, dict):
        raise InputError(f"ledger entry data must be an object, not {type(data).__name__}")
    if _CHECKED_KEYS.issuperset(data):  # field names repeat from entry to entry
        return
    for key in data:
        if isinstance(key, str) and _phi_like(key):
            raise InputError(
                f"ledger entry field {key!r} looks like PHI; the ledger never holds PHI"
            )
    if len(_CHECKED_KEYS) > 65536:
        _CHECKED_KEYS.clear()
    _CHECKED_KEYS.update(key for key in data if type(key) is str)


def entry_frame(kind: str, actor: str, when: str) -> tuple[bytes, bytes, bytes]:
    """The RFC 8785 form of {"actor","data","kind","seq","time"} (keys already in JCS order)
    around the data and the seq: an entry is head + data_json + mid + seq + tail."""
    head = b"".join((b'{"actor":', _json_string(actor), b',"data":'))
    mid = b"".join((b',"kind":', _json_string(kind), b',"seq":'))
    tail = b"".join((b',"time":"', when.encode(), b'"}'))
    return head, mid, tail


class Ledger:
    """One installation's audit ledger. Thread-safe; safe across processes (fcntl lock)."""

    def __init__(self, directory: Path | str | None = None):
        self.dir = Path(directory) if directory is not None else default_directory()
        self.warnings: list[str] = []
        self._mutex = threading.RLock()
        self._keys: LedgerKeys | None = None
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            self._entries = os.open(self.dir / ENTRIES, flags, 0o600)
            self._index = os.open(self.dir / INDEX, flags, 0o600)
            self._hashes = os.open(self.dir / HASHES, flags, 0o600)
            self._checkpoints = os.open(self.dir / CHECKPOINTS, flags, 0o600)
        except OSError as exc:
            self.close()
            raise LedgerError(f"{self.dir}: cannot open the ledger: {exc.strerror}") from None
        self._size = 0
        self._end = records.MAGIC_SIZE
        self._ckpt_end = records.MAGIC_SIZE
        self._frontier: list[tuple[int, bytes]] = []
        try:
            with self._locked():
                self._recover()
        except BaseException:
            self.close()
            raise

    # --- lifecycle ---

    def close(self) -> None:
        for name in ("_entries", "_index", "_hashes", "_checkpoints", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # --- recovery ---

    def _init_file(self, fd: int, magic: bytes, name: str) -> None:
        size = os.fstat(fd).st_size
        if size >= records.MAGIC_SIZE:
            head = os.pread(fd, records.MAGIC_SIZE, 0)
            if head != magic:
                raise LedgerError(f"{self.dir / name}: not a medsentry ledger file (bad magic)")
            return
        if size and os.pread(fd, size, 0) != magic[:size]:
            raise LedgerError(f"{self.dir / name}: not a medsentry ledger file (bad magic)")
        os.ftruncate(fd, 0)  # a header torn on creation holds no entry
        _write_all(fd, magic)
        os.fsync(fd)
        _fsync_dir(self.dir)

    def _quarantine(self, fd: int, name: str, offset: int, reason: str) -> dict[str, Any]:
        end = os.fstat(fd).st_size
        data = os.pread(fd, end - offset, offset)
        qdir = self.dir / QUARANTINE
        qdir.mkdir(mode=0o700, exist_ok=True)
        qpath = qdir / f"{name}.torn-at-{offset}.{time.time_ns()}.bin"
        qfd = os.open(qpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(qfd, data)
            os.fsync(qfd)
        finally:
            os.close(qfd)
        _fsync_dir(qdir)
        os.ftruncate(fd, offset)
        os.fsync(fd)
        self.warnings.append(
            f"{self.dir / name}: torn record at byte {offset} ({reason}; {len(data)} bytes, "
            f"never acknowledged) moved to {qpath}"
        )
        return {
            "file": name,
            "offset": offset,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "quarantine": qpath.name,
            "reason": reason,
        }

    def _record_at(self, offset: int) -> bytes | records.BadRecord:
        if offset > _LAST_READABLE:  # a damaged index.bin: os.pread takes a signed 64-bit off_t
            return records.BadRecord(offset, "offset beyond the end of any file", torn=False)
        head = os.pread(self._entries, records.HEADER_SIZE, offset)
        if len(head) < records.HEADER_SIZE:
            return records.BadRecord(offset, "file ends inside a record header", torn=True)
        length = int.from_bytes(head[:4], "big")
        if length > records.MAX_PAYLOAD:
            return records.BadRecord(offset, f"record length {length} is impossible", torn=False)
        got = records.read_at(head + os.pread(self._entries, length, offset + 8), 0)
        return got if isinstance(got, records.BadRecord) else got[0]

    def _recover(self) -> None:
        """Bring index.bin and hashes.bin in line with entries.bin; quarantine torn tails."""
        self._init_file(self._entries, records.ENTRIES_MAGIC, ENTRIES)
        self._init_file(self._checkpoints, records.CHECKPOINTS_MAGIC, CHECKPOINTS)
        torn: list[dict[str, Any]] = []
        # index.bin: whole offsets only (a torn u64 is an unacknowledged derived write)
        isize = os.fstat(self._index).st_size
        count = isize // 8
        if isize % 8:
            os.ftruncate(self._index, count * 8)
        end = records.MAGIC_SIZE
        if count:
            (last,) = _OFFSET.unpack(os.pread(self._index, 8, (count - 1) * 8))
            got = self._record_at(last)
            if isinstance(got, records.BadRecord):
                raise LedgerError(
                    f"{self.dir / ENTRIES}: acknowledged entry {count - 1} at byte {last} is "
                    f"damaged or missing ({got.reason}); run `medsentry audit verify`"
                )
            if _seq_of(got) != count - 1:
                raise LedgerError(
                    f"{self.dir / INDEX}: entry {count - 1} should be at byte {last} of "
                    f"{ENTRIES} but that record is not it; run `medsentry audit verify`"
                )
            end = last + records.HEADER_SIZE + len(got)
        # entries written after the last indexed one: complete ones are kept, a torn tail is not
        esize = os.fstat(self._entries).st_size
        new_offsets: list[int] = []
        if esize > end:
            buf = os.pread(self._entries, esize - end, end)
            for item in records.scan(buf, 0):
                if isinstance(item, records.BadRecord):
                    torn.append(
                        self._quarantine(self._entries, ENTRIES, end + item.offset, item.reason)
                    )
                    break
                off, payload = item
                if _seq_of(payload) != count + len(new_offsets):
                    # a whole, checksummed record out of sequence is no crash artifact
                    raise LedgerError(
                        f"{self.dir / ENTRIES}: the record at byte {end + off} is not entry "
                        f"{count + len(new_offsets)}; run `medsentry audit verify`"
                    )
                new_offsets.append(end + off)
            if new_offsets:
                _write_all(self._index, b"".join(_OFFSET.pack(o) for o in new_offsets))
                os.fsync(self._index)
                last = new_offsets[-1]
                end = last + records.HEADER_SIZE + len(self._record_at(last))  # type: ignore[arg-type]
        n = count + len(new_offsets)
        # hashes.bin
        hsize = os.fstat(self._hashes).st_size
        have = hsize // merkle.HASH_SIZE
        need = merkle.stored_hash_count(n)
        if have > need:
            raise LedgerError(
                f"{self.dir / HASHES} holds hashes for {merkle.leaves_covered(have)} entries but "
                f"entries.bin holds {n}: entries were removed; run `medsentry audit verify`"
            )
        if have < need or hsize % merkle.HASH_SIZE:
            m = merkle.leaves_covered(have)
            os.ftruncate(self._hashes, merkle.stored_hash_count(m) * merkle.HASH_SIZE)
            self._size = m
            self._load_frontier()
            out: list[bytes] = []
            for i in range(m, n):
                payload = self._payload(i)
                merkle.append_leaf(self._frontier, merkle.leaf_hash(payload), out)
            _write_all(self._hashes, b"".join(out))
            os.fsync(self._hashes)
        self._size = n
        self._end = end
        self._load_frontier()
        # checkpoints.bin: keep whole notes, quarantine a torn tail
        csize = os.fstat(self._checkpoints).st_size
        cbuf = os.pread(self._checkpoints, csize, 0)
        cend = records.MAGIC_SIZE
        for item in records.scan(cbuf, records.MAGIC_SIZE):
            if isinstance(item, records.BadRecord):
                if item.torn:
                    torn.append(
                        self._quarantine(self._checkpoints, CHECKPOINTS, item.offset, item.reason)
                    )
                else:  # a damaged note before the end is evidence: leave it for `audit verify`
                    cend = csize
                break
            cend = item[0] + records.HEADER_SIZE + len(item[1])
        self._ckpt_end = cend
        for event in torn:
            self._append_locked([("ledger.torn_tail", canonical_json(event), "medsentry")])

    def _load_frontier(self) -> None:
        self._frontier = [
            (level, self._read_hash(level, idx)) for level, idx in merkle.compact_range(self._size)
        ]

    def _sync(self) -> None:
        """Re-read state if another process appended since our last look (under the lock)."""
        if (
            os.fstat(self._entries).st_size != self._end
            or os.fstat(self._index).st_size != self._size * 8
            or os.fstat(self._hashes).st_size
            != merkle.stored_hash_count(self._size) * merkle.HASH_SIZE
            or os.fstat(self._checkpoints).st_size != self._ckpt_end
        ):
            self._recover()

    # --- reading ---

    @property
    def size(self) -> int:
        with self._mutex:
            return self._size

    def _read_hash(self, level: int, index: int) -> bytes:
        pos = merkle.stored_hash_index(level, index) * merkle.HASH_SIZE
        h = os.pread(self._hashes, merkle.HASH_SIZE, pos)
        if len(h) != merkle.HASH_SIZE:
            raise LedgerError(f"{self.dir / HASHES}: hash at byte {pos} is missing")
        return h

    def stored_hash(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree over entries [index << level, (index + 1) << level)."""
        with self._mutex:
            if level < 0 or index < 0 or (index + 1) << level > self._size:
                raise InputError(f"no complete subtree at level {level}, index {index}")
            return self._read_hash(level, index)

    def _offset(self, seq: int) -> int:
        return _OFFSET.unpack(os.pread(self._index, 8, seq * 8))[0]

    def _payload(self, seq: int) -> bytes:
        offset = self._offset(seq)
        got = self._record_at(offset)
        if isinstance(got, records.BadRecord):
            raise LedgerError(f"{self.dir / ENTRIES}: entry {seq} at byte {offset}: {got.reason}")
        return got

    def _check_seq(self, seq: int, size: int | None = None) -> int:
        size = self._size if size is None else size
        if not 0 <= seq < size:
            raise InputError(f"entry {seq} does not exist (the ledger holds {size} entries)")
        return seq

    def entry_bytes(self, seq: int) -> bytes:
        """The canonical JSON bytes of entry `seq` (the Merkle leaf input)."""
        with self._mutex:
            return self._payload(self._check_seq(seq))

    def entry(self, seq: int) -> dict[str, Any]:
        return msgspec.json.decode(self.entry_bytes(seq))

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        stop = self.size if stop is None else min(stop, self.size)
        for seq in range(start, stop):
            yield self.entry(seq)

    def root(self, size: int | None = None) -> bytes:
        with self._mutex:
            if size is None or size == self._size:
                return merkle.root_of_frontier(self._frontier)
            if not 0 <= size <= self._size:
                raise InputError(f"tree size {size} is beyond the ledger's {self._size} entries")
            return merkle.root_at(self._read_hash, size)

    def inclusion_proof(self, seq: int, size: int | None = None) -> InclusionProof:
        with self._mutex:
            size = self._size if size is None else size
            if not 0 < size <= self._size:
                raise InputError(f"tree size {size} is not between 1 and {self._size}")
            self._check_seq(seq, size)
            path = merkle.inclusion_proof(self._read_hash, seq, size)
            return InclusionProof(seq, size, self._read_hash(0, seq), self.root(size), path)

    def consistency_proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        with self._mutex:
            new = self._size if new is None else new
            if not 0 <= old <= new <= self._size:
                raise InputError(
                    f"sizes must satisfy 0 <= OLD <= NEW <= {self._size}; got {old} and {new}"
                )
            path = merkle.consistency_proof(self._read_hash, old, new)
            return ConsistencyProof(old, new, self.root(old), self.root(new), path)

    # --- appending ---

    def append(self, kind: str, data: dict[str, Any], actor: str = "system") -> int:
        """Append one entry durably; returns its sequence number once it is on disk."""
        return self.append_many([(kind, data, actor)])[0]

    def append_many(
        self, items: Iterable[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str]]
    ) -> range:
        """Append entries as one durable batch (one set of fsyncs); returns their sequence numbers.

        Entries must hold no PHI: pass identifiers of devices, rules, alerts and counts, never
        patient names, IDs, birth dates or clinical values.
        """
        prepared: list[tuple[str, bytes, str]] = []
        for item in items:
            kind, data = item[0], item[1]
            actor = item[2] if len(item) > 2 else "system"  # type: ignore[misc]
            check_entry_fields(kind, data, actor)
            prepared.append((kind, canonical_json(data), actor))
        with self._locked():
            self._sync()
            first = self._append_locked(prepared)
        return range(first, first + len(prepared))

    def _append_locked(self, prepared: Sequence[tuple[str, bytes, str]]) -> int:
        first = self._size
        if not prepared:
            return first
        when = utc_now()
        frontier = list(self._frontier)
        blobs: list[bytes] = []
        positions: list[int] = []
        stored: list[bytes] = []
        pos = self._end
        frames: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}  # by kind and actor
        join = b"".join
        encode = records.encode
        leaf_hash = merkle.leaf_hash
        append_leaf = merkle.append_leaf
        for seq, (kind, data_json, actor) in enumerate(prepared, first):
            frame = frames.get((kind, actor))
            if frame is None:
                frame = frames[(kind, actor)] = entry_frame(kind, actor, when)
            payload = join((frame[0], data_json, frame[1], str(seq).encode(), frame[2]))
            rec = encode(payload)
            blobs.append(rec)
            positions.append(pos)
            pos += len(rec)
            append_leaf(frontier, leaf_hash(payload), stored)
        offsets = [struct.pack(f">{len(positions)}Q", *positions)]
        self._commit(blobs, offsets, stored, frontier, pos, len(positions))
        return first

    def _commit(
        self,
        blobs: list[bytes],
        offsets: list[bytes],
        stored: list[bytes],
        frontier: list[tuple[int, bytes]],
        end: int,
        count: int,
    ) -> None:
        """Write one batch of `count` entries durably (their framed records in `blobs`, whole or
        in pieces); only then does the in-memory state move on."""
        try:
            _write_all(self._entries, b"".join(blobs))
            os.fdatasync(self._entries)  # entries first: derived files never run ahead of them
            _write_all(self._index, b"".join(offsets))
            _write_all(self._hashes, b"".join(stored))
            os.fdatasync(self._index)
            os.fdatasync(self._hashes)
        except OSError as exc:
            self._recover()  # bring memory back in line with what reached the disk
            raise LedgerError(f"{self.dir}: append failed: {exc.strerror or exc}") from None
        self._size += count
        self._end = end
        self._frontier = frontier

    def bulk_load_payloads(self, payloads: Iterable[bytes], batch: int = 100_000) -> None:
        """Append pre-built canonical entry payloads (benchmarks and imports); fsync per batch.

        Each payload must already be the canonical JSON of an entry; its `seq` is checked.
        """
        with self._locked():
            self._sync()
            buf: list[bytes] = []
            for p in payloads:
                buf.append(p)
                if len(buf) >= batch:
                    self._append_raw(buf)
                    buf = []
            if buf:
                self._append_raw(buf)

    def _append_raw(self, payloads: list[bytes]) -> None:
        frontier = list(self._frontier)
        blobs: list[bytes] = []
        offsets: list[bytes] = []
        stored: list[bytes] = []
        pos = self._end
        decode = msgspec.json.Decoder(_SeqOnly).decode
        for seq, p in enumerate(payloads, self._size):
            if decode(p).seq != seq:
                raise InputError(f"bulk entry {seq} carries seq {decode(p).seq}")
            rec = records.encode(p)
            blobs.append(rec)
            offsets.append(_OFFSET.pack(pos))
            pos += len(rec)
            merkle.append_leaf(frontier, merkle.leaf_hash(p), stored)
        self._commit(blobs, offsets, stored, frontier, pos, len(blobs))

    # --- keys and checkpoints ---

    def keys(self) -> LedgerKeys:
        """The installation's signing keys; made on first use, which is itself recorded."""
        with self._mutex:
            if self._keys is None:
                keys = load_keys()
                self._keys = keys
                if keys.created:
                    made = [
                        (
                            "config.changed",
                            {
                                "setting": "ledger.keys",
                                "action": "created",
                                "key_file": name,
                                "vkey": str(vkey),
                            },
                            "medsentry",
                        )
                        for name in keys.created
                        for vkey in [keys.log.vkey if name == LOG_KEY_FILE else keys.clock.vkey]
                    ]
                    self.append_many(made)  # type: ignore[arg-type]
            return self._keys

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree head, store the note, and record it as a `ledger.checkpoint`."""
        keys = self.keys()
        with self._locked():
            self._sync()
            size = self._size
            root = merkle.root_of_frontier(self._frontier)
            text = make_checkpoint(
                Checkpoint(keys.origin, size, root), keys.log, keys.clock, int(time.time())
            )
            note = text.encode()
            _write_all(self._checkpoints, records.encode(note))
            os.fdatasync(self._checkpoints)
            self._ckpt_end = os.fstat(self._checkpoints).st_size
            data = {
                "size": size,
                "root": base64.b64encode(root).decode(),
                "note_sha256": hashlib.sha256(note).hexdigest(),
            }
            self._append_locked([("ledger.checkpoint", canonical_json(data), "medsentry")])
        return open_checkpoint(note, keys.log.vkey, keys.clock.vkey)

    def checkpoints(self) -> list[bytes]:
        """Every stored checkpoint note, oldest first (damaged records are left to verify)."""
        with self._mutex:
            buf = os.pread(self._checkpoints, self._ckpt_end, 0)
        return [
            item[1] for item in records.scan(buf, records.MAGIC_SIZE) if isinstance(item, tuple)
        ]

    def latest_checkpoint(self) -> bytes | None:
        notes = self.checkpoints()
        return notes[-1] if notes else None
