"""QUIC Initial packets (RFC 9000 §17.2.2, RFC 9001 §5): the TLS ClientHello and ServerHello
they carry, read as the TLS dissector reads them (SNI, ALPN, JA4 with transport "q").

Initial packets are protected with keys anyone can derive from the Destination Connection ID of
the client's first Initial (RFC 9001 §5.2): an on-path observer is meant to be able to read
them. Header protection is removed (§5.4), the payload opened with AEAD_AES_128_GCM (§5.3),
and the CRYPTO frames reassembled by offset (RFC 9000 §19.6): a client may split its
ClientHello over several packets and datagrams, in any order. Versions: 1 (RFC 9000), 2 (RFC
9369), the drafts and the pre-standard versions deployed clients spoke (see `_SALTS`), and
Google QUIC's client hello (`gquic.py`: the CHLO of Q024-Q050, the TLS ClientHello of T05x).
Everything after the Initial packets (Handshake, 1-RTT) uses keys only the endpoints have: the
dissector stops there.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from medsentry.events.base import Event
from medsentry.events.tls import QuicCryptoClientHello
from medsentry.protocols import gquic
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text
from medsentry.protocols.tls import CLIENT_HELLO, SERVER_HELLO, client_hello, server_hello

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
# initial_salt per version: RFC 9001 §5.2 (v1; drafts 33-34 used it); RFC 9369 §3.3.1 (v2);
# draft-ietf-quic-tls-29 §5.2 (drafts 29-32), -23 §5.2 (23-28), -22 §5.2 (22 and earlier).
# Deployed pre-standard versions, salts as Wireshark's packet-quic.c has them: Facebook mvfst
# (0xfaceb001 on draft 22, 0xfaceb002/0xfaceb00e on draft 27); a reserved version that forces
# version negotiation (0x?a?a?a?a, RFC 9000 §15) with the draft-29 salt, as Wireshark tries it
# (the AEAD tag tells whether that was right). Google QUIC on IETF headers (Q050, T050, T051)
# has salts of its own (gquic.SALTS).
_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_DRAFT23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_DRAFT22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALTS = {
    VERSION_1: _SALT_V1,
    VERSION_2: _SALT_V2,
    0xFACEB001: _SALT_DRAFT22,
    0xFACEB002: _SALT_DRAFT23,
    0xFACEB00E: _SALT_DRAFT23,
    **gquic.SALTS,
}
for _draft in range(1, 35):  # IETF drafts: 0xff0000NN
    _SALTS[0xFF000000 | _draft] = (
        _SALT_DRAFT22 if _draft <= 22
        else _SALT_DRAFT23 if _draft <= 28
        else _SALT_DRAFT29 if _draft <= 32
        else _SALT_V1
    )  # fmt: skip
# Long Header Packet Types (RFC 9000 §17.2 Table 5; RFC 9369 §3.2 for v2)
_INITIAL_TYPE = {VERSION_1: 0, VERSION_2: 1}
_RETRY_TYPE = {VERSION_1: 3, VERSION_2: 0}

MAX_CRYPTO = 64 * 1024  # bytes of CRYPTO stream kept per direction (a ClientHello is < 8 KiB)
MAX_INITIALS = 16  # Initial packets read per direction before giving up
_SAMPLE = 16  # RFC 9001 §5.4.2: the header protection sample


def _salt(version: int) -> bytes | None:
    salt = _SALTS.get(version)
    if salt is None and version & 0x0F0F0F0F == 0x0A0A0A0A:
        return _SALT_DRAFT29
    return salt


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, SHA-256 (RFC 9001 §5.2)."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)  # RFC 5869 §2.3


class _Keys:
    """One direction's Initial keys: packet protection (AEAD) and header protection."""

    __slots__ = ("aead", "hp", "iv")

    def __init__(self, secret: bytes, version: int) -> None:
        v2 = version == VERSION_2  # RFC 9369 §3.3.2: "quicv2" labels
        key = _expand_label(secret, b"quicv2 key" if v2 else b"quic key", 16)
        self.iv = _expand_label(secret, b"quicv2 iv" if v2 else b"quic iv", 12)
        hp = _expand_label(secret, b"quicv2 hp" if v2 else b"quic hp", 16)
        self.aead = AESGCM(key)
        self.hp = Cipher(algorithms.AES(hp), modes.ECB())

    def mask(self, sample: bytes) -> bytes:
        """RFC 9001 §5.4.3: AES-based header protection."""
        enc = self.hp.encryptor()
        return enc.update(sample) + enc.finalize()


@functools.lru_cache(maxsize=256)
def initial_keys(dcid: bytes, version: int) -> tuple[_Keys, _Keys]:
    """(client, server) Initial keys for the client's first Destination Connection ID."""
    salt = _salt(version)
    if salt is None:
        raise ParseError(f"QUIC version 0x{version:08x} has no known Initial salt")
    initial = hmac.new(salt, dcid, hashlib.sha256).digest()  # HKDF-Extract (RFC 5869 §2.2)
    return (
        _Keys(_expand_label(initial, b"client in", 32), version),
        _Keys(_expand_label(initial, b"server in", 32), version),
    )


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """RFC 9000 §16 variable-length integer at `pos`: (value, position after it)."""
    if pos >= len(data):
        raise ParseError("QUIC varint past the end")
    first = data[pos]
    n = 1 << (first >> 6)
    if pos + n > len(data):
        raise ParseError("QUIC varint past the end")
    v = first & 0x3F
    for b in data[pos + 1 : pos + n]:
        v = (v << 8) | b
    return v, pos + n


def decode_packet_number(largest: int, truncated: int, nbits: int) -> int:
    """RFC 9000 Appendix A.3."""
    expected = largest + 1
    win = 1 << nbits
    hwin, mask = win // 2, win - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


class _Side:
    __slots__ = ("chunks", "done", "initials", "largest_pn")

    def __init__(self) -> None:
        self.chunks: dict[int, bytes] = {}  # CRYPTO stream offset -> data
        self.done = False
        self.initials = 0
        self.largest_pn = -1

    def count_initial(self) -> bool:
        """One more Initial packet read; False (and done) past MAX_INITIALS."""
        self.initials += 1
        if self.initials > MAX_INITIALS:
            self.done = True
            return False
        return True

    def stream_prefix(self, start: int = 0) -> bytes:
        """The contiguous CRYPTO stream from offset `start`."""
        out = bytearray()
        for off in sorted(self.chunks):
            if off < start:
                continue
            data = self.chunks[off]
            if off - start > len(out):
                break
            if off - start + len(data) > len(out):
                out += data[len(out) - (off - start) :]
        return bytes(out)


class QuicDissector(StreamDissector):
    protocol = "quic"
    whole_stream = True  # every datagram until both hellos are read

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.sides = (_Side(), _Side())
        self.keys: tuple[_Keys, _Keys] | None = None
        self.version = 0

    @property
    def done(self) -> bool:
        return self.sides[0].done and self.sides[1].done

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        side = self.sides[direction]
        if side.done:
            return []
        out: list[Event] = []
        pos = 0
        while pos < len(data) and not side.done:  # coalesced packets (RFC 9000 §12.2)
            if not data[pos] & 0x80:
                gq = gquic.public_header_version(data) if pos == 0 and not direction else None
                if gq is not None and self.version in (0, gq):  # gQUIC Q024-Q043, the client
                    self._gquic_public(side, data, gq, ts_ns, out)
                    break
                # a short header: 1-RTT, this side's handshake is over (RFC 9000 §17.3; the
                side.done = True  # flow layer stops feeding once both sides are)
                break
            pos = self._long_packet(direction, side, data, pos, ts_ns, out)
        return out

    def _long_packet(
        self, direction: int, side: _Side, data: bytes, pos: int, ts_ns: int, out: list[Event]
    ) -> int:
        """RFC 9000 §17.2 long header packet at `pos`; the position after it."""
        start = pos
        if len(data) < pos + 7:
            raise ParseError("QUIC long header truncated")
        first = data[pos]
        version = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if version == 0:  # Version Negotiation (RFC 9000 §17.2.1): nothing more to read
            side.done = True
            return len(data)
        if version not in gquic.SALTS and gquic.number(version) is not None:
            self._gquic_q046(direction, side, data[pos:], version, ts_ns, out)
            return len(data)
        dlen = data[pos + 5]
        if dlen > 20:
            raise ParseError(f"QUIC Destination Connection ID of {dlen} bytes (max 20)")
        dcid = data[pos + 6 : pos + 6 + dlen]
        pos += 6 + dlen
        if pos >= len(data):
            raise ParseError("QUIC long header truncated")
        slen = data[pos]
        if slen > 20:
            raise ParseError(f"QUIC Source Connection ID of {slen} bytes (max 20)")
        pos += 1 + slen
        ptype = (first >> 4) & 0x03
        initial_type = _INITIAL_TYPE.get(version, 0)
        retry_type = _RETRY_TYPE.get(version, 3)
        if _salt(version) is None:
            side.done = True  # a version whose Initial protection is unknown (gQUIC, greased)
            return len(data)
        if ptype == retry_type:  # RFC 9000 §17.2.5: a new DCID, new keys for the client
            self.keys = None
            self.sides[CLIENT_TO_SERVER].largest_pn = -1
            return len(data)
        if ptype == initial_type:
            token_len, pos = varint(data, pos)  # RFC 9000 §17.2.2 Token
            pos += token_len
        length, pos = varint(data, pos)
        end = pos + length
        if end > len(data) or length < 4 + _SAMPLE:
            raise ParseError("QUIC packet longer than its datagram")
        if ptype != initial_type:
            return end  # 0-RTT or Handshake: keys we cannot have
        if self.keys is None or self.version != version:
            if direction != CLIENT_TO_SERVER:
                return end  # the server's Initial before any client Initial: no keys
            self.keys = initial_keys(bytes(dcid), version)
            self.version = version
        if not side.count_initial():
            return end
        self._open(direction, side, data, start, pos, end, first, ts_ns, out)
        return end

    def _open(
        self,
        direction: int,
        side: _Side,
        data: bytes,
        start: int,
        pn_off: int,
        end: int,
        first: int,
        ts_ns: int,
        out: list[Event],
    ) -> None:
        """Remove header protection, decrypt (RFC 9001 §5.3-5.4), read the frames."""
        assert self.keys is not None
        keys = self.keys[direction]
        mask = keys.mask(data[pn_off + 4 : pn_off + 4 + _SAMPLE])
        first ^= mask[0] & 0x0F  # long header: the low four bits (§5.4.1)
        pn_len = (first & 0x03) + 1
        truncated = 0
        header = bytearray(data[start : pn_off + pn_len])
        header[0] = first
        for i in range(pn_len):
            b = data[pn_off + i] ^ mask[1 + i]
            header[pn_off - start + i] = b
            truncated = (truncated << 8) | b
        pn = decode_packet_number(side.largest_pn, truncated, pn_len * 8)
        nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
        try:
            plain = keys.aead.decrypt(nonce, data[pn_off + pn_len : end], bytes(header))
        except InvalidTag:
            return  # not this connection's Initial keys (or corrupted): nothing to read
        side.largest_pn = max(side.largest_pn, pn)
        self._frames(direction, side, plain, ts_ns, out)

    def _frames(
        self, direction: int, side: _Side, plain: bytes, ts_ns: int, out: list[Event]
    ) -> None:
        """RFC 9000 §19 frames of an Initial packet (§17.2.2: PADDING, PING, ACK, CRYPTO,
        CONNECTION_CLOSE); CRYPTO data filed by offset."""
        if self.version in gquic.SALTS:
            self._gquic_crypto(direction, side, plain, ts_ns, out)
            return
        pos = 0
        n = len(plain)
        grew = False
        while pos < n:
            ftype, pos = varint(plain, pos)
            if ftype in (0x00, 0x01):  # PADDING, PING
                continue
            if ftype in (0x02, 0x03):  # ACK (§19.3)
                for _ in range(2):  # Largest Acknowledged, ACK Delay
                    _, pos = varint(plain, pos)
                count, pos = varint(plain, pos)
                _, pos = varint(plain, pos)  # First ACK Range
                if count > n:
                    raise ParseError("QUIC ACK range count past the packet")
                for _ in range(2 * count + (3 if ftype == 0x03 else 0)):
                    _, pos = varint(plain, pos)
            elif ftype == 0x06:  # CRYPTO (§19.6)
                offset, pos = varint(plain, pos)
                length, pos = varint(plain, pos)
                if pos + length > n:
                    raise ParseError("QUIC CRYPTO frame past the packet")
                grew = self._file(side, offset, plain[pos : pos + length]) or grew
                if side.done:
                    return
                pos += length
            elif ftype in (0x1C, 0x1D):  # CONNECTION_CLOSE (§19.19)
                side.done = True
                return
            else:
                raise ParseError(f"QUIC frame type 0x{ftype:x} in an Initial packet")
        if grew:
            self._hello(direction, side, ts_ns, out)

    def _hello(self, direction: int, side: _Side, ts_ns: int, out: list[Event]) -> None:
        if self.version == gquic.Q050:  # a QUIC Crypto handshake, not TLS
            if direction == CLIENT_TO_SERVER:
                self._chlo(side, ts_ns, out)
            else:
                side.done = True  # the server's REJ or SHLO: nothing the inventory reads
            return
        stream = side.stream_prefix()
        if len(stream) < 4:
            return
        mtype, mlen = stream[0], int.from_bytes(stream[1:4], "big")
        want = CLIENT_HELLO if direction == CLIENT_TO_SERVER else SERVER_HELLO
        if mtype != want:
            raise ParseError(f"QUIC CRYPTO stream starts with handshake type {mtype}")
        if len(stream) < 4 + mlen:
            return
        body = stream[4 : 4 + mlen]
        if direction == CLIENT_TO_SERVER:
            out.append(client_hello(body, ts_ns, self.ctx, 0, transport="q"))
        else:
            out.append(server_hello(body, ts_ns, self.ctx, transport="q"))
        side.done = True
        side.chunks.clear()

    # -- Google QUIC (gquic.py) --

    def _gquic_public(
        self, side: _Side, data: bytes, version: int, ts_ns: int, out: list[Event]
    ) -> None:
        """A client packet with the public header (Q024-Q043): STREAM frames of stream 1."""
        self.version = version
        if not side.count_initial():
            return
        opened = gquic.open_public(data, version)
        if opened is not None:
            n = gquic.number(version) or 0
            self._gquic_streams(side, opened, n >= 39, n, ts_ns, out)

    def _gquic_q046(
        self, direction: int, side: _Side, data: bytes, version: int, ts_ns: int, out: list[Event]
    ) -> None:
        """A Q046-Q049 long header packet: the client's Initial (type 0) is null-encrypted."""
        if direction != CLIENT_TO_SERVER or (self.version and self.version != version):
            side.done = True  # the server's packets: nothing the inventory reads
            return
        self.version = version
        if not side.count_initial():
            return
        if data[0] & 0x30:
            return  # 0-RTT or Handshake: encrypted
        opened = gquic.open_q046(data)
        if opened is not None:
            self._gquic_streams(side, opened, True, gquic.number(version) or 0, ts_ns, out)

    def _gquic_streams(
        self,
        side: _Side,
        opened: tuple[bytes, int],
        big_endian: bool,
        n: int,
        ts_ns: int,
        out: list[Event],
    ) -> None:
        plain, pn_len = opened
        for sid, offset, chunk in gquic.stream_frames(plain, big_endian, pn_len, n):
            if sid == gquic.CRYPTO_STREAM and chunk:
                self._file(side, offset, chunk)
        if side.chunks and not side.done:
            self._chlo(side, ts_ns, out)

    def _gquic_crypto(
        self, direction: int, side: _Side, plain: bytes, ts_ns: int, out: list[Event]
    ) -> None:
        """Q050/T05x Initial frames: CRYPTO (type 0x08: varint offset, varint length),
        PADDING and PING skipped, reading stops at any other frame."""
        pos, size = 0, len(plain)
        grew = False
        while pos < size and not side.done:
            ftype = plain[pos]
            pos += 1
            if ftype in (0x00, 0x07):  # PADDING, PING
                continue
            if ftype != 0x08:
                break
            offset, pos = varint(plain, pos)
            length, pos = varint(plain, pos)
            if pos + length > size:
                raise ParseError("gQUIC CRYPTO frame past the packet")
            grew = self._file(side, offset, plain[pos : pos + length]) or grew
            pos += length
        if grew and not side.done:
            self._hello(direction, side, ts_ns, out)

    @staticmethod
    def _file(side: _Side, offset: int, chunk: bytes) -> bool:
        """Keep a piece of the handshake stream; False when it adds nothing."""
        if offset + len(chunk) > MAX_CRYPTO:
            side.done = True
            return False
        old = side.chunks.get(offset)
        if old is None or len(old) < len(chunk):
            side.chunks[offset] = chunk
            return True
        return False

    def _chlo(self, side: _Side, ts_ns: int, out: list[Event]) -> None:
        """The client's CHLO once whole: from the first piece that starts one (a client that
        was rejected sends its next CHLO further on the stream)."""
        starts = [off for off, chunk in side.chunks.items() if chunk[:4] == gquic.CHLO]
        if not starts:
            if 0 in side.chunks:
                raise ParseError("gQUIC handshake stream does not start with a CHLO")
            return
        message = side.stream_prefix(min(starts))
        total = gquic.message_length(message)
        if total is None or len(message) < total:
            return
        values = gquic.tag_values(message[:total])
        found = dict(reversed(values))  # the first of a repeated tag
        sni, uaid = found.get(b"SNI\x00"), found.get(b"UAID")
        out.append(
            QuicCryptoClientHello(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                version=gquic.version_tag(self.version),
                server_name=text(sni, 255) or None if sni else None,
                user_agent=text(uaid, 256) or None if uaid else None,
                aead=gquic.tag_list(found.get(b"AEAD", b"")),
                key_exchange=gquic.tag_list(found.get(b"KEXS", b"")),
                tags=[gquic.tag_name(tag) for tag, _ in values],
            )
        )
        side.done = True
        side.chunks.clear()


register_stream("quic", QuicDissector)
