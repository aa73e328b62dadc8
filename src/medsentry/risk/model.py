"""The device risk score (0..100) and its breakdown; see docs/risk.md for the formula.

    risk = sqrt(likelihood x impact)             (each 0..100; 0 when either is 0)

    likelihood = exploitability + known_exploited + epss          (the vulnerability, x 0.5 for
               + internet_exposure + flat_network + cleartext      a potentially affected match)
               + weak_authentication (open controls findings)
               - compensating controls                              capped to 0..100

    impact = clinical_points x max over the clinical categories the device serves of
             (category weight x the vulnerability's worst effect among that category's C/I/A)
           + multi_patient points                                   capped to 0..100

The categories follow the MITRE rubric for applying CVSS to medical devices (Q1 PHI, Q2
diagnosis or monitoring, Q3 therapy delivery, Q4 clinical workflow, Q6 other; the worst category
wins). A device serves the category of its criticality and every less critical one, plus PHI
when it was seen carrying PHI. The device's score is its worst vulnerability's; a device with no
known vulnerability still scores its exposure (effect taken as complete compromise, exploitability
0), so an exposed life-sustaining device is never 0.

Every `Factor` says what it measured, its value, the points it gave and its source.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence

import msgspec

from medsentry.inventory.model import CRITICALITIES, NONE, Device
from medsentry.risk.cvss import CvssScore, worst
from medsentry.risk.weights import Weights, weights

_TRUE = frozenset({"yes", "true", "1", "y", "on"})
POTENTIAL = "potentially_affected"


class VulnInput(msgspec.Struct, frozen=True, omit_defaults=True):
    """One vulnerability that concerns the device (a match, after VEX)."""

    id: str  # advisory or vulnerability id
    status: str  # affected | potentially_affected
    cves: tuple[str, ...] = ()
    cvss_vectors: tuple[str, ...] = ()
    kev: bool = False
    epss: float | None = None
    confidence: float = 1.0
    via: str = ""  # "device match" / "SBOM component pkg:..."


class Factor(msgspec.Struct, frozen=True):
    group: str  # likelihood | impact
    name: str
    value: str  # what was measured, readable
    points: float
    source: str  # where the value came from


class Weakness(msgspec.Struct, frozen=True):
    """An open controls-audit finding of the device (`medsentry findings list`)."""

    type: str  # finding type: default-credentials, snmp-default-community, ...
    subject: str  # what on the device: "udp/161", "tcp/1883"


class RiskScore(msgspec.Struct, frozen=True):
    device_id: str
    device: str  # readable label
    risk: int  # 0..100
    band: str
    likelihood: float
    impact: float
    driver: str  # the vulnerability that sets the score, or "" (exposure only)
    vulnerabilities: int  # affected + potentially affected
    factors: tuple[Factor, ...]
    # the vulnerabilities counted, each "id (status[, KEV])", the driver first
    vulnerability_ids: tuple[str, ...] = ()


def device_label(d: Device) -> str:
    parts = [a.value for a in (d.vendor, d.model, d.software_version) if a is not None]
    name = " ".join(parts) or (d.category.value if d.category else "")
    where = d.hostname or (d.ips[0] if d.ips else "")
    return f"{name} ({where})".strip() if where else name or d.device_id


# -- exposure --------------------------------------------------------------------------------


def _subnet(ip: str, w: Weights) -> ipaddress._BaseNetwork | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = w.flat_prefix_v4 if addr.version == 4 else w.flat_prefix_v6
    return ipaddress.ip_network(f"{addr}/{prefix}", strict=False)


class Neighbourhood:
    """Non-medical devices per subnet, for the flat-network factor."""

    def __init__(self, devices: Iterable[Device], w: Weights | None = None):
        self.w = w or weights()
        self.nonmedical: dict[str, int] = {}
        self.medical_ids: set[str] = set()
        for d in devices:
            if d.medical:
                self.medical_ids.add(d.device_id)
                continue
            if d.category is None and not d.ips:
                continue
            for ip in d.ips[:1]:
                net = _subnet(ip, self.w)
                if net is not None:
                    self.nonmedical[str(net)] = self.nonmedical.get(str(net), 0) + 1

    def flat(self, d: Device) -> tuple[bool, str]:
        for ip in d.ips[:1]:
            net = _subnet(ip, self.w)
            if net is None:
                continue
            n = self.nonmedical.get(str(net), 0) - (0 if d.medical else 1)
            verdict = n >= self.w.flat_min_nonmedical
            return verdict, f"subnet {net} holds {n} non-medical device{'s' * (n != 1)}"
        return False, "no IP address known"


def _weak_authentication(weak: Sequence[Weakness], w: Weights) -> Factor:
    """The device's worst open finding that needs no vulnerability to get in (its points only:
    several such findings are several doors to the same device)."""
    found = sorted(
        {(x.type, x.subject) for x in weak if x.type in w.weak_auth},
        key=lambda ts: (-w.weak_auth[ts[0]][0], ts),
    )
    if not found:
        return Factor(
            "likelihood",
            "weak_authentication",
            "none open",
            0.0,
            "controls audit, open findings: " + ", ".join(w.weak_auth),
        )
    worst_type = found[0][0]
    shown = ", ".join(f"{t} ({s})" if s else t for t, s in found[:3])
    more = len(found) - 3
    return Factor(
        "likelihood",
        "weak_authentication",
        shown + (f", +{more} more" if more > 0 else ""),
        w.weak_auth[worst_type][0],
        f"open controls finding {worst_type}: {w.weak_auth[worst_type][1]}",
    )


def _exposure(
    d: Device, hood: Neighbourhood, w: Weights, weak: Sequence[Weakness] = ()
) -> list[Factor]:
    L = w.likelihood
    out = []
    ext = sorted(d.external_peers)
    out.append(
        Factor(
            "likelihood",
            "internet_exposure",
            f"{len(ext)} public peer{'s' * (len(ext) != 1)}"
            + (f" (e.g. {', '.join(ext[:3])})" if ext else ""),
            L["internet_exposure"] if ext else 0.0,
            "observed flows (inventory external_peers)",
        )
    )
    flat, why = hood.flat(d)
    out.append(
        Factor(
            "likelihood",
            "flat_network",
            ("yes: " if flat else "no: ") + why,
            L["flat_network"] if flat else 0.0,
            f"inventory addresses; threshold {w.flat_min_nonmedical} non-medical devices",
        )
    )
    clear = sorted({p for p in d.protocols if p in w.cleartext})
    out.append(
        Factor(
            "likelihood",
            "cleartext_protocols",
            ", ".join(clear) if clear else "none seen",
            L["cleartext_protocols"] if clear else 0.0,
            "observed protocols; " + ("; ".join(w.cleartext[p] for p in clear[:2]) or "-"),
        )
    )
    out.append(_weak_authentication(weak, w))
    credit, declared = 0.0, []
    for key, (points, _src) in w.controls.items():
        if str(d.asset.get(key, "")).strip().lower() in _TRUE:
            credit += points
            declared.append(key)
    credit = min(credit, w.max_control_credit)
    out.append(
        Factor(
            "likelihood",
            "compensating_controls",
            ", ".join(declared) if declared else "none declared",
            -credit if credit else 0.0,
            "asset record (CMMS import): "
            + (
                "; ".join(w.controls[k][1] for k in declared[:2])
                if declared
                else "keys " + "/".join(w.controls)
            ),
        )
    )
    return out


# -- impact ----------------------------------------------------------------------------------


def served_categories(d: Device, w: Weights) -> list[str]:
    """The rubric categories a device serves: its criticality's and every lower one's, + PHI."""
    crit = d.criticality if d.criticality in CRITICALITIES else NONE
    idx = CRITICALITIES.index(crit)
    cats = [w.criticality_category[c] for c in CRITICALITIES[idx:]]
    if d.phi_observed:
        cats.append("phi")
    return list(dict.fromkeys(cats))


def multi_patient(d: Device, w: Weights, hood: Neighbourhood | None) -> tuple[bool, str]:
    roles = sorted(set(d.roles) & w.multi_patient_roles)
    if roles:
        return True, f"serves as {', '.join(roles)}"
    cat = d.category.value if d.category else ""
    if cat in w.multi_patient_categories:
        return True, f"category {cat}"
    if hood is not None:
        n = len(set(d.peers) & hood.medical_ids)
        if n >= w.multi_patient_min_medical_peers:
            return True, f"talks to {n} medical devices"
    return False, "single-patient device (no server role, few medical peers)"


def _effects(score: CvssScore | None) -> dict[str, float]:
    if score is None:  # no known vulnerability: assume complete compromise
        return {"confidentiality": 1.0, "integrity": 1.0, "availability": 1.0}
    return {
        "confidentiality": score.confidentiality,
        "integrity": score.integrity,
        "availability": score.availability,
    }


def _impact(
    d: Device, score: CvssScore | None, w: Weights, hood: Neighbourhood | None
) -> list[Factor]:
    eff = _effects(score)
    best, best_cat, best_eff = 0.0, "", ""
    for cname in served_categories(d, w):
        cat = w.categories[cname]
        e_name = max(cat.effects, key=lambda e: eff[e])
        val = cat.weight * eff[e_name]
        if val > best or not best_cat:
            best, best_cat, best_eff = val, cname, e_name
    cat = w.categories[best_cat]
    eff_src = (
        f"CVSS {score.version} {score.vector}"
        if score
        else "no known vulnerability: complete compromise assumed"
    )
    out = [
        Factor(
            "impact",
            "clinical_criticality",
            f"{d.criticality} -> worst category {best_cat} ({cat.rubric}, weight {cat.weight})",
            0.0,
            "inventory taxonomy criticality; MITRE rubric CIA categories",
        ),
        Factor(
            "impact",
            "phi",
            "PHI seen" if d.phi_observed else "no PHI seen",
            0.0,
            "dissector PHI presence flags (inventory phi_observed)",
        ),
        Factor(
            "impact",
            "clinical_effect",
            f"{best_eff} {eff[best_eff]:g} on {best_cat}",
            round(w.clinical_points * best, 2),
            eff_src,
        ),
    ]
    mp, why = multi_patient(d, w, hood)
    out.append(
        Factor(
            "impact",
            "multi_patient_harm",
            ("yes: " if mp else "no: ") + why,
            w.multi_patient_points if mp else 0.0,
            "inventory roles, category, medical peers (FDA §V.B.2 multi-patient harm view)",
        )
    )
    return out


# -- the vulnerability's own likelihood factors ---------------------------------------------


def _vuln_factors(v: VulnInput | None, score: CvssScore | None, w: Weights) -> list[Factor]:
    L = w.likelihood
    if v is None:
        src = "no affected or potentially affected match (intel + SBOM, after VEX)"
        return [
            Factor("likelihood", "exploitability", "no known vulnerability", 0.0, src),
            Factor("likelihood", "known_exploited", "no known vulnerability", 0.0, src),
            Factor("likelihood", "epss", "no known vulnerability", 0.0, src),
        ]
    m = 1.0 if v.status != POTENTIAL else w.potential_match_factor
    src_m = "" if m == 1.0 else f"; potentially affected match x{m:g}"
    out = [
        Factor(
            "likelihood",
            "exploitability",
            (
                f"{score.exploitability:.2f} (AV:{score.attack_vector}, base {score.base_score})"
                if score
                else "no CVSS vector"
            ),
            round(L["exploitability"] * (score.exploitability if score else 0.5) * m, 2),
            (
                f"CVSS {score.version} {score.vector} (cvss package)"
                if score
                else "no vector: half weight"
            )
            + src_m,
        ),
        Factor(
            "likelihood",
            "known_exploited",
            "in CISA KEV" if v.kev else "not in KEV",
            round(L["known_exploited"] * m, 2) if v.kev else 0.0,
            "CISA Known Exploited Vulnerabilities catalog" + src_m,
        ),
        Factor(
            "likelihood",
            "epss",
            f"{v.epss:.3f}" if v.epss is not None else "no score",
            round(L["epss"] * (v.epss or 0.0) * m, 2),
            "FIRST EPSS probability (30 days)" + src_m,
        ),
    ]
    return out


def band(risk: float, w: Weights) -> str:
    for lo, label in w.bands:
        if risk >= lo:
            return label
    return w.bands[-1][1]


def _combine(factors: list[Factor]) -> tuple[float, float, int]:
    lk = sum(f.points for f in factors if f.group == "likelihood")
    im = sum(f.points for f in factors if f.group == "impact")
    lk = min(max(lk, 0.0), 100.0)
    im = min(max(im, 0.0), 100.0)
    return round(lk, 2), round(im, 2), round(math.sqrt(lk * im))


def score_device(
    d: Device,
    vulns: Sequence[VulnInput],
    hood: Neighbourhood | None = None,
    w: Weights | None = None,
    weak: Sequence[Weakness] = (),
) -> RiskScore:
    """The device's risk: the worst of its vulnerabilities (and of its exposure alone).

    `weak`: the device's open controls findings (those of `weak_authentication` count)."""
    w = w or weights()
    hood = hood or Neighbourhood([d], w)
    exposure = _exposure(d, hood, w, weak)
    best: tuple[int, float, float, str, list[Factor]] | None = None
    candidates: list[VulnInput | None] = [None, *vulns]
    for v in candidates:
        score = worst(v.cvss_vectors) if v is not None else None
        factors = _vuln_factors(v, score, w) + exposure + _impact(d, score, w, hood)
        lk, im, risk = _combine(factors)
        key = (risk, lk, im)
        if best is None or key > best[:3]:
            best = (risk, lk, im, v.id if v else "", factors)
    assert best is not None
    risk, lk, im, driver, factors = best
    listed: dict[str, str] = {}
    for v in sorted(vulns, key=lambda v: (v.id != driver, v.status != "affected", not v.kev)):
        if v.id not in listed:
            flags = v.status + (", KEV" if v.kev else "") + (f", via {v.via}" if v.via else "")
            listed[v.id] = f"{v.id} ({flags})"
    return RiskScore(
        device_id=d.device_id,
        device=device_label(d),
        risk=risk,
        band=band(risk, w),
        likelihood=lk,
        impact=im,
        driver=driver,
        vulnerabilities=len(vulns),
        factors=tuple(factors),
        vulnerability_ids=tuple(listed.values()),
    )


def rank(scores: Iterable[RiskScore]) -> list[RiskScore]:
    return sorted(scores, key=lambda s: (-s.risk, -s.likelihood, -s.impact, s.device_id))
