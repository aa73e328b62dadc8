"""Protocol identification: API contract, ranking, "need more data", the port fallback, the
knowledge files' validation, and fuzzing. Bytes from real stacks are in
test_identify_stacks.py; real device captures (nDPI's corpus) in test_identify_ndpi.py."""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.errors import ConfigError
from medsentry.protocols.identify import (
    PORTS,
    SIGNATURE_PROTOCOLS,
    SIGNATURES,
    Identification,
    identify,
)
from medsentry.protocols.signatures import load_ports, load_signatures
from medsentry.protocols.signatures_validators import (
    DETAILS,
    EXCHANGES,
    FIRST_BYTES,
    VALIDATORS,
    dnp3_crc,
)

TCP, UDP = 6, 17
HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: pacs\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok"


def test_identification_is_a_frozen_slotted_dataclass() -> None:
    ident = Identification("dicom", "signature", 0.95)
    assert ident.detail is None
    assert dataclasses.is_dataclass(ident) and not hasattr(ident, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.protocol = "http"  # type: ignore[misc]


def test_claimed_protocols_have_signatures() -> None:
    claimed = {
        "dicom", "dicom-tls", "hl7-mllp", "http", "fhir", "tls", "dns", "mdns", "llmnr",
        "dhcp", "dhcpv6", "ssdp", "ntp", "snmp", "ssh", "telnet", "ftp", "smb", "rdp", "mqtt",
        "coap", "modbus", "dnp3", "bacnet", "syslog", "quic", "netbios", "smtp", "pop3", "imap",
        "sip", "rtsp", "stun", "kerberos", "ldap", "radius", "rtp", "tftp", "mysql",
        "mssql-tds", "vnc", "iec104", "opc-ua",
    }  # fmt: skip
    assert claimed <= SIGNATURE_PROTOCOLS


def test_http_on_dicom_port_is_http_not_dicom() -> None:
    got = identify(TCP, 40000, 104, HTTP_GET, HTTP_OK, False)
    assert got == Identification("http", "signature", 0.9, None)


def test_port_hint_only_adds_a_bonus() -> None:
    on_port = identify(TCP, 40000, 80, HTTP_GET, HTTP_OK, False)
    assert on_port is not None and on_port.confidence > 0.9


def test_need_more_data_until_final() -> None:
    # three bytes of an HTTP method: could be HTTP, could be something else
    assert identify(TCP, 40000, 8080, b"GET", b"", False) is None
    # nothing seen, not final: wait
    assert identify(TCP, 40000, 104, b"", b"", False) is None
    # final: the port table answers, with a lower confidence
    got = identify(TCP, 40000, 104, b"", b"", True)
    assert got == Identification("dicom", "port", 0.4, "acr-nema")


def test_truncated_dicom_header_waits_then_falls_back() -> None:
    first_bytes = b"\x01\x00\x00\x00"  # A-ASSOCIATE-RQ type, reserved, half the length
    assert identify(TCP, 40000, 11112, first_bytes, b"", False) is None
    got = identify(TCP, 40000, 11112, first_bytes, b"", True)
    assert got is not None and got.method == "port" and got.protocol == "dicom"


def test_unknown_port_and_unknown_bytes_is_none() -> None:
    junk = bytes(range(200, 256)) * 3
    assert identify(TCP, 40000, 40001, junk, b"", True) is None
    assert identify(UDP, 40000, 40001, junk, junk, True) is None
    assert identify(1, 0, 0, b"\x08\x00", b"", True) is None  # ICMP: no port table entry


def test_port_fallback_prefers_server_port_then_client_port() -> None:
    assert identify(UDP, 40000, 123, b"", b"", True) == Identification("ntp", "port", 0.4, "ntp")
    got = identify(UDP, 123, 40000, b"", b"", True)
    assert got is not None and got.protocol == "ntp"


def test_udp_datagrams_are_complete_no_waiting() -> None:
    # a UDP datagram cannot grow: an unrecognised first datagram each way settles it
    got = identify(UDP, 40000, 161, b"\x00" * 10, b"\x00" * 10, False)
    assert got is not None and got.method == "port"


def test_dnp3_header_crc_is_checked() -> None:
    # IEEE 1815 §9.2.4: start 0564, length, control, destination, source, CRC (LE)
    header = bytes([0x05, 0x64, 0x05, 0xC9, 0x01, 0x00, 0x0A, 0x00])
    crc = dnp3_crc(header)
    frame = header + crc.to_bytes(2, "little")
    got = identify(TCP, 40000, 30000, frame, b"", False)
    assert got is not None and got.protocol == "dnp3"
    bad = header + ((crc ^ 0x0101).to_bytes(2, "little"))
    assert identify(TCP, 40000, 30000, bad, b"", True) is None


def test_dnp3_crc_known_value() -> None:
    # the link-status request "05 64 05 C0 01 00 00 04" carries CRC bytes "E9 21"
    assert dnp3_crc(bytes.fromhex("056405c001000004")) == 0x21E9


def test_modbus_exchange_off_port_and_single_direction_on_port() -> None:
    # Read Holding Registers request and response, transaction 0x0001, unit 1
    req = bytes.fromhex("0001000000060103006b0003")
    resp = bytes.fromhex("000100000009010306022b00000064")
    got = identify(TCP, 40000, 502, req, b"", False)
    assert got is not None and got.protocol == "modbus"
    got = identify(TCP, 40000, 15020, req, resp, False)
    assert got is not None and got.protocol == "modbus"
    other_txn = bytes.fromhex("000200000009") + resp[6:]
    assert identify(TCP, 40000, 15020, req, other_txn, True) is None


def test_dhcp_needs_the_magic_cookie() -> None:
    discover = bytearray(300)
    discover[0:4] = b"\x01\x01\x06\x00"  # op BOOTREQUEST, htype Ethernet, hlen 6
    discover[236:240] = bytes.fromhex("63825363")
    got = identify(UDP, 68, 67, bytes(discover), b"", False)
    assert got is not None and (got.protocol, got.method) == ("dhcp", "signature")
    discover[236] = 0
    assert identify(UDP, 68, 67, bytes(discover), b"", False) is None  # the reply may tell
    got = identify(UDP, 68, 67, bytes(discover), b"", True)
    assert got is not None and got.method == "port"


def test_random_bytes_rarely_match_any_signature() -> None:
    """Seeded random payloads on unassigned ports: signatures are structural, so almost none
    fire (the weak RTP header check is the known exception, at confidence 0.5)."""
    rng = random.Random(20261123)
    strong = 0
    total = 2000
    for _ in range(total):
        a = rng.randbytes(rng.choice([8, 20, 60, 300, 1500]))
        b = rng.randbytes(rng.choice([0, 8, 60, 300]))
        got = identify(rng.choice([TCP, UDP]), 40000, 40001, a, b, True)
        if got is not None and got.confidence >= 0.8:
            strong += 1
    assert strong <= total // 200  # at most 0.5 %


@settings(max_examples=400, deadline=None)
@given(
    transport=st.sampled_from([6, 17, 1, 132]),
    client_port=st.integers(0, 65535),
    server_port=st.integers(0, 65535),
    c2s=st.binary(max_size=600),
    s2c=st.binary(max_size=600),
    final=st.booleans(),
)
def test_identify_never_raises(
    transport: int, client_port: int, server_port: int, c2s: bytes, s2c: bytes, final: bool
) -> None:
    got = identify(transport, client_port, server_port, c2s, s2c, final)
    if got is not None:
        assert got.method in ("signature", "port")
        assert 0.0 < got.confidence <= 1.0


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(
        [
            b"\x01\x00",
            b"\x04\x00",
            b"\x0bMSH|",
            b"\x16\x03\x01",
            b"\x10",
            b"\x05\x64",
            b"\x68",
            b"\x30",
            b"GET /",
            b"HTTP/1.1 ",
            b"\x00\x00\x00",
            b"\x03\x00",
            b"SSH-",
            b"\x81",
        ]
    ),
    tail=st.binary(max_size=300),
    transport=st.sampled_from([6, 17]),
)
def test_identify_never_raises_on_near_misses(prefix: bytes, tail: bytes, transport: int) -> None:
    for final in (False, True):
        identify(transport, 40000, 104, prefix + tail, tail, final)
        identify(transport, 40000, 104, tail, prefix + tail, final)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400), other=st.binary(max_size=200), lead=st.integers(0, 255))
def test_every_validator_exchange_and_detail_never_raises(
    data: bytes, other: bytes, lead: int
) -> None:
    for candidate in (data, bytes([lead]) + data):
        for name, fn in VALIDATORS.items():
            verdict = fn(candidate)
            assert verdict in (True, False, None), name
            if verdict and name in FIRST_BYTES:
                # the pre-filter must never hide a match
                assert candidate[0] in FIRST_BYTES[name], name
        for name, ex in EXCHANGES.items():
            assert ex(candidate, other) in (True, False, None), name
        for name, det in DETAILS.items():
            out = det(candidate, other)
            assert out is None or isinstance(out, str), name


# --- the knowledge files ----------------------------------------------------------------


def test_packaged_files_load() -> None:
    assert len(SIGNATURES) >= 60
    assert PORTS[(TCP, 104)].service == "acr-nema"
    assert load_signatures() == SIGNATURES


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sigs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_ENTRY = """
  - name: demo
    protocol: demo
    transport: tcp
    c2s: {match: [{offset: 0, ascii: "DEMO"}]}
    confidence: 0.9
    source: test
"""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (GOOD_ENTRY.replace("transport: tcp", "transport: sctp"), "transport"),
        (GOOD_ENTRY.replace('ascii: "DEMO"', 'hex: "zz"'), "not hexadecimal"),
        (GOOD_ENTRY.replace("confidence: 0.9", "confidence: 2"), "confidence"),
        (GOOD_ENTRY.replace('{match: [{offset: 0, ascii: "DEMO"}]}', "{validator: nope}"),
         "unknown validator 'nope'"),
        (GOOD_ENTRY.replace("protocol: demo", "protocol: Demo"), "lowercase"),
        (GOOD_ENTRY.replace("    source: test\n", ""), "needs a source"),
        (GOOD_ENTRY.replace("confidence: 0.9", "confidence: 0.9\n    colour: red"), "colour"),
        (GOOD_ENTRY + "    port_required: true\n", "port_required"),
        (GOOD_ENTRY.replace("offset: 0", "offset: -1"), "offset"),
        (GOOD_ENTRY + "    refines: nothing\n", "refines unknown protocol 'nothing'"),
        (GOOD_ENTRY + "    any: {validator: ssh_banner}\n", "'any' cannot be combined"),
        (GOOD_ENTRY + "    exchange: nope\n", "unknown exchange check 'nope'"),
        (GOOD_ENTRY + "    role: nope\n", "unknown role function 'nope'"),
        (GOOD_ENTRY + "    role: hl7_role\n", "role needs 'any'"),
        (GOOD_ENTRY.replace('ascii: "DEMO"', 'hex: "0f", mask: "f0"'), "bits outside its mask"),
    ],
)  # fmt: skip
def test_malformed_signature_file_names_the_entry(tmp_path: Path, entry: str, message: str) -> None:
    path = _write(tmp_path, "source: test\nsignatures:\n" + entry)
    with pytest.raises(ConfigError) as err:
        load_signatures(path)
    assert "demo" in str(err.value) and message in str(err.value)
    assert str(path) in str(err.value)


def test_duplicate_signature_name_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: test\nsignatures:\n" + GOOD_ENTRY + GOOD_ENTRY)
    with pytest.raises(ConfigError, match="defined twice"):
        load_signatures(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: test\nsignatures:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_signatures(path)


def test_port_table_rejects_duplicates_and_bad_ports(tmp_path: Path) -> None:
    path = tmp_path / "ports.yaml"
    path.write_text(
        "source: IANA\nports:\n"
        "  - {transport: tcp, port: 104, protocol: dicom, service: acr-nema}\n"
        "  - {transport: tcp, port: 104, protocol: dicom, service: acr-nema}\n"
    )
    with pytest.raises(ConfigError, match=r"ports\[1\].*tcp/104 listed twice"):
        load_ports(path)
    path.write_text(
        "source: IANA\nports:\n  - {transport: tcp, port: 70000, protocol: x, service: x}\n"
    )
    with pytest.raises(ConfigError, match=r"ports\[0\].*70000"):
        load_ports(path)


@pytest.mark.parametrize(
    ("request_head", "resource"),
    [
        (b"GET /fhir/Patient?name=x HTTP/1.1\r\nHost: ehr\r\n\r\n", "Patient"),
        (b"GET /Patient/123 HTTP/1.1\r\nHost: ehr\r\n\r\n", "Patient"),
        (b"GET /Observation?_count=10 HTTP/1.1\r\nHost: ehr\r\n\r\n", "Observation"),
        (b"GET /Observation/$lastn?patient=1 HTTP/1.1\r\n\r\n", "Observation"),
        (b"GET http://ehr/fhir/Encounter/1 HTTP/1.1\r\n\r\n", "Encounter"),  # proxy form
        (b"GET /baseR4/metadata HTTP/1.1\r\n\r\n", "metadata"),
        (b"GET /api/x HTTP/1.1\r\nAccept: application/fhir+json\r\n\r\n", None),
        (b"GET /Patient-portal/index.html HTTP/1.1\r\n\r\n", "http"),
        (b"GET /Device HTTP/1.1\r\n\r\n", "http"),  # a bare capitalised word is not enough
        (b"GET /x HTTP/1.1\r\nHost: a\r\n\r\napplication/fhir+json", "http"),  # body, not header
    ],
)
def test_fhir_is_told_from_plain_http(request_head: bytes, resource: str | None) -> None:
    got = identify(TCP, 40000, 8080, request_head, b"", True)
    assert got is not None
    if resource == "http":
        assert got.protocol == "http"
    else:
        assert (got.protocol, got.detail) == ("fhir", resource)


def test_module_documentation_names_every_signature_protocol() -> None:
    import re

    import medsentry.protocols.identify as module

    doc = module.__doc__ or ""
    table = doc[doc.index("Canonical protocol names") : doc.index("The port table")]
    assert set(re.findall(r"[a-z][a-z0-9-]+", table)) >= SIGNATURE_PROTOCOLS


# a DICOM P-DATA-TF with one command PDV (PS3.8 §9.3.5, §E.2): Command Field (0000,0100) in
# Implicit VR Little Endian (PS3.7 §6.3.1), after the Affected SOP Class UID (0000,0002)
def _p_data_command(field: int) -> bytes:
    uid = b"1.2.840.10008.1.1\x00"  # Verification SOP Class, padded to even length
    cmd = (
        struct.pack("<HHI", 0, 2, len(uid))
        + uid
        + struct.pack("<HHIH", 0, 0x0100, 2, field)
        + struct.pack("<HHIH", 0, 0x0800, 2, 0x0101)  # Command Data Set Type: none
    )
    pdv = b"\x01\x03" + cmd  # context 1; command, last fragment
    return b"\x04\x00" + struct.pack(">I", len(pdv) + 4) + struct.pack(">I", len(pdv)) + pdv


ECHO_RQ, ECHO_RSP = _p_data_command(0x0030), _p_data_command(0x8030)
HL7_ADT = b"\x0bMSH|^~\\&|ADT|H|RIS|R|20240101||ADT^A01|C1|P|2.5\rEVN|A01\r\x1c\r"
HL7_ACK = b"\x0bMSH|^~\\&|RIS|R|ADT|H|20240101||ACK^A01^ACK|A1|P|2.5\rMSA|AA|C1\r\x1c\r"
HTTP_GET = b"GET /status HTTP/1.1\r\nHost: pump\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    ("c2s", "s2c", "protocol", "oriented"),
    [
        (ECHO_RQ, ECHO_RSP, "dicom", True),  # -RQ from the requestor, PS3.7 §9.3.5
        (ECHO_RSP, ECHO_RQ, "dicom", False),
        (ECHO_RSP, b"", "dicom", False),
        (ECHO_RQ, ECHO_RQ, "dicom", None),  # the two sides disagree
        (_p_data_command(0x0100), b"", "dicom", None),  # N-EVENT-REPORT-RQ: either side
        (HL7_ADT, HL7_ACK, "hl7-mllp", True),  # MSA: the acknowledgment, HL7 v2 §2.14.8
        (HL7_ACK, HL7_ADT, "hl7-mllp", False),
        (HL7_ADT[:30], b"", "hl7-mllp", None),  # the message's end not seen yet
        (HTTP_GET, HTTP_OK, "http", True),  # c2s/s2c signatures say the sides themselves
    ],
)
def test_identification_says_which_way_the_bytes_show_the_flow(
    c2s: bytes, s2c: bytes, protocol: str, oriented: bool | None
) -> None:
    got = identify(TCP, 40001, 51234, c2s, s2c, False)
    assert got is not None and (got.protocol, got.oriented) == (protocol, oriented)


def test_an_http_exchange_seen_the_wrong_way_round_identifies_only_turned_round() -> None:
    as_given = identify(TCP, 51234, 40001, HTTP_OK, HTTP_GET, True)
    assert as_given is None or as_given.oriented is not True
    turned = identify(TCP, 40001, 51234, HTTP_GET, HTTP_OK, True)
    assert turned is not None and (turned.protocol, turned.oriented) == ("http", True)
