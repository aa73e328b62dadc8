"""`medsentry audit ...` end to end through the real command group."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _ledger_files import entry, frame, join_records, split_records
from click.testing import CliRunner

from medsentry import paths
from medsentry.cli import main
from medsentry.ledger import Ledger, merkle
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.keys import LOG_KEY_FILE
from medsentry.ledger.log import ENTRIES, default_directory


@pytest.fixture
def populated() -> Path:
    with Ledger(default_directory()) as lg:
        lg.append_many([("alert.raised", {"alert": i, "severity": "high"}) for i in range(25)])
        lg.append(
            "inventory.device_added", {"device": "10.0.0.5", "class": "modality"}, "inventory"
        )
    return default_directory()


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_verify_ok_and_json(populated: Path):
    code, out, _ = run("audit", "verify")
    assert code == 0 and out.startswith("OK: 26 entries")
    code, out, _ = run("audit", "verify", "--format", "json", "--canonical")
    rep = json.loads(out)
    assert code == 0 and rep["ok"] and rep["size"] == 26 and rep["first_bad_entry"] is None


def test_verify_names_first_bad_entry(populated: Path):
    magic, recs = split_records(populated / ENTRIES)
    e = entry(recs[7])
    e["data"]["severity"] = "low"
    recs[7] = frame(canonical_json(e))
    join_records(populated / ENTRIES, magic, recs)
    code, out, _ = run("audit", "verify")
    assert code == 1
    assert out.startswith("FAILED: first bad entry #7:")
    code, out, _ = run("audit", "verify", "--format", "json")
    assert code == 1 and json.loads(out)["first_bad_entry"] == 7


def test_prove_and_consistency(populated: Path):
    code, out, _ = run("audit", "prove", "3", "--format", "json")
    assert code == 0
    p = json.loads(out)
    assert p["record"]["data"]["alert"] == 3 and p["tree_size"] == 26
    merkle.verify_inclusion(
        3,
        26,
        bytes.fromhex(p["leaf_hash"]),
        [bytes.fromhex(h) for h in p["inclusion_path"]],
        bytes.fromhex(p["root"]),
    )
    code, out, _ = run("audit", "prove", "3", "--size", "10")
    assert code == 0 and "tree size  10" in out
    code, out, _ = run("audit", "consistency", "10", "26", "--format", "json")
    c = json.loads(out)
    merkle.verify_consistency(
        10,
        26,
        bytes.fromhex(c["old_root"]),
        bytes.fromhex(c["new_root"]),
        [bytes.fromhex(h) for h in c["consistency_path"]],
    )


def test_bad_arguments_one_line_exit_2(populated: Path):
    for args in (("prove", "99"), ("prove", "3", "--size", "2"), ("consistency", "20", "10")):
        code, _, err = run("audit", *args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("medsentry: error:")
        assert "Traceback" not in err


def test_checkpoint_export_write_once_and_verify(populated: Path, tmp_path: Path):
    witness = tmp_path / "witness"
    witness.mkdir()
    code, out, err = run("audit", "checkpoint", "--export", str(witness))
    assert code == 0 and "exported to" in err
    (exported,) = witness.iterdir()
    assert exported.read_text() == out
    assert exported.stat().st_mode & 0o222 == 0  # read-only once written
    code, _, err = run("audit", "checkpoint", "--export", str(exported))
    assert code == 2 and "written once" in err
    run("audit", "log")  # reading does not disturb anything
    code, out, _ = run("audit", "verify", "--checkpoint", str(exported))
    assert code == 0 and "consistent with" in out
    code, out, _ = run("audit", "vkey")
    assert code == 0 and out.splitlines()[0].split()[1].startswith("ledger.medsentry.local/")


def test_world_readable_key_refused(populated: Path):
    run("audit", "vkey")
    key = paths.data_dir() / "keys" / LOG_KEY_FILE
    os.chmod(key, 0o644)
    code, _, err = run("audit", "checkpoint")
    assert code == 2 and "0600" in err and err.count("\n") == 1


def test_log_listing(populated: Path):
    code, out, _ = run("audit", "log", "--kind", "inventory", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["kind"] for r in rows] == ["inventory.device_added"]
    code, out, _ = run("audit", "log", "--limit", "3")
    assert code == 0 and "alert.raised" in out and "inventory.device_added" in out


def test_witness_verifies_a_copy_with_vkeys_only(populated: Path, tmp_path: Path, monkeypatch):
    code, out, _ = run("audit", "checkpoint")
    assert code == 0
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(out)
    code, out, _ = run("audit", "vkey")
    vkeys = [line.split()[1] for line in out.splitlines()]
    copy = tmp_path / "copy"
    shutil.copytree(populated, copy)
    monkeypatch.setenv("MEDSENTRY_HOME", str(tmp_path / "elsewhere"))  # no keys here
    args = ["audit", "verify", "--dir", str(copy), "--checkpoint", str(saved)]
    code, out, _ = run(*args, *[a for v in vkeys for a in ("--vkey", v)])
    assert code == 0 and "1 stored checkpoint(s) verified" in out, out
    code, out, _ = run(*args)  # without keys the checkpoints cannot be trusted
    assert code == 1
    code, _, err = run(*args, "--vkey", vkeys[1])
    assert code == 2 and "one log key" in err
