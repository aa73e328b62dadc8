"""Google QUIC client hellos: the CHLO of Q024-Q050 and the TLS ClientHello of T050/T051, read
from nDPI's real Chrome and Cronet captures and cross-checked with tshark's gQUIC dissector
(packet-gquic.c), per flow; the null encryption's hash decides what is read; a CHLO split
over two packets, out of order; the inventory learns the phone from the UAID; hostile bytes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, tshark

from medsentry.events import encode_json
from medsentry.events.tls import QuicCryptoClientHello, TlsClientHello
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.protocols import gquic
from medsentry.protocols.base import ParseError
from medsentry.protocols.quic import QuicDissector

CHLO_CAPTURES = [
    "quic.pcap",  # Q024, Q025, Q030, Q033 (Chrome 43-50)
    "youtube_quic.pcap",  # Q035
    "quic_q39.pcap",  # Q039 (Cronet, the YouTube app)
    "quic_q43.pcap",  # Q043
    "quic046.pcap",  # Q046 (Chrome 80)
    "quic_q46.pcap",  # Q046 (Chrome on Android)
    "quic_q46_b.pcap",
    "quic_q50.pcap",  # Q050: Initial packet protection with its own salt
    "gquic.pcap",  # Q050
]


def _events(capture: Path) -> list:
    out: list = []
    Pipeline(ScanConfig()).scan_files([capture], out.extend)
    return out


@pytest.mark.parametrize("name", CHLO_CAPTURES)
def test_chlo_read_as_tshark_reads_it(ndpi_pcaps: Path, name: str) -> None:
    cap = ndpi_pcaps / name
    ours: dict[int, tuple] = {}
    for e in _events(cap):
        if isinstance(e, QuicCryptoClientHello):
            assert e.endpoints.client_port not in ours  # one hello per flow
            ours[e.endpoints.client_port] = (
                e.server_name or "",
                e.user_agent or "",
                ",".join(e.aead),
            )
            assert e.tags[0] and len(e.version) == 4
    theirs: dict[int, tuple] = {}
    for port, sni, uaid, aead in tshark(
        cap, 'gquic.tag == "CHLO"', "udp.srcport", "gquic.tag.sni", "gquic.tag.uaid",
        "gquic.tag.aead",
    ):  # fmt: skip
        theirs.setdefault(int(port), (sni, uaid, aead))  # the flow's first CHLO
    assert ours and ours == theirs


@pytest.mark.parametrize("name", ["quic_t50.pcap", "quic_t51.pcap"])
def test_t05x_tls_client_hello_read_as_tshark_reads_it(ndpi_pcaps: Path, name: str) -> None:
    cap = ndpi_pcaps / name
    hellos = [e for e in _events(cap) if isinstance(e, TlsClientHello)]
    names = {(e.server_name, "|".join(f"0x{c:04x}" for c in e.cipher_suites)) for e in hellos}
    rows = tshark(
        cap, "tls.handshake.type == 1", "tls.handshake.extensions_server_name",
        "tls.handshake.ciphersuite",
    )  # fmt: skip
    assert names and names == {(sni, suites) for sni, suites in rows}
    assert all(e.ja4.startswith("q13d") and e.record_version == 0 for e in hellos)


def _first_client_datagram(cap: Path) -> bytes:
    flow = next(f for f in flows(cap) if f.transport == "udp")
    return next(payload for direction, payload, _ in flow.items if direction == 0)


def test_the_null_encryption_hash_decides(ndpi_pcaps: Path) -> None:
    data = _first_client_datagram(ndpi_pcaps / "quic_q43.pcap")
    (hello,) = QuicDissector(ctx_for()).feed(0, data, 1)
    assert hello.server_name == "dns.google.com" and hello.version == "Q043"
    for at in (5, 40, len(data) - 1):  # the connection ID, the CHLO, the last padding byte
        broken = bytearray(data)
        broken[at] ^= 0x01
        d = QuicDissector(ctx_for())
        assert d.feed(0, bytes(broken), 1) == [] and not d.sides[0].done


def _chlo(entries: dict[bytes, bytes]) -> bytes:
    """A tag-value message (QUIC Crypto): tags ascending as little-endian integers."""
    tags = sorted(entries, key=lambda t: int.from_bytes(t, "little"))
    head, body = bytearray(b"CHLO" + len(tags).to_bytes(2, "little") + b"\x00\x00"), b""
    for tag in tags:
        body += entries[tag]
        head += tag + len(body).to_bytes(4, "little")
    return bytes(head) + body


def _q043_packet(cid: bytes, pn: int, frames: bytes) -> bytes:
    """A null-encrypted client packet: public flags (version, 8-byte CID), Q043, hash, frames."""
    header = b"\x09" + cid + b"Q043" + bytes((pn,))
    h = gquic.fnv1a_128(header, frames, b"Client")
    digest = (h & (1 << 64) - 1).to_bytes(8, "little") + (h >> 64 & 0xFFFFFFFF).to_bytes(
        4, "little"
    )
    return header + digest + frames


def _stream(offset: int, data: bytes) -> bytes:
    # STREAM 1fdooo ss: data length present, 2-byte offset, 1-byte stream ID (big endian)
    return b"\xa4\x01" + offset.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def test_a_chlo_split_over_two_packets_out_of_order() -> None:
    ua = "com.example.cgm Cronet/63.0.3223.7 Android 9; Pixel 3"
    msg = _chlo({
        b"SNI\x00": b"share2.dexcom.com", b"UAID": ua.encode(), b"VER\x00": b"Q043",
        b"AEAD": b"AESGCC20", b"KEXS": b"C255", b"PAD\x00": b"-" * 900,
    })  # fmt: skip
    cid = bytes(range(8))
    first = _q043_packet(cid, 1, _stream(0, msg[:600]))
    second = _q043_packet(cid, 2, _stream(600, msg[600:]) + b"\x00" * 40)
    d = QuicDissector(ctx_for())
    assert d.feed(0, second, 1) == []  # the CHLO's start is still missing
    (hello,) = d.feed(0, first, 2)
    assert hello.server_name == "share2.dexcom.com" and hello.user_agent == ua
    assert hello.aead == ["AESG", "CC20"] and hello.key_exchange == ["C255"]
    assert hello.tags == ["PAD", "SNI", "VER", "AEAD", "UAID", "KEXS"]
    assert d.sides[0].done and d.feed(0, first, 3) == []


def test_the_inventory_names_the_phone_behind_gquic(ndpi_pcaps: Path, tmp_path: Path) -> None:
    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    eng = InventoryEngine()
    eng.feed(_events(ndpi_pcaps / "quic_q46.pcap"))  # Chrome 74 on Android 8 (UAID)
    with open_store(f"sqlite:///{tmp_path / 'inv.db'}") as store:
        eng.finish(store, "gquic")
        phone = next(d for d in load_devices(store) if "172.29.42.236" in d.ips)
    assert phone.category is not None and phone.category.value == "it.mobile"
    assert phone.os is not None and phone.os.value == "Android 8"
    assert phone.model is not None and phone.model.value == "BND-L21"  # a Huawei Honor 7X
    (why,) = [e for e in phone.os.evidence if e.source == "http.user_agent"]
    assert why.observed == "Chrome/74.0.3729.157 Android 8.0.0; BND-L21"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(3)), st.integers(0, 1400), st.binary(min_size=1, max_size=8))
def test_hostile_bytes_give_events_or_a_parse_error(
    ndpi_pcaps: Path, which: int, at: int, flip: bytes
) -> None:
    name = ("quic_q43.pcap", "quic046.pcap", "quic_q50.pcap")[which]
    good = _SEEDS.setdefault(name, _first_client_datagram(ndpi_pcaps / name))
    broken = bytearray(good)
    for i, x in enumerate(flip):
        broken[(at + i) % len(broken)] ^= x
    for data in (bytes(broken), good[:at]):
        with contextlib.suppress(ParseError):
            for ev in QuicDissector(ctx_for()).feed(0, data, 1):
                encode_json(ev)


_SEEDS: dict[str, bytes] = {}
