"""Variable items and user-information sub-items of association PDUs (PS3.8 §9.3, PS3.7 Annex D).

One small class per wire structure, named as in the standard; each `decode` takes the item's value
field (the bytes after its 4-byte header) and raises ParseError on a malformed one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from medsentry.protocols.base import ParseError

# Item types, PS3.8 Table 9-11, 9-12, 9-18 and PS3.7 Annex D
APPLICATION_CONTEXT_ITEM = 0x10
PRESENTATION_CONTEXT_ITEM_RQ = 0x20
PRESENTATION_CONTEXT_ITEM_AC = 0x21
ABSTRACT_SYNTAX_SUB_ITEM = 0x30
TRANSFER_SYNTAX_SUB_ITEM = 0x40
USER_INFORMATION_ITEM = 0x50
MAXIMUM_LENGTH_SUB_ITEM = 0x51
IMPLEMENTATION_CLASS_UID_SUB_ITEM = 0x52
ASYNCHRONOUS_OPERATIONS_WINDOW_SUB_ITEM = 0x53
SCP_SCU_ROLE_SELECTION_SUB_ITEM = 0x54
IMPLEMENTATION_VERSION_NAME_SUB_ITEM = 0x55
SOP_CLASS_EXTENDED_NEGOTIATION_SUB_ITEM = 0x56
SOP_CLASS_COMMON_EXTENDED_NEGOTIATION_SUB_ITEM = 0x57
USER_IDENTITY_SUB_ITEM_RQ = 0x58
USER_IDENTITY_SUB_ITEM_AC = 0x59

_U16 = struct.Struct(">H")


def text(value: bytes) -> str:
    """A UID or AE/name field: ASCII, padded with NUL or space (PS3.8 §9.3.2.2.1, §F)."""
    return value.decode("ascii", "replace").strip("\x00 ")


def iter_items(data: bytes, offset: int, what: str) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each item in `data[offset:]`: type (1), reserved (1), length (2 BE)."""
    end = len(data)
    while offset < end:
        if end - offset < 4:
            raise ParseError(f"DICOM {what}: {end - offset} trailing bytes, not an item header")
        item_type = data[offset]
        (length,) = _U16.unpack_from(data, offset + 2)
        if offset + 4 + length > end:
            raise ParseError(
                f"DICOM {what}: item 0x{item_type:02x} length {length} overruns its container"
            )
        yield item_type, data[offset + 4 : offset + 4 + length]
        offset += 4 + length


@dataclass(slots=True)
class ApplicationContextItem:
    """PS3.8 §9.3.2.1: the application context name (always 1.2.840.10008.3.1.1.1)."""

    application_context_name: str

    @classmethod
    def decode(cls, value: bytes) -> ApplicationContextItem:
        return cls(text(value))


@dataclass(slots=True)
class PresentationContextItemRQ:
    """PS3.8 §9.3.2.2: one abstract syntax and the transfer syntaxes proposed for it."""

    context_id: int
    abstract_syntax: str | None
    transfer_syntaxes: list[str]

    @classmethod
    def decode(cls, value: bytes) -> PresentationContextItemRQ:
        if len(value) < 4:
            raise ParseError("DICOM presentation context item (RQ) shorter than 4 bytes")
        abstract: str | None = None
        syntaxes: list[str] = []
        for sub_type, sub in iter_items(value, 4, "presentation context (RQ)"):
            if sub_type == ABSTRACT_SYNTAX_SUB_ITEM:  # PS3.8 §9.3.2.2.1
                abstract = text(sub)
            elif sub_type == TRANSFER_SYNTAX_SUB_ITEM:  # PS3.8 §9.3.2.2.2
                syntaxes.append(text(sub))
        return cls(value[0], abstract, syntaxes)


@dataclass(slots=True)
class PresentationContextItemAC:
    """PS3.8 §9.3.3.2: the result for one proposed context and the transfer syntax chosen."""

    context_id: int
    result_reason: int
    transfer_syntax: str | None

    @classmethod
    def decode(cls, value: bytes) -> PresentationContextItemAC:
        if len(value) < 4:
            raise ParseError("DICOM presentation context item (AC) shorter than 4 bytes")
        syntax: str | None = None
        for sub_type, sub in iter_items(value, 4, "presentation context (AC)"):
            if sub_type == TRANSFER_SYNTAX_SUB_ITEM:  # PS3.8 §9.3.3.2.1
                syntax = text(sub)
        return cls(value[0], value[2], syntax)


@dataclass(slots=True)
class ScpScuRoleSelectionSubItem:
    """PS3.7 §D.3.3.4: the roles an entity proposes or accepts for one SOP class."""

    sop_class_uid: str
    scu_role: int
    scp_role: int

    @classmethod
    def decode(cls, value: bytes) -> ScpScuRoleSelectionSubItem:
        if len(value) < 2:
            raise ParseError("DICOM SCP/SCU role selection sub-item shorter than 2 bytes")
        (uid_length,) = _U16.unpack_from(value, 0)
        if len(value) != 2 + uid_length + 2:
            raise ParseError("DICOM SCP/SCU role selection sub-item: bad UID length")
        return cls(text(value[2 : 2 + uid_length]), value[-2], value[-1])


@dataclass(slots=True)
class UserIdentitySubItemRQ:
    """PS3.7 §D.3.3.7.1: user identity type, primary field (username or token) and passcode."""

    user_identity_type: int
    positive_response_requested: int
    primary_field: bytes
    secondary_field_length: int  # the passcode itself is not kept past decode

    @classmethod
    def decode(cls, value: bytes) -> UserIdentitySubItemRQ:
        if len(value) < 6:
            raise ParseError("DICOM user identity sub-item (RQ) shorter than 6 bytes")
        (primary_length,) = _U16.unpack_from(value, 2)
        if 4 + primary_length + 2 > len(value):
            raise ParseError("DICOM user identity sub-item (RQ): primary field overruns the item")
        (secondary_length,) = _U16.unpack_from(value, 4 + primary_length)
        if 6 + primary_length + secondary_length != len(value):
            raise ParseError("DICOM user identity sub-item (RQ): bad secondary field length")
        return cls(value[0], value[1], value[4 : 4 + primary_length], secondary_length)


@dataclass(slots=True)
class UserInformationItem:
    """PS3.8 §9.3.2.3 / §D.1 and PS3.7 Annex D: the user-information sub-items."""

    maximum_length_received: int | None = None  # PS3.8 §D.1
    implementation_class_uid: str | None = None  # PS3.7 §D.3.3.2
    implementation_version_name: str | None = None  # PS3.7 §D.3.3.2
    max_operations_invoked: int | None = None  # PS3.7 §D.3.3.3
    max_operations_performed: int | None = None
    role_selections: list[ScpScuRoleSelectionSubItem] = field(default_factory=list)
    extended_negotiations: int = 0  # PS3.7 §D.3.3.5, §D.3.3.6
    user_identity_rq: UserIdentitySubItemRQ | None = None
    user_identity_ac: bool = False  # PS3.7 §D.3.3.7.2: a server response is present
    malformed: str | None = None  # the first sub-item that could not be decoded, and why

    @classmethod
    def decode(cls, value: bytes) -> UserInformationItem:
        """The sub-items up to a malformed one: a sub-item whose own fields are wrong is
        skipped (its length still frames the next); one whose length overruns the item ends
        the decode. Either is named in `malformed` (PS3.8 §9.3.2.3)."""
        info = cls()
        try:
            for sub_type, sub in iter_items(value, 0, "user information"):
                try:
                    info._sub_item(sub_type, sub)
                except ParseError as exc:
                    info.malformed = info.malformed or str(exc)
        except ParseError as exc:
            info.malformed = info.malformed or str(exc)
        return info

    def _sub_item(self, sub_type: int, sub: bytes) -> None:
        if sub_type == MAXIMUM_LENGTH_SUB_ITEM:
            if len(sub) != 4:
                raise ParseError("DICOM maximum length sub-item is not 4 bytes")
            self.maximum_length_received = int.from_bytes(sub, "big")
        elif sub_type == IMPLEMENTATION_CLASS_UID_SUB_ITEM:
            self.implementation_class_uid = text(sub)
        elif sub_type == IMPLEMENTATION_VERSION_NAME_SUB_ITEM:
            self.implementation_version_name = text(sub)
        elif sub_type == ASYNCHRONOUS_OPERATIONS_WINDOW_SUB_ITEM:
            if len(sub) != 4:
                raise ParseError("DICOM asynchronous operations window sub-item is not 4 bytes")
            self.max_operations_invoked, self.max_operations_performed = struct.unpack(">HH", sub)
        elif sub_type == SCP_SCU_ROLE_SELECTION_SUB_ITEM:
            self.role_selections.append(ScpScuRoleSelectionSubItem.decode(sub))
        elif sub_type in (
            SOP_CLASS_EXTENDED_NEGOTIATION_SUB_ITEM,
            SOP_CLASS_COMMON_EXTENDED_NEGOTIATION_SUB_ITEM,
        ):
            self.extended_negotiations += 1
        elif sub_type == USER_IDENTITY_SUB_ITEM_RQ:
            self.user_identity_rq = UserIdentitySubItemRQ.decode(sub)
        elif sub_type == USER_IDENTITY_SUB_ITEM_AC:
            self.user_identity_ac = True
