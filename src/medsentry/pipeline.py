"""The scan pipeline: capture files (or a live source) -> decode -> flows -> events -> sink.

One `FlowEngine` per capture: its flows carry the capture's `capture_id`, the SHA-256 of the
file's bytes, computed from the reader's own chunks as they are scanned (the file is read once).
Because that id is known only at the end of the file, a file's events are handed to the sink when
the file is done; past `max_buffered_events` the rest of the file is hashed first so that events
can stream with bounded memory. A live source has no capture id and streams batch by batch.

A stream (standard input, a FIFO) cannot be hashed ahead: its id is known only at its end. Its
events past `max_buffered_events` are spooled to an anonymous temporary file (`_Spool`) and handed
to the sink, with the id, once the stream has ended: memory stays bounded whatever its length,
and the sink (the store's CaptureWriter) gets the same events, in the same order, with the same
id as for the same bytes in a file. (Storing them under a provisional id and re-keying at the end
was the alternative: every flow row and every event key, a BLAKE2b of the capture id, would have
to be rewritten, and a rescan's rows would collide with the renamed ones; the analysis engines
would have seen the provisional id too.)
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import operator
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from medsentry.capture.background import OrderedWork
from medsentry.capture.batch import DECODE_ERRORS, RawBatch
from medsentry.events.base import Event
from medsentry.events.flow import FlowRecord
from medsentry.flows.apps import load_identifier
from medsentry.flows.engine import EngineConfig, FlowEngine

if TYPE_CHECKING:
    from medsentry.capture.reader import CaptureReader

log = logging.getLogger(__name__)

Sink = Callable[[list[Event]], None]
Progress = Callable[[int, int], None]
_HASH_READ = 1 << 20


@dataclass
class ScanConfig:
    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    tcp_linger_s: float = 2.0
    first_bytes: int = 4096  # bytes per direction given to protocol identification
    udp_first_datagrams: int = 2
    max_pending_bytes: int = 256 * 1024  # out-of-order TCP bytes held per direction
    phi_key: bytes | None = None  # default: the installation's key (medsentry.paths.phi_key)
    identify: bool = True
    dissectors: bool = True
    chunk_bytes: int = 32 << 20  # capture reader window
    event_batch: int = 10_000  # events per sink call
    max_buffered_events: int = 200_000


@dataclass
class ScanStats:
    files: int = 0
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    protocols: dict[str, int] = field(default_factory=dict)
    hosts: int = 0
    warnings: int = 0
    elapsed_s: float = 0.0
    packets_per_s: float = 0.0
    decode_errors: dict[str, int] = field(default_factory=dict)
    capture_ids: list[str] = field(default_factory=list)  # per file, in order (SHA-256)
    link_types: list[list[int]] = field(default_factory=list)  # per file: of every interface


class _CaptureHash:
    """SHA-256 of a file fed from the reader's windows, on a worker thread (`OrderedWork`);
    missing ranges are read from the file."""

    can_hash_ahead = True  # the rest of a file can be read before the scan gets there

    def __init__(self, path: Path):
        self.path = path
        self.h = hashlib.sha256()
        self.pos = 0  # bytes handed to the hash so far
        self.done: str | None = None
        self._work = OrderedWork("capture-hash")

    def _read(self, start: int, upto: int) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < upto:
                chunk = fh.read(min(_HASH_READ, upto - pos))
                if not chunk:
                    break
                self.h.update(chunk)
                pos += len(chunk)

    def update(self, raw: RawBatch) -> None:
        if self.done is not None:
            return
        start = raw.buf_offset
        if start > self.pos:
            self._work.submit(self._read, self.pos, start)
            self.pos = start
        end = start + raw.buf.shape[0]
        if end > self.pos >= start:
            self._work.submit(self.h.update, raw.buf[self.pos - start :])
            self.pos = end

    def abort(self) -> None:
        """Drop the queued windows and wait for the one being hashed."""
        self._work.close()
        self.done = ""

    def finish(self) -> str:
        if self.done is None:
            size = os.path.getsize(self.path)
            if size > self.pos:
                self._work.submit(self._read, self.pos, size)
                self.pos = size
            self._work.wait()
            self._work.close()
            self.done = self.h.hexdigest()
        return self.done


class _StreamId:
    """The capture id of a stream: the reader hashes every byte as it reads it (there is no file
    to read missing ranges from, and nothing can be hashed ahead)."""

    can_hash_ahead = False

    def __init__(self, reader: CaptureReader):
        self.reader = reader
        self.done: str | None = None

    def update(self, raw: RawBatch) -> None:
        """The reader has hashed the batch's bytes already."""

    def abort(self) -> None:
        self.done = ""

    def finish(self) -> str:
        """The SHA-256 of the whole stream (what is left of it is read and hashed first)."""
        if self.done is None:
            self.done = self.reader.sha256()
        return self.done


class _Spool:
    """Events held on disk (msgpack, length-prefixed batches) until their capture id is known.

    An anonymous temporary file (unlinked at once, mode 0600): nothing is left behind, even by a
    killed scan. Events hold no PHI (events/base.py), so the spool holds none either.
    """

    def __init__(self) -> None:
        from medsentry.events.base import event_types

        self._fh = tempfile.TemporaryFile(prefix="medsentry-spool-")  # noqa: SIM115
        self._enc = msgspec.msgpack.Encoder()
        union = functools.reduce(operator.or_, event_types())
        self._dec = msgspec.msgpack.Decoder(list[union])  # type: ignore[valid-type]

    def write(self, events: list[Event], batch: int) -> None:
        for i in range(0, len(events), batch):
            blob = self._enc.encode(events[i : i + batch])
            self._fh.write(len(blob).to_bytes(8, "little"))
            self._fh.write(blob)

    def replay(self) -> Iterator[list[Event]]:
        """The spooled batches in order; one in memory at a time."""
        fh = self._fh
        fh.flush()
        fh.seek(0)
        while head := fh.read(8):
            yield self._dec.decode(fh.read(int.from_bytes(head, "little")))

    def close(self) -> None:
        self._fh.close()


class _Out:
    """Events of one capture on their way to the sink."""

    def __init__(self, sink: Sink, batch: int, limit: int, hasher: _CaptureHash | _StreamId | None):
        self.sink = sink
        self.batch = batch
        self.limit = limit
        self.hasher = hasher
        self.held: list[Event] = []
        self.capture_id: str | None = None
        self.spool: _Spool | None = None  # a stream's events past `limit`

    def add(self, events: list[Event]) -> None:
        if not events:
            return
        if self.hasher is not None and self.capture_id is None:
            self.held.extend(events)
            if len(self.held) > self.limit:
                if self.hasher.can_hash_ahead:
                    self.capture_id = self.hasher.finish()  # hash ahead, then stream
                    self._send(self.held)
                else:  # a stream: to disk until its end gives the id
                    if self.spool is None:
                        self.spool = _Spool()
                    self.spool.write(self.held, self.batch)
                self.held = []
            return
        self._send(events)

    def close(self) -> None:
        if self.hasher is not None and self.capture_id is None:
            self.capture_id = self.hasher.finish()
        if self.spool is not None:
            for events in self.spool.replay():
                self._send(events)
            self.discard()
        self._send(self.held)
        self.held = []

    def discard(self) -> None:
        """Drop the spool (a failed scan: nothing of it goes to the sink)."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _send(self, events: list[Event]) -> None:
        cid = self.capture_id
        if cid is not None:
            events = [
                msgspec.structs.replace(e, capture_id=cid)
                if type(e) is FlowRecord and e.capture_id is None
                else e
                for e in events
            ]
        for i in range(0, len(events), self.batch):
            self.sink(events[i : i + self.batch])


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a file is scanned.

    The scan makes many short-lived, acyclic objects (events, per-flow state); reference
    counting frees them, and generational collections over the events held for the file cost
    ~15% of the scan. Collection resumes when the file is done.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Pipeline:
    """Scans captures into events. One instance may scan many files, one after another."""

    def __init__(self, config: ScanConfig | None = None, *, dissector_lookup=None):
        """`dissector_lookup(protocol) -> factory | None` replaces the registry (embedding)."""
        self.config = cfg = config or ScanConfig()
        self._lookup = dissector_lookup
        self._identify = load_identifier() if cfg.identify else None
        self._phi_key = cfg.phi_key
        if self._phi_key is None and cfg.dissectors:
            from medsentry.paths import phi_key

            self._phi_key = phi_key()
        self._frames = self._frame_dissectors() if cfg.dissectors else []
        self._out: _Out | None = None  # the file being scanned

    @staticmethod
    def _frame_dissectors() -> list:
        from medsentry.protocols import registry

        registry.load()
        return list(registry.FRAME_DISSECTORS)

    def _engine(self) -> FlowEngine:
        cfg = self.config
        return FlowEngine(
            EngineConfig(
                idle_timeout_s=cfg.idle_timeout_s,
                active_timeout_s=cfg.active_timeout_s,
                tcp_linger_s=cfg.tcp_linger_s,
                first_bytes=cfg.first_bytes,
                udp_first_datagrams=cfg.udp_first_datagrams,
                max_pending_bytes=cfg.max_pending_bytes,
                dissectors=cfg.dissectors,
                phi_key=self._phi_key,
            ),
            identify=self._identify,
            frame_dissectors=self._frames,
            dissector_lookup=self._lookup,
        )

    @property
    def capture_id(self) -> str | None:
        """SHA-256 of the file being scanned, once known (its events are held until it is)."""
        return self._out.capture_id if self._out is not None else None

    def scan_files(
        self,
        paths: Sequence[str | os.PathLike[str]],
        sink: Sink,
        progress: Progress | None = None,
    ) -> ScanStats:
        """Scan capture files in order; raises CaptureError for a file that is not a capture.

        `-` is standard input and a FIFO is read as a stream (see `scan_reader`)."""
        from medsentry.capture.reader import STDIN, open_capture

        t0 = time.perf_counter()
        stats = _Totals()
        files = [Path(p) for p in paths]
        total = sum(
            p.stat().st_size for p in files if str(p) != STDIN and p.exists() and p.is_file()
        )
        done = 0
        for path in files:
            reader = functools.partial(open_capture, path, chunk_bytes=self.config.chunk_bytes)
            done += self._scan(reader, sink, progress, done, total, stats)
        return stats.result(time.perf_counter() - t0)

    def scan_reader(
        self, reader: CaptureReader, sink: Sink, progress: Progress | None = None
    ) -> ScanStats:
        """Scan one open capture (a file or a stream: `open_capture`, `open_stdin`); the
        caller closes it. Progress gets (bytes read, total): total 0 for a stream (unknown)."""
        t0 = time.perf_counter()
        stats = _Totals()
        total = 0 if reader.streamed else reader.size
        self._scan(lambda: contextlib.nullcontext(reader), sink, progress, 0, total, stats)
        return stats.result(time.perf_counter() - t0)

    def _scan(
        self,
        opener: Callable[[], contextlib.AbstractContextManager[CaptureReader]],
        sink: Sink,
        progress: Progress | None,
        done: int,
        total: int,
        stats: _Totals,
    ) -> int:
        """One capture into `sink`; returns its size in bytes."""
        from medsentry.capture.decode import decode

        engine = self._engine()
        out: _Out | None = None
        # The collector stays paused until the held events are handed out too: resumed
        # first, its first passes would traverse all of them (and the sink's work on them).
        with _gc_paused():
            with opener() as reader:
                hasher = _StreamId(reader) if reader.streamed else _CaptureHash(reader.path)
                out = _Out(sink, self.config.event_batch, self.config.max_buffered_events, hasher)
                self._out = out
                try:
                    for raw in reader:
                        hasher.update(raw)
                        out.add(engine.process(decode(raw)))
                        if progress is not None:
                            progress(done + reader.bytes_read, total)
                    out.add(engine.finish())
                    out.add(list(reader.warnings))
                    stats.warnings += len(reader.warnings)
                    stats.link_types.append(list(reader.linktypes))  # pcapng: known once read
                    out.capture_id = hasher.finish()  # before the reader unmaps its windows
                except BaseException:
                    hasher.abort()  # off the file's windows before the reader lets them go
                    out.discard()
                    raise
                size = reader.size
            try:
                out.close()
            except BaseException:
                out.discard()
                raise
        stats.capture_ids.append(out.capture_id)
        stats.add(engine)
        c = engine.counters  # counts only: a file's name may say whose capture it is
        log.debug(
            "capture %s: %d packets, %d flows, %d warnings",
            out.capture_id[:16], c.packets, c.flows, c.warnings,
        )  # fmt: skip
        if progress is not None:
            progress(done + size, total)
        return size

    def run_source(
        self,
        source: Iterable[RawBatch],
        sink: Sink,
        progress: Progress | None = None,
        capture_id: str | None = None,
    ) -> ScanStats:
        """Scan a stream of RawBatches (a live capture); events go out batch by batch.

        Flows expire on packet time as in a file; when the source ends (the capture is
        stopped), every open flow is ended and handed out.
        """
        from medsentry.capture.decode import decode

        t0 = time.perf_counter()
        stats = _Totals()
        engine = self._engine()
        engine.capture_id = capture_id
        out = _Out(sink, self.config.event_batch, self.config.max_buffered_events, None)
        seen = 0
        try:
            for raw in source:
                if len(raw) == 0:  # a live source with nothing to say: expire on the clock
                    out.add(engine.tick(time.time_ns()))
                    continue
                out.add(engine.process(decode(raw)))
                seen += int(raw.buf.shape[0])
                if progress is not None:
                    progress(seen, 0)
        finally:
            out.add(engine.finish())
            out.close()
            stats.add(engine)
        return stats.result(time.perf_counter() - t0)


class _Totals:
    def __init__(self) -> None:
        self.files = 0
        self.packets = 0
        self.bytes = 0
        self.flows = 0
        self.protocols: Counter = Counter()
        self.hosts: set = set()
        self.warnings = 0
        self.errors: Counter = Counter()
        self.capture_ids: list[str] = []
        self.link_types: list[list[int]] = []

    def add(self, engine: FlowEngine) -> None:
        c = engine.counters
        self.files += 1
        self.packets += c.packets
        self.bytes += c.bytes
        self.flows += c.flows
        self.protocols.update(c.protocols)
        self.hosts |= c.hosts
        self.warnings += c.warnings
        for code, n in c.decode_errors.items():
            self.errors[DECODE_ERRORS.get(code, f"error {code}")] += n

    def result(self, elapsed: float) -> ScanStats:
        return ScanStats(
            files=self.files,
            packets=self.packets,
            bytes=self.bytes,
            flows=self.flows,
            protocols=dict(self.protocols.most_common()),
            hosts=len(self.hosts),
            warnings=self.warnings,
            elapsed_s=elapsed,
            packets_per_s=self.packets / elapsed if elapsed > 0 else 0.0,
            decode_errors=dict(self.errors),
            capture_ids=self.capture_ids,
            link_types=self.link_types,
        )
