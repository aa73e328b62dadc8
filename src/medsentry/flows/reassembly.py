"""TCP stream reassembly for one direction of a connection (RFC 9293 §3.4, §3.10.7.4).

Segments arrive with their sequence number relative to the direction's initial sequence number
(the SYN's sequence number + 1, or the first sequence number seen when the capture starts
mid-stream), in any order, repeated or overlapping. `segment()` returns what became deliverable,
in order: `bytes` for stream data and `int` for a hole of that many bytes that was given up on
(the out-of-order buffer hit its bound, or the stream ended with data missing).

Sequence numbers are 32-bit and wrap (RFC 9293 §3.4); each relative number is unwrapped against
the next expected byte, so a stream may run past 4 GiB.
"""

from __future__ import annotations

import heapq

from medsentry.events.flow import StreamStats

SEQ_MOD = 1 << 32
_HALF = 1 << 31

Delivery = bytes | int  # bytes: in-order data; int: length of a skipped hole


class StreamReassembler:
    """In-order bytes of one TCP direction from segments in any order."""

    __slots__ = (
        "_heap",
        "_pending",
        "delivered",
        "gap_bytes",
        "gaps",
        "max_pending_bytes",
        "max_pending_segments",
        "next",
        "out_of_order",
        "pending_bytes",
        "resyncing",
        "retransmitted",
        "seen",
    )

    def __init__(self, max_pending_bytes: int = 256 * 1024, max_pending_segments: int = 1024):
        self.next = 0  # offset of the next byte expected, from the initial sequence number
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_segments = max_pending_segments
        self._pending: dict[int, bytes] = {}  # offset -> longest segment seen starting there
        self._heap: list[int] = []  # offsets of _pending, smallest first
        self.pending_bytes = 0
        self.delivered = 0
        self.retransmitted = 0
        self.out_of_order = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.seen = 0  # payload bytes offered, repeats included
        self.resyncing = False

    def resync(self) -> None:
        """Bytes were skipped upstream: the next segment past a hole jumps it at once."""
        self.resyncing = True

    def unwrap(self, rel_seq: int) -> int:
        """The 64-bit stream offset of a 32-bit relative sequence number, nearest `next`."""
        diff = (rel_seq - self.next) % SEQ_MOD
        if diff >= _HALF:
            diff -= SEQ_MOD
        return self.next + diff

    def segment(self, rel_seq: int, data: bytes) -> list[Delivery]:
        """Add one segment's payload; return what is now deliverable, in order."""
        if not data:
            return []
        if not self._heap and not (rel_seq - self.next) & 0xFFFFFFFF:
            # in order with nothing held (the usual case): deliver it as it is
            n = len(data)
            self.seen += n
            self.resyncing = False
            self.next += n
            self.delivered += n
            return [data]
        self.seen += len(data)
        off = self.unwrap(rel_seq)
        end = off + len(data)
        nxt = self.next
        if end <= nxt:  # everything already delivered: a retransmission
            self.retransmitted += 1
            return []
        if off < nxt:  # partial overlap with delivered bytes: keep the new tail
            self.retransmitted += 1
            data = data[nxt - off :]
            off = nxt
        if off > nxt:  # a hole before it: hold it back
            held = self._pending.get(off)
            if held is not None:
                if len(held) >= len(data):
                    self.retransmitted += 1
                    return []
                self.pending_bytes += len(data) - len(held)
            else:
                heapq.heappush(self._heap, off)
                self.pending_bytes += len(data)
            self._pending[off] = data
            self.out_of_order += 1
            out: list[Delivery] = []
            if self.resyncing:
                self.resyncing = False
                self._skip(out)
            while self._heap and (
                self.pending_bytes > self.max_pending_bytes
                or len(self._heap) > self.max_pending_segments
            ):
                self._skip(out)
            return out
        self.resyncing = False
        out = [data]
        self.next = end
        self.delivered += len(data)
        self._drain(out)
        return out

    def in_order(self, rel_seq: int) -> bool:
        """A segment at `rel_seq` would be delivered at once, as it is (nothing held)."""
        return not self._heap and not (rel_seq - self.next) & 0xFFFFFFFF

    def count(self, rel_seq: int, length: int) -> None:
        """`segment()`'s bookkeeping for `length` bytes nobody reads (the consumer is done):
        in-order bytes are only counted; anything else goes through `segment()` (rare)."""
        if length <= 0:
            return
        if not self._heap and not (rel_seq - self.next) & 0xFFFFFFFF:
            self.seen += length
            self.resyncing = False
            self.next += length
            self.delivered += length
            return
        self.segment(rel_seq, bytes(length))

    def finish(self) -> list[Delivery]:
        """The stream ended (FIN, RST or flow end): give up on holes, deliver what is held."""
        out: list[Delivery] = []
        while self._heap:
            self._skip(out)
        return out

    def _skip(self, out: list[Delivery]) -> None:
        # jump over the hole before the lowest held segment
        hole = self._heap[0] - self.next
        if hole > 0:
            self.gaps += 1
            self.gap_bytes += hole
            out.append(hole)
            self.next += hole
        self._drain(out)

    def _drain(self, out: list[Delivery]) -> None:
        heap, pending = self._heap, self._pending
        while heap and heap[0] <= self.next:
            off = heapq.heappop(heap)
            data = pending.pop(off)
            self.pending_bytes -= len(data)
            end = off + len(data)
            if end <= self.next:
                continue  # covered by bytes delivered meanwhile
            data = data[self.next - off :]
            out.append(data)
            self.next = end
            self.delivered += len(data)

    def stats(self) -> StreamStats:
        return StreamStats(
            bytes_in_order=self.delivered,
            retransmitted_segments=self.retransmitted,
            out_of_order_segments=self.out_of_order,
            gaps=self.gaps,
            gap_bytes=self.gap_bytes,
        )
