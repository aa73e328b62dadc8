"""The event vocabulary: the single contract between sensing and analysis.

Everything upstream (capture, flows, protocols) produces events; every engine downstream
(inventory, intel, risk, detect, controls, ledger) consumes them and imports nothing upstream.
Events are `msgspec.Struct` records tagged by `kind`, so they serialize to JSON or MessagePack
and can cross a process or a message bus unchanged.
"""

from medsentry.events import (  # noqa: F401
    ble,
    credentials,
    dicom,
    hl7,
    http,
    identity,
    mqtt,
    process,
    syslog,
    telemetry,
    tls,
    wlan,
)
from medsentry.events.base import (
    Endpoints,
    Event,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    event_types,
)
from medsentry.events.flow import (
    ArpObserved,
    DecodeWarning,
    FlowRecord,
    NdpObserved,
    ProtocolDetected,
    StreamStats,
)

__all__ = [
    "ArpObserved",
    "DecodeWarning",
    "Endpoints",
    "Event",
    "FlowRecord",
    "NdpObserved",
    "ProtocolDetected",
    "StreamStats",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "event_types",
]
