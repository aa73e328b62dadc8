"""What the flow-application tests share: two hosts, an HTTP exchange, the identifier and a
dissector that records what it is handed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture
from medsentry.capture.writer import Host
from medsentry.flows import kernels as K
from medsentry.flows.apps import load_identifier
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.protocols.base import FlowContext

T0 = 1_700_000_000 * 10**9
C = Host(ip="10.1.0.5", mac="02:00:00:00:01:05")
S = Host(ip="10.1.0.9", mac="02:00:00:00:01:09")
HTTP_REQ = b"GET /index.html HTTP/1.1\r\nHost: ehr\r\nAccept: */*\r\n\r\n"
HTTP_RESP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"

identify = load_identifier()
needs_identify = pytest.mark.skipif(identify is None, reason="medsentry.protocols.identify absent")


class Recorder:
    """A dissector that keeps what the flow layer hands it (the test's observer)."""

    protocol = "recorder"
    whole_stream = True
    made: ClassVar[list[Recorder]] = []

    def __init__(self, ctx: FlowContext):
        self.ctx = ctx
        self.data = [bytearray(), bytearray()]
        self.items: list[tuple[int, object]] = []
        self.closed = False
        type(self).made.append(self)  # a subclass with its own `made` keeps its own

    def feed(self, direction, data, ts_ns):
        self.data[direction] += data
        self.items.append((direction, len(data)))
        return ()

    def gap(self, direction, length, ts_ns):
        self.items.append((direction, ("gap", length)))
        return ()

    def close(self, ts_ns):
        self.closed = True
        return ()


def scan_file(path: Path, cls: Any, chunk: int = 1 << 20, **cfg: Any) -> tuple[list, int]:
    """Every event of a capture scanned with `cls` as every flow's dissector, and the number
    of packets whose payload the kernel handed to Python (EMITTED)."""
    eng = FlowEngine(
        EngineConfig(phi_key=b"test-key", **cfg),
        identify=identify,
        dissector_lookup=lambda proto: cls,
    )
    events, emitted = [], 0
    with open_capture(path, chunk_bytes=chunk) as reader:
        for raw in reader:
            pb = decode(raw)
            events += eng.process(pb)
            emitted += int(((eng.table.pkt_dir[: len(pb)] & K.EMITTED) != 0).sum())
    events += eng.finish()
    return events, emitted
