"""Audit ledger speed: durable appends, proofs at millions of entries, full verification.

1. Appends per second through `Ledger.append_many` (RFC 8785 encoding, RFC 9162 hashing,
   CRC-framed records, fdatasync before returning), by batch size. Target: >= 50,000/s batched.
2. Inclusion and consistency proof generation + verification time as the log grows
   (10k, 100k, 1M and, with --big, 10M entries): logarithmic, read from stored hashes.
3. Full verification (`verify_ledger`) of 1M entries against the raw SHA-256 limit of this
   machine: the same hashes (every leaf + every interior node) computed (a) by a bare hashlib
   loop and (b) as one bulk hashlib pass over the same number of bytes.

    python benchmarks/bench_ledger.py [--appends 200000] [--big] [--dir DIR]

Prints a table; writes benchmarks/out/bench_ledger.json. Uses a temporary directory (deleted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from medsentry.ledger import Ledger, merkle, verify_ledger
from medsentry.ledger.log import ENTRIES

OUT = Path(__file__).resolve().parent / "out" / "bench_ledger.json"


def alert(i: int) -> dict:
    return {
        "alert_id": i,
        "rule": "dicom.cstore.unknown-ae",
        "device": f"10.0.{i >> 8 & 255}.{i & 255}",
        "severity": "high",
        "score": 7.5,
        "evidence": [i, i + 1],
    }


def bench_appends(base: Path, total: int) -> list[dict]:
    rows = []
    for batch in (1, 100, 1_000, 10_000):
        n = min(total, 2_000) if batch == 1 else total
        d = base / f"append-{batch}"
        with Ledger(d) as lg:
            lg.append("bench.start", {})
            t0 = time.perf_counter()
            for start in range(0, n, batch):
                lg.append_many([("alert.raised", alert(i)) for i in range(start, start + batch)])
            dt = time.perf_counter() - t0
        rows.append({"batch": batch, "entries": n, "seconds": dt, "per_second": n / dt})
        shutil.rmtree(d)
    return rows


def payloads(start: int, stop: int):
    t = "2026-01-01T00:00:00.000000Z"
    for i in range(start, stop):
        yield (
            f'{{"actor":"bench","data":{{"alert_id":{i},"severity":"high"}},'
            f'"kind":"alert.raised","seq":{i},"time":"{t}"}}'
        ).encode()


def bench_proofs(lg: Ledger, samples: int = 500) -> dict:
    n = lg.size
    rng = random.Random(n)
    idx = [rng.randrange(n) for _ in range(samples)]
    root = lg.root()
    t0 = time.perf_counter()
    proofs = [lg.inclusion_proof(i) for i in idx]
    gen = (time.perf_counter() - t0) / samples
    t0 = time.perf_counter()
    for p in proofs:
        merkle.verify_inclusion(p.index, p.size, p.leaf_hash, p.path, root)
    ver = (time.perf_counter() - t0) / samples
    olds = [rng.randrange(1, n) for _ in range(samples)]
    t0 = time.perf_counter()
    cons = [lg.consistency_proof(o, n) for o in olds]
    cgen = (time.perf_counter() - t0) / samples
    t0 = time.perf_counter()
    for c in cons:
        merkle.verify_consistency(c.old, c.new, c.old_root, c.new_root, c.path)
    cver = (time.perf_counter() - t0) / samples
    return {
        "entries": n,
        "inclusion_gen_us": gen * 1e6,
        "inclusion_verify_us": ver * 1e6,
        "inclusion_hashes": statistics.mean(len(p.path) for p in proofs),
        "consistency_gen_us": cgen * 1e6,
        "consistency_verify_us": cver * 1e6,
        "consistency_hashes": statistics.mean(len(c.path) for c in cons),
    }


def sha256_limits(d: Path, n: int) -> dict:
    """The raw SHA-256 work of a full verification: n leaf hashes + n-1 node hashes."""
    data = (d / ENTRIES).read_bytes()
    leaf_bytes = len(data) - 8 - 8 * n + n  # payloads, each with the 0x00 prefix
    node_count = n - 1
    # (a) a bare hashlib loop over the same inputs
    sha = hashlib.sha256
    payload = b"x" * (leaf_bytes // n)
    node = b"\x01" + b"y" * 64
    t0 = time.perf_counter()
    for _ in range(n):
        sha(payload).digest()
    for _ in range(node_count):
        sha(node).digest()
    loop = time.perf_counter() - t0
    # (b) the hardware limit: one bulk pass over the same number of bytes
    total = leaf_bytes + 65 * node_count
    blob = b"z" * (64 << 20)
    t0 = time.perf_counter()
    done = 0
    while done < total:
        sha(blob[: min(len(blob), total - done)]).digest()
        done += len(blob)
    bulk = time.perf_counter() - t0
    return {
        "hashes": n + node_count,
        "bytes": total,
        "hashlib_loop_seconds": loop,
        "bulk_seconds": bulk,
        "bulk_mb_per_s": total / bulk / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--appends", type=int, default=200_000)
    ap.add_argument("--verify", type=int, default=1_000_000, help="entries for full verify")
    ap.add_argument("--big", action="store_true", help="also build and prove at 10M entries")
    ap.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=args.dir))
    result: dict = {"machine": platform.processor() or platform.machine()}
    try:
        result["appends"] = bench_appends(base, args.appends)
        print("\nappends (durable: returned after fdatasync)")
        print(f"{'batch':>8} {'entries':>9} {'seconds':>8} {'per second':>11}")
        for r in result["appends"]:
            print(
                f"{r['batch']:>8} {r['entries']:>9} {r['seconds']:>8.2f} {r['per_second']:>11,.0f}"
            )

        sizes = sorted({10_000, 100_000, args.verify} | ({10_000_000} if args.big else set()))
        d = base / "big"
        lg = Ledger(d)
        result["bulk_build"] = []
        result["proofs"] = []
        for size in sizes:
            t0 = time.perf_counter()
            lg.bulk_load_payloads(payloads(lg.size, size))
            build = time.perf_counter() - t0
            result["bulk_build"].append({"to": size, "seconds": build})
            result["proofs"].append(bench_proofs(lg))
            if size == args.verify:
                lg.close()
                t0 = time.perf_counter()
                report = verify_ledger(d)
                vt = time.perf_counter() - t0
                assert report.ok, report.as_dict()
                limits = sha256_limits(d, size)
                result["verify"] = {"entries": size, "seconds": vt, **limits}
                lg = Ledger(d)
        lg.close()
        print("\nproofs (mean of 500 random; hashes read from hashes.bin)")
        print(
            f"{'entries':>11} {'incl gen µs':>12} {'incl ver µs':>12} {'path':>5} "
            f"{'cons gen µs':>12} {'cons ver µs':>12} {'path':>5}"
        )
        for p in result["proofs"]:
            print(
                f"{p['entries']:>11,} {p['inclusion_gen_us']:>12.1f}"
                f" {p['inclusion_verify_us']:>12.1f} {p['inclusion_hashes']:>5.1f}"
                f" {p['consistency_gen_us']:>12.1f}"
                f" {p['consistency_verify_us']:>12.1f} {p['consistency_hashes']:>5.1f}"
            )
        v = result["verify"]
        print(f"\nfull verification of {v['entries']:,} entries ({v['hashes']:,} SHA-256 hashes)")
        loop_s, bulk_s = v["hashlib_loop_seconds"], v["bulk_seconds"]
        print(f"  verify_ledger (framing, CRC, seq, index, every hash)  {v['seconds']:8.2f} s")
        print(f"  bare hashlib loop, same hashes (Python floor)         {loop_s:8.2f} s")
        print(f"  bulk SHA-256, same bytes (machine limit)              {bulk_s:8.2f} s")
        print(
            f"  verify is {v['seconds'] / v['hashlib_loop_seconds']:.1f}x the hashlib loop, "
            f"{v['seconds'] / v['bulk_seconds']:.1f}x the bulk limit"
        )
        for b in result["bulk_build"]:
            print(f"bulk build to {b['to']:,}: {b['seconds']:.1f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
