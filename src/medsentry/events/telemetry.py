"""Patient-monitoring telemetry: a metered flow and the vital signs it carried.

A bedside gateway (or a flow meter beside it, e.g. Argus) reports one record per monitoring
transaction: the flow's addresses and metrics, and the physiological values the sensors sent in
it. The values are needed for the integrity checks (impossible values, jumps no body makes) and
nothing else: detectors keep at most the previous reading of a stream in memory, never store,
log or print them (alerts name the vital sign, not its value).
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Event


class VitalSigns(msgspec.Struct, frozen=True, kw_only=True):
    """One set of readings. None: the sensor sent nothing; 0 is kept as sent (a dropout)."""

    temperature_c: float | None = None
    spo2_pct: float | None = None  # peripheral oxygen saturation
    pulse_rate_bpm: float | None = None  # from the pulse oximeter
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    heart_rate_bpm: float | None = None  # from the ECG
    resp_rate_bpm: float | None = None
    st_segment_mv: float | None = None  # ECG ST-segment deviation

    def items(self) -> list[tuple[str, float]]:
        """(name, value) of the readings present."""
        return [(f, v) for f in self.__struct_fields__ if (v := getattr(self, f)) is not None]


class MonitoredFlow(Event, tag="monitored_flow", frozen=True, kw_only=True):
    """One metered flow of a patient-monitoring network, oriented initiator -> responder.

    Metrics follow the flow meter's definitions (Argus ra(1) field names in comments): times in
    milliseconds, loads in bits per second. `ts_ns` is the start of the flow.
    """

    flow_id: str
    client: str
    server: str
    client_port: int = 0
    server_port: int = 0
    client_mac: str | None = None
    server_mac: str | None = None
    transport: str = "tcp"
    duration_s: float = 0.0  # dur
    packets: int = 0  # pkts
    bytes_c2s: int = 0  # sbytes
    bytes_s2c: int = 0  # dbytes
    load_c2s_bps: float = 0.0  # sload
    load_s2c_bps: float = 0.0  # dload
    rate_pps: float = 0.0  # rate
    iat_c2s_ms: float = 0.0  # sintpkt: mean inter-packet time, initiator
    iat_s2c_ms: float = 0.0  # dintpkt
    jitter_c2s_ms: float = 0.0  # sjit
    jitter_s2c_ms: float = 0.0  # djit
    max_size_c2s: int = 0  # smaxsz
    max_size_s2c: int = 0  # dmaxsz
    min_size_c2s: int = 0  # sminsz
    min_size_s2c: int = 0  # dminsz
    loss_packets: int = 0  # loss: retransmitted or dropped
    vitals: VitalSigns | None = None
    capture_id: str | None = None
