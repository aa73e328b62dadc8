"""Host-agnostic flow features for the anomaly models.

Only the shape of a flow goes in: sizes, counts, durations, rates, inter-packet times. Nothing
that names a host (addresses, MACs, ports, flow ids, packet sequence numbers) is a feature, so
a model learns what traffic looks like, not who sent it. Heavy-tailed metrics are compressed
with log1p, which makes a tenfold change the same distance wherever it happens.
"""

from __future__ import annotations

import math

from medsentry.events.flow import FlowRecord
from medsentry.events.telemetry import MonitoredFlow


def _log(v: float) -> float:
    return math.log1p(v) if v > 0.0 else 0.0


# MonitoredFlow: the flow meter's metrics (Argus ra(1) names in events/telemetry.py).
MONITORED_FLOW_FEATURES = (
    "duration",
    "packets",
    "bytes_c2s",
    "bytes_s2c",
    "load_c2s",
    "load_s2c",
    "rate",
    "iat_c2s",
    "iat_s2c",
    "jitter_c2s",
    "jitter_s2c",
    "max_size_c2s",
    "max_size_s2c",
    "min_size_c2s",
    "min_size_s2c",
    "loss",
)


def monitored_flow_features(event: MonitoredFlow) -> dict[str, float]:
    return {
        "duration": _log(event.duration_s * 1000.0),  # in ms, as the other times
        "packets": _log(event.packets),
        "bytes_c2s": _log(event.bytes_c2s),
        "bytes_s2c": _log(event.bytes_s2c),
        "load_c2s": _log(event.load_c2s_bps),
        "load_s2c": _log(event.load_s2c_bps),
        "rate": _log(event.rate_pps),
        "iat_c2s": _log(event.iat_c2s_ms),
        "iat_s2c": _log(event.iat_s2c_ms),
        "jitter_c2s": _log(event.jitter_c2s_ms),
        "jitter_s2c": _log(event.jitter_s2c_ms),
        "max_size_c2s": _log(event.max_size_c2s),
        "max_size_s2c": _log(event.max_size_s2c),
        "min_size_c2s": _log(event.min_size_c2s),
        "min_size_s2c": _log(event.min_size_s2c),
        "loss": _log(event.loss_packets),
    }


# FlowRecord: what the flow table measures from packets.
FLOW_RECORD_FEATURES = (
    "duration",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "payload_c2s",
    "payload_s2c",
    "rate",
    "iat_mean",
    "iat_std",
    "iat_min",
    "iat_max",
)


def flow_record_features(event: FlowRecord) -> dict[str, float]:
    dur_s = max(event.last_ns - event.ts_ns, 0) / 1e9
    packets = event.packets_c2s + event.packets_s2c
    return {
        "duration": _log(dur_s * 1000.0),
        "packets_c2s": _log(event.packets_c2s),
        "packets_s2c": _log(event.packets_s2c),
        "bytes_c2s": _log(event.bytes_c2s),
        "bytes_s2c": _log(event.bytes_s2c),
        "payload_c2s": _log(event.payload_c2s),
        "payload_s2c": _log(event.payload_s2c),
        "rate": _log(packets / dur_s) if dur_s > 0 else 0.0,
        "iat_mean": _log(event.iat_mean_us / 1000.0),
        "iat_std": _log(event.iat_std_us / 1000.0),
        "iat_min": _log(event.iat_min_us / 1000.0),
        "iat_max": _log(event.iat_max_us / 1000.0),
    }
