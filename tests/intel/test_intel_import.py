"""Imports into a real database (SQLite and PostgreSQL), idempotence, the ledger, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from medsentry.cli import main
from medsentry.errors import InputError
from medsentry.intel.importer import import_paths
from medsentry.intel.match import match_devices
from medsentry.intel.store import load_index, status
from medsentry.intel.tables import intel_advisories, intel_advisory_cves
from medsentry.inventory.model import Attribute, Device
from medsentry.ledger import ledger
from medsentry.store import open_store

DATA = Path(__file__).resolve().parent / "data"


def _count(store, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_import_all_sources_idempotent(db_url: str, csaf_dir: Path, kev_file: Path) -> None:
    paths = [
        csaf_dir,
        kev_file,
        DATA / "epss_sample.csv",
        DATA / "osv_sample.json",
        DATA / "nvd_sample.json",
    ]
    with open_store(db_url) as store:
        results, parsed = import_paths(store, paths)
        got = {r.kind: (r.added, r.updated, r.unchanged) for r in results}
        assert got == {
            "csaf": (144, 0, 0),
            "osv": (5, 0, 0),
            "nvd": (3, 0, 0),
            "kev": (1404, 0, 0),
            "epss": (10, 0, 0),
        }
        assert len(parsed.skipped) == 2  # the ROLIE feed JSON and nothing else unknown
        assert _count(store, intel_advisories) == 152
        assert _count(store, intel_advisory_cves) >= 433
        results, _ = import_paths(store, paths)
        assert {r.kind: (r.added, r.updated) for r in results} == {
            k: (0, 0) for k in ("csaf", "osv", "nvd", "kev", "epss")
        }
        assert _count(store, intel_advisories) == 152
        rows = {r["source"]: r for r in status(store)}
        assert rows["kev"]["version"] == "2025.08.25" and rows["csaf"]["records"] == 144
    kinds = [e["kind"] for e in ledger().entries()]
    assert kinds.count("intel.imported") == 10


def test_changed_document_replaces_the_stored_one(tmp_path: Path, csaf_files: list[Path]) -> None:
    src = csaf_files[10]
    work = tmp_path / "a.json"
    shutil.copy(src, work)
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        import_paths(store, [work])
        doc = json.loads(src.read_bytes())
        doc["document"]["tracking"]["version"] = "99"
        work.write_text(json.dumps(doc))
        [r], _ = import_paths(store, [work])
        assert (r.added, r.updated) == (0, 1)
        [adv] = load_index(store).advisories
        assert adv.version == "99"


def test_malformed_document_loses_nothing(tmp_path: Path, csaf_dir: Path, csaf_files) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_store(url) as store:
        import_paths(store, [csaf_dir])
    bad_dir = tmp_path / "feed"
    bad_dir.mkdir()
    for f in csaf_files[:3]:
        shutil.copy(f, bad_dir / f.name)
    doc = json.loads(csaf_files[3].read_bytes())
    doc["vulnerabilities"][0]["cwe"]["id"] = "CWE-XYZ"
    (bad_dir / "zz-bad.json").write_text(json.dumps(doc))
    with open_store(url) as store:
        with pytest.raises(InputError, match=r"zz-bad.json: CSAF field \$.vulnerabilities\[0\]"):
            import_paths(store, [bad_dir])
        assert _count(store, intel_advisories) == 144
    runner = CliRunner()
    res = runner.invoke(main, ["intel", "import", "--db", url, str(bad_dir / "zz-bad.json")])
    assert res.exit_code == 2
    assert "zz-bad.json: CSAF field $.vulnerabilities[0].cwe.id" in res.output
    assert "Traceback" not in res.output


def test_a_mirror_directory_as_published_imports_and_its_licence_is_skipped(
    tmp_path: Path, kev_file: Path, csaf_files: list[Path]
) -> None:
    """The shared data's KEV and CSAF folders as their publishers lay them out (a LICENSE, a
    README, the JSON schema next to the catalog): the documents import, the rest is skipped
    and counted; a corrupt file named .json in the folder still stops the run, and a LICENSE
    named on the command line is an error."""
    mirror = tmp_path / "kev"
    mirror.mkdir()
    shutil.copy(kev_file, mirror / kev_file.name)
    (mirror / "LICENSE").write_text("Creative Commons 0 1.0 Universal\n")
    (mirror / "AUTHORS").write_bytes(b"\xff\xfe not text")
    shutil.copy(csaf_files[0], mirror / csaf_files[0].name)
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    res = runner.invoke(main, ["intel", "import", "--db", url, str(mirror)])
    assert res.exit_code == 0, res.output
    assert "skipped 2 file(s) of no known kind" in res.stderr
    with open_store(url) as store:
        got = {r["source"]: r["records"] for r in status(store)}
        assert got["kev"] == 1404 and got["csaf"] == 1
    (mirror / "broken.json").write_text('{"catalogVersion": ')
    res = runner.invoke(main, ["intel", "import", "--db", url, str(mirror)])
    assert res.exit_code == 2 and "broken.json" in res.stderr and "not valid JSON" in res.stderr
    res = runner.invoke(main, ["intel", "import", "--db", url, str(mirror / "LICENSE")])
    assert res.exit_code == 2 and "LICENSE" in res.stderr and "Traceback" not in res.output


def test_match_devices_from_store_with_kev_and_epss(tmp_path: Path, csaf_dir: Path) -> None:
    # KEV entry and EPSS score for a CVE of an ICSMA advisory, written as CISA/FIRST write them
    kev = {
        "title": "t",
        "catalogVersion": "2099.01.01",
        "dateReleased": "2099-01-01",
        "count": 1,
        "vulnerabilities": [
            {
                "cveID": "CVE-2023-30563",
                "vendorProject": "BD",
                "product": "Alaris",
                "vulnerabilityName": "x",
                "dateAdded": "2099-01-01",
                "shortDescription": "",
                "requiredAction": "",
                "dueDate": "2099-01-21",
                "knownRansomwareCampaignUse": "Unknown",
                "notes": "",
                "cwes": [],
            }
        ],
    }
    (tmp_path / "kev.json").write_text(json.dumps(kev))
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        import_paths(store, [csaf_dir, tmp_path / "kev.json", DATA / "epss_sample.csv"])
        device = Device(
            device_id="mac:00:1b:2c:3d:4e:5f",
            vendor=Attribute(value="BD", confidence=0.95),
            model=Attribute(value="Alaris 8015 PC Unit", confidence=0.9),
            software_version=Attribute(value="12.1.2", confidence=0.9),
        )
        matches = {m.advisory_id: m for m in match_devices(store, [device])}
    m = matches["ICSMA-23-194-01"]
    assert m.device_id == "mac:00:1b:2c:3d:4e:5f" and m.status == "affected"
    assert m.kev and m.epss == pytest.approx(0.00102) and m.cvss_vectors
    assert "identified with confidence 0.90" in m.explanation


def test_vulns_cli_from_inventory_csv(tmp_path: Path, csaf_dir: Path, kev_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    res = runner.invoke(main, ["intel", "import", "--db", url, str(csaf_dir), str(kev_file)])
    assert res.exit_code == 0, res.output
    inv = str(DATA / "hospital_inventory.csv")
    res = runner.invoke(main, ["vulns", "--db", url, "--devices", inv, "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    by_dev: dict[str, set[str]] = {}
    for r in rows:
        by_dev.setdefault(r["device_id"], set()).add(r["advisory_id"])
        assert r["status"] in ("affected", "potentially_affected") and r["explanation"]
    assert by_dev["BME-010077"] == {"ICSMA-20-023-01"}
    assert "ICSMA-22-263-01" in by_dev["BME-050505"]
    assert "BME-030303" not in by_dev  # Hamilton-T1 2.2.4: after the fixed range
    assert "BME-040404" not in by_dev  # Mindray: no advisory
    res = runner.invoke(
        main,
        [
            "vulns",
            "--db",
            url,
            "--devices",
            inv,
            "--by",
            "advisory",
            "--advisory",
            "ICSMA-20-023-01",
        ],
    )
    assert res.exit_code == 0 and "BME-010077" in res.output and "BME-004211" not in res.output
    res = runner.invoke(
        main, ["vulns", "--db", url, "--devices", inv, "--kev-only", "--format", "json"]
    )
    assert res.exit_code == 0 and all(r["kev"] == "KEV" for r in json.loads(res.output))
    res = runner.invoke(
        main, ["vulns", "--db", url, "--devices", inv, "--summary", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    summary = {r["advisory_id"]: r for r in json.loads(res.output)}
    assert summary["ICSMA-23-194-01"]["affected"] == 2  # both Alaris 8015 PCUs
    assert sorted(summary["ICSMA-23-194-01"]["device_ids"]) == ["BME-004211", "BME-004212"]
    assert summary["ICSMA-20-023-01"]["title"].startswith("GE CARESCAPE")
    res = runner.invoke(main, ["intel", "status", "--db", url, "--format", "json"])
    assert {r["source"]: r["records"] for r in json.loads(res.output)}["kev"] == 1404


def test_bad_inventory_csv(tmp_path: Path) -> None:
    p = tmp_path / "inv.csv"
    p.write_text("Asset,Room\nA1,3\n")
    res = CliRunner().invoke(
        main, ["vulns", "--db", f"sqlite:///{tmp_path / 's.db'}", "--devices", str(p)]
    )
    assert res.exit_code == 2 and "inv.csv: device inventory line 1" in res.output


def test_inventory_csv_with_a_bare_cr_in_a_field(tmp_path: Path) -> None:
    """A CR inside an unquoted field is not CSV (RFC 4180 §2): csv.Error was an internal error."""
    p = tmp_path / "inv.csv"
    p.write_bytes(b"Manufacturer,Model\nGE,CARESCAPE\rB650 x\nBD,Alaris\n")
    res = CliRunner().invoke(
        main, ["vulns", "--db", f"sqlite:///{tmp_path / 's.db'}", "--devices", str(p)]
    )
    assert res.exit_code == 2, res.output
    assert "inv.csv: not valid CSV" in res.output and "internal error" not in res.output


def test_vulns_cli_from_inventory_store(tmp_path: Path, csaf_dir: Path) -> None:
    """Without --devices, `vulns` matches the devices the inventory stored (load_devices)."""
    from medsentry.inventory.store import device_row, update_records

    url = f"sqlite:///{tmp_path / 's.db'}"
    dev = Device(
        device_id="mac:02:00:00:00:00:01",
        vendor=Attribute(value="GE Healthcare", confidence=0.9),
        model=Attribute(value="CARESCAPE B650", confidence=0.85),
        software_version=Attribute(value="2.0.4", confidence=0.8),
        medical=True,
    )
    with open_store(url) as store:
        import_paths(store, [csaf_dir])
        with store.engine.begin() as conn:
            update_records(conn, [device_row(dev, b"{}")])
    res = CliRunner().invoke(main, ["vulns", "--db", url, "--format", "json"])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert (row["device_id"], row["advisory_id"], row["status"]) == (
        "mac:02:00:00:00:00:01",
        "ICSMA-20-023-01",
        "affected",
    )
    assert "identified with confidence 0.85" in row["explanation"]


def test_osv_zip_export_and_gzipped_epss(tmp_path: Path) -> None:
    """The shapes the sources publish: OSV's per-ecosystem all.zip, EPSS's daily .csv.gz."""
    import gzip
    import zipfile

    records = json.loads((DATA / "osv_sample.json").read_bytes())
    with zipfile.ZipFile(tmp_path / "all.zip", "w") as zf:
        for r in records:
            zf.writestr(f"{r['id']}.json", json.dumps(r))
    (tmp_path / "epss_scores-2024-03-15.csv.gz").write_bytes(
        gzip.compress((DATA / "epss_sample.csv").read_bytes())
    )
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        results, _ = import_paths(
            store, [tmp_path / "all.zip", tmp_path / "epss_scores-2024-03-15.csv.gz"]
        )
        assert {r.kind: r.added for r in results} == {"osv": 5, "epss": 10}
        index = load_index(store)
        assert {p.id for p in index.packages} >= {"GHSA-jfh8-c2jp-5v3q", "DSA-4963-1"}
        assert index.epss["CVE-2021-44228"].percentile == pytest.approx(0.99996)
    # a damaged member names the archive and the member
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("X-1.json", '{"id": "X-1", "modified": "2024", "affected": [{}]}')
    bad = r"bad.zip!X-1.json: OSV field \$.affected\[0\]"
    with (
        open_store(f"sqlite:///{tmp_path / 's.db'}") as store,
        pytest.raises(InputError, match=bad),
    ):
        import_paths(store, [tmp_path / "bad.zip"])
