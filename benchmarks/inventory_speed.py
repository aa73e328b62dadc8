"""Inventory speed: devices and events per second, and the inventory's share of scan time.

    python benchmarks/inventory_speed.py                       # generates the capture if needed
    python benchmarks/inventory_speed.py --pcap /tmp/hosts10k.pcap

The capture is the foundation benchmark's (benchmarks/gen_capture.py, 1.2M packets) scaled to
10,000 client hosts (`--scale-hosts 10000`). Two measurements, same run, same machine:

1. In-process stages: the sensing pipeline (capture -> flows -> dissectors -> events) runs once
   and its events are kept; then the inventory engine is timed on them: `feed` (observations
   per event), `resolve` (endpoints -> devices, routers), `identify + write` (fingerprints,
   evidence combination, one SQLite transaction) and the ledger append. The inventory's share
   = inventory time / (pipeline time + inventory time).
2. End to end: `medsentry scan FILE --engines inventory` against `--engines none`, each a fresh
   process into a fresh SQLite file (storage of flows and events included); share = the
   difference in CPU time (os.wait4 rusage) / the CPU time with the inventory.
3. Inside one `medsentry scan` process (default engines, as a user runs it: the headline share
   of total scan time), and inside `medsentry scan --engines inventory`: the engine's own calls
   (construction with its data files, `feed`, `finish`) timed, against the process's whole CPU
   time; `--repeat` alternating runs each, the median kept. Precise where the difference of (2)
   swings by a second between runs, but blind to indirect costs (the garbage collector's).

Stage times are CPU seconds (`time.process_time`), not wall seconds: the machine is shared.
Each end-to-end run gets a fresh home (database, keys, ledger: a first scan, never a rescan)
whose cache of parsed data files (medsentry.yamlcache) is warm, as after the install's warm-up
or any earlier command: one untimed scan of a small capture fills it first.

The machine is shared (2 cores, other engineers' jobs): the load average is printed; ratios
measured in the same run are what to compare. Writes benchmarks/out/inventory_speed.json and
benchmarks/inventory_speed.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_RUNS = itertools.count()
OUT = HERE / "out"


def ensure_capture(path: Path, hosts: int, packets: int) -> None:
    if path.exists():
        return
    subprocess.run(
        [sys.executable, str(HERE / "gen_capture.py"), "--out", str(path), "--packets",
         str(packets), "--scale-hosts", str(hosts), "-q"],
        check=True,
    )  # fmt: skip


def in_process(pcap: Path, work: Path) -> dict:
    os.environ["MEDSENTRY_HOME"] = str(work / "home")
    from medsentry.events import FlowRecord
    from medsentry.inventory.engine import InventoryEngine, _no_cyclic_gc, fold_and_identify
    from medsentry.inventory.store import load_devices
    from medsentry.ledger import ledger
    from medsentry.pipeline import Pipeline, ScanConfig
    from medsentry.store import open_store

    batches: list[list] = []
    t0 = time.process_time()
    Pipeline(ScanConfig()).scan_files([pcap], lambda b: batches.append(list(b)))
    t_pipeline = time.process_time() - t0
    # The timing keeps every event in memory, which a streaming scan never does: freeze them out
    # of the garbage collector so its full collections do not bill their traversal to the
    # inventory (gc.freeze, Python 3.7+).
    gc.collect()
    gc.freeze()
    n_events = sum(len(b) for b in batches)
    n_flows = sum(1 for b in batches for e in b if isinstance(e, FlowRecord))

    eng = InventoryEngine()  # fingerprint library loaded here, not timed (start-up)
    t0 = time.process_time()
    for b in batches:
        eng.feed(b)
    t_feed = time.process_time() - t0
    obs = eng.observer
    t0 = time.process_time()
    with _no_cyclic_gc():  # as InventoryEngine.finish does
        fresh, gateways = obs.resolve()
    t_resolve = time.process_time() - t0
    url = f"sqlite:///{work / 'inproc.db'}"
    with open_store(url) as store:
        t0 = time.process_time()
        with _no_cyclic_gc(), store.engine.begin() as conn:
            devices, changes, _ = fold_and_identify(conn, fresh, eng.library, eng.tax, "bench")
        t_identify = time.process_time() - t0
        from medsentry.inventory.changes import ledger_entries

        t0 = time.process_time()
        ledger().append_many(ledger_entries(changes, devices))
        t_ledger = time.process_time() - t0
        stored = load_devices(store)
    t_inv = t_feed + t_resolve + t_identify + t_ledger
    cats: dict[str, int] = {}
    for d in stored:
        k = d.category.value if d.category else "(unidentified)"
        cats[k] = cats.get(k, 0) + 1
    return {
        "events": n_events,
        "flows": n_flows,
        "events_seen_by_inventory": obs.events,
        "devices": len(stored),
        "routers": len(gateways),
        "changes": len(changes),
        "t_pipeline": t_pipeline,
        "t_feed": t_feed,
        "t_resolve": t_resolve,
        "t_identify_write": t_identify,
        "t_ledger": t_ledger,
        "t_inventory": t_inv,
        "events_per_s_feed": obs.events / t_feed if t_feed else 0,
        "events_per_s_inventory": n_events / t_inv if t_inv else 0,
        "devices_per_s_identify": len(stored) / t_identify if t_identify else 0,
        "devices_per_s_inventory": len(stored) / t_inv if t_inv else 0,
        "share_in_process": t_inv / (t_pipeline + t_inv),
        "categories": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
    }


def fresh_home(work: Path, name: str) -> Path:
    """A new home whose parsed-data cache is warm (a user's, after the install's warm-up)."""
    warm = work / "home-warm"
    if not warm.exists():  # one untimed scan of a small capture, every engine: fills the cache
        small = work / "warm.pcap"
        subprocess.run(
            [sys.executable, str(HERE / "gen_capture.py"), "--out", str(small), "--packets",
             "2000", "-q"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            ["medsentry", "scan", str(small), "--db", f"sqlite:///{work / 'warm.db'}", "-q"],
            env=dict(os.environ, MEDSENTRY_HOME=str(warm)), check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    home = work / name
    shutil.copytree(warm / "cache", home / "cache")
    return home


def cli_scan(pcap: Path, work: Path, engines: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `medsentry scan` process (os.wait4 rusage)."""
    run = next(_RUNS)  # a fresh database and home each run: a first scan, never a rescan
    db = work / f"cli-{engines}-{run}.db"
    env = dict(os.environ, MEDSENTRY_HOME=str(fresh_home(work, f"home-{engines}-{run}")))
    cmd = ["medsentry", "scan", str(pcap), "--db", f"sqlite:///{db}", "--engines", engines, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status})")
    return ru.ru_utime + ru.ru_stime, wall


def _instrumented_child(pcap: str, db: str, engines: str = "inventory") -> None:
    """Run `medsentry scan --engines ENGINES` in this process with each engine's own calls
    (construction, feed, finish) timed; print JSON: per engine CPU s, whole-process CPU s."""
    import resource

    from medsentry import startup

    startup.enable()  # the garbage collector as the `medsentry` command has it (entry.run)
    with startup.loading():
        import medsentry.analysis as analysis
        import medsentry.cli.scan as scan_mod
        from medsentry.cli import _load
        from medsentry.cli import main as cli_main

    spent: dict[str, dict[str, float]] = {}
    real_load = analysis.load_analyzers

    def timed(cost: dict[str, float], kind: str, fn):
        def call(*args):
            t = time.process_time()
            try:
                return fn(*args)
            finally:
                cost[kind] += time.process_time() - t

        return call

    def load(store, names=None):
        out = []
        for name in names if names is not None else analysis.analyzer_names():
            cost = spent[name] = {"load": 0.0, "feed": 0.0, "finish": 0.0}
            t = time.process_time()
            (e,) = real_load(store, [name])
            cost["load"] += time.process_time() - t
            e.feed, e.finish = timed(cost, "feed", e.feed), timed(cost, "finish", e.finish)
            out.append(e)
        return out

    scan_mod.load_analyzers = load
    _load()
    args = ["scan", pcap, "--db", f"sqlite:///{db}", "-q"]
    if engines != "default":  # default: no --engines, every registered engine
        args += ["--engines", engines]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        cli_main(args, standalone_mode=False)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"engines": spent, "process": ru.ru_utime + ru.ru_stime}))


def cli_scan_instrumented(pcap: Path, work: Path, engines: str = "inventory") -> dict:
    """Each engine's own CPU time inside one `medsentry scan` process (fresh database)."""
    run = next(_RUNS)
    db = work / f"cli-instrumented-{run}.db"
    env = dict(os.environ, MEDSENTRY_HOME=str(fresh_home(work, f"home-instrumented-{run}")))
    out = subprocess.run(
        [sys.executable, __file__, "--instrumented-child", str(pcap), str(db), engines],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    got = json.loads(out.strip().splitlines()[-1])
    for cost in got["engines"].values():
        cost["total"] = cost["load"] + cost["feed"] + cost["finish"]
        cost["share"] = cost["total"] / got["process"]
    return got


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--instrumented-child":
        _instrumented_child(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", type=Path, default=Path(tempfile.gettempdir()) / "hosts10k.pcap")
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--packets", type=int, default=1_200_000)
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI runs")
    ap.add_argument(
        "--repeat", type=int, default=3, help="end-to-end runs per configuration (fastest kept)"
    )
    a = ap.parse_args()
    ensure_capture(a.pcap, a.hosts, a.packets)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        r = in_process(a.pcap, work)
        if not a.no_cli:
            runs = {"none": [], "inventory": []}
            for _ in range(max(1, a.repeat)):  # alternate, so both see the same load drift
                for engines in runs:
                    runs[engines].append(cli_scan(a.pcap, work, engines))
            r["cpu_cli_none"], r["wall_cli_none"] = min(runs["none"])
            r["cpu_cli_inventory"], r["wall_cli_inventory"] = min(runs["inventory"])
            r["cli_runs"] = runs
            r["share_cli"] = (r["cpu_cli_inventory"] - r["cpu_cli_none"]) / r["cpu_cli_inventory"]
            # instrumented: alternate inventory-only and default scans; the median run is kept
            only, full = [], []
            for _ in range(max(1, a.repeat)):
                inst = cli_scan_instrumented(a.pcap, work)
                only.append(inst["engines"]["inventory"] | {"process": inst["process"]})
                full.append(cli_scan_instrumented(a.pcap, work, "default"))
            only.sort(key=lambda c: c["share"])
            full.sort(key=lambda g: g["engines"]["inventory"]["share"])
            r["cli_instrumented"] = only[len(only) // 2]
            r["cli_instrumented_default"] = full[len(full) // 2]
            r["cli_instrumented_shares"] = [c["share"] for c in only]
            r["cli_instrumented_default_shares"] = [
                g["engines"]["inventory"]["share"] for g in full
            ]
    r |= {
        "pcap": str(a.pcap),
        "size_mb": a.pcap.stat().st_size / 1e6,
        "load_avg_start": load,
        "load_avg_end": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "inventory_speed.json").write_text(json.dumps(r, indent=2))
    rows = [
        ("sensing pipeline (capture -> events)", r["t_pipeline"], f"{r['events']:,} events"),
        ("inventory feed (observations)", r["t_feed"],
         f"{r['events_per_s_feed']:,.0f} events/s"),
        ("inventory resolve (endpoints -> devices)", r["t_resolve"],
         f"{r['devices']:,} devices, {r['routers']} router MACs"),
        ("inventory identify + write (SQLite)", r["t_identify_write"],
         f"{r['devices_per_s_identify']:,.0f} devices/s"),
        ("inventory ledger append", r["t_ledger"], f"{r['changes']:,} entries"),
        ("inventory total", r["t_inventory"],
         f"{r['events_per_s_inventory']:,.0f} events/s, {r['devices_per_s_inventory']:,.0f}"
         " devices/s"),
    ]  # fmt: skip
    lines = [
        f"# inventory_speed: {a.hosts:,} hosts, {r['size_mb']:.0f} MB ({a.pcap.name})",
        "",
        f"CPU: {r['cpu']} ({r['cores']} cores, shared). Load average at start "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; at end {r['load_avg_end'][0]:.2f}.",
        "",
        "Stage times are CPU seconds of this process (`time.process_time`): on a machine shared"
        " with other jobs, wall time measures the others as much as us.",
        "",
        "| stage | CPU s | throughput (per CPU second) |",
        "|---|---:|---|",
        *[f"| {n} | {t:.2f} | {x} |" for n, t, x in rows],
        "",
        f"**Inventory share of in-process time (sensing pipeline without storage + inventory):"
        f" {r['share_in_process']:.1%}** (target < 10%).",
    ]
    if "share_cli" in r:
        lines += [
            "",
            f"End to end, `medsentry scan` as a fresh process into SQLite (fastest of {a.repeat}"
            " alternating runs each):",
            "",
            "| engines | CPU s | wall s |",
            "|---|---:|---:|",
            f"| none | {r['cpu_cli_none']:.2f} | {r['wall_cli_none']:.2f} |",
            f"| inventory | {r['cpu_cli_inventory']:.2f} | {r['wall_cli_inventory']:.2f} |",
            "",
            f"**Inventory share of end-to-end scan CPU time: {r['share_cli']:.1%}** (difference "
            "of two runs; wall times on this shared machine swing with the other jobs).",
        ]
        full = r["cli_instrumented_default"]
        inv = full["engines"]["inventory"]
        shares = r["cli_instrumented_default_shares"]
        lines += [
            "",
            "**The inventory stage's share of total scan time**: inside a default `medsentry scan`"
            " (every engine, as a user runs it), each engine's own calls (construction with its"
            " data files, `feed`, `finish`) timed against the whole process's CPU time. Median"
            f" of {len(shares)} runs (whole process {full['process']:.2f} CPU s); all runs:"
            f" {', '.join(f'{x:.1%}' for x in sorted(shares))}.",
            "",
            "| engine | construction | feed | finish | total | share |",
            "|---|---:|---:|---:|---:|---:|",
            *[
                f"| {n} | {c['load']:.2f} | {c['feed']:.2f} | {c['finish']:.2f} |"
                f" {c['total']:.2f} | {'**' if n == 'inventory' else ''}{c['share']:.1%}"
                f"{'**' if n == 'inventory' else ''} |"
                for n, c in full["engines"].items()
            ],
            "",
            f"**Inventory share of a default scan: {inv['share']:.1%}** (target < 10%).",
        ]
        inst = r["cli_instrumented"]
        shares = r["cli_instrumented_shares"]
        lines += [
            "",
            "A stricter reading: the same timing inside `medsentry scan --engines inventory`, a"
            " scan that does nothing but capture, store and inventory (median of"
            f" {len(shares)} runs; all runs: {', '.join(f'{x:.1%}' for x in sorted(shares))}):",
            "",
            "| engine construction (data files) | feed | finish (resolve, identify, write, ledger)"
            " | engine total | whole process | share |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {inst['load']:.2f} | {inst['feed']:.2f} | {inst['finish']:.2f} |"
            f" {inst['total']:.2f} | {inst['process']:.2f} | **{inst['share']:.1%}** |",
        ]
    top = list(r["categories"].items())[:8]
    lines += ["", "Devices by category: " + ", ".join(f"{k} {v:,}" for k, v in top) + "."]
    md = "\n".join(lines) + "\n"
    (HERE / "inventory_speed.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
