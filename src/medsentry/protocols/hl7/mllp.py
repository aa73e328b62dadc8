"""MLLP framing (HL7 v2 Appendix C, MLLP Release 2): <VT> message <FS><CR> over a byte stream.

`MllpFramer` is fed one direction's bytes in order and returns whole frames. Bytes between
frames are counted as junk; a frame's first `max_frame` bytes are kept and the rest only
counted (the frame is then marked truncated), so memory is bounded whatever the peer sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from medsentry.protocols.base import ParseError

START_BLOCK = 0x0B  # <VT>
END_BLOCK = 0x1C  # <FS>
CARRIAGE_RETURN = 0x0D  # <CR>

MAX_FRAME = 256 * 1024  # bytes of a message kept for parsing; longer ones are counted
MAX_LEADING_JUNK = 4096  # no start block in the first 4 KiB of a direction: not MLLP


@dataclass(slots=True)
class Frame:
    payload: bytes  # the message, up to `max_frame` bytes
    size: int  # the whole message's size
    truncated: bool


class MllpFramer:
    __slots__ = (
        "_buf",
        "_in_frame",
        "_size",
        "_skip_cr",
        "frames",
        "junk_bytes",
        "max_frame",
        "unterminated",
    )

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False
        self._size = 0
        self._skip_cr = False  # an <FS> ended the last chunk: its <CR> may start the next
        self.frames = 0
        self.junk_bytes = 0
        self.unterminated = 0

    def reset(self) -> None:
        """Forget a partial frame (after bytes were lost)."""
        self._buf.clear()
        self._in_frame = False
        self._size = 0
        self._skip_cr = False

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        pos, end = 0, len(data)
        if self._skip_cr and pos < end:
            self._skip_cr = False
            if data[0] == CARRIAGE_RETURN:
                pos = 1
        while pos < end:
            if not self._in_frame:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self._junk(end - pos)
                    break
                if start > pos:
                    self._junk(start - pos)
                self._in_frame = True
                self._size = 0
                pos = start + 1
            stop = data.find(END_BLOCK, pos)
            restart = data.find(START_BLOCK, pos, stop if stop >= 0 else end)
            if restart >= 0:  # a new start block before the end block: the frame was cut
                self.unterminated += 1
                self._buf.clear()
                self._size = 0
                pos = restart + 1
                continue
            if stop < 0:
                self._take(data, pos, end)
                break
            if self._size == 0 and stop - pos <= self.max_frame:
                # the whole frame is in this chunk: no copy through the buffer
                out.append(Frame(bytes(data[pos:stop]), stop - pos, False))
            else:
                self._take(data, pos, stop)
                out.append(Frame(bytes(self._buf), self._size, self._size > len(self._buf)))
                self._buf.clear()
            self.frames += 1
            self._in_frame = False
            pos = stop + 1
            if pos < end:
                if data[pos] == CARRIAGE_RETURN:
                    pos += 1
            else:
                self._skip_cr = True
        return out

    def _take(self, data: bytes, start: int, stop: int) -> None:
        self._size += stop - start
        room = self.max_frame - len(self._buf)
        if room > 0:
            self._buf += data[start : min(stop, start + room)]

    def _junk(self, n: int) -> None:
        self.junk_bytes += n
        if self.frames == 0 and not self._in_frame and self.junk_bytes > MAX_LEADING_JUNK:
            raise ParseError(f"MLLP: no start block in the first {self.junk_bytes} bytes")
