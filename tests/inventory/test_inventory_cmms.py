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
         "record 2: field asset_tag (key 'asset_tag'): the tag repeats record 1"),
        ("blankline.csv", "Asset Tag,MAC\n\nA1,00:09:5c:20:01:02\n\nA2,zz\n",
         "line 5: field mac (column 'MAC'): not a MAC address (text of 2 characters: letters)"),
        ("repeat.csv", "Asset Tag,MAC\nA1,\nA2,\nA1,\n",
         "line 4: field asset_tag (column 'Asset Tag'): the tag repeats line 2"),
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
    assert (
        "'Date of Birth' (1 row with a value), 'MRN' (1 row with a value),"
        " 'Patient Name' (1 row with a value), 'patient_id' (1 row with a value)"
    ) in r.stderr
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
        f"{HEADER},IP Address,Cost Center,Risk Class\n"
        "A-101,ICU Bed 2,Biomed,SN101,Philips,MX800,Patient monitor,00:09:5c:20:01:02,,"
        'CC-4410,"B, life support"\n'
        "A-103,ICU Bed 3,Biomed,SN103,GE Healthcare,Carescape B650,Ventilator,00:10:5d:20:01:03,"
        "10.20.0.113,CC-4410,\n"
        "A-777,Basement,Biomed,SN777,Baxter,Sigma Spectrum,Infusion pump,,,CC-1,low\n"
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
    assert rows["A-101"]["cost_center"] == "CC-4410"
    assert rows["A-101"]["risk_class"] == "B, life support"
    assert (
        rows["A-777"]["medsentry_status"] == "never-seen" and rows["A-777"]["risk_class"] == "low"
    )
    # a device on no list carries its MAC, so that giving it a tag lists it
    unlisted = [r for r in every if r["medsentry_status"] == "observed-only"]
    pump = next(r for r in unlisted if r["medsentry_device_id"] == "mac:00:12:21:20:01:51")
    assert pump["mac"] == "00:12:21:20:01:51" and not pump["category"]


def test_a_partial_update_changes_only_its_columns(db: str, tmp_path: Path) -> None:
    full = tmp_path / "full.csv"
    full.write_text(
        f"{HEADER},Cost Center\nA-1,ICU Bed 1,Biomed,SN1,Philips,MX800,Patient monitor,"
        "00:09:5c:20:01:01,CC-4410\n"
    )
    _import(db, full)
    moved = tmp_path / "moved.csv"
    moved.write_text("Asset Tag,Location,Owner\nA-1,Step-down unit,\n")
    _import(db, moved)
    a = _assets(db)["A-1"]
    assert a["location"] == "Step-down unit" and a["owner"] is None  # named: replaced, cleared
    assert (a["serial_number"], a["vendor"], a["model"]) == ("SN1", "Philips", "MX800")
    assert a["device_id"] == "mac:00:09:5c:20:01:01"
    assert json.loads(a["extra"]) == {"cost_center": "CC-4410"}


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


# --- patient data: column names, free text, cells, error messages (inventory/cmms_phi.py) ----

from medsentry.inventory.cmms_phi import free_text_column, patient_column, person_data  # noqa: E402

PATIENT_COLUMNS = [
    # the spellings a privacy review found let through, then others seen in CMMS exports
    "PatientName", "PatientID", "Patient's Name", "Patient Full Name", "Pt Name", "D.O.B.",
    "MedRec#", "Patient Tel", "Resident", "assigned_patient", "patient_mrn",
    "Home Patient Address", "Patient Name", "PATIENT NAME", "PATIENTNAME", "patient-name",
    "Patient", "Patients", "patient_id", "Patient #", "Patient No.", "Patient Number",
    "Patient Identifier", "Patient’s Name", "patient.email", "Patient E-mail",
    "Patient Phone", "Patient Telephone", "Patient Mobile", "Patient Zip", "Patient Postcode",
    "Patient Age", "Patient Sex", "PtID", "Pt. Name", "PT_NAME", "Pat Name", "Pat ID",
    "Pt Phone", "ptname", "patname", "DOB", "Dob", "D O B Date", "Date of Birth",
    "DateOfBirth", "dateofbirth", "Birth Date", "Birthdate", "BIRTH_DATE", "Born",
    "MRN", "M.R.N.", "MRN Number", "MRNNumber", "Med Rec #", "MedRec", "medrec_no",
    "Medical Record Number", "Medical Record #", "MedicalRecordNo", "SSN", "S.S.N.",
    "Social Security #", "SocialSecurityNumber", "NHS No", "NHS Number", "Next of Kin",
    "NextOfKin", "NOK Phone", "Guarantor", "Guarantor Name", "Insurance", "Insurance ID",
    "Insurer", "Member ID", "MemberNumber", "Medicaid #", "Medicare Number", "Subscriber",
    "Admit Date", "Admission Date", "Date of Death", "Deceased", "First Name", "Last Name",
    "Surname", "Forename", "Given Name", "Family Name", "Full Name", "FullName",
    "Home Phone", "Home Address", "Home E-mail", "Resident Name", "Residents", "Inpatient",
    "Inpatient Name", "Outpatient ID", "Room Occupant", "Bed Occupant", "Occupant Name",
    "Borrower", "Loaned To", "Loaned to Patient", "Lent To", "Issued To", "Checked Out To",
    "Assigned to Patient", "Assigned Patient", "Current Patient", "Patient Assigned",
]  # fmt: skip
EQUIPMENT_COLUMNS = [
    # columns about the device, a place, or its use with patients in general
    "Patient Care Area", "Patient Monitor ID", "Patient Connected", "Patient Facing",
    "Patient Care Device", "PatientMonitorID", "patient_care_area", "PATIENTCAREAREA",
    "Patient-Connected", "Patient Monitoring", "Patient Room", "Patient Bed", "Patient Lift",
    "Patient Safety Risk", "Patient Side", "Patient Cable", "Patient Population",
    "Applied Part: Patient Connection", "Inpatient Unit", "Outpatient Clinic",
    "Asset Tag", "Asset #", "Equipment #", "Control No", "Serial Number", "S/N",
    "Manufacturer", "Vendor", "Model", "Model Name", "Model Number", "Device Type",
    "Equipment Type", "Category", "MAC Address", "Mac Addr", "IP Address", "IPv4 Address",
    "Host Name", "DNS Name", "Location", "Room", "Department", "Dept", "Owner", "Cost Center",
    "PM Due", "PM Interval", "Install Date", "Purchase Date", "Warranty End", "Risk Class",
    "Status", "OS", "Firmware", "Software Version", "PAT Test Date", "PAT Due", "Loaner",
    "Loan Status", "Checked Out", "Assigned To", "Contact Name", "Vendor Phone",
    "Service Phone", "Email", "Age", "Building", "Floor", "Home Location", "NHS Trust",
    "Device Name", "Network Zone", "Name",
]  # fmt: skip


@pytest.mark.parametrize("name", PATIENT_COLUMNS)
def test_a_column_about_a_patient_is_never_read(name: str) -> None:
    assert patient_column(name)


@pytest.mark.parametrize("name", EQUIPMENT_COLUMNS)
def test_a_column_about_equipment_is_read(name: str) -> None:
    assert not patient_column(name)


@pytest.mark.parametrize(
    "name, free",
    [("Notes", True), ("NOTES", True), ("Comments", True), ("Remarks", True),
     ("Description", True), ("Equipment Description", True), ("Service History", True),
     ("LoanerInfo", True), ("Free Text", True), ("Memo", True), ("Location Notes", True),
     ("Location", False), ("Cost Center", False), ("Model", False), ("Status", False),
     ("PM Due", False), ("Risk Class", False)],
)  # fmt: skip
def test_free_text_columns(name: str, free: bool) -> None:
    assert free_text_column(name) is free


@pytest.mark.parametrize(
    "value, kind",
    [("Loaned to patient ZZQXPATIENT DOB 19010203 tel 5550137731", "loan"),
     ("Room 12 bed of ZZQXPATIENT QXALPHA", "loan"), ("sent home to Mrs Q", "loan"),
     ("DOB 1950-02-03", "birth"), ("d.o.b. 3/2/1950", "birth"), ("born 1950", "birth"),
     ("MRN 12345", "record"), ("MedRec 0042", "record"), ("patient id 77", "record"),
     ("NHS No 943 476 5919", "record"), ("123-45-6789", "ssn"),
     ("jane.doe@example.org", "email"), ("tel 5550137731", "phone"),
     ("Phone: (555) 013-7731", "phone"), ("555-013-7731", "phone"),
     ("+44 20 7946 0958", "phone"), ("77 QXLANE STREET", "address"),
     ("12 Elm Road, Springfield", "address"), ("DOE^JOHN", "hl7"), ("Mr Smith", "title"),
     ("Ward 5 (Mrs. Jones)", "title")],
)  # fmt: skip
def test_person_data_in_a_cell(value: str, kind: str) -> None:
    assert person_data(value) == kind


@pytest.mark.parametrize(
    "value",
    ["ICU Bed 2", "Salle d'opération 2", "Building B", "312", "Home kit 7", "ICU [/x] bed 4",
     "@ward 3", "Step-down unit", "Radiology 2 CT", "Newborn unit", "Lab Cell 3", "CC-4410",
     "2025-01-31", "31/01/2025", "10.20.0.113", "00:09:5c:20:01:01", "Clinical Engineering",
     "Biomed", "B, life support", "SN-501234", "St Mary's Wing 2", "Patient monitor",
     "Patient Lounge", "+1 year warranty", "Mx800"],
)  # fmt: skip
def test_equipment_values_are_not_person_data(value: str) -> None:
    assert person_data(value) is None


def _shown(db: str, device: str) -> list[str]:
    """What a user can see of the inventory: the device (table and JSON) and the export."""
    return [
        cli("device", "--db", db, device).output,
        cli("device", "--db", db, device, "--format", "json").output,
        cli("inventory", "export", "--db", db).output,
        cli("inventory", "export", "--db", db, "--format", "json").output,
        cli("inventory", "reconcile", "--db", db, "--format", "json").output,
    ]


def _stored(db: str) -> bytes:
    path = Path(db.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_patient_columns_in_any_spelling_leave_no_trace(db: str, tmp_path: Path) -> None:
    """The privacy review's file: ten spellings of patient columns beside a monitor's MAC."""
    src = tmp_path / "bypass.csv"
    src.write_text(
        "asset_tag,mac,ip,PatientName,Patient's Name,Patient Full Name,Pt Name,D.O.B.,MedRec#,"
        "Patient Tel,PatientID,Home Patient Address,Resident,Patient Care Area\n"
        "AT-7001,00:09:5c:20:01:02,,ZZQXCAMEL^QXALPHA,ZZQXAPOS,ZZQXFULLNAME,ZZQXPTNAME,"
        "19010203,QX998877,5550137731,QX998877b,77 QXLANE STREET,ZZQXRESIDENT,ICU North\n"
    )
    r = _import(db, src)
    for column in ("'PatientName'", '"Patient\'s Name"', "'D.O.B.'", "'MedRec#'", "'Resident'"):
        assert f"{column} (1 row with a value)" in r.stderr
    values = ("ZZQX", "QX998877", "19010203", "5550137731", "QXLANE")
    seen = [r.output, *_shown(db, "00:09:5c:20:01:02")]
    for value in values:
        assert value.encode() not in _stored(db)
        assert not any(value in out for out in seen), value
    assert json.loads(_assets(db)["AT-7001"]["extra"]) == {"patient_care_area": "ICU North"}


def test_free_text_and_person_data_cells_are_not_stored(db: str, tmp_path: Path) -> None:
    """Notes are never stored; a column with person data in any cell is left out for the
    whole file (an asset stored earlier keeps its value); the warnings name the columns,
    the lines and the kind of data, never a value."""
    first = tmp_path / "first.csv"
    first.write_text("Asset Tag,MAC,Location,Cost Center\nA-1,00:09:5c:20:01:02,ICU bed 2,CC-1\n")
    _import(db, first)
    src = tmp_path / "loaners.csv"
    src.write_text(
        "Asset Tag,MAC,Location,Owner,Department,Notes,Comments,Loan Contact,Cost Center,"
        "PM Due\n"
        "A-1,00:09:5c:20:01:02,Room 12 bed of ZZQXPATIENT QXALPHA,Clinical Engineering,ICU,"
        '"Loaned to patient ZZQXPATIENT DOB 19010203 tel 5550137731",ok,'
        "ZZQXKIN@example.org,CC-4410,2025-01-31\n"
        "A-2,,Ward 5,Biomed,Medicine,,,,CC-4411,2025-02-28\n"
        "A-3,,Ward 6,Biomed,Medicine,spare,,+44 20 7946 0958,CC-4412,\n"
    )
    r = _import(db, src)
    assert (
        "free-text columns were not imported (free text names the patients loaners go to, in"
        " words no check can recognise): 'Comments' (1 row with text), 'Notes' (2 rows with"
        " text)"
    ) in r.stderr
    assert (
        "column 'Location' was not imported: what looks like person data is in 1 of 3 rows"
        " (a device placed with a person: line 2); correct those cells and import again"
    ) in r.stderr
    assert (
        "column 'Loan Contact' was not imported: what looks like person data is in 2 of 3 rows"
        " (an e-mail address: line 2; a telephone number: line 4)"
    ) in r.stderr
    a = _assets(db)
    assert a["A-1"]["location"] == "ICU bed 2"  # the stored value, not the file's
    assert a["A-2"]["location"] is None  # new assets: the column is not read at all
    assert (a["A-1"]["owner"], a["A-1"]["department"]) == ("Clinical Engineering", "ICU")
    assert json.loads(a["A-1"]["extra"]) == {"cost_center": "CC-4410", "pm_due": "2025-01-31"}
    values = ("ZZQX", "19010203", "5550137731", "7946 0958", "spare")
    seen = [r.output, *_shown(db, "00:09:5c:20:01:02")]
    for value in values:
        assert value.encode() not in _stored(db), value
        assert not any(value in out for out in seen), value


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("badip.csv", "asset_tag,mac,ip\nAT-3,00:11:22:33:44:55,ZZQXBADIP QX998877\n",
         "line 2: field ip (column 'ip'): not an IP address (text of 18 characters: letters,"
         " digits, spaces)"),
        ("badmac.csv", "asset_tag,mac,ip\nAT-2,ZZQXBADMAC-QX998877,10.0.0.1\n",
         "line 2: field mac (column 'mac'): not a MAC address (text of 19 characters: letters,"
         " digits, other characters)"),
        # a row shifted by one cell puts the patient's name where the IP address belongs
        ("shifted.csv", "Asset Tag,Patient,IP Address\nAT-4,ZZQXSHIFTED,QX998877\n",
         "line 2: field ip (column 'IP Address'): not an IP address (text of 8 characters:"
         " letters, digits)"),
        ("shifted.json", '[{"asset_tag": "AT-5", "ip": "ZZQXSHIFTED QX998877"}]',
         "record 1: field ip (key 'ip'): not an IP address"),
        ("tag.csv", "Asset Tag,MAC\nZZQXTAG QX998877,\nZZQXTAG QX998877,\n",
         "line 3: field asset_tag (column 'Asset Tag'): the tag repeats line 2"),
        ("long.csv", "Asset Tag,Location\nAT-6," + "ZZQX" * 70 + "\n",
         "line 2: field location (column 'Location'): longer than 255 characters"),
        # no header row: the first asset would be listed as the columns found
        ("noheader.csv", "00:11:22:33:44:55,ZZQXNOHEADER QX998877,Location\n",
         "no asset tag column (columns found: 'Location', 2 others, not shown)"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_column_never_the_value(
    db: str, tmp_path: Path, name: str, content: str, message: str
) -> None:
    src = tmp_path / name
    src.write_text(content)
    r = cli("inventory", "import", str(src), "--db", db, code=2)
    assert message in r.output and str(src) in r.output
    assert "ZZQX" not in r.output and "QX998877" not in r.output


def test_a_database_written_before_these_rules_shows_none_of_it(db: str, tmp_path: Path) -> None:
    """Assets stored by an earlier version kept "Notes" and "PatientName" columns: they are
    not shown, and the next import of the asset drops them from the database."""
    src = tmp_path / "first.csv"
    src.write_text("Asset Tag,MAC,Cost Center\nA-1,00:09:5c:20:01:02,CC-1\n")
    _import(db, src)
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    old = {"cost_center": "CC-1", "notes": "ZZQXNOTE", "patientname": "ZZQXCAMEL^QXALPHA",
           "loan_contact": "tel 5550137731"}  # fmt: skip
    with con:
        con.execute("UPDATE assets SET extra = ? WHERE asset_tag = 'A-1'", (json.dumps(old),))
    con.close()
    shown = _shown(db, "00:09:5c:20:01:02")
    assert all("CC-1" in out for out in shown[:4])  # the device and the export: kept columns
    for out in shown:
        assert "ZZQX" not in out and "5550137731" not in out
    src.write_text("Asset Tag,Location\nA-1,ICU bed 2\n")  # a partial update
    _import(db, src)
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        rows = con.execute("SELECT extra FROM assets UNION ALL SELECT record FROM devices")
        assert not any("ZZQX" in r[0] or "5550137731" in r[0] for r in rows if r[0])
    finally:
        con.close()
    assert json.loads(_assets(db)["A-1"]["extra"]) == {"cost_center": "CC-1"}
