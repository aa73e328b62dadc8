"""Finding a PDU boundary in a DICOM stream that was not followed from its first byte.

A capture that starts in the middle of an association (tcpdump started during a long C-STORE, a
ring buffer rotated) or a stream with lost segments puts the dissector somewhere inside a PDU.
`find_pdu` looks forward for a PDU a real peer would send there (PS3.8 §9.3.1):

- P-DATA-TF (§9.3.5): type 04H, reserved 00H, a PDU length of at most `MAX_RESYNC_PDU_LENGTH`,
  then PDV items (§9.3.5.1) whose item lengths tile the PDU exactly, each with an odd
  presentation context ID (§9.3.2.2: odd integers 1-255) and a message control header that uses
  only bits 0 and 1 (Annex E.2);
- A-RELEASE-RQ / -RP (§9.3.6, §9.3.7): type 05H / 06H, length 4, four reserved 00H bytes;
- A-ABORT (§9.3.8): type 07H, length 4, reserved 00H 00H, source 0-2, reason 0-6;

and confirmed by the PDU header right after it. A candidate whose PDU (or the next header) is not
all at hand yet waits for more bytes; when the stream ends, a candidate whose PDU is whole is
taken. Candidates are found with `bytes.find` on the bytes a header starts with (C speed, no
Python loop per byte); only those are checked in Python.
"""

from __future__ import annotations

import struct

from medsentry.protocols.dicom.pdu import (
    A_ABORT_TYPE,
    A_ASSOCIATE_AC_TYPE,
    A_ASSOCIATE_RQ_TYPE,
    A_RELEASE_RP_TYPE,
    A_RELEASE_RQ_TYPE,
    FIXED_PDU_LENGTH,
    MAX_ASSOCIATE_PDU_LENGTH,
    P_DATA_TF_TYPE,
    PDU_HEADER_LENGTH,
    PDU_NAMES,
)

# The largest P-DATA-TF PDU a search accepts (and buffers, to see the header after it): the
# bound the dissector already puts on association PDUs. Peers negotiate 16-128 KiB (PS3.8 §D.1
# Maximum Length); a larger PDU is passed over and the stream is picked up at the next one.
MAX_RESYNC_PDU_LENGTH = MAX_ASSOCIATE_PDU_LENGTH
# Bytes a search may pass over before it gives the direction up: four of the largest PDUs.
RESYNC_WINDOW = 4 * MAX_RESYNC_PDU_LENGTH
MAX_ITEMS_CHECKED = 8  # PDV items walked in a candidate; past them only its end is checked
PROBE = 12  # bytes a header needs to be judged: PDU header (6) and first PDV item header (6)
_FIXED_PDU = PDU_HEADER_LENGTH + FIXED_PDU_LENGTH

_U32 = struct.Struct(">I")
# PS3.8 Table 9-22: P-DATA-TF type, reserved byte and the high byte of a length under 16 MiB
_P_DATA_PREFIX = b"\x04\x00\x00"
# Tables 9-24 to 9-26: after the A-RELEASE-RQ/-RP or A-ABORT type, reserved byte and length 4
_FIXED_PREFIX = b"\x00\x00\x00\x00\x04"
_FIXED_TYPES = frozenset((A_RELEASE_RQ_TYPE, A_RELEASE_RP_TYPE, A_ABORT_TYPE))


def header_ok(buf: bytes | bytearray, at: int) -> bool:
    """The 6 bytes at `at` are a PDU header the dissector would accept (PS3.8 §9.3.1), and
    for a P-DATA-TF its first PDV item header fits, when its bytes are at hand (§9.3.5.1)."""
    pdu_type = buf[at]
    if pdu_type not in PDU_NAMES or buf[at + 1] != 0:
        return False
    (length,) = _U32.unpack_from(buf, at + 2)
    if pdu_type in (A_ASSOCIATE_RQ_TYPE, A_ASSOCIATE_AC_TYPE):
        return 68 <= length <= MAX_ASSOCIATE_PDU_LENGTH
    if pdu_type != P_DATA_TF_TYPE:
        return length == FIXED_PDU_LENGTH
    if len(buf) - at < PROBE:
        return length >= 6
    (item_length,) = _U32.unpack_from(buf, at + PDU_HEADER_LENGTH)
    return 2 <= item_length <= length - 4 and buf[at + 10] & 1 == 1 and buf[at + 11] <= 3


def _pdu_end(buf: bytes | bytearray, at: int, final: bool) -> int | bool | None:
    """Where the candidate PDU at `at` ends, False if it is no PDU, None if more bytes are
    needed to tell (`final`: there will be no more, so it is no PDU)."""
    n = len(buf)
    wait = False if final else None
    if n - at < _FIXED_PDU:
        return wait
    pdu_type = buf[at]
    if pdu_type != P_DATA_TF_TYPE:
        if buf[at + 6] or buf[at + 7]:  # reserved (release: 4 bytes; abort: 2 bytes)
            return False
        if pdu_type == A_ABORT_TYPE:  # source 0-2, reason/diag. 0-6
            return at + _FIXED_PDU if buf[at + 8] <= 2 and buf[at + 9] <= 6 else False
        return False if buf[at + 8] or buf[at + 9] else at + _FIXED_PDU
    if n - at < PROBE:
        return wait
    (length,) = _U32.unpack_from(buf, at + 2)
    if not PROBE - PDU_HEADER_LENGTH <= length <= MAX_RESYNC_PDU_LENGTH:
        return False
    end = at + PDU_HEADER_LENGTH + length
    item = at + PDU_HEADER_LENGTH
    for _ in range(MAX_ITEMS_CHECKED):
        if n - item < 6:  # the next PDV item header is not here yet
            return wait
        (item_length,) = _U32.unpack_from(buf, item)
        # PS3.8 §9.3.5.1: the item length counts the context ID, control header and fragment
        if item_length < 2 or item + 4 + item_length > end:
            return False
        if buf[item + 4] & 1 == 0 or buf[item + 5] > 3:
            return False
        item += 4 + item_length
        if item == end:
            break
    return end


def plausible_pdu(buf: bytes | bytearray, at: int, final: bool = False) -> bool | None:
    """Whether the bytes at `at`, which begin with one of the prefixes searched for, are a PDU
    followed by a PDU header; None: more bytes are needed to tell. `final`: the stream ends
    with these bytes, so a whole PDU at its end is taken."""
    end = _pdu_end(buf, at, final)
    if end is None or end is False:
        return end
    if len(buf) - end >= PDU_HEADER_LENGTH:  # PS3.8 §9.3.1: another PDU follows this one
        if not final and buf[end] == P_DATA_TF_TYPE and len(buf) - end < PROBE:
            # its first PDV item header decides (header_ok): wait for it, so that bytes fed in
            # pieces give the verdict the whole stream gives
            return None
        return header_ok(buf, end)
    return end <= len(buf) if final else None


def find_pdu(buf: bytes | bytearray, pos: int = 0, final: bool = False) -> tuple[int, bool]:
    """The first plausible PDU header at or after `pos`: (its offset, True). Otherwise
    (offset, False): every byte before `offset` can be dropped; from it on, the bytes may begin
    a header (a candidate waiting for more bytes, or the stream's last PROBE - 1 bytes)."""
    find = buf.find
    while True:
        p_data = find(_P_DATA_PREFIX, pos)
        # a release or abort before that one (its type byte comes before the prefix)
        limit = len(buf) if p_data < 0 else p_data + len(_FIXED_PREFIX)
        fixed = find(_FIXED_PREFIX, pos + 1, limit)
        while fixed >= 0 and buf[fixed - 1] not in _FIXED_TYPES:
            fixed = find(_FIXED_PREFIX, fixed + 1, limit)
        at = fixed - 1 if fixed >= 0 else p_data
        if at < 0:
            return max(pos, len(buf) - (PROBE - 1)), False
        verdict = plausible_pdu(buf, at, final)
        if verdict is None:
            return at, False
        if verdict:
            return at, True
        pos = at + 1
