"""Identification of real device traffic: nDPI's test captures, scanned by medsentry's own
pipeline (capture reader, flow table, TCP reassembly, then `identify`). Skipped when
`../shared/data` is absent. The whole-corpus comparison with nDPI is
benchmarks/bench_identification_ndpi.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsentry.events.flow import FlowRecord


def _flows(path: Path) -> list[FlowRecord]:
    from medsentry.pipeline import Pipeline, ScanConfig

    out: list[FlowRecord] = []
    Pipeline(ScanConfig(dissectors=False)).scan_files(
        [path], lambda events: out.extend(e for e in events if isinstance(e, FlowRecord))
    )
    return out


@pytest.mark.parametrize(
    ("capture", "server_port", "protocol"),
    [
        ("hl7.pcap", 6661, "hl7-mllp"),  # HL7 v2 ADT^A01 over MLLP, not on 2575
        ("mqtt.pcap", 1883, "mqtt"),
        ("modbus.pcap", 502, "modbus"),
        ("dnp3.pcap", 20000, "dnp3"),
        ("IEC104.pcap", 2404, "iec104"),
        ("bacnet.pcap", 47808, "bacnet"),
        ("opc-ua.pcap", 4840, "opc-ua"),
        ("snmp.pcap", 161, "snmp"),
        ("ssh.pcap", 22, "ssh"),
        ("telnet.pcap", 23, "telnet"),
        ("rdp.pcap", 3389, "rdp"),
        ("vnc.pcap", 6900, "vnc"),  # RFB on a non-standard port
        ("mssql_tds.pcap", 1433, "mssql-tds"),
        ("rtsp.pcap", 8554, "rtsp"),
        ("smbv1.pcap", 445, "smb"),
        ("443-opvn.pcap", 1194, "openvpn"),
        ("ipsec_isakmp_esp.pcap", 4500, "ipsec"),  # IKE behind the non-ESP marker
        ("nfsv3.pcap", 2049, "nfs"),
        ("nats.pcap", 4222, "nats"),
        ("kerberos-login.pcap", 88, "kerberos"),
        ("NTPv4.pcap", 123, "ntp"),
        ("h323.pcap", 1720, "h323"),
        ("mongodb.pcap", 27017, "mongodb"),
        ("rtps.pcap", 7410, "rtps"),  # DDS, used by device interoperability stacks
    ],
)
def test_real_capture_flow_is_identified_by_signature(
    ndpi_pcaps: Path, capture: str, server_port: int, protocol: str
) -> None:
    flows = [
        f for f in _flows(ndpi_pcaps / capture) if server_port in (f.server_port, f.client_port)
    ]
    assert flows, f"no flow on port {server_port} in {capture}"
    labelled = [f for f in flows if f.app_protocol == protocol and f.app_method == "signature"]
    assert labelled, [(f.app_protocol, f.app_method) for f in flows]


def test_coap_and_mqtt_in_one_capture(ndpi_pcaps: Path) -> None:
    protocols = {f.app_protocol for f in _flows(ndpi_pcaps / "coap_mqtt.pcap")}
    assert {"coap", "mqtt"} <= protocols


def test_http_on_sip_port_is_http(ndpi_pcaps: Path) -> None:
    flows = [f for f in _flows(ndpi_pcaps / "http_on_sip_port.pcap") if f.transport == "tcp"]
    assert flows and all(f.app_protocol == "http" for f in flows if f.payload_c2s)


def test_tls_on_port_80_is_tls(ndpi_pcaps: Path) -> None:
    flows = [f for f in _flows(ndpi_pcaps / "tls_port_80.pcapng") if f.server_port == 80]
    assert flows and {f.app_protocol for f in flows} == {"tls"}


def test_a_one_way_rtp_stream_from_a_low_port_is_rtp(ndpi_pcaps: Path) -> None:
    """sip.pcap's media: 9 RTP datagrams from 192.168.1.2:30000 to an ephemeral port, none
    back. The flow table makes the lower port class the server, so the datagrams are its
    server-to-client side; RTP has no client role (RFC 3550 §5.1) and is still RTP."""
    [flow] = [f for f in _flows(ndpi_pcaps / "sip.pcap") if 30000 in (f.server_port, f.client_port)]
    assert flow.packets_c2s + flow.packets_s2c == 9
    assert (flow.app_protocol, flow.app_method) == ("rtp", "signature")
