"""Decode-kernel cost of 802.11 framing against Ethernet, on the same IP packets, one core.

Builds one batch of N Ethernet/IPv4 frames (TCP and UDP, varied addresses and ports) and the
same IP packets as radiotap (TSFT, Flags with FCS, Rate, Channel, signal; two present words)
+ 802.11 QoS data (ToDS) + LLC/SNAP + FCS, and a third batch where half the 802.11 frames are
protected (encrypted) data. Times `decode` on each (best of --repeat runs, in-memory, no file
I/O), prints a table, writes benchmarks/out/capture_wifi_decode.json.

    python benchmarks/capture_wifi_decode.py [--packets 1000000] [--size 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
from pathlib import Path

import numpy as np

from medsentry.capture.batch import (
    ERR_WLAN_PROTECTED,
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11_RADIOTAP,
    RawBatch,
)
from medsentry.capture.decode import decode

# radiotap: it_version, pad, it_len, present (TSFT|Flags|Rate|Channel|Signal|Ext), present 2
_RT_BODY = (
    struct.pack("<II", 0x8000_002F, 0)
    + bytes(4)
    + struct.pack("<QBBHHb", 0, 0x10, 12, 2437, 0xA0, -60)
)
RADIOTAP = struct.pack("<BBH", 0, 0, 4 + len(_RT_BODY)) + _RT_BODY
# QoS data, ToDS: FC, duration, A1 = BSSID, A2 = SA, A3 = DA, seq, QoS control
DOT11 = (
    bytes([0x88, 0x01, 0x2C, 0x00])
    + bytes.fromhex("f09fc2aabbcc3c71bf123456001b210a0b0c")
    + b"\x10\x00\x00\x00"
)
SNAP = bytes.fromhex("aaaa030000000800")


def ip_packets(n: int, size: int, seed: int = 0) -> np.ndarray:
    """n IPv4 packets of `size` bytes: half TCP, half UDP, addresses/ports varied."""
    rng = np.random.default_rng(seed)
    f = np.zeros((n, size), np.uint8)
    f[:, 0] = 0x45
    f[:, 2:4] = [size >> 8, size & 0xFF]
    f[:, 8] = 64
    tcp = rng.random(n) < 0.5
    f[:, 9] = np.where(tcp, 6, 17)
    src = (rng.integers(0, 1 << 16, n, dtype=np.uint32) | 0x0A000000).astype(">u4")
    f[:, 12:16] = np.frombuffer(src.tobytes(), np.uint8).reshape(n, 4)
    f[:, 16:20] = [10, 1, 0, 4]
    ports = rng.integers(1024, 65535, n, dtype=np.uint16).astype(">u2")
    f[:, 20:22] = np.frombuffer(ports.tobytes(), np.uint8).reshape(n, 2)
    f[:, 22:24] = [0, 104]
    f[tcp, 32] = 0x50
    f[tcp, 33] = 0x18
    f[~tcp, 24:26] = [(size - 20) >> 8, (size - 20) & 0xFF]
    return f


def framed(ip: np.ndarray, head: bytes, tail: int) -> np.ndarray:
    n, size = ip.shape
    out = np.zeros((n, len(head) + size + tail), np.uint8)
    out[:, : len(head)] = np.frombuffer(head, np.uint8)
    out[:, len(head) : len(head) + size] = ip
    return out


def batch(frames: np.ndarray, linktype: int) -> RawBatch:
    n, size = frames.shape
    length = np.full(n, size, np.uint32)
    return RawBatch(
        source="bench",
        buf=frames.reshape(-1),
        buf_offset=0,
        first_frame=1,
        ts_ns=np.arange(n, dtype=np.int64) * 1000,
        off=np.arange(n, dtype=np.int64) * size,
        caplen=length,
        wirelen=length.copy(),
        linktype=np.full(n, linktype, np.uint16),
        iface=np.zeros(n, np.uint16),
    )


def best(raw: RawBatch, repeat: int) -> float:
    decode(raw)  # compile / warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        decode(raw)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=500, help="IP packet bytes")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    ip = ip_packets(a.packets, a.size)
    eth = framed(ip, bytes.fromhex("02000000000102000000000208 00".replace(" ", "")), 0)
    wlan = framed(ip, RADIOTAP + DOT11 + SNAP, 4)
    enc = wlan.copy()
    enc[::2, len(RADIOTAP) + 1] |= 0x40  # Protected Frame bit on every other frame
    cases = {
        "Ethernet (baseline)": batch(eth, LINKTYPE_ETHERNET),
        "radiotap + 802.11 QoS + SNAP + FCS": batch(wlan, LINKTYPE_IEEE802_11_RADIOTAP),
        "same, half protected": batch(enc, LINKTYPE_IEEE802_11_RADIOTAP),
    }
    pb = decode(cases["same, half protected"])
    assert int((pb.err == ERR_WLAN_PROTECTED).sum()) == (a.packets + 1) // 2
    assert int((decode(cases["radiotap + 802.11 QoS + SNAP + FCS"]).ip_ver == 4).sum()) == a.packets
    load = os.getloadavg()[0]
    rows = []
    base = None
    for name, raw in cases.items():
        t = best(raw, a.repeat)
        base = base or t
        rows.append(
            {
                "case": name,
                "seconds": t,
                "mpps": a.packets / t / 1e6,
                "ns_per_packet": t / a.packets * 1e9,
                "ratio": t / base,
            }
        )
    print(
        f"decode kernel, {a.packets:,} packets of {a.size} B IP, "
        f"best of {a.repeat}, load {load:.2f}"
    )
    print("| case | Mpackets/s | ns/packet | time vs Ethernet |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['mpps']:.1f} | {r['ns_per_packet']:.1f} | {r['ratio']:.2f}x |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    meta = {"packets": a.packets, "size": a.size, "repeat": a.repeat, "load1": load, "rows": rows}
    (out / "capture_wifi_decode.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
