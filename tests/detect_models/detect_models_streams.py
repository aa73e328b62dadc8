"""Event streams for the model tests: monitored flows of one patient monitor."""

from __future__ import annotations

import numpy as np

from medsentry.events.telemetry import MonitoredFlow, VitalSigns

T0 = 1_700_000_000 * 1_000_000_000
MONITOR_IP, GATEWAY_IP = "10.0.1.172", "10.0.1.150"
MONITOR_MAC = "84:3a:4b:0f:5b:94"
GATEWAY_MAC = "b8:ca:3a:cf:0b:87"
ATTACKER_MAC = "d8:9e:f3:95:02:75"


def vitals(**kw: float) -> VitalSigns:
    base = dict(
        temperature_c=36.8,
        spo2_pct=97.0,
        pulse_rate_bpm=75.0,
        systolic_mmhg=120.0,
        diastolic_mmhg=80.0,
        heart_rate_bpm=75.0,
        resp_rate_bpm=16.0,
        st_segment_mv=0.1,
    )
    base.update(kw)
    return VitalSigns(**base)


def flow(
    i: int,
    *,
    rng: np.random.Generator,
    mac: str = MONITOR_MAC,
    slow: float = 1.0,
    v: VitalSigns | None = None,
) -> MonitoredFlow:
    """One monitoring transaction; `slow` multiplies its inter-packet times (a relay)."""
    iat = float(rng.lognormal(np.log(4.0), 0.15)) * slow
    dur = iat * 3 / 1000.0
    return MonitoredFlow(
        ts_ns=T0 + i * 1_000_000_000,
        flow_id=f"f{i}",
        client=MONITOR_IP,
        server=GATEWAY_IP,
        client_port=50000 + i % 1000,
        server_port=1111,
        client_mac=mac,
        server_mac=GATEWAY_MAC,
        duration_s=dur,
        packets=7,
        bytes_c2s=496,
        bytes_s2c=186,
        load_c2s_bps=496 * 8 / dur,
        load_s2c_bps=186 * 8 / dur,
        rate_pps=7 / dur,
        iat_c2s_ms=iat,
        iat_s2c_ms=iat * 0.6,
        jitter_c2s_ms=iat * 0.7,
        jitter_s2c_ms=iat * 0.5,
        max_size_c2s=310,
        max_size_s2c=66,
        min_size_c2s=60,
        min_size_s2c=60,
        vitals=v if v is not None else vitals(),
    )
