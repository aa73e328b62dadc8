"""Live capture: AF_PACKET socket with a TPACKET_V3 mmap ring (packet(7), linux/if_packet.h).

The kernel fills ring blocks and retires each one when it is full or `block_timeout_ms` has
passed; a numba kernel (kernels_live.drain_blocks) copies every packet of the retired blocks
into a RawBatch and hands the blocks back. A BPF filter string is compiled by libpcap
(`pcap_compile` on a dead handle) and attached with SO_ATTACH_FILTER before the socket is
bound, so no unfiltered packet slips in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medsentry.capture.batch import LINKTYPE_ETHERNET, LINKTYPE_RAW, RawBatch
from medsentry.capture.kernels_live import block_ready, drain_blocks
from medsentry.errors import CaptureError
from medsentry.events import DecodeWarning

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SOL_SOCKET = 1
SO_ATTACH_FILTER = 26
TP_FT_REQ_FILL_RXHASH = 1

# ARPHRD_* (linux/if_arp.h) -> link type of the frames the packet socket delivers
ARPHRD_LINKTYPES = {
    1: LINKTYPE_ETHERNET,  # ARPHRD_ETHER
    772: LINKTYPE_ETHERNET,  # ARPHRD_LOOPBACK: lo frames carry an Ethernet header
    519: LINKTYPE_RAW,  # ARPHRD_RAWIP
    65534: LINKTYPE_RAW,  # ARPHRD_NONE (tun)
}
ARPHRD_LOOPBACK = 772


class _BpfInsn(ctypes.Structure):  # struct bpf_insn == struct sock_filter
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):  # struct bpf_program
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _SockFprog(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_BpfInsn))]


def compile_bpf(expr: str, linktype: int, snaplen: int) -> list[tuple[int, int, int, int]]:
    """Compile a tcpdump filter expression with libpcap; returns the BPF instructions."""
    name = ctypes.util.find_library("pcap")
    if name is None:
        raise CaptureError("libpcap is needed to compile BPF filters (install libpcap)", expr)
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    ]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise CaptureError("libpcap could not open a handle to compile the filter", expr)
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            msg = lib.pcap_geterr(handle).decode(errors="replace")
            raise CaptureError(f"invalid BPF filter: {msg}", expr)
        insns = [(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[: prog.bf_len]]
        lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
    return insns


def _attach_filter(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    arr = (_BpfInsn * len(insns))(*[_BpfInsn(*i) for i in insns])
    fprog = _SockFprog(len(insns), ctypes.cast(arr, ctypes.POINTER(_BpfInsn)))
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.setsockopt(
        sock.fileno(), SOL_SOCKET, SO_ATTACH_FILTER, ctypes.byref(fprog), ctypes.sizeof(fprog)
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise CaptureError(f"cannot attach BPF filter: {err}", sock.getsockname()[0])


class LiveSource:
    """Packets of a network interface as RawBatches, until `stop()`, `duration` or
    `max_packets`. Iterate once; `packets`, `drops`, `warnings` tell how it went."""

    format = "live"

    def __init__(
        self,
        interface: str,
        snaplen: int = 262144,
        promisc: bool = False,
        bpf: str | None = None,
        block_size: int = 1 << 22,
        block_count: int = 16,
        block_timeout_ms: int = 50,
        duration: float | None = None,
        max_packets: int | None = None,
        blocks_per_batch: int = 4,
    ) -> None:
        if block_size < 4096 or block_size & (block_size - 1):
            raise CaptureError(
                "block_size must be a power of two of at least 4096 bytes", interface
            )
        self.source = interface
        self.snaplen = int(snaplen)
        self.block_size = int(block_size)
        self.block_count = int(block_count)
        self.block_timeout_ms = max(1, int(block_timeout_ms))
        self.duration = duration
        self.max_packets = max_packets
        self.blocks_per_batch = max(1, min(blocks_per_batch, self.block_count))
        self.warnings: list[DecodeWarning] = []
        self.packets = 0
        self.drops = 0
        self.vlan_tags_restored = 0  # 802.1Q tags the kernel moved to metadata, put back
        self._stop = threading.Event()
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise CaptureError("no such network interface", interface) from None
        arphrd = int(Path(f"/sys/class/net/{interface}/type").read_text().strip())
        if arphrd not in ARPHRD_LINKTYPES:
            raise CaptureError(f"unsupported interface hardware type {arphrd}", interface)
        self.linktype = ARPHRD_LINKTYPES[arphrd]
        self.linktypes = [self.linktype]
        self._skip_outgoing = arphrd == ARPHRD_LOOPBACK  # lo would show each packet twice
        try:
            # protocol 0: nothing is queued until bind(), after the filter is in place
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureError("live capture needs root or CAP_NET_RAW", interface) from None
        try:
            self._setup(bpf, promisc)
        except BaseException:
            self._sock.close()
            raise

    def _setup(self, bpf: str | None, promisc: bool) -> None:
        s = self._sock
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        # struct tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
        # sizeof_priv, feature_req_word
        frame = 2048
        req = struct.pack(
            "7I",
            self.block_size,
            self.block_count,
            frame,
            self.block_size // frame * self.block_count,
            self.block_timeout_ms,
            0,
            0,
        )
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        size = self.block_size * self.block_count
        self._mm = mmap.mmap(
            s.fileno(), size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._ring = np.frombuffer(self._mm, np.uint8)
        self._ring32 = np.frombuffer(self._mm, np.uint32)
        if bpf:
            _attach_filter(s, compile_bpf(bpf, self.linktype, self.snaplen))
        if promisc:  # struct packet_mreq: ifindex, type, alen, address[8]
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.bind((self.source, ETH_P_ALL))
        self._poll = select.poll()
        self._poll.register(s.fileno(), select.POLLIN | select.POLLERR)
        self._next_block = 0

    def stop(self) -> None:
        """End the iteration (safe from another thread or from the consuming loop)."""
        self._stop.set()

    def _stats(self) -> None:
        try:  # struct tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt (reset on read)
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            self.drops += struct.unpack("3I", raw)[1]
        except OSError:
            pass

    def __iter__(self) -> Iterator[RawBatch]:
        t_end = None if self.duration is None else time.monotonic() + self.duration
        k = self.blocks_per_batch
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                break
            if self.max_packets is not None and self.packets >= self.max_packets:
                break
            if not block_ready(self._ring, self._next_block, self.block_size):
                self._poll.poll(100)
                continue
            out = np.empty(k * self.block_size * 17 // 16, np.uint8)
            cap = k * self.block_size // 64 + 1
            ts = np.empty(cap, np.int64)
            off = np.empty(cap, np.int64)
            caplen = np.empty(cap, np.uint32)
            wirelen = np.empty(cap, np.uint32)
            n, used, self._next_block, bad, tags = drain_blocks(
                self._ring,
                self._ring32,
                self.block_size,
                self.block_count,
                self._next_block,
                k,
                self.snaplen,
                self._skip_outgoing,
                out,
                ts,
                off,
                caplen,
                wirelen,
            )
            self.vlan_tags_restored += tags
            if bad:
                self.warnings.append(
                    DecodeWarning(
                        ts_ns=time.time_ns(),
                        source=self.source,
                        offset=None,
                        message=f"{bad} malformed ring entries skipped",
                    )
                )
            if n == 0:
                continue
            batch = RawBatch(
                source=self.source,
                buf=out[:used],
                buf_offset=0,
                first_frame=self.packets + 1,
                ts_ns=ts[:n],
                off=off[:n],
                caplen=caplen[:n],
                wirelen=wirelen[:n],
                linktype=np.full(n, self.linktype, np.uint16),
                iface=np.zeros(n, np.uint16),
            )
            self.packets += n
            yield batch
        self._stats()

    def close(self) -> None:
        self._stop.set()
        self._stats()
        self._ring = self._ring32 = np.empty(0, np.uint8)
        with contextlib.suppress(BufferError, AttributeError):
            self._mm.close()  # batches own copies; only our views could hold the map
        self._sock.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
