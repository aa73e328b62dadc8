"""VEX: the CycloneDX VEX examples, OpenVEX and CSAF VEX applied to matches; device-level export
to CycloneDX 1.5/1.6 and CSAF 2.0 (validated, and read back); malformed VEX documents."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.errors import InputError
from medsentry.intel.match import IntelIndex, match_components
from medsentry.intel.model import Match
from medsentry.intel.sbom import read_sbom
from medsentry.intel.sbom_model import Component, DeviceModel
from medsentry.intel.sbom_store import load_vex
from medsentry.intel.vex import parse_vex, read_vex
from medsentry.intel.vex_apply import apply_vex, component_key
from medsentry.intel.vex_export import csaf_vex, cyclonedx_vex, validate_csaf
from medsentry.store import open_store

DATA = Path(__file__).resolve().parent / "data"
DM = DeviceModel("Acme Medical", "Infusion Gateway", "3.2")
LOG4SHELL = "CVE-2021-44228"


def _vex_dir(sbom_dir: Path) -> Path:
    return sbom_dir / "cyclonedx_examples" / "VEX"


def test_every_cyclonedx_vex_example_parses(sbom_dir: Path) -> None:
    files = sorted(_vex_dir(sbom_dir).rglob("vex*.json"))
    assert len(files) == 25
    statuses: Counter[str] = Counter()
    for f in files:
        doc = read_vex(f)
        assert doc.format == "cyclonedx" and doc.statements, f
        statuses.update(s.status for s in doc.statements)
        for s in doc.statements:
            if s.status == "not_affected":  # CycloneDX justification mapped to the CISA labels
                assert s.justification in {
                    "vulnerable_code_not_present",
                    "vulnerable_code_not_in_execute_path",
                    "inline_mitigations_already_exist",
                }
    assert statuses == {"not_affected": 152, "affected": 29, "fixed": 8, "under_investigation": 8}


def _component_match(ref: str, vuln: str = LOG4SHELL) -> Match:
    return Match(
        advisory_id=vuln,
        status="affected",
        confidence=0.95,
        explanation="test",
        component=ref,
        cves=(vuln,),
    )


@pytest.mark.parametrize(
    ("product", "version", "expected"),
    [
        # CISA VEX use case 8: per-version statuses in one document (BOM-Link refs)
        ("product-ABC", "2.4", ("affected", "")),
        ("product-ABC", "2.5", ("not_affected", "vulnerable_code_not_present")),
        ("product-ABC", "3.0", ("affected", "")),  # in vers:generic/>=2.9|<=4.1
        ("product-ABC", "4.2", ("not_affected", "vulnerable_code_not_present")),
        ("product-ABC", "2.0", ("not_affected", "vulnerable_code_not_present")),  # >=1.0|<=2.3
        ("product-ABC", "9.0", ("affected", None)),  # no statement: the match stands
        ("product-JKL", "5.1", ("fixed", "")),
        ("product-JKL", "4.7", ("affected", "")),
    ],
)
def test_cisa_case_8_versions(sbom_dir: Path, product: str, version: str, expected) -> None:
    doc = read_vex(_vex_dir(sbom_dir) / "CISA-Use-Cases" / "Case-8" / "vex.json")
    comp = Component(name=product[-3:], version=version, bom_ref=product)
    [v] = apply_vex([_component_match(product)], doc.statements, components={product: comp})
    status, justification = expected
    assert v.status == status
    if justification is None:
        assert v.vex_status == ""
    else:
        assert v.justification == justification


def test_supplier_wide_statement_use_case_7(sbom_dir: Path) -> None:
    """Case 7: no product named, every product of the manufacturer is not affected."""
    doc = read_vex(_vex_dir(sbom_dir) / "Use-Cases" / "Case-7" / "vex.json")
    [s] = doc.statements
    assert s.supplier == "Acme, Inc." and s.status == "not_affected"
    vuln = "CVE-2020-25649"
    acme = Component(name="jackson-databind", version="2.10.0", supplier="Acme, Inc.", bom_ref="a")
    other = Component(name="jackson-databind", version="2.10.0", supplier="Other", bom_ref="o")
    res = apply_vex(
        [_component_match("a", vuln), _component_match("o", vuln)],
        doc.statements,
        components={"a": acme, "o": other},
    )
    assert [v.status for v in res] == ["not_affected", "affected"]


def _medical(medical_sbom: Path, osv_records):
    sbom = read_sbom(medical_sbom, DM)
    matches = match_components(IntelIndex(packages=osv_records), sbom.components)
    return sbom, matches


def test_openvex_applies_to_medical_sbom(medical_sbom: Path, osv_records) -> None:
    sbom, matches = _medical(medical_sbom, osv_records)
    assert sorted(m.advisory_id for m in matches) == [
        "GHSA-2cwj-8chv-9pp9",
        "GHSA-5crp-9r3c-p9vr",
        "GHSA-6c3j-c64m-qhgq",
    ]
    doc = read_vex(DATA / "openvex_medical.json")
    assert doc.format == "openvex" and len(doc.statements) == 3
    comps = {component_key(c): c for c in sbom.components}
    res = {v.match.advisory_id: v for v in apply_vex(matches, doc.statements, components=comps)}
    newtonsoft = res["GHSA-5crp-9r3c-p9vr"]  # statement names CVE-2024-21907 (alias of the GHSA)
    assert (newtonsoft.status, newtonsoft.justification) == (
        "not_affected",
        "vulnerable_code_not_in_execute_path",
    )
    assert "never parsed" in newtonsoft.impact_statement
    log4net = res["GHSA-2cwj-8chv-9pp9"]
    assert log4net.status == "affected" and "3.2.1" in log4net.action_statement
    jquery = res["GHSA-6c3j-c64m-qhgq"]
    assert (jquery.status, jquery.vex_status) == ("affected", "under_investigation")
    # a statement about another version of the package does not apply
    other = [m for m in matches if m.advisory_id == "GHSA-2cwj-8chv-9pp9"]
    comps2 = {
        k: (
            Component(name=c.name, version="2.0.9", purl="pkg:nuget/log4net@2.0.9")
            if c.name == "log4net"
            else c
        )
        for k, c in comps.items()
    }
    [v] = apply_vex(other, doc.statements, components=comps2)
    assert v.vex_status == ""


def _csaf_vex_from_advisory(csaf_file: Path) -> dict:
    """A real CISA advisory turned into the manufacturer's VEX: the first product is stated
    known_not_affected with a flag, the second fixed, the rest keep known_affected."""
    doc = json.loads(csaf_file.read_bytes())
    doc["document"]["category"] = "csaf_vex"
    v = doc["vulnerabilities"][0]
    ids = v["product_status"]["known_affected"]
    assert len(ids) >= 2
    v["product_status"] = {
        "known_not_affected": [ids[0]],
        "fixed": [ids[1]],
        **({"known_affected": ids[2:]} if ids[2:] else {}),
    }
    v["flags"] = [{"label": "vulnerable_code_not_in_execute_path", "product_ids": [ids[0]]}]
    doc["vulnerabilities"] = [v]
    return doc


def _advisory_with_two_products(sbom_dir: Path) -> Path:
    csaf_dir = sbom_dir.parent / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white"
    for f in sorted(csaf_dir.glob("20*/*.json")):
        d = json.loads(f.read_bytes())
        vs = d.get("vulnerabilities") or []
        if (
            vs
            and vs[0].get("cve")
            and len(vs[0].get("product_status", {}).get("known_affected", [])) >= 3
        ):
            return f
    pytest.skip("no advisory with three affected products")


def test_csaf_vex_statements(sbom_dir: Path, tmp_path: Path) -> None:
    src = _advisory_with_two_products(sbom_dir)
    doc = _csaf_vex_from_advisory(src)
    vex = parse_vex(json.dumps(doc).encode(), "vendor-vex.json")
    assert vex.format == "csaf"
    by_status = Counter(s.status for s in vex.statements)
    ka = len(json.loads(src.read_bytes())["vulnerabilities"][0]["product_status"]["known_affected"])
    assert by_status == {"not_affected": 1, "fixed": 1, **({"affected": ka - 2} if ka > 2 else {})}
    [na] = [s for s in vex.statements if s.status == "not_affected"]
    assert na.justification == "vulnerable_code_not_in_execute_path"
    assert na.vulnerability == doc["vulnerabilities"][0]["cve"] and na.product_name
    # CSAF VEX profile: known_not_affected without flag or impact threat is refused
    del doc["vulnerabilities"][0]["flags"]
    with pytest.raises(
        InputError, match=r"vendor-vex.json: CSAF field \$.vulnerabilities\[0\].flags"
    ):
        parse_vex(json.dumps(doc).encode(), "vendor-vex.json")


@pytest.mark.parametrize("spec", ["1.5", "1.6"])
def test_cyclonedx_export_validates_and_reads_back(
    medical_sbom: Path, osv_records, spec: str
) -> None:
    sbom, matches = _medical(medical_sbom, osv_records)
    comps = {component_key(c): c for c in sbom.components}
    vexed = apply_vex(matches, read_vex(DATA / "openvex_medical.json").statements, components=comps)
    doc = cyclonedx_vex(DM, sbom.components, vexed, spec=spec)  # validated inside
    assert doc["specVersion"] == spec and len(doc["components"]) == 65
    states = {v["id"]: v["analysis"] for v in doc["vulnerabilities"]}
    assert states["GHSA-5crp-9r3c-p9vr"]["state"] == "not_affected"
    assert states["GHSA-5crp-9r3c-p9vr"]["justification"] == "code_not_reachable"
    assert states["GHSA-2cwj-8chv-9pp9"]["state"] == "exploitable"
    assert states["GHSA-6c3j-c64m-qhgq"]["state"] == "in_triage"
    rating = doc["vulnerabilities"][0]["ratings"][0]
    assert rating["method"] == "CVSSv31" and rating["score"] == 7.5
    back = parse_vex(json.dumps(doc).encode(), "export.cdx.json")
    got = {s.vulnerability: (s.status, s.justification) for s in back.statements}
    assert got == {
        "GHSA-5crp-9r3c-p9vr": ("not_affected", "vulnerable_code_not_in_execute_path"),
        "GHSA-2cwj-8chv-9pp9": ("affected", ""),
        "GHSA-6c3j-c64m-qhgq": ("under_investigation", ""),
    }
    # statements read back carry the components' purls, so they apply to the same matches
    again = apply_vex(matches, back.statements, components=comps)
    assert sorted(v.status for v in again) == ["affected", "affected", "not_affected"]


def test_csaf_export_validates_and_reads_back(medical_sbom: Path, osv_records) -> None:
    sbom, matches = _medical(medical_sbom, osv_records)
    comps = {component_key(c): c for c in sbom.components}
    vexed = apply_vex(matches, read_vex(DATA / "openvex_medical.json").statements, components=comps)
    doc = csaf_vex(
        DM,
        sbom.components,
        vexed,
        publisher="Acme Medical PSIRT",
        namespace="https://acme.example",
        publisher_category="vendor",
    )
    validate_csaf(doc)  # OASIS CSAF 2.0 schema + VEX profile rules
    assert doc["document"]["category"] == "csaf_vex"
    assert len(doc["product_tree"]["relationships"]) == 65
    back = parse_vex(json.dumps(doc).encode(), "export.csaf.json")
    got = {(s.vulnerability, s.status, s.justification) for s in back.statements}
    assert got == {
        ("CVE-2024-21907", "not_affected", "vulnerable_code_not_in_execute_path"),
        ("CVE-2018-1285", "affected", ""),
        ("CVE-2019-11358", "under_investigation", ""),
    }
    assert {s.purl for s in back.statements} == {
        "pkg:nuget/Newtonsoft.Json@9.0.1",
        "pkg:nuget/log4net@2.0.8",
        "pkg:nuget/jQuery@3.1.1",
    }
    # the validator catches what the schema forbids, naming the field
    bad = json.loads(json.dumps(doc))
    bad["vulnerabilities"][0]["flags"][0]["label"] = "not_a_label"
    with pytest.raises(InputError, match=r"flags\]?\[0\]\.label|flags\[0\]\.label"):
        validate_csaf(bad)
    bad = json.loads(json.dumps(doc))
    for v in bad["vulnerabilities"]:
        v.pop("remediations", None)
    with pytest.raises(InputError, match="remediations"):
        validate_csaf(bad)


def _bad_openvex(tmp_path: Path) -> list[tuple[Path, str]]:
    good = json.loads((DATA / "openvex_medical.json").read_text())
    out = []
    d = json.loads(json.dumps(good))
    del d["statements"][0]["justification"]
    del d["statements"][0]["impact_statement"]
    out.append((d, "$.statements[0].justification"))
    d = json.loads(json.dumps(good))
    d["statements"][1]["status"] = "maybe"
    out.append((d, "$.statements[1].status"))
    d = json.loads(json.dumps(good))
    del d["statements"][2]["vulnerability"]
    out.append((d, "$.statements[2].vulnerability"))
    d = json.loads(json.dumps(good))
    d["statements"][0]["justification"] = "code_not_present"  # a CycloneDX word, not OpenVEX
    out.append((d, "$.statements[0].justification"))
    files = []
    for i, (doc, field) in enumerate(out):
        p = tmp_path / f"bad{i}.openvex.json"
        p.write_text(json.dumps(doc))
        files.append((p, field))
    p = tmp_path / "cdx-bad.vex.json"
    cdx = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.4",
        "version": 1,
        "vulnerabilities": [{"id": LOG4SHELL, "analysis": {"state": "perhaps"}}],
    }
    p.write_text(json.dumps(cdx))
    files.append((p, "$.vulnerabilities[0].analysis.state"))
    return files


def test_malformed_vex_exit_2_nothing_lost(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["vex", "import", str(DATA / "openvex_medical.json"), "--db", db_url])
    assert ok.exit_code == 0, ok.output
    for path, field in _bad_openvex(tmp_path):
        r = runner.invoke(
            main, ["vex", "import", str(DATA / "openvex_medical.json"), str(path), "--db", db_url]
        )
        assert r.exit_code == 2, r.output
        [line] = r.stderr.strip().splitlines()
        assert str(path) in line and field in line, line
    with open_store(db_url) as store:
        assert len(load_vex(store)) == 3
    again = runner.invoke(
        main,
        ["vex", "import", str(DATA / "openvex_medical.json"), "--db", db_url, "--format", "json"],
    )
    assert json.loads(again.stdout)[0]["added"] == 0  # content-keyed: stored once


def test_vendor_csaf_vex_applies_to_an_inventory_device(sbom_dir: Path) -> None:
    """A hospital's monitor matched (by name) to a real CISA advisory; Philips' VEX for the same
    products (made from the advisory) states the MX400-MX850 line not affected by one CVE."""
    from medsentry.intel.csaf import read_csaf
    from medsentry.intel.match import match_devices
    from medsentry.inventory.model import Attribute, Device

    csaf = sbom_dir.parent / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white" / "2020"
    src = csaf / "icsma-20-254-01.json"
    index = IntelIndex(advisories=[read_csaf(src)])
    monitor = Device(
        device_id="mac:02:00:00:00:00:09",
        vendor=Attribute(value="Philips Healthcare", confidence=1.0),
        model=Attribute(value="IntelliVue MX450", confidence=1.0),
        software_version=Attribute(value="M.00", confidence=1.0),
    )
    [m] = match_devices(index, [monitor])
    assert m.advisory_id == "ICSMA-20-254-01" and m.status == "affected"
    doc = json.loads(src.read_bytes())
    doc["document"]["category"] = "csaf_vex"
    v = doc["vulnerabilities"][0]
    cve = v["cve"]
    v["product_status"] = {"known_not_affected": ["CSAFPID-0006"]}  # MX400-MX850 <= N
    v["flags"] = [{"label": "inline_mitigations_already_exist", "product_ids": ["CSAFPID-0006"]}]
    doc["vulnerabilities"] = [v]
    vex = parse_vex(json.dumps(doc).encode(), "philips-vex.json")
    [s] = vex.statements
    assert (s.supplier, s.product_name, s.product_version) == (
        "Philips",
        "IntelliVue patient monitor MX400-MX850",
        "<=N",
    )
    dm = DeviceModel("Philips Healthcare", "IntelliVue MX450", "M.00")
    one_cve = Match(**{**{f: getattr(m, f) for f in m.__struct_fields__}, "cves": (cve,)})
    [res] = apply_vex([one_cve], vex.statements, devices={monitor.device_id: dm})
    assert (res.status, res.justification) == ("not_affected", "inline_mitigations_already_exist")
    # the same statement does not reach another product of the family, nor a later version
    for other in (
        DeviceModel("Philips", "IntelliVue MP70", "M.00"),
        DeviceModel("Philips", "IntelliVue MX450", "P.01"),
        DeviceModel("GE Healthcare", "CARESCAPE B450", "2.0"),
    ):
        [res] = apply_vex([one_cve], vex.statements, devices={monitor.device_id: other})
        assert res.vex_status == "", other
