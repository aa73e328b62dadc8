"""Event base class, shared sub-records and (de)serialization."""

from __future__ import annotations

import functools
from typing import Any

import msgspec


class Event(msgspec.Struct, tag_field="kind", kw_only=True, frozen=True):
    """Base of every event. `ts_ns` is the observation time in nanoseconds since the epoch.

    Subclasses set `tag="..."` (the `kind` on the wire). Events never hold PHI: dissectors
    reduce patient values to presence flags, counts or keyed hashes before building an event.
    """

    ts_ns: int


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """Who talked to whom, oriented client -> server (initiator -> responder)."""

    client: str
    server: str
    client_port: int = 0
    server_port: int = 0
    client_mac: str | None = None
    server_mac: str | None = None
    vlan: int | None = None
    transport: str = "tcp"

    def sender(self, direction: int) -> tuple[str, str | None]:
        """(address, MAC) of the end that sent a message in `direction` (0: the client)."""
        return (self.client, self.client_mac) if direction == 0 else (self.server, self.server_mac)


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def event_types() -> tuple[type[Event], ...]:
    """Every concrete, tagged event class known once all event modules are imported."""
    import medsentry.events  # noqa: F401  (registers the vocabulary)

    return tuple(c for c in _all_subclasses(Event) if c.__struct_config__.tag is not None)


@functools.cache
def _json_decoder(types: tuple[type, ...]) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(functools.reduce(lambda a, b: a | b, types))


@functools.cache
def _msgpack_decoder(types: tuple[type, ...]) -> msgspec.msgpack.Decoder:
    return msgspec.msgpack.Decoder(functools.reduce(lambda a, b: a | b, types))


_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def encode_json(event: Event) -> bytes:
    return _json_encoder.encode(event)


def encode_msgpack(event: Event) -> bytes:
    return _msgpack_encoder.encode(event)


def decode_json(data: bytes | str) -> Any:
    """Decode one JSON event of any registered kind (raises msgspec.ValidationError)."""
    return _json_decoder(event_types()).decode(data)


def decode_msgpack(data: bytes) -> Any:
    return _msgpack_decoder(event_types()).decode(data)
