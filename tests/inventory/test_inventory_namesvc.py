"""Host names and DICOM services that hosts announce themselves, from real stacks on a
namespace LAN (invnet.py): Samba's nmbd registering and answering NetBIOS names (RFC 1002)
for nmblookup, llmnrd answering llmnr-query (RFC 4795), python-zeroconf announcing DICOM
services over mDNS and dnsmasq serving them as unicast DNS-SD (PS3.15 H.2); each capture
cross-checked with tshark. The NBSTAT unit id (Samba sends zeros) is checked on nDPI's
capture of a Windows host."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from invnet import lan, scan

from medsentry.events.identity import DnsMessage, NbnsMessage
from medsentry.inventory.observe import HOSTNAME_RANK, MAX_ANSWERED_NAMES, observe

CT_MAC, WS_MAC, DNS_MAC = "02:10:00:00:00:11", "02:10:00:00:00:12", "02:10:00:00:00:53"
CT_IP, WS_IP, DNS_IP = "10.77.0.11", "10.77.0.12", "10.77.0.53"
HOSTS = {"ct": (CT_MAC, f"{CT_IP}/24"), "ws": (WS_MAC, f"{WS_IP}/24")}


def _need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed")


def _states(pcap: Path):
    events = scan(pcap)
    devices, _ = observe(events).resolve()
    return events, devices


def _tshark(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocols" / "net"))
    from netcap import tshark

    return tshark(pcap, display_filter, *fields)


def _until(check, what: str, limit_s: float = 30.0) -> None:
    """Poll a real stack until it did `what` (not a timing assertion: the deadline only
    bounds a hung daemon)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {limit_s} s")


# an NT4-style domain controller: nmbd registers RADIOLOGY<1C> and <1B> (as unique names)
PDC = """server role = classic primary domain controller
domain logons = yes
domain master = yes
"""


def _smb_conf(tmp: Path, extra: str = "") -> Path:
    state = tmp / "samba"
    state.mkdir()
    dirs = "\n".join(
        f"{k} = {state}"
        for k in ("lock directory", "state directory", "cache directory", "private dir",
                  "pid directory", "ncalrpc dir")
    )  # fmt: skip
    conf = tmp / "smb.conf"
    conf.write_text(
        "[global]\nnetbios name = CT-CONSOLE-01\nworkgroup = RADIOLOGY\ninterfaces = eth0\n"
        f"bind interfaces only = yes\nlog file = {state}/log.%m\n{dirs}\n{extra}"
    )
    return conf


def test_nmbd_names_its_host(tmp_path: Path, inventory_of) -> None:
    """nmbd registers CT-CONSOLE-01<00>/<20> and RADIOLOGY<00> (group) by broadcast, answers
    nmblookup's name query and NODE STATUS request: the console gets its NetBIOS name and its
    workgroup; the workstation that asked gets neither."""
    _need("nmbd", "nmblookup")
    conf = _smb_conf(tmp_path)
    with lan(tmp_path, HOSTS) as n:
        n.start("ct", "nmbd", "--foreground", "--no-process-group", "-s", str(conf))

        def answered() -> bool:
            r = n.run("ws", "nmblookup", "-B", "10.77.0.255", "CT-CONSOLE-01", check=False)
            return f"{CT_IP} CT-CONSOLE-01<00>" in r.stdout

        _until(answered, "nmbd answers for CT-CONSOLE-01")
        status = n.run("ws", "nmblookup", "-A", CT_IP).stdout
        assert "RADIOLOGY" in status and "<GROUP>" in status
    events, devices = _states(n.pcap)
    nbns = [e for e in events if isinstance(e, NbnsMessage)]
    registered = {
        (x.name, x.suffix, x.group) for e in nbns if e.opcode == "REGISTRATION" for x in e.names
    }
    rows = _tshark(n.pcap, "nbns.flags.opcode == 5 && nbns.flags.response == 0", "nbns.name")
    # tshark: "CT-CONSOLE-01<20>|CT-CONSOLE-01<20> (Server service)" (question, record)
    shown = {r[0].split("|")[0] for r in rows}
    assert {f"{x[0]}<{x[1]:02x}>" for x in registered} == shown - {"CT-CONSOLE-01<03>"}
    assert registered >= {
        ("CT-CONSOLE-01", 0x00, False),
        ("CT-CONSOLE-01", 0x20, False),
        ("RADIOLOGY", 0x00, True),
    }
    answers = [e for e in nbns if e.response and not e.node_status]
    assert answers and all(e.names[0].address == CT_IP for e in answers)
    (table,) = {tuple((x.name, x.suffix) for x in e.names) for e in nbns if e.node_status}
    assert ("CT-CONSOLE-01", 0x00) in table and ("RADIOLOGY", 0x1E) in table
    # inventory: the console's own names; Samba's NBSTAT unit id is all zeros: no MAC claim
    ct, ws = devices[f"mac:{CT_MAC}"], devices[f"mac:{WS_MAC}"]
    assert set(ct.hostnames) == {f"{HOSTNAME_RANK['netbios']}:CT-CONSOLE-01"}
    assert set(ct.observations["netbios.domain"]) == {"RADIOLOGY"}
    assert not ws.hostnames and "netbios.domain" not in ws.observations
    devs = inventory_of(n.pcap)
    assert devs[f"mac:{CT_MAC}"].hostname == "CT-CONSOLE-01"
    assert devs[f"mac:{WS_MAC}"].hostname is None
    assert "domain-controller" not in devs[f"mac:{CT_MAC}"].roles


def test_nmbd_domain_controller(tmp_path: Path, inventory_of) -> None:
    """nmbd as an NT4-style domain controller registers RADIOLOGY<1C> (domain controllers)
    and <1B> (domain master browser): the host is a domain controller of RADIOLOGY."""
    _need("nmbd", "nmblookup")
    conf = _smb_conf(tmp_path, PDC)
    with lan(tmp_path, HOSTS) as n:
        n.start("ct", "nmbd", "--foreground", "--no-process-group", "-s", str(conf))

        def dc() -> bool:
            r = n.run("ws", "nmblookup", "-B", "10.77.0.255", "RADIOLOGY#1c", check=False)
            return f"{CT_IP} RADIOLOGY<1c>" in r.stdout

        _until(dc, "nmbd answers for RADIOLOGY<1c>")
        n.run("ws", "nmblookup", "-A", CT_IP)
    rows = _tshark(n.pcap, "nbns.flags.opcode == 5", "nbns.name")
    assert any(r[0].startswith("RADIOLOGY<1c>") for r in rows)
    events, devices = _states(n.pcap)
    ct = devices[f"mac:{CT_MAC}"]
    assert "domain-controller" in ct.roles
    assert set(ct.observations["netbios.domain"]) == {"RADIOLOGY"}
    # its NODE STATUS table alone tells it too: Samba lists RADIOLOGY<1c> there as unique
    status = [e for e in events if not isinstance(e, NbnsMessage) or e.node_status]
    ((name,),) = {
        tuple(x for x in e.names if x.suffix == 0x1C) for e in status if isinstance(e, NbnsMessage)
    }
    assert (name.name, name.group) == ("RADIOLOGY", False)
    devices, _ = observe(status).resolve()
    assert "domain-controller" in devices[f"mac:{CT_MAC}"].roles
    assert "domain-controller" in inventory_of(n.pcap)[f"mac:{CT_MAC}"].roles


def test_node_status_unit_id_claims_the_address(ndpi_pcaps: Path, inventory_of) -> None:
    """nDPI's netbios.pcap: an HP workstation answers NODE STATUS with unit id
    00:1c:c4:10:79:0f (tshark's nbns.unit_id): that MAC holds 10.0.4.24, named GUNNAR, in
    workgroup VIGILANT_GROUP; GURU answers a name query for itself."""
    pcap = ndpi_pcaps / "netbios.pcap"
    (unit,) = {r[0] for r in _tshark(pcap, "nbns.unit_id", "nbns.unit_id")}
    obs = observe(scan(pcap))
    assert obs.claimed[unit]["10.0.4.24"][2] == "netbios"
    devices, _ = obs.resolve()
    gunnar = devices[f"mac:{unit}"]
    assert gunnar.addresses["10.0.4.24"].source == "netbios"
    assert set(gunnar.observations["netbios.domain"]) == {"VIGILANT_GROUP"}
    devs = inventory_of(pcap)
    assert devs[f"mac:{unit}"].hostname == "GUNNAR"
    named = {d.hostname for d in devs.values() if d.hostname}
    assert named == {"GUNNAR", "GURU"}  # the 250 broadcast queries name no one


def test_llmnrd_names_its_host(tmp_path: Path, inventory_of) -> None:
    """llmnrd answers llmnr-query for its host name from port 5355 with its own address: the
    responder gets the name (source llmnr), the querier does not."""
    _need("llmnrd", "llmnr-query")
    with lan(tmp_path, HOSTS) as n:
        for h in ("ct", "ws"):  # the multicast route a host's default route would give
            n.run(h, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
        n.start("ct", "llmnrd", "-H", "ct-console-01", "-i", "eth0")

        def answered() -> bool:
            r = n.run("ws", "llmnr-query", "-I", "eth0", "-T", "A", "ct-console-01", check=False)
            return f"IN A {CT_IP}" in r.stdout

        _until(answered, "llmnrd answers for ct-console-01")
        n.run("ws", "llmnr-query", "-I", "eth0", "-T", "A", "pacs-01", check=False)
    events, devices = _states(n.pcap)
    rows = _tshark(n.pcap, "llmnr && dns.flags.response == 1", "ip.src", "dns.a")
    assert {(r[0], r[1]) for r in rows} == {(CT_IP, CT_IP)}
    assert any(isinstance(e, DnsMessage) and e.protocol == "llmnr" for e in events)
    ct, ws = devices[f"mac:{CT_MAC}"], devices[f"mac:{WS_MAC}"]
    assert set(ct.hostnames) == {f"{HOSTNAME_RANK['llmnr']}:ct-console-01"}
    assert not ws.hostnames  # it asked for ct-console-01 and pacs-01: someone else's names
    assert inventory_of(n.pcap)[f"mac:{CT_MAC}"].hostname == "ct-console-01"


# A name-service poisoner (Responder-like): answers every LLMNR query with its own address
POISONER = textwrap.dedent(
    """
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 5355))
    mreq = struct.pack("4s4s", socket.inet_aton("224.0.0.252"), socket.inet_aton(sys.argv[1]))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    while True:
        q, peer = s.recvfrom(512)
        end = q.index(b"\\0", 12) + 5  # the question: name, QTYPE, QCLASS (RFC 4795 §2.1.1)
        head = q[:2] + b"\\x80\\x00\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x00"
        rr = b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x1e\\x00\\x04"
        s.sendto(head + q[12:end] + rr + socket.inet_aton(sys.argv[1]), peer)
    """
)


def test_llmnr_poisoner_gets_few_names(tmp_path: Path) -> None:
    """A station answering every query with its own address is not named by each answer: at
    most MAX_ANSWERED_NAMES LLMNR names are taken from one responder."""
    _need("llmnr-query")
    script = tmp_path / "poisoner.py"
    script.write_text(POISONER)
    asked = [f"pacs-{i:02d}" for i in range(MAX_ANSWERED_NAMES + 3)]
    with lan(tmp_path, HOSTS) as n:
        for h in ("ct", "ws"):
            n.run(h, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
        n.start("ct", sys.executable, str(script), CT_IP)
        _until(
            lambda: (
                "IN A"
                in n.run("ws", "llmnr-query", "-I", "eth0", "-T", "A", "x", check=False).stdout
            ),
            "the poisoner answers",
        )
        for name in asked:
            n.run("ws", "llmnr-query", "-I", "eth0", "-T", "A", name, check=False)
    rows = _tshark(n.pcap, "llmnr && dns.flags.response == 1", "dns.qry.name")
    assert {r[0] for r in rows} >= set(asked)  # it answered for every one
    _, devices = _states(n.pcap)
    ct = devices[f"mac:{CT_MAC}"]
    assert len(ct.hostnames) == MAX_ANSWERED_NAMES


ZEROCONF = textwrap.dedent(
    """
    import socket, sys, time
    from zeroconf import IPVersion, ServiceInfo, Zeroconf
    ip = sys.argv[1]
    zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
    addr = [socket.inet_aton(ip)]
    host = "ct-scanner-1.local."
    zc.register_service(ServiceInfo(
        "_dicom._tcp.local.", "CT Scanner 1._dicom._tcp.local.", addresses=addr, port=11112,
        properties={"AET": "CTSCAN01", "PrimaryDeviceType": "CT"}, server=host))
    # no AET key: the instance name is the AE title (PS3.15 H.2.3)
    zc.register_service(ServiceInfo(
        "_dicom-tls._tcp.local.", "CT_TLS._dicom-tls._tcp.local.", addresses=addr, port=2762,
        properties={"PrimaryDeviceType": "CT"}, server=host))
    print("registered", flush=True)
    zc.close()
    """
)


def test_zeroconf_announces_dicom_services(tmp_path: Path, inventory_of) -> None:
    """python-zeroconf announces _dicom._tcp and _dicom-tls._tcp instances (PTR, SRV, TXT, A)
    and withdraws them: the scanner is a DICOM and DICOM-TLS Association Acceptor on the SRV
    ports, with the AE titles and primary device type its TXT records give."""
    pytest.importorskip("zeroconf", reason="python-zeroconf is not installed")
    script = tmp_path / "announce.py"
    script.write_text(ZEROCONF)
    with lan(tmp_path, HOSTS) as n:
        for h in ("ct", "ws"):
            n.run(h, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
        out = n.run("ct", sys.executable, str(script), CT_IP, timeout=60).stdout
        assert "registered" in out
    rows = _tshark(n.pcap, "mdns && dns.srv.port", "dns.srv.port", "dns.srv.target", "dns.txt")
    assert {p for r in rows for p in r[0].split("|")} == {"11112", "2762"}
    assert {t for r in rows for t in r[1].split("|")} == {"ct-scanner-1.local"}
    assert any("AET=CTSCAN01" in r[2] for r in rows)
    _, devices = _states(n.pcap)
    ct = devices[f"mac:{CT_MAC}"]
    obs = ct.observations
    assert set(obs["dicom.dnssd.service"]) == {"dicom tcp/11112", "dicom-tls tcp/2762"}
    assert set(obs["dicom.ae_title"]) == {"CTSCAN01", "CT_TLS"}
    assert set(obs["dicom.primary_device_type"]) == {"CT"}
    assert [d for d in devices.values() if "dicom.ae_title" in d.observations] == [ct]
    dev = inventory_of(n.pcap)[f"mac:{CT_MAC}"]
    assert {"dicom-scp", "dicom-tls-scp"} <= set(dev.roles)
    assert dev.hostname == "ct-scanner-1"  # its mDNS A record
    assert dev.category.value == "imaging.ct"  # PrimaryDeviceType=CT
    assert "dicom.primary_device_type" in {e.source for e in dev.category.evidence}


def test_unicast_dnssd_dicom_service(tmp_path: Path, inventory_of) -> None:
    """dnsmasq serves a DICOM instance as unicast DNS-SD (PTR, SRV with the target's A record,
    TXT) to BusyBox nslookup: the target address is the DICOM provider, not the DNS server;
    the SRV and TXT answers (two messages) combine."""
    _need("dnsmasq", "busybox")
    hosts = {"dns": (DNS_MAC, f"{DNS_IP}/24"), "ws": (WS_MAC, f"{WS_IP}/24")}
    inst = "CT Scanner 1._dicom._tcp.hospital.lan"
    with lan(tmp_path, hosts) as n:
        n.start("dns", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                f"--listen-address={DNS_IP}", "--bind-interfaces", "--user=root", "--pid-file=",
                "--ptr-record=_dicom._tcp.hospital.lan,CT\\ Scanner\\ 1._dicom._tcp.hospital.lan",
                f"--srv-host={inst},ct1.hospital.lan,11112",
                f"--txt-record={inst},AET=CTSCAN01,PrimaryDeviceType=CT",
                f"--host-record=ct1.hospital.lan,{CT_IP}")  # fmt: skip

        def serves() -> bool:
            r = n.run("ws", "busybox", "nslookup", "-type=srv", inst, DNS_IP, check=False)
            return "11112" in r.stdout

        _until(serves, "dnsmasq serves the SRV record")
        n.run("ws", "busybox", "nslookup", "-type=txt", inst, DNS_IP)
    rows = _tshark(n.pcap, "dns.flags.response == 1 && dns.srv.port", "dns.a", "dns.srv.port")
    assert rows and all(r == [CT_IP, "11112"] for r in rows)
    _, devices = _states(n.pcap)
    ct = devices[f"ip:{CT_IP}"]  # no station on the LAN: a device keyed by its address
    assert set(ct.observations["dicom.dnssd.service"]) == {"dicom tcp/11112"}
    assert set(ct.observations["dicom.ae_title"]) == {"CTSCAN01"}
    assert set(ct.observations["dicom.primary_device_type"]) == {"CT"}
    server = devices[f"mac:{DNS_MAC}"]
    assert "dicom.ae_title" not in server.observations and "dicom-scp" not in server.roles
    devs = inventory_of(n.pcap)
    assert "dicom-scp" in devs[f"ip:{CT_IP}"].roles
    assert "dns-server" in devs[f"mac:{DNS_MAC}"].roles
