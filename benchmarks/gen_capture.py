"""Generate a large, realistic hospital capture for the speed benchmarks (classic pcap).

    python benchmarks/gen_capture.py --out /tmp/bench.pcap              # 1.2M packets
    python benchmarks/gen_capture.py --out /tmp/bench4.pcap --packets 4800000
    python benchmarks/gen_capture.py --out /tmp/hosts.pcap --scale-hosts 10000

What is in it: client hosts on several VLANs (seen on a SPAN port, untagged unless --vlan) talk
to servers in a data-centre VLAN through a router: DICOM associations storing CT images
(A-ASSOCIATE, C-STORE in 16 KiB P-DATA-TF PDUs, release), HL7 v2 over MLLP with ACKs, HTTPS
(TLS 1.3 hellos then application_data records), HTTP with Content-Length bodies, SSH, and DNS,
NTP, SNMP, syslog over UDP. Every TCP connection has its handshake, MSS-sized segments with
consistent sequence and acknowledgment numbers, delayed ACKs and a FIN teardown; every IP and
TCP/UDP checksum is correct. Protocol bytes come from the demo's encoders (pynetdicom, hl7apy,
the RFC layouts in `medsentry.demo.netproto`); bulk bodies are filled from pools that keep the
protocol's framing (whole PDUs, whole TLS records).

How: sessions are planned in Python (one object per session, never per packet), then numba
kernels lay out every packet (time, direction, flags, seq/ack, payload slice), write the frames
into one NumPy buffer per epoch, compute checksums (`medsentry.capture.writer.fill_checksums`)
and write the records (`PcapWriter.write_batch`). Epochs of ~250k packets are independent time
windows, so memory stays bounded whatever --packets is.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from medsentry.capture.writer import PcapWriter, fill_checksums

T0_NS = 1_767_261_600_000_000_000  # 2026-01-01 10:00:00 UTC
MSS = 1460
SERVER_VLAN = 10
CLIENT_VLANS = (20, 21, 22, 30, 31)
ROUTER_MAC_BASE = 0x00000C07AC00  # HSRP virtual MAC 00:00:0c:07:ac:<group> (RFC 2281 §5.1)
CLIENT_OUIS = (  # vendor OUIs of clinical and office devices (IEEE registry)
    0x444B5D,  # GE Healthcare
    0x00095C,  # Philips Medical Systems
    0x00105D,  # Draeger Medical
    0x000F14,  # Mindray
    0x001221,  # B. Braun Melsungen
    0x5842E4,  # Baxter
    0x0002B3,  # Intel
    0x000874,  # Dell
)
SERVER_OUIS = (0x000C29, 0x00065B)  # VMware, Dell
DICOM_PDU = 16384  # bytes per P-DATA-TF PDU in the DICOM pool
TLS_RECORD = 1405  # bytes per application_data record in the TLS pool (5 + 1400)


# ---------------------------------------------------------------------------------------------
# Byte material: templates (whole messages or message heads) and pools (framed filler)
# ---------------------------------------------------------------------------------------------


@dataclass
class Material:
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> tuple[int, int]:
        off = self.size
        self.chunks.append(data)
        self.size += len(data)
        return off, len(data)

    def array(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.chunks), dtype=np.uint8).copy()


def _p_data_pdu(data: bytes, last: bool) -> bytes:
    """One P-DATA-TF PDU holding one dataset fragment (PS3.8 §9.3.5, Annex E.2)."""
    assert len(data) == DICOM_PDU - 12
    header = 0x02 if last else 0x00  # bit 0: dataset; bit 1: last fragment
    item = (len(data) + 2).to_bytes(4, "big") + b"\x01" + bytes([header]) + data
    return b"\x04\x00" + len(item).to_bytes(4, "big") + item


FRAGMENT = DICOM_PDU - 12  # dataset bytes per PDU
IMAGE_PDUS = range(8, 33)  # PDUs per stored image: 128-512 KiB


def _dicom_first_pdus(rng: random.Random) -> dict[int, bytes]:
    """For each image size (in PDUs), the first dataset PDU: CT_small's attributes, then the
    Pixel Data element header (PS3.5 §7.1.2) announcing exactly the bytes that follow."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pynetdicom.dsutils import encode

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "BENCH^PATIENT"
    ds.PatientID = "BENCH0001"
    del ds.PixelData
    head = encode(ds, False, True)
    assert head is not None and len(head) + 12 < FRAGMENT
    out = {}
    for k in IMAGE_PDUS:
        pixels = k * FRAGMENT - len(head) - 12
        el = b"\xe0\x7f\x10\x00OW\x00\x00" + pixels.to_bytes(4, "little")
        first = head + el
        out[k] = _p_data_pdu(first + rng.randbytes(FRAGMENT - len(first)), last=False)
    return out


class Catalog:
    """Every template and pool the sessions draw from, as (offset, length) into one array."""

    def __init__(self, rng: random.Random) -> None:
        from pydicom.uid import CTImageStorage

        from medsentry.demo import dicom, hl7, netproto

        self.tm = Material()
        self.pool = Material()
        t = self.tm.add
        # DICOM (PS3.8): association, one C-STORE command set, the last dataset PDU, release
        self.dicom_rq = t(dicom.associate_rq("CT01", "PACS", [CTImageStorage]))
        self.dicom_ac = t(dicom.associate_ac("CT01", "PACS", [CTImageStorage]))
        ds = dicom.ct_dataset("BENCH^PATIENT", "BENCH0001", "1.2.3.4", "1.2.3.4.5")
        full = dicom.c_store_rq(1, ds)
        cmd_len = 6 + int.from_bytes(full[2:6], "big")  # the first PDU holds the command set
        cmd = full[:cmd_len]
        self.dicom_head = {k: t(cmd + pdu) for k, pdu in _dicom_first_pdus(rng).items()}
        self.dicom_last = t(_p_data_pdu(rng.randbytes(FRAGMENT), last=True))
        self.dicom_rsp = t(dicom.c_store_rsp(1, "1.2.3.4.5"))
        self.dicom_rel = (t(dicom.release_rq()), t(dicom.release_rp()))
        self.dicom_pool = self.pool.add(
            b"".join(_p_data_pdu(rng.randbytes(FRAGMENT), False) for _ in range(64))
        )
        # HL7 v2 over MLLP: observation results and admissions, with their ACKs
        pats = [
            hl7.Patient(f"BENCH{i:04d}", "BENCH", f"P{i}", "19700101", "F", "ICU^1^A")
            for i in range(8)
        ]
        self.hl7 = []
        for i, p in enumerate(pats):
            if i % 4 == 0:
                msg = hl7.adt_a01(p, "EHR", "ENGINE", "20260101100000", f"C{i}")
            else:
                vit = [70 + i, 97, 120, 80, 16][: 1 + i % 5]
                msg = hl7.oru_r01(p, "MON", "CENTRAL", "20260101100000", f"C{i}", vit)
            self.hl7.append(
                (
                    t(hl7.mllp(msg)),
                    t(hl7.mllp(hl7.ack("E", "S", "20260101100000", f"A{i}", f"C{i}", msg))),
                )
            )
        # TLS 1.3 (RFC 8446)
        self.tls_ch = [
            t(netproto.tls_client_hello(rng, f"svc{i}.hospital.example", ["h2"])) for i in range(6)
        ]
        self.tls_sh = [t(netproto.tls_server_hello(rng, 2000 + 400 * i)) for i in range(4)]
        self.tls_pool = self.pool.add(netproto.tls_application_data(rng, 1383 * 256, record=1383))
        assert self.tls_pool[1] == 256 * TLS_RECORD
        # HTTP/1.1: requests, and response heads announcing pool-filled bodies
        self.http_req = [
            t(netproto.http_request("GET", "intranet.hospital.example", p, "Mozilla/5.0"))
            for p in ("/", "/index.html", "/api/v1/status", "/static/app.js", "/img/a.png")
        ]
        self.http_sizes = (512, 2048, 8192, 20480, 65536, 204800)
        self.http_rsp = []
        for n in self.http_sizes:
            head = netproto.http_response(b"x" * n, "application/octet-stream")[:-n]
            self.http_rsp.append(t(head))
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     \n<>/", dtype=np.uint8)
        text = np.random.default_rng(rng.getrandbits(32)).choice(letters, 1 << 18)
        self.text_pool = self.pool.add(text.tobytes())
        self.rand_pool = self.pool.add(rng.randbytes(1 << 20))
        # SSH (RFC 4253)
        self.ssh = (
            t(netproto.ssh_banner("OpenSSH_9.6")),
            t(netproto.ssh_banner("OpenSSH_8.4p1")),
            t(netproto.ssh_kexinit(rng)),
            t(netproto.ssh_kexinit(rng)),
        )
        # UDP services
        names = [f"host{i}.hospital.example" for i in range(16)]
        self.dns = [
            (
                t(netproto.dns_query(0x1000 + i, n)),
                t(netproto.dns_response(0x1000 + i, n, [f"10.10.0.{i + 1}"] * (1 + i % 3))),
            )
            for i, n in enumerate(names)
        ]
        self.ntp = (t(netproto.ntp_packet(3, T0_NS)), t(netproto.ntp_packet(4, T0_NS, 2, T0_NS)))
        self.snmp = (
            t(netproto.snmp_v2c("public", 0xA0, 7, [(netproto.SYS_DESCR, None)])),
            t(netproto.snmp_v2c("public", 0xA2, 7, [(netproto.SYS_DESCR, "Infusion pump")])),
        )
        self.syslog = [
            t(netproto.syslog(16, s, "2026-01-01T10:00:00Z", "dev", "app", m))
            for s, m in (
                (6, "login ok"),
                (4, "link flap on port 3"),
                (3, "DICOM association rejected from 10.20.0.7"),
            )
        ]
        self.tm_arr = self.tm.array()
        self.pool_arr = self.pool.array()


# ---------------------------------------------------------------------------------------------
# Session planning (Python, one step per session)
# ---------------------------------------------------------------------------------------------

# message columns: direction, pre (off, len), pool (off, size, unit), pool bytes, post (off,
# len), think time before it (ns)
M_COLS = 10


class Plan:
    def __init__(self) -> None:
        self.msgs: list[tuple[int, ...]] = []
        self.sess: list[tuple[int, ...]] = []  # tcp, client, server, sport, dport, rtt, m_lo, m_hi

    def msg(
        self,
        d: int,
        pre=(0, 0),
        pool=(0, 1),
        pool_bytes: int = 0,
        post=(0, 0),
        think: int = 0,
        unit: int = 1,
    ) -> None:
        self.msgs.append(
            (d, pre[0], pre[1], pool[0], pool[1], unit, pool_bytes, post[0], post[1], think)
        )

    def session(
        self, tcp: int, client: int, server: int, sport: int, dport: int, rtt: int, m_lo: int
    ) -> None:
        self.sess.append((tcp, client, server, sport, dport, rtt, m_lo, len(self.msgs)))


def _ms(rng: random.Random, lo: float, hi: float) -> int:
    return int(rng.uniform(lo, hi) * 1e6)


def plan_dicom(p: Plan, c: Catalog, r: random.Random) -> None:
    p.msg(0, pre=c.dicom_rq)
    p.msg(1, pre=c.dicom_ac, think=_ms(r, 0.3, 2))
    for _ in range(r.randint(1, 6)):
        k = r.choice(IMAGE_PDUS)  # command PDU + first dataset PDU | k - 2 PDUs | last PDU
        p.msg(
            0,
            pre=c.dicom_head[k],
            pool=c.dicom_pool,
            pool_bytes=(k - 2) * DICOM_PDU,
            unit=DICOM_PDU,
            post=c.dicom_last,
            think=_ms(r, 2, 30),
        )
        p.msg(1, pre=c.dicom_rsp, think=_ms(r, 5, 40))
    p.msg(0, pre=c.dicom_rel[0], think=_ms(r, 1, 5))
    p.msg(1, pre=c.dicom_rel[1], think=_ms(r, 0.2, 1))


def plan_hl7(p: Plan, c: Catalog, r: random.Random) -> None:
    for _ in range(r.randint(2, 40)):
        m, a = r.choice(c.hl7)
        p.msg(0, pre=m, think=_ms(r, 200, 3000))
        p.msg(1, pre=a, think=_ms(r, 1, 8))


def plan_tls(p: Plan, c: Catalog, r: random.Random) -> None:
    p.msg(0, pre=r.choice(c.tls_ch))
    p.msg(1, pre=r.choice(c.tls_sh), think=_ms(r, 0.5, 3))
    p.msg(0, pool=c.tls_pool, pool_bytes=TLS_RECORD, unit=TLS_RECORD, think=_ms(r, 0.2, 1))
    for _ in range(r.randint(1, 8)):
        p.msg(
            0,
            pool=c.tls_pool,
            pool_bytes=TLS_RECORD * r.randint(1, 2),
            unit=TLS_RECORD,
            think=_ms(r, 5, 800),
        )
        p.msg(
            1,
            pool=c.tls_pool,
            pool_bytes=TLS_RECORD * min(int(r.paretovariate(1.3)), 90),
            unit=TLS_RECORD,
            think=_ms(r, 2, 60),
        )


def plan_http(p: Plan, c: Catalog, r: random.Random) -> None:
    for _ in range(r.randint(1, 4)):
        p.msg(0, pre=r.choice(c.http_req), think=_ms(r, 5, 1500))
        k = min(int(r.expovariate(0.9)), len(c.http_sizes) - 1)
        p.msg(
            1, pre=c.http_rsp[k], pool=c.text_pool, pool_bytes=c.http_sizes[k], think=_ms(r, 1, 30)
        )


def plan_ssh(p: Plan, c: Catalog, r: random.Random) -> None:
    b0, b1, k0, k1 = c.ssh
    p.msg(0, pre=b0)
    p.msg(1, pre=b1, think=_ms(r, 0.2, 1))
    p.msg(0, pre=k0, think=_ms(r, 0.2, 1))
    p.msg(1, pre=k1, think=_ms(r, 0.2, 1))
    for _ in range(r.randint(5, 60)):
        p.msg(0, pool=c.rand_pool, pool_bytes=36, think=_ms(r, 100, 900))
        p.msg(1, pool=c.rand_pool, pool_bytes=r.randint(36, 3000), think=_ms(r, 1, 5))


def plan_dns(p: Plan, c: Catalog, r: random.Random) -> None:
    q, a = r.choice(c.dns)
    p.msg(0, pre=q)
    p.msg(1, pre=a, think=_ms(r, 0.3, 20))


def plan_ntp(p: Plan, c: Catalog, r: random.Random) -> None:
    p.msg(0, pre=c.ntp[0])
    p.msg(1, pre=c.ntp[1], think=_ms(r, 0.3, 2))


def plan_snmp(p: Plan, c: Catalog, r: random.Random) -> None:
    for _ in range(r.randint(1, 4)):  # the manager (server side) polls the device
        p.msg(1, pre=c.snmp[0], think=_ms(r, 50, 500))
        p.msg(0, pre=c.snmp[1], think=_ms(r, 1, 10))


def plan_syslog(p: Plan, c: Catalog, r: random.Random) -> None:
    for _ in range(r.randint(1, 5)):
        p.msg(0, pre=r.choice(c.syslog), think=_ms(r, 10, 2000))


# name, transport (1 tcp, 0 udp), server port, weight (sessions), planner
KINDS = (
    ("dicom", 1, 104, 0.7, plan_dicom),
    ("hl7", 1, 2575, 5.0, plan_hl7),
    ("https", 1, 443, 22.0, plan_tls),
    ("http", 1, 80, 10.0, plan_http),
    ("ssh", 1, 22, 0.6, plan_ssh),
    ("dns", 0, 53, 55.0, plan_dns),
    ("ntp", 0, 123, 10.0, plan_ntp),
    ("snmp", 0, 161, 6.0, plan_snmp),
    ("syslog", 0, 514, 7.0, plan_syslog),
)


@dataclass
class Hosts:
    ip: np.ndarray  # uint32
    mac: np.ndarray  # uint64
    vlan: np.ndarray  # uint16
    ttl: np.ndarray  # uint8
    n_clients: int
    servers: dict[str, list[int]]
    order: np.ndarray  # clients in a shuffled order: sessions take them in turn
    next_client: int = 0


def make_hosts(n_clients: int, rng: np.random.Generator) -> Hosts:
    """Clients spread over the client VLANs (/16 each), servers in 10.10.0.0/24."""
    idx = np.arange(n_clients)
    vlan = np.array(CLIENT_VLANS, dtype=np.uint16)[idx % len(CLIENT_VLANS)]
    within = idx // len(CLIENT_VLANS) + 10
    ip = (10 << 24) | (vlan.astype(np.uint32) << 16) | (within // 250 << 8) | (within % 250 + 1)
    oui = np.array(CLIENT_OUIS, dtype=np.uint64)[rng.integers(0, len(CLIENT_OUIS), n_clients)]
    mac = (oui << np.uint64(24)) | (idx.astype(np.uint64) + np.uint64(0x100000))
    ttl = np.where(rng.random(n_clients) < 0.4, 128, 64).astype(np.uint8)
    names = [
        "dns",
        "dns",
        "ntp",
        "ntp",
        "nms",
        "syslog",
        "pacs",
        "pacs",
        "pacs-archive",
        "hl7-engine",
        "hl7-engine",
        "central",
        "pump-server",
    ] + ["web"] * 12
    s_ip = (10 << 24) | (SERVER_VLAN << 16) | (np.arange(len(names)) + 2)
    s_mac = (np.array(SERVER_OUIS, np.uint64)[np.arange(len(names)) % 2] << np.uint64(24)) | (
        np.arange(len(names), dtype=np.uint64) + np.uint64(0x0A0000)
    )
    servers: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        servers.setdefault(n, []).append(n_clients + i)
    return Hosts(
        ip=np.concatenate([ip, s_ip]).astype(np.uint32),
        mac=np.concatenate([mac, s_mac]).astype(np.uint64),
        vlan=np.concatenate([vlan, np.full(len(names), SERVER_VLAN, np.uint16)]),
        ttl=np.concatenate([ttl, np.full(len(names), 64, np.uint8)]),
        n_clients=n_clients,
        servers=servers,
        order=rng.permutation(n_clients),
    )


SERVER_OF = {
    "dicom": ["pacs", "pacs-archive"],
    "hl7": ["hl7-engine", "central"],
    "https": ["web", "pump-server"],
    "http": ["web"],
    "ssh": ["pacs", "web"],
    "dns": ["dns"],
    "ntp": ["ntp"],
    "snmp": ["nms"],
    "syslog": ["syslog"],
}


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

P_TS, P_SESS, P_DIR, P_FLAGS, P_SEQ, P_ACK, P_LEN, P_MSG, P_OFF = range(9)


@njit(cache=True, nogil=True)
def _emit(out, n, ts, s, d, flags, seq, ack, plen, m, moff):
    if n >= out.shape[0]:
        return n  # the caller sized `out`; never write past it
    out[n, 0] = ts
    out[n, 1] = s
    out[n, 2] = d
    out[n, 3] = flags
    out[n, 4] = seq
    out[n, 5] = ack
    out[n, 6] = plen
    out[n, 7] = m
    out[n, 8] = moff
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _acked_before(j: int) -> int:
    """Segments that must be acknowledged before segment j of a message may leave: slow start
    from an initial window of 10 (RFC 6928; cwnd + 1 per ACKed segment, RFC 5681 §3.1), at most
    43 segments in flight (below a 64240-byte receive window)."""
    return max(0, (j - 9 + 1) // 2, j - 42)


@njit(cache=True, nogil=True)
def plan_packets(
    sess: np.ndarray, msgs: np.ndarray, isn: np.ndarray, out: np.ndarray, dur: np.ndarray
) -> int:
    """Lay out every packet of every session (times relative to the session start).

    TCP follows RFC 9293: handshake, segments of at most MSS bytes paced by the ACKs (see
    `_acked_before`), an ACK for every second segment and the last, then FIN, FIN, ACK.
    UDP: one datagram per message. Returns the number of packets written.
    """
    n = 0
    M = 0xFFFFFFFF
    for s in range(sess.shape[0]):
        tcp, rtt, lo, hi = sess[s, 0], sess[s, 5], sess[s, 6], sess[s, 7]
        if lo < 0 or hi > msgs.shape[0] or lo > hi:
            continue
        t = np.int64(0)
        if tcp == 0:
            for m in range(lo, hi):
                t += msgs[m, 9]
                mlen = msgs[m, 2] + msgs[m, 6] + msgs[m, 8]
                n = _emit(out, n, t, s, msgs[m, 0], 0, 0, 0, mlen, m, 0)
            dur[s] = t
            continue
        nxt0 = isn[s, 0] & M
        nxt1 = isn[s, 1] & M
        n = _emit(out, n, t, s, 0, 0x02, nxt0, 0, 0, -1, 0)  # SYN
        n = _emit(out, n, t + rtt // 2, s, 1, 0x12, nxt1, (nxt0 + 1) & M, 0, -1, 0)  # SYN-ACK
        nxt0 = (nxt0 + 1) & M
        nxt1 = (nxt1 + 1) & M
        t += rtt
        n = _emit(out, n, t, s, 0, 0x10, nxt0, nxt1, 0, -1, 0)  # ACK
        for m in range(lo, hi):
            d = msgs[m, 0]
            mlen = msgs[m, 2] + msgs[m, 6] + msgs[m, 8]
            t += msgs[m, 9]
            nseg = (mlen + MSS - 1) // MSS
            st = np.empty(max(nseg, 1), dtype=np.int64)  # send time of each segment
            for j in range(nseg):
                need = _acked_before(j)
                if need > 0:  # wait for the ACK covering segment need - 1
                    t = max(t, st[min((need - 1) | 1, nseg - 1)] + rtt)
                st[j] = t
                pos = j * MSS
                plen = min(MSS, mlen - pos)
                flags = 0x18 if j == nseg - 1 else 0x10  # PSH on the last segment
                if d == 0:
                    n = _emit(out, n, t, s, 0, flags, nxt0, nxt1, plen, m, pos)
                    nxt0 = (nxt0 + plen) & M
                else:
                    n = _emit(out, n, t, s, 1, flags, nxt1, nxt0, plen, m, pos)
                    nxt1 = (nxt1 + plen) & M
                t += (plen + 58) * 8  # serialization at 1 Gbit/s, in ns
                if j % 2 == 1 or j == nseg - 1:  # delayed ACK: every second segment, the last
                    if d == 0:
                        n = _emit(out, n, st[j] + rtt, s, 1, 0x10, nxt1, nxt0, 0, -1, 0)
                    else:
                        n = _emit(out, n, st[j] + rtt, s, 0, 0x10, nxt0, nxt1, 0, -1, 0)
            last_ack = st[nseg - 1] + rtt if nseg > 0 else t
            t = last_ack
        t += rtt
        n = _emit(out, n, t, s, 0, 0x11, nxt0, nxt1, 0, -1, 0)  # FIN
        nxt0 = (nxt0 + 1) & M
        n = _emit(out, n, t + rtt // 2, s, 1, 0x11, nxt1, nxt0, 0, -1, 0)  # FIN
        nxt1 = (nxt1 + 1) & M
        n = _emit(out, n, t + rtt, s, 0, 0x10, nxt0, nxt1, 0, -1, 0)  # last ACK
        dur[s] = t + rtt
    return n


@njit(cache=True, nogil=True, inline="always")
def _put(buf, p, v, nbytes):
    for k in range(nbytes):
        buf[p + k] = (v >> (8 * (nbytes - 1 - k))) & 0xFF


@njit(cache=True, nogil=True)
def write_frames(
    pk: np.ndarray,
    sess: np.ndarray,
    msgs: np.ndarray,
    h_ip: np.ndarray,
    h_mac: np.ndarray,
    h_vlan: np.ndarray,
    h_ttl: np.ndarray,
    tm: np.ndarray,
    pool: np.ndarray,
    vlan_tags: bool,
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
) -> int:
    """Ethernet(+802.1Q)/IPv4/TCP|UDP frames for the packets `pk`, checksums left zero.

    Client hosts are on spanned VLANs, servers behind the router: client->server frames go to
    the router's MAC, server->client frames come from it with the TTL one less.
    Returns the bytes used, or -1 if `buf` is too small (nothing is written past it).
    """
    p = 0
    nb = buf.shape[0]
    ntm = tm.shape[0]
    npool = pool.shape[0]
    for i in range(pk.shape[0]):
        s = pk[i, 1]
        d = pk[i, 2]
        flags = pk[i, 3]
        plen = pk[i, 6]
        m = pk[i, 7]
        tcp = sess[s, 0]
        c, srv = sess[s, 1], sess[s, 2]
        vlan = h_vlan[c]
        router = np.uint64(0x00000C07AC00) | np.uint64(vlan & 0xFF)
        if d == 0:
            dst_mac, src_mac = router, h_mac[c]
            src_ip, dst_ip, ttl = h_ip[c], h_ip[srv], h_ttl[c]
            sport, dport = sess[s, 3], sess[s, 4]
        else:
            dst_mac, src_mac = h_mac[c], router
            src_ip, dst_ip, ttl = h_ip[srv], h_ip[c], h_ttl[srv] - 1
            sport, dport = sess[s, 4], sess[s, 3]
        opt = 4 if (flags & 0x02) else 0  # MSS option on SYN and SYN-ACK
        l4 = 20 + opt if tcp else 8
        l2 = 18 if vlan_tags else 14
        flen = l2 + 20 + l4 + plen
        wire = max(flen, 60)
        if p + wire > nb:
            return -1
        off[i] = p
        length[i] = wire
        _put(buf, p, dst_mac, 6)
        _put(buf, p + 6, src_mac, 6)
        q = p + 12
        if vlan_tags:
            _put(buf, q, 0x8100, 2)
            _put(buf, q + 2, vlan, 2)
            q += 4
        _put(buf, q, 0x0800, 2)
        q += 2
        # IPv4 header (RFC 791 §3.1); checksum filled later
        _put(buf, q, 0x4500, 2)
        _put(buf, q + 2, 20 + l4 + plen, 2)
        _put(buf, q + 4, (i * 40503 + s) & 0xFFFF, 2)
        _put(buf, q + 6, 0x4000, 2)  # DF
        buf[q + 8] = ttl
        buf[q + 9] = 6 if tcp else 17
        _put(buf, q + 10, 0, 2)
        _put(buf, q + 12, src_ip, 4)
        _put(buf, q + 16, dst_ip, 4)
        q += 20
        _put(buf, q, sport, 2)
        _put(buf, q + 2, dport, 2)
        if tcp:  # RFC 9293 §3.1
            _put(buf, q + 4, pk[i, 4], 4)
            _put(buf, q + 8, pk[i, 5] if flags & 0x10 else 0, 4)
            buf[q + 12] = (5 + opt // 4) << 4
            buf[q + 13] = flags
            _put(buf, q + 14, 64240, 2)
            _put(buf, q + 16, 0, 4)
            if opt:
                _put(buf, q + 20, 0x020405B4, 4)  # MSS 1460
            q += 20 + opt
        else:  # RFC 768
            _put(buf, q + 4, 8 + plen, 2)
            _put(buf, q + 6, 0, 2)
            q += 8
        # payload: message bytes [moff, moff + plen) = pre | pool | post
        if plen > 0 and m >= 0:
            pre_off, pre_len = msgs[m, 1], msgs[m, 2]
            pool_off, pool_size, unit = msgs[m, 3], msgs[m, 4], msgs[m, 5]
            pool_bytes, post_off = msgs[m, 6], msgs[m, 7]
            k = pk[i, 8]
            end = k + plen
            while k < end:
                if k < pre_len:
                    j = min(end, pre_len)
                    a = pre_off + k
                    b = pre_off + j
                    if a < 0 or b > ntm:
                        return -1
                    buf[q : q + j - k] = tm[a:b]
                elif k < pre_len + pool_bytes:
                    j = min(end, pre_len + pool_bytes)
                    # pool position, starting at a unit boundary picked by the message index
                    start = ((m * 7919) % max(pool_size // unit, 1)) * unit
                    r = (start + k - pre_len) % pool_size
                    j = min(j, k + pool_size - r)
                    a = pool_off + r
                    b = a + j - k
                    if a < 0 or b > npool:
                        return -1
                    buf[q : q + j - k] = pool[a:b]
                else:
                    j = end
                    a = post_off + k - pre_len - pool_bytes
                    b = a + j - k
                    if a < 0 or b > ntm:
                        return -1
                    buf[q : q + j - k] = tm[a:b]
                q += j - k
                k = j
        if wire > flen:
            buf[p + flen : p + wire] = 0  # Ethernet padding
        p += wire
    return p


# ---------------------------------------------------------------------------------------------
# Epochs
# ---------------------------------------------------------------------------------------------


def plan_epoch(
    cat: Catalog,
    hosts: Hosts,
    target: int,
    rng: random.Random,
    nprng: np.random.Generator,
    eph: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Sessions (and their messages) for about `target` packets."""
    plan = Plan()
    names = [k[0] for k in KINDS]
    weights = [k[3] for k in KINDS]
    est = 0
    while est < target:
        kind = rng.choices(range(len(KINDS)), weights)[0]
        name, tcp, port, _, planner = KINDS[kind]
        client = int(hosts.order[hosts.next_client % hosts.n_clients])  # every host in turn
        hosts.next_client += 1
        server = rng.choice([s for role in SERVER_OF[name] for s in hosts.servers[role]])
        lo = len(plan.msgs)
        planner(plan, cat, rng)
        eph[client] = 49152 + (eph[client] - 49152 + 1 + rng.randrange(7)) % 16384
        sport = 123 if name == "ntp" else (514 if name == "syslog" else int(eph[client]))
        rtt = int(rng.uniform(0.15, 1.5) * 1e6)
        plan.session(tcp, client, server, sport, port, rtt, lo)
        m = np.array(plan.msgs[lo:], dtype=np.int64)
        size = m[:, 2] + m[:, 6] + m[:, 8]
        est += int(np.ceil(size / MSS).sum() * 1.5 + 6) if tcp else len(size)
    del names
    return np.array(plan.sess, dtype=np.int64), np.array(plan.msgs, dtype=np.int64)


def generate(
    out: Path,
    packets: int,
    seed: int,
    n_clients: int,
    epoch_packets: int,
    vlan_tags: bool,
    rate_pps: float,
    verbose: bool = True,
) -> dict[str, float]:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    cat = Catalog(rng)
    hosts = make_hosts(n_clients, nprng)
    eph = np.full(hosts.ip.shape[0], 49152, dtype=np.int64) + nprng.integers(
        0, 16000, hosts.ip.shape[0]
    )
    written = 0
    nbytes = 0
    sessions = 0
    t_epoch = T0_NS
    started = time.perf_counter()
    with PcapWriter(out) as w:
        while written < packets:
            want = min(epoch_packets, packets - written)
            sess, msgs = plan_epoch(cat, hosts, want, rng, nprng, eph)
            isn = nprng.integers(0, 1 << 32, size=(len(sess), 2), dtype=np.int64)
            bound = int(
                sum(
                    6
                    + np.ceil((msgs[a:b, 2] + msgs[a:b, 6] + msgs[a:b, 8]) / MSS).sum() * 2
                    + (b - a)
                    for a, b in zip(sess[:, 6], sess[:, 7], strict=True)
                )
            )
            pk = np.empty((bound, 9), dtype=np.int64)
            dur = np.zeros(len(sess), dtype=np.int64)
            n = plan_packets(sess, msgs, isn, pk, dur)
            pk = pk[:n]
            span = max(int(n / rate_pps * 1e9), int(dur.max()) + 1)
            start = nprng.integers(0, np.maximum(span - dur, 1), dtype=np.int64)
            pk[:, 0] += start[pk[:, 1]] + t_epoch
            pk = pk[np.argsort(pk[:, 0], kind="stable")]
            if written + n > packets:  # the capture stops here, mid-conversation for some
                n = packets - written
                pk = pk[:n]
            total = int(((pk[:, 6] + 62).clip(min=60)).sum())
            buf = np.empty(total, dtype=np.uint8)
            off = np.empty(n, dtype=np.int64)
            length = np.empty(n, dtype=np.int64)
            used = write_frames(
                pk,
                sess,
                msgs,
                hosts.ip,
                hosts.mac,
                hosts.vlan,
                hosts.ttl,
                cat.tm_arr,
                cat.pool_arr,
                vlan_tags,
                buf,
                off,
                length,
            )
            if used < 0:
                raise RuntimeError("frame buffer too small (a bug in gen_capture)")
            fill_checksums(buf, off, length)
            w.write_batch(buf, off, length, pk[:, 0])
            written += n
            nbytes += int(length.sum())
            sessions += len(np.unique(pk[:, 1]))
            t_epoch += span + 1_000_000_000
            if verbose:
                print(
                    f"  {written:,} packets, {sessions:,} sessions, "
                    f"{time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                )
    elapsed = time.perf_counter() - started
    return {
        "packets": written,
        "bytes": nbytes,
        "sessions": sessions,
        "mean_frame": nbytes / max(written, 1),
        "seconds": elapsed,
        "hosts": n_clients + len(hosts.ip) - hosts.n_clients,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="pcap file to write")
    ap.add_argument("--packets", type=int, default=1_200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--scale-hosts",
        type=int,
        default=800,
        metavar="N",
        help="number of client hosts (e.g. 10000)",
    )
    ap.add_argument(
        "--epoch-packets",
        type=int,
        default=250_000,
        help="packets generated per independent time window (bounds memory)",
    )
    ap.add_argument("--rate", type=float, default=20_000.0, help="mean packets per second")
    ap.add_argument("--vlan", action="store_true", help="keep 802.1Q tags (default: untagged)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.packets < 1 or a.scale_hosts < 1:
        ap.error("--packets and --scale-hosts must be positive")
    r = generate(
        a.out,
        a.packets,
        a.seed,
        a.scale_hosts,
        a.epoch_packets,
        a.vlan,
        a.rate,
        verbose=not a.quiet,
    )
    print(
        f"wrote {a.out}: {r['packets']:,} packets, {r['bytes'] / 1e6:,.1f} MB of frames, "
        f"mean frame {r['mean_frame']:.0f} B, {r['sessions']:,} sessions, {r['hosts']:,} hosts,"
        f" {r['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
