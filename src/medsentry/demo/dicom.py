"""DICOM Upper Layer bytes for the demo, encoded by pynetdicom's PDU and DIMSE classes (PS3.8).

An association (A-ASSOCIATE-RQ/AC, PS3.8 §9.3.2/§9.3.3), DIMSE messages carried in P-DATA-TF
PDUs (PS3.8 §9.3.5, PS3.7 §9.3), and the release (A-RELEASE-RQ/RP, PS3.8 §9.3.6/§9.3.7).
The stored dataset is pydicom's bundled CT_small.dcm with synthetic patient values.
"""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import dimse_primitives as dp
from pynetdicom import pdu, pdu_primitives
from pynetdicom.dimse_messages import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_FIND_RQ,
    C_FIND_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
)
from pynetdicom.dsutils import encode
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 Annex A.2.1: DICOM Application Context
MWL_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND (PS3.4 K.6)
MAX_PDU = 16382
IMPLEMENTATION_VERSION = "MEDSENTRY_DEMO"


# (Implementation Class UID, Implementation Version Name) of an application entity (PS3.7 D.3.3.2)
Implementation = tuple[str, str]
DEFAULT_IMPLEMENTATION: Implementation = (PYDICOM_IMPLEMENTATION_UID, IMPLEMENTATION_VERSION)


def _user_information(implementation: Implementation | None = None) -> list[object]:
    uid, version = implementation or DEFAULT_IMPLEMENTATION
    mln = pdu_primitives.MaximumLengthNotification()
    mln.maximum_length_received = MAX_PDU
    icu = pdu_primitives.ImplementationClassUIDNotification()
    icu.implementation_class_uid = uid
    ivn = pdu_primitives.ImplementationVersionNameNotification()
    ivn.implementation_version_name = version
    return [mln, icu, ivn]


def _contexts(abstract_syntaxes: list[str]) -> list[PresentationContext]:
    out = []
    for i, uid in enumerate(abstract_syntaxes):
        cx = PresentationContext()
        cx.context_id = 2 * i + 1  # PS3.8 §9.3.2.2: odd integers 1-255
        cx.abstract_syntax = uid
        cx.transfer_syntax = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        out.append(cx)
    return out


def associate_rq(
    calling: str,
    called: str,
    abstract_syntaxes: list[str],
    implementation: Implementation | None = None,
) -> bytes:
    """A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2) proposing one context per abstract syntax."""
    prim = pdu_primitives.A_ASSOCIATE()
    prim.application_context_name = APPLICATION_CONTEXT
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    prim.user_information = _user_information(implementation)
    prim.presentation_context_definition_list = _contexts(abstract_syntaxes)
    rq = pdu.A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    return rq.encode()


def associate_ac(
    calling: str,
    called: str,
    abstract_syntaxes: list[str],
    implementation: Implementation | None = None,
) -> bytes:
    """A-ASSOCIATE-AC PDU (PS3.8 §9.3.3) accepting every context with Explicit VR LE."""
    prim = pdu_primitives.A_ASSOCIATE()
    prim.application_context_name = APPLICATION_CONTEXT
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    prim.result = 0  # accepted
    prim.user_information = _user_information(implementation)
    results = []
    for cx in _contexts(abstract_syntaxes):
        cx.transfer_syntax = [ExplicitVRLittleEndian]
        cx.result = 0  # acceptance (PS3.8 §9.3.3.2)
        results.append(cx)
    prim.presentation_context_definition_results_list = results
    ac = pdu.A_ASSOCIATE_AC()
    ac.from_primitive(prim)
    return ac.encode()


def release_rq() -> bytes:
    return pdu.A_RELEASE_RQ().encode()  # PS3.8 §9.3.6


def release_rp() -> bytes:
    return pdu.A_RELEASE_RP().encode()  # PS3.8 §9.3.7


def _p_data(message: object, context_id: int) -> bytes:
    """A DIMSE message as P-DATA-TF PDUs (PS3.8 §9.3.5, fragments per PS3.8 Annex E)."""
    out = bytearray()
    for prim in message.encode_msg(context_id, MAX_PDU):  # type: ignore[attr-defined]
        tf = pdu.P_DATA_TF()
        tf.from_primitive(prim)
        out += tf.encode()
    return bytes(out)


def _dataset_bytes(ds: Dataset) -> BytesIO:
    raw = encode(ds, False, True)  # Explicit VR Little Endian, as the accepted context says
    assert raw is not None
    return BytesIO(raw)


def ct_dataset(patient_name: str, patient_id: str, study_uid: str, sop_uid: str) -> Dataset:
    """pydicom's bundled CT_small.dcm with synthetic patient and study identifiers."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = dcmread(path)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstitutionName = "Demo General Hospital"
    return ds


def c_echo_rq(message_id: int, context_id: int = 1) -> bytes:
    prim = dp.C_ECHO()  # PS3.7 §9.1.5
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = Verification
    msg = C_ECHO_RQ()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)


def c_echo_rsp(message_id: int, context_id: int = 1) -> bytes:
    prim = dp.C_ECHO()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = Verification
    prim.Status = 0x0000
    msg = C_ECHO_RSP()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)


def c_store_rq(message_id: int, ds: Dataset, context_id: int = 1) -> bytes:
    """C-STORE-RQ command set plus the dataset (PS3.7 §9.1.1, §9.3.1.1): the modality's own
    store, so no Move Originator (that names a C-MOVE sub-operation, PS3.7 §9.1.1.1)."""
    prim = dp.C_STORE()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = CTImageStorage
    prim.AffectedSOPInstanceUID = ds.SOPInstanceUID
    prim.Priority = 0x0002  # low
    prim.DataSet = _dataset_bytes(ds)
    msg = C_STORE_RQ()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)


def c_store_rsp(message_id: int, sop_instance_uid: str, context_id: int = 1) -> bytes:
    prim = dp.C_STORE()  # PS3.7 §9.3.1.2
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = CTImageStorage
    prim.AffectedSOPInstanceUID = sop_instance_uid
    prim.Status = 0x0000
    msg = C_STORE_RSP()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)


def worklist_query(modality: str, station_ae: str) -> Dataset:
    """Modality Worklist query identifier (PS3.4 Annex K.6.1.2): today's CT procedures."""
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station_ae
    sps.ScheduledProcedureStepStartDate = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def c_find_rq(message_id: int, identifier: Dataset, context_id: int = 1) -> bytes:
    prim = dp.C_FIND()  # PS3.7 §9.1.2
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = MWL_FIND
    prim.Priority = 0x0000
    prim.Identifier = _dataset_bytes(identifier)
    msg = C_FIND_RQ()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)


def c_find_rsp(message_id: int, identifier: Dataset | None, context_id: int = 1) -> bytes:
    """A pending response carrying one match, or the final success response (PS3.7 §9.1.2.1.6)."""
    prim = dp.C_FIND()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = MWL_FIND
    if identifier is not None:
        prim.Status = 0xFF00  # pending: a match follows
        prim.Identifier = _dataset_bytes(identifier)
    else:
        prim.Status = 0x0000
    msg = C_FIND_RSP()
    msg.primitive_to_message(prim)
    return _p_data(msg, context_id)
