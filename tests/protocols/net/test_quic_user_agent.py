"""Chromium's google_user_agent QUIC transport parameter (0x3129) in IETF QUIC and Google T05x
ClientHellos: read per flow as tshark reads it (tls.quic.parameter.google.user_agent), in the
RFC 9000 varint encoding and the u16 encoding of drafts up to 27; a malformed parameter list
spoils nothing else of the hello; the inventory names an Android phone from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.events.tls import TlsClientHello
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.protocols.tls import (
    EXT_QUIC_TRANSPORT_PARAMETERS as RFC,
)
from medsentry.protocols.tls import (
    EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT as DRAFT,
)
from medsentry.protocols.tls import (
    TP_GOOGLE_USER_AGENT,
    _google_user_agent,
)

CAPTURES = [
    "quic-27.pcap",  # draft-27: the u16 parameter encoding
    "quic_t50.pcap",  # Google T050 (u16 encoding under extension 0xffa5)
    "quic_t51.pcap",  # Google T051
    "os_detected.pcapng",  # draft-29
    "quic_frags_ch_out_of_order_same_packet_craziness.pcapng",  # 113 flows, ClientHello in pieces
    "sites.pcapng",  # QUIC v1
    "quic-29.pcap",  # no user agent sent: none read
]


def _hellos(capture: Path) -> list[TlsClientHello]:
    out: list = []
    Pipeline(ScanConfig()).scan_files([capture], out.extend)
    return [e for e in out if isinstance(e, TlsClientHello)]


@pytest.mark.parametrize("name", CAPTURES)
def test_user_agent_read_as_tshark_reads_it(ndpi_pcaps: Path, name: str) -> None:
    cap = ndpi_pcaps / name
    ours = {
        (e.endpoints.client_port, e.user_agent or "")
        for e in _hellos(cap)
        if e.endpoints.transport == "udp"  # QUIC; the capture may hold TLS over TCP too
    }
    rows = tshark(
        cap, "tls.handshake.type == 1", "udp.srcport", "tls.quic.parameter.google.user_agent"
    )
    theirs = {(int(port), ua) for port, ua in rows if port}
    assert ours and ours == theirs


def test_ndpi_user_agents_all_read(ndpi_pcaps: Path) -> None:
    """nDPI's expected results list these user agents for the QUIC flows of the captures."""
    want = {
        "quic-27.pcap": "beta Chrome/84.0.4147.45 Windows NT 10.0; Win64; x64",
        "quic_t50.pcap": "Chrome/85.0.4183.83 Windows NT 6.1; Win64; x64",
        "quic_t51.pcap": "dev Chrome/86.0.4240.9 Windows NT 6.1; Win64; x64",
    }
    for name, ua in want.items():
        assert {e.user_agent for e in _hellos(ndpi_pcaps / name)} == {ua}


def _tp(pid: int, value: bytes) -> bytes:
    def varint(n: int) -> bytes:
        if n < 0x40:
            return bytes([n])
        if n < 0x4000:
            return (0x4000 | n).to_bytes(2, "big")
        return (0x80000000 | n).to_bytes(4, "big")

    return varint(pid) + varint(len(value)) + value


def test_both_encodings_and_malformed_lists() -> None:
    ua = b"Chrome/120.0.0.0 Android 14; Pixel 8"
    varint = _tp(0x01, b"\x80\x00\x75\x30") + _tp(TP_GOOGLE_USER_AGENT, ua)
    for ext in (RFC, DRAFT):
        assert _google_user_agent(ext, varint) == ua.decode()
    params = b"\x00\x01\x00\x04\x80\x00\x75\x30" + b"\x31\x29" + len(ua).to_bytes(2, "big") + ua
    u16 = len(params).to_bytes(2, "big") + params
    assert _google_user_agent(DRAFT, u16) == ua.decode()  # draft-27, T050
    assert _google_user_agent(RFC, u16) is None  # RFC 9001's extension: varints only
    assert _google_user_agent(RFC, _tp(0x01, b"\x00")) is None  # no such parameter
    assert _google_user_agent(RFC, varint[:-5]) is None  # the value runs past the list
    assert _google_user_agent(DRAFT, u16[:-5]) is None
    assert _google_user_agent(RFC, b"\xc0") is None  # a varint cut short
    assert _google_user_agent(RFC, b"") is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([RFC, DRAFT]), st.binary(max_size=64))
def test_any_parameter_bytes_give_a_string_or_none(ext: int, data: bytes) -> None:
    got = _google_user_agent(ext, data)
    assert got is None or (isinstance(got, str) and len(got) <= 256)


def test_the_inventory_names_the_android_phone(ndpi_pcaps: Path, tmp_path: Path) -> None:
    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    out: list = []
    cap = ndpi_pcaps / "quic_frags_ch_out_of_order_same_packet_craziness.pcapng"
    Pipeline(ScanConfig()).scan_files([cap], out.extend)
    eng = InventoryEngine()
    eng.feed(out)
    with open_store(f"sqlite:///{tmp_path / 'inv.db'}") as store:
        eng.finish(store, "quic-ua")
        devices = load_devices(store)
    # the capture's addresses and MACs were scrambled (each flow its own client MAC): every
    # device that sent this user agent is named the same way
    phones = [d for d in devices if d.model is not None and d.model.value == "SM-A125F"]
    assert phones  # a Samsung Galaxy A12, Chrome 92 on Android 10
    for phone in phones:
        assert phone.category is not None and phone.category.value == "it.mobile"
        assert phone.os is not None and phone.os.value == "Android 10"
        (why,) = [e for e in phone.model.evidence if e.source == "http.user_agent"]
        assert why.observed == "dev Chrome/92.0.4503.0 Android 10; SM-A125F"
