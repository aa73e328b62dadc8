"""Byte-order aware field readers for the numba kernels.

Every reader returns int64 (or uint64 for 48/64-bit addresses) and trusts the caller to have
checked that the bytes lie inside the buffer: numba does not bounds-check.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from medsentry.jit import njit


@njit(cache=True, nogil=True, inline="always")
def u16be(b: np.ndarray, i: int) -> int:
    return (np.int64(b[i]) << 8) | np.int64(b[i + 1])


@njit(cache=True, nogil=True, inline="always")
def u16le(b: np.ndarray, i: int) -> int:
    return (np.int64(b[i + 1]) << 8) | np.int64(b[i])


@njit(cache=True, nogil=True, inline="always")
def u32be(b: np.ndarray, i: int) -> int:
    return (
        (np.int64(b[i]) << 24)
        | (np.int64(b[i + 1]) << 16)
        | (np.int64(b[i + 2]) << 8)
        | np.int64(b[i + 3])
    )


@njit(cache=True, nogil=True, inline="always")
def u32le(b: np.ndarray, i: int) -> int:
    return (
        (np.int64(b[i + 3]) << 24)
        | (np.int64(b[i + 2]) << 16)
        | (np.int64(b[i + 1]) << 8)
        | np.int64(b[i])
    )


@njit(cache=True, nogil=True, inline="always")
def u16(b: np.ndarray, i: int, big: bool) -> int:
    if big:
        return u16be(b, i)
    return u16le(b, i)


@njit(cache=True, nogil=True, inline="always")
def u32(b: np.ndarray, i: int, big: bool) -> int:
    if big:
        return u32be(b, i)
    return u32le(b, i)


@njit(cache=True, nogil=True, inline="always")
def ubytes_be(b: np.ndarray, i: int, n: int) -> np.uint64:
    """`n` (<= 8) bytes at `i`, big-endian, as uint64 (MAC addresses, IPv6 halves)."""
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(b[i + k])
    return v


# Record-walk outcomes shared by the pcap and pcapng kernels (returned as `status`).
WALK_NEED_MORE = 0  # the next record does not fit in the window: call again with `need` bytes
WALK_END = 1  # clean end of the capture
WALK_TRUNCATED = 2  # the last record is cut short by the end of the file
WALK_BAD_LENGTH = 3  # an absurd record/block length (corrupt header)
WALK_ZERO_RECORD = 4  # an all-zero record header (pre-allocated or zero-filled tail)
WALK_TRAILER_MISMATCH = 5  # pcapng block total length differs from its trailing copy
WALK_BAD_BLOCK = 6  # a pcapng block whose fields contradict its length or the section
WALK_BAD_BYTE_ORDER = 7  # a pcapng section header with an unknown byte-order magic
WALK_TOO_MANY_IFACES = 8
WALK_FULL = 9  # the output arrays are full: call again from `pos`
WALK_BAD_VERSION = 10  # a pcapng section of a major version other than 1

WALK_MESSAGES = {
    WALK_TRUNCATED: "capture ends inside a record (truncated file)",
    WALK_BAD_LENGTH: "record length is impossible (corrupt record header)",
    WALK_ZERO_RECORD: "zero-length record (zero-filled or corrupt data)",
    WALK_TRAILER_MISMATCH: "pcapng block length differs from its trailing length",
    WALK_BAD_BLOCK: "pcapng block fields inconsistent with its length or section",
    WALK_BAD_BYTE_ORDER: "pcapng section header has an unknown byte-order magic",
    WALK_TOO_MANY_IFACES: "more than 65535 pcapng interfaces",
    WALK_BAD_VERSION: "pcapng section of a major version other than 1 (another format)",
}


@intrinsic
def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Hint the CPU to load the cache line at arr[idx] (llvm.prefetch: read, high locality).

    A prefetch never faults, so `idx` may lie beyond the array; it only hides the memory
    latency of sequential record walks where each header gives the next offset.
    """
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()
        index = args[1]
        if index.type != i64:
            index = builder.sext(index, i64)
        addr = builder.add(builder.ptrtoint(ary.data, i64), index)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        rw, locality, cache = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
        builder.call(fn, [builder.inttoptr(addr, i8p), rw, locality, cache])
        return context.get_dummy_value()

    return sig, codegen
