"""Wire bytes of the everyday protocols of a hospital network, for demo and benchmark captures.

Each builder follows its standard's layout (cited per function) and takes a `random.Random` for
whatever would be random on the wire (nonces, keys, ciphertext), so captures are reproducible.
"""

from __future__ import annotations

import ipaddress
import random
import struct

# ---------------------------------------------------------------------------------------------
# DNS (RFC 1035)
# ---------------------------------------------------------------------------------------------

QTYPE_A = 1
QCLASS_IN = 1


def _qname(name: str) -> bytes:
    out = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split("."))
    return out + b"\x00"  # RFC 1035 §3.1: labels, then the root's zero length


def dns_query(ident: int, name: str) -> bytes:
    """Standard query, recursion desired (RFC 1035 §4.1.1 header, §4.1.2 question)."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    return header + _qname(name) + struct.pack("!HH", QTYPE_A, QCLASS_IN)


def dns_response(ident: int, name: str, addresses: list[str], ttl: int = 300) -> bytes:
    """Answer with A records; names compressed as a pointer to offset 12 (RFC 1035 §4.1.4)."""
    header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(addresses), 0, 0)
    out = header + _qname(name) + struct.pack("!HH", QTYPE_A, QCLASS_IN)
    for a in addresses:
        rdata = ipaddress.IPv4Address(a).packed
        out += struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, ttl, len(rdata)) + rdata
    return out


# ---------------------------------------------------------------------------------------------
# NTP (RFC 5905)
# ---------------------------------------------------------------------------------------------

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def _ntp_ts(ts_ns: int) -> bytes:
    sec, frac = divmod(ts_ns, 1_000_000_000)
    return struct.pack("!II", sec + NTP_EPOCH_OFFSET, (frac << 32) // 1_000_000_000)


def ntp_packet(mode: int, ts_ns: int, stratum: int = 0, origin_ns: int = 0) -> bytes:
    """48-byte NTPv4 header (RFC 5905 §7.3); mode 3 client, 4 server."""
    li_vn_mode = (0 << 6) | (4 << 3) | mode
    ref_id = b"GPS\x00" if stratum == 1 else b"\x00\x00\x00\x00"
    head = struct.pack("!BBbbII", li_vn_mode, stratum, 6, -20, 0, 0) + ref_id
    origin = _ntp_ts(origin_ns) if origin_ns else bytes(8)
    recv = _ntp_ts(ts_ns) if mode == 4 else bytes(8)
    return head + (_ntp_ts(ts_ns) if mode == 4 else bytes(8)) + origin + recv + _ntp_ts(ts_ns)


# ---------------------------------------------------------------------------------------------
# DHCP (RFC 2131, options RFC 2132)
# ---------------------------------------------------------------------------------------------

DHCP_MAGIC = b"\x63\x82\x53\x63"  # RFC 2131 §3: magic cookie
DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPACK = 1, 2, 3, 5


def _opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def dhcp_message(
    msg_type: int,
    xid: int,
    mac: bytes,
    *,
    yiaddr: str = "0.0.0.0",
    siaddr: str = "0.0.0.0",
    hostname: str | None = None,
    vendor_class: str | None = None,
    requested_ip: str | None = None,
    server_id: str | None = None,
    router: str | None = None,
    lease_s: int = 86400,
) -> bytes:
    """BOOTP/DHCP message (RFC 2131 §2 format) with its options (RFC 2132)."""
    op = 1 if msg_type in (DHCPDISCOVER, DHCPREQUEST) else 2
    fixed = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,  # htype Ethernet
        6,  # hlen
        0,
        xid,
        0,
        0x8000 if op == 1 else 0,  # broadcast flag
        bytes(4),
        ipaddress.IPv4Address(yiaddr).packed,
        ipaddress.IPv4Address(siaddr).packed,
        bytes(4),
        mac + bytes(10),
        b"",
        b"",
    )
    opts = _opt(53, bytes([msg_type]))  # RFC 2132 §9.6 DHCP Message Type
    if op == 1:
        opts += _opt(61, b"\x01" + mac)  # §9.14 client identifier
        if requested_ip:
            opts += _opt(50, ipaddress.IPv4Address(requested_ip).packed)  # §9.1
        if hostname:
            opts += _opt(12, hostname.encode())  # §3.14 host name
        if vendor_class:
            opts += _opt(60, vendor_class.encode())  # §9.13 vendor class identifier
        opts += _opt(55, bytes([1, 3, 6, 15, 42, 51]))  # §9.8 parameter request list
    else:
        assert server_id is not None
        opts += _opt(54, ipaddress.IPv4Address(server_id).packed)  # §9.7 server identifier
        opts += _opt(51, struct.pack("!I", lease_s))  # §9.2 lease time
        opts += _opt(1, b"\xff\xff\xff\x00")  # §3.3 subnet mask
        if router:
            opts += _opt(3, ipaddress.IPv4Address(router).packed)  # §3.5 router
            opts += _opt(6, ipaddress.IPv4Address(server_id).packed)  # §3.8 DNS server
    return fixed + DHCP_MAGIC + opts + b"\xff"  # §3.2 end option


# ---------------------------------------------------------------------------------------------
# SNMPv2c (RFC 3416 PDUs, RFC 1901 community message, BER per X.690)
# ---------------------------------------------------------------------------------------------


def _ber(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


def _ber_int(v: int) -> bytes:
    return _ber(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _ber_oid(oid: str) -> bytes:
    parts = [int(x) for x in oid.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _ber(0x06, bytes(out))


SYS_DESCR = "1.3.6.1.2.1.1.1.0"  # RFC 3418 sysDescr.0
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


def snmp_v2c(
    community: str, pdu_tag: int, request_id: int, varbinds: list[tuple[str, object]]
) -> bytes:
    """Message{version 1 (v2c), community, PDU}; 0xA0 GetRequest, 0xA2 Response (RFC 3416 §3)."""
    vbs = b""
    for oid, value in varbinds:
        if value is None:
            enc = b"\x05\x00"  # NULL in a request
        elif isinstance(value, int):
            enc = _ber(0x43, value.to_bytes(4, "big"))  # TimeTicks
        else:
            enc = _ber(0x04, str(value).encode())
        vbs += _ber(0x30, _ber_oid(oid) + enc)
    pdu = _ber(pdu_tag, _ber_int(request_id) + _ber_int(0) + _ber_int(0) + _ber(0x30, vbs))
    return _ber(0x30, _ber_int(1) + _ber(0x04, community.encode()) + pdu)


# ---------------------------------------------------------------------------------------------
# Syslog (RFC 5424 over UDP, RFC 5426)
# ---------------------------------------------------------------------------------------------


def syslog(facility: int, severity: int, timestamp: str, host: str, app: str, msg: str) -> bytes:
    pri = facility * 8 + severity  # RFC 5424 §6.2.1
    return f"<{pri}>1 {timestamp} {host} {app} - - - {msg}".encode()


# ---------------------------------------------------------------------------------------------
# TLS 1.3 (RFC 8446): the cleartext hellos, then encrypted records
# ---------------------------------------------------------------------------------------------


def _ext(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body  # RFC 8446 §5.1


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body  # RFC 8446 §4


def tls_client_hello(rng: random.Random, server_name: str, alpn: list[str] | None = None) -> bytes:
    """A ClientHello record (RFC 8446 §4.1.2) with SNI (RFC 6066 §3) and an X25519 key share."""
    suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030]
    sni = server_name.encode()
    exts = _ext(0, struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni)  # server_name
    exts += _ext(10, struct.pack("!HHH", 4, 0x001D, 0x0017))  # supported_groups
    exts += _ext(13, struct.pack("!HHHH", 6, 0x0403, 0x0804, 0x0401))  # signature_algorithms
    if alpn:
        names = b"".join(bytes([len(a)]) + a.encode() for a in alpn)
        exts += _ext(16, struct.pack("!H", len(names)) + names)  # ALPN (RFC 7301)
    exts += _ext(43, b"\x04\x03\x04\x03\x03")  # supported_versions: TLS 1.3, 1.2
    key = rng.randbytes(32)
    exts += _ext(51, struct.pack("!HHH", 36, 0x001D, 32) + key)  # key_share
    body = struct.pack("!H", 0x0303) + rng.randbytes(32)  # legacy_version, random
    body += b"\x20" + rng.randbytes(32)  # legacy_session_id
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00"  # legacy_compression_methods: null
    body += struct.pack("!H", len(exts)) + exts
    return _record(22, _handshake(1, body), version=0x0301)


def tls_server_hello(rng: random.Random, encrypted_len: int = 2600) -> bytes:
    """ServerHello, ChangeCipherSpec (middlebox compatibility, RFC 8446 §D.4), then the
    encrypted EncryptedExtensions/Certificate/CertificateVerify/Finished as one record."""
    exts = _ext(43, b"\x03\x04") + _ext(51, struct.pack("!HH", 0x001D, 32) + rng.randbytes(32))
    body = struct.pack("!H", 0x0303) + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
    body += struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(exts)) + exts
    out = _record(22, _handshake(2, body))
    out += _record(20, b"\x01")
    return out + _record(23, rng.randbytes(encrypted_len))


def tls_application_data(rng: random.Random, nbytes: int, record: int = 16384) -> bytes:
    """`nbytes` of protected data as application_data records (RFC 8446 §5.2)."""
    out = bytearray()
    while nbytes > 0:
        n = min(record, nbytes)
        out += _record(23, rng.randbytes(n + 17))  # + content type byte and 16-byte AEAD tag
        nbytes -= n
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# SSH (RFC 4253), RDP (MS-RDPBCGR), HTTP/1.1 (RFC 9112)
# ---------------------------------------------------------------------------------------------


def ssh_banner(software: str) -> bytes:
    return f"SSH-2.0-{software}\r\n".encode()  # RFC 4253 §4.2


def ssh_kexinit(rng: random.Random) -> bytes:
    """SSH_MSG_KEXINIT in a binary packet (RFC 4253 §6, §7.1)."""

    def namelist(s: str) -> bytes:
        return struct.pack("!I", len(s)) + s.encode()

    payload = b"\x14" + rng.randbytes(16)
    for names in (
        "curve25519-sha256,ecdh-sha2-nistp256",
        "ssh-ed25519,rsa-sha2-512",
        "chacha20-poly1305@openssh.com,aes128-ctr",
        "chacha20-poly1305@openssh.com,aes128-ctr",
        "hmac-sha2-256",
        "hmac-sha2-256",
        "none",
        "none",
        "",
        "",
    ):
        payload += namelist(names)
    payload += b"\x00" + bytes(4)
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack("!IB", len(payload) + pad + 1, pad) + payload + rng.randbytes(pad)


def rdp_connection_request(username: str) -> bytes:
    """TPKT (RFC 1006 §6) + X.224 Connection Request with the routing cookie and an RDP
    Negotiation Request asking for TLS (MS-RDPBCGR §2.2.1.1)."""
    cookie = f"Cookie: mstshash={username}\r\n".encode()
    neg = struct.pack("<BBHI", 0x01, 0, 8, 0x00000003)  # TYPE_RDP_NEG_REQ, PROTOCOL_SSL|HYBRID
    x224 = struct.pack("!BBHHB", 6 + len(cookie) + len(neg), 0xE0, 0, 0, 0) + cookie + neg
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def rdp_connection_confirm() -> bytes:
    neg = struct.pack("<BBHI", 0x02, 0, 8, 0x00000001)  # TYPE_RDP_NEG_RSP, PROTOCOL_SSL
    x224 = struct.pack("!BBHHB", 6 + len(neg), 0xD0, 0, 0x1234, 0) + neg
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def http_request(method: str, host: str, path: str, user_agent: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
    head += "Accept: */*\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def http_response(body: bytes, content_type: str = "text/html", server: str = "nginx") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body
