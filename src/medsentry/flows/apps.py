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
# FlowTable u8[:, B_APP]; APP_COUNT: the dissector is done (its `done` attribute), the TCP
# streams only count what arrives (stream statistics), no payload is gathered for it
APP_NONE, APP_DISSECTOR, APP_HOLD, APP_COUNT = 0, 1, 2, 3


def load_identifier() -> IdentifyFn | None:
    """`medsentry.protocols.identify.identify`, or None while that module does not exist."""
    try:
        from medsentry.protocols.identify import identify
    except ModuleNotFoundError as exc:
        if exc.name == "medsentry.protocols.identify":
            return None
        raise
    return identify


def _turn(res: Any, turned: Any) -> bool:
    """Whether a flow whose client was guessed is the other way round: its bytes, directions
    swapped, show the sides (`Identification.oriented`), as given they do not, and the swapped
    answer is at least as confident."""
    if turned is None or getattr(turned, "oriented", None) is not True:
        return False
    return res is None or turned.confidence >= res.confidence


class FlowApp:
    """Application-layer state of one flow (directions: 0 client->server, 1 server->client)."""

    __slots__ = (
        "client",
        "counting",
        "dissector",
        "fed",
        "flow_id",
        "held",
        "skipper",
        "slot",
        "streams",
        "views",
        "watch",
        "whole",
    )

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
        self.watch = False  # the dissector says when it is done (a `done` attribute)
        self.counting = False  # done: nothing more is fed, the streams only count
        self.skipper = False  # the dissector can take bytes it only counts unseen (`skip`)
        self.views = False  # the dissector takes in-order bytes as a view (`takes_views`)


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

    def _app(
        self, slot: int, flow_id: str, proto: int | None = None, client: int | None = None
    ) -> FlowApp:
        app = self.apps.get(slot)
        if app is None:
            t = self.table
            if proto is None or client is None:
                proto, client = t.proto(slot), t.client_side(slot)
            app = FlowApp(slot, flow_id, proto, client, self.max_pending_bytes)
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
            # a flow a later packet of this range ended (its key came back after the idle
            # timeout) is identified now too: its packets in this range are delivered below
            self.identify_slots(dirty, False, events)
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
        clients = client.tolist()
        guessed = u8[:, K.B_GUESS].tolist()
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
        # endpoints of flows that may get a dissector, from the columns read here in one pass
        eps: list[Any] = t.endpoint_rows(slots) if hold else [None] * slots.size
        cols = (
            slots.tolist(),
            fids,
            protos,
            clients,
            cports,
            sports,
            lasts,
            guessed,
            c_start,
            c_len,
            s_start,
            s_len,
            eps,
        )
        for slot, fid, proto, cl_side, cp, sp, ts, guess, cs, cl, ss, sl, ep in zip(
            *cols, strict=True
        ):
            c2s = flat[cs : cs + cl].tobytes()
            s2c = flat[ss : ss + sl].tobytes()
            try:
                res = ident(proto, cp, sp, c2s, s2c, final)
                if guess and getattr(res, "oriented", None) is not True:
                    turned = ident(proto, sp, cp, s2c, c2s, final)
                    if _turn(res, turned):
                        res, cl_side, ep = turned, self._swap(slot), None
            except Exception as exc:  # a fault in identification must not end the scan
                self._warn(ts, f"identification, flow {fid}", type(exc).__name__, events)
                decided.append(slot)  # no more attempts; held payload is dropped
                self.apps.pop(slot, None)
                self._stop(slot)
                continue
            if res is None:
                if not final and hold and slot not in self.apps:
                    self._app(slot, fid, proto, cl_side)
                    t.u8[slot, K.B_APP] = APP_HOLD
                continue
            decided.append(slot)
            self._decided(slot, fid, res, ts, events, proto, cl_side, ep)
        if self._quiet:  # identified, no dissector: no more payload to Python (one write)
            quiet = np.array(self._quiet, np.int32)
            self._quiet = []
            t.u8[quiet, K.B_WANT] = K.WANT_NONE
            t.u8[quiet, K.B_WANT + 1] = K.WANT_NONE
            t.u8[quiet, K.B_APP] = APP_NONE
        if decided:
            t.decided(np.array(decided, np.int32))

    def _swap(self, slot: int) -> int:
        """The flow's client was a guess its payload corrects: the other side is the client.
        Payload held for it so far moves to the other direction with its reassembler."""
        t = self.table
        t.swap_client(slot)
        app = self.apps.get(slot)
        if app is not None:
            app.client = 1 - app.client
            if app.streams is not None:
                app.streams.reverse()
            app.fed.reverse()
            if app.held:
                app.held = [(1 - cdir, item, its) for cdir, item, its in app.held]
        return t.client_side(slot)

    def _decided(
        self,
        slot: int,
        fid: str,
        res: Any,
        ts: int,
        events: list[Event],
        proto: int | None = None,
        client: int | None = None,
        ep: tuple[int, ...] | None = None,
    ) -> None:
        t = self.table
        protocol = res.protocol
        confidence = float(res.confidence)
        self.results[slot] = (protocol, res.method, confidence)
        events.append(
            ProtocolDetected(
                ts_ns=ts,
                flow_id=fid,
                protocol=protocol,
                method=res.method,
                confidence=confidence,
                detail=res.detail,
            )
        )
        factory = self._factories.get(protocol) if self.dissectors else None
        if factory is None and self.dissectors:
            factory = self._factory(protocol, ts, events)
        if factory is None:
            if self.apps:
                self.apps.pop(slot, None)
            self._quiet.append(slot)
            return
        app = self._app(slot, fid, proto, client)
        held, app.held = app.held or [], None
        try:
            endpoints = t.endpoints(slot) if ep is None else t.endpoints_from(ep)
            app.dissector = factory(FlowContext(fid, endpoints, self.phi_key))
            app.whole = bool(getattr(app.dissector, "whole_stream", False))
            app.watch = hasattr(app.dissector, "done")
            app.skipper = app.whole and hasattr(app.dissector, "skippable")
            app.views = app.whole and bool(getattr(app.dissector, "takes_views", False))
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
        if app.counting:
            app.counting = False
            self._count_only(app)

    def _runs(self, pb: Any, sel: Any) -> tuple[Any, ...]:
        """Per-packet columns of `sel` and its runs: consecutive selected packets of the same
        flow and direction whose sequence numbers follow on (a bulk transfer: the peer's ACKs
        carry no payload and are not selected) form one run."""
        t = self.table
        slots_a = t.pkt_slot[sel]
        dirs_a = t.pkt_dir[sel] & K.DIR_MASK
        rels_a = t.pkt_rel[sel].astype(np.int64)
        lens_a = pb.pl_len[sel].astype(np.int64)
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
        return slots_a, dirs_a, rels_a, lens_a, first, last

    def _deliver(self, pb: Any, sel: Any, events: list[Event]) -> None:
        """Hand the payload of packets `sel` (in packet order) to their flows, one segment per
        run of packets (see `_runs`), so Python works per run, not per packet. The payload of
        flows whose dissector is done (APP_COUNT) is not gathered: their streams count it."""
        slots_a, dirs_a, rels_a, lens_a, first, last = self._runs(pb, sel)
        counted = self.table.u8[slots_a, K.B_APP] == APP_COUNT
        some_counted = bool(counted.any())
        glens = np.where(counted, 0, lens_a) if some_counted else lens_a
        # gathered once (into memory not zeroed first: every byte is written); each segment is
        # one copy out of it, or a view of it for a dissector that takes views
        data = np.empty(int(glens.sum()), np.uint8)
        K.gather(pb.raw.buf, pb.pl_off[sel], glens, data)
        ends = np.cumsum(glens)
        blob = memoryview(data)
        begin = (ends - glens)[first].tolist()
        stop = ends[last].tolist()
        tss = pb.raw.ts_ns[sel][last].tolist()
        multi = (last > first).tolist()
        if some_counted:
            run_counted = counted[first].tolist()
            all_ends = np.cumsum(lens_a)
            sizes = (all_ends[last] - all_ends[first] + lens_a[first]).tolist()
        else:
            run_counted = sizes = None
        apps = self.apps
        feed = self._feed
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
                counted_run = run_counted is not None and run_counted[j]
                if counted_run or app.counting:
                    # the dissector is done (before this range, or since it began, e.g. a TLS
                    # handshake seen): the stream only counts, no byte is copied
                    if multi[j] and stream.unwrap(rel) != stream.next:
                        k0, k1 = int(first[j]), int(last[j]) + 1
                        for r, ln in zip(
                            rels_a[k0:k1].tolist(), lens_a[k0:k1].tolist(), strict=True
                        ):
                            stream.count(r, ln)
                    else:
                        stream.count(rel, sizes[j] if counted_run else e - b)
                    continue
                if (
                    app.skipper
                    and app.held is None
                    and not app.counting
                    and app.dissector is not None
                    and stream.in_order(rel)
                    and app.dissector.skippable(cdir) >= e - b
                ):
                    # bytes the dissector would only count (e.g. DICOM bulk data): no copy
                    stream.count(rel, e - b)
                    app.dissector.skip(cdir, e - b)
                    continue
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
                        items += stream.segment(r, bytes(blob[pe - ln : pe]))
                elif app.views and app.held is None and stream.in_order(rel):
                    # delivered at once, as it is: the dissector copies only what it keeps
                    items = stream.segment(rel, blob[b:e])
                else:
                    items = stream.segment(rel, bytes(blob[b:e]))
                if app.held is not None:
                    app.held.extend((cdir, item, ts) for item in items)
                    continue
                for item in items:
                    if app.dissector is None or app.counting:
                        break
                    feed(app, cdir, item, ts, events)
            elif app.held is not None:
                app.held.append((cdir, bytes(blob[b:e]), ts))
            elif app.dissector is not None and not app.counting:
                feed(app, cdir, bytes(blob[b:e]), ts, events)

    def _count_only(self, app: FlowApp) -> None:
        """The flow's dissector is done: feed it nothing more (`close` still comes)."""
        app.counting = True
        u8 = self.table.u8
        if app.streams is not None and app.whole:
            u8[app.slot, K.B_APP] = APP_COUNT  # the streams keep counting (StreamStats)
        else:  # nothing else reads the payload
            u8[app.slot, K.B_WANT] = u8[app.slot, K.B_WANT + 1] = K.WANT_NONE

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
            if app.watch and d.done:
                self._count_only(app)
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
                    if app.dissector is None or app.counting:
                        break  # a done dissector is fed nothing (the holes are counted)
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
