"""Test helpers: capture real loopback traffic with tcpdump, split a capture into the byte
streams and datagrams of its flows (dpkt), feed them to a dissector, ask tshark for fields."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from freeport import free_port  # noqa: F401  (re-exported to the tests)
from medsentry.events.base import Endpoints, Event
from medsentry.protocols.base import FlowContext, ParseError

PHI_KEY = b"k" * 32


def ctx_for(endpoints: Endpoints | None = None, flow_id: str = "f1") -> FlowContext:
    ep = endpoints or Endpoints(client="127.0.0.1", server="127.0.0.1")
    return FlowContext(flow_id=flow_id, endpoints=ep, phi_key=PHI_KEY)


def self_signed(
    tmp: Path,
    cn: str,
    *,
    org: str | None = None,
    serial: int,
    not_before: dt.datetime,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """A self-signed P-256 certificate valid ten years, and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cpath, kpath = tmp / "cert.pem", tmp / "key.pem"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cpath, kpath


def settle(path: Path, quiet_s: float = 0.3, limit_s: float = 5.0) -> None:
    """Wait until a running capture stops growing: on a loaded machine tcpdump may not have
    read the last packets yet, and SIGINT drops what it has not read."""
    deadline = time.time() + limit_s
    size, since = -1, time.time()
    while time.time() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, since = now, time.time()
        elif time.time() - since >= quiet_s:
            return
        time.sleep(0.05)


@contextlib.contextmanager
def tcpdump(path: Path, bpf: str, iface: str = "lo", snaplen: int = 0) -> Iterator[Path]:
    """Capture `iface` into `path` while the block runs (tcpdump, unbuffered).

    `snaplen`: bytes kept per packet (0: all). In immediate mode libpcap's ring has a slot of the
    snapshot length per packet: a burst of small packets needs a small snaplen to fit the 16 MiB
    buffer (-s 0 leaves room for ~64 packets) while the capture process waits for the CPU.
    """
    if shutil.which("tcpdump") is None:
        import pytest

        pytest.skip("tcpdump is not installed")
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            iface,
            "--immediate-mode",
            "-U",
            "-n",
            "-s",
            str(snaplen),
            "-B",
            "16384",
            "-w",
            str(path),
            bpf,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    deadline = time.time() + 10
    line = b""
    while time.time() < deadline:  # tcpdump prints "listening on ..." once the socket is open
        line = proc.stderr.readline()
        if b"listening on" in line or not line:
            break
    if b"listening on" not in line:
        proc.kill()
        raise RuntimeError(f"tcpdump did not start: {line!r}")
    try:
        yield path
    finally:
        settle(path)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@dataclass
class Flow:
    transport: str
    client: tuple[str, int]
    server: tuple[str, int]
    # (direction, payload, ts_ns); direction 0 = client -> server
    items: list[tuple[int, bytes, int]] = field(default_factory=list)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            client=self.client[0],
            server=self.server[0],
            client_port=self.client[1],
            server_port=self.server[1],
            transport=self.transport,
        )

    def stream(self, direction: int) -> bytes:
        return b"".join(p for d, p, _ in self.items if d == direction)


def _ip(pkt: dpkt.ethernet.Ethernet | bytes, linktype: int):
    if linktype == dpkt.pcap.DLT_EN10MB:
        inner = dpkt.ethernet.Ethernet(pkt).data
        for _ in range(3):  # PPPoE session -> PPP -> IP
            if isinstance(inner, (dpkt.pppoe.PPPoE, dpkt.ppp.PPP)):
                inner = inner.data
        return inner
    if linktype in (dpkt.pcap.DLT_RAW, 101):
        return dpkt.ip.IP(pkt) if pkt[0] >> 4 == 4 else dpkt.ip6.IP6(pkt)
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(pkt).data
    if linktype == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(pkt).data
    return None


def _reader(fh):
    try:
        return dpkt.pcap.Reader(fh)
    except ValueError:
        fh.seek(0)
        return dpkt.pcapng.Reader(fh)


def flows(path: Path) -> list[Flow]:
    """The TCP byte streams (in sequence order, retransmissions dropped) and UDP datagrams."""
    table: dict[tuple, Flow] = {}
    next_seq: dict[tuple, int] = {}
    with open(path, "rb") as fh:
        rd = _reader(fh)
        lt = rd.datalink()
        for ts, buf in rd:
            try:
                ip = _ip(buf, lt)
            except (dpkt.UnpackError, IndexError):
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            src = socket.inet_ntop(
                socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6, ip.src
            )
            dst = socket.inet_ntop(
                socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6, ip.dst
            )
            l4 = ip.data
            ts_ns = round(ts * 1e9)
            if isinstance(l4, dpkt.tcp.TCP):
                a, b = (src, l4.sport), (dst, l4.dport)
                key = (a, b) if (a, b) in table else (b, a) if (b, a) in table else None
                if key is None:
                    syn_only = (l4.flags & dpkt.tcp.TH_SYN) and not (l4.flags & dpkt.tcp.TH_ACK)
                    key = (a, b) if syn_only or l4.dport < l4.sport else (b, a)
                    table[key] = Flow("tcp", key[0], key[1])
                fl = table[key]
                d = 0 if (a, b) == key else 1
                seq = l4.seq + (1 if l4.flags & dpkt.tcp.TH_SYN else 0)
                nk = (key, d)
                if l4.flags & dpkt.tcp.TH_SYN:
                    next_seq[nk] = seq
                data = bytes(l4.data)
                if not data:
                    continue
                exp = next_seq.get(nk, l4.seq)
                off = (exp - l4.seq) & 0xFFFFFFFF
                if off >= 1 << 31:
                    off = 0  # a segment beyond the expected one (a hole): take it
                if off >= len(data):
                    continue  # a retransmission of bytes already taken
                data = data[off:]
                next_seq[nk] = (l4.seq + off + len(data)) & 0xFFFFFFFF
                fl.items.append((d, data, ts_ns))
            elif isinstance(l4, dpkt.udp.UDP):
                a, b = (src, l4.sport), (dst, l4.dport)
                key = (a, b) if (a, b) in table else (b, a) if (b, a) in table else (a, b)
                fl = table.setdefault(key, Flow("udp", key[0], key[1]))
                fl.items.append((0 if (a, b) == key else 1, bytes(l4.data), ts_ns))
    return list(table.values())


def run(dissector, items: list[tuple[int, bytes, int]], strict: bool = True) -> list[Event]:
    """Feed a flow's items, then close. Not strict: a ParseError stops the dissector and the
    events so far are kept, as the flow layer does."""
    out: list[Event] = []
    last = 0
    try:
        for d, data, ts in items:
            out.extend(dissector.feed(d, data, ts))
            last = ts
        out.extend(dissector.close(last))
    except ParseError:
        if strict:
            raise
    return out


def tshark(
    path: Path, display_filter: str, *fields: str, decode_as: str | None = None
) -> list[list[str]]:
    """Rows of `tshark -T fields` (one row per matching packet)."""
    if shutil.which("tshark") is None:
        import pytest

        pytest.skip("tshark is not installed")
    args = [
        "tshark",
        "-r",
        str(path),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]
    if decode_as:
        args += ["-d", decode_as]  # e.g. "tcp.port==2121,ftp"
    for f in fields:
        args += ["-e", f]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("\t") for line in res.stdout.splitlines() if line.strip()]
