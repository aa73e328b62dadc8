"""WUSTL-EHMS-2020 through the real detection engine: an honest IoMT detection benchmark.

    python benchmarks/wustl_ehms.py                    # full run, writes out/ JSON and the .md
    python benchmarks/wustl_ehms.py --limit 3000       # a slice (what the test runs)

The dataset (Hady et al., IEEE Access 8:106576, 2020) is 16,318 Argus flow records of a
patient-monitoring testbed with eight vital signs each, labelled normal / spoofing / data
alteration. Protocol, fixed before any evaluation:

- Records are replayed in their recorded order, one `MonitoredFlow` event each, through
  `DetectionEngine` with the full detector set of `detect.registry.default_detectors()` (the
  rules, the behavioural baselines and the models of `detect/models/`).
  The dataset has no timestamps: the event clock is the running sum of flow durations
  ("flow-time"), so latencies in seconds are flow-time, a lower bound of wall time.
- Learning period: the first LEARN records. Only the normal ones are fed (the operator
  vouches for a clean baseline); the attack records inside it are withheld from learning and
  from scoring. At its end every threshold is fixed from learning-period scores (flow model:
  0.999 quantile alone, 0.99 quantile with an IP-to-MAC binding mismatch; vitals step model:
  0.999 quantile) and the detector state is committed to a SQLite store; a NEW engine loads
  that state and scores the rest, learning nothing more. Labels are read only to score.
- Model features carry no host identity (no address, MAC, port, packet number, flow flags);
  IP-to-MAC bindings are stateful evidence the detector derives online (trust on first use).
- A record is predicted "data alteration" when a model or vitals alert names it, else
  "spoofing" when any other alert (the binding mismatch) names it, else "normal".

Baselines under the same rules: a scikit-learn random forest over the same non-identifying
columns (flow metrics + vitals), trained prequentially (refit every REFIT records on all
labelled records before the block; labels of the past are assumed known at once, which
favours it), and for reference the usual random 70/30 split with and without the leaking
address/MAC columns.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
DEFAULT_DATA = (
    HERE.parent.parent
    / "shared"
    / "data"
    / "wustl_ehms_2020"
    / "wustl-ehms-2020_with_attacks_categories.csv"
)

LEARN = 2000  # learning-period records (12 % of the dataset)
REFIT = 500  # supervised baseline refit interval (records)
T0_NS = 1_577_836_800 * 1_000_000_000  # 2020-01-01T00:00:00Z: the replay's flow-time origin

CLASSES = ("normal", "spoofing", "data alteration")
LABELS = {"normal": 0, "Spoofing": 1, "Data Alteration": 2}
# Alerts that say "the data was altered" (else an alert means spoofing).
ALTERATION_RULES = frozenset(
    {
        "model.relay_mitm",
        "model.flow_hst",
        "model.vitals_jump",
        "vitals.impossible_value",
        "vitals.inconsistent",
        "hl7.impossible_vital",
    }
)

# Non-identifying numeric columns (no SrcAddr/DstAddr/Sport/Dport/SrcMac/DstMac/Packet_num,
# no Dir/Flgs).
FLOW_COLUMNS = (
    "SrcBytes",
    "DstBytes",
    "SrcLoad",
    "DstLoad",
    "SrcGap",
    "DstGap",
    "SIntPkt",
    "DIntPkt",
    "SIntPktAct",
    "DIntPktAct",
    "SrcJitter",
    "DstJitter",
    "sMaxPktSz",
    "dMaxPktSz",
    "sMinPktSz",
    "dMinPktSz",
    "Dur",
    "Trans",
    "TotPkts",
    "TotBytes",
    "Load",
    "Loss",
    "pLoss",
    "pSrcLoss",
    "pDstLoss",
    "Rate",
)
VITAL_COLUMNS = ("Temp", "SpO2", "Pulse_Rate", "SYS", "DIA", "Heart_rate", "Resp_Rate", "ST")
LEAKY_COLUMNS = ("SrcAddr", "DstAddr", "Sport", "Dport", "SrcMac", "DstMac", "Packet_num")

PUBLISHED = [
    ("Stacking ensemble (Alsolami et al. 2024)", "98.88 % accuracy", "address/MAC/port columns"),
    ("Bagging (Alsolami et al. 2024)", "97.83 % accuracy", "address/MAC/port columns"),
    ("MIC + XGBoost (Zhang et al. 2023)", "95.01 % accuracy", "address/MAC/port columns"),
]


# --- the records as events ---------------------------------------------------------------------
def read_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = []
        for i, row in enumerate(csv.DictReader(fh)):
            if limit is not None and i >= limit:
                break
            rows.append(row)
    return rows


def _port(v: str) -> int:
    v = v.strip()
    return int(v) if v.isdigit() else 0  # Argus prints some ports by service name


def to_events(rows: Sequence[dict[str, str]]) -> Iterator[Any]:
    """One MonitoredFlow per record; the clock is the running sum of flow durations."""
    from medsentry.events.telemetry import MonitoredFlow, VitalSigns

    t = T0_NS
    for i, r in enumerate(rows):
        dur = float(r["Dur"])
        f = float
        yield MonitoredFlow(
            ts_ns=t,
            flow_id=f"wustl-{i}",
            client=r["SrcAddr"],
            server=r["DstAddr"],
            client_port=_port(r["Sport"]),
            server_port=_port(r["Dport"]),
            client_mac=r["SrcMac"],
            server_mac=r["DstMac"],
            duration_s=dur,
            packets=int(f(r["TotPkts"])),
            bytes_c2s=int(f(r["SrcBytes"])),
            bytes_s2c=int(f(r["DstBytes"])),
            load_c2s_bps=f(r["SrcLoad"]),
            load_s2c_bps=f(r["DstLoad"]),
            rate_pps=f(r["Rate"]),
            iat_c2s_ms=f(r["SIntPkt"]),
            iat_s2c_ms=f(r["DIntPkt"]),
            jitter_c2s_ms=f(r["SrcJitter"]),
            jitter_s2c_ms=f(r["DstJitter"]),
            max_size_c2s=int(f(r["sMaxPktSz"])),
            max_size_s2c=int(f(r["dMaxPktSz"])),
            min_size_c2s=int(f(r["sMinPktSz"])),
            min_size_s2c=int(f(r["dMinPktSz"])),
            loss_packets=int(f(r["Loss"])),
            vitals=VitalSigns(
                temperature_c=f(r["Temp"]),
                spo2_pct=f(r["SpO2"]),
                pulse_rate_bpm=f(r["Pulse_Rate"]),
                systolic_mmhg=f(r["SYS"]),
                diastolic_mmhg=f(r["DIA"]),
                heart_rate_bpm=f(r["Heart_rate"]),
                resp_rate_bpm=f(r["Resp_Rate"]),
                st_segment_mv=f(r["ST"]),
            ),
        )
        t += max(int(dur * 1e9), 1)


def detectors(relay_quantile: float | None = None, algorithm: str | None = None) -> list[Any]:
    """The engine's full detector set (`detect.registry.default_detectors`: rules, baselines,
    models); the sensitivity and model-swap runs replace the monitored-flow model."""
    from medsentry.detect.models.flow import FlowAnomalyDetector
    from medsentry.detect.registry import default_detectors

    out = default_detectors()
    if relay_quantile is not None or algorithm is not None:
        kw: dict[str, Any] = {}
        if relay_quantile is not None:
            kw["relay_quantile"] = relay_quantile
        if algorithm is not None:
            kw["algorithm"] = algorithm
        out = [FlowAnomalyDetector(**kw) if type(d) is FlowAnomalyDetector else d for d in out]
    return out


def predict(rule_ids: set[str]) -> int:
    if not rule_ids:
        return 0
    return 2 if rule_ids & ALTERATION_RULES else 1


# --- replay ------------------------------------------------------------------------------------
def replay(
    rows: Sequence[dict[str, str]],
    learn: int,
    db_path: Path | None,
    relay_quantile: float | None = None,
    algorithm: str | None = None,
) -> dict[str, Any]:
    """Learn on the clean learning period, store, reload into a new engine, score the rest."""
    from medsentry.detect.engine import DetectionEngine
    from medsentry.store import open_store

    labels = [LABELS[r["Attack Category"]] for r in rows]
    events = list(to_events(rows))
    store = open_store(f"sqlite:///{db_path}") if db_path is not None else None
    t_learn = time.perf_counter()
    learner = DetectionEngine(detectors(relay_quantile, algorithm), store=store, ledger=False)
    learner.ctx.forced_learning = True
    fed = 0
    for ev, y in zip(events[:learn], labels[:learn], strict=True):
        if y == 0:  # only normal traffic during the learning period
            learner.process([ev])
            fed += 1
    learner.commit()
    t_learn = time.perf_counter() - t_learn

    # a new engine: its state comes from the store
    scorer = DetectionEngine(detectors(relay_quantile, algorithm), store=store, ledger=False)
    if store is None:  # no store: the same round trip through the stored form (JSON)
        for src, dst in zip(learner.detectors, scorer.detectors, strict=True):
            dst.load_state(msgspec.json.decode(msgspec.json.encode(src.state())))
        scorer.ctx.start_ns, scorer.ctx.now_ns = learner.ctx.start_ns, learner.ctx.now_ns
    scorer.ctx.forced_learning = False
    preds: list[int] = []
    fired: list[list[str]] = []
    t_score = time.perf_counter()
    took: list[float] = []  # seconds from handing the record over to having its alerts
    for ev in events[learn:]:
        t0 = time.perf_counter()
        raised = scorer.process([ev])
        took.append(time.perf_counter() - t0)
        ids = sorted({a.rule_id for a in raised})
        fired.append(ids)
        preds.append(predict(set(ids)))
    t_score = time.perf_counter() - t_score
    scorer.commit()
    thresholds = {
        d.detector_id: {
            k: getattr(d, k)
            for k in ("threshold", "relay_threshold")
            if getattr(d, k, None) is not None
        }
        for d in scorer.detectors
        if getattr(d, "threshold", None) is not None
    }
    if store is not None:
        store.engine.dispose()
    return {
        "y": labels[learn:],
        "pred": preds,
        "fired": fired,
        "durations": [float(r["Dur"]) for r in rows[learn:]],
        "learn_fed": fed,
        "learn_withheld": learn - fed,
        "learn_s": t_learn,
        "score_s": t_score,
        "thresholds": thresholds,
        "raised_alerts": scorer.raised,
        "process_s": took,
    }


# Ablations, computed from what fired: without the flow model a relay record would have been
# named by the binding mismatch alone (the detector raises one of the two per flow).
ABLATIONS = {
    "binding only": {"drop": {"model.relay_mitm", "model.flow_hst", "model.vitals_jump"}},
    "binding + vitals models": {"drop": {"model.relay_mitm", "model.flow_hst"}},
    "binding + flow model (no vitals)": {"drop": {"model.vitals_jump"}},
}


def ablate(fired: Sequence[list[str]], drop: set[str]) -> list[int]:
    out = []
    for ids in fired:
        kept = set(ids) - drop
        if "model.relay_mitm" in ids and "model.relay_mitm" in drop:
            kept.add("net.flow_binding_mismatch")
        out.append(predict(kept))
    return out


# --- metrics -----------------------------------------------------------------------------------
def prf(y: Sequence[int], p: Sequence[int], cls: int) -> tuple[float, float, float]:
    tp = sum(1 for a, b in zip(y, p, strict=True) if a == cls and b == cls)
    fp = sum(1 for a, b in zip(y, p, strict=True) if a != cls and b == cls)
    fn = sum(1 for a, b in zip(y, p, strict=True) if a == cls and b != cls)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def scores(y: Sequence[int], p: Sequence[int]) -> dict[str, Any]:
    yb = [int(v != 0) for v in y]
    pb = [int(v != 0) for v in p]
    bp, br, bf = prf(yb, pb, 1)
    per = {CLASSES[c]: prf(y, p, c) for c in range(3)}
    normal = [b for a, b in zip(y, p, strict=True) if a == 0]
    confusion = [[sum(1 for a, b in zip(y, p, strict=True) if a == i and b == j) for j in range(3)]
                 for i in range(3)]  # fmt: skip
    return {
        "records": len(y),
        "binary": {"precision": bp, "recall": br, "f1": bf},
        "accuracy_3class": sum(1 for a, b in zip(y, p, strict=True) if a == b) / max(len(y), 1),
        "per_class": {k: {"precision": v[0], "recall": v[1], "f1": v[2]} for k, v in per.items()},
        "macro_f1": sum(v[2] for v in per.values()) / 3,
        "macro_precision": sum(v[0] for v in per.values()) / 3,
        "macro_recall": sum(v[1] for v in per.values()) / 3,
        "false_alert_rate": sum(1 for v in normal if v != 0) / max(len(normal), 1),
        "confusion": confusion,
    }


def latency(y: Sequence[int], p: Sequence[int], durations: Sequence[float]) -> dict[str, Any]:
    """Per attack episode (a run of attack records): records and flow-time to the first alert."""
    episodes: list[tuple[int, int]] = []
    i = 0
    while i < len(y):
        if y[i] == 0:
            i += 1
            continue
        j = i
        while j < len(y) and y[j] == y[i]:
            j += 1
        episodes.append((i, j))
        i = j
    recs: list[int] = []
    secs: list[float] = []
    missed = 0
    for a, b in episodes:
        first = next((k for k in range(a, b) if p[k] != 0), None)
        if first is None:
            missed += 1
            continue
        recs.append(first - a)
        secs.append(sum(durations[a:first]))
    recs.sort()
    secs.sort()

    def med(v: list[Any]) -> Any:
        return v[len(v) // 2] if v else None

    return {
        "episodes": len(episodes),
        "detected": len(recs),
        "missed": missed,
        "records_median": med(recs),
        "records_max": max(recs) if recs else None,
        "flowtime_s_median": med(secs),
        "flowtime_s_max": max(secs) if secs else None,
    }


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    v = sorted(seconds)
    if not v:
        return {}
    return {f"p{q}": 1000 * v[min(len(v) - 1, int(q / 100 * len(v)))] for q in (50, 99)}


# --- supervised baselines ----------------------------------------------------------------------
def _matrix(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> Any:
    import numpy as np

    out = np.zeros((len(rows), len(columns)))
    codes: dict[str, dict[str, int]] = {c: {} for c in columns}
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            v = r[c].strip()
            try:
                out[i, j] = float(v)
            except ValueError:  # addresses, MACs, service names: an integer code
                out[i, j] = codes[c].setdefault(v, len(codes[c]))
    return out


def rf_prequential(rows: Sequence[dict[str, str]], learn: int, refit: int) -> dict[str, Any]:
    """Random forest refit every `refit` records on everything labelled before the block."""
    from sklearn.ensemble import RandomForestClassifier

    x = _matrix(rows, FLOW_COLUMNS + VITAL_COLUMNS)
    y = [LABELS[r["Attack Category"]] for r in rows]
    preds: list[int] = []
    t = time.perf_counter()
    for start in range(learn, len(rows), refit):
        clf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
        clf.fit(x[:start], y[:start])
        preds.extend(int(v) for v in clf.predict(x[start : start + refit]))
    return {"pred": preds, "seconds": time.perf_counter() - t}


def rf_split(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> dict[str, Any]:
    """The usual shuffled, stratified 70/30 split (ignores time order: for reference only)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x = _matrix(rows, columns)
    y = [LABELS[r["Attack Category"]] for r in rows]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    clf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(xtr, ytr)
    return scores(yte, [int(v) for v in clf.predict(xte)])


# --- report ------------------------------------------------------------------------------------
def _f(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f} %" if pct else f"{v:.4f}"


def render(result: dict[str, Any]) -> str:
    eng, rf = result["engine"], result.get("rf_prequential")
    lines = [
        "# WUSTL-EHMS-2020 through the detection engine",
        "",
        f"Generated by `benchmarks/wustl_ehms.py` on {result['date']} "
        f"({result['machine']}; load average {result['load']}).",
        "",
        f"Records: {result['records']} ({result['counts']}). Learning period: the first "
        f"{result['learn']} records, of which {result['learn_fed']} normal ones were fed and "
        f"{result['learn_withheld']} attack records withheld; scored: the remaining "
        f"{eng['records']} records, by a new engine loaded from the stored state "
        "(nothing relearned, nothing learned while scoring). Thresholds fixed at the end of "
        "learning, from learning-period scores only: "
        + ", ".join(
            f"`{k}` " + ", ".join(f"{n}={v:.6g}" for n, v in t.items())
            for k, t in result["thresholds"].items()
        )
        + ".",
        "",
        "## Results on the scored records",
        "",
        "| system | features | binary P | binary R | binary F1 | 3-class macro-P | "
        "3-class macro-R | 3-class macro-F1 | accuracy | normal records alerted |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name: str, feats: str, s: dict[str, Any]) -> str:
        b = s["binary"]
        return (
            f"| {name} | {feats} | {_f(b['precision'])} | {_f(b['recall'])} | {_f(b['f1'])} | "
            f"{_f(s['macro_precision'])} | {_f(s['macro_recall'])} | {_f(s['macro_f1'])} | "
            f"{_f(s['accuracy_3class'], True)} | {_f(s['false_alert_rate'], True)} |"
        )

    lines.append(
        row(
            "**medsentry engine** (rules + HST + vitals models)",
            "flow shape, vitals, online IP-MAC binding",
            eng,
        )
    )
    if rf:
        lines.append(
            row(
                "Random forest, prequential (refit every "
                f"{result['refit']} records on all past labels)",
                "same non-identifying columns",
                rf["scores"],
            )
        )
    for name, key, feats in (
        ("Random forest, shuffled 70/30 split", "rf_split_clean", "non-identifying columns"),
        ("Random forest, shuffled 70/30 split", "rf_split_leaky", "+ address/MAC/port columns"),
    ):
        if key in result:
            lines.append(row(name, feats + " (whole dataset, test = 30 %)", result[key]))
    if "swap_robust_z" in result:
        lines.append(
            row(
                "engine, flow model swapped: online robust z-score instead of Half-Space Trees",
                "same",
                result["swap_robust_z"],
            )
        )
    for name, sc in result.get("ablations", {}).items():
        lines.append(row(f"ablation: engine, {name}", "from the same run", sc))
    lines += [
        "",
        "Published (whole dataset, accuracy only; these keep the address, MAC and port columns, "
        "which carry the label: every attack record has the attacker's MAC):",
        "",
        "| paper | figure | leaking columns used |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED]
    lines += [
        "",
        "## Per class (engine)",
        "",
        "| class | precision | recall | F1 |",
        "|---|---|---|---|",
    ]
    for k, v in eng["per_class"].items():
        lines.append(f"| {k} | {_f(v['precision'])} | {_f(v['recall'])} | {_f(v['f1'])} |")
    c = eng["confusion"]
    lines += [
        "",
        "Confusion (rows: truth, columns: predicted normal / spoofing / data alteration): "
        + "; ".join(f"{CLASSES[i]} {c[i]}" for i in range(3)),
        "",
        "## Alert latency (engine)",
        "",
        "An episode is a run of consecutive attack records of one class. Flow-time is the sum "
        "of the flow durations from the episode's first record to the first alerted one (the "
        "dataset has no timestamps; wall time is at least this).",
        "",
        "| episodes | detected | missed | records to first alert (median / max) | "
        "flow-time to first alert, s (median / max) |",
        "|---|---|---|---|---|",
    ]
    lat = result["latency"]
    lines.append(
        f"| {lat['episodes']} | {lat['detected']} | {lat['missed']} | "
        f"{lat['records_median']} / {lat['records_max']} | "
        f"{_f(lat['flowtime_s_median'])} / {_f(lat['flowtime_s_max'])} |"
    )
    pm = result.get("process_ms") or {}
    if pm:
        first = "Every episode is named at its first record. " if lat["records_max"] == 0 else ""
        lines += [
            "",
            f"{first}The engine's own latency, from handing a record to `process` to having "
            f"its alert: p50 {pm['p50']:.3f} ms, p99 {pm['p99']:.3f} ms over the alerted "
            "records (one event per call, every detector).",
        ]
    if rf:
        rl = rf["latency"]
        lines += [
            "",
            "| supervised baseline | detected | missed | records to first alert "
            "(median / max) | flow-time, s (median / max) |",
            "|---|---|---|---|---|",
            f"| RF prequential ({rl['episodes']} episodes) | {rl['detected']} | {rl['missed']} | "
            f"{rl['records_median']} / {rl['records_max']} | "
            f"{_f(rl['flowtime_s_median'])} / {_f(rl['flowtime_s_max'])} |",
        ]
    lines += [
        "",
        "## Which detectors fired (scored records)",
        "",
        "| rule / model | on normal | on spoofing | on data alteration |",
        "|---|---|---|---|",
    ]
    for rid, cnt in sorted(result["fired_by_class"].items()):
        lines.append(f"| `{rid}` | {cnt[0]} | {cnt[1]} | {cnt[2]} |")
    if result.get("sensitivity"):
        lines += [
            "",
            "## Sensitivity (not used to choose anything)",
            "",
            "The same replay with other learning lengths and relay quantiles, run after the "
            "protocol above was fixed, to show how much the result depends on those choices "
            "(no store round trip here; the state is handed over as JSON).",
            "",
            "| learning records | relay quantile | binary F1 | 3-class macro-F1 | "
            "normal records alerted |",
            "|---|---|---|---|---|",
        ]
        for r in result["sensitivity"]:
            lines.append(
                f"| {r['learn']} | {r['relay_quantile']} | {_f(r['binary']['f1'])} | "
                f"{_f(r['macro_f1'])} | {_f(r['false_alert_rate'], True)} |"
            )
    lines += [
        "",
        "## Speed",
        "",
        f"Learning ({result['learn_fed']} events, incl. commit to SQLite): "
        f"{result['learn_s']:.2f} s; scoring ({eng['records']} events, one `process` call "
        f"each): {result['score_s']:.2f} s = {eng['records'] / result['score_s']:.0f} events/s "
        "through every detector (2 shared cores; see the load average above).",
        "",
        "## How to read this",
        "",
        "- Spoofing is visible only as state: the spoofed records come from the attacker's MAC "
        "with the patient monitor's IP, so `net.flow_binding_mismatch` (the MAC is not the one "
        "first bound to the IP) names them. No model feature identifies a host.",
        "- Data alteration is the same re-bound MAC plus a relaying host: the altered flows are "
        "about ten times slower (inter-packet times, duration, rate), which the Half-Space Trees "
        "place outside every learned region; `model.relay_mitm` requires both facts. The "
        "vital-sign values themselves stay within physiological limits in this dataset (no "
        "`vitals.impossible_value` fires); their step-to-step jumps are a weaker, partial signal "
        "(`model.vitals_jump`).",
        "- Honesty notes. The design (features, the relay correlation, the 0.99/0.999 "
        "quantiles, the learning length) was chosen after an exploratory look at the "
        "class-conditional feature distributions of the whole dataset; no threshold was fitted "
        "to the scored decisions. One change was made after looking at scored false alerts: "
        "the vitals step model first refused an alerted reading as the stream's reference, "
        "which made every real change alert three times in a row; it now keeps the jump as an "
        "unconfirmed second reference (module doc of `detect/models/vitals.py`). Withholding "
        "the attack records of the learning period uses the labels: it stands for an operator "
        "who vouches for a clean baseline.",
        "- What the ablations and the sensitivity table say: the binding state alone gives a "
        "perfect binary detector but cannot tell the two attacks apart (macro-F1 about 0.56); "
        "the flow model is what separates data alteration. The vitals step model adds nothing "
        "on this dataset (the jumps it flags are mostly real physiology: all the false alerts on "
        "normal records are its); it stays in the engine for value "
        "tampering that keeps the flow timing intact. The relay quantile has a cliff: at 0.995 "
        "of the learning scores the bar rises above most altered flows and 3-class macro-F1 "
        "falls to about 0.65, while 0.98 and 0.99 agree; the learning length matters little.",
        "- The supervised forest sees the vitals and flow metrics but has no notion of state: "
        "the one fact that separates spoofing from normal traffic here (the MAC no longer "
        "matches the address) is not in any non-identifying column. With the address/MAC "
        "columns it is perfect, which is what the published figures measure.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="first N records only")
    ap.add_argument("--learn", type=int, default=LEARN)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-sensitivity", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument(
        "--no-store",
        action="store_true",
        help="hand the learned state over as JSON instead of through a SQLite store",
    )
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data}: not found (WUSTL-EHMS-2020 CSV)", file=sys.stderr)
        return 2
    rows = read_rows(args.data, args.limit)
    counts = Counter(r["Attack Category"] for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MEDSENTRY_HOME", tmp)
        db = None if args.no_store else Path(tmp) / "detect.sqlite"
        run = replay(rows, args.learn, db)
    eng = scores(run["y"], run["pred"])
    fired_by_class: dict[str, list[int]] = {}
    for y, ids in zip(run["y"], run["fired"], strict=True):
        for rid in ids:
            fired_by_class.setdefault(rid, [0, 0, 0])[y] += 1
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
        "records": len(rows),
        "counts": ", ".join(f"{v} {k}" for k, v in counts.most_common()),
        "learn": args.learn,
        "refit": REFIT,
        "learn_fed": run["learn_fed"],
        "learn_withheld": run["learn_withheld"],
        "learn_s": run["learn_s"],
        "score_s": run["score_s"],
        "thresholds": run["thresholds"],
        "engine": eng,
        "latency": latency(run["y"], run["pred"], run["durations"]),
        "process_ms": _percentiles(
            [t for t, p in zip(run["process_s"], run["pred"], strict=True) if p != 0]
        ),
        "fired_by_class": fired_by_class,
    }
    result["ablations"] = {
        name: scores(run["y"], ablate(run["fired"], spec["drop"]))
        for name, spec in ABLATIONS.items()
    }
    swap = replay(rows, args.learn, None, algorithm="robust-z")
    result["swap_robust_z"] = scores(swap["y"], swap["pred"])
    result["swap_robust_z_thresholds"] = swap["thresholds"]
    if not args.no_sensitivity:
        sens = []
        for learn in (1000, 2000, 4000):
            for q in (0.98, 0.99, 0.995):
                r = replay(rows, learn, None, relay_quantile=q)
                sens.append({"learn": learn, "relay_quantile": q, **scores(r["y"], r["pred"])})
        result["sensitivity"] = sens
    if not args.no_baselines:
        rf = rf_prequential(rows, args.learn, REFIT)
        result["rf_prequential"] = {
            "scores": scores(run["y"], rf["pred"]),
            "latency": latency(run["y"], rf["pred"], run["durations"]),
            "seconds": rf["seconds"],
        }
        result["rf_split_clean"] = rf_split(rows, FLOW_COLUMNS + VITAL_COLUMNS)
        result["rf_split_leaky"] = rf_split(rows, FLOW_COLUMNS + VITAL_COLUMNS + LEAKY_COLUMNS)
    text = render(result)
    print(text)
    if not args.no_write:
        OUT_DIR.mkdir(exist_ok=True)
        (OUT_DIR / "wustl_ehms.json").write_text(json.dumps(result, indent=2) + "\n")
        if args.limit is None:
            (HERE / "wustl_ehms.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
