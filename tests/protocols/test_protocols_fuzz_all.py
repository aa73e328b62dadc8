"""Every registered dissector, fuzzed the same way: any bytes in any order, with gaps and a close,
yield events (serializable ones) or a ParseError, never another exception; and a long hostile
stream (no delimiters, huge announced lengths) is held in bounded memory.

The list comes from the registry itself (`medsentry.protocols.registry`), so a dissector added
later is fuzzed without touching this file. Each protocol's streams start, half of the time,
with a prefix of its own grammar so that the fuzzing reaches past the first check.
"""

from __future__ import annotations

import contextlib
import os
import tracemalloc

import pytest
import seeded_fuzz
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.events.base import Endpoints
from medsentry.protocols import registry
from medsentry.protocols.base import FlowContext, ParseError

registry.load()
STREAM = sorted(registry.STREAM_DISSECTORS)

# the first bytes a real client sends, per protocol (the grammar the fuzzer then breaks)
PREFIX: dict[str, bytes] = {
    "dicom": b"\x01\x00\x00\x00\x00\xcd\x00\x01\x00\x00PACS            ",  # A-ASSOCIATE-RQ
    "dicom-tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "hl7-mllp": b"\x0bMSH|^~\\&|MON|ICU|EHR|H|20260101||ORU^R01|1|P|2.5\rPID|1||",
    "hl7": b"\x0bMSH|^~\\&|",
    "http": b"GET /fhir/Patient/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n",
    "fhir": b"POST /fhir/Patient HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n",
    "tls": b"\x16\x03\x01\xff\xff\x01\xff\xff\xfb\x03\x03",
    # a v1 Initial: 8-byte DCID, no SCID, no token, Length 1162 (RFC 9000 §17.2.2)
    "quic": b"\xc3\x00\x00\x00\x01\x08\x83\x94\xc8\xf0\x3e\x51\x57\x08\x00\x00\x44\x8a",
    "tuya-lp": b"\x00\x00\x55\xaa\x00\x00\x00\x00\x00\x00\x00\x13\x00\x00\x00\xac\x00\x00\x00\x00",
    "mqtt": b"\x10\xff\xff\xff\x7f\x00\x04MQTT\x04\xc2",
    "ftp": b"USER radtech\r\nPASS ",
    "pop3": b"USER nurse\r\nPASS ",
    "imap": b"a1 LOGIN {999999}\r\n",
    "telnet": b"\xff\xfd\x18login: ",
    "snmp": b"0\x84\xff\xff\xff\xff\x02\x01\x01\x04\x06public",
    "dns": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    "mdns": b"\x00\x00\x84\x00\x00\x00\x00\x05\x00\x00\x00\x00",
    "llmnr": b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    # a name registration request (RFC 1002 §4.2.2), its first-level encoded name begun
    "netbios": b"\x8e\x2b\x28\x10\x00\x01\x00\x00\x00\x00\x00\x01\x20EMEFEEFC",
    "dhcp": b"\x01\x01\x06\x00" + bytes(232) + b"\x63\x82\x53\x63\x35\x01\x01",
    "dhcpv6": b"\x01\x12\x34\x56\x00\x01\x00\x0e",
    "ssdp": b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ",
}


def test_every_registered_dissector_has_a_prefix() -> None:
    assert set(STREAM) <= set(PREFIX), set(STREAM) - set(PREFIX)


def _ctx(transport: str = "tcp") -> FlowContext:
    ep = Endpoints(client="10.0.0.2", server="10.0.0.1", transport=transport)
    return FlowContext("fuzz", ep, b"k" * 32)


_check = seeded_fuzz.check_events


def _drive(protocol: str, ops: list, transport: str) -> None:
    seeded_fuzz.drive(registry.STREAM_DISSECTORS[protocol](_ctx(transport)), ops)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.integers(0, 1), st.binary(max_size=2048)),
        st.tuples(st.just("gap"), st.integers(0, 1), st.integers(1, 1 << 20)),
    ),
    max_size=16,
)


@pytest.mark.parametrize("protocol", STREAM)
@settings(max_examples=60, deadline=None)
@given(ops=OPS, prefixed=st.booleans(), transport=st.sampled_from(["tcp", "udp"]))
def test_fuzz_stream_dissector(protocol: str, ops: list, prefixed: bool, transport: str) -> None:
    if prefixed:
        ops = [("feed", 0, PREFIX[protocol]), *ops]
    _drive(protocol, ops, transport)


@pytest.mark.parametrize("protocol", STREAM)
def test_hostile_stream_memory_is_bounded(protocol: str) -> None:
    """4 MiB each way after the protocol's prefix, in 256 KiB pieces, of bytes that never close
    a frame (no delimiter, no end of a length-announced unit): the dissector refuses or stays
    small (less than one direction's bytes are ever held)."""
    chunk = 1 << 18
    for filler in (b"A", b"\x00", os.urandom(chunk)):
        d = registry.STREAM_DISSECTORS[protocol](_ctx())
        piece = filler * (chunk // len(filler))
        tracemalloc.start()
        try:
            _check(d.feed(0, PREFIX[protocol], 1))
            for _ in range(16):
                _check(d.feed(0, piece, 1))
                _check(d.feed(1, piece, 1))
        except ParseError:
            pass
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < 3 << 20, f"{protocol}: {peak / 1e6:.1f} MB held for a hostile stream"


FRAMES = [(1, 0x88CC), (1, 0), (251, 0), (256, 0), (272, 0)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FRAMES), st.binary(max_size=600))
def test_fuzz_frame_dissectors(kind: tuple[int, int], frame: bytes) -> None:
    linktype, ethertype = kind
    for dissect in registry.FRAME_DISSECTORS:
        with contextlib.suppress(ParseError):
            _check(dissect(linktype, ethertype, frame, 1, 0))
