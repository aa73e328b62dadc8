"""TLS handshake in clear (RFC 8446 TLS 1.3, RFC 5246 TLS 1.2): ClientHello, ServerHello and,
up to TLS 1.2, the server's Certificate chain. Handshake messages are reassembled across records
and segments (RFC 8446 §5.1); once a side switches to encrypted records it is no longer read.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from medsentry.events.base import Event
from medsentry.events.tls import TlsCertificate, TlsClientHello, TlsServerHello
from medsentry.protocols import ja4 as fp
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

# RFC 8446 §5.1 ContentType
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
# RFC 8446 §4 HandshakeType
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE = 1, 2, 11
MAX_RECORD = (1 << 14) + 2048  # RFC 5246 §6.2.3 TLSCiphertext.length bound
MAX_HANDSHAKE = 512 * 1024  # a certificate chain larger than this is not followed
MAX_CERTS = 8
# RFC 8446 §4.1.3: the random of a HelloRetryRequest
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
EXT_SIGNATURE_ALGORITHMS = 0x000D  # RFC 8446 §4.2.3
EXT_SUPPORTED_GROUPS = 0x000A  # RFC 8446 §4.2.7
EXT_QUIC_TRANSPORT_PARAMETERS = 0x0039  # RFC 9001 §8.2
EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT = 0xFFA5  # draft-ietf-quic-tls-27..33 (and Google T05x)
TP_GOOGLE_USER_AGENT = 0x3129  # Chromium's google_user_agent transport parameter (quiche)
MAX_USER_AGENT = 256


class _Reader:
    """Bounds-checked big-endian reads (any short read is a ParseError)."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ParseError(_PAST_END)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def take_all(self) -> bytes:
        return self.take(self.left())

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise ParseError(_PAST_END)
        self.pos += n

    def u8(self) -> int:
        p = self.pos
        if p + 1 > self.end:
            raise ParseError(_PAST_END)
        self.pos = p + 1
        return self.data[p]

    def u16(self) -> int:
        p = self.pos
        if p + 2 > self.end:
            raise ParseError(_PAST_END)
        self.pos = p + 2
        return (self.data[p] << 8) | self.data[p + 1]

    def u24(self) -> int:
        p = self.pos
        if p + 3 > self.end:
            raise ParseError(_PAST_END)
        self.pos = p + 3
        b = self.data
        return (b[p] << 16) | (b[p + 1] << 8) | b[p + 2]

    def vec(self, width: int) -> _Reader:
        """A sub-reader over an opaque vector with a `width`-byte length prefix."""
        n = self.u16() if width == 2 else self.u8() if width == 1 else self.u24()
        start = self.pos
        if start + n > self.end:
            raise ParseError(_PAST_END)
        self.pos = start + n
        return _Reader(self.data, start, start + n)

    def u16_list(self) -> list[int]:
        n = self.end - self.pos
        if n & 1:
            raise ParseError("odd length in a list of 16-bit values")
        out = list(_U16S[n >> 1].unpack_from(self.data, self.pos)) if n < 2 * 256 else None
        if out is None:
            out = list(struct.unpack_from(f">{n >> 1}H", self.data, self.pos))
        self.pos = self.end
        return out


_PAST_END = "TLS structure runs past its enclosing length"
_U16S = [struct.Struct(f">{k}H") for k in range(256)]


@dataclass(slots=True)
class _Side:
    records: bytearray = field(default_factory=bytearray)
    handshake: bytearray = field(default_factory=bytearray)
    first: bool = True
    done: bool = False
    record_version: int = 0  # of the first record


def _extensions(r: _Reader) -> list[tuple[int, bytes]]:
    """RFC 8446 §4.2: Extension extensions<8..2^16-1> (absent in old hellos)."""
    if r.left() == 0:
        return []
    ext = r.vec(2)
    data, pos, end = ext.data, ext.pos, ext.end
    out = []
    while pos < end:
        if pos + 4 > end:  # extension_type, then the length of extension_data
            raise ParseError(_PAST_END)
        etype = (data[pos] << 8) | data[pos + 1]
        start = pos + 4
        pos = start + ((data[pos + 2] << 8) | data[pos + 3])
        if pos > end:
            raise ParseError(_PAST_END)
        out.append((etype, data[start:pos]))
    return out


@functools.lru_cache(maxsize=1024)
def _ja4(
    legacy_version: int,
    ciphers: tuple[int, ...],
    ext_types: tuple[int, ...],
    versions: tuple[int, ...] | None,
    alpn: bytes | None,
    sigs: tuple[int, ...],
    transport: str = "t",
) -> tuple[str, str]:
    """fp.ja4, once per distinct ClientHello shape (clients repeat theirs)."""
    return fp.ja4(
        legacy_version,
        list(ciphers),
        list(ext_types),
        list(versions) if versions is not None else None,
        alpn,
        list(sigs),
        transport,
    )


def _alpn_list(data: bytes) -> list[bytes]:
    """RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each <1..2^8-1>."""
    r = _Reader(data).vec(2)
    out = []
    while r.left():
        out.append(r.vec(1).take_all())
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """RFC 9000 §16 variable-length integer at `pos`: (value, next position)."""
    if pos >= len(data):
        raise ParseError(_PAST_END)
    n = 1 << (data[pos] >> 6)
    if pos + n > len(data):
        raise ParseError(_PAST_END)
    return int.from_bytes(data[pos : pos + n], "big") & ((1 << (8 * n - 2)) - 1), pos + n


def _varint_params(data: bytes) -> Iterator[tuple[int, bytes]]:
    """RFC 9000 §18: (id, value) of each transport parameter (id and length as varints)."""
    pos, end = 0, len(data)
    while pos < end:
        pid, pos = _varint(data, pos)
        length, pos = _varint(data, pos)
        if pos + length > end:
            raise ParseError(_PAST_END)
        yield pid, data[pos : pos + length]
        pos += length


def _u16_params(data: bytes) -> Iterator[tuple[int, bytes]]:
    """draft-ietf-quic-transport-27 §18 (and Google's T050): a u16-length list of u16 id,
    u16 length, value."""
    pos, end = 2, len(data)
    while pos < end:
        if pos + 4 > end:
            raise ParseError(_PAST_END)
        pid, length = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + length > end:
            raise ParseError(_PAST_END)
        yield pid, data[pos : pos + length]
        pos += length


def _google_user_agent(ext_type: int, data: bytes) -> str | None:
    """The value of Chromium's google_user_agent transport parameter: the browser or app with
    its platform, as Google QUIC's UAID tag had it. The draft extension (0xffa5) carried both
    encodings over time; a list whose u16 prefix is its own length is the older one. A
    malformed list gives None: it does not spoil the rest of the ClientHello."""
    old = (
        ext_type == EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT
        and len(data) >= 2
        and int.from_bytes(data[:2], "big") == len(data) - 2
    )
    try:
        for pid, value in _u16_params(data) if old else _varint_params(data):
            if pid == TP_GOOGLE_USER_AGENT:
                return text(value, MAX_USER_AGENT) or None
    except ParseError:
        return None
    return None


def _server_name(data: bytes) -> str | None:
    """RFC 6066 §3: ServerNameList; the first host_name (type 0)."""
    r = _Reader(data).vec(2)
    while r.left():
        kind = r.u8()
        name = r.vec(2).take_all()
        if kind == 0:
            return text(name, 255)
    return None


def client_hello(
    body: bytes, ts_ns: int, ctx: FlowContext, record_version: int, transport: str = "t"
) -> TlsClientHello:
    """RFC 8446 §4.1.2 ClientHello (the handshake message body). `record_version`: the first
    record's version, 0 without a record layer (QUIC, RFC 9001 §4); `transport` as JA4 has it."""
    r = _Reader(body)
    legacy_version = r.u16()
    r.skip(32)  # random
    r.vec(1)  # legacy_session_id
    ciphers = r.vec(2).u16_list()
    r.vec(1)  # legacy_compression_methods
    exts = _extensions(r)
    ext_types = [t for t, _ in exts]
    sni = None
    alpn: list[bytes] = []
    sigs: list[int] = []
    groups: list[int] = []
    versions: list[int] = []
    user_agent: str | None = None
    for etype, data in exts:
        if etype == fp.EXT_SERVER_NAME and data:
            sni = _server_name(data)
        elif etype == fp.EXT_ALPN:
            alpn = _alpn_list(data)
        elif etype == EXT_SIGNATURE_ALGORITHMS:
            sigs = _Reader(data).vec(2).u16_list()
        elif etype == EXT_SUPPORTED_GROUPS:
            groups = _Reader(data).vec(2).u16_list()
        elif etype == fp.EXT_SUPPORTED_VERSIONS:
            sv = _Reader(data).vec(1)
            versions = sv.u16_list()
        elif etype in (EXT_QUIC_TRANSPORT_PARAMETERS, EXT_QUIC_TRANSPORT_PARAMETERS_DRAFT):
            user_agent = _google_user_agent(etype, data)
    ja4, ja4_r = _ja4(
        legacy_version,
        tuple(ciphers),
        tuple(ext_types),
        tuple(versions) if versions else None,
        alpn[0] if alpn else None,
        tuple(sigs),
        transport,
    )
    return TlsClientHello(
        ts_ns=ts_ns,
        flow_id=ctx.flow_id,
        endpoints=ctx.endpoints,
        record_version=record_version,
        legacy_version=legacy_version,
        supported_versions=versions,
        max_version=fp.version_name(fp.ja4_version(legacy_version, versions or None)),
        server_name=sni,
        cipher_suites=ciphers,
        extensions=ext_types,
        alpn=[text(a, 64) for a in alpn[:16]],
        signature_algorithms=sigs,
        supported_groups=groups,
        ja4=ja4,
        ja4_r=ja4_r,
        user_agent=user_agent,
    )


def server_hello(body: bytes, ts_ns: int, ctx: FlowContext, transport: str = "t") -> TlsServerHello:
    """RFC 8446 §4.1.3 ServerHello (also RFC 5246 §7.4.1.3), the handshake message body."""
    r = _Reader(body)
    legacy_version = r.u16()
    random = r.take(32)
    r.vec(1)  # legacy_session_id_echo
    cipher = r.u16()
    r.u8()  # legacy_compression_method
    exts = _extensions(r)
    selected = None
    alpn = None
    for etype, data in exts:
        if etype == fp.EXT_SUPPORTED_VERSIONS and len(data) == 2:
            selected = struct.unpack(">H", data)[0]
        elif etype == fp.EXT_ALPN:
            names = _alpn_list(data)
            alpn = names[0] if names else None
    version = selected or legacy_version
    ext_types = [t for t, _ in exts]
    return TlsServerHello(
        ts_ns=ts_ns,
        flow_id=ctx.flow_id,
        endpoints=ctx.endpoints,
        legacy_version=legacy_version,
        version=fp.version_name(version),
        selected_version=version,
        cipher_suite=cipher,
        cipher_name=fp.CIPHER_SUITES.get(cipher),
        extensions=ext_types,
        alpn=text(alpn, 64) if alpn else None,
        hello_retry_request=random == HRR_RANDOM,
        ja4s=fp.ja4s(legacy_version, selected, cipher, ext_types, alpn, transport),
    )


class TlsDissector(StreamDissector):
    protocol = "tls"
    whole_stream = True  # reads only until each side's records are encrypted

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.sides = (_Side(), _Side())
        self.version13 = False
        self.certs_seen = 0

    @property
    def done(self) -> bool:
        """Both sides are encrypted (or unreadable): no later byte changes anything."""
        return self.sides[0].done and self.sides[1].done

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        side = self.sides[direction]
        if side.done or not data:
            return []
        side.records += data
        out: list[Event] = []
        while not side.done and len(side.records) >= 5:
            rec = side.records
            ctype, major, minor, length = rec[0], rec[1], rec[2], (rec[3] << 8) | rec[4]
            if side.first and ctype != HANDSHAKE:
                if rec[0] & 0x80 and len(rec) > 2 and rec[2] in (1, 4):
                    side.done = True  # SSLv2 CLIENT-HELLO / SERVER-HELLO (RFC 6101 App. E)
                    break
                if ctype in (CHANGE_CIPHER_SPEC, ALERT, APPLICATION_DATA) and major == 3:
                    side.done = True  # the capture began after the handshake
                    break
                raise ParseError(f"first TLS record is of type {ctype}, not handshake")
            if ctype not in (CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT):
                raise ParseError(f"bad TLS record type {ctype}")
            if major != 3 or minor > 4 or length > MAX_RECORD:
                raise ParseError(f"bad TLS record header (version {major}.{minor}, len {length})")
            if len(rec) < 5 + length:
                break
            fragment = bytes(rec[5 : 5 + length])
            del rec[: 5 + length]
            if side.first:
                side.record_version = (major << 8) | minor
            side.first = False
            if ctype == HANDSHAKE:
                side.handshake += fragment
                self._messages(direction, side, ts_ns, out)
            elif ctype in (CHANGE_CIPHER_SPEC, APPLICATION_DATA):
                side.done = True  # what follows on this side is encrypted
        if side.done:
            side.records.clear()
            side.handshake.clear()
        return out

    def _messages(self, direction: int, side: _Side, ts_ns: int, out: list[Event]) -> None:
        hs = side.handshake
        while len(hs) >= 4 and not side.done:
            mtype, mlen = hs[0], (hs[1] << 16) | (hs[2] << 8) | hs[3]
            if mlen > MAX_HANDSHAKE:
                side.done = True
                return
            if len(hs) < 4 + mlen:
                return
            body = bytes(hs[4 : 4 + mlen])
            del hs[: 4 + mlen]
            if direction == CLIENT_TO_SERVER and mtype == CLIENT_HELLO:
                out.append(self._client_hello(body, ts_ns))
                side.done = True  # the rest of the client's handshake is not needed
            elif direction != CLIENT_TO_SERVER and mtype == SERVER_HELLO:
                out.append(self._server_hello(body, ts_ns))
                if self.version13:
                    side.done = True  # RFC 8446 §2: everything after ServerHello is encrypted
            elif direction != CLIENT_TO_SERVER and mtype == CERTIFICATE:
                out.extend(self._certificates(body, ts_ns))
                side.done = True

    def _client_hello(self, body: bytes, ts_ns: int) -> TlsClientHello:
        return client_hello(body, ts_ns, self.ctx, self.sides[CLIENT_TO_SERVER].record_version)

    def _server_hello(self, body: bytes, ts_ns: int) -> TlsServerHello:
        hello = server_hello(body, ts_ns, self.ctx)
        self.version13 = hello.selected_version == 0x0304
        return hello

    def _certificates(self, body: bytes, ts_ns: int) -> list[Event]:
        """RFC 5246 §7.4.2 Certificate: ASN.1Cert certificate_list<0..2^24-1>."""
        r = _Reader(body).vec(3)
        out: list[Event] = []
        index = 0
        while r.left() and index < MAX_CERTS:
            der = r.vec(3).take_all()
            ev = self._certificate(der, index, ts_ns)
            if ev is not None:
                out.append(ev)
            index += 1
        return out

    def _certificate(self, der: bytes, index: int, ts_ns: int) -> TlsCertificate | None:
        # a server sends the same chain on every connection: each DER is decoded once
        # (bounded memo); the event is re-stamped for this flow
        known = _certs.get(der, _UNSEEN)
        if known is _UNSEEN:
            # X.509 decoding (cryptography's x509 and key types: ~20 ms to import) is loaded
            # with the first certificate, not with every scan
            from medsentry.protocols.tls_cert import certificate_event

            known = certificate_event(der, index, ts_ns, self.ctx)
            if len(_certs) < _CERTS_MAX:
                _certs[bytes(der)] = known
            return known
        if known is None:
            return None
        return msgspec.structs.replace(
            known,
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            chain_index=index,
            san_dns=list(known.san_dns),
            san_ip=list(known.san_ip),
        )


_CERTS_MAX = 256
_UNSEEN = object()
_certs: dict[bytes, TlsCertificate | None] = {}  # DER -> its event (None: not decodable)


register_stream("tls", TlsDissector)
