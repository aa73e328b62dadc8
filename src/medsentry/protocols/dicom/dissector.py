"""The DICOM stream dissector: PDUs of both directions of one association -> DICOM events.

Each direction is decoded incrementally (PS3.8 §9.3): a PDU may be split over many TCP segments
and one segment may carry several PDUs. Association PDUs are buffered whole (their length is
capped); P-DATA-TF is streamed PDV by PDV (PS3.8 §9.3.5), so memory stays bounded whatever the
PDU or data set size: a command set is reassembled up to 64 KiB, a data set up to
`DATASET_PREFIX` bytes (the rest is counted, not kept).

A flow captured after its A-ASSOCIATE, and a direction whose PDU framing a gap (lost segments)
broke, are picked up at the next plausible PDU header (`resync.py`): the messages that follow
are reported, marked `seen_from_middle` when the association was not seen; a command set or data
set whose first fragment was missed is counted, never decoded from its middle.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from typing import ClassVar

import msgspec

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.dicom import (
    DicomAbort,
    DicomAssociateAccept,
    DicomAssociateReject,
    DicomAssociateRequest,
    DicomCommand,
    DicomDataset,
    DicomPresentationContext,
    DicomRelease,
    DicomRoleSelection,
    DicomSession,
    DicomUserIdentity,
)
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.dicom.dataset import summarize
from medsentry.protocols.dicom.dictionary import uid_name
from medsentry.protocols.dicom.dimse import (
    COMMAND_NAMES,
    MAX_COMMAND_SET_LENGTH,
    CommandSet,
    status_class,
)
from medsentry.protocols.dicom.items import (
    APPLICATION_CONTEXT_ITEM,
    PRESENTATION_CONTEXT_ITEM_AC,
    PRESENTATION_CONTEXT_ITEM_RQ,
    UserInformationItem,
)
from medsentry.protocols.dicom.knowledge import (
    confidentiality_profile,
    dataset_attributes,
    implementation_name,
    implementation_roots,
)
from medsentry.protocols.dicom.pdu import (
    A_ABORT_RQ,
    A_ABORT_TYPE,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_AC_TYPE,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RJ_TYPE,
    A_ASSOCIATE_RQ,
    A_ASSOCIATE_RQ_TYPE,
    A_RELEASE_RP_TYPE,
    A_RELEASE_RQ_TYPE,
    ABORT_REASON_NAMES,
    ABORT_SOURCE_NAMES,
    ASSOCIATE_FIXED_LENGTH,
    CONTEXT_RESULT_NAMES,
    MAX_ASSOCIATE_PDU_LENGTH,
    P_DATA_TF_TYPE,
    PDU_HEADER_LENGTH,
    PDU_NAMES,
    REJECT_REASON_NAMES,
    REJECT_RESULT_NAMES,
    REJECT_SOURCE_NAMES,
    check_header,
)
from medsentry.protocols.dicom.resync import RESYNC_WINDOW, find_pdu
from medsentry.protocols.dicom.stamps import ChunkTimes

# knowledge files are loaded and validated at start-up (a bad file fails here, not mid-scan)
dataset_attributes()
confidentiality_profile()
implementation_roots()

DATASET_PREFIX = 64 * 1024  # bytes of each data set decoded; the rest is only counted
_PDV_HEADER = 6  # PS3.8 §9.3.5.1: item length (4), presentation context ID (1), control header (1)
_U32 = struct.Struct(">I")
Buffer = bytes | bytearray | memoryview  # what `feed` takes: bytes, or a view it does not keep
# PS3.7 §6.3.1: a command set begins with Command Group Length (0000,0000), UL, length 4
_COMMAND_GROUP_LENGTH = b"\x00\x00\x00\x00\x04\x00\x00\x00"

# PS3.7 §D.3.3.7.1: user identity type
USER_IDENTITY_TYPES = {1: "username", 2: "username-passcode", 3: "kerberos", 4: "saml", 5: "jwt"}


# PS3.5 §9.1: numeric components, no leading zero unless the component is "0"
_UID_SYNTAX = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


@functools.lru_cache(maxsize=1024)
def sop_class_name(uid: str | None) -> str | None:
    """The UID's name in PS3.6 Annex A (pydicom's UID dictionary), None when unknown."""
    if not uid or len(uid) > 64 or not _UID_SYNTAX.fullmatch(uid):
        return None
    return uid_name(uid)  # the dictionary loads at the first UID named, never without DICOM


class _Direction:
    """Decoding state of one direction of the association."""

    __slots__ = (
        "buf",
        "command",
        "command_buf",
        "ds_context",
        "ds_prefix",
        "ds_total",
        "hunting",
        "lossy",
        "message_context",
        "offset",
        "pdu_remaining",
        "pdu_type",
        "pdv_context",
        "pdv_control",
        "pdv_length",
        "pdv_remaining",
        "skipped",
        "stamps",
        "started",
        "tail",
    )

    def __init__(self) -> None:
        self.buf = bytearray()
        self.offset = 0  # stream bytes consumed, for error messages
        self.started = False  # the first bytes were looked at (a PDU boundary or not)
        self.hunting = False  # searching for a PDU header (resync.py)
        self.lossy = False  # a framing error sends the direction hunting instead of failing
        self.skipped = 0  # bytes passed over by the current search
        self.tail = False  # the PDVs belong to a message whose first fragment was missed
        self.stamps: ChunkTimes | None = None  # times of the bytes held by a search
        self.pdu_type: int | None = None
        self.pdu_remaining = 0
        self.pdv_remaining = 0
        self.pdv_length = 0
        self.pdv_context = 0
        self.pdv_control = 0
        self.message_context: int | None = None  # context of the command being reassembled
        self.command_buf = bytearray()
        self.command: CommandSet | None = None  # last command, awaiting its data set
        self.ds_context: int | None = None
        self.ds_prefix = bytearray()
        self.ds_total = 0


# PS3.8 Table 9-11 / 9-17: the first variable item, after the PDU header and fixed fields
_FIRST_ITEM = PDU_HEADER_LENGTH + ASSOCIATE_FIXED_LENGTH
_FIRST_ITEMS = {
    A_ASSOCIATE_RQ_TYPE: (APPLICATION_CONTEXT_ITEM, PRESENTATION_CONTEXT_ITEM_RQ),
    A_ASSOCIATE_AC_TYPE: (APPLICATION_CONTEXT_ITEM, PRESENTATION_CONTEXT_ITEM_AC),
}


def _association_start(buf: bytearray) -> bool | None:
    """Whether a direction's first bytes begin an association PDU a peer sends (PS3.8
    §9.3.2-§9.3.4), not bytes of a PDU seen from its middle; None: too few bytes to tell.
    A-ASSOCIATE-RQ/-AC: a length within bounds, protocol version 1 and a first variable item
    of its kind; A-ASSOCIATE-RJ (Table 9-21): reserved 00H, Result 1 or 2, Source 1-3."""
    if len(buf) < 8:
        return None
    pdu_type = buf[0]
    if buf[1] != 0:
        return False
    (length,) = _U32.unpack_from(buf, 2)
    if pdu_type in _FIRST_ITEMS:
        if not (
            ASSOCIATE_FIXED_LENGTH <= length <= MAX_ASSOCIATE_PDU_LENGTH
            and buf[6] == 0
            and buf[7] & 1
        ):
            return False
        if len(buf) < _FIRST_ITEM + 2:
            return None
        return buf[_FIRST_ITEM] in _FIRST_ITEMS[pdu_type] and buf[_FIRST_ITEM + 1] == 0
    if pdu_type == A_ASSOCIATE_RJ_TYPE and length == 4:
        if len(buf) < 10:
            return None
        return buf[6] == 0 and buf[7] in (1, 2) and buf[8] in (1, 2, 3)
    return False


class DicomDissector:
    """One DICOM association (PS3.8), both directions."""

    protocol: ClassVar[str] = "dicom"
    whole_stream: ClassVar[bool] = True
    takes_views: ClassVar[bool] = True  # `feed` copies what it keeps of its bytes, never them

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._dirs = (_Direction(), _Direction())
        self._desync = [False, False]
        self._proposed: dict[int, tuple[str | None, list[str]]] = {}  # id -> (abstract, ts)
        self._accepted_ts: dict[int, str] = {}
        self._pdus: dict[str, int] = {}
        self._commands = 0
        self._datasets = 0
        self._dataset_bytes = 0
        self._gaps = 0
        self._credential: DicomUserIdentity | None = None  # sent in clear, verdict pending
        self._associated = False  # a direction began with an association PDU (PS3.8 §9.3.2-4)
        self._learned: dict[int, str] = {}  # context id -> SOP class named by its commands
        self._resyncs = 0
        self._skipped = 0
        self._partial = 0

    # -- the Dissector interface -------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        if self._desync[direction] or not data:
            return []
        d = self._dirs[direction]
        if d.buf or d.hunting or not d.started:
            if d.hunting:
                self._stamp(d, ts_ns)
            d.buf += data
            if not d.started and not self._start(d, ts_ns):
                return []
            return self._run(direction, d, ts_ns, False)
        # in step with the PDUs and nothing held back: decoded where it lies, only an
        # unfinished header or association PDU at its end is buffered
        return self._run(direction, d, ts_ns, False, data)

    def _run(
        self, direction: int, d: _Direction, ts_ns: int, final: bool, data: Buffer | None = None
    ) -> list[Event]:
        """Decode the buffered bytes (or `data`, when nothing is buffered), searching for a PDU
        header first where the framing is lost (`final`: the stream ends with them)."""
        events: list[Event] = []
        while True:
            offset = d.offset
            try:
                if d.hunting and not self._hunt(direction, d, final):
                    return events
                if data is None and d.stamps:
                    self._drain_held(direction, d, d.stamps, ts_ns, events)
                    return events
                # keeps what came before a raise; what `data` held past it is in d.buf then
                events.extend(self._drain(direction, d, ts_ns, data))
                return events
            except ParseError as exc:
                if not d.lossy or self._desync[direction]:
                    raise ParseError(
                        f"{exc} (direction {direction}, stream byte {d.offset})"
                    ) from None
                # a false resync, or more loss: search on (past this byte if none was used)
                self._lose_sync(d, int(d.offset == offset), ts_ns)
                data = None

    def _drain_held(
        self, direction: int, d: _Direction, stamps: ChunkTimes, ts_ns: int, events: list[Event]
    ) -> None:
        """`_drain` of bytes a search held back over several segments: each event gets the
        time of the segment its last byte came in (the byte consumed before it is yielded), the
        `feed` that reports it in step (PS3.8 §9.3.1: a PDU is taken once the next header
        came). Appends to `events` as it goes, so what came before a raise is kept."""
        replace = msgspec.structs.replace
        for event in self._drain(direction, d, ts_ns):
            events.append(replace(event, ts_ns=stamps.at(d.offset - 1)))
        d.stamps = None  # in step again: what is left of d.buf is reported by a later feed

    @staticmethod
    def _stamp(d: _Direction, ts_ns: int) -> None:
        """A searching direction is fed a segment at `ts_ns`: note where its bytes begin."""
        if d.stamps is None:
            d.stamps = ChunkTimes()
        d.stamps.add(d.offset + len(d.buf), ts_ns)

    def skippable(self, direction: int) -> int:
        """How many of the next bytes of `direction` would only be counted: the middle of a
        data set PDV whose decoded prefix is full (feeding them would change nothing else)."""
        if self._desync[direction]:
            return 0
        d = self._dirs[direction]
        if (
            d.pdu_type != P_DATA_TF_TYPE
            or d.pdv_remaining <= 1
            or d.pdv_control & 1
            or d.buf
            or d.ds_context != d.pdv_context
            or len(d.ds_prefix) < DATASET_PREFIX
        ):
            return 0
        return d.pdv_remaining - 1  # the PDV's last byte is always fed (it ends the data set)

    def skip(self, direction: int, length: int) -> None:
        """`feed` of `length` bytes (at most `skippable(direction)`) without the bytes."""
        d = self._dirs[direction]
        d.offset += length
        d.pdv_remaining -= length
        d.pdu_remaining -= length
        d.ds_total += length

    def gap(self, direction: int, length: int, ts_ns: int) -> list[Event]:
        """Bytes lost: skip them inside a data PDV; anywhere else the framing is lost and the
        next PDU header is searched for."""
        self._gaps += 1
        d = self._dirs[direction]
        if self._desync[direction]:
            return []
        d.stamps = None  # the bytes held no longer follow on (cleared below)
        if d.hunting:
            d.buf.clear()  # the bytes kept for a header split over segments no longer follow on
            return []
        if d.pdu_type == P_DATA_TF_TYPE and not d.buf and 0 < length <= d.pdv_remaining:
            d.pdv_remaining -= length
            d.pdu_remaining -= length
            d.offset += length
            if d.pdv_control & 1:  # a command lost bytes: drop it
                d.command_buf.clear()
                d.message_context = None
            else:
                d.ds_total += length
            if d.pdv_remaining == 0:
                events = list(self._fragment(direction, d, b"", True, ts_ns))
                if d.pdu_remaining == 0:
                    d.pdu_type = None
                return events
            return []
        d.buf.clear()
        self._lose_sync(d, 0, ts_ns)
        return []

    def close(self, ts_ns: int) -> list[Event]:
        events: list[Event] = []
        for direction, d in enumerate(self._dirs):
            if d.hunting and d.buf and not self._desync[direction]:
                # a PDU found at the end of the stream has no next header to confirm it
                try:
                    events += self._run(direction, d, ts_ns, True)
                except ParseError:  # still no PDU header: nothing more to report
                    self._desync[direction] = True
        events += self._credentials(None, ts_ns)
        if not self._pdus and not self._gaps:
            return events  # nothing was said (e.g. a scan's SYN to port 104): no session summary
        return [
            *events,
            DicomSession(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                pdus=dict(self._pdus),
                commands=self._commands,
                datasets=self._datasets,
                dataset_bytes=self._dataset_bytes,
                gaps=self._gaps,
                desynchronized=any(self._desync),
                seen_from_middle=not self._associated,
                resyncs=self._resyncs,
                resync_skipped_bytes=self._skipped,
                partial_messages=self._partial,
            ),
        ]

    # -- PDU boundaries (PS3.8 §9.3.1): a stream that does not start at one, or lost it -------

    def _start(self, d: _Direction, ts_ns: int) -> bool:
        """At a direction's first bytes: whether they begin an association PDU (or follow one
        on the other direction), else search for a PDU header. False: too few bytes yet."""
        buf = d.buf
        opens = _association_start(buf)
        if opens is None:
            return False
        d.started = True
        if self._associated:
            return True
        if opens:
            self._associated = True
            return True
        self._lose_sync(d, 0, ts_ns)  # captured after the association began
        return True

    def _lose_sync(self, d: _Direction, drop: int, ts_ns: int) -> None:
        """The direction's framing is lost (at a segment fed at `ts_ns`): forget the PDU and
        message in progress, drop `drop` bytes and search for the next PDU header."""
        d.started = d.hunting = d.lossy = d.tail = True
        d.pdu_type = None
        d.pdu_remaining = d.pdv_remaining = 0
        d.message_context = d.ds_context = None
        d.command = None
        d.command_buf.clear()
        d.ds_prefix.clear()
        d.ds_total = 0
        if drop:
            del d.buf[:drop]
            d.offset += drop
            d.skipped += drop
            self._skipped += drop
        if d.buf and not d.stamps:  # the bytes held came with this segment (or just before)
            d.stamps = ChunkTimes()
            d.stamps.add(d.offset, ts_ns)

    def _hunt(self, direction: int, d: _Direction, final: bool) -> bool:
        """Search the buffered bytes for a PDU header (`resync.find_pdu`) and drop those before
        it: True when the buffer now starts with one. Past RESYNC_WINDOW bytes the direction is
        given up; on a flow where no PDU was ever found that is a parse error (not DICOM)."""
        at, found = find_pdu(d.buf, 0, final)
        if at:
            del d.buf[:at]
            d.offset += at
            d.skipped += at
            self._skipped += at
            if d.stamps:
                d.stamps.drop_before(d.offset)
        if found:
            d.hunting = False
            d.skipped = 0
            self._resyncs += 1
            return True
        if d.skipped > RESYNC_WINDOW:
            self._desync[direction] = True
            d.buf = bytearray()
            d.stamps = None
            if not self._pdus:
                raise ParseError(f"DICOM: no PDU header in {d.skipped} bytes")
        return False

    # -- PDU framing (PS3.8 §9.3.1) ------------------------------------------------------------

    def _drain(
        self, direction: int, d: _Direction, ts_ns: int, data: Buffer | None = None
    ) -> Iterator[Event]:
        """Decode d.buf, or `data` when d.buf is empty: what is left of it goes to d.buf."""
        buf = d.buf if data is None else data
        pos = 0
        try:
            while True:
                avail = len(buf) - pos
                if d.pdu_type is None:
                    if avail < PDU_HEADER_LENGTH:
                        break
                    pdu_type = buf[pos]
                    (length,) = _U32.unpack_from(buf, pos + 2)
                    check_header(pdu_type, length)
                    pos += PDU_HEADER_LENGTH
                    d.offset += PDU_HEADER_LENGTH
                    name = PDU_NAMES[pdu_type]
                    self._pdus[name] = self._pdus.get(name, 0) + 1
                    d.pdu_type, d.pdu_remaining = pdu_type, length
                    if pdu_type == P_DATA_TF_TYPE and length == 0:
                        d.pdu_type = None
                elif d.pdu_type != P_DATA_TF_TYPE:
                    if avail < d.pdu_remaining:
                        break
                    value = bytes(buf[pos : pos + d.pdu_remaining])
                    pos += d.pdu_remaining
                    d.offset += d.pdu_remaining
                    pdu_type, d.pdu_type = d.pdu_type, None
                    yield from self._pdu(direction, pdu_type, value, ts_ns)
                elif d.pdv_remaining == 0:  # PS3.8 §9.3.5.1: a PDV item header
                    if avail < _PDV_HEADER:
                        break
                    (item_length,) = _U32.unpack_from(buf, pos)
                    if item_length < 2 or item_length + 4 > d.pdu_remaining:
                        raise ParseError(
                            f"DICOM P-DATA-TF: PDV item length {item_length} does not fit the "
                            f"{d.pdu_remaining} bytes left in its PDU"
                        )
                    d.pdv_context, d.pdv_control = buf[pos + 4], buf[pos + 5]
                    pos += _PDV_HEADER
                    d.offset += _PDV_HEADER
                    d.pdu_remaining -= _PDV_HEADER
                    d.pdv_remaining = d.pdv_length = item_length - 2
                    if d.pdv_remaining == 0:
                        yield from self._fragment(direction, d, b"", True, ts_ns)
                    if d.pdu_remaining == 0 and d.pdv_remaining == 0:
                        d.pdu_type = None
                else:  # PDV value bytes, streamed
                    n = min(avail, d.pdv_remaining)
                    if n == 0:
                        break
                    if (
                        not d.pdv_control & 1
                        and d.ds_context == d.pdv_context
                        and len(d.ds_prefix) >= DATASET_PREFIX
                        and not d.tail
                    ):  # data set bytes past the decoded prefix: counted by length, not copied
                        pos += n
                        d.offset += n
                        d.pdv_remaining -= n
                        d.pdu_remaining -= n
                        d.ds_total += n
                        if d.pdv_remaining == 0:
                            yield from self._fragment(direction, d, b"", True, ts_ns)
                            if d.pdu_remaining == 0:
                                d.pdu_type = None
                        continue
                    chunk = bytes(buf[pos : pos + n])
                    pos += n
                    d.offset += n
                    d.pdv_remaining -= n
                    d.pdu_remaining -= n
                    yield from self._fragment(direction, d, chunk, d.pdv_remaining == 0, ts_ns)
                    if d.pdu_remaining == 0 and d.pdv_remaining == 0:
                        d.pdu_type = None
        finally:
            if data is None:
                del buf[:pos]
            elif pos < len(data):
                d.buf += data[pos:]

    # -- association PDUs ----------------------------------------------------------------------

    def _pdu(self, direction: int, pdu_type: int, value: bytes, ts_ns: int) -> Iterator[Event]:
        flow, ends = self.ctx.flow_id, self.ctx.endpoints
        if pdu_type == A_ASSOCIATE_RQ_TYPE:
            yield from self._credentials(None, ts_ns)  # a new request: the old one had no answer
            rq_event = self._associate_rq(A_ASSOCIATE_RQ.decode(value), ts_ns)
            identity = rq_event.user_identity
            if identity is not None and (identity.username_cleartext or identity.password_present):
                self._credential = identity
            yield rq_event
        elif pdu_type == A_ASSOCIATE_AC_TYPE:
            yield self._associate_ac(A_ASSOCIATE_AC.decode(value), ts_ns)
            yield from self._credentials(True, ts_ns)
        elif pdu_type == A_ASSOCIATE_RJ_TYPE:
            rj = A_ASSOCIATE_RJ.decode(value)
            yield DicomAssociateReject(
                ts_ns=ts_ns,
                flow_id=flow,
                endpoints=ends,
                result=rj.result,
                source=rj.source,
                reason=rj.reason_diagnostic,
                result_name=REJECT_RESULT_NAMES.get(rj.result, "unknown"),
                source_name=REJECT_SOURCE_NAMES.get(rj.source, "unknown"),
                reason_name=REJECT_REASON_NAMES.get((rj.source, rj.reason_diagnostic), "unknown"),
            )
            yield from self._credentials(False, ts_ns)
        elif pdu_type in (A_RELEASE_RQ_TYPE, A_RELEASE_RP_TYPE):
            phase = "rq" if pdu_type == A_RELEASE_RQ_TYPE else "rp"
            yield DicomRelease(
                ts_ns=ts_ns, flow_id=flow, endpoints=ends, phase=phase, direction=direction
            )
        elif pdu_type == A_ABORT_TYPE:
            ab = A_ABORT_RQ.decode(value)
            reason = ab.reason_diagnostic
            yield DicomAbort(
                ts_ns=ts_ns,
                flow_id=flow,
                endpoints=ends,
                direction=direction,
                source=ab.source,
                reason=reason,
                source_name=ABORT_SOURCE_NAMES.get(ab.source, "unknown"),
                reason_name=ABORT_REASON_NAMES.get(reason, "unknown")
                if ab.source == 2
                else "not-significant",
            )

    def _credentials(self, accepted: bool | None, ts_ns: int) -> Iterator[Event]:
        """User identity sent in clear (PS3.7 §D.3.3.7), with the association's verdict."""
        identity, self._credential = self._credential, None
        if identity is None:
            return
        yield CleartextCredentials(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            protocol="dicom",
            mechanism=f"user-identity-{identity.identity_type_name}",
            username_hash=identity.username_hash,
            password_sent=identity.password_present,
            accepted=accepted,
        )

    def _user_fields(self, info: UserInformationItem | None) -> dict:
        if info is None:
            return {}
        identity = None
        rq = info.user_identity_rq
        if rq is not None:
            is_username = rq.user_identity_type in (1, 2)
            identity = DicomUserIdentity(
                identity_type=rq.user_identity_type,
                identity_type_name=USER_IDENTITY_TYPES.get(rq.user_identity_type, "unknown"),
                positive_response_requested=bool(rq.positive_response_requested),
                username_cleartext=is_username and bool(rq.primary_field),
                username_hash=self.ctx.phi_hash(rq.primary_field)
                if is_username and rq.primary_field
                else None,
                password_present=rq.user_identity_type == 2 and rq.secondary_field_length > 0,
                token_length=0 if is_username else len(rq.primary_field),
            )
        return {
            "max_pdu_length": info.maximum_length_received,
            "implementation_class_uid": info.implementation_class_uid,
            "implementation_version_name": info.implementation_version_name,
            "implementation": implementation_name(info.implementation_class_uid),
            "role_selections": [
                DicomRoleSelection(
                    sop_class_uid=r.sop_class_uid, scu_role=r.scu_role, scp_role=r.scp_role
                )
                for r in info.role_selections
            ],
            "max_operations_invoked": info.max_operations_invoked,
            "max_operations_performed": info.max_operations_performed,
            "extended_negotiations": info.extended_negotiations,
            "user_identity": identity,
        }

    def _associate_rq(self, rq: A_ASSOCIATE_RQ, ts_ns: int) -> DicomAssociateRequest:
        self._proposed = {
            pc.context_id: (pc.abstract_syntax, pc.transfer_syntaxes)
            for pc in rq.presentation_contexts
        }
        self._accepted_ts = {}
        contexts = [
            DicomPresentationContext(
                context_id=pc.context_id,
                abstract_syntax=pc.abstract_syntax,
                sop_class_name=sop_class_name(pc.abstract_syntax),
                transfer_syntaxes=pc.transfer_syntaxes,
            )
            for pc in rq.presentation_contexts
        ]
        return DicomAssociateRequest(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            calling_ae=rq.calling_ae_title,
            called_ae=rq.called_ae_title,
            protocol_version=rq.protocol_version,
            application_context=rq.application_context.application_context_name
            if rq.application_context
            else None,
            presentation_contexts=contexts,
            malformed_item=rq.malformed_item,
            **self._user_fields(rq.user_information),
        )

    def _associate_ac(self, ac: A_ASSOCIATE_AC, ts_ns: int) -> Event:
        contexts = []
        accepted = 0
        for pc in ac.presentation_contexts:
            abstract = self._proposed.get(pc.context_id, (None, []))[0]
            if pc.result_reason == 0:
                accepted += 1
                if pc.transfer_syntax:
                    self._accepted_ts[pc.context_id] = pc.transfer_syntax
            contexts.append(
                DicomPresentationContext(
                    context_id=pc.context_id,
                    abstract_syntax=abstract,
                    sop_class_name=sop_class_name(abstract),
                    transfer_syntaxes=[pc.transfer_syntax] if pc.transfer_syntax else [],
                    result=pc.result_reason,
                    result_name=CONTEXT_RESULT_NAMES.get(pc.result_reason, "unknown"),
                )
            )
        info = ac.user_information
        return DicomAssociateAccept(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            calling_ae=ac.calling_ae_title,
            called_ae=ac.called_ae_title,
            protocol_version=ac.protocol_version,
            application_context=ac.application_context.application_context_name
            if ac.application_context
            else None,
            presentation_contexts=contexts,
            accepted_contexts=accepted,
            rejected_contexts=len(contexts) - accepted,
            server_response_to_identity=bool(info and info.user_identity_ac),
            malformed_item=ac.malformed_item,
            **self._user_fields(info),
        )

    # -- DIMSE messages in P-DATA-TF (PS3.8 §9.3.5, Annex E; PS3.7 §6.3) -----------------------

    def _fragment(
        self, direction: int, d: _Direction, chunk: bytes, pdv_end: bool, ts_ns: int
    ) -> Iterator[Event]:
        control = d.pdv_control  # PS3.8 §E.2: bit 0 command, bit 1 last fragment
        context = d.pdv_context
        last = pdv_end and bool(control & 2)
        if d.tail and not self._message_start(d, control, chunk):
            if last:  # the message whose start was missed ends here: counted, not decoded
                d.tail = False
                self._partial += 1
            return
        if control & 1:
            if d.message_context != context:
                d.command_buf.clear()
                d.message_context = context
            if len(d.command_buf) + len(chunk) > MAX_COMMAND_SET_LENGTH:
                raise ParseError(f"DIMSE command set longer than {MAX_COMMAND_SET_LENGTH} bytes")
            d.command_buf += chunk
            if last:
                data = bytes(d.command_buf)
                d.command_buf.clear()
                d.message_context = None
                yield self._command(direction, d, context, CommandSet.decode(data), ts_ns)
            return
        if d.ds_context != context:
            d.ds_prefix.clear()
            d.ds_total = 0
            d.ds_context = context
        d.ds_total += len(chunk)
        room = DATASET_PREFIX - len(d.ds_prefix)
        if room > 0:
            d.ds_prefix += chunk[:room]
        if last:
            yield self._dataset(direction, d, context, ts_ns)

    @staticmethod
    def _message_start(d: _Direction, control: int, chunk: bytes) -> bool:
        """After a resync, whether this fragment starts a message (then the tail is over): a
        command set's first bytes are its Command Group Length (PS3.7 §6.3.1). A data set
        fragment never counts: its command set, which says one follows, was missed."""
        if not control & 1 or not chunk or d.pdv_remaining + len(chunk) != d.pdv_length:
            return False  # not a command, or not the first bytes of its PDV
        n = min(len(chunk), len(_COMMAND_GROUP_LENGTH))
        if chunk[:n] != _COMMAND_GROUP_LENGTH[:n]:
            return False
        d.tail = False
        return True

    def _command(
        self, direction: int, d: _Direction, context: int, cmd: CommandSet, ts_ns: int
    ) -> Event:
        self._commands += 1
        field = cmd.command_field or 0
        d.command = cmd if cmd.data_set_present else None
        instance = cmd.affected_sop_instance_uid or cmd.requested_sop_instance_uid
        sop_class = cmd.affected_sop_class_uid or cmd.requested_sop_class_uid
        abstract = self._proposed.get(context, (None, []))[0]
        if abstract is None and not self._associated:
            # a context negotiated before the capture: the SOP class its commands name
            abstract = self._learned.get(context)
            if abstract is None and sop_class:
                abstract = self._learned[context] = sop_class
        return DicomCommand(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            context_id=context,
            command=COMMAND_NAMES.get(field, f"0x{field:04x}"),
            command_field=field,
            abstract_syntax=abstract,
            seen_from_middle=not self._associated,
            message_id=cmd.message_id,
            message_id_responded=cmd.message_id_being_responded_to,
            affected_sop_class_uid=cmd.affected_sop_class_uid,
            requested_sop_class_uid=cmd.requested_sop_class_uid,
            sop_class_name=sop_class_name(sop_class),
            sop_instance_hash=self.ctx.phi_hash(instance) if instance else None,
            move_destination=cmd.move_destination,
            move_originator_ae=cmd.move_originator_ae_title,
            move_originator_message_id=cmd.move_originator_message_id,
            priority=cmd.priority,
            data_set_present=cmd.data_set_present,
            status=cmd.status,
            status_class=status_class(cmd.status) if cmd.status is not None else None,
            error_comment_present=cmd.error_comment_present,
            event_type_id=cmd.event_type_id,
            action_type_id=cmd.action_type_id,
            remaining_suboperations=cmd.remaining,
            completed_suboperations=cmd.completed,
            failed_suboperations=cmd.failed,
            warning_suboperations=cmd.warning,
        )

    def _dataset(self, direction: int, d: _Direction, context: int, ts_ns: int) -> Event:
        transfer_syntax = self._accepted_ts.get(context)
        if transfer_syntax is None and len(self._proposed.get(context, (None, []))[1]) == 1:
            transfer_syntax = self._proposed[context][1][0]
        cmd = d.command
        field = cmd.command_field if cmd and cmd.command_field is not None else None
        # C-FIND-RQ / C-FIND-RSP (PS3.7 §9.3.2): the identifier may be a worklist query's
        total = d.ds_total
        prefix = bytes(d.ds_prefix)
        summary = summarize(
            prefix, transfer_syntax, field in (0x0020, 0x8020), complete=total == len(prefix)
        )
        d.command = None
        d.ds_prefix.clear()
        d.ds_total = 0
        d.ds_context = None
        self._datasets += 1
        self._dataset_bytes += total
        return DicomDataset(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            context_id=context,
            seen_from_middle=not self._associated,
            command=COMMAND_NAMES.get(field, f"0x{field:04x}") if field is not None else None,
            message_id=cmd.message_id if cmd else None,
            move_originator_ae=cmd.move_originator_ae_title if cmd else None,
            move_originator_message_id=cmd.move_originator_message_id if cmd else None,
            transfer_syntax=transfer_syntax,
            transfer_syntax_inferred=summary.transfer_syntax_inferred,
            encoding_inferred=summary.encoding_inferred,
            sop_class_uid=summary.sop_class_uid,
            modality=summary.modality,
            manufacturer=summary.manufacturer,
            manufacturer_model_name=summary.manufacturer_model_name,
            device_serial_number=summary.device_serial_number,
            software_versions=summary.software_versions,
            station_name=summary.station_name,
            institutional_department_name=summary.institutional_department_name,
            scheduled_modality=summary.scheduled_modality,
            scheduled_station_ae_title=summary.scheduled_station_ae_title,
            phi_attributes=summary.phi_attributes,
            bytes_total=total,
            bytes_parsed=summary.bytes_parsed,
            decode_error=summary.decode_error,
        )
