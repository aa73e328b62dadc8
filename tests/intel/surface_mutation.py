"""Mutation of the inputs a user hands over besides advisories and SBOM JSON: CMMS asset lists
(CSV, JSON), CycloneDX XML SBOMs, EPSS CSV, the device list of `vulns --devices`, zone policies
and the user's own fingerprint rules. A reader answers with its result or a MedsentryError
(exit 2 in the CLI), never another exception (an internal error).

    python tests/intel/surface_mutation.py --seconds 300 --seed 1
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for extra in (TESTS / "protocols", HERE):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from doc_mutation import mutate as mutate_doc  # noqa: E402
from seeded_fuzz import mutate_bytes  # noqa: E402

from medsentry.controls.segmentation import load_policy  # noqa: E402
from medsentry.intel.devices_csv import read_devices_csv  # noqa: E402
from medsentry.intel.epss import parse_epss  # noqa: E402
from medsentry.intel.sbom import parse_sbom  # noqa: E402
from medsentry.intel.sbom_model import DeviceModel  # noqa: E402
from medsentry.inventory.cmms import read_assets  # noqa: E402
from medsentry.inventory.fingerprints import load_library  # noqa: E402

SHARED = TESTS.parents[1] / "shared" / "data"
KINDS = ["cmms-csv", "cmms-json", "sbom-xml", "epss", "devices-csv", "policy", "fingerprints"]

CMMS_CSV = (
    b"Asset Tag,MAC,IP,Manufacturer,Model,Serial Number,Location,Department,Category\n"
    b"BME-1,00:1b:2c:3d:4e:5f,10.0.0.5,GE,CARESCAPE B650,SN1,ICU,Critical Care,patient-monitor\n"
    b"BME-2,00-1B-2C-3D-4E-60,fe80::1,Philips,MX800,SN2,ED,ED,Infusion pump\n"
)
CMMS_JSON = {"assets": [{"asset_tag": "A1", "mac": "00:1b:2c:3d:4e:5f", "ip": "10.0.0.5",
                         "vendor": "GE", "model": "X", "category": "patient-monitor"}]}  # fmt: skip
POLICY = {
    "zones": [
        {"name": "pumps", "categories": ["infusion-pump*"]},
        {"name": "imaging", "vlans": [20], "subnets": ["10.20.0.0/16", "fd00:21::/64"]},
        {"name": "it", "subnets": ["10.0.0.0/8"]},
    ],
    "intra_zone": "check",
    "allow": [{"from": "imaging", "to": "it", "transport": "tcp", "port": [104, "11112-11113"]}],
}
FINGERPRINTS = {
    "source": "test",
    "rules": [
        {"id": "mine.pump", "when": {"hostname": {"regex": "^pump-"}, "!platform": "mobile"},
         "set": {"category": "infusion-pump", "vendor": "{value}"}, "confidence": 0.6,
         "source": "our naming scheme"},
        {"id": "mine.ge", "when": {"dhcp.vendor_class": {"in": ["GE Medical"]}},
         "set": {"vendor": "GE HealthCare"}, "confidence": 0.7, "source": "seen"},
    ],
}  # fmt: skip


def _seeds() -> dict[str, bytes]:
    data = HERE / "data"
    out = {
        "cmms-csv": CMMS_CSV,
        "devices-csv": (data / "hospital_inventory.csv").read_bytes(),
        "epss": (data / "epss_sample.csv").read_bytes(),
    }
    xml = SHARED / "sbom" / "cyclonedx_examples" / "SBOM" / "cern-lhc-vdm-editor-e564943"
    if (xml / "bom.xml").is_file():
        out["sbom-xml"] = (xml / "bom.xml").read_bytes()
    return out


SEEDS = _seeds()


def case(kind: str, rnd: random.Random, work: Path, mutate: bool = True) -> Callable[[], object]:
    """One mutant of `kind` (the seed itself with `mutate=False`), read as the CLI reads it
    when the returned thunk runs."""

    def at(name: str, data: bytes) -> Path:
        p = work / name
        p.write_bytes(data)
        return p

    bytes_of = mutate_bytes if mutate else (lambda data, _rnd: data)
    if kind == "cmms-csv":
        data = bytes_of(SEEDS["cmms-csv"], rnd)
        return lambda: read_assets(at("assets.csv", data))
    if kind == "cmms-json":
        data = (
            json.dumps(mutate_doc(copy.deepcopy(CMMS_JSON), rnd)).encode()
            if mutate and rnd.random() < 0.5
            else bytes_of(json.dumps(CMMS_JSON).encode(), rnd)
        )
        return lambda: read_assets(at("assets.json", data))
    if kind == "sbom-xml":
        data = bytes_of(SEEDS["sbom-xml"], rnd)
        return lambda: parse_sbom(data, "bom.xml", DeviceModel("Acme", "Gateway", "1.0"))
    if kind == "epss":
        data = bytes_of(SEEDS["epss"], rnd)
        return lambda: parse_epss(data, "epss.csv")
    if kind == "devices-csv":
        data = bytes_of(rnd.choice([SEEDS["devices-csv"], CMMS_CSV]), rnd)
        return lambda: read_devices_csv(at("devices.csv", data))
    doc = POLICY if kind == "policy" else FINGERPRINTS
    data = (
        yaml.safe_dump(
            mutate_doc(copy.deepcopy(doc), rnd), allow_unicode=True, sort_keys=False
        ).encode()
        if mutate and rnd.random() < 0.7
        else bytes_of(yaml.safe_dump(doc, sort_keys=False).encode(), rnd)
    )
    if kind == "policy":
        return lambda: load_policy(at("zones.yaml", data))
    rules = work / "fingerprints"
    rules.mkdir(exist_ok=True)
    return lambda: (at("fingerprints/mine.yaml", data), load_library([rules]))


def main() -> int:
    from medsentry.errors import MedsentryError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    kinds = [k for k in KINDS if k != "sbom-xml" or "sbom-xml" in SEEDS]
    found: dict[tuple, str] = {}
    runs = 0
    end = time.monotonic() + a.seconds
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < end:
            runs += 1
            kind = rnd.choice(kinds)
            try:
                case(kind, rnd, Path(tmp))()
            except MedsentryError:
                pass
            except Exception as exc:  # every other exception is the finding
                where = traceback.extract_tb(exc.__traceback__)[-1]
                key = (kind, type(exc).__name__, Path(where.filename).name, where.lineno)
                if key not in found:
                    found[key] = str(exc)[:200]
                    print("FOUND", key, found[key], flush=True)
    print(f"{runs} mutants, {len(found)} distinct failures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
