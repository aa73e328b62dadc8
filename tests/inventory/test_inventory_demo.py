"""The demo hospital through `medsentry scan`: a sensible inventory, CLI listings, changes in
the store and the ledger, rescans that change nothing, CMMS import/export and reconciliation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.demo.hospital import CATEGORY, HOSTS, ROUTER_MAC, build
from medsentry.inventory.identify import vendor_key

# The medical devices must be right; IT hosts may stay vaguer.
MEDICAL = {n for n, c in CATEGORY.items() if not c.startswith(("it.", "it"))}


def cli(*args: str, ok: bool = True):
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "300"})
    if ok:
        assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    d = tmp_path_factory.mktemp("invdemo")
    pcap = d / "demo.pcap"
    build(pcap, seed=0)
    url = f"sqlite:///{d / 'demo.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSENTRY_HOME", str(d / "home"))
    cli("scan", str(pcap), "--db", url, "--engines", "inventory")
    mp.undo()
    return url, pcap, d / "home"


def _devices(url: str, *args: str) -> list[dict]:
    return json.loads(cli("devices", "--db", url, "--format", "json", *args).output)


def test_demo_inventory_is_sensible(demo_db) -> None:
    url = demo_db[0]
    devs = {d["device_id"]: d for d in _devices(url)}
    by_ip = {d["ip"]: d for d in devs.values()}
    wrong = []
    for h in HOSTS:
        d = devs.get(f"mac:{h.mac}") or by_ip.get(h.ip)
        assert d is not None, f"{h.name} ({h.ip}) is not in the inventory"
        if h.name in MEDICAL and d["category"] != CATEGORY[h.name]:
            wrong.append((h.name, d["category"], CATEGORY[h.name]))
    assert not wrong
    ct = devs["mac:44:4b:5d:20:00:11"]
    assert vendor_key(ct["vendor"]) == "ge_healthcare" and ct["model"] == "RHAPSODE"
    assert ct["criticality"] == "patient-affecting" and ct["fda_class"] == "II" and ct["phi"]
    for mon in ("00:09:5c:20:01:01", "00:09:5c:20:01:02"):
        assert vendor_key(devs[f"mac:{mon}"]["vendor"]) == "philips"
        assert devs[f"mac:{mon}"]["model"] == "IntelliVue MX800"
    assert vendor_key(devs["mac:00:10:5d:20:01:03"]["vendor"]) == "draeger"
    pump = devs["mac:00:12:21:20:01:51"]
    assert pump["criticality"] == "life-sustaining" and pump["hostname"] == "PUMP-151"
    # routers: their interfaces are devices, the hosts behind them are not merged into them
    assert devs[f"mac:{ROUTER_MAC[20]}"]["category"] == "it.network"
    assert devs[f"mac:{ROUTER_MAC[20]}"]["ips"] == ["10.20.0.1"]
    # internet hosts are peers, never devices
    assert not any(d["ip"].startswith("203.0.113.") for d in devs.values() if d["ip"])
    pcs = [d for d in devs.values() if d["ip"] and d["ip"].startswith("10.30.0.2")]
    assert pcs and all(d["category"] == "it.workstation" for d in pcs)


def test_devices_filters_and_sort(demo_db) -> None:
    url = demo_db[0]
    imaging = _devices(url, "--category", "imaging")
    assert [d["category"] for d in imaging] == ["imaging.ct"]
    life = _devices(url, "--criticality", "life-sustaining")
    assert {d["category"] for d in life} == {"infusion-pump"}
    philips = _devices(url, "--vendor", "Koninklijke Philips N.V.")  # any spelling of the company
    assert len(philips) == 3  # the central station and two IntelliVue monitors
    sub = _devices(url, "--subnet", "10.30.0.0/24")
    assert sub and all(d["ip"].startswith("10.30.0.") for d in sub)
    crit = _devices(url, "--sort", "criticality")
    assert crit[0]["criticality"] == "life-sustaining"
    medical = _devices(url, "--medical")
    assert medical and all(d["medical"] for d in medical)
    table = cli("devices", "--db", url, "--category", "patient-monitor").output
    assert "IntelliVue MX800" in table and "central-station" in table
    bad = cli("devices", "--db", url, "--subnet", "10.300.0.0/8", ok=False)
    assert bad.exit_code == 2 and "--subnet" in bad.output and "Traceback" not in bad.output


def test_device_shows_evidence_and_history(demo_db) -> None:
    url = demo_db[0]
    doc = json.loads(cli("device", "--db", url, "10.20.0.11", "--format", "json").output)
    assert doc["device_id"] == "mac:44:4b:5d:20:00:11"
    rules = {e["rule"] for e in doc["category"]["evidence"]}
    assert {"dicom.modality.ct", "dicom.sends.ct"} <= rules
    assert any(e["rule"] == "dicom.impl.ge" for e in doc["vendor"]["evidence"])
    assert doc["addresses"][0]["ip"] == "10.20.0.11"
    assert doc["changes"][0]["change"] == "device_added"
    text = cli("device", "--db", url, "mac:00:12:21:20:01:51").output
    assert "dhcp.vendor_class" in text and "21 CFR 880.5725" in text
    missing = cli("device", "--db", url, "10.99.99.99", ok=False)
    assert missing.exit_code == 2 and "no device" in missing.output


def test_changes_are_stored_and_in_the_ledger(demo_db, monkeypatch: pytest.MonkeyPatch) -> None:
    url, pcap, home = demo_db
    monkeypatch.setenv("MEDSENTRY_HOME", str(home))  # the ledger the scan wrote to
    changes = json.loads(cli("inventory", "changes", "--db", url, "--format", "json").output)
    added = [c for c in changes if c["change"] == "device_added"]
    devs = _devices(url)
    assert len(added) == len(devs)
    from medsentry.ledger import ledger

    kinds = [e["kind"] for e in ledger().entries()]
    assert kinds.count("inventory.device_added") == len(devs)
    # the same capture again: nothing new, no change, no ledger entry
    before = len(kinds)
    cli("scan", str(pcap), "--db", url, "--engines", "inventory")
    assert len(_devices(url)) == len(devs)
    after = [e["kind"] for e in ledger().entries()][before:]
    assert not [k for k in after if k.startswith("inventory.")]


def test_cmms_import_reconcile_export(demo_db, tmp_path: Path) -> None:
    url = demo_db[0]
    cmms = tmp_path / "cmms.csv"
    cmms.write_text(
        "Asset Tag,Manufacturer,Model,Device Type,Serial Number,MAC Address,IP Address,"
        "Location,Department,Owner\n"
        "BME-0001,B. Braun,Space Infusomat,Infusion pump,SN111,00-12-21-20-01-50,,"
        "ICU bed 1,ICU,Clinical Engineering\n"
        "BME-0002,GE Healthcare,Revolution EVO,CT scanner,SN222,,10.20.0.11,Radiology 1,"
        "Radiology,Clinical Engineering\n"
        "BME-0003,Baxter,Sigma Spectrum,Infusion pump,SN333,00:11:22:33:44:55,,Ward 5,"
        "Medicine,Clinical Engineering\n"
        "BME-0004,Siemens,Aquilion,Infusion pump,SN444,00:09:5c:20:01:02,,ICU bed 2,ICU,CE\n"
        ",unlabelled row,,,,,,,,\n"
    )
    r = json.loads(cli("inventory", "import", str(cmms), "--db", url, "--format", "json").output)
    rep = r[0]
    assert rep["imported"] == 4 and rep["skipped"] == 1
    assert [a["asset_tag"] for a in rep["never_seen"]] == ["BME-0003"]
    fields = {(m["asset_tag"], m["field"]) for m in rep["mismatches"]}
    assert ("BME-0004", "category") in fields  # listed as a pump, the network says monitor
    assert ("BME-0004", "vendor") in fields
    assert ("BME-0002", "model") in fields  # the list says Revolution EVO, DICOM says RHAPSODE
    assert ("BME-0001", "category") not in fields
    unlisted = {u["device_id"] for u in rep["unlisted"]}
    assert "mac:00:12:21:20:01:51" in unlisted and "mac:00:12:21:20:01:50" not in unlisted
    # imported facts are on the device, and joined its evidence
    pump = json.loads(
        cli("device", "--db", url, "mac:00:12:21:20:01:50", "--format", "json").output
    )
    assert pump["asset"]["location"] == "ICU bed 1" and pump["asset"]["asset_tag"] == "BME-0001"
    assert any(e["source"] == "cmms" for e in pump["category"]["evidence"])
    mon = json.loads(cli("device", "--db", url, "00:09:5c:20:01:02", "--format", "json").output)
    assert mon["category"]["value"] == "patient-monitor"  # the network outweighs a wrong list
    assert any(e["source"] == "cmms" for e in mon["category"]["conflicts"])
    # export: CSV and JSON, matched + observed-only + never-seen
    out = tmp_path / "export.csv"
    cli("inventory", "export", "--db", url, "--format", "csv", "-o", str(out))
    rows = list(csv.DictReader(out.open()))
    status = {r["asset_tag"] or r["medsentry_device_id"]: r["medsentry_status"] for r in rows}
    assert status["BME-0001"] == "matched" and status["BME-0003"] == "never-seen"
    assert status["mac:00:12:21:20:01:51"] == "observed-only"
    js = json.loads(cli("inventory", "export", "--db", url, "--format", "json").output)
    assert len(js) == len(rows)
    # the export imports back (rows without an asset tag are skipped, not errors)
    again = cli("inventory", "import", str(out), "--db", url, "--format", "json")
    assert json.loads(again.output)[0]["imported"] == 4  # three matched, one never seen


@pytest.mark.parametrize(
    "content, message",
    [
        ("Asset Tag,MAC Address\nA1,not-a-mac\n", "line 2: field mac"),
        ("Asset Tag,IP Address\nA1,10.0.0.300\n", "line 2: field ip"),
        ("Asset Tag,Model\nA1,x\nA1,y\n", "line 3: field asset_tag"),
        ('[{"asset_tag": "A1"}, 7]', "record 2: not an object"),
        ("[{", "not valid JSON"),
    ],
)
def test_cmms_bad_input_is_one_line_exit_2_and_keeps_the_store(
    demo_db, tmp_path: Path, content: str, message: str
) -> None:
    url = demo_db[0]
    before = cli("inventory", "export", "--db", url, "--format", "json").output
    bad = tmp_path / ("bad.json" if content.startswith("[") else "bad.csv")
    bad.write_text(content)
    r = cli("inventory", "import", str(bad), "--db", url, ok=False)
    assert r.exit_code == 2 and message in r.output and str(bad) in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert cli("inventory", "export", "--db", url, "--format", "json").output == before


def test_reidentify_applies_the_users_rules(demo_db, tmp_path: Path, monkeypatch) -> None:
    url, _, home = demo_db
    monkeypatch.setenv("MEDSENTRY_HOME", str(home))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(
        "source: our pump naming standard\n"
        "rules:\n"
        "  - id: site.pumps\n"
        "    when: {hostname: {regex: '^PUMP-(?P<n>\\d+)$'}}\n"
        "    set: {model: 'Space Infusomat (bed {n})'}\n"
        "    confidence: 0.9\n"
    )
    r = cli("inventory", "reidentify", "--db", url, "--fingerprints", str(rules))
    assert "devices identified again" in r.output
    pump = json.loads(cli("device", "--db", url, "PUMP-151", "--format", "json").output)
    assert pump["model"]["value"] == "Space Infusomat (bed 151)"
    assert pump["model"]["evidence"][0]["rule"] == "site.pumps"
    assert any(
        c["change"] == "identity_changed" and c["attribute"] == "model" for c in pump["changes"]
    )
