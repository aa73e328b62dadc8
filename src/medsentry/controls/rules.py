"""The checks: events in, candidate findings out (addresses, not devices yet).

`Collector.feed` looks at each event once and keeps only what a check needs (per-flow state
for pairing a request with its answer, a bounded evidence list per candidate). Device
resolution, inventory-based checks and storage happen in `engine`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from medsentry.controls.knowledge import Knowledge, knowledge
from medsentry.controls.model import MAX_EVIDENCE, FindingEvidence
from medsentry.events.base import Endpoints, Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.dicom import (
    DicomAssociateAccept,
    DicomAssociateRequest,
    DicomDataset,
)
from medsentry.events.flow import FlowRecord, ProtocolDetected
from medsentry.events.hl7 import Hl7Message
from medsentry.events.http import FhirInteraction, HttpRequest, HttpResponse
from medsentry.events.identity import (
    CdpNeighbor,
    DhcpMessage,
    LldpNeighbor,
    SnmpSystem,
    SnmpV3Message,
    SsdpMessage,
)
from medsentry.events.mqtt import MqttConnack, MqttConnect
from medsentry.events.process import ProcessTraffic
from medsentry.events.tls import TlsCertificate, TlsClientHello, TlsServerHello

MEDICAL_PROTOCOLS = frozenset({"dicom", "dicom-tls", "hl7-mllp", "fhir"})
_TLS_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2"}
TFTP_PORT = 69
_MAX_PENDING = 100_000  # per-flow pairing state kept at most (oldest dropped)
_NOTE_ATTRIBUTES = 6  # attribute keywords named in a DICOM evidence note; the rest are counted


MAX_APPS = 1 << 18  # flows whose app is remembered before the memory starts over


@dataclass
class Candidate:
    """A finding before its device is known: keyed by (type, address, subject)."""

    type: str
    ip: str | None
    mac: str | None
    subject: str
    detail: str
    first_ns: int
    last_ns: int
    count: int = 0
    evidence: list[FindingEvidence] = field(default_factory=list)
    peers: set[str] = field(default_factory=set)
    medical_only: bool = False  # only a finding when the device turns out to be medical


def keyed_hash(key: bytes, value: str) -> str:
    """The dissectors' keyed hash (FlowContext.phi_hash): HMAC-SHA-256, 16 hex digits."""
    return hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=65536)
def is_public(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


def _count(c: Candidate, ts: int, mac: str | None, peer: str | None) -> None:
    """One more occurrence of a candidate finding: count, time span, MAC, peers (up to 64)."""
    c.count += 1
    if ts < c.first_ns:
        c.first_ns = ts
    if ts > c.last_ns:
        c.last_ns = ts
    if mac and not c.mac:
        c.mac = mac
    if peer and len(c.peers) < 64:
        c.peers.add(peer)


def _ev(ev: Event, ep: Endpoints | None, flow_id: str | None, note: str = "") -> FindingEvidence:
    kind = type(ev).__struct_config__.tag
    if ep is None:
        return FindingEvidence(ts_ns=ev.ts_ns, kind=str(kind), flow_id=flow_id, note=note)
    return FindingEvidence(
        ts_ns=ev.ts_ns,
        kind=str(kind),
        flow_id=flow_id,
        client=ep.client,
        server=ep.server,
        server_port=ep.server_port,
        transport=ep.transport,
        note=note,
    )


def _san_matches(name: str, pattern: str) -> bool:
    """RFC 6125 §6.4.3: a wildcard only as the whole left-most label."""
    name, pattern = name.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class FlowSummary:
    """Flows aggregated by (client, server, transport, server port, protocol) for segmentation
    and exposure checks; one entry per conversation, not per flow."""

    client: str
    server: str
    transport: str
    server_port: int
    protocol: str | None
    vlan: int | None
    client_mac: str | None
    server_mac: str | None
    first_ns: int
    last_ns: int
    flows: int = 0
    bytes: int = 0
    answered: bool = False  # the server sent something back
    flow_id: str = ""  # one example flow


class Collector:
    def __init__(self, phi_key: bytes | None, kn: Knowledge | None = None) -> None:
        self.kn = kn or knowledge()
        self.candidates: dict[tuple[str, str | None, str], Candidate] = {}
        self.conversations: dict[tuple, FlowSummary] = {}
        self.banners: dict[str, list[tuple[str, int]]] = {}  # address/mac -> (banner, ts)
        self.protocols_by_ip: dict[str, set[str]] = {}
        self._sni: dict[str, str] = {}
        self._mqtt_anon: dict[str, MqttConnect] = {}
        self._smb1: dict[str, ProtocolDetected] = {}
        self._dicom_ae: dict[tuple[str, int], dict[str, int]] = {}
        self._dicom_ae_ev: dict[tuple[str, int], DicomAssociateAccept] = {}
        self._accounts: dict[str, list] = {}
        self._communities: dict[str, object] = {}
        self.apps: dict[str, str] = {}  # flow id -> the app behind it (ProcessTraffic)
        if phi_key is not None:
            for a in self.kn.accounts:
                self._accounts.setdefault(keyed_hash(phi_key, a.username), []).append(a)
            for c in self.kn.communities:
                self._communities[keyed_hash(phi_key, c.community)] = c

    def drain(self) -> None:
        """Forget what was reported (after `finish`); keep the pairing state of open flows."""
        self.candidates.clear()
        self.conversations.clear()
        self.banners.clear()

    # -- bookkeeping ---------------------------------------------------------------------------

    def add(
        self,
        type_: str,
        ip: str | None,
        subject: str,
        evidence: FindingEvidence,
        detail: str = "",
        mac: str | None = None,
        peer: str | None = None,
        medical_only: bool = False,
        latest_detail: bool = False,
    ) -> None:
        key = (type_, ip or mac, subject)
        c = self.candidates.get(key)
        ts = evidence.ts_ns
        if c is None:
            c = self.candidates[key] = Candidate(
                type_, ip, mac, subject, detail, ts, ts, medical_only=medical_only
            )
        elif latest_detail:
            c.detail = detail
        _count(c, ts, mac, peer)
        # the same observation twice (two messages alike in one segment) is one entry: counted
        if len(c.evidence) < MAX_EVIDENCE and evidence not in c.evidence:
            c.evidence.append(evidence)

    def seen(
        self, type_: str, ip: str | None, subject: str, ts: int, mac: str | None, peer: str | None
    ) -> bool:
        """Count one more occurrence of a candidate whose evidence list is already full, without
        building the evidence (`add` would drop it); False when `add` is needed."""
        c = self.candidates.get((type_, ip or mac, subject))
        if c is None or len(c.evidence) < MAX_EVIDENCE:
            return False
        _count(c, ts, mac, peer)
        return True

    def _pending(self, table: dict, key: str, value: object) -> None:
        if len(table) >= _MAX_PENDING:
            table.pop(next(iter(table)))
        table[key] = value

    # -- events --------------------------------------------------------------------------------

    def feed(self, events: Sequence[Event] | Iterable[Event]) -> None:
        for ev in events:
            handler = _HANDLERS.get(type(ev))
            if handler is not None:
                handler(self, ev)

    def _flow(self, ev: FlowRecord) -> None:
        proto = ev.app_protocol
        key = (ev.client, ev.server, ev.transport, ev.server_port, proto)
        s = self.conversations.get(key)
        if s is None:
            s = self.conversations[key] = FlowSummary(
                ev.client,
                ev.server,
                ev.transport,
                ev.server_port,
                proto,
                ev.vlan,
                ev.client_mac,
                ev.server_mac,
                ev.ts_ns,
                ev.last_ns,
                flow_id=ev.flow_id,
            )
        s.flows += 1
        s.bytes += ev.bytes_c2s + ev.bytes_s2c
        if ev.ts_ns < s.first_ns:
            s.first_ns = ev.ts_ns
        if ev.last_ns > s.last_ns:
            s.last_ns = ev.last_ns
        if not s.answered and ev.packets_s2c > 0:
            s.answered = True
        if proto:
            by_ip = self.protocols_by_ip
            for ip in (ev.server, ev.client):
                known = by_ip.get(ip)
                if known is None:
                    by_ip[ip] = {proto}
                elif proto not in known:
                    known.add(proto)
        tid = self.kn.insecure_services.get(proto or "")
        if proto == "tftp":
            # RFC 1350 §4: the server answers from a new port (its TID), so the request to
            # port 69 is the service's flow and the transfer flows are not services
            tid = tid if ev.server_port == TFTP_PORT else None
        elif ev.packets_s2c == 0:
            tid = None
        smb = self._smb1.pop(ev.flow_id, None) if self._smb1 else None
        if tid is None and smb is None:
            return
        ep = Endpoints(
            client=ev.client,
            server=ev.server,
            client_port=ev.client_port,
            server_port=ev.server_port,
            transport=ev.transport,
        )
        if tid is not None:
            self.add(
                tid,
                ev.server,
                f"{ev.transport}/{ev.server_port}",
                _ev(ev, ep, ev.flow_id, f"{proto} session, {ev.packets_c2s + ev.packets_s2c} pkts"),
                detail=f"{proto} service on {ev.transport}/{ev.server_port}",
                mac=ev.server_mac,
                peer=ev.client,
            )
        if smb is not None:
            self.add(
                "smbv1",
                ev.server,
                f"{ev.transport}/{ev.server_port}",
                _ev(smb, ep, ev.flow_id, "SMB1 header (0xFF 'SMB') in the negotiation"),
                detail="SMB1 dialect in use",
                mac=ev.server_mac,
                peer=ev.client,
            )

    def _protocol(self, ev: ProtocolDetected) -> None:
        if ev.protocol == "smb" and ev.detail == "smb1":
            self._pending(self._smb1, ev.flow_id, ev)

    def _hl7(self, ev: Hl7Message) -> None:
        ep = ev.endpoints
        subject = f"hl7-mllp {ep.transport}/{ep.server_port}"
        ts, server, mac, peer = ev.ts_ns, ep.server, ep.server_mac, ep.client
        # most messages of a feed are only counted: their findings' evidence is already full
        phi_done = not ev.phi_segments or self.seen("phi-cleartext", server, subject, ts, mac, peer)
        clear_done = self.seen("cleartext-medical-protocol", server, subject, ts, mac, peer)
        if not phi_done:
            segs = ",".join(sorted(ev.phi_segments))
            self.add(
                "phi-cleartext",
                ep.server,
                subject,
                _ev(ev, ep, ev.flow_id, f"HL7 {_msg_type(ev)} with {segs}"),
                detail=f"HL7 v2 messages with patient segments ({segs}) over MLLP without TLS",
                mac=ep.server_mac,
                peer=ep.client,
            )
        if clear_done:
            return
        self.add(
            "cleartext-medical-protocol",
            ep.server,
            subject,
            _ev(ev, ep, ev.flow_id, f"HL7 {ev.message_type or '?'} message in clear"),
            detail=f"HL7 v2 over MLLP without TLS; secure variant: "
            f"{self.kn.secure_variants['hl7-mllp']['secure']}",
            mac=ep.server_mac,
            peer=ep.client,
        )

    def _dicom_rq(self, ev: DicomAssociateRequest) -> None:
        ep = ev.endpoints
        self.add(
            "cleartext-medical-protocol",
            ep.server,
            f"dicom {ep.transport}/{ep.server_port}",
            _ev(ev, ep, ev.flow_id, f"A-ASSOCIATE-RQ {ev.calling_ae!r} -> {ev.called_ae!r}"),
            detail="DICOM without TLS; secure variant: "
            + self.kn.secure_variants["dicom"]["secure"],
            mac=ep.server_mac,
            peer=ep.client,
        )

    def _dicom_ac(self, ev: DicomAssociateAccept) -> None:
        ep = ev.endpoints
        key = (ep.server, ep.server_port)
        aes = self._dicom_ae.setdefault(key, {})
        ae = ev.calling_ae.strip().upper()
        if ae not in aes and len(aes) < 256:
            aes[ae] = ev.ts_ns
        self._dicom_ae_ev.setdefault(key, ev)
        default = ae in self.kn.dicom_default_aes
        if default or len(aes) >= self.kn.dicom_distinct_ae_threshold:
            defaults = sorted(a for a in aes if a in self.kn.dicom_default_aes)
            why = [f"accepted {len(aes)} distinct calling AE title{'' if len(aes) == 1 else 's'}"]
            if defaults:
                why.append(f"toolkit-default {', '.join(repr(a) for a in defaults[:3])}")
            self.add(
                "dicom-any-ae",
                ep.server,
                f"dicom {ep.transport}/{ep.server_port}",
                _ev(ev, ep, ev.flow_id, f"A-ASSOCIATE-AC for calling AE {ae!r}"),
                detail=f"DICOM SCP {ev.called_ae.strip()!r} {', among them '.join(why)}",
                mac=ep.server_mac,
                peer=ep.client,
                latest_detail=True,  # the count grows with each new calling AE title
            )

    def _dicom_ds(self, ev: DicomDataset) -> None:
        if not ev.phi_attributes:
            return
        ep = ev.endpoints
        # the patient's own attributes first (Patient's Name, ID, ...), then the rest, by name
        names = sorted(ev.phi_attributes, key=lambda n: ("Patient" not in n, n))
        shown = ",".join(names[:_NOTE_ATTRIBUTES])
        more = f" +{len(names) - _NOTE_ATTRIBUTES} more" if len(names) > _NOTE_ATTRIBUTES else ""
        note = f"{ev.command or 'data set'} with {len(names)} patient attributes: {shown}{more}"
        self.add(
            "phi-cleartext",
            ep.server,
            f"dicom {ep.transport}/{ep.server_port}",
            _ev(ev, ep, ev.flow_id, note),
            detail="DICOM data sets with patient attributes sent without TLS",
            mac=ep.server_mac,
            peer=ep.client,
        )

    def _fhir(self, ev: FhirInteraction) -> None:
        ep = ev.endpoints
        subj = f"fhir {ep.transport}/{ep.server_port}"
        if ev.patient_data_in_clear:
            self.add(
                "phi-cleartext",
                ep.server,
                subj,
                _ev(ev, ep, ev.flow_id, f"FHIR {ev.interaction} {ev.path_template}"),
                detail="FHIR resources of the Patient compartment sent over plain HTTP",
                mac=ep.server_mac,
                peer=ep.client,
            )
        self.add(
            "cleartext-medical-protocol",
            ep.server,
            subj,
            _ev(ev, ep, ev.flow_id, f"FHIR {ev.interaction} over plain HTTP"),
            detail=f"FHIR REST API without TLS; secure variant: "
            f"{self.kn.secure_variants['fhir']['secure']}",
            mac=ep.server_mac,
            peer=ep.client,
        )

    def _http_rq(self, ev: HttpRequest) -> None:
        ep = ev.endpoints
        subj = f"http {ep.transport}/{ep.server_port}"
        if (ev.auth_scheme or "").lower() == "basic":
            self.add(
                "http-basic-cleartext",
                ep.server,
                f"{ep.transport}/{ep.server_port}",
                _ev(ev, ep, ev.flow_id, f"{ev.method} {_first_segment(ev.path)} with Basic auth"),
                detail="HTTP Basic credentials sent without TLS",
                mac=ep.server_mac,
                peer=ep.client,
            )
        self.add(
            "cleartext-medical-protocol",
            ep.server,
            subj,
            _ev(ev, ep, ev.flow_id, f"{ev.method} {_first_segment(ev.path)} over plain HTTP"),
            detail=f"web interface without TLS; secure variant: "
            f"{self.kn.secure_variants['http']['secure']}",
            mac=ep.server_mac,
            peer=ep.client,
            medical_only=True,
        )
        if ev.user_agent:
            self._banner(ep.client, ev.user_agent, ev.ts_ns)
        self._clinical_body(ev, ev.content_type, "request")

    def _http_rs(self, ev: HttpResponse) -> None:
        if ev.server:
            self._banner(ev.endpoints.server, ev.server, ev.ts_ns)
        self._clinical_body(ev, ev.content_type, "response")

    def _clinical_body(self, ev: HttpRequest | HttpResponse, ctype: str | None, what: str) -> None:
        """HTTP bodies whose media type is a clinical payload (DICOMweb, HL7 v2 over HTTP)."""
        if not ctype:
            return
        main = ctype.split(";", 1)[0].strip().lower()
        why = self.kn.clinical_media.get(main)
        if main == "multipart/related" and "application/dicom" in ctype.lower():
            main, why = "application/dicom", self.kn.clinical_media.get("application/dicom")
        if why is None:
            return
        ep = ev.endpoints
        self.add(
            "phi-cleartext",
            ep.server,
            f"http {ep.transport}/{ep.server_port}",
            _ev(ev, ep, ev.flow_id, f"HTTP {what} body of type {main} in clear"),
            detail=f"HTTP bodies of type {main} sent without TLS: {why}",
            mac=ep.server_mac,
            peer=ep.client,
        )

    def _ssdp(self, ev: SsdpMessage) -> None:
        banner = ev.server or ev.user_agent
        if banner:
            who = ev.endpoints.server if ev.method == "RESPONSE" else ev.endpoints.client
            self._banner(who, banner, ev.ts_ns)

    def _dhcp(self, ev: DhcpMessage) -> None:
        if ev.vendor_class and ev.client_mac:
            self._banner("mac:" + ev.client_mac.lower(), ev.vendor_class, ev.ts_ns)

    def _lldp(self, ev: LldpNeighbor) -> None:
        if ev.system_description:
            self._banner("mac:" + ev.source_mac.lower(), ev.system_description, ev.ts_ns)

    def _cdp(self, ev: CdpNeighbor) -> None:
        text = " ".join(x for x in (ev.platform, ev.software_version) if x)
        if text:
            self._banner("mac:" + ev.source_mac.lower(), text, ev.ts_ns)

    def _snmp_system(self, ev: SnmpSystem) -> None:
        # sysDescr names the agent's system and often its OS release (RFC 3418 §2)
        if ev.sys_descr:
            ip, mac = ev.endpoints.sender(ev.direction)
            self._banner("mac:" + mac.lower() if mac else ip, ev.sys_descr, ev.ts_ns)

    def _snmpv3(self, ev: SnmpV3Message) -> None:
        # the level an agent answered or notified at (RFC 3411 §3.4.3): a Response or a
        # notification, not the unauthenticated discovery Report every engine sends (RFC 3414 §4)
        if ev.reportable or ev.pdu == "report" or ev.security_level == "authPriv":
            return
        ep = ev.endpoints
        ip, mac = ep.sender(ev.direction)
        peer = ep.server if ev.direction == 0 else ep.client
        # an agent answers on its port (161); it notifies from any port: one subject for those
        notify = ev.pdu in ("trap", "snmpv2-trap", "inform")
        port = ep.client_port if ev.direction == 0 else ep.server_port
        subject = f"{ep.transport} notifications" if notify else f"{ep.transport}/{port}"
        noauth = ev.security_level == "noAuthNoPriv"
        what = "without authentication" if noauth else "authenticated but not encrypted"
        self.add(
            "snmp-v3-noauth" if noauth else "snmp-v3-nopriv",
            ip,
            subject,
            _ev(ev, ep, ev.flow_id, f"SNMPv3 {ev.security_level} {ev.pdu or ''}".strip()),
            detail=f"SNMPv3 {ev.pdu or 'message'} {what} ({ev.security_level})",
            mac=mac,
            peer=peer,
        )

    def _banner(self, who: str, text: str, ts: int) -> None:
        seen = self.banners.setdefault(who, [])
        if len(seen) < 16 and all(t != text for t, _ in seen):
            seen.append((text[:200], ts))

    def _tls_client(self, ev: TlsClientHello) -> None:
        if ev.server_name:
            self._pending(self._sni, ev.flow_id, ev.server_name)

    def _tls_server(self, ev: TlsServerHello) -> None:
        ep = ev.endpoints
        subj = f"{ep.transport}/{ep.server_port}"
        if ev.selected_version < self.kn.min_tls_version:
            name = _TLS_NAMES.get(ev.selected_version, ev.version)
            self.add(
                "tls-legacy-version",
                ep.server,
                f"{subj} {name}",
                _ev(ev, ep, ev.flow_id, f"ServerHello negotiated {name}"),
                detail=f"{name} negotiated (minimum TLS 1.2)",
                mac=ep.server_mac,
                peer=ep.client,
            )
        name = ev.cipher_name or f"0x{ev.cipher_suite:04X}"
        for w in self.kn.weak_ciphers:
            if w.pattern.search(name):
                self.add(
                    "tls-weak-cipher",
                    ep.server,
                    f"{subj} {name}",
                    _ev(ev, ep, ev.flow_id, f"ServerHello selected {name}"),
                    detail=f"{name}: {w.why} ({w.source})",
                    mac=ep.server_mac,
                    peer=ep.client,
                )
                break

    def _tls_cert(self, ev: TlsCertificate) -> None:
        if ev.chain_index != 0:
            return
        ep = ev.endpoints
        subj = f"{ep.transport}/{ep.server_port}"
        who = ev.subject_cn or ev.subject
        when = dt.datetime.fromtimestamp(ev.ts_ns / 1e9, dt.UTC)
        nb, na = _aware(ev.not_before), _aware(ev.not_after)
        note = f"certificate {who!r} sha256 {ev.sha256[:16]}"
        if when > na or when < nb:
            state = "expired" if when > na else "not yet valid"
            self.add(
                "tls-cert-expired",
                ep.server,
                subj,
                _ev(ev, ep, ev.flow_id, note),
                detail=f"certificate {who!r} {state} (valid {nb:%Y-%m-%d} to {na:%Y-%m-%d})",
                mac=ep.server_mac,
                peer=ep.client,
            )
        if ev.self_signed:
            self.add(
                "tls-cert-self-signed",
                ep.server,
                subj,
                _ev(ev, ep, ev.flow_id, note),
                detail=f"self-signed certificate {who!r}",
                mac=ep.server_mac,
                peer=ep.client,
            )
        weak = _weak_key(ev, self.kn)
        if weak:
            self.add(
                "tls-cert-weak-key",
                ep.server,
                subj,
                _ev(ev, ep, ev.flow_id, note),
                detail=f"certificate {who!r}: {weak}",
                mac=ep.server_mac,
                peer=ep.client,
            )
        sni = self._sni.pop(ev.flow_id, None)
        mismatch = _name_mismatch(ev, sni, ep.server)
        if mismatch:
            self.add(
                "tls-cert-name-mismatch",
                ep.server,
                subj,
                _ev(ev, ep, ev.flow_id, note),
                detail=mismatch,
                mac=ep.server_mac,
                peer=ep.client,
            )

    def _credentials(self, ev: CleartextCredentials) -> None:
        ep = ev.endpoints
        subj = f"{ev.protocol} {ep.transport}/{ep.server_port}"
        ev_ = _ev(ev, ep, ev.flow_id, f"{ev.protocol} {ev.mechanism}, accepted={ev.accepted}")
        if ev.protocol == "snmp":
            self.add(
                "snmp-v1v2c",
                ep.server,
                f"{ep.transport}/{ep.server_port}",
                ev_,
                detail="SNMP v1/v2c community authentication (community sent in clear)",
                mac=ep.server_mac,
                peer=ep.client,
            )
            comm = self._communities.get(ev.username_hash or "")
            if ev.default_credential or comm is not None:
                label = getattr(comm, "community", None)
                what = f"default community {label!r}" if label else "a default community"
                self.add(
                    "snmp-default-community",
                    ep.server,
                    f"{ep.transport}/{ep.server_port}",
                    ev_,
                    detail=f"SNMP {what} used"
                    + (", and the agent answered" if ev.accepted else ""),
                    mac=ep.server_mac,
                    peer=ep.client,
                )
            return
        # http Basic: http-basic-cleartext is counted per request, from the HttpRequest (_http_rq)
        if ev.password_sent and not ev.anonymous:
            self.add(
                "cleartext-credentials",
                ep.server,
                subj,
                ev_,
                detail=f"{ev.protocol} {ev.mechanism} login with a password in clear"
                + (" (accepted)" if ev.accepted else ""),
                mac=ep.server_mac,
                peer=ep.client,
            )
        if ev.accepted is False:
            return
        if ev.anonymous:
            self.add(
                "default-credentials",
                ep.server,
                subj,
                ev_,
                detail="anonymous FTP login" + (" accepted" if ev.accepted else ""),
                mac=ep.server_mac,
                peer=ep.client,
            )
            return
        matches = [
            a for a in self._accounts.get(ev.username_hash or "", []) if ev.protocol in a.protocols
        ]
        if matches:
            products = "; ".join(f"{a.vendor} {a.product}" for a in matches[:3])
            self.add(
                "default-credentials",
                ep.server,
                subj,
                ev_,
                detail=f"default account {matches[0].username!r} used over {ev.protocol}"
                + (" and accepted" if ev.accepted else "")
                + f" (default of: {products})",
                mac=ep.server_mac,
                peer=ep.client,
            )

    def _process(self, ev: ProcessTraffic) -> None:
        # evidence of a flow an app opened names the app (a phone's or a computer's capture)
        if ev.flow_id is None:
            return
        if len(self.apps) >= MAX_APPS:
            self.apps.clear()
        name = f"{ev.label} ({ev.process})" if ev.label else ev.process
        old = self.apps.get(ev.flow_id)
        told = old.split(", ") if old else []
        self.apps[ev.flow_id] = ", ".join(told) if name in told else ", ".join([*told, name])

    def _mqtt_connect(self, ev: MqttConnect) -> None:
        if not ev.username_present and not ev.password_present:
            self._pending(self._mqtt_anon, ev.flow_id, ev)

    def _mqtt_connack(self, ev: MqttConnack) -> None:
        conn = self._mqtt_anon.pop(ev.flow_id, None)
        if conn is None or not ev.accepted:
            return
        ep = ev.endpoints
        self.add(
            "mqtt-unauthenticated",
            ep.server,
            f"{ep.transport}/{ep.server_port}",
            _ev(ev, ep, ev.flow_id, f"anonymous CONNECT (level {conn.protocol_level}) accepted"),
            detail="broker accepted a CONNECT with no username or password",
            mac=ep.server_mac,
            peer=ep.client,
        )


def _first_segment(path: str) -> str:
    """Only the first path segment goes into evidence: later segments of non-FHIR web APIs may
    name a record ("/patients/12345"), which no finding needs."""
    head = path.split("?", 1)[0].strip("/").split("/", 1)[0]
    return f"/{head[:40]}" + ("/..." if "/" in path.strip("/") else "")


def _msg_type(ev: Hl7Message) -> str:
    return f"{ev.message_type or '?'}^{ev.trigger_event or '?'}"


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


_RSA_BITS = re.compile(r"RSA-(\d+)", re.I)


def _weak_key(ev: TlsCertificate, kn: Knowledge) -> str | None:
    m = _RSA_BITS.match(ev.public_key or "")
    if m and int(m.group(1)) < kn.min_rsa_bits:
        return f"RSA key of {m.group(1)} bits (minimum {kn.min_rsa_bits})"
    for w in kn.weak_signatures:
        if ev.signature_algorithm and w.pattern.search(ev.signature_algorithm):
            return f"{ev.signature_algorithm}: {w.why}"
    return None


def _name_mismatch(ev: TlsCertificate, sni: str | None, server_ip: str) -> str | None:
    """RFC 6125 §6.4: the reference identity (SNI, else the address the client dialed) must be
    in subjectAltName (CN only when there is no SAN, §6.4.4)."""
    names = list(ev.san_dns) or ([ev.subject_cn] if ev.subject_cn and not ev.san_ip else [])
    if sni:
        if any(_san_matches(sni, n) for n in names):
            return None
        shown = ", ".join(names[:4]) or "no DNS names"
        return f"client asked for {sni!r}; certificate names {shown}"
    ips = list(ev.san_ip) + [n for n in names if _is_ip(n)]
    if ips and server_ip not in ips:
        return f"server {server_ip} not among the certificate's addresses {', '.join(ips[:4])}"
    return None


_HANDLERS = {
    FlowRecord: Collector._flow,
    ProtocolDetected: Collector._protocol,
    Hl7Message: Collector._hl7,
    DicomAssociateRequest: Collector._dicom_rq,
    DicomAssociateAccept: Collector._dicom_ac,
    DicomDataset: Collector._dicom_ds,
    FhirInteraction: Collector._fhir,
    HttpRequest: Collector._http_rq,
    HttpResponse: Collector._http_rs,
    SsdpMessage: Collector._ssdp,
    DhcpMessage: Collector._dhcp,
    LldpNeighbor: Collector._lldp,
    CdpNeighbor: Collector._cdp,
    SnmpSystem: Collector._snmp_system,
    SnmpV3Message: Collector._snmpv3,
    TlsClientHello: Collector._tls_client,
    TlsServerHello: Collector._tls_server,
    TlsCertificate: Collector._tls_cert,
    CleartextCredentials: Collector._credentials,
    MqttConnect: Collector._mqtt_connect,
    MqttConnack: Collector._mqtt_connack,
    ProcessTraffic: Collector._process,
}
