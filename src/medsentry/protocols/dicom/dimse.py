"""DIMSE command sets (PS3.7 §9.3, §10.3, Annex E): decode group 0000 in implicit VR little endian.

A command set is small (a few hundred bytes); one larger than MAX_COMMAND_SET_LENGTH is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from medsentry.protocols.base import ParseError

MAX_COMMAND_SET_LENGTH = 64 * 1024

# PS3.7 Annex E, Table E.1-1: command field values
COMMAND_NAMES = {
    0x0001: "C-STORE-RQ",
    0x8001: "C-STORE-RSP",
    0x0010: "C-GET-RQ",
    0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ",
    0x8020: "C-FIND-RSP",
    0x0021: "C-MOVE-RQ",
    0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ",
    0x8030: "C-ECHO-RSP",
    0x0100: "N-EVENT-REPORT-RQ",
    0x8100: "N-EVENT-REPORT-RSP",
    0x0110: "N-GET-RQ",
    0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ",
    0x8120: "N-SET-RSP",
    0x0130: "N-ACTION-RQ",
    0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ",
    0x8140: "N-CREATE-RSP",
    0x0150: "N-DELETE-RQ",
    0x8150: "N-DELETE-RSP",
    0x0FFF: "C-CANCEL-RQ",
}

NO_DATA_SET = 0x0101  # (0000,0800) Command Data Set Type: "no data set", PS3.7 §E.1

# Command elements, PS3.7 Table E.1-1 (tag element number within group 0000)
AFFECTED_SOP_CLASS_UID = 0x0002
REQUESTED_SOP_CLASS_UID = 0x0003
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000
REQUESTED_SOP_INSTANCE_UID = 0x1001
EVENT_TYPE_ID = 0x1002
ACTION_TYPE_ID = 0x1008
NUMBER_OF_REMAINING_SUBOPERATIONS = 0x1020
NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x1021
NUMBER_OF_FAILED_SUBOPERATIONS = 0x1022
NUMBER_OF_WARNING_SUBOPERATIONS = 0x1023
MOVE_ORIGINATOR_AE_TITLE = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031  # PS3.7 §E.1: C-STORE sub-operation of a C-MOVE

_US_ELEMENTS = {
    COMMAND_FIELD,
    MESSAGE_ID,
    MESSAGE_ID_BEING_RESPONDED_TO,
    PRIORITY,
    COMMAND_DATA_SET_TYPE,
    STATUS,
    EVENT_TYPE_ID,
    ACTION_TYPE_ID,
    NUMBER_OF_REMAINING_SUBOPERATIONS,
    NUMBER_OF_COMPLETED_SUBOPERATIONS,
    NUMBER_OF_FAILED_SUBOPERATIONS,
    NUMBER_OF_WARNING_SUBOPERATIONS,
    MOVE_ORIGINATOR_MESSAGE_ID,
}
_TEXT_ELEMENTS = {
    AFFECTED_SOP_CLASS_UID,
    REQUESTED_SOP_CLASS_UID,
    MOVE_DESTINATION,
    AFFECTED_SOP_INSTANCE_UID,
    REQUESTED_SOP_INSTANCE_UID,
    MOVE_ORIGINATOR_AE_TITLE,
}
_ELEMENT_HEADER = struct.Struct("<HHI")  # group, element, value length: PS3.5 §7.1.3


def status_class(status: int) -> str:
    """Status meaning class, PS3.7 Annex C (C.1-C.5)."""
    if status == 0x0000:
        return "success"
    if status in (0xFF00, 0xFF01):
        return "pending"
    if status == 0xFE00:
        return "cancel"
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


@dataclass(slots=True)
class CommandSet:
    """The command elements medsentry reports (PS3.7 §9.3, §10.3)."""

    command_field: int | None = None
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    requested_sop_instance_uid: str | None = None
    move_destination: str | None = None
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None
    priority: int | None = None
    command_data_set_type: int | None = None
    status: int | None = None
    error_comment_present: bool = False
    event_type_id: int | None = None
    action_type_id: int | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None

    @property
    def data_set_present(self) -> bool:
        return self.command_data_set_type is not None and self.command_data_set_type != NO_DATA_SET

    @classmethod
    def decode(cls, data: bytes) -> CommandSet:
        """Decode an implicit VR little endian command set (PS3.7 §6.3.1)."""
        cmd = cls()
        values: dict[int, int | str] = {}
        offset, end = 0, len(data)
        while offset < end:
            if end - offset < 8:
                raise ParseError(f"DIMSE command set: {end - offset} trailing bytes at {offset}")
            group, element, length = _ELEMENT_HEADER.unpack_from(data, offset)
            offset += 8
            if length > end - offset:
                raise ParseError(
                    f"DIMSE command set: element ({group:04x},{element:04x}) length {length} "
                    f"overruns the command set at {offset}"
                )
            value = data[offset : offset + length]
            offset += length
            if group != 0x0000:
                raise ParseError(f"DIMSE command set: element of group {group:04x}")
            if element in _US_ELEMENTS:
                if length != 2:
                    raise ParseError(
                        f"DIMSE command set: (0000,{element:04x}) US of {length} bytes"
                    )
                values[element] = int.from_bytes(value, "little")
            elif element in _TEXT_ELEMENTS:
                values[element] = value.decode("ascii", "replace").strip("\x00 ")
            elif element == ERROR_COMMENT:
                cmd.error_comment_present = length > 0
        if COMMAND_FIELD not in values:
            raise ParseError("DIMSE command set without Command Field (0000,0100)")

        def us(element: int) -> int | None:
            v = values.get(element)
            return v if isinstance(v, int) else None

        def ui(element: int) -> str | None:
            v = values.get(element)
            return v if isinstance(v, str) else None

        cmd.command_field = us(COMMAND_FIELD)
        cmd.message_id = us(MESSAGE_ID)
        cmd.message_id_being_responded_to = us(MESSAGE_ID_BEING_RESPONDED_TO)
        cmd.affected_sop_class_uid = ui(AFFECTED_SOP_CLASS_UID)
        cmd.requested_sop_class_uid = ui(REQUESTED_SOP_CLASS_UID)
        cmd.affected_sop_instance_uid = ui(AFFECTED_SOP_INSTANCE_UID)
        cmd.requested_sop_instance_uid = ui(REQUESTED_SOP_INSTANCE_UID)
        cmd.move_destination = ui(MOVE_DESTINATION)
        cmd.move_originator_ae_title = ui(MOVE_ORIGINATOR_AE_TITLE)
        cmd.move_originator_message_id = us(MOVE_ORIGINATOR_MESSAGE_ID)
        cmd.priority = us(PRIORITY)
        cmd.command_data_set_type = us(COMMAND_DATA_SET_TYPE)
        cmd.status = us(STATUS)
        cmd.event_type_id = us(EVENT_TYPE_ID)
        cmd.action_type_id = us(ACTION_TYPE_ID)
        cmd.remaining = us(NUMBER_OF_REMAINING_SUBOPERATIONS)
        cmd.completed = us(NUMBER_OF_COMPLETED_SUBOPERATIONS)
        cmd.failed = us(NUMBER_OF_FAILED_SUBOPERATIONS)
        cmd.warning = us(NUMBER_OF_WARNING_SUBOPERATIONS)
        return cmd
