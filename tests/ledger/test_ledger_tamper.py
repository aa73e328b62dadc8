"""Tampering: change, delete, insert, reorder or truncate stored entries or checkpoints, and
`verify` fails naming the first bad entry (or checkpoint); a valid log always verifies."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from _ledger_files import entry, frame, join_records, payload, split_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.ledger import Ledger, verify_ledger
from medsentry.ledger.canonical import canonical_json
from medsentry.ledger.keys import load_keys
from medsentry.ledger.log import CHECKPOINTS, ENTRIES, HASHES, INDEX

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def build(directory: Path, n: int, checkpoint_at: list[int]) -> Ledger:
    load_keys()  # keys exist before the log: no key-creation entries, predictable numbering
    lg = Ledger(directory)
    done = 0
    cuts = [(c, True) for c in sorted(checkpoint_at)] + [(n, False)]
    for cut, sign in cuts:
        if cut > done:
            lg.append_many(
                [("alert.raised", {"alert": i, "score": i / 4}) for i in range(done, cut)]
            )
            done = cut
        if sign:
            lg.checkpoint()
    return lg


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="ledger-tamper-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@SETTINGS
@given(n=st.integers(1, 40), cps=st.lists(st.integers(0, 40), max_size=3))
def test_valid_logs_always_verify(n: int, cps: list[int]):
    with tempfile.TemporaryDirectory() as tmp:
        lg = build(Path(tmp) / "l", n, [c for c in cps if c <= n])
        size = lg.size
        lg.close()
        report = verify_ledger(Path(tmp) / "l", canonical=True)
        assert report.ok, report.as_dict()
        assert report.size == size and report.checkpoints_verified == len(
            [c for c in cps if c <= n]
        )


OPS = ["flip", "rewrite", "delete", "insert_copy", "insert_forged", "swap", "truncate"]


@SETTINGS
@given(
    n=st.integers(3, 30),
    op=st.sampled_from(OPS),
    data=st.data(),
)
def test_tampered_entries_name_first_bad_entry(n: int, op: str, data: st.DataObject):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "l"
        build(d, n, [n // 2]).close()
        magic, recs = split_records(d / ENTRIES)
        total = len(recs)
        k = data.draw(st.integers(0, total - 1), label="k")
        expect = k
        if op == "flip":  # a byte changed in place, CRC left as it was
            rec = bytearray(recs[k])
            pos = data.draw(st.integers(8, len(rec) - 1), label="pos")
            rec[pos] ^= 0x20
            recs[k] = bytes(rec)
        elif op == "rewrite":  # content changed by someone who recomputes the CRC
            e = entry(recs[k])
            e["actor"] = "mallory"
            recs[k] = frame(canonical_json(e))
        elif op == "delete":
            del recs[k]
        elif op == "insert_copy":
            j = data.draw(st.integers(0, total - 1), label="j")
            recs.insert(k, recs[j])
            if j == k:  # a duplicate of the entry now after it: that later copy is out of place
                expect = k + 1
        elif op == "insert_forged":  # a forged entry carrying the right sequence number
            e = entry(recs[k])
            e["data"] = {"forged": True}
            recs.insert(k, frame(canonical_json(e)))
        elif op == "swap":
            k2 = data.draw(st.integers(0, total - 1).filter(lambda x: x != k), label="k2")
            k, k2 = sorted((k, k2))
            expect = k
            if payload(recs[k]) == payload(recs[k2]):
                return
            recs[k], recs[k2] = recs[k2], recs[k]
        elif op == "truncate":
            blob = magic + b"".join(recs)
            start = len(magic) + sum(len(r) for r in recs[:k])
            cut = data.draw(st.integers(start, start + len(recs[k]) - 1), label="cut")
            (d / ENTRIES).write_bytes(blob[:cut])
        if op != "truncate":
            join_records(d / ENTRIES, magic, recs)
        report = verify_ledger(d)
        assert not report.ok
        assert report.first_bad_entry == expect, report.as_dict()


@SETTINGS
@given(op=st.sampled_from(["flip", "delete", "truncate", "reorder"]), data=st.data())
def test_tampered_checkpoints_detected(op: str, data: st.DataObject):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "l"
        build(d, 12, [3, 7, 12]).close()
        magic, recs = split_records(d / CHECKPOINTS)
        j = data.draw(st.integers(0, len(recs) - 1), label="j")
        if op == "flip":
            rec = bytearray(recs[j])
            pos = data.draw(st.integers(0, len(rec) - 1), label="pos")
            rec[pos] ^= 0x01
            recs[j] = bytes(rec)
            join_records(d / CHECKPOINTS, magic, recs)
        elif op == "delete":
            del recs[j]
            join_records(d / CHECKPOINTS, magic, recs)
        elif op == "reorder":
            if j == len(recs) - 1:
                j -= 1
            recs[j], recs[j + 1] = recs[j + 1], recs[j]
            join_records(d / CHECKPOINTS, magic, recs)
        else:
            blob = (d / CHECKPOINTS).read_bytes()
            start = len(magic) + sum(len(r) for r in recs[:j])
            cut = data.draw(st.integers(start, len(blob) - 1), label="cut")
            (d / CHECKPOINTS).write_bytes(blob[:cut])
        report = verify_ledger(d)
        assert not report.ok, report.as_dict()
        # the problem names the checkpoint, or the entry that recorded the missing one
        assert any(p.checkpoint is not None or p.entry is not None for p in report.problems)


def test_derived_files_tampered(workdir: Path):
    d = workdir / "l"
    build(d, 20, [10]).close()
    hashes = bytearray((d / HASHES).read_bytes())
    hashes[32 * 9 + 5] ^= 1  # stored hash #9: made when entry 5 was appended
    (d / HASHES).write_bytes(bytes(hashes))
    report = verify_ledger(d)
    assert not report.ok and report.first_bad_entry == 5, report.as_dict()
    build(d2 := workdir / "m", 20, []).close()
    index = bytearray((d2 / INDEX).read_bytes())
    index[8 * 4 + 7] ^= 1
    (d2 / INDEX).write_bytes(bytes(index))
    report = verify_ledger(d2)
    assert not report.ok and report.first_bad_entry == 4, report.as_dict()


def test_consistent_rewrite_caught_by_signed_checkpoint(workdir: Path):
    """An attacker without the key rewrites entry 15 and recomputes every derived file: only the
    signed checkpoints catch it, and they bound where the first bad entry is."""
    d = workdir / "l"
    build(d, 30, [10, 20, 30]).close()
    _, recs = split_records(d / ENTRIES)
    payloads = [payload(r) for r in recs]
    e = entry(recs[15])
    e["data"]["score"] = 0
    payloads[15] = canonical_json(e)
    forged = workdir / "forged"
    with Ledger(forged) as f:
        f.bulk_load_payloads(payloads)
    for name in (ENTRIES, INDEX, HASHES):
        shutil.copy(forged / name, d / name)
    report = verify_ledger(d)
    assert not report.ok
    first = report.first_problem()
    assert first is not None and first.entry is not None and first.entry_last is not None
    assert first.entry <= 15 <= first.entry_last
    assert "first bad entry is within" in first.message


def test_external_checkpoint_from_a_witness(workdir: Path):
    d = workdir / "l"
    lg = build(d, 10, [])
    saved = str(lg.checkpoint()).encode()
    lg.append_many([("alert.raised", {"n": i}) for i in range(10)])
    lg.close()
    report = verify_ledger(d, external=saved)
    assert report.ok and report.external_checkpoint and report.external_checkpoint["consistent"]
    # truncating the log back below the witness's checkpoint is caught by the witness copy
    magic, recs = split_records(d / ENTRIES)
    join_records(d / ENTRIES, magic, recs[:5])
    report = verify_ledger(d, external=saved)
    assert not report.ok and report.first_bad_entry == 5
    forged = saved.replace(b"\n10\n", b"\n9\n")
    report = verify_ledger(workdir / "l", external=forged)
    assert any("invalid" in p.message for p in report.problems)


def test_rewritten_entry_that_is_not_utf8_is_named(workdir: Path):
    """A rewrite with a valid CRC whose JSON holds bytes that are not UTF-8: a bad entry,
    named, never an exception."""
    d = workdir / "l"
    build(d, 6, []).close()
    magic, recs = split_records(d / ENTRIES)
    recs[3] = frame(payload(recs[3]).replace(b'"alert.raised"', b'"alert.\xff\xfeised"'))
    join_records(d / ENTRIES, magic, recs)
    report = verify_ledger(d, canonical=True)
    assert not report.ok and report.first_bad_entry == 3, report.as_dict()
