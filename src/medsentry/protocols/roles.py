"""Which side sent a direction's first bytes, for protocols whose signature holds either way.

A signature with `any` (data/protocol_signatures.yaml) matches a flow however it is oriented:
for a TCP connection seen from its middle, whose client the flow table could only guess, its
bytes alone cannot say which side is the client. A role function, named by the signature's
`role`, reads one direction's first bytes and answers True (the requester, the side that
connected, sent them), False (the responder did) or None (these bytes do not tell). Role
functions never raise on any input and read one message header at most.
"""

from __future__ import annotations

from collections.abc import Callable

from medsentry.protocols.signatures_validators import Verdict, dicom_pdu, hl7_mllp

Role = Callable[[bytes], Verdict]
ROLES: dict[str, Role] = {}


def role(name: str) -> Callable[[Role], Role]:
    def register(fn: Role) -> Role:
        ROLES[name] = fn
        return fn

    return register


# --- DICOM, PS3.8 §9.3 (PDUs) and PS3.7 §9.3 / §E.1 (command set) ---------------------------

_COMMAND_FIELD = 0x0100  # (0000,0100), PS3.7 §E.1; bit 15 set: a response (-RSP)
_C_STORE, _N_EVENT_REPORT = 0x0001, 0x0100


def _command_field(data: bytes, pos: int, end: int) -> int | None:
    """The Command Field of a command set starting at `pos` (Implicit VR Little Endian,
    PS3.7 §6.3.1: tag group, element, 4-byte length, value), None if not within `end`."""
    while pos + 8 <= end:
        group = int.from_bytes(data[pos : pos + 2], "little")
        element = int.from_bytes(data[pos + 2 : pos + 4], "little")
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if group != 0:
            return None
        if element == _COMMAND_FIELD:
            if length != 2 or pos + 10 > end:
                return None
            return int.from_bytes(data[pos + 8 : pos + 10], "little")
        if element > _COMMAND_FIELD:
            return None  # elements come in ascending order, PS3.5 §7.1
        pos += 8 + length
    return None


@role("dicom_role")
def dicom_role(data: bytes) -> Verdict:
    """A-ASSOCIATE-RQ: the requestor; -AC/-RJ: the acceptor (PS3.8 §9.3.2-§9.3.4). A P-DATA-TF
    whose first PDV is a command (message control header bit 0, PS3.8 §E.2): a -RQ is the
    requestor's, a -RSP the acceptor's, except N-EVENT-REPORT, which the SCP sends (PS3.4
    Annex J, often the acceptor). C-STORE counts: the requestor stores, but for a C-GET the
    acceptor sends the C-STORE-RQ (PS3.4 §C.4.3), the one case this reads the wrong way."""
    if dicom_pdu(data) is not True:
        return None
    pdu_type = data[0]
    if pdu_type == 1:
        return True
    if pdu_type in (2, 3):
        return False
    if pdu_type != 4 or not data[11] & 0x01:
        return None  # release, abort, or a data set fragment: either side
    end = min(len(data), 10 + int.from_bytes(data[6:10], "big"))
    field = _command_field(data, 12, end)
    if field is None or field & 0x7FFF == _N_EVENT_REPORT:
        return None
    return not field & 0x8000


# --- HL7 v2 over MLLP, HL7 v2.5.1 §2.14.9 (MSH), §2.14.8 (MSA), Appendix C (MLLP) -----------

_FS = b"\x1c"  # end of an MLLP block


@role("hl7_role")
def hl7_role(data: bytes) -> Verdict:
    """An acknowledgment or response (MSH-9.1 ACK, or an MSA segment, §2.9) comes from the
    receiving system, which listens; a complete message without them is the sender's, which
    connects (Appendix C §C.4)."""
    if hl7_mllp(data) is not True or data[1:4] != b"MSH":
        return None  # a batch (FHS/BHS) or too few bytes
    sep, comp = data[4:5], data[5:6]
    end = data.find(_FS)
    segments = (data[1:end] if end >= 0 else data[1:]).replace(b"\n", b"\r").split(b"\r")
    msh = segments[0].split(sep)
    if len(msh) > 8 and msh[8].split(comp)[0] == b"ACK":  # MSH-9 (MSH-1 is the separator)
        return False
    if any(seg[:3] == b"MSA" and seg[3:4] == sep for seg in segments[1:]):
        return False
    return True if end >= 0 else None  # the end not seen: an MSA may follow
