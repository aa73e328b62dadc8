"""Fuzzing the decode kernel: random bytes under random link types never crash, and the
error codes agree with the fields that were filled."""

from __future__ import annotations

import numpy as np
from capture_build import eth, ipv4, ipv6, raw_batch, tcp, udp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_capture_wifi import frames as wifi_frames
from test_capture_wifi import ppi, radiotap

from medsentry.capture import batch as B
from medsentry.capture.decode import BLE_LINKTYPES, DECODED_LINKTYPES, decode

LINKTYPES = [*sorted(DECODED_LINKTYPES), 9, 104, 147, 65535]
WLAN = (B.LINKTYPE_IEEE802_11, B.LINKTYPE_IEEE802_11_RADIOTAP, B.LINKTYPE_PPI)
_FCS = b"\x01\x02\x03\x04"
# (link type, frame): radiotap with and without FCS, bare 802.11, PPI; every addressing case
VALID_WLAN = [
    v
    for f, _ in wifi_frames()
    for v in (
        (B.LINKTYPE_IEEE802_11_RADIOTAP, radiotap(0x10) + f + _FCS),
        (B.LINKTYPE_IEEE802_11_RADIOTAP, radiotap(0x00, tsft=False, extended=False) + f),
        (B.LINKTYPE_IEEE802_11, f),
        (B.LINKTYPE_PPI, ppi(f + _FCS, fcs=True)),
    )
]
VALID = [
    eth(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        0x0800,
        ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"x" * 9)),
    ),
    eth(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        0x86DD,
        ipv6("::1", "::2", 17, udp(3, 4, b"y" * 5)),
    ),
    eth(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        0x8100,
        b"\x00\x05\x08\x00" + ipv4("1.1.1.1", "2.2.2.2", 1, b"\x08\x00" + bytes(10)),
    ),
    ipv6(
        "::1",
        "::2",
        0,
        bytes([44, 0]) + bytes(6) + bytes([17, 0, 0, 0]) + bytes(4) + udp(5, 6, b"z"),
    ),
]
ERRS = {0, *B.DECODE_ERRORS}

packets = st.lists(
    st.tuples(
        st.sampled_from(LINKTYPES),
        st.one_of(
            st.binary(max_size=120),
            st.builds(
                lambda base, flips, cut: _mutate(base, flips, cut),
                st.sampled_from(VALID),
                st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
                st.integers(0, 200),
            ),
        ),
    ),
    max_size=40,
)


def _mutate(base: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    b = bytearray(base)
    for pos, val in flips:
        b[pos % len(b)] = val
    return bytes(b[: max(cut, 0) if cut < len(b) else len(b)])


def _consistent(pb: B.PacketBatch) -> None:
    raw = pb.raw
    err = pb.err
    assert set(np.unique(err).tolist()) <= ERRS
    lt = raw.linktype
    known = np.isin(lt, list(DECODED_LINKTYPES))
    assert (err[~known] == B.ERR_UNKNOWN_LINKTYPE).all()
    # PPI is known, but only with 802.11 inside it (pph_dlt 105)
    assert np.isin(lt[err == B.ERR_UNKNOWN_LINKTYPE], [*lt[~known], B.LINKTYPE_PPI]).all()
    wlan_skip = np.isin(
        err, [B.ERR_WLAN_PROTECTED, B.ERR_WLAN_NOT_DATA, B.ERR_WLAN_BAD_FCS, B.ERR_BAD_L2]
    )
    assert np.isin(lt[wlan_skip], WLAN).all()
    assert (pb.ethertype[wlan_skip] == 0).all() and (pb.ip_ver[wlan_skip] == 0).all()
    assert (pb.eth_src[err == B.ERR_BAD_L2] == 0).all()
    ble = np.isin(lt, list(BLE_LINKTYPES))
    for name in ("ethertype", "ip_ver", "err", "sport", "pl_len", "eth_src", "src_lo"):
        assert (getattr(pb, name)[ble] == 0).all(), name
    l2 = err == B.ERR_TRUNCATED_L2
    assert (pb.ethertype[l2] == 0).all() and (pb.eth_src[l2] == 0).all()
    noip = (
        np.isin(
            err,
            [B.ERR_TRUNCATED_L2, B.ERR_UNKNOWN_LINKTYPE, B.ERR_BAD_IP_HEADER, B.ERR_TRUNCATED_IP],
        )
        | wlan_skip
    )
    assert (pb.ip_ver[noip] == 0).all() and (pb.src_hi[noip] == 0).all()
    nol4 = noip | np.isin(err, [B.ERR_BAD_TCP_HEADER, B.ERR_TRUNCATED_L4]) | (pb.frag == 1)
    assert (
        (pb.sport[nol4] == 0).all()
        and (pb.dport[nol4] == 0).all()
        and (pb.tcp_seq[nol4] == 0).all()
    )
    l4err = np.isin(err, [B.ERR_BAD_TCP_HEADER, B.ERR_TRUNCATED_L4])
    assert np.isin(pb.ip_ver[l4err], [4, 6]).all()
    assert np.isin(pb.ip_ver, [0, 4, 6]).all()
    v4 = pb.ip_ver == 4
    assert (pb.src_hi[v4] == 0).all() and ((pb.src_lo[v4] >> np.uint64(32)) == 0xFFFF).all()
    arp = pb.arp_op != 0
    assert (pb.ethertype[arp] == 0x0806).all()
    has = pb.pl_len > 0
    end = raw.off.astype(np.int64) + raw.caplen
    assert (pb.pl_off[has] >= raw.off[has]).all() and (
        pb.pl_off[has] + pb.pl_len[has] <= end[has]
    ).all()
    tcp_ok = (pb.proto == 6) & (err == 0) & (pb.frag == 0) & (pb.ip_ver > 0)
    assert (pb.pl_off[tcp_ok] >= raw.off[tcp_ok] + 20).all()


@settings(max_examples=500, deadline=None)
@given(pkts=packets, gap=st.integers(0, 4))
def test_random_packets_decode_consistently(pkts: list[tuple[int, bytes]], gap: int) -> None:
    _consistent(decode(raw_batch(pkts, gap=gap)))


wlan_packets = st.lists(
    st.builds(
        lambda base, flips, cut: (base[0], _mutate(base[1], flips, cut)),
        st.sampled_from(VALID_WLAN),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
        st.integers(0, 220),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(pkts=wlan_packets, gap=st.integers(0, 4))
def test_random_wlan_frames_decode_consistently(pkts: list[tuple[int, bytes]], gap: int) -> None:
    """Radiotap/PPI/802.11 frames with flipped bytes (lengths, present bitmaps, frame control,
    DS bits) and cut anywhere: never a crash, never a field beyond the captured bytes."""
    _consistent(decode(raw_batch(pkts, gap=gap)))


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=300),
    lt=st.sampled_from(LINKTYPES),
    caplen=st.integers(0, 400),
)
def test_caplen_beyond_buffer_is_clipped(data: bytes, lt: int, caplen: int) -> None:
    """A RawBatch whose caplen overruns its buffer (never produced by the reader) is clipped."""
    rb = raw_batch([(lt, data)], gap=0)
    rb.caplen[:] = caplen
    pb = decode(rb)
    assert (pb.pl_off + pb.pl_len <= rb.buf.shape[0]).all()
