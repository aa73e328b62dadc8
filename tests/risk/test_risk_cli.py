"""`medsentry risk`: devices from the inventory, matches from the intel store (CSAF advisories,
OSV records, KEV), an SBOM attached to a device model, VEX applied; ranked with breakdowns."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from medsentry.cli import main
from medsentry.inventory.model import Attribute, Device
from medsentry.inventory.store import device_row, replace_devices
from medsentry.store import open_store

DATA = Path(__file__).resolve().parents[1] / "sbom" / "data"


def _attr(v: str) -> Attribute:
    return Attribute(value=v, confidence=1.0)


def _devices() -> list[Device]:
    office = [
        Device(
            device_id=f"ip:10.1.2.{100 + i}",
            ips=[f"10.1.2.{100 + i}"],
            medical=False,
            category=_attr("it.workstation"),
        )
        for i in range(4)
    ]
    pump = Device(
        device_id="mac:02:00:00:00:00:01",
        mac="02:00:00:00:00:01",
        ips=["10.1.2.5"],
        hostname="pump-icu-3",
        vendor=_attr("BD"),
        model=_attr("Alaris 8015 PC Unit"),
        software_version=_attr("9.19"),
        category=_attr("infusion-pump"),
        criticality="life-sustaining",
        medical=True,
        protocols=["hl7-mllp"],
    )
    gateway = Device(
        device_id="mac:02:00:00:00:00:02",
        mac="02:00:00:00:00:02",
        ips=["10.9.0.7"],
        hostname="pump-gw",
        vendor=_attr("Acme Medical"),
        model=_attr("Infusion Gateway"),
        software_version=_attr("3.2"),
        category=_attr("infusion-pump.pump-server"),
        criticality="patient-affecting",
        medical=True,
        protocols=["https"],
        external_peers=["52.1.2.3"],
        roles=["hl7-sender"],
    )
    telemetry = Device(
        device_id="mac:02:00:00:00:00:03",
        mac="02:00:00:00:00:03",
        ips=["10.9.0.8"],
        hostname="xtr-4west",
        vendor=_attr("Spacelabs"),
        model=_attr("Xhibit Telemetry Receiver (XTR) 96280"),
        software_version=_attr("1.0.2"),
        category=_attr("telemetry"),
        criticality="patient-affecting",
        medical=True,
    )
    printer = Device(
        device_id="ip:10.9.0.50", ips=["10.9.0.50"], medical=False, category=_attr("it.printer")
    )
    return [pump, gateway, telemetry, printer, *office]


def _setup(db_url: str, shared_data: Path, medical_sbom: Path) -> CliRunner:
    runner = CliRunner()
    with open_store(db_url) as store, store.engine.begin() as conn:
        replace_devices(conn, [device_row(d, b"{}") for d in _devices()], [])
    csaf = shared_data / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white"
    kev = shared_data / "kev" / "known_exploited_vulnerabilities.json"
    for args in (
        ["intel", "import", str(csaf)],
        ["intel", "import", str(kev)],
        ["intel", "import", str(DATA / "osv_medical_sbom.json")],
        [
            "sbom",
            "import",
            str(medical_sbom),
            "--manufacturer",
            "Acme Medical",
            "--device-model",
            "Infusion Gateway",
            "--version",
            "3.2",
        ],
    ):
        r = runner.invoke(main, [*args, "--db", db_url])
        assert r.exit_code == 0, r.output
    return runner


def test_risk_ranks_devices_with_breakdowns(
    db_url: str, shared_data: Path, medical_sbom: Path, tmp_path: Path
) -> None:
    runner = _setup(db_url, shared_data, medical_sbom)
    r = runner.invoke(main, ["risk", "--db", db_url, "--format", "json"])
    assert r.exit_code == 0, r.output
    ranked = json.loads(r.stdout)
    assert [x["rank"] for x in ranked] == list(range(1, 9))
    assert [x["risk"] for x in ranked] == sorted((x["risk"] for x in ranked), reverse=True)
    by_id = {x["device_id"]: x for x in ranked}
    pump, gw = by_id["mac:02:00:00:00:00:01"], by_id["mac:02:00:00:00:00:02"]
    # the pump matches CISA advisories by name; the gateway through its SBOM (OSV records)
    assert pump["driver"].startswith("ICSMA-") and pump["vulnerabilities"] >= 1
    # log4net (C:H/I:H/A:H) and Newtonsoft.Json (A:H) tie on a patient-affecting device
    assert gw["driver"] in ("GHSA-2cwj-8chv-9pp9", "GHSA-5crp-9r3c-p9vr")
    assert gw["vulnerabilities"] == 3
    assert gw["vulnerability_ids"][0].startswith(gw["driver"] + " (affected")
    assert len(gw["vulnerability_ids"]) == 3
    assert ranked[0]["device_id"] in (pump["device_id"], gw["device_id"])
    assert by_id["ip:10.9.0.50"]["risk"] == 0  # a printer with nothing known and no exposure
    for x in ranked:
        names = [f["name"] for f in x["factors"]]
        assert names[:3] == ["exploitability", "known_exploited", "epss"]
        assert {
            "internet_exposure",
            "flat_network",
            "cleartext_protocols",
            "compensating_controls",
            "clinical_effect",
            "multi_patient_harm",
        } <= set(names)
    gw_f = {f["name"]: f for f in gw["factors"]}
    assert (
        gw_f["internet_exposure"]["points"] == 15
        and "52.1.2.3" in gw_f["internet_exposure"]["value"]
    )
    assert gw_f["multi_patient_harm"]["points"] == 20
    assert gw_f["exploitability"]["source"].startswith("CVSS 3.1 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/")
    # BlueKeep (CVE-2019-0708) in the real KEV catalog drives the telemetry receiver
    xtr = by_id["mac:02:00:00:00:00:03"]
    xtr_f = {f["name"]: f for f in xtr["factors"]}
    assert xtr["driver"] == "ICSMA-20-049-01"
    assert (
        xtr_f["known_exploited"]["points"] == 20
        and xtr_f["known_exploited"]["value"] == "in CISA KEV"
    )
    pump_f = {f["name"]: f for f in pump["factors"]}
    assert pump_f["flat_network"]["points"] == 10 and pump_f["cleartext_protocols"]["points"] == 10

    # VEX: the manufacturer states log4net and Newtonsoft.Json not affected -> the risk falls
    vex = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://acme.example/vex/2",
        "author": "Acme Medical PSIRT",
        "timestamp": "2025-09-01T00:00:00Z",
        "version": 2,
        "statements": [
            {
                "vulnerability": {"name": cve},
                "products": [{"@id": purl}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_present",
            }
            for cve, purl in (
                ("CVE-2018-1285", "pkg:nuget/log4net@2.0.8"),
                ("CVE-2024-21907", "pkg:nuget/Newtonsoft.Json@9.0.1"),
            )
        ],
    }
    p = tmp_path / "vex.json"
    p.write_text(json.dumps(vex))
    assert runner.invoke(main, ["vex", "import", str(p), "--db", db_url]).exit_code == 0
    one = runner.invoke(main, ["risk", "pump-gw", "--db", db_url, "--format", "json"])
    [after] = json.loads(one.stdout)
    assert after["driver"] == "GHSA-6c3j-c64m-qhgq" and after["vulnerabilities"] == 1
    assert after["risk"] < gw["risk"]

    table = runner.invoke(main, ["risk", "10.1.2.5", "--db", db_url])
    assert table.exit_code == 0, table.output
    assert "pump-icu-3" in table.stdout and "clinical_effect" in table.stdout
    assert "sqrt(likelihood" in table.stdout
    missing = runner.invoke(main, ["risk", "no-such-device", "--db", db_url])
    assert missing.exit_code == 2 and "no device" in missing.stderr


def test_open_default_credential_findings_raise_risk_until_closed(tmp_path: Path) -> None:
    """The demo hospital through `medsentry scan` (every engine): the B. Braun pump answers
    SNMP with a default community, a controls finding; its risk counts that open door, and
    closing the finding (fixed) takes it out again."""
    from medsentry.demo.hospital import build

    pcap = tmp_path / "demo.pcap"
    build(pcap, seed=0)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    runner = CliRunner()

    def run(*args: str) -> str:
        r = runner.invoke(main, [*args, "--db", url], env={"COLUMNS": "300"})
        assert r.exit_code == 0, r.output
        return r.stdout

    run("scan", str(pcap), "-q")
    pump = "mac:00:12:21:20:01:50"

    def pump_risk() -> dict:
        [one] = json.loads(run("risk", pump, "--format", "json"))
        return one

    before = pump_risk()
    weak = {f["name"]: f for f in before["factors"]}["weak_authentication"]
    assert weak["points"] == 20 and weak["value"] == "snmp-default-community (udp/161)"
    found = json.loads(run("findings", "list", "--device", pump, "--format", "json"))
    fid = next(f["finding_id"] for f in found if f["type"] == "snmp-default-community")
    run("findings", "close", fid, "--by", "biomed", "--reason", "community changed")
    after = pump_risk()
    assert {f["name"]: f for f in after["factors"]}["weak_authentication"]["points"] == 0
    assert after["likelihood"] == before["likelihood"] - 20 and after["risk"] < before["risk"]


def test_table_explains_the_ten_riskiest_unless_told(tmp_path: Path) -> None:
    """A ranking of thousands of devices printed a breakdown table for each (53,000 lines,
    28 s for 3,000 devices): the table shows those of the ten riskiest and says how to see more."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    pumps = [
        Device(
            device_id=f"mac:02:00:00:00:01:{i:02x}",
            mac=f"02:00:00:00:01:{i:02x}",
            ips=[f"10.1.3.{i + 1}"],
            hostname=f"pump-{i}",
            category=_attr("infusion-pump"),
            criticality="life-sustaining",
            medical=True,
            protocols=["hl7-mllp"],
        )
        for i in range(12)
    ]
    with open_store(url) as store, store.engine.begin() as conn:
        replace_devices(conn, [device_row(d, b"{}") for d in pumps], [])
    runner = CliRunner()
    env = {"COLUMNS": "300"}
    r = runner.invoke(main, ["risk", "--db", url], env=env)
    assert r.exit_code == 0, r.output
    titles = [ln for ln in r.stdout.splitlines() if "sqrt(likelihood" in ln]
    assert len(titles) == 10 and titles[0].strip().startswith("#1 ")
    assert "breakdowns of the 10 riskiest shown" in r.stderr
    assert r.stdout.count("pump-") >= 12  # the ranking itself lists every device
    r = runner.invoke(main, ["risk", "--db", url, "--limit", "12"], env=env)
    assert sum("sqrt(likelihood" in ln for ln in r.stdout.splitlines()) == 12
    assert "riskiest shown" not in r.stderr
    r = runner.invoke(main, ["risk", "--db", url, "--brief"], env=env)
    assert "sqrt(likelihood" not in r.stdout and "riskiest shown" not in r.stderr
