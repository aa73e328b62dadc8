"""The report with every source present: an inventory (the inventory's tables), vulnerability
intelligence imported from real CISA data (KEV first), detection alerts, findings; the STIX
bundle carries the incident and the KEV vulnerability and passes the OASIS validator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.controls.engine import build_findings
from medsentry.controls.rules import Collector
from medsentry.controls.store import upsert_findings
from medsentry.events import FlowRecord
from medsentry.inventory.model import Attribute, Device
from medsentry.store import open_store

T0 = 1_760_000_000_000_000_000


def _device(ip: str, vendor: str, model: str, version: str, cat: str, crit: str) -> Device:
    return Device(
        device_id=f"ip:{ip}",
        ips=[ip],
        first_seen_ns=T0,
        last_seen_ns=T0 + 10,
        vendor=Attribute(value=vendor, confidence=0.9),
        model=Attribute(value=model, confidence=0.9),
        software_version=Attribute(value=version, confidence=0.8),
        category=Attribute(value=cat, confidence=0.9),
        criticality=crit,
        medical=True,
    )


@pytest.fixture
def full_store(tmp_path: Path, shared_data: Path) -> str:
    inv = pytest.importorskip("medsentry.inventory.store")
    dstore = pytest.importorskip("medsentry.detect.store")
    from medsentry.detect.base import Alert, EvidenceRef

    db = f"sqlite:///{tmp_path / 's.db'}"
    (csaf,) = list((shared_data / "cisa_csaf_icsma").rglob("icsma-18-058-02.json"))
    kev = shared_data / "kev" / "known_exploited_vulnerabilities.json"
    res = CliRunner().invoke(main, ["intel", "import", "--db", db, str(csaf), str(kev)])
    assert res.exit_code == 0, res.output
    devices = [
        _device("10.1.1.5", "Philips", "IntelliSpace Portal", "8.0.2", "imaging-workstation",
                "patient-affecting"),
        _device("10.1.2.7", "Acme", "Pump 1", "1.0", "infusion-pump", "life-sustaining"),
    ]  # fmt: skip
    col = Collector(None)
    col.feed(
        [
            FlowRecord(ts_ns=T0, flow_id="a", last_ns=T0 + 5, transport="tcp", ip_version=4,
                       client="10.1.9.9", server="10.1.2.7", client_port=5000, server_port=23,
                       packets_c2s=3, packets_s2c=3, app_protocol="telnet"),
            FlowRecord(ts_ns=T0, flow_id="b", last_ns=T0 + 5, transport="tcp", ip_version=4,
                       client="10.1.1.5", server="52.20.1.1", client_port=5001, server_port=443,
                       packets_c2s=3, packets_s2c=3, app_protocol="tls"),
        ]
    )  # fmt: skip
    with open_store(db) as store:
        with store.engine.begin() as conn:
            rows = [inv.device_row(d, b"{}") for d in devices]
            addrs = [dict(device_id=d.device_id, ip=d.ips[0], first_ns=T0, last_ns=T0,
                          source="arp") for d in devices]  # fmt: skip
            inv.replace_devices(conn, rows, addrs)
        upsert_findings(store, build_findings(col, devices))
        alert = Alert(
            alert_id="a1b2c3d4e5f60708",
            rule_id="dicom.unexpected-peer",
            source="rule",
            severity="high",
            device_id="ip:10.1.1.5",
            technique_id="T0886",
            technique_name="Remote Services",
            title="Unexpected DICOM peer 10.1.9.9 stored images on the workstation",
            dedup_key="k",
            first_seen_ns=T0,
            last_seen_ns=T0 + 5,
            evidence=[EvidenceRef(kind="flow", ts_ns=T0, flow_id="a")],
        )
        dstore.save(store, [alert], {})
    return db


def test_report_with_every_source(full_store: str, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["report", "--db", full_store, "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "report.json").read_bytes())
    assert all(v is None for k, v in r["availability"].items() if k != "policy")
    vulns = r["vulnerabilities"]
    assert vulns and vulns[0]["kev"] and vulns[0]["device_id"] == "ip:10.1.1.5"
    assert "CVE-2017-0143" in vulns[0]["cves"]
    assert r["summary"]["kev_devices"] == 1
    dev = {d["device_id"]: d for d in r["devices"]}
    assert dev["ip:10.1.1.5"]["kev"] and dev["ip:10.1.1.5"]["risk"] is not None
    # telnet on a life-sustaining pump: raised to critical, and the top risk
    assert r["top_risks"][0]["type"] == "telnet-service"
    assert r["top_risks"][0]["severity"] == "critical"
    assert r["alerts"]["open"] == 1
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True,
                          text=True).stdout  # fmt: skip
    flat = " ".join(text.split())
    for needle in ("CVE-2017-0143", "KEV", "Remote Services", "Philips IntelliSpace Portal",
                   "Devices by clinical criticality", "Risk score distribution"):  # fmt: skip
        assert needle in flat, needle
    assert "not available: no vulnerability intelligence" not in flat
    bundle = json.loads((out / "report.stix.json").read_text())
    kinds = {o["type"] for o in bundle["objects"]}
    assert {"identity", "incident", "indicator", "vulnerability", "infrastructure",
            "relationship"} <= kinds  # fmt: skip
    (ind,) = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert ind["pattern"] == "[ipv4-addr:value = '52.20.1.1']"
    from stix2validator import ValidationOptions, validate_file

    result = validate_file(str(out / "report.stix.json"), ValidationOptions(version="2.1"))
    assert result.is_valid


@pytest.mark.postgres
def test_report_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from medsentry.report.collect import collect, remember
    from medsentry.report.render import write_report

    col = Collector(None)
    col.feed([FlowRecord(ts_ns=T0, flow_id="a", last_ns=T0 + 5, transport="tcp", ip_version=4,
                         client="10.1.9.9", server="10.1.2.7", client_port=5000, server_port=21,
                         packets_c2s=3, packets_s2c=3, app_protocol="ftp")])  # fmt: skip
    with open_store(pg_url) as store:
        upsert_findings(store, build_findings(col, []))
        r = collect(store)
        remember(store, r)
        again = collect(store, checkpoint=False)
    assert r["summary"]["open_findings"] == 1 and r["findings"][0]["type"] == "ftp-service"
    assert again["trend"]["rows"][0]["key"] == "devices"
    w = write_report(r, tmp_path / "pg", ("html", "json"))
    assert "ftp-service" in w.paths["html"].read_text()
