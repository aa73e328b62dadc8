"""The flow table: bidirectional flows over packet batches, state in NumPy arrays.

A flow is keyed by (VLAN, IP version, both addresses, both ports, IP protocol), in a canonical
order so both directions meet in one flow. The per-packet work is `kernels.process`; Python
touches a flow only when it ends (to build its `FlowRecord`) or when its payload is wanted.
Memory follows the number of live flows: expired slots go back to a free stack, and the table
doubles only when every slot is live.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress

import numpy as np

from medsentry.capture.batch import PacketBatch
from medsentry.events.base import Endpoints
from medsentry.events.flow import FlowRecord, StreamStats
from medsentry.flows import kernels as K

TRANSPORT_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}
_V4_MAPPED = 0x0000_FFFF_0000_0000
# canonical key + first time, big-endian, packed (the flow id's input)
_KEY_DTYPE = np.dtype(
    [
        ("vlan", ">u2"),
        ("ver", "u1"),
        ("proto", "u1"),
        ("ahi", ">u8"),
        ("alo", ">u8"),
        ("bhi", ">u8"),
        ("blo", ">u8"),
        ("pa", ">u2"),
        ("pb", ">u2"),
        ("first", ">i8"),
    ]
)
_GEN_ROOM = 1 << 16  # remembered (key, first ns) pairs before old ones are pruned


def transport_name(proto: int) -> str:
    return TRANSPORT_NAMES.get(proto, str(proto))


_MACS: dict[int, str] = {}


def format_mac(mac: int) -> str | None:
    """aa:bb:cc:dd:ee:ff of the 48-bit integer layout; None for 0 (absent)."""
    if mac == 0:
        return None
    s = _MACS.get(mac)
    if s is None:
        if len(_MACS) >= 1 << 16:
            _MACS.clear()
        s = _MACS[mac] = mac.to_bytes(8, "big")[2:].hex(":")
    return s


class AddressFormatter:
    """Address strings, made once per distinct address (flows repeat hosts)."""

    def __init__(self, limit: int = 1 << 16):
        self._cache: dict[tuple[int, int, int], str] = {}
        self._limit = limit

    def __call__(self, ver: int, hi: int, lo: int) -> str:
        key = (ver, hi, lo)
        s = self._cache.get(key)
        if s is None:
            if ver == 4 and hi == 0 and (lo >> 32) == 0xFFFF:
                s = str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
            else:
                s = str(ipaddress.IPv6Address((hi << 64) | lo))
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[key] = s
        return s


class FlowTable:
    """Flow state for every live flow, and the kernel calls over packet batches."""

    def __init__(
        self,
        *,
        idle_timeout_s: float = 120.0,
        active_timeout_s: float = 1800.0,
        linger_s: float = 2.0,
        first_bytes: int = 4096,
        udp_first_datagrams: int = 2,
        want_payload: bool = True,
        gather: bool = True,
        capacity: int = 4096,
    ):
        if idle_timeout_s <= 0 or active_timeout_s <= 0 or linger_s < 0:
            raise ValueError("timeouts must be positive")
        self.prm = np.zeros(K.PRM_SIZE, np.int64)
        self.prm[K.P_IDLE] = int(idle_timeout_s * 1e9)
        self.prm[K.P_ACTIVE] = int(active_timeout_s * 1e9)
        self.prm[K.P_LINGER] = int(linger_s * 1e9)
        self.prm[K.P_FIRST_BYTES] = first_bytes
        self.prm[K.P_UDP_FIRST] = udp_first_datagrams
        self.prm[K.P_INIT_WANT] = K.WANT_FIRST if want_payload else K.WANT_NONE
        self.prm[K.P_GATHER] = 1 if gather else 0
        self.ctl = np.zeros(K.CTL_SIZE, np.int64)
        self.capacity = 0
        self.fmt_ip = AddressFormatter()
        self._ids: dict[int, str] = {}  # slot -> flow id, made once per flow
        self._gens: dict[bytes, int] = {}  # (key, first ns) -> flows of it so far
        self._gen_limit = _GEN_ROOM
        self._horizon = 2 * int(self.prm[K.P_IDLE] + self.prm[K.P_ACTIVE])
        self.fb_size = max(1, first_bytes)
        self.fb_blocks = 0
        self._alloc_fb(256 if gather else 1)
        self._alloc(max(16, 1 << (capacity - 1).bit_length()))
        self.pkt_slot = np.empty(0, np.int32)
        self.pkt_dir = np.empty(0, np.uint8)
        self.pkt_rel = np.empty(0, np.uint32)

    # -- storage ---------------------------------------------------------------------------

    def _alloc(self, cap: int) -> None:
        old = self.capacity
        if old == 0:
            self.k64 = np.zeros((cap, K.K64_COLS), np.uint64)
            self.i64 = np.zeros((cap, K.I64_COLS), np.int64)
            self.f64 = np.zeros((cap, K.F64_COLS), np.float64)
            self.u32 = np.zeros((cap, K.U32_COLS), np.uint32)
            self.u8 = np.zeros((cap, K.U8_COLS), np.uint8)
            self.exp = np.zeros(cap, np.int32)
            self.dirty = np.zeros(cap, np.int32)
            free = np.arange(cap - 1, -1, -1, dtype=np.int32)  # slot 0 on top
            self.free = free
            self.ctl[K.C_FREE_TOP] = cap
        else:
            for name in ("k64", "i64", "f64", "u32", "u8"):
                a = getattr(self, name)
                b = np.zeros((cap, a.shape[1]), a.dtype)
                b[:old] = a
                setattr(self, name, b)
            exp = np.zeros(cap, np.int32)
            exp[:old] = self.exp
            self.exp = exp
            dirty = np.zeros(cap, np.int32)
            dirty[:old] = self.dirty
            self.dirty = dirty
            top = int(self.ctl[K.C_FREE_TOP])
            free = np.zeros(cap, np.int32)
            free[:top] = self.free[:top]
            added = np.arange(cap - 1, old - 1, -1, dtype=np.int32)
            free[top : top + added.size] = added
            self.free = free
            self.ctl[K.C_FREE_TOP] = top + added.size
        self.capacity = cap
        self.idx = np.full(2 * cap, -1, np.int32)
        K.index_rebuild(self.idx, self.k64, self.u8)

    def _alloc_fb(self, blocks: int) -> None:
        """The pool of first-bytes blocks (one per flow not yet identified), grown on demand."""
        old = self.fb_blocks
        fb = np.empty((blocks, 2, self.fb_size), np.uint8)
        fbm = np.zeros((blocks, K.FBM_COLS), np.int64)
        free = np.zeros(blocks, np.int32)
        if old:
            fb[:old] = self.fb
            fbm[:old] = self.fbm
            top = int(self.ctl[K.C_FB_TOP])
            free[:top] = self.fb_free[:top]
        else:
            top = 0
        added = np.arange(blocks - 1, old - 1, -1, dtype=np.int32)
        free[top : top + added.size] = added
        self.ctl[K.C_FB_TOP] = top + added.size
        self.fb, self.fbm, self.fb_free = fb, fbm, free
        self.fb_blocks = blocks

    def grow(self) -> None:
        self._alloc(self.capacity * 2)

    def grow_blocks(self) -> None:
        self._alloc_fb(self.fb_blocks * 2)

    @property
    def free_blocks(self) -> int:
        return int(self.ctl[K.C_FB_TOP])

    @property
    def live(self) -> int:
        return int(self.ctl[K.C_LIVE])

    @property
    def now_ns(self) -> int:
        return int(self.ctl[K.C_NOW])

    @property
    def free_slots(self) -> int:
        return int(self.ctl[K.C_FREE_TOP])

    # -- kernel calls ----------------------------------------------------------------------

    def process(self, pb: PacketBatch, start: int = 0) -> int:
        """Account packets [start, n); returns where it stopped (n, or earlier when full)."""
        n = len(pb)
        if self.pkt_slot.shape[0] < n:
            size = max(n, 1024)
            self.pkt_slot = np.empty(size, np.int32)
            self.pkt_dir = np.empty(size, np.uint8)
            self.pkt_rel = np.empty(size, np.uint32)
        return K.process(
            start,
            pb.raw.ts_ns,
            pb.ip_ver,
            pb.err,
            pb.frag,
            pb.vlan,
            pb.proto,
            pb.src_hi,
            pb.src_lo,
            pb.dst_hi,
            pb.dst_lo,
            pb.sport,
            pb.dport,
            pb.tcp_flags,
            pb.tcp_seq,
            pb.ip_len,
            pb.pl_len,
            pb.eth_src,
            self.k64,
            self.i64,
            self.f64,
            self.u32,
            self.u8,
            self.idx,
            self.free,
            self.exp,
            self.ctl,
            self.prm,
            self.pkt_slot[:n],
            self.pkt_dir[:n],
            self.pkt_rel[:n],
            pb.raw.buf,
            pb.pl_off,
            self.fb,
            self.fbm,
            self.fb_free,
            self.dirty,
        )

    def sweep(self, now_ns: int) -> None:
        K.sweep(now_ns, self.k64, self.i64, self.u8, self.idx, self.exp, self.ctl, self.prm)

    def flush(self) -> None:
        K.flush(self.k64, self.i64, self.u8, self.idx, self.exp, self.ctl)

    def take_expired(self) -> np.ndarray:
        """Slots expired since the last call (pending: read them, then `release`)."""
        n = int(self.ctl[K.C_NEXP])
        out = self.exp[:n].copy()
        self.ctl[K.C_NEXP] = 0
        return out

    def release(self, slots: np.ndarray) -> None:
        K.release(
            slots.astype(np.int32, copy=False), self.u8, self.u32, self.free, self.fb_free, self.ctl
        )
        ids = self._ids
        if ids:
            for s in slots.tolist():
                ids.pop(s, None)

    def set_want(self, slot: int, side: int, mode: int) -> None:
        self.u8[slot, K.B_WANT + side] = mode

    def take_dirty(self) -> np.ndarray:
        """Live or pending slots whose first bytes grew (or whose selected payload has no
        consumer yet) since the last call, each once."""
        n = int(self.ctl[K.C_NDIRTY])
        if n == 0:
            return self.dirty[:0].copy()
        out = self.dirty[:n].copy()
        self.ctl[K.C_NDIRTY] = 0
        self.u8[out, K.B_DIRTY] = 0
        return out

    def decided(self, slots: np.ndarray) -> None:
        """Identification of these flows is over: stop gathering, give their blocks back."""
        slots = slots.astype(np.int32, copy=False)
        self.u8[slots, K.B_IDENT] = 1
        K.free_blocks(slots, self.u32, self.fb_free, self.ctl)

    def first_bytes(self, slot: int) -> tuple[bytes, bytes]:
        """(client->server, server->client) first bytes gathered by the kernel."""
        blk = int(self.u32[slot, K.U_FB]) - 1
        if blk < 0:
            return b"", b""
        c = int(self.u8[slot, K.B_CLIENT])
        fb, n = self.fb[blk], self.fbm[blk]
        return (
            fb[c, : n[K.FB_LEN + c]].tobytes(),
            fb[1 - c, : n[K.FB_LEN + 1 - c]].tobytes(),
        )

    # -- per-flow views (Python, once per flow) --------------------------------------------

    def client_side(self, slot: int) -> int:
        return int(self.u8[slot, K.B_CLIENT])

    def client_guessed(self, slot: int) -> bool:
        """Whether the client side is the kernel's guess (a TCP connection seen from its
        middle, both ports of one class): no SYN and no port class said which side serves."""
        return bool(self.u8[slot, K.B_GUESS])

    def swap_client(self, slot: int) -> None:
        """The other side is the client (its payload says so): every per-side column follows,
        since they are kept by canonical side and oriented through B_CLIENT when read."""
        u8 = self.u8
        u8[slot, K.B_CLIENT] = 1 - u8[slot, K.B_CLIENT]
        u8[slot, K.B_GUESS] = 0

    def proto(self, slot: int) -> int:
        return int(self.u8[slot, K.B_PROTO])

    def first_ns(self, slot: int) -> int:
        return int(self.i64[slot, K.I_FIRST])

    def payload_bytes(self, slot: int, side: int) -> int:
        return int(self.i64[slot, K.I_PAYLOAD + side])

    def flow_id(self, slot: int) -> str:
        return self.flow_ids(np.array([slot], np.int32))[0]

    def flow_ids(self, slots: np.ndarray) -> list[str]:
        """Deterministic ids: BLAKE2b-128 of the canonical key, the first packet's time and the
        flow's number among earlier flows of that key with that same first time (usually 0: a
        flow closed and reopened within one nanosecond, or timestamps going backwards, make it
        1, 2...). Made once per flow, kept until its slot is released.

        The same capture scanned twice gives the same ids (the store dedupes on them); a
        cryptographic hash, so traffic cannot be crafted to collide with another flow's id.
        The (key, first time) pairs are remembered for `2 x (idle + active timeout)` of packet
        time past the newest packet, so memory follows the live flows, not the capture.
        """
        ids = self._ids
        todo = [s for s in slots.tolist() if s not in ids]
        if todo:
            for s, fid in zip(todo, self._make_ids(np.array(todo, np.int32)), strict=True):
                ids[s] = fid
        return [ids[s] for s in slots.tolist()]

    def _make_ids(self, slots: np.ndarray) -> list[str]:
        n = len(slots)
        rec = np.empty(n, _KEY_DTYPE)
        rec["vlan"] = self.u32[slots, K.U_VLAN]
        rec["ver"] = self.u8[slots, K.B_VER]
        rec["proto"] = self.u8[slots, K.B_PROTO]
        k = self.k64[slots]
        rec["ahi"], rec["alo"] = k[:, K.K_AHI], k[:, K.K_ALO]
        rec["bhi"], rec["blo"] = k[:, K.K_BHI], k[:, K.K_BLO]
        rec["pa"] = self.u32[slots, K.U_PORT]
        rec["pb"] = self.u32[slots, K.U_PORT + 1]
        rec["first"] = self.i64[slots, K.I_FIRST]
        raw = rec.tobytes()
        w = _KEY_DTYPE.itemsize
        b2 = hashlib.blake2b
        gens = self._gens
        if len(gens) + n > self._gen_limit:
            self._prune_gens()
        out = []
        for i in range(0, n * w, w):
            key = raw[i : i + w]
            gen = gens.get(key, 0)
            gens[key] = gen + 1
            out.append(b2(key + gen.to_bytes(4, "big"), digest_size=16).hexdigest())
        return out

    def _prune_gens(self) -> None:
        oldest = self.now_ns - self._horizon
        first = functools.partial(int.from_bytes, byteorder="big", signed=True)
        self._gens = {k: g for k, g in self._gens.items() if first(k[-8:]) >= oldest}
        self._gen_limit = max(_GEN_ROOM, 2 * len(self._gens))

    def endpoints(self, slot: int) -> Endpoints:
        return self.endpoints_from(self.endpoint_rows(np.array([slot], np.int32))[0])

    def endpoint_rows(self, slots: np.ndarray) -> list[tuple[int, ...]]:
        """Per slot, what `endpoints_from` needs, oriented client -> server and read in one pass
        over the columns: (version, protocol, vlan, client hi, client lo, server hi, server lo,
        client port, server port, client MAC, server MAC)."""
        k = self.k64[slots]
        u32 = self.u32[slots]
        u8 = self.u8[slots]
        c = u8[:, K.B_CLIENT] != 0  # client is side b
        rows = np.arange(len(slots))
        ci = c.astype(np.intp)
        si = 1 - ci
        return list(
            zip(
                u8[:, K.B_VER].tolist(),
                u8[:, K.B_PROTO].tolist(),
                u32[:, K.U_VLAN].tolist(),
                np.where(c, k[:, K.K_BHI], k[:, K.K_AHI]).tolist(),
                np.where(c, k[:, K.K_BLO], k[:, K.K_ALO]).tolist(),
                np.where(c, k[:, K.K_AHI], k[:, K.K_BHI]).tolist(),
                np.where(c, k[:, K.K_ALO], k[:, K.K_BLO]).tolist(),
                u32[rows, K.U_PORT + ci].tolist(),
                u32[rows, K.U_PORT + si].tolist(),
                k[rows, K.K_MAC + ci].tolist(),
                k[rows, K.K_MAC + si].tolist(),
                strict=True,
            )
        )

    def endpoints_from(self, row: tuple[int, ...]) -> Endpoints:
        """The `Endpoints` of one row of `endpoint_rows`."""
        ver, proto, vlan, chi, clo, shi, slo, cport, sport, cmac, smac = row
        fmt = self.fmt_ip
        return Endpoints(
            client=fmt(ver, chi, clo),
            server=fmt(ver, shi, slo),
            client_port=cport,
            server_port=sport,
            client_mac=format_mac(cmac),
            server_mac=format_mac(smac),
            vlan=vlan or None,
            transport=TRANSPORT_NAMES.get(proto) or str(proto),
        )

    def host_keys(self, slots: np.ndarray) -> np.ndarray:
        """(hi, lo) of both sides of the given flows, as a (2 * len, 2) uint64 array."""
        k = self.k64[slots]
        return np.concatenate([k[:, K.K_AHI : K.K_ALO + 1], k[:, K.K_BHI : K.K_BLO + 1]])

    def records(
        self,
        slots: np.ndarray,
        flow_ids: list[str],
        app: list[tuple[str | None, str | None, float]],
        streams: list[tuple[StreamStats | None, StreamStats | None]],
        capture_id: str | None,
    ) -> list[FlowRecord]:
        """FlowRecords of expired slots: columns oriented in NumPy, one Python object per flow."""
        n = len(slots)
        rows = np.arange(n)
        u8 = self.u8[slots]
        i64 = self.i64[slots]
        k64 = self.k64[slots]
        u32 = self.u32[slots]
        f64 = self.f64[slots]
        c = u8[:, K.B_CLIENT].astype(np.intp)
        s = 1 - c

        def pair(m: np.ndarray, col: int) -> tuple[list, list]:
            return m[rows, col + c].tolist(), m[rows, col + s].tolist()

        pk_c, pk_s = pair(i64, K.I_PKTS)
        by_c, by_s = pair(i64, K.I_BYTES)
        pl_c, pl_s = pair(i64, K.I_PAYLOAD)
        fl_c, fl_s = pair(u8, K.B_FLAGS)
        mac_c, mac_s = pair(k64, K.K_MAC)
        port_c, port_s = pair(u32, K.U_PORT)
        hi_c = np.where(c == 0, k64[:, K.K_AHI], k64[:, K.K_BHI]).tolist()
        lo_c = np.where(c == 0, k64[:, K.K_ALO], k64[:, K.K_BLO]).tolist()
        hi_s = np.where(c == 0, k64[:, K.K_BHI], k64[:, K.K_AHI]).tolist()
        lo_s = np.where(c == 0, k64[:, K.K_BLO], k64[:, K.K_ALO]).tolist()
        n_iat = i64[:, K.I_PKTS] + i64[:, K.I_PKTS + 1] - 1
        has_iat = n_iat > 0
        std = np.sqrt(f64[:, K.F_M2] / np.maximum(n_iat, 1))  # population std
        iat_min = np.where(has_iat, f64[:, K.F_MIN], 0.0)
        fmt = self.fmt_ip
        out = []
        for j, (first, last, ver, proto, end, vlan, mean, sd, mn, mx) in enumerate(
            zip(
                i64[:, K.I_FIRST].tolist(),
                i64[:, K.I_LAST].tolist(),
                u8[:, K.B_VER].tolist(),
                u8[:, K.B_PROTO].tolist(),
                u8[:, K.B_END].tolist(),
                u32[:, K.U_VLAN].tolist(),
                f64[:, K.F_MEAN].tolist(),
                std.tolist(),
                iat_min.tolist(),
                f64[:, K.F_MAX].tolist(),
                strict=True,
            )
        ):
            app_proto, app_method, app_conf = app[j]
            stream_c, stream_s = streams[j]
            out.append(
                FlowRecord(
                    ts_ns=first,
                    flow_id=flow_ids[j],
                    last_ns=last,
                    transport=TRANSPORT_NAMES.get(proto) or str(proto),
                    ip_version=ver,
                    client=fmt(ver, hi_c[j], lo_c[j]),
                    server=fmt(ver, hi_s[j], lo_s[j]),
                    client_port=port_c[j],
                    server_port=port_s[j],
                    client_mac=format_mac(mac_c[j]),
                    server_mac=format_mac(mac_s[j]),
                    vlan=vlan or None,
                    packets_c2s=pk_c[j],
                    packets_s2c=pk_s[j],
                    bytes_c2s=by_c[j],
                    bytes_s2c=by_s[j],
                    payload_c2s=pl_c[j],
                    payload_s2c=pl_s[j],
                    tcp_flags_c2s=fl_c[j],
                    tcp_flags_s2c=fl_s[j],
                    iat_mean_us=mean,
                    iat_std_us=sd,
                    iat_min_us=mn,
                    iat_max_us=mx,
                    end_reason=K.END_REASONS[end],
                    app_protocol=app_proto,
                    app_method=app_method,
                    app_confidence=app_conf,
                    stream_c2s=stream_c,
                    stream_s2c=stream_s,
                    capture_id=capture_id,
                )
            )
        return out
