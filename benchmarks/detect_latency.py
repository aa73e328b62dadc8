"""Event-to-alert latency at a paced event rate, and memory as devices and baselines grow.

Latency: a synthetic hospital event stream (flows, DICOM associations and commands, HL7
messages with vitals, MQTT, ARP, device syslog, over `--devices` devices) arrives at `--rate`
events per second in 1 ms micro-batches (the way a live capture hands batches over); each batch
goes through `DetectionEngine.process` (alerts recorded in the ledger, as in production, but no
store), paced by the wall clock. An event's latency is the time from its arrival (its slot in
the paced schedule) to the return of the `process` call that saw it; event-to-alert latency is
the same for the events that raised or updated an alert (injected attacks: ARP rebinding,
cleartext credentials, impossible vitals, scans). A run that falls behind the schedule shows it
as growing latency. Runs: rules + baselines, and the full set with the anomaly models.

Memory: the engine's Python heap (tracemalloc, after a collection) and its stored state size
as the number of devices seen grows to 10,000 and beyond (profiles are capped at 50,000).

    python benchmarks/detect_latency.py [--rate 50000] [--seconds 6] [--devices 2000]

Prints tables; JSON to benchmarks/out/detect_latency.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import ClassVar

import msgspec

os.environ.setdefault("MEDSENTRY_HOME", tempfile.mkdtemp(prefix="medsentry-bench-"))

from medsentry.detect.baseline import BaselineDetector
from medsentry.detect.engine import DetectionEngine
from medsentry.detect.registry import default_detectors
from medsentry.detect.rules import build_rules
from medsentry.events import ArpObserved, Endpoints, FlowRecord
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.dicom import DicomAssociateRequest, DicomCommand
from medsentry.events.hl7 import Hl7Message, Hl7Observation
from medsentry.events.mqtt import MqttPublish
from medsentry.events.syslog import SyslogMessage

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_795_000_000_000_000_000


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


def mac(i: int) -> str:
    return "02:00:" + ":".join(f"{(i >> s) & 255:02x}" for s in (24, 16, 8, 0))


class Stream:
    """A hospital's events: device i talks to its servers in its category's protocols."""

    SERVERS: ClassVar[dict[str, int]] = {
        "pacs": 1_000_001,
        "ie": 1_000_002,
        "broker": 1_000_003,
        "ehr": 1_000_004,
    }

    def __init__(self, devices: int, seed: int = 7) -> None:
        self.n = devices
        self.rng = random.Random(seed)
        self.k = 0

    def event(self, ts: int, attack: bool = False):
        r = self.rng
        self.k += 1
        d = r.randrange(self.n) + 1
        dev, dmac = ip(d), mac(d)
        kind = d % 5  # category: 0 modality, 1 monitor, 2 pump, 3 workstation, 4 other
        if attack:
            a = self.k % 4
            if a == 0:  # ARP rebinding of a device's address
                return ArpObserved(
                    ts_ns=ts,
                    op=2,
                    sender_mac=mac(d + 7_000_000),
                    sender_ip=dev,
                    target_mac="ff:ff:ff:ff:ff:ff",
                    target_ip=dev,
                    gratuitous=True,
                )
            ep = Endpoints(client=ip(d + 1), server=dev, client_port=40000, server_port=23)
            if a == 1:
                return CleartextCredentials(
                    ts_ns=ts,
                    flow_id=f"a{self.k}",
                    endpoints=ep,
                    protocol="telnet",
                    mechanism="login",
                    password_sent=True,
                )
            if a == 2:
                ep = Endpoints(client=dev, server=ip(self.SERVERS["ie"]), server_port=2575)
                return Hl7Message(
                    ts_ns=ts,
                    flow_id=f"a{self.k}",
                    endpoints=ep,
                    direction=0,
                    field_separator="|",
                    encoding_characters="^~\\&",
                    sending_application="MON",
                    message_type="ORU",
                    trigger_event="R01",
                    observations=[Hl7Observation(code="147842", plausible=False)],
                )
            return FlowRecord(
                ts_ns=ts,
                flow_id=f"a{self.k}",
                last_ns=ts + 1000,
                transport="tcp",
                ip_version=4,
                client=ip(d + 3),
                server=dev,
                client_port=50000,
                server_port=1000 + self.k % 60000,
                packets_c2s=1,
                packets_s2c=1,
                tcp_flags_c2s=0x02,
                tcp_flags_s2c=0x14,
            )
        x = r.random()
        if x < 0.55 or kind in (3, 4):
            srv = ip(self.SERVERS["ehr"]) if kind == 3 else ip(self.SERVERS["broker"])
            port = (443, 104, 2575, 1883, 80)[kind]
            return FlowRecord(
                ts_ns=ts,
                flow_id=f"f{self.k}",
                last_ns=ts + 40_000_000,
                transport="tcp",
                ip_version=4,
                client=dev,
                server=srv,
                client_port=32768 + self.k % 28000,
                server_port=port,
                client_mac=dmac,
                packets_c2s=12,
                packets_s2c=10,
                bytes_c2s=2400,
                bytes_s2c=1800,
                payload_c2s=900,
                payload_s2c=600,
                tcp_flags_c2s=0x1B,
                tcp_flags_s2c=0x1B,
                iat_mean_us=800.0,
                iat_std_us=120.0,
                iat_min_us=10.0,
                iat_max_us=4000.0,
                app_protocol=("dicom", "hl7", "mqtt")[kind % 3],
                app_method="signature",
                end_reason="fin",
            )
        if kind == 0:
            ep = Endpoints(
                client=dev, server=ip(self.SERVERS["pacs"]), server_port=104, client_mac=dmac
            )
            if x < 0.7:
                return DicomAssociateRequest(
                    ts_ns=ts, flow_id=f"d{d}", endpoints=ep, calling_ae=f"MOD{d}", called_ae="PACS"
                )
            return DicomCommand(
                ts_ns=ts,
                flow_id=f"d{d}",
                endpoints=ep,
                direction=0,
                context_id=1,
                command="C-STORE-RQ",
                command_field=1,
                sop_class_name="CT Image Storage",
            )
        if kind == 1:
            ep = Endpoints(
                client=dev, server=ip(self.SERVERS["ie"]), server_port=2575, client_mac=dmac
            )
            return Hl7Message(
                ts_ns=ts,
                flow_id=f"h{d}",
                endpoints=ep,
                direction=0,
                field_separator="|",
                encoding_characters="^~\\&",
                sending_application=f"MON{d}",
                sending_facility="ICU",
                message_type="ORU",
                trigger_event="R01",
                observations=[
                    Hl7Observation(code="147842", plausible=True),
                    Hl7Observation(code="150456", plausible=True),
                ],
            )
        if x < 0.85:
            ep = Endpoints(client=dev, server=ip(self.SERVERS["broker"]), server_port=1883)
            return MqttPublish(
                ts_ns=ts, flow_id=f"m{d}", endpoints=ep, topic=f"ward/{d}/vitals", from_client=True
            )
        if x < 0.93:
            return ArpObserved(
                ts_ns=ts,
                op=2,
                sender_mac=dmac,
                sender_ip=dev,
                target_mac="02:00:00:00:00:01",
                target_ip=ip(1),
            )
        return SyslogMessage(
            ts_ns=ts,
            source_ip=dev,
            hostname=f"dev{d}",
            app_name="app",
            matches=[],
            categories=[],
            length=80,
        )


def events(n: int, rate: int, devices: int, attack_every: int, start_s: float = 0.0):
    s = Stream(devices)
    step = 1e9 / rate
    base = T0 + int(start_s * 1e9)
    return [
        s.event(base + int(i * step), attack=(i % attack_every == attack_every - 1))
        for i in range(n)
    ]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def latency_run(detectors, rate: int, seconds: float, devices: int, batch_ms: float = 1.0):
    """Learn for 2 s of events and cross the end of learning (not timed), then the paced run."""
    engine = DetectionEngine(detectors, learning_ns=2 * 10**9)
    # 2 s of normal traffic to learn from, then 0.5 s past the end of learning (thresholds are
    # calibrated there, once), all untimed; the timed run starts after it
    warm = events(int(2.5 * rate), rate, devices, 10**9)
    for i in range(0, len(warm), 1000):
        engine.process(warm[i : i + 1000])
    stream = events(int(rate * seconds), rate, devices, 1000, start_s=2.5)
    per_batch = max(1, int(rate * batch_ms / 1000))
    lat_all: list[float] = []
    lat_alert: list[float] = []
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter() + 0.05
    busy = 0.0
    cpu = 0.0
    batch_cpu: list[float] = []  # CPU ms of each process() call: the engine's own cost
    for b in range(0, len(stream), per_batch):
        batch = stream[b : b + per_batch]
        due = t0 + (b + len(batch)) / rate  # the last event of the batch has arrived
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        s = time.perf_counter()
        c = time.thread_time()
        alerts = engine.process(batch)
        c = time.thread_time() - c
        cpu += c
        batch_cpu.append(c * 1000)
        done = time.perf_counter()
        busy += done - s
        hit = {ev.evidence[-1].ts_ns for ev in alerts if ev.evidence}
        for j, e in enumerate(batch):
            arrived = t0 + (b + j + 1) / rate
            lat = (done - arrived) * 1000
            lat_all.append(lat)
            if e.ts_ns in hit:
                lat_alert.append(lat)
    gc.unfreeze()
    wall = time.perf_counter() - t0
    return {
        "events": len(stream),
        "alerts_raised": engine.raised,
        "alerting_events": len(lat_alert),
        "p50_ms": round(pct(lat_all, 50), 3),
        "p99_ms": round(pct(lat_all, 99), 3),
        "alert_p50_ms": round(pct(lat_alert, 50), 3),
        "alert_p99_ms": round(pct(lat_alert, 99), 3),
        "max_ms": round(max(lat_all), 3),
        "cpu_busy": round(busy / wall, 3),
        "achieved_rate": round(len(stream) / wall),
        "us_per_event": round(busy / len(stream) * 1e6, 2),
        "cpu_us_per_event": round(cpu / len(stream) * 1e6, 2),
        "batch_cpu_p99_ms": round(pct(batch_cpu, 99), 3),
        "batch_cpu_max_ms": round(max(batch_cpu), 3),
    }


def cpu_run(detectors, devices: int, n: int = 200_000, batch: int = 50) -> dict:
    """The engine's own cost, unpaced: CPU time (this thread) per event and per 1 ms batch
    (50 events at 50,000/s). Under a loaded machine wall time inflates; CPU time much less."""
    engine = DetectionEngine(detectors, learning_ns=2 * 10**9)
    warm = events(125_000, 50_000, devices, 10**9)
    for i in range(0, len(warm), 1000):
        engine.process(warm[i : i + 1000])
    stream = events(n, 50_000, devices, 1000, start_s=2.5)
    per: list[float] = []
    gc.collect()
    gc.freeze()
    w = time.perf_counter()
    for i in range(0, len(stream), batch):
        c = time.thread_time()
        engine.process(stream[i : i + batch])
        per.append((time.thread_time() - c) * 1000)
    wall = time.perf_counter() - w
    gc.unfreeze()
    cpu_us = sum(per) / len(stream) * 1000
    return {
        "events": len(stream),
        "cpu_us_per_event": round(cpu_us, 2),
        "wall_us_per_event": round(wall / len(stream) * 1e6, 2),
        "cores_at_50k": round(cpu_us * 50_000 / 1e6, 3),
        "max_rate_one_core": round(1e6 / cpu_us),
        "batch_cpu_p50_ms": round(pct(per, 50), 3),
        "batch_cpu_p99_ms": round(pct(per, 99), 3),
        "batch_cpu_max_ms": round(max(per), 3),
    }


def memory_run(counts: list[int]) -> list[dict]:
    """Heap of the engine's state after seeing `n` devices (each with a few peers/ports/types)."""
    out = []
    for n in counts:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        engine = DetectionEngine(
            [*build_rules(), BaselineDetector()], learning_ns=10**12, ledger=False
        )
        s = Stream(n, seed=1)
        for i in range(0, n * 12, 10_000):  # ~12 events per device
            batch = [s.event(T0 + (i + j) * 100_000) for j in range(10_000)]
            engine.process(batch)
            del batch
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        state = {d.detector_id: d.state() for d in engine.detectors}
        base_det = next(d for d in engine.detectors if d.detector_id == "baseline")
        out.append(
            {
                "devices": n,
                "profiles": len(base_det.profiles),
                "heap_mb": round(heap / 2**20, 1),
                "heap_kb_per_device": round(heap / 1024 / n, 2),
                "state_json_mb": round(len(msgspec.json.encode(state)) / 2**20, 1),
            }
        )
        del engine, state
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[50_000, 40_000, 30_000, 20_000],
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument(
        "--models-rates", type=lambda v: [int(x) for x in v.split(",")], default=[2_000, 4_000]
    )
    ap.add_argument("--models-seconds", type=float, default=3.0)
    ap.add_argument("--memory", default="1000,2500,5000,10000,25000,60000,100000")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="change the process priority first (negative: as a sensor would run)",
    )
    ap.add_argument("--label", default="", help="suffix of the JSON file name")
    args = ap.parse_args()
    if args.nice:
        os.nice(args.nice)
    load = os.getloadavg()
    runs = []
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    sets = {
        "rules+baselines": lambda: [*build_rules(), BaselineDetector()],
        "full (with models)": default_detectors,
    }
    cpu = {}
    print(
        f"{'detectors':20}{'cpu µs/ev':>10}{'wall µs/ev':>11}{'cores @50k':>11}"
        f"{'max/s 1 core':>13}{'1ms batch cpu p50/p99/max ms':>30}"
    )
    for name, make in sets.items():
        c = cpu_run(make(), args.devices)
        cpu[name] = c
        print(
            f"{name:20}{c['cpu_us_per_event']:>10}{c['wall_us_per_event']:>11}"
            f"{c['cores_at_50k']:>11}{c['max_rate_one_core']:>13}"
            f"{c['batch_cpu_p50_ms']:>14}/{c['batch_cpu_p99_ms']}/{c['batch_cpu_max_ms']}"
        )
    print()
    print(
        f"{'detectors':20}{'rate/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'alert p50':>10}"
        f"{'alert p99':>10}{'max ms':>9}{'wall µs/ev':>11}{'cpu µs/ev':>10}{'busy':>6}"
    )
    plan = [("rules+baselines", r) for r in args.rates] + [
        ("full (with models)", r) for r in args.models_rates
    ]
    for name, rate in plan:
        seconds = args.seconds if name == "rules+baselines" else args.models_seconds
        r = latency_run(sets[name](), rate, seconds, args.devices)
        r.update(detectors=name, rate=rate)
        runs.append(r)
        print(
            f"{name:20}{rate:>8}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['alert_p50_ms']:>10}"
            f"{r['alert_p99_ms']:>10}{r['max_ms']:>9}{r['us_per_event']:>11}"
            f"{r['cpu_us_per_event']:>10}{r['cpu_busy']:>6}"
        )
    mem = memory_run([int(x) for x in args.memory.split(",") if x])
    print(f"\n{'devices':>8}{'profiles':>10}{'heap MB':>9}{'KB/device':>11}{'state MB':>10}")
    for m in mem:
        print(
            f"{m['devices']:>8}{m['profiles']:>10}{m['heap_mb']:>9}{m['heap_kb_per_device']:>11}"
            f"{m['state_json_mb']:>10}"
        )
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    name = "detect_latency" + (f"_{args.label}" if args.label else "")
    (out / f"{name}.json").write_text(
        json.dumps(
            {
                "load_average": load,
                "load_average_end": os.getloadavg(),
                "scheduler": os.sched_getscheduler(0),
                "cores": os.cpu_count(),
                "cpu": cpu,
                "latency": runs,
                "memory": mem,
                "args": vars(args),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
