"""Applying VEX statements to vulnerability matches.

A statement applies to a match when it names the same vulnerability (the match's advisory id or
one of its CVEs, or a statement alias) and the same product:

- by purl: same package (purl type, namespace, name); the statement's purl version, when it has
  one, equals the component's version;
- by CPE 2.3: same vendor and product; version `*`/`-` or equal;
- by bom-ref (CycloneDX ref or BOM-Link fragment) equal to the component's;
- by product name (folded) equal to the component name or the device model, the statement's
  version (single version or vers range) covering the component's or device's version; or, for
  a device, when intel's name matcher (`intel.match.Matcher`: vendor aliases, model codes,
  version ranges) matches the device to the statement's product as "affected", i.e. names the
  same product and the device's version is within the statement's;
- by supplier only (a statement covering every product of a maker): the supplier names the
  component supplier or the device manufacturer.

When several apply, the newest (timestamp) wins; at equal time the most specific (purl/CPE over
name over supplier). The result keeps the match and says what the VEX changed: status
not_affected / fixed / affected replace the match's status; under_investigation keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import msgspec
from packageurl import PackageURL

from medsentry.intel.model import Match
from medsentry.intel.sbom_model import (
    AFFECTED,
    FIXED,
    NOT_AFFECTED,
    UNDER_INVESTIGATION,
    Component,
    DeviceModel,
    VexStatement,
)
from medsentry.intel.versions import parse_spec, parse_version

_SPACE = re.compile(r"[\s_\-]+")


class VexedMatch(msgspec.Struct, frozen=True, omit_defaults=True):
    """A match with the VEX statement that applies to it (if any)."""

    match: Match
    status: str  # the match status after VEX
    vex_status: str = ""  # CISA status of the statement, "" when none applies
    justification: str = ""
    impact_statement: str = ""
    action_statement: str = ""
    responses: tuple[str, ...] = ()
    vex_document: str = ""
    vex_format: str = ""
    vex_timestamp: str = ""


def _fold(text: str) -> str:
    return _SPACE.sub(" ", (text or "").strip().casefold())


def _purl(text: str) -> PackageURL | None:
    if not text:
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None


def _cpe(text: str) -> tuple[str, str, str] | None:
    from medsentry.intel.components import parse_cpe

    got = parse_cpe(text) if text else None
    return None if got is None else (got[1], got[2], got[3])


def _version_ok(stated: str, actual: str) -> bool:
    """Does the statement's version (single or vers range) cover `actual`?"""
    if not stated or stated in ("*", "-"):
        return True
    if not actual:
        return False
    if stated.startswith("vers:") or any(op in stated for op in ("<", ">", "|")):
        verdict, _ = parse_spec(stated).test(parse_version(actual))
        return verdict == "affected"
    if _fold(stated) == _fold(actual):
        return True
    a, b = parse_version(stated), parse_version(actual)
    if a is None or b is None:
        return False
    from medsentry.intel.versions import compare

    return compare(a, b) == 0


class _Target:
    """The identity of what a match is about: a component, or a device model."""

    def __init__(self, component: Component | None, device: DeviceModel | None):
        self.c = component
        self.d = device
        self.purl = _purl(component.purl) if component else None
        self.cpe = _cpe(component.cpe) if component else None
        self.version = component.version if component else (device.version if device else "")
        names = set()
        if component:
            names.add(_fold(component.name))
        if device:
            names |= {_fold(device.model), _fold(f"{device.manufacturer} {device.model}")}
        self.names = names - {""}
        makers = {_fold(component.supplier)} if component else set()
        if device:
            makers.add(_fold(device.manufacturer))
        self.makers = makers - {""}


def _specificity(s: VexStatement, t: _Target) -> int:
    """0 when `s` is not about target `t`; else higher for more specific identification."""
    if s.purl:
        sp = _purl(s.purl)
        if sp is None or t.purl is None:
            return 0
        same = (sp.type, sp.namespace or "", sp.name) == (
            t.purl.type,
            t.purl.namespace or "",
            t.purl.name,
        )
        if not same:
            return 0
        if sp.version and not _version_ok(sp.version, t.purl.version or t.version):
            return 0
        if s.product_version and not _version_ok(s.product_version, t.version):
            return 0
        return 4
    if s.cpe:
        sc = _cpe(s.cpe)
        if sc is None or t.cpe is None or sc[:2] != t.cpe[:2]:
            return 0
        if not _version_ok(sc[2], t.cpe[2] if t.cpe[2] not in ("*", "-") else t.version):
            return 0
        return 4
    if s.bom_ref:
        if t.c is None or s.bom_ref != t.c.bom_ref:
            return 0
        if s.product_version and not _version_ok(s.product_version, t.version):
            return 0
        return 3
    if s.product_name:
        if _fold(s.product_name) in t.names:
            if s.product_version and not _version_ok(s.product_version, t.version):
                return 0
            return 2
        if t.d is not None and _names_device(s.supplier, s.product_name, s.product_version, t.d):
            return 2
        return 0
    if s.supplier:
        return 1 if _fold(s.supplier) in t.makers else 0
    return 0


@lru_cache(maxsize=4096)
def _names_device(vendor: str, product: str, version: str, device: DeviceModel) -> bool:
    """Does the statement's product name `device` (intel's name matcher, version included)?"""
    from medsentry.intel.match import DeviceQuery, Matcher
    from medsentry.intel.model import Advisory, Product, Vulnerability

    prod = Product(
        product_id="VEX",
        name=f"{vendor} {product} {version}".strip(),
        vendors=(vendor,) if vendor else (),
        product=product,
        version=version,
    )
    adv = Advisory(
        advisory_id="VEX",
        title="",
        category="csaf_vex",
        publisher="",
        version="1",
        status="final",
        initial_release="",
        current_release="",
        source="",
        sha256="",
        products=(prod,),
        vulnerabilities=(
            Vulnerability(cve="CVE-0000-0000", product_status={"known_affected": ("VEX",)}),
        ),
    )
    query = DeviceQuery(vendor=device.manufacturer, product=device.model, version=device.version)
    return any(m.status == "affected" for m in Matcher([adv]).match(query))


def _ids(m: Match) -> set[str]:
    return {m.advisory_id, *m.cves}


class VexIndex:
    """Statements indexed by vulnerability id (and aliases)."""

    def __init__(self, statements: Iterable[VexStatement]):
        self.by_id: dict[str, list[VexStatement]] = {}
        for s in statements:
            for vid in {s.vulnerability, *s.aliases}:
                self.by_id.setdefault(vid.upper(), []).append(s)

    def find(
        self, m: Match, component: Component | None, device: DeviceModel | None
    ) -> VexStatement | None:
        cands: list[VexStatement] = []
        for vid in _ids(m):
            cands.extend(self.by_id.get(vid.upper(), ()))
        if not cands:
            return None
        t = _Target(component, device)
        best: tuple[str, int, int] | None = None
        chosen = None
        for order, s in enumerate(cands):
            spec = _specificity(s, t)
            if not spec:
                continue
            key = (s.timestamp, spec, order)
            if best is None or key > best:
                best, chosen = key, s
        return chosen


def apply_vex(
    matches: Sequence[Match],
    statements: Iterable[VexStatement] | VexIndex,
    *,
    components: Mapping[str, Component] | None = None,
    device: DeviceModel | None = None,
    devices: Mapping[str, DeviceModel] | None = None,
) -> list[VexedMatch]:
    """Each match with the VEX statement that applies to it.

    `components` maps a component match's `component` key (ref, purl, cpe or name@version) to
    the SBOM component; `device` is the device model the components belong to (or the device
    of device-level matches); `devices` maps device ids to their model for device matches.
    """
    index = statements if isinstance(statements, VexIndex) else VexIndex(statements)
    out: list[VexedMatch] = []
    for m in matches:
        comp = components.get(m.component) if (components and m.component) else None
        dev = devices.get(m.device_id) if (devices and m.device_id) else device
        s = index.find(m, comp, dev)
        if s is None:
            out.append(VexedMatch(match=m, status=m.status))
            continue
        status = m.status
        if s.status in (NOT_AFFECTED, FIXED, AFFECTED):
            status = s.status
        out.append(
            VexedMatch(
                match=m,
                status=status,
                vex_status=s.status,
                justification=s.justification,
                impact_statement=s.impact_statement,
                action_statement=s.action_statement,
                responses=s.responses,
                vex_document=s.document,
                vex_format=s.format,
                vex_timestamp=s.timestamp,
            )
        )
    return out


def component_key(c: Component) -> str:
    """The key intel's component matches carry (`components.component_ref`)."""
    return c.bom_ref or c.purl or c.cpe or (f"{c.name}@{c.version}" if c.version else c.name)


def record(v: VexedMatch) -> dict[str, Any]:
    """A flat record for listings and JSON output."""
    m = v.match
    return {
        "target": m.component or m.device_id,
        "description": m.device,
        "vulnerability": m.advisory_id,
        "cves": list(m.cves),
        "match_status": m.status,
        "status": v.status,
        "confidence": m.confidence,
        "vex_status": v.vex_status,
        "justification": v.justification,
        "impact_statement": v.impact_statement,
        "action_statement": v.action_statement,
        "vex_document": v.vex_document,
        "explanation": m.explanation,
        "max_cvss": m.max_cvss,
        "kev": m.kev,
        "epss": m.epss,
    }


__all__ = [
    "AFFECTED",
    "FIXED",
    "NOT_AFFECTED",
    "UNDER_INVESTIGATION",
    "VexIndex",
    "VexedMatch",
    "apply_vex",
    "component_key",
    "record",
]
