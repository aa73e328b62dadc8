"""QUIC Initial packets: aioquic client and server (a real QUIC stack) on loopback, captured with
tcpdump, read by the dissector and by the whole pipeline, cross-checked with tshark (which
decrypts Initial packets the same way); the RFC 9001 / RFC 9369 key derivation vectors; a
ClientHello from a real TLS stack split over CRYPTO frames in reverse order across datagrams;
hostile bytes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import socket
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, free_port, run, self_signed, tcpdump, tshark

from medsentry.events import encode_json
from medsentry.events.tls import TlsClientHello, TlsServerHello
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.protocols import quic
from medsentry.protocols.base import ParseError
from medsentry.protocols.quic import QuicDissector

pytestmark = pytest.mark.xdist_group("net_live_captures")

SNI = "cgm-uploader.example-medical.com"
ALPN = "h3"


def test_initial_keys_match_rfc9001_and_rfc9369_vectors() -> None:
    dcid = bytes.fromhex("8394c8f03e515708")  # RFC 9001 Appendix A / RFC 9369 Appendix A
    client, server = quic.initial_keys(dcid, quic.VERSION_1)
    initial = hmac.new(quic._SALT_V1, dcid, hashlib.sha256).digest()
    csec = quic._expand_label(initial, b"client in", 32)
    assert csec.hex() == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert quic._expand_label(csec, b"quic key", 16).hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert client.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert server.iv.hex() == "0ac1493ca1905853b0bba03e"
    # RFC 9001 A.2: the header protection mask of the client Initial's sample
    sample = bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b")
    assert client.mask(sample)[:5].hex() == "437b9aec36"
    v2_client, _ = quic.initial_keys(dcid, quic.VERSION_2)
    assert v2_client.iv.hex() == "91f73e2351d8fa91660e909f"
    assert quic.decode_packet_number(0xA82F30EA, 0x9B32, 16) == 0xA82F9B32  # RFC 9000 A.3


# -- a real QUIC stack --


def _exchange(port: int, cert: Path, key: Path) -> None:
    """An aioquic client completes a handshake with an aioquic server and closes."""
    from aioquic.asyncio import connect, serve
    from aioquic.quic.configuration import QuicConfiguration

    async def main() -> None:
        server_cfg = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
        server_cfg.load_cert_chain(str(cert), str(key))
        server = await serve("127.0.0.1", port, configuration=server_cfg)
        try:
            client_cfg = QuicConfiguration(
                is_client=True, alpn_protocols=[ALPN], server_name=SNI, verify_mode=ssl.CERT_NONE
            )
            async with connect("127.0.0.1", port, configuration=client_cfg) as client:
                await client.ping()
        finally:
            server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.fixture(scope="module")
def quic_capture(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("quic")
    cert, key = self_signed(
        tmp, SNI, serial=7, not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dns=(SNI,)
    )
    port = free_port(socket.SOCK_DGRAM)
    path = tmp / "quic.pcap"
    with tcpdump(path, f"udp port {port}"):
        _exchange(port, cert, key)
    return path


def test_aioquic_handshake_read_as_tshark_reads_it(quic_capture: Path) -> None:
    (flow,) = [f for f in flows(quic_capture) if f.transport == "udp"]
    events = run(QuicDissector(ctx_for(flow.endpoints)), flow.items)
    (ch,) = [e for e in events if isinstance(e, TlsClientHello)]
    (sh,) = [e for e in events if isinstance(e, TlsServerHello)]
    assert ch.server_name == SNI and ch.alpn == [ALPN]
    assert ch.record_version == 0 and ch.max_version == "TLS 1.3"
    assert ch.ja4.startswith("q13d") and ch.ja4[8:10] == "h3"
    assert sh.version == "TLS 1.3" and sh.alpn is None  # ALPN: EncryptedExtensions (RFC 8446)
    assert sh.ja4s.startswith("q13")
    # a capture that begins after the handshake: the first 1-RTT (short header) packet of each
    # side ends the reading there, and the flow layer stops feeding the flow's datagrams
    d = QuicDissector(ctx_for(flow.endpoints))
    late = [(di, p, ts) for di, p, ts in flow.items if not p[0] & 0x80]
    assert {di for di, _, _ in late} == {0, 1}
    assert run(d, late) == [] and d.done
    # tshark decrypts the same Initial packets (RFC 9001 §5.2)
    rows = tshark(
        quic_capture,
        "tls.handshake.type == 1",
        "tls.handshake.extensions_server_name",
        "tls.handshake.ciphersuite",
        "tls.handshake.extension.type",
    )
    assert rows, "tshark found no ClientHello"
    sni, suites, exts = rows[0]
    assert sni == SNI
    assert [int(c, 0) for c in suites.split("|")] == ch.cipher_suites
    assert [int(x) for x in exts.split("|")] == ch.extensions
    (server_row,) = tshark(quic_capture, "tls.handshake.type == 2", "tls.handshake.ciphersuite")
    assert int(server_row[0], 0) == sh.cipher_suite


def test_the_pipeline_names_the_cloud_behind_quic(quic_capture: Path) -> None:
    events: list = []
    Pipeline(ScanConfig()).scan_files([quic_capture], events.extend)
    hellos = [e for e in events if isinstance(e, TlsClientHello)]
    assert [h.server_name for h in hellos] == [SNI]
    flow = next(e for e in events if type(e).__name__ == "FlowRecord")
    assert flow.app_protocol == "quic" and hellos[0].flow_id == flow.flow_id


# -- a ClientHello split over CRYPTO frames, packets and datagrams --


def _client_hello_message(server_name: str) -> bytes:
    """The ClientHello handshake message a real TLS stack (OpenSSL through `ssl`) writes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols([ALPN])
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    record = outgoing.read()
    assert record[0] == 22  # handshake record (RFC 8446 §5.1); its fragment is the message
    return record[5 : 5 + int.from_bytes(record[3:5], "big")]


def _varint(v: int) -> bytes:
    """RFC 9000 §16, the two-byte form where it fits."""
    if v < 0x40:
        return bytes((v,))
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    return (0x80000000 | v).to_bytes(4, "big")


def _protect(dcid: bytes, pn: int, frames: bytes, version: int = quic.VERSION_1) -> bytes:
    """A client Initial packet protected as RFC 9001 §5.3-5.4 says (the sender's side)."""
    keys, _ = quic.initial_keys(dcid, version)
    payload = frames + bytes(max(0, 1162 - len(frames)))  # PADDING up to a 1200-byte datagram
    pn_bytes = pn.to_bytes(2, "big")
    ptype = 1 if version == quic.VERSION_2 else 0
    first = 0xC0 | (ptype << 4) | 0x01  # long header, Initial, 2-byte packet number
    length = _varint(len(pn_bytes) + len(payload) + 16)
    header = bytes((first,)) + version.to_bytes(4, "big") + bytes((len(dcid),)) + dcid
    header += b"\x00" + b"\x00" + length + pn_bytes  # SCID length 0, no token
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = keys.aead.encrypt(nonce, payload, header)
    pn_off = len(header) - 2
    mask = keys.mask(sealed[2:18])
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    out[pn_off] ^= mask[1]
    out[pn_off + 1] ^= mask[2]
    return bytes(out)


def _crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


@pytest.mark.parametrize("version", [quic.VERSION_1, quic.VERSION_2])
def test_a_client_hello_split_and_reordered_across_datagrams(version: int) -> None:
    name = "share2.dexcom.com"
    msg = _client_hello_message(name)
    a, b, c = msg[:200], msg[200:420], msg[420:]
    dcid = os.urandom(8)
    # as Chrome's "chaos protection" does: pieces out of order, PING and PADDING between
    first = _protect(dcid, 0, _crypto(420, c) + b"\x01\x00\x00" + _crypto(200, b), version)
    second = _protect(dcid, 1, _crypto(0, a), version)
    d = QuicDissector(ctx_for())
    assert d.feed(0, first, 1) == []  # the stream's start is still missing
    (hello,) = d.feed(0, second, 2)
    assert isinstance(hello, TlsClientHello) and hello.server_name == name
    assert hello.ja4.startswith("q13d") and d.sides[0].done
    assert d.feed(0, first, 3) == []  # read once


def test_v2_packet_types_are_rfc9369s() -> None:
    # v2 numbers its long header types differently (RFC 9369 §3.2): 0b10 is 0-RTT, not Retry
    dcid = os.urandom(8)
    d = QuicDissector(ctx_for())
    first = _protect(dcid, 0, _crypto(0, b"\x01\x00\x01\x00"), quic.VERSION_2)
    zero_rtt = bytes((0xC0 | 0b10 << 4,)) + quic.VERSION_2.to_bytes(4, "big") + b"\x08" + dcid
    zero_rtt += b"\x00" + _varint(40) + os.urandom(40)
    assert d.feed(0, first + zero_rtt, 1) == []
    assert d.keys is not None  # a Retry would have dropped them


def test_wrong_keys_and_unknown_versions_read_nothing() -> None:
    msg = _client_hello_message("example.org")
    pkt = bytearray(_protect(os.urandom(8), 0, _crypto(0, msg)))
    pkt[-1] ^= 1  # the AEAD tag no longer verifies
    assert QuicDissector(ctx_for()).feed(0, bytes(pkt), 1) == []
    q050 = bytearray(_protect(os.urandom(8), 0, _crypto(0, msg)))
    q050[1:5] = b"Q050"  # v1 protection under another version's header: Q050's keys fail
    d = QuicDissector(ctx_for())
    assert d.feed(0, bytes(q050), 1) == [] and not d.sides[0].done
    unknown = bytearray(q050)
    unknown[1:5] = b"\x00\x00\x00\x07"  # no known Initial salt
    d = QuicDissector(ctx_for())
    assert d.feed(0, bytes(unknown), 1) == [] and d.sides[0].done


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500), st.integers(0, 1300), st.binary(min_size=1, max_size=8))
def test_hostile_bytes_give_events_or_a_parse_error(junk: bytes, at: int, flip: bytes) -> None:
    good = _protect(b"\x01\x02\x03\x04\x05\x06\x07\x08", 0, _crypto(0, b"\x01\x00\x00\x10"))
    broken = bytearray(good)
    for i, x in enumerate(flip):
        broken[(at + i) % len(broken)] ^= x
    for data in (junk, bytes(broken), good[:at]):
        with contextlib.suppress(ParseError):
            for ev in QuicDissector(ctx_for()).feed(0, data, 1):
                encode_json(ev)
