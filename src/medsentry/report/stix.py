"""STIX 2.1 bundle for sharing (OASIS STIX 2.1, cs01): indicators and incidents, with the
known-exploited vulnerabilities behind them.

- `identity`: this installation (the producer, `created_by_ref` of everything else);
- `incident` (§4.8) for each open detection alert of high or critical severity;
- `indicator` (§4.7) with a STIX pattern for each public address a medical device talked to
  (internet-exposure findings) or an alert names;
- `vulnerability` (§4.21, CVE external references) for each KEV CVE a device matches, tied by
  `relationship` "has" to an `infrastructure` (§4.9) object standing for the device.
Device identifiers and public addresses only: no PHI, no internal payloads.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import stix2

PRODUCER = "medsentry"


def _ts(iso: str | None) -> datetime:
    if not iso:
        return datetime.now(UTC)
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _addr_pattern(addr: str) -> str | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    kind = "ipv4-addr" if ip.version == 4 else "ipv6-addr"
    return f"[{kind}:value = '{ip}']"


def bundle(r: dict[str, Any]) -> stix2.Bundle:
    ident = stix2.Identity(
        name=f"{PRODUCER} installation",
        identity_class="system",
        description=f"medsentry {r['tool']['version']} report of {r['generated_at']}",
    )
    objs: list[Any] = [ident]
    indicators: dict[str, Any] = {}

    def indicator(addr: str, why: str, seen: str | None) -> Any:
        pattern = _addr_pattern(addr)
        if pattern is None:
            return None
        if addr not in indicators:
            indicators[addr] = stix2.Indicator(
                created_by_ref=ident.id,
                name=f"Public address {addr}",
                description=why,
                indicator_types=["anomalous-activity"],
                pattern=pattern,
                pattern_type="stix",
                valid_from=_ts(seen),
                labels=["medical-device-traffic"],
            )
            objs.append(indicators[addr])
        return indicators[addr]

    for f in r["findings"]:
        if f["type"] != "internet-exposure" or f["status"] != "open":
            continue
        for peer in f["peers"]:
            indicator(peer, f"Contacted by a medical device ({f['subject']})", f["first_seen"])
    for a in (r["alerts"] or {}).get("top", []):
        if a["severity"] not in ("high", "critical") or a["status"] == "closed":
            continue
        inc = stix2.Incident(
            created_by_ref=ident.id,
            name=a["title"][:200],
            description=(
                f"Detection alert {a['alert_id']} ({a['severity']}), ATT&CK for ICS "
                f"{a['technique_id']} {a['technique']}, device {a['device_id'] or 'unknown'}, "
                f"{a['count']} occurrence(s) {a['first_seen']} to {a['last_seen']}"
            ),
            labels=[a["severity"]],
            external_references=[
                {
                    "source_name": "mitre-ics-attack",
                    "external_id": a["technique_id"],
                }
            ]
            if a["technique_id"]
            else None,
        )
        objs.append(inc)
    vulns: dict[str, Any] = {}
    infra: dict[str, Any] = {}
    for v in r["vulnerabilities"] or []:
        if not v["kev"]:
            continue
        dev = infra.get(v["device_id"])
        if dev is None:
            dev = infra[v["device_id"]] = stix2.Infrastructure(
                created_by_ref=ident.id,
                name=v["device"],
                infrastructure_types=["unknown"],
                description=f"Device {v['device_id']} (medsentry inventory)",
            )
            objs.append(dev)
        for cve in v["cves"]:
            if cve not in vulns:
                vulns[cve] = stix2.Vulnerability(
                    created_by_ref=ident.id,
                    name=cve,
                    description=f"Listed in CISA KEV; advisory {v['advisory']}",
                    external_references=[{"source_name": "cve", "external_id": cve}],
                )
                objs.append(vulns[cve])
            objs.append(
                stix2.Relationship(
                    created_by_ref=ident.id,
                    relationship_type="has",
                    source_ref=dev.id,
                    target_ref=vulns[cve].id,
                    description=f"{v['advisory']}: {v['status']} (confidence {v['confidence']})",
                )
            )
    return stix2.Bundle(objects=objs)
