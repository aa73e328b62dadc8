"""OSV records (Open Source Vulnerability schema 1.x, https://ossf.github.io/osv-schema/).

One record, a JSON array of records, an API answer `{"vulns": [...]}`, a directory or a zip
archive of records (the per-ecosystem `all.zip` exports) are read. Each `affected[]` entry
becomes an `AffectedPackage` keyed by its package URL: `package.purl` when given, else the
ecosystem mapped to its purl type (purl-spec PURL-TYPES) and the package name.
"""

from __future__ import annotations

import functools
from typing import Any

from cvss.exceptions import CVSSError
from packageurl import PackageURL

from medsentry.errors import InputError
from medsentry.intel.components import package_key
from medsentry.intel.csaf import compute_score
from medsentry.intel.fields import optional_array
from medsentry.intel.model import AffectedPackage, AffectedRange, PackageVuln, RangeEvent, Score

# OSV ecosystem (the part before ":") -> (purl type, purl namespace)
ECOSYSTEM_PURL: dict[str, tuple[str, str]] = {
    "PyPI": ("pypi", ""),
    "npm": ("npm", ""),
    "Maven": ("maven", ""),
    "Go": ("golang", ""),
    "crates.io": ("cargo", ""),
    "RubyGems": ("gem", ""),
    "NuGet": ("nuget", ""),
    "Packagist": ("composer", ""),
    "Hex": ("hex", ""),
    "Pub": ("pub", ""),
    "Hackage": ("hackage", ""),
    "CRAN": ("cran", ""),
    "SwiftURL": ("swift", ""),
    "ConanCenter": ("conan", ""),
    "Debian": ("deb", "debian"),
    "Ubuntu": ("deb", "ubuntu"),
    "Alpine": ("apk", "alpine"),
    "Rocky Linux": ("rpm", "rocky-linux"),
    "AlmaLinux": ("rpm", "almalinux"),
    "Red Hat": ("rpm", "redhat"),
    "SUSE": ("rpm", "suse"),
    "openSUSE": ("rpm", "opensuse"),
    "GitHub Actions": ("github", ""),
}
RANGE_TYPES = frozenset({"SEMVER", "ECOSYSTEM", "GIT"})
EVENT_KEYS = ("introduced", "fixed", "last_affected", "limit")


def is_osv(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "id" in doc
        and "modified" in doc
        and ("affected" in doc or "aliases" in doc or "schema_version" in doc)
    )


def osv_records(doc: Any) -> list[Any] | None:
    """The records in a decoded JSON value, or None when it is not OSV."""
    if is_osv(doc):
        return [doc]
    if isinstance(doc, dict) and isinstance(doc.get("vulns"), list):
        return doc["vulns"]
    if isinstance(doc, list) and doc and all(is_osv(d) for d in doc[:5]):
        return doc
    return None


def _err(source: str, path: str, message: str) -> InputError:
    return InputError(f"OSV field {path}: {message}", source)


def _str(obj: dict[str, Any], key: str, source: str, path: str, required: bool = False) -> str:
    v = obj.get(key)
    if v is None:
        if required:
            raise _err(source, f"{path}.{key}", "is required")
        return ""
    if not isinstance(v, str):
        raise _err(source, f"{path}.{key}", "must be a string")
    return v


def _arr(obj: dict[str, Any], key: str, source: str, path: str) -> list[Any]:
    return optional_array(obj, key, path, functools.partial(_err, source))


def _package(pkg: dict[str, Any], source: str, path: str) -> tuple[str, str, str, str]:
    """(scheme, name key, ecosystem, purl)."""
    purl_text = _str(pkg, "purl", source, path)
    eco = _str(pkg, "ecosystem", source, path)
    name = _str(pkg, "name", source, path)
    if purl_text:
        try:
            p = PackageURL.from_string(purl_text)
        except ValueError as exc:
            raise _err(source, f"{path}.purl", f"not a package URL ({exc})") from exc
        return p.type, package_key(p.type, p.namespace, p.name), eco, purl_text
    if not eco or not name:
        raise _err(source, path, "needs ecosystem and name, or purl")
    ptype, ns = ECOSYSTEM_PURL.get(eco.split(":")[0], ("generic", ""))
    if ptype == "maven" and ":" in name:
        group, artifact = name.split(":", 1)
        key = package_key(ptype, group, artifact)
    elif ptype == "golang":
        key = name
    else:
        key = package_key(ptype, ns or None, name)
    return ptype, key, eco, ""


def parse_osv(doc: Any, source: str, path: str = "$") -> PackageVuln:
    if not isinstance(doc, dict):
        raise _err(source, path, "must be an object")
    vid = _str(doc, "id", source, path, required=True)
    modified = _str(doc, "modified", source, path, required=True)
    aliases = _arr(doc, "aliases", source, path)
    if not all(isinstance(a, str) for a in aliases):
        raise _err(source, f"{path}.aliases", "must be an array of strings")
    scores: list[Score] = []
    for i, sev in enumerate(_arr(doc, "severity", source, path)):
        sp = f"{path}.severity[{i}]"
        if not isinstance(sev, dict):
            raise _err(source, sp, "must be an object")
        stype = _str(sev, "type", source, sp, required=True)
        vector = _str(sev, "score", source, sp, required=True)
        if stype in ("CVSS_V3", "CVSS_V4"):
            try:
                scores.append(compute_score(vector))
            except (CVSSError, ValueError) as exc:
                raise _err(source, f"{sp}.score", f"invalid CVSS vector {vector!r}") from exc
    affected: list[AffectedPackage] = []
    for i, a in enumerate(_arr(doc, "affected", source, path)):
        ap = f"{path}.affected[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("package"), dict):
            raise _err(source, f"{ap}.package", "is required (an object)")
        scheme, key, eco, purl = _package(a["package"], source, f"{ap}.package")
        ranges: list[AffectedRange] = []
        for j, r in enumerate(_arr(a, "ranges", source, ap)):
            rp = f"{ap}.ranges[{j}]"
            if not isinstance(r, dict):
                raise _err(source, rp, "must be an object")
            rtype = _str(r, "type", source, rp, required=True)
            if rtype not in RANGE_TYPES:
                raise _err(source, f"{rp}.type", f"{rtype!r} is not SEMVER, ECOSYSTEM or GIT")
            events: list[RangeEvent] = []
            raw_events = r.get("events")
            if not isinstance(raw_events, list) or not raw_events:
                raise _err(source, f"{rp}.events", "must be a non-empty array")
            for k, e in enumerate(raw_events):
                ep = f"{rp}.events[{k}]"
                if not isinstance(e, dict) or len(e) != 1 or next(iter(e)) not in EVENT_KEYS:
                    raise _err(source, ep, f"must hold exactly one of {', '.join(EVENT_KEYS)}")
                k0, val = next(iter(e.items()))
                if not isinstance(val, str):
                    raise _err(source, f"{ep}.{k0}", "must be a string")
                events.append(RangeEvent(**{k0: val}))
            ranges.append(
                AffectedRange(type=rtype, events=tuple(events), repo=_str(r, "repo", source, rp))
            )
        versions = _arr(a, "versions", source, ap)
        affected.append(
            AffectedPackage(
                scheme=scheme,
                name=key,
                ecosystem=eco,
                purl=purl,
                ranges=tuple(ranges),
                versions=tuple(str(v) for v in versions),
            )
        )
    dbs = doc.get("database_specific")
    dbp = f"{path}.database_specific"
    cwes = _arr(dbs, "cwe_ids", source, dbp) if isinstance(dbs, dict) else []
    return PackageVuln(
        source="osv",
        id=vid,
        modified=modified,
        published=_str(doc, "published", source, path),
        aliases=tuple(aliases),
        summary=_str(doc, "summary", source, path)[:500],
        cwes=tuple(c for c in cwes if isinstance(c, str)),
        scores=tuple(scores),
        affected=tuple(affected),
        withdrawn=_str(doc, "withdrawn", source, path),
    )
