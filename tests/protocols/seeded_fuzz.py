"""Mutation fuzzing of every dissector, seeded with what real traffic fed it.

Random bytes rarely get past a dissector's first check; mutations of real inputs do. The seeds
are recorded by wrapping every registered dissector while the pipeline scans real captures
(nDPI's labelled set, beside the checkout), a DICOM association encoded by pynetdicom and HL7
messages built with hl7apy; each seed is the list of calls one flow's dissector received
(`feed`, `gap`), each call's bytes as they came. A mutant changes 1-8 bytes or ranges of one
call (flips, interesting integers, cut lengths, splices, the protocols' own delimiters,
non-ASCII digits) or the calls themselves (dropped, split, swapped to the other direction, a
gap inserted).

The suite runs it through hypothesis (`test_protocols_fuzz_seeded.py`); a longer campaign runs
from the command line, each crash printed once with its traceback and kept as a pickle:

    python tests/protocols/seeded_fuzz.py --seconds 600 --seed 1
    python tests/protocols/seeded_fuzz.py --seconds 600 --whole-captures  # damaged files
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import random
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medsentry.events import encode_json
from medsentry.events.base import Endpoints, Event
from medsentry.protocols import registry
from medsentry.protocols.base import FlowContext, ParseError

HERE = Path(__file__).resolve().parent
NDPI = (HERE / ".." / ".." / ".." / "shared" / "data" / "ndpi_pcaps").resolve()
NDPI_PCAPS = NDPI / "tests" / "cfgs" / "default" / "pcap"
UDP = frozenset({"dns", "mdns", "llmnr", "dhcp", "dhcpv6", "snmp", "ssdp", "quic"})
MAX_SEEDS = 200  # per protocol, chosen at random (fixed seed)
MAX_SEED_BYTES = 1 << 15  # per flow: later calls are dropped from the seed

Op = tuple[str, int, Any]  # ("feed", direction, bytes) | ("gap", direction, length)
Seeds = dict[str, list[list[Op]]]
Frame = tuple[int, int, bytes]  # linktype, ethertype, frame


class _Recorder:
    """A dissector that records the calls it forwards to the real one."""

    def __init__(self, inner: Any, ops: list[Op]) -> None:
        self._inner, self._ops, self._size = inner, ops, 0

    def feed(self, direction: int, data: bytes, ts_ns: int) -> Any:
        if self._size < MAX_SEED_BYTES:
            self._ops.append(("feed", direction, bytes(data)))
            self._size += len(data)
        return self._inner.feed(direction, data, ts_ns)

    def gap(self, direction: int, length: int, ts_ns: int) -> Any:
        self._ops.append(("gap", direction, length))
        return self._inner.gap(direction, length, ts_ns)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def _recording(seeds: Seeds, frames: list[Frame]):
    registry.load()
    streams = dict(registry.STREAM_DISSECTORS)
    frame_list = list(registry.FRAME_DISSECTORS)

    def stream(proto: str, factory: Callable) -> Callable:
        def make(ctx: FlowContext) -> _Recorder:
            ops: list[Op] = []
            seeds.setdefault(proto, []).append(ops)
            return _Recorder(factory(ctx), ops)

        return make

    def frame(fd: Callable) -> Callable:
        def dissect(linktype: int, ethertype: int, data: bytes, ts: int, itf: int) -> Any:
            frames.append((linktype, ethertype, bytes(data)))
            return fd(linktype, ethertype, data, ts, itf)

        return dissect

    registry.STREAM_DISSECTORS.update({p: stream(p, f) for p, f in streams.items()})
    registry.FRAME_DISSECTORS[:] = [frame(fd) for fd in frame_list]
    try:
        yield
    finally:
        registry.STREAM_DISSECTORS.clear()
        registry.STREAM_DISSECTORS.update(streams)
        registry.FRAME_DISSECTORS[:] = frame_list


def _dicom_association() -> list[Op]:
    """An association made by pynetdicom: request, accept, a CT C-STORE, its response, release."""
    sys.path.insert(0, str(HERE / "dicom"))
    from dicom_build import (
        CT_IMAGE_STORAGE,
        EXPLICIT_LE,
        IMPLICIT_LE,
        associate_ac,
        associate_rq,
        c_store_rq,
        c_store_rsp,
        release_rp,
        release_rq,
    )
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    contexts = [(CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE])]
    return [
        ("feed", 0, associate_rq(contexts, calling="CT_SCANNER_7", called="PACS")),
        ("feed", 1, associate_ac(contexts, [(0, EXPLICIT_LE)])),
        ("feed", 0, c_store_rq(ds, 1, implicit=False)[:MAX_SEED_BYTES]),
        ("feed", 1, c_store_rsp(1, 0)),
        ("feed", 0, release_rq()),
        ("feed", 1, release_rp()),
    ]


def _hl7_exchanges() -> list[list[Op]]:
    """HL7 v2 over MLLP made with hl7apy (ADT^A01, ORU^R01 with vitals, custom delimiters)."""
    sys.path.insert(0, str(HERE / "hl7"))
    from hl7_build import ack, adt_a01, adt_custom_delimiters, mllp, oru_r01

    return [
        [("feed", 0, mllp(msg)), ("feed", 1, mllp(ack("CTRL0001")))]
        for msg in (adt_a01(), oru_r01(), adt_custom_delimiters())
    ]


def record(captures: Iterable[Path]) -> tuple[Seeds, list[Frame]]:
    """Scan `captures` and return what each dissector was fed (seeds per protocol, frames)."""
    from medsentry.errors import CaptureError
    from medsentry.pipeline import Pipeline, ScanConfig

    seeds: Seeds = {}
    frames: list[Frame] = []
    with _recording(seeds, frames):
        pipe = Pipeline(ScanConfig())
        for path in captures:
            with contextlib.suppress(CaptureError):
                pipe.scan_files([path], lambda batch: None)
    seeds.setdefault("dicom", []).append(_dicom_association())
    seeds.setdefault("hl7-mllp", []).extend(_hl7_exchanges())
    rnd = random.Random(0)
    for proto, lists in seeds.items():
        kept = [ops for ops in lists if any(op[0] == "feed" for op in ops)]
        seeds[proto] = rnd.sample(kept, MAX_SEEDS) if len(kept) > MAX_SEEDS else kept
    frames = rnd.sample(frames, min(len(frames), 20 * MAX_SEEDS))
    return {p: s for p, s in seeds.items() if s}, frames


# -- mutation --

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
DELIMITERS = (b"\r\n", b"\r", b"\n", b"|", b"^", b"~", b"\\", b"&", b"\x0b", b"\x1c\r", b"\x00",
              b":", b";", b"=", b",", b" ", b"%", b"\"", b"[", b"{", b"\xff\xff")  # fmt: skip


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 4, 8))):
        if not b:
            b.append(rnd.randrange(256))
            continue
        i = rnd.randrange(len(b))
        kind = rnd.randrange(9)
        if kind == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif kind == 1:
            b[i] = rnd.randrange(256)
        elif kind == 2:
            del b[i : i + rnd.randrange(1, 64)]
        elif kind == 3:
            b[i:i] = rnd.randbytes(rnd.randrange(1, 16))
        elif kind == 4:  # an interesting integer, 1, 2 or 4 bytes, either byte order
            width = rnd.choice((1, 2, 4))
            value = rnd.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            order = rnd.choice("<>")
            b[i : i + width] = struct.pack(order + {1: "B", 2: "H", 4: "I"}[width], value)
        elif kind == 5:
            del b[i:]
        elif kind == 6:  # splice a piece of itself elsewhere
            j = rnd.randrange(len(b))
            b[i:i] = b[j : j + rnd.randrange(1, 32)]
        elif kind == 7:
            b[i:i] = rnd.choice(DELIMITERS)
        else:  # a non-ASCII byte where text is expected ("²" passes str.isdigit)
            b[i:i] = rnd.choice((b"\xb2", b"\xb9", b"\xc2\xb2", b"\xd9\xa3", b"\xef\xbb\xbf"))
    return bytes(b)


def mutate(ops: list[Op], rnd: random.Random) -> list[Op]:
    ops = list(ops)
    for _ in range(rnd.choice((1, 1, 2, 3))):
        if not ops:
            break
        j = rnd.randrange(len(ops))
        kind, direction, value = ops[j]
        r = rnd.random()
        if kind == "feed" and r < 0.8:
            ops[j] = ("feed", direction, mutate_bytes(value, rnd))
        elif r < 0.85:
            del ops[j]
        elif r < 0.9 and kind == "feed":
            cut = rnd.randrange(len(value) + 1)
            ops[j : j + 1] = [("feed", direction, value[:cut]), ("feed", direction, value[cut:])]
        elif r < 0.95:
            ops.insert(j, ("gap", rnd.randrange(2), rnd.choice((1, 7, 1000, 1 << 20))))
        else:
            ops[j] = (kind, 1 - direction, value)
    return ops


# -- running --


def check_events(events: Iterable[Event] | None) -> None:
    for ev in events or ():
        assert isinstance(ev, Event), ev
        encode_json(ev)  # every event is a serializable record


def drive(dissector: Any, ops: list[Op]) -> None:
    """Feed `ops` to a dissector and close it; a ParseError is an answer (the flow layer
    records it and detaches the dissector), any other exception a failure."""
    try:
        for kind, direction, value in ops:
            if kind == "feed":
                check_events(dissector.feed(direction, value, 1))
            else:
                check_events(dissector.gap(direction, value, 1))
        check_events(dissector.close(2))
    except ParseError:
        pass


def run_stream(protocol: str, ops: list[Op]) -> None:
    """Drive one dissector with `ops`; a warning fails too (pydicom's go to stderr)."""
    transport = "udp" if protocol in UDP else "tcp"
    ep = Endpoints(client="10.0.0.2", server="10.0.0.1", transport=transport)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drive(registry.STREAM_DISSECTORS[protocol](FlowContext("fuzz", ep, b"k" * 32)), ops)


def run_frame(frame: Frame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dissect in registry.FRAME_DISSECTORS:
            with contextlib.suppress(ParseError):
                check_events(dissect(*frame, 1, 0))


def mutate_capture(data: bytes, rnd: random.Random) -> bytes:
    """A capture file damaged the way disks, transfers and hostile writers damage them: record
    and block lengths set to 0 or 0xffffffff, bytes changed, ranges cut, the file truncated,
    pieces of itself spliced in."""
    b = bytearray(data)
    for _ in range(rnd.choice((1, 2, 4, 16, 64))):
        if not b:
            break
        i = rnd.randrange(len(b))
        r = rnd.random()
        if r < 0.5:
            b[i] = rnd.randrange(256)
        elif r < 0.7:
            b[i : i + 4] = rnd.choice((b"\xff\xff\xff\xff", bytes(4), b"\x00\x00\x01\x00"))
        elif r < 0.8:
            del b[i : i + rnd.randrange(1, 100)]
        elif r < 0.9:
            del b[i:]
        else:
            j = rnd.randrange(len(b))
            b[i:i] = b[j : j + rnd.randrange(1, 200)]
    return bytes(b)


def scan_mutant(pipe: Any, path: Path, data: bytes, rnd: random.Random) -> None:
    """Scan a damaged copy of a capture through the whole pipeline (readers, decode, flows,
    identification, every dissector): events, or a MedsentryError (a CaptureError), only."""
    from medsentry.errors import MedsentryError

    path.write_bytes(mutate_capture(data, rnd))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.suppress(MedsentryError):
            pipe.scan_files([path], lambda batch: None)


def campaign(seeds: Seeds, frames: list[Frame], seconds: float, seed: int, out: Path) -> int:
    """Mutate and run until `seconds` pass; print each distinct crash once; return how many."""
    rnd = random.Random(seed)
    crashes: dict[tuple, Any] = {}
    protos = sorted(seeds)
    runs = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        runs += 1
        if frames and rnd.random() < 0.1:
            lt, et, data = rnd.choice(frames)
            case: tuple[str, Any] = ("frame", (lt, et, mutate_bytes(data, rnd)))
        else:
            proto = rnd.choice(protos)
            case = (proto, mutate(rnd.choice(seeds[proto]), rnd))
        try:
            if case[0] == "frame":
                run_frame(case[1])
            else:
                run_stream(*case)
        except Exception as exc:  # every exception but ParseError is the finding
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = (case[0], type(exc).__name__, Path(where.filename).name, where.lineno)
            if key not in crashes:
                crashes[key] = (case, traceback.format_exc())
                print(f"crash {key}\n{crashes[key][1]}", flush=True)
    print(f"{runs:,} runs, {len(crashes)} distinct crashes")
    out.write_bytes(pickle.dumps(crashes))
    return len(crashes)


def whole_captures(captures: list[Path], seconds: float, seed: int) -> int:
    """Damaged copies of the captures (under 200 KB each) through the whole pipeline."""
    import tempfile

    from medsentry.pipeline import Pipeline, ScanConfig

    small = [p.read_bytes() for p in captures if p.stat().st_size < 200_000]
    rnd = random.Random(seed)
    pipe = Pipeline(ScanConfig())
    crashes: set[tuple] = set()
    runs = 0
    end = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < end:
            runs += 1
            try:
                scan_mutant(pipe, Path(tmp) / "damaged.pcap", rnd.choice(small), rnd)
            except Exception as exc:  # every exception but a MedsentryError is the finding
                where = traceback.extract_tb(exc.__traceback__)[-1]
                key = (type(exc).__name__, Path(where.filename).name, where.lineno)
                if key not in crashes:
                    crashes.add(key)
                    print(f"crash {key}\n{traceback.format_exc()}", flush=True)
    print(f"{runs:,} damaged captures scanned, {len(crashes)} distinct crashes")
    return 1 if crashes else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--captures", type=Path, nargs="*", help="default: nDPI's labelled set")
    ap.add_argument("--out", type=Path, default=Path("seeded_fuzz_crashes.pkl"))
    ap.add_argument("--whole-captures", action="store_true", help="damage the capture files")
    a = ap.parse_args()
    captures = a.captures or sorted(NDPI_PCAPS.glob("*.pcap*"))
    if a.whole_captures:
        return whole_captures(captures, a.seconds, a.seed)
    seeds, frames = record(captures)
    print({p: len(s) for p, s in sorted(seeds.items())}, f"{len(frames)} frames", flush=True)
    return 1 if campaign(seeds, frames, a.seconds, a.seed, a.out) else 0


if __name__ == "__main__":
    raise SystemExit(main())
