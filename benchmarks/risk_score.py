"""Risk scoring cost beside the matching it needs, for a synthetic hospital inventory.

Devices: --devices inventory records cycling through the hold-out device descriptions of
tests/intel/match_holdout.yaml (vendor, model, version as a CMMS writes them), with varied
criticality, protocols, subnets and external peers. Intelligence: all 144 CISA ICSMA advisories
and the KEV catalog from ../shared/data. Baseline: `intel.match.match_devices` alone (what any
vulnerability listing costs); then VEX application + `risk.model.score_device` on top. The
table shows both times and the ratio (scoring time / matching time), measured in one run.

    python benchmarks/risk_score.py [--devices 20000]

Writes benchmarks/out/risk_score.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from medsentry.intel.csaf import read_csaf
from medsentry.intel.kev import parse_kev
from medsentry.intel.match import IntelIndex, match_devices
from medsentry.intel.vex_apply import VexIndex, apply_vex
from medsentry.inventory.model import CRITICALITIES, Attribute, Device
from medsentry.risk.assess import vuln_inputs
from medsentry.risk.model import Neighbourhood, score_device

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()


def inventory(n: int) -> list[Device]:
    cases = yaml.safe_load((ROOT / "tests" / "intel" / "match_holdout.yaml").read_text())["cases"]
    protos = [["hl7-mllp"], ["dicom"], ["https"], ["http", "telnet"], []]
    out = []
    for i in range(n):
        c = cases[i % len(cases)]
        out.append(
            Device(
                device_id=f"ip:10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                ips=[f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"],
                vendor=Attribute(value=c["vendor"], confidence=1.0),
                model=Attribute(value=c["product"], confidence=1.0),
                software_version=Attribute(value=str(c.get("version", "")), confidence=1.0)
                if c.get("version")
                else None,
                criticality=CRITICALITIES[i % 4],
                medical=i % 5 != 0,
                protocols=protos[i % len(protos)],
                external_peers=["52.1.2.3"] if i % 17 == 0 else [],
                phi_observed=i % 3 == 0,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=20_000)
    args = ap.parse_args()
    csaf = SHARED / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white"
    advisories = [read_csaf(p) for p in sorted(csaf.glob("20*/*.json"))]
    kev_doc = json.loads((SHARED / "kev" / "known_exploited_vulnerabilities.json").read_bytes())
    _version, entries = parse_kev(kev_doc, "kev")
    kev = {e.cve: e for e in entries}
    index = IntelIndex(advisories=advisories, kev=kev)
    devices = inventory(args.devices)
    load = os.getloadavg()

    t = time.perf_counter()
    matches = match_devices(index, devices)
    t_match = time.perf_counter() - t

    t = time.perf_counter()
    vex = VexIndex([])
    by_dev: dict[str, list] = {}
    for v in apply_vex(matches, vex):
        by_dev.setdefault(v.match.device_id, []).append(v)
    hood = Neighbourhood(devices)
    scores = [score_device(d, vuln_inputs(by_dev.get(d.device_id, [])), hood) for d in devices]
    t_score = time.perf_counter() - t

    bands: dict[str, int] = {}
    for s in scores:
        bands[s.band] = bands.get(s.band, 0) + 1
    result = {
        "devices": len(devices),
        "matches": len(matches),
        "match_s": round(t_match, 3),
        "vex_and_score_s": round(t_score, 3),
        "score_over_match": round(t_score / t_match, 2),
        "devices_per_s_scoring": round(len(devices) / t_score),
        "bands": bands,
        "load_average": load,
    }
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 shared cores)")
    print(f"{'step':28} {'seconds':>9} {'devices/s':>10}")
    print(f"{'match_devices (baseline)':28} {t_match:>9.3f} {len(devices) / t_match:>10.0f}")
    print(f"{'apply VEX + score_device':28} {t_score:>9.3f} {len(devices) / t_score:>10.0f}")
    print(f"scoring / matching = {t_score / t_match:.2f}; {len(matches)} matches; bands {bands}")
    out = ROOT / "benchmarks" / "out" / "risk_score.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
