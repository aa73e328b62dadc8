"""Every scan is recorded in the audit ledger as it happens, and the ledger still verifies."""

from __future__ import annotations

import json

from click.testing import CliRunner

from medsentry.cli import main


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.stdout, result.stderr


def test_scan_appends_a_verifiable_ledger_entry(lo_capture, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSENTRY_ACTOR", "cli:analyst7")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    for _ in range(2):  # a rescan is a new action, so a second entry
        code, out, err = _run("scan", "--db", url, "--format", "json", str(lo_capture.path))
        assert code == 0, err
    summary = json.loads(out)
    code, out, err = _run("audit", "log", "--kind", "scan.completed", "--format", "json")
    assert code == 0, err
    entries = json.loads(out)
    assert len(entries) == 2
    data = entries[-1]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    assert data["capture_id"] == summary["captures"][0]["capture_id"]
    assert data["packets"] == summary["packets"] and data["flows"] == summary["flows"]
    assert "source" not in data and lo_capture.path.name not in json.dumps(entries)
    assert entries[-1]["actor"] == "cli:analyst7"
    code, out, err = _run("audit", "verify")
    assert code == 0, out + err


def test_a_cmms_import_is_recorded_by_its_digest_not_its_name(tmp_path) -> None:
    """A file name may name a patient ('loaners_SMITH_J.csv'); the ledger cannot be erased."""
    import hashlib

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cmms = tmp_path / "loaners_ZZQXPATIENT.csv"
    cmms.write_text("Asset Tag,MAC\nBME-1,00:09:5c:00:00:01\n")
    code, out, err = _run("inventory", "import", "--db", url, str(cmms))
    assert code == 0, err
    code, out, err = _run("audit", "log", "--kind", "inventory.assets_imported", "--format", "json")
    assert code == 0, err
    assert "ZZQXPATIENT" not in out
    [entry] = json.loads(out)
    data = entry["data"] if isinstance(entry["data"], dict) else json.loads(entry["data"])
    assert data["sha256"] == hashlib.sha256(cmms.read_bytes()).hexdigest() and data["assets"] == 1
