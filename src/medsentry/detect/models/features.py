"""Host-agnostic flow features for the anomaly models.

Only the shape of a flow goes in: sizes, counts, durations, rates, inter-packet times. Nothing
that names a host (addresses, MACs, ports, flow ids, packet sequence numbers) is a feature, so
a model learns what traffic looks like, not who sent it. Heavy-tailed metrics are compressed
with log1p, which makes a tenfold change the same distance wherever it happens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter

import numpy as np

from medsentry.events.flow import FlowRecord
from medsentry.events.telemetry import MonitoredFlow
from medsentry.jit import njit


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


# --- many events at once: the same numbers, from arrays ----------------------------------------
# The kernels compute exactly what the functions above compute (the same IEEE operations in the
# same order, and the C library's log1p, which `math.log1p` also calls; NumPy's own log1p may
# differ in the last bit, so it is not used).
_RECORD_INTS = attrgetter("ts_ns", "last_ns", "packets_c2s", "packets_s2c")
_RECORD_REST = attrgetter(
    "bytes_c2s",
    "bytes_s2c",
    "payload_c2s",
    "payload_s2c",
    "iat_mean_us",
    "iat_std_us",
    "iat_min_us",
    "iat_max_us",
)
# the MonitoredFlow fields behind MONITORED_FLOW_FEATURES, in the same order
MONITORED_FIELDS = (
    "duration_s",
    "packets",
    "bytes_c2s",
    "bytes_s2c",
    "load_c2s_bps",
    "load_s2c_bps",
    "rate_pps",
    "iat_c2s_ms",
    "iat_s2c_ms",
    "jitter_c2s_ms",
    "jitter_s2c_ms",
    "max_size_c2s",
    "max_size_s2c",
    "min_size_c2s",
    "min_size_s2c",
    "loss_packets",
)
_MONITORED = attrgetter(*MONITORED_FIELDS)


@njit(cache=True, nogil=True)
def _nlog(v):  # pragma: no cover - compiled
    return math.log1p(v) if v > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _record_kernel(ints, raw, out):  # pragma: no cover - compiled
    """ints: ts_ns, last_ns, packets each way; raw: bytes, payload each way, the four iat."""
    for i in range(raw.shape[0]):
        d = ints[i, 1] - ints[i, 0]
        dur_s = (d if d > 0 else 0) / 1e9
        out[i, 0] = _nlog(dur_s * 1000.0)
        out[i, 1] = _nlog(float(ints[i, 2]))
        out[i, 2] = _nlog(float(ints[i, 3]))
        for j in range(4):  # bytes, payload, each way
            out[i, 3 + j] = _nlog(raw[i, j])
        packets = ints[i, 2] + ints[i, 3]
        out[i, 7] = _nlog(packets / dur_s) if dur_s > 0 else 0.0
        for j in range(4):  # inter-arrival mean, std, min, max
            out[i, 8 + j] = _nlog(raw[i, 4 + j] / 1000.0)


@njit(cache=True, nogil=True)
def _monitored_kernel(raw, out):  # pragma: no cover - compiled
    for i in range(raw.shape[0]):
        out[i, 0] = _nlog(raw[i, 0] * 1000.0)
        for j in range(1, raw.shape[1]):
            out[i, j] = _nlog(raw[i, j])


def flow_record_matrix(events: Sequence[FlowRecord]) -> np.ndarray:
    """`flow_record_features` of each event, as the rows of a (n, 12) array."""
    n = len(events)
    out = np.empty((n, len(FLOW_RECORD_FEATURES)))
    if not n:
        return out
    # times are subtracted as integers (no overflow below 2**62) and packets added as integers
    # (exact in float64 below 2**52, as Python's int): anything else goes through the
    # reference function, row by row
    try:
        ints = np.array(list(map(_RECORD_INTS, events)))
    except (OverflowError, TypeError, ValueError):
        ints = None
    if (
        ints is not None
        and ints.dtype == np.int64
        and ints.shape == (n, 4)
        and int(ints[:, :2].min()) > -(2**62)
        and int(ints[:, :2].max()) < 2**62
        and int(ints[:, 2:].min()) >= 0
        and int(ints[:, 2:].max()) < 2**51
    ):
        rest = np.fromiter(chain.from_iterable(map(_RECORD_REST, events)), np.float64, 8 * n)
        _record_kernel(ints, rest.reshape(n, 8), out)
        return out
    for i, e in enumerate(events):
        out[i] = list(flow_record_features(e).values())
    return out


def monitored_flow_matrix(events: Sequence[MonitoredFlow]) -> np.ndarray:
    """`monitored_flow_features` of each event, as the rows of a (n, 16) array."""
    out = np.empty((len(events), len(MONITORED_FLOW_FEATURES)))
    if events:
        _monitored_kernel(np.array(list(map(_MONITORED, events)), dtype=np.float64), out)
    return out
