"""Full verification of a ledger directory: recompute everything, trust nothing stored.

Reads the files directly (never through `Ledger`, which refuses a damaged log) under a shared
lock, so a writer's batch is never seen half done. Checks, in one pass over entries.bin:

1. framing and CRC-32 of every record (records.py);
2. that entry i says `"seq": i` (catches deletion, insertion and reordering even when an
   attacker fixed the CRCs) and, with `canonical=True`, that its bytes are RFC 8785 canonical;
3. that index.bin points at every entry;
4. that every stored hash in hashes.bin equals the one recomputed from the entries (RFC 9162);
5. that every stored checkpoint is signed by this installation's keys and its root equals the
   recomputed root at its size, and that every `ledger.checkpoint` entry's note is still stored;
6. optionally, the same for an external checkpoint (a witness's copy).

The first bad entry is the smallest entry any check names. When only a signed root disagrees
(everything stored was rewritten consistently), the damage is bounded by the last checkpoint
that still verifies: "the first bad entry is within #a..#b".
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import mmap
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from medsentry.ledger import merkle, records
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.log import CHECKPOINTS, ENTRIES, HASHES, INDEX, LOCK, default_directory
from medsentry.ledger.note import NoteError, SignedCheckpoint, Vkey, open_checkpoint

_MAX_PER_CHECK = 20
_OFFSET = struct.Struct(">Q")


class _Head(msgspec.Struct):
    seq: int
    kind: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class _CheckpointData(msgspec.Struct):
    note_sha256: str = ""


@dataclass
class Problem:
    message: str
    entry: int | None = None  # first entry concerned
    entry_last: int | None = None  # when the damage is bounded to a range
    checkpoint: int | None = None  # position in checkpoints.bin (0-based)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    directory: str
    size: int = 0
    root: str = ""
    checkpoints_verified: int = 0
    external_checkpoint: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def _naming(self) -> list[Problem]:
        """Problems that locate the first bad entry: exact ones, and unexplained ranges."""
        exact = [p for p in self.problems if p.entry is not None and p.entry_last is None]
        ranges = [
            p
            for p in self.problems
            if p.entry is not None
            and p.entry_last is not None
            and not any(p.entry <= e.entry <= p.entry_last for e in exact)  # type: ignore[operator]
        ]
        return exact + ranges

    @property
    def first_bad_entry(self) -> int | None:
        named = [p.entry for p in self._naming() if p.entry is not None]
        return min(named) if named else None

    def first_problem(self) -> Problem | None:
        named = self._naming()
        if named:
            return min(named, key=lambda p: (p.entry, p.entry_last is not None))
        return self.problems[0] if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "directory": self.directory,
            "size": self.size,
            "root": self.root,
            "checkpoints_verified": self.checkpoints_verified,
            "external_checkpoint": self.external_checkpoint,
            "first_bad_entry": self.first_bad_entry,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": self.warnings,
        }


def _map(path: Path, size: int) -> mmap.mmap | bytes:
    if size == 0:
        return b""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)


def _snapshot(directory: Path) -> dict[str, int]:
    sizes = {}
    lock_path = directory / LOCK
    fd = os.open(lock_path, os.O_RDONLY) if lock_path.exists() else -1
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_SH)  # no writer mid-batch while sizes are read
        for name in (ENTRIES, INDEX, HASHES, CHECKPOINTS):
            p = directory / name
            sizes[name] = p.stat().st_size if p.exists() else 0
    finally:
        if fd >= 0:
            os.close(fd)
    return sizes


@dataclass
class _StoredCheckpoint:
    position: int
    offset: int
    signed: SignedCheckpoint
    sha256: str


def verify_ledger(
    directory: Path | str | None = None,
    external: bytes | None = None,
    external_name: str = "checkpoint",
    vkeys: tuple[Vkey, Vkey | None] | None = None,
    canonical: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Verify the ledger in `directory` (default: the installation's). Never modifies it.

    `progress(done_bytes, total_bytes)` is called as entries.bin is read.
    """
    d = Path(directory) if directory is not None else default_directory()
    report = Report(str(d))
    if not (d / ENTRIES).exists():
        report.problems.append(Problem(f"{d / ENTRIES} does not exist"))
        return report
    if vkeys is None:
        from medsentry.ledger.keys import existing_keys

        keys = existing_keys()
        vkeys = (keys.log.vkey, keys.clock.vkey) if keys is not None else None
    sizes = _snapshot(d)
    problems = report.problems

    # --- checkpoints.bin (read first: their sizes tell where to take roots) ---
    stored: list[_StoredCheckpoint] = []
    cbuf = _map(d / CHECKPOINTS, sizes[CHECKPOINTS])
    if sizes[CHECKPOINTS] and not records.check_magic(cbuf, records.CHECKPOINTS_MAGIC):
        problems.append(Problem(f"{CHECKPOINTS}: bad magic at byte 0", checkpoint=0))
    elif sizes[CHECKPOINTS]:
        for pos, item in enumerate(records.scan(cbuf, records.MAGIC_SIZE)):
            if isinstance(item, records.BadRecord):
                if item.torn:
                    report.warnings.append(
                        f"{CHECKPOINTS}: torn note at byte {item.offset} (never acknowledged; "
                        "quarantined on next open)"
                    )
                else:
                    problems.append(
                        Problem(
                            f"{CHECKPOINTS}: checkpoint #{pos} at byte {item.offset}: "
                            f"{item.reason}",
                            checkpoint=pos,
                        )
                    )
                break
            off, note = item
            if vkeys is None:
                problems.append(
                    Problem(
                        "checkpoints exist but this installation has no ledger keys to "
                        "check them with",
                        checkpoint=pos,
                    )
                )
                break
            try:
                signed = open_checkpoint(note, vkeys[0], vkeys[1], f"{CHECKPOINTS} #{pos}")
            except NoteError as exc:
                problems.append(Problem(f"checkpoint #{pos} at byte {off}: {exc}", checkpoint=pos))
                continue
            if stored and signed.checkpoint.size < stored[-1].signed.checkpoint.size:
                problems.append(
                    Problem(
                        f"checkpoint #{pos} (size {signed.checkpoint.size}) is older than the "
                        f"one before it: checkpoints reordered",
                        checkpoint=pos,
                    )
                )
            stored.append(_StoredCheckpoint(pos, off, signed, hashlib.sha256(note).hexdigest()))

    ext: SignedCheckpoint | None = None
    if external is not None:
        if vkeys is None:
            problems.append(Problem("no ledger keys on this installation to check the checkpoint"))
        else:
            try:
                ext = open_checkpoint(external, vkeys[0], vkeys[1], external_name)
            except NoteError as exc:
                problems.append(Problem(str(exc)))

    want_sizes = {c.signed.checkpoint.size for c in stored}
    if ext is not None:
        want_sizes.add(ext.checkpoint.size)
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}

    # --- one pass over entries.bin, index.bin and hashes.bin ---
    ebuf = _map(d / ENTRIES, sizes[ENTRIES])
    ibuf = _map(d / INDEX, sizes[INDEX])
    hbuf = _map(d / HASHES, sizes[HASHES])
    n_index = sizes[INDEX] // 8
    n_hashes = sizes[HASHES] // merkle.HASH_SIZE
    if not records.check_magic(ebuf, records.ENTRIES_MAGIC):
        problems.append(Problem(f"{ENTRIES}: bad magic at byte 0", entry=0))
        return report
    frontier: list[tuple[int, bytes]] = []
    produced: list[bytes] = []  # stored hashes recomputed in this chunk
    offsets: list[int] = []  # entry offsets found in this chunk
    chunk_first = 0  # first entry of the chunk
    hash_first = 0  # first stored-hash position of the chunk
    bad_index = bad_hash = bad_seq = 0
    ckpt_entries: list[tuple[int, str]] = []

    def flush() -> None:
        """Compare a chunk's offsets and hashes with index.bin and hashes.bin in bulk."""
        nonlocal bad_index, bad_hash, chunk_first, hash_first
        k = min(len(offsets), max(0, n_index - chunk_first))
        if k and not bad_index:
            want = struct.pack(f">{k}Q", *offsets[:k])
            if ibuf[chunk_first * 8 : (chunk_first + k) * 8] != want:
                for j in range(k):
                    (ioff,) = _OFFSET.unpack_from(ibuf, (chunk_first + j) * 8)
                    if ioff != offsets[j]:
                        bad_index += 1
                        problems.append(
                            Problem(
                                f"{INDEX}: entry #{chunk_first + j} is at byte {offsets[j]} "
                                f"but the index says {ioff}",
                                chunk_first + j,
                            )
                        )
                        break
        k = min(len(produced), max(0, n_hashes - hash_first))
        if k and not bad_hash:
            lo = hash_first * 32
            if hbuf[lo : lo + 32 * k] != b"".join(produced[:k]):
                for j in range(k):
                    if hbuf[lo + 32 * j : lo + 32 * j + 32] != produced[j]:
                        pos = hash_first + j
                        owner = merkle.leaves_covered(pos)
                        bad_hash += 1
                        problems.append(
                            Problem(
                                f"{HASHES}: stored hash #{pos} (made when entry #{owner} was "
                                "appended) differs from the one recomputed from the entries",
                                owner,
                            )
                        )
                        break
        chunk_first += len(offsets)
        hash_first += len(produced)
        offsets.clear()
        produced.clear()

    decode = msgspec.json.Decoder(_Head).decode
    sha256 = hashlib.sha256
    unpack_header = records.HEADER.unpack_from
    crc32 = zlib.crc32
    chunk = 1 << 16
    i = 0
    off = records.MAGIC_SIZE
    end = len(ebuf)
    while off < end:
        # records.read_at, inlined: this loop runs once per entry
        if off + 8 <= end:
            length, crc = unpack_header(ebuf, off)
            nxt = off + 8 + length
            payload = ebuf[off + 8 : nxt]
            ok = nxt <= end and crc32(payload, crc32(ebuf[off : off + 4])) == crc
        else:
            ok = False
        if not ok:
            got = records.read_at(ebuf, off)
            assert isinstance(got, records.BadRecord)
            if got.torn and i >= n_index:
                report.warnings.append(
                    f"{ENTRIES}: torn record at byte {off} after the last acknowledged entry "
                    f"(never acknowledged; quarantined on next open)"
                )
            else:
                problems.append(Problem(f"entry #{i} at byte {off} of {ENTRIES}: {got.reason}", i))
            break
        try:
            head = decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):
            problems.append(Problem(f"entry #{i} at byte {off}: not a ledger entry (bad JSON)", i))
            break
        if head.seq != i and bad_seq < _MAX_PER_CHECK:
            bad_seq += 1
            problems.append(
                Problem(
                    f"entry at position #{i} (byte {off}) says seq {head.seq}: entries were "
                    "deleted, inserted or reordered here",
                    i,
                )
            )
        if canonical and canonical_json(msgspec.json.decode(payload)) != payload:
            problems.append(Problem(f"entry #{i} at byte {off} is not RFC 8785 canonical JSON", i))
        if head.kind == "ledger.checkpoint":
            try:
                ckpt_entries.append(
                    (i, msgspec.json.decode(head.data, type=_CheckpointData).note_sha256)
                )
            except (msgspec.DecodeError, UnicodeDecodeError):
                problems.append(Problem(f"entry #{i}: malformed ledger.checkpoint data", i))
        offsets.append(off)
        # merkle.append_leaf inlined: RFC 9162 §2.1.1 leaf hash, then completed subtrees
        h = sha256(b"\x00" + payload).digest()
        produced.append(h)
        level = 0
        while frontier and frontier[-1][0] == level:
            h = sha256(b"\x01" + frontier.pop()[1] + h).digest()
            produced.append(h)
            level += 1
        frontier.append((level, h))
        i += 1
        if i in want_sizes:
            roots[i] = merkle.root_of_frontier(frontier)
        if len(offsets) == chunk:
            flush()
            if progress is not None:
                progress(nxt, end)
        off = nxt
    flush()
    n = i
    report.size = n
    report.root = merkle.root_of_frontier(frontier).hex()
    if n_index > n:
        problems.append(
            Problem(
                f"{INDEX} lists {n_index} entries but {ENTRIES} holds {n}: entries "
                f"#{n}..#{n_index - 1} are missing (truncated)",
                n,
                n_index - 1,
            )
        )
    elif n_index < n:
        report.warnings.append(
            f"{INDEX} lacks the last {n - n_index} entries (indexed on next open)"
        )
    need = merkle.stored_hash_count(n)
    if n_hashes > need:
        problems.append(
            Problem(
                f"{HASHES} covers {merkle.leaves_covered(n_hashes)} entries but {ENTRIES} "
                f"holds {n}: entries #{n}.. are missing",
                n,
            )
        )
    elif n_hashes < need:
        report.warnings.append(f"{HASHES} lacks hashes for the last entries (rebuilt on next open)")

    # --- checkpoints against the recomputed tree ---
    good_sizes = [0]

    def check_root(cp: SignedCheckpoint, label: str, cpos: int | None) -> bool:
        size, root = cp.checkpoint.size, cp.checkpoint.root
        if size > n:
            problems.append(
                Problem(
                    f"{label} signed tree size {size} but the log holds {n} entries: entries "
                    f"#{n}..#{size - 1} are missing",
                    n,
                    size - 1,
                    cpos,
                )
            )
            return False
        if roots[size] != root:
            lo = max(s for s in good_sizes if s <= size)
            problems.append(
                Problem(
                    f"{label} signed root {root.hex()[:16]}… at size {size}, the entries give "
                    f"{roots[size].hex()[:16]}…: the first bad entry is within #{lo}..#{size - 1}",
                    lo,
                    size - 1 if size - 1 > lo else None,
                    cpos,
                )
            )
            return False
        return True

    for c in stored:
        if check_root(c.signed, f"checkpoint #{c.position}", c.position):
            report.checkpoints_verified += 1
            good_sizes.append(c.signed.checkpoint.size)
    stored_notes = {c.sha256 for c in stored}
    for seq, sha in ckpt_entries:
        if sha not in stored_notes:
            problems.append(
                Problem(
                    f"entry #{seq} records checkpoint note {sha[:16]}… which is no longer in "
                    f"{CHECKPOINTS} (deleted or altered)",
                    seq,
                )
            )
    if ext is not None:
        ok = check_root(ext, external_name, None)
        report.external_checkpoint = {
            "size": ext.checkpoint.size,
            "root": base64.b64encode(ext.checkpoint.root).decode(),
            "time": ext.time,
            "consistent": ok,
        }
    for buf in (cbuf, ebuf, ibuf, hbuf):
        if isinstance(buf, mmap.mmap):
            buf.close()
    return report
