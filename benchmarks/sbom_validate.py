"""SBOM import speed: the real SBOMs of shared/data/sbom, schema validation included.

Baseline: cyclonedx-python-lib's own `JsonValidator` (draft-7 with jsonschema's full RFC 3987
IRI grammar, rfc3987-syntax's lark parser). medsentry (`intel.sbom.parse_sbom`): the same
bundled CycloneDX schema, with IRIs checked by RFC 3987's excluded characters, then the
component walk. Both validate the same documents against the same schema; the table shows
seconds per document (best of --repeat) and the ratio, measured in the same run.

    python benchmarks/sbom_validate.py [--repeat 3]

Writes benchmarks/out/sbom_validate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonValidator

from medsentry.intel.sbom import parse_sbom
from medsentry.intel.sbom_model import DeviceModel

ROOT = Path(__file__).resolve().parents[1]
SBOMS = (ROOT / ".." / "shared" / "data" / "sbom").resolve()
DM = DeviceModel("Bench", "Device", "1")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = [
        SBOMS / "medical_device_case_study/sboms/case-study/extended.sbom.json",
        SBOMS / "medical_device_case_study/sboms/case-study/narrow.sbom.json",
        SBOMS / "cyclonedx_examples/SBOM/laravel-7.12.0/bom.1.4.json",
        SBOMS / "cyclonedx_examples/SBOM/dropwizard-1.3.15/bom.json",
        SBOMS / "cyclonedx_examples/SBOM/proton-bridge/proton-bridge-v1.8.0.bom.json",
        SBOMS / "cyclonedx_examples/SBOM/juice-shop/v11.1.2/bom.json",
        SBOMS / "cyclonedx_examples/SBOM/keycloak-10.0.2/bom.json",
    ]
    load = os.getloadavg()
    rows = []
    for f in files:
        data = f.read_bytes()
        text = data.decode()
        spec = json.loads(data)["specVersion"]
        validator = JsonValidator(SchemaVersion.from_version(spec))
        assert validator.validate_str(text) is None
        parse_sbom(data, str(f), DM)  # warm the cached validator
        base = best(lambda v=validator, t=text: v.validate_str(t), args.repeat)
        ours = best(lambda d=data, s=str(f): parse_sbom(d, s, DM), args.repeat)
        n = len(parse_sbom(data, str(f), DM).components)
        rows.append(
            {
                "sbom": str(f.relative_to(SBOMS)),
                "spec": spec,
                "components": n,
                "baseline_validate_s": round(base, 4),
                "medsentry_import_s": round(ours, 4),
                "ratio": round(base / ours, 1),
            }
        )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 shared cores)")
    print(f"{'sbom':62} {'spec':4} {'comps':>5} {'cdx-lib s':>10} {'medsentry s':>11} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['sbom']:62} {r['spec']:4} {r['components']:>5} {r['baseline_validate_s']:>10.3f}"
            f" {r['medsentry_import_s']:>11.3f} {r['ratio']:>5.1f}x"
        )
    out = ROOT / "benchmarks" / "out" / "sbom_validate.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"load_average": load, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
