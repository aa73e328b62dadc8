"""Structural checks that byte patterns cannot express, referenced by name from
`data/protocol_signatures.yaml`.

Each validator takes the first bytes of one direction of a flow and answers
True (the structure holds), False (it does not) or None (too few bytes to tell yet; the
caller turns None into False when no more bytes can come). Validators never raise on any
input and look at a few dozen bytes at most: identification runs once or a few times per flow.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from medsentry.protocols.fhir import RESOURCE_TYPES as FHIR_RESOURCE_TYPES

Verdict = bool | None
Validator = Callable[[bytes], Verdict]

VALIDATORS: dict[str, Validator] = {}
# the values the first byte can take for a validator to hold (a cheap pre-filter)
FIRST_BYTES: dict[str, frozenset[int]] = {}
# detail functions: (c2s, s2c) -> a short non-identifying note on what was seen
Detail = Callable[[bytes, bytes], str | None]
DETAILS: dict[str, Detail] = {}


def validator(name: str, first: bytes | range | None = None) -> Callable[[Validator], Validator]:
    """Register a validator; `first` lists every value its data's first byte may take."""

    def register(fn: Validator) -> Validator:
        VALIDATORS[name] = fn
        if first is not None:
            FIRST_BYTES[name] = frozenset(first)
        return fn

    return register


def detail(name: str) -> Callable[[Detail], Detail]:
    def register(fn: Detail) -> Detail:
        DETAILS[name] = fn
        return fn

    return register


def _u16(data: bytes, offset: int) -> int:
    return (data[offset] << 8) | data[offset + 1]


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


# fixed-layout reads for validators that run on most flows (callers check the length first:
# struct.error is not one of the exceptions a validator may raise)
_U32 = struct.Struct(">I").unpack_from
_DNS_HEADER = struct.Struct(">HHHHH").unpack_from  # flags, qd, an, ns, ar at offset 2
_STUN_HEADER = struct.Struct(">HHI").unpack_from  # type, length, magic cookie
_ZERO8 = bytes(8)


# --- DICOM Upper Layer, PS3.8 §9.3 ---------------------------------------------------------

_AE_TITLE = re.compile(rb"[\x20-\x7e]{16}")


@validator("dicom_pdu", first=range(1, 8))
def dicom_pdu(data: bytes) -> Verdict:
    """A DICOM Upper Layer PDU: type, reserved byte and PDU-length consistent (PS3.8 §9.3)."""
    if len(data) < 6:
        return None
    pdu_type, reserved = data[0], data[1]
    length = _u32(data, 2)
    if reserved != 0 or not 1 <= pdu_type <= 7:
        return False
    if pdu_type in (1, 2):  # A-ASSOCIATE-RQ / -AC, PS3.8 §9.3.2 / §9.3.3
        if length < 68:  # fixed fields (68) precede the variable items
            return False
        if len(data) < 75:
            return None
        if _u16(data, 6) & 0x0001 == 0:  # Protocol-version bit 0, PS3.8 §9.3.2
            return False
        if pdu_type == 1 and not (
            _AE_TITLE.fullmatch(data[10:26]) and _AE_TITLE.fullmatch(data[26:42])
        ):
            return False  # Called-/Calling-AE-title: 16 ISO 646 characters
        return data[74] == 0x10  # first variable item: Application Context Item, §9.3.2.1
    if pdu_type == 3:  # A-ASSOCIATE-RJ, §9.3.4: length 4, result 1|2, source 1..3
        if length != 4:
            return False
        if len(data) < 10:
            return None
        return data[7] in (1, 2) and data[8] in (1, 2, 3)
    if pdu_type == 4:  # P-DATA-TF, §9.3.5: one or more PDV items
        if length < 6:
            return False
        if len(data) < 12:
            return None
        item_length = _u32(data, 6)
        # PDV item: length covers the context id, the message control header and the fragment
        return 2 <= item_length <= length - 4 and data[10] % 2 == 1 and data[11] <= 3
    # A-RELEASE-RQ / -RP (§9.3.6, §9.3.7) and A-ABORT (§9.3.8): four bytes
    if length != 4:
        return False
    if len(data) < 10:
        return None
    if pdu_type == 7:
        return data[8] in (0, 2) and data[9] <= 6  # source 0|2, reason 0..6
    return True


_DICOM_PDU_NAMES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}


@detail("dicom_pdu_type")
def dicom_pdu_type(c2s: bytes, s2c: bytes) -> str | None:
    """The name of the first PDU seen (client side first), PS3.8 §9.3.1."""
    for data in (c2s, s2c):
        if data and dicom_pdu(data):
            return _DICOM_PDU_NAMES[data[0]]
    return None


# --- HL7 v2 over MLLP, HL7 v2.x Appendix C (MLLP) and Chapter 2 §2.5 (MSH) ---------------


@validator("hl7_mllp", first=b"\x0b")
def hl7_mllp(data: bytes) -> Verdict:
    """<VT> then "MSH" (or a batch's "FHS"/"BHS", Chapter 2 §2.10.3), the field separator and
    four encoding characters, none alphanumeric."""
    if len(data) < 4:
        return None
    if data[0] != 0x0B or data[1:4] not in (b"MSH", b"FHS", b"BHS"):  # message or batch
        return False
    if len(data) < 9:
        return None
    sep = data[4]
    if not 0x21 <= sep <= 0x7E or chr(sep).isalnum():
        return False
    enc = data[5:9]
    return all(0x21 <= c <= 0x7E and c != sep and not chr(c).isalnum() for c in enc)


# --- HTTP/1.x, RFC 9112 §3 (request line) and §4 (status line) ----------------------------

_HTTP_METHODS = (
    b"GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|"
    b"LOCK|UNLOCK|REPORT|SEARCH|SUBSCRIBE|UNSUBSCRIBE|NOTIFY|M-SEARCH|PURGE|BPROPFIND|MKCALENDAR"
)
HTTP_REQUEST_LINE = re.compile(rb"(" + _HTTP_METHODS + rb") (\S{1,4000}) HTTP/1\.[019]\r?\n")
_HTTP_METHOD_PREFIX = re.compile(rb"(" + _HTTP_METHODS + rb")( |$)")
HTTP_STATUS_LINE = re.compile(rb"HTTP/1\.[019] [1-5]\d\d[ \r\n]")


def _line_verdict(data: bytes, full: re.Pattern[bytes], prefix_ok: bool) -> Verdict:
    if full.match(data):
        return True
    if prefix_ok and b"\n" not in data:
        return None  # the first line is not complete yet
    return False


@validator("http_request", first=b"GPHDOTCMLURSNB")
def http_request(data: bytes) -> Verdict:
    """An HTTP/1.x request line: method SP request-target SP HTTP-version CRLF."""
    prefix = _HTTP_METHOD_PREFIX.match(data[:12]) is not None or (
        len(data) < 12 and any(m.startswith(data) for m in _HTTP_METHODS.split(b"|"))
    )
    return _line_verdict(data, HTTP_REQUEST_LINE, prefix)


@validator("http_response", first=b"H")
def http_response(data: bytes) -> Verdict:
    """An HTTP/1.x status line: HTTP-version SP status-code SP reason-phrase."""
    if len(data) < 13:
        return None if b"HTTP/1."[: len(data)] == data[:7] else False
    return HTTP_STATUS_LINE.match(data) is not None


# --- FHIR REST over HTTP, HL7 FHIR R4/R5 §3.1.0 (RESTful API) ------------------------------

# Resource types that may appear as a path segment of a FHIR RESTful interaction: the FHIR R4
# and R5 resource lists, kept as data in data/fhir_resources.yaml (shared with the FHIR dissector)
FHIR_RESOURCES = frozenset(t.encode("ascii") for t in FHIR_RESOURCE_TYPES)
_FHIR_MEDIA = re.compile(rb"application/(fhir\+(json|xml)|json\+fhir|xml\+fhir)", re.I)
_PATH_SEGMENTS = re.compile(rb"/([A-Za-z$][A-Za-z]*)")


_FHIR_BASES = frozenset(
    [b"fhir", b"baser4", b"baser5", b"baser4b", b"r4", b"r5", b"stu3", b"dstu2"]
)
_FHIR_ID = re.compile(rb"[A-Za-z0-9\-.]{1,64}")  # FHIR R5 §2.1.28.0.1 id datatype


def fhir_resource(data: bytes) -> str | None:
    """The FHIR resource type an HTTP request addresses ("metadata" for the capability
    statement, "" when only the media type shows FHIR), or None when it is not FHIR.

    A path segment equal to a resource type counts when the path has a FHIR base segment
    before it ("/fhir/Patient"), when it is followed by an id, "_history", "_search" or an
    operation ("/Patient/123", "/Observation/$lastn"), when the query uses FHIR's "_"
    parameters, or when the request's headers carry a FHIR media type (FHIR §3.1.0.1.6)."""
    m = HTTP_REQUEST_LINE.match(data)
    if m is None:
        return None
    target, _, query = m.group(2).partition(b"?")
    if target.startswith(b"http"):  # absolute-form (RFC 9112 §3.2.2): keep the path
        target = b"/" + target.split(b"/", 3)[-1]
    head_end = data.find(b"\r\n\r\n")
    media = _FHIR_MEDIA.search(data[: head_end if head_end >= 0 else 4096]) is not None
    segments = [seg for seg in target.split(b"/") if seg]
    based = False
    for i, seg in enumerate(segments):
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        if seg.lower() in _FHIR_BASES:
            based = True
            if nxt in (b"metadata", b"$export", b"_history", b"$meta"):
                return nxt.decode("ascii").lstrip("$_")
            continue
        if seg in FHIR_RESOURCES:
            followed = nxt is not None and (
                nxt.startswith((b"$", b"_history", b"_search")) or _FHIR_ID.fullmatch(nxt)
            )
            if based or media or followed or query.startswith(b"_") or b"&_" in query:
                return seg.decode("ascii")
    if segments and segments[-1] == b"metadata" and (based or media):
        return "metadata"
    return "" if media else None


@detail("fhir_resource")
def fhir_resource_detail(c2s: bytes, s2c: bytes) -> str | None:
    """The FHIR resource type the first request addresses (None when not named)."""
    return fhir_resource(c2s) or None


@validator("fhir_request", first=b"GPHDOTCMLURSNB")
def fhir_request(data: bytes) -> Verdict:
    """An HTTP request whose target names a FHIR resource type or FHIR base, or whose
    Accept/Content-Type is a FHIR media type (FHIR §3.1.0.1.6)."""
    verdict = http_request(data)
    if verdict is not True:
        return verdict
    if fhir_resource(data) is not None:
        return True
    return None if b"\r\n\r\n" not in data and len(data) < 4096 else False


@validator("fhir_response", first=b"H")
def fhir_response(data: bytes) -> Verdict:
    """An HTTP response whose Content-Type is a FHIR media type."""
    verdict = http_response(data)
    if verdict is not True:
        return verdict
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    if _FHIR_MEDIA.search(head):
        return True
    return None if head_end < 0 and len(data) < 4096 else False


# --- TLS, RFC 8446 §5.1 (record layer) and §4 (handshake); SSL 2.0 CLIENT-HELLO ----------


@validator("tls_handshake", first=b"\x16")
def tls_handshake(data: bytes) -> Verdict:
    """A TLS record of content type handshake(22) carrying a ClientHello(1) or ServerHello(2)."""
    if len(data) < 6:
        return None if data[:1] in (b"", b"\x16") else False
    if data[0] != 22 or data[1] != 3 or data[2] > 4:
        return False
    length = _u16(data, 3)
    if not 4 <= length <= 16384 + 2048:
        return False
    if data[5] not in (1, 2):
        return False
    if len(data) < 9:
        return None
    hs_length = int.from_bytes(data[6:9], "big")
    # a hello may span several records, but it is at least 38 bytes long (RFC 8446 §4.1.2)
    if hs_length < 38:
        return False
    if len(data) < 11:
        return None
    return data[9] == 3 and data[10] <= 4  # legacy_version 3.x


@validator("sslv2_client_hello", first=range(0x80, 0x100))
def sslv2_client_hello(data: bytes) -> Verdict:
    """SSL 2.0 record header (2-byte length with high bit) + CLIENT-HELLO, version 2.0..3.3."""
    if len(data) < 5:
        return None if not data or data[0] & 0x80 else False
    if not data[0] & 0x80 or data[2] != 1:
        return False
    length = ((data[0] & 0x7F) << 8) | data[1]
    version = _u16(data, 3)
    return version in (0x0002, 0x0300, 0x0301, 0x0302, 0x0303) and 9 <= length <= 1024


# --- DNS, RFC 1035 §4.1 (also mDNS RFC 6762, LLMNR RFC 4795, NetBIOS-NS RFC 1002 §4.2) ----


def _dns_question_ok(data: bytes, offset: int) -> Verdict:
    """The first question's QNAME (uncompressed labels), QTYPE and QCLASS fit."""
    pos = offset
    n = len(data)
    for _ in range(128):
        if pos >= n:
            return None
        label = data[pos]
        if label == 0:
            return True if pos + 5 <= n else None
        if label & 0xC0:
            return False  # a question's name is never compressed in the first question
        pos += 1 + label
    return False


def _dns_message(data: bytes) -> Verdict:
    if len(data) < 12:
        return None
    flags, qdcount, ancount, nscount, arcount = _DNS_HEADER(data, 2)
    opcode = (flags >> 11) & 0xF
    if opcode not in (0, 1, 2, 4, 5) or flags & 0x0040:  # Z bit is zero, RFC 1035 §4.1.1
        return False
    if qdcount > 16 or ancount > 256 or nscount > 256 or arcount > 256:
        return False
    if qdcount == 0:
        # queries carry a question; responses (mDNS announcements) may not
        return bool(flags & 0x8000) and ancount + nscount + arcount > 0
    return _dns_question_ok(data, 12)


@validator("dns_udp")
def dns_udp(data: bytes) -> Verdict:
    """A DNS message header with sane counts and a well-formed first question."""
    return _dns_message(data)


@validator("dns_tcp")
def dns_tcp(data: bytes) -> Verdict:
    """DNS over TCP: two-byte message length, then a DNS message (RFC 1035 §4.2.2)."""
    if len(data) < 2:
        return None
    if _u16(data, 0) < 12:
        return False
    return _dns_message(data[2:])


@validator("netbios_ns")
def netbios_ns(data: bytes) -> Verdict:
    """NetBIOS name service packet: DNS-like header, first-level-encoded 32-byte name
    (RFC 1002 §4.2.1, RFC 1001 §14.1); opcodes of RFC 1002 §4.2.1.1, 9 (the refresh Windows
    and Samba send) and 15 (multi-homed registration, MS-NBTE §2.2.1)."""
    if len(data) < 12:
        return None
    qd, an = (data[4] << 8) | data[5], (data[6] << 8) | data[7]
    if qd + an == 0 or qd > 1 or an > 1 or (data[2] >> 3) & 0xF not in (0, 5, 6, 7, 8, 9, 15):
        return False
    if len(data) < 46:
        return None
    return data[12] == 32 and all(0x41 <= c <= 0x50 for c in data[13:45])


@validator("netbios_dgm")
def netbios_dgm(data: bytes) -> Verdict:
    """NetBIOS datagram service header: type 0x10..0x16, length consistent (RFC 1002 §4.4.1)."""
    if len(data) < 14:
        return None
    if not 0x10 <= data[0] <= 0x16:
        return False
    if data[0] <= 0x12:
        return _u16(data, 10) + 14 == len(data) or _u16(data, 10) + 14 <= 4096
    return True


# --- DHCP RFC 2131 §2, DHCPv6 RFC 8415 §8 ---------------------------------------------------


@validator("dhcpv6", first=range(1, 14))
def dhcpv6(data: bytes) -> Verdict:
    """msg-type 1..13 followed by options whose lengths tile the message (RFC 8415 §8, §21.1)."""
    if len(data) < 4:
        return None
    msg_type = data[0]
    if not 1 <= msg_type <= 13:
        return False
    pos = 4 if msg_type not in (12, 13) else 34  # relay messages carry two addresses
    while pos + 4 <= len(data):
        pos += 4 + _u16(data, pos + 2)
    return pos == len(data)


# --- NTP RFC 5905 §7.3 -----------------------------------------------------------------------


@validator("ntp")
def ntp(data: bytes) -> Verdict:
    """LI/VN/Mode: version 1..4, mode 1..5 (symmetric, client, server, broadcast), and a
    48-byte header (control messages, mode 6/7, are longer or shorter; mode 6 kept too)."""
    if not data:
        return None
    version = (data[0] >> 3) & 0x7
    mode = data[0] & 0x7
    if not 1 <= version <= 4:
        return False
    if mode == 6:  # control message (RFC 1305 appendix B): 12-byte header
        return len(data) >= 12 and data[1] & 0x1F <= 31
    if mode == 7:  # ntpd private (monlist...)
        return len(data) >= 8
    if not 1 <= mode <= 5 or len(data) < 48:
        return False
    return data[1] <= 16  # stratum


# --- SNMP RFC 3416 / RFC 3412: BER SEQUENCE { version, community | v3 header ... } -------


def _ber_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, position after the length octets), or None when malformed/short."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


@validator("snmp", first=b"\x30")
def snmp(data: bytes) -> Verdict:
    """SEQUENCE, INTEGER version 0|1|3, then OCTET STRING community (v1/v2c) or SEQUENCE."""
    if len(data) < 8:
        return None if data[:1] in (b"", b"\x30") else False
    if data[0] != 0x30:
        return False
    outer = _ber_length(data, 1)
    if outer is None:
        return False
    length, pos = outer
    if pos + length != len(data) and pos + length > 4096:
        return False
    if data[pos : pos + 2] != b"\x02\x01" or pos + 3 >= len(data):
        return False
    version = data[pos + 2]
    nxt = data[pos + 3]
    if version in (0, 1):
        return nxt == 0x04  # community OCTET STRING
    if version == 3:
        return nxt == 0x30  # msgGlobalData SEQUENCE (RFC 3412 §6)
    return False


# --- MQTT 3.1 / 3.1.1 / 5.0 CONNECT ---------------------------------------------------------


@validator("mqtt_connect", first=b"\x10")
def mqtt_connect(data: bytes) -> Verdict:
    """CONNECT fixed header 0x10, Remaining Length varint, protocol name "MQTT" (3.1.1
    §3.1.2.1, 5.0 §3.1.2.1) or "MQIsdp" (3.1) and protocol level 3|4|5."""
    if len(data) < 2:
        return None if data[:1] in (b"", b"\x10") else False
    if data[0] != 0x10:
        return False
    pos = 1
    remaining = 0
    for shift in range(4):  # Remaining Length, MQTT 3.1.1 §2.2.3
        if pos >= len(data):
            return None
        byte = data[pos]
        remaining |= (byte & 0x7F) << (7 * shift)
        pos += 1
        if not byte & 0x80:
            break
    else:
        return False
    if remaining < 10:
        return False
    if len(data) < pos + 9:
        return None
    name_len = _u16(data, pos)
    name = data[pos + 2 : pos + 2 + name_len]
    level_at = pos + 2 + name_len
    if name_len == 4 and name == b"MQTT":
        return data[level_at] in (4, 5) if level_at < len(data) else None
    if name_len == 6 and name == b"MQIsdp":
        return data[level_at] == 3 if level_at < len(data) else None
    return False


@validator("mqtt_connack", first=b"\x20")
def mqtt_connack(data: bytes) -> Verdict:
    """CONNACK: 0x20, remaining length 2 (3.1/3.1.1) or a v5 property block."""
    if len(data) < 4:
        return None if data[:1] in (b"", b"\x20") else False
    return data[0] == 0x20 and 2 <= data[1] <= 127 and data[2] <= 1


# --- CoAP RFC 7252 §3 -------------------------------------------------------------------------

_COAP_CODES = frozenset(
    [
        *range(0x00, 0x08),  # Empty, GET..iPATCH
        *(0x41, 0x42, 0x43, 0x44, 0x45, 0x5F),  # 2.01..2.05, 2.31
        *range(0x80, 0x90),  # 4.00..4.15
        *range(0xA0, 0xA6),  # 5.00..5.05
    ]
)


@validator("coap", first=range(0x40, 0x80))
def coap(data: bytes) -> Verdict:
    """Ver 1, T, TKL <= 8, a registered code (RFC 7252 §12.1), the token fits."""
    if len(data) < 4:
        return None if not data else False
    if data[0] >> 6 != 1:
        return False
    tkl = data[0] & 0x0F
    if tkl > 8 or data[1] not in _COAP_CODES:
        return False
    if data[1] == 0 and (tkl != 0 or len(data) != 4):
        return False  # an Empty message is exactly 4 bytes
    return len(data) >= 4 + tkl


# --- Modbus/TCP: MBAP header, Modbus Messaging on TCP/IP Implementation Guide v1.0b §3.1.3 --


@validator("modbus_mbap")
def modbus_mbap(data: bytes) -> Verdict:
    """Protocol Identifier 0, Length = unit id + PDU (2..254) consistent with the bytes,
    a public function code (or its exception code)."""
    if len(data) < 8:
        return None
    if _u16(data, 2) != 0:
        return False
    length = _u16(data, 4)
    if not 2 <= length <= 254:
        return False
    fc = data[7] & 0x7F
    if fc == 0 or fc > 0x2B:
        return False
    if len(data) < 6 + length:
        return None if len(data) < 4096 else False
    # the first ADU ends at 6 + length; another ADU (pipelined) may follow
    rest = data[6 + length :]
    return not rest or len(rest) < 8 or _u16(rest, 2) == 0


# --- DNP3 IEEE 1815-2012 §9.2 (data link frame) ------------------------------------------


def dnp3_crc(block: bytes) -> int:
    """DNP3 CRC-16 (polynomial 0x3D65, reflected 0xA6BC, inverted), IEEE 1815 §9.2.4.2."""
    crc = 0
    for byte in block:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
    return ~crc & 0xFFFF


@validator("dnp3_link", first=b"\x05")
def dnp3_link(data: bytes) -> Verdict:
    """Start 0x0564, LENGTH >= 5, header CRC over the first 8 octets (little-endian)."""
    if len(data) < 10:
        return None if b"\x05\x64"[: len(data)] == data[:2] else False
    if data[0] != 0x05 or data[1] != 0x64 or data[2] < 5:
        return False
    return dnp3_crc(data[:8]) == data[8] | (data[9] << 8)


# --- BACnet/IP BVLC, ASHRAE 135 Annex J.2 -------------------------------------------------


@validator("bacnet_bvlc", first=b"\x81")
def bacnet_bvlc(data: bytes) -> Verdict:
    """Type 0x81 (BACnet/IP), function 0x00..0x0C, BVLC length equal to the datagram length."""
    if len(data) < 4:
        return None if not data else False
    return data[0] == 0x81 and data[1] <= 0x0C and _u16(data, 2) == len(data)


# --- Syslog RFC 5424 §6 / RFC 3164 §4.1 -------------------------------------------------------

_SYSLOG = re.compile(
    rb"(?:[1-9]\d{0,4} )?"  # RFC 6587 §3.4.1 octet counting (TCP)
    rb"<(\d{1,3})>(?:1 \d{4}-\d\d-\d\dT|1 - |"  # RFC 5424 VERSION and TIMESTAMP
    rb"\d{4}-\d\d-\d\dT\d\d:|"  # RFC 3339 timestamp without VERSION (rsyslog's format)
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:)"  # RFC 3164
)
_SYSLOG_PRI = re.compile(rb"<(\d{1,3})>[\x20-\x7e]")


@validator("syslog_strict", first=b"<123456789")
def syslog_strict(data: bytes) -> Verdict:
    """<PRI> (0..191) followed by an RFC 5424 or RFC 3164 timestamp."""
    m = _SYSLOG.match(data)
    return m is not None and int(m.group(1)) <= 191


@validator("syslog_pri", first=b"<")
def syslog_pri(data: bytes) -> Verdict:
    """<PRI> (0..191) followed by printable text (used on the syslog ports only)."""
    m = _SYSLOG_PRI.match(data)
    return m is not None and int(m.group(1)) <= 191


# --- QUIC RFC 9000 §17.2 (long header), RFC 9369 (v2), gQUIC ------------------------------

# v1 (RFC 9000), v2 (RFC 9369), v2 draft; Facebook mvfst experimental versions
_QUIC_VERSIONS = frozenset(
    [0x00000001, 0x6B3343CF, 0x709A50C4, 0xFACEB001, 0xFACEB002, 0xFACEB00E, 0xFACEB010]
)


@validator("quic_long_header")
def quic_long_header(data: bytes) -> Verdict:
    """Header Form 1, Fixed Bit 1, a known version (v1, v2, drafts, Google Qxxx/Txxx),
    DCID length <= 20 (RFC 9000 §17.2)."""
    if len(data) < 7:
        return None if not data else False
    if data[0] & 0xC0 != 0xC0:
        # gQUIC (Q043 and earlier) public header: flags then CID, version "Q0xx"
        if data[0] & 0x80 == 0 and len(data) >= 13 and data[0] & 0x01 and data[0] & 0x08:
            return data[9:10] == b"Q" and data[10:13].isdigit()
        return False
    version = _U32(data, 1)[0]
    known = (
        version in _QUIC_VERSIONS
        or 0xFF000001 <= version <= 0xFF000022  # IETF drafts 1..34
        or (data[1:2] in (b"Q", b"T") and data[2:5].isdigit())  # Google QUIC Q046+/T0xx
        or (version & 0x0F0F0F0F) == 0x0A0A0A0A  # greased version negotiation
    )
    return (known or version == 0) and data[5] <= 20  # version 0: Version Negotiation


# --- SMB / NetBIOS session service, RFC 1002 §4.3; MS-SMB §2.2.3.1; MS-SMB2 §2.2.1 -------


@validator("netbios_session_smb", first=b"\x00")
def netbios_session_smb(data: bytes) -> Verdict:
    """Session message (type 0x00) whose payload starts with \\xffSMB, \\xfeSMB or \\xfdSMB;
    bare SMB2 (direct TCP, MS-SMB2 §2.1) uses the same 4-byte framing."""
    if len(data) < 8:
        return None if data[:1] in (b"", b"\x00") else False
    if data[0] != 0x00:
        return False
    length = int.from_bytes(data[1:4], "big")
    return data[4:8] in (b"\xffSMB", b"\xfeSMB", b"\xfdSMB") and length >= 32


@detail("smb_dialect")
def smb_dialect(c2s: bytes, s2c: bytes) -> str | None:
    """Is it "smb1": either side's first message is SMB1 (MS-SMB §2.2.3.1 protocol 0xFF 'SMB'),
    the server's first (its NEGOTIATE response) deciding when present; else "smb2"."""
    for data in (s2c, c2s):
        if len(data) >= 8 and data[0] == 0x00:
            if data[4:8] == b"\xffSMB":
                return "smb1"
            if data[4:8] in (b"\xfeSMB", b"\xfdSMB"):
                return "smb2"
    return None


@validator("netbios_session_request", first=b"\x81")
def netbios_session_request(data: bytes) -> Verdict:
    """SESSION REQUEST (0x81) with two encoded names of 34 bytes each (RFC 1002 §4.3.2)."""
    if len(data) < 6:
        return None if data[:1] in (b"", b"\x81") else False
    return data[0] == 0x81 and data[1] == 0 and _u16(data, 2) == 68 and data[4] == 32


# --- RDP: TPKT (RFC 1006 §6) + X.224 Connection Request (ISO 8073 / MS-RDPBCGR §2.2.1.1) ----


@validator("rdp_x224_cr", first=b"\x03")
def rdp_x224_cr(data: bytes) -> Verdict:
    """TPKT version 3, length consistent, X.224 CR TPDU (0xE0) carrying an RDP cookie or
    RDP_NEG_REQ (MS-RDPBCGR §2.2.1.1)."""
    if len(data) < 11:
        return None if data[:1] in (b"", b"\x03") else False
    if data[0] != 3 or data[1] != 0:
        return False
    tpkt_len = _u16(data, 2)
    if tpkt_len < 11 or data[4] != tpkt_len - 5 or data[5] != 0xE0:
        return False
    if len(data) < tpkt_len:
        return None
    body = data[11:tpkt_len]
    return (
        body.startswith(b"Cookie: mstshash=")
        or body.startswith(b"Cookie: msts=")
        or (len(body) >= 8 and body[-8] == 0x01 and body[-6:-4] == b"\x08\x00")
        or not body
    )


@validator("tpkt_cotp", first=b"\x03")
def tpkt_cotp(data: bytes) -> Verdict:
    """TPKT version 3 with a length consistent with an X.224 TPDU header (RFC 1006 §6)."""
    if len(data) < 7:
        return None if data[:1] in (b"", b"\x03") else False
    return data[0] == 3 and data[1] == 0 and _u16(data, 2) >= 7 and data[4] + 5 <= _u16(data, 2)


# --- IEC 60870-5-104 §5 (APCI) ------------------------------------------------------------


def _iec104_apdu_ok(data: bytes, pos: int) -> bool:
    if data[pos] != 0x68 or not 4 <= data[pos + 1] <= 253:
        return False
    c1 = data[pos + 2]
    if c1 & 0x01 == 0:  # I-format: send and receive sequence numbers
        return data[pos + 1] > 4 and data[pos + 4] & 0x01 == 0
    if c1 & 0x03 == 0x01:  # S-format: only the receive sequence number
        return data[pos + 1] == 4 and c1 == 0x01 and data[pos + 3] == 0
    # U-format: exactly one of STARTDT/STOPDT/TESTFR act/con
    return data[pos + 1] == 4 and c1 in (0x07, 0x0B, 0x13, 0x23, 0x43, 0x83)


@validator("iec104_apci", first=b"\x68")
def iec104_apci(data: bytes) -> Verdict:
    """Start 0x68, APDU length 4..253, control field of an I-, S- or U-format frame
    (IEC 60870-5-104 §5.1-5.3); the next APDU, if the bytes reach it, is valid too and the
    APDUs end exactly at the end of the bytes otherwise."""
    if len(data) < 6:
        return None if data[:1] in (b"", b"\x68") else False
    pos = 0
    while pos + 6 <= len(data):
        if not _iec104_apdu_ok(data, pos):
            return False
        pos += 2 + data[pos + 1]
    if pos == len(data) or len(data) >= 4096:  # whole APDUs, or cut by the 4096-byte cap
        return True
    return None


# --- STUN RFC 8489 §5 -------------------------------------------------------------------------


@validator("stun", first=range(0, 0x40))
def stun(data: bytes) -> Verdict:
    """Top two bits zero, magic cookie 0x2112A442, length a multiple of 4 matching the
    datagram (classic RFC 3489 messages lack the cookie: accepted for Binding only)."""
    if len(data) < 20:
        return None if not data else False
    msg_type, length, cookie = _STUN_HEADER(data)
    if msg_type & 0xC000 or length % 4 or 20 + length != len(data):
        return False
    if cookie == 0x2112A442:
        return True
    return msg_type in (0x0001, 0x0101, 0x0111)  # RFC 3489 Binding request/response/error


# --- Kerberos RFC 4120 §5.10 (application tags), §7.2 (transport) --------------------------

_KRB_APP_TAGS = frozenset([0x6A, 0x6B, 0x6C, 0x6D, 0x7E])  # AS-REQ/REP, TGS-REQ/REP, KRB-ERROR


def _kerberos_message(data: bytes) -> Verdict:
    if len(data) < 8:
        return None
    if data[0] not in _KRB_APP_TAGS:
        return False
    ln = _ber_length(data, 1)
    if ln is None:
        return False
    _, pos = ln
    if pos + 4 > len(data):
        return None
    if data[pos] != 0x30:
        return False
    ln2 = _ber_length(data, pos + 1)
    if ln2 is None:
        return None
    pos = ln2[1]
    if pos + 5 > len(data):
        return None
    # KDC-REQ: [1] pvno INTEGER 5; KDC-REP: [0] pvno 5; KRB-ERROR: [0] pvno 5
    return data[pos] in (0xA0, 0xA1) and data[pos + 2 : pos + 5] == b"\x02\x01\x05"


@validator("kerberos_udp", first=b"\x6a\x6b\x6c\x6d\x7e")
def kerberos_udp(data: bytes) -> Verdict:
    return _kerberos_message(data)


@validator("kerberos_tcp", first=range(0, 0x80))
def kerberos_tcp(data: bytes) -> Verdict:
    """Four-byte record mark then a Kerberos message (RFC 4120 §7.2.2)."""
    if len(data) < 4:
        return None
    if data[0] & 0x80:
        return False
    return _kerberos_message(data[4:])


# --- LDAP RFC 4511 §4.2: LDAPMessage ::= SEQUENCE { messageID, protocolOp } ----------------


@validator("ldap", first=b"\x30")
def ldap(data: bytes) -> Verdict:
    """SEQUENCE, INTEGER messageID, an application-tagged protocolOp (0x60..0x79)."""
    if len(data) < 7:
        return None if data[:1] in (b"", b"\x30") else False
    if data[0] != 0x30:
        return False
    ln = _ber_length(data, 1)
    if ln is None:
        return False
    pos = ln[1]
    if pos + 3 > len(data):
        return None
    if data[pos] != 0x02 or not 1 <= data[pos + 1] <= 4:
        return False
    op_at = pos + 2 + data[pos + 1]
    if op_at >= len(data):
        return None
    return data[op_at] in (0x60, 0x61, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69) or (
        data[op_at] in (0x42, 0x50, 0x77, 0x78, 0x79, 0x6A, 0x6B, 0x6C, 0x6D, 0x4A)
    )


# --- RADIUS RFC 2865 §3, RFC 2866 ----------------------------------------------------------


@validator("radius", first=b"\x01\x02\x03\x04\x05\x0b\x0c\x0d\x28\x29\x2a\x2b\x2c\x2d")
def radius(data: bytes) -> Verdict:
    """Code 1..5, 11..13, 40..45; Length (20..4096) equal to the datagram length."""
    if len(data) < 20:
        return None if not data else False
    return data[0] in (1, 2, 3, 4, 5, 11, 12, 13, 40, 41, 42, 43, 44, 45) and _u16(data, 2) == len(
        data
    )


# --- RTP RFC 3550 §5.1 -------------------------------------------------------------------------


# RFC 3551 §4.5 framing of static audio payload types: (minimum payload, frame size or 0)
_RTP_AUDIO_FRAMING = {
    0: (40, 0),  # PCMU, one octet per sample: at least 5 ms
    8: (40, 0),  # PCMA
    9: (40, 0),  # G722
    3: (33, 33),  # GSM: 33-octet frames (§4.5.8)
    4: (4, 4),  # G723: 24-, 20- or 4-octet frames (§4.5.3), all multiples of 4
}


@validator("rtp", first=b"\x80\x90")
def rtp(data: bytes) -> Verdict:
    """Version 2, no padding, CSRC count 0, a static (0..34) or dynamic (96..127) payload
    type, non-zero SSRC, a payload after the header (and extension, §5.3.1) that fits the
    static audio codec's framing (RFC 3551 §4.5); RTCP types 200..204 excluded (RFC 5761 §4)."""
    if len(data) < 13:
        return None if not data else False
    if data[0] not in (0x80, 0x90):  # V=2 P=0 CC=0, X either
        return False
    pt = data[1] & 0x7F
    if not (pt <= 34 or 96 <= pt <= 127) or 72 <= pt <= 76:
        return False
    if data[8:12] == b"\x00\x00\x00\x00":
        return False
    header = 12
    if data[0] & 0x10:  # header extension: profile id, length in 32-bit words
        if len(data) < 16:
            return False
        header += 4 + 4 * _u16(data, 14)
    payload = len(data) - header
    if payload <= 0:
        return False
    minimum, frame = _RTP_AUDIO_FRAMING.get(pt, (1, 0))
    return payload >= minimum and (frame == 0 or payload % frame == 0)


@validator("rtcp", first=range(0x80, 0xC0))
def rtcp(data: bytes) -> Verdict:
    """A compound RTCP packet (RFC 3550 §6.1): it starts with an SR or RR (200/201) without
    padding, every packet is version 2 with a type 200..204 (or 205-207, RFC 4585/3611), and
    their lengths (32-bit words minus one) tile the datagram exactly (SRTCP adds a trailer)."""
    if len(data) < 8:
        return None if not data else False
    if data[0] & 0xE0 != 0x80 or data[1] not in (200, 201):
        return False
    pos = 0
    while pos + 4 <= len(data):
        if data[pos] >> 6 != 2 or not 200 <= data[pos + 1] <= 207:
            break
        pos += 4 * (_u16(data, pos + 2) + 1)
    # whole packets, or whole packets then an SRTCP index + auth tag (RFC 3711 §3.4)
    return pos == len(data) or (pos >= 8 and 4 <= len(data) - pos <= 4 + 16)


# --- TFTP RFC 1350 §5 ----------------------------------------------------------------------

_TFTP_RQ = re.compile(rb"\x00[\x01\x02][^\x00]{1,255}\x00(?i:netascii|octet|mail)\x00")
# RFC 2347 OACK: option/value pairs; options of RFC 2348 (blksize), RFC 2349 (timeout, tsize),
# RFC 7440 (windowsize)
_TFTP_OACK = re.compile(rb"\x00\x06(?:(?i:blksize|tsize|timeout|windowsize)\x00\d{1,10}\x00)+")


@validator("tftp", first=b"\x00")
def tftp(data: bytes) -> Verdict:
    """RRQ/WRQ: opcode 1|2, filename NUL, mode NUL; OACK with registered options; DATA
    block 1, ACK, ERROR."""
    if len(data) < 4:
        return None if not data else False
    if _TFTP_RQ.match(data) or _TFTP_OACK.fullmatch(data):
        return True
    opcode = _u16(data, 0)
    if opcode == 3:  # DATA: block 1 first, at most 512 bytes of data
        return _u16(data, 2) == 1 and len(data) <= 516
    if opcode == 4:  # ACK
        return len(data) == 4
    if opcode == 5:  # ERROR: code 0..8, message, NUL
        return _u16(data, 2) <= 8 and data.endswith(b"\x00")
    return False


@validator("tftp_oack", first=b"\x00")
def tftp_oack(data: bytes) -> Verdict:
    """An OACK (RFC 2347) listing only registered options with decimal values."""
    if len(data) < 4:
        return None if not data else False
    return _TFTP_OACK.fullmatch(data) is not None


# --- MySQL client/server protocol: Initial Handshake Packet v10 -----------------------------


@validator("mysql_greeting")
def mysql_greeting(data: bytes) -> Verdict:
    """3-byte payload length, sequence id 0, protocol version 10, NUL-terminated version."""
    if len(data) < 6:
        return None
    length = int.from_bytes(data[0:3], "little")
    if data[3] != 0 or data[4] != 10 or not 20 <= length <= 1024:
        return False
    nul = data.find(b"\x00", 5, 5 + 64)
    if nul < 0:
        return None if len(data) < 69 else False
    return all(0x20 <= c <= 0x7E for c in data[5:nul]) and nul > 5


# --- MS-TDS §2.2.3.1 packet header; PRELOGIN (0x12), TDS7 LOGIN (0x10) --------------------


_TDS_TYPES = frozenset([0x01, 0x03, 0x04, 0x07, 0x0E, 0x10, 0x11, 0x12])
_TDS_STATUS = frozenset([0x00, 0x01, 0x08, 0x09, 0x10])


def _tds_header_ok(data: bytes, pos: int) -> bool:
    return (
        data[pos] in _TDS_TYPES
        and data[pos + 1] in _TDS_STATUS
        and 8 <= _u16(data, pos + 2) <= 32768
        and data[pos + 7] == 0  # Window, MS-TDS §2.2.3.1.6: always 0
    )


@validator("tds", first=b"\x01\x03\x04\x07\x0e\x10\x11\x12")
def tds(data: bytes) -> Verdict:
    """Packet header (MS-TDS §2.2.3.1): a known Type, Status EOM/reset bits only, Length
    8..32768, Window 0; the packet chain continues with another valid header or ends."""
    if len(data) < 8:
        return None if not data or data[0] in _TDS_TYPES else False
    if not _tds_header_ok(data, 0):
        return False
    if data[0] == 0x12 and data[8] not in (0x00, 0xFF):
        return False  # PRELOGIN: PL_OPTION_TOKEN VERSION first, or terminator (§2.2.6.5)
    nxt = _u16(data, 2)
    if nxt == len(data):
        return True
    if nxt + 8 <= len(data):
        return _tds_header_ok(data, nxt)
    return None if len(data) < 4096 else True


# --- PostgreSQL frontend/backend protocol 3.0 (§55.7 StartupMessage, SSLRequest) ---------


@validator("postgresql_startup", first=b"\x00")
def postgresql_startup(data: bytes) -> Verdict:
    """Int32 length, Int32 protocol 196608 (3.0) or the SSLRequest/GSSENCRequest codes."""
    if len(data) < 8:
        return None
    length, code = _u32(data, 0), _u32(data, 4)
    if code in (80877103, 80877104):
        return length == 8
    return code == 196608 and 8 < length <= 10000


# --- OPC UA Part 6 §7.1.2 (UA Connection Protocol message header) ------------------------


@validator("opcua_hello", first=b"HAEOMCR")
def opcua_hello(data: bytes) -> Verdict:
    """MessageType HEL/ACK/ERR/OPN/MSG/CLO, chunk type F/C/A, MessageSize >= header."""
    if len(data) < 8:
        return None
    if data[:3] not in (b"HEL", b"ACK", b"ERR", b"OPN", b"MSG", b"CLO", b"RHE"):
        return False
    if data[3:4] not in (b"F", b"C", b"A"):
        return False
    size = int.from_bytes(data[4:8], "little")
    return 8 <= size <= 1 << 24


# --- SLP RFC 2608 §8 (v2), RFC 2165 (v1) ----------------------------------------------------


@validator("slp", first=b"\x01\x02")
def slp(data: bytes) -> Verdict:
    """Version 1|2, function 1..11, length consistent with the datagram."""
    if len(data) < 12:
        return None if not data else False
    if data[0] == 2:
        length = int.from_bytes(data[2:5], "big")
        return 1 <= data[1] <= 11 and length == len(data)
    if data[0] == 1:
        return 1 <= data[1] <= 10 and _u16(data, 2) == len(data)
    return False


# --- SIP RFC 3261 §7.1 (Request-Line), §7.2 (Status-Line) --------------------------------

_SIP_REQUEST = re.compile(
    rb"(INVITE|ACK|BYE|CANCEL|REGISTER|OPTIONS|PRACK|SUBSCRIBE|NOTIFY|PUBLISH|INFO|REFER|"
    rb"MESSAGE|UPDATE) (sips?|tel):\S+ SIP/2\.0\r?\n"
)


@validator("sip", first=b"SIABCRONPMUE")
def sip(data: bytes) -> Verdict:
    if data.startswith(b"SIP/2.0 "):
        return len(data) >= 12 and data[8:11].isdigit()
    if _SIP_REQUEST.match(data):
        return True
    return None if b"\n" not in data and len(data) < 256 and data[:1].isupper() else False


# --- RTSP RFC 2326 §6.1 (Request-Line), §7.1 (Status-Line) ---------------------------------

_RTSP_REQUEST = re.compile(
    rb"(DESCRIBE|ANNOUNCE|GET_PARAMETER|OPTIONS|PAUSE|PLAY|RECORD|REDIRECT|SETUP|"
    rb"SET_PARAMETER|TEARDOWN) (\*|rtsps?://\S*|/\S*) RTSP/[12]\.0\r?\n"
)


@validator("rtsp", first=b"RDAGOPST")
def rtsp(data: bytes) -> Verdict:
    if data.startswith((b"RTSP/1.0 ", b"RTSP/2.0 ")):
        return len(data) >= 12 and data[9:12].isdigit()
    if _RTSP_REQUEST.match(data):
        return True
    return None if b"\n" not in data and len(data) < 512 and data[:1].isupper() else False


# --- DTLS RFC 6347 §4.1 / RFC 9147 §4 -----------------------------------------------------


_DTLS_VERSIONS = frozenset([0xFEFF, 0xFEFD, 0xFEFC, 0x0100])  # 1.0, 1.2, 1.3, DTLS1_BAD_VER


@validator("dtls_handshake", first=b"\x16")
def dtls_handshake(data: bytes) -> Verdict:
    """Record content type handshake(22), version DTLS 1.0 (FEFF) / 1.2 (FEFD) / 1.3 legacy /
    Cisco pre-standard 0x0100, epoch 0, handshake ClientHello/ServerHello/HelloVerifyRequest."""
    if len(data) < 25:
        return None if not data else False
    if data[0] != 22 or _u16(data, 1) not in _DTLS_VERSIONS:
        return False
    if _u16(data, 3) != 0:  # epoch of the first flight
        return False
    length = _u16(data, 11)
    return 12 <= length <= len(data) - 13 and data[13] in (1, 2, 3)


@validator("dtls_records", first=range(20, 24))
def dtls_records(data: bytes) -> Verdict:
    """A datagram made of whole DTLS records (RFC 6347 §4.1): content type 20..23, a DTLS
    version, and record lengths that tile the datagram exactly (a flow seen mid-session)."""
    if len(data) < 13:
        return None if not data else False
    pos = 0
    while pos + 13 <= len(data):
        if not 20 <= data[pos] <= 23 or _u16(data, pos + 1) not in _DTLS_VERSIONS:
            return False
        length = _u16(data, pos + 11)
        if length == 0:
            return False
        pos += 13 + length
    return pos == len(data)


# --- SSH RFC 4253 §4.2 (protocol version exchange) --------------------------------------


@validator("ssh_banner", first=b"S")
def ssh_banner(data: bytes) -> Verdict:
    """ "SSH-protoversion-softwareversion": protoversion 2.0, 1.99 or 1.x."""
    if len(data) < 8:
        return None if b"SSH-"[: len(data)] == data[:4] else False
    return data[:4] == b"SSH-" and data[4:8] in (b"2.0-", b"1.99", b"1.5-", b"1.3-")


# --- WireGuard (whitepaper §5.4.2): handshake initiation, type 1, 148 bytes --------------


@validator("wireguard", first=range(1, 5))
def wireguard(data: bytes) -> Verdict:
    if len(data) < 4:
        return None if not data else False
    if data[1:4] != b"\x00\x00\x00":
        return False
    return (data[0], len(data)) in ((1, 148), (2, 92), (3, 64)) or (
        data[0] == 4 and len(data) >= 32 and len(data) % 16 == 0
    )


# --- Redis RESP (Redis serialization protocol spec): a command is an array of bulk strings -

_RESP_COMMAND = re.compile(rb"\*[1-9]\d{0,3}\r\n\$[1-9]\d{0,5}\r\n[A-Za-z]")


@validator("redis_resp", first=b"*")
def redis_resp(data: bytes) -> Verdict:
    if _RESP_COMMAND.match(data):
        return True
    return None if len(data) < 12 and data[:1] in (b"", b"*") and b"\n" not in data[:4] else False


# --- pair checks: (c2s, s2c) -> Verdict, for protocols whose proof is the exchange -------

Exchange = Callable[[bytes, bytes], Verdict]
EXCHANGES: dict[str, Exchange] = {}


def exchange(name: str) -> Callable[[Exchange], Exchange]:
    def register(fn: Exchange) -> Exchange:
        EXCHANGES[name] = fn
        return fn

    return register


@exchange("modbus_transaction")
def modbus_transaction(c2s: bytes, s2c: bytes) -> Verdict:
    """A Modbus request and its response: both MBAP-valid with the same Transaction
    Identifier, Unit Identifier and function code (or its exception, fc | 0x80), §4.1."""
    a, b = modbus_mbap(c2s), modbus_mbap(s2c)
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return c2s[0:2] == s2c[0:2] and c2s[6] == s2c[6] and (c2s[7] | 0x80) == (s2c[7] | 0x80)


@exchange("tftp_transfer")
def tftp_transfer(c2s: bytes, s2c: bytes) -> Verdict:
    """A TFTP transfer seen from its new ports (RFC 1350 §4): DATA block n answered by ACK
    block n, or an OACK (RFC 2347) answered by ACK block 0 / DATA block 1."""
    if len(c2s) < 4 or len(s2c) < 4:
        return None
    pairs = ((c2s, s2c), (s2c, c2s))
    for x, y in pairs:
        ox, oy = _u16(x, 0), _u16(y, 0)
        if ox == 3 and oy == 4 and len(y) == 4 and x[2:4] == y[2:4] and len(x) <= 516:
            return True
        if ox == 4 and oy == 3 and x[2:4] == b"\x00\x00" and y[2:4] == b"\x00\x01":
            return len(x) == 4  # ACK block 0 of an OACK (RFC 2347), then DATA block 1
        if (
            ox == 6
            and x.endswith(b"\x00")
            and ((oy == 4 and y[2:4] == b"\x00\x00") or (oy == 3 and y[2:4] == b"\x00\x01"))
        ):
            return True
    return False


@exchange("utp_handshake")
def utp_handshake(c2s: bytes, s2c: bytes) -> Verdict:
    """BitTorrent uTP (BEP 29): ST_SYN (type 4, version 1) answered by ST_STATE (type 2)
    on the same connection_id, both with the 20-byte header."""
    if len(c2s) < 20 or len(s2c) < 20:
        return None
    return (
        c2s[0] == 0x41 and s2c[0] == 0x21 and c2s[1] <= 2 and s2c[1] <= 2 and c2s[2:4] == s2c[2:4]
    )


# --- DCE/RPC connectionless, C706 §12.5.1 ----------------------------------------------------


@validator("dcerpc_cl", first=b"\x04")
def dcerpc_cl(data: bytes) -> Verdict:
    """rpc_vers 4, ptype 0..10, 80-byte header, fragment length (drep byte order) equal to
    the body that follows."""
    if len(data) < 80:
        return None if not data else False
    if data[0] != 4 or data[1] > 10 or data[4] & 0xEE:
        return False
    little = bool(data[4] & 0x10)  # drep[0]: integer representation
    body_len = int.from_bytes(data[74:76], "little" if little else "big")
    return body_len == len(data) - 80


# --- MS-RDPEUDP §2.2.2.1: SYN datagram ------------------------------------------------


@validator("rdpeudp_syn", first=b"\xff")
def rdpeudp_syn(data: bytes) -> Verdict:
    """RDPUDP_FEC_HEADER with snSourceAck -1 and uFlags carrying RDPUDP_FLAG_SYN, then
    RDPUDP_SYNDATA_PAYLOAD; the datagram is padded to at least 1232 bytes (§3.1.5.1.1)."""
    if len(data) < 8:
        return None if not data else False
    return data[0:4] == b"\xff\xff\xff\xff" and _u16(data, 6) & 0x0001 == 1


# --- STUN over TCP, RFC 8489 §6.2.2 / RFC 4571 framing ------------------------------------


@validator("stun_tcp")
def stun_tcp(data: bytes) -> Verdict:
    """A STUN message with the magic cookie at the start of the stream, bare or behind the
    RFC 4571 two-byte length."""
    if len(data) < 22:
        return None if not data else False
    for start in (0, 2):
        hdr = data[start:]
        if _u32(hdr, 4) == 0x2112A442 and not _u16(hdr, 0) & 0xC000 and _u16(hdr, 2) % 4 == 0:
            return start == 0 or _u16(data, 0) == 20 + _u16(hdr, 2)
    return False


# --- BitTorrent DHT, BEP 5 (KRPC over UDP, bencoded dictionaries) -------------------------

_KRPC = re.compile(rb"d1:[aer]d|d2:ip\d+:|d1:t\d+:")


@validator("bittorrent_krpc", first=b"d")
def bittorrent_krpc(data: bytes) -> Verdict:
    if len(data) < 12:
        return None if not data else False
    # a query/response/error dictionary whose first keys are "a"/"r"/"e" or "t"; node ids are
    # 20-byte strings ("id20:")
    return _KRPC.match(data) is not None and b"id20:" in data[:64]


@validator("tls_records", first=range(20, 24))
def tls_records(data: bytes) -> Verdict:
    """A stream met mid-session: TLS records (RFC 8446 §5.1) of content type 20..23,
    version 3.0..3.4, length <= 2^14 + 2048, each followed by another valid record header;
    at least two headers are checked when the bytes allow it."""
    if len(data) < 5:
        return None if not data or 20 <= data[0] <= 23 else False
    pos = 0
    seen = 0
    while pos + 5 <= len(data):
        if not 20 <= data[pos] <= 23 or data[pos + 1] != 3 or data[pos + 2] > 4:
            return False
        length = _u16(data, pos + 3)
        if not 1 <= length <= 16384 + 2048:
            return False
        seen += 1
        pos += 5 + length
    if pos == len(data) or seen >= 2:
        return True
    return None if len(data) < 4096 else True


# --- OpenVPN (openvpn/src/openvpn/ssl_pkt.h, protocol overview in ssl.h) -----------------

_OVPN_CLIENT_RESET = (7, 10)  # P_CONTROL_HARD_RESET_CLIENT_V2, _V3
_OVPN_SERVER_RESET = 8  # P_CONTROL_HARD_RESET_SERVER_V2


@exchange("openvpn_reset")
def openvpn_reset(c2s: bytes, s2c: bytes) -> Verdict:
    """Client hard reset (opcode 7 or 10, key id 0) answered by a server hard reset (8) that
    acknowledges the client's 8-byte session id; TCP mode adds a two-byte packet length."""
    if len(c2s) < 14 or len(s2c) < 22:
        return None
    for skip in (0, 2):
        if skip and not 14 <= _u16(c2s, 0) <= 1500:
            continue
        a0 = c2s[skip]
        if a0 >> 3 in _OVPN_CLIENT_RESET and a0 & 7 == 0 and s2c[skip] == _OVPN_SERVER_RESET << 3:
            session = c2s[skip + 1 : skip + 9]
            if session != _ZERO8 and session in s2c[skip + 9 : skip + 96]:
                return True
    return False


# --- MQTT control packets met mid-session (MQTT 3.1.1 §2.2, 5.0 §2.1) ---------------------

# required flag nibble per packet type (PUBLISH, type 3, carries DUP/QoS/RETAIN instead)
_MQTT_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0}


@validator("mqtt_packets")
def mqtt_packets(data: bytes) -> Verdict:
    """At least three control packets with valid type/flag nibbles (§2.2.2) whose Remaining
    Lengths tile the bytes, one of them a PUBLISH with a printable topic name (§3.3.2.1)."""
    pos = count = 0
    topic_ok = False
    while pos + 2 <= len(data):
        ptype, flags = data[pos] >> 4, data[pos] & 0x0F
        if ptype == 3:
            if flags & 0x06 == 0x06:  # QoS 3 is malformed
                return False
        elif _MQTT_FLAGS.get(ptype) != flags:
            return False
        length = 0
        i = pos + 1
        for shift in range(4):
            if i >= len(data):
                break
            length |= (data[i] & 0x7F) << (7 * shift)
            i += 1
            if not data[i - 1] & 0x80:
                break
        else:
            return False
        if ptype == 3 and i + 2 <= len(data):
            tlen = _u16(data, i)
            topic = data[i + 2 : i + 2 + tlen]
            if tlen == 0 or tlen + 2 > length:
                return False
            if len(topic) == tlen and all(0x20 <= c < 0x7F for c in topic):
                topic_ok = True
        pos = i + length
        count += 1
    if pos == len(data) or len(data) >= 4096:
        return count >= 3 and topic_ok
    return None


# --- WS-Discovery (OASIS WS-Discovery 1.1 §2.4, SOAP-over-UDP) ------------------------------

_WSD_NAMESPACES = (
    b"schemas.xmlsoap.org/ws/2005/04/discovery",
    b"docs.oasis-open.org/ws-dd/ns/discovery/2009/01",
)


@validator("ws_discovery", first=b"<")
def ws_discovery(data: bytes) -> Verdict:
    """A SOAP envelope (XML) in one datagram naming a WS-Discovery namespace."""
    head = data[:2048]
    if not (head.startswith(b"<?xml") or head[:40].lower().find(b"envelope") > 0):
        return False
    return any(ns in head for ns in _WSD_NAMESPACES)


# --- IKE: RFC 7296 §3.1 (IKEv2 header), RFC 2408 §3.1 (ISAKMP, IKEv1), RFC 3948 §2.2 ------


def _ike_header(data: bytes) -> Verdict:
    if len(data) < 28:
        return None if not data else False
    version, exchange = data[17], data[18]
    if version != 0x20 and version != 0x10:
        return False
    if data[0:8] == _ZERO8:
        return False  # IKE SA Initiator's SPI is never zero
    if version == 0x20:  # IKEv2: IKE_SA_INIT .. INFORMATIONAL, IKE_SESSION_RESUME
        ok = 34 <= exchange <= 38
    elif version == 0x10:  # IKEv1: Base, Identity Protection, Auth Only, Aggressive, Info, Quick
        ok = 1 <= exchange <= 5 or exchange in (32, 33)
    else:
        return False
    return ok and _U32(data, 24)[0] == len(data)


@validator("ike", first=range(0, 256))
def ike(data: bytes) -> Verdict:
    """IKE header whose Length equals the datagram; on UDP 4500 behind the four-byte
    non-ESP marker of zeros (RFC 3948 §2.2)."""
    if len(data) >= 32 and data.startswith(b"\x00\x00\x00\x00"):
        return _ike_header(data[4:])
    return _ike_header(data)


# --- ONC RPC, RFC 5531 §9 (call message); record marking on TCP, §11 --------------------

_RPC_PROGRAMS = {100000: "portmapper", 100003: "nfs", 100005: "mount", 100021: "nlm"}


def _rpc_call(data: bytes) -> Verdict:
    """xid, msg_type CALL (0), rpcvers 2, a known program, a small version number."""
    if len(data) < 24:
        return None
    return (
        _u32(data, 4) == 0
        and _u32(data, 8) == 2
        and _u32(data, 12) in _RPC_PROGRAMS
        and 1 <= _u32(data, 16) <= 4
    )


@validator("oncrpc_udp")
def oncrpc_udp(data: bytes) -> Verdict:
    return _rpc_call(data)


@validator("oncrpc_tcp", first=range(0x80, 0x100))
def oncrpc_tcp(data: bytes) -> Verdict:
    """Record mark with the last-fragment bit (RFC 5531 §11), then an RPC call."""
    if len(data) < 4:
        return None
    return _rpc_call(data[4:])


@detail("oncrpc_program")
def oncrpc_program(c2s: bytes, s2c: bytes) -> str | None:
    """The RPC program the first call addresses (portmapper, nfs, mount, nlm)."""
    for data in (c2s, c2s[4:]):
        if len(data) >= 24 and _u32(data, 8) == 2:
            return _RPC_PROGRAMS.get(_u32(data, 12))
    return None


def _openvpn_hard_reset(pkt: bytes) -> bool:
    """One hard-reset packet laid out exactly: opcode (7/10 client, 8 server), key id 0,
    session id, [HMAC (16/20/32/64) + packet id 1 + net time], ACK array (0 acks from the
    client, 1 from the server + remote session id), message packet id 0."""
    if len(pkt) < 14 or pkt[0] & 7 or pkt[1:9] == bytes(8):
        return False
    opcode = pkt[0] >> 3
    if opcode not in (*_OVPN_CLIENT_RESET, _OVPN_SERVER_RESET):
        return False
    if (
        opcode in _OVPN_CLIENT_RESET
        and pkt[9:13] == b"\x00\x00\x00\x01"
        and 0x4B000000 <= _u32(pkt, 13) <= 0x90000000
        and len(pkt) >= 17 + 32
    ):
        return True  # tls-crypt: packet id 1, net time (2010..2046), then tag and ciphertext
    for auth in (0, 16 + 8, 20 + 8, 32 + 8, 64 + 8):
        pos = 9 + auth
        if auth and pkt[pos - 8 : pos - 4] != b"\x00\x00\x00\x01":
            continue  # tls-auth replay packet id starts at 1
        if pos >= len(pkt):
            break
        acks = pkt[pos]
        end = pos + 1 + acks * 4 + (8 if acks else 0) + 4
        if acks <= 1 and (acks == 1) == (opcode == _OVPN_SERVER_RESET) and end == len(pkt):
            return pkt[end - 4 : end] == b"\x00\x00\x00\x00"
    return False


@validator("openvpn_reset_udp", first=b"\x38\x40\x50")
def openvpn_reset_udp(data: bytes) -> Verdict:
    """A datagram that is exactly one OpenVPN hard-reset packet (either direction)."""
    return _openvpn_hard_reset(data)


@validator("openvpn_reset_tcp", first=b"\x00")
def openvpn_reset_tcp(data: bytes) -> Verdict:
    """TCP mode: a 16-bit packet length, then exactly one hard-reset packet."""
    if len(data) < 16:
        return None
    length = _u16(data, 0)
    if len(data) < 2 + length:
        return None if length <= 512 else False
    return _openvpn_hard_reset(data[2 : 2 + length])


# --- H.225.0 call signalling: Q.931 over TPKT (H.225.0 §7.3, ITU-T Q.931 §4) -------------

_Q931_MESSAGES = frozenset(
    [0x01, 0x02, 0x03, 0x05, 0x07, 0x0F, 0x45, 0x4D, 0x5A, 0x62, 0x6E, 0x7B, 0x7D]
)


@validator("h225_q931", first=b"\x03")
def h225_q931(data: bytes) -> Verdict:
    """TPKT version 3 with a consistent length, then a Q.931 message: protocol discriminator
    0x08, call reference of 2 octets (H.225.0), a Q.931 message type (SETUP, CONNECT, ...)."""
    if len(data) < 8:
        return None if data[:1] in (b"", b"\x03") else False
    if data[0] != 3 or data[1] != 0 or _u16(data, 2) < 8:
        return False
    if len(data) < 9:
        return None
    return data[4] == 0x08 and data[5] == 2 and data[8] in _Q931_MESSAGES


# --- MongoDB wire protocol (MongoDB manual, "Wire Protocol": standard message header) -----

_MONGO_OPCODES = frozenset([1, 2001, 2002, 2004, 2005, 2006, 2007, 2010, 2011, 2012, 2013])


@validator("mongodb_request")
def mongodb_request(data: bytes) -> Verdict:
    """MsgHeader: messageLength (int32 LE, 16..48 MB), requestID, responseTo 0 (a request),
    a known opCode (OP_MSG 2013, OP_QUERY 2004, ...); the length covers the bytes seen or more."""
    if len(data) < 16:
        return None
    length = int.from_bytes(data[0:4], "little")
    if not 16 <= length <= 48_000_000:
        return False
    if data[8:12] != b"\x00\x00\x00\x00":
        return False
    if int.from_bytes(data[12:16], "little") not in _MONGO_OPCODES:
        return False
    return length == len(data) or length > len(data) or len(data) >= length + 16
