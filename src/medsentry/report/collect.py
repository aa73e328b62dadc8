"""Everything a report shows, gathered from the store into one JSON-ready structure.

Sections whose source is absent say so ("not available: ...") instead of showing anything
made up: the inventory, vulnerability intelligence, risk scores and detection alerts each
come from their own engine through its public API, when that engine is installed and has run.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import importlib
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from medsentry import __version__
from medsentry.controls.devices import load_inventory
from medsentry.controls.knowledge import SEVERITIES, knowledge
from medsentry.controls.store import SEVERITY_RANK, finding_dicts
from medsentry.controls.tables import report_runs
from medsentry.inventory.model import CRITICALITIES, Device
from medsentry.store import ns_to_iso
from medsentry.store.damage import decode_stored

if TYPE_CHECKING:
    from medsentry.store import Store

NA_INVENTORY = "not available: no device inventory (run a scan with the inventory engine)"
NA_INTEL = "not available: no vulnerability intelligence imported (medsentry intel import)"
NA_RISK = "not available: no risk scores (needs the inventory and the risk engine)"
NA_ALERTS = "not available: no detection alerts stored (detection engine not run)"
NA_FLOWS = "not available: no flows stored to derive a policy from"
CRIT_RANK = {c: len(CRITICALITIES) - i for i, c in enumerate(CRITICALITIES)}
TREND_KEYS = (
    "devices",
    "medical_devices",
    "open_findings",
    "critical_findings",
    "high_findings",
    "kev_devices",
    "open_alerts",
    "segmentation_violations",
)


def _label(d: Device | None, device_id: str) -> str:
    if d is None:
        return device_id
    parts = [a.value for a in (d.vendor, d.model) if a is not None]
    name = " ".join(parts) or d.hostname or (d.ips[0] if d.ips else device_id)
    return name if not d.ips or d.ips[0] in name else f"{name} ({d.ips[0]})"


def _risk(store: Store, devices: Sequence[Device]) -> list[Any] | None:
    if not devices:
        return None
    try:
        assess = importlib.import_module("medsentry.risk.assess")
    except ImportError:
        return None
    try:
        return list(assess.assess(store, devices))
    except SQLAlchemyError:
        return None


def _alerts(store: Store) -> dict[str, Any] | None:
    try:
        dstore = importlib.import_module("medsentry.detect.store")
    except ImportError:
        return None
    try:
        alerts = dstore.list_alerts(store)
    except SQLAlchemyError:
        return None
    if not alerts:
        return None
    open_ = [a for a in alerts if a.open]
    by_rule = Counter((a.rule_id, a.technique_id, a.technique_name) for a in open_)
    top = sorted(open_, key=lambda a: (-SEVERITY_RANK.get(a.severity, 0), -a.last_seen_ns))
    return {
        "total": len(alerts),
        "open": len(open_),
        "by_severity": dict(Counter(a.severity for a in open_)),
        "by_status": dict(Counter(a.status for a in alerts)),
        "by_rule": [
            {"rule_id": r, "technique_id": t, "technique": n, "count": c}
            for (r, t, n), c in by_rule.most_common(20)
        ],
        "top": [
            {
                "alert_id": a.alert_id,
                "severity": a.severity,
                "title": a.title,
                "device_id": a.device_id,
                "technique_id": a.technique_id,
                "technique": a.technique_name,
                "count": a.count,
                "first_seen": ns_to_iso(a.first_seen_ns),
                "last_seen": ns_to_iso(a.last_seen_ns),
                "status": a.status,
            }
            for a in top
        ],
    }


def _ledger_checkpoint() -> dict[str, Any]:
    """Sign the ledger's current tree head now: the report names the log state it was made at."""
    from medsentry.ledger import ledger

    signed = ledger().checkpoint()
    cp = signed.checkpoint
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": base64.b64encode(cp.root).decode(),
        "note": str(signed),
    }


_dict_dec = msgspec.json.Decoder(dict)


def _previous(store: Store) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(report_runs).order_by(report_runs.c.created_ns.desc()).limit(1)
        ).first()
    if row is None:
        return None
    summary = decode_stored(_dict_dec, row.summary, "report_runs", "summary", row.created_ns)
    return {"created_ns": row.created_ns, "summary": summary}


def remember(store: Store, report: dict[str, Any]) -> None:
    """Keep this report's headline numbers for the next report's trend."""
    summary = {k: report["summary"].get(k) for k in TREND_KEYS}
    with store.engine.begin() as conn:
        conn.execute(
            insert(report_runs),
            [
                {
                    "created_ns": report["generated_ns"],
                    "summary": msgspec.json.encode(summary).decode(),
                }
            ],
        )


def iso_times(ns: Sequence[int | None]) -> list[str]:
    """ISO 8601 UTC (microseconds, "Z") of many nanosecond times at once (NumPy)."""
    arr = np.array([-1 if v is None else v for v in ns], dtype=np.int64)
    text = np.datetime_as_string(arr.astype("datetime64[ns]"), unit="us")
    return ["" if v < 0 else f"{s}Z" for v, s in zip(arr.tolist(), text.tolist(), strict=True)]


def _findings(store: Store, labels: dict[str, str]) -> list[dict[str, Any]]:
    rows = finding_dicts(store)
    first = iso_times([f["first_seen_ns"] for f in rows])
    last = iso_times([f["last_seen_ns"] for f in rows])
    closed = iso_times([f["closed_ns"] for f in rows])
    for f, a, b, c in zip(rows, first, last, closed, strict=True):
        f["device"] = labels.get(f["device_id"], f["device_id"])
        f["first_seen"], f["last_seen"], f["closed_at"] = a, b, c
    return rows


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while building 100,000-item structures of acyclic dicts and lists."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def collect(store: Store, **kw: Any) -> dict[str, Any]:
    """Gather the report (see `_collect` for the keywords)."""
    with _gc_paused():
        return _collect(store, **kw)


def _collect(
    store: Store,
    *,
    devices: Sequence[Device] | None = None,
    checkpoint: bool = True,
    now_ns: int | None = None,
    policy_from_flows: bool = True,
) -> dict[str, Any]:
    kn = knowledge()
    now_ns = now_ns or time.time_ns()
    devices = list(load_inventory(store) if devices is None else devices)
    by_id = {d.device_id: d for d in devices}
    labels = {d.device_id: _label(d, d.device_id) for d in devices}
    findings = _findings(store, labels)
    open_f = [f for f in findings if f["status"] == "open"]

    # -- vulnerabilities (intel) and risk --------------------------------------------------------
    from medsentry.controls.vulns import device_matches

    matches = device_matches(store, devices)
    vulns: list[dict[str, Any]] | None = None
    kev_devices: set[str] = set()
    if matches is not None:
        vulns = []
        for m in matches:
            if m.kev:
                kev_devices.add(m.device_id)
            vulns.append(
                {
                    "device_id": m.device_id,
                    "device": labels.get(m.device_id, m.device_id),
                    "advisory": m.advisory_id,
                    "status": m.status,
                    "confidence": round(m.confidence, 2),
                    "cves": list(m.cves),
                    "kev": bool(m.kev),
                    "max_cvss": m.max_cvss,
                    "epss": m.epss,
                    "explanation": m.explanation,
                }
            )
        vulns.sort(key=lambda v: (not v["kev"], -(v["max_cvss"] or 0), v["device_id"]))
    risks = _risk(store, devices)
    risk_of = {r.device_id: r for r in risks or []}

    # -- devices ---------------------------------------------------------------------------------
    per_dev: dict[str, Counter] = defaultdict(Counter)
    for f in open_f:
        per_dev[f["device_id"]][f["severity"]] += 1
    device_rows = []
    ids = list(by_id) + sorted(set(per_dev) - set(by_id))
    for did in ids:
        d = by_id.get(did)
        r = risk_of.get(did)
        device_rows.append(
            {
                "device_id": did,
                "device": labels.get(did, did),
                "category": d.category.value if d is not None and d.category else None,
                "criticality": d.criticality if d is not None else None,
                "medical": d.medical if d is not None else None,
                "ips": list(d.ips) if d is not None else [],
                "risk": r.risk if r is not None else None,
                "band": r.band if r is not None else None,
                "risk_driver": r.driver if r is not None else None,
                "kev": did in kev_devices,
                "findings": {s: per_dev[did][s] for s in SEVERITIES if per_dev[did][s]},
                "open_findings": sum(per_dev[did].values()),
            }
        )
    device_rows.sort(
        key=lambda r: (
            -(r["risk"] if r["risk"] is not None else -1),
            -max((SEVERITY_RANK[s] for s in r["findings"]), default=-1),
            -r["open_findings"],
            r["device_id"],
        )
    )

    # -- findings by framework and by device -----------------------------------------------------
    by_fw: dict[str, dict[str, Any]] = {}
    per_type_open = Counter(f["type"] for f in open_f)
    devs_per_type: dict[str, set[str]] = defaultdict(set)
    for f in open_f:
        devs_per_type[f["type"]].add(f["device_id"])
    for fid, fw in kn.frameworks.items():
        rows: dict[str, dict[str, Any]] = {}
        for t, n in per_type_open.items():
            for ref in kn.controls_for(t).get(fid, []):
                row = rows.setdefault(
                    ref.control,
                    {
                        "control": ref.control,
                        "title": ref.title,
                        "findings": 0,
                        "types": [],
                        "devices": set(),
                    },
                )
                row["findings"] += n
                row["types"].append(t)
                row["devices"] |= devs_per_type[t]
        ordered = sorted(rows.values(), key=lambda r: (-r["findings"], r["control"]))
        for r in ordered:
            r["devices"] = len(r["devices"])
            r["types"] = sorted(r["types"])
        by_fw[fid] = {"name": fw.name, "source": fw.source, "controls": ordered}

    dev_rank = {
        did: (
            -CRIT_RANK.get(d.criticality, 0),
            -(risk_of[did].risk if did in risk_of else 0),
        )
        for did, d in by_id.items()
    }

    def top_key(f: dict[str, Any]) -> tuple:
        return (
            -SEVERITY_RANK.get(f["severity"], 0),
            *dev_rank.get(f["device_id"], (0, 0)),
            -f["evidence_count"],
            f["finding_id"],
        )

    ranked = sorted(open_f, key=top_key)
    # -- segmentation ----------------------------------------------------------------------------
    seg = [f for f in ranked if f["type"] == "segmentation-violation"]
    policy: dict[str, Any] | None = None
    nft: str | None = None
    if policy_from_flows:
        from medsentry.controls.firewall import to_nftables
        from medsentry.controls.segmentation import recommend, stored_conversations

        convs = stored_conversations(store)
        if convs:
            rec = recommend(convs, devices)
            policy, nft = rec.as_dict(), to_nftables(rec)

    alerts = _alerts(store)
    sev_counts = Counter(f["severity"] for f in open_f)
    cats = Counter((d.category.value if d.category else "unclassified") for d in devices)
    crit = Counter(d.criticality for d in devices)
    bands = Counter(r.band for r in risks) if risks else None
    histogram = None
    if risks:
        buckets = Counter(min(r.risk // 10, 9) for r in risks)
        histogram = {f"{b * 10}-{b * 10 + 9 if b < 9 else 100}": buckets[b] for b in range(10)}
    summary = {
        "devices": len(devices),
        "medical_devices": sum(1 for d in devices if d.medical),
        "devices_with_findings": len(per_dev),
        "by_category": dict(cats.most_common()),
        "by_criticality": {c: crit[c] for c in CRITICALITIES if crit[c]},
        "open_findings": len(open_f),
        "closed_findings": len(findings) - len(open_f),
        "findings_by_severity": {s: sev_counts[s] for s in reversed(SEVERITIES) if sev_counts[s]},
        "findings_by_type": dict(per_type_open.most_common()),
        "critical_findings": sev_counts["critical"],
        "high_findings": sev_counts["high"],
        "kev_devices": len(kev_devices) if matches is not None else None,
        "vulnerable_devices": len({v["device_id"] for v in vulns}) if vulns is not None else None,
        "risk_bands": dict(bands) if bands is not None else None,
        "risk_histogram": histogram,
        "open_alerts": alerts["open"] if alerts else None,
        "segmentation_violations": len(seg),
    }
    prev = _previous(store)
    trend = None
    if prev is not None:
        trend = {
            "previous_at": ns_to_iso(prev["created_ns"]),
            "rows": [
                {"key": k, "previous": prev["summary"].get(k), "now": summary.get(k)}
                for k in TREND_KEYS
            ],
        }
    with store.engine.connect() as conn:
        from medsentry.store.schema import DEPTH_FLOWS, captures, flows

        ncap = conn.execute(select(func.count()).select_from(captures)).scalar_one()
        shallow = conn.execute(
            select(func.count()).select_from(captures).where(captures.c.depth == DEPTH_FLOWS)
        ).scalar_one()
        nflows = conn.execute(select(func.count()).select_from(flows)).scalar_one()
        first, last = conn.execute(select(func.min(flows.c.ts_ns), func.max(flows.c.last_ns))).one()
    return {
        "tool": {"name": "medsentry", "version": __version__},
        "generated_ns": now_ns,
        "generated_at": ns_to_iso(now_ns),
        "scope": {
            "captures": ncap,
            # read with `scan --flows-only`: no payload findings (PHI, credentials) from them
            "captures_flows_only": shallow,
            "flows": nflows,
            "first_seen": ns_to_iso(first),
            "last_seen": ns_to_iso(last),
        },
        "availability": {
            "inventory": None if devices else NA_INVENTORY,
            "intel": None if matches is not None else NA_INTEL,
            "risk": None if risks is not None else NA_RISK,
            "alerts": None if alerts is not None else NA_ALERTS,
            "policy": None if policy is not None else NA_FLOWS,
        },
        "summary": summary,
        "trend": trend,
        "devices": device_rows,
        "top_risks": ranked[:10],
        "findings": ranked + [f for f in findings if f["status"] != "open"],
        "findings_by_framework": by_fw,
        "vulnerabilities": vulns,
        "segmentation": {"violations": seg, "policy": policy, "nftables": nft},
        "alerts": alerts,
        "ledger": _ledger_checkpoint() if checkpoint else None,
        "finding_types": [
            {
                "type": t.id,
                "title": t.title,
                "severity": t.severity,
                "remediation": t.remediation,
                "source": t.source,
                "controls": {
                    fw: [r.control for r in refs] for fw, refs in kn.controls_for(t.id).items()
                },
                "not_applicable": kn.not_applicable.get(t.id, {}),
            }
            for t in kn.types.values()
        ],
    }
