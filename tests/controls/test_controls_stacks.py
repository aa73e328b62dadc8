"""Every finding type from captures of real protocol stacks (see ctl_stacks.py), through the
real `medsentry scan` and `medsentry findings` commands; the lifecycle; no PHI stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main

# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("test_controls_stacks"),
]
NET = "127.0.8"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory):
    import ctl_stacks

    tmp = tmp_path_factory.mktemp("stacks")
    pcap, ran = ctl_stacks.build(tmp)
    db = f"sqlite:///{tmp / 'store.db'}"
    home = tmp / "home"
    home.mkdir()
    runner = CliRunner(env={"MEDSENTRY_HOME": str(home)})
    res = runner.invoke(main, ["scan", "--db", db, "--engines", "controls", "-q", str(pcap)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["findings", "--db", db, "--status", "all", "--format", "json"])
    assert res.exit_code == 0, res.output
    return {"db": db, "home": home, "runner": runner, "ran": ran, "tmp": tmp, "pcap": pcap,
            "findings": json.loads(res.output)}  # fmt: skip


def _of(stacks, type_: str, device: str | None = None) -> list[dict]:
    return [
        f
        for f in stacks["findings"]
        if f["type"] == type_ and (device is None or f["device_id"] == device)
    ]


@pytest.mark.parametrize(
    ("type_", "device", "detail_has"),
    [
        ("telnet-service", f"ip:{NET}.1", "telnet service on tcp/23"),
        ("cleartext-credentials", f"ip:{NET}.1", "telnet login"),
        ("default-credentials", f"ip:{NET}.1", "'root'"),
        ("ftp-service", f"ip:{NET}.2", "ftp service"),
        ("cleartext-credentials", f"ip:{NET}.2", "ftp user-pass"),
        ("default-credentials", f"ip:{NET}.2", "ftp"),
        ("snmp-v1v2c", f"ip:{NET}.3", "community"),
        ("snmp-default-community", f"ip:{NET}.3", "'public'"),
        ("snmp-v3-noauth", f"ip:{NET}.3", "response without authentication (noAuthNoPriv)"),
        ("snmp-v3-nopriv", f"ip:{NET}.3", "response authenticated but not encrypted"),
        ("eol-os", f"ip:{NET}.3", "Windows 2000"),  # from the agent's sysDescr
        ("cleartext-medical-protocol", f"ip:{NET}.4", "DICOM without TLS"),
        ("phi-cleartext", f"ip:{NET}.4", "patient attributes"),
        ("dicom-any-ae", f"ip:{NET}.4", "'STORESCU'"),
        ("tls-legacy-version", f"ip:{NET}.5", "TLS 1.0"),
        ("tls-weak-cipher", f"ip:{NET}.5", "NULL"),
        ("tls-cert-expired", f"ip:{NET}.5", "expired"),
        ("tls-cert-self-signed", f"ip:{NET}.5", "device.example"),
        ("tls-cert-weak-key", f"ip:{NET}.5", "1024 bits"),
        ("tls-cert-name-mismatch", f"ip:{NET}.5", "pump.example"),
        ("phi-cleartext", f"ip:{NET}.6", "PID"),
        ("cleartext-medical-protocol", f"ip:{NET}.6", "MLLP without TLS"),
        ("http-basic-cleartext", f"ip:{NET}.8", "Basic"),
        ("default-credentials", f"ip:{NET}.8", "'admin'"),
        ("phi-cleartext", f"ip:{NET}.8", "FHIR"),
        ("phi-cleartext", f"ip:{NET}.12", "application/dicom"),
        ("eol-os", f"ip:{NET}.8", "Windows Server 2003"),
        ("smbv1", f"ip:{NET}.9", "SMB1"),
        ("tftp-service", f"ip:{NET}.10", "tftp service on udp/69"),
    ],
)
def test_finding_from_real_stack(stacks, type_: str, device: str, detail_has: str) -> None:
    got = _of(stacks, type_, device)
    assert got, (
        f"no {type_} on {device}; have {[(f['type'], f['device_id']) for f in stacks['findings']]}"
    )
    f = got[0]
    assert detail_has in f["detail"]
    assert f["status"] == "open" and f["evidence_count"] >= 1
    ev = f["evidence"][0]
    assert ev["ts_ns"] > 0 and ev["kind"]
    assert f["remediation"] and all(f["controls"].values())


def test_mqtt_anonymous_broker(stacks) -> None:
    if not stacks["ran"]["mqtt"]:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (Mosquitto)")
    (f,) = _of(stacks, "mqtt-unauthenticated", "ip:127.0.0.1")
    assert f["subject"] == "tcp/1883" and f"ip:{NET}.7" in f["peers"]


def test_dicom_tls_is_not_cleartext(stacks) -> None:
    if not stacks["ran"]["dicom_tls"]:
        pytest.skip("port 2762 is taken")
    on_tls = [f for f in stacks["findings"] if f["device_id"] == f"ip:{NET}.11"]
    assert not [f for f in on_tls if f["type"] in ("phi-cleartext", "cleartext-medical-protocol")]
    assert not [f for f in on_tls if f["type"] in ("dicom-any-ae", "tls-legacy-version")]


def test_no_false_positives_on_clean_services(stacks) -> None:
    # the FTP server is not a TLS or DICOM service; TFTP transfer ports are not services
    assert not [
        f
        for f in stacks["findings"]
        if f["type"] == "tftp-service" and "udp/69" not in f["subject"]
    ]
    assert not _of(stacks, "dicom-any-ae", f"ip:{NET}.2")
    assert not _of(stacks, "snmp-default-community", f"ip:{NET}.2")


def test_no_phi_in_store_or_ledger(stacks) -> None:
    from hl7_build import PHI

    blob = Path(stacks["db"].removeprefix("sqlite:///")).read_bytes()
    ledger = b"".join(p.read_bytes() for p in stacks["home"].rglob("*") if p.is_file())
    for value in (*PHI, "Quixote", "Zebediah", "CompressedSamples", "pump-secret"):
        assert value.encode() not in blob, value
        assert value.encode() not in ledger, value


def test_findings_recorded_in_ledger(stacks) -> None:
    res = stacks["runner"].invoke(
        main, ["audit", "log", "--kind", "finding", "--limit", "500", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    opened = [e for e in json.loads(res.output) if e["kind"] == "finding.opened"]
    assert {e["data"]["finding_id"] for e in opened} >= {
        f["finding_id"] for f in stacks["findings"]
    }


def test_rescan_is_idempotent_and_close_lifecycle(stacks) -> None:
    runner, db = stacks["runner"], stacks["db"]
    target = _of(stacks, "telnet-service")[0]
    why = "telnet disabled on the gateway"
    res = runner.invoke(main, ["findings", "close", target["finding_id"][:10], "--by", "alice",
                               "--reason", why, "--db", db])  # fmt: skip
    assert res.exit_code == 0, res.output
    again = runner.invoke(main, ["findings", "close", target["finding_id"], "--by", "alice",
                                 "--reason", "x", "--db", db])  # fmt: skip
    assert again.exit_code == 2 and "already closed" in again.output
    # the same capture again: no newer evidence, it stays closed and nothing is duplicated
    res = runner.invoke(
        main, ["scan", "--db", db, "--engines", "controls", "-q", str(stacks["pcap"])]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["findings", "--db", db, "--status", "all", "--format", "json"])
    rows = json.loads(res.output)
    assert len(rows) == len(stacks["findings"])
    (t,) = [r for r in rows if r["finding_id"] == target["finding_id"]]
    assert t["status"] == "closed" and t["closed_by"] == "alice"
    assert t["evidence_count"] == target["evidence_count"]
    res = runner.invoke(main, ["findings", "show", target["finding_id"][:8], "--db", db,
                               "--format", "json"])  # fmt: skip
    shown = json.loads(res.output)
    assert [h["action"] for h in shown["history"]] == ["opened", "closed"]
    assert shown["history"][1]["actor"] == "alice" and shown["history"][1]["reason"] == why
    res = runner.invoke(main, ["audit", "log", "--kind", "finding.closed", "--format", "json"])
    (entry,) = json.loads(res.output)
    assert entry["actor"] == "alice" and entry["data"]["finding_id"] == target["finding_id"]
    # filters
    res = runner.invoke(main, ["findings", "--db", db, "--type", "smbv1", "--format", "json"])
    assert [r["type"] for r in json.loads(res.output)] == ["smbv1"]
    res = runner.invoke(
        main, ["findings", "--db", db, "--severity", "critical", "--format", "json"]
    )
    assert {r["severity"] for r in json.loads(res.output)} == {"critical"}
    res = runner.invoke(main, ["findings", "--db", db, "--type", "nonsense"])
    assert res.exit_code == 2 and "unknown finding type" in res.output


def _pdf_pages(pdf: Path, tmp: Path) -> list[Path]:
    import shutil
    import subprocess

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp / "page")], check=True)
    return sorted(tmp.glob("page-*.png"))


def test_report_from_the_real_stacks(stacks) -> None:
    import subprocess

    from PIL import Image, ImageStat

    runner, db, tmp = stacks["runner"], stacks["db"], stacks["tmp"]
    out = tmp / "report"
    res = runner.invoke(main, ["report", "--db", db, "--out", str(out)])
    assert res.exit_code == 0, res.output
    pdf = out / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    pages = _pdf_pages(pdf, tmp)
    assert 5 <= len(pages) <= 40
    for p in pages:  # every page has ink: not blank
        img = Image.open(p).convert("L")
        assert ImageStat.Stat(img).extrema[0][0] < 128, p.name
        assert sum(img.histogram()[:200]) > 200, p.name  # pixels darker than paper
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    for needle in (
        "Executive summary",
        "Device risk",
        "Findings by framework",
        "Findings by device",
        "Vulnerable devices (KEV first)",
        "not available: no vulnerability intelligence imported",
        "Segmentation",
        "Recommended least-privilege policy",
        "Audit ledger checkpoint",
        "IEC 62443-3-3",
        "45 CFR 164.312",
        "Known default account used",
        f"{NET}.8",
    ):
        assert needle in " ".join(text.split()), needle
    html = (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_bytes())
    assert len(data["findings"]) == len(stacks["findings"])
    for f in stacks["findings"]:
        assert f["finding_id"][:12] in html
    assert data["ledger"]["size"] > 0 and data["ledger"]["note"] in html
    assert data["availability"]["intel"].startswith("not available")
    from hl7_build import PHI

    for blob in (
        pdf.read_bytes(),
        html.encode(),
        (out / "report.json").read_bytes(),
        text.encode(),
    ):
        for value in (*PHI, "Quixote", "Zebediah", "pump-secret"):
            assert value.encode() not in blob
    # STIX 2.1: valid per the OASIS validator
    from stix2validator import ValidationOptions, validate_file

    result = validate_file(str(out / "report.stix.json"), ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.object_results for e in e.errors]
    # a second report shows the trend against the first
    res = runner.invoke(
        main, ["report", "--db", db, "--out", str(tmp / "report2"), "--formats", "json"]
    )
    assert res.exit_code == 0, res.output
    again = json.loads((tmp / "report2" / "report.json").read_bytes())
    rows = {t["key"]: t for t in again["trend"]["rows"]}
    assert rows["open_findings"]["previous"] == data["summary"]["open_findings"]
    assert again["ledger"]["size"] > data["ledger"]["size"]
    res = runner.invoke(main, ["report", "--db", db, "--out", str(tmp / "r3"), "--formats", "doc"])
    assert res.exit_code == 2 and "unknown format" in res.output


def test_with_the_inventory_engine(stacks, tmp_path: Path) -> None:
    """Scanned with the inventory engine first (as `medsentry scan` runs them), findings land on
    the inventory's devices."""
    pytest.importorskip("medsentry.inventory.engine")
    from medsentry.controls.devices import load_inventory
    from medsentry.store import open_store

    db = f"sqlite:///{tmp_path / 'inv.db'}"
    runner = stacks["runner"]
    res = runner.invoke(
        main, ["scan", "--db", db, "--engines", "inventory,controls", "-q", str(stacks["pcap"])]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["findings", "--db", db, "--format", "json"])
    rows = json.loads(res.output)
    assert {r["type"] for r in rows} >= {r["type"] for r in stacks["findings"]} - {"eol-os"}
    with open_store(db) as store:
        known = {d.device_id for d in load_inventory(store)}
    assert known and {r["device_id"] for r in rows} <= known
