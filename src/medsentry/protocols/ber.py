"""A bounded reader of the Basic Encoding Rules (ITU-T X.690) as SNMP uses them: low tag numbers,
definite lengths of at most four octets (RFC 3417 §8: SNMP messages are serialized with the
definite-length form), INTEGER, OCTET STRING, OBJECT IDENTIFIER and IpAddress.

Every read checks its bounds against the enclosing value: malformed input is a `ParseError`,
never an IndexError, and nothing is read past the end that the outer TLV announced.
"""

from __future__ import annotations

from medsentry.protocols.base import ParseError

# X.690 §8.1.2: universal tags (class 00, primitive unless noted)
INTEGER, OCTET_STRING, NULL, OBJECT_IDENTIFIER = 0x02, 0x04, 0x05, 0x06
SEQUENCE = 0x30  # constructed
IP_ADDRESS = 0x40  # RFC 2578 §7.1.5, [APPLICATION 0] IMPLICIT OCTET STRING (SIZE (4))
MAX_OID_ARCS = 128  # RFC 2578 §3.5: at most 128 sub-identifiers
MAX_ARC = 0xFFFFFFFF  # RFC 2578 §7.1.3: each sub-identifier at most 2^32-1


def tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """One TLV starting at `pos` within `data[:end]`: (tag, content start, content end)."""
    if pos + 2 > end:
        raise ParseError("BER header truncated")
    tag, n = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ParseError("BER high tag number form")  # X.690 §8.1.2.4: not used by SNMP
    pos += 2
    if n & 0x80:  # X.690 §8.1.3.5 long form; 0x80 alone is the indefinite form (§8.1.3.6)
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise ParseError("BER length invalid")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise ParseError("BER value runs past its container")
    return tag, pos, pos + n


def expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """A TLV of `tag` at `pos`: (content start, content end)."""
    t, s, e = tlv(data, pos, end)
    if t != tag:
        raise ParseError(f"{what}: tag {t:#x}, expected {tag:#x}")
    return s, e


def integer(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """An INTEGER (X.690 §8.3) of at most 32 bits plus sign: (value, position after it)."""
    s, e = expect(data, pos, end, INTEGER, what)
    if not 1 <= e - s <= 5:
        raise ParseError(f"{what}: INTEGER of {e - s} octets")
    return int.from_bytes(data[s:e], "big", signed=True), e


def oid(content: bytes) -> str:
    """The contents of an OBJECT IDENTIFIER (X.690 §8.19) as dotted decimal."""
    if not content:
        raise ParseError("OBJECT IDENTIFIER empty")
    arcs: list[int] = []
    value = 0
    start = True
    for b in content:
        if start and b == 0x80:
            raise ParseError("OBJECT IDENTIFIER sub-identifier not minimal")  # §8.19.2
        value = value << 7 | (b & 0x7F)
        if value > MAX_ARC + 80:  # the first sub-identifier carries 40 * 2 more
            raise ParseError("OBJECT IDENTIFIER sub-identifier above 2^32-1")
        start = not b & 0x80
        if start:
            if value > MAX_ARC and arcs:
                raise ParseError("OBJECT IDENTIFIER sub-identifier above 2^32-1")
            arcs.append(value)
            value = 0
            if len(arcs) > MAX_OID_ARCS:
                raise ParseError("OBJECT IDENTIFIER longer than 128 sub-identifiers")
    if not start:
        raise ParseError("OBJECT IDENTIFIER truncated sub-identifier")
    first = arcs[0]  # §8.19.4: the first two arcs share one sub-identifier, 40 * X + Y
    x = min(first // 40, 2)
    if first - 40 * x > MAX_ARC:
        raise ParseError("OBJECT IDENTIFIER second arc above 2^32-1")
    return ".".join(map(str, [x, first - 40 * x, *arcs[1:]]))


def ip_address(content: bytes) -> str:
    """IpAddress (RFC 2578 §7.1.5; RFC 1155 §3.2.3.2 NetworkAddress) as a dotted quad."""
    if len(content) != 4:
        raise ParseError(f"IpAddress of {len(content)} octets")
    return ".".join(map(str, content))
