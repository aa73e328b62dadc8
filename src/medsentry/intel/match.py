"""Devices and components -> vulnerabilities: the public matching API.

`match_devices(store_or_index, devices)` and `match_components(store_or_index, components)`
return `Match` records (`medsentry.intel.model.Match`): device id or component ref, advisory id,
status (affected / potentially_affected / fixed / not_affected), confidence, a one-line
explanation, CVEs, CVSS vectors, the KEV flag and the EPSS probability. `store_or_index` is an
open `Store` (the intel tables are read once into an `IntelIndex`) or an `IntelIndex`.

Devices are matched by name against CSAF advisories (the CISA medical advisories carry no
CPE). For each CSAF product the `Matcher` keeps its vendor keys (aliases and renames resolved,
`normalize.vendor_keys`), its name features (distinctive words, model codes, model ranges;
`normalize.features`) and its parsed version spec (`versions.parse_spec`). A device matches a
product when:

1. the vendors agree (or the device names none: lower confidence);
2. they share a model code, or distinctive words;
3. they are not two different products of one family: when each side has a distinctive word the
   other lacks (the device's word known from some advisory product) and no model code is shared
   ("Pyxis MedStation" is not "Pyxis SupplyStation"), or both name model codes and none agree
   ("CARESCAPE B650" is not "B450"), there is no match.

Confidence (0..1) comes from that evidence (a shared model code: 0.9, plus 0.05 with shared
words; words only: 0.5 + 0.45 x the IDF-weighted share of the product's words found), times 0.9
when the device names no vendor or an ambiguous one, times 0.8 when the product names a model
and the device none, times the inventory's identification confidence when below 1. The version
then decides: within the advisory's range -> "affected" (when confidence >= 0.75), outside ->
"not_affected", unknown or not comparable -> "potentially_affected". A product the advisory
lists as fixed (CSAF §3.2.3.9 fixed, first_fixed) gives "fixed" for a device at that version.

Components (purl, CPE, name and version) are matched by `components.ComponentIndex` against
OSV and NVD records and CSAF products carrying purl/cpe helpers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from medsentry.intel.components import ComponentIndex, to_matches
from medsentry.intel.model import (
    AFFECTED,
    FIXED,
    NOT_AFFECTED,
    POTENTIAL,
    Advisory,
    AffectedPackage,
    AffectedRange,
    Component,
    EpssScore,
    KevEntry,
    Match,
    PackageVuln,
    Product,
)
from medsentry.intel.normalize import (
    Features,
    Vocabulary,
    features,
    find_vendors,
    fold,
    split_descriptor,
    vendor_keys,
    vocabulary,
)
from medsentry.intel.versions import VersionSpec, parse_spec, parse_version

__all__ = [
    "AFFECTED",
    "FIXED",
    "NOT_AFFECTED",
    "POTENTIAL",
    "DeviceQuery",
    "IntelIndex",
    "Match",
    "Matcher",
    "match_components",
    "match_devices",
]

_RANK = {AFFECTED: 3, POTENTIAL: 2, FIXED: 1, NOT_AFFECTED: 0}
# CSAF §3.2.3.9 statuses under which a product is (or may be) vulnerable, fixed, not affected.
AFFECTED_STATUSES = ("known_affected", "first_affected", "last_affected", "under_investigation")
FIXED_STATUSES = ("fixed", "first_fixed")
NOT_AFFECTED_STATUSES = ("known_not_affected",)

_NOT_INCLUDING = re.compile(r",?\s*\b(?:not including|excluding|except)\b\s*")
_PARENS = re.compile(r"\(([^()]*)\)")
_VERSION_LABELS = frozenset({"version", "versions", "all versions", "software version"})
_TITLE_NOISE = re.compile(r"^icsma-[0-9a-z-]+_|\(update [a-z]\)|\bvulnerabilit(?:y|ies)\b")
_ALTERNATIVES = re.compile(r"(?<![a-z0-9])[a-z]{2,}(?:\s*/\s*[a-z]{2,})+(?![a-z0-9])")
MIN_CONFIDENCE = 0.5
MIN_NAME_COVER = 0.4  # words-only matches must cover this share of the product's name
AFFECTED_CONFIDENCE = 0.75


class DeviceQuery(msgspec.Struct, frozen=True, omit_defaults=True):
    """A device as identified or imported: any of vendor, product/model, version, free text.

    `identification` is how sure the inventory is of vendor and model (1.0 for an imported
    hospital inventory row).
    """

    device_id: str = ""
    vendor: str = ""
    product: str = ""
    version: str = ""
    text: str = ""  # free text such as "BD Alaris 8015 PC Unit v12.1.2"
    identification: float = 1.0

    def describe(self) -> str:
        return self.text or " ".join(x for x in (self.vendor, self.product, self.version) if x)


def device_query(device: Any) -> DeviceQuery:
    """A `DeviceQuery` from an inventory `Device` (attributes `.value`) or a DeviceQuery."""
    if isinstance(device, DeviceQuery):
        return device

    def attr(name: str) -> tuple[str, float]:
        a = getattr(device, name, None)
        if a is None:
            return "", 1.0
        return str(getattr(a, "value", a) or ""), float(getattr(a, "confidence", 1.0) or 0.0)

    vendor, vc = attr("vendor")
    model, mc = attr("model")
    version, _ = attr("software_version")
    asset = getattr(device, "asset", None) or {}
    vendor = vendor or asset.get("manufacturer", "") or asset.get("vendor", "")
    model = model or asset.get("model", "")
    version = version or asset.get("software_version", "") or asset.get("version", "")
    ident = min(vc if vendor else 1.0, mc if model else 1.0)
    return DeviceQuery(
        device_id=str(getattr(device, "device_id", "")),
        vendor=vendor,
        product=model,
        version=version,
        identification=round(max(0.0, min(ident, 1.0)), 2),
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory: Advisory
    product: Product
    label: str  # "vendor product version" for explanations
    vendors: frozenset[str]
    feats: Features
    qual: Features  # features of a version leaf that names models instead of versions
    spec: VersionSpec
    excluded: Features | None  # "..., not including X": X's features
    cves: tuple[str, ...]
    max_cvss: float | None
    vectors: tuple[str, ...] = ()
    kind: str = AFFECTED  # AFFECTED, FIXED or NOT_AFFECTED: how the advisory lists the product
    remediations: tuple[str, ...] = ()
    # "EPIQ/Affiniti": words that stand for each other
    alternatives: tuple[frozenset[str], ...] = ()
    eponymous: bool = False  # the product's name is its vendor's ("OpenClinic GA")


@dataclass(frozen=True, slots=True)
class _Query:
    vendors: frozenset[str]
    vendor_alias: str
    ambiguous: bool
    feats: Features
    version: str


def _product_label(p: Product) -> str:
    name = " ".join(x for x in (p.family, p.product) if x) or p.name
    ver = p.version_range or p.version
    return f"{name} {ver}".strip()


class Matcher:
    """An index of advisory products; `match(device)` lists the advisories that concern it."""

    def __init__(self, advisories: Iterable[Advisory], vocab: Vocabulary | None = None):
        self.vocab = vocab or vocabulary()
        self.entries: list[_Entry] = []
        for adv in advisories:
            self.add(adv)
        self._build()

    def add(self, adv: Advisory) -> None:
        cves_by_pid: dict[str, list[str]] = {}
        kind_by_pid: dict[str, str] = {}
        cvss_by_pid: dict[str, float] = {}
        vectors_by_pid: dict[str, list[str]] = {}
        rem_by_pid: dict[str, list[str]] = {}
        for v in adv.vulnerabilities:
            for statuses, kind in (
                (NOT_AFFECTED_STATUSES, NOT_AFFECTED),
                (FIXED_STATUSES, FIXED),
                (AFFECTED_STATUSES, AFFECTED),
            ):
                for status in statuses:
                    for pid in v.product_status.get(status, ()):
                        kind_by_pid[pid] = kind
                        if v.cve and kind == AFFECTED:
                            cves_by_pid.setdefault(pid, []).append(v.cve)
            for sc in v.scores:
                for pid in sc.products:
                    cvss_by_pid[pid] = max(cvss_by_pid.get(pid, 0.0), sc.base_score)
                    vectors_by_pid.setdefault(pid, []).append(sc.vector)
            for r in v.remediations:
                for pid in r.product_ids:
                    rem_by_pid.setdefault(pid, []).append(r.category)
        for p in adv.products:
            e = self._entry(adv, p, cves_by_pid, cvss_by_pid)
            self.entries.append(
                dataclasses.replace(
                    e,
                    vectors=tuple(dict.fromkeys(vectors_by_pid.get(p.product_id, ()))),
                    kind=kind_by_pid.get(p.product_id, AFFECTED),
                    remediations=tuple(dict.fromkeys(rem_by_pid.get(p.product_id, ()))),
                )
            )

    def _build(self) -> None:
        self._df: dict[str, int] = {}
        self._postings: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            for w in e.feats.words | e.qual.words:
                self._df[w] = self._df.get(w, 0) + 1
            keys = (
                e.feats.words
                | e.qual.words
                | e.feats.models
                | e.qual.models
                | e.feats.numbers
                | {f"range:{r[0]}" for r in e.feats.ranges}
            )
            if e.eponymous:
                keys = keys | {f"vendor:{v}" for v in e.vendors}
            for k in keys:
                self._postings.setdefault(k, []).append(i)
        self._known_words = frozenset(self._df)
        n = max(len(self.entries), 1)
        self._idf = {w: math.log(1.0 + n / df) for w, df in self._df.items()}
        self._cache: dict[tuple[str, str, str, str, float], list[Match]] = {}

    def _entry(
        self,
        adv: Advisory,
        p: Product,
        cves_by_pid: dict[str, list[str]],
        cvss_by_pid: dict[str, float],
    ) -> _Entry:
        vendors: set[str] = set()
        for v in p.vendors:
            vendors |= vendor_keys(v, self.vocab)
        name = " ".join(x for x in (p.family, p.product) if x) or p.name
        if fold(name) in _VERSION_LABELS:
            # CISA data slip (ICSMA-18-086-01): the product_name branch holds the version
            # label; the document title names the product
            name = _TITLE_NOISE.sub(" ", fold(adv.title))
        hits, rest = find_vendors(name, self.vocab)
        for h in hits:
            if not h.ambiguous:
                vendors |= h.keys
        eponymous = bool(hits) and not rest.strip()
        excluded = None
        ex = _NOT_INCLUDING.split(rest, maxsplit=1)
        if len(ex) == 2:
            rest = ex[0]
            excluded = features(ex[1], self.vocab)
        # "(CSM)", "(VLFT10GEN)": abbreviations and order codes: evidence, never required
        parens = " ".join(_PARENS.findall(rest))
        rest = _PARENS.sub(" ", rest)
        spec = parse_spec(p.version_range or p.version)
        qual_text = " ".join((*spec.qualifiers, *p.model_numbers, parens))
        _, qual_rest = find_vendors(qual_text, self.vocab)
        alternatives = tuple(
            frozenset(w for w in re.split(r"\s*/\s*", m.group(0).lower()))
            for m in _ALTERNATIVES.finditer(rest)
        )
        return _Entry(
            advisory=adv,
            product=p,
            alternatives=alternatives,
            eponymous=eponymous,
            label=_product_label(p),
            vendors=frozenset(vendors),
            feats=features(rest, self.vocab),
            qual=features(qual_rest, self.vocab),
            spec=spec,
            excluded=excluded,
            cves=tuple(dict.fromkeys(cves_by_pid.get(p.product_id, ()))),
            max_cvss=cvss_by_pid.get(p.product_id),
        )

    # -- the query side ------------------------------------------------------------------------

    def _query(self, device: DeviceQuery) -> _Query:
        vendors: set[str] = set()
        alias = ""
        ambiguous = False
        version = device.version
        if device.vendor:
            hits, _ = find_vendors(device.vendor, self.vocab)
            for h in hits:
                vendors |= h.keys
                ambiguous |= h.ambiguous
            alias = device.vendor
            if not hits:
                vendors = set(vendor_keys(device.vendor, self.vocab))
        text = " ".join(x for x in (device.product, device.text) if x)
        hits, rest = find_vendors(text, self.vocab)
        if not device.vendor:
            for h in hits:
                vendors |= h.keys
                ambiguous |= h.ambiguous
                alias = alias or h.alias
        if not version:
            rest, version = split_descriptor(rest)
        return _Query(frozenset(vendors), alias, ambiguous, features(rest, self.vocab), version)

    def match(self, device: DeviceQuery, *, include_not_affected: bool = False) -> list[Match]:
        """The advisories that concern `device`, best first (one result per advisory)."""
        key = (device.vendor, device.product, device.version, device.text, device.identification)
        results = self._cache.get(key)
        if results is None:
            results = self._match(device)
            self._cache[key] = results
        out = (
            results
            if include_not_affected
            else [m for m in results if m.status in (AFFECTED, POTENTIAL)]
        )
        if device.device_id:
            out = [msgspec.structs.replace(m, device_id=device.device_id) for m in out]
        return out

    def match_many(
        self, devices: Sequence[DeviceQuery], *, include_not_affected: bool = False
    ) -> list[Match]:
        out: list[Match] = []
        for d in devices:
            out.extend(self.match(d, include_not_affected=include_not_affected))
        return out

    def _candidates(self, q: _Query) -> set[int]:
        cands: set[int] = set()
        for k in q.feats.words | q.feats.models | q.feats.numbers:
            cands.update(self._postings.get(k, ()))
        for v in q.vendors:
            cands.update(self._postings.get(f"vendor:{v}", ()))
        for m in q.feats.models:
            prefix = m.rstrip("0123456789")
            if prefix and m[len(prefix) :].isdigit():
                cands.update(self._postings.get(f"range:{prefix}", ()))
        return cands

    def _w(self, words: Iterable[str]) -> float:
        return sum(self._idf.get(w, 1.0) for w in words)

    def _match(self, device: DeviceQuery) -> list[Match]:
        q = self._query(device)
        best: dict[str, Match] = {}
        for i in self._candidates(q):
            m = self._score(device, q, self.entries[i])
            if m is None:
                continue
            cur = best.get(m.advisory_id)
            if cur is None or (_RANK[m.status], m.confidence) > (_RANK[cur.status], cur.confidence):
                best[m.advisory_id] = m
        return sorted(best.values(), key=lambda m: (-_RANK[m.status], -m.confidence, m.advisory_id))

    def _evidence(self, q: _Query, e: _Entry) -> tuple[float, str] | None:
        """Steps 2 and 3: shared model codes or words, and no sign of a sibling product."""
        prod_words = e.feats.words | e.qual.words
        common_words = q.feats.words & prod_words
        model_hits = q.feats.model_hits(e.feats) | q.feats.model_hits(e.qual)
        if common_words and not model_hits:
            # a bare number taken out of a code ("mx800" -> "800") counts only beside a word
            model_hits = (q.feats.numbers & (e.feats.models | e.qual.models)) | (
                (q.feats.models | q.feats.numbers) & (e.feats.numbers | e.qual.numbers)
            )
        if not common_words and not model_hits:
            return None
        # 3. different products of one family
        prod_only = e.feats.words - q.feats.words
        for group in e.alternatives:  # "EPIQ/Affiniti": naming one names the product
            if group & q.feats.words:
                prod_only -= group
        dev_only_known = (q.feats.words & self._known_words) - prod_words
        if prod_only and dev_only_known and (not model_hits or not common_words):
            return None
        prod_models = e.feats.models | e.qual.models
        if q.feats.models and prod_models and not model_hits:
            return None
        if q.feats.models and not prod_models and prod_only:
            return None  # "MedStation 4000" is not "MedStation ES": the product names a variant
        ex = e.excluded
        if ex is not None and (
            (q.feats.models & ex.models)
            or (ex.words and ex.words <= q.feats.words and not ex.models)
        ):
            return None  # "LOGIQ, not including LOGIQ 100 Pro"
        if model_hits:
            confidence = 0.95 if common_words else 0.9
            evidence = f"model {', '.join(sorted(model_hits, key=len)[-1:])}"
            if common_words:
                evidence += f" and {', '.join(sorted(common_words))}"
            return confidence, evidence
        main = e.feats.words or prod_words
        cover = self._w(common_words & main) / max(self._w(main), 1e-9)
        if main is not prod_words and not (common_words & main):
            cover = self._w(common_words) / max(self._w(prod_words), 1e-9)
        if cover < MIN_NAME_COVER:
            return None
        words = ", ".join(sorted(common_words))
        return 0.5 + 0.45 * cover, f"{words} ({cover:.0%} of the product's name)"

    def _score(self, device: DeviceQuery, q: _Query, e: _Entry) -> Match | None:
        # 1. vendor
        if q.vendors and e.vendors and not (q.vendors & e.vendors):
            return None
        vendor_factor = 1.0 if (q.vendors and not q.ambiguous) else 0.9
        if e.eponymous:
            # a product named after its vendor ("OpenClinic GA"): the vendor is the evidence
            if not (q.vendors & e.vendors):
                return None
            plain = not (q.feats.words or q.feats.models)
            confidence = 0.8 if plain else 0.6
            evidence = "vendor-named product"
        else:
            found = self._evidence(q, e)
            if found is None:
                return None
            confidence, evidence = found
        missing_model = bool(e.feats.models) and not q.feats.models
        if missing_model:
            confidence *= 0.8
        confidence = round(confidence * vendor_factor, 2)
        if confidence < MIN_CONFIDENCE:
            return None
        # 4. version
        if e.spec.kind == "qualifier" and (
            (q.feats.models & e.qual.models)
            or (e.qual.words and e.qual.words <= q.feats.words and not e.qual.models)
        ):
            verdict, why = "affected", f"all versions of the listed {e.spec.text!r} are affected"
        else:
            verdict, why = e.spec.test(parse_version(q.version))
        ident = device.identification
        if ident < 1.0:
            confidence = round(confidence * ident, 2)
        if e.kind != AFFECTED:  # the advisory lists this product as fixed / not affected
            if verdict != "affected":
                return None
            status = e.kind
            why = f"{why}; listed as {'fixed' if e.kind == FIXED else 'not affected'}"
        elif verdict == "not_affected":
            status = NOT_AFFECTED
        elif (
            verdict == "affected"
            and confidence >= AFFECTED_CONFIDENCE
            and not missing_model
            and ident >= AFFECTED_CONFIDENCE
        ):
            status = AFFECTED
        else:
            status = POTENTIAL
        if not e.cves and status == AFFECTED and e.advisory.vulnerabilities:
            status = POTENTIAL
        vendor_txt = (
            f"vendor {q.vendor_alias!r}" + (" (ambiguous)" if q.ambiguous else "")
            if q.vendors
            else "no vendor given"
        )
        extra = "; device names no model" if missing_model else ""
        if ident < 1.0:
            extra += f"; device identified with confidence {ident:.2f}"
        explanation = f"{vendor_txt}; {evidence} match {e.label!r}{extra}; {why}"
        return Match(
            advisory_id=e.advisory.advisory_id,
            status=status,
            confidence=confidence,
            explanation=explanation,
            device_id=device.device_id,
            device=device.describe(),
            source="csaf",
            product_id=e.product.product_id,
            product=e.label,
            cves=e.cves,
            cvss_vectors=e.vectors,
            max_cvss=e.max_cvss,
            remediations=e.remediations,
        )


# -- the public API --------------------------------------------------------------------------


def _csaf_packages(adv: Advisory) -> list[PackageVuln]:
    """CSAF products that carry a purl or cpe helper (§3.1.3.3), as component targets."""
    from medsentry.intel.components import package_key, parse_cpe, parse_purl

    affected: set[str] = set()
    for v in adv.vulnerabilities:
        for status in AFFECTED_STATUSES:
            affected.update(v.product_status.get(status, ()))
    out: list[PackageVuln] = []
    for p in adv.products:
        if p.product_id not in affected or not (p.purl or p.cpe):
            continue
        aps: list[AffectedPackage] = []
        # the branch's version or version range (§3.1.2.3: product_version(_range)) applies to
        # the helper's package unless the purl pins a version itself
        text = p.version_range or p.version
        ranges = (AffectedRange(type="SPEC", spec=text),) if text else ()
        purl = parse_purl(p.purl) if p.purl else None
        if purl is not None:
            aps.append(
                AffectedPackage(
                    scheme=purl.type,
                    name=package_key(purl.type, purl.namespace or None, purl.name),
                    purl=p.purl,
                    versions=(purl.version,) if purl.version else (),
                    ranges=() if purl.version else ranges,
                )
            )
        cpe = parse_cpe(p.cpe) if p.cpe else None
        if cpe is not None:
            aps.append(
                AffectedPackage(
                    scheme="cpe",
                    name=f"{cpe[1]}:{cpe[2]}",
                    cpe=p.cpe,
                    cpe_vendor=cpe[1],
                    cpe_product=cpe[2],
                    cpe_version=cpe[3],
                    ranges=ranges if cpe[3] in ("*", "-", "") else (),
                )
            )
        vulns = [v for v in adv.vulnerabilities if p.product_id in _ids(v.product_status)]
        out.append(
            PackageVuln(
                source="csaf",
                id=adv.advisory_id,
                aliases=tuple(v.cve for v in vulns if v.cve),
                summary=adv.title,
                scores=tuple(s for v in vulns for s in v.scores if p.product_id in s.products),
                affected=tuple(aps),
            )
        )
    return out


def _ids(status: dict[str, tuple[str, ...]]) -> set[str]:
    return {pid for k in AFFECTED_STATUSES for pid in status.get(k, ())}


@dataclass
class IntelIndex:
    """Everything matching needs, in memory: CSAF products, package records, KEV, EPSS."""

    advisories: list[Advisory] = field(default_factory=list)
    packages: list[PackageVuln] = field(default_factory=list)
    kev: dict[str, KevEntry] = field(default_factory=dict)
    epss: dict[str, EpssScore] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.advisories)
        self.components = ComponentIndex(self.packages)
        for adv in self.advisories:
            for pv in _csaf_packages(adv):
                self.components.add(pv)

    def enrich(self, m: Match) -> Match:
        kev = any(c in self.kev for c in m.cves)
        scores = [self.epss[c].epss for c in m.cves if c in self.epss]
        if not kev and not scores:
            return m
        return msgspec.structs.replace(m, kev=kev, epss=max(scores) if scores else None)

    def match_devices(
        self, devices: Iterable[Any], *, include_resolved: bool = False
    ) -> list[Match]:
        out: list[Match] = []
        for d in devices:
            q = device_query(d)
            for m in self.matcher.match(q, include_not_affected=include_resolved):
                out.append(self.enrich(m))
        return out

    def match_components(
        self, components: Iterable[Any], *, include_resolved: bool = False
    ) -> list[Match]:
        out: list[Match] = []
        for c in components:
            comp = as_component(c)
            found = self.components.match(comp, include_resolved=include_resolved)
            out.extend(self.enrich(m) for m in to_matches(comp, found))
        return out


def as_component(c: Any) -> Component:
    """A `Component` from one, from a mapping, or from any object with purl/cpe/name/version."""
    if isinstance(c, Component):
        return c

    def get(*names: str) -> str:
        for n in names:
            v = c.get(n) if isinstance(c, dict) else getattr(c, n, None)
            if v:
                return str(v)
        return ""

    return Component(
        ref=get("ref", "bom_ref", "bom-ref", "spdx_id", "id"),
        name=get("name"),
        version=get("version"),
        purl=get("purl"),
        cpe=get("cpe"),
        supplier=get("supplier", "vendor", "publisher"),
    )


def _index(store_or_index: Any) -> IntelIndex:
    if isinstance(store_or_index, IntelIndex):
        return store_or_index
    from medsentry.intel.store import load_index

    return load_index(store_or_index)


def match_devices(
    store_or_index: Any, devices: Iterable[Any], *, include_resolved: bool = False
) -> list[Match]:
    """Devices (inventory `Device`s or `DeviceQuery`s) -> matches against CSAF advisories.

    By default only "affected" and "potentially_affected" matches; with `include_resolved`
    also "fixed" and "not_affected" ones (for VEX and reports that show what was ruled out).
    """
    return _index(store_or_index).match_devices(devices, include_resolved=include_resolved)


def match_components(
    store_or_index: Any, components: Iterable[Any], *, include_resolved: bool = False
) -> list[Match]:
    """Components (`Component`, dicts or objects with purl/cpe/name/version/ref) -> matches
    against OSV, NVD and CSAF (purl/cpe helpers) records."""
    return _index(store_or_index).match_components(components, include_resolved=include_resolved)
