"""C2SP signed notes, tlog checkpoints and tlog cosignatures with Ed25519.

- signed-note (c2sp.org/signed-note): text ending in a newline, a blank line, then signature
  lines `— <key name> base64(key ID || signature)`;
  key ID = SHA-256(name || 0x0A || type || key)[:4];
  verifier keys are written `<name>+<key ID hex>+base64(type || public key)`.
- tlog-checkpoint (c2sp.org/tlog-checkpoint): the note text is `origin\\nsize\\nbase64(root)\\n`.
- tlog-cosignature (c2sp.org/tlog-cosignature): type 0x04 signs
  `cosignature/v1\\ntime <seconds>\\n` + checkpoint text; the signature is timestamp(u64) || sig.
  The installation uses one to put a signed time on each checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medsentry.errors import InputError

SIG_ED25519 = 0x01  # signed-note §Signatures: Ed25519
SIG_COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 cosignature
EM_DASH = "\u2014"
MAX_SIGNATURES = 100  # signed-note: verifiers may reject notes with more


class NoteError(InputError):
    """A note, checkpoint or verifier key that is malformed or does not verify."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note §Signatures: the first 4 bytes of SHA-256(name || 0x0A || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    # signed-note: key names are non-empty, with no Unicode spaces and no plus sign
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"invalid key name {name!r}")


@dataclass(frozen=True)
class Vkey:
    """A verifier key."""

    name: str
    sig_type: int
    public_key: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def __str__(self) -> str:
        blob = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.id.hex()}+{blob}"

    @classmethod
    def parse(cls, text: str) -> Vkey:
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise NoteError(f"malformed verifier key {text.strip()!r}")
        name, hexid, blob = parts
        _check_name(name)
        try:
            raw = base64.b64decode(blob, validate=True)
            want = bytes.fromhex(hexid)
        except (binascii.Error, ValueError):
            raise NoteError(f"malformed verifier key {text.strip()!r}") from None
        if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise NoteError(f"verifier key {name}: not an Ed25519 key")
        vkey = cls(name, raw[0], raw[1:])
        if vkey.id != want:
            raise NoteError(f"verifier key {name}: key ID {hexid} does not match the key")
        return vkey


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signer for notes (type 0x01) or cosignatures (type 0x04)."""

    name: str
    sig_type: int
    private_key: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, name: str, seed: bytes, sig_type: int = SIG_ED25519) -> Signer:
        _check_name(name)
        return cls(name, sig_type, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def vkey(self) -> Vkey:
        return Vkey(self.name, self.sig_type, self.private_key.public_key().public_bytes_raw())


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    blob: bytes  # signature bytes after the key ID (a timestamp + signature for cosignatures)

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(data: str | bytes, source: str = "note") -> Note:
    """Split a signed note into text and signature lines (signed-note §Format)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("not UTF-8", source, exc.start) from None
    sep = data.rfind("\n\n")
    if sep < 0 or not data.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)", source)
    text, sig_block = data[: sep + 1], data[sep + 2 :]
    sigs: list[NoteSignature] = []
    offset = len(text.encode()) + 1
    for line in sig_block[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise NoteError(f"malformed signature line {line[:80]!r}", source, offset)
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise NoteError("signature is not base64", source, offset) from None
        if len(raw) < 5:
            raise NoteError("signature too short", source, offset)
        sigs.append(NoteSignature(parts[1], raw[:4], raw[4:]))
        offset += len(line.encode()) + 1
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise NoteError(f"a note needs 1 to {MAX_SIGNATURES} signatures", source)
    return Note(text, tuple(sigs))


def sign_note(text: str, signer: Signer) -> NoteSignature:
    """signed-note: an Ed25519 signature over the note text."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    return NoteSignature(signer.name, signer.vkey.id, signer.private_key.sign(text.encode()))


def cosign(text: str, signer: Signer, timestamp: int) -> NoteSignature:
    """tlog-cosignature: cosignature/v1 over a checkpoint text, carrying a signed timestamp."""
    message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
    blob = timestamp.to_bytes(8, "big") + signer.private_key.sign(message)
    return NoteSignature(signer.name, signer.vkey.id, blob)


def verify_signature(note: Note, vkey: Vkey) -> int | None:
    """Check the signature `vkey` made on `note`; the cosignature time (or None for type 0x01).

    Raises NoteError if the note carries no signature by that key or the signature is invalid.
    """
    kid = vkey.id
    found = [s for s in note.signatures if s.name == vkey.name and s.key_id == kid]
    if not found:
        raise NoteError(f"no signature by key {vkey.name}+{kid.hex()}")
    sig = found[0]
    public = Ed25519PublicKey.from_public_bytes(vkey.public_key)
    try:
        if vkey.sig_type == SIG_ED25519:
            public.verify(sig.blob, note.text.encode())
            return None
        if len(sig.blob) != 8 + 64:
            raise NoteError(f"cosignature by {vkey.name} has the wrong length")
        ts = int.from_bytes(sig.blob[:8], "big")
        public.verify(sig.blob[8:], f"cosignature/v1\ntime {ts}\n{note.text}".encode())
        return ts
    except InvalidSignature:
        raise NoteError(f"signature by {vkey.name}+{kid.hex()} is invalid") from None


@dataclass(frozen=True)
class Checkpoint:
    """tlog-checkpoint body: origin, tree size, root hash."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str, source: str = "checkpoint") -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint text needs origin, size and root hash lines", source)
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("empty origin line", source)
        if not (size_s.isascii() and size_s.isdigit()) or (len(size_s) > 1 and size_s[0] == "0"):
            raise NoteError(f"tree size {size_s!r} is not a decimal number", source)
        try:
            root = base64.b64decode(root_s, validate=True)
        except binascii.Error:
            root = b""
        if len(root) != 32:
            raise NoteError("root hash is not 32 bytes of base64", source)
        return cls(origin, int(size_s), root)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: Note
    time: int | None  # from the installation's cosignature, when verified

    def __str__(self) -> str:
        return str(self.note)


def make_checkpoint(cp: Checkpoint, log: Signer, clock: Signer, timestamp: int) -> str:
    """A signed checkpoint: the log's signature, then the installation clock's cosignature."""
    text = cp.text()
    return str(Note(text, (sign_note(text, log), cosign(text, clock, timestamp))))


def open_checkpoint(
    data: str | bytes, log: Vkey, clock: Vkey | None = None, source: str = "checkpoint"
) -> SignedCheckpoint:
    """Parse and verify a signed checkpoint (log signature required, clock cosignature if given)."""
    note = parse_note(data, source)
    cp = Checkpoint.parse(note.text, source)
    if cp.origin != log.name:
        raise NoteError(f"origin {cp.origin!r} is not this log ({log.name!r})", source)
    try:
        verify_signature(note, log)
        ts = verify_signature(note, clock) if clock is not None else None
    except NoteError as exc:
        raise NoteError(str(exc), source) from None
    return SignedCheckpoint(cp, note, ts)
