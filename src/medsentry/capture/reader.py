"""Open a capture file (pcap, pcapng or btsnoop by magic, else PacketLogger by its first records)
and stream it as RawBatches.

The file is read in windows of about `chunk_bytes` (mmap views when the file can be mapped,
otherwise `readinto` fresh buffers), so memory stays bounded whatever the capture size. A
compiled kernel walks the records of each window; a record cut by the window's end starts the
next window. Damage after the file header keeps every packet before it, records a
`DecodeWarning` naming the file and byte offset, and ends the walk; damage in the file header
raises `CaptureError`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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
_RESIDENT_WINDOWS = 6  # mapped windows kept resident behind the read position
_HEAD_LEN = 64
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


_NOT_REGULAR = "not a regular file (pipes and devices are not read)"


class CaptureReader:
    """One capture file. Iterate for RawBatches; see `format`, `linktypes`, `warnings`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        use_mmap: bool = True,
    ) -> None:
        self.path = Path(path)
        self.source = str(path)
        self.chunk_bytes = max(int(chunk_bytes), 4096)
        self._use_mmap = use_mmap
        try:
            # a FIFO's open() would block until a writer came: refused before opening
            if stat.S_ISFIFO(os.stat(self.path).st_mode):
                raise CaptureError(_NOT_REGULAR, self.source)
            self._fh = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise CaptureError(f"cannot open capture: {exc.strerror}", self.source) from None
        try:
            st = os.fstat(self._fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CaptureError(_NOT_REGULAR, self.source)
            self.size = st.st_size
            head = self._fh.read(_HEAD_LEN)
            self._walker = self._detect(head)
        except BaseException:
            self._fh.close()
            raise
        self.format: str = self._walker.format
        self.warnings: list[DecodeWarning] = []
        self.packets = 0
        self.bytes_read = 0
        self._warned_ifaces = 0
        self._windows: _Windows | None = None

    def _detect(self, head: bytes) -> PcapWalker | PcapngWalker | BtsnoopWalker | PklgWalker:
        if len(head) < 4:
            raise CaptureError(
                f"file too short to be a capture ({len(head)} bytes)", self.source, len(head)
            )
        if head[:4] in MAGICS:
            self._fh.seek(0)
            return PcapWalker(self._fh.read(FILE_HEADER_LEN), self.source)
        if head[:4] == SHB_MAGIC:
            return PcapngWalker(head, self.source, self.size)
        if head[:8] == BTSNOOP_MAGIC:
            return BtsnoopWalker(head, self.source)
        for magic, what in _OTHER_MAGICS.items():
            if head.startswith(magic):
                raise CaptureError(what, self.source, 0)
        self._fh.seek(0)
        big = probe_pklg(self._fh.read(PROBE_BYTES))
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

    def __iter__(self) -> Iterator[RawBatch]:
        if self._windows is not None:
            self._windows.close()
        self._fh.seek(0)
        self._walker = self._detect(self._fh.read(_HEAD_LEN))
        self.warnings = []
        self.packets = 0
        self._warned_ifaces = 0
        procs = ProcessTagger()
        win = self._windows = _Windows(self._fh, self.size, self._use_mmap, self.source)
        pos = self._walker.data_start
        self.bytes_read = pos
        need = 0
        last_ts = 0
        over_warned = False
        while True:
            view = win.get(pos, max(self.chunk_bytes, need))
            at_eof = pos + view.shape[0] >= self.size
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
                self._warn(
                    pos,
                    f"{WALK_MESSAGES[status]}; kept {self.packets} packets before it, "
                    f"ignored {self.size - pos} bytes from here",
                    last_ts,
                )
            break

    def close(self) -> None:
        if self._windows is not None:
            self._windows.close()
        self._fh.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(
    path: str | os.PathLike[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES, use_mmap: bool = True
) -> CaptureReader:
    """Open a pcap, pcapng, btsnoop or PacketLogger file for streaming; raises CaptureError if it
    is not one."""
    return CaptureReader(path, chunk_bytes=chunk_bytes, use_mmap=use_mmap)
