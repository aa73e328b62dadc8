"""The dissector interface: reassembled bytes of one flow in, typed events out.

The flow layer creates one dissector per flow once the flow's protocol is identified and feeds it
each direction's bytes in order (`feed`), tells it where bytes are missing (`gap`), and closes it
when the flow ends. Datagram protocols get one `feed` per datagram. A dissector reduces PHI to
flags, counts or keyed hashes (`FlowContext.phi_hash`) before anything leaves it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

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
        inner, outer = _pads(self.phi_key)
        h = inner.copy()
        h.update(value)
        o = outer.copy()
        o.update(h.digest())
        return o.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the key's inner and outer pads: HMAC = H(K ^ opad, H(K ^ ipad, m))
    (RFC 2104 §2), so each hash copies them instead of hashing the pads again."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()  # RFC 2104 §2: a key longer than B is hashed first
    key = key.ljust(_BLOCK, b"\0")
    return (
        hashlib.sha256(key.translate(_IPAD)),
        hashlib.sha256(key.translate(_OPAD)),
    )


_BLOCK = 64  # SHA-256 block size in bytes (B in RFC 2104)
_IPAD = bytes(b ^ 0x36 for b in range(256))  # RFC 2104 §2: ipad = 0x36 repeated
_OPAD = bytes(b ^ 0x5C for b in range(256))  # opad = 0x5C repeated


class ParseError(Exception):
    """A dissector met bytes that are not its protocol; the flow layer records and stops it."""


class Dissector(Protocol):
    """Optional: `takes_views = True` lets the flow layer feed a whole-stream dissector its
    in-order bytes as a memoryview, valid during the call only (it copies what it keeps)."""

    protocol: ClassVar[str]
    whole_stream: ClassVar[bool]  # False: only the first bytes of each direction are fed

    def feed(self, direction: int, data: bytes, ts_ns: int) -> Iterable[Event]: ...

    def gap(self, direction: int, length: int, ts_ns: int) -> Iterable[Event]: ...

    def close(self, ts_ns: int) -> Iterable[Event]: ...
