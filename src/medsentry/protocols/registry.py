"""Which dissector handles which protocol.

A stream (or datagram) dissector handles the flows identified as its protocol; a frame
dissector handles non-IP frames (LLDP, CDP, BLE advertising), which are rare enough to be
handed over one frame at a time. Dissector modules register themselves on import; add the
module's name to `_MODULES` (one line) to have it loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from medsentry.events.base import Event
from medsentry.protocols.base import Dissector, FlowContext

StreamFactory = Callable[[FlowContext], Dissector]
# (linktype, ethertype or 0, frame bytes, ts_ns, interface) -> events
FrameDissector = Callable[[int, int, bytes, int, int], Iterable[Event]]

STREAM_DISSECTORS: dict[str, StreamFactory] = {}
FRAME_DISSECTORS: list[FrameDissector] = []

_MODULES: list[str] = [
    # one line per dissector module, e.g. "medsentry.protocols.dicom",
    "medsentry.protocols.http",
    "medsentry.protocols.tls",
    "medsentry.protocols.quic",
    "medsentry.protocols.dhcp",
    "medsentry.protocols.dns",
    "medsentry.protocols.nbns",
    "medsentry.protocols.ssdp",
    "medsentry.protocols.tuya",
    "medsentry.protocols.mqtt",
    "medsentry.protocols.cleartext",
    "medsentry.protocols.snmp",
    "medsentry.protocols.lldp",
    "medsentry.protocols.ble",
    "medsentry.protocols.ble_hci",
    "medsentry.protocols.ble_gatt",
    "medsentry.protocols.wlan",
    "medsentry.protocols.dicom",
    "medsentry.protocols.hl7",
]
_loaded = False


def register_stream(protocol: str, factory: StreamFactory) -> None:
    STREAM_DISSECTORS[protocol] = factory


def register_frame(dissector: FrameDissector) -> None:
    FRAME_DISSECTORS.append(dissector)


def load() -> None:
    """Import every dissector module once (each registers itself)."""
    global _loaded
    if _loaded:
        return
    for name in _MODULES:
        importlib.import_module(name)
    _loaded = True


def stream_dissector(protocol: str) -> StreamFactory | None:
    load()
    return STREAM_DISSECTORS.get(protocol)
