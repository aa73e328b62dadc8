"""DICOM upper-layer PDUs (PS3.8 §9.3): one class per PDU, decoded from the PDU's value field.

The PDU header (type, reserved, 4-byte big-endian length) is read by `stream.PduStream`; these
classes decode the bytes after it. P-DATA-TF is not buffered whole: its PDV items are streamed
(see `stream.py`), so a large PDU never has to sit in memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from medsentry.protocols.base import ParseError
from medsentry.protocols.dicom.items import (
    APPLICATION_CONTEXT_ITEM,
    PRESENTATION_CONTEXT_ITEM_AC,
    PRESENTATION_CONTEXT_ITEM_RQ,
    USER_INFORMATION_ITEM,
    ApplicationContextItem,
    PresentationContextItemAC,
    PresentationContextItemRQ,
    UserInformationItem,
    iter_items,
    text,
)

# PDU types, PS3.8 Table 9-1 ... 9-26
A_ASSOCIATE_RQ_TYPE = 0x01
A_ASSOCIATE_AC_TYPE = 0x02
A_ASSOCIATE_RJ_TYPE = 0x03
P_DATA_TF_TYPE = 0x04
A_RELEASE_RQ_TYPE = 0x05
A_RELEASE_RP_TYPE = 0x06
A_ABORT_TYPE = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ_TYPE: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC_TYPE: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ_TYPE: "A-ASSOCIATE-RJ",
    P_DATA_TF_TYPE: "P-DATA-TF",
    A_RELEASE_RQ_TYPE: "A-RELEASE-RQ",
    A_RELEASE_RP_TYPE: "A-RELEASE-RP",
    A_ABORT_TYPE: "A-ABORT",
}

PDU_HEADER_LENGTH = 6  # PS3.8 §9.3.1: type (1), reserved (1), length (4)
# Sanity limits on the PDU length field. An association PDU with 128 presentation contexts of
# ten transfer syntaxes each is about 100 KiB; anything past 1 MiB is not a real peer.
MAX_ASSOCIATE_PDU_LENGTH = 1 << 20
FIXED_PDU_LENGTH = 4  # A-ASSOCIATE-RJ, A-RELEASE-RQ/RP, A-ABORT: PS3.8 §9.3.4, §9.3.6-§9.3.8
ASSOCIATE_FIXED_LENGTH = 68  # protocol version .. reserved, PS3.8 Table 9-11

# PS3.8 Table 9-18: presentation context result/reason
CONTEXT_RESULT_NAMES = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}

# PS3.8 Table 9-21: A-ASSOCIATE-RJ result, source, reason/diag.
REJECT_RESULT_NAMES = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCE_NAMES = {
    1: "service-user",
    2: "service-provider-acse",
    3: "service-provider-presentation",
}
REJECT_REASON_NAMES = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-ae-title-not-recognized",
    (1, 7): "called-ae-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}

# PS3.8 Table 9-26: A-ABORT source and reason/diag.
ABORT_SOURCE_NAMES = {0: "service-user", 1: "reserved", 2: "service-provider"}
ABORT_REASON_NAMES = {
    0: "reason-not-specified",
    1: "unrecognized-pdu",
    2: "unexpected-pdu",
    4: "unrecognized-pdu-parameter",
    5: "unexpected-pdu-parameter",
    6: "invalid-pdu-parameter-value",
}


@dataclass(slots=True)
class _AssociatePdu:
    """Common layout of A-ASSOCIATE-RQ and -AC (PS3.8 Table 9-11 and 9-17)."""

    protocol_version: int
    called_ae_title: str
    calling_ae_title: str
    application_context: ApplicationContextItem | None = None
    user_information: UserInformationItem | None = None
    malformed: str | None = None  # the first variable item that could not be decoded, and why

    @property
    def malformed_item(self) -> str | None:
        """A malformed variable item or user-information sub-item (PS3.8 §9.3.2.3)."""
        info = self.user_information
        return self.malformed or (info.malformed if info is not None else None)

    def _items(self, value: bytes, name: str, context_type: int, context: Any) -> None:
        """The variable items (PS3.8 §9.3.2/§9.3.3) up to a malformed one, named in `malformed`."""
        contexts: list[Any] = self.presentation_contexts  # type: ignore[attr-defined]
        try:
            for item_type, item in iter_items(value, ASSOCIATE_FIXED_LENGTH, name):
                if item_type == APPLICATION_CONTEXT_ITEM:
                    self.application_context = ApplicationContextItem.decode(item)
                elif item_type == context_type:
                    contexts.append(context.decode(item))
                elif item_type == USER_INFORMATION_ITEM:
                    self.user_information = UserInformationItem.decode(item)
        except ParseError as exc:
            self.malformed = str(exc)

    @staticmethod
    def _header(value: bytes, name: str) -> tuple[int, str, str]:
        if len(value) < ASSOCIATE_FIXED_LENGTH:
            raise ParseError(f"DICOM {name}: {len(value)} bytes, shorter than its fixed part")
        (version,) = struct.unpack_from(">H", value, 0)
        return version, text(value[4:20]), text(value[20:36])


@dataclass(slots=True)
class A_ASSOCIATE_RQ(_AssociatePdu):
    """PS3.8 §9.3.2: association request."""

    presentation_contexts: list[PresentationContextItemRQ] = field(default_factory=list)

    @classmethod
    def decode(cls, value: bytes) -> A_ASSOCIATE_RQ:
        """The fixed fields, then the variable items up to a malformed one, which is named in
        `malformed`: the AE titles and contexts before it are kept."""
        pdu = cls(*cls._header(value, "A-ASSOCIATE-RQ"))
        pdu._items(value, "A-ASSOCIATE-RQ", PRESENTATION_CONTEXT_ITEM_RQ, PresentationContextItemRQ)
        return pdu


@dataclass(slots=True)
class A_ASSOCIATE_AC(_AssociatePdu):
    """PS3.8 §9.3.3: association acceptance (AE titles are echoed, not tested)."""

    presentation_contexts: list[PresentationContextItemAC] = field(default_factory=list)

    @classmethod
    def decode(cls, value: bytes) -> A_ASSOCIATE_AC:
        """As A-ASSOCIATE-RQ: the items before a malformed one are kept."""
        pdu = cls(*cls._header(value, "A-ASSOCIATE-AC"))
        pdu._items(value, "A-ASSOCIATE-AC", PRESENTATION_CONTEXT_ITEM_AC, PresentationContextItemAC)
        return pdu


@dataclass(slots=True)
class A_ASSOCIATE_RJ:
    """PS3.8 §9.3.4: reserved (1), result (1), source (1), reason/diag. (1)."""

    result: int
    source: int
    reason_diagnostic: int

    @classmethod
    def decode(cls, value: bytes) -> A_ASSOCIATE_RJ:
        return cls(value[1], value[2], value[3])


@dataclass(slots=True)
class A_ABORT_RQ:
    """PS3.8 §9.3.8: reserved (2), source (1), reason/diag. (1)."""

    source: int
    reason_diagnostic: int

    @classmethod
    def decode(cls, value: bytes) -> A_ABORT_RQ:
        return cls(value[2], value[3])


def check_header(pdu_type: int, length: int) -> None:
    """Reject a PDU header no real peer sends, before any byte of its body is buffered."""
    if pdu_type not in PDU_NAMES:
        raise ParseError(f"DICOM: unknown PDU type 0x{pdu_type:02x}")
    if pdu_type in (A_ASSOCIATE_RQ_TYPE, A_ASSOCIATE_AC_TYPE):
        if not ASSOCIATE_FIXED_LENGTH <= length <= MAX_ASSOCIATE_PDU_LENGTH:
            raise ParseError(f"DICOM {PDU_NAMES[pdu_type]}: implausible PDU length {length}")
    elif pdu_type != P_DATA_TF_TYPE and length != FIXED_PDU_LENGTH:
        raise ParseError(f"DICOM {PDU_NAMES[pdu_type]}: PDU length {length}, expected 4")
