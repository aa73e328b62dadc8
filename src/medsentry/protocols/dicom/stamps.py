"""The capture time of the bytes a DICOM direction holds while it searches for a PDU boundary.

In step with the PDUs, a message is reported by the `feed` of the segment that carries its last
byte, with that segment's time. While a search (`resync.py`) holds bytes back, a PDU is only
taken once the next PDU header has arrived (PS3.8 §9.3.1), so its messages come out of a later
`feed`: `ChunkTimes` keeps, for each segment fed meanwhile, its first stream offset and its time,
so that each message gets the time of the segment its last byte came in, as it would in step.

Bounded: at most `MAX_CHUNKS` segments are told apart (the search buffer is bounded already);
past them, the newest time covers the bytes from the last one kept on (late, never early).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

# segments told apart in one search: a 1 MiB PDU (resync.MAX_RESYNC_PDU_LENGTH) and the
# header after it in 1 KiB segments; 16 bytes each
MAX_CHUNKS = 1024


class ChunkTimes:
    """(first stream offset, time) of each segment appended to a search buffer, in order."""

    __slots__ = ("starts", "times")

    def __init__(self) -> None:
        self.starts = array("q")
        self.times = array("q")

    def __len__(self) -> int:
        return len(self.starts)

    def add(self, start: int, ts_ns: int) -> None:
        """A segment whose first byte is stream byte `start` arrived at `ts_ns`."""
        starts = self.starts
        if starts and (starts[-1] >= start or len(starts) >= MAX_CHUNKS):
            self.times[-1] = ts_ns  # no byte of its own yet, or no room: merged with the last
            return
        starts.append(start)
        self.times.append(ts_ns)

    def at(self, offset: int) -> int:
        """The time of the segment stream byte `offset` came in (the first one's if earlier)."""
        return self.times[max(bisect_right(self.starts, offset) - 1, 0)]

    def drop_before(self, offset: int) -> None:
        """Forget the segments whose bytes all lie before stream byte `offset`."""
        i = bisect_right(self.starts, offset) - 1
        if i > 0:
            del self.starts[:i]
            del self.times[:i]
