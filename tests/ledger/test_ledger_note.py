"""C2SP signed notes and checkpoints: the Go reference vector byte for byte, and tlog-scales
(an independent Python implementation of signed-note, tlog-checkpoint and tlog-cosignature)
reading and verifying what the ledger signs."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tlog_scales.signing import Vkey as TsVkey
from tlog_scales.tlog import Checkpoint as TsCheckpoint

from medsentry.ledger.note import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    Signer,
    Vkey,
    make_checkpoint,
    open_checkpoint,
    parse_note,
    sign_note,
    verify_signature,
)

# golang.org/x/mod/sumdb/note note_test.go (the PeterNeumann example)
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_signer() -> Signer:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])  # the key itself may hold "+"
    assert raw[0] == 1
    return Signer.from_seed("PeterNeumann", raw[1:])


def test_go_reference_vector_byte_for_byte():
    signer = go_signer()
    assert str(signer.vkey) == GO_VKEY
    note = GO_TEXT + "\n" + sign_note(GO_TEXT, signer).line()
    assert note == GO_TEXT + "\n" + GO_SIG
    verify_signature(parse_note(note), Vkey.parse(GO_VKEY))
    with pytest.raises(NoteError):
        verify_signature(
            parse_note(note.replace("cryptography", "cryptographY")), Vkey.parse(GO_VKEY)
        )


def test_key_id_is_spec_formula():
    vkey = Vkey.parse(GO_VKEY)
    pub = vkey.public_key
    assert vkey.id == hashlib.sha256(b"PeterNeumann\n\x01" + pub).digest()[:4]
    assert vkey.id.hex() == "c74f20a3"


def test_mangled_vkeys_rejected():
    b = GO_VKEY
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        if mangled == b:
            continue
        with pytest.raises(NoteError):
            Vkey.parse(mangled)
    for bad in ["", "PeterNeumann", "Peter Neumann+c74f20a3+AA==", GO_VKEY[:-4]]:
        with pytest.raises(NoteError):
            Vkey.parse(bad)


def _signers() -> tuple[Signer, Signer]:
    log = Signer.from_seed("example.test/log", bytes(range(32)))
    clock = Signer.from_seed("example.test/log/clock", bytes(range(1, 33)), SIG_COSIGNATURE_V1)
    return log, clock


def test_checkpoint_read_by_tlog_scales():
    log, clock = _signers()
    root = hashlib.sha256(b"root").digest()
    text = make_checkpoint(Checkpoint("example.test/log", 1234, root), log, clock, 1_700_000_000)
    assert text.startswith(f"example.test/log\n1234\n{base64.b64encode(root).decode()}\n\n")
    ts = TsCheckpoint.from_text(text)
    assert (ts.origin, ts.size, ts.root_hash) == ("example.test/log", 1234, root)
    ts.verify(TsVkey.from_string(str(log.vkey)))  # plain Ed25519 note signature
    cosig = next(s for s in ts.signatures if s.name == clock.name)
    clock_vkey = TsVkey.from_string(str(clock.vkey))
    clock_vkey.get_verifier().verify_note(cosig, ts)  # tlog-cosignature/v1
    assert clock_vkey.get_verifier().get_timestamp(cosig.payload) == 1_700_000_000
    opened = open_checkpoint(text, log.vkey, clock.vkey)
    assert opened.time == 1_700_000_000 and opened.checkpoint.size == 1234


def test_checkpoint_signature_rederived_with_raw_cryptography():
    log, clock = _signers()
    root = bytes(32)
    text = make_checkpoint(Checkpoint("example.test/log", 7, root), log, clock, 42)
    body, sigs = text.split("\n\n")
    line = sigs.split("\n")[0]
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == hashlib.sha256(b"example.test/log\n\x01" + log.vkey.public_key).digest()[:4]
    Ed25519PublicKey.from_public_bytes(log.vkey.public_key).verify(raw[4:], (body + "\n").encode())


def test_checkpoint_size_is_ascii_decimal():
    """C2SP tlog-checkpoint: the tree size is ASCII decimal; "12³" (str.isdigit) is refused
    with NoteError, not a ValueError from int()."""
    root = base64.b64encode(bytes(32)).decode()
    assert Checkpoint.parse(f"example.test/log\n123\n{root}\n").size == 123
    for size in ("12\u00b3", "\u0661\u0662"):
        with pytest.raises(NoteError):
            Checkpoint.parse(f"example.test/log\n{size}\n{root}\n")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("\n1234\n", "\n1235\n"),
        lambda t: t.replace("example.test/log\n", "example.test/lag\n", 1),
        lambda t: t[:-3] + ("A" if t[-3] != "A" else "B") + t[-2:],
        lambda t: t.split("\n\n")[0] + "\n",
        lambda t: t.replace("\u2014", "-"),
        lambda t: t.replace("\n1234\n", "\n01234\n"),
    ],
)
def test_tampered_checkpoints_fail(mutate):
    log, clock = _signers()
    text = make_checkpoint(Checkpoint("example.test/log", 1234, bytes(32)), log, clock, 5)
    with pytest.raises(NoteError):
        open_checkpoint(mutate(text), log.vkey, clock.vkey)
