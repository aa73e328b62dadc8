"""CISA Known Exploited Vulnerabilities catalog (JSON feed, schema
known_exploited_vulnerabilities_schema.json): catalogVersion, dateReleased, vulnerabilities[]."""

from __future__ import annotations

import re
from typing import Any

from medsentry.errors import InputError
from medsentry.intel.model import KevEntry

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


def is_kev(doc: Any) -> bool:
    return isinstance(doc, dict) and "catalogVersion" in doc and "vulnerabilities" in doc


def parse_kev(doc: Any, source: str) -> tuple[str, list[KevEntry]]:
    """The catalog version and its entries; a malformed entry names its JSON path."""
    if not is_kev(doc):
        raise InputError("KEV field $.catalogVersion: is required", source)
    vulns = doc["vulnerabilities"]
    if not isinstance(vulns, list):
        raise InputError("KEV field $.vulnerabilities: must be an array", source)
    out: list[KevEntry] = []
    for i, v in enumerate(vulns):
        path = f"$.vulnerabilities[{i}]"
        if not isinstance(v, dict):
            raise InputError(f"KEV field {path}: must be an object", source)
        for key in ("cveID", "vendorProject", "product", "vulnerabilityName", "dateAdded"):
            if not isinstance(v.get(key), str):
                raise InputError(f"KEV field {path}.{key}: is required (a string)", source)
        if not _CVE.match(v["cveID"]):
            raise InputError(f"KEV field {path}.cveID: {v['cveID']!r} is not a CVE id", source)
        cwes = v.get("cwes") or []
        if not isinstance(cwes, list):
            raise InputError(f"KEV field {path}.cwes: must be an array", source)
        out.append(
            KevEntry(
                cve=v["cveID"],
                vendor=v["vendorProject"],
                product=v["product"],
                name=v["vulnerabilityName"],
                date_added=v["dateAdded"],
                due_date=str(v.get("dueDate") or ""),
                ransomware=str(v.get("knownRansomwareCampaignUse") or ""),
                cwes=tuple(str(c) for c in cwes if isinstance(c, str)),
            )
        )
    return str(doc["catalogVersion"]), out
