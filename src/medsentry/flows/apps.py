"""Per-flow application layer: identification and dissectors over reassembled bytes.

Only flows whose payload the kernel selected reach this module (a Python object per flow, never
per packet of a flow that needs nothing). For each such flow it keeps the two reassemblers (TCP)
or the first datagrams (UDP), the first `first_bytes` of each direction for identification, and,
once the protocol is known, the flow's dissector. Until then, what was delivered is held (in
arrival order) and replayed to the dissector when it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from medsentry.events.base import Event
from medsentry.events.flow import DecodeWarning, ProtocolDetected, StreamStats
from medsentry.flows import kernels as K
from medsentry.flows.reassembly import Delivery, StreamReassembler
from medsentry.flows.table import FlowTable
from medsentry.protocols.base import FlowContext, ParseError

log = logging.getLogger(__name__)

IdentifyFn = Callable[[int, int, int, bytes, bytes, bool], Any]
# (protocol, method, confidence)
AppResult = tuple[str | None, str | None, float]
NO_APP: AppResult = (None, None, 0.0)


def load_identifier() -> IdentifyFn | None:
    """`medsentry.protocols.identify.identify`, or None while that module does not exist."""
    try:
        from medsentry.protocols.identify import identify
    except ModuleNotFoundError as exc:
        if exc.name == "medsentry.protocols.identify":
            return None
        raise
    return identify


class FlowApp:
    """Application-layer state of one flow (directions: 0 client->server, 1 server->client)."""

    __slots__ = (
        "client",
        "dissector",
        "fed",
        "first",
        "flow_id",
        "gave_up",
        "held",
        "ident",
        "new_bytes",
        "ports",
        "proto",
        "slot",
        "streams",
        "whole",
    )

    def __init__(self, slot: int, flow_id: str, proto: int, client: int, ports: tuple[int, int]):
        self.slot = slot
        self.flow_id = flow_id
        self.proto = proto
        self.client = client  # canonical side of the client (kernel direction d -> d ^ client)
        self.ports = ports  # (client port, server port)
        self.streams: list[StreamReassembler] | None = None
        self.first = [bytearray(), bytearray()]
        self.held: list[tuple[int, Delivery, int]] | None = []
        self.ident: Any = None
        self.gave_up = False  # identification failed: no more attempts
        self.new_bytes = False
        self.dissector: Any = None
        self.whole = False
        self.fed = [0, 0]


class AppLayer:
    """Identification and dissection for the flows of one FlowTable."""

    def __init__(
        self,
        table: FlowTable,
        *,
        identify: IdentifyFn | None,
        first_bytes: int,
        phi_key: bytes | None,
        dissectors: bool = True,
        max_pending_bytes: int = 256 * 1024,
        dissector_lookup: Callable[[str], Any] | None = None,
    ):
        self.table = table
        self.identify = identify
        self.first_bytes = first_bytes
        self.phi_key = phi_key or b""
        self.dissectors = dissectors
        self.max_pending_bytes = max_pending_bytes
        self._lookup = dissector_lookup
        self.apps: dict[int, FlowApp] = {}
        self.warnings = 0

    # -- wiring -----------------------------------------------------------------------------

    def _factory(self, protocol: str, ts: int, events: list[Event]) -> Any:
        if not self.dissectors:
            return None
        if self._lookup is None:
            from medsentry.protocols import registry

            self._lookup = registry.stream_dissector
        try:
            return self._lookup(protocol)
        except Exception as exc:  # a dissector module that fails to import
            self.dissectors = False
            self._warn(ts, "dissector registry", f"cannot load dissectors: {exc}", events)
            return None

    def _warn(self, ts: int, source: str, message: str, events: list[Event]) -> None:
        self.warnings += 1
        events.append(DecodeWarning(ts_ns=ts, source=source, offset=None, message=message))

    def _new(self, slots: list[int]) -> None:
        """FlowApps for flows seeing their first selected payload (one pass over the table)."""
        import numpy as np

        t = self.table
        idx = np.array(slots, np.int32)
        ids = t.flow_ids(idx)
        client = t.u8[idx, K.B_CLIENT].astype(np.intp)
        rows = np.arange(idx.size)
        ports = t.u32[idx, K.U_PORT : K.U_PORT + 2]
        cports = ports[rows, client].tolist()
        sports = ports[rows, 1 - client].tolist()
        protos = t.u8[idx, K.B_PROTO].tolist()
        mp = self.max_pending_bytes
        for slot, fid, proto, c, cp, sp in zip(
            slots, ids, protos, client.tolist(), cports, sports, strict=True
        ):
            app = FlowApp(slot, fid, proto, c, (cp, sp))
            if proto == K.IPPROTO_TCP:
                app.streams = [StreamReassembler(mp), StreamReassembler(mp)]
            self.apps[slot] = app

    # -- per kernel range -------------------------------------------------------------------

    def handle_range(self, pb: Any, lo: int, hi: int, events: list[Event]) -> None:
        """Deliver the payload the kernel selected in packets [lo, hi), identify, dissect."""
        import numpy as np

        t = self.table
        dirs = t.pkt_dir[lo:hi]
        sel = np.flatnonzero(dirs & K.EMITTED)
        if sel.size == 0:
            return
        sel += lo
        touched = self._deliver(pb, sel, events)
        upgraded: list[int] = []
        for slot in touched:
            app = self.apps[slot]
            if app.ident is None and app.new_bytes and not app.gave_up:
                app.new_bytes = False
                ts = int(pb.raw.ts_ns[sel[-1]])
                self._identify(slot, app, False, ts, events)
                if app.whole:
                    upgraded.append(slot)
        if upgraded:
            # bytes of the same range the kernel did not select before the flow wanted them all
            slots = t.pkt_slot[lo:hi]
            late = np.flatnonzero(
                np.isin(slots, np.array(upgraded, np.int32))
                & ((dirs & K.EMITTED) == 0)
                & (pb.pl_len[lo:hi] > 0)
            )
            if late.size:
                self._deliver(pb, late + lo, events)
            for slot in upgraded:
                app = self.apps[slot]
                if app.streams is None:
                    continue
                for cdir in (0, 1):
                    # payload the kernel counted but never selected: a hole to jump, not wait on
                    if t.payload_bytes(slot, cdir ^ app.client) > app.streams[cdir].seen:
                        app.streams[cdir].resync()

    def _deliver(self, pb: Any, sel: Any, events: list[Event]) -> list[int]:
        """Hand the payload of packets `sel` (in packet order) to their flows.

        Consecutive selected packets of the same flow and direction whose sequence numbers
        follow on (a bulk transfer: the peer's ACKs carry no payload and are not selected) are
        joined into one segment, so Python works per run of packets, not per packet.
        """
        import numpy as np

        t = self.table
        slots_a = t.pkt_slot[sel]
        dirs_a = t.pkt_dir[sel] & K.DIR_MASK
        rels_a = t.pkt_rel[sel].astype(np.int64)
        lens_a = pb.pl_len[sel].astype(np.int64)
        data = np.empty(int(lens_a.sum()), np.uint8)
        K.gather(pb.raw.buf, pb.pl_off[sel], lens_a, data)
        ends = np.cumsum(lens_a)
        n = sel.shape[0]
        start = np.ones(n, np.bool_)
        if n > 1:
            start[1:] = (
                (slots_a[1:] != slots_a[:-1])
                | (dirs_a[1:] != dirs_a[:-1])
                | (((rels_a[:-1] + lens_a[:-1] - rels_a[1:]) & 0xFFFFFFFF) != 0)
                | (pb.proto[sel][1:] != K.IPPROTO_TCP)
            )
        first = np.flatnonzero(start)
        last = np.empty_like(first)
        last[:-1] = first[1:] - 1
        last[-1] = n - 1
        blob = data.tobytes()
        begin = (ends - lens_a)[first].tolist()
        stop = ends[last].tolist()
        tss = pb.raw.ts_ns[sel][last].tolist()
        multi = (last > first).tolist()
        touched: dict[int, None] = {}
        apps = self.apps
        run_slots = slots_a[first]
        fresh = [s for s in np.unique(run_slots).tolist() if s not in apps]
        if fresh:
            self._new(fresh)
        for j, (slot, d, rel, b, e, ts) in enumerate(
            zip(
                run_slots.tolist(),
                dirs_a[first].tolist(),
                rels_a[first].tolist(),
                begin,
                stop,
                tss,
                strict=True,
            )
        ):
            app = apps[slot]
            touched[slot] = None
            cdir = d ^ app.client
            if app.streams is not None:
                stream = app.streams[cdir]
                if multi[j] and stream.unwrap(rel) != stream.next:
                    # not plain in-order data: segment by segment, so the counts stay exact
                    k0, k1 = int(first[j]), int(last[j]) + 1
                    items = []
                    for r, pe, ln in zip(
                        rels_a[k0:k1].tolist(),
                        ends[k0:k1].tolist(),
                        lens_a[k0:k1].tolist(),
                        strict=True,
                    ):
                        items += stream.segment(r, blob[pe - ln : pe])
                else:
                    items = stream.segment(rel, blob[b:e])
                for item in items:
                    self._route(app, cdir, item, ts, events)
            else:
                self._route(app, cdir, blob[b:e], ts, events)
        return list(touched)

    def _route(self, app: FlowApp, cdir: int, item: Delivery, ts: int, events: list[Event]) -> None:
        if app.held is not None:
            app.held.append((cdir, item, ts))
            if isinstance(item, bytes):
                first = app.first[cdir]
                room = self.first_bytes - len(first)
                if room > 0 and (app.streams is not None or not first):
                    # TCP: the first bytes of the stream; UDP: the first datagram
                    first += item[:room]
                    app.new_bytes = True
        if app.dissector is not None:
            self._feed(app, cdir, item, ts, events)

    def _feed(self, app: FlowApp, cdir: int, item: Delivery, ts: int, events: list[Event]) -> None:
        d = app.dissector
        try:
            if isinstance(item, int):
                out: Iterable[Event] = d.gap(cdir, item, ts)
            else:
                if not app.whole:
                    room = self.first_bytes - app.fed[cdir]
                    if room <= 0:
                        return
                    item = item[:room]
                    app.fed[cdir] += len(item)
                out = d.feed(cdir, item, ts)
            if out:
                events.extend(out)
        except Exception as exc:
            self._detach(app, exc, ts, events)

    def _detach(self, app: FlowApp, exc: Exception, ts: int, events: list[Event]) -> None:
        proto = getattr(app.dissector, "protocol", None) or (app.ident and app.ident.protocol)
        # a ParseError message is the dissector's own; any other exception may quote input
        # bytes (PHI), so only its type is kept
        what = str(exc) if isinstance(exc, ParseError) else f"{type(exc).__name__} in dissector"
        self._warn(ts, f"{proto} dissector, flow {app.flow_id}", what[:300], events)
        log.debug("dissector %s detached from flow %s", proto, app.flow_id)
        app.dissector = None
        app.whole = False
        self.table.set_want(app.slot, 0, K.WANT_NONE)
        self.table.set_want(app.slot, 1, K.WANT_NONE)

    def _identify(self, slot: int, app: FlowApp, final: bool, ts: int, events: list[Event]):
        if self.identify is None:
            return
        try:
            res = self.identify(
                app.proto,
                app.ports[0],
                app.ports[1],
                bytes(app.first[0]),
                bytes(app.first[1]),
                final,
            )
        except Exception as exc:  # a fault in identification must not end the scan
            self._warn(ts, f"identification, flow {app.flow_id}", type(exc).__name__, events)
            app.gave_up = True
            app.held = None
            for side in (0, 1):
                self.table.set_want(slot, side, K.WANT_NONE)
            return
        if res is None:
            return
        app.ident = res
        events.append(
            ProtocolDetected(
                ts_ns=ts,
                flow_id=app.flow_id,
                protocol=res.protocol,
                method=res.method,
                confidence=float(res.confidence),
                detail=res.detail,
            )
        )
        held, app.held = app.held or [], None
        factory = self._factory(res.protocol, ts, events)
        want = K.WANT_NONE
        if factory is not None:
            try:
                app.dissector = factory(
                    FlowContext(app.flow_id, self.table.endpoints(slot), self.phi_key)
                )
                app.whole = bool(getattr(app.dissector, "whole_stream", False))
            except Exception as exc:
                app.dissector = object()
                self._detach(app, exc, ts, events)
                return
            for cdir, item, t in held:
                if app.dissector is None:
                    break
                self._feed(app, cdir, item, t, events)
            if app.dissector is not None:
                want = K.WANT_ALL if app.whole else K.WANT_FIRST
        for side in (0, 1):
            self.table.set_want(slot, side, want)

    # -- flow end ---------------------------------------------------------------------------

    def expire(
        self,
        slot: int,
        flow_id: str,
        proto: int,
        client: int,
        ports: tuple[int, int],
        last_ns: int,
        events: list[Event],
    ) -> tuple[AppResult, StreamStats | None, StreamStats | None]:
        """The flow in `slot` ended: flush, identify with final=True, close its dissector."""
        app = self.apps.pop(slot, None)
        if app is None:
            if self.identify is None or proto not in (K.IPPROTO_TCP, K.IPPROTO_UDP):
                return NO_APP, None, None
            app = FlowApp(slot, flow_id, proto, client, ports)
        if app.streams is not None and app.dissector is not None and app.whole:
            for cdir in (0, 1):
                for item in app.streams[cdir].finish():
                    if app.dissector is None:
                        break
                    self._feed(app, cdir, item, last_ns, events)
        if app.ident is None and not app.gave_up:
            self._identify(slot, app, True, last_ns, events)
        if app.dissector is not None:
            try:
                out = app.dissector.close(last_ns)
                if out:
                    events.extend(out)
            except Exception as exc:
                self._detach(app, exc, last_ns, events)
        sc = ss = None
        if app.streams is not None and app.whole:
            sc, ss = app.streams[0].stats(), app.streams[1].stats()
        return self._result(app), sc, ss

    @staticmethod
    def _result(app: FlowApp) -> AppResult:
        if app.ident is None:
            return NO_APP
        return (app.ident.protocol, app.ident.method, float(app.ident.confidence))
