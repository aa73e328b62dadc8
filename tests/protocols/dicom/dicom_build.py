"""Wire bytes made by pynetdicom's own PDU and DIMSE encoders (a real DICOM stack), for tests."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom import dimse_messages, dimse_primitives, pdu
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import build_context

from medsentry.events.base import Endpoints
from medsentry.protocols.base import FlowContext

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"

KEY = b"k" * 32


def flow_context(flow_id: str = "f1") -> FlowContext:
    return FlowContext(
        flow_id=flow_id,
        endpoints=Endpoints(client="127.0.0.1", server="127.0.0.1", server_port=11112),
        phi_key=KEY,
    )


def associate_primitive(
    contexts: list[tuple[str, list[str]]],
    *,
    calling: str = "MODALITY1",
    called: str = "PACS_SCP",
    max_length: int = 16384,
    username: bytes | None = None,
    password: bytes | None = None,
    roles: list[tuple[str, bool, bool]] = (),
    result: int | None = None,
) -> A_ASSOCIATE:
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    pcs = []
    for i, (abstract, syntaxes) in enumerate(contexts):
        cx = build_context(abstract, syntaxes)
        cx.context_id = 2 * i + 1
        pcs.append(cx)
    prim.presentation_context_definition_list = pcs
    info = []
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_length
    info.append(ml)
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    info.append(impl)
    ver = ImplementationVersionNameNotification()
    ver.implementation_version_name = "PYNETDICOM_304"
    info.append(ver)
    for uid, scu, scp in roles:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = scu
        role.scp_role = scp
        info.append(role)
    if username is not None:
        ident = UserIdentityNegotiation()
        ident.user_identity_type = 2 if password else 1
        ident.primary_field = username
        if password:
            ident.secondary_field = password
        ident.positive_response_requested = True
        info.append(ident)
    prim.user_information = info
    if result is not None:
        prim.result = result
    return prim


def associate_rq(contexts: list[tuple[str, list[str]]], **kw) -> bytes:
    p = pdu.A_ASSOCIATE_RQ()
    p.from_primitive(associate_primitive(contexts, **kw))
    return p.encode()


def associate_ac(
    contexts: list[tuple[str, list[str]]], results: list[tuple[int, str]], **kw
) -> bytes:
    """An AC answering `contexts`; results: (result, chosen transfer syntax) per context."""
    prim = associate_primitive(contexts, **kw)
    prim.result = 0
    for cx, (res, ts) in zip(prim.presentation_context_definition_list, results, strict=True):
        cx.result = res
        cx.transfer_syntax = [ts] if ts else cx.transfer_syntax[:1]
    prim.presentation_context_definition_results_list = prim.presentation_context_definition_list
    p = pdu.A_ASSOCIATE_AC()
    p.from_primitive(prim)
    return p.encode()


def associate_rj(result: int, source: int, reason: int) -> bytes:
    prim = A_ASSOCIATE()
    prim.result = result
    prim.result_source = source
    prim.diagnostic = reason
    p = pdu.A_ASSOCIATE_RJ()
    p.from_primitive(prim)
    return p.encode()


def release_rq() -> bytes:
    return pdu.A_RELEASE_RQ().encode()


def release_rp() -> bytes:
    return pdu.A_RELEASE_RP().encode()


def abort(source: int, reason: int) -> bytes:
    prim = A_ABORT()
    prim.abort_source = source
    p = pdu.A_ABORT_RQ()
    p.from_primitive(prim)
    p.reason_diagnostic = reason
    return p.encode()


def dimse(message_cls: str, primitive, context_id: int, max_pdu: int = 16384) -> bytes:
    """Encode one DIMSE message as P-DATA-TF PDUs with pynetdicom's fragmenting encoder."""
    msg = getattr(dimse_messages, message_cls)()
    msg.primitive_to_message(primitive)
    out = b""
    for p_data in msg.encode_msg(context_id, max_pdu):
        tf = pdu.P_DATA_TF()
        tf.from_primitive(p_data)
        out += tf.encode()
    return out


def c_store_rq(
    ds: Dataset,
    context_id: int,
    *,
    implicit: bool,
    little: bool = True,
    max_pdu: int = 16384,
    message_id: int = 7,
    instance_uid: str = "1.2.3.4.5.6.7",
    deflated: bool = False,
) -> bytes:
    prim = dimse_primitives.C_STORE()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = CT_IMAGE_STORAGE
    prim.AffectedSOPInstanceUID = instance_uid
    prim.Priority = 2
    prim.DataSet = BytesIO(encode(ds, implicit, little, deflated))
    return dimse("C_STORE_RQ", prim, context_id, max_pdu)


def c_store_rsp(context_id: int, status: int, message_id: int = 7) -> bytes:
    prim = dimse_primitives.C_STORE()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = CT_IMAGE_STORAGE
    prim.AffectedSOPInstanceUID = "1.2.3.4.5.6.7"
    prim.Status = status
    return dimse("C_STORE_RSP", prim, context_id)


def c_echo_rq(context_id: int, message_id: int = 1) -> bytes:
    prim = dimse_primitives.C_ECHO()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = VERIFICATION
    return dimse("C_ECHO_RQ", prim, context_id)


def c_echo_rsp(context_id: int, status: int = 0, message_id: int = 1) -> bytes:
    prim = dimse_primitives.C_ECHO()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = VERIFICATION
    prim.Status = status
    return dimse("C_ECHO_RSP", prim, context_id)


def c_move_rq(context_id: int, identifier: Dataset, destination: str) -> bytes:
    prim = dimse_primitives.C_MOVE()
    prim.MessageID = 3
    prim.AffectedSOPClassUID = PATIENT_ROOT_MOVE
    prim.MoveDestination = destination
    prim.Priority = 0
    prim.Identifier = BytesIO(encode(identifier, True, True))
    return dimse("C_MOVE_RQ", prim, context_id)


def c_move_rsp(context_id: int, status: int, remaining: int, completed: int) -> bytes:
    prim = dimse_primitives.C_MOVE()
    prim.MessageIDBeingRespondedTo = 3
    prim.AffectedSOPClassUID = PATIENT_ROOT_MOVE
    prim.Status = status
    prim.NumberOfRemainingSuboperations = remaining
    prim.NumberOfCompletedSuboperations = completed
    prim.NumberOfFailedSuboperations = 0
    prim.NumberOfWarningSuboperations = 0
    return dimse("C_MOVE_RSP", prim, context_id)


def c_find_rq(context_id: int, identifier: Dataset) -> bytes:
    prim = dimse_primitives.C_FIND()
    prim.MessageID = 5
    prim.AffectedSOPClassUID = PATIENT_ROOT_FIND
    prim.Priority = 0
    prim.Identifier = BytesIO(encode(identifier, True, True))
    return dimse("C_FIND_RQ", prim, context_id)


def n_action_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_ACTION()
    prim.MessageID = 9
    prim.RequestedSOPClassUID = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model
    prim.RequestedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
    prim.ActionTypeID = 1
    return dimse("N_ACTION_RQ", prim, context_id)


def n_event_report_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_EVENT_REPORT()
    prim.MessageID = 10
    prim.AffectedSOPClassUID = "1.2.840.10008.1.20.1"
    prim.AffectedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
    prim.EventTypeID = 1
    return dimse("N_EVENT_REPORT_RQ", prim, context_id)


def n_create_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_CREATE()
    prim.MessageID = 11
    prim.AffectedSOPClassUID = "1.2.840.10008.3.1.2.3.3"  # MPPS
    return dimse("N_CREATE_RQ", prim, context_id)


def n_set_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_SET()
    prim.MessageID = 12
    prim.RequestedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    prim.RequestedSOPInstanceUID = "1.2.3.99"
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    prim.ModificationList = BytesIO(encode(ds, True, True))
    return dimse("N_SET_RQ", prim, context_id)


def n_get_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_GET()
    prim.MessageID = 13
    prim.RequestedSOPClassUID = "1.2.840.10008.5.1.1.16"  # Printer
    prim.RequestedSOPInstanceUID = "1.2.840.10008.5.1.1.17"
    return dimse("N_GET_RQ", prim, context_id)


def n_delete_rq(context_id: int) -> bytes:
    prim = dimse_primitives.N_DELETE()
    prim.MessageID = 14
    prim.RequestedSOPClassUID = "1.2.840.10008.5.1.1.1"
    prim.RequestedSOPInstanceUID = "1.2.3.100"
    return dimse("N_DELETE_RQ", prim, context_id)


def c_get_rq(context_id: int, identifier: Dataset) -> bytes:
    prim = dimse_primitives.C_GET()
    prim.MessageID = 15
    prim.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    prim.Priority = 0
    prim.Identifier = BytesIO(encode(identifier, True, True))
    return dimse("C_GET_RQ", prim, context_id)
