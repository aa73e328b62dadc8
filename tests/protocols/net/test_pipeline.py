"""End to end: the captures made by the real stacks of the other tests, and real captures from
the nDPI corpus, scanned by `medsentry.pipeline.Pipeline` (capture reader, flow table, TCP
reassembly, protocol identification, registry dissectors, frame dissectors)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cleartext import ftp_capture  # noqa: F401  (fixtures shared with the unit tests)
from test_frames import _pcap, ble_ll, ble_nordic, cdp_frame, lldp_frame
from test_http import PATIENT_ID, PATIENT_NAME, http_capture  # noqa: F401
from test_identity import dhcp_capture  # noqa: F401
from test_mqtt import mqtt_capture  # noqa: F401
from test_tls import tls_capture  # noqa: F401

from medsentry.events import encode_json
from medsentry.events.ble import BleAdvertisement
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.flow import ProtocolDetected
from medsentry.events.http import FhirInteraction, HttpRequest
from medsentry.events.identity import CdpNeighbor, DhcpMessage, DnsMessage, LldpNeighbor
from medsentry.events.mqtt import MqttConnect, MqttSubscribe
from medsentry.events.tls import TlsCertificate, TlsClientHello, TlsServerHello
from medsentry.pipeline import Pipeline, ScanConfig

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

KEY = b"k" * 32


def scan(*paths: Path) -> list:
    events: list = []
    Pipeline(ScanConfig(phi_key=KEY)).scan_files(list(paths), events.extend)
    return events


def kinds(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def test_fhir_capture(http_capture: Path) -> None:  # noqa: F811
    ev = scan(http_capture)
    assert {p.protocol for p in kinds(ev, ProtocolDetected)} <= {"http", "fhir"}
    assert len(kinds(ev, HttpRequest)) == 11
    fh = kinds(ev, FhirInteraction)
    assert {f.interaction for f in fh} >= {
        "capabilities",
        "read",
        "search",
        "create",
        "update",
        "vread",
        "delete",
        "transaction",
    }
    assert any(f.software_name == "HAPI FHIR Server" for f in fh)
    assert len(kinds(ev, CleartextCredentials)) == 1
    blob = b"".join(encode_json(e) for e in ev)
    assert PATIENT_NAME.encode() not in blob and PATIENT_ID.encode() not in blob


def test_tls_capture(tls_capture: Path) -> None:  # noqa: F811
    ev = scan(tls_capture)
    assert len(kinds(ev, TlsClientHello)) == 2 and len(kinds(ev, TlsServerHello)) == 2
    (cert,) = kinds(ev, TlsCertificate)
    assert cert.self_signed and cert.subject_cn == "infusion-gw.example"


def test_mqtt_capture(mqtt_capture: Path) -> None:  # noqa: F811
    ev = scan(mqtt_capture)
    assert sorted(c.client_id for c in kinds(ev, MqttConnect)) == ["monitor-311", "monitor-5"]
    assert all(s.multi_level_wildcard for s in kinds(ev, MqttSubscribe))
    assert {c.protocol for c in kinds(ev, CleartextCredentials)} == {"mqtt"}


def test_ftp_and_dhcp_captures(ftp_capture: Path, dhcp_capture: Path) -> None:  # noqa: F811
    ev = scan(ftp_capture, dhcp_capture)
    assert [c.accepted for c in kinds(ev, CleartextCredentials)] == [True, False, True]
    assert [d.message_type for d in kinds(ev, DhcpMessage)] == ["DISCOVER", "OFFER"]


def test_frames_through_the_pipeline(tmp_path: Path) -> None:
    eth = _pcap(tmp_path, 1, [lldp_frame(), cdp_frame()])
    ev = scan(eth)
    assert [n.system_name for n in kinds(ev, LldpNeighbor)] == ["ICU-MON-07"]
    assert [n.platform for n in kinds(ev, CdpNeighbor)] == ["Cisco IP Phone 8845"]
    for lt, frame in ((251, ble_ll()), (272, ble_nordic())):
        sub = tmp_path / str(lt)
        sub.mkdir()
        ev = scan(_pcap(sub, lt, [frame]))
        assert [b.health_services for b in kinds(ev, BleAdvertisement)] == [["Blood Pressure"]]


@pytest.mark.parametrize(
    ("name", "cls", "minimum"),
    [
        ("443-curl.pcap", TlsClientHello, 1),
        ("dns.pcap", DnsMessage, 3),
        ("iphone.pcap", DnsMessage, 5),
        ("1kxun.pcap", DhcpMessage, 1),
        ("telnet.pcap", CleartextCredentials, 1),
        ("pop3.pcap", CleartextCredentials, 4),
        ("imap.pcap", CleartextCredentials, 1),
        ("snmp.pcap", CleartextCredentials, 1),
        ("http_auth.pcap", CleartextCredentials, 1),
        ("mqtt.pcap", MqttConnect, 1),
    ],
)
def test_ndpi_captures(ndpi_pcaps: Path, name: str, cls: type, minimum: int) -> None:
    ev = scan(ndpi_pcaps / name)
    assert len(kinds(ev, cls)) >= minimum
