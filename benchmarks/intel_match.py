"""Matching at hospital and manufacturer scale: 100,000 devices against the 144 CISA medical
advisories, and 1,000 SBOMs x 200 components against a 100,000-entry OSV/NVD import plus the
advisories, with the indexed matcher (`medsentry.intel.match`) beside a naive loop of the same
matching (every device against every advisory product, every component against every record).

Devices are written the way inventories write them (vendor aliases and former names, model
numbers spaced and hyphenated differently, versions with prefixes), drawn from a pool of
distinct descriptions as a real fleet is (many identical pumps and monitors). The OSV/NVD
records are synthetic but shaped like the real ones (OSV ECOSYSTEM/SEMVER ranges over PyPI,
npm, Maven, Debian and Go packages; NVD CPE criteria with versionStart/End bounds). The naive
loop is timed on a sample and scaled linearly (it would take hours in full); the sample sizes
are printed.

    python benchmarks/intel_match.py [--devices 100000] [--sboms 1000] [--components 200]
        [--records 100000] [--naive-sample 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from medsentry.intel.components import evaluate, package_key, parse_cpe
from medsentry.intel.csaf import read_csaf
from medsentry.intel.match import DeviceQuery, IntelIndex, device_query
from medsentry.intel.model import (
    AffectedPackage,
    AffectedRange,
    Component,
    PackageVuln,
    RangeEvent,
)

CSAF_DIR = Path(__file__).resolve().parents[2] / "shared/data/cisa_csaf_icsma/csaf_files/OT/white"
OUT = Path(__file__).resolve().parent / "out"

# (vendor spellings, product spellings, version spellings) as inventories write them
FLEET = [
    (
        ["BD", "Becton Dickinson", "CareFusion"],
        ["Alaris PC Unit 8015", "Alaris 8015 PCU", "ALARIS PCU MODEL 8015"],
        ["9.19", "9.33", "12.1.2", "v12.1.3", ""],
    ),
    (
        ["GE Healthcare", "GE", "General Electric"],
        ["CARESCAPE B650", "Carescape Monitor B-650", "B450 CARESCAPE", "CARESCAPE B850"],
        ["1.2", "2.0.4", "3.1", ""],
    ),
    (
        ["Philips", "Philips Medical Systems", "Koninklijke Philips"],
        ["IntelliVue MX800", "IntelliVue MP70", "IntelliVue MX450", "MX 40 patient worn"],
        ["M.00", "L.01", "N.00", "Rev J.10", ""],
    ),
    (
        ["Baxter", "Baxter Healthcare"],
        ["Sigma Spectrum 35700BAX2", "Spectrum IQ LVP", "PrisMax", "Phoenix hemodialysis"],
        ["8.00.01", "9.1", "2.1", "3.40", ""],
    ),
    (
        ["Welch Allyn", "Hillrom", "Hill-Rom"],
        ["Connex Spot Monitor", "Spot Vital Signs 4400", "Connex Central Station"],
        ["1.52", "1.40", "1.8.3", ""],
    ),
    (
        ["Medtronic", "Covidien"],
        [
            "MiniMed 670G MMT-1780",
            "Paradigm 722",
            "Valleylab FT10 energy platform",
            "CareLink 2090 programmer",
        ],
        ["2.0.3", "4.1", ""],
    ),
    (
        ["B. Braun", "B Braun Melsungen"],
        ["SpaceCom", "Battery Pack SP WiFi", "Infusomat Space"],
        ["L80", "U62", "012U000061", ""],
    ),
    (
        ["Mindray", "Nihon Kohden", "Masimo", "Draeger", "Stryker"],
        [
            "BeneVision N12",
            "Life Scope G5",
            "Radical-7",
            "Infinity Delta XL",
            "S3 MedSurg bed 3005",
        ],
        ["01.09", "3.2", "VG2.1", ""],
    ),
    (["Siemens Healthineers"], ["SOMATOM go.Up CT", "Symbia SPECT workstation"], ["VA30", ""]),
]
ECOSYSTEMS = [
    ("pypi", "PyPI"),
    ("npm", "npm"),
    ("maven", "Maven"),
    ("deb", "Debian:12"),
    ("golang", "Go"),
]


def make_devices(n: int, rng: random.Random) -> list[DeviceQuery]:
    out = []
    for i in range(n):
        vendors, products, versions = rng.choice(FLEET)
        out.append(
            DeviceQuery(
                device_id=f"asset:{i:06d}",
                vendor=rng.choice(vendors),
                product=rng.choice(products),
                version=rng.choice(versions),
            )
        )
    return out


def _pkg_name(scheme: str, i: int) -> tuple[str, str | None, str]:
    if scheme == "maven":
        return (
            f"org.example{i % 97}",
            f"lib-{i}",
            package_key("maven", f"org.example{i % 97}", f"lib-{i}"),
        )
    if scheme == "deb":
        return "debian", f"pkg{i}", package_key("deb", "debian", f"pkg{i}")
    if scheme == "golang":
        return f"github.com/org{i % 50}", f"mod{i}", f"github.com/org{i % 50}/mod{i}"
    return "", f"{scheme}-pkg-{i}", package_key(scheme, None, f"{scheme}-pkg-{i}")


def make_records(n: int, n_packages: int, rng: random.Random) -> list[PackageVuln]:
    recs: list[PackageVuln] = []
    for i in range(n):
        if i % 10 < 7:  # OSV
            scheme, eco = ECOSYSTEMS[i % len(ECOSYSTEMS)]
            _, _, key = _pkg_name(scheme, rng.randrange(n_packages))
            major = rng.randrange(0, 6)
            ev = (
                RangeEvent(introduced=f"{major}.0.0"),
                RangeEvent(fixed=f"{major}.{rng.randrange(1, 20)}.{rng.randrange(0, 10)}"),
            )
            rtype = "SEMVER" if scheme in ("npm", "golang") else "ECOSYSTEM"
            ap = AffectedPackage(
                scheme=scheme,
                name=key,
                ecosystem=eco,
                ranges=(AffectedRange(type=rtype, events=ev),),
            )
            recs.append(
                PackageVuln(
                    source="osv", id=f"OSV-SYN-{i}", aliases=(f"CVE-2099-{i}",), affected=(ap,)
                )
            )
        else:  # NVD
            v, p = f"vendor{rng.randrange(2000)}", f"product{rng.randrange(n_packages // 4)}"
            hi = f"{rng.randrange(1, 9)}.{rng.randrange(0, 20)}"
            ap = AffectedPackage(
                scheme="cpe",
                name=f"{v}:{p}",
                cpe=f"cpe:2.3:a:{v}:{p}:*",
                cpe_vendor=v,
                cpe_product=p,
                cpe_version="*",
                ranges=(AffectedRange(type="NVD", end_excluding=hi),),
            )
            recs.append(PackageVuln(source="nvd", id=f"CVE-2098-{i}", affected=(ap,)))
    return recs


def make_sboms(n_sboms: int, per: int, n_packages: int, rng: random.Random) -> list[Component]:
    comps = []
    for s in range(n_sboms):
        for c in range(per):
            ref = f"sbom{s}/c{c}"
            version = f"{rng.randrange(0, 6)}.{rng.randrange(0, 25)}.{rng.randrange(0, 10)}"
            if c % 5 == 0:
                v, p = f"vendor{rng.randrange(2000)}", f"product{rng.randrange(n_packages // 4)}"
                comps.append(Component(ref=ref, cpe=f"cpe:2.3:a:{v}:{p}:{version}:*:*:*:*:*:*:*"))
                continue
            scheme, _ = ECOSYSTEMS[rng.randrange(len(ECOSYSTEMS))]
            ns, name, _ = _pkg_name(scheme, rng.randrange(n_packages))
            purl = f"pkg:{scheme}/{ns + '/' if ns else ''}{name}@{version}"
            comps.append(Component(ref=ref, purl=purl))
    return comps


class _Clock:
    """Wall and CPU (process) time per step; CPU time is what load on a shared machine
    disturbs least. `scale` extrapolates a sample to the full size."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Any, scale: float = 1.0) -> Any:
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        self.wall[name] = (time.perf_counter() - w0) * scale
        self.cpu[name] = (time.process_time() - c0) * scale
        return out


def naive_components(records: list[PackageVuln], comps: list[Component]) -> int:
    """Every component against every affected package: same keys, same version evaluation."""
    from medsentry.intel.components import parse_purl

    hits = 0
    for c in comps:
        p = parse_purl(c.purl) if c.purl else None
        key = (p.type, package_key(p.type, p.namespace or None, p.name)) if p else None
        cpe = parse_cpe(c.cpe) if c.cpe else None
        version = (p.version if p else None) or (cpe[3] if cpe else "")
        for r in records:
            for ap in r.affected:
                if (key and (ap.scheme, ap.name) == key) or (
                    cpe and ap.scheme == "cpe" and (ap.cpe_vendor, ap.cpe_product) == cpe[1:3]
                ):
                    verdict, _ = evaluate(ap, version)
                    hits += verdict in ("affected", "unknown")
    return hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--sboms", type=int, default=1000)
    ap.add_argument("--components", type=int, default=200)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--naive-sample", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=10_000, help="devices with unique versions")
    args = ap.parse_args()
    rng = random.Random(7)
    load = os.getloadavg()
    advisories = [read_csaf(p) for p in sorted(CSAF_DIR.glob("20*/*.json"))]
    n_packages = args.records // 3
    records = make_records(args.records, n_packages, rng)
    devices = make_devices(args.devices, rng)
    comps = make_sboms(args.sboms, args.components, n_packages, rng)

    clock = _Clock()
    index = clock.run("build", lambda: IntelIndex(advisories=advisories, packages=records))
    dev_matches = clock.run("devices", lambda: index.match_devices(devices))
    # the same work with no repeats: every device its own description (a version per asset)
    distinct_devs = [
        DeviceQuery(
            device_id=d.device_id,
            vendor=d.vendor,
            product=d.product,
            version=f"{rng.randrange(1, 10)}.{rng.randrange(100)}.{i}",
        )
        for i, d in enumerate(devices[: args.distinct])
    ]
    fresh = IntelIndex(advisories=advisories)
    clock.run("distinct", lambda: fresh.match_devices(distinct_devs))
    comp_matches = clock.run("components", lambda: index.match_components(comps))

    # naive baseline on samples: no candidate index, no memo of repeated descriptions
    matcher = index.matcher
    sample_d = devices[: args.naive_sample]
    naive_found: set[tuple[str, str]] = set()

    def naive_devices() -> None:
        for d in sample_d:
            q = matcher._query(device_query(d))
            for e in matcher.entries:
                m = matcher._score(d, q, e)
                if m is not None and m.status in ("affected", "potentially_affected"):
                    naive_found.add((d.device_id, m.advisory_id))

    clock.run("naive_devices", naive_devices, scale=len(devices) / len(sample_d))
    sample_c = comps[: max(args.naive_sample // 10, 50)]
    clock.run(
        "naive_components",
        lambda: naive_components(records, sample_c),
        scale=len(comps) / len(sample_c),
    )
    # agreement on the device sample (the index must find what the full loop finds)
    fast_sample = {(m.device_id, m.advisory_id) for m in index.match_devices(sample_d)}
    w, c = clock.wall, clock.cpu
    total_w = w["build"] + w["devices"] + w["components"]
    total_c = c["build"] + c["devices"] + c["components"]
    rows = [
        ("index build (144 advisories + records)", w["build"], c["build"], None),
        (f"{len(devices):,} devices vs advisories", w["devices"], c["devices"], c["naive_devices"]),
        (
            f"{len(comps):,} components vs {len(records):,} records + adv.",
            w["components"],
            c["components"],
            c["naive_components"],
        ),
        ("total", total_w, total_c, c["naive_devices"] + c["naive_components"]),
        (
            f"(extra) {len(distinct_devs):,} devices, all descriptions distinct",
            w["distinct"],
            c["distinct"],
            c["naive_devices"] * len(distinct_devs) / len(devices),
        ),
    ]
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores, shared)")
    print(f"{'step':<56} {'wall s':>8} {'CPU s':>8} {'naive CPU s':>12} {'ratio':>7}")
    for name, wall, cpu, naive in rows:
        tail = f"{naive:12.1f} {naive / cpu:6.0f}x" if naive else f"{'':>12} {'':>7}"
        print(f"{name:<56} {wall:8.2f} {cpu:8.2f} {tail}")
    t_build, t_dev, t_comp, t_distinct = w["build"], w["devices"], w["components"], w["distinct"]
    total = total_w
    t_naive_dev, t_naive_comp = c["naive_devices"], c["naive_components"]
    distinct = len({(d.vendor, d.product, d.version) for d in devices})
    print(
        f"device matches: {len(dev_matches):,} ({distinct} distinct descriptions);"
        f" component matches: {len(comp_matches):,}"
    )
    agree = "agree" if naive_found == fast_sample else "DISAGREE"
    print(
        f"naive samples: {len(sample_d)} devices ({len(naive_found)} device-advisory pairs;"
        f" indexed {len(fast_sample)}: {agree}), {len(sample_c)} components; scaled linearly"
    )
    OUT.mkdir(exist_ok=True)
    result = {
        "devices": len(devices),
        "components": len(comps),
        "records": len(records),
        "advisories": len(advisories),
        "distinct_device_descriptions": distinct,
        "build_s": t_build,
        "devices_s": t_dev,
        "components_s": t_comp,
        "total_s": total,
        "naive_devices_s_scaled": t_naive_dev,
        "naive_components_s_scaled": t_naive_comp,
        "naive_sample_devices": len(sample_d),
        "naive_sample_components": len(sample_c),
        "device_matches": len(dev_matches),
        "component_matches": len(comp_matches),
        "distinct_devices": len(distinct_devs),
        "distinct_devices_s": t_distinct,
        "cpu_s": clock.cpu,
        "wall_s": clock.wall,
        "loadavg": load,
        "naive_indexed_agree_on_sample": naive_found == fast_sample,
    }
    (OUT / "intel_match.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
