"""The ledger on disk: appends, reopening, proofs from stored hashes, keys, concurrency."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_scales.tlog import Checkpoint as TsCheckpoint
from tlog_scales.tlog import ConsistencyProof as TsConsistency
from tlog_scales.tlog import InclusionProof as TsInclusion

from medsentry import paths
from medsentry.errors import ConfigError, InputError
from medsentry.ledger import Ledger, ledger, merkle, record, verify_ledger
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.keys import CLOCK_KEY_FILE, LOG_KEY_FILE


@pytest.fixture
def led(tmp_path: Path):
    with Ledger(tmp_path / "ledger") as lg:
        yield lg


def test_entries_are_canonical_json_and_leaves(led: Ledger):
    led.append("alert.raised", {"rule": "dicom.unknown-ae", "score": 7.5, "device": 3}, "detect")
    e = led.entry(0)
    assert e["seq"] == 0 and e["kind"] == "alert.raised" and e["actor"] == "detect"
    assert e["data"] == {"rule": "dicom.unknown-ae", "score": 7.5, "device": 3}
    raw = led.entry_bytes(0)
    assert raw == canonical_json(e)  # the stored bytes are exactly RFC 8785
    assert led.root() == merkle.leaf_hash(raw)


def test_append_many_and_reopen(tmp_path: Path):
    d = tmp_path / "ledger"
    with Ledger(d) as a:
        seqs = a.append_many([("finding.opened", {"n": i}) for i in range(100)])
        assert list(seqs) == list(range(100))
        root = a.root()
    with Ledger(d) as b:
        assert b.size == 100 and b.root() == root and not b.warnings
        assert b.append("finding.closed", {"n": 0}) == 100
        assert [e["data"]["n"] for e in b.entries(95, 101)] == [95, 96, 97, 98, 99, 0]


def test_proofs_from_disk_match_reference(led: Ledger):
    led.append_many([("inventory.device_added", {"device": i}) for i in range(77)])
    leaves = [led.entry_bytes(i) for i in range(77)]
    for size in (1, 2, 3, 8, 31, 64, 77):
        root = led.root(size)
        assert root == merkle.root_of_leaves([merkle.leaf_hash(x) for x in leaves[:size]])
        for index in {0, size // 2, size - 1}:
            p = led.inclusion_proof(index, size)
            assert p.root == root and p.leaf_hash == merkle.leaf_hash(leaves[index])
            TsInclusion(index, size, p.path).check(p.leaf_hash, root)
        for old in {0, 1, size // 3, size - 1, size}:
            c = led.consistency_proof(old, size)
            merkle.verify_consistency(old, size, c.old_root, c.new_root, c.path)
            TsConsistency(old, size, c.path).check(c.old_root, c.new_root)


def test_bad_entries_rejected_nothing_stored(led: Ledger):
    led.append("scan.completed", {"devices": 1})
    for kind, data, actor in [
        ("Scan", {}, "x"),
        ("scan", {}, "x"),
        ("scan.completed", [], "x"),
        ("scan.completed", {"PatientName": "x"}, "x"),
        ("scan.completed", {"patient_id": "x"}, "x"),
        ("scan.completed", {"n": float("nan")}, "x"),
        ("scan.completed", {}, ""),
    ]:
        with pytest.raises(InputError):
            led.append_many([("scan.completed", {"ok": 1}), (kind, data, actor)])
    assert led.size == 1


def test_checkpoint_signed_and_recorded(led: Ledger):
    led.append_many([("alert.raised", {"n": i}) for i in range(5)])
    signed = led.checkpoint()
    keys = led.keys()
    # key creation is itself a configuration change on the record
    made = [e for e in led.entries() if e["kind"] == "config.changed"]
    assert {e["data"]["key_file"] for e in made} == {LOG_KEY_FILE, CLOCK_KEY_FILE}
    assert signed.checkpoint.size == 7 and signed.checkpoint.root == led.root(7)
    last = led.entry(led.size - 1)
    assert last["kind"] == "ledger.checkpoint" and last["data"]["size"] == 7
    assert base64.b64decode(last["data"]["root"]) == signed.checkpoint.root
    ts = TsCheckpoint.from_text(str(signed))
    from tlog_scales.signing import Vkey as TsVkey

    ts.verify(TsVkey.from_string(str(keys.log.vkey)))
    assert led.checkpoints() == [str(signed).encode()]
    report = verify_ledger(led.dir)
    assert report.ok and report.checkpoints_verified == 1, report.as_dict()


def test_key_file_permissions_enforced(led: Ledger):
    led.keys()
    key = paths.data_dir() / "keys" / LOG_KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    os.chmod(key, 0o644)
    with Ledger(led.dir) as other, pytest.raises(ConfigError, match="0600"):
        other.checkpoint()


def test_record_hook_uses_installation_ledger():
    assert record("scan.completed", {"source": "x.pcap", "devices": 2}, actor="cli") == 0
    assert record("intel.imported", {"source": "kev", "count": 10}) == 1
    lg = ledger()
    assert lg.dir == paths.data_dir() / "ledger" and lg.size == 2
    assert verify_ledger().ok


WRITER = textwrap.dedent(
    """
    import sys
    from medsentry.ledger import Ledger
    d, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Ledger(d) as lg:
        for i in range(n):
            lg.append_many([("user.action", {"writer": tag, "i": i, "j": j}) for j in range(5)])
    """
)


def test_two_processes_append_without_interleaving(tmp_path: Path):
    d = tmp_path / "ledger"
    Ledger(d).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(d), tag, "60"]) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with Ledger(d) as lg:
        assert lg.size == 600
        entries = list(lg.entries())
    assert [e["seq"] for e in entries] == list(range(600))
    # each batch of 5 is contiguous: a batch is one locked, durable write
    for k in range(0, 600, 5):
        batch = entries[k : k + 5]
        assert len({e["data"]["writer"] for e in batch}) == 1
        assert [e["data"]["j"] for e in batch] == list(range(5))
    assert verify_ledger(d).ok


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    reopen=st.booleans(),
    data=st.data(),
)
def test_random_append_sequences_prove(batches: list[int], reopen: bool, data: st.DataObject):
    """Any sequence of batches (with or without reopening): every proof from disk verifies."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "l"
        lg = Ledger(d)
        roots = {0: merkle.EMPTY_ROOT}
        for b in batches:
            lg.append_many([("user.action", {"b": b, "j": j}) for j in range(b)])
            roots[lg.size] = lg.root()
            if reopen:
                lg.close()
                lg = Ledger(d)
        n = lg.size
        for _ in range(5):
            size = data.draw(st.sampled_from(sorted(roots)[1:]), label="size")
            i = data.draw(st.integers(0, size - 1), label="i")
            p = lg.inclusion_proof(i, size)
            assert p.root == roots[size]
            merkle.verify_inclusion(i, size, merkle.leaf_hash(lg.entry_bytes(i)), p.path, p.root)
            old = data.draw(st.sampled_from(sorted(roots)), label="old")
            if old <= size:
                c = lg.consistency_proof(old, size)
                merkle.verify_consistency(old, size, roots[old], roots[size], c.path)
        lg.close()
        assert verify_ledger(d).size == n
