"""Software components (purl, CPE, or name and version) -> OSV / NVD / CSAF vulnerabilities.

The index keys every affected package three ways:

- by package URL (purl-spec: `type` + `namespace/name`) for OSV records and CSAF products with
  a purl helper;
- by CPE 2.3 `vendor:product` for NVD CPE match criteria and CSAF products with a cpe helper;
- by bare product name, for components that carry neither (name and version only) or whose
  purl names a package that NVD knows under its CPE product.

Identification confidence: same purl package 0.95; same CPE vendor and product 0.95; the
component's purl or name equals a CPE product and its supplier or purl namespace names the CPE
vendor 0.8, without that 0.6; name only against an OSV package 0.6. Below 0.75 a match is at most
"potentially affected".

Versions are compared with the ecosystem's own rules (`univers` version classes per purl type:
PEP 440 for pypi, Maven, Debian, semver for npm/cargo...), and with the vendor-aware segment
order of `versions.py` for CPE and generic versions. OSV ranges are evaluated as the OSV
schema's "Evaluation" section says (introduced / fixed / last_affected events, plus the
enumerated `versions`); GIT ranges cannot place a release version on a commit graph, so they
only decide for a version equal to one of their commits, else "potentially affected".
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from univers.version_range import RANGE_CLASS_BY_SCHEMES
from univers.versions import InvalidVersion

from medsentry.intel.model import (
    AFFECTED,
    FIXED,
    NOT_AFFECTED,
    POTENTIAL,
    AffectedPackage,
    AffectedRange,
    Component,
    Match,
    PackageVuln,
)
from medsentry.intel.normalize import vocabulary
from medsentry.intel.versions import VersionSpec, compare, parse_spec, parse_version

Verdict = str  # "affected" | "fixed" | "not_affected" | "unknown"
AFFECTED_CONFIDENCE = 0.75
# purl types whose names are case-insensitive (purl-spec PURL-TYPES.rst)
_CASE_INSENSITIVE = frozenset({"pypi", "npm", "cargo", "gem", "nuget", "composer", "deb", "apk"})


_PEP503 = re.compile(r"[-_.]+")
_SEPARATORS = re.compile(r"[\s_.]+")
_CPE_ESCAPE = re.compile(r"\\(.)")


def package_key(scheme: str, namespace: str | None, name: str) -> str:
    """purl-spec normalization of a package name for lookup (pypi: '_' -> '-', lower case)."""
    full = f"{namespace}/{name}" if namespace else name
    if scheme in _CASE_INSENSITIVE:
        full = full.lower()
    if scheme == "pypi":
        full = _PEP503.sub("-", full)  # PEP 503 name normalization
    return full


def _simple(name: str) -> str:
    """A name for cross-source lookup: lower case, separators unified ("log4j-core")."""
    return _SEPARATORS.sub("-", name.strip().lower())


# -- CPE 2.3 (NISTIR 7695 §6.2 formatted string binding) -------------------------------------

_CPE_SPLIT = re.compile(r"(?<!\\):")


def parse_cpe(cpe: str) -> tuple[str, str, str, str] | None:
    """cpe:2.3:part:vendor:product:version:... -> (part, vendor, product, version)."""
    if cpe.startswith("cpe:2.3:"):
        parts = _CPE_SPLIT.split(cpe)
        if len(parts) < 6:
            return None
        part, vendor, product, version = parts[2:6]
    elif cpe.startswith("cpe:/"):  # CPE 2.2 URI binding (NISTIR 7695 §6.1)
        parts = cpe[5:].split(":")
        parts += [""] * (4 - len(parts))
        part, vendor, product, version = parts[:4]
        version = version or "*"
    else:
        return None
    unq = [_CPE_ESCAPE.sub(r"\1", x).lower() for x in (vendor, product, version)]
    return part, unq[0], unq[1], unq[2]


# -- version comparison ----------------------------------------------------------------------


@lru_cache(maxsize=200_000)
def _eco_version(scheme: str, text: str) -> Any:
    cls = RANGE_CLASS_BY_SCHEMES.get(scheme)
    if cls is None or scheme in ("generic", "cpe"):
        return None
    try:
        return cls.version_class(text)
    except (InvalidVersion, ValueError, TypeError, AttributeError):
        return None


@lru_cache(maxsize=10_000)
def _spec(text: str) -> VersionSpec:
    return parse_spec(text)


@lru_cache(maxsize=200_000)
def _generic(text: str) -> Any:
    return parse_version(text)


_NUMERIC = re.compile(r"\d+(?:\.\d+)*")


@lru_cache(maxsize=500_000)
def vcmp(scheme: str, a: str, b: str) -> int | None:
    """Compare two versions of one package: -1/0/1, None when they have no common order."""
    if _NUMERIC.fullmatch(a) and _NUMERIC.fullmatch(b):
        # plain dotted numbers order the same in every scheme (semver, PEP 440, Maven, Debian
        # upstream, Go...): compare as integer tuples, padded with zeros
        ta, tb = [int(x) for x in a.split(".")], [int(x) for x in b.split(".")]
        n = max(len(ta), len(tb))
        ta += [0] * (n - len(ta))
        tb += [0] * (n - len(tb))
        return -1 if ta < tb else (1 if ta > tb else 0)
    va, vb = _eco_version(scheme, a), _eco_version(scheme, b)
    if va is not None and vb is not None:
        try:
            return -1 if va < vb else (1 if va > vb else 0)
        except TypeError:
            return None
    ga, gb = _generic(a), _generic(b)
    if ga is None or gb is None:
        return None
    return compare(ga, gb)


def _osv_range(scheme: str, r: AffectedRange, v: str) -> tuple[Verdict, str]:
    """OSV schema "Evaluation": walk the events in order; GIT ranges only by commit identity."""
    if r.type == "GIT":
        for e in r.events:
            if v in (e.fixed, e.limit):
                return "fixed", f"{v} is the fixing commit of a GIT range"
            if v in (e.introduced, e.last_affected):
                return "affected", f"{v} is a commit inside a GIT range"
        return "unknown", f"{v} cannot be placed on the commit range of {r.repo or 'the repo'}"
    intervals: list[tuple[str, str, str]] = []  # (introduced, end, kind)
    lo: str | None = None
    for e in r.events:
        if e.introduced:
            if lo is not None:
                intervals.append((lo, "", ""))
            lo = e.introduced
        elif (e.fixed or e.last_affected) and lo is not None:
            intervals.append((lo, e.fixed or e.last_affected, "fixed" if e.fixed else "last"))
            lo = None
    if lo is not None:
        intervals.append((lo, "", ""))
    verdict: Verdict = "not_affected"
    why = f"{v} is outside every affected range"
    for intro, end, kind in intervals:
        if intro != "0":
            c = vcmp(scheme, v, intro)
            if c is None:
                return "unknown", f"{v} and {intro} are not comparable"
            if c < 0:
                continue
        if not end:
            return "affected", f"{v} is at or after {intro} with no fix"
        c = vcmp(scheme, v, end)
        if c is None:
            return "unknown", f"{v} and {end} are not comparable"
        if (kind == "fixed" and c < 0) or (kind == "last" and c <= 0):
            rel = "<" if kind == "fixed" else "<="
            return "affected", f"{v} is in >= {intro} and {rel} {end}"
        if kind == "fixed":
            verdict, why = "fixed", f"{v} is at or after the fix {end}"
    return verdict, why


def evaluate(ap: AffectedPackage, version: str) -> tuple[Verdict, str]:
    """Is `version` of the package affected by `ap`? With a one-line reason."""
    if not version:
        return "unknown", "component version unknown"
    if version in ap.versions:
        return "affected", f"{version} is a listed affected version"
    scheme = "generic" if ap.scheme == "cpe" else ap.scheme
    if ap.scheme == "cpe" and ap.cpe_version not in ("*", "-", ""):
        c = vcmp(scheme, version, ap.cpe_version)
        if c is None:
            return "unknown", f"{version} and {ap.cpe_version} are not comparable"
        if c == 0:
            return "affected", f"{version} equals the vulnerable version {ap.cpe_version}"
        return "not_affected", f"{version} is not the vulnerable version {ap.cpe_version}"
    unknown: str | None = None
    best: tuple[Verdict, str] | None = None
    for r in ap.ranges:
        if r.type == "NVD":
            verdict, why = _nvd_range(version, r)
        elif r.type == "SPEC":  # a CSAF product's version text: vers or CISA's prose
            verdict, why = _spec(r.spec).test(parse_version(version))
        else:
            verdict, why = _osv_range(scheme, r, version)
        if verdict == "affected":
            return verdict, why
        if verdict == "unknown":
            unknown = unknown or why
        elif verdict == "fixed" or best is None:
            best = (verdict, why)
    if unknown is not None:
        return "unknown", unknown
    if best is not None:
        return best
    if ap.versions:
        return "not_affected", f"{version} is not among the {len(ap.versions)} listed versions"
    if ap.scheme == "cpe":  # a wildcard version with no bounds: every version
        return "affected", "all versions are affected (CPE version *)"
    return "unknown", "the record gives no version range"


def _nvd_range(v: str, r: AffectedRange) -> tuple[Verdict, str]:
    # NVD CVE API 2.0 cpeMatch: versionStartIncluding/Excluding, versionEndIncluding/Excluding
    parts = []
    for bound, op, below_ok in (
        (r.start_including, ">=", lambda c: c >= 0),
        (r.start_excluding, ">", lambda c: c > 0),
    ):
        if bound:
            parts.append(f"{op} {bound}")
            c = vcmp("generic", v, bound)
            if c is None:
                return "unknown", f"{v} and {bound} are not comparable"
            if not below_ok(c):
                return "not_affected", f"{v} is below {op} {bound}"
    for bound, op, ok in (
        (r.end_including, "<=", lambda c: c <= 0),
        (r.end_excluding, "<", lambda c: c < 0),
    ):
        if bound:
            parts.append(f"{op} {bound}")
            c = vcmp("generic", v, bound)
            if c is None:
                return "unknown", f"{v} and {bound} are not comparable"
            if not ok(c):
                return "fixed", f"{v} is after the affected range {op} {bound}"
    return "affected", f"{v} is within {' and '.join(parts) or 'all versions'}"


# -- the index -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    vuln: PackageVuln
    ap: AffectedPackage
    vectors: tuple[str, ...]
    max_cvss: float | None
    label: str


@dataclass(frozen=True, slots=True)
class _Ident:
    scheme: str  # version scheme for evaluation
    key: str  # package key (purl) or "vendor:product" (cpe) or simple name
    name: str  # simple name for cross-source lookup
    vendor: str  # CPE vendor / purl namespace / supplier, simplified
    version: str
    label: str


def _label(ap: AffectedPackage) -> str:
    if ap.scheme == "cpe":
        return f"cpe {ap.cpe_vendor}:{ap.cpe_product}"
    return f"pkg:{ap.scheme}/{ap.name}"


class ComponentIndex:
    """OSV and NVD records (and CSAF products with purl/cpe helpers) indexed by package."""

    def __init__(self, vulns: Iterable[PackageVuln] = ()):
        self.by_purl: dict[tuple[str, str], list[_Target]] = {}
        self.by_cpe: dict[tuple[str, str], list[_Target]] = {}
        self.by_name: dict[str, list[_Target]] = {}
        self.size = 0
        self._cand_cache: dict[Any, list[tuple[_Target, float, str]]] = {}
        for v in vulns:
            self.add(v)

    def add(self, v: PackageVuln) -> None:
        if v.withdrawn:
            return
        self._cand_cache.clear()
        self.size += 1
        vectors = tuple(s.vector for s in v.scores)
        top = max((s.base_score for s in v.scores), default=None)
        for ap in v.affected:
            t = _Target(v, ap, vectors, top, _label(ap))
            if ap.scheme == "cpe":
                self.by_cpe.setdefault((ap.cpe_vendor, ap.cpe_product), []).append(t)
                self.by_name.setdefault(_simple(ap.cpe_product), []).append(t)
            else:
                self.by_purl.setdefault((ap.scheme, ap.name), []).append(t)
                self.by_name.setdefault(_simple(ap.name.rsplit("/", 1)[-1]), []).append(t)

    def _candidates(self, c: Component, purl: Purl | None) -> list[tuple[_Target, float, str]]:
        """Candidates with their identification confidence and evidence (memoized: they do
        not depend on the component's version)."""
        cpe = parse_cpe(c.cpe) if c.cpe else None
        key = (purl[:3] if purl else None, cpe[:3] if cpe else None, c.name, c.supplier)
        found = self._cand_cache.get(key)
        if found is None:
            found = self._find(c, purl, cpe)
            self._cand_cache[key] = found
        return found

    def _find(
        self, c: Component, purl: Purl | None, cpe: tuple[str, str, str, str] | None
    ) -> list[tuple[_Target, float, str]]:
        out: dict[int, tuple[_Target, float, str]] = {}

        def put(t: _Target, conf: float, why: str) -> None:
            cur = out.get(id(t))
            if cur is None or cur[1] < conf:
                out[id(t)] = (t, conf, why)

        names: set[str] = set()
        vendors: set[str] = set()
        if c.supplier:  # "The Apache Software Foundation" -> apache
            vendors.update(
                w
                for w in re.findall(r"[a-z0-9]+", c.supplier.lower())
                if w not in vocabulary().supplier_noise
            )
        if purl is not None:
            key = package_key(purl.type, purl.namespace or None, purl.name)
            for t in self.by_purl.get((purl.type, key), ()):
                put(t, 0.95, f"same package {purl.type}/{key}")
            names.add(_simple(purl.name))
            if purl.namespace:  # "org.apache.logging.log4j", "github.com/foo": each part
                vendors.update(
                    x
                    for x in re.split(r"[/.]", purl.namespace.lower())
                    if x and x not in ("org", "com", "net", "io", "github", "debian")
                )
        if cpe is not None:
            _, cv, cp, _ = cpe
            for t in self.by_cpe.get((cv, cp), ()):
                put(t, 0.95, f"same CPE {cv}:{cp}")
            names.add(_simple(cp))
            vendors.add(_simple(cv))
        if c.name:
            names.add(_simple(c.name))
        for n in names:
            for t in self.by_name.get(n, ()):
                ap = t.ap
                if ap.scheme == "cpe":
                    if _simple(ap.cpe_vendor) in vendors:
                        put(t, 0.8, f"name {n} is CPE product {ap.cpe_vendor}:{ap.cpe_product}")
                    else:
                        put(
                            t, 0.6, f"name {n} equals CPE product {ap.cpe_product} (vendor unknown)"
                        )
                elif purl is None:
                    put(t, 0.6, f"name {n} equals package {ap.scheme}/{ap.name}")
        return list(out.values())

    def match(
        self, c: Component, *, include_resolved: bool = False
    ) -> list[tuple[_Target, str, float, str]]:
        """(target, status, confidence, explanation) for each record concerning `c`."""
        version = c.version
        purl = parse_purl(c.purl)
        if not version and purl is not None and purl.version:
            version = purl.version
        if not version and c.cpe:
            cp = parse_cpe(c.cpe)
            if cp and cp[3] not in ("*", "-", ""):
                version = cp[3]
        results: dict[str, tuple[_Target, str, float, str]] = {}
        for t, conf, why in self._candidates(c, purl):
            verdict, vwhy = evaluate(t.ap, version)
            if verdict == "affected":
                status = AFFECTED if conf >= AFFECTED_CONFIDENCE else POTENTIAL
            elif verdict == "unknown":
                status = POTENTIAL
            elif verdict == "fixed":
                status = FIXED
            else:
                status = NOT_AFFECTED
            if t.ap.conditional and status == AFFECTED:
                status = POTENTIAL
                vwhy += "; vulnerable only together with another platform (NVD AND)"
            if status in (FIXED, NOT_AFFECTED) and not include_resolved:
                continue
            cur = results.get(t.vuln.id)
            rank = _RANK[status], conf
            if cur is None or rank > (_RANK[cur[1]], cur[2]):
                results[t.vuln.id] = (t, status, conf, f"{why}; {vwhy}")
        return list(results.values())


_RANK = {AFFECTED: 3, POTENTIAL: 2, FIXED: 1, NOT_AFFECTED: 0}


class Purl(NamedTuple):
    type: str
    namespace: str
    name: str
    version: str


def parse_purl(purl: str) -> Purl | None:
    """purl-spec "How to parse a purl string": the parts matching needs (qualifiers and
    subpath are not part of a package's identity). The version is split off before the
    cached part, so each package is parsed once whatever its versions."""
    if not purl:
        return None
    head = purl.partition("#")[0].partition("?")[0]
    at = head.rfind("@")
    if at > head.find("/") > 0:  # "pkg:npm/%40scope/x@1.0": the version's "@" follows the type
        base, version = head[:at], urllib.parse.unquote(head[at + 1 :])
    else:
        base, version = head, ""
    p = _parse_base(base)
    if p is None or not version:
        return p
    return p._replace(version=version)


_parse_purl = parse_purl


@lru_cache(maxsize=200_000)
def _parse_base(base: str) -> Purl | None:
    scheme, _, rest = base.partition(":")
    if scheme.lower() != "pkg" or not rest:
        return None
    parts = [urllib.parse.unquote(x) for x in rest.strip("/").split("/") if x]
    if len(parts) < 2:
        return None
    ptype = parts[0].lower()
    if not re.fullmatch(r"[a-z][a-z0-9.+\-]*", ptype):
        return None
    return Purl(ptype, "/".join(parts[1:-1]), parts[-1], "")


def component_ref(c: Component) -> str:
    return c.ref or c.purl or c.cpe or (f"{c.name}@{c.version}" if c.version else c.name)


def to_matches(
    c: Component,
    found: list[tuple[_Target, str, float, str]],
) -> list[Match]:
    ref = component_ref(c)
    desc = c.purl or c.cpe or f"{c.name} {c.version}".strip()
    out = []
    for t, status, conf, why in found:
        out.append(
            Match(
                advisory_id=t.vuln.id,
                status=status,
                confidence=round(conf, 2),
                explanation=why,
                component=ref,
                device=desc,
                source=t.vuln.source,
                product_id=t.ap.purl or t.ap.cpe or t.label,
                product=t.label,
                cves=t.vuln.cves,
                cvss_vectors=t.vectors,
                max_cvss=t.max_cvss,
            )
        )
    return out
