"""The compiled signature checks (identify._CHECKS, what `identify` runs) give the verdict of the
reference `_signature_verdict` (signature -> SideSpec -> Pattern -> validator) for every
signature, on random bytes and on near misses of each signature's own patterns."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols.identify import _CHECKS, SIGNATURES, UDP, _signature_verdict

# real first bytes of common protocols, to reach deep into the validators
_SEEDS = [
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04host\x07example\x00\x00\x01\x00\x01",
    b"\x16\x03\x01\x00\x2e\x01\x00\x00\x2a\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01",
    b"GET /Patient/1 HTTP/1.1\r\nHost: x\r\nAccept: application/fhir+json\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n\r\n{}",
    b"\x0bMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r\x1c\r",
    b"\x01\x00\x00\x00\x00\x44\x00\x01" + bytes(68),
    b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),
    b"\xc3\x00\x00\x00\x01\x08" + bytes(30),
    b"\x1b" + bytes(47),
    b"\x30\x26\x02\x01\x01\x04\x06public\xa0\x19",
    b"<34>1 2024-01-01T00:00:00Z host app - - - msg",
    b"SSH-2.0-OpenSSH_9.0\r\n",
    b"\x38" + bytes(range(1, 9)) + b"\x00\x00\x00\x00\x00",
    b"\x40" + bytes(range(1, 9)) + b"\x01\x00\x00\x00\x00" + bytes(range(1, 9)) + bytes(8),
    b"\x00\x00\x00\x00" + bytes(range(1, 9)) + bytes(9) + b"\x20\x22\x08\x00\x00\x00\x00\x00\x20",
    b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01\x86\xa3\x00\x00\x00\x03",
]


def _pattern_seeds() -> list[bytes]:
    """Each signature's own patterns laid out at their offsets (a match, then near misses)."""
    out = []
    for sig in SIGNATURES:
        for spec in (sig.c2s, sig.s2c, sig.any):
            if spec is None:
                continue
            for p in spec.patterns:
                for alt in p.alternatives:
                    out.append(bytes(p.offset) + alt + b"\r\n" + bytes(40))
    return out


_ALL_SEEDS = _SEEDS + _pattern_seeds()


def _mutations(rng: random.Random, data: bytes) -> list[bytes]:
    out = [data, data[: len(data) // 2], data[:1], b""]
    for _ in range(4):
        b = bytearray(data)
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        out.append(bytes(b[: rng.randrange(len(b) + 1)] if rng.random() < 0.3 else b))
    return out


def _same(c2s: bytes, s2c: bytes) -> None:
    for sig in SIGNATURES:
        check = _CHECKS[sig.name]
        for final in (False, True):
            if sig.transport == UDP:
                c_done, s_done = final or bool(c2s), final or bool(s2c)
            else:
                c_done, s_done = final or len(c2s) >= 4096, final or len(s2c) >= 4096
            for a, b, ad, bd in ((c2s, s2c, c_done, s_done), (s2c, c2s, s_done, c_done)):
                want = _signature_verdict(sig, a, b, ad, bd)
                assert check(a, b, ad, bd) == want, sig.name


def test_compiled_checks_equal_reference_on_seeds_and_near_misses() -> None:
    rng = random.Random(7)
    for seed in _ALL_SEEDS:
        for c2s in _mutations(rng, seed):
            _same(c2s, rng.choice(_ALL_SEEDS))
            _same(c2s, b"")


@settings(max_examples=80, deadline=None)
@given(
    prefix=st.sampled_from(_ALL_SEEDS),
    cut=st.integers(0, 120),
    tail=st.binary(max_size=80),
    other=st.binary(max_size=80),
)
def test_compiled_checks_equal_reference_fuzzed(
    prefix: bytes, cut: int, tail: bytes, other: bytes
) -> None:
    _same(prefix[:cut] + tail, other)
    _same(tail, prefix[:cut])
