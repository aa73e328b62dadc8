"""Captures that name the app behind each connection, made from real traffic.

Two apps talk from a phone: a CGM companion app (TLS with SNI share2.dexcom.com, the Dexcom
Share service) and a browser (TLS to www.example.org). The traffic is real: Python's ssl client
and server on loopback, captured by tcpdump. Its addresses are then moved to where a phone
capture has them (the phone 10.215.173.1, PCAPdroid's VPN address; the servers public; checksums
recomputed), and the frames are written in the four containers that name the process, each as
its writer lays it out:

- PCAPdroid pcap with the trailer (PCAPdroid pcap_dump.c dump_packet_pcap: zeroed MACs, padding
  to 4 octets, magic 0x01072021, uid, app name[20], CRC-32 FCS);
- PCAPdroid pcapng (dump_packet_pcapng: LINKTYPE_RAW interface, a Custom Block 0xBAD with PEN
  62652 mapping each uid to package and app name, each EPB commented "u-<uid>");
- Apple PKTAP pcap (LINKTYPE_PKTAP: the 108-octet header, Wireshark packet-pktap.c), where a
  daemon (nsurlsessiond) does the CGM app's I/O: pth_comm names the daemon, pth_ecomm the app;
- Apple pcapng (libpcap-apple pcap-ng.h: Process Information Blocks 0x80000001 with the
  process's name, EPB options 0x8001 and 0x8003 for the process and the effective process,
  epb_flags for the direction).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np
from netcap import free_port, self_signed, tcpdump

from medsentry.capture.frames import fill_checksums

PHONE = "10.215.173.1"
CGM_SERVER = "52.94.236.10"
WEB_SERVER = "93.184.215.14"
CGM_SNI = "share2.dexcom.com"
WEB_SNI = "www.example.org"
CGM_PACKAGE = "com.dexcom.g7"
CGM_APP = "Dexcom G7"
CGM_UID = 10187
WEB_PACKAGE = "com.android.chrome"
WEB_APP = "Chrome"
WEB_UID = 10093
PCAPDROID_PEN = 62652


@dataclass
class Frame:
    ts_us: int
    data: bytes  # Ethernet, zeroed MACs (as on lo)
    app: str  # "cgm" or "web"
    sent: bool  # the phone sent it


def _cert(tmp: Path) -> tuple[Path, Path]:
    return self_signed(
        tmp,
        CGM_SNI,
        serial=0x5EED,
        not_before=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        dns=(CGM_SNI, WEB_SNI),
    )


def record(tmp: Path, cleartext: bool = False) -> list[Frame]:
    """Real TLS from two clients (one per app) to a loopback server, tcpdump-captured, moved to
    the phone's and the servers' addresses. `cleartext`: the CGM app also sends one plain HTTP
    request with Basic credentials (server port 80)."""
    cpath, kpath = _cert(tmp)
    port_cgm, port_web, port_http = free_port(), free_port(), free_port()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cpath, kpath)
    servers = [socket.create_server(("127.0.0.1", p)) for p in (port_cgm, port_web)]
    plain = socket.create_server(("127.0.0.1", port_http)) if cleartext else None

    def serve(lsock: socket.socket) -> None:
        conn, _ = lsock.accept()
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                s.recv(100)
                s.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    def serve_http(lsock: socket.socket) -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.recv(1000)
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    if plain is not None:
        threads.append(threading.Thread(target=serve_http, args=(plain,), daemon=True))
    for t in threads:
        t.start()
    pcap = tmp / "lo.pcap"
    ports = f"tcp port {port_cgm} or tcp port {port_web} or tcp port {port_http}"
    with tcpdump(pcap, ports):
        for port, sni in ((port_cgm, CGM_SNI), (port_web, WEB_SNI)):
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.load_verify_locations(cpath)
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                cctx.wrap_socket(raw, server_hostname=sni) as s,
            ):
                s.sendall(b"GET /")
                s.recv(100)
        if plain is not None:
            with socket.create_connection(("127.0.0.1", port_http)) as s:
                s.sendall(
                    b"GET /ShareWebServices/Services/Publisher HTTP/1.1\r\n"
                    b"Host: " + CGM_SNI.encode() + b"\r\n"
                    b"Authorization: Basic Y2dtdXNlcjpjZ21wYXNz\r\n\r\n"
                )
                s.recv(1000)
    for t in threads:
        t.join(5)
    for s in [*servers, plain]:
        if s is not None:
            s.close()
    served = {port_cgm: ("cgm", 443), port_web: ("web", 443), port_http: ("cgm", 80)}
    frames: list[Frame] = []
    with open(pcap, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            eth = bytearray(buf)
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            server_port = tcp.dport if tcp.dport in served else tcp.sport
            app, seen_port = served[server_port]
            sent = tcp.dport == server_port
            server = CGM_SERVER if app == "cgm" else WEB_SERVER
            src, dst = (PHONE, server) if sent else (server, PHONE)
            eth[14 + 12 : 14 + 16] = socket.inet_aton(src)
            eth[14 + 16 : 14 + 20] = socket.inet_aton(dst)
            # the server listens on 443 (or 80) as a phone's apps see it
            o = 14 + ip.hl * 4
            if sent:
                eth[o + 2 : o + 4] = struct.pack(">H", seen_port)
            else:
                eth[o : o + 2] = struct.pack(">H", seen_port)
            frames.append(Frame(round(ts * 1e6), bytes(eth), app, sent))
    if frames:
        buf = np.frombuffer(b"".join(f.data for f in frames), np.uint8).copy()
        lens = np.array([len(f.data) for f in frames], np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        fill_checksums(buf, offs, lens)
        for f, o, n in zip(frames, offs.tolist(), lens.tolist(), strict=True):
            f.data = buf[o : o + n].tobytes()
    return frames


def _pcap(linktype: int, records: list[tuple[int, bytes]]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, data in records:
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
        out.append(data)
    return b"".join(out)


def _app(f: Frame) -> tuple[int, str, str]:
    return (CGM_UID, CGM_PACKAGE, CGM_APP) if f.app == "cgm" else (WEB_UID, WEB_PACKAGE, WEB_APP)


def pcapdroid_trailer(frames: list[Frame], path: Path, name: str = "package") -> Path:
    """PCAPdroid's pcap with the trailer; `name`: what its app name field holds (older releases
    the package, newer the display name)."""
    recs = []
    for f in frames:
        uid, pkg, app = _app(f)
        body = f.data
        body += b"\0" * (-len(body) % 4)  # pre-trailer padding (4-octet alignment)
        label = (pkg if name == "package" else app).encode()[:19]
        trailer = struct.pack(">Ii", 0x01072021, uid) + label.ljust(20, b"\0")
        fcs = zlib.crc32(body + trailer) & 0xFFFFFFFF
        recs.append((f.ts_us, body + trailer + struct.pack("<I", fcs)))
    path.write_bytes(_pcap(1, recs))
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _epb(iface: int, ts_us: int, data: bytes, opts: bytes) -> bytes:
    body = struct.pack("<IIIII", iface, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data), len(data))
    body += data + b"\0" * (-len(data) % 4)
    if opts:
        body += opts + _opt(0, b"")
    return _block(6, body)


def pcapdroid_pcapng(frames: list[Frame], path: Path) -> Path:
    """PCAPdroid's pcapng: a raw-IP interface, one uid map Custom Block per app before its first
    packet, the uid as each packet's comment."""
    out = [_shb(), _block(1, struct.pack("<HHI", 101, 0, 65535))]
    mapped: set[int] = set()
    for f in frames:
        uid, pkg, app = _app(f)
        if uid not in mapped:
            mapped.add(uid)
            body = struct.pack("<IHBBiBB", PCAPDROID_PEN, 1, 1, 0, uid, len(pkg), len(app))
            out.append(_block(0x00000BAD, body + pkg.encode() + app.encode()))
        out.append(_epb(0, f.ts_us, f.data[14:], _opt(1, f"u-{uid}".encode())))
    path.write_bytes(b"".join(out))
    return path


DAEMON = "nsurlsessiond"
CGM_COMMAND = "Dexcom G7"
WEB_COMMAND = "Safari"


def pktap(frames: list[Frame], path: Path) -> Path:
    """macOS PKTAP: the CGM app's I/O done by nsurlsessiond on its behalf (pth_ecomm), the
    browser's by itself; pth_flags gives the direction."""
    recs = []
    for f in frames:
        comm, pid, ecomm, epid = (
            (DAEMON, 301, CGM_COMMAND, 812) if f.app == "cgm" else (WEB_COMMAND, 655, "", 0)
        )
        flags = 0x2 if f.sent else 0x1  # PTH_FLAG_DIR_OUT / PTH_FLAG_DIR_IN
        hdr = struct.pack(
            "<III24sIIIII20sIHHI20s", 108, 1, 1, b"en0", flags, 2, 14, 0, pid,
            comm.encode(), 0, 6, 0, epid, ecomm.encode(),
        )  # fmt: skip
        recs.append((f.ts_us, hdr + f.data))
    path.write_bytes(_pcap(258, recs))
    return path


def apple_pcapng(frames: list[Frame], path: Path) -> Path:
    """Apple tcpdump's pcapng: the real link type, a PIB per process before its first packet
    (index = PIBs before it in the section), the EPB naming its PIB and effective PIB."""
    out = [_shb(), _block(1, struct.pack("<HHI", 1, 0, 65535) + _opt(2, b"en0") + _opt(0, b""))]
    pibs: dict[str, int] = {}

    def pib(name: str, pid: int) -> int:
        if name not in pibs:
            pibs[name] = len(pibs)
            out.append(_block(0x80000001, struct.pack("<I", pid) + _opt(2, name.encode())))
        return pibs[name]

    for f in frames:
        if f.app == "cgm":
            opts = _opt(0x8001, struct.pack("<I", pib(DAEMON, 301)))
            opts += _opt(0x8003, struct.pack("<I", pib(CGM_COMMAND, 812)))
        else:
            opts = _opt(0x8001, struct.pack("<I", pib(WEB_COMMAND, 655)))
        opts += _opt(2, struct.pack("<I", 2 if f.sent else 1))  # epb_flags: outbound / inbound
        out.append(_epb(0, f.ts_us, f.data, opts))
    path.write_bytes(b"".join(out))
    return path
