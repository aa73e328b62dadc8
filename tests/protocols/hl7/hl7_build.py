"""HL7 v2 messages built with hl7apy (synthetic patient values), framed with MLLP."""

from __future__ import annotations

from hl7apy.core import Group, Message, Segment

from medsentry.events.base import Endpoints
from medsentry.protocols.base import FlowContext

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
PHI = ("Quimby", "Zyxwvut", "MRN-55501234", "19230405", "742 Evergreen Terrace", "555-0199")
CUSTOM = {
    "FIELD": "#",
    "COMPONENT": "$",
    "REPETITION": "*",
    "ESCAPE": "!",
    "SUBCOMPONENT": "%",
    "GROUP": "\r",
    "SEGMENT": "\r",
}


def flow_context() -> FlowContext:
    return FlowContext(
        flow_id="h1",
        endpoints=Endpoints(client="127.0.0.1", server="127.0.0.1", server_port=2575),
        phi_key=b"k" * 32,
    )


def mllp(message: str | bytes) -> bytes:
    if isinstance(message, str):
        message = message.encode("utf-8")
    return VT + message + FS + CR


def adt_a01(control_id: str = "CTRL0001", *, version: str = "2.5", security: str = "") -> str:
    m = Message("ADT_A01", version=version)
    m.msh.msh_3 = "ADT_SENDER^1.2.3.4^ISO"
    m.msh.msh_4 = "GENERAL_HOSPITAL"
    m.msh.msh_5 = "RIS"
    m.msh.msh_6 = "RADIOLOGY"
    if security:
        m.msh.msh_8 = security
    m.msh.msh_9 = "ADT^A01^ADT_A01"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    m.evn.evn_2 = "20240101120000"
    m.pid.pid_3 = f"{PHI[2]}^^^GH^MR"
    m.pid.pid_5 = f"{PHI[0]}^{PHI[1]}"
    m.pid.pid_7 = PHI[3]
    m.pid.pid_8 = "F"
    m.pid.pid_11 = PHI[4]
    m.pid.pid_13 = PHI[5]
    m.nk1.nk1_2 = f"{PHI[0]}^Abe"
    m.pv1.pv1_2 = "I"
    return m.to_er7()


def ack(control_id: str, code: str = "AA", version: str = "2.5") -> str:
    m = Message("ACK", version=version)
    m.msh.msh_3 = "RIS"
    m.msh.msh_4 = "RADIOLOGY"
    m.msh.msh_5 = "ADT_SENDER^1.2.3.4^ISO"
    m.msh.msh_6 = "GENERAL_HOSPITAL"
    m.msh.msh_9 = "ACK^A01^ACK"
    m.msh.msh_10 = "ACK" + control_id
    m.msh.msh_11 = "P"
    m.msa.msa_1 = code
    m.msa.msa_2 = control_id
    return m.to_er7()


VITALS = [
    # OBX-3, OBX-5 (the value, never reported), OBX-6, expected plausibility
    ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "262688^MDC_DIM_PERCENT^MDC", True),
    ("147842^MDC_ECG_HEART_RATE^MDC", "612", "264864^MDC_DIM_BEAT_PER_MIN^MDC", False),
    ("8310-5^Body temperature^LN", "36.8", "Cel^degC^UCUM", True),
    ("8480-6^Systolic BP^LN", "120", "mm[Hg]^mmHg^UCUM", True),
    ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "kPa^kPa^UCUM", None),  # unit not known
    ("X-LOCAL^Local code^L", "5", "", None),
]


def oru_r01(version: str = "2.8.2") -> str:
    """A monitor's vital signs: PRT-10/16/20 and OBX-18 identify the device."""
    m = Message("ORU_R01", version=version)
    m.msh.msh_3 = "MONITOR_GW^2.16.840.1.113883.3.1^ISO"
    m.msh.msh_4 = "ICU"
    m.msh.msh_5 = "EMR"
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = "VITALS-77"
    m.msh.msh_11 = "T"
    pr = Group("ORU_R01_PATIENT_RESULT", version=version)
    m.add(pr)
    pat = Group("ORU_R01_PATIENT", version=version)
    pr.add(pat)
    pat.pid.pid_3 = f"{PHI[2]}^^^GH^MR"
    pat.pid.pid_5 = f"{PHI[0]}^{PHI[1]}"
    oo = Group("ORU_R01_ORDER_OBSERVATION", version=version)
    pr.add(oo)
    oo.obr.obr_4 = "VITALS^Vital signs^L"
    for code, value, units, _ in VITALS:
        g = Group("ORU_R01_OBSERVATION", version=version)
        g.obx.obx_2 = "NM"
        g.obx.obx_3 = code
        g.obx.obx_5 = value
        if units:
            g.obx.obx_6 = units
        g.obx.obx_18 = "MON-0042^ACME^1.2.840.99999.1^ISO"
        oo.add(g)
    g = Group("ORU_R01_OBSERVATION", version=version)
    g.obx.obx_3 = "149530^MDC_PULS_OXIM_PULS_RATE^MDC"
    prt = Segment("PRT", version=version)
    prt.prt_2 = "UC"
    prt.prt_4 = "EQUIP^Equipment^HL70912"
    prt.prt_10 = "DEV-9^ACME"
    prt.prt_16 = "(01)00812345678901^^2.16.840.1.113883.3.3719^ISO"
    prt.prt_20 = "SN-998877"
    g.add(prt)
    oo.add(g)
    return m.to_er7()


def adt_custom_delimiters() -> str:
    """MSH-1 '#', MSH-2 '$*!%': values carry escapes of the declared delimiters."""
    m = Message("ADT_A01", version="2.5", encoding_chars=CUSTOM)
    m.msh.msh_3 = "PAS$1.2.3$ISO"
    m.msh.msh_4 = "WARD!F!7"  # escaped field separator: "WARD#7"
    m.msh.msh_5 = "LAB!S!X"  # escaped component separator: "LAB$X"
    m.msh.msh_6 = "CORE!E!LAB"  # escaped escape character: "CORE!LAB"
    m.msh.msh_9 = "ADT$A04$ADT_A01"
    m.msh.msh_10 = "C!T!1"  # escaped subcomponent separator: "C%1"
    m.msh.msh_11 = "D"
    m.pid.pid_5 = f"{PHI[0]}${PHI[1]}"
    return m.to_er7()


def pdq_query(control_id: str = "Q1") -> str:
    """IHE PDQ QBP^Q22 (ITI TF-2a §3.21.4.1): the patient's name, birth date and MRN in QPD-3."""
    m = Message("QBP_Q21", version="2.5")
    m.msh.msh_3 = "ADMIT"
    m.msh.msh_4 = "WARD"
    m.msh.msh_5 = "PDQ"
    m.msh.msh_6 = "HIS"
    m.msh.msh_9 = "QBP^Q22^QBP_Q21"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    m.qpd.qpd_1 = "IHE PDQ Query"
    m.qpd.qpd_2 = control_id
    m.qpd.qpd_3 = f"@PID.5.1^{PHI[0]}~@PID.7^{PHI[3]}~@PID.3.1^{PHI[2]}"
    m.rcp.rcp_1 = "I"
    return m.to_er7()


def pdq_response(query_id: str = "Q1") -> str:
    """RSP^K22 with its QPD echo, a site-defined ZPI segment and a ROL (written after hl7apy's
    message: hl7apy does not build Z segments)."""
    m = Message("RSP_K21", version="2.5")
    m.msh.msh_3 = "PDQ"
    m.msh.msh_4 = "HIS"
    m.msh.msh_9 = "RSP^K22^RSP_K21"
    m.msh.msh_10 = "R" + query_id
    m.msh.msh_11 = "P"
    m.msa.msa_1 = "AA"
    m.msa.msa_2 = query_id
    m.qak.qak_1 = query_id
    m.qak.qak_2 = "OK"
    m.qpd.qpd_1 = "IHE PDQ Query"
    m.qpd.qpd_2 = query_id
    m.qpd.qpd_3 = f"@PID.5.1^{PHI[0]}"
    rol = Segment("ROL", version="2.5")
    rol.rol_2 = "AD"
    rol.rol_3 = "PP"
    rol.rol_4 = f"{PHI[1]}^Abe"
    return "\r".join((m.to_er7(), f"ZPI|1|{PHI[2]}|{PHI[0]}^{PHI[1]}|{PHI[3]}", rol.to_er7()))


# free text in coded fields, as some interfaces send it: markers (QX998877, ZZQX...) in MSH-3's
# universal id, MSH-10, MSH-18, OBX-3, OBX-6, OBX-18 and PRT-10 namespaces, MSA-1 and MSA-2
MARKED = (
    "MSH|^~\\&|SENDAPP^QX998877|FAC|RCV|RFAC|20240101||ADT^A01^ADT_A01|QX998877-CTRL|P|2.5.1"
    "||||||ZZQXCHARSET\r"
    "PID|1||QX998877||ZZQXPATIENT^QXALPHA\r"
    "OBX|1|NM|8867-4^Heart rate^LN||999|ZZQXLIVEUNIT^/min|||||F|||||||EQUIP-1^QX998877^1.2.3^ISO\r"
    "OBX|2|ST|ZZQXOBXCODE QX998877^ZZQXPATIENT^ZZQXCODESYS||x|ZZQXUNITS QX998877\r"
    "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|262688^MDC_DIM_PERCENT^MDC|||||F|||||||"
    "MON-7^PHILIPS^mon.example.org^DNS\r"
    "PRT|1|AD||||||||DEV-9^ACME^QX998877^ISO\r"
)
MARKED_ACK = (
    "MSH|^~\\&|RCV|RFAC|SENDAPP|FAC|20240101||ACK^A01^ACK|QX998877-ACK|P|2.5.1\r"
    "MSA|ZZQXACKCODE QX998877|QX998877-CTRL|ZZQXACKTEXT ZZQXPATIENT\r"
)
