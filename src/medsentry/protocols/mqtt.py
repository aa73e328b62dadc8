"""MQTT 3.1, 3.1.1 and 5.0 control packets (OASIS MQTT 3.1.1 §2-3, MQTT 5.0 §2-3).

CONNECT gives the client id, protocol level and whether a username/password crossed in clear
(the username is hashed, the password never kept); CONNACK the verdict; SUBSCRIBE the topic
filters; PUBLISH the topic only: payloads are skipped as they arrive, never buffered. Client
ids, topics and filters leave as templates: a level that names a patient or a record is "{id}"
("ward3/patient/{id}/spo2"), wildcards and generic levels stay (protocols/template.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.mqtt import MqttConnack, MqttConnect, MqttPublish, MqttSubscribe
from medsentry.protocols import template
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

# MQTT 3.1.1 §2.2.1 control packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
MAX_PACKET = 256 * 1024  # a non-PUBLISH packet larger than this is not MQTT we follow
MAX_TOPICS = 1024


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ParseError("MQTT field runs past its packet")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def string(self) -> bytes:
        """MQTT 3.1.1 §1.5.3 UTF-8 encoded string / §1.5.6 binary data: 2-byte length."""
        return self.take(self.u16())

    def varint(self) -> int:
        """MQTT 5.0 §1.5.5 Variable Byte Integer (at most 4 bytes)."""
        value = 0
        for i in range(4):
            b = self.u8()
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return value
        raise ParseError("MQTT variable byte integer longer than 4 bytes")

    def properties(self) -> None:
        """MQTT 5.0 §2.2.2: a property length, then the properties (skipped)."""
        self.take(self.varint())


@dataclass(slots=True)
class _Side:
    buf: bytearray = field(default_factory=bytearray)
    skip: int = 0  # PUBLISH payload bytes still to discard
    topics: set[bytes] = field(default_factory=set)  # raw names seen (never leave)
    templates: set[str] = field(default_factory=set)  # their templates already reported


def _remaining_length(buf: bytearray) -> tuple[int, int] | None:
    """MQTT 3.1.1 §2.2.3: (value, bytes used), None while incomplete."""
    value = 0
    for i in range(4):
        if 1 + i >= len(buf):
            return None
        b = buf[1 + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, i + 1
    raise ParseError("MQTT remaining length longer than 4 bytes")


class MqttDissector(StreamDissector):
    protocol = "mqtt"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.sides = (_Side(), _Side())
        self.level = 4
        self.pending_credentials: CleartextCredentials | None = None

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        side = self.sides[direction]
        out: list[Event] = []
        if side.skip:
            n = min(side.skip, len(data))
            side.skip -= n
            data = data[n:]
        side.buf += data
        while side.buf and not side.skip:
            ptype = side.buf[0] >> 4
            if ptype == 0:
                raise ParseError("MQTT packet type 0 is reserved")
            rl = _remaining_length(side.buf)
            if rl is None:
                return out
            length, used = rl
            head = 1 + used
            if ptype == PUBLISH:
                if len(side.buf) < head + 2:
                    return out
                tlen = struct.unpack(">H", side.buf[head : head + 2])[0]
                if tlen + 2 > length:
                    raise ParseError("MQTT PUBLISH topic longer than the packet")
                if len(side.buf) < head + 2 + tlen:
                    return out
                self._publish(
                    direction,
                    side,
                    side.buf[0],
                    bytes(side.buf[head + 2 : head + 2 + tlen]),
                    length - 2 - tlen,
                    ts_ns,
                    out,
                )
                have = len(side.buf) - head
                if have >= length:
                    del side.buf[: head + length]
                else:
                    side.skip = length - have
                    side.buf.clear()
                continue
            if length > MAX_PACKET:
                raise ParseError(f"MQTT packet of {length} bytes exceeds {MAX_PACKET}")
            if len(side.buf) < head + length:
                return out
            body = bytes(side.buf[head : head + length])
            flags = side.buf[0] & 0x0F
            del side.buf[: head + length]
            self._packet(direction, ptype, flags, body, ts_ns, out)
        return out

    def close(self, ts_ns: int) -> list[Event]:
        if self.pending_credentials is not None:
            ev, self.pending_credentials = self.pending_credentials, None
            return [ev]
        return []

    def _packet(
        self, direction: int, ptype: int, flags: int, body: bytes, ts_ns: int, out: list[Event]
    ) -> None:
        if ptype == CONNECT and direction == CLIENT_TO_SERVER:
            self._connect(body, ts_ns, out)
        elif ptype == CONNACK and direction != CLIENT_TO_SERVER:
            r = _Reader(body)
            ack_flags, code = r.u8(), r.u8()
            out.append(
                MqttConnack(
                    ts_ns=ts_ns,
                    flow_id=self.ctx.flow_id,
                    endpoints=self.ctx.endpoints,
                    return_code=code,
                    accepted=code == 0,
                    session_present=bool(ack_flags & 1),
                )
            )
            if self.pending_credentials is not None:
                c = self.pending_credentials
                self.pending_credentials = None
                out.append(
                    CleartextCredentials(
                        ts_ns=c.ts_ns,
                        flow_id=c.flow_id,
                        endpoints=c.endpoints,
                        protocol="mqtt",
                        mechanism="connect",
                        username_hash=c.username_hash,
                        password_sent=c.password_sent,
                        accepted=code == 0,
                    )
                )
        elif ptype == SUBSCRIBE and direction == CLIENT_TO_SERVER:
            r = _Reader(body)
            r.u16()  # packet identifier
            if self.level == 5:
                r.properties()
            filters: list[str] = []
            max_qos = 0
            while r.pos < len(body) and len(filters) < 64:
                filters.append(text(r.string(), 512))
                max_qos = max(max_qos, r.u8() & 0x03)
            if not filters:
                raise ParseError("MQTT SUBSCRIBE without a topic filter (3.1.1 §3.8.3)")
            out.append(
                MqttSubscribe(
                    ts_ns=ts_ns,
                    flow_id=self.ctx.flow_id,
                    endpoints=self.ctx.endpoints,
                    topic_filters=[template.topic_template(f) for f in filters],
                    wildcard=any("+" in f or "#" in f for f in filters),
                    multi_level_wildcard=any(f == "#" or f.endswith("/#") for f in filters),
                    max_qos=max_qos,
                )
            )

    def _connect(self, body: bytes, ts_ns: int, out: list[Event]) -> None:
        """MQTT 3.1.1 §3.1 / 5.0 §3.1 CONNECT."""
        r = _Reader(body)
        name = r.string()
        if name not in (b"MQTT", b"MQIsdp"):
            raise ParseError("MQTT CONNECT protocol name is neither MQTT nor MQIsdp")
        level, flags, keepalive = r.u8(), r.u8(), r.u16()
        self.level = level
        if level == 5:
            r.properties()
        client_id = template.client_id_template(text(r.string(), 256))
        will_topic = None
        if flags & 0x04:  # Will Flag
            if level == 5:
                r.properties()
            will_topic = template.topic_template(text(r.string(), 512))
            r.string()  # will payload: not kept
        user = r.string() if flags & 0x80 else None
        password = bool(flags & 0x40)
        out.append(
            MqttConnect(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                protocol_name=name.decode("ascii"),
                protocol_level=level,
                client_id=client_id,
                clean_session=bool(flags & 0x02),
                keepalive=keepalive,
                username_present=user is not None,
                password_present=password,
                will_present=bool(flags & 0x04),
                will_topic=will_topic,
            )
        )
        if user is not None or password:
            self.pending_credentials = CleartextCredentials(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                protocol="mqtt",
                mechanism="connect",
                username_hash=self.ctx.phi_hash(user) if user is not None else None,
                password_sent=password,
            )

    def _publish(
        self,
        direction: int,
        side: _Side,
        first: int,
        topic: bytes,
        rest: int,
        ts_ns: int,
        out: list[Event],
    ) -> None:
        """MQTT 3.1.1 §3.3 PUBLISH: the first sight of each topic template per direction."""
        if topic in side.topics or len(side.topics) >= MAX_TOPICS:
            return
        side.topics.add(topic)
        qos = (first >> 1) & 0x03
        if qos == 3:
            raise ParseError("MQTT PUBLISH with QoS 3 (3.1.1 §3.3.1.2)")
        name = template.topic_template(text(topic, 512))
        if name in side.templates:
            return
        side.templates.add(name)
        payload = rest - (2 if qos else 0)  # packet identifier (and v5 properties) precede
        out.append(
            MqttPublish(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                topic=name,
                from_client=direction == CLIENT_TO_SERVER,
                qos=qos,
                retain=bool(first & 1),
                payload_length=max(payload, 0),
            )
        )


register_stream("mqtt", MqttDissector)
