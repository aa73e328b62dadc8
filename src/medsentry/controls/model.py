"""A finding: one control weakness on one device, with the evidence that shows it."""

from __future__ import annotations

import hashlib

import msgspec

OPEN = "open"
CLOSED = "closed"
MAX_EVIDENCE = 10  # evidence items kept per finding (the count says how many there were)


class FindingEvidence(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One observation behind a finding: the event kind, its flow and time, never PHI."""

    ts_ns: int
    kind: str  # event kind, e.g. "hl7_message", "flow", "inventory"
    flow_id: str | None = None
    client: str | None = None
    server: str | None = None
    server_port: int | None = None
    transport: str | None = None
    note: str = ""
    app: str | None = None  # the app behind the flow, where the capture names it


class Finding(msgspec.Struct, kw_only=True, omit_defaults=True):
    finding_id: str
    type: str
    severity: str
    device_id: str
    subject: str  # what on the device: "tcp/23", "TLS 1.0", "zone imaging -> it tcp/445"
    title: str
    detail: str  # one line specific to this case
    first_seen_ns: int
    last_seen_ns: int
    evidence_count: int = 0
    evidence: list[FindingEvidence] = []
    peers: list[str] = []  # the other endpoints involved (addresses or device ids)
    status: str = OPEN
    opened_ns: int = 0  # wall-clock time the finding was first stored
    closed_ns: int | None = None
    closed_by: str | None = None
    closed_reason: str | None = None
    capture_id: str | None = None


def finding_id(type_: str, device_id: str, subject: str) -> str:
    """Stable key: the same weakness on the same device is the same finding across scans."""
    return hashlib.blake2b(f"{type_}|{device_id}|{subject}".encode(), digest_size=12).hexdigest()
