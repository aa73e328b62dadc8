"""Devices (vendor, product or model, version, as an inventory writes them) -> advisories.

CISA's medical advisories carry no CPE, so matching is by name. For each CSAF product the index
keeps its vendor keys (aliases and renames resolved, `normalize.vendor_keys`), its name features
(distinctive words, model codes, model ranges; `normalize.features`) and its parsed version spec
(`versions.parse_spec`). A device matches a product when:

1. the vendors agree (or the device names none: lower confidence);
2. they share a model code, or distinctive words;
3. they are not two different products of one family: when each side has a distinctive word the
   other lacks (the device's word known from some advisory product) and no model code is shared
   ("Pyxis MedStation" is not "Pyxis SupplyStation"), or both name model codes and none agree
   ("CARESCAPE B650" is not "B450"), there is no match.

Confidence (0..1) comes from that evidence (a shared model code: 0.9, plus 0.05 with shared
words; words only: 0.5 + 0.45 x the IDF-weighted share of the product's words found), times 0.9
when the device names no vendor or an ambiguous one. The version then decides: within the
advisory's range -> "affected" (when confidence >= 0.75), outside -> "not_affected", unknown or
not comparable -> "potentially_affected". Every result carries a one-line explanation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from medsentry.intel.model import Advisory, Product
from medsentry.intel.normalize import (
    Features,
    Vocabulary,
    features,
    find_vendors,
    split_descriptor,
    vendor_keys,
    vocabulary,
)
from medsentry.intel.versions import VersionSpec, parse_spec, parse_version

AFFECTED = "affected"
POTENTIAL = "potentially_affected"
NOT_AFFECTED = "not_affected"
_RANK = {AFFECTED: 2, POTENTIAL: 1, NOT_AFFECTED: 0}
# CSAF §3.2.3.9 statuses under which a product is (or may be) vulnerable.
AFFECTED_STATUSES = ("known_affected", "first_affected", "last_affected", "under_investigation")

_NOT_INCLUDING = re.compile(r",?\s*\b(?:not including|excluding|except)\b\s*")
_PARENS = re.compile(r"\(([^()]*)\)")
MIN_CONFIDENCE = 0.5
MIN_NAME_COVER = 0.4  # words-only matches must cover this share of the product's name
AFFECTED_CONFIDENCE = 0.75


class Device(msgspec.Struct, frozen=True, omit_defaults=True):
    """A device as identified or imported: any of vendor, product/model, version, free text."""

    device_id: str = ""
    vendor: str = ""
    product: str = ""
    version: str = ""
    text: str = ""  # free text such as "BD Alaris 8015 PC Unit v12.1.2"

    def describe(self) -> str:
        return self.text or " ".join(x for x in (self.vendor, self.product, self.version) if x)


class Match(msgspec.Struct, frozen=True, omit_defaults=True):
    device_id: str
    device: str
    advisory_id: str
    product_id: str
    product: str
    status: str  # affected | potentially_affected | not_affected
    confidence: float
    explanation: str
    cves: tuple[str, ...] = ()
    max_cvss: float | None = None


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
            cves_by_pid: dict[str, list[str]] = {}
            cvss_by_pid: dict[str, float] = {}
            for v in adv.vulnerabilities:
                for status in AFFECTED_STATUSES:
                    for pid in v.product_status.get(status, ()):
                        if v.cve:
                            cves_by_pid.setdefault(pid, []).append(v.cve)
                for s in v.scores:
                    for pid in s.products:
                        cvss_by_pid[pid] = max(cvss_by_pid.get(pid, 0.0), s.base_score)
            for p in adv.products:
                self.entries.append(self._entry(adv, p, cves_by_pid, cvss_by_pid))
        self._df: dict[str, int] = {}
        self._postings: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            for w in e.feats.words | e.qual.words:
                self._df[w] = self._df.get(w, 0) + 1
            keys = (
                e.feats.words | e.qual.words | e.feats.models | e.qual.models | e.feats.numbers
                | {f"range:{r[0]}" for r in e.feats.ranges}
            )
            for k in keys:
                self._postings.setdefault(k, []).append(i)
        self._known_words = frozenset(self._df)
        n = max(len(self.entries), 1)
        self._idf = {w: math.log(1.0 + n / df) for w, df in self._df.items()}
        self._cache: dict[tuple[str, str, str, str], list[Match]] = {}

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
        hits, rest = find_vendors(name, self.vocab)
        for h in hits:
            if not h.ambiguous:
                vendors |= h.keys
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
        return _Entry(
            advisory=adv,
            product=p,
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

    def _query(self, device: Device) -> _Query:
        vendors: set[str] = set()
        alias = ""
        ambiguous = False
        version = device.version
        if device.vendor:
            hits, rest_vendor = find_vendors(device.vendor, self.vocab)
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

    def match(self, device: Device, *, include_not_affected: bool = False) -> list[Match]:
        """The advisories that concern `device`, best first (one result per advisory)."""
        key = (device.vendor, device.product, device.version, device.text)
        results = self._cache.get(key)
        if results is None:
            results = self._match(device)
            self._cache[key] = results
        out = results if include_not_affected else [m for m in results if m.status != NOT_AFFECTED]
        if device.device_id:
            out = [msgspec.structs.replace(m, device_id=device.device_id) for m in out]
        return out

    def match_many(
        self, devices: Sequence[Device], *, include_not_affected: bool = False
    ) -> list[Match]:
        out: list[Match] = []
        for d in devices:
            out.extend(self.match(d, include_not_affected=include_not_affected))
        return out

    def _candidates(self, q: _Query) -> set[int]:
        cands: set[int] = set()
        for k in q.feats.words | q.feats.models | q.feats.numbers:
            cands.update(self._postings.get(k, ()))
        for m in q.feats.models:
            prefix = m.rstrip("0123456789")
            if prefix and m[len(prefix):].isdigit():
                cands.update(self._postings.get(f"range:{prefix}", ()))
        return cands

    def _w(self, words: Iterable[str]) -> float:
        return sum(self._idf.get(w, 1.0) for w in words)

    def _match(self, device: Device) -> list[Match]:
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

    def _score(self, device: Device, q: _Query, e: _Entry) -> Match | None:
        # 1. vendor
        if q.vendors and e.vendors and not (q.vendors & e.vendors):
            return None
        vendor_factor = 1.0 if (q.vendors and not q.ambiguous) else 0.9
        # 2. evidence
        prod_words = e.feats.words | e.qual.words
        common_words = q.feats.words & prod_words
        model_hits = q.feats.model_hits(e.feats) | (q.feats.models & e.qual.models)
        if common_words and not model_hits:
            # a bare number taken out of a code ("mx800" -> "800") counts only beside a word
            model_hits = (q.feats.numbers & (e.feats.models | e.qual.models)) | (
                (q.feats.models | q.feats.numbers) & (e.feats.numbers | e.qual.numbers)
            )
        if not common_words and not model_hits:
            return None
        # 3. different products of one family
        prod_only = e.feats.words - q.feats.words
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
            (q.feats.models & ex.models) or (ex.words and ex.words <= q.feats.words and not ex.models)
        ):
            return None  # "LOGIQ, not including LOGIQ 100 Pro"
        if model_hits:
            confidence = 0.95 if common_words else 0.9
            evidence = f"model {', '.join(sorted(model_hits, key=len)[-1:])}"
            if common_words:
                evidence += f" and {', '.join(sorted(common_words))}"
        else:
            main = e.feats.words or prod_words
            cover = self._w(common_words & main) / max(self._w(main), 1e-9)
            if main is not prod_words and not (common_words & main):
                cover = self._w(common_words) / max(self._w(prod_words), 1e-9)
            if cover < MIN_NAME_COVER:
                return None
            confidence = 0.5 + 0.45 * cover
            evidence = f"{', '.join(sorted(common_words))} ({cover:.0%} of the product's name)"
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
        if verdict == "not_affected":
            status = NOT_AFFECTED
        elif verdict == "affected" and confidence >= AFFECTED_CONFIDENCE and not missing_model:
            status = AFFECTED
        else:
            status = POTENTIAL
        if not e.cves and status != NOT_AFFECTED:
            status = POTENTIAL if e.advisory.vulnerabilities else status
        vendor_txt = (
            f"vendor {q.vendor_alias!r}" + (" (ambiguous)" if q.ambiguous else "")
            if q.vendors
            else "no vendor given"
        )
        extra = "; device names no model" if missing_model else ""
        explanation = f"{vendor_txt}; {evidence} match {e.label!r}{extra}; {why}"
        return Match(
            device_id=device.device_id,
            device=device.describe(),
            advisory_id=e.advisory.advisory_id,
            product_id=e.product.product_id,
            product=e.label,
            status=status,
            confidence=confidence,
            explanation=explanation,
            cves=e.cves,
            max_cvss=e.max_cvss,
        )
