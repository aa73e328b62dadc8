"""Google QUIC (gQUIC): the client hello Chrome and Cronet sent before IETF QUIC, read from the
packets an on-path observer can open.

Versions Q024-Q043 use the public header (flags, 8-byte connection ID, version tag, packet
number) and Q046 a long header with 4-bit connection ID lengths; both send the handshake with
null encryption, a 12-byte FNV-1a-128 hash in front of the frames. Q050, T050 and T051 use
the IETF long header and Initial packet protection with their own salts (the keys anyone can
derive, as in RFC 9001 §5.2), and a CRYPTO frame type 0x08. The client hello of the Q versions
is a QUIC Crypto message "CHLO" (a tag-value map: SNI, UAID, AEAD, KEXS, ...); T05x carry a
TLS 1.3 ClientHello. References: Chromium's "QUIC Wire Layout Specification" and "QUIC Crypto"
(Langley, Chang), the QUIC-era Chromium framer (quic_framer.cc), and Wireshark's
packet-gquic.c, which reads the same fields.
"""

from __future__ import annotations

from medsentry.protocols.base import ParseError

# Initial salts of the gQUIC versions on IETF headers (Chromium quic_crypto_utils.cc; the same
# in Wireshark's packet-quic.c)
Q050 = 0x51303530
T050 = 0x54303530
T051 = 0x54303531
SALTS = {
    Q050: bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45"),
    T050: bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310"),
    T051: bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d"),
}
TLS_VERSIONS = frozenset((T050, T051))  # a TLS ClientHello in the CRYPTO frames

CHLO = b"CHLO"
CRYPTO_STREAM = 1  # the handshake's stream ID in Q0xx (Wire Layout: "stream 1")
MAX_ENTRIES = 128  # entries of a tag-value map (Chromium kMaxEntries)
_HASH_LEN = 12  # null encryption: the low 96 bits of FNV-1a-128
_FNV_PRIME = 309485009821345068724781371  # FNV-1a 128-bit prime, 2**88 + 0x13B
_FNV_OFFSET = 144066263297769815596495629667062367629
_MASK128 = (1 << 128) - 1
_PN_LENGTHS = (1, 2, 4, 6)  # public flags 0x30


def number(version: int) -> int | None:
    """nnn of a gQUIC version tag "Qnnn" or "Tnnn" (ASCII in the version field); else None."""
    raw = version.to_bytes(4, "big")
    if raw[:1] in (b"Q", b"T") and raw[1:].isdigit():
        return int(raw[1:])
    return None


def version_tag(version: int) -> str:
    return version.to_bytes(4, "big").decode("ascii", "replace")


def public_header_version(data: bytes) -> int | None:
    """The version of a client's first packet in the public header format (Q024-Q043):
    flags with VERSION (0x01) and an 8-byte connection ID (0x08), no RESET (0x02), the
    reserved bits 0x80 and 0x40 clear; then the version tag at byte 9."""
    if len(data) < 13 or data[0] & 0xC3 != 0x01 or not data[0] & 0x08:
        return None
    version = int.from_bytes(data[9:13], "big")
    n = number(version)
    return version if n is not None and n < 46 and data[9:10] == b"Q" else None


def fnv1a_128(*parts: bytes) -> int:
    h = _FNV_OFFSET
    for part in parts:
        for byte in part:
            h = ((h ^ byte) * _FNV_PRIME) & _MASK128
    return h


def _null_opened(header: bytes, rest: bytes, n: int) -> bytes | None:
    """The frames after the null encryption's hash when it verifies (Chromium NullDecrypter:
    FNV-1a-128 of header, plaintext and, after Q035, the sender's perspective "Client")."""
    if len(rest) < _HASH_LEN:
        return None
    plain = rest[_HASH_LEN:]
    h = fnv1a_128(header, plain, b"Client" if n > 35 else b"")
    want = (h & ((1 << 64) - 1)).to_bytes(8, "little") + ((h >> 64) & 0xFFFFFFFF).to_bytes(
        4, "little"
    )
    return plain if rest[:_HASH_LEN] == want else None


def open_public(data: bytes, version: int) -> tuple[bytes, int] | None:
    """A public header packet's frames and packet number length; None when it is not
    null-encrypted (the hash does not verify: a later, encrypted packet)."""
    n = number(version) or 0
    pn_len = _PN_LENGTHS[(data[0] >> 4) & 0x03]
    end = 13 + pn_len  # flags, connection ID, version, packet number
    plain = _null_opened(data[:end], data[end:], n)
    if plain is None:
        return None
    if n < 34:  # the private flags byte (FEC, entropy), gone from Q034 on
        plain = plain[1:]
    return plain, pn_len


def open_q046(data: bytes) -> tuple[bytes, int] | None:
    """A Q046 long header Initial's frames and packet number length (None when not
    null-encrypted): flags, version, connection ID lengths as two nibbles (0, or 3 + n)."""
    if len(data) < 6:
        raise ParseError("gQUIC long header truncated")
    lengths = data[5]
    dlen, slen = lengths >> 4, lengths & 0x0F
    end = 6 + (dlen + 3 if dlen else 0) + (slen + 3 if slen else 0)
    pn_len = (data[0] & 0x03) + 1
    end += pn_len
    if len(data) < end:
        raise ParseError("gQUIC long header truncated")
    plain = _null_opened(data[:end], data[end:], 46)
    return (plain, pn_len) if plain is not None else None


def stream_frames(
    plain: bytes, big_endian: bool, pn_len: int, n: int
) -> list[tuple[int, int, bytes]]:
    """(stream ID, offset, data) of the STREAM frames (Wire Layout, frame type 1fdooo ss) up
    to the first frame the hello does not need (ACK, flow control, ...) or PADDING."""
    order = "big" if big_endian else "little"
    out: list[tuple[int, int, bytes]] = []
    pos, size = 0, len(plain)
    while pos < size:
        ftype = plain[pos]
        pos += 1
        if ftype & 0x80:  # STREAM: FIN 0x40, data length 0x20, offset length, stream ID length
            sid_len = (ftype & 0x03) + 1
            ooo = (ftype >> 2) & 0x07
            off_len = ooo + 1 if ooo else 0
            len_len = 2 if ftype & 0x20 else 0
            if pos + sid_len + off_len + len_len > size:
                raise ParseError("gQUIC STREAM frame header past the packet")
            sid = int.from_bytes(plain[pos : pos + sid_len], order)
            pos += sid_len
            offset = int.from_bytes(plain[pos : pos + off_len], order)
            pos += off_len
            if len_len:
                length = int.from_bytes(plain[pos : pos + 2], order)
                pos += 2
            else:
                length = size - pos  # the frame runs to the end of the packet
            if pos + length > size:
                raise ParseError("gQUIC STREAM frame past the packet")
            out.append((sid, offset, plain[pos : pos + length]))
            pos += length
        elif ftype == 0x07:  # PING
            continue
        elif ftype == 0x06:  # STOP_WAITING: (entropy byte before Q034) least unacked delta
            pos += pn_len + (1 if n < 34 else 0)
        else:  # PADDING (the rest of the packet) or a frame the hello does not need
            break
    return out


def message_length(data: bytes) -> int | None:
    """The whole length of the tag-value message starting `data` (QUIC Crypto §"Tag-value
    map": tag, uint16 entries, 2 bytes padding, entries of tag and uint32 end offset, little
    endian); None until the entries are in."""
    if len(data) < 8:
        return None
    entries = int.from_bytes(data[4:6], "little")
    if entries > MAX_ENTRIES:
        raise ParseError(f"gQUIC handshake message of {entries} entries (max {MAX_ENTRIES})")
    if len(data) < 8 + 8 * entries:
        return None
    last = int.from_bytes(data[8 + 8 * entries - 4 : 8 + 8 * entries], "little") if entries else 0
    return 8 + 8 * entries + last


def tag_values(message: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, value) of a complete tag-value message, in order; end offsets must not decrease."""
    entries = int.from_bytes(message[4:6], "little")
    base = 8 + 8 * entries
    out = []
    prev = 0
    for i in range(entries):
        at = 8 + 8 * i
        tag = message[at : at + 4]
        end = int.from_bytes(message[at + 4 : at + 8], "little")
        if end < prev or base + end > len(message):
            raise ParseError("gQUIC handshake message with out-of-order end offsets")
        out.append((tag, message[base + prev : base + end]))
        prev = end
    return out


def tag_name(tag: bytes) -> str:
    """A tag as text: "SNI\\0" is "SNI"."""
    return tag.rstrip(b"\x00").decode("ascii", "replace")


def tag_list(value: bytes) -> list[str]:
    """A value that is a list of tags (AEAD, KEXS, VER)."""
    return [tag_name(value[i : i + 4]) for i in range(0, len(value) - len(value) % 4, 4)][:32]
