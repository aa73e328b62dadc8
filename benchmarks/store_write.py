"""Store write throughput: flows + events per second into SQLite and PostgreSQL.

Writes N FlowRecords and N ProtocolDetected events in batches through `CaptureWriter` (one
transaction, as `scan` does), then writes them again (a rescan: every row conflicts and is
skipped). PostgreSQL runs in a throwaway database on 127.0.0.1:5432 when it is reachable.

    python benchmarks/store_write.py [--flows 50000]
    python benchmarks/store_write.py --capture /tmp/b/bench.pcap   # the events of a real scan

With `--capture`, the events are those the scan pipeline emits for that file, in its batches,
written with the cyclic GC paused as `medsentry scan` does. Both wall and CPU seconds are
reported (CPU is what to compare on a shared machine).

Prints a table; writes benchmarks/out/store_write.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import secrets
import tempfile
import time
from pathlib import Path

from medsentry.events import FlowRecord, ProtocolDetected, StreamStats
from medsentry.store import CaptureInfo, CaptureWriter, count_rows, open_store

T0 = 1_700_000_000_000_000_000


def make_events(n: int) -> list:
    out: list = []
    for i in range(n):
        f = FlowRecord(
            ts_ns=T0 + i * 1000,
            flow_id=f"{i:032x}",
            last_ns=T0 + i * 1000 + 500,
            transport="tcp",
            ip_version=4,
            client=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            server="10.0.1.5",
            client_port=40000 + i % 20000,
            server_port=104,
            packets_c2s=10,
            packets_s2c=8,
            bytes_c2s=1000,
            bytes_s2c=600,
            app_protocol="dicom",
            app_method="signature",
            app_confidence=1.0,
            stream_c2s=StreamStats(bytes_in_order=500),
            stream_s2c=StreamStats(bytes_in_order=200),
        )
        out.append(f)
        out.append(
            ProtocolDetected(
                ts_ns=f.ts_ns,
                flow_id=f.flow_id,
                protocol="dicom",
                method="signature",
                confidence=1.0,
            )
        )
    return out


def capture_batches(path: str) -> tuple[list[list], str]:
    """The event batches `medsentry scan` would hand the store for `path`, and its capture id."""
    from medsentry.pipeline import Pipeline, ScanConfig

    batches: list[list] = []
    Pipeline(ScanConfig()).scan_files([path], sink=lambda b: batches.append(list(b)))
    cid = next(
        (ev.capture_id for b in batches for ev in b if getattr(ev, "capture_id", None)), "a" * 64
    )
    return batches, cid


def run(url: str, label: str, batches: list[list], capture_id: str = "a" * 64) -> list[dict]:
    results = []
    n = sum(map(len, batches))
    with open_store(url) as store:
        for phase in ("first write", "rescan"):
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            with CaptureWriter(store, CaptureInfo(capture_id, "bench", "pcap")) as w:
                gc.disable()  # as during a scan (medsentry.pipeline pauses it per file)
                try:
                    for batch in batches:
                        w.write(batch)
                finally:
                    gc.enable()
                w.finish()
            dt, cpu = time.perf_counter() - t, time.process_time() - c
            rows = count_rows(store)
            results.append(
                {
                    "database": label,
                    "phase": phase,
                    "rows": n,
                    "seconds": round(dt, 3),
                    "cpu_seconds": round(cpu, 3),
                    "rows_per_s": round(n / dt),
                    "stored_flows": rows["flows"],
                    "stored_events": rows["events"],
                }
            )
    return results


def postgres_url() -> tuple[str, object] | None:
    try:
        import psycopg

        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except Exception as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None
    name = f"medsentry_bench_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", (admin, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=10_000, help="events per sink call")
    ap.add_argument("--capture", help="write the events of this capture file instead")
    ap.add_argument("--sqlite-only", action="store_true")
    args = ap.parse_args()
    cid = "a" * 64
    if args.capture:
        batches, cid = capture_batches(args.capture)
    else:
        events = make_events(args.flows)
        batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += run(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite (WAL)", batches, cid)
    pg = None if args.sqlite_only else postgres_url()
    if pg is not None:
        url, (admin, name) = pg
        try:
            results += run(url, "postgresql 15 (psycopg 3, COPY)", batches, cid)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{'database':34} {'phase':12} {'rows':>8} {'seconds':>8} {'cpu s':>7} {'rows/s':>9}")
    for r in results:
        print(
            f"{r['database']:34} {r['phase']:12} {r['rows']:8d} {r['seconds']:8.2f}"
            f" {r['cpu_seconds']:7.2f} {r['rows_per_s']:9d}"
        )
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "store_write.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
