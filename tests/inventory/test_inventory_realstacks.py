"""Identification from captures made by real stacks on a namespace LAN (see invnet.py):
dcmtk and pynetdicom modality/archive/worklist roles, an hl7apy MLLP sender and receiver,
BusyBox udhcpc DHCP clients with vendor classes (against udhcpd), curl and openssl TLS/HTTP."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from invnet import lan, wait_port
from pydicom.data import get_testdata_file
from worklist import findscu_worklist, write_worklist

from medsentry.inventory.identify import vendor_key

GE_MAC = "44:4b:5d:00:00:11"  # IEEE MA-L 44:4B:5D GE Healthcare
DELL_MAC = "00:06:5b:00:00:20"  # 00:06:5B Dell
PHILIPS_MON_MAC = "00:09:5c:00:01:01"  # 00:09:5C Philips Medical Systems - Cardiac and Monitoring
BBRAUN_MAC = "00:12:21:00:01:50"  # 00:12:21 B. Braun Melsungen
RANDOM_MAC = "02:5a:11:22:33:44"  # locally administered (a phone's randomized address)


def _need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed")


def _dcmtk(tool: str) -> str:
    path = f"/usr/bin/{tool}"  # dcmtk's, not pynetdicom's console script of the same name
    if not Path(path).exists():
        pytest.skip(f"dcmtk {tool} is not installed")
    return path


def test_dcmtk_modality_and_archive(tmp_path: Path, inventory_of) -> None:
    storescu, storescp = _dcmtk("storescu"), _dcmtk("storescp")
    ct_file = get_testdata_file("CT_small.dcm")  # a real GE CT image (pydicom test data)
    with lan(tmp_path, {"ct": (GE_MAC, "10.77.0.11/24"), "pacs": (DELL_MAC, "10.77.0.20/24")}) as n:
        out = tmp_path / "received"
        out.mkdir()
        n.start("pacs", storescp, "-aet", "PACS", "-od", str(out), "104")
        wait_port(n, "pacs", 104)
        n.run("ct", storescu, "-aet", "CT01", "-aec", "PACS", "10.77.0.20", "104", ct_file)
    devs = inventory_of(n.pcap)
    ct, pacs = devs[f"mac:{GE_MAC}"], devs[f"mac:{DELL_MAC}"]
    assert ct.category.value == "imaging.ct" and ct.category.confidence > 0.9
    assert vendor_key(ct.vendor.value) == "ge_healthcare"
    assert ct.model.value == "RHAPSODE"
    assert ct.software_version.value == "05"
    assert "dicom-scu" in ct.roles and ct.ips == ["10.77.0.11"]
    assert ct.criticality == "patient-affecting" and ct.fda_class == "II" and ct.medical
    assert ct.phi_observed  # the image carries patient attributes
    assert "dicom-scp" in pacs.roles and "tcp/104" in pacs.listening
    assert pacs.category.value == "pacs"
    assert pacs.software_version.value.startswith("DCMTK ")  # OFFIS_DCMTK_<version>
    assert pacs.peers == [ct.device_id]
    # every attribute says why
    assert {e.source for e in ct.category.evidence} >= {"dicom.modality", "dicom.sop_class.sent"}


# A pynetdicom archive: keeps what it receives; "move" sends it on as C-MOVE sub-operations
# (PS3.4 C.4.2), "route" forwards each instance as it arrives with a plain C-STORE.
PYNETDICOM_ARCHIVE = textwrap.dedent(
    """
    import sys
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import CTImageStorage, PatientRootQueryRetrieveInformationModelMove

    STORED = []

    def forward(ds):
        ae = AE(ae_title="PACS")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("10.77.0.22", 11113, ae_title="WS")
        assoc.send_c_store(ds)
        assoc.release()

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        STORED.append(ds)
        if sys.argv[1] == "route":
            forward(ds)
        return 0

    def on_move(event):
        yield "10.77.0.22", 11113
        yield len(STORED)
        for ds in STORED:
            yield 0xFF00, ds

    ae = AE(ae_title="PACS")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ExplicitVRLittleEndian)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_C_MOVE, on_move)]
    ae.start_server(("0.0.0.0", 104), evt_handlers=handlers)
    """
)
PYNETDICOM_WORKSTATION_SCP = textwrap.dedent(
    """
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="WS")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.start_server(("0.0.0.0", 11113), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0)])
    """
)
PYNETDICOM_CT_STORE = textwrap.dedent(
    """
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # GE MEDICAL SYSTEMS RHAPSODE
    ae = AE(ae_title="CT01")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("10.77.0.21", 104, ae_title="PACS")
    assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    """
)
PYNETDICOM_WS_MOVE = textwrap.dedent(
    """
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelMove as MOVE

    ae = AE(ae_title="WS")
    ae.add_requested_context(MOVE)
    assoc = ae.associate("10.77.0.21", 104, ae_title="PACS")
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = "1CT1"
    statuses = [s.Status for s, _ in assoc.send_c_move(q, "WS", MOVE)]
    assert statuses[-1] == 0, statuses
    assoc.release()
    """
)
WS_MAC = "00:1b:21:00:00:22"  # an Intel NIC


def _archive_scenario(tmp_path: Path, inventory_of, mode: str) -> dict:
    hosts = {
        "ct": (GE_MAC, "10.77.0.11/24"),
        "pacs": (DELL_MAC, "10.77.0.21/24"),
        "ws": (WS_MAC, "10.77.0.22/24"),
    }
    with lan(tmp_path, hosts) as n:
        n.start("ws", sys.executable, "-c", PYNETDICOM_WORKSTATION_SCP)
        n.start("pacs", sys.executable, "-c", PYNETDICOM_ARCHIVE, mode)
        wait_port(n, "ws", 11113)
        wait_port(n, "pacs", 104)
        n.run("ct", sys.executable, "-c", PYNETDICOM_CT_STORE)
        if mode == "move":
            n.run("ws", sys.executable, "-c", PYNETDICOM_WS_MOVE)
    devs = inventory_of(n.pcap)
    ct, pacs, ws = devs[f"mac:{GE_MAC}"], devs[f"mac:{DELL_MAC}"], devs[f"mac:{WS_MAC}"]
    # the modality that created the image keeps its identity
    assert ct.category.value == "imaging.ct"
    assert vendor_key(ct.vendor.value) == "ge_healthcare" and ct.model.value == "RHAPSODE"
    assert ct.software_version.value == "05" and ct.criticality == "patient-affecting"
    # the archive that forwarded it is not credited with the CT's General Equipment Module
    assert pacs.category.value == "pacs" and pacs.criticality != "patient-affecting"
    assert pacs.vendor.value == "Dell" and pacs.model is None  # its NIC's OUI, not GE
    assert pacs.software_version.value.startswith("pynetdicom ")
    assert not any(e.source == "dicom.manufacturer" for e in pacs.vendor.conflicts)
    assert not any(e.source == "dicom.modality" for e in pacs.category.conflicts)
    # nor is the workstation that received it
    assert ws.vendor.value == "Intel" and ws.model is None and ws.category.value != "imaging.ct"
    return devs


def test_pynetdicom_archive_forwarding_by_c_move(tmp_path: Path, inventory_of) -> None:
    """A workstation C-MOVEs the CT's image from the archive: the archive C-STOREs it as a
    sub-operation carrying Move Originator AE Title / Message ID (PS3.7 §9.1.1.1)."""
    devs = _archive_scenario(tmp_path, inventory_of, "move")
    pacs = devs[f"mac:{DELL_MAC}"]
    forwarded = [e for e in pacs.category.evidence if e.source == "dicom.forwarded.identity"]
    assert [e.observed for e in forwarded] == ["GE MEDICAL SYSTEMS|RHAPSODE|CT|CT01_OC0"]


def test_pynetdicom_archive_routing_by_c_store(tmp_path: Path, inventory_of) -> None:
    """The archive routes each image on with a plain C-STORE (no Move Originator): it is a
    Storage SCP that sends what it received, an archive, not the CT."""
    _archive_scenario(tmp_path, inventory_of, "route")


PYNETDICOM_MWL_SCP = textwrap.dedent(
    """
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

    def on_find(event):
        ds = Dataset()
        ds.PatientName = "TEST^WORKLIST"
        ds.Modality = "US"
        yield 0xFF00, ds

    ae = AE(ae_title="RIS")
    ae.add_supported_context(ModalityWorklistInformationFind)
    ae.add_supported_context(Verification)
    ae.start_server(("0.0.0.0", 11112), evt_handlers=[(evt.EVT_C_FIND, on_find)])
    """
)
PYNETDICOM_MODALITY = textwrap.dedent(
    """
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

    ae = AE(ae_title="US01")
    ae.add_requested_context(Verification)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("10.77.0.21", 11112, ae_title="RIS")
    assert assoc.is_established
    assoc.send_c_echo()
    q = Dataset()
    q.PatientName = ""
    q.Modality = "US"
    for status, ident in assoc.send_c_find(q, ModalityWorklistInformationFind):
        pass
    assoc.release()
    """
)


def test_pynetdicom_worklist_roles(tmp_path: Path, inventory_of) -> None:
    hosts = {"us": ("00:1b:78:00:00:31", "10.77.0.31/24"), "ris": (DELL_MAC, "10.77.0.21/24")}
    with lan(tmp_path, hosts) as n:
        n.start("ris", sys.executable, "-c", PYNETDICOM_MWL_SCP)
        wait_port(n, "ris", 11112)
        n.run("us", sys.executable, "-c", PYNETDICOM_MODALITY)
    devs = inventory_of(n.pcap)
    us, ris = devs["mac:00:1b:78:00:00:31"], devs[f"mac:{DELL_MAC}"]
    assert "dicom-scu" in us.roles and "dicom-scp" in ris.roles
    assert ris.category.value == "ris"  # the Modality Worklist SCP (PS3.4 K.6)
    assert us.category.value == "imaging.us"  # a worklist SCU answered for modality US
    assert us.software_version.value.startswith("pynetdicom ")
    assert ris.phi_observed  # the worklist answer named a patient


def test_dcmtk_worklist_scheduled_step(tmp_path: Path, inventory_of) -> None:
    """Standard worklist queries (the modality in the Scheduled Procedure Step, PS3.4 K.6.1.2):
    dcmtk findscu as an MR that asks for MR steps and as a station that asks for any modality,
    against dcmtk's wlmscpfs answering with an MR and a CT step."""
    findscu, wlmscpfs = _dcmtk("findscu"), _dcmtk("wlmscpfs")
    root = write_worklist(tmp_path / "worklists", "RIS")
    hosts = {
        "mr": ("00:1b:21:00:00:41", "10.77.0.41/24"),  # an Intel NIC: the OUI says nothing
        "ws": ("00:1b:21:00:00:42", "10.77.0.42/24"),
        "ris": (DELL_MAC, "10.77.0.21/24"),
    }
    with lan(tmp_path, hosts) as n:
        n.start("ris", wlmscpfs, "-dfp", str(root), "104")
        wait_port(n, "ris", 104)
        n.run("mr", *findscu_worklist(findscu, "MR01", "RIS", "10.77.0.21", 104, "MR"))
        n.run("ws", *findscu_worklist(findscu, "WS02", "RIS", "10.77.0.21", 104, ""))
    devs = inventory_of(n.pcap)
    mr, ws = devs["mac:00:1b:21:00:00:41"], devs["mac:00:1b:21:00:00:42"]
    ris = devs[f"mac:{DELL_MAC}"]
    assert mr.category.value == "imaging.mr"
    assert "dicom.worklist_modality" in {e.source for e in mr.category.evidence}
    # the open query was answered with MR and CT steps: neither names the asking station
    assert ws.category.value == "imaging"
    assert ris.category.value == "ris" and ris.phi_observed


HL7_RECEIVER = textwrap.dedent(
    """
    from hl7apy.mllp import MLLPServer, AbstractHandler
    from hl7apy.parser import parse_message

    class Ack(AbstractHandler):
        def reply(self):
            msg = parse_message(self.incoming_message)
            ack = ("MSH|^~\\\\&|IntelliVue Information Center iX|ICU|"
                   + msg.msh.msh_3.value + "|ICU|20260101120000||ACK^R01^ACK|A1|P|2.5\\r"
                   + "MSA|AA|" + msg.msh.msh_10.value)
            return ack

    MLLPServer("0.0.0.0", 2575, {"ORU^R01^ORU_R01": (Ack,)}).serve_forever()
    """
)
HL7_SENDER = textwrap.dedent(
    """
    import socket
    from hl7apy.core import Message
    from hl7apy.parser import parse_segment

    for i in range(3):
        m = Message("ORU_R01", version="2.5")
        m.msh.msh_3 = "IntelliVue MX800"
        m.msh.msh_4 = "ICU"
        m.msh.msh_5 = "IntelliVue Information Center iX"
        m.msh.msh_6 = "ICU"
        m.msh.msh_7 = "20260101120000"
        m.msh.msh_9 = "ORU^R01^ORU_R01"
        m.msh.msh_10 = f"MON{i}"
        m.msh.msh_11 = "P"
        r = m.add_group("ORU_R01_PATIENT_RESULT")
        pid = parse_segment("PID|1||SYN1^^^H^MR||TEST^PATIENT", version="2.5")
        r.add_group("ORU_R01_PATIENT").add(pid)
        o = r.add_group("ORU_R01_ORDER_OBSERVATION")
        o.add(parse_segment("OBR|1|||VITALS", version="2.5"))
        o.add_group("ORU_R01_OBSERVATION").add(parse_segment(
            "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|262688^MDC_DIM_PERCENT^MDC|||||F",
            version="2.5"))
        with socket.create_connection(("10.77.0.100", 2575)) as s:
            s.sendall(b"\\x0b" + m.to_er7().encode() + b"\\x1c\\r")
            s.recv(4096)
    """
)


def test_hl7_monitor_and_central_station(tmp_path: Path, inventory_of) -> None:
    hosts = {
        "mon": (PHILIPS_MON_MAC, "10.77.0.101/24"),
        "central": ("00:09:5c:00:01:00", "10.77.0.100/24"),
    }
    with lan(tmp_path, hosts) as n:
        n.start("central", sys.executable, "-c", HL7_RECEIVER)
        wait_port(n, "central", 2575)
        n.run("mon", sys.executable, "-c", HL7_SENDER)
        time.sleep(0.3)
    devs = inventory_of(n.pcap)
    mon, central = devs[f"mac:{PHILIPS_MON_MAC}"], devs["mac:00:09:5c:00:01:00"]
    assert mon.category.value == "patient-monitor"
    assert vendor_key(mon.vendor.value) == "philips"
    assert mon.model.value == "IntelliVue MX800"
    assert "hl7-sender" in mon.roles and "hl7-receiver" in central.roles
    assert central.category.value == "patient-monitor.central-station"
    assert mon.phi_observed and central.phi_observed
    assert mon.criticality == "patient-affecting"


UDHCPD_CONF = """start 10.77.0.{lo}
end 10.77.0.{hi}
interface eth0
lease_file {leases}
pidfile {pid}
opt router 10.77.0.1
opt subnet 255.255.255.0
opt lease 600
"""


def _udhcpd(n, tmp_path: Path, lo: int, hi: int, tag: str):
    conf = tmp_path / f"udhcpd-{tag}.conf"
    leases = tmp_path / f"leases-{tag}"
    leases.touch()
    conf.write_text(UDHCPD_CONF.format(lo=lo, hi=hi, leases=leases, pid=tmp_path / f"{tag}.pid"))
    return n.start("server", "busybox", "udhcpd", "-f", str(conf))


def test_dhcp_clients_vendor_class_and_lease_change(tmp_path: Path, inventory_of) -> None:
    _need("busybox")
    hosts = {
        "server": ("00:06:5b:00:00:02", "10.77.0.2/24"),
        "pump": (BBRAUN_MAC, None),
        "box": ("00:1a:2b:00:00:77", None),
    }
    udhcpc = [
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-n",
        "-q",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        "/bin/true",
    ]
    with lan(tmp_path, hosts) as n:
        srv = _udhcpd(n, tmp_path, 50, 59, "a")
        time.sleep(0.3)
        n.run("pump", *udhcpc, "-V", "BBraun-SpaceStation", "-x", "hostname:pump-07")
        n.run("box", *udhcpc, "-x", "hostname:edge-box")  # default vendor class "udhcp 1.35.0"
        n.stop(srv)
        srv = _udhcpd(n, tmp_path, 80, 89, "b")  # a new scope: the pump gets another address
        time.sleep(0.3)
        n.run("pump", *udhcpc, "-V", "BBraun-SpaceStation", "-x", "hostname:pump-07")
    devs = inventory_of(n.pcap)
    pump, box = devs[f"mac:{BBRAUN_MAC}"], devs["mac:00:1a:2b:00:00:77"]
    assert pump.category.value == "infusion-pump" and pump.criticality == "life-sustaining"
    assert vendor_key(pump.vendor.value) == "b_braun"
    assert pump.hostname == "pump-07"
    assert len(pump.ips) == 2  # one device, two leases (one per scope)
    assert 80 <= int(pump.ips[0].rsplit(".", 1)[1]) <= 89  # current first
    assert 50 <= int(pump.ips[1].rsplit(".", 1)[1]) <= 59
    assert {e.source for e in pump.category.evidence} >= {"dhcp.vendor_class", "mac.oui"}
    assert "dhcp-client" in pump.roles
    assert box.os.value == "Linux (BusyBox)"
    assert box.software_version.value.startswith("BusyBox udhcpc 1.")
    server = devs["mac:00:06:5b:00:00:02"]
    assert "dhcp-server" in server.roles
    # nothing split, nothing merged: each lease belongs to the pump alone
    owners = {ip: d.device_id for d in devs.values() for ip in d.ips}
    assert {owners[ip] for ip in pump.ips} == {pump.device_id}


def _cert(tmp_path: Path, subject: str) -> tuple[Path, Path]:
    key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
    import subprocess

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", subject, "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, crt


def test_tls_clients_cloud_and_companion_app(tmp_path: Path, inventory_of) -> None:
    _need("openssl", "curl")
    key, crt = _cert(tmp_path, "/O=Philips Medical Systems/CN=intellivue-gw")
    hosts = {
        "gw": ("00:1e:8f:00:00:05", "10.77.0.5/24"),
        "pumpbox": ("00:1a:2b:00:00:09", "10.77.0.9/24"),
        "phone": (RANDOM_MAC, "10.77.0.60/24"),
    }
    with lan(tmp_path, hosts) as n:
        n.start("gw", "openssl", "s_server", "-quiet", "-tls1_2", "-accept", "443",
                "-key", str(key), "-cert", str(crt), "-www")  # fmt: skip
        wait_port(n, "gw", 443)
        n.start("gw", sys.executable, "-m", "http.server", "80", "--bind", "0.0.0.0")
        wait_port(n, "gw", 80)
        # a device that talks only to its maker's cloud (TLS SNI)
        for _ in range(2):
            n.run("pumpbox", "curl", "-sk", "--resolve", "carelink.minimed.com:443:10.77.0.5",
                  "https://carelink.minimed.com/", check=False)  # fmt: skip
        # a phone running the companion app: Android HTTP stack, then the same cloud
        ua = "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041)"
        n.run("phone", "curl", "-s", "-A", ua, "http://10.77.0.5/", check=False)
        n.run("phone", "curl", "-sk", "--resolve", "carelink.minimed.com:443:10.77.0.5",
              "https://carelink.minimed.com/", check=False)  # fmt: skip
    devs = inventory_of(n.pcap)
    box, phone, gw = (
        devs["mac:00:1a:2b:00:00:09"],
        devs[f"mac:{RANDOM_MAC}"],
        devs["mac:00:1e:8f:00:00:05"],
    )
    assert vendor_key(box.vendor.value) == "medtronic"
    assert box.category.value == "infusion-pump.insulin"
    assert any(e.observed == "carelink.minimed.com" for e in box.category.evidence)
    assert "tls-client" in box.roles
    assert phone.os.value == "Android 14"
    assert phone.category.value == "remote-monitoring.companion-app"
    assert phone.vendor is None or vendor_key(phone.vendor.value) != "medtronic"
    assert "tls-server" in gw.roles and "http-server" in gw.roles
    assert vendor_key(gw.vendor.value) == "philips"  # its certificate's organization
    assert any(e.source == "tls.cert.subject_o" for e in gw.vendor.evidence)
