"""Zone segmentation: a zone policy file checked against observed flows, and a recommended
least-privilege policy derived from what each device category was seen to do.

The policy file (YAML), after IEC 62443-3-2 §4.4 zones and conduits:

    zones:
      - {name: imaging, subnets: [10.10.0.0/24], vlans: [20], categories: ["imaging.*"]}
      - {name: pacs, subnets: [10.20.0.5/32]}
    default_zone: unassigned     # addresses in no zone (public addresses: zone "external")
    intra_zone: allow            # flows inside one zone: allow (or "check")
    allow:                       # the conduits: flows allowed between zones
      - {from: imaging, to: pacs, transport: tcp, port: 104, protocol: dicom}
      - {from: any, to: infra, transport: udp, port: 53}

A device is placed by its category first (the inventory's), then its VLAN, then the longest
matching subnet. A flow is allowed when a rule matches its zones, transport, server port (a
number, a list, or "lo-hi") and application protocol (when the rule names one).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.controls.rules import FlowSummary, is_public
from medsentry.errors import InputError
from medsentry.inventory.model import Device

EXTERNAL = "external"
ANY = "any"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Zone:
    name: str
    subnets: list[Network] = field(default_factory=list)
    vlans: list[int] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    description: str = ""


@dataclass
class Rule:
    src: str
    dst: str
    transport: str = ANY
    ports: list[tuple[int, int]] = field(default_factory=list)  # empty: any port
    protocol: str = ANY
    comment: str = ""

    def allows(self, zc: str, zs: str, transport: str, port: int, protocol: str | None) -> bool:
        if self.src not in (ANY, zc) or self.dst not in (ANY, zs):
            return False
        if self.transport not in (ANY, transport):
            return False
        if self.ports and not any(lo <= port <= hi for lo, hi in self.ports):
            return False
        return self.protocol in (ANY, protocol)


@dataclass
class ZonePolicy:
    zones: list[Zone]
    rules: list[Rule]
    default_zone: str = "unassigned"
    intra_zone: str = "allow"
    source: str = ""

    def __post_init__(self) -> None:
        nets = [(n, z.name) for z in self.zones for n in z.subnets]
        self._nets = sorted(nets, key=lambda t: -t[0].prefixlen)  # longest prefix first
        self._vlans = {v: z.name for z in self.zones for v in z.vlans}
        self._cats = [(c, z.name) for z in self.zones for c in z.categories]

    def zone_of(self, ip: str, vlan: int | None = None, device: Device | None = None) -> str:
        if device is not None and device.category is not None and self._cats:
            for pattern, name in self._cats:
                if fnmatch.fnmatchcase(device.category.value, pattern):
                    return name
        if vlan is not None and vlan in self._vlans:
            return self._vlans[vlan]
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return self.default_zone
        for net, name in self._nets:
            if addr.version == net.version and addr in net:
                return name
        return EXTERNAL if is_public(ip) else self.default_zone

    def allowed(self, zc: str, zs: str, transport: str, port: int, protocol: str | None) -> bool:
        if zc == zs and self.intra_zone == "allow":
            return True
        return any(r.allows(zc, zs, transport, port, protocol) for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        zones = []
        for z in self.zones:
            d: dict[str, Any] = {"name": z.name}
            if z.description:
                d["description"] = z.description
            if z.subnets:
                d["subnets"] = [str(n) for n in z.subnets]
            if z.vlans:
                d["vlans"] = list(z.vlans)
            if z.categories:
                d["categories"] = list(z.categories)
            zones.append(d)
        allow = []
        for r in self.rules:
            d = {"from": r.src, "to": r.dst}
            if r.transport != ANY:
                d["transport"] = r.transport
            if r.ports:
                d["port"] = [p[0] if p[0] == p[1] else f"{p[0]}-{p[1]}" for p in r.ports]
                if len(d["port"]) == 1:
                    d["port"] = d["port"][0]
            if r.protocol != ANY:
                d["protocol"] = r.protocol
            if r.comment:
                d["comment"] = r.comment
            allow.append(d)
        return {
            "zones": zones,
            "default_zone": self.default_zone,
            "intra_zone": self.intra_zone,
            "allow": allow,
        }


# -- loading -------------------------------------------------------------------------------------


def _ports(value: Any, where: str, src: str) -> list[tuple[int, int]]:
    if value is None or value == ANY:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool):
            lo = hi = v
        elif isinstance(v, str) and "-" in v:
            a, _, b = v.partition("-")
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise InputError(f"{where}.port: {v!r} is not a port or lo-hi range", src) from None
        else:
            try:
                lo = hi = int(v)
            except (TypeError, ValueError):
                raise InputError(f"{where}.port: {v!r} is not a port or lo-hi range", src) from None
        if not (0 <= lo <= hi <= 65535):
            raise InputError(f"{where}.port: {v!r} out of range 0-65535", src)
        out.append((lo, hi))
    return out


def parse_policy(doc: Any, source: str) -> ZonePolicy:
    if not isinstance(doc, dict):
        raise InputError("zone policy: the top level must be a mapping", source)
    zones_raw = doc.get("zones")
    if not isinstance(zones_raw, list) or not zones_raw:
        raise InputError("zones: missing or empty list", source)
    zones: list[Zone] = []
    names: set[str] = set()
    for i, z in enumerate(zones_raw):
        where = f"zones[{i}]"
        if not isinstance(z, dict) or not isinstance(z.get("name"), str) or not z["name"]:
            raise InputError(f"{where}.name: missing", source)
        if z["name"] in names or z["name"] in (ANY, EXTERNAL):
            raise InputError(f"{where}.name: {z['name']!r} duplicated or reserved", source)
        names.add(z["name"])
        for key in ("subnets", "vlans", "categories"):
            if not isinstance(z.get(key) or [], list):
                raise InputError(f"{where}.{key}: must be a list", source)
        try:
            subnets = [ipaddress.ip_network(str(s), strict=False) for s in z.get("subnets") or []]
        except ValueError as exc:
            raise InputError(f"{where}.subnets: {exc}", source) from None
        vlans = z.get("vlans") or []
        if not all(type(v) is int and 0 <= v <= 4095 for v in vlans):  # a bool is no VLAN id
            raise InputError(f"{where}.vlans: VLAN ids are integers 0-4095", source)
        cats = z.get("categories") or []
        if not all(isinstance(c, str) for c in cats):
            raise InputError(f"{where}.categories: a list of category names/patterns", source)
        if not (subnets or vlans or cats):
            raise InputError(f"{where}: a zone needs subnets, vlans or categories", source)
        zones.append(
            Zone(z["name"], subnets, list(vlans), list(cats), str(z.get("description") or ""))
        )
    known = names | {ANY, EXTERNAL, str(doc.get("default_zone", "unassigned"))}
    rules: list[Rule] = []
    if not isinstance(doc.get("allow") or [], list):
        raise InputError("allow: must be a list of rules", source)
    for i, r in enumerate(doc.get("allow") or []):
        where = f"allow[{i}]"
        if not isinstance(r, dict):
            raise InputError(f"{where}: must be a mapping", source)
        for key in ("from", "to"):
            if not isinstance(r.get(key), str) or r.get(key) not in known:
                raise InputError(f"{where}.{key}: unknown zone {r.get(key)!r}", source)
        transport = str(r.get("transport", ANY)).lower()
        if transport not in (ANY, "tcp", "udp", "icmp", "icmp6", "sctp"):
            raise InputError(f"{where}.transport: {transport!r} unknown", source)
        rules.append(
            Rule(
                r["from"],
                r["to"],
                transport,
                _ports(r.get("port"), where, source),
                str(r.get("protocol", ANY)),
                str(r.get("comment", "")),
            )
        )
    intra = doc.get("intra_zone", "allow")
    if intra not in ("allow", "check"):
        raise InputError("intra_zone: must be 'allow' or 'check'", source)
    return ZonePolicy(
        zones, rules, str(doc.get("default_zone", "unassigned")), intra, source=source
    )


def load_policy(path: Path) -> ZonePolicy:
    try:
        text = Path(path).read_bytes()  # bad UTF-8: a YAMLError below
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        doc = yamlfile.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}", str(path)) from None
    return parse_policy(doc, str(path))


# -- checking ------------------------------------------------------------------------------------


@dataclass
class Violation:
    client: str
    server: str
    client_zone: str
    server_zone: str
    transport: str
    port: int
    protocol: str | None
    first_ns: int
    last_ns: int
    flows: int
    flow_id: str


def check(
    policy: ZonePolicy,
    conversations: Iterable[FlowSummary],
    devices_by_ip: dict[str, Device] | None = None,
) -> list[Violation]:
    """Observed conversations the policy does not allow (the initiator is the client)."""
    devices_by_ip = devices_by_ip or {}
    out = []
    for c in conversations:
        if c.transport not in ("tcp", "udp", "icmp", "icmp6", "sctp"):
            continue  # ARP and non-IP frames do not cross zone boundaries
        zc = policy.zone_of(c.client, c.vlan, devices_by_ip.get(c.client))
        zs = policy.zone_of(c.server, c.vlan, devices_by_ip.get(c.server))
        if policy.allowed(zc, zs, c.transport, c.server_port, c.protocol):
            continue
        out.append(
            Violation(
                c.client,
                c.server,
                zc,
                zs,
                c.transport,
                c.server_port,
                c.protocol,
                c.first_ns,
                c.last_ns,
                c.flows,
                c.flow_id,
            )
        )
    return out


# -- recommending --------------------------------------------------------------------------------


def _zone_name(category: str | None) -> str:
    return (category or "unclassified").replace(".", "-").replace(" ", "-").lower()


def recommend(conversations: Iterable[FlowSummary], devices: Iterable[Device] = ()) -> ZonePolicy:
    """A least-privilege policy: one zone per device category (members by address), and an
    allow rule for each (category -> category, transport, port, protocol) that was observed and
    answered. Everything else is denied by default."""
    by_ip: dict[str, Device] = {}
    for d in devices:
        for ip in d.ips:
            by_ip.setdefault(ip, d)
    members: dict[str, set[str]] = {}
    cats: dict[str, str] = {}
    rules: dict[tuple[str, str, str, int, str], int] = {}

    def zone_for(ip: str) -> str:
        if is_public(ip):
            return EXTERNAL
        d = by_ip.get(ip)
        cat = d.category.value if d is not None and d.category is not None else None
        name = _zone_name(cat)
        if cat:
            cats[name] = cat
        members.setdefault(name, set()).add(ip)
        return name

    for c in conversations:
        if c.transport not in ("tcp", "udp") or not c.answered:
            continue
        zc, zs = zone_for(c.client), zone_for(c.server)
        key = (zc, zs, c.transport, c.server_port, c.protocol or ANY)
        rules[key] = rules.get(key, 0) + c.flows
    zones = []
    for name in sorted(members):
        nets = list(
            ipaddress.collapse_addresses(
                ipaddress.ip_network(ip) for ip in members[name] if ip.count(":") == 0
            )
        ) + list(
            ipaddress.collapse_addresses(
                ipaddress.ip_network(ip) for ip in members[name] if ":" in ip
            )
        )
        zones.append(
            Zone(
                name,
                nets,
                categories=[cats[name]] if name in cats else [],
                description=f"{len(members[name])} device(s) observed",
            )
        )
    allow = [
        Rule(zc, zs, t, [(p, p)], proto, comment=f"observed: {n} flow(s)")
        for (zc, zs, t, p, proto), n in sorted(rules.items())
    ]
    return ZonePolicy(zones, allow, "unassigned", "check", source="recommended")


def stored_conversations(store: Any) -> list[FlowSummary]:
    """The store's flows, aggregated into conversations (client, server, transport, port)."""
    from medsentry.controls.rules import Collector
    from medsentry.store import FlowFilter, iter_flow_records

    col = Collector(None)
    batch: list = []
    for rec in iter_flow_records(store, FlowFilter()):
        batch.append(rec)
        if len(batch) >= 5000:
            col.feed(batch)
            batch.clear()
    col.feed(batch)
    return list(col.conversations.values())
