"""DICOM events (PS3.8 upper layer, PS3.7 DIMSE): association, commands, datasets.

No event holds PHI: patient attributes in datasets are reduced to the keywords of the attributes
present, SOP instance UIDs and user-identity usernames to keyed hashes; passwords are never kept.
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Endpoints, Event


class DicomPresentationContext(msgspec.Struct, frozen=True, kw_only=True):
    """One presentation context (PS3.8 §9.3.2.2 proposed, §9.3.3.2 answered)."""

    context_id: int
    abstract_syntax: str | None = None  # SOP class UID (from the request)
    sop_class_name: str | None = None  # name in PS3.6 Annex A, when known
    transfer_syntaxes: list[str] = msgspec.field(default_factory=list)
    result: int | None = None  # A-ASSOCIATE-AC only: 0 acceptance ... 4 ts not supported
    result_name: str | None = None


class DicomRoleSelection(msgspec.Struct, frozen=True, kw_only=True):
    """SCP/SCU Role Selection sub-item (PS3.7 §D.3.3.4)."""

    sop_class_uid: str
    scu_role: int
    scp_role: int


class DicomUserIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """User Identity Negotiation (PS3.7 §D.3.3.7); the password is never kept, only its presence.

    `identity_type`: 1 username, 2 username and passcode, 3 Kerberos, 4 SAML, 5 JWT.
    `username_cleartext` is true when a username (types 1, 2) travelled unencrypted;
    `username_hash` is its keyed hash.
    """

    identity_type: int
    identity_type_name: str
    positive_response_requested: bool = False
    username_cleartext: bool = False
    username_hash: str | None = None
    password_present: bool = False
    token_length: int = 0  # length of the Kerberos/SAML/JWT primary field (not kept)


class _DicomAssociate(Event, frozen=True, kw_only=True):
    flow_id: str
    endpoints: Endpoints
    calling_ae: str
    called_ae: str
    protocol_version: int = 1
    application_context: str | None = None
    presentation_contexts: list[DicomPresentationContext] = msgspec.field(default_factory=list)
    max_pdu_length: int | None = None  # 0 means no limit (PS3.8 §D.1)
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    implementation: str | None = None  # toolkit or vendor named by the class UID's root
    role_selections: list[DicomRoleSelection] = msgspec.field(default_factory=list)
    max_operations_invoked: int | None = None  # Asynchronous Operations Window (PS3.7 §D.3.3.3)
    max_operations_performed: int | None = None
    extended_negotiations: int = 0  # SOP Class (Common) Extended Negotiation sub-items
    user_identity: DicomUserIdentity | None = None
    # the first variable item or user-information sub-item that could not be decoded (type and
    # lengths, no value): what precedes it is reported, what follows it is not (PS3.8 §9.3.2.3)
    malformed_item: str | None = None


class DicomAssociateRequest(_DicomAssociate, tag="dicom_associate_rq", frozen=True, kw_only=True):
    """A-ASSOCIATE-RQ (PS3.8 §9.3.2), sent by the association requestor (client)."""


class DicomAssociateAccept(_DicomAssociate, tag="dicom_associate_ac", frozen=True, kw_only=True):
    """A-ASSOCIATE-AC (PS3.8 §9.3.3); contexts carry the abstract syntax from the request."""

    accepted_contexts: int = 0
    rejected_contexts: int = 0
    server_response_to_identity: bool = False  # a User Identity server response came back


class DicomAssociateReject(Event, tag="dicom_associate_rj", frozen=True, kw_only=True):
    """A-ASSOCIATE-RJ (PS3.8 §9.3.4)."""

    flow_id: str
    endpoints: Endpoints
    result: int  # 1 rejected-permanent, 2 rejected-transient
    source: int  # 1 service-user, 2 provider (ACSE), 3 provider (presentation)
    reason: int
    result_name: str
    source_name: str
    reason_name: str


class DicomRelease(Event, tag="dicom_release", frozen=True, kw_only=True):
    """A-RELEASE-RQ or A-RELEASE-RP (PS3.8 §9.3.6, §9.3.7)."""

    flow_id: str
    endpoints: Endpoints
    phase: str  # "rq" or "rp"
    direction: int  # 0 client -> server, 1 server -> client


class DicomAbort(Event, tag="dicom_abort", frozen=True, kw_only=True):
    """A-ABORT (PS3.8 §9.3.8)."""

    flow_id: str
    endpoints: Endpoints
    direction: int
    source: int  # 0 service-user, 2 service-provider
    reason: int
    source_name: str
    reason_name: str


class DicomCommand(Event, tag="dicom_dimse", frozen=True, kw_only=True):
    """One DIMSE command set (PS3.7 §9.3, §10.3), reassembled from its P-DATA fragments."""

    flow_id: str
    endpoints: Endpoints
    direction: int
    context_id: int
    command: str  # e.g. "C-STORE-RQ"; "0xNNNN" when unknown
    command_field: int
    abstract_syntax: str | None = None  # of the presentation context
    # the flow was captured after its A-ASSOCIATE (PS3.8 §9.3.2): AE titles and negotiated
    # syntaxes unknown; `abstract_syntax` is then the SOP class a command on the context named
    seen_from_middle: bool = False
    message_id: int | None = None
    message_id_responded: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    sop_class_name: str | None = None  # of the affected (else requested) SOP class
    sop_instance_hash: str | None = None  # keyed hash of the affected/requested SOP instance UID
    move_destination: str | None = None
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    priority: int | None = None
    data_set_present: bool = False  # (0000,0800) != 0x0101
    status: int | None = None
    status_class: str | None = None  # success, pending, cancel, warning, failure
    error_comment_present: bool = False  # (0000,0902) is free text: presence only
    event_type_id: int | None = None
    action_type_id: int | None = None
    remaining_suboperations: int | None = None
    completed_suboperations: int | None = None
    failed_suboperations: int | None = None
    warning_suboperations: int | None = None


class DicomDataset(Event, tag="dicom_dataset", frozen=True, kw_only=True):
    """A data set that passed in clear: device identity kept, patient attributes as flags only.

    Only the first `bytes_parsed` bytes are decoded (pixel data and beyond are counted, not kept).
    """

    flow_id: str
    endpoints: Endpoints
    direction: int
    context_id: int
    # the flow was captured after its A-ASSOCIATE: no transfer syntax was negotiated
    seen_from_middle: bool = False
    command: str | None = None  # the command this data set belongs to
    message_id: int | None = None
    # a C-STORE sub-operation of a C-MOVE names the C-MOVE's requestor (PS3.7 §9.1.1.1, §9.3.1.1):
    # its sender forwards an instance another device created
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    transfer_syntax: str | None = None  # negotiated (A-ASSOCIATE-AC, or one proposed)
    # none negotiated: inferred from the bytes decoded (PS3.5 §7.1.2), None when they do not
    # decode. The UID only when one syntax fits: implicit VR LE, or explicit VR LE with native
    # Pixel Data; `encoding_inferred` is "implicit VR little endian", "explicit VR little endian"
    # (for explicit VR, Explicit VR Little Endian or any compressed syntax when no Pixel Data
    # was seen) or "explicit VR little endian, encapsulated pixel data" (compressed, PS3.5 §A.4)
    transfer_syntax_inferred: str | None = None
    encoding_inferred: str | None = None
    sop_class_uid: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    device_serial_number: str | None = None
    software_versions: list[str] = msgspec.field(default_factory=list)
    station_name: str | None = None
    institutional_department_name: str | None = None
    # a worklist identifier's first Scheduled Procedure Step (PS3.4 K.6.1.2.2)
    scheduled_modality: str | None = None
    scheduled_station_ae_title: str | None = None
    phi_attributes: list[str] = msgspec.field(default_factory=list)  # keywords present, no value
    bytes_total: int = 0
    bytes_parsed: int = 0
    decode_error: bool = False


class DicomOverTls(Event, tag="dicom_tls", frozen=True, kw_only=True):
    """A flow carrying DICOM inside TLS (PS3.15 Annex B.1, port 2762): encrypted DICOM."""

    flow_id: str
    endpoints: Endpoints
    bytes_c2s: int = 0
    bytes_s2c: int = 0


class DicomSession(Event, tag="dicom_session", frozen=True, kw_only=True):
    """Summary of one DICOM flow, at close: PDU counts and what could not be followed."""

    flow_id: str
    endpoints: Endpoints
    pdus: dict[str, int] = msgspec.field(default_factory=dict)
    commands: int = 0
    datasets: int = 0
    dataset_bytes: int = 0
    gaps: int = 0
    # a direction lost its PDU framing and no PDU header came within the search window
    # (4 MiB): the rest of that direction was not followed
    desynchronized: bool = False
    seen_from_middle: bool = False  # captured after the A-ASSOCIATE: AE titles unknown
    resyncs: int = 0  # PDU boundaries found by search (capture start, gaps, framing errors)
    resync_skipped_bytes: int = 0  # stream bytes passed over by those searches
    # command sets and data sets whose first fragment was missed: counted, never decoded
    partial_messages: int = 0
