"""Open a capture file (pcap, pcapng or btsnoop by magic, else PacketLogger by its first records)
and stream it as RawBatches.

The file is read in windows of about `chunk_bytes` (mmap views when the file can be mapped,
otherwise `readinto` fresh buffers), so memory stays bounded whatever the capture size. A
compiled kernel walks the records of each window; a record cut by the window's end starts the
next window. Damage after the file header keeps every packet before it, records a
`DecodeWarning` naming the file and byte offset, and ends the walk; damage in the file header
raises `CaptureError`.

A stream (standard input, a FIFO: `tcpdump -w - | medsentry scan -`) is read the same way,
once and in order (`_StreamWindows`): the same windows, hence the same batches, as the same
bytes in a file. Its SHA-256 (the capture id) is taken as it is read, since nothing of it can
be read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import select
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medsentry.capture.background import OrderedWork
from medsentry.capture.batch import RawBatch
from medsentry.capture.btsnoop import MAGIC as BTSNOOP_MAGIC
from medsentry.capture.btsnoop import BtsnoopWalker
from medsentry.capture.kernels_bytes import (
    WALK_END,
    WALK_FULL,
    WALK_MESSAGES,
    WALK_NEED_MORE,
)
from medsentry.capture.kernels_decode import DECODED_LINKTYPES
from medsentry.capture.lease import ReadLease
from medsentry.capture.pcap import FILE_HEADER_LEN, MAGICS, PcapWalker
from medsentry.capture.pcapng import SHB_MAGIC, PcapngWalker
from medsentry.capture.pklg import PROBE_BYTES, PklgWalker
from medsentry.capture.pklg import probe as probe_pklg
from medsentry.capture.processes import ProcessTagger
from medsentry.errors import CaptureError
from medsentry.events import DecodeWarning

DEFAULT_CHUNK_BYTES = 32 << 20
STDIN = "-"  # the command-line name of standard input
STDIN_SOURCE = "<stdin>"  # its name in messages and in the `captures.source` column
_RESIDENT_WINDOWS = 6  # mapped windows kept resident behind the read position
_HEAD_LEN = max(PROBE_BYTES, 64)  # enough to tell every format apart (pklg: a few records)
_SHB_READ_AHEAD = 16 << 20  # a stream's pcapng section header is read whole up to this length
_PIPE_BYTES = 1 << 20  # pipe buffer asked for (F_SETPIPE_SZ): fewer, larger reads
_OTHER_MAGICS = {
    b"\x1f\x8b": "gzip-compressed file; decompress it first",
    b"\x28\xb5\x2f\xfd": "zstd-compressed file; decompress it first",
    b"PK\x03\x04": (
        "zip archive; extract the capture from it first (an Android bug report keeps the HCI"
        " snoop log under FS/data/misc/bluetooth/logs/)"
    ),
    b"\xa1\xb2\xcd\x34": "Kuznetzov modified pcap, which is not supported",
    b"\x34\xcd\xb2\xa1": "Kuznetzov modified pcap, which is not supported",
}


_CHANGED = (
    "another program opened the file for writing or truncated it while it was read; nothing"
    " of it is stored: scan it again once it is complete, or scan a copy"
)


class _Windows:
    """Views of byte ranges of a file: mmap slices, or readinto fresh buffers with carry-over.

    A file is mapped only under a read lease (capture/lease.py): one that shrank under the
    map would kill the process with SIGBUS. Either way, a file that changes while it is read
    raises CaptureError at the next window (it would be read half old, half new).
    """

    def __init__(self, fh: Any, size: int, use_mmap: bool, source: str) -> None:
        self._fh = fh
        self.size = size
        self.source = source
        self._mm: mmap.mmap | None = None
        self._lease = ReadLease(fh.fileno())
        if use_mmap and size > 0 and self._lease.acquire():
            try:
                self._mm = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
                if hasattr(self._mm, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
                    self._mm.madvise(mmap.MADV_SEQUENTIAL)
            except (OSError, ValueError):
                self._mm = None
                self._lease.release()
        self._buf = np.empty(0, np.uint8)
        self._buf_pos = 0  # file offset of _buf[0]
        self._released = 0  # mapped bytes before this offset were given back to the kernel

    @property
    def mapped(self) -> bool:
        return self._mm is not None

    def at_end(self, pos: int, length: int) -> bool:
        """Whether the view [pos, pos+length) reaches the end of the capture."""
        return pos + length >= self.size

    def release(self, upto: int) -> None:
        """Drop the mapped pages before `upto` from this process (madvise(2) MADV_DONTNEED).

        The map is read-only and file-backed: a view still used after this (a late reader)
        faults the same bytes back in from the page cache, so this is safe at any time; it
        keeps the resident mapped pages at a few windows whatever the file size.
        """
        mm = self._mm
        if mm is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        upto -= upto % mmap.PAGESIZE
        if upto > self._released:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
            self._released = upto

    def get(self, pos: int, length: int) -> np.ndarray:
        """Bytes [pos, pos+length) clipped to the file end; pos never moves backwards."""
        length = max(0, min(length, self.size - pos))
        if self._mm is not None:
            self._lease.check()  # a SIGIO handled late (another thread took it) is seen here
            if self._lease.broken:
                raise CaptureError(_CHANGED, self.source, pos)
            return np.frombuffer(self._mm, np.uint8, length, pos)
        keep = self._buf[pos - self._buf_pos :]
        carry = min(keep.shape[0], length)
        buf = np.empty(length, np.uint8)  # fresh: earlier batches keep their own bytes
        buf[:carry] = keep[:carry]
        filled = carry
        self._fh.seek(pos + filled)
        while filled < length:
            got = self._fh.readinto(memoryview(buf)[filled:])
            if not got:
                break
            filled += got
        if filled < length:  # shorter than when it was opened
            raise CaptureError(_CHANGED, self.source, pos + filled)
        self._buf = buf[:filled]
        self._buf_pos = pos
        return self._buf

    def close(self) -> None:
        self._buf = np.empty(0, np.uint8)
        if self._mm is not None:
            # batches may still hold views; the map is then freed with the last of them
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None
        self._lease.release()


class _StreamHash:
    """SHA-256 of a stream, fed in order with each range as it is read, on a worker thread
    (`OrderedWork`, as for files); the ranges are fresh buffers nothing writes again."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self._work = OrderedWork("stream-hash")

    def update(self, data: np.ndarray | bytes) -> None:
        self._work.submit(self.h.update, data)

    def hexdigest(self) -> str:
        self._work.wait()
        return self.h.hexdigest()

    def close(self) -> None:
        self._work.close()


class _StreamWindows:
    """Windows of a stream (pipe, FIFO, socket): read once, in order, into fresh buffers.

    `get(pos, length)` gives the bytes [pos, pos+length) as `_Windows` does for a file, so a
    stream is walked in the same windows as the same bytes in a file; what was read past the
    window (a record header peeked at, the head read to detect the format) is carried to the
    next. Memory: one window plus the carried bytes. The end is known once a read returns
    nothing; until then `size` is None.
    """

    mapped = False

    def __init__(self, fh: BinaryIO, source: str) -> None:
        self._fh = fh
        self.source = source
        self.end = 0  # bytes read from the stream so far
        self.eof = False
        self.hash = _StreamHash()
        self._buf = np.empty(0, np.uint8)
        self._buf_pos = 0  # stream offset of _buf[0]; _buf holds every byte read past it
        if sys.platform == "linux":  # a larger pipe: fewer wake-ups (fcntl(2) F_SETPIPE_SZ)
            import fcntl

            with contextlib.suppress(OSError, AttributeError, ValueError):
                fcntl.fcntl(fh.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    @property
    def size(self) -> int | None:
        return self.end if self.eof else None

    def at_end(self, pos: int, length: int) -> bool:
        return self.eof and pos + length >= self.end

    def release(self, upto: int) -> None:
        """Nothing is mapped: a window's buffer goes with its last batch."""

    def _read(self, into: memoryview) -> int:
        while True:
            try:
                got = self._fh.readinto(into)
            except OSError as exc:
                msg = f"cannot read: {exc.strerror or exc}"
                raise CaptureError(msg, self.source, self.end) from None
            if got is not None:
                return got
            select.select([self._fh], [], [])  # a non-blocking descriptor: wait for data

    def get(self, pos: int, length: int) -> np.ndarray:
        """Bytes [pos, pos+length), fewer only at the end of the stream; pos never moves back."""
        have = self._buf[pos - self._buf_pos :]
        kept = have.shape[0]
        buf = np.empty(max(length, kept), np.uint8)  # fresh: earlier batches keep their own
        buf[:kept] = have
        filled = kept
        view = memoryview(buf)  # type: ignore[arg-type]
        while filled < length and not self.eof:
            got = self._read(view[filled:length])
            if not got:
                self.eof = True
                break
            filled += got
            self.end = pos + filled
        if filled > kept:
            self.hash.update(buf[kept:filled])
        self._buf = buf[:filled]
        self._buf_pos = pos
        return buf[: min(length, filled)]

    def drain(self) -> int:
        """Read (and hash) the rest of the stream, e.g. past damage; returns its length."""
        pos = self._buf_pos + self._buf.shape[0]
        self._buf = np.empty(0, np.uint8)
        self._buf_pos = pos
        while not self.eof:
            self.get(self._buf_pos + self._buf.shape[0], 1 << 20)
            self._buf = np.empty(0, np.uint8)
            self._buf_pos = self.end
        return self.end

    def sha256(self) -> str:
        """The SHA-256 of every byte of the stream (read to its end first)."""
        self.drain()
        return self.hash.hexdigest()

    def close(self) -> None:
        self._buf = np.empty(0, np.uint8)
        self.hash.close()


_NOT_REGULAR = "not a regular file or a pipe (devices and sockets are not read by name)"
STDIN_TTY = "standard input is a terminal, not a capture: pipe one in"


def stdin_tty(command: str) -> str:
    """STDIN_TTY for `medsentry <command> -`, with the way to pipe a capture into it."""
    return f"{STDIN_TTY} (e.g. tcpdump -w - | medsentry {command} -)"


class CaptureReader:
    """One capture file or stream. Iterate for RawBatches; see `format`, `linktypes`,
    `warnings`. A FIFO named by `path` is read as a stream (its open() waits for a writer), as
    is `stream`, an open binary file (standard input) that `path` then names in messages.
    A stream is iterated once; its `size` is known at its end and `sha256()` gives its hash."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        use_mmap: bool = True,
        *,
        stream: BinaryIO | None = None,
    ) -> None:
        self.path = Path(path)
        self.source = str(path)
        self.chunk_bytes = max(int(chunk_bytes), 4096)
        self._use_mmap = use_mmap
        self._stream: _StreamWindows | None = None
        self._windows: _Windows | _StreamWindows | None = None
        self._iterated = False
        self._fh: Any = stream if stream is not None else self._open()
        try:
            st = os.fstat(self._fh.fileno())
            if stream is not None or stat.S_ISFIFO(st.st_mode):
                if os.isatty(self._fh.fileno()):
                    raise CaptureError(STDIN_TTY, self.source)
                self._stream = _StreamWindows(self._fh, self.source)
                head = self._stream_head(self._stream)
            elif not stat.S_ISREG(st.st_mode):
                raise CaptureError(_NOT_REGULAR, self.source)
            else:
                self.size = st.st_size
                head = self._fh.read(_HEAD_LEN)
            self._walker = self._detect(head)
        except BaseException:
            self.close()
            raise
        self.format: str = self._walker.format
        self.warnings: list[DecodeWarning] = []
        self.packets = 0
        self.bytes_read = 0
        self._warned_ifaces = 0

    def _open(self) -> BinaryIO:
        try:
            if stat.S_ISFIFO(os.stat(self.path).st_mode):  # waits for a writer, then streamed
                return open(self.path, "rb", buffering=0)  # closed by close()
            return open(self.path, "rb")  # closed by close()
        except OSError as exc:
            raise CaptureError(f"cannot open capture: {exc.strerror}", self.source) from None

    @property
    def streamed(self) -> bool:
        """Read as a stream (standard input, a FIFO): once, in order, never mapped."""
        return self._stream is not None

    def _stream_head(self, win: _StreamWindows) -> bytes:
        """The first bytes of a stream, as a file's first read gives them; kept for the walk.

        A pcapng section header is read whole when it is longer (up to _SHB_READ_AHEAD), so a
        stream that ends inside it fails as the same file does, before any work.
        """
        head = bytes(win.get(0, _HEAD_LEN))
        if not head:
            raise CaptureError("empty input: nothing was written to it", self.source, 0)
        if head[:4] == SHB_MAGIC and len(head) >= 12:
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            blen = int.from_bytes(head[4:8], "little" if order == "<" else "big")
            if len(head) < blen <= _SHB_READ_AHEAD:
                win.get(0, blen)
        self.size = win.size if win.size is not None else sys.maxsize  # exact once at its end
        return head

    def _detect(self, head: bytes) -> PcapWalker | PcapngWalker | BtsnoopWalker | PklgWalker:
        """The walker of the format `head` (the first _HEAD_LEN bytes, or all) starts."""
        if len(head) < 4:
            raise CaptureError(
                f"file too short to be a capture ({len(head)} bytes)", self.source, len(head)
            )
        if head[:4] in MAGICS:
            return PcapWalker(head[:FILE_HEADER_LEN], self.source)
        if head[:4] == SHB_MAGIC:
            return PcapngWalker(head, self.source, self.size)
        if head[:8] == BTSNOOP_MAGIC:
            return BtsnoopWalker(head, self.source)
        for magic, what in _OTHER_MAGICS.items():
            if head.startswith(magic):
                raise CaptureError(what, self.source, 0)
        big = probe_pklg(head[:PROBE_BYTES])
        if big is not None:
            return PklgWalker(big)
        raise CaptureError(
            f"not a pcap, pcapng, btsnoop or PacketLogger capture (magic 0x{head[:4].hex()})",
            self.source,
            0,
        )

    @property
    def linktypes(self) -> list[int]:
        """Link type of each interface (index = RawBatch.iface); pcapng grows as it is read."""
        return self._walker.linktypes

    def _warn(self, offset: int | None, message: str, ts_ns: int = 0) -> None:
        self.warnings.append(
            DecodeWarning(ts_ns=ts_ns, source=self.source, offset=offset, message=message)
        )

    def _check_linktypes(self, base: int, ts_ns: int) -> None:
        lts = self.linktypes
        for i in range(self._warned_ifaces, len(lts)):
            if lts[i] not in DECODED_LINKTYPES:
                self._warn(
                    None,
                    f"interface {i}: unknown link type {lts[i]}; its packets are not decoded",
                    ts_ns,
                )
        self._warned_ifaces = len(lts)

    def _start(self) -> _Windows | _StreamWindows:
        """The windows of a new walk: a file from its start, a stream where it stands (once)."""
        if self._stream is not None:
            if self._iterated:
                raise RuntimeError(f"{self.source} is a stream: it can be read only once")
            self._iterated = True
            return self._stream
        if self._windows is not None:
            self._windows.close()
        self._fh.seek(0)
        self._walker = self._detect(self._fh.read(_HEAD_LEN))
        return _Windows(self._fh, self.size, self._use_mmap, self.source)

    def sha256(self) -> str:
        """A stream's SHA-256 (its capture id): its bytes as read, and the rest of it."""
        if self._stream is None:
            raise RuntimeError("sha256() is a stream's; a file is hashed by the pipeline")
        digest = self._stream.sha256()
        self.size = self._stream.end
        return digest

    def __iter__(self) -> Iterator[RawBatch]:
        win = self._windows = self._start()
        self.warnings = []
        self.packets = 0
        self._warned_ifaces = 0
        procs = ProcessTagger()
        pos = self._walker.data_start
        self.bytes_read = pos
        need = 0
        last_ts = 0
        over_warned = False
        while True:
            view = win.get(pos, max(self.chunk_bytes, need))
            at_eof = win.at_end(pos, view.shape[0])
            n, used, status, need, arrays = self._walker.walk(view, at_eof)
            ts, off, caplen, wirelen, linktype, iface = arrays
            if n:
                last_ts = int(ts[n - 1])
            self._check_linktypes(pos, last_ts)
            attributed = procs.tag(self._walker, view, used, arrays)
            if getattr(self._walker, "over_snaplen", 0) and not over_warned:
                over_warned = True
                pcap = isinstance(self._walker, PcapWalker)
                whose = "the file's" if pcap else "their interface's"
                self._warn(
                    None,
                    f"records longer than {whose} snaplen {self._walker.snaplen} (kept)",
                    last_ts,
                )
            if n:
                batch = RawBatch(
                    source=self.source,
                    buf=view,
                    buf_offset=pos,
                    first_frame=self.packets + 1,
                    ts_ns=ts,
                    off=off,
                    caplen=caplen,
                    wirelen=wirelen,
                    linktype=linktype,
                    iface=iface,
                    processes=attributed,
                )
                self.packets += n
                self.bytes_read = pos + used
                yield batch
            pos += used
            self.bytes_read = pos
            # the batches before the last few windows are done with (the capture hash may lag
            # a few windows behind the scan): their pages leave the process
            win.release(pos - _RESIDENT_WINDOWS * self.chunk_bytes)
            if status in (WALK_NEED_MORE, WALK_FULL):
                continue
            if status != WALK_END:
                if self._stream is not None:  # how much is ignored: the rest, read and hashed
                    self.size = self._stream.drain()
                self._warn(
                    pos,
                    f"{WALK_MESSAGES[status]}; kept {self.packets} packets before it, "
                    f"ignored {self.size - pos} bytes from here",
                    last_ts,
                )
            break
        if self._stream is not None and self._stream.eof:
            self.size = self._stream.end

    def close(self) -> None:
        if self._windows is not None:
            self._windows.close()
        if self._stream is not None:
            self._stream.close()
        self._fh.close()  # standard input's wrapper leaves descriptor 0 open (open_stdin)

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(
    path: str | os.PathLike[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES, use_mmap: bool = True
) -> CaptureReader:
    """Open a pcap, pcapng, btsnoop or PacketLogger file for streaming; raises CaptureError if it
    is not one. A FIFO is read as a stream; `-` is standard input (see `open_stdin`)."""
    if str(path) == STDIN:
        return open_stdin(chunk_bytes)
    return CaptureReader(path, chunk_bytes=chunk_bytes, use_mmap=use_mmap)


def open_stdin(chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> CaptureReader:
    """Standard input as a capture stream, named `<stdin>` (never closed here)."""
    raw = os.fdopen(0, "rb", buffering=0, closefd=False)  # sys.stdin may be replaced
    return CaptureReader(STDIN_SOURCE, chunk_bytes=chunk_bytes, stream=raw)
