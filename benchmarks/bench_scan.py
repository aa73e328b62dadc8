"""Foundation speed benchmark: medsentry's scan against tshark, a dpkt loop and NFStream.

    python benchmarks/bench_scan.py --generate 1200000          # make the capture, then measure
    python benchmarks/bench_scan.py FILE.pcap                     # measure on an existing capture
    python benchmarks/bench_scan.py --generate 200000 --memory    # + peak RSS on 1x and 4x files

Every tool runs as its own process on the same file, after the file has been read once (so it
is in the page cache), pinned to one core with `taskset -c 0` unless --cores all. Wall time is
the whole process as a user would see it (start-up included); peak RSS is the process's own
(`os.wait4`). Rows:

- medsentry scan (CLI): `medsentry scan FILE --db sqlite:///...` into a fresh SQLite file:
  decoding, flow table, TCP reassembly, protocol identification, dissectors, storage, and the
  registered analysis engines; the same with `--engines none` (no analysis engines); and both
  with `--flows-only` (no dissectors: flows, identification and storage, the foundation's own
  scan, with and without the engines);
- medsentry pipeline (in-process): `Pipeline(ScanConfig()).scan_files` with a counting sink,
  timed inside the process (no start-up, no storage); and the same with dissectors off
  (`ScanConfig(dissectors=False)`: flows and identification only);
- tshark -q -z conv,tcp: Wireshark's dissection plus its TCP conversation table;
- dpkt loop: dpkt parses each frame and a dict keeps the same bidirectional flow table
  (packets, bytes, first/last time per flow);
- NFStream without dissection (n_dissections=0) and with its default nDPI dissection.

On a shared machine wall time includes waiting for the core; CPU s (user + sys of the process
tree, from GNU time) is the work each tool did, and "packets per CPU s" compares tools without
the other users' load.

Writes benchmarks/out/bench_scan.json and benchmarks/bench_scan.md and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"


# ---------------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line
# ---------------------------------------------------------------------------------------------


def worker_pipeline(path: str, dissectors: bool = True) -> dict[str, Any]:
    from medsentry.events import FlowRecord
    from medsentry.pipeline import Pipeline, ScanConfig

    flows = 0
    events = 0

    def sink(batch: list[Any]) -> None:
        nonlocal flows, events
        events += len(batch)
        flows += sum(1 for e in batch if isinstance(e, FlowRecord))

    pipe = Pipeline(ScanConfig(dissectors=dissectors))
    t0 = time.perf_counter()
    stats = pipe.scan_files([path], sink=sink)
    inner = time.perf_counter() - t0
    return {"packets": stats.packets, "flows": flows, "events": events, "inner_s": inner}


def worker_dpkt(path: str) -> dict[str, Any]:
    """A plain dpkt loop building a bidirectional 5-tuple flow table."""
    import dpkt

    t0 = time.perf_counter()
    flows: dict[tuple, list] = {}
    packets = 0
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            packets += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.UnpackError:
                continue
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                src, dst, length = ip.src, ip.dst, ip.len
            elif isinstance(ip, dpkt.ip6.IP6):
                src, dst, length = ip.src, ip.dst, ip.plen + 40
            else:
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
                a, b = (src, l4.sport), (dst, l4.dport)
            else:
                a, b = (src, 0), (dst, 0)
            key = (a, b, ip.p) if a <= b else (b, a, ip.p)
            f = flows.get(key)
            if f is None:
                flows[key] = [1, length, ts, ts]
            else:
                f[0] += 1
                f[1] += length
                f[3] = ts
    return {"packets": packets, "flows": len(flows), "inner_s": time.perf_counter() - t0}


def worker_nfstream(path: str, dissect: bool) -> dict[str, Any]:
    from nfstream import NFStreamer

    t0 = time.perf_counter()
    streamer = NFStreamer(
        source=path,
        statistical_analysis=False,
        n_dissections=20 if dissect else 0,
        n_meters=int(os.environ.get("BENCH_NFSTREAM_METERS", "1")),
    )
    flows = 0
    packets = 0
    for flow in streamer:
        flows += 1
        packets += flow.bidirectional_packets
    return {"packets": packets, "flows": flows, "inner_s": time.perf_counter() - t0}


WORKERS = {
    "pipeline": worker_pipeline,
    "pipeline-nodiss": lambda p: worker_pipeline(p, False),
    "dpkt": worker_dpkt,
    "nfstream": lambda p: worker_nfstream(p, False),
    "nfstream-dpi": lambda p: worker_nfstream(p, True),
}


# ---------------------------------------------------------------------------------------------
# Running and measuring
# ---------------------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def _mem_kb(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) of one process in KiB (proc(5))."""
    anon = file = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1])
            elif line.startswith("RssFile:"):
                file = int(line.split()[1])
    except OSError:
        pass
    return anon, file


def _popen_wait4(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command: wall time, CPU times, peak RSS, and peak anonymous memory.

    peak_rss_mb: GNU time's maximum resident set size of the tool's process (it counts the pages
    of a file the tool maps, e.g. medsentry's mmap reader, which are page cache and reclaimable).
    peak_anon_mb: the largest sum of RssAnon over the tool's process tree, sampled every 20 ms:
    the memory the tool itself allocates (NFStream's meter processes included).
    """
    gnu_time = Path("/usr/bin/time")
    with tempfile.NamedTemporaryFile(suffix=".time") as tf:
        full = [str(gnu_time), "-f", "%e %M %U %S", "-o", tf.name, *cmd]
        if not gnu_time.exists():
            full = cmd
        peak_anon = peak_file = 0
        t0 = time.perf_counter()
        with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
            proc = subprocess.Popen(full, stdout=so, stderr=se, env=env)
            while True:
                done, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if done:
                    break
                mems = [_mem_kb(p) for p in _tree(proc.pid)]
                peak_anon = max(peak_anon, sum(m[0] for m in mems))
                peak_file = max(peak_file, sum(m[1] for m in mems))
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            rc = os.waitstatus_to_exitcode(status)
            proc.returncode = rc
            so.seek(0)
            se.seek(0)
            out, err = so.read(), se.read()
        rss_mb, user_s, sys_s = usage.ru_maxrss / 1024, usage.ru_utime, usage.ru_stime
        if gnu_time.exists():
            fields = Path(tf.name).read_text().split()[-4:]
            if len(fields) == 4:
                rss_mb, user_s, sys_s = int(fields[1]) / 1024, float(fields[2]), float(fields[3])
    return {
        "wall_s": wall,
        "peak_rss_mb": rss_mb,
        "peak_anon_mb": peak_anon / 1024,
        "peak_file_mapped_mb": peak_file / 1024,
        "user_s": user_s,
        "sys_s": sys_s,
        "rc": rc,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace")[-2000:],
    }


def pin(cmd: list[str], cores: str) -> list[str]:
    if cores == "all" or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", cores, *cmd]


def warm(path: Path) -> float:
    """Read the file once so every tool finds it in the page cache."""
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        while fh.read(8 << 20):
            pass
    return time.perf_counter() - t0


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    try:
        return json.loads(text[text.index("{") :])
    except (ValueError, json.JSONDecodeError):
        return {}


# CLI rows: tool name -> the options added to `medsentry scan FILE --db ... -q --format json`
_CLI_ROWS: dict[str, list[str]] = {
    "medsentry": [],
    "medsentry-noengines": ["--engines", "none"],
    "medsentry-flows": ["--flows-only"],
    "medsentry-flows-noengines": ["--flows-only", "--engines", "none"],
}


def bench_file(
    path: Path, cores: str, tools: list[str], env: dict[str, str], repeat: int = 1
) -> list[dict]:
    """One row per tool; with `repeat` > 1 the fastest run is kept (all wall times listed)."""
    rows: list[dict[str, Any]] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    workdir = Path(tempfile.mkdtemp(prefix="bench_scan_"))
    try:
        for tool in tools:
            db = workdir / "scan.db"
            if tool in _CLI_ROWS:
                db.unlink(missing_ok=True)
                medsentry = shutil.which("medsentry") or "medsentry"
                cmd = [
                    medsentry,
                    "scan",
                    str(path),
                    "--db",
                    f"sqlite:///{db}",
                    "-q",
                    "--format",
                    "json",
                ]
                cmd += _CLI_ROWS[tool]
                label = f"medsentry scan {' '.join(_CLI_ROWS[tool])} (CLI, into SQLite)"
                label = label.replace("scan  (", "scan (")
            elif tool == "tshark":
                cmd = ["tshark", "-r", str(path), "-q", "-z", "conv,tcp"]
                label = "tshark -q -z conv,tcp (flows: TCP only)"
            else:
                cmd = [*me, "--worker", tool, str(path)]
                label = {
                    "pipeline": "medsentry pipeline (in-process, no store)",
                    "pipeline-nodiss": "medsentry pipeline, dissectors off (in-process, no store)",
                    "dpkt": "dpkt loop + flow dict",
                    "nfstream": "NFStream (n_dissections=0)",
                    "nfstream-dpi": "NFStream (nDPI dissection)",
                }[tool]
            if tool.startswith("nfstream"):
                try:
                    import nfstream  # noqa: F401
                except ImportError:
                    rows.append({"tool": tool, "label": label, "skipped": "nfstream not installed"})
                    continue
            if tool == "tshark" and shutil.which("tshark") is None:
                rows.append({"tool": tool, "label": label, "skipped": "tshark not installed"})
                continue
            print(f"  running {label} ...", file=sys.stderr, flush=True)
            runs = []
            for _ in range(max(1, repeat)):
                db.unlink(missing_ok=True)
                runs.append(_popen_wait4(pin(cmd, cores), env))
            ok = [r for r in runs if r["rc"] == 0] or runs
            res = min(ok, key=lambda r: r["wall_s"])
            row = {"tool": tool, "label": label, "cmd": " ".join(pin(cmd, cores)), **res}
            row["all_wall_s"] = [round(r["wall_s"], 3) for r in runs]
            info = _last_json(res["stdout"]) if tool != "tshark" else {}
            row["flows"] = info.get("flows")
            row["packets_reported"] = info.get("packets")
            row["inner_s"] = info.get("inner_s")
            if tool == "tshark":
                row["flows"] = sum(1 for ln in res["stdout"].splitlines() if "<->" in ln)
            if res["rc"] != 0:
                row["error"] = res["stderr"].strip().splitlines()[-1:] or ["exit " + str(res["rc"])]
            row.pop("stdout")
            if res["rc"] == 0:
                row.pop("stderr")
            rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def count_packets(path: Path) -> int:
    """Records in a classic pcap file (a walk over the record headers, no decoding)."""
    import numpy as np
    from numba import njit

    @njit(cache=False)
    def walk(buf):  # bounded by the buffer length
        n = 0
        pos = 24
        size = buf.shape[0]
        while pos + 16 <= size:
            incl = (
                np.int64(buf[pos + 8])
                | (np.int64(buf[pos + 9]) << 8)
                | (np.int64(buf[pos + 10]) << 16)
                | (np.int64(buf[pos + 11]) << 24)
            )
            pos += 16 + incl
            n += 1
        return n

    return int(walk(np.memmap(path, dtype=np.uint8, mode="r")))


def table(rows: list[dict[str, Any]], packets: int, size: int) -> str:
    base = next((r for r in rows if r["tool"] == "medsentry" and r.get("rc") == 0), None)
    head = (
        "| tool | wall s | packets/s | MB/s | × medsentry time | CPU s (user+sys) "
        "| packets per CPU s | × medsentry CPU | peak RSS MB | peak anon MB | flows |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    empty = " | |" * 9
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['label']} | skipped: {r['skipped']}{empty}")
            continue
        if r.get("rc") != 0:
            lines.append(f"| {r['label']} | failed: {' '.join(r.get('error', []))}{empty}")
            continue
        wall = r["wall_s"]
        cpu = r["user_s"] + r["sys_s"]
        ratio = f"{wall / base['wall_s']:.2f}" if base else "-"
        cpu_ratio = f"{cpu / (base['user_s'] + base['sys_s']):.2f}" if base else "-"
        flows = "" if r["flows"] is None else f"{r['flows']:,}"
        lines.append(
            f"| {r['label']} | {wall:.2f} | {packets / wall:,.0f} | {size / wall / 1e6:,.1f} "
            f"| {ratio} | {cpu:.2f} | {packets / cpu:,.0f} | {cpu_ratio} "
            f"| {r['peak_rss_mb']:,.0f} | {r['peak_anon_mb']:,.0f} | {flows} |"
        )
        if r.get("inner_s"):
            inner = r["inner_s"]
            lines.append(
                f"| ↳ {r['tool']}: timed inside the process | {inner:.2f} | {packets / inner:,.0f} "
                f"| {size / inner / 1e6:,.1f} |{' |' * 7}"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod in ("medsentry", "numpy", "numba", "dpkt", "nfstream"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    try:
        versions["tshark"] = subprocess.run(
            ["tshark", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        versions["tshark"] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "versions": versions,
    }


def generate(out: Path, packets: int, extra: list[str]) -> None:
    cmd = [
        sys.executable,
        str(HERE / "gen_capture.py"),
        "--out",
        str(out),
        "--packets",
        str(packets),
        "-q",
        *extra,
    ]
    print(f"generating {packets:,} packets -> {out}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def memory_check(base_packets: int, workdir: Path, cores: str, env: dict[str, str]) -> list[dict]:
    """Peak RSS of `medsentry scan` on a capture and on one 4x as large (the reader streams)."""
    rows = []
    for mult in (1, 4):
        n = base_packets * mult
        need = int(n * 700 * 1.1)
        free = shutil.disk_usage(workdir).free
        if free < need + (2 << 30):
            rows.append({"multiple": mult, "packets": n, "skipped": f"only {free >> 20} MiB free"})
            continue
        path = workdir / f"mem_{mult}x.pcap"
        generate(path, n, [])
        warm(path)
        db = workdir / f"mem_{mult}x.db"
        for extra in ([], ["--engines", "none"]):
            db.unlink(missing_ok=True)
            cmd = ["medsentry", "scan", str(path), "--db", f"sqlite:///{db}", "-q"]
            cmd += ["--format", "json", *extra]
            print(
                f"  medsentry scan {' '.join(extra)} on {mult}x "
                f"({path.stat().st_size / 1e9:.2f} GB) ...",
                file=sys.stderr,
                flush=True,
            )
            res = _popen_wait4(pin(cmd, cores), env)
            info = _last_json(res["stdout"])
            rows.append(
                {
                    "multiple": mult,
                    "command": " ".join(["medsentry scan", *extra]),
                    "packets": n,
                    "file_bytes": path.stat().st_size,
                    "wall_s": res["wall_s"],
                    "cpu_s": res["user_s"] + res["sys_s"],
                    "peak_rss_mb": res["peak_rss_mb"],
                    "peak_anon_mb": res["peak_anon_mb"],
                    "peak_file_mapped_mb": res["peak_file_mapped_mb"],
                    "rc": res["rc"],
                    "flows": info.get("flows"),
                    **({"error": res["stderr"][-500:]} if res["rc"] else {}),
                }
            )
        path.unlink(missing_ok=True)
        db.unlink(missing_ok=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, help="capture to measure (classic pcap)")
    ap.add_argument(
        "--generate",
        type=int,
        metavar="PACKETS",
        help="first generate a capture of this many packets (gen_capture.py)",
    )
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--cores", default="0", help="taskset core list, or 'all' (default: 0)")
    ap.add_argument(
        "--tools",
        default="medsentry,medsentry-noengines,medsentry-flows,medsentry-flows-noengines,pipeline,"
        "pipeline-nodiss,tshark,dpkt,nfstream,"
        "nfstream-dpi",
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="also scan captures of 1x and 4x --memory-packets and report peak RSS",
    )
    ap.add_argument("--memory-packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest is kept")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(WORKERS[a.worker](str(a.file))))
        return 0
    if a.file is None and not a.generate:
        ap.error("give a capture FILE or --generate PACKETS")
    path = a.file or a.workdir / f"bench_{a.generate}.pcap"
    if a.generate:
        generate(path, a.generate, [])
    home = Path(tempfile.mkdtemp(prefix="bench_home_"))
    env = {**os.environ, "MEDSENTRY_HOME": str(home), "BENCH_NFSTREAM_METERS": "1"}
    env.pop("MEDSENTRY_DB", None)
    print(f"reading {path} once (page cache) ...", file=sys.stderr, flush=True)
    warm_s = warm(path)
    packets = count_packets(path)
    size = path.stat().st_size
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    # numba compiles medsentry's kernels on first use and caches them on disk: one untimed scan
    # of a small capture first, so the timed runs see an installation that has run once
    if any(t.startswith(("medsentry", "pipeline")) for t in tools) or a.memory:
        small = Path(tempfile.mkdtemp(prefix="bench_warm_")) / "warm.pcap"
        generate(small, 5000, [])
        db = small.with_suffix(".db")
        _popen_wait4(["medsentry", "scan", str(small), "--db", f"sqlite:///{db}", "-q"], env)
        shutil.rmtree(small.parent, ignore_errors=True)
    result: dict[str, Any] = {
        "file": str(path),
        "bytes": size,
        "packets": packets,
        "warm_read_s": warm_s,
        "cores": a.cores,
        "machine": machine(),
        "note": "measured on a shared machine; see load_avg_at_start",
    }
    result["rows"] = bench_file(path, a.cores, tools, env, a.repeat)
    md = [
        f"# bench_scan: {packets:,} packets, {size / 1e6:,.0f} MB ({path.name})",
        "",
        f"Cores: taskset -c {a.cores}. CPU: {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores). Load average at start: "
        f"{', '.join(f'{x:.2f}' for x in result['machine']['load_avg_at_start'])}. "
        f"Fastest of {a.repeat} run(s) per tool; the file was read once before (page cache).",
        "",
        table(result["rows"], packets, size),
    ]
    if a.memory:
        result["memory"] = memory_check(a.memory_packets, a.workdir, a.cores, env)
        md += [
            "",
            "## Peak RSS of `medsentry scan` by capture size",
            "",
            "| capture | command | packets | GB | wall s | CPU s | peak RSS MB | peak anon MB "
            "| peak file-mapped MB | flows |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["memory"]:
            if r.get("skipped"):
                md.append(
                    f"| {r['multiple']}x | | {r['packets']:,} | skipped: {r['skipped']}"
                    " | | | | | | |"
                )
            else:
                md.append(
                    f"| {r['multiple']}x | `{r['command']}` | {r['packets']:,} "
                    f"| {r['file_bytes'] / 1e9:.2f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
                    f"| {r['peak_rss_mb']:,.0f} | {r['peak_anon_mb']:,.0f} "
                    f"| {r['peak_file_mapped_mb']:,.0f} | {r.get('flows')} |"
                )
    text = "\n".join(md) + "\n"
    print(text)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "bench_scan.json").write_text(json.dumps(result, indent=2, default=str))
    (HERE / "bench_scan.md").write_text(text)
    shutil.rmtree(home, ignore_errors=True)
    if a.generate and a.file is None:
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
