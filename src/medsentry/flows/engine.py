"""Packet batches in, events out: flow table + application layer + ARP + IPv6 Neighbor
Discovery + frame dissectors.

`FlowEngine.process(batch)` runs the flow kernel over the batch (resuming after the table grows
or releases expired slots), hands selected payload to the application layer, turns expired
flows into `FlowRecord`s and sweeps idle flows on packet time. `finish()` ends every flow still
open. Python work follows flows and application messages, not packets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from medsentry.capture.batch import DECODE_OK, PacketBatch
from medsentry.events.base import Event
from medsentry.events.flow import DecodeWarning
from medsentry.flows.apps import AppLayer, IdentifyFn
from medsentry.flows.arp import arp_events
from medsentry.flows.frames import frame_bytes, select_frames
from medsentry.flows.ndp import ndp_events
from medsentry.flows.processes import process_events
from medsentry.flows.table import FlowTable

_FB_EASY_BYTES = 32 << 20  # first-bytes pool grown freely up to this size


@dataclass
class EngineConfig:
    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    tcp_linger_s: float = 2.0  # after FIN from both sides or RST: trailing ACKs stay
    first_bytes: int = 4096
    udp_first_datagrams: int = 2
    max_pending_bytes: int = 256 * 1024  # out-of-order bytes held per direction
    sweep_interval_s: float = 1.0
    dissectors: bool = True
    phi_key: bytes | None = None
    initial_capacity: int = 4096


@dataclass
class EngineCounters:
    packets: int = 0
    bytes: int = 0  # captured bytes
    flows: int = 0
    protocols: Counter = field(default_factory=Counter)
    hosts: set = field(default_factory=set)
    warnings: int = 0
    decode_errors: Counter = field(default_factory=Counter)
    frames: int = 0  # frames given to frame dissectors


class FlowEngine:
    """Stateful across batches (and files): feed batches in time order, then `finish`."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        identify: IdentifyFn | None = None,
        frame_dissectors: list | None = None,
        dissector_lookup=None,
    ):
        self.config = cfg = config or EngineConfig()
        self.table = FlowTable(
            idle_timeout_s=cfg.idle_timeout_s,
            active_timeout_s=cfg.active_timeout_s,
            linger_s=cfg.tcp_linger_s,
            first_bytes=cfg.first_bytes,
            udp_first_datagrams=cfg.udp_first_datagrams,
            want_payload=identify is not None and cfg.dissectors,
            gather=identify is not None,
            capacity=cfg.initial_capacity,
        )
        self.apps = AppLayer(
            self.table,
            identify=identify,
            first_bytes=cfg.first_bytes,
            phi_key=cfg.phi_key,
            dissectors=cfg.dissectors,
            max_pending_bytes=cfg.max_pending_bytes,
            dissector_lookup=dissector_lookup,
        )
        self.frame_dissectors = frame_dissectors if cfg.dissectors else []
        for fd in self.frame_dissectors or ():  # per-capture state in a frame dissector: afresh
            reset = getattr(fd, "reset", None)
            if reset is not None:
                reset()
        self.counters = EngineCounters()
        self.capture_id: str | None = None
        self._sweep_ns = int(cfg.sweep_interval_s * 1e9)
        self._last_sweep = 0
        self._process_seen: set[tuple] = set()  # (process, flow id) pairs already told

    # -- batches ----------------------------------------------------------------------------

    def process(self, pb: PacketBatch) -> list[Event]:
        events: list[Event] = []
        n = len(pb)
        if n == 0:
            return events
        c = self.counters
        c.packets += n
        c.bytes += int(pb.raw.caplen.sum())
        if (pb.err != DECODE_OK).any():
            codes, counts = np.unique(pb.err[pb.err != DECODE_OK], return_counts=True)
            for code, cnt in zip(codes.tolist(), counts.tolist(), strict=True):
                c.decode_errors[code] += cnt
        t = self.table
        pos = 0
        while pos < n:
            stop = t.process(pb, pos)
            out_of_blocks = stop < n and t.free_blocks == 0
            if pb.raw.processes is not None:  # the app first, then what its flows carried
                events.extend(process_events(pb, t, self._process_seen, pos, stop))
            self.apps.handle_range(pb, pos, stop, events)
            self._expired(events)
            if stop < n:
                if t.free_slots * 4 < t.capacity:  # few slots came back: grow, not churn
                    t.grow()
                # blocks: enough for the flows a batch starts (up to _FB_EASY_BYTES), more when
                # most of them wait on undecided flows
                if t.free_blocks * 4 < t.fb_blocks or (
                    out_of_blocks and t.fb_blocks * t.fb_size < _FB_EASY_BYTES
                ):
                    t.grow_blocks()
            pos = stop
        events.extend(arp_events(pb, t.fmt_ip))
        events.extend(ndp_events(pb, t.fmt_ip))
        if self.frame_dissectors:
            self._frames(pb, events)
        now = t.now_ns
        if now - self._last_sweep >= self._sweep_ns:
            self._last_sweep = now
            t.sweep(now)
            self._expired(events)
        return events

    def tick(self, now_ns: int) -> list[Event]:
        """No packets for a while (a quiet live link): expire flows against a clock time."""
        events: list[Event] = []
        if now_ns > self.table.now_ns:
            self._last_sweep = now_ns
            self.table.sweep(now_ns)
            self._expired(events)
        return events

    def finish(self) -> list[Event]:
        """End every open flow (end of input, or a live capture stopped)."""
        events: list[Event] = []
        self.table.flush()
        self._expired(events)
        return events

    # -- internals --------------------------------------------------------------------------

    def _expired(self, events: list[Event]) -> None:
        t = self.table
        slots = t.take_expired()
        if slots.size == 0:
            return
        app, streams = self.apps.expire(slots, events)
        recs = t.records(slots, t.flow_ids(slots), app, streams, self.capture_id)
        events.extend(recs)
        c = self.counters
        c.flows += len(recs)
        c.protocols.update(p or "unknown" for p, _, _ in app)
        keys = t.host_keys(slots)
        c.hosts.update(zip(keys[:, 0].tolist(), keys[:, 1].tolist(), strict=True))
        t.release(slots)
        c.warnings = self.apps.warnings

    def _frames(self, pb: PacketBatch, events: list[Event]) -> None:
        for i, ethertype in select_frames(pb):
            data = frame_bytes(pb, i)
            ts = int(pb.raw.ts_ns[i])
            lt = int(pb.raw.linktype[i])
            iface = int(pb.raw.iface[i])
            self.counters.frames += 1
            for fd in self.frame_dissectors:
                try:
                    out = fd(lt, ethertype, data, ts, iface)
                    if out:
                        events.extend(out)
                except Exception as exc:
                    self.apps.warnings += 1
                    self.counters.warnings = self.apps.warnings
                    name = getattr(fd, "__module__", "frame dissector")
                    events.append(
                        DecodeWarning(
                            ts_ns=ts,
                            source=f"{name} on {pb.raw.source}",
                            offset=int(pb.raw.buf_offset + pb.raw.off[i]),
                            message=f"{type(exc).__name__} in frame dissector "
                            f"(frame {pb.raw.first_frame + i})",
                        )
                    )
