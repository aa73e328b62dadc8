"""Rules: the mechanisms named by `data/detect_rules.yaml`, one small class each.

A rule's id, title, severity, ATT&CK technique, rationale, sources and thresholds come from the
data file (`load_rule_specs`); the class holds only the mechanism. Rules that need history
("never seen before") learn during the learning period and alert after it; stateless rules
(credentials in clear, ARP rebinding, scans, floods) alert from the first event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from medsentry.detect.base import SEVERITIES, AlertDraft, Detector, EvidenceRef, event_kind
from medsentry.detect.context import NS, DetectContext, is_external
from medsentry.errors import ConfigError
from medsentry.events.base import Event

DATA = Path(__file__).resolve().parent.parent / "data" / "detect_rules.yaml"

# TCP header flags (RFC 9293 §3.1).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# HL7 v2.5.1 §2.9.2: negative acknowledgement codes (original and enhanced mode).
HL7_NAK = frozenset({"AE", "AR", "CE", "CR"})

# Bounded memory: keys kept per rule table (oldest inserted dropped beyond).
MAX_KEYS = 200_000


class RuleSpec(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    function: str
    title: str
    severity: str
    technique: tuple[str, str]
    rationale: str
    sources: list[str]
    params: dict[str, Any] = {}
    enabled: bool = True


class _RuleFile(msgspec.Struct, kw_only=True):
    source: str
    rules: list[dict[str, Any]]


def load_rule_specs(path: Path | None = None) -> list[RuleSpec]:
    """Read and validate the rules file; a malformed entry raises ConfigError naming it."""
    import yaml

    from medsentry import yamlfile

    src = path or DATA
    try:
        doc = yamlfile.load(src.read_bytes())  # bad UTF-8: a YAMLError
    except OSError as exc:
        raise ConfigError(f"{src}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{src}: not valid YAML{where}") from exc
    try:
        rf = msgspec.convert(doc, _RuleFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{src}: {exc}") from exc
    specs: list[RuleSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(rf.rules):
        where = f"{src}: rules[{i}]"
        try:
            spec = msgspec.convert(raw, RuleSpec)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        where = f"{src}: rule {spec.id!r}"
        if spec.id in seen:
            raise ConfigError(f"{where}: duplicate id")
        seen.add(spec.id)
        if spec.function not in FUNCTIONS:
            raise ConfigError(f"{where}: unknown function {spec.function!r}")
        if spec.severity not in SEVERITIES:
            raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        tid = spec.technique[0]
        if not (len(tid) == 5 and tid.startswith("T0") and tid[1:].isdigit()):
            raise ConfigError(f"{where}: technique id {tid!r} is not an ATT&CK for ICS id")
        if not spec.sources or not spec.rationale.strip():
            raise ConfigError(f"{where}: needs a rationale and at least one source")
        defaults = FUNCTIONS[spec.function].defaults
        unknown = set(spec.params) - set(defaults)
        if unknown:
            raise ConfigError(f"{where}: unknown params {sorted(unknown)}")
        for k, v in spec.params.items():
            d = defaults[k]
            ok = isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int))
            if not ok or isinstance(v, bool) != isinstance(d, bool):
                raise ConfigError(f"{where}: param {k!r} must be {type(d).__name__}")
        specs.append(spec)
    return specs


def build_rules(specs: Iterable[RuleSpec] | None = None) -> list[Rule]:
    """One detector per enabled rule."""
    specs = load_rule_specs() if specs is None else specs
    return [FUNCTIONS[s.function](s) for s in specs if s.enabled]


class BoundedDict(dict):  # type: ignore[type-arg]
    """A dict that forgets its oldest inserted keys beyond `cap` (bounded memory)."""

    def __init__(self, cap: int = MAX_KEYS) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.cap:
            for k in list(self)[: self.cap // 10]:
                del self[k]


class Windows:
    """Distinct items per key in a tumbling window started by the first item (event time)."""

    def __init__(self, window_ns: int, cap: int = MAX_KEYS, max_items: int = 4096) -> None:
        self.window_ns = window_ns
        self.max_items = max_items
        self.slots: BoundedDict = BoundedDict(cap)

    def add(self, key: Any, item: Any, ts_ns: int) -> tuple[int, bool]:
        """Add; return (distinct items in the window, whether the item was new)."""
        slot = self.slots.get(key)
        if slot is None or ts_ns - slot[0] > self.window_ns or ts_ns < slot[0] - self.window_ns:
            slot = [ts_ns, {item}, 1]
            self.slots.put(key, slot)
            return 1, True
        items = slot[1]
        if item in items:
            return slot[2], False
        slot[2] += 1
        if len(items) < self.max_items:
            items.add(item)
        return slot[2], True


class Rule(Detector):
    """A rule built from its spec (id, severity, technique, params)."""

    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.detector_id = spec.id  # type: ignore[misc]
        self.p = {**self.defaults, **spec.params}

    def draft(
        self,
        event: Event,
        ctx: DetectContext,
        device: str | None,
        key: str = "",
        *,
        detail: dict[str, Any] | None = None,
        evidence: list[EvidenceRef] | None = None,
        severity: str | None = None,
        title: str | None = None,
    ) -> AlertDraft:
        return AlertDraft(
            rule_id=self.spec.id,
            severity=severity or self.spec.severity,
            title=title or self.spec.title,
            technique_id=self.spec.technique[0],
            technique_name=self.spec.technique[1],
            ts_ns=event.ts_ns,
            device_id=device,
            evidence=evidence if evidence is not None else [ctx.evidence(event)],
            dedup_key=f"{self.spec.id}|{device or '-'}|{key}",
            detail=detail or {},
        )


class _Novelty(Rule):
    """Remembers what it saw (learned during the learning period, persisted)."""

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.known: BoundedDict = BoundedDict()

    def novel(self, key: str, ctx: DetectContext) -> bool:
        """True when `key` was never seen and learning is over; remembers it either way."""
        if key in self.known:
            return False
        self.known.put(key, 1)
        return not ctx.learning

    def state(self) -> dict[str, Any]:
        return {"known": list(self.known)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.known.clear()
        for k in state.get("known", []):
            self.known.put(k, 1)

    def accept(self, key: str) -> None:
        self.known.put(key, 1)


class _DicomAssociations:
    """flow_id -> (calling AE, called AE) from the A-ASSOCIATE-RQ."""

    def __init__(self) -> None:
        self.flows: BoundedDict = BoundedDict(50_000)

    def see(self, event: Any) -> tuple[str, str] | None:
        if event_kind(event) == "dicom_associate_rq":
            self.flows.put(event.flow_id, (event.calling_ae, event.called_ae))
            return None
        return self.flows.get(event.flow_id)


class DicomTransferNewPeer(_Novelty):
    kinds = frozenset({"dicom_associate_rq", "dicom_dimse"})
    _COMMANDS = frozenset({"C-STORE-RQ", "C-MOVE-RQ", "C-GET-RQ"})

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.assoc = _DicomAssociations()

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        aes = self.assoc.see(event)
        if aes is None or event.command not in self._COMMANDS:
            return []
        calling, called = aes
        ep = event.endpoints
        if event.command == "C-STORE-RQ":
            if event.direction == 0:  # PS3.4 B.2: the SCU sends to the SCP
                dest, src, src_mac = f"{called}@{ep.server}", ep.client, ep.client_mac
            else:  # C-STORE sub-operation of a C-GET on the same association (PS3.4 C.4.3)
                dest, src, src_mac = f"{calling}@{ep.client}", ep.server, ep.server_mac
        elif event.command == "C-MOVE-RQ":  # PS3.4 C.4.2: the SCP sends to the move destination
            dest, src, src_mac = f"{event.move_destination}@move", ep.server, ep.server_mac
        else:  # C-GET: the SCU retrieves over its own association
            dest, src, src_mac = f"{calling}@{ep.client}", ep.server, ep.server_mac
        if not self.novel(f"{event.command[:6]}|{dest}", ctx):
            return []
        device = ctx.device_id(src, src_mac)
        return [
            self.draft(
                event,
                ctx,
                device,
                f"{event.command}|{dest}",
                detail={
                    "command": event.command,
                    "destination": dest,
                    "sop_class": event.sop_class_name,
                    "calling_ae": calling,
                    "called_ae": called,
                },
                evidence=[
                    ctx.evidence(
                        event,
                        f"{ep.client} -> {ep.server}:{ep.server_port} {event.command} "
                        f"{calling}->{called} dest {dest}",
                    )
                ],
            )
        ]


class DicomUnknownCallingAe(_Novelty):
    kinds = frozenset({"dicom_associate_rq", "dicom_associate_rj", "dicom_associate_ac"})

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.flagged: BoundedDict = BoundedDict(10_000)

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        ep = event.endpoints
        kind = event_kind(event)
        if kind != "dicom_associate_rq":
            flagged = self.flagged.pop(event.flow_id, None)
            if flagged is None:
                return []
            accepted = kind == "dicom_associate_ac"
            return [self.draft(event, ctx, flagged[0], flagged[1], detail={"accepted": accepted})]
        scp = f"{event.called_ae}@{ep.server}"
        if not self.novel(f"{scp}|{event.calling_ae}", ctx):
            return []
        device = ctx.device_id(ep.server, ep.server_mac)  # the SCP being accessed
        key = f"{scp}|{event.calling_ae}"
        self.flagged.put(event.flow_id, (device, key))
        return [
            self.draft(
                event,
                ctx,
                device,
                key,
                detail={
                    "calling_ae": event.calling_ae,
                    "called_ae": event.called_ae,
                    "client": ep.client,
                    "implementation": event.implementation,
                },
            )
        ]


class DicomUserIdentityCleartext(Rule):
    kinds = frozenset({"dicom_associate_rq"})

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        ui = event.user_identity
        if ui is None or not (ui.username_cleartext or ui.password_present):
            return []
        ep = event.endpoints
        device = ctx.device_id(ep.server, ep.server_mac)
        return [
            self.draft(
                event,
                ctx,
                device,
                f"{ep.client}|{event.calling_ae}",
                detail={
                    "identity_type": ui.identity_type_name,
                    "passcode_sent": ui.password_present,
                    "calling_ae": event.calling_ae,
                },
            )
        ]


def _hl7_sender(event: Any) -> tuple[str, str | None, str | None]:
    """(sender key, ip, mac) of an HL7 message: its MSH-3/MSH-4 and the side that sent it."""
    ip, mac = event.endpoints.sender(event.direction)
    return f"{event.sending_application or ''}^{event.sending_facility or ''}@{ip}", ip, mac


class Hl7NewSender(_Novelty):
    kinds = frozenset({"hl7_message"})

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        if event.message_type in (None, "ACK") or event.ack_code is not None:
            return []
        ep = event.endpoints  # _hl7_sender and the receiver, inlined (hot path)
        if event.direction == 0:
            ip, mac, receiver = ep.client, ep.client_mac, f"{ep.server}:{ep.server_port}"
        else:
            ip, mac, receiver = ep.server, ep.server_mac, ep.client
        sender = f"{event.sending_application or ''}^{event.sending_facility or ''}@{ip}"
        key = f"{receiver}|{sender}"
        if key in self.known or not self.novel(key, ctx):
            return []
        return [
            self.draft(
                event,
                ctx,
                ctx.device_id(ip, mac),
                f"{receiver}|{sender}",
                detail={
                    "sender": sender,
                    "receiver": receiver,
                    "message_type": f"{event.message_type}^{event.trigger_event or ''}",
                },
            )
        ]


class Hl7NewMessageType(_Novelty):
    kinds = frozenset({"hl7_message"})

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.senders: BoundedDict = BoundedDict()

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        if event.message_type in (None, "ACK") or event.ack_code is not None:
            return []
        ep = event.endpoints  # _hl7_sender, inlined (hot path)
        ip, mac = (ep.client, ep.client_mac) if event.direction == 0 else (ep.server, ep.server_mac)
        sender = f"{event.sending_application or ''}^{event.sending_facility or ''}@{ip}"
        mtype = f"{event.message_type}^{event.trigger_event or ''}"
        known_sender = sender in self.senders
        if not known_sender:  # (putting a known sender again changes nothing)
            self.senders.put(sender, 1)
        key = f"{sender}|{mtype}"
        if key in self.known or not self.novel(key, ctx) or not known_sender:
            return []  # a brand-new sender is hl7.new_sender's alert
        return [
            self.draft(
                event,
                ctx,
                ctx.device_id(ip, mac),
                f"{sender}|{mtype}",
                detail={"sender": sender, "message_type": mtype},
            )
        ]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "senders": list(self.senders)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.senders.clear()
        for s in state.get("senders", []):
            self.senders.put(s, 1)


class Hl7NakBurst(Rule):
    kinds = frozenset({"hl7_message"})
    defaults: ClassVar[dict[str, Any]] = {"window_s": 60, "threshold": 5}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.win = Windows(int(self.p["window_s"] * NS))

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        if event.ack_code not in HL7_NAK:
            return []
        ep = event.endpoints
        n, _ = self.win.add(
            (ep.client, ep.server), (event.ts_ns, event.ack_control_id_hash), event.ts_ns
        )
        if n < self.p["threshold"]:
            return []
        device = ctx.device_id(ep.client, ep.client_mac)  # the sender being rejected
        return [self.draft(event, ctx, device, ep.server, detail={"naks_in_window": n})]


class Hl7ImpossibleVital(Rule):
    kinds = frozenset({"hl7_message"})

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        for o in event.observations:
            if o.plausible is False:
                break
        else:
            return []
        bad = [o for o in event.observations if o.plausible is False]
        _, ip, mac = _hl7_sender(event)
        device = ctx.device_id(ip, mac)
        codes = ",".join(sorted({o.code for o in bad}))
        return [
            self.draft(
                event,
                ctx,
                device,
                codes,
                detail={"codes": codes, "units": ",".join(o.units or "" for o in bad)},
                evidence=[
                    ctx.evidence(
                        event, f"{event.message_type}^{event.trigger_event} OBX {codes} implausible"
                    )
                ],
            )
        ]


class ArpBindingChange(Rule):
    kinds = frozenset({"arp"})
    defaults: ClassVar[dict[str, Any]] = {"quiet_s": 0}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.bindings: BoundedDict = BoundedDict()  # ip -> [mac, last_seen_ns]

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        ip, mac = event.sender_ip, event.sender_mac
        if ip in ("0.0.0.0", "") or mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
            return []  # RFC 5227 §2.1.1 probes carry sender IP 0.0.0.0
        old = self.bindings.get(ip)
        if old is None:
            self.bindings.put(ip, [mac, event.ts_ns])
            return []
        if old[0] == mac:
            old[1] = event.ts_ns
            return []
        quiet = self.p["quiet_s"] * NS
        previous, last = old
        old[0], old[1] = mac, event.ts_ns
        if quiet and event.ts_ns - last > quiet:
            return []  # the old holder left long ago: a re-assignment (DHCP), not a spoof
        d = ctx.device(ip)
        device = d.device_id if d is not None else f"ip:{ip}"
        sev = "critical" if event.gratuitous or (d is not None and d.medical) else None
        return [
            self.draft(
                event,
                ctx,
                device,
                ip,
                severity=sev,
                detail={"ip": ip, "previous_mac": previous, "new_mac": mac},
                evidence=[
                    ctx.evidence(
                        event,
                        f"{ip} is-at {mac} (was {previous})"
                        f"{' gratuitous' if event.gratuitous else ''} op {event.op}",
                    )
                ],
            )
        ]

    def state(self) -> dict[str, Any]:
        return {"bindings": {k: v for k, v in self.bindings.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.bindings.clear()
        for k, v in state.get("bindings", {}).items():
            self.bindings.put(k, list(v))


class ArpGratuitousFlood(Rule):
    kinds = frozenset({"arp"})
    defaults: ClassVar[dict[str, Any]] = {"window_s": 60, "threshold": 10}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.counts: BoundedDict = BoundedDict()  # mac -> [window start, count]

    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        if not event.gratuitous:
            return []
        slot = self.counts.get(event.sender_mac)
        if slot is None or event.ts_ns - slot[0] > self.p["window_s"] * NS:
            slot = [event.ts_ns, 0]
            self.counts.put(event.sender_mac, slot)
        slot[1] += event.count
        if slot[1] < self.p["threshold"]:
            return []
        device = ctx.device_id(event.sender_ip, event.sender_mac)
        return [self.draft(event, ctx, device, event.sender_mac, detail={"in_window": slot[1]})]


def _is_probe(f: Any) -> bool:
    """A flow that carried no application data: unanswered, refused, or opened and closed."""
    if f.transport == "tcp":
        return f.payload_c2s == 0 and f.payload_s2c == 0
    if f.transport == "udp":
        return f.payload_s2c == 0 and f.packets_c2s <= 2
    return f.transport in ("icmp", "icmp6") and f.packets_c2s <= 2


class _KnownScanners(Rule):
    """Sources that scanned during the learning period (the NMS, the vulnerability scanner) are
    the network's own: after learning they no longer alert; any other source does."""

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.win = Windows(int(self.p["window_s"] * NS))
        self.known: BoundedDict = BoundedDict(10_000)

    def scanner_known(self, source: str, ctx: DetectContext) -> bool:
        return not ctx.learning and source in self.known

    def remember(self, source: str, ctx: DetectContext) -> None:
        if ctx.learning:
            self.known.put(source, 1)

    def state(self) -> dict[str, Any]:
        return {"known_scanners": list(self.known)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.known.clear()
        for k in state.get("known_scanners", []):
            self.known.put(k, 1)


class PortScan(_KnownScanners):
    kinds = frozenset({"flow"})
    defaults: ClassVar[dict[str, Any]] = {"window_s": 60, "threshold": 15}

    def observe(self, f: Any, ctx: DetectContext) -> list[AlertDraft]:
        if f.transport not in ("tcp", "udp") or not _is_probe(f):
            return []
        if self.scanner_known(f.client, ctx):
            return []
        n, new = self.win.add((f.client, f.server), (f.transport, f.server_port), f.ts_ns)
        t = self.p["threshold"]
        if not new or n < t or (n - t) % t:
            return []  # at the threshold, then once per `threshold` more ports
        self.remember(f.client, ctx)
        device = ctx.device_id(f.client, f.client_mac)
        return [
            self.draft(
                f,
                ctx,
                device,
                f.server,
                detail={"target": f.server, "distinct_ports": n},
                evidence=[ctx.evidence(f, f"{f.client} -> {f.server}: {n} ports probed")],
            )
        ]


class HostSweep(_KnownScanners):
    kinds = frozenset({"flow"})
    defaults: ClassVar[dict[str, Any]] = {"window_s": 60, "threshold": 15}

    def observe(self, f: Any, ctx: DetectContext) -> list[AlertDraft]:
        if not _is_probe(f) or f.transport not in ("tcp", "udp", "icmp", "icmp6"):
            return []
        if self.scanner_known(f.client, ctx):
            return []
        if is_external(f.server) or f.server.endswith(".255"):
            return []  # a sweep of the internet is not ours; broadcast is not a host
        n, new = self.win.add(f.client, f.server, f.ts_ns)
        t = self.p["threshold"]
        if not new or n < t or (n - t) % t:
            return []
        self.remember(f.client, ctx)
        device = ctx.device_id(f.client, f.client_mac)
        return [
            self.draft(
                f,
                ctx,
                device,
                "",
                detail={"distinct_hosts": n, "transport": f.transport},
                evidence=[ctx.evidence(f, f"{f.client}: {n} hosts probed")],
            )
        ]


class BruteForce(Rule):
    kinds = frozenset({"flow", "cleartext_credentials", "http_response"})
    defaults: ClassVar[dict[str, Any]] = {
        "window_s": 60,
        "threshold": 10,
        "failures": 5,
        "max_session_s": 10.0,
        "ports": [21, 22, 23, 3389, 5900],
    }

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        w = int(self.p["window_s"] * NS)
        self.sessions = Windows(w)
        self.failed = Windows(w)
        self.ports = frozenset(self.p["ports"])

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        kind = event_kind(e)
        if kind == "flow":
            if e.transport != "tcp" or e.server_port not in self.ports:
                return []
            if e.payload_c2s == 0 or (e.last_ns - e.ts_ns) > self.p["max_session_s"] * NS:
                return []
            key = (e.client, e.server, e.server_port)
            n, _ = self.sessions.add(key, e.flow_id, e.ts_ns)
            t = self.p["threshold"]
            if n < t or (n - t) % t:
                return []
            device = ctx.device_id(e.server, e.server_mac)  # the device under attack
            return [
                self.draft(
                    e,
                    ctx,
                    device,
                    f"{e.client}|{e.server_port}",
                    detail={"attacker": e.client, "port": e.server_port, "short_sessions": n},
                )
            ]
        ep = e.endpoints
        if kind == "cleartext_credentials":
            if e.accepted is not False:
                return []
        elif e.status not in (401, 403):  # RFC 9110 §15.5.2, §15.5.4
            return []
        n, _ = self.failed.add((ep.client, ep.server), (e.ts_ns, e.flow_id), e.ts_ns)
        t = self.p["failures"]
        if n < t or (n - t) % t:
            return []
        device = ctx.device_id(ep.server, ep.server_mac)
        return [
            self.draft(
                e,
                ctx,
                device,
                f"{ep.client}|{ep.server_port}",
                detail={"attacker": ep.client, "port": ep.server_port, "failed_logins": n},
            )
        ]


class CleartextCredentialsRule(Rule):
    kinds = frozenset({"cleartext_credentials"})

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        if not e.password_sent or e.default_credential or e.anonymous:
            return []
        ep = e.endpoints
        device = ctx.device_id(ep.server, ep.server_mac)
        return [
            self.draft(
                e,
                ctx,
                device,
                f"{e.protocol}|{ep.server_port}",
                detail={"protocol": e.protocol, "mechanism": e.mechanism, "client": ep.client},
                evidence=[
                    ctx.evidence(e, f"{ep.client} -> {ep.server} {e.protocol} {e.mechanism}")
                ],
            )
        ]


class DefaultCredentials(Rule):
    kinds = frozenset({"cleartext_credentials"})

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        if not (e.default_credential or e.anonymous) or e.accepted is False:
            return []
        ep = e.endpoints
        device = ctx.device_id(ep.server, ep.server_mac)
        return [
            self.draft(
                e,
                ctx,
                device,
                f"{e.protocol}|{ep.server_port}",
                detail={"protocol": e.protocol, "anonymous": e.anonymous, "client": ep.client},
            )
        ]


class MqttUnauthenticated(Rule):
    kinds = frozenset({"mqtt_connect", "mqtt_connack"})

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.pending: BoundedDict = BoundedDict(10_000)

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        ep = e.endpoints
        device = ctx.device_id(ep.server, ep.server_mac)  # the broker
        if event_kind(e) == "mqtt_connect":
            if e.username_present or e.password_present:
                return []
            self.pending.put(e.flow_id, 1)
            return [self.draft(e, ctx, device, str(ep.server_port), detail={"accepted": None})]
        if self.pending.pop(e.flow_id, None) is None or not e.accepted:
            return []
        return [
            self.draft(
                e, ctx, device, str(ep.server_port), severity="high", detail={"accepted": True}
            )
        ]


class MqttWildcard(Rule):
    kinds = frozenset({"mqtt_subscribe"})

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        if not e.wildcard:
            return []
        ep = e.endpoints
        everything = any(t in ("#", "+/#", "$SYS/#") for t in e.topic_filters)
        return [
            self.draft(
                e,
                ctx,
                ctx.device_id(ep.client, ep.client_mac),
                ep.server,
                severity="high" if everything else None,
                detail={"filters": ",".join(e.topic_filters[:8])[:200], "broker": ep.server},
            )
        ]


class MedicalInternet(Rule):
    kinds = frozenset({"flow"})
    defaults: ClassVar[dict[str, Any]] = {"clinical_protocols": ["dicom", "hl7", "fhir", "mqtt"]}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.clinical = frozenset(self.p["clinical_protocols"])

    def observe(self, f: Any, ctx: DetectContext) -> list[AlertDraft]:
        ext_s, ext_c = is_external(f.server), is_external(f.client)
        if ext_s == ext_c:
            return []
        inside, outside = (f.client, f.server) if ext_s else (f.server, f.client)
        inside_mac = f.client_mac if ext_s else f.server_mac
        d = ctx.device(inside, inside_mac)
        medical = d is not None and d.medical
        # a port guess on an empty flow is not DICOM/HL7: identified by signature, or data passed
        clinical = (f.app_protocol or "") in self.clinical and (
            f.app_method == "signature" or (f.payload_c2s > 0 and f.payload_s2c > 0)
        )
        if not (medical or clinical):
            return []
        inbound = ext_c
        if inbound and f.packets_s2c == 0:
            return []  # unanswered internet noise against our address: not exposure
        device = d.device_id if d is not None else ctx.device_id(inside, inside_mac)
        direction = "inbound from" if inbound else "outbound to"
        return [
            self.draft(
                f,
                ctx,
                device,
                f"{'in' if inbound else 'out'}|{outside}",
                severity="critical" if inbound and medical else None,
                title=f"{'Medical device' if medical else 'Clinical protocol'} {direction} "
                "the internet",
                detail={
                    "external": outside,
                    "direction": "inbound" if inbound else "outbound",
                    "protocol": f.app_protocol,
                    "category": d.category if d is not None else None,
                },
            )
        ]


class SynFlood(Rule):
    kinds = frozenset({"flow"})
    defaults: ClassVar[dict[str, Any]] = {"window_s": 10, "threshold": 200}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.win = Windows(int(self.p["window_s"] * NS), max_items=64)

    def observe(self, f: Any, ctx: DetectContext) -> list[AlertDraft]:
        if f.transport != "tcp" or not (f.tcp_flags_c2s & SYN) or f.tcp_flags_c2s & ACK:
            return []  # half-open: the client never acknowledged (RFC 4987 §2)
        n, _ = self.win.add((f.server, f.server_port), f.flow_id, f.ts_ns)
        t = self.p["threshold"]
        if n < t or (n - t) % t:
            return []
        device = ctx.device_id(f.server, f.server_mac)
        return [
            self.draft(
                f,
                ctx,
                device,
                str(f.server_port),
                detail={"port": f.server_port, "half_open_in_window": n},
                evidence=[
                    ctx.evidence(f, f"{n} half-open connections to {f.server}:{f.server_port}")
                ],
            )
        ]


class PacketFlood(Rule):
    kinds = frozenset({"flow"})
    defaults: ClassVar[dict[str, Any]] = {"rate_pps": 2000, "min_packets": 5000}

    def observe(self, f: Any, ctx: DetectContext) -> list[AlertDraft]:
        if f.packets_c2s < self.p["min_packets"]:
            return []
        dur = max((f.last_ns - f.ts_ns) / NS, 1e-3)
        rate = f.packets_c2s / dur
        if rate < self.p["rate_pps"] or f.packets_s2c * 10 > f.packets_c2s:
            return []  # a busy two-way flow (a transfer) is not a flood
        device = ctx.device_id(f.server, f.server_mac)
        return [
            self.draft(
                f,
                ctx,
                device,
                f.client,
                detail={"source": f.client, "packets": f.packets_c2s, "rate_pps": round(rate)},
            )
        ]


class LogCategory(Rule):
    """Device log messages of one category (data/detect_log_patterns.yaml), counted per device."""

    kinds = frozenset({"syslog"})
    defaults: ClassVar[dict[str, Any]] = {"category": "failed_login", "window_s": 0, "threshold": 1}

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        self.win = Windows(int(self.p["window_s"] * NS))

    def observe(self, e: Any, ctx: DetectContext) -> list[AlertDraft]:
        if self.p["category"] not in e.categories:
            return []
        device = ctx.device_of_event(e)
        if device is None and e.hostname:
            device = f"host:{e.hostname.lower()}"
        t = self.p["threshold"]
        n = 1
        if t > 1:
            n, _ = self.win.add(device, (e.ts_ns, e.user_hash, e.length), e.ts_ns)
            if n < t or (n - t) % t:
                return []
        ref = f"{e.hostname or e.source_ip or ''} {e.app_name or ''}: {','.join(e.matches)}"
        return [
            self.draft(
                e,
                ctx,
                device,
                self.p["category"],
                detail={
                    "patterns": ",".join(e.matches),
                    "in_window": n,
                    "user_hash": e.user_hash,
                    "app": e.app_name,
                },
                evidence=[ctx.evidence(e, ref.strip())],
            )
        ]


FUNCTIONS: dict[str, type[Rule]] = {
    "log_category": LogCategory,
    "dicom_transfer_new_peer": DicomTransferNewPeer,
    "dicom_unknown_calling_ae": DicomUnknownCallingAe,
    "dicom_user_identity_cleartext": DicomUserIdentityCleartext,
    "hl7_new_sender": Hl7NewSender,
    "hl7_new_message_type": Hl7NewMessageType,
    "hl7_nak_burst": Hl7NakBurst,
    "hl7_impossible_vital": Hl7ImpossibleVital,
    "arp_binding_change": ArpBindingChange,
    "arp_gratuitous_flood": ArpGratuitousFlood,
    "port_scan": PortScan,
    "host_sweep": HostSweep,
    "brute_force": BruteForce,
    "cleartext_credentials": CleartextCredentialsRule,
    "default_credentials": DefaultCredentials,
    "mqtt_unauthenticated": MqttUnauthenticated,
    "mqtt_wildcard": MqttWildcard,
    "medical_internet": MedicalInternet,
    "syn_flood": SynFlood,
    "packet_flood": PacketFlood,
}

RuleFactory = Callable[[RuleSpec], Rule]
