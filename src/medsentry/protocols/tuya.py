"""Tuya local protocol discovery (the Tuya IoT platform's LAN broadcasts): which Tuya-based
device is on the network, its product and its protocol version.

Every Tuya device (plugs, lights, sensors, and the white-label scales, thermometers and blood
pressure monitors built on Tuya modules) broadcasts a frame every few seconds: prefix
0x000055AA, sequence, command, length, payload, CRC-32, suffix 0x0000AA55. Command 0x12 on UDP
6666 carries JSON in clear (protocol 3.1); command 0x13 on UDP 6667 carries it encrypted with
AES-128-ECB under a key fixed in every client, MD5 of "yGAdlopoPVldABfn" (protocol 3.3+):
anyone on the LAN can read it, which is what the apps do to find devices. Frame layout as the
open clients read it (tinytuya, tuyapi) and nDPI's tuya_lp.c recognises it.
"""

from __future__ import annotations

import hashlib
import zlib

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medsentry.events.base import Event
from medsentry.events.identity import TuyaDiscovery
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

PREFIX = b"\x00\x00\x55\xaa"
SUFFIX = b"\x00\x00\xaa\x55"
UDP = 0x12  # discovery, JSON in clear (protocol 3.1)
UDP_NEW = 0x13  # discovery, JSON under the fixed key (protocol 3.3 and later)
UDP_KEY = hashlib.md5(b"yGAdlopoPVldABfn").digest()  # the protocol's fixed key
MAX_FRAME = 4096
MAX_SEEN = 64


class _Announcement(msgspec.Struct):
    gwId: str | None = None  # the protocol's key names
    productKey: str | None = None
    version: str | None = None
    ip: str | None = None
    encrypt: bool | None = None


_decode = msgspec.json.Decoder(_Announcement).decode


def frame_payload(data: bytes) -> tuple[int, bytes]:
    """(command, payload) of one frame; ParseError when it is not a whole, intact frame."""
    if len(data) < 24 or data[:4] != PREFIX:
        raise ParseError("not a Tuya frame (prefix 0x000055AA)")
    command = int.from_bytes(data[8:12], "big")
    length = int.from_bytes(data[12:16], "big")  # payload, CRC and suffix
    end = 16 + length
    if length < 8 or end > len(data) or end > MAX_FRAME:
        raise ParseError(f"Tuya frame length {length} past the datagram")
    if data[end - 4 : end] != SUFFIX:
        raise ParseError("Tuya frame without its suffix 0x0000AA55")
    if zlib.crc32(data[: end - 8]) != int.from_bytes(data[end - 8 : end - 4], "big"):
        raise ParseError("Tuya frame CRC-32 does not match")
    return command, data[16 : end - 8]


def announcement(command: int, payload: bytes) -> _Announcement | None:
    """The JSON a discovery frame carries (a 4-byte return code may come first)."""
    if command == UDP_NEW:
        body = payload[4:] if len(payload) % 16 == 4 else payload
        if not body or len(body) % 16:
            raise ParseError("Tuya encrypted payload is not whole AES blocks")
        dec = Cipher(algorithms.AES(UDP_KEY), modes.ECB()).decryptor()
        plain = dec.update(body) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= 16 or plain[-pad:] != bytes((pad,)) * pad:
            raise ParseError("Tuya discovery payload does not decrypt under the fixed key")
        payload = plain[:-pad]
    elif command != UDP:
        return None  # a control or status frame: under the device's own key
    start = payload.find(b"{")
    if start < 0 or start > 4:
        raise ParseError("Tuya discovery payload is not JSON")
    try:
        return _decode(payload[start:])
    except msgspec.DecodeError:
        raise ParseError("Tuya discovery JSON does not parse") from None


def _clip(value: str | None) -> str | None:
    return text(value.encode(), 64) or None if value else None


class TuyaDissector(StreamDissector):
    protocol = "tuya-lp"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.seen: set[tuple] = set()

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        command, payload = frame_payload(data)
        found = announcement(command, payload)
        if found is None:
            return []
        key = (found.gwId, found.productKey, found.version, found.ip)
        if key in self.seen:
            return []  # devices repeat the same broadcast every few seconds
        if len(self.seen) < MAX_SEEN:
            self.seen.add(key)

        return [
            TuyaDiscovery(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                device_id=_clip(found.gwId),
                product_key=_clip(found.productKey),
                protocol_version=_clip(found.version),
                announced_ip=_clip(found.ip),
                encrypted=command == UDP_NEW,
            )
        ]


register_stream("tuya-lp", TuyaDissector)
