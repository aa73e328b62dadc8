"""What the detection engine raises on the attack, scan and cleartext captures of nDPI's corpus.

Each capture is read by the real pipeline and replayed, in time order, through a fresh
DetectionEngine with the full detector set (rules, baselines, anomaly models), no store, no
inventory (devices keyed by address). Two runs per capture:

- `learn`: the default learning period (3600 s of capture time) — every one of these captures
  is shorter, so novelty rules, baselines and models only learn; what fires is the stateless
  rules (scans, floods, ARP, credentials, MQTT, impossible vitals, internet-facing DICOM/HL7).
- `cold`: no learning period — everything after the first event is judged against nothing,
  showing what the novelty rules and baselines would say about the capture's content.

    python benchmarks/detect_ndpi_captures.py [--pcaps DIR]

Prints a table; JSON to benchmarks/out/detect_ndpi_captures.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.registry import default_detectors
from medsentry.pipeline import Pipeline, ScanConfig

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT.parent / "shared" / "data" / "ndpi_pcaps" / "tests" / "cfgs" / "default" / "pcap"

# (capture, what it is): the attack, scan, exfiltration and cleartext-credential captures
CAPTURES = [
    ("synscan.pcap", "nmap SYN scan of one host"),
    ("tcp_scan.pcapng", "TCP connect scan"),
    ("dos_win98_smb_netbeui.pcap", "denial of service (Windows 98 SMB/NetBEUI)"),
    ("WebattackRCE.pcap", "web attack: remote command execution"),
    ("WebattackSQLinj.pcap", "web attack: SQL injection"),
    ("sql_injection.pcap", "SQL injection"),
    ("xss.pcap", "cross-site scripting"),
    ("log4j-webapp-exploit.pcap", "Log4Shell exploit against a web app"),
    ("malware.pcap", "malware traffic"),
    ("bot.pcap", "bot traffic"),
    ("emotet.pcap", "Emotet infection traffic"),
    ("trickbot.pcap", "TrickBot infection traffic"),
    ("dns_exfiltration.pcap", "data exfiltration over DNS"),
    ("dns-tunnel-iodine.pcap", "iodine DNS tunnel"),
    ("icmp-tunnel.pcap", "ICMP tunnel"),
    ("ftp_failed.pcap", "FTP failed logins"),
    ("ftp.pcap", "FTP cleartext login"),
    ("telnet.pcap", "Telnet cleartext login"),
    ("http_auth.pcap", "HTTP Basic authentication"),
    ("pop3.pcap", "POP3 cleartext login"),
    ("imap.pcap", "IMAP cleartext login"),
    ("snmp.pcap", "SNMP communities"),
    ("mqtt.pcap", "MQTT session"),
    ("coap_mqtt.pcap", "CoAP and MQTT"),
    ("hl7.pcap", "HL7 v2 ADT^A01 over MLLP"),
    ("badpackets.pcap", "malformed packets"),
]


def run(path: Path, learning_ns: int) -> dict:
    events: list = []
    t0 = time.perf_counter()
    Pipeline(ScanConfig(phi_key=b"k" * 32)).scan_files([path], events.extend)
    t_scan = time.perf_counter() - t0
    events.sort(key=lambda e: e.ts_ns)
    engine = DetectionEngine(default_detectors(), learning_ns=learning_ns, ledger=False)
    t0 = time.perf_counter()
    alerts = {a.alert_id: a for a in engine.process(events)}
    t_detect = time.perf_counter() - t0
    by_rule = Counter(a.rule_id for a in alerts.values())
    return {
        "events": len(events),
        "flows": sum(1 for e in events if e.__struct_config__.tag == "flow"),
        "alerts": len(alerts),
        "by_rule": dict(sorted(by_rule.items())),
        "examples": [
            {
                "rule": a.rule_id,
                "technique": f"{a.technique_id} {a.technique_name}",
                "severity": a.severity,
                "device": a.device_id,
                "count": a.count,
                "detail": a.detail,
            }
            for a in sorted(alerts.values(), key=lambda a: a.first_seen_ns)
            if not a.rule_id.startswith("baseline.")
        ][:6],
        "scan_s": round(t_scan, 3),
        "detect_s": round(t_detect, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcaps", type=Path, default=PCAPS)
    args = ap.parse_args()
    results = []
    for name, what in CAPTURES:
        path = args.pcaps / name
        if not path.exists():
            continue
        learn = run(path, 3600 * 10**9)
        cold = run(path, 0)
        results.append({"capture": name, "what": what, "learn": learn, "cold": cold})
        fired = ", ".join(f"{r}×{n}" for r, n in learn["by_rule"].items()) or "—"
        print(f"{name:30} {learn['flows']:6} flows  learn: {fired}")
        cold_rules = {r: n for r, n in cold["by_rule"].items() if r not in learn["by_rule"]}
        if cold_rules:
            print(
                f"{'':30} {'':12} cold adds: "
                + ", ".join(f"{r}×{n}" for r, n in cold_rules.items())
            )
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "detect_ndpi_captures.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
