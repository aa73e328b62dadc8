"""Protocol identification accuracy against nDPI's labelled test corpus.

Runs medsentry's real scan pipeline (`medsentry.pipeline.Pipeline`: capture reader, decoder,
flow table, TCP reassembly, `medsentry.protocols.identify`) over every capture of nDPI's
`tests/cfgs/default/pcap/` and compares each flow's `app_protocol` with nDPI's label from
`ndpi_flow_ground_truth.tsv` (flows matched by capture + transport + both endpoints, in either
orientation). Writes per-protocol precision / recall to benchmarks/identification_ndpi.md and
benchmarks/out/identification_ndpi.json.

    python benchmarks/bench_identification_ndpi.py            # the whole corpus
    python benchmarks/bench_identification_ndpi.py --limit 40 # a quick look while developing

How labels are compared (what nDPI says -> what medsentry calls it):
  * nDPI labels a flow "master.app" (e.g. "TLS.Google", "HTTP.1kxun"): the master protocol is
    the one compared; an app that is itself a protocol under a transport-ish master is used
    instead (only "NetBIOS.SMBv1"/"NetBIOS.SMBv23" -> smb). Hostname-derived apps do not matter:
    "TLS.Google" is tls for us.
  * NDPI_TO_MEDSENTRY below maps nDPI's protocol names to medsentry's; an nDPI protocol
    medsentry has no name for counts as "other" (any medsentry label on it is a false positive),
    nDPI's "Unknown" as "unknown".
  * medsentry's refinements are folded into what nDPI can tell: fhir -> http (FHIR's REST API
    is HTTP), dicom-tls -> tls (TLS on port 2762).
  * Flows nDPI found inside a tunnel (labels like "CAPWAP:18/DHCP") are left out: medsentry does
    not decapsulate CAPWAP/GTP/VXLAN yet.
  * Precision counts every flow medsentry labelled P (including nDPI-"Unknown" flows, shown
    separately); recall is over the flows nDPI labelled P that the pipeline produced.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "ndpi_pcaps"
PCAPS = DATA / "tests" / "cfgs" / "default" / "pcap"
TRUTH = DATA / "ndpi_flow_ground_truth.tsv"
OUT_MD = REPO / "benchmarks" / "identification_ndpi.md"
OUT_JSON = REPO / "benchmarks" / "out" / "identification_ndpi.json"

# nDPI protocol name (ndpi_protocol_ids.h / ndpi_main.c names) -> medsentry protocol name
NDPI_TO_MEDSENTRY: dict[str, str] = {
    # web
    "HTTP": "http",
    "HTTP_Proxy": "http",  # HTTP to a proxy (absolute-form request target)
    "HTTP_Connect": "http",  # HTTP CONNECT
    "TLS": "tls",
    "IMAPS": "tls",  # IMAP over implicit TLS: the bytes are TLS
    "SMTPS": "tls",
    "POPS": "tls",
    "FTPS": "tls",
    "DTLS": "dtls",
    "QUIC": "quic",
    # names and addresses
    "DNS": "dns",
    "MDNS": "mdns",
    "LLMNR": "llmnr",
    "NetBIOS": "netbios",
    "DHCP": "dhcp",
    "DHCPV6": "dhcpv6",
    "SSDP": "ssdp",
    "Service_Location_Protocol": "slp",
    # management
    "NTP": "ntp",
    "SNMP": "snmp",
    "Syslog": "syslog",
    "SSH": "ssh",
    "Telnet": "telnet",
    "RDP": "rdp",
    "VNC": "vnc",
    # mail and files
    "FTP_CONTROL": "ftp",
    "SMTP": "smtp",
    "POP3": "pop3",
    "IMAP": "imap",
    "SMBv1": "smb",
    "SMBv23": "smb",
    "TFTP": "tftp",
    # medical, IoT, industrial
    "HL7": "hl7-mllp",
    "DICOM": "dicom",
    "MQTT": "mqtt",
    "TuyaLP": "tuya-lp",
    "COAP": "coap",
    "Modbus": "modbus",
    "DNP3": "dnp3",
    "BACnet": "bacnet",
    "IEC60870": "iec104",
    "OPC-UA": "opc-ua",
    # voice and video
    "SIP": "sip",
    "RTSP": "rtsp",
    "STUN": "stun",
    "RTP": "rtp",
    "SRTP": "rtp",  # SRTP keeps the RTP header in clear (RFC 3711 §3.1)
    "RTCP": "rtcp",
    # directory, auth, databases
    "Kerberos": "kerberos",
    "LDAP": "ldap",
    "Radius": "radius",
    "MySQL": "mysql",
    "MsSQL-TDS": "mssql-tds",
    "PostgreSQL": "postgresql",
    "RESP": "redis",
    # other
    "DCERPC": "dcerpc",
    "BitTorrent": "bittorrent",
    "WireGuard": "wireguard",
    "OpenVPN": "openvpn",
    "IPSec": "ipsec",  # IKE (ISAKMP) negotiation; ESP itself is not TCP/UDP
    "NFS": "nfs",  # nDPI also calls portmapper (RPC program 100000) calls NFS; we: sunrpc
    "Nats": "nats",
    "AMQP": "amqp",
    "Zabbix": "zabbix",
    "WSD": "ws-discovery",
    "H323": "h323",
    "MongoDB": "mongodb",
    "RTPS": "rtps",  # DDS interoperability wire protocol (OMG DDSI-RTPS)
    # protocols medsentry knows only from the port table (data/ports.yaml)
    "BGP": "bgp",
    "Usenet": "nntp",
    "Oracle": "oracle-tns",
    "EthernetIP": "ethernet-ip",
    "iSCSI": "iscsi",
    "FTP_DATA": "ftp-data",
    "RSH": "rsh",
}
# nDPI apps that name a protocol carried under a transport-level master
APP_OVERRIDES = {"SMBv1", "SMBv23"}
# medsentry refinements nDPI cannot see, folded into what nDPI labels
FOLD = {"fhir": "http", "dicom-tls": "tls"}

FlowKey = tuple[str, str, frozenset[tuple[str, int]]]


def _address(text: str) -> str:
    """Canonical text of an address (nDPI prints a few fuzzed IPv6 addresses oddly: kept)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _endpoint(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return _address(host.strip("[]")), int(port)


def ndpi_truth(label: str) -> str | None:
    """medsentry's name for an nDPI label; "other", "unknown", or None for a tunneled flow."""
    ids, _, names = label.partition("/")
    if not names or ":" in ids:
        return None  # encapsulated ("CAPWAP:18/DHCP") or malformed
    parts = names.split(".")
    name = parts[1] if len(parts) > 1 and parts[1] in APP_OVERRIDES else parts[0]
    if name == "Unknown":
        return "unknown"
    return NDPI_TO_MEDSENTRY.get(name, "other")


@dataclass
class Truth:
    flows: dict[FlowKey, list[tuple[str, str]]] = field(default_factory=dict)  # (ours, label)
    tunneled: int = 0
    not_tcp_udp: int = 0


def load_truth(path: Path, only: set[str] | None) -> Truth:
    truth = Truth()
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if only is not None and row["pcap"] not in only:
                continue
            if row["l4"] not in ("TCP", "UDP"):
                truth.not_tcp_udp += 1
                continue
            ours = ndpi_truth(row["ndpi_proto"])
            if ours is None:
                truth.tunneled += 1
                continue
            key = (
                row["pcap"],
                row["l4"].lower(),
                frozenset((_endpoint(row["endpoint_a"]), _endpoint(row["endpoint_b"]))),
            )
            truth.flows.setdefault(key, []).append((ours, row["ndpi_proto"]))
    return truth


@dataclass
class Seen:
    flows: dict[FlowKey, list[tuple[str | None, str | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    packets: int = 0
    seconds: float = 0.0
    identify_calls: int = 0
    identify_seconds: float = 0.0
    unreadable: list[str] = field(default_factory=list)


def _timed_identify(seen: Seen) -> None:
    """Count and time the pipeline's calls to `identify` (installed before the Pipeline is
    made: the pipeline looks the function up when it starts)."""
    import medsentry.protocols.identify as ident

    real = ident.identify

    def timed(*args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return real(*args)
        finally:
            seen.identify_seconds += time.perf_counter() - t0
            seen.identify_calls += 1

    ident.identify = timed  # type: ignore[assignment]


def scan(pcaps: list[Path]) -> Seen:
    """medsentry's pipeline over each capture; flows keyed like the truth."""
    from medsentry.errors import MedsentryError
    from medsentry.events.flow import FlowRecord
    from medsentry.pipeline import Pipeline, ScanConfig

    seen = Seen()
    _timed_identify(seen)
    pipeline = Pipeline(ScanConfig(dissectors=False))
    for i, path in enumerate(pcaps, 1):
        records: list[FlowRecord] = []

        def sink(events: list, records: list[FlowRecord] = records) -> None:
            records.extend(e for e in events if isinstance(e, FlowRecord))

        t0 = time.perf_counter()
        try:
            stats = pipeline.scan_files([path], sink)
        except MedsentryError as exc:
            seen.unreadable.append(f"{path.name}: {exc}")
            continue
        seen.seconds += time.perf_counter() - t0
        seen.packets += stats.packets
        for rec in sorted(records, key=lambda r: r.ts_ns):
            if rec.transport not in ("tcp", "udp"):
                continue
            key = (
                path.name,
                rec.transport,
                frozenset(
                    (
                        (_address(rec.client), rec.client_port),
                        (_address(rec.server), rec.server_port),
                    )
                ),
            )
            seen.flows[key].append((rec.app_protocol, rec.app_method))
        if i % 50 == 0:
            print(f"  {i}/{len(pcaps)} captures", file=sys.stderr)
    return seen


def evaluate(truth: Truth, seen: Seen, claimed: set[str]) -> dict:
    support: Counter[str] = Counter()
    tp: Counter[str] = Counter()
    tp_port: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    on_unknown: Counter[str] = Counter()
    unidentified: Counter[str] = Counter()
    missed_as: dict[str, Counter[str]] = defaultdict(Counter)
    wrong_on: dict[str, Counter[str]] = defaultdict(Counter)
    matched = unmatched = split = 0
    for key, labels in truth.flows.items():
        ours_list = seen.flows.get(key, [])
        if len(ours_list) > len(labels):
            split += 1  # the pipeline made more flow records of this 5-tuple than nDPI flows
        for i, (want, label) in enumerate(labels):
            if i >= len(ours_list):
                unmatched += 1
                continue
            matched += 1
            got, method = ours_list[i]
            got = FOLD.get(got, got) if got else None
            support[want] += 1
            if got is not None:
                predicted[got] += 1
                if want == "unknown":
                    on_unknown[got] += 1
            if got == want:
                tp[want] += 1
                if method == "port":
                    tp_port[want] += 1
                continue
            if want not in ("unknown", "other"):
                missed_as[want][got or "(unidentified)"] += 1
                if got is None:
                    unidentified[want] += 1
            if got is not None:
                wrong_on[got][label.partition("/")[2] or label] += 1

    rows = []
    names = sorted(
        {p for p in set(support) | set(predicted) if p not in ("unknown", "other")},
        key=lambda p: (-support[p], p),
    )
    for p in names:
        prec = tp[p] / predicted[p] if predicted[p] else None
        known_pred = predicted[p] - on_unknown[p]
        prec_known = tp[p] / known_pred if known_pred else None
        rec = tp[p] / support[p] if support[p] else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None else None)
        rows.append(
            {
                "protocol": p,
                "signature": p in claimed,
                "support": support[p],
                "predicted": predicted[p],
                "true_positives": tp[p],
                "tp_by_port": tp_port[p],
                "precision": prec,
                "precision_excl_ndpi_unknown": prec_known,
                "recall": rec,
                "f1": f1,
                "unidentified": unidentified[p],
                "labelled_on_ndpi_unknown": on_unknown[p],
                "missed_as": dict(missed_as[p].most_common(4)),
                "false_positives_on": dict(wrong_on[p].most_common(4)),
            }
        )
    scored = [r for r in rows if r["support"]]
    total_support = sum(r["support"] for r in scored)
    total_tp = sum(r["true_positives"] for r in scored)
    sig_rows = [r for r in scored if r["signature"]]
    macro = [r["f1"] for r in sig_rows if r["f1"] is not None]
    return {
        "flows_in_truth": sum(len(v) for v in truth.flows.values()),
        "flows_matched": matched,
        "flows_not_produced_by_pipeline": unmatched,
        "flows_split_by_pipeline": split,
        "flows_tunneled_excluded": truth.tunneled,
        "flows_not_tcp_udp_excluded": truth.not_tcp_udp,
        "ndpi_unknown_flows": support["unknown"],
        "ndpi_other_flows": support["other"],
        "ndpi_unknown_labelled_by_medsentry": sum(on_unknown.values()),
        "accuracy_on_mapped_flows": total_tp / total_support if total_support else None,
        "mapped_flows": total_support,
        "macro_f1_signature_protocols": sum(macro) / len(macro) if macro else None,
        "protocols": rows,
    }


NOTES = """\
Where medsentry and nDPI disagree, and why (read from the flows' bytes, not tuned to labels):

- dns "false positives" on DNScrypt / AVASTSecureDNS: those flows' first datagrams are plain
  DNS queries (DNSCrypt certificate TXT lookups); nDPI names the service, medsentry the format.
- dtls/rtp "missed as stun": WebRTC/VoIP flows start with STUN binding requests (ICE) and
  carry DTLS/SRTP afterwards; medsentry names the first datagram, nDPI the later payload.
- tls "missed as smtp/ftp/imap/pop3": STARTTLS sessions begin in clear text; nDPI reports the
  TLS that follows.
- netbios "missed as dns": fuzzed NBNS packets (fuzz-2006-*.pcap) whose encoded names have
  characters outside A-P; medsentry's NetBIOS check is strict, the DNS header still holds.
- nfs "missed as sunrpc": portmapper (RPC program 100000) calls, which nDPI files under NFS.
- unidentified flows on well-known ports with no payload (synscan.pcap) are labelled by nDPI
  from the port; medsentry's port table follows IANA, which lacks some of them (5800, 5901).
- http/tls "false positives" on AVAST, Ookla, Telegram, WhatsApp, ...: nDPI gives only an
  application name (no master protocol) to some HTTP/TLS flows; the bytes are HTTP/TLS.
- rtp is a heuristic (one RTP header checked against RFC 3551 codec framing, confidence 0.5);
  its remaining "false positives" are RTP in a fuzzed capture that nDPI leaves Unknown.
"""


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def markdown(result: dict, meta: dict) -> str:
    lines = [
        "# Protocol identification vs nDPI",
        "",
        "Generated by `python benchmarks/bench_identification_ndpi.py` "
        f"({meta['captures']} captures, {meta['packets']:,} packets, "
        f"pipeline time {meta['seconds']:.1f} s). Reference: nDPI's own expected labels for "
        "its test corpus (`ndpi_flow_ground_truth.tsv`, nDPI @ 3b1286ab). medsentry sees the "
        "first 4096 bytes of each TCP direction and the first datagram(s) of each UDP "
        "direction; nDPI looks at more packets and also uses hostnames and IP lists.",
        "",
        f"- `identify()` calls made by the pipeline: {meta['identify_calls']:,}, "
        f"{meta['identify_seconds']:.2f} s in all, "
        f"{(meta['identify_us_per_call'] or 0):.1f} µs per call (one core, shared machine)",
        f"- flows in nDPI's list (TCP/UDP, not tunneled): {result['flows_in_truth']:,}; "
        f"matched to a medsentry flow: {result['flows_matched']:,}; "
        f"not produced by the pipeline: {result['flows_not_produced_by_pipeline']:,}; "
        f"5-tuples the pipeline split into more flow records than nDPI has flows: "
        f"{result['flows_split_by_pipeline']:,} (paired in time order)",
        f"- left out: {result['flows_tunneled_excluded']} tunneled, "
        f"{result['flows_not_tcp_udp_excluded']} not TCP/UDP",
        f"- flows whose nDPI protocol maps to a medsentry protocol: {result['mapped_flows']:,}; "
        f"identified the same: {_fmt(result['accuracy_on_mapped_flows'])}",
        f"- macro-F1 over the signature protocols with support: "
        f"{_fmt(result['macro_f1_signature_protocols'])}",
        f"- nDPI 'Unknown' flows: {result['ndpi_unknown_flows']:,} (medsentry labelled "
        f"{result['ndpi_unknown_labelled_by_medsentry']:,} of them); nDPI protocols medsentry "
        f"has no name for: {result['ndpi_other_flows']:,} flows",
        "",
        "Columns: support = flows nDPI labels P; predicted = flows medsentry labels P; "
        "P(excl.) = precision not counting flows nDPI left Unknown; by port = true positives "
        "found only through the port table; unid. = P flows medsentry left unidentified.",
        "",
        "| protocol | sig | support | predicted | TP | by port | precision | P(excl.) | recall "
        "| F1 | unid. | missed as | false positives on |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in result["protocols"]:
        missed = ", ".join(f"{k} {v}" for k, v in r["missed_as"].items())
        wrong = ", ".join(f"{k} {v}" for k, v in r["false_positives_on"].items())
        lines.append(
            f"| {r['protocol']} | {'yes' if r['signature'] else 'port'} | {r['support']} "
            f"| {r['predicted']} | {r['true_positives']} | {r['tp_by_port']} "
            f"| {_fmt(r['precision'])} | {_fmt(r['precision_excl_ndpi_unknown'])} "
            f"| {_fmt(r['recall'])} | {_fmt(r['f1'])} | {r['unidentified']} | {missed} | {wrong} |"
        )
    lines.append("")
    lines.append(NOTES)
    if meta["unreadable"]:
        lines.append("Captures the pipeline refused (one-line errors):")
        lines.extend(f"- {u}" for u in meta["unreadable"])
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcaps", type=Path, default=PCAPS)
    ap.add_argument("--truth", type=Path, default=TRUTH)
    ap.add_argument("--limit", type=int, default=0, help="only the first N captures (dev)")
    ap.add_argument("--out-md", type=Path, default=OUT_MD)
    ap.add_argument("--out-json", type=Path, default=OUT_JSON)
    args = ap.parse_args(argv)
    if not args.truth.is_file() or not args.pcaps.is_dir():
        print(f"nDPI corpus not found at {args.pcaps} / {args.truth}", file=sys.stderr)
        return 2
    try:
        from medsentry.protocols.identify import SIGNATURE_PROTOCOLS
    except ImportError as exc:  # pragma: no cover - before the pipeline lands
        print(f"medsentry pipeline/identification not importable: {exc}", file=sys.stderr)
        return 2

    with open(args.truth, newline="", encoding="utf-8") as fh:
        names = sorted({row["pcap"] for row in csv.DictReader(fh, delimiter="\t")})
    names = [n for n in names if (args.pcaps / n).is_file()]
    if args.limit:
        names = names[: args.limit]
    truth = load_truth(args.truth, set(names))
    seen = scan([args.pcaps / n for n in names])
    result = evaluate(truth, seen, set(SIGNATURE_PROTOCOLS))
    meta = {
        "captures": len(names),
        "packets": seen.packets,
        "seconds": seen.seconds,
        "identify_calls": seen.identify_calls,
        "identify_seconds": seen.identify_seconds,
        "identify_us_per_call": (
            1e6 * seen.identify_seconds / seen.identify_calls if seen.identify_calls else None
        ),
        "unreadable": seen.unreadable,
    }
    text = markdown(result, meta)
    if not args.limit:  # a partial run prints only; the files hold whole-corpus numbers
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"meta": meta, **result}, indent=2), encoding="utf-8")
        args.out_md.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
