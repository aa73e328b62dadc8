"""CMMS lists as hospitals keep them (Excel exports, partial updates, lists that name patients or
the same MAC twice), the export read back, and finding one device by any spelling of its
address or name. Real scans of the demo hospital capture into real SQLite files."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main

HEADER = "Asset Tag,Location,Owner,Serial Number,Manufacturer,Model,Device Type,MAC Address"


def cli(*args: str, code: int = 0):
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "300"})
    assert r.exit_code == code, r.output
    return r


@pytest.fixture
def scanned(scanned_demo) -> tuple[Path, Path]:
    pcap, db = scanned_demo
    return db, pcap


@pytest.fixture
def db(scanned, tmp_path: Path) -> str:
    """A private copy of the scanned demo hospital."""
    shutil.copy(scanned[0], tmp_path / "demo.db")
    return f"sqlite:///{tmp_path / 'demo.db'}"


def _import(db: str, path: Path, code: int = 0):
    return cli("inventory", "import", str(path), "--db", db, "--format", "json", code=code)


def _report(r) -> dict:
    return json.loads(r.stdout)[0]


def _assets(db: str) -> dict[str, dict]:
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    con.row_factory = sqlite3.Row
    try:
        return {r["asset_tag"]: dict(r) for r in con.execute("SELECT * FROM assets")}
    finally:
        con.close()


@pytest.mark.parametrize(
    "name, data",
    [
        # European Excel: ";" separators, UTF-8 with BOM, CRLF
        (
            "semicolon.csv",
            "\ufeffAsset Tag;Location;MAC Address\r\nA-101;Salle d'opération 2;"
            "00:09:5c:20:01:01\r\n".encode(),
        ),
        # Excel's plain "CSV" on Windows: Windows-1252
        (
            "ansi.csv",
            (
                "Asset Tag,Location,MAC Address\r\nA-101,Salle d'opération 2,00-09-5C-20-01-01\r\n"
            ).encode("cp1252"),
        ),
        # Excel's "Unicode Text": UTF-16 with BOM, tab-separated
        (
            "unicode.txt",
            (
                "Asset Tag\tLocation\tMAC Address\r\nA-101\tSalle d'opération 2\t0009.5c20.0101\r\n"
            ).encode("utf-16"),
        ),
        # a report title and a blank line above the header; a trailing delimiter on the row
        (
            "report.csv",
            b"Medical equipment report,,\r\n\r\nAsset Tag,Location,MAC Address\r\n"
            + "A-101,Salle d'opération 2,00095c200101,\r\n".encode(),
        ),
    ],
)
def test_excel_exports_import(db: str, tmp_path: Path, name: str, data: bytes) -> None:
    src = tmp_path / name
    src.write_bytes(data)
    r = _import(db, src)
    rep = _report(r)
    assert rep["imported"] == 1 and not rep["never_seen"], r.output
    a = _assets(db)["A-101"]
    assert a["location"] == "Salle d'opération 2"
    assert a["device_id"] == "mac:00:09:5c:20:01:01"
    if name == "ansi.csv":
        assert "read as Windows-1252" in r.stderr
    if name == "report.csv":
        assert "lines above the header (line 3) skipped" in r.stderr


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("nocol.csv", "Location,Owner,MAC Address\nICU,CE,00:09:5c:20:01:02\n",
         "no asset tag column (columns found: 'Location', 'Owner', 'MAC Address')"),
        ("empty.csv", "", "the file is empty"),
        ("blank.csv", "\n\n  \n", "the file is empty"),
        ("header.csv", "Asset Tag,Location\n", "a header row but no assets"),
        ("notags.csv", "Asset Tag,Location\n,ICU\n", "no line has an asset tag (1 without one)"),
        ("empty.json", "[]", "the list holds no assets"),
        ("object.json", '[{"asset_tag": "A1", "model": {"name": "x"}}]',
         "record 1: field model: expected text or a number, got an object"),
        ("list.json", '[{"asset_tag": "A1", "department": ["ICU", "CCU"]}]',
         "record 1: field department: expected text or a number, got a list"),
        ("bool.json", '[{"asset_tag": "A1", "owner": true}]',
         "record 1: field owner: expected text or a number, got true/false"),
        ("nan.json", '[{"asset_tag": "A1", "location": NaN}]', "got NaN or infinity"),
        ("sametag.json", '[{"asset_tag": 1234}, {"asset_tag": 1234.0}]',
         "record 2: field asset_tag: '1234' repeats record 1"),
        ("blankline.csv", "Asset Tag,MAC\n\nA1,00:09:5c:20:01:02\n\nA2,zz\n",
         "line 5: field mac: 'zz' is not a MAC address"),
        ("repeat.csv", "Asset Tag,MAC\nA1,\nA2,\nA1,\n",
         "line 4: field asset_tag: 'A1' repeats line 2"),
        ("extra.csv", "Asset Tag,MAC\nA1,,surplus\n", "line 2: more fields than the header names"),
        ("bytes.csv", b"Asset Tag\nA\x81\x8d\n", "neither UTF-8 nor Windows-1252"),
    ],
)  # fmt: skip
def test_unusable_lists_are_one_line_exit_2_and_store_nothing(
    db: str, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _assets(db)
    r = cli("inventory", "import", str(src), "--db", db, code=2)
    assert message in r.output and str(src) in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert _assets(db) == before


def test_patient_columns_are_never_stored_or_printed(db: str, tmp_path: Path) -> None:
    src = tmp_path / "loaners.csv"
    src.write_text(
        "Asset Tag,Patient Care Area,MAC Address,Patient Name,MRN,Date of Birth,patient_id\n"
        "A-1,ICU North,00:09:5c:20:01:02,DOE^JOHN,MRN123456,1950-02-03,PID-99\n"
    )
    r = _import(db, src)
    assert "'Date of Birth', 'MRN', 'Patient Name', 'patient_id'" in r.stderr
    shown = [
        r.output,
        cli("device", "--db", db, "10.20.0.102").output,
        cli("device", "--db", db, "10.20.0.102", "--format", "json").output,
        cli("inventory", "export", "--db", db).output,
        cli("inventory", "export", "--db", db, "--format", "json").output,
    ]
    stored = Path(db.removeprefix("sqlite:///")).read_bytes()
    for value in ("DOE^JOHN", "MRN123456", "1950-02-03", "PID-99"):
        assert value.encode() not in stored
        assert not any(value in out for out in shown)
    assert json.loads(_assets(db)["A-1"]["extra"]) == {"patient_care_area": "ICU North"}


def test_the_export_imports_back_unchanged(db: str, tmp_path: Path) -> None:
    src = tmp_path / "cmms.csv"
    src.write_text(
        f"{HEADER},IP Address,Cost Center,Notes\n"
        "A-101,ICU Bed 2,Biomed,SN101,Philips,MX800,Patient monitor,00:09:5c:20:01:02,,"
        'CC-4410,"calibrated, ok"\n'
        "A-103,ICU Bed 3,Biomed,SN103,GE Healthcare,Carescape B650,Ventilator,00:10:5d:20:01:03,"
        "10.20.0.113,CC-4410,\n"
        "A-777,Basement,Biomed,SN777,Baxter,Sigma Spectrum,Infusion pump,,,CC-1,spare\n"
        "A-888,OR 1,Biomed,SN888,Acme,Widget,Surgical light thing,,10.20.0.150,CC-2,\n"
    )
    first = _report(_import(db, src))
    out1 = tmp_path / "export1.csv"
    cli("inventory", "export", "--db", db, "-o", str(out1))
    devices1 = cli("devices", "--db", db, "--format", "json").output
    assets1 = _assets(db)
    second = _report(_import(db, out1))
    out2 = tmp_path / "export2.csv"
    cli("inventory", "export", "--db", db, "-o", str(out2))
    assert out1.read_text() == out2.read_text()
    for key in ("never_seen", "unlisted", "mismatches", "shared"):
        assert first[key] == second[key], key
    assert cli("devices", "--db", db, "--format", "json").output == devices1  # no new evidence
    strip = ("source", "imported_at")
    assert {t: {k: v for k, v in a.items() if k not in strip} for t, a in _assets(db).items()} == {
        t: {k: v for k, v in a.items() if k not in strip} for t, a in assets1.items()
    }
    every = list(csv.DictReader(io.StringIO(out1.read_text())))
    rows = {r["asset_tag"]: r for r in every if r["asset_tag"]}
    # the list's own values are in the listed columns, the network's beside them
    assert rows["A-103"]["category"] == "ventilator" and rows["A-103"]["ip"] == "10.20.0.113"
    assert rows["A-103"]["observed_category"] == "patient-monitor"
    assert rows["A-103"]["observed_ip"] == "10.20.0.103"
    assert rows["A-888"]["category"] == "Surgical light thing"
    assert rows["A-101"]["cost_center"] == "CC-4410" and rows["A-101"]["notes"] == "calibrated, ok"
    assert rows["A-777"]["medsentry_status"] == "never-seen" and rows["A-777"]["notes"] == "spare"
    # a device on no list carries its MAC, so that giving it a tag lists it
    unlisted = [r for r in every if r["medsentry_status"] == "observed-only"]
    pump = next(r for r in unlisted if r["medsentry_device_id"] == "mac:00:12:21:20:01:51")
    assert pump["mac"] == "00:12:21:20:01:51" and not pump["category"]


def test_a_partial_update_changes_only_its_columns(db: str, tmp_path: Path) -> None:
    full = tmp_path / "full.csv"
    full.write_text(
        f"{HEADER},Notes\nA-1,ICU Bed 1,Biomed,SN1,Philips,MX800,Patient monitor,"
        "00:09:5c:20:01:01,keep me\n"
    )
    _import(db, full)
    moved = tmp_path / "moved.csv"
    moved.write_text("Asset Tag,Location,Owner\nA-1,Step-down unit,\n")
    _import(db, moved)
    a = _assets(db)["A-1"]
    assert a["location"] == "Step-down unit" and a["owner"] is None  # named: replaced, cleared
    assert (a["serial_number"], a["vendor"], a["model"]) == ("SN1", "Philips", "MX800")
    assert a["device_id"] == "mac:00:09:5c:20:01:01"
    assert json.loads(a["extra"]) == {"notes": "keep me"}


def test_two_assets_naming_one_mac_are_both_kept_and_reported(db: str, tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_text("asset_tag,location,mac\nA-1,ICU bed 1,00:09:5c:20:01:02\n"
                   "A-2,ICU bed 2,00-09-5C-20-01-02\n")  # fmt: skip
    r = _import(db, src)
    assert "line 3: asset 'A-2' names the mac 00:09:5c:20:01:02 of asset 'A-1' (line 2)" in r.stderr
    rep = _report(r)
    assert rep["shared"] == [{"device_id": "mac:00:09:5c:20:01:02", "asset_tags": ["A-1", "A-2"]}]
    rows = json.loads(cli("inventory", "export", "--db", db, "--format", "json").output)
    assert {r["asset_tag"] for r in rows if r["asset_tag"]} == {"A-1", "A-2"}
    table = cli("inventory", "reconcile", "--db", db).output
    assert "several assets match one device" in table and "A-1, A-2" in table


def test_host_names_match_in_any_case_and_as_short_names(scanned, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    src = tmp_path / "hosts.csv"
    src.write_text(
        "Asset Tag,Host Name\nA-104,mon-104\nA-151,pump-151.demo-hospital\nA-040,PUMPSERVER\n"
    )
    # the list first, the capture after: the scan matches the list
    assert len(_report(_import(db, src))["never_seen"]) == 3
    cli("scan", str(scanned[1]), "--db", db, "--engines", "inventory", "-q")
    rep = json.loads(cli("inventory", "reconcile", "--db", db, "--format", "json").output)[0]
    assert rep["never_seen"] == []
    assert {t: a["device_id"] for t, a in _assets(db).items()} == {
        "A-104": "mac:00:0f:14:20:01:04",
        "A-151": "mac:00:12:21:20:01:51",
        "A-040": "ip:10.10.0.40",
    }


def test_common_header_spellings(db: str, tmp_path: Path) -> None:
    src = tmp_path / "spellings.csv"
    src.write_text(
        "Equipment #,IPv4 Address,Mac Addr,S/N,Model Name,Equipment Type,Location,Room\n"
        "E-1,10.20.0.150,,SN-E1,Space,Infusion pump,Building B,312\n"
        "E-2,,00:09:5c:20:01:01,SN-E2,MX450,Patient monitor,Building A,101\n"
    )
    r = _import(db, src)
    assert "columns 'Location' and 'Room' both name the location" in r.stderr
    a = _assets(db)
    assert a["E-1"]["device_id"] == "mac:00:12:21:20:01:50" and a["E-1"]["serial_number"] == "SN-E1"
    assert a["E-2"]["device_id"] == "mac:00:09:5c:20:01:01" and a["E-2"]["model"] == "MX450"
    assert a["E-1"]["location"] == "Building B" and json.loads(a["E-1"]["extra"]) == {"room": "312"}


def test_a_long_reconciliation_is_summarised_in_the_terminal(db: str, tmp_path: Path) -> None:
    src = tmp_path / "big.csv"
    src.write_text("Asset Tag,Location\n" + "".join(f"T-{i:05d},Store\n" for i in range(3000)))
    out = cli("inventory", "import", str(src), "--db", db).output
    assert "3000 listed assets never seen" in out
    assert "... and 2950 more (`medsentry inventory reconcile --format json` lists them all)" in out
    full = json.loads(cli("inventory", "reconcile", "--db", db, "--format", "json").output)[0]
    assert len(full["never_seen"]) == 3000


@pytest.mark.parametrize(
    "key",
    ["00-09-5c-20-01-01", "0009.5c20.0101", "00095C200101", "MAC:00:09:5C:20:01:01",
     "10.20.0.101"],
)  # fmt: skip
def test_a_device_by_any_spelling_of_its_mac(db: str, key: str) -> None:
    got = json.loads(cli("device", "--db", db, key, "--format", "json").output)
    assert got["device_id"] == "mac:00:09:5c:20:01:01"


def test_a_device_by_host_name_in_any_case_and_never_an_ambiguous_one(db: str) -> None:
    got = json.loads(cli("device", "--db", db, "mon-104", "--format", "json").output)
    assert got["device_id"] == "mac:00:0f:14:20:01:04"
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    with con:
        con.execute("UPDATE devices SET hostname='Mon-104' WHERE device_id='mac:00:09:5c:20:01:01'")
    con.close()
    r = cli("device", "--db", db, "MON-104", code=2)
    assert "2 devices go by the host name 'MON-104'" in r.output
    assert "mac:00:09:5c:20:01:01" in r.output and "mac:00:0f:14:20:01:04" in r.output


def test_vendor_filter_matches_from_a_word_start(db: str) -> None:
    def vendors(name: str) -> set[str]:
        out = cli("devices", "--db", db, "--vendor", name, "--format", "json").output
        return {d["vendor"] for d in json.loads(out)}

    assert vendors("ge") == {"GE HealthCare"}  # not Dräger
    assert vendors("drager") == {"Dräger"}
    assert vendors("healthcare") == {"GE HealthCare"}


@pytest.mark.parametrize("command", ["devices", "flows", "alerts", "risk"])
def test_a_limit_below_one_is_refused(db: str, command: str) -> None:
    r = cli(command, "--db", db, "--limit", "0", code=2)
    assert "0 rows: give at least 1" in r.output and len(r.output.strip().splitlines()) == 1
