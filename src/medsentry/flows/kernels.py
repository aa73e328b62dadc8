"""Numba kernels of the flow table: one pass over a packet batch, no Python object per packet.

The table is an open-addressing hash index (linear probing, backward-shift deletion) over flow
slots. A slot's fields live in a few row-major matrices (one row per slot, so one flow's state
sits in one or two cache lines); the column numbers are the constants below. Slots come from a
free stack; an expired slot is parked ("pending") until Python has read it, then released.

Directions inside the kernels are relative to the canonical key: side A is the lower
(address, port) pair, d = 0 for a packet sent by A, d = 1 for one sent by B. `CLIENT` tells which
side initiated the flow; Python turns d into client->server / server->client. Every per-side
column is kept by canonical side, so turning `CLIENT` round (a guessed client that
identification corrects) reorients the whole flow record.
"""

from __future__ import annotations

import numpy as np

from medsentry.jit import njit

# K64 columns (uint64): canonical key addresses, stored hash, MAC of each side.
K_AHI, K_ALO, K_BHI, K_BLO, K_HASH, K_MAC = 0, 1, 2, 3, 4, 5  # K_MAC + d
K64_COLS = 7
# I64 columns (int64).
I_FIRST, I_LAST, I_CLOSE = 0, 1, 2
I_PKTS, I_BYTES, I_PAYLOAD = 3, 5, 7  # + d
I64_COLS = 9
# F64 columns: Welford state of the inter-arrival times (µs) over the flow's packets.
F_MEAN, F_M2, F_MIN, F_MAX = 0, 1, 2, 3
F64_COLS = 4
# U32 columns. U_FB: the flow's first-bytes block + 1 (0: none).
U_PORT, U_VLAN, U_ISN, U_FB = 0, 2, 3, 5  # U_PORT + side, U_ISN + d
U32_COLS = 6
# U8 columns.
B_STATE, B_VER, B_PROTO, B_CLIENT, B_FLAGS, B_FIN, B_RST, B_END, B_CLOSE_WHY = (
    0,
    1,
    2,
    3,
    4,
    6,
    8,
    9,
    10,
)
B_WANT, B_HAS_ISN = 11, 13  # + d
# B_IDENT: identification decided (the kernel stops gathering first bytes); B_DIRTY: the slot is
# in the dirty list; B_APP: Python keeps per-flow application state (a dissector, or payload
# held until identification decides), so its selected payload must go to Python. B_GUESS: the
# client side is a guess (a TCP connection seen from its middle, both ports of one class), which
# identification may turn round (flows.apps) before a dissector or the flow record reads it.
B_IDENT, B_DIRTY, B_APP, B_GUESS = 15, 16, 17, 18
U8_COLS = 19

# Slot states.
FREE, LIVE, PENDING = 0, 1, 2
# End reasons (FlowRecord.end_reason).
END_IDLE, END_ACTIVE, END_FIN, END_RST, END_EOF = 1, 2, 3, 4, 5
END_REASONS = ("", "idle", "active", "fin", "rst", "eof")
# What a direction wants from the kernel: nothing, its first bytes, every payload byte.
WANT_NONE, WANT_FIRST, WANT_ALL = 0, 1, 2
# pkt_dir bits.
DIR_MASK, EMITTED = 1, 2

# ctl cells.
C_FREE_TOP, C_LIVE, C_NEXP, C_NOW, C_FB_TOP, C_NDIRTY = 0, 1, 2, 3, 4, 5
CTL_SIZE = 6
# prm cells. P_GATHER: gather first bytes for identification.
P_IDLE, P_ACTIVE, P_LINGER, P_FIRST_BYTES, P_UDP_FIRST, P_INIT_WANT, P_GATHER = 0, 1, 2, 3, 4, 5, 6
PRM_SIZE = 7
# First-bytes block metadata columns (fbm, int64): contiguous length per direction d, and one
# out-of-order range [lo, hi) per direction held until the hole before it fills.
FB_LEN, FB_OOO_LO, FB_OOO_HI = 0, 2, 4  # + d
FBM_COLS = 6

# TCP flags, RFC 9293 §3.1.
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _mix(h: np.uint64, x: np.uint64) -> np.uint64:
    # splitmix64 finalizer over a running combination
    z = (h ^ x) * _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True, inline="always")
def key_hash(ahi, alo, bhi, blo, pa, pb, vlan, ver, proto) -> np.uint64:
    h = _mix(np.uint64(0), ahi)
    h = _mix(h, alo)
    h = _mix(h, bhi)
    h = _mix(h, blo)
    small = (
        (np.uint64(pa) << np.uint64(48))
        | (np.uint64(pb) << np.uint64(32))
        | (np.uint64(vlan) << np.uint64(16))
        | (np.uint64(ver) << np.uint64(8))
        | np.uint64(proto)
    )
    return _mix(h, small)


@njit(cache=True, nogil=True)
def index_insert(idx: np.ndarray, h: np.uint64, s: int) -> None:
    mask = np.uint64(idx.shape[0] - 1)
    i = np.int64(h & mask)
    while idx[i] != -1:
        i = (i + 1) & np.int64(mask)
    idx[i] = s


@njit(cache=True, nogil=True)
def index_remove(idx: np.ndarray, k64: np.ndarray, s: int) -> None:
    """Backward-shift deletion: no tombstones, probe chains stay short."""
    m = np.int64(idx.shape[0] - 1)
    i = np.int64(k64[s, K_HASH] & np.uint64(m))
    while idx[i] != s:
        if idx[i] == -1:
            return  # not indexed (cannot happen for a live slot)
        i = (i + 1) & m
    j = i
    while True:
        j = (j + 1) & m
        t = idx[j]
        if t == -1:
            break
        k = np.int64(k64[t, K_HASH] & np.uint64(m))
        # leave t where it is when its home k lies cyclically in (i, j]
        if i <= j:
            if i < k <= j:
                continue
        elif k > i or k <= j:
            continue
        idx[i] = t
        i = j
    idx[i] = -1


@njit(cache=True, nogil=True)
def index_rebuild(idx: np.ndarray, k64: np.ndarray, u8: np.ndarray) -> None:
    idx[:] = -1
    for s in range(k64.shape[0]):
        if u8[s, B_STATE] == LIVE:
            index_insert(idx, k64[s, K_HASH], s)


@njit(cache=True, nogil=True, inline="always")
def _port_class(port: int) -> int:
    """0 system port, 1 user port below the ephemeral range, 2 ephemeral (RFC 6335 §6; RFC
    6056 §3.2: 1024-65535, 49152-65535 by IANA and 32768-60999 by Linux: from 32768 here)."""
    if port == 0:
        return 2  # no port (ICMP): no side
    if port < 1024:
        return 0
    if port < 32768:
        return 1
    return 2


@njit(cache=True, nogil=True, inline="always")
def _expire(s, reason, idx, k64, u8, exp, ctl) -> None:
    index_remove(idx, k64, s)
    u8[s, B_STATE] = PENDING
    u8[s, B_END] = reason
    exp[ctl[C_NEXP]] = s
    ctl[C_NEXP] += 1
    ctl[C_LIVE] -= 1


@njit(cache=True, nogil=True, inline="always")
def _expiry_reason(s, now, i64, u8, prm) -> int:
    close = i64[s, I_CLOSE]
    if close != 0 and now - close > prm[P_LINGER]:
        return u8[s, B_CLOSE_WHY]
    if now - i64[s, I_LAST] > prm[P_IDLE]:
        if close != 0:
            return u8[s, B_CLOSE_WHY]
        return END_IDLE
    if now - i64[s, I_FIRST] > prm[P_ACTIVE]:
        return END_ACTIVE
    return 0


@njit(cache=True, nogil=True)
def process(
    start,
    ts,
    ip_ver,
    err,
    frag,
    vlan,
    proto,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    sport,
    dport,
    tcp_flags,
    tcp_seq,
    ip_len,
    pl_len,
    eth_src,
    k64,
    i64,
    f64,
    u32,
    u8,
    idx,
    free,
    exp,
    ctl,
    prm,
    pkt_slot,
    pkt_dir,
    pkt_rel,
    buf,
    pl_off,
    fb,
    fbm,
    fb_free,
    dirty,
):
    """Account packets [start, n) to their flows; returns the index where it stopped.

    It stops early only when the free stack of slots, or of first-bytes blocks, is empty (the
    caller releases pending slots or grows the table and calls again from there). Per packet it
    writes the flow slot (-1: no flow), the direction (bit 0) and whether its payload is wanted
    (bit 1), and the payload's offset relative to the direction's initial sequence number (TCP).

    While a TCP/UDP flow is not identified (B_IDENT = 0) its first bytes are gathered here, into
    a block of `fb` (`first_bytes` per direction): TCP the in-order stream prefix (RFC 9293
    §3.10.7.4: the bytes from the initial sequence number on; one out-of-order range per
    direction is held until the hole before it fills), UDP the first datagram of each
    direction. A slot whose block grew (or whose selected payload has no Python consumer yet)
    is listed once in `dirty`, so Python identifies per flow and per batch, never per packet.
    """
    n = ts.shape[0]
    # numba does not bounds-check: every per-packet array must be as long as ts
    if (
        ip_ver.shape[0] < n
        or err.shape[0] < n
        or frag.shape[0] < n
        or proto.shape[0] < n
        or tcp_flags.shape[0] < n
        or vlan.shape[0] < n
        or src_hi.shape[0] < n
        or src_lo.shape[0] < n
        or dst_hi.shape[0] < n
        or dst_lo.shape[0] < n
        or sport.shape[0] < n
        or dport.shape[0] < n
        or tcp_seq.shape[0] < n
        or ip_len.shape[0] < n
        or pl_len.shape[0] < n
        or eth_src.shape[0] < n
        or pkt_slot.shape[0] < n
        or pkt_dir.shape[0] < n
        or pkt_rel.shape[0] < n
        or pl_off.shape[0] < n
    ):
        raise ValueError("packet arrays differ in length")
    cap = k64.shape[0]
    if (
        i64.shape[0] != cap
        or f64.shape[0] != cap
        or u32.shape[0] != cap
        or u8.shape[0] != cap
        or free.shape[0] != cap
        or exp.shape[0] != cap
        or idx.shape[0] < 2 * cap
        or dirty.shape[0] != cap
        or fbm.shape[0] != fb.shape[0]
        or fb_free.shape[0] != fb.shape[0]
        or fb.shape[1] != 2
    ):
        raise ValueError("flow table arrays differ in size")
    mask = np.int64(idx.shape[0] - 1)
    first_bytes = prm[P_FIRST_BYTES]
    udp_first = prm[P_UDP_FIRST]
    gather_on = prm[P_GATHER] != 0
    fbsize = np.int64(fb.shape[2])
    nbuf = np.int64(buf.shape[0])
    for i in range(start, n):
        pkt_slot[i] = -1
        pkt_dir[i] = 0
        pkt_rel[i] = 0
        ver = ip_ver[i]
        if ver == 0 or err[i] != 0 or frag[i] != 0:
            continue
        if ctl[C_FREE_TOP] == 0:
            return i
        t = ts[i]
        if t > ctl[C_NOW]:
            ctl[C_NOW] = t
        p = proto[i]
        sp = np.int64(sport[i])
        dp = np.int64(dport[i])
        if p != IPPROTO_TCP and p != IPPROTO_UDP:  # ICMP type/code are not ports
            sp = 0
            dp = 0
        sh = src_hi[i]
        sl = src_lo[i]
        dh = dst_hi[i]
        dl = dst_lo[i]
        if sh < dh or (sh == dh and (sl < dl or (sl == dl and sp <= dp))):
            d = 0
            ah, al, bh, bl, pa, pb = sh, sl, dh, dl, sp, dp
        else:
            d = 1
            ah, al, bh, bl, pa, pb = dh, dl, sh, sl, dp, sp
        vl = np.int64(vlan[i])
        h = key_hash(ah, al, bh, bl, pa, pb, vl, ver, p)
        fl = np.int64(tcp_flags[i]) if p == IPPROTO_TCP else 0
        # look up
        j = np.int64(h & np.uint64(mask))
        s = -1
        while True:
            c = idx[j]
            if c == -1:
                break
            if (
                k64[c, K_HASH] == h
                and k64[c, K_ALO] == al
                and k64[c, K_BLO] == bl
                and k64[c, K_AHI] == ah
                and k64[c, K_BHI] == bh
                and u32[c, U_PORT] == pa
                and u32[c, U_PORT + 1] == pb
                and u32[c, U_VLAN] == vl
                and u8[c, B_VER] == ver
                and u8[c, B_PROTO] == p
            ):
                s = c
                break
            j = (j + 1) & mask
        why = 0
        if s >= 0:
            why = _expiry_reason(s, t, i64, u8, prm)
            if why == 0 and i64[s, I_CLOSE] != 0 and (fl & (SYN | ACK)) == SYN:
                why = u8[s, B_CLOSE_WHY]  # a new SYN on a closed connection: a new flow
        pl = np.int64(pl_len[i])
        if (
            gather_on
            and pl > 0
            and p in (IPPROTO_TCP, IPPROTO_UDP)
            and (s < 0 or why != 0 or (u8[s, B_IDENT] == 0 and u32[s, U_FB] == 0))
            and ctl[C_FB_TOP] == 0
        ):
            return i  # a first-bytes block is needed and none is free: nothing changed yet
        if why != 0:
            _expire(s, why, idx, k64, u8, exp, ctl)
            s = -1
        if s < 0:
            top = ctl[C_FREE_TOP] - 1
            s = free[top]
            ctl[C_FREE_TOP] = top
            ctl[C_LIVE] += 1
            k64[s, K_AHI] = ah
            k64[s, K_ALO] = al
            k64[s, K_BHI] = bh
            k64[s, K_BLO] = bl
            k64[s, K_HASH] = h
            k64[s, K_MAC] = 0
            k64[s, K_MAC + 1] = 0
            for c in range(I64_COLS):
                i64[s, c] = 0
            i64[s, I_FIRST] = t
            i64[s, I_LAST] = t
            f64[s, F_MEAN] = 0.0
            f64[s, F_M2] = 0.0
            f64[s, F_MIN] = np.inf
            f64[s, F_MAX] = 0.0
            u32[s, U_PORT] = pa
            u32[s, U_PORT + 1] = pb
            u32[s, U_VLAN] = vl
            u32[s, U_ISN] = 0
            u32[s, U_ISN + 1] = 0
            u32[s, U_FB] = 0
            for c in range(U8_COLS):
                u8[s, c] = 0
            u8[s, B_STATE] = LIVE
            u8[s, B_VER] = ver
            u8[s, B_PROTO] = p
            # the initiator: a SYN's sender, a SYN-ACK's receiver; a TCP connection seen from
            # its middle: the side on the lower port class serves (both on one class: the first
            # sender, a guess its payload may correct). UDP: the first sender, unless
            # it sends from a service port to an ephemeral one (an answer whose request was
            # lost, fell before the capture or took the other leg of an asymmetric route);
            # clients on reserved ports (NFS, RPC: 600-1023 to 2049) keep the first sender
            if (fl & (SYN | ACK)) == (SYN | ACK):
                u8[s, B_CLIENT] = 1 - d
            elif (fl & SYN) != 0 or (p != IPPROTO_TCP and p != IPPROTO_UDP):
                u8[s, B_CLIENT] = d
            else:
                src_class = _port_class(sp)
                dst_class = _port_class(dp)
                if src_class < dst_class and (p == IPPROTO_TCP or dst_class == 2):
                    u8[s, B_CLIENT] = 1 - d  # the sender is the service answering
                else:
                    u8[s, B_CLIENT] = d
                    if p == IPPROTO_TCP and src_class == dst_class:
                        u8[s, B_GUESS] = 1  # no evidence: the first sender seen, for now
            if p in (IPPROTO_TCP, IPPROTO_UDP):
                u8[s, B_WANT] = prm[P_INIT_WANT]
                u8[s, B_WANT + 1] = prm[P_INIT_WANT]
                if not gather_on:
                    u8[s, B_IDENT] = 1
            else:
                u8[s, B_IDENT] = 1
            # index it (the probe position may have moved if a flow was just expired)
            index_insert(idx, h, s)
        else:
            # inter-arrival time, Welford's online mean and variance
            last = i64[s, I_LAST]
            dt = (t - last) / 1000.0 if t > last else 0.0
            k = i64[s, I_PKTS] + i64[s, I_PKTS + 1]  # number of IATs after this one
            delta = dt - f64[s, F_MEAN]
            f64[s, F_MEAN] += delta / k
            f64[s, F_M2] += delta * (dt - f64[s, F_MEAN])
            if dt < f64[s, F_MIN]:
                f64[s, F_MIN] = dt
            if dt > f64[s, F_MAX]:
                f64[s, F_MAX] = dt
            if t > last:
                i64[s, I_LAST] = t
        i64[s, I_PKTS + d] += 1
        i64[s, I_BYTES + d] += ip_len[i]
        i64[s, I_PAYLOAD + d] += pl
        if k64[s, K_MAC + d] == 0:
            k64[s, K_MAC + d] = eth_src[i]
        emit = False
        rel = 0
        if p == IPPROTO_TCP:
            u8[s, B_FLAGS + d] |= fl
            if fl & RST:
                if i64[s, I_CLOSE] == 0:
                    i64[s, I_CLOSE] = t
                    u8[s, B_CLOSE_WHY] = END_RST
                u8[s, B_RST] = 1
            if fl & FIN:
                u8[s, B_FIN + d] = 1
                if u8[s, B_FIN + 1 - d] != 0 and i64[s, I_CLOSE] == 0:
                    i64[s, I_CLOSE] = t
                    u8[s, B_CLOSE_WHY] = END_FIN
            seq = np.int64(tcp_seq[i])
            if (fl & SYN) and u8[s, B_HAS_ISN + d] == 0:
                u32[s, U_ISN + d] = (seq + 1) & 0xFFFFFFFF  # RFC 9293 §3.4: SYN takes one seq
                u8[s, B_HAS_ISN + d] = 1
            if pl > 0:
                if u8[s, B_HAS_ISN + d] == 0:
                    u32[s, U_ISN + d] = seq
                    u8[s, B_HAS_ISN + d] = 1
                if fl & SYN:
                    seq += 1
                rel = (seq - np.int64(u32[s, U_ISN + d])) & 0xFFFFFFFF
                w = u8[s, B_WANT + d]
                if w == WANT_ALL or (w == WANT_FIRST and rel < first_bytes):
                    emit = True
        elif p == IPPROTO_UDP and pl > 0:
            w = u8[s, B_WANT + d]
            if w == WANT_ALL or (w == WANT_FIRST and i64[s, I_PKTS + d] <= udp_first):
                emit = True
        if pl > 0 and u8[s, B_IDENT] == 0:
            grew = _gather(
                s, d, p, rel, pl_off[i], pl, buf, nbuf, fb, fbm, fb_free, fbsize, u32, i64, ctl
            )
            if (grew or (emit and u8[s, B_APP] == 0)) and u8[s, B_DIRTY] == 0:
                u8[s, B_DIRTY] = 1
                dirty[ctl[C_NDIRTY]] = s
                ctl[C_NDIRTY] += 1
        pkt_slot[i] = s
        pkt_dir[i] = d | (EMITTED if emit else 0)
        pkt_rel[i] = rel
    return n


@njit(cache=True, nogil=True, inline="always")
def _copy(buf, nbuf, src, fb, blk, d, dst, ln) -> None:
    if src < 0 or src + ln > nbuf:
        raise ValueError("payload range outside the buffer")
    fb[blk, d, dst : dst + ln] = buf[src : src + ln]


@njit(cache=True, nogil=True)
def _gather(s, d, p, rel, off, pl, buf, nbuf, fb, fbm, fb_free, fbsize, u32, i64, ctl) -> bool:
    """Add one packet's payload to the first bytes of slot `s`, direction `d`; True if the
    contiguous prefix grew. The caller made sure a block is free when the slot has none."""
    blk = np.int64(u32[s, U_FB]) - 1
    if blk < 0:
        top = ctl[C_FB_TOP] - 1
        blk = np.int64(fb_free[top])
        ctl[C_FB_TOP] = top
        u32[s, U_FB] = blk + 1
        for c in range(FBM_COLS):
            fbm[blk, c] = 0
    have = fbm[blk, FB_LEN + d]
    if p == IPPROTO_UDP:
        if have != 0 or i64[s, I_PAYLOAD + d] != pl:
            return False  # only the direction's first datagram
        ln = min(pl, fbsize)
        _copy(buf, nbuf, off, fb, blk, d, 0, ln)
        fbm[blk, FB_LEN + d] = ln
        return True
    if have >= fbsize or rel >= fbsize:
        return False
    end = min(rel + pl, fbsize)
    if rel > have:  # after a hole: hold it as the direction's out-of-order range
        lo = fbm[blk, FB_OOO_LO + d]
        hi = fbm[blk, FB_OOO_HI + d]
        if hi == 0:
            lo, hi = rel, end
        elif rel <= hi and end >= lo:  # touches the held range: merge
            lo, hi = min(lo, rel), max(hi, end)
        else:
            return False  # a second hole: retransmissions will bring these bytes again
        _copy(buf, nbuf, off, fb, blk, d, rel, end - rel)
        fbm[blk, FB_OOO_LO + d] = lo
        fbm[blk, FB_OOO_HI + d] = hi
        return False
    if end <= have:
        return False  # a retransmission of bytes already held
    _copy(buf, nbuf, off + (have - rel), fb, blk, d, have, end - have)
    have = end
    hi = fbm[blk, FB_OOO_HI + d]
    if hi != 0 and fbm[blk, FB_OOO_LO + d] <= have:
        if hi > have:
            have = hi
        fbm[blk, FB_OOO_LO + d] = 0
        fbm[blk, FB_OOO_HI + d] = 0
    fbm[blk, FB_LEN + d] = have
    return True


@njit(cache=True, nogil=True)
def free_blocks(slots, u32, fb_free, ctl) -> None:
    """Give the first-bytes blocks of `slots` back (identification decided, or flow released)."""
    for k in range(slots.shape[0]):
        s = slots[k]
        blk = np.int64(u32[s, U_FB]) - 1
        if blk >= 0:
            top = ctl[C_FB_TOP]
            if top >= fb_free.shape[0]:
                raise ValueError("first-bytes free stack overflow")
            fb_free[top] = blk
            ctl[C_FB_TOP] = top + 1
            u32[s, U_FB] = 0


@njit(cache=True, nogil=True)
def sweep(now, k64, i64, u8, idx, exp, ctl, prm) -> int:
    """Expire every live flow that is idle, too long, or closed past the linger at `now`."""
    count = 0
    for s in range(k64.shape[0]):
        if u8[s, B_STATE] == LIVE:
            why = _expiry_reason(s, now, i64, u8, prm)
            if why != 0:
                _expire(s, why, idx, k64, u8, exp, ctl)
                count += 1
    return count


@njit(cache=True, nogil=True)
def flush(k64, i64, u8, idx, exp, ctl) -> int:
    """Expire every live flow (end of input): closed ones keep fin/rst, the rest get eof."""
    count = 0
    for s in range(k64.shape[0]):
        if u8[s, B_STATE] == LIVE:
            why = u8[s, B_CLOSE_WHY] if i64[s, I_CLOSE] != 0 else END_EOF
            _expire(s, why, idx, k64, u8, exp, ctl)
            count += 1
    return count


@njit(cache=True, nogil=True)
def release(slots, u8, u32, free, fb_free, ctl) -> None:
    """Return pending slots (already read by Python) and their first-bytes blocks."""
    for k in range(slots.shape[0]):
        s = slots[k]
        if s < 0 or s >= u8.shape[0] or u8[s, B_STATE] != PENDING:
            raise ValueError("release of a slot that is not pending")
        u8[s, B_STATE] = FREE
        blk = np.int64(u32[s, U_FB]) - 1
        if blk >= 0:
            fb_free[ctl[C_FB_TOP]] = blk
            ctl[C_FB_TOP] += 1
            u32[s, U_FB] = 0
        top = ctl[C_FREE_TOP]
        if top >= free.shape[0]:
            raise ValueError("free stack overflow")
        free[top] = s
        ctl[C_FREE_TOP] = top + 1


@njit(cache=True, nogil=True)
def gather(buf, offs, lens, out) -> int:
    """Copy the byte ranges buf[offs[k] : offs[k] + lens[k]] one after another into out."""
    n = offs.shape[0]
    if lens.shape[0] != n:
        raise ValueError("offs and lens differ in length")
    pos = 0
    size = buf.shape[0]
    for k in range(n):
        o = offs[k]
        ln = np.int64(lens[k])
        if o < 0 or o + ln > size or pos + ln > out.shape[0]:
            raise ValueError("payload range outside the buffer")
        out[pos : pos + ln] = buf[o : o + ln]
        pos += ln
    return pos
