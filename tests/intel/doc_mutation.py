"""Structure-aware mutation of real JSON documents: advisories (CSAF), catalogs (KEV), vulnerability
records (NVD, OSV), SBOMs (CycloneDX, SPDX) and VEX (CycloneDX, OpenVEX).

Byte flips in JSON mostly make invalid JSON, which the first check refuses. These mutations keep
the document well formed and break its shape instead: a value replaced by one of another type
(a number where an array was, an object where a string was), a key deleted, a string cut or
given a non-ASCII digit, a subtree copied elsewhere, an array doubled. A parser must answer
each mutant with its result or an InputError naming the field, never another exception.

The suite runs it through hypothesis (`test_intel_fuzz_documents.py`); a longer campaign:

    python tests/intel/doc_mutation.py --seconds 600 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medsentry.errors import InputError

HERE = Path(__file__).resolve().parent
SHARED = (HERE / ".." / ".." / ".." / "shared" / "data").resolve()
SBOM_DATA = HERE.parent / "sbom" / "data"
MAX_ARRAY = 30  # long arrays (the KEV catalog) are cut: the shape matters, not the length

# An SPDX 2.3 document (no real one ships beside the checkout): two packages, a relationship.
SPDX = {
    "spdxVersion": "SPDX-2.3",
    "dataLicense": "CC0-1.0",
    "SPDXID": "SPDXRef-DOCUMENT",
    "name": "infusion-gateway",
    "documentNamespace": "https://acme.example/spdx/infusion-gateway-3.2",
    "creationInfo": {"created": "2025-01-01T00:00:00Z", "creators": ["Tool: acme-sbom"]},
    "packages": [
        {
            "SPDXID": f"SPDXRef-{name}",
            "name": name,
            "versionInfo": version,
            "supplier": "Organization: Acme",
            "downloadLocation": "NOASSERTION",
            "licenseConcluded": "Apache-2.0",
            "checksums": [{"algorithm": "SHA256", "checksumValue": "ab" * 32}],
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": f"pkg:generic/{name}@{version}",
                }
            ],
        }
        for name, version in (("openssl", "1.1.1k"), ("zlib", "1.2.11"))
    ],
    "relationships": [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-openssl",
        }
    ],
}


def seed_documents() -> dict[str, list[tuple[str, Any]]]:
    """kind -> [(source name, decoded document)]; kinds whose files are absent are left out."""
    files: dict[str, list[Path]] = {
        "csaf": sorted((SHARED / "cisa_csaf_icsma" / "csaf_files").rglob("*.json"))[:20],
        "kev": [SHARED / "kev" / "known_exploited_vulnerabilities.json"],
        "nvd": [HERE / "data" / "nvd_sample.json", HERE / "data" / "nvd_sbom_sample.json"],
        "osv": [HERE / "data" / "osv_sample.json", SBOM_DATA / "osv_medical_sbom.json"],
        "sbom": [p for p in (SHARED / "sbom").rglob("*.json") if "vex" not in p.name.lower()],
        "vex": [
            *(p for p in (SHARED / "sbom").rglob("*.json") if "vex" in p.name.lower()),
            SBOM_DATA / "openvex_medical.json",
        ],
    }  # fmt: skip
    out: dict[str, list[tuple[str, Any]]] = {}
    for kind, paths in files.items():
        for p in paths:
            if p.is_file():
                doc = json.loads(p.read_bytes())
                if isinstance(doc, dict) and isinstance(doc.get("vulnerabilities"), list):
                    doc["vulnerabilities"] = doc["vulnerabilities"][:MAX_ARRAY]
                out.setdefault(kind, []).append((p.name, doc))
    out.setdefault("sbom", []).append(("spdx.json", SPDX))
    return out


VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 2**64, 1e308, "", " ", "x" * 5000, "\u00b2", "\u0663",
    "9999-99-99T99:99:99Z", "CVE-0000-0000", "CVSS:3.1/AV:N",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/XX:Y",
    "pkg:", "pkg:npm/%", "cpe:2.3:a", "vers:semver/>1|<", "../../etc/passwd", "0" * 400,
    [], {}, [None], [[]], {"": None},
)  # fmt: skip
SUFFIXES = ("\u00b2", " ", "|", "<", "\x00", "*", "\ufeff")


def _nodes(x: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, x
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _nodes(v, (*path, i))


def _set(doc: Any, path: tuple, value: Any, delete: bool = False) -> None:
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def mutate(doc: Any, rnd: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rnd.choice((1, 1, 2, 3, 5))):
        nodes = list(_nodes(doc))
        path, val = rnd.choice(nodes)
        if not path:
            continue
        r = rnd.random()
        if r < 0.45:
            _set(doc, path, copy.deepcopy(rnd.choice(VALUES)))
        elif r < 0.6:
            _set(doc, path, None, delete=True)
        elif r < 0.7 and isinstance(val, str) and val:
            _set(doc, path, val[: rnd.randrange(len(val))])
        elif r < 0.8 and isinstance(val, str):
            _set(doc, path, val + rnd.choice(SUFFIXES))
        elif r < 0.9:
            _set(doc, path, copy.deepcopy(rnd.choice(nodes)[1]))  # a subtree copied here
        elif isinstance(val, list) and val:
            _set(doc, path, val * 2)
        elif isinstance(val, int | float) and not isinstance(val, bool):
            _set(doc, path, -val if val else 10**30)
    return doc


def parse(kind: str, name: str, data: bytes, work: Path) -> None:
    """Parse `data` as a document of `kind` the way the CLI does (InputError is an answer)."""
    from medsentry.intel import importer
    from medsentry.intel.sbom import parse_sbom
    from medsentry.intel.sbom_model import DeviceModel
    from medsentry.intel.vex import parse_vex

    if kind == "sbom":
        parse_sbom(data, name, DeviceModel("Acme", "Infusion Gateway", "3.2"))
    elif kind == "vex":
        parse_vex(data, name)
    else:  # `medsentry intel import`: the kind detected from the bytes, as for a named file
        path = work / name
        path.write_bytes(data)
        importer.parse_file(path, None, importer.Parsed(), strict=True)


def run(kind: str, name: str, doc: Any, rnd: random.Random, work: Path) -> None:
    data = json.dumps(mutate(doc, rnd)).encode()
    if rnd.random() < 0.05:
        data = data[: rnd.randrange(len(data) + 1)]  # and sometimes cut short
    with contextlib.suppress(InputError):
        parse(kind, name, data, work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    seeds = seed_documents()
    print({k: len(v) for k, v in seeds.items()}, flush=True)
    rnd = random.Random(a.seed)
    crashes: set[tuple] = set()
    runs = 0
    end = time.monotonic() + a.seconds
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < end:
            runs += 1
            kind = rnd.choice(sorted(seeds))
            name, doc = rnd.choice(seeds[kind])
            try:
                run(kind, name, doc, rnd, Path(tmp))
            except Exception as exc:  # every exception but InputError is the finding
                where = traceback.extract_tb(exc.__traceback__)[-1]
                key = (kind, type(exc).__name__, Path(where.filename).name, where.lineno)
                if key not in crashes:
                    crashes.add(key)
                    print(f"crash {key} ({name})\n{traceback.format_exc()}", flush=True)
    print(f"{runs:,} runs, {len(crashes)} distinct crashes")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
