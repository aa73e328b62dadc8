"""Packets per second of the capture reader, and of reader + decode kernel, on one core.

Generates its own capture with NumPy (Ethernet/IPv4/TCP or UDP, ~500-byte frames, varied
addresses and ports), reads it from the page cache, and prints a table; JSON goes to
benchmarks/out/bench_capture_decode.json.

    python benchmarks/bench_capture_decode.py [--packets 400000] [--size 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """n Ethernet/IPv4 frames of `size` bytes: half TCP, half UDP, addresses/ports varied."""
    rng = np.random.default_rng(seed)
    f = np.zeros((n, size), np.uint8)
    f[:, 0:6] = [0x02, 0, 0, 0, 0, 1]
    f[:, 6:12] = [0x02, 0, 0, 0, 0, 2]
    f[:, 12:14] = [0x08, 0x00]
    ip = 14
    f[:, ip] = 0x45
    tl = size - 14
    f[:, ip + 2 : ip + 4] = [tl >> 8, tl & 0xFF]
    f[:, ip + 8] = 64
    tcp = rng.random(n) < 0.5
    f[:, ip + 9] = np.where(tcp, 6, 17)
    f[:, ip + 12 : ip + 16] = np.frombuffer(
        (rng.integers(0, 1 << 16, n, dtype=np.uint32) | 0x0A000000).astype(">u4").tobytes(),
        np.uint8,
    ).reshape(n, 4)
    f[:, ip + 16 : ip + 20] = [10, 1, 0, 4]
    l4 = ip + 20
    f[:, l4 : l4 + 2] = np.frombuffer(
        rng.integers(1024, 65535, n, dtype=np.uint16).astype(">u2").tobytes(), np.uint8
    ).reshape(n, 2)
    f[:, l4 + 2 : l4 + 4] = [0, 104]
    f[tcp, l4 + 12] = 0x50
    f[tcp, l4 + 13] = 0x18
    udp_len = tl - 20
    f[~tcp, l4 + 4 : l4 + 6] = [udp_len >> 8, udp_len & 0xFF]
    return f


def write_pcap(path: Path, fr: np.ndarray) -> None:
    n, size = fr.shape
    rec = np.zeros((n, 16 + size), np.uint8)
    hdr = np.zeros((n, 4), "<u4")
    hdr[:, 0] = 1_700_000_000 + np.arange(n) // 1_000_000
    hdr[:, 1] = np.arange(n) % 1_000_000
    hdr[:, 2] = size
    hdr[:, 3] = size
    rec[:, :16] = hdr.view(np.uint8).reshape(n, 16)
    rec[:, 16:] = fr
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        rec.tofile(fh)


def write_pcapng(path: Path, fr: np.ndarray) -> None:
    n, size = fr.shape
    pad = -size % 4
    blen = 32 + size + pad
    rec = np.zeros((n, blen), np.uint8)
    hdr = np.zeros((n, 7), "<u4")
    ts = 1_700_000_000_000_000 + np.arange(n, dtype=np.uint64)
    hdr[:, 0] = 6
    hdr[:, 1] = blen
    hdr[:, 2] = 0
    hdr[:, 3] = (ts >> np.uint64(32)).astype(np.uint32)
    hdr[:, 4] = (ts & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hdr[:, 5] = size
    hdr[:, 6] = size
    rec[:, :28] = hdr.view(np.uint8).reshape(n, 28)
    rec[:, 28 : 28 + size] = fr
    rec[:, blen - 4 :] = np.frombuffer(struct.pack("<I", blen), np.uint8)
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20)
    with path.open("wb") as fh:
        fh.write(shb + idb)
        rec.tofile(fh)


def run(path: Path, with_decode: bool, use_mmap: bool) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, packets): CPU time is the fairer number
    on a shared machine, wall time the one a user sees."""
    t, c = time.perf_counter(), time.process_time()
    n = 0
    with open_capture(path, use_mmap=use_mmap) as reader:
        for raw in reader:
            if with_decode:
                decode(raw)
            n += len(raw)
    return time.perf_counter() - t, time.process_time() - c, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=400_000)
    ap.add_argument("--size", type=int, default=500, help="frame bytes")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    fr = frames(args.packets, args.size)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for fmt, writer in (("pcap", write_pcap), ("pcapng", write_pcapng)):
            path = Path(d) / f"bench.{fmt}"
            writer(path, fr)
            mb = path.stat().st_size / 1e6
            run(path, True, True)  # warm: page cache and compiled kernels
            for use_mmap in (True, False):
                for with_decode in (False, True):
                    runs = [run(path, with_decode, use_mmap) for _ in range(args.repeat)]
                    best = min(r[0] for r in runs)
                    cpu = min(r[1] for r in runs)
                    results.append(
                        {
                            "format": fmt,
                            "io": "mmap" if use_mmap else "readinto",
                            "stage": "read+decode" if with_decode else "read",
                            "packets": args.packets,
                            "frame_bytes": args.size,
                            "seconds": round(best, 4),
                            "mpps": round(args.packets / best / 1e6, 2),
                            "cpu_seconds": round(cpu, 4),
                            "mpps_cpu": round(args.packets / cpu / 1e6, 2),
                            "gbytes_per_s": round(mb / best / 1e3, 2),
                        }
                    )
    print(f"{args.packets} packets of {args.size} bytes, best of {args.repeat}, one core")
    print(f"{'format':8} {'io':9} {'stage':12} {'Mpkt/s wall':>12} {'Mpkt/s cpu':>11} {'GB/s':>6}")
    for r in results:
        print(
            f"{r['format']:8} {r['io']:9} {r['stage']:12} {r['mpps']:12.2f} {r['mpps_cpu']:11.2f}"
            f" {r['gbytes_per_s']:6.2f}"
        )
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "results": results}
    (out / "bench_capture_decode.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
