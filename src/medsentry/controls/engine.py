"""The controls analysis engine: checks over the scan's events, then over the inventory, then
storage with the open/closed lifecycle (registered in `medsentry.analysis` as "controls").

`feed` hands every batch to the `Collector` (rules.py). `finish` resolves addresses to devices
(the inventory's, when it has them), adds the checks that need the inventory (internet exposure
of medical devices, end-of-life systems, KEV vulnerabilities), checks the zone policy when one
is configured (`<data dir>/zone_policy.yaml` or $MEDSENTRY_ZONE_POLICY), raises the severity of
findings on life-sustaining and patient-affecting devices one step, and stores the findings.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from medsentry.controls.devices import DeviceIndex, load_inventory
from medsentry.controls.knowledge import SEVERITIES, Knowledge, knowledge
from medsentry.controls.model import MAX_EVIDENCE, Finding, FindingEvidence, finding_id
from medsentry.controls.rules import MEDICAL_PROTOCOLS, Collector, is_public
from medsentry.controls.segmentation import Violation, ZonePolicy, check, load_policy
from medsentry.controls.store import upsert_findings
from medsentry.events.base import Event
from medsentry.inventory.model import LIFE_SUSTAINING, PATIENT_AFFECTING, Device

if TYPE_CHECKING:
    from medsentry.store import Store

POLICY_ENV = "MEDSENTRY_ZONE_POLICY"


def configured_policy() -> ZonePolicy | None:
    path = os.environ.get(POLICY_ENV)
    if path:
        return load_policy(Path(path))
    from medsentry.paths import data_dir

    default = data_dir() / "zone_policy.yaml"
    return load_policy(default) if default.exists() else None


def _raise(severity: str, device: Device | None) -> str:
    """One step up on life-sustaining / patient-affecting devices (capped at critical)."""
    if device is None or device.criticality not in (LIFE_SUSTAINING, PATIENT_AFFECTING):
        return severity
    i = SEVERITIES.index(severity)
    return SEVERITIES[min(i + 1, len(SEVERITIES) - 1)]


class FindingBuilder:
    """Candidates + devices -> findings (device ids, severities, inventory checks)."""

    def __init__(self, kn: Knowledge, devices: Sequence[Device], capture_id: str | None):
        self.kn = kn
        self.index = DeviceIndex(list(devices))
        self.capture_id = capture_id
        self.out: dict[str, Finding] = {}

    def _is_medical(self, device_id: str, ip: str | None, collector: Collector) -> bool:
        d = self.index.device(device_id)
        if d is not None:
            return d.medical
        return ip is not None and bool(collector.protocols_by_ip.get(ip, set()) & MEDICAL_PROTOCOLS)

    def add(
        self,
        type_: str,
        device_id: str,
        subject: str,
        detail: str,
        first_ns: int,
        last_ns: int,
        evidence: list[FindingEvidence],
        count: int,
        peers: Sequence[str] = (),
    ) -> None:
        t = self.kn.types[type_]
        fid = finding_id(type_, device_id, subject)
        prev = self.out.get(fid)
        if prev is not None:
            prev.first_seen_ns = min(prev.first_seen_ns, first_ns)
            prev.last_seen_ns = max(prev.last_seen_ns, last_ns)
            prev.evidence_count += count
            prev.evidence = (prev.evidence + evidence)[:MAX_EVIDENCE]
            prev.peers = sorted(set(prev.peers) | set(peers))[:64]
            return
        self.out[fid] = Finding(
            finding_id=fid,
            type=type_,
            severity=_raise(t.severity, self.index.device(device_id)),
            device_id=device_id,
            subject=subject,
            title=t.title,
            detail=detail,
            first_seen_ns=first_ns,
            last_seen_ns=last_ns,
            evidence_count=count,
            evidence=list(evidence)[:MAX_EVIDENCE],
            peers=sorted(set(peers))[:64],
            capture_id=self.capture_id,
        )

    def from_candidates(self, collector: Collector) -> None:
        for c in collector.candidates.values():
            dev = self.index.resolve(c.ip, c.mac)
            if c.medical_only and not self._is_medical(dev, c.ip, collector):
                continue
            peers = sorted(self.index.resolve(p) for p in c.peers)
            self.add(
                c.type, dev, c.subject, c.detail, c.first_ns, c.last_ns, c.evidence, c.count, peers
            )

    def exposure(self, collector: Collector) -> None:
        """Medical devices talking to public addresses (inbound is worse than outbound)."""
        for s in collector.conversations.values():
            pub_c, pub_s = is_public(s.client), is_public(s.server)
            if pub_c == pub_s:
                continue
            inside, outside = (s.server, s.client) if pub_c else (s.client, s.server)
            dev = self.index.resolve(inside)
            if not self._is_medical(dev, inside, collector):
                continue
            direction = "inbound" if pub_c else "outbound"
            ev = FindingEvidence(
                ts_ns=s.first_ns,
                kind="flow",
                flow_id=s.flow_id,
                client=s.client,
                server=s.server,
                server_port=s.server_port,
                transport=s.transport,
                note=f"{s.flows} flow(s), {s.bytes} bytes, {s.protocol or 'unknown protocol'}",
            )
            self.add(
                "internet-exposure",
                dev,
                direction,
                f"medical device in {direction} communication with public address(es)",
                s.first_ns,
                s.last_ns,
                [ev],
                s.flows,
                [outside],
            )
        for d in self.index.devices.values():
            if d.medical and d.external_peers:
                ev = FindingEvidence(
                    ts_ns=d.last_seen_ns,
                    kind="inventory",
                    note=f"inventory: {len(d.external_peers)} external peer(s)",
                )
                self.add(
                    "internet-exposure",
                    d.device_id,
                    "outbound",
                    "medical device in outbound communication with public address(es)",
                    d.first_seen_ns,
                    d.last_seen_ns,
                    [ev],
                    1,
                    d.external_peers,
                )

    def eol(self, collector: Collector, today: dt.date) -> None:
        seen: list[tuple[str, str, int, str]] = []  # (device, banner, ts, source)
        for who, banners in collector.banners.items():
            dev = self.index.resolve_key(who)
            for text, ts in banners:
                seen.append((dev, text, ts, "banner"))
        for d in self.index.devices.values():
            if d.os is not None:
                seen.append((d.device_id, d.os.value, d.last_seen_ns, "inventory os"))
        for dev, text, ts, source in seen:
            for sysm in self.kn.eol:
                if sysm.eol >= today or not any(p.search(text) for p in sysm.patterns):
                    continue
                ev = FindingEvidence(ts_ns=ts, kind=source.replace(" ", "_"), note=text[:120])
                self.add(
                    "eol-os",
                    dev,
                    sysm.name,
                    f"{sysm.name}: security updates ended {sysm.eol.isoformat()} "
                    f"({sysm.source}); seen in {source} {text[:60]!r}",
                    ts,
                    ts,
                    [ev],
                    1,
                )
                break

    def kev(self, matches: list[Any] | None) -> None:
        for m in matches or []:
            if not getattr(m, "kev", False) or not m.device_id:
                continue
            if m.status not in ("affected", "potentially_affected"):
                continue
            d = self.index.device(m.device_id)
            ts = d.last_seen_ns if d is not None else 0
            cves = ", ".join(m.cves[:5])
            ev = FindingEvidence(
                ts_ns=ts,
                kind="intel_match",
                note=f"{m.advisory_id} {m.status} (confidence {m.confidence:.2f}): {cves}",
            )
            self.add(
                "kev-vulnerability",
                m.device_id,
                m.advisory_id,
                f"{m.advisory_id} ({m.status}) lists KEV vulnerabilities {cves}; {m.explanation}",
                ts,
                ts,
                [ev],
                1,
            )

    def segmentation(self, violations: list[Violation]) -> None:
        for v in violations:
            dev = self.index.resolve(v.client)
            proto = v.protocol or "unknown"
            ev = FindingEvidence(
                ts_ns=v.first_ns,
                kind="flow",
                flow_id=v.flow_id,
                client=v.client,
                server=v.server,
                server_port=v.port,
                transport=v.transport,
                note=f"{v.flows} flow(s) {v.client_zone} -> {v.server_zone} {proto}",
            )
            self.add(
                "segmentation-violation",
                dev,
                f"{v.client_zone} -> {v.server_zone} {v.transport}/{v.port}",
                f"{v.client_zone} -> {v.server_zone} {v.transport}/{v.port} ({proto}) "
                "is not allowed by the zone policy",
                v.first_ns,
                v.last_ns,
                [ev],
                v.flows,
                [self.index.resolve(v.server)],
            )


def build_findings(
    collector: Collector,
    devices: Sequence[Device],
    capture_id: str | None = None,
    policy: ZonePolicy | None = None,
    matches: list[Any] | None = None,
    today: dt.date | None = None,
) -> list[Finding]:
    b = FindingBuilder(collector.kn, devices, capture_id)
    b.from_candidates(collector)
    b.exposure(collector)
    b.eol(collector, today or dt.datetime.now(dt.UTC).date())
    b.kev(matches)
    if policy is not None:
        by_ip = {ip: d for d in devices for ip in d.ips}
        b.segmentation(check(policy, collector.conversations.values(), by_ip))
    if collector.apps:
        _name_apps(b.out.values(), collector.apps)
    return list(b.out.values())


def _name_apps(findings: Iterable[Finding], apps: dict[str, str]) -> None:
    """Each piece of evidence from a flow the capture names the app of carries that app."""
    for f in findings:
        if any(e.flow_id in apps for e in f.evidence):
            f.evidence = [
                msgspec.structs.replace(e, app=apps[e.flow_id]) if e.flow_id in apps else e
                for e in f.evidence
            ]


class ControlsAnalyzer:
    name = "controls"

    def __init__(self, store: Store | None = None, phi_key: bytes | None = None):
        if phi_key is None:
            from medsentry.paths import phi_key as installation_key

            phi_key = installation_key()
        self.collector = Collector(phi_key, knowledge())
        self.policy = configured_policy()

    def feed(self, events: Sequence[Event]) -> None:
        self.collector.feed(events)

    def finish(self, store: Store, capture_id: str | None) -> dict[str, Any]:
        from medsentry.controls.vulns import device_matches

        devices = load_inventory(store)
        found = build_findings(
            self.collector, devices, capture_id, self.policy, device_matches(store, devices)
        )
        res = upsert_findings(store, found)
        self.collector.drain()
        counts: dict[str, Any] = {
            "findings": len(found),
            "opened": len(res.opened),
            "reopened": len(res.reopened),
        }
        for f in found:
            key = f"severity {f.severity}"
            counts[key] = counts.get(key, 0) + 1
        return counts


def controls_analyzer(store: Store) -> ControlsAnalyzer:
    return ControlsAnalyzer(store)
