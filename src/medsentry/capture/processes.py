"""Which process sent or received each packet, where the capture file records it.

A capture taken on a phone or a computer can name the app behind each packet: the companion
app of a medical device, talking to its maker's cloud. Three formats do:

- Apple PKTAP (LINKTYPE_PKTAP 258; Wireshark packet-pktap.c): a little-endian header per packet
  with pth_flags, pth_pid, pth_comm and the effective process's pth_epid and pth_ecomm (the app
  on whose behalf a daemon did the I/O). macOS `pktap` and an iPhone's `rvi` interface.
- Apple pcapng (libpcap-apple pcap-ng.h, experimental): Process Information Blocks (0x80000001:
  process id, option 2 its name) and, on each Enhanced Packet Block, options 0x8001 (the index
  of its PIB in the section) and 0x8003 (the effective process's PIB); epb_flags (option 2,
  draft-ietf-opsawg-pcapng §4.3.1) gives the direction.
- PCAPdroid (Android, no root; PCAPdroid pcap_dump.c): a pcap of LINKTYPE_ETHERNET with zeroed
  MAC addresses and a 32-octet trailer ending each frame (magic 0x01072021, uid, app name[20],
  FCS); or a pcapng whose Custom Blocks (0xBAD, PEN 62652; §4.8) map each uid to its package
  and app name, each Enhanced Packet Block carrying the comment "u-<uid>".

The packet walk is not touched: a file is looked at here only once it shows one of these (a
PKTAP interface, a PIB or Custom Block, a first frame ending in the trailer). What comes out is,
per batch, an index into the reader's table of processes and a direction per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from medsentry.capture import kernels_pcapng
from medsentry.capture import kernels_procs as k
from medsentry.capture.batch import LINKTYPE_ETHERNET, LINKTYPE_PKTAP

PCAPDROID_PEN = 62652  # PCAPdroid's IANA Private Enterprise Number (its pcapdroid.lua)
PCAPDROID_BLOCK_UID_MAP = 1
MAX_PROCESSES = 4096  # distinct processes kept per capture; later ones are not attributed
MAX_META_BLOCKS = 65536  # per window
UNKNOWN_NAMES = frozenset({"", "???"})  # PCAPdroid's name for a uid it could not resolve


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    name: str  # Android package or app name (PCAPdroid); command name (Apple)
    source: str  # "pktap", "apple-pcapng", "pcapdroid"
    label: str | None = None  # the app's display name, where given (PCAPdroid pcapng)
    ident: int | None = None  # Android uid; Apple pid of the first packet
    via: str | None = None  # Apple: the process that did the I/O on `name`'s behalf


@dataclass(slots=True)
class Processes:
    """One batch's attribution: `proc[i]` indexes `table` (-1: unknown); `direction[i]` is 1
    for a packet the host received, 2 for one it sent, 0 when the capture does not say."""

    proc: np.ndarray  # int32
    direction: np.ndarray  # int8
    table: list[ProcessInfo] = field(default_factory=list)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


class ProcessTagger:
    """Per capture file: the process table and the state that spans windows."""

    def __init__(self) -> None:
        self.table: list[ProcessInfo] = []
        self._index: dict[ProcessInfo, int] = {}
        self._trailer: bool | None = None  # PCAPdroid trailer: decided on the first frame
        self._big = False  # pcapng byte order at the window start
        self._sections = 0  # pcapng sections before the window
        self._section = -1
        self._pib_count = 0  # PIBs in the current section
        self._pibs: dict[tuple[int, int], tuple[int, str]] = {}  # (section, index) -> pid, name
        self._uids: dict[int, tuple[str, str]] = {}  # PCAPdroid uid -> package, app name
        self._lost = False  # more metadata blocks in a window than were read

    def _intern(self, info: ProcessInfo) -> int:
        i = self._index.get(info)
        if i is None:
            if len(self.table) >= MAX_PROCESSES:
                return -1
            i = self._index[info] = len(self.table)
            self.table.append(info)
        return i

    def tag(self, walker: object, view: np.ndarray, used: int, arrays: tuple) -> Processes | None:
        """The batch's attribution, or None when the file names no process here."""
        _, off, caplen, _, linktype, _ = arrays
        n = off.shape[0]
        fmt = getattr(walker, "format", "")
        pktap = n > 0 and bool((linktype == LINKTYPE_PKTAP).any())
        if fmt == "pcapng":  # metadata blocks may come in a window without packets
            st = walker.st  # type: ignore[attr-defined]
            out = self._pcapng(view, used, n) if st[kernels_pcapng.ST_PROC_BLOCKS] > 0 else None
            # where the next window starts: its byte order and section
            self._big = bool(st[kernels_pcapng.ST_BIG])
            self._sections = int(st[kernels_pcapng.ST_SECTIONS])
            if pktap:
                pk = self._pktap(view, off, caplen, linktype)
                if out is None:
                    return pk
                take = (out.proc < 0) & (pk.proc >= 0)
                out.proc[take] = pk.proc[take]
                out.direction[take] = pk.direction[take]
            return out if n else None
        if n == 0:
            return None
        if pktap:
            return self._pktap(view, off, caplen, linktype)
        if fmt == "pcap":
            if self._trailer is None:
                self._trailer = bool(linktype[0] == LINKTYPE_ETHERNET) and self._trailer_at(
                    view, int(off[0]), int(caplen[0])
                )
            if self._trailer:
                return self._pcapdroid_trailer(view, off, caplen)
        return None

    # -- Apple PKTAP --

    def _pktap(self, view, off, caplen, linktype) -> Processes:
        n = off.shape[0]
        comm, ecomm, pid = (np.empty(n, np.int64) for _ in range(3))
        direction = np.empty(n, np.int8)
        k.pktap_fields(view, off, caplen, linktype, LINKTYPE_PKTAP, comm, ecomm, pid, direction)
        proc = np.full(n, -1, np.int32)
        has = np.flatnonzero((comm != 0) | (ecomm != 0))
        if has.size:
            keys = np.stack([comm[has], ecomm[has]], axis=1)
            _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            lut = np.empty(first.size, np.int32)
            for u, i in enumerate(has[first].tolist()):
                p = int(off[i])
                actual = _cstr(bytes(view[p + k.PKTAP_COMM : p + k.PKTAP_COMM + 20]))
                effective = _cstr(bytes(view[p + k.PKTAP_ECOMM : p + k.PKTAP_ECOMM + 20]))
                lut[u] = self._apple(actual, effective, int(pid[i]), "pktap")
            proc[has] = lut[inverse.reshape(-1)]
        return Processes(proc, direction, self.table)

    def _apple(self, actual: str, effective: str, pid: int, source: str) -> int:
        if effective and effective != actual:  # a daemon's I/O for an app: the app is named
            return self._intern(ProcessInfo(effective, source, via=actual or None, ident=pid))
        if not actual:
            return -1
        return self._intern(ProcessInfo(actual, source, ident=pid))

    # -- PCAPdroid trailer --

    @staticmethod
    def _trailer_at(view: np.ndarray, p: int, n: int) -> bool:
        if n < 14 + k.PCAPDROID_TRAILER_LEN or p + n > view.shape[0]:
            return False
        if view[p : p + 12].any():  # PCAPdroid's bogus Ethernet header: both MACs zero
            return False
        t = p + n - k.PCAPDROID_TRAILER_LEN
        return struct.unpack(">I", bytes(view[t : t + 4]))[0] == k.PCAPDROID_MAGIC

    def _pcapdroid_trailer(self, view, off, caplen) -> Processes:
        n = off.shape[0]
        uid = np.empty(n, np.int64)
        has = np.empty(n, np.uint8)
        k.trailer_uids(view, off, caplen, uid, has)
        proc = np.full(n, -1, np.int32)
        idx = np.flatnonzero(has)
        if idx.size:
            uniq, first, inverse = np.unique(uid[idx], return_index=True, return_inverse=True)
            lut = np.empty(uniq.size, np.int32)
            for u, i in enumerate(idx[first].tolist()):
                t = int(off[i]) + int(caplen[i]) - k.PCAPDROID_TRAILER_LEN + k.PCAPDROID_APPNAME
                name = _cstr(bytes(view[t : t + 20]))
                lut[u] = (
                    -1
                    if name in UNKNOWN_NAMES
                    else self._intern(ProcessInfo(name, "pcapdroid", ident=int(uniq[u])))
                )
            proc[idx] = lut[inverse.reshape(-1)]
        return Processes(proc, np.zeros(n, np.int8), self.table)

    # -- pcapng: Apple PIBs, PCAPdroid Custom Blocks --

    def _pcapng(self, view: np.ndarray, used: int, n: int) -> Processes:
        pib, epib, uid = (np.empty(n, np.int64) for _ in range(3))
        direction = np.empty(n, np.int8)
        moff = np.empty(MAX_META_BLOCKS, np.int64)
        mkind = np.empty(MAX_META_BLOCKS, np.int8)
        mat = np.empty(MAX_META_BLOCKS, np.int64)
        got, nmeta, _ = k.pcapng_meta(
            view, used, self._big, pib, epib, uid, direction, moff, mkind, mat
        )
        proc = np.full(n, -1, np.int32)
        if nmeta >= MAX_META_BLOCKS:  # PIBs past the limit were not read: their indices would
            self._lost = True  # name the wrong process from here on
        if got != n or self._lost:  # attribute nothing rather than misattribute
            return Processes(proc, np.zeros(n, np.int8), self.table)
        base = self._section = self._sections - 1
        shb_at = []
        for j in range(nmeta):
            o, kind = int(moff[j]), int(mkind[j])
            if kind == k.META_SHB:
                bom = struct.unpack("<I", bytes(view[o + 8 : o + 12]))[0]
                self._big = bom != kernels_pcapng.BYTE_ORDER_MAGIC
                self._section += 1
                self._pib_count = 0
                shb_at.append(int(mat[j]))
            elif kind == k.META_PIB:
                self._read_pib(view, o)
            else:
                self._read_custom(view, o)
        sect = base + np.searchsorted(np.asarray(shb_at, np.int64), np.arange(n), side="right")
        if (pib >= 0).any() or (epib >= 0).any():
            m = np.flatnonzero((pib >= 0) | (epib >= 0))
            keys = np.stack([sect[m], pib[m], epib[m]], axis=1)
            uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
            lut = np.empty(uniq.shape[0], np.int32)
            for u, (s, a, e) in enumerate(uniq.tolist()):
                pa = self._pibs.get((s, a)) if a >= 0 else None
                pe = self._pibs.get((s, e)) if e >= 0 else None
                actual = pa[1] if pa else ""
                effective = pe[1] if pe else ""
                pid = (pe or pa or (-1, ""))[0]
                lut[u] = self._apple(actual, effective, pid, "apple-pcapng")
            proc[m] = lut[inverse.reshape(-1)]
        if (uid >= 0).any():
            m = np.flatnonzero(uid >= 0)
            uniq, inverse = np.unique(uid[m], return_inverse=True)
            lut = np.empty(uniq.size, np.int32)
            for u, v in enumerate(uniq.tolist()):
                mapped = self._uids.get(v)  # PCAPdroid: a uid without its mapping is not used
                if mapped is None or mapped[0] in UNKNOWN_NAMES:
                    lut[u] = -1
                else:
                    pkg, app = mapped
                    lut[u] = self._intern(
                        ProcessInfo(pkg, "pcapdroid", label=app or None, ident=int(v))
                    )
            proc[m] = lut[inverse.reshape(-1)]
        return Processes(proc, direction, self.table)

    def _read_pib(self, view: np.ndarray, o: int) -> None:
        e = ">" if self._big else "<"
        blen = struct.unpack(e + "I", bytes(view[o + 4 : o + 8]))[0]
        if blen < 16:
            return
        pid = struct.unpack(e + "I", bytes(view[o + 8 : o + 12]))[0]
        name = ""
        p, end = o + 12, o + blen - 4
        while p + 4 <= end:  # §3.5 options
            code, olen = struct.unpack(e + "HH", bytes(view[p : p + 4]))
            if code == 0 or p + 4 + olen > end:
                break
            if code == 2:  # PCAPNG_PIB_NAME
                name = _cstr(bytes(view[p + 4 : p + 4 + olen]))
            p += 4 + ((olen + 3) & ~3)
        self._pibs[(self._section, self._pib_count)] = (pid, name)
        self._pib_count += 1

    def _read_custom(self, view: np.ndarray, o: int) -> None:
        e = ">" if self._big else "<"
        blen = struct.unpack(e + "I", bytes(view[o + 4 : o + 8]))[0]
        body = bytes(view[o + 8 : o + blen - 4])
        if len(body) < 14:
            return
        (pen,) = struct.unpack(e + "I", body[:4])
        if pen != PCAPDROID_PEN:
            return  # another vendor's custom block
        version, btype = struct.unpack(e + "HB", body[4:7])
        if version != 1 or btype != PCAPDROID_BLOCK_UID_MAP:
            return
        uid, plen, alen = struct.unpack(e + "iBB", body[8:14])
        if 14 + plen + alen > len(body):
            return
        pkg = _cstr(body[14 : 14 + plen])
        app = _cstr(body[14 + plen : 14 + plen + alen])
        if len(self._uids) < MAX_PROCESSES:
            self._uids.setdefault(uid, (pkg, app))
