"""`medsentry vex export`: a device model's VEX from the store (a real CISA advisory naming the
device, OSV records for its SBOM components, the manufacturer's OpenVEX), in both formats."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from medsentry.cli import main
from medsentry.intel.sbom_cyclonedx import json_validator
from medsentry.intel.vex import read_vex
from medsentry.intel.vex_export import validate_csaf

DATA = Path(__file__).resolve().parent / "data"
KEY = "Philips/IntelliVue MX450/M.00"


def test_vex_export_both_formats(
    db_url: str, shared_data: Path, medical_sbom: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    advisory = (
        shared_data
        / "cisa_csaf_icsma"
        / "csaf_files"
        / "OT"
        / "white"
        / "2020"
        / "icsma-20-254-01.json"
    )
    for args in (
        ["intel", "import", str(advisory)],
        ["intel", "import", str(DATA / "osv_medical_sbom.json")],
        [
            "sbom",
            "import",
            str(medical_sbom),
            "--device-model",
            "Philips/IntelliVue MX450",
            "--version",
            "M.00",
        ],
        ["vex", "import", str(DATA / "openvex_medical.json")],
    ):
        r = runner.invoke(main, [*args, "--db", db_url])
        assert r.exit_code == 0, r.output

    out = tmp_path / "vex.cdx.json"
    r = runner.invoke(main, ["vex", "export", KEY, "--db", db_url, "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert next(json_validator("1.6").iter_errors(doc), None) is None
    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    icsma = vulns["ICSMA-20-254-01"]  # the advisory names the device itself
    assert icsma["affects"] == [{"ref": "device"}] and icsma["analysis"]["state"] == "in_triage"
    assert {ref["id"] for ref in icsma["references"]} >= {"CVE-2020-16214", "CVE-2020-16212"}
    assert vulns["GHSA-5crp-9r3c-p9vr"]["analysis"]["state"] == "not_affected"
    assert doc["metadata"]["component"]["manufacturer"] == {"name": "Philips"}

    r = runner.invoke(
        main,
        [
            "vex",
            "export",
            KEY,
            "--db",
            db_url,
            "--format",
            "csaf",
            "--publisher",
            "Philips PSIRT",
            "--namespace",
            "https://www.philips.com",
            "--publisher-category",
            "vendor",
        ],
    )
    assert r.exit_code == 0, r.output
    csaf = json.loads(r.stdout)
    validate_csaf(csaf)
    assert csaf["document"]["publisher"]["category"] == "vendor"
    path = tmp_path / "vex.csaf.json"
    path.write_text(r.stdout)
    back = read_vex(path)
    by_id = {s.vulnerability: s for s in back.statements}
    assert by_id["CVE-2024-21907"].status == "not_affected"
    assert by_id["CVE-2018-1285"].status == "affected"
    device_stmt = by_id["ICSMA-20-254-01"]  # the device itself, not yet assessed
    assert device_stmt.status == "under_investigation"
    assert (device_stmt.supplier, device_stmt.product_name, device_stmt.product_version) == (
        "Philips",
        "IntelliVue MX450",
        "M.00",
    )

    missing = runner.invoke(main, ["vex", "export", "Nobody/Nothing/1", "--db", db_url])
    assert missing.exit_code == 2 and "no SBOM" in missing.stderr
