"""KEV, EPSS, OSV and NVD parsing, and component matching with each ecosystem's versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsentry.errors import InputError
from medsentry.intel.epss import parse_epss
from medsentry.intel.kev import parse_kev
from medsentry.intel.match import IntelIndex, match_components
from medsentry.intel.model import AFFECTED, FIXED, NOT_AFFECTED, POTENTIAL, Component
from medsentry.intel.nvd import parse_nvd
from medsentry.intel.osv import osv_records, parse_osv

DATA = Path(__file__).resolve().parent / "data"


def test_real_kev_catalog(kev_file: Path) -> None:
    version, entries = parse_kev(json.loads(kev_file.read_bytes()), str(kev_file))
    assert version == "2025.08.25" and len(entries) == 1404
    log4shell = next(e for e in entries if e.cve == "CVE-2021-44228")
    assert log4shell.vendor == "Apache" and log4shell.ransomware == "Known"


def test_kev_malformed_entry_named() -> None:
    doc = {"catalogVersion": "x", "vulnerabilities": [{"cveID": "CVE-2021-44228"}]}
    with pytest.raises(
        InputError, match=r"kev.json: KEV field \$.vulnerabilities\[0\].vendorProject"
    ):
        parse_kev(doc, "kev.json")


def test_epss_first_format() -> None:
    meta, scores = parse_epss((DATA / "epss_sample.csv").read_bytes(), "epss.csv")
    assert meta == {"model_version": "v2023.03.01", "score_date": "2024-03-15T00:00:00+0000"}
    assert len(scores) == 10 and scores[3].cve == "CVE-2021-44228" and scores[3].epss > 0.9


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b"cve,score\nCVE-2021-1,0.1\n", "line 1"),
        (b"cve,epss,percentile\nCVE-2021-44228,high,0.9\n", "line 2, column epss"),
        (b"cve,epss,percentile\nCVE-2021-44228,1.5,0.9\n", "line 2: epss/percentile outside"),
        (b"cve,epss,percentile\nXSS,0.1,0.9\n", "line 2, column cve"),
    ],
)
def test_epss_malformed(text: bytes, where: str) -> None:
    with pytest.raises(InputError, match=where):
        parse_epss(text, "bad.csv")


@pytest.fixture(scope="module")
def osv_vulns():
    doc = json.loads((DATA / "osv_sample.json").read_bytes())
    return [parse_osv(d, "osv.json", f"$[{i}]") for i, d in enumerate(osv_records(doc) or [])]


@pytest.fixture(scope="module")
def nvd_vulns():
    return parse_nvd(json.loads((DATA / "nvd_sample.json").read_bytes()), "nvd.json")


@pytest.fixture(scope="module")
def index(osv_vulns, nvd_vulns) -> IntelIndex:
    return IntelIndex(packages=[*osv_vulns, *nvd_vulns])


def test_osv_normalized(osv_vulns) -> None:
    log4j = osv_vulns[0]
    assert log4j.cves == ("CVE-2021-44228",) and log4j.scores[0].base_score == 10.0
    assert log4j.affected[0].name == "org.apache.logging.log4j/log4j-core"
    deb = osv_vulns[2].affected[0]
    assert (deb.scheme, deb.name) == ("deb", "debian/openssl")
    assert osv_vulns[3].affected[0].ranges[0].type == "GIT"


def test_nvd_cpe_configurations(nvd_vulns) -> None:
    log4j, baxter, kernel = nvd_vulns
    assert [a.cpe_product for a in log4j.affected] == ["log4j"] * 4
    assert log4j.affected[0].ranges[0].start_including == "2.0.1"
    # AND configuration: the firmware is vulnerable only on the platform; the platform itself
    # (vulnerable: false) is not a target
    assert [a.cpe_product for a in baxter.affected] == ["prismaflex_firmware"]
    assert baxter.affected[0].conditional
    assert kernel.cwes == ("CWE-770",)


def _status(index: IntelIndex, comp: Component, vid: str) -> str | None:
    found = {m.advisory_id: m for m in match_components(index, [comp], include_resolved=True)}
    return found[vid].status if vid in found else None


@pytest.mark.parametrize(
    ("comp", "vid", "status"),
    [
        # Maven ordering: 2.0-beta9 < 2.0 < 2.12.1 < 2.12.2
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"),
            "GHSA-jfh8-c2jp-5v3q",
            AFFECTED,
        ),
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.12.1"),
            "GHSA-jfh8-c2jp-5v3q",
            AFFECTED,
        ),
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.12.2"),
            "GHSA-jfh8-c2jp-5v3q",
            FIXED,
        ),
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.17.1"),
            "GHSA-jfh8-c2jp-5v3q",
            FIXED,
        ),
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j-core@2.0-beta8"),
            "GHSA-jfh8-c2jp-5v3q",
            NOT_AFFECTED,
        ),
        # PEP 440: 1.26.17 fixed, 1.26.9 < 1.26.17, 2.0.0rc1 < 2.0.0
        (Component(purl="pkg:pypi/urllib3@1.26.9"), "GHSA-v845-jxx5-vc9f", AFFECTED),
        (Component(purl="pkg:pypi/URLLib3@1.26.17"), "GHSA-v845-jxx5-vc9f", FIXED),
        (Component(purl="pkg:pypi/urllib3@2.0.5"), "GHSA-v845-jxx5-vc9f", AFFECTED),
        # Debian epoch/revision ordering
        (Component(purl="pkg:deb/debian/openssl@1.1.1k-1"), "DSA-4963-1", AFFECTED),
        (Component(purl="pkg:deb/debian/openssl@1.1.1k-1+deb11u1"), "DSA-4963-1", FIXED),
        # npm SEMVER
        (Component(purl="pkg:npm/lodash@4.17.15"), "GHSA-p6mc-m468-83gw", AFFECTED),
        (Component(purl="pkg:npm/lodash@4.17.21"), "GHSA-p6mc-m468-83gw", FIXED),
        # GIT range: an enumerated version decides; any other cannot be placed on the commits
        (Component(name="dcmtk", version="DCMTK-3.6.6"), "OSV-2021-1234", POTENTIAL),
        (Component(name="dcmtk", version="3.6.8"), "OSV-2021-1234", POTENTIAL),
        # NVD CPE bounds: versionStartIncluding 2.13.0, versionEndExcluding 2.15.0
        (Component(cpe="cpe:2.3:a:apache:log4j:2.14.0:*:*:*:*:*:*:*"), "CVE-2021-44228", AFFECTED),
        (Component(cpe="cpe:2.3:a:apache:log4j:2.15.0:*:*:*:*:*:*:*"), "CVE-2021-44228", FIXED),
        (Component(cpe="cpe:2.3:a:apache:log4j:2.0:beta9:*:*:*:*:*:*"), "CVE-2021-44228", AFFECTED),
        # a purl that NVD knows by CPE product: found by name, vendor from the namespace
        (
            Component(purl="pkg:maven/org.apache.logging.log4j/log4j@2.14.0"),
            "CVE-2021-44228",
            AFFECTED,
        ),
        # AND configuration: never asserted alone
        (
            Component(cpe="cpe:2.3:o:baxter:prismaflex_firmware:8.0:*:*:*:*:*:*:*"),
            "CVE-2020-12039",
            POTENTIAL,
        ),
        (
            Component(cpe="cpe:2.3:o:linux:linux_kernel:4.19.51:*:*:*:*:*:*:*"),
            "CVE-2019-11479",
            AFFECTED,
        ),
        (
            Component(cpe="cpe:2.3:o:linux:linux_kernel:4.19.52:*:*:*:*:*:*:*"),
            "CVE-2019-11479",
            FIXED,
        ),
        # name only: never more than potentially affected
        (Component(name="linux_kernel", version="5.0"), "CVE-2019-11479", POTENTIAL),
        # no version: potentially affected
        (Component(purl="pkg:npm/lodash"), "GHSA-p6mc-m468-83gw", POTENTIAL),
    ],
)
def test_component_versions(index: IntelIndex, comp: Component, vid: str, status: str) -> None:
    assert _status(index, comp, vid) == status


def test_component_match_fields(index: IntelIndex) -> None:
    [m] = match_components(
        index, [{"bom_ref": "c-7", "purl": "pkg:npm/lodash@4.17.15", "name": "lodash"}]
    )
    assert (m.component, m.source, m.cves) == ("c-7", "osv", ("CVE-2020-8203",))
    assert m.cvss_vectors and m.confidence == 0.95 and "4.17.15" in m.explanation
    assert match_components(index, [Component(purl="pkg:npm/left-pad@1.0.0")]) == []


def test_osv_malformed_named() -> None:
    bad = {
        "id": "X-1",
        "modified": "2024",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "a"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0", "fixed": "1"}]}],
            }
        ],
    }
    with pytest.raises(InputError, match=r"o.json: OSV field \$.affected\[0\].ranges\[0\].events"):
        parse_osv(bad, "o.json")


def test_nvd_malformed_named() -> None:
    doc = json.loads((DATA / "nvd_sample.json").read_bytes())
    doc["vulnerabilities"][2]["cve"]["configurations"][0]["nodes"][0]["cpeMatch"][1]["criteria"] = (
        "linux kernel"
    )
    with pytest.raises(InputError, match=r"configurations\[0\].nodes\[0\].cpeMatch\[1\].criteria"):
        parse_nvd(doc, "n.json")


def test_real_medical_device_sbom_components(shared_data: Path) -> None:
    """The SBOM engineer's parser gives the components; NVD CPE criteria match them."""
    sbom_mod = pytest.importorskip("medsentry.intel.sbom")
    from medsentry.intel.sbom_model import DeviceModel

    path = shared_data / "sbom/medical_device_case_study/sboms/case-study/extended.sbom.json"
    if not path.is_file():
        pytest.skip(f"case-study SBOM not found at {path}")
    sbom = sbom_mod.read_sbom(path, DeviceModel("Acme", "Monitor", "1.0"))
    index = IntelIndex(
        packages=parse_nvd(json.loads((DATA / "nvd_sbom_sample.json").read_bytes()), "nvd.json")
    )
    found = {(m.component, m.advisory_id): m for m in match_components(index, sbom.components)}
    refs = {c.name: c.bom_ref or c.purl for c in sbom.components}
    # wolfSSL 4.8.1: same CPE vendor:product, 4.8.1 < 5.2.0
    m = found[(refs["WolfSSL"], "CVE-2022-25638")]
    assert (m.status, m.confidence) == (AFFECTED, 0.95)
    # log4net: the SBOM's CPE vendor differs from NVD's; name + supplier "The Apache Software
    # Foundation" identify it
    m = found[(refs["log4net"], "CVE-2018-1285")]
    assert (m.status, m.confidence) == (AFFECTED, 0.8)
    assert found[(refs["jQuery"], "CVE-2020-11022")].status == AFFECTED
    # Newtonsoft.Json: name only (supplier is the author's name): shown, not asserted
    m = found[(refs["Newtonsoft.Json"], "CVE-2024-21907")]
    assert (m.status, m.confidence) == (POTENTIAL, 0.6)
    assert len(found) == 4


def _vendor_csaf() -> bytes:
    """A manufacturer's CSAF 2.0 advisory naming a component by purl with a vers range."""
    branch = {
        "category": "vendor",
        "name": "Acme Medical",
        "branches": [
            {
                "category": "product_name",
                "name": "libdicomx",
                "branches": [
                    {
                        "category": "product_version_range",
                        "name": "vers:pypi/>=1.0|<1.4",
                        "product": {
                            "product_id": "P1",
                            "name": "libdicomx >=1.0 <1.4",
                            "product_identification_helper": {"purl": "pkg:pypi/libdicomx"},
                        },
                    },
                    {
                        "category": "product_version",
                        "name": "1.4",
                        "product": {
                            "product_id": "P2",
                            "name": "libdicomx 1.4",
                            "product_identification_helper": {"purl": "pkg:pypi/libdicomx@1.4"},
                        },
                    },
                ],
            }
        ],
    }
    doc = {
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "publisher": {
                "category": "vendor",
                "name": "Acme Medical",
                "namespace": "https://acme.example",
            },
            "title": "libdicomx heap overflow",
            "tracking": {
                "id": "ACME-2024-001",
                "status": "final",
                "version": "1",
                "initial_release_date": "2024-01-01T00:00:00Z",
                "current_release_date": "2024-01-01T00:00:00Z",
                "revision_history": [
                    {"date": "2024-01-01T00:00:00Z", "number": "1", "summary": "initial"}
                ],
            },
        },
        "product_tree": {"branches": [branch]},
        "vulnerabilities": [
            {
                "cve": "CVE-2024-99999",
                "product_status": {"known_affected": ["P1"], "fixed": ["P2"]},
                "scores": [
                    {
                        "products": ["P1"],
                        "cvss_v3": {
                            "version": "3.1",
                            "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                            "baseScore": 9.8,
                            "baseSeverity": "CRITICAL",
                        },
                    }
                ],
                "remediations": [
                    {"category": "vendor_fix", "details": "Update to 1.4", "product_ids": ["P1"]}
                ],
            }
        ],
    }
    return json.dumps(doc).encode()


def test_manufacturer_csaf_purl_with_vers_range() -> None:
    from medsentry.intel.csaf import parse_csaf

    adv = parse_csaf(_vendor_csaf(), "acme.json")
    assert adv.product("P1").version_range == "vers:pypi/>=1.0|<1.4"
    index = IntelIndex(advisories=[adv])
    assert _status(index, Component(purl="pkg:pypi/libdicomx@1.3.2"), "ACME-2024-001") == AFFECTED
    # PEP 440 through univers: 1.4rc1 comes before 1.4
    assert _status(index, Component(purl="pkg:pypi/libdicomx@1.4rc1"), "ACME-2024-001") == AFFECTED
    assert _status(index, Component(purl="pkg:pypi/libdicomx@1.4"), "ACME-2024-001") in (
        NOT_AFFECTED,
        None,
    )
    [m] = match_components(index, [Component(purl="pkg:pypi/libdicomx@1.2")])
    assert m.source == "csaf" and m.cves == ("CVE-2024-99999",) and m.max_cvss == 9.8
