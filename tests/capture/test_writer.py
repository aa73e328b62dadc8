"""The pcap writer and frame builders, checked against independent readers (tshark, dpkt)."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.capture.writer import (
    ACK,
    CLIENT,
    SERVER,
    SYN,
    FrameLog,
    Host,
    PcapWriter,
    TcpSession,
    ethernet,
    fill_checksums,
    internet_checksum,
    ipv4,
    ipv6,
    tcp,
    udp,
)

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
T0 = 1_700_000_000_000_000_000


def _tshark(*args: str) -> str:
    assert TSHARK is not None
    res = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _follow_raw(path: Path, stream: int) -> tuple[bytes, bytes]:
    """Both directions of one TCP stream as reassembled by tshark (`-z follow,tcp,raw`)."""
    out = _tshark("-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}")
    sides = [bytearray(), bytearray()]
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1]
    for line in body.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        side = 1 if line.startswith("\t") else 0
        sides[side] += bytes.fromhex(line.strip())
    return bytes(sides[0]), bytes(sides[1])


def _hosts() -> tuple[Host, Host, Host, Host]:
    ct = Host("10.20.0.5", "00:1b:21:aa:bb:cc", vlan=20, gateway_mac="00:00:0c:07:ac:14", ttl=64)
    pacs = Host("10.30.0.9", "00:50:56:11:22:33", vlan=30, gateway_mac="00:00:0c:07:ac:1e")
    a6 = Host("fd00:20::5", "00:1b:21:aa:bb:cd")
    b6 = Host("fd00:20::9", "00:1b:21:aa:bb:ce")
    return ct, pacs, a6, b6


def _sessions(tmp_path: Path) -> tuple[Path, list[tuple[bytes, bytes]]]:
    ct, pacs, a6, b6 = _hosts()
    rng = random.Random(7)
    log = FrameLog()
    expected = []
    t = T0
    for i, (c, s) in enumerate([(ct, pacs), (a6, b6), (ct, pacs)]):
        req_len, resp_len = [(250_000, 3000), (1461, 0), (1460, 17)][i]  # window-bound, odd
        req, resp = rng.randbytes(req_len), rng.randbytes(resp_len)
        sess = TcpSession(
            log, c, s, 40000 + i, 104, isn_client=rng.getrandbits(32), isn_server=0xFFFFFF00
        )
        t = sess.open(t)
        t = sess.send(CLIENT, req, t)
        if resp:
            t = sess.send(SERVER, resp, t + 1000)
        t = sess.close(t + 5000, by=SERVER if i == 1 else CLIENT)
        expected.append((req, resp))
        t += 1_000_000
    log.add(t, ct.udp_frame(pacs, 5353, 53, b"\x12\x34" + bytes(10)))
    log.add(t + 1, a6.udp_frame(b6, 123, 123, b"\x23" + bytes(47)))
    path = tmp_path / "sessions.pcap"
    log.write(path)
    return path, expected


@needs_tshark
def test_checksums_are_correct_for_tshark(tmp_path: Path) -> None:
    path, _ = _sessions(tmp_path)
    bad = _tshark(
        "-r",
        str(path),
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        "tcp.checksum.status==0 or ip.checksum.status==0 or udp.checksum.status==0",
    )
    assert bad.strip() == ""
    good = _tshark(
        "-r",
        str(path),
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-Y",
        "tcp.checksum.status==1 or udp.checksum.status==1",
    )
    assert len(good.splitlines()) > 100
    # no TCP analysis complaints: no lost segment, no out-of-order, no bad ACK
    warn = _tshark("-r", str(path), "-Y", "tcp.analysis.flags && !tcp.analysis.window_update")
    assert warn.strip() == ""


@needs_tshark
def test_tshark_reassembles_exactly_the_bytes_written(tmp_path: Path) -> None:
    path, expected = _sessions(tmp_path)
    for stream, (req, resp) in enumerate(expected):
        c2s, s2c = _follow_raw(path, stream)
        assert c2s == req
        assert s2c == resp


def test_session_segments_at_mss_with_consistent_seq_and_ack(tmp_path: Path) -> None:
    path, expected = _sessions(tmp_path)
    with path.open("rb") as fh:
        pkts = [(ts, dpkt.ethernet.Ethernet(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    assert [ts for ts, _ in pkts] == sorted(ts for ts, _ in pkts)
    first = pkts[0][1]
    assert isinstance(first.data, dpkt.ip.IP)  # VLAN tag decoded by dpkt
    assert first.vlan_tags[0].id == 20
    assert first.data.data.flags == SYN
    assert first.dst == bytes.fromhex("00000c07ac14")  # the router: the PACS is on another VLAN
    segs = [e.data.data for _, e in pkts if isinstance(e.data.data, dpkt.tcp.TCP)]
    assert max(len(s.data) for s in segs) == 1460
    flows: dict[tuple[int, int], list[dpkt.tcp.TCP]] = {}
    for s in segs:
        flows.setdefault((s.sport, s.dport), []).append(s)
    for (sport, _), fwd in flows.items():
        if sport == 104:
            continue
        nxt = fwd[0].seq + 1
        for s in fwd[1:]:
            assert s.seq == nxt
            nxt = (nxt + len(s.data) + (1 if s.flags & 1 else 0)) & 0xFFFFFFFF
        assert sum(len(s.data) for s in fwd) in {len(r) for r, _ in expected}
        assert all(s.flags & ACK for s in fwd[1:])


def test_ethernet_pads_to_minimum_and_tags_vlan() -> None:
    f = ethernet("ff:ff:ff:ff:ff:ff", "00:1b:21:00:00:01", 0x0806, b"x" * 10, vlan=100, pcp=5)
    assert len(f) == 60
    assert f[12:16] == struct.pack("!HH", 0x8100, 5 << 13 | 100)
    with pytest.raises(ValueError):
        ethernet("ff:ff:ff:ff:ff", "00:1b:21:00:00:01", 0x0800, b"")


@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_internet_checksum_agrees_with_dpkt(data: bytes, initial: int) -> None:
    assert internet_checksum(data) == dpkt.dpkt.in_cksum(data)
    # RFC 1071 §1: data plus its checksum sums to all ones (verifies to zero)
    padded = data + (b"\x00" if len(data) % 2 else b"")
    assert internet_checksum(padded + struct.pack("!H", internet_checksum(data))) == 0


def _frames(payloads: list[bytes]) -> list[bytes]:
    out = []
    for i, p in enumerate(payloads):
        if i % 4 == 0:
            l4 = tcp("10.0.0.1", "10.0.0.2", 1000 + i, 2575, i * 7919, 42, ACK, p)
            out.append(
                ethernet(
                    "02:00:00:00:00:02",
                    "02:00:00:00:00:01",
                    0x0800,
                    ipv4("10.0.0.1", "10.0.0.2", 6, l4, ident=i),
                )
            )
        elif i % 4 == 1:
            l4 = udp("10.0.0.1", "10.0.0.2", 53, 1000 + i, p)
            out.append(
                ethernet(
                    "02:00:00:00:00:02",
                    "02:00:00:00:00:01",
                    0x0800,
                    ipv4("10.0.0.1", "10.0.0.2", 17, l4),
                    vlan=7,
                )
            )
        elif i % 4 == 2:
            l4 = tcp("fd00::1", "fd00::2", 1000 + i, 443, 1, 2, ACK, p)
            out.append(
                ethernet(
                    "02:00:00:00:00:02",
                    "02:00:00:00:00:01",
                    0x86DD,
                    ipv6("fd00::1", "fd00::2", 6, l4),
                )
            )
        else:
            l4 = udp("fd00::1", "fd00::2", 123, 123, p)
            out.append(
                ethernet(
                    "02:00:00:00:00:02",
                    "02:00:00:00:00:01",
                    0x86DD,
                    ipv6("fd00::1", "fd00::2", 17, l4),
                    vlan=9,
                )
            )
    return out


def _zero_checksums(frame: bytes) -> bytes:
    b = bytearray(frame)
    p = 18 if b[12:14] == b"\x81\x00" else 14
    if b[p] >> 4 == 4:
        b[p + 10 : p + 12] = b"\x00\x00"
        proto, l4 = b[p + 9], p + 20
    else:
        proto, l4 = b[p + 6], p + 40
    ck = l4 + (16 if proto == 6 else 6)
    b[ck : ck + 2] = b"\xff\xff"  # garbage, not zero: the kernel must overwrite it
    return bytes(b)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=1500), min_size=1, max_size=12))
def test_bulk_checksums_match_the_builders(payloads: list[bytes]) -> None:
    frames = _frames(payloads)
    blob = np.frombuffer(b"".join(_zero_checksums(f) for f in frames), dtype=np.uint8).copy()
    lens = np.array([len(f) for f in frames], dtype=np.int64)
    off = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    assert fill_checksums(blob, off, lens) == len(frames)
    assert blob.tobytes() == b"".join(frames)


def test_bulk_checksums_skip_frames_that_do_not_fit() -> None:
    frame = _frames([b"abc"])[0]
    blob = np.frombuffer(frame, dtype=np.uint8).copy()
    # claimed longer than the buffer, or cut inside the IP header: left untouched, no crash
    assert fill_checksums(blob, np.array([0]), np.array([len(frame) + 10])) == 0
    assert fill_checksums(blob, np.array([0]), np.array([20])) == 0
    assert fill_checksums(blob, np.array([-5]), np.array([20])) == 0
    assert blob.tobytes() == frame


@pytest.mark.parametrize("nanosecond", [False, True])
def test_batch_write_equals_one_by_one(tmp_path: Path, nanosecond: bool) -> None:
    rng = np.random.default_rng(3)
    frames = _frames([rng.bytes(int(n)) for n in rng.integers(0, 1400, size=300)])
    ts = T0 + np.cumsum(rng.integers(1, 10**7, size=len(frames)))
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    with PcapWriter(a, nanosecond=nanosecond) as w:
        for f, t in zip(frames, ts, strict=True):
            w.write(f, int(t))
    blob = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lens = np.array([len(f) for f in frames])
    off = np.concatenate(([0], np.cumsum(lens)[:-1]))
    with PcapWriter(b, nanosecond=nanosecond) as w:
        w.write_batch(blob, off, lens, ts, chunk_bytes=4096)  # many chunks
    assert a.read_bytes() == b.read_bytes()
    with b.open("rb") as fh:
        rd = dpkt.pcap.Reader(fh)
        got = list(rd)
    assert [bytes(x) for _, x in got] == frames
    raw = b.read_bytes()
    magic = struct.unpack_from("<I", raw)[0]
    assert magic == (0xA1B23C4D if nanosecond else 0xA1B2C3D4)
    sec, frac = struct.unpack_from("<II", raw, 24)  # first record's time stamp, exact
    assert sec * 10**9 + frac * (1 if nanosecond else 1000) == int(ts[0]) // (
        1 if nanosecond else 1000
    ) * (1 if nanosecond else 1000)


def test_snaplen_truncates_and_keeps_wire_length(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    frame = _frames([bytes(1000)])[0]
    with PcapWriter(path, snaplen=96) as w:
        w.write(frame, T0)
        w.write_batch(
            np.frombuffer(frame, np.uint8),
            np.array([0]),
            np.array([len(frame)]),
            np.array([T0 + 1000]),
        )
    raw = path.read_bytes()
    assert struct.unpack_from("<IHHiIII", raw)[5] == 96
    for rec in (24, 24 + 16 + 96):
        assert struct.unpack_from("<II", raw, rec + 8) == (96, len(frame))
    assert len(raw) == 24 + 2 * (16 + 96)


def test_write_batch_rejects_frames_outside_the_buffer(tmp_path: Path) -> None:
    with PcapWriter(tmp_path / "x.pcap") as w, pytest.raises(ValueError, match="outside"):
        w.write_batch(np.zeros(10, np.uint8), np.array([5]), np.array([10]), np.array([T0]))


def test_routed_frames_are_seen_on_the_spanned_side() -> None:
    server = Host(
        "10.10.0.20",
        "00:06:5b:10:00:20",
        vlan=10,
        gateway_mac="00:00:0c:07:ac:0a",
        ttl=64,
        spanned=False,
    )
    device = Host("10.20.0.11", "44:4b:5d:20:00:11", vlan=20, gateway_mac="00:00:0c:07:ac:14")
    up = dpkt.ethernet.Ethernet(device.udp_frame(server, 5000, 104, b"x"))
    down = dpkt.ethernet.Ethernet(server.udp_frame(device, 104, 5000, b"y"))
    # both directions on VLAN 20: to the router, and from the router (TTL one less)
    assert up.vlan_tags[0].id == down.vlan_tags[0].id == 20
    assert up.dst == down.src == bytes.fromhex("00000c07ac14")
    assert down.dst == bytes.fromhex("444b5d200011")
    assert (up.data.ttl, down.data.ttl) == (64, 63)
    assert dpkt.dpkt.in_cksum(bytes(down.data)[:20]) == 0  # header checksum covers the TTL


@needs_tshark
def test_benchmark_generator_writes_a_valid_capture(tmp_path: Path) -> None:
    """benchmarks/gen_capture.py (bulk builders + fill_checksums + write_batch) end to end."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gen_capture.py"
    spec = importlib.util.spec_from_file_location("gen_capture", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # dataclasses look their module up
    spec.loader.exec_module(gen)
    path = tmp_path / "bench.pcap"
    stats = gen.generate(
        path,
        30_000,
        seed=3,
        n_clients=50,
        epoch_packets=12_000,
        vlan_tags=True,
        rate_pps=20_000.0,
        verbose=False,
    )
    assert stats["packets"] == 30_000
    assert 300 < stats["mean_frame"] < 1000
    bad = _tshark(
        "-r", str(path), "-d", "tcp.port==104,dicom",
        "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
        "-o", "ip.check_checksum:TRUE",
        "-Y", "tcp.checksum.status!=1 and tcp or ip.checksum.status!=1 or udp.checksum.status!=1"
              " and udp or _ws.malformed or _ws.expert.severity>=warning",
    )  # fmt: skip
    assert bad.strip() == ""
    phs = _tshark("-r", str(path), "-d", "tcp.port==104,dicom", "-q", "-z", "io,phs")
    for proto in ("vlan", "dicom", "hl7", "tls", "http", "ssh", "dns", "ntp", "snmp", "syslog"):
        assert f" {proto} " in phs, proto
    with path.open("rb") as fh:
        times = [ts for ts, _ in dpkt.pcap.Reader(fh)]
    assert times == sorted(times)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([CLIENT, SERVER]), st.integers(1, 120_000)), max_size=6),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([536, 1460]),
    st.sampled_from([100_000, 5_000_000]),  # LAN, and a WAN whose BDP exceeds the window
)
def test_tcp_session_properties(
    messages: list[tuple[int, int]], isn_c: int, isn_s: int, mss: int, rtt_ns: int
) -> None:
    """Any conversation: bytes reassemble exactly, nothing is ACKed before it was sent, the
    sender never has more unacknowledged bytes than the receive window, seq wraps mod 2^32."""
    ct, pacs, _, _ = _hosts()
    log = FrameLog()
    sess = TcpSession(
        log, ct, pacs, 40000, 104, isn_client=isn_c, isn_server=isn_s, mss=mss, rtt_ns=rtt_ns
    )
    t = sess.open(T0)
    rng = random.Random(len(messages))
    sent = [bytearray(), bytearray()]
    for direction, size in messages:
        data = rng.randbytes(size)
        sent[direction] += data
        t = sess.send(direction, data, t + 1000)
    sess.close(t)
    order = sorted(range(len(log.frames)), key=lambda i: log.frames[i][0])  # as written
    isn = (isn_c, isn_s)
    got = [bytearray(), bytearray()]
    peer_acked = [(isn_c + 1) & 0xFFFFFFFF, (isn_s + 1) & 0xFFFFFFFF]  # per sender
    for i in order:
        seg = dpkt.ethernet.Ethernet(log.frames[i][1]).data.data
        d = CLIENT if seg.sport == 40000 else SERVER
        assert len(seg.data) <= mss
        if seg.flags & ACK:
            # an ACK never covers bytes the peer has not sent yet (+1: its SYN or FIN)
            assert (seg.ack - isn[1 - d] - 1) & 0xFFFFFFFF <= len(got[1 - d]) + 1
            peer_acked[1 - d] = seg.ack
        if seg.data:
            assert (seg.seq - isn[d] - 1) & 0xFFFFFFFF == len(got[d])  # in order, no gaps
            got[d] += seg.data
            in_flight = (seg.seq + len(seg.data) - peer_acked[d]) & 0xFFFFFFFF
            assert in_flight <= sess.window
    assert got == sent
