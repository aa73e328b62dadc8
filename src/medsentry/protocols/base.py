"""The dissector interface: reassembled bytes of one flow in, typed events out.

The flow layer creates one dissector per flow once the flow's protocol is identified and feeds it
each direction's bytes in order (`feed`), tells it where bytes are missing (`gap`), and closes it
when the flow ends. Datagram protocols get one `feed` per datagram. A dissector reduces PHI to
flags, counts or keyed hashes (`FlowContext.phi_hash`) before anything leaves it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from medsentry.events.base import Endpoints, Event

CLIENT_TO_SERVER = 0
SERVER_TO_CLIENT = 1


@dataclass(frozen=True, slots=True)
class FlowContext:
    flow_id: str
    endpoints: Endpoints
    phi_key: bytes  # per-installation HMAC key

    def phi_hash(self, value: bytes | str) -> str:
        """Keyed hash of an identifying value (HMAC-SHA-256, truncated to 16 hex digits)."""
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        h = _keyed(self.phi_key).copy()  # the key's pads computed once (RFC 2104 §2)
        h.update(value)
        return h.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


class ParseError(Exception):
    """A dissector met bytes that are not its protocol; the flow layer records and stops it."""


class Dissector(Protocol):
    protocol: ClassVar[str]
    whole_stream: ClassVar[bool]  # False: only the first bytes of each direction are fed

    def feed(self, direction: int, data: bytes, ts_ns: int) -> Iterable[Event]: ...

    def gap(self, direction: int, length: int, ts_ns: int) -> Iterable[Event]: ...

    def close(self, ts_ns: int) -> Iterable[Event]: ...
