"""HL7 v2.5 messages for the demo, built with hl7apy, framed with MLLP. Synthetic patients only.

ADT^A01 (admit, HL7 v2.5 §3.3.1), ORU^R01 (unsolicited observation, §7.3.1) and the general
acknowledgment ACK (§2.14.1). MLLP framing: <VT> message <FS><CR> (HL7 v2 MLLP release 2, §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from hl7apy.core import Message
from hl7apy.parser import parse_segment

VERSION = "2.5"
MLLP_START = b"\x0b"  # <VT>
MLLP_END = b"\x1c\x0d"  # <FS><CR>


@dataclass(frozen=True, slots=True)
class Patient:
    """A synthetic patient (no real person): used only to fill demo messages."""

    mrn: str
    family: str
    given: str
    birth_date: str
    sex: str
    bed: str


def mllp(message: str) -> bytes:
    return MLLP_START + message.encode("ascii") + MLLP_END


def _msh(msg: Message, sending: str, receiving: str, ts: str, control_id: str) -> None:
    # MSH: HL7 v2.5 §2.14.9
    msg.msh.msh_3 = sending
    msg.msh.msh_4 = "DEMOHOSP"
    msg.msh.msh_5 = receiving
    msg.msh.msh_6 = "DEMOHOSP"
    msg.msh.msh_7 = ts
    msg.msh.msh_10 = control_id
    msg.msh.msh_11 = "P"


def _pid(p: Patient) -> str:
    return f"PID|1||{p.mrn}^^^DEMOHOSP^MR||{p.family}^{p.given}||{p.birth_date}|{p.sex}"


def adt_a01(p: Patient, sending: str, receiving: str, ts: str, control_id: str) -> str:
    msg = Message("ADT_A01", version=VERSION)
    _msh(msg, sending, receiving, ts, control_id)
    msg.msh.msh_9 = "ADT^A01^ADT_A01"
    msg.add(parse_segment(f"EVN|A01|{ts}", version=VERSION))
    msg.add(parse_segment(_pid(p), version=VERSION))
    msg.add(parse_segment(f"PV1|1|I|{p.bed}||||1234^WELBY^MARCUS", version=VERSION))
    msg.validate()
    return msg.to_er7()


# (LOINC code, display name, unit) of the vitals a bedside monitor reports
VITALS = (
    ("8867-4", "Heart rate", "/min"),
    ("59408-5", "SpO2", "%"),
    ("8480-6", "Systolic BP", "mm[Hg]"),
    ("8462-4", "Diastolic BP", "mm[Hg]"),
    ("9279-1", "Respiratory rate", "/min"),
)


def oru_r01(
    p: Patient,
    sending: str,
    receiving: str,
    ts: str,
    control_id: str,
    values: list[float],
) -> str:
    """ORU^R01 with one OBX per vital sign (values in the order of `VITALS`)."""
    msg = Message("ORU_R01", version=VERSION)
    _msh(msg, sending, receiving, ts, control_id)
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    result = msg.add_group("ORU_R01_PATIENT_RESULT")
    result.add_group("ORU_R01_PATIENT").add(parse_segment(_pid(p), version=VERSION))
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.add(parse_segment(f"OBR|1|||VITALS^Vital signs^L|||{ts}", version=VERSION))
    for i, ((code, name, unit), value) in enumerate(zip(VITALS, values, strict=False), 1):
        obx = f"OBX|{i}|NM|{code}^{name}^LN||{value:g}|{unit}|||||F|||{ts}"
        order.add_group("ORU_R01_OBSERVATION").add(parse_segment(obx, version=VERSION))
    msg.validate()
    return msg.to_er7()


def ack(
    sending: str, receiving: str, ts: str, control_id: str, acked_id: str, trigger: str = ""
) -> str:
    """Original-mode application accept (MSA-1 = AA, HL7 v2.5 §2.9.2) of the message `trigger`
    (its MSH-9 trigger event is echoed in the ACK's MSH-9, §2.14.9.9)."""
    event = "A01"
    if trigger:
        msh9 = trigger.split("\r", 1)[0].split("|")[8].split("^")
        event = msh9[1] if len(msh9) > 1 else event
    msg = Message("ACK", version=VERSION)
    _msh(msg, sending, receiving, ts, control_id)
    msg.msh.msh_9 = f"ACK^{event}^ACK"
    msg.add(parse_segment(f"MSA|AA|{acked_id}", version=VERSION))
    return msg.to_er7()
