"""NVD CVE records, CVE API 2.0 JSON (https://nvd.nist.gov/developers/vulnerabilities): an API
answer or a 2.0 data feed `{"format": "NVD_CVE", "version": "2.0", "vulnerabilities": [...]}`.

Each vulnerable `cpeMatch` of a configuration becomes an `AffectedPackage` (scheme "cpe") with
its bounds (versionStartIncluding/Excluding, versionEndIncluding/Excluding). A criterion in a
configuration whose operator is AND (an application on a given platform) is `conditional`:
it alone cannot make a component "affected". Negated nodes and non-vulnerable criteria (the
platforms) are not targets.
"""

from __future__ import annotations

import functools
from typing import Any

from cvss.exceptions import CVSSError

from medsentry.errors import InputError
from medsentry.intel.components import parse_cpe
from medsentry.intel.csaf import compute_score
from medsentry.intel.fields import optional_array
from medsentry.intel.model import AffectedPackage, AffectedRange, PackageVuln, Score


def is_nvd(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("vulnerabilities"), list)
        and (doc.get("format") == "NVD_CVE" or "resultsPerPage" in doc)
    )


def _err(source: str, path: str, message: str) -> InputError:
    return InputError(f"NVD field {path}: {message}", source)


def _s(obj: dict[str, Any], key: str, source: str, path: str) -> str:
    v = obj.get(key, "")
    if not isinstance(v, str):
        raise _err(source, f"{path}.{key}", "must be a string")
    return v


def _arr(obj: dict[str, Any], key: str, source: str, path: str) -> list[Any]:
    return optional_array(obj, key, path, functools.partial(_err, source))


def parse_nvd_item(item: Any, source: str, path: str) -> PackageVuln:
    if not isinstance(item, dict) or not isinstance(item.get("cve"), dict):
        raise _err(source, f"{path}.cve", "is required (an object)")
    cve = item["cve"]
    p = f"{path}.cve"
    cid = _s(cve, "id", source, p)
    if not cid.startswith("CVE-"):
        raise _err(source, f"{p}.id", f"{cid!r} is not a CVE id")
    summary = ""
    for d in _arr(cve, "descriptions", source, p):
        if isinstance(d, dict) and d.get("lang") == "en":
            summary = str(d.get("value", ""))[:500]
    scores: list[Score] = []
    metrics = cve.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise _err(source, f"{p}.metrics", "must be an object")
    for key in ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30"):
        for i, m in enumerate(_arr(metrics, key, source, f"{p}.metrics")):
            mp = f"{p}.metrics.{key}[{i}].cvssData.vectorString"
            data = m.get("cvssData") if isinstance(m, dict) else None
            if not isinstance(data, dict) or not isinstance(data.get("vectorString"), str):
                raise _err(source, mp, "is required")
            try:
                scores.append(compute_score(data["vectorString"]))
            except (CVSSError, ValueError) as exc:
                raise _err(source, mp, f"invalid CVSS vector {data['vectorString']!r}") from exc
    cwes: list[str] = []
    for i, w in enumerate(_arr(cve, "weaknesses", source, p)):
        wp = f"{p}.weaknesses[{i}]"
        for d in _arr(w, "description", source, wp) if isinstance(w, dict) else []:
            v = d.get("value") if isinstance(d, dict) else None
            if isinstance(v, str) and v.startswith("CWE-") and v not in cwes:
                cwes.append(v)
    affected: list[AffectedPackage] = []
    for i, conf in enumerate(_arr(cve, "configurations", source, p)):
        cp = f"{p}.configurations[{i}]"
        if not isinstance(conf, dict):
            raise _err(source, cp, "must be an object")
        nodes = _arr(conf, "nodes", source, cp)
        conditional = conf.get("operator") == "AND" and len(nodes) > 1
        for j, node in enumerate(nodes):
            np_ = f"{cp}.nodes[{j}]"
            if not isinstance(node, dict):
                raise _err(source, np_, "must be an object")
            if node.get("negate"):
                continue
            matches = _arr(node, "cpeMatch", source, np_)
            node_and = node.get("operator") == "AND" and len(matches) > 1
            for k, m in enumerate(matches):
                mp = f"{np_}.cpeMatch[{k}]"
                if not isinstance(m, dict):
                    raise _err(source, mp, "must be an object")
                if not m.get("vulnerable"):
                    continue
                criteria = _s(m, "criteria", source, mp)
                parsed = parse_cpe(criteria)
                if parsed is None:
                    raise _err(source, f"{mp}.criteria", f"{criteria!r} is not a CPE 2.3 name")
                _, vendor, product, version = parsed
                bounds = {
                    "start_including": _s(m, "versionStartIncluding", source, mp),
                    "start_excluding": _s(m, "versionStartExcluding", source, mp),
                    "end_including": _s(m, "versionEndIncluding", source, mp),
                    "end_excluding": _s(m, "versionEndExcluding", source, mp),
                }
                ranges = (AffectedRange(type="NVD", **bounds),) if any(bounds.values()) else ()
                affected.append(
                    AffectedPackage(
                        scheme="cpe",
                        name=f"{vendor}:{product}",
                        cpe=criteria,
                        cpe_vendor=vendor,
                        cpe_product=product,
                        cpe_version=version,
                        ranges=ranges,
                        conditional=conditional or node_and,
                    )
                )
    return PackageVuln(
        source="nvd",
        id=cid,
        modified=_s(cve, "lastModified", source, p),
        published=_s(cve, "published", source, p),
        summary=summary,
        cwes=tuple(cwes),
        scores=tuple(scores),
        affected=tuple(affected),
        withdrawn="rejected" if cve.get("vulnStatus") == "Rejected" else "",
    )


def parse_nvd(doc: Any, source: str) -> list[PackageVuln]:
    if not is_nvd(doc):
        raise _err(source, "$.vulnerabilities", "is required (an NVD CVE API 2.0 answer)")
    return [
        parse_nvd_item(item, source, f"$.vulnerabilities[{i}]")
        for i, item in enumerate(doc["vulnerabilities"])
    ]
