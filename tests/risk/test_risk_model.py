"""The device risk model: the documented example, the breakdown adds up, and the score is
monotone in what should raise it (KEV, EPSS, exposure, criticality, vulnerabilities) and lowered
by compensating controls (hypothesis)."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.errors import ConfigError
from medsentry.inventory.model import CRITICALITIES, Attribute, Device
from medsentry.risk.model import Neighbourhood, VulnInput, Weakness, score_device
from medsentry.risk.weights import load_weights, weights

VECTORS = [
    "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L",
    "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:A/AC:H/PR:L/UI:R/S:U/C:H/I:N/A:N",
    "CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:H",
    "CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:C/C:L/I:L/A:N",
    "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    "CVSS:4.0/AV:A/AC:H/AT:P/PR:L/UI:P/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
]
CONTROLS = ["segmented", "firewall", "nac", "ips", "patched"]
CLEARTEXT = ["hl7-mllp", "dicom", "http", "telnet"]


def _office(n: int, subnet: str = "10.1.2") -> list[Device]:
    return [
        Device(
            device_id=f"ip:{subnet}.{100 + i}",
            ips=[f"{subnet}.{100 + i}"],
            medical=False,
            category=Attribute(value="it.workstation", confidence=1.0),
        )
        for i in range(n)
    ]


def _pump(**over) -> Device:
    fields = dict(
        device_id="mac:02:00:00:00:00:01",
        ips=["10.1.2.5"],
        vendor=Attribute(value="BD", confidence=1.0),
        model=Attribute(value="Alaris 8015 PC Unit", confidence=1.0),
        software_version=Attribute(value="9.19", confidence=1.0),
        category=Attribute(value="infusion-pump", confidence=1.0),
        criticality="life-sustaining",
        medical=True,
        protocols=["hl7-mllp"],
    )
    fields.update(over)
    return Device(**fields)


def test_worked_example_of_docs_risk_md() -> None:
    pump = _pump()
    hood = Neighbourhood([pump, *_office(3)])
    vuln = VulnInput(
        id="ICSMA-20-170-06",
        status="affected",
        cvss_vectors=("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L",),
    )
    r = score_device(pump, [vuln], hood)
    assert (r.likelihood, r.impact, r.risk, r.band, r.driver) == (55, 40, 47, "medium", vuln.id)
    points = {f.name: f.points for f in r.factors}
    assert points == {
        "exploitability": 35.0,
        "known_exploited": 0.0,
        "epss": 0.0,
        "internet_exposure": 0.0,
        "flat_network": 10.0,
        "cleartext_protocols": 10.0,
        "weak_authentication": 0.0,
        "compensating_controls": 0.0,
        "clinical_criticality": 0.0,
        "phi": 0.0,
        "clinical_effect": 40.0,
        "multi_patient_harm": 0.0,
    }
    assert all(f.source for f in r.factors)
    segmented = _pump(asset={"segmented": "yes"})
    r2 = score_device(segmented, [vuln], Neighbourhood([segmented, *_office(3)]))
    assert (r2.likelihood, r2.risk) == (40, 40)
    snmp = [Weakness("snmp-default-community", "udp/161")]
    r3 = score_device(pump, [vuln], hood, weak=snmp)
    # with the vulnerability √(75 × 40) = 55; the open door alone scores higher: √(40 × 80)
    assert (r3.likelihood, r3.impact, r3.risk, r3.band, r3.driver) == (40, 80, 57, "high", "")


def test_exposure_only_device_is_not_zero() -> None:
    pump = _pump(external_peers=["52.1.2.3"])
    r = score_device(pump, [], Neighbourhood([pump]))
    assert r.driver == "" and r.risk > 0 and r.vulnerabilities == 0
    quiet = _pump(protocols=[], external_peers=[])
    assert score_device(quiet, [], Neighbourhood([quiet])).risk == 0


def test_weak_authentication_counts_the_worst_open_finding_once() -> None:
    """A default credential lets anyone in without a vulnerability: the pump's likelihood gets
    the points of its worst such finding (not their sum); other finding types add nothing."""
    pump = _pump()
    hood = Neighbourhood([pump])
    base = score_device(pump, [], hood)
    weak = [
        Weakness("cleartext-credentials", "tcp/21"),
        Weakness("snmp-default-community", "udp/161"),
        Weakness("tls-weak-cipher", "tcp/443"),  # a controls finding, not an open door
        Weakness("snmp-default-community", "udp/161"),  # the same finding twice counts once
    ]
    r = score_device(pump, [], hood, weak=weak)
    f = {x.name: x for x in r.factors}["weak_authentication"]
    assert f.points == weights().weak_auth["snmp-default-community"][0] == 20
    assert f.value == "snmp-default-community (udp/161), cleartext-credentials (tcp/21)"
    assert f.source.startswith("open controls finding snmp-default-community: CWE-1392")
    assert r.likelihood == base.likelihood + 20 and r.risk > base.risk
    only_tls = score_device(pump, [], hood, weak=[Weakness("tls-weak-cipher", "tcp/443")])
    assert only_tls.risk == base.risk


def test_weak_authentication_types_are_controls_finding_types() -> None:
    from medsentry.controls.knowledge import knowledge

    assert weights().weak_auth and set(weights().weak_auth) <= set(knowledge().types)


# -- properties ------------------------------------------------------------------------------

vulns_st = st.lists(
    st.builds(
        VulnInput,
        id=st.sampled_from(["A-1", "A-2", "A-3"]),
        status=st.sampled_from(["affected", "potentially_affected"]),
        cvss_vectors=st.lists(st.sampled_from(VECTORS), max_size=2).map(tuple),
        kev=st.booleans(),
        epss=st.one_of(st.none(), st.floats(0, 1)),
    ),
    max_size=3,
)
device_st = st.fixed_dictionaries(
    {
        "criticality": st.sampled_from(CRITICALITIES),
        "phi_observed": st.booleans(),
        "external_peers": st.lists(st.just("8.8.8.8"), max_size=1),
        "protocols": st.lists(st.sampled_from([*CLEARTEXT, "tls", "dicom-tls"]), max_size=3),
        "asset": st.dictionaries(st.sampled_from(CONTROLS), st.just("yes"), max_size=3),
        "roles": st.lists(st.sampled_from(["dicom-scp", "dicom-scu"]), max_size=1),
    }
)
office_st = st.integers(0, 6)


def _score(fields: dict, vulns: list[VulnInput], office: int) -> int:
    d = _pump(**fields)
    return score_device(d, vulns, Neighbourhood([d, *_office(office)])).risk


@settings(max_examples=150, deadline=None)
@given(device_st, vulns_st, office_st)
def test_breakdown_adds_up_and_bounds(fields: dict, vulns: list[VulnInput], office: int) -> None:
    d = _pump(**fields)
    r = score_device(d, vulns, Neighbourhood([d, *_office(office)]))
    lk = min(max(sum(f.points for f in r.factors if f.group == "likelihood"), 0), 100)
    im = min(max(sum(f.points for f in r.factors if f.group == "impact"), 0), 100)
    assert math.isclose(r.likelihood, lk, abs_tol=0.011) and math.isclose(
        r.impact, im, abs_tol=0.011
    )
    assert r.risk == round(math.sqrt(r.likelihood * r.impact))
    assert 0 <= r.risk <= 100
    assert r.driver in {"", *(v.id for v in vulns)}


@settings(max_examples=120, deadline=None)
@given(device_st, vulns_st, office_st, st.data())
def test_monotone_in_kev_and_epss(fields, vulns, office, data) -> None:
    if not vulns:
        return
    i = data.draw(st.integers(0, len(vulns) - 1))
    base = _score(fields, vulns, office)
    kev = list(vulns)
    kev[i] = msgspec.structs.replace(kev[i], kev=True)
    assert _score(fields, kev, office) >= base
    epss = list(vulns)
    epss[i] = msgspec.structs.replace(epss[i], epss=1.0)
    assert _score(fields, epss, office) >= base


@settings(max_examples=120, deadline=None)
@given(device_st, vulns_st, office_st)
def test_monotone_in_exposure(fields, vulns, office) -> None:
    base = _score(fields, vulns, office)
    assert _score(dict(fields, external_peers=["52.1.2.3"]), vulns, office) >= base
    assert _score(dict(fields, protocols=[*fields["protocols"], "telnet"]), vulns, office) >= base
    assert _score(fields, vulns, office + 5) >= base  # more office PCs on the subnet
    fewer_controls = dict(fields, asset={})
    assert _score(fewer_controls, vulns, office) >= base


weak_st = st.lists(
    st.builds(
        Weakness,
        type=st.sampled_from(
            ["default-credentials", "dicom-any-ae", "smbv1", "mqtt-unauthenticated"]
        ),
        subject=st.sampled_from(["tcp/22", "tcp/104", "tcp/1883"]),
    ),
    max_size=3,
)


@settings(max_examples=120, deadline=None)
@given(device_st, vulns_st, office_st, weak_st, weak_st)
def test_monotone_in_weak_authentication(fields, vulns, office, weak, more) -> None:
    d = _pump(**fields)
    hood = Neighbourhood([d, *_office(office)])
    base = score_device(d, vulns, hood, weak=weak)
    assert score_device(d, vulns, hood, weak=[*weak, *more]).risk >= base.risk
    assert base.risk >= score_device(d, vulns, hood).risk


@settings(max_examples=120, deadline=None)
@given(device_st, vulns_st, office_st)
def test_monotone_in_criticality_and_vulnerabilities(fields, vulns, office) -> None:
    scores = [_score(dict(fields, criticality=c), vulns, office) for c in reversed(CRITICALITIES)]
    assert scores == sorted(scores)  # none -> support -> patient-affecting -> life-sustaining
    base = _score(fields, vulns, office)
    assert _score(dict(fields, phi_observed=True), vulns, office) >= base
    assert _score(dict(fields, roles=["dicom-scp"]), vulns, office) >= base  # multi-patient
    worse = [*vulns, VulnInput(id="A-9", status="affected", cvss_vectors=(VECTORS[1],))]
    assert _score(fields, worse, office) >= base
    certain = [msgspec.structs.replace(v, status="affected") for v in vulns]
    assert _score(fields, certain, office) >= base


def test_weights_are_validated(tmp_path: Path) -> None:
    assert weights().likelihood["known_exploited"] == 20
    text = Path(weights().path.replace("medsentry/data/", "")).name
    assert text == "risk_weights.yaml"
    good = (
        Path(__file__).resolve().parents[2] / "src" / "medsentry" / "data" / "risk_weights.yaml"
    ).read_text()
    for broken, why in [
        (good.replace("known_exploited: 20", "known_exploited: 200"), "known_exploited"),
        (
            good.replace("life-sustaining: therapy_delivery", "life-sustaining: magic"),
            "criticality",
        ),
        (good.replace('source: "NIST SP 1800-8 §3.4', 'sourc: "x'), "segmented"),
        ("- just a list", "mapping"),
    ]:
        p = tmp_path / "w.yaml"
        p.write_text(broken)
        with pytest.raises(ConfigError, match=why):
            load_weights(p)
