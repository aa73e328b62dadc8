"""Claim: a whole scan (read, decode, flow table, identification, events) runs >= 3 M packets/s
on one core, on a 1M-packet capture of several thousand TCP/UDP flows.

The capture is generated with NumPy (Ethernet/IPv4/TCP or UDP frames, real sequence numbers,
handshakes, protocol greetings on the first data segment) and written with PcapWriter.write_batch.
Prints a table, writes benchmarks/out/flows_scan_speed.json.

    python benchmarks/flows_scan_speed.py [--packets 1000000] [--flows 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from medsentry.capture.writer import PcapWriter
from medsentry.pipeline import Pipeline, ScanConfig

OUT = Path(__file__).resolve().parent / "out"
SERVER_PORTS = np.array([104, 2575, 80, 443, 8080, 5000, 1883, 11112, 3306, 22], np.uint16)
GREETINGS = {
    80: b"GET /index.html HTTP/1.1\r\nHost: pacs\r\n\r\n",
    8080: b"GET /fhir/Patient?_count=1 HTTP/1.1\r\nHost: ehr\r\n\r\n",
    22: b"SSH-2.0-OpenSSH_9.2p1\r\n",
}


BURST = 8


def make_capture(
    path: Path, n_packets: int, n_flows: int, max_payload: int = 600, seed: int = 0
) -> int:
    rng = np.random.default_rng(seed)
    per = rng.multinomial(n_packets - 3 * n_flows, np.full(n_flows, 1 / n_flows)) + 3
    flow = np.repeat(np.arange(n_flows), per)
    k = np.arange(n_packets) - np.repeat(np.cumsum(per) - per, per)  # packet index in flow
    udp = (np.arange(n_flows) % 10) == 9
    is_udp = udp[flow]
    # handshake SYN (c), SYN-ACK (s), ACK (c); then bursts of BURST packets: one side sends
    # data, every fourth packet is the peer's ACK (no payload), as in a TCP window
    burst = (k - 3) // BURST
    burst_dir = rng.integers(0, 2, (n_flows, int(burst.max()) + 2))[flow, np.maximum(burst, 0)]
    ack = ((k - 3) % 4) == 3
    d = np.where(k == 1, 1, np.where(k < 3, 0, burst_dir ^ ack))
    d = np.where(is_udp, rng.integers(0, 2, n_packets), d)
    pl = np.where((k < 3) | ack, 0, rng.integers(0, 2 * max_payload, n_packets))
    pl = np.where(k == 3, max(len(g) for g in GREETINGS.values()) + 16, pl).astype(np.int64)
    pl = np.where(is_udp, rng.integers(20, 300, n_packets), pl)
    d = np.where(k == 3, 0, d)  # the first data segment is the client's
    start = rng.integers(0, 60 * 10**9, n_flows)
    gap = rng.integers(1_000_000, 50_000_000, n_flows)
    ts = start[flow] + np.maximum(burst, 0) * gap[flow] + (k - 3) % BURST * 12_000 + k
    order = np.argsort(ts, kind="stable")
    # per-direction sequence numbers: cumulative payload before this packet in its direction
    isn = rng.integers(0, 2**32, (n_flows, 2))
    seq = np.zeros(n_packets, np.int64)
    for dd in (0, 1):
        m = d == dd
        cum = np.cumsum(np.where(m, pl, 0))
        before = cum - np.where(m, pl, 0)
        first = np.repeat(np.cumsum(per) - per, per)
        base = (cum - np.where(m, pl, 0))[first]
        seq = np.where(m, isn[flow, dd] + 1 + (before - base), seq)
    seq = np.where(k < 2, isn[flow, d], seq) % 2**32
    flags = np.where(k == 0, 0x02, np.where(k == 1, 0x12, 0x10 | np.where(pl > 0, 0x08, 0)))
    cip = 0x0A000000 + 10 + (np.arange(n_flows) % 4000)
    sip = 0x0A010000 + 1 + (np.arange(n_flows) % 50)
    cport = 30000 + np.arange(n_flows) % 30000
    sport = SERVER_PORTS[np.arange(n_flows) % 10]
    hdr = 14 + 20 + np.where(is_udp, 8, 20)
    length = hdr + pl
    off = np.concatenate([[0], np.cumsum(length[order])[:-1]])
    buf = np.zeros(int(length.sum()), np.uint8)
    o = off
    f = flow[order]
    dd = d[order]
    u = is_udp[order]
    src = np.where(dd == 0, cip[f], sip[f]).astype(">u4")
    dst = np.where(dd == 0, sip[f], cip[f]).astype(">u4")
    sp = np.where(dd == 0, cport[f], sport[f]).astype(">u2")
    dp = np.where(dd == 0, sport[f], cport[f]).astype(">u2")

    def put(at, arr):
        b = np.ascontiguousarray(arr).view(np.uint8).reshape(len(arr), -1)
        for j in range(b.shape[1]):
            buf[at + j] = b[:, j]

    mac_c = 0x020000000000 + f.astype(np.int64)
    mac_s = 0x020000100000 + sip[f].astype(np.int64) % 256
    for j in range(6):  # destination, then source MAC
        shift = 8 * (5 - j)
        buf[o + j] = (np.where(dd == 0, mac_s, mac_c) >> shift) & 0xFF
        buf[o + 6 + j] = (np.where(dd == 0, mac_c, mac_s) >> shift) & 0xFF
    buf[o + 12] = 0x08
    buf[o + 14] = 0x45
    put(o + 16, (length[order] - 14).astype(">u2"))
    buf[o + 22] = 64
    buf[o + 23] = np.where(u, 17, 6)
    put(o + 26, src)
    put(o + 30, dst)
    put(o + 34, sp)
    put(o + 36, dp)
    put(o + 38, np.where(u, ((pl[order] + 8) << 16), seq[order]).astype(">u4"))
    buf[o + 46] = np.where(u, 0, 0x50)
    buf[o + 47] = np.where(u, 0, flags[order])
    # a greeting on the first client data segment of some flows
    kk = k[order]
    for port, text in GREETINGS.items():
        m = np.flatnonzero((kk == 3) & (sport[f] == port) & ~u & (pl[order] >= len(text)))
        for j in m.tolist():
            p = o[j] + 54
            buf[p : p + len(text)] = np.frombuffer(text, np.uint8)
    with PcapWriter(path) as w:
        w.write_batch(buf, off, length[order], (1_700_000_000 * 10**9 + ts[order]))
    return int(path.stat().st_size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mean-payload", type=int, default=300, help="mean TCP payload bytes")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--mode",
        choices=("full", "identify", "flows"),
        default="full",
        help="full: identification + dissectors; identify: no dissectors; flows: neither",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        size = make_capture(path, args.packets, args.flows, args.mean_payload)
        pipe = Pipeline(
            ScanConfig(
                phi_key=b"bench",
                identify=args.mode != "flows",
                dissectors=args.mode == "full",
            )
        )
        pipe.scan_files([path], lambda evs: None)  # warm-up: numba cache, page cache
        if args.profile:
            import cProfile
            import pstats

            cProfile.runctx(
                "pipe.scan_files([path], lambda evs: None)", globals(), locals(), "/tmp/p"
            )
            pstats.Stats("/tmp/p").sort_stats("cumulative").print_stats(25)
        runs = []
        for _ in range(args.repeat):
            n_events = 0

            def sink(evs):
                nonlocal n_events
                n_events += len(evs)

            t0 = time.perf_counter()
            stats = pipe.scan_files([path], sink)
            runs.append(time.perf_counter() - t0)
    best = min(runs)
    result = {
        "claim": "whole scan >= 3M packets/s on one core",
        "mode": args.mode,
        "packets": stats.packets,
        "flows": stats.flows,
        "capture_bytes": size,
        "mean_payload": args.mean_payload,
        "events": n_events,
        "seconds_best": best,
        "seconds_all": runs,
        "packets_per_s": stats.packets / best,
        "mbytes_per_s": size / best / 1e6,
        "protocols": stats.protocols,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"{'packets':>10} {'flows':>7} {'MB':>7} {'best s':>8} {'Mpkt/s':>8} {'MB/s':>8}")
    print(
        f"{stats.packets:>10} {stats.flows:>7} {size / 1e6:>7.1f} {best:>8.3f} "
        f"{stats.packets / best / 1e6:>8.2f} {size / best / 1e6:>8.0f}"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "flows_scan_speed.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
