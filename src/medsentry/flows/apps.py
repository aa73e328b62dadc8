"""Per-flow application layer: identification over the kernel's first bytes, and dissectors.

The flow kernel gathers the first bytes of each direction of every TCP/UDP flow not yet
identified (TCP: the in-order stream prefix; UDP: the first datagram) and lists the flows whose
bytes grew. After each kernel range this module identifies those flows in one pass (a Python
call per flow and range, never per packet). A flow whose protocol has no registered dissector
costs nothing more: the kernel stops gathering and selecting its payload.

A flow gets a `FlowApp` (Python state) only when it needs one: its protocol has a dissector
(the reassemblers feed it), or dissectors are on and identification is still undecided (the
selected payload is held, in arrival order, and replayed to the dissector when it starts).
Only packets of such flows reach Python, one bytes slice per contiguous run of a flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

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
APP_NONE, APP_DISSECTOR, APP_HOLD = 0, 1, 2  # FlowTable u8[:, B_APP]


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

    __slots__ = ("client", "dissector", "fed", "flow_id", "held", "slot", "streams", "whole")

    def __init__(self, slot: int, flow_id: str, proto: int, client: int, max_pending: int):
        self.slot = slot
        self.flow_id = flow_id
        self.client = client  # canonical side of the client (kernel direction d -> d ^ client)
        self.streams: list[StreamReassembler] | None = None
        if proto == K.IPPROTO_TCP:
            self.streams = [StreamReassembler(max_pending), StreamReassembler(max_pending)]
        self.held: list[tuple[int, Delivery, int]] | None = []
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
        self._factories: dict[str, Any] = {}
        self.apps: dict[int, FlowApp] = {}  # flows with a dissector or held payload
        self.results: dict[int, AppResult] = {}  # identified live flows
        self.warnings = 0
        self._upgraded: list[int] = []
        self._quiet: list[int] = []  # identified without a dissector in this pass

    # -- wiring -----------------------------------------------------------------------------

    def _factory(self, protocol: str, ts: int, events: list[Event]) -> Any:
        if not self.dissectors:
            return None
        try:
            return self._factories[protocol]
        except KeyError:
            pass
        if self._lookup is None:
            from medsentry.protocols import registry

            self._lookup = registry.stream_dissector
        try:
            factory = self._lookup(protocol)
        except Exception as exc:  # a dissector module that fails to import
            self.dissectors = False
            self._warn(ts, "dissector registry", f"cannot load dissectors: {exc}", events)
            return None
        self._factories[protocol] = factory
        return factory

    def _warn(self, ts: int, source: str, message: str, events: list[Event]) -> None:
        self.warnings += 1
        events.append(DecodeWarning(ts_ns=ts, source=source, offset=None, message=message))

    def _app(self, slot: int, flow_id: str) -> FlowApp:
        app = self.apps.get(slot)
        if app is None:
            t = self.table
            app = FlowApp(slot, flow_id, t.proto(slot), t.client_side(slot), self.max_pending_bytes)
            self.apps[slot] = app
        return app

    def _stop(self, slot: int) -> None:
        """No more payload of this flow to Python."""
        u8 = self.table.u8
        u8[slot, K.B_WANT] = u8[slot, K.B_WANT + 1] = K.WANT_NONE
        u8[slot, K.B_APP] = APP_NONE

    # -- per kernel range -------------------------------------------------------------------

    def handle_range(self, pb: Any, lo: int, hi: int, events: list[Event]) -> None:
        """Identify the flows whose first bytes grew, then hand the payload of packets [lo, hi)
        to the flows that have a dissector or hold payload."""
        t = self.table
        dirty = t.take_dirty()
        if dirty.size and self.identify is not None:
            live = dirty[t.u8[dirty, K.B_STATE] == K.LIVE]  # the others end in this range
            if live.size:
                self.identify_slots(live, False, events)
        if not self.apps or hi <= lo:
            self._upgraded = []
            return
        slots = t.pkt_slot[lo:hi]
        dirs = t.pkt_dir[lo:hi]
        want = (dirs & K.EMITTED) != 0
        upgraded = self._upgraded
        if upgraded:
            # bytes of this range the kernel did not select before the flow wanted them all
            want |= np.isin(slots, np.array(upgraded, np.int32)) & (pb.pl_len[lo:hi] > 0)
        cand = np.flatnonzero(want)
        if cand.size:
            sel = cand[t.u8[slots[cand], K.B_APP] != APP_NONE]
            if sel.size:
                self._deliver(pb, sel + lo, events)
        if upgraded:
            self._upgraded = []
            for slot in upgraded:
                app = self.apps.get(slot)
                if app is None or app.streams is None or not app.whole:
                    continue
                for cdir in (0, 1):
                    # payload the kernel counted but never selected: a hole to jump, not wait on
                    if t.payload_bytes(slot, cdir ^ app.client) > app.streams[cdir].seen:
                        app.streams[cdir].resync()

    def identify_slots(self, slots: np.ndarray, final: bool, events: list[Event]) -> None:
        """Identify the flows in `slots` from their first bytes (final: the flows end now)."""
        t = self.table
        ident = self.identify
        if ident is None:
            return
        u8 = t.u8[slots]
        client = u8[:, K.B_CLIENT].astype(np.intp)
        rows = np.arange(slots.size)
        ports = t.u32[slots, K.U_PORT : K.U_PORT + 2]
        cports = ports[rows, client].tolist()
        sports = ports[rows, 1 - client].tolist()
        protos = u8[:, K.B_PROTO].tolist()
        lasts = t.i64[slots, K.I_LAST].tolist()
        # first bytes: flat offsets and lengths of both directions, read in one pass
        blk = t.u32[slots, K.U_FB].astype(np.int64) - 1
        has = blk >= 0
        b = np.where(has, blk, 0)
        size = t.fb_size
        lens = np.where(has[:, None], t.fbm[b, K.FB_LEN : K.FB_LEN + 2], 0)
        c_start = ((2 * b + client) * size).tolist()
        s_start = ((2 * b + 1 - client) * size).tolist()
        c_len = lens[rows, client].tolist()
        s_len = lens[rows, 1 - client].tolist()
        flat = memoryview(t.fb.reshape(-1))
        hold = self.dissectors
        fids = t.flow_ids(slots)
        decided: list[int] = []
        cols = (slots.tolist(), fids, protos, cports, sports, lasts, c_start, c_len, s_start, s_len)
        for slot, fid, proto, cp, sp, ts, cs, cl, ss, sl in zip(*cols, strict=True):
            c2s = flat[cs : cs + cl].tobytes()
            s2c = flat[ss : ss + sl].tobytes()
            try:
                res = ident(proto, cp, sp, c2s, s2c, final)
            except Exception as exc:  # a fault in identification must not end the scan
                self._warn(ts, f"identification, flow {fid}", type(exc).__name__, events)
                decided.append(slot)  # no more attempts; held payload is dropped
                self.apps.pop(slot, None)
                self._stop(slot)
                continue
            if res is None:
                if not final and hold and slot not in self.apps:
                    self._app(slot, fid)
                    t.u8[slot, K.B_APP] = APP_HOLD
                continue
            decided.append(slot)
            self._decided(slot, fid, res, ts, events)
        if self._quiet:  # identified, no dissector: no more payload to Python (one write)
            quiet = np.array(self._quiet, np.int32)
            self._quiet = []
            t.u8[quiet, K.B_WANT] = K.WANT_NONE
            t.u8[quiet, K.B_WANT + 1] = K.WANT_NONE
            t.u8[quiet, K.B_APP] = APP_NONE
        if decided:
            t.decided(np.array(decided, np.int32))

    def _decided(self, slot: int, fid: str, res: Any, ts: int, events: list[Event]) -> None:
        t = self.table
        self.results[slot] = (res.protocol, res.method, float(res.confidence))
        events.append(
            ProtocolDetected(
                ts_ns=ts,
                flow_id=fid,
                protocol=res.protocol,
                method=res.method,
                confidence=float(res.confidence),
                detail=res.detail,
            )
        )
        factory = self._factory(res.protocol, ts, events)
        if factory is None:
            if self.apps:
                self.apps.pop(slot, None)
            self._quiet.append(slot)
            return
        app = self._app(slot, fid)
        held, app.held = app.held or [], None
        try:
            app.dissector = factory(FlowContext(fid, t.endpoints(slot), self.phi_key))
            app.whole = bool(getattr(app.dissector, "whole_stream", False))
        except Exception as exc:
            app.dissector = object()
            self._detach(app, exc, ts, events)
            return
        for cdir, item, its in held:
            if app.dissector is None:
                break
            self._feed(app, cdir, item, its, events)
        if app.dissector is None:
            return
        want = K.WANT_ALL if app.whole else K.WANT_FIRST
        t.u8[slot, K.B_WANT] = t.u8[slot, K.B_WANT + 1] = want
        t.u8[slot, K.B_APP] = APP_DISSECTOR
        if app.whole:
            self._upgraded.append(slot)

    def _deliver(self, pb: Any, sel: Any, events: list[Event]) -> None:
        """Hand the payload of packets `sel` (in packet order) to their flows.

        Consecutive selected packets of the same flow and direction whose sequence numbers
        follow on (a bulk transfer: the peer's ACKs carry no payload and are not selected) are
        joined into one segment, so Python works per run of packets, not per packet.
        """
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
        apps = self.apps
        for j, (slot, d, rel, b, e, ts) in enumerate(
            zip(
                slots_a[first].tolist(),
                dirs_a[first].tolist(),
                rels_a[first].tolist(),
                begin,
                stop,
                tss,
                strict=True,
            )
        ):
            app = apps.get(slot)
            if app is None:
                continue
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

    def _route(self, app: FlowApp, cdir: int, item: Delivery, ts: int, events: list[Event]) -> None:
        if app.held is not None:
            app.held.append((cdir, item, ts))
        elif app.dissector is not None:
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
        res = self.results.get(app.slot)
        proto = getattr(app.dissector, "protocol", None) or (res[0] if res else None)
        # a ParseError message is the dissector's own; any other exception may quote input
        # bytes (PHI), so only its type is kept
        what = str(exc) if isinstance(exc, ParseError) else f"{type(exc).__name__} in dissector"
        self._warn(ts, f"{proto} dissector, flow {app.flow_id}", what[:300], events)
        log.debug("dissector %s detached from flow %s", proto, app.flow_id)
        app.dissector = None
        app.whole = False
        self._stop(app.slot)

    # -- flow end ---------------------------------------------------------------------------

    def expire(
        self, slots: np.ndarray, events: list[Event]
    ) -> tuple[list[AppResult], list[tuple[StreamStats | None, StreamStats | None]]]:
        """The flows in `slots` ended: identify the undecided ones (final), close dissectors."""
        t = self.table
        n = slots.size
        if self.identify is not None:
            u8 = t.u8[slots]
            pending = slots[
                (u8[:, K.B_IDENT] == 0)
                & ((u8[:, K.B_PROTO] == K.IPPROTO_TCP) | (u8[:, K.B_PROTO] == K.IPPROTO_UDP))
            ]
            if pending.size:
                self.identify_slots(pending, True, events)
                self._upgraded = []  # these slots end now: nothing to upgrade in a later range
        streams: list[tuple[StreamStats | None, StreamStats | None]] = [(None, None)] * n
        if self.apps:
            lasts = t.i64[slots, K.I_LAST].tolist()
            for j, slot in enumerate(slots.tolist()):
                app = self.apps.pop(slot, None)
                if app is not None:
                    streams[j] = self._close(app, lasts[j], events)
        results = self.results
        if not results:
            return [NO_APP] * n, streams
        return [results.pop(s, NO_APP) for s in slots.tolist()], streams

    def _close(
        self, app: FlowApp, last_ns: int, events: list[Event]
    ) -> tuple[StreamStats | None, StreamStats | None]:
        if app.streams is not None and app.dissector is not None and app.whole:
            for cdir in (0, 1):
                for item in app.streams[cdir].finish():
                    if app.dissector is None:
                        break
                    self._feed(app, cdir, item, last_ns, events)
        if app.dissector is not None:
            try:
                out = app.dissector.close(last_ns)
                if out:
                    events.extend(out)
            except Exception as exc:
                self._detach(app, exc, last_ns, events)
        if app.streams is not None and app.whole:
            return app.streams[0].stats(), app.streams[1].stats()
        return None, None
