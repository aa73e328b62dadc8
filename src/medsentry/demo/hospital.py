"""A small hospital network, one minute of its traffic, written as a pcap file.

Three VLANs behind one router: servers (10), clinical devices (20), office IT (30). Hosts carry
their real vendors' MAC OUIs (IEEE registry, as in Wireshark's `manuf`). What happens: DHCP for
a pump and a monitor joining, DNS and NTP, a CT scanner verifying (C-ECHO), querying the
modality worklist (C-FIND) and storing a study on the PACS (C-STORE), an HL7 interface engine
receiving ADT^A01 and lab ORU^R01 with ACKs over MLLP, bedside monitors sending vitals ORU^R01 to
their central station, infusion pumps talking HTTPS to their server, SNMPv2c polling, syslog,
an SSH and an RDP session, and office PCs browsing HTTP and HTTPS. All patients are synthetic.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from medsentry.capture.writer import CLIENT, SERVER, FrameLog, Host, TcpSession
from medsentry.demo import dicom, hl7, netproto

T0_NS = 1_767_261_600_000_000_000  # 2026-01-01 10:00:00 UTC
DURATION_S = 60
SERVER_VLAN = 10
UPSTREAM_MAC = "00:00:0c:9f:f0:01"
ROUTER_MAC = {10: "00:00:0c:07:ac:0a", 20: "00:00:0c:07:ac:14", 30: "00:00:0c:07:ac:1e"}
DOMAIN = "demo-hospital.local"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, for generated UIDs
# What the systems say about themselves, the way real ones do (the inventory identifies them):
# the CT's association carries a GE Healthcare implementation class UID (GE's root
# 1.2.840.113619) and the PACS/RIS answer as dcm4chee (dcm4che's 1.2.40.0.13.1.3, version name
# 'dcm4che-<version>', as dcm4che-core Implementation.java sets them).
CT_IMPLEMENTATION = ("1.2.840.113619.6.374", "REVOLUTION_EVO")
ARCHIVE_IMPLEMENTATION = ("1.2.40.0.13.1.3", "dcm4che-5.31.0")
# HL7 MSH-3/MSH-5 application names of the systems (their products' names)
HL7_APP = {
    "ehr": "EPIC",
    "lis": "SUNQUEST",
    "hl7-engine": "RHAPSODY",
    "central": "IntelliVue Information Center iX",
    "mon-101": "IntelliVue MX800",
    "mon-102": "IntelliVue MX800",
    "mon-103": "Infinity Delta",
    "mon-104": "BeneVision N12",
}


@dataclass(frozen=True, slots=True)
class DemoHost:
    name: str
    ip: str
    mac: str
    vlan: int
    role: str
    vendor: str
    ttl: int = 64


# name, IP, MAC (vendor OUI + host part), VLAN, role, vendor (per the OUI), TTL
HOSTS: tuple[DemoHost, ...] = (
    DemoHost("dns-dhcp", "10.10.0.2", "00:06:5b:10:00:02", 10, "DNS/DHCP server", "Dell"),
    DemoHost("ntp", "10.10.0.3", "00:06:5b:10:00:03", 10, "NTP server", "Dell"),
    DemoHost("pacs", "10.10.0.20", "00:06:5b:10:00:20", 10, "PACS", "Dell"),
    DemoHost("ris", "10.10.0.21", "00:0c:29:10:00:21", 10, "RIS / worklist", "VMware"),
    DemoHost("hl7-engine", "10.10.0.30", "00:0c:29:10:00:30", 10, "HL7 engine", "VMware"),
    DemoHost("ehr", "10.10.0.31", "00:0c:29:10:00:31", 10, "EHR / ADT", "VMware", 128),
    DemoHost("lis", "10.10.0.32", "00:0c:29:10:00:32", 10, "Lab system", "VMware", 128),
    DemoHost("pump-server", "10.10.0.40", "00:0c:29:10:00:40", 10, "Pump server", "VMware"),
    DemoHost("nms", "10.10.0.50", "00:0c:29:10:00:50", 10, "NMS / syslog", "VMware"),
    DemoHost("intranet", "10.10.0.60", "00:0c:29:10:00:60", 10, "Intranet web", "VMware"),
    DemoHost("ct-01", "10.20.0.11", "44:4b:5d:20:00:11", 20, "CT scanner", "GE Healthcare"),
    DemoHost("central", "10.20.0.100", "00:09:5c:20:01:00", 20, "Central station", "Philips"),
    DemoHost("mon-101", "10.20.0.101", "00:09:5c:20:01:01", 20, "Patient monitor", "Philips"),
    DemoHost("mon-102", "10.20.0.102", "00:09:5c:20:01:02", 20, "Patient monitor", "Philips"),
    DemoHost("mon-103", "10.20.0.103", "00:10:5d:20:01:03", 20, "Patient monitor", "Draeger"),
    DemoHost("mon-104", "10.20.0.104", "00:0f:14:20:01:04", 20, "Patient monitor", "Mindray"),
    DemoHost("pump-150", "10.20.0.150", "00:12:21:20:01:50", 20, "Infusion pump", "B. Braun"),
    DemoHost("pump-151", "10.20.0.151", "00:12:21:20:01:51", 20, "Infusion pump", "B. Braun"),
    DemoHost("pc-21", "10.30.0.21", "00:02:b3:30:00:21", 30, "Workstation", "Intel", 128),
    DemoHost("pc-22", "10.30.0.22", "00:02:b3:30:00:22", 30, "Workstation", "Intel", 128),
    DemoHost("pc-23", "10.30.0.23", "00:08:74:30:00:23", 30, "Workstation", "Dell", 128),
    DemoHost("admin", "10.30.0.5", "00:08:74:30:00:05", 30, "Admin laptop", "Dell"),
    DemoHost("router", "10.10.0.1", ROUTER_MAC[10], 10, "Router", "Cisco", 255),
)
# What each host is, as the inventory's taxonomy names it (ground truth for tests/benchmarks).
CATEGORY = {
    "dns-dhcp": "it.server",
    "ntp": "it.server",
    "pacs": "pacs",
    "ris": "ris",
    "hl7-engine": "interface-engine",
    "ehr": "ehr",
    "lis": "lis",
    "pump-server": "infusion-pump.pump-server",
    "nms": "it.server",
    "intranet": "it.server",
    "ct-01": "imaging.ct",
    "central": "patient-monitor.central-station",
    "mon-101": "patient-monitor",
    "mon-102": "patient-monitor",
    "mon-103": "patient-monitor",
    "mon-104": "patient-monitor",
    "pump-150": "infusion-pump",
    "pump-151": "infusion-pump",
    "pc-21": "it.workstation",
    "pc-22": "it.workstation",
    "pc-23": "it.workstation",
    "admin": "it.workstation",
    "router": "it.network",
}
INTERNET = {"www.example.org": "203.0.113.10", "updates.example.com": "203.0.113.20"}

# The synthetic patients (no real person): MRN, family, given, birth date, sex, bed.
PATIENTS = (
    hl7.Patient("SYN000101", "TESTPATIENT", "ALPHA", "19600101", "F", "ICU^101^A"),
    hl7.Patient("SYN000102", "TESTPATIENT", "BRAVO", "19750215", "M", "ICU^102^A"),
    hl7.Patient("SYN000103", "TESTPATIENT", "CHARLIE", "19820330", "F", "ICU^103^A"),
    hl7.Patient("SYN000104", "TESTPATIENT", "DELTA", "19911111", "M", "ICU^104^A"),
)


@dataclass
class DemoCapture:
    """What was written: the file, its packets and the conversations per protocol."""

    path: Path
    packets: int
    conversations: dict[str, int] = field(default_factory=dict)
    hosts: tuple[DemoHost, ...] = HOSTS


class _Net:
    """The hosts as `Host` interfaces, the frame log and the clock helpers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.log = FrameLog()
        self.host: dict[str, Host] = {}
        for h in HOSTS:
            gw = None if h.name == "router" else ROUTER_MAC[h.vlan]
            # the SPAN session monitors the device VLANs: see `Host`
            spanned = h.vlan != SERVER_VLAN
            self.host[h.name] = Host(
                h.ip, h.mac, vlan=h.vlan, gateway_mac=gw, ttl=h.ttl, name=h.name, spanned=spanned
            )
        for name, ip in INTERNET.items():  # beyond the upstream router: seen routed onto VLAN 30
            self.host[name] = Host(
                ip, "00:00:0c:9f:f0:01", vlan=0, gateway_mac=UPSTREAM_MAC, ttl=52, spanned=False
            )
        self.conversations: dict[str, int] = {}
        self._eph = {name: 49152 + self.rng.randrange(8000) for name in self.host}

    def count(self, proto: str) -> None:
        self.conversations[proto] = self.conversations.get(proto, 0) + 1

    def at(self, second: float) -> int:
        return T0_NS + int(second * 1e9) + self.rng.randrange(1_000_000)

    def port(self, name: str) -> int:
        """Next ephemeral port of a host (RFC 6335 §6 dynamic range)."""
        self._eph[name] += 1 + self.rng.randrange(3)
        if self._eph[name] > 65535:
            self._eph[name] = 49152
        return self._eph[name]

    def session(self, client: str, server: str, dport: int, proto: str, **kw: int) -> TcpSession:
        self.count(proto)
        return TcpSession(
            self.log,
            self.host[client],
            self.host[server],
            self.port(client),
            dport,
            isn_client=self.rng.getrandbits(32),
            isn_server=self.rng.getrandbits(32),
            **kw,
        )

    def udp(
        self,
        client: str,
        server: str,
        dport: int,
        proto: str,
        exchange: list[tuple[int, bytes]],
        t: int,
        sport: int | None = None,
    ) -> int:
        """Datagrams alternating client/server; `exchange` holds (direction, payload)."""
        self.count(proto)
        c, s = self.host[client], self.host[server]
        cport = sport if sport is not None else self.port(client)
        for direction, payload in exchange:
            if direction == CLIENT:
                self.log.add(t, c.udp_frame(s, cport, dport, payload))
            else:
                self.log.add(t, s.udp_frame(c, dport, cport, payload))
            t += 300_000 + self.rng.randrange(400_000)
        return t


def _dhcp(net: _Net, name: str, vendor_class: str, t: int) -> None:
    """DORA through the router's relay interface (RFC 2131 §3.1)."""
    h = net.host[name]
    mac = bytes.fromhex(h.mac.replace(":", ""))
    xid = net.rng.getrandbits(32)
    client = Host("0.0.0.0", h.mac, vlan=h.vlan, gateway_mac=None, ttl=64)
    bcast = Host("255.255.255.255", "ff:ff:ff:ff:ff:ff", vlan=h.vlan)
    relay = Host(f"10.{h.vlan}.0.1", ROUTER_MAC[h.vlan], vlan=h.vlan, ttl=255)
    kw = {"hostname": name.upper(), "vendor_class": vendor_class}
    net.count("dhcp")
    srv = {"server_id": "10.10.0.2", "router": f"10.{h.vlan}.0.1", "yiaddr": h.ip}
    msgs = [
        (client, bcast, 68, 67, netproto.dhcp_message(netproto.DHCPDISCOVER, xid, mac, **kw)),
        (relay, bcast, 67, 68, netproto.dhcp_message(netproto.DHCPOFFER, xid, mac, **srv)),
        (
            client,
            bcast,
            68,
            67,
            netproto.dhcp_message(netproto.DHCPREQUEST, xid, mac, requested_ip=h.ip, **kw),
        ),
        (relay, bcast, 67, 68, netproto.dhcp_message(netproto.DHCPACK, xid, mac, **srv)),
    ]
    for src, dst, sport, dport, payload in msgs:
        net.log.add(t, src.udp_frame(dst, sport, dport, payload))
        t += 2_000_000 + net.rng.randrange(3_000_000)


def _dns(net: _Net, client: str, name: str, answer: str, t: int) -> int:
    ident = net.rng.getrandbits(16)
    return net.udp(
        client,
        "dns-dhcp",
        53,
        "dns",
        [
            (CLIENT, netproto.dns_query(ident, name)),
            (SERVER, netproto.dns_response(ident, name, [answer])),
        ],
        t,
    )


def _ntp(net: _Net, client: str, t: int) -> None:
    net.udp(
        client,
        "ntp",
        123,
        "ntp",
        [
            (CLIENT, netproto.ntp_packet(3, t)),
            (SERVER, netproto.ntp_packet(4, t + 300_000, stratum=2, origin_ns=t)),
        ],
        t,
        sport=123,
    )


def _dicom(net: _Net, t: int) -> None:
    """CT scanner: C-ECHO to the PACS, worklist C-FIND on the RIS, C-STORE of a 3-image study."""
    rng = net.rng
    # Verification (PS3.4 Annex A)
    s = net.session("ct-01", "pacs", 104, "dicom")
    t = s.open(t)
    ct, arc = CT_IMPLEMENTATION, ARCHIVE_IMPLEMENTATION
    t = s.send(CLIENT, dicom.associate_rq("CT01", "PACS", [Verification], ct), t)
    t = s.send(SERVER, dicom.associate_ac("CT01", "PACS", [Verification], arc), t + 800_000)
    t = s.send(CLIENT, dicom.c_echo_rq(1), t)
    t = s.send(SERVER, dicom.c_echo_rsp(1), t + 300_000)
    t = s.send(CLIENT, dicom.release_rq(), t)
    t = s.send(SERVER, dicom.release_rp(), t + 200_000)
    t = s.close(t + 100_000)
    # Modality worklist query (PS3.4 Annex K)
    t += 2_000_000_000
    w = net.session("ct-01", "ris", 104, "dicom")
    t = w.open(t)
    mwl = [ModalityWorklistInformationFind]
    t = w.send(CLIENT, dicom.associate_rq("CT01", "RIS", mwl, ct), t)
    t = w.send(SERVER, dicom.associate_ac("CT01", "RIS", mwl, arc), t + 900_000)
    t = w.send(CLIENT, dicom.c_find_rq(1, dicom.worklist_query("CT", "CT01")), t)
    for p in PATIENTS[:2]:
        match = dicom.worklist_query("CT", "CT01")
        match.PatientName = f"{p.family}^{p.given}"
        match.PatientID = p.mrn
        match.AccessionNumber = f"ACC{rng.randrange(10**6):06d}"
        t = w.send(SERVER, dicom.c_find_rsp(1, match), t + 4_000_000)
    t = w.send(SERVER, dicom.c_find_rsp(1, None), t + 500_000)
    t = w.send(CLIENT, dicom.release_rq(), t)
    t = w.send(SERVER, dicom.release_rp(), t + 200_000)
    t = w.close(t + 100_000)
    # Storage (PS3.4 Annex B): one study, three CT images
    t += 8_000_000_000
    st = net.session("ct-01", "pacs", 104, "dicom")
    t = st.open(t)
    t = st.send(CLIENT, dicom.associate_rq("CT01", "PACS", [CTImageStorage], ct), t)
    t = st.send(SERVER, dicom.associate_ac("CT01", "PACS", [CTImageStorage], arc), t + 800_000)
    p = PATIENTS[0]
    study = generate_uid(UID_ROOT, [f"study-{rng.random()}"])
    for i in range(1, 4):
        sop = generate_uid(UID_ROOT, [f"sop-{rng.random()}"])
        ds = dicom.ct_dataset(f"{p.family}^{p.given}", p.mrn, study, sop)
        ds.InstanceNumber = i
        t = st.send(CLIENT, dicom.c_store_rq(i, ds), t + 5_000_000)
        t = st.send(SERVER, dicom.c_store_rsp(i, sop), t + 20_000_000)
    t = st.send(CLIENT, dicom.release_rq(), t)
    t = st.send(SERVER, dicom.release_rp(), t + 200_000)
    st.close(t + 100_000)


def _hl7_exchange(
    net: _Net,
    sess: TcpSession,
    msgs: list[tuple[str, str]],
    t: int,
    sender: str,
    receiver: str,
    gap_ns: int,
) -> int:
    """Each (control id, message) from the client, acknowledged by the server (original mode)."""
    for control_id, msg in msgs:
        t = sess.send(CLIENT, hl7.mllp(msg), t)
        ack_id = f"A{control_id}"
        ts = _hl7_ts(t)
        t = sess.send(
            SERVER,
            hl7.mllp(hl7.ack(receiver, sender, ts, ack_id, control_id, trigger=msg)),
            t + 3_000_000,
        )
        t += gap_ns + net.rng.randrange(gap_ns // 2 + 1)
    return t


def _hl7_ts(t: int) -> str:
    return dt.datetime.fromtimestamp(t / 1e9, dt.UTC).strftime("%Y%m%d%H%M%S")


_WORDS = ("ward", "visiting", "hours", "pharmacy", "update", "staff", "rota", "menu", "parking")


def _text(rng: random.Random, size: int) -> bytes:
    """Page-like ASCII text of about `size` bytes."""
    out = " ".join(rng.choice(_WORDS) for _ in range(size // 6 + 1))
    return out[:size].encode()


def _hl7(net: _Net, t: int) -> None:
    """EHR -> engine ADT^A01 admissions; lab -> engine ORU^R01; monitors -> central vitals."""
    s = net.session("ehr", "hl7-engine", 2575, "hl7")
    t1 = s.open(t)
    msgs = [
        (
            f"ADT{i:04d}",
            hl7.adt_a01(p, HL7_APP["ehr"], HL7_APP["hl7-engine"], _hl7_ts(t1), f"ADT{i:04d}"),
        )
        for i, p in enumerate(PATIENTS, 1)
    ]
    t1 = _hl7_exchange(net, s, msgs, t1, HL7_APP["ehr"], HL7_APP["hl7-engine"], 4_000_000_000)
    s.close(t1)
    lab = net.session("lis", "hl7-engine", 2575, "hl7")
    t2 = lab.open(t + 20_000_000_000)
    msgs = [
        (
            f"LAB{i:04d}",
            hl7.oru_r01(
                p,
                HL7_APP["lis"],
                HL7_APP["hl7-engine"],
                _hl7_ts(t2),
                f"LAB{i:04d}",
                [round(net.rng.uniform(60, 100))],
            ),
        )
        for i, p in enumerate(PATIENTS[:2], 1)
    ]
    t2 = _hl7_exchange(net, lab, msgs, t2, HL7_APP["lis"], HL7_APP["hl7-engine"], 2_000_000_000)
    lab.close(t2)
    # bedside monitors: one long-lived connection each, vitals every 5 s
    for k, (mon, p) in enumerate(
        zip(["mon-101", "mon-102", "mon-103", "mon-104"], PATIENTS, strict=True)
    ):
        m = net.session(mon, "central", 2575, "hl7", rtt_ns=150_000)
        tm = m.open(t + k * 700_000_000)
        msgs = []
        for j in range(DURATION_S // 5 - 1):
            vit = [
                round(net.rng.gauss(78, 6)),
                round(net.rng.gauss(97, 1.2)),
                round(net.rng.gauss(122, 8)),
                round(net.rng.gauss(79, 5)),
                round(net.rng.gauss(16, 2)),
            ]
            cid = f"{mon.upper()}-{j:05d}"
            msgs.append(
                (
                    cid,
                    hl7.oru_r01(
                        p,
                        HL7_APP[mon],
                        HL7_APP["central"],
                        _hl7_ts(tm + j * 5_000_000_000),
                        cid,
                        vit,
                    ),
                )
            )
        tm = _hl7_exchange(net, m, msgs, tm, HL7_APP[mon], HL7_APP["central"], 4_900_000_000)


def _tls(
    net: _Net,
    client: str,
    server: str,
    sni: str,
    t: int,
    exchanges: list[tuple[int, int]],
    proto: str = "https",
    port: int = 443,
) -> int:
    """A TLS 1.3 connection: hellos, then (request bytes, response bytes) exchanges."""
    rng = net.rng
    s = net.session(client, server, port, proto, rtt_ns=2_000_000 if "." in server else 400_000)
    t = s.open(t)
    t = s.send(CLIENT, netproto.tls_client_hello(rng, sni, ["h2", "http/1.1"]), t)
    t = s.send(SERVER, netproto.tls_server_hello(rng), t + 1_000_000)
    t = s.send(CLIENT, netproto.tls_application_data(rng, 58), t)  # client Finished
    for req, resp in exchanges:
        t = s.send(CLIENT, netproto.tls_application_data(rng, req), t + rng.randrange(5_000_000))
        t = s.send(SERVER, netproto.tls_application_data(rng, resp), t + 3_000_000)
    return s.close(t + 50_000_000)


def _it(net: _Net, t: int) -> None:
    rng = net.rng
    for k, pc in enumerate(["pc-21", "pc-22", "pc-23"]):
        tp = t + k * 3_100_000_000
        tp = _dns(net, pc, f"intranet.{DOMAIN}", "10.10.0.60", tp)
        s = net.session(pc, "intranet", 80, "http")
        tp = s.open(tp)
        for path, ctype in (
            ("/", "text/html"),
            ("/news.html", "text/html"),
            ("/site.css", "text/css"),
        ):
            req = netproto.http_request(
                "GET", f"intranet.{DOMAIN}", path, "Mozilla/5.0 (Windows NT 10.0)"
            )
            tp = s.send(CLIENT, req, tp + rng.randrange(20_000_000))
            body = _text(rng, rng.randrange(2_000, 60_000))
            tp = s.send(SERVER, netproto.http_response(body, ctype), tp + 2_000_000)
        s.close(tp + 1_000_000_000)
        site = "www.example.org" if k != 1 else "updates.example.com"
        tp = _dns(net, pc, site, INTERNET[site], tp + 500_000_000)
        _tls(
            net,
            pc,
            site,
            site,
            tp,
            [(rng.randrange(300, 900), rng.randrange(5_000, 120_000)) for _ in range(3)],
        )
    # RDP: a workstation to the EHR server (MS-RDPBCGR 1.3.1.1), then TLS-protected traffic
    r = net.session("pc-22", "ehr", 3389, "rdp")
    tr = r.open(t + 12_000_000_000)
    tr = r.send(CLIENT, netproto.rdp_connection_request("nurse01"), tr)
    tr = r.send(SERVER, netproto.rdp_connection_confirm(), tr + 500_000)
    tr = r.send(CLIENT, netproto.tls_client_hello(rng, "ehr"), tr)
    tr = r.send(SERVER, netproto.tls_server_hello(rng), tr + 800_000)
    for _ in range(40):
        tr = r.send(
            CLIENT,
            netproto.tls_application_data(rng, rng.randrange(40, 200)),
            tr + rng.randrange(50_000_000, 400_000_000),
        )
        tr = r.send(
            SERVER, netproto.tls_application_data(rng, rng.randrange(500, 9000)), tr + 5_000_000
        )
    r.close(tr + 10_000_000)
    # SSH: the admin laptop to the PACS (RFC 4253)
    s = net.session("admin", "pacs", 22, "ssh")
    ts = s.open(t + 30_000_000_000)
    ts = s.send(CLIENT, netproto.ssh_banner("OpenSSH_9.6"), ts)
    ts = s.send(SERVER, netproto.ssh_banner("OpenSSH_8.4p1 Debian-5+deb11u3"), ts + 200_000)
    ts = s.send(CLIENT, netproto.ssh_kexinit(rng), ts)
    ts = s.send(SERVER, netproto.ssh_kexinit(rng), ts + 200_000)
    for _ in range(25):
        ts = s.send(CLIENT, rng.randbytes(36), ts + rng.randrange(100_000_000, 600_000_000))
        ts = s.send(SERVER, rng.randbytes(rng.randrange(36, 1500)), ts + 2_000_000)
    s.close(ts + 5_000_000)


def _pumps(net: _Net, t: int) -> None:
    rng = net.rng
    _dhcp(net, "pump-151", "BBraun-SpaceStation", t + 1_000_000_000)
    _dhcp(net, "mon-104", "Mindray-BeneVision", t + 2_500_000_000)
    for k, pump in enumerate(["pump-150", "pump-151"]):
        tp = t + (3 + k) * 1_000_000_000
        tp = _dns(net, pump, f"pumpserver.{DOMAIN}", "10.10.0.40", tp)
        while tp < T0_NS + (DURATION_S - 8) * 1_000_000_000:
            tp = _tls(
                net,
                pump,
                "pump-server",
                f"pumpserver.{DOMAIN}",
                tp,
                [(rng.randrange(600, 1400), rng.randrange(200, 800))],
            )
            tp += 15_000_000_000 + rng.randrange(1_000_000_000)


def _management(net: _Net, t: int) -> None:
    rng = net.rng
    for name in ("ct-01", "pacs", "central", "pump-150", "pump-151", "mon-101", "router"):
        _ntp(net, name, t + rng.randrange(DURATION_S * 1_000_000_000 // 2))
    descr = {
        "router": "Cisco IOS Software, C9300 Software, Version 17.9.4",
        "central": "Philips IntelliVue Information Center iX",
        "pump-150": "B. Braun SpaceStation",
        "pacs": "Linux pacs 5.10.0-28-amd64",
    }
    for rnd in range(3):
        for k, (name, text) in enumerate(descr.items()):
            rid = rng.getrandbits(24)
            tq = t + rnd * 20_000_000_000 + k * 50_000_000
            net.udp(
                "nms",
                name,
                161,
                "snmp",
                [
                    (
                        CLIENT,
                        netproto.snmp_v2c(
                            "public",
                            0xA0,
                            rid,
                            [(netproto.SYS_DESCR, None), (netproto.SYS_UPTIME, None)],
                        ),
                    ),
                    (
                        SERVER,
                        netproto.snmp_v2c(
                            "public",
                            0xA2,
                            rid,
                            [
                                (netproto.SYS_DESCR, text),
                                (netproto.SYS_UPTIME, 8_640_000 + rnd * 2000),
                            ],
                        ),
                    ),
                ],
                tq,
            )
    msgs = [
        ("router", 23, 5, "%SYS-5-CONFIG_I: Configured from console by admin on vty0"),
        ("pacs", 4, 6, "sshd[812]: Accepted publickey for admin from 10.30.0.5 port 51234"),
        ("pacs", 16, 6, "storescp[2201]: Received C-STORE from CT01"),
        ("router", 23, 4, "%LINK-3-UPDOWN: Interface Gi1/0/14, changed state to up"),
    ]
    for i, (name, fac, sev, text) in enumerate(msgs):
        ts = t + (5 + i * 12) * 1_000_000_000
        stamp = _hl7_ts(ts)
        iso = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}Z"
        net.udp(
            name,
            "nms",
            514,
            "syslog",
            [(CLIENT, netproto.syslog(fac, sev, iso, name, "-", text))],
            ts,
            sport=514,
        )


STEPS: tuple[Callable[[_Net, int], None], ...] = (_pumps, _management, _dicom, _hl7, _it)


def build(path: Path, seed: int = 0) -> DemoCapture:
    """Write the demo capture to `path` (deterministic for a given seed)."""
    net = _Net(seed)
    for i, step in enumerate(STEPS):
        step(net, T0_NS + (i + 1) * 500_000_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = net.log.write(path)
    return DemoCapture(path=path, packets=n, conversations=dict(sorted(net.conversations.items())))
