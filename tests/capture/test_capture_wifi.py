"""802.11 captures (LINKTYPE_IEEE802_11 105, _RADIOTAP 127, PPI 192): the decode kernel finds
the real SA/DA and the IP packet inside LLC/SNAP, skips and counts encrypted and management
frames, strips a flagged FCS; checked against tshark and through `medsentry scan`.

The frames are built here from IEEE Std 802.11-2020 §9.2-§9.3 and radiotap.org, around IP
packets made by medsentry.capture.writer.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from capture_build import Pcapng, pcap_file
from capture_build import concat as _concat
from click.testing import CliRunner

from medsentry.capture import batch as B
from medsentry.capture.decode import decode, format_ip, format_mac
from medsentry.capture.reader import open_capture
from medsentry.capture.writer import ACK, PSH, SYN, ipv4, ipv6, mac_bytes, tcp, udp
from medsentry.cli import main

STA = "3c:71:bf:12:34:56"  # the medical device (a station)
AP = "f0:9f:c2:aa:bb:cc"  # the access point (BSSID)
GW = "00:1b:21:0a:0b:0c"  # the wired router behind the AP
PHONE = "a4:83:e7:01:02:03"  # companion app phone, same BSS
WDS_RA = "f0:9f:c2:00:00:01"
WDS_TA = "f0:9f:c2:00:00:02"
DEV_IP, CLOUD_IP, PHONE_IP = "192.168.1.50", "52.28.1.9", "192.168.1.60"

DATA, QOS_DATA, QOS_NULL, BEACON = (2, 0), (2, 8), (2, 12), (0, 8)
TO_DS, FROM_DS, PROTECTED, ORDER = 0x01, 0x02, 0x40, 0x80


def snap(ethertype: int, body: bytes) -> bytes:
    """RFC 1042 LLC/SNAP: DSAP AA, SSAP AA, UI, OUI 00-00-00, ethertype."""
    return b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", ethertype) + body


def dot11(
    kind: tuple[int, int],
    flags: int,
    a1: str,
    a2: str,
    a3: str,
    body: bytes,
    *,
    a4: str | None = None,
    qos: int = 0,
    htc: bytes = b"",
    fcs: bool = False,
) -> bytes:
    """An 802.11 MAC frame (§9.2.3): FC, Duration, A1-A3, Sequence Control, [A4], [QoS], [HTC]."""
    ftype, sub = kind
    fc = bytes([(sub << 4) | (ftype << 2), flags])
    hdr = fc + b"\x2c\x00" + mac_bytes(a1) + mac_bytes(a2) + mac_bytes(a3) + b"\x10\x00"
    if a4 is not None:
        hdr += mac_bytes(a4)
    if sub & 8 and ftype == 2:
        hdr += struct.pack("<H", qos)
        if flags & ORDER:
            hdr += htc or b"\x00\x00\x00\x00"
    frame = hdr + body
    if fcs:
        frame += struct.pack("<I", zlib.crc32(frame))  # §9.2.4.8: CRC-32, LSB first
    return frame


def radiotap(rt_flags: int | None, *, tsft: bool = True, extended: bool = True) -> bytes:
    """A radiotap header like Linux mac80211 writes: [TSFT], Flags, Rate, Channel, dBm signal,
    optionally a second (empty) present word, each field aligned to its size."""
    present = 0x04 | 0x08 | 0x20  # Rate, Channel, Antenna signal
    if tsft:
        present |= 0x01
    if rt_flags is not None:
        present |= 0x02
    words = [present | (0x8000_0000 if extended else 0)]
    if extended:
        words.append(0x0000_0000)
    hdr = bytearray(struct.pack("<BBH", 0, 0, 0) + b"".join(struct.pack("<I", w) for w in words))
    if tsft:
        hdr += b"\0" * (-len(hdr) % 8) + struct.pack("<Q", 123456789)
    if rt_flags is not None:
        hdr += bytes([rt_flags])
    hdr += b"\x0c"  # Rate 6 Mb/s
    hdr += b"\0" * (-len(hdr) % 2) + struct.pack("<HH", 2437, 0x00A0)  # channel 6, 2 GHz OFDM
    hdr += b"\xc4"  # -60 dBm
    struct.pack_into("<H", hdr, 2, len(hdr))
    return bytes(hdr)


def ppi(frame: bytes, *, fcs: bool) -> bytes:
    """PPI header (CACE PPI 1.0.10 §3) with one 802.11-Common field, DLT 105."""
    common = struct.pack("<QHHHBbb", 0, 0x0001 if fcs else 0, 0, 2437, 0, -60, -95)
    field = struct.pack("<HH", 2, len(common)) + common
    return struct.pack("<BBHI", 0, 0, 8 + len(field), 105) + field + frame


def arp_body(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    """RFC 826 Ethernet/IPv4 ARP."""
    return (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + mac_bytes(sha)
        + bytes(map(int, spa.split(".")))
        + mac_bytes(tha)
        + bytes(map(int, tpa.split(".")))
    )


@dataclass
class Expect:
    """What one frame must decode to (None: the field is not checked)."""

    sa: str
    da: str
    err: int = 0
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    proto: int = 0
    pl_len: int | None = None


SYN_SEG = tcp(DEV_IP, CLOUD_IP, 49152, 8883, 1000, 0, SYN)
SYNACK_SEG = tcp(CLOUD_IP, DEV_IP, 8883, 49152, 5000, 1001, SYN | ACK)
DATA_SEG = tcp(DEV_IP, CLOUD_IP, 49152, 8883, 1001, 5001, PSH | ACK, b"\x10" * 37)
DNS = udp(DEV_IP, "192.168.1.1", 5353, 53, b"\x12\x34" + bytes(10) + b"\x03iot\x00\x00\x01\x00\x01")
APP = udp(PHONE_IP, DEV_IP, 40000, 5683, b"\x40\x01\x00\x01")  # CoAP confirmable GET


def frames() -> list[tuple[bytes, Expect]]:
    """(802.11 frame without radio header, expected decode): every addressing case."""
    ip = lambda s, d, proto, seg: snap(0x0800, ipv4(s, d, proto, seg))  # noqa: E731
    return [
        # station -> AP -> wired cloud: ToDS, A1 = BSSID, A2 = SA, A3 = DA (plain data)
        (
            dot11(DATA, TO_DS, AP, STA, GW, ip(DEV_IP, CLOUD_IP, 6, SYN_SEG)),
            Expect(STA, GW, 0, DEV_IP, CLOUD_IP, 49152, 8883, 6, 0),
        ),
        # cloud -> AP -> station: FromDS, A1 = DA, A2 = BSSID, A3 = SA (QoS data)
        (
            dot11(QOS_DATA, FROM_DS, STA, AP, GW, ip(CLOUD_IP, DEV_IP, 6, SYNACK_SEG), qos=5),
            Expect(GW, STA, 0, CLOUD_IP, DEV_IP, 8883, 49152, 6, 0),
        ),
        # QoS data with +HTC (Order bit): 4 more header bytes
        (
            dot11(QOS_DATA, TO_DS | ORDER, AP, STA, GW, ip(DEV_IP, CLOUD_IP, 6, DATA_SEG), qos=6),
            Expect(STA, GW, 0, DEV_IP, CLOUD_IP, 49152, 8883, 6, 37),
        ),
        # UDP to the local resolver
        (
            dot11(QOS_DATA, TO_DS, AP, STA, GW, ip(DEV_IP, "192.168.1.1", 17, DNS)),
            Expect(STA, GW, 0, DEV_IP, "192.168.1.1", 5353, 53, 17, len(DNS) - 8),
        ),
        # phone -> device through the AP: FromDS on the device's side
        (
            dot11(DATA, FROM_DS, STA, AP, PHONE, ip(PHONE_IP, DEV_IP, 17, APP)),
            Expect(PHONE, STA, 0, PHONE_IP, DEV_IP, 40000, 5683, 17, 4),
        ),
        # IBSS / direct link: no DS bits, A1 = DA, A2 = SA, A3 = BSSID
        (
            dot11(DATA, 0, STA, PHONE, AP, ip(PHONE_IP, DEV_IP, 17, APP)),
            Expect(PHONE, STA, 0, PHONE_IP, DEV_IP, 40000, 5683, 17, 4),
        ),
        # mesh/WDS 4-address: A1 = RA, A2 = TA, A3 = DA, A4 = SA
        (
            dot11(
                QOS_DATA,
                TO_DS | FROM_DS,
                WDS_RA,
                WDS_TA,
                GW,
                ip(DEV_IP, CLOUD_IP, 6, SYN_SEG),
                a4=STA,
            ),
            Expect(STA, GW, 0, DEV_IP, CLOUD_IP, 49152, 8883, 6, 0),
        ),
        # IPv6 in SNAP
        (
            dot11(
                QOS_DATA,
                TO_DS,
                AP,
                STA,
                GW,
                snap(
                    0x86DD,
                    ipv6("fe80::1", "ff02::fb", 17, udp("fe80::1", "ff02::fb", 5353, 5353, b"q")),
                ),
            ),
            Expect(STA, GW, 0, "fe80::1", "ff02::fb", 5353, 5353, 17, 1),
        ),
        # ARP request from the station (broadcast DA)
        (
            dot11(
                DATA,
                TO_DS,
                AP,
                STA,
                "ff:ff:ff:ff:ff:ff",
                snap(0x0806, arp_body(1, STA, DEV_IP, "00:00:00:00:00:00", "192.168.1.1")),
            ),
            Expect(STA, "00:00:00:00:00:00", 0),
        ),
        # encrypted (CCMP) data frame: skipped, counted, addresses kept
        (
            dot11(QOS_DATA, TO_DS | PROTECTED, AP, STA, GW, bytes(8) + bytes(range(60)) + bytes(8)),
            Expect(STA, GW, B.ERR_WLAN_PROTECTED),
        ),
        # QoS Null (power save signalling): no body, no error
        (dot11(QOS_NULL, TO_DS, AP, STA, AP, b""), Expect(STA, AP, 0)),
        # beacon: management, A1 = DA (broadcast), A2 = SA (the AP)
        (
            dot11(
                BEACON,
                0,
                "ff:ff:ff:ff:ff:ff",
                AP,
                AP,
                struct.pack("<QHH", 0, 100, 0x0411) + b"\x00\x04Ward",
            ),
            Expect(AP, "ff:ff:ff:ff:ff:ff", B.ERR_WLAN_NOT_DATA),
        ),
    ]


def concat(path: Path) -> dict:
    """capture_build.concat plus the decode's extra columns (ARP frame addresses)."""
    out = _concat(path)
    pbs = [decode(b) for b in open_capture(path)]
    for name in ("arp_frame_src", "arp_frame_dst"):
        out[name] = np.concatenate([p.extra[name] for p in pbs])
    return out


def _pcap(tmp_path: Path, name: str, linktype: int, data: list[bytes]) -> Path:
    return pcap_file(
        tmp_path / name,
        [(1_700_000_000_000_000_000 + k * 1000, d) for k, d in enumerate(data)],
        linktype=linktype,
    )


def _variants() -> dict[str, tuple[int, list[bytes], list[Expect]]]:
    """link type -> (frames with their radio header, expectations)."""
    fr = frames()
    exp = [e for _, e in fr]
    plain = [f for f, _ in fr]
    out = {
        "dot11.pcap": (105, plain, exp),
        "radiotap.pcap": (127, [radiotap(0x00) + f for f in plain], exp),
        "radiotap_fcs.pcap": (
            127,
            [radiotap(0x10) + f + struct.pack("<I", zlib.crc32(f)) for f in plain],
            exp,
        ),
        "radiotap_nots.pcap": (
            127,
            [
                radiotap(0x10, tsft=False, extended=False) + f + struct.pack("<I", zlib.crc32(f))
                for f in plain
            ],
            exp,
        ),
        "radiotap_noflags.pcap": (127, [radiotap(None) + f for f in plain], exp),
        "ppi_fcs.pcap": (
            192,
            [ppi(f + struct.pack("<I", zlib.crc32(f)), fcs=True) for f in plain],
            exp,
        ),
    }
    return out


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, tuple[Path, list[Expect]]]:
    d = tmp_path_factory.mktemp("wifi")
    return {name: (_pcap(d, name, lt, data), exp) for name, (lt, data, exp) in _variants().items()}


@pytest.mark.parametrize("name", list(_variants()))
def test_decode_wifi_frames(captures, name: str) -> None:
    path, expect = captures[name]
    c = concat(path)
    assert len(c["err"]) == len(expect)
    for k, e in enumerate(expect):
        got = (format_mac(c["eth_src"][k]), format_mac(c["eth_dst"][k]), int(c["err"][k]))
        assert got == (e.sa, e.da, e.err), (name, k)
        if e.src:
            ver = int(c["ip_ver"][k])
            assert format_ip(ver, c["src_hi"][k], c["src_lo"][k]) == e.src, (name, k)
            assert format_ip(ver, c["dst_hi"][k], c["dst_lo"][k]) == e.dst, (name, k)
            assert (int(c["sport"][k]), int(c["dport"][k]), int(c["proto"][k])) == (
                e.sport,
                e.dport,
                e.proto,
            ), (name, k)
            if e.pl_len is not None:  # the FCS is never counted as payload
                assert int(c["pl_len"][k]) == e.pl_len, (name, k)
        elif e.err:
            assert int(c["ip_ver"][k]) == 0 and int(c["ethertype"][k]) == 0
    arp = int(np.flatnonzero(c["arp_op"] > 0)[0])
    assert format_ip(4, 0, c["src_lo"][arp]) == DEV_IP and format_mac(c["eth_src"][arp]) == STA


def test_bad_fcs_and_damaged_radio_headers(tmp_path: Path) -> None:
    f = frames()[0][0]
    crc = struct.pack("<I", zlib.crc32(f))
    bad_version = bytearray(radiotap(0x00) + f)
    bad_version[0] = 1
    ext_runs_off = struct.pack("<BBHII", 0, 0, 12, 0x8000_0002, 0x8000_0000) + f
    path = _pcap(
        tmp_path,
        "bad.pcap",
        127,
        [
            radiotap(0x50) + f + crc,  # FCS present and bad: the radio says it is damaged
            bytes(bad_version),
            radiotap(0x00)[:6],  # cut inside the radiotap header
            radiotap(0x00) + f[:20],  # cut inside the MAC header
            ext_runs_off,  # extended bitmaps running past it_len
            radiotap(0x10) + f + crc,  # and a good one
        ],
    )
    c = concat(path)
    assert c["err"].tolist() == [
        B.ERR_WLAN_BAD_FCS,
        B.ERR_BAD_L2,
        B.ERR_TRUNCATED_L2,
        B.ERR_TRUNCATED_L2,
        B.ERR_BAD_L2,
        0,
    ]
    assert (c["eth_src"][:5] == 0).all() and c["ip_ver"].tolist() == [0] * 5 + [4]


def test_fcs_kept_when_frame_was_cut_by_snaplen(tmp_path: Path) -> None:
    """caplen < wire length: the last captured bytes are payload, not the FCS."""
    f = frames()[2][0]  # 37 bytes of TCP payload
    whole = radiotap(0x10) + f + struct.pack("<I", zlib.crc32(f))
    cut = whole[: len(whole) - 10]
    path = pcap_file(tmp_path / "cut.pcap", [(1_000_000_000, cut, len(whole))], linktype=127)
    c = concat(path)
    assert int(c["err"][0]) == 0 and int(c["pl_len"][0]) == 37 - 6


TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize(
    "name", ["dot11.pcap", "radiotap_fcs.pcap", "radiotap_nots.pcap", "ppi_fcs.pcap"]
)
def test_wifi_against_tshark(captures, name: str) -> None:
    path, expect = captures[name]
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
        + [
            a
            for f in ("wlan.sa", "wlan.da", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst")
            for a in ("-e", f)
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    c = concat(path)
    assert len(out) == len(expect)
    compared = 0
    for k, line in enumerate(out):
        sa, da, s4, d4, s6, d6 = line.split("\t")
        src, dst = c["eth_src"][k], c["eth_dst"][k]
        if c["arp_op"][k]:  # ARP: the frame's own addresses are kept aside (decode.py)
            src, dst = c["arp_frame_src"][k], c["arp_frame_dst"][k]
        assert (format_mac(src), format_mac(dst)) == (sa, da), (k, line)
        ver = int(c["ip_ver"][k])
        if s4 or s6:
            assert format_ip(ver, c["src_hi"][k], c["src_lo"][k]) == (s4 or s6), (k, line)
            assert format_ip(ver, c["dst_hi"][k], c["dst_lo"][k]) == (d4 or d6), (k, line)
            compared += 1
        else:
            assert ver == 0
    assert compared == 8


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def test_scan_wifi_capture(captures, tmp_path: Path) -> None:
    path, _ = captures["radiotap_fcs.pcap"]
    url = f"sqlite:///{tmp_path / 'm.db'}"
    code, out, err = _run("scan", "--db", url, "--format", "json", str(path))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["packets"] == len(frames())
    assert summary["decode_errors"] == {
        B.DECODE_ERRORS[B.ERR_WLAN_PROTECTED]: 1,
        B.DECODE_ERRORS[B.ERR_WLAN_NOT_DATA]: 1,
    }
    code, out, err = _run("flows", "--db", url, "--format", "json")
    assert code == 0, err
    flows = json.loads(out)
    ends = {(f["client"], f["server"], f["server_port"]) for f in flows}
    assert (DEV_IP, CLOUD_IP, 8883) in ends
    assert (PHONE_IP, DEV_IP, 5683) in ends
    assert (DEV_IP, "192.168.1.1", 53) in ends
    mqtt = next(f for f in flows if f["server_port"] == 8883)
    assert (mqtt["client_mac"], mqtt["server_mac"]) == (STA, GW)
    assert (mqtt["packets_c2s"], mqtt["packets_s2c"], mqtt["payload_c2s"]) == (3, 1, 37)
    code, out, err = _run("devices", "--db", url, "--format", "json")
    assert code == 0, err
    by_mac = {d["mac"]: d for d in json.loads(out) if d["mac"]}
    assert by_mac[STA]["ip"] == DEV_IP and by_mac[PHONE]["ip"] == PHONE_IP
    # the BSSID is no endpoint of any flow; its beacon makes it an access point (protocols/wlan.py)
    assert by_mac[AP]["category"] == "it.network" and not by_mac[AP]["ip"]
    code, out, err = _run("scan", "--db", url, str(path))  # the table names the reason
    assert code == 0 and "802.11 data frame encrypted" in out, out


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_real_ppi_ethernet_capture_against_tshark(ndpi_pcaps: Path) -> None:
    """A real PPI capture whose pph_dlt is Ethernet (nDPI test set): unwrapped, then Ethernet."""
    path = ndpi_pcaps / "someip_sd_sample.pcap"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    fields = ("eth.src", "eth.dst", "ip.src", "ip.dst", "udp.srcport", "udp.dstport")
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    c = concat(path)
    assert (c["linktype"] == B.LINKTYPE_PPI).all() and (c["err"] == 0).all()
    assert len(out) == len(c["err"]) > 0
    for k, line in enumerate(out):
        ours = (
            format_mac(c["eth_src"][k]),
            format_mac(c["eth_dst"][k]),
            format_ip(4, 0, c["src_lo"][k]),
            format_ip(4, 0, c["dst_lo"][k]),
            str(c["sport"][k]),
            str(c["dport"][k]),
        )
        assert ours == tuple(line.split("\t")), (k, line)


def test_ppi_with_another_link_type_is_unknown(tmp_path: Path) -> None:
    inner = frames()[0][0]
    ppi_dlt_101 = struct.pack("<BBHI", 0, 0, 8, 101) + ipv4(DEV_IP, CLOUD_IP, 6, SYN_SEG)
    path = _pcap(tmp_path, "ppi.pcap", 192, [ppi_dlt_101, ppi(inner, fcs=False)])
    c = concat(path)
    assert c["err"].tolist() == [B.ERR_UNKNOWN_LINKTYPE, 0]
    assert format_mac(c["eth_src"][1]) == STA


def test_amsdu_and_datapad_against_tshark(tmp_path: Path) -> None:
    """An A-MSDU (QoS Control bit 7, §9.3.2.2.2) decodes its first subframe; a radiotap
    data-pad frame (Flags 0x20) skips the padding to the 4-byte boundary after the header."""
    sub1 = snap(0x0800, ipv4(DEV_IP, CLOUD_IP, 6, SYN_SEG))
    sub2 = snap(0x0800, ipv4(DEV_IP, "192.168.1.1", 17, DNS))
    amsdu = b""
    for body in (sub1, sub2):  # DA, SA, Length, MSDU, padded to 4 bytes between subframes
        amsdu += b"\0" * (-len(amsdu) % 4)
        amsdu += mac_bytes(GW) + mac_bytes(STA) + struct.pack("!H", len(body)) + body
    f_amsdu = dot11(QOS_DATA, TO_DS, AP, STA, GW, amsdu, qos=0x80)
    # QoS data + 4-address: header 32 bytes, already aligned; plain WDS data is 30 -> pad 2
    f_pad = dot11(DATA, TO_DS | FROM_DS, WDS_RA, WDS_TA, GW, b"\0\0" + sub2, a4=STA)
    path = _pcap(tmp_path, "amsdu.pcap", 127, [radiotap(0x00) + f_amsdu, radiotap(0x20) + f_pad])
    c = concat(path)
    assert c["err"].tolist() == [0, 0]
    assert [format_ip(4, 0, x) for x in c["dst_lo"]] == [CLOUD_IP, "192.168.1.1"]
    assert c["dport"].tolist() == [8883, 53] and c["pl_len"].tolist() == [0, len(DNS) - 8]
    assert [format_mac(x) for x in c["eth_src"]] == [STA, STA]
    if TSHARK is None:
        return
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
        + [a for f in ("wlan.sa", "ip.dst", "tcp.dstport", "udp.dstport") for a in ("-e", f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # tshark dissects both subframes (udp.dstport comes from the second); we the first only
    assert [line.split("\t") for line in out] == [
        [STA, CLOUD_IP, "8883", "53"],
        [STA, "192.168.1.1", "", "53"],
    ]


def test_flagged_fcs_is_not_payload(tmp_path: Path) -> None:
    """IPv4 total length 0 (segmentation offload: the length is what was captured) and an IP
    packet longer than the frame: the 4 FCS bytes are neither IP length nor payload."""
    pkt = bytearray(ipv4(DEV_IP, CLOUD_IP, 17, DNS))
    pkt[2:4] = b"\0\0"
    long_ip = bytearray(ipv4(DEV_IP, CLOUD_IP, 6, DATA_SEG))
    long_ip[2:4] = struct.pack("!H", len(long_ip) + 100)
    rows = []
    for ip in (bytes(pkt), bytes(long_ip)):
        f = dot11(QOS_DATA, TO_DS, AP, STA, GW, snap(0x0800, ip))
        rows.append(radiotap(0x10) + f + struct.pack("<I", zlib.crc32(f)))
    c = concat(_pcap(tmp_path, "tso.pcap", 127, rows))
    assert c["err"].tolist() == [0, 0]
    assert int(c["ip_len"][0]) == len(pkt) and int(c["pl_len"][0]) == len(DNS) - 8
    assert int(c["pl_len"][1]) == 37


def test_pcapng_mixing_ethernet_and_radiotap_interfaces(tmp_path: Path) -> None:
    """pcapng: link type per interface, so one batch holds Ethernet and 802.11 packets."""
    f = frames()[0][0]
    eth = mac_bytes(GW) + mac_bytes(STA) + b"\x08\x00" + ipv4(DEV_IP, CLOUD_IP, 6, SYN_SEG)
    ng = Pcapng().shb().idb(1).idb(127).idb(105)
    ng.epb(1, 1, radiotap(0x10) + f + struct.pack("<I", zlib.crc32(f)))
    ng.epb(0, 2, eth).epb(2, 3, frames()[1][0]).epb(1, 4, radiotap(0x00) + frames()[-3][0])
    c = concat(ng.write(tmp_path / "mixed.pcapng"))
    assert c["linktype"].tolist() == [127, 1, 105, 127]
    assert c["err"].tolist() == [0, 0, 0, B.ERR_WLAN_PROTECTED]
    assert [format_mac(m) for m in c["eth_src"]] == [STA, STA, GW, STA]
    assert c["dport"].tolist()[:3] == [8883, 8883, 49152]
