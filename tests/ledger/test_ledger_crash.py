"""Crash safety: kill -9 during heavy appends loses no acknowledged entry; torn writes are
detected, quarantined and reported, never silently dropped."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _ledger_files import frame, split_records

from medsentry.ledger import Ledger, LedgerError, verify_ledger
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.log import ENTRIES, HASHES, INDEX, QUARANTINE

APPENDER = textwrap.dedent(
    """
    import sys
    from medsentry.ledger import Ledger
    lg = Ledger(sys.argv[1])
    batch = int(sys.argv[2])
    while True:
        start = lg.size
        seqs = lg.append_many(
            [("alert.raised", {"i": start + j, "pad": "x" * 40}) for j in range(batch)]
        )
        print(seqs[-1], flush=True)  # acknowledged: returned after fsync
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_kill_9_during_heavy_appends(tmp_path: Path, round_: int):
    d = tmp_path / "ledger"
    rng = random.Random(round_)
    proc = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(d), str(rng.choice([200, 2000, 5000]))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked = -1
    for _ in range(rng.randint(3, 8)):
        line = proc.stdout.readline()
        assert line, "appender died"
        acked = int(line)
    time.sleep(rng.random() * 0.05)
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait()
    for line in rest.split():
        acked = int(line)
    assert acked >= 0
    report = verify_ledger(d)  # before any repair: acknowledged entries all verify
    assert report.ok, report.as_dict()
    with Ledger(d) as lg:
        assert lg.size >= acked + 1
        for seq in (0, acked // 2, acked):
            assert lg.entry(seq)["data"]["i"] == seq
        for w in lg.warnings:
            assert "torn record" in w and "quarantine" in w
    report = verify_ledger(d)
    assert report.ok and not report.warnings, report.as_dict()


def test_torn_tail_is_quarantined_and_recorded(tmp_path: Path):
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(10)])
        end = (d / ENTRIES).stat().st_size
    half = frame(b'{"actor":"system","data":{"n":10},"kind":"finding.opened","seq":10}')[:30]
    with open(d / ENTRIES, "ab") as fh:
        fh.write(half)
    report = verify_ledger(d)
    assert report.ok and any(f"byte {end}" in w for w in report.warnings)
    with Ledger(d) as lg:
        assert len(lg.warnings) == 1
        assert f"torn record at byte {end}" in lg.warnings[0]
        q = list((d / QUARANTINE).iterdir())
        assert len(q) == 1 and q[0].read_bytes() == half and str(q[0]) in lg.warnings[0]
        assert lg.size == 11
        torn = lg.entry(10)
        assert torn["kind"] == "ledger.torn_tail"
        assert torn["data"]["offset"] == end and torn["data"]["length"] == len(half)
    assert verify_ledger(d).ok


def test_bad_checksum_in_unacknowledged_tail_is_quarantined(tmp_path: Path):
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(3)])
    rec = bytearray(frame(b'{"actor":"system","data":{},"kind":"finding.opened","seq":3}'))
    rec[-3] ^= 0xFF
    with open(d / ENTRIES, "ab") as fh:
        fh.write(bytes(rec))
    with Ledger(d) as lg:
        assert "CRC-32" in lg.warnings[0]
        assert lg.entry(3)["kind"] == "ledger.torn_tail"


def test_complete_entries_written_before_the_crash_are_kept(tmp_path: Path):
    """Killed after entries.bin was synced but before index.bin and hashes.bin were."""
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(10)])
    with open(d / ENTRIES, "ab") as fh:
        for seq in (10, 11, 12):
            e = {"actor": "system", "data": {"n": seq}, "kind": "finding.opened", "seq": seq}
            e["time"] = "2026-01-01T00:00:00.000000Z"
            fh.write(frame(canonical_json(e)))
    os.truncate(d / HASHES, (d / HASHES).stat().st_size - 40)  # a torn derived write too
    assert verify_ledger(d).ok
    with Ledger(d) as lg:
        assert lg.size == 13 and not lg.warnings
        assert lg.entry(12)["data"]["n"] == 12
    report = verify_ledger(d)
    assert report.ok and not report.warnings


def test_acknowledged_entry_missing_refuses_to_append(tmp_path: Path):
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(10)])
    magic, recs = split_records(d / ENTRIES)
    (d / ENTRIES).write_bytes(magic + b"".join(recs[:7]))
    with pytest.raises(LedgerError, match="acknowledged entry 9"):
        Ledger(d)
    assert (d / INDEX).stat().st_size == 80  # nothing repaired over the evidence
    report = verify_ledger(d)
    assert not report.ok and report.first_bad_entry == 7


def test_index_pointing_elsewhere_refuses_instead_of_cutting(tmp_path: Path):
    """A tampered index must not make recovery quarantine acknowledged entries."""
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(10)])
    index = bytearray((d / INDEX).read_bytes())
    index[72:80] = index[40:48]  # entry 9's offset now points at entry 5
    (d / INDEX).write_bytes(bytes(index))
    size = (d / ENTRIES).stat().st_size
    with pytest.raises(LedgerError, match="entry 9"):
        Ledger(d)
    assert (d / ENTRIES).stat().st_size == size and not (d / QUARANTINE).exists()
    report = verify_ledger(d)
    assert not report.ok and report.first_bad_entry == 9


@pytest.mark.parametrize("offset", [2**63 - 1, 2**64 - 1, 2**40])
def test_index_offset_beyond_any_file_is_a_ledger_error(tmp_path: Path, offset: int):
    """An index offset past what the OS can read (os.pread takes a signed 64-bit off_t) names
    the damaged entry, at open (the last entry) and on read (an earlier one)."""
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(10)])
    good = (d / INDEX).read_bytes()
    far = offset.to_bytes(8, "big")
    (d / INDEX).write_bytes(good[:72] + far)  # entry 9, checked when the ledger opens
    with pytest.raises(LedgerError, match="entry 9"):
        Ledger(d)
    (d / INDEX).write_bytes(good[:24] + far + good[32:])  # entry 3, read on demand
    with Ledger(d) as lg, pytest.raises(LedgerError, match="entry 3"):
        lg.entry(3)
    report = verify_ledger(d)
    assert not report.ok and report.first_bad_entry == 3


def test_whole_record_out_of_sequence_in_tail_is_not_quarantined(tmp_path: Path):
    d = tmp_path / "ledger"
    with Ledger(d) as lg:
        lg.append_many([("finding.opened", {"n": i}) for i in range(4)])
    _, recs = split_records(d / ENTRIES)
    with open(d / ENTRIES, "ab") as fh:
        fh.write(recs[1])  # a replayed copy of entry 1 after the end
    with pytest.raises(LedgerError, match="not entry 4"):
        Ledger(d)
    report = verify_ledger(d)
    assert not report.ok and report.first_bad_entry == 4
