"""Device-level VEX export: CycloneDX 1.5/1.6 and CSAF 2.0 (profile csaf_vex, §4.5).

Input: one device model (manufacturer, model, version), its SBOM components, and its matches
with VEX applied (`vex_apply.VexedMatch`). Each vulnerability's status for each component is:

| medsentry                         | CycloneDX analysis.state | CSAF product_status   |
|-----------------------------------|--------------------------|-----------------------|
| VEX not_affected                  | not_affected (+justif.)  | known_not_affected    |
| VEX fixed / match fixed           | resolved                 | fixed                 |
| VEX affected                      | exploitable              | known_affected        |
| VEX under_investigation, or a     | in_triage                | under_investigation   |
| match no statement has assessed   |                          |                       |

Matches whose version is outside the advisory's range (no VEX) are not exported: they are not a
statement about this device. Output documents are validated before they are returned: the
CycloneDX JSON schema of the chosen version (bundled with cyclonedx-python-lib) and the OASIS
CSAF 2.0 JSON schema (bundled in `data/schemas/csaf/` with the FIRST CVSS schemas it references)
plus the CSAF VEX profile rules (§4.5; mandatory tests 6.1.27.6 to 6.1.27.10).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from medsentry import __version__
from medsentry.errors import InputError
from medsentry.intel.sbom_cyclonedx import json_validator
from medsentry.intel.sbom_model import (
    AFFECTED,
    FIXED,
    NOT_AFFECTED,
    Component,
    DeviceModel,
)
from medsentry.intel.vex import vex_vocabulary
from medsentry.intel.vex_apply import VexedMatch, component_key
from medsentry.risk.cvss import score_vector

IN_TRIAGE = "in_triage"
_CVE = re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$")
_CDX_TYPES = frozenset(
    {
        "application",
        "framework",
        "library",
        "container",
        "platform",
        "operating-system",
        "device",
        "device-driver",
        "firmware",
        "file",
        "machine-learning-model",
        "data",
        "cryptographic-asset",
    }
)
_CDX_15_TYPES = _CDX_TYPES - {"cryptographic-asset"}


class ExportError(InputError):
    """A produced document failed validation (a bug, reported with the field)."""


def _status(v: VexedMatch) -> str | None:
    """The exported state of one match (CISA vocabulary + in_triage), or None to skip."""
    if v.vex_status:
        return v.vex_status if v.vex_status != "under_investigation" else IN_TRIAGE
    if v.status == FIXED:
        return FIXED
    if v.status in (AFFECTED, "potentially_affected"):
        return IN_TRIAGE
    return None


def _refs(components: Sequence[Component]) -> dict[str, str]:
    """component_key -> a unique bom-ref for the export."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, c in enumerate(components):
        ref = c.bom_ref or c.purl or f"component-{i + 1}"
        while ref in used:
            ref = f"{ref}#{i + 1}"
        used.add(ref)
        out[component_key(c)] = ref
    return out


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- CycloneDX -------------------------------------------------------------------------------

_CDX_STATE = {NOT_AFFECTED: "not_affected", FIXED: "resolved", AFFECTED: "exploitable"}


def _rating(vector: str) -> dict[str, Any] | None:
    try:
        s = score_vector(vector)
    except InputError:
        return None
    method = {"3.0": "CVSSv3", "3.1": "CVSSv31", "4.0": "CVSSv4"}[s.version]
    return {
        "score": s.base_score,
        "severity": s.severity.lower(),
        "method": method,
        "vector": s.vector,
    }


def cyclonedx_vex(
    device: DeviceModel,
    components: Sequence[Component],
    vexed: Sequence[VexedMatch],
    spec: str = "1.6",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A CycloneDX VEX (BOM with components and vulnerabilities[].analysis) for the device."""
    if spec not in ("1.5", "1.6"):
        raise InputError(f"CycloneDX VEX export supports spec 1.5 and 1.6, not {spec!r}")
    vocab = vex_vocabulary()
    refs = _refs(components)
    types = _CDX_TYPES if spec == "1.6" else _CDX_15_TYPES
    device_ref = "device"
    comps = []
    for c in components:
        item: dict[str, Any] = {
            "type": c.type if c.type in types else "library",
            "bom-ref": refs[component_key(c)],
            "name": c.name or "(unnamed)",
        }
        if c.version:
            item["version"] = c.version
        if c.supplier:
            item["supplier"] = {"name": c.supplier}
        if c.purl:
            item["purl"] = c.purl
        if c.cpe:
            item["cpe"] = c.cpe
        props = [
            {"name": n, "value": v}
            for n, v in (
                ("fda:level-of-support", c.level_of_support or c.level_of_support_raw),
                ("fda:end-of-support", c.end_of_support_date or c.end_of_support),
            )
            if v
        ]
        if props:
            item["properties"] = props
        comps.append(item)
    groups: dict[tuple, dict[str, Any]] = {}
    for v in vexed:
        state = _status(v)
        if state is None:
            continue
        m = v.match
        ref = refs.get(m.component, device_ref) if m.component else device_ref
        analysis: dict[str, Any] = {"state": _CDX_STATE.get(state, IN_TRIAGE)}
        if state == NOT_AFFECTED and v.justification:
            analysis["justification"] = vocab.to_cyclonedx.get(v.justification, "code_not_present")
        if v.responses:
            analysis["response"] = list(dict.fromkeys(v.responses))
        detail = v.impact_statement or v.action_statement
        if not v.vex_status:
            detail = f"Not yet assessed; medsentry match: {m.explanation}"
        if detail:
            analysis["detail"] = detail
        key = (m.advisory_id, json.dumps(analysis, sort_keys=True))
        entry = groups.get(key)
        if entry is None:
            ratings = [r for r in map(_rating, dict.fromkeys(m.cvss_vectors)) if r]
            entry = groups[key] = {
                "id": m.advisory_id,
                "source": {"name": m.source.upper() if m.source != "csaf" else "CSAF"},
                "analysis": analysis,
                "affects": [],
            }
            if ratings:
                entry["ratings"] = ratings
            extra = [c for c in m.cves if c != m.advisory_id]
            if extra:
                entry["references"] = [
                    {
                        "id": c,
                        "source": {"name": "NVD", "url": f"https://nvd.nist.gov/vuln/detail/{c}"},
                    }
                    for c in extra
                ]
        if ref not in {a["ref"] for a in entry["affects"]}:
            entry["affects"].append({"ref": ref})
    vulns = []
    for i, e in enumerate(groups.values()):
        vulns.append({"bom-ref": f"vuln-{i + 1}", **e})
    metadata_component: dict[str, Any] = {
        "type": "device",
        "bom-ref": device_ref,
        "name": device.model,
        "version": device.version,
        "supplier": {"name": device.manufacturer},
    }
    if spec == "1.6":
        metadata_component["manufacturer"] = {"name": device.manufacturer}
    seed = f"{device.label()}|{len(components)}|{len(vulns)}|{timestamp or ''}"
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": spec,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'medsentry:' + seed)}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp or _now(),
            "tools": {
                "components": [{"type": "application", "name": "medsentry", "version": __version__}]
            },
            "component": metadata_component,
        },
        "components": comps,
        "vulnerabilities": vulns,
    }
    err = next(json_validator(spec).iter_errors(doc), None)
    if err is not None:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise ExportError(f"CycloneDX {spec} VEX field {path}: {err.message[:300]}", "export")
    return doc


# -- CSAF ------------------------------------------------------------------------------------

_CSAF_STATUS = {
    NOT_AFFECTED: "known_not_affected",
    FIXED: "fixed",
    AFFECTED: "known_affected",
    IN_TRIAGE: "under_investigation",
}
_REMEDIATION = {  # CycloneDX analysis.response -> CSAF §3.2.3.12.1 remediation category
    "update": "vendor_fix",
    "rollback": "workaround",
    "workaround_available": "workaround",
    "will_not_fix": "no_fix_planned",
    "can_not_fix": "no_fix_planned",
}


@cache
def csaf_validator() -> Draft202012Validator:
    base = resources.files("medsentry") / "data" / "schemas" / "csaf"

    def load(name: str) -> Any:
        return json.loads((base / name).read_text("utf-8"))

    resources_ = [
        (f"https://www.first.org/cvss/{url}", Resource.from_contents(load(name)))
        for url, name in (
            ("cvss-v2.0.json", "cvss_v2_0.json"),
            ("cvss-v3.0.json", "cvss_v3_0.json"),
            ("cvss-v3.1.json", "cvss_v3_1.json"),
        )
    ]
    registry: Registry = Registry().with_resources(resources_)
    return Draft202012Validator(
        load("csaf_2_0.json"), registry=registry, format_checker=FormatChecker()
    )


def validate_csaf(doc: dict[str, Any], source: str = "export") -> None:
    """CSAF 2.0 JSON schema, then the VEX profile rules; `ExportError` naming the field."""
    err = next(csaf_validator().iter_errors(doc), None)
    if err is not None:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise ExportError(f"CSAF field {path}: {err.message[:300]}", source)
    if doc["document"]["category"] != "csaf_vex":
        return
    if "product_tree" not in doc:
        raise ExportError("CSAF VEX field $.product_tree: required (§4.5)", source)
    for i, v in enumerate(doc.get("vulnerabilities", [])):
        p = f"$.vulnerabilities[{i}]"
        ps = v.get("product_status", {})
        if not any(k in ps for k in _CSAF_STATUS.values()):  # 6.1.27.6
            raise ExportError(f"CSAF VEX field {p}.product_status: no VEX status", source)
        if "cve" not in v and "ids" not in v:  # 6.1.27.7
            raise ExportError(f"CSAF VEX field {p}.cve: neither cve nor ids", source)
        if "notes" not in v:  # 6.1.27.8
            raise ExportError(f"CSAF VEX field {p}.notes: required (§4.5)", source)
        covered = {pid for f in v.get("flags", []) for pid in f.get("product_ids", [])}
        covered |= {
            pid
            for t in v.get("threats", [])
            if t["category"] == "impact"
            for pid in t.get("product_ids", [])
        }
        for pid in ps.get("known_not_affected", []):  # 6.1.27.9
            if pid not in covered:
                raise ExportError(
                    f"CSAF VEX field {p}.flags: {pid} has no impact statement", source
                )
        remedied = {pid for r in v.get("remediations", []) for pid in r.get("product_ids", [])}
        for pid in ps.get("known_affected", []):  # 6.1.27.10
            if pid not in remedied:
                raise ExportError(f"CSAF VEX field {p}.remediations: {pid} has none", source)


_CPE_OK = re.compile(
    r"^cpe:2\.3:[aho\*\-](:[^:\s]+){10}$|^[cC][pP][eE]:/[AHOaho]?(:[A-Za-z0-9._\-~%]*){0,6}$"
)


def csaf_vex(
    device: DeviceModel,
    components: Sequence[Component],
    vexed: Sequence[VexedMatch],
    publisher: str = "medsentry user",
    namespace: str = "https://medsentry.invalid",
    publisher_category: str = "user",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A CSAF 2.0 VEX document for the device: its components as default_component_of it."""
    now = timestamp or _now()
    dev_pid = "CSAFPID-DEVICE"
    dev_name = device.label()
    comp_pid: dict[str, str] = {}
    full_names = []
    relationships = []
    for i, c in enumerate(components):
        key = component_key(c)
        if key in comp_pid:
            continue
        pid = f"CSAFPID-C{i + 1:04d}"
        fpn: dict[str, Any] = {"product_id": pid, "name": f"{c.name} {c.version}".strip()}
        helper: dict[str, Any] = {}
        if c.purl.startswith("pkg:"):
            helper["purl"] = c.purl
        if c.cpe and _CPE_OK.match(c.cpe):
            helper["cpe"] = c.cpe
        if helper:
            fpn["product_identification_helper"] = helper
        full_names.append(fpn)
        rel_pid = f"{pid}:DEVICE"
        relationships.append(
            {
                "category": "default_component_of",
                "product_reference": pid,
                "relates_to_product_reference": dev_pid,
                "full_product_name": {
                    "product_id": rel_pid,
                    "name": f"{fpn['name']} as a component of {dev_name}",
                },
            }
        )
        comp_pid[key] = rel_pid
    by_vuln: dict[str, dict[str, Any]] = {}
    for v in vexed:
        state = _status(v)
        if state is None:
            continue
        m = v.match
        pid = comp_pid.get(m.component, dev_pid) if m.component else dev_pid
        entry = by_vuln.setdefault(
            m.advisory_id,
            {"match": m, "status": {}, "flags": {}, "impacts": {}, "remed": {}, "vectors": set()},
        )
        entry["status"].setdefault(_CSAF_STATUS[state], []).append(pid)
        entry["vectors"].update(m.cvss_vectors)
        if state == NOT_AFFECTED:
            if v.justification:
                entry["flags"].setdefault(v.justification, []).append(pid)
            if v.impact_statement or not v.justification:
                text = v.impact_statement or "Stated not affected by the VEX statement."
                entry["impacts"].setdefault(text, []).append(pid)
        elif state == AFFECTED:
            cats = [_REMEDIATION[r] for r in v.responses if r in _REMEDIATION] or ["none_available"]
            text = v.action_statement or "No remediation is stated yet; see the advisory."
            entry["remed"].setdefault((cats[0], text), []).append(pid)
    vulns = []
    for vid, e in by_vuln.items():
        m = e["match"]
        item: dict[str, Any] = {}
        if _CVE.match(vid):
            item["cve"] = vid
        else:
            item["ids"] = [{"system_name": m.source.upper(), "text": vid}]
            cves = [c for c in m.cves if _CVE.match(c)]
            if len(cves) == 1:
                item["cve"] = cves[0]
        item["notes"] = [
            {
                "category": "description",
                "title": "medsentry match",
                "text": m.explanation or f"{vid} concerns {m.product or m.device}",
            }
        ]
        item["product_status"] = {k: sorted(set(ids)) for k, ids in e["status"].items()}
        if e["flags"]:
            item["flags"] = [
                {"label": label, "product_ids": sorted(set(ids))}
                for label, ids in e["flags"].items()
            ]
        if e["impacts"]:
            item["threats"] = [
                {"category": "impact", "details": text, "product_ids": sorted(set(ids))}
                for text, ids in e["impacts"].items()
            ]
        if e["remed"]:
            item["remediations"] = [
                {"category": cat, "details": text, "product_ids": sorted(set(ids))}
                for (cat, text), ids in e["remed"].items()
            ]
        scores = []
        all_pids = sorted({p for ids in e["status"].values() for p in ids})
        for vec in sorted(e["vectors"]):
            if not vec.startswith("CVSS:3."):
                continue  # CSAF 2.0 §3.2.3.11 scores: cvss_v2 / cvss_v3 only
            s = score_vector(vec)
            scores.append(
                {
                    "products": all_pids,
                    "cvss_v3": {
                        "version": s.version,
                        "vectorString": s.vector,
                        "baseScore": s.base_score,
                        "baseSeverity": s.severity.upper(),
                    },
                }
            )
        if scores:
            item["scores"] = scores[:1]
        vulns.append(item)
    digest = hashlib.sha256(
        json.dumps([dev_name, sorted(comp_pid), sorted(by_vuln)]).encode()
    ).hexdigest()[:16]
    doc: dict[str, Any] = {
        "document": {
            "category": "csaf_vex",
            "csaf_version": "2.0",
            "publisher": {
                "category": publisher_category,
                "name": publisher,
                "namespace": namespace,
            },
            "title": f"VEX for {dev_name}",
            "notes": [
                {
                    "category": "summary",
                    "title": "Scope",
                    "text": f"Exploitability of known vulnerabilities in {dev_name} and its"
                    f" {len(comp_pid)} SBOM components, as assessed by VEX statements;"
                    " vulnerabilities not yet assessed are under investigation.",
                }
            ],
            "tracking": {
                "id": f"MEDSENTRY-VEX-{digest}",
                "status": "final",
                "version": "1",
                "initial_release_date": now,
                "current_release_date": now,
                "revision_history": [{"date": now, "number": "1", "summary": "Initial version."}],
                "generator": {"engine": {"name": "medsentry", "version": __version__}},
            },
        },
        "product_tree": {
            "branches": [
                {
                    "category": "vendor",
                    "name": device.manufacturer,
                    "branches": [
                        {
                            "category": "product_name",
                            "name": device.model,
                            "branches": [
                                {
                                    "category": "product_version",
                                    "name": device.version,
                                    "product": {"product_id": dev_pid, "name": dev_name},
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    }
    if full_names:
        doc["product_tree"]["full_product_names"] = full_names
        doc["product_tree"]["relationships"] = relationships
    if vulns:
        doc["vulnerabilities"] = vulns
    validate_csaf(doc)
    return doc
