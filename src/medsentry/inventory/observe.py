"""Events -> observations per endpoint, then endpoints -> devices.

Folding happens in two steps, because who a packet belongs to is only known at the end:

1. `Observer.feed` files every observation under the endpoint that made it: the (MAC, IP) pair
   as the frame showed it. A frame routed in from another subnet carries the router's MAC.
2. `Observer.resolve` decides which endpoints are one device:
   - a MAC's own addresses are those it claimed (ARP, DHCP, LLDP/CDP, IPv6 Neighbor
     Discovery), its link-local addresses (never routed), its IPv6 addresses whose interface
     identifier is its MAC's EUI-64 and the others in the same on-link /64s (temporary
     addresses, RFC 8981);
   - a MAC seen with many addresses not its own, in one address family, or with addresses
     other stations claimed, or sending Router Advertisements, is a router's: its frames speak
     for hosts behind it. Its own addresses stay with it;
   - an address behind a router belongs to the station that shows it with its own MAC
     (several MACs over time: the one whose time span is nearest), else it is a device of
     its own keyed by IP when local, or an external (internet) peer when not;
   - every other endpoint is the device of its MAC: a device that changes address stays one
     device, and one address held by several MACs over time stays several devices.

Device ids: "mac:<mac>", "ip:<addr>", and "ble:<address>" for BLE advertisers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from medsentry.events.base import Endpoints, Event
from medsentry.events.hl7 import NON_STANDARD
from medsentry.inventory.addresses import (
    classify,
    eui64_interface_id,
    ipv6_halves,
    is_link_local,
    is_unicast_mac,
)
from medsentry.inventory.state import DeviceState

# A MAC carrying at least this many IPv4 addresses not its own is a router (or a NAT/firewall)
GATEWAY_MIN_FOREIGN_IPS = 4
# ... or IPv6 addresses not its own in this many /64 prefixes: a dual-stack host carries a few
# (stable and temporary, RFC 8981) in one or two /64s (a global prefix, maybe a ULA one)
GATEWAY_MIN_FOREIGN_V6_PREFIXES = 3
# ... or at least this many addresses that other stations claimed (ARP, DHCP lease, ND): it
# forwards their traffic
GATEWAY_MIN_CLAIMED_ELSEWHERE = 2

# RFC 8415 §7.3: the messages a client sends, and those only a server sends to a client
DHCPV6_CLIENT_MESSAGES = frozenset(
    {"SOLICIT", "REQUEST", "CONFIRM", "RENEW", "REBIND", "RELEASE", "DECLINE",
     "INFORMATION-REQUEST"}
)  # fmt: skip
DHCPV6_SERVER_MESSAGES = frozenset({"ADVERTISE", "REPLY", "RECONFIGURE"})

# Hostname sources, most trusted first (the rank prefixes the stored name). A name a host
# claims for itself over LLMNR or NetBIOS (RFC 4795, RFC 1002) comes last: any station can
# answer for any name (name-service poisoning), NetBIOS names are cut to 15 characters.
HOSTNAME_RANK = {
    "dhcp": 0, "mdns": 1, "lldp": 2, "cdp": 2, "snmp": 2, "dns-ptr": 3, "dns-a": 4,
    "llmnr": 5, "netbios": 6,
}  # fmt: skip
_DNS_A_RANK = HOSTNAME_RANK["dns-a"]
# A station answering LLMNR or NetBIOS queries for more of its "own" names than this is
# answering for others' (a poisoner such as Responder answers every query): no more are taken
MAX_ANSWERED_NAMES = 4
# RFC 2578 §7.1.3 / IANA Private Enterprise Numbers: enterprises, 1.3.6.1.4.1.<PEN>
_ENTERPRISES = "1.3.6.1.4.1."

# DICOM DNS-SD service names (PS3.15 H.2.3): an instance "<name>._<service>._tcp.<domain>"
_DICOM_SRV = re.compile(
    r"^(?P<instance>(?:[^.\\]|\\.)+)\._(?P<service>dicom(?:-tls|-iscl|web|web-tls)?)\._tcp\.",
    re.IGNORECASE,
)
# ... and the roles its Association Acceptor plays (the secure ones as DicomOverTls has them)
_DICOM_SRV_ROLE = {"dicom": "dicom-scp", "dicom-tls": "dicom-tls-scp"}
MAX_DICOM_INSTANCES = 4096
# an AE title (PS3.5 §6.2, VR AE): 1-16 characters of the default repertoire, no backslash;
# a Primary Device Type is a code value (PS3.15 Table H.1-2, VR SH: at most 16 characters)
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_CODE_VALUE = re.compile(r"^[\x20-\x7e]{1,16}$")
# NetBIOS suffixes (16th byte) naming a host's own computer name: workstation, file server
_NETBIOS_HOST_SUFFIXES = (0x00, 0x20)

# An Android application id: dot-separated Java-style segments (developer.android.com,
# "Configure the app module": applicationId), e.g. com.example.app
_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")

# GATT identity characteristics (protocols/ble_gatt.py) -> observation keys; the GAP Device
# Name is the name the local name advertises (CSS Part A §1.2), so it shares its key and rules
_GATT_KEYS = {
    "0x2A00": "ble.local_name",
    "0x2A01": "ble.appearance",
    "0x2A23": "ble.gatt.system_id",
    "0x2A24": "ble.gatt.model",
    "0x2A25": "ble.gatt.serial",
    "0x2A26": "ble.gatt.firmware",
    "0x2A27": "ble.gatt.hardware",
    "0x2A28": "ble.gatt.software",
    "0x2A29": "ble.gatt.manufacturer",
    "0x2A2A": "ble.gatt.ieee11073",
    "0x2A50": "ble.gatt.pnp_id",
}

_EMPTY: dict[str, int] = {}
_NONE: frozenset[str] = frozenset()
_MISSING = object()
# event class -> handler (or None), filled as classes appear (`Observer._first_of_class`)
_BY_TYPE: dict[type, Callable[[Observer, Event], None] | None] = {}
# queried name as the DNS message wrote it -> the domain observed ("" for none): names repeat
_DOMAINS: dict[str, str] = {}


def _domain(name: str) -> str:
    """A queried name as a `domain` observation: lowercase, no root dot; reverse-lookup and
    link-local (mDNS) names name no cloud (""). Cached, bounded."""
    dom = name.rstrip(".").lower()
    if dom.endswith((".arpa", ".local")):
        dom = ""
    if len(_DOMAINS) >= 65536:
        _DOMAINS.clear()
    _DOMAINS[name] = dom
    return dom


def _dicom_txt(strings: Sequence[str], instance: str) -> tuple[str | None, str | None]:
    """A DICOM instance's TXT keys (RFC 6763 §6.4: "key=value", keys in any case): the AE
    title, else (no `AET` key) the instance name (PS3.15 H.2.3), and the primary device type."""
    keys: dict[str, str] = {}
    for kv in strings:
        k, eq, v = kv.partition("=")
        if eq and k.lower() not in keys:
            keys[k.lower()] = v.strip()
    aet = keys.get("aet") or instance.replace("\\.", ".")
    device_type = keys.get("primarydevicetype")
    return (
        aet if _AE_TITLE.match(aet) else None,
        device_type if device_type and _CODE_VALUE.match(device_type) else None,
    )


def _mac(mac: str | None) -> str | None:
    if mac is None:
        return None
    mac = mac.lower()
    return mac if is_unicast_mac(mac) else None


def _group_mac(mac: str) -> bool:
    """The I/G bit: a group (multicast or broadcast) address, never a frame's source."""
    try:
        return bool(int(mac[:2], 16) & 0x01)
    except ValueError:
        return False


class _Endpoint(DeviceState):
    """The observations of one (MAC, IP) pair as seen on the wire (peers are pair keys)."""


class _RawPairs(dict[tuple[str | None, str | None], _Endpoint | None]):
    """(MAC, IP) as an event wrote them -> their endpoint in `pairs` (None: no station's),
    normalized on first sight: `raw[mac, ip]` is one dictionary lookup for a pair seen before."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: dict[tuple[str | None, str | None], _Endpoint]) -> None:
        super().__init__()
        self.pairs = pairs

    def __missing__(self, raw: tuple[str | None, str | None]) -> _Endpoint | None:
        ep = self[raw] = _new_endpoint(self.pairs, *raw)
        return ep


def _new_endpoint(
    pairs: dict[tuple[str | None, str | None], _Endpoint], mac: str | None, ip: str | None
) -> _Endpoint | None:
    """The endpoint of a (MAC, IP) pair as a frame wrote it, made if new; None for a pair no
    station sends from."""
    if mac is not None and _group_mac(mac):
        return None  # no station sends from a group address (IEEE 802 §8.2): a forged frame
    mac = _mac(mac)
    if ip is not None:
        cls = classify(ip)
        if cls in ("multicast", "invalid"):
            return None
        if cls == "unspecified":
            ip = None
    if mac is None and ip is None:
        return None
    key = (mac, ip)
    ep = pairs.get(key)
    if ep is None:
        ep = pairs[key] = _Endpoint(device_id=f"{mac or ''}|{ip or ''}", mac=mac)
    return ep


class Observer:
    """Accumulates observations from events (`feed`) and folds them into devices (`resolve`)."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str | None, str | None], _Endpoint] = {}
        self.ble: dict[str, DeviceState] = {}
        # resolvable private address -> (identity address, random, first ts, how resolved)
        self.ble_identity: dict[str, tuple[str, bool, int, str]] = {}
        # MAC -> address -> (first, last, source) for addresses the station itself claimed
        self.claimed: dict[str, dict[str, list]] = defaultdict(dict)
        self.dns_names: dict[str, tuple[int, str, int]] = {}  # ip -> (rank, name, ts)
        # DICOM DNS-SD instance name -> [AE title, primary device type, providers]
        self.dicom_instances: dict[str, list] = {}
        # MACs that sent Router Advertisements (only routers do, RFC 4861 §6.2.3) -> first ts
        self.advertising_routers: dict[str, int] = {}
        self.on_link_prefixes: set[str] = set()  # RA Prefix Information, L flag (§4.6.2)
        self.events = 0
        # Messages that repeat what an earlier one said (same endpoints, same identity fields)
        # add nothing: their times are in the flow records. Bounded: cleared when large.
        # Kept as the signatures' hashes, not the tuples: ints are not tracked by the cyclic
        # GC, which otherwise traversed each new tuple (8% of the feed at 10,000 hosts). Two
        # distinct signatures sharing a 64-bit (per-process salted) hash among at most 10^6 is
        # a chance of about 10^-7 per capture, and costs one message's observations.
        self._said: set[int] = set()
        self._raw = _RawPairs(self.pairs)
        self._resolved = False

    def _repeat(self, sig: tuple) -> bool:
        said = self._said
        h = hash(sig)
        if h in said:
            return True
        if len(said) > 1_000_000:
            said.clear()
        said.add(h)
        return False

    # -- endpoint bookkeeping --

    def _pair(self, mac: str | None, ip: str | None, ts: int) -> _Endpoint | None:
        ep = self._raw[mac, ip]
        if ep is not None:
            if ts < ep.first_ns or not ep.first_ns:
                ep.first_ns = ts
            if ts > ep.last_ns:
                ep.last_ns = ts
        return ep

    def _ends(self, e: Endpoints, ts: int) -> tuple[_Endpoint | None, _Endpoint | None]:
        # `_pair` for both ends, inlined: every protocol event comes through here
        raw = self._raw
        c = raw[e.client_mac, e.client]
        s = raw[e.server_mac, e.server]
        if c is not None:
            if ts < c.first_ns or not c.first_ns:
                c.first_ns = ts
            if ts > c.last_ns:
                c.last_ns = ts
        if s is not None:
            if ts < s.first_ns or not s.first_ns:
                s.first_ns = ts
            if ts > s.last_ns:
                s.last_ns = ts
        return c, s

    def _claim(self, mac: str | None, ip: str | None, ts: int, source: str) -> None:
        mac = _mac(mac)
        if mac is None or ip is None or classify(ip) not in ("local", "external"):
            return
        span = self.claimed[mac].get(ip)
        if span is None:
            self.claimed[mac][ip] = [ts, ts, source]
        else:
            span[0], span[1] = min(span[0], ts), max(span[1], ts)

    @staticmethod
    def _role(ep: _Endpoint | None, role: str | None, ts: int) -> None:
        if ep is not None and role is not None and role not in ep.roles:
            ep.roles[role] = ts

    @staticmethod
    def _obs(ep: _Endpoint | DeviceState | None, key: str, value: str | None, ts: int) -> None:
        if ep is not None and value:
            ep.observe(key, value, ts)

    @staticmethod
    def _hostname(ep: _Endpoint | DeviceState | None, source: str, name: str | None, ts: int):
        if ep is None or not name:
            return
        name = name.strip().rstrip(".")
        if name.endswith(".local"):
            name = name[: -len(".local")]
        if not name or len(name) > 253:
            return
        rank = HOSTNAME_RANK[source]
        key = f"{rank}:{name}"
        if key not in ep.hostnames:
            if rank >= HOSTNAME_RANK["llmnr"]:  # names a station claims for itself
                prefix = f"{rank}:"
                if sum(1 for k in ep.hostnames if k.startswith(prefix)) >= MAX_ANSWERED_NAMES:
                    return
            ep.hostnames[key] = ts

    @staticmethod
    def _phi(a: _Endpoint | None, b: _Endpoint | None, ts: int) -> None:
        for ep in (a, b):
            if ep is not None and (ep.phi_ns is None or ts < ep.phi_ns):
                ep.phi_ns = ts

    # -- events --

    def feed(self, events: Sequence[Event]) -> None:
        handler = _BY_TYPE.get
        first = Observer._first_of_class
        ignored = 0
        for ev in events:
            h = handler(ev.__class__, first)
            if h is not None:
                h(self, ev)
            else:
                ignored += 1
        self.events += len(events) - ignored

    def _first_of_class(self, ev: Event) -> None:
        """The first event of its class: the class's handler remembered (None: the inventory
        ignores it), then run; `feed` counted the event as handled."""
        cls = ev.__class__
        h = _BY_TYPE[cls] = _HANDLERS.get(cls.__name__)
        if h is None:
            self.events -= 1
        else:
            h(self, ev)

    def _flow(self, f) -> None:
        ts, last = f.ts_ns, f.last_ns
        hi = last if last > ts else ts
        raw = self._raw  # a flow record names its ends as `Endpoints` does: `_ends` inlined
        c = raw[f.client_mac, f.client]
        s = raw[f.server_mac, f.server]
        proto = f.app_protocol
        if c is not None:
            if ts < c.first_ns or not c.first_ns:
                c.first_ns = ts
            if hi > c.last_ns:
                c.last_ns = hi
            if proto and proto not in c.protocols:
                c.protocols[proto] = ts
        if s is None:
            return
        if ts < s.first_ns or not s.first_ns:
            s.first_ns = ts
        if hi > s.last_ns:
            s.last_ns = hi
        if proto and proto not in s.protocols:
            s.protocols[proto] = ts
        if c is not None:  # each end is the other's peer (by endpoint key until resolve)
            if s.device_id not in c.peers:
                c.peers[s.device_id] = ts
            if c.device_id not in s.peers:
                s.peers[c.device_id] = ts
        if f.server_port and f.transport in ("tcp", "udp"):
            answered = (
                (f.tcp_flags_s2c & 0x12) == 0x12 if f.transport == "tcp" else f.packets_s2c > 0
            )
            if answered:
                svc = f"{f.transport}/{f.server_port}"
                if svc not in s.listening:
                    s.listening[svc] = ts

    def _arp(self, a) -> None:
        ep = self._pair(a.sender_mac, a.sender_ip, a.ts_ns)
        if ep is not None:
            self._claim(a.sender_mac, a.sender_ip, a.ts_ns, "arp")

    def _ndp(self, m) -> None:
        # IPv6 Neighbor Discovery binds addresses to link-layer addresses as ARP does: the
        # source of every ND message is an address of the sending interface (RFC 4861 §4.1-§4.4)
        # and Hop Limit 255 proves it was not routed (§7.1)
        ts, typ = m.ts_ns, m.icmp_type
        sender = m.source_mac if typ == 136 else (m.link_layer_address or m.source_mac)
        if m.source != "::":
            self._bind(sender, m.source, ts)
        if typ == 136:  # NA: the target is the sender's own unless it proxies (O clear, §7.2.8)
            if m.override and m.target:
                self._bind(m.link_layer_address or m.source_mac, m.target, ts)
        elif typ == 135:  # NS from :: is Duplicate Address Detection (RFC 4862 §5.4.2)
            if m.source == "::" and m.target:
                self._bind(m.source_mac, m.target, ts)
        elif typ == 134:  # RA: only routers send them (§6.2.3)
            mac = _mac(sender)
            if mac is not None and mac not in self.advertising_routers:
                self.advertising_routers[mac] = ts
            self.on_link_prefixes.update(m.on_link_prefixes)

    def _bind(self, mac: str | None, ip: str, ts: int) -> None:
        if self._pair(mac, ip, ts) is not None:
            self._claim(mac, ip, ts, "ndp")

    def _dhcp(self, d) -> None:
        e, ts = d.endpoints, d.ts_ns
        # the frame's sender: between a relay agent and a server both ports are 67 (RFC 1542
        # §4.1.1), so the direction tells who sent it, not the port
        if d.direction == 0:
            mac, ip, port = e.client_mac, e.client, e.client_port
        else:
            mac, ip, port = e.server_mac, e.server, e.server_port
        if d.op == 1:  # BOOTREQUEST
            if port == 67 and d.relay_address:  # forwarded by a relay agent (RFC 1542 §4.1.1)
                self._dhcp_relay(mac, ip, d.relay_address if d.hops <= 1 else None, ts)
                self._dhcp_client(d, d.client_mac, d.client_address, ts)  # chaddr, ciaddr
            else:  # from the client itself (RFC 2131 §4.4)
                self._dhcp_client(d, d.client_mac or mac, ip, ts)
            return
        # BOOTREPLY, from a server, or from a relay agent to its client (RFC 1542 §4.1.2)
        ep = self._pair(mac, ip, ts)
        self._claim(mac, ip, ts, "dhcp")
        if ep is not None:
            self._role(ep, "dhcp-server" if ip == d.server_id else "dhcp-relay", ts)
        if d.message_type == "ACK" and d.client_mac and d.your_address:
            self._claim(d.client_mac, d.your_address, ts, "dhcp")  # the lease (§3.1)
            self._pair(d.client_mac, d.your_address, ts)

    def _dhcp_relay(self, mac: str | None, ip: str, giaddr: str | None, ts: int) -> None:
        ep = self._pair(mac, ip, ts)
        if ep is None:
            return
        self._role(ep, "dhcp-relay", ts)
        self._claim(mac, ip, ts, "dhcp")
        if giaddr is not None:  # the first agent's address on its client's link (RFC 2131 §4.1)
            self._claim(mac, giaddr, ts, "dhcp")

    def _dhcp_client(self, d, mac: str | None, ip: str | None, ts: int) -> None:
        ep = self._pair(mac, ip, ts)
        if ep is None:
            return
        self._role(ep, "dhcp-client", ts)
        self._obs(ep, "dhcp.vendor_class", d.vendor_class, ts)
        self._obs(ep, "dhcp.prl", d.parameter_request_list, ts)
        self._obs(ep, "dhcp.options", ",".join(map(str, d.options)) if d.options else None, ts)
        self._obs(ep, "hostname", d.hostname, ts)
        self._hostname(ep, "dhcp", d.hostname, ts)
        self._hostname(ep, "dhcp", d.client_fqdn, ts)
        if d.requested_address and d.message_type == "REQUEST":
            self._claim(mac, d.requested_address, ts, "dhcp")

    def _dhcpv6(self, d) -> None:
        e, ts = d.endpoints, d.ts_ns
        if e.client_port == 547 and e.server_port == 547:
            # between relay agents and servers (RFC 8415 §19): the relayed client is known by
            # its DUID's link-layer address alone, never by the agent's frame
            ep = self._pair(d.duid_link_address, None, ts)
        else:  # clients listen on 546, servers and relay agents on 547 (§7.2)
            client = e.client_port == 546 or e.server_port == 547
            mac, ip = (e.client_mac, e.client) if client else (e.server_mac, e.server)
            ep = self._pair(mac or d.duid_link_address, ip, ts)
            if d.message_type in DHCPV6_SERVER_MESSAGES:
                smac, sip = (e.server_mac, e.server) if client else (e.client_mac, e.client)
                self._role(self._pair(smac, sip, ts), "dhcp-server", ts)
        if ep is None:
            return
        if d.message_type in DHCPV6_CLIENT_MESSAGES:
            self._role(ep, "dhcp-client", ts)
        for vc in d.vendor_class:
            self._obs(ep, "dhcp.vendor_class", vc, ts)
        if d.vendor_enterprise is not None:
            self._obs(ep, "dhcpv6.enterprise", str(d.vendor_enterprise), ts)
        self._hostname(ep, "dhcp", d.fqdn, ts)

    def _dns(self, m) -> None:
        protocol = m.protocol
        if protocol != "dns":
            if protocol == "mdns":
                self._mdns(m)
            elif protocol == "llmnr" and m.response:
                self._llmnr(m)
            return
        e, ts, response = m.endpoints, m.ts_ns, m.response
        qs = m.questions
        if len(qs) == 1:
            q = qs[0]
            names, qtypes = (q.name,), q.qtype
        else:
            names, qtypes = tuple(q.name for q in qs), tuple(q.qtype for q in qs)
        # the same client asked (or was answered) the same questions: `_repeat` inlined. The
        # question types too: the A and AAAA (or SRV and TXT) answers for one name differ
        said = self._said
        h = hash((response, e.client, e.client_mac, e.server if response else None, names, qtypes))
        if h in said:
            return
        if len(said) > 1_000_000:
            said.clear()
        said.add(h)
        c, s = self._ends(e, ts)
        if c is not None:  # the client asked: the cloud it talks to
            for name in names:
                dom = _DOMAINS.get(name)
                if dom is None:
                    dom = _domain(name)
                if dom:
                    c.observe("domain", dom, ts)
        if not response:
            return
        if s is not None and "dns-server" not in s.roles:
            s.roles["dns-server"] = ts
        if m.service_types and any(st[:6].lower() == "_dicom" for st in m.service_types):
            self._dicom_dnssd(m, None, None, ts)  # unicast DNS-SD (RFC 6763)
        named = self.dns_names
        for rr in m.answers:
            rtype = rr.rtype
            if rtype == 1 or rtype == 28:
                # `_dns_name` changes nothing for an address named at this rank or better
                old = named.get(rr.data)
                if old is None or old[0] > _DNS_A_RANK:
                    self._dns_name(rr.data, "dns-a", rr.name, ts)
            elif rtype == 12 and rr.name.endswith(".in-addr.arpa"):  # PTR (RFC 1035 §3.5)
                octets = rr.name[: -len(".in-addr.arpa")].split(".")
                self._dns_name(".".join(reversed(octets)), "dns-ptr", rr.data, ts)

    def _mdns(self, m) -> None:
        # multicast DNS (RFC 6762): the sender's records; a response answers for its own (§6)
        e, ts = m.endpoints, m.ts_ns
        sender = self._pair(e.client_mac, e.client, ts)
        if sender is None:
            return
        if m.response:
            for rr in m.answers:
                if rr.rtype in (1, 28) and rr.data == e.client:
                    self._hostname(sender, "mdns", rr.name, ts)
            dicom = False
            for st in m.service_types:
                self._obs(sender, "mdns.service", st, ts)
                dicom = dicom or st[:6].lower() == "_dicom"
            if dicom:
                self._dicom_dnssd(m, sender, e.client, ts)
            for inst in m.service_instances:
                self._obs(sender, "mdns.instance", inst.split("._")[0], ts)

    def _llmnr(self, m) -> None:
        # the responder answers from port 5355 (RFC 4795 §2.1) for a name of its own: its
        # answer's A/AAAA data is its own address. A query names someone else.
        e, ts = m.endpoints, m.ts_ns
        for mac, ip, port in ((e.server_mac, e.server, e.server_port),
                              (e.client_mac, e.client, e.client_port)):  # fmt: skip
            if port != 5355:
                continue
            names = tuple(rr.name for rr in m.answers if rr.rtype in (1, 28) and rr.data == ip)
            if not names or self._repeat(("llmnr", ip, mac, names)):
                continue
            ep = self._pair(mac, ip, ts)
            for name in names:
                self._hostname(ep, "llmnr", name, ts)

    def _dicom_dnssd(self, m, sender: _Endpoint | None, sender_ip: str | None, ts: int) -> None:
        """DNS-SD answers naming a DICOM service instance (PS3.15 H.2.3): its SRV record's
        target host offers the service on the SRV port; its TXT record may carry `AET` (the
        Called AE Title) and `PrimaryDeviceType`. The provider is the target's address in the
        message (A/AAAA), else for mDNS the sender, which answers for its own records. SRV and
        TXT may come in different messages (unicast DNS answers one question each): an
        instance's TXT keys join its providers whenever both are known."""
        answers = m.answers
        for rr in answers:
            if rr.rtype not in (33, 16):  # SRV (RFC 2782), TXT (RFC 6763 §6)
                continue
            found = _DICOM_SRV.match(rr.name)
            if found is None:
                continue
            key = rr.name.lower()
            inst = self.dicom_instances.get(key)
            if inst is None:
                if len(self.dicom_instances) >= MAX_DICOM_INSTANCES:
                    continue
                inst = self.dicom_instances[key] = [None, None, []]
            if rr.rtype == 16:
                inst[0], inst[1] = _dicom_txt(rr.strings, found.group("instance"))
                providers = inst[2]
            else:
                parts = rr.data.split(" ", 3)
                if len(parts) != 4 or not parts[2].isdigit():
                    continue
                target = parts[3].lower()
                addrs = {a.data for a in answers if a.rtype in (1, 28) and a.name.lower() == target}
                if sender is not None and (not addrs or sender_ip in addrs):
                    providers = [sender]
                else:
                    providers = [ep for a in sorted(addrs) if (ep := self._pair(None, a, ts))]
                service = found.group("service").lower()
                for ep in providers:
                    self._role(ep, _DICOM_SRV_ROLE.get(service), ts)
                    self._obs(ep, "dicom.dnssd.service", f"{service} tcp/{parts[2]}", ts)
                    if ep not in inst[2] and len(inst[2]) < 8:
                        inst[2].append(ep)
            for ep in providers:
                self._obs(ep, "dicom.ae_title", inst[0], ts)
                self._obs(ep, "dicom.primary_device_type", inst[1], ts)

    def _nbns(self, m) -> None:
        # NetBIOS name service (protocols/nbns.py): the names a host registers, refreshes,
        # releases or answers for with its own address, and a NODE STATUS response's name table
        # and adapter MAC (RFC 1002 §4.2.18) are the sender's
        ts = m.ts_ns
        ip, mac = m.endpoints.sender(m.direction)
        names = m.names
        sig = ("nbns", ip, mac, m.node_status, m.unit_id,
               tuple((n.name, n.suffix, n.group, n.address) for n in names))  # fmt: skip
        if self._repeat(sig):
            return
        ep = self._pair(mac, ip, ts)
        if ep is None:
            return
        if m.node_status:
            self._claim(m.unit_id, ip, ts, "netbios")
        for n in names:
            if not m.node_status and n.address != ip:
                continue  # a WINS server's answer names another host
            if not n.group and n.suffix in _NETBIOS_HOST_SUFFIXES and n.name != "*":
                self._hostname(ep, "netbios", n.name, ts)
            elif (n.group and n.suffix == 0x00) or n.suffix in (0x1B, 0x1C):
                # its workgroup or domain: <00> group, <1B> domain master browser, <1C> domain
                # controllers, which only they register (a group name, though Samba's NODE
                # STATUS table lists it as unique)
                self._obs(ep, "netbios.domain", n.name, ts)
                if n.suffix == 0x1C:
                    self._role(ep, "domain-controller", ts)

    def _dns_name(self, ip: str, source: str, name: str, ts: int) -> None:
        if classify(ip) != "local" or not name:
            return
        rank = HOSTNAME_RANK[source]
        old = self.dns_names.get(ip)
        if old is None or rank < old[0]:
            self.dns_names[ip] = (rank, name.rstrip("."), ts)

    def _ssdp(self, m) -> None:
        e, ts = m.endpoints, m.ts_ns
        ep = (
            self._pair(e.server_mac, e.server, ts)
            if m.method == "RESPONSE"
            else self._pair(e.client_mac, e.client, ts)
        )
        self._obs(ep, "ssdp.server", m.server, ts)
        self._obs(ep, "ssdp.user_agent", m.user_agent, ts)
        self._obs(ep, "http.user_agent", m.user_agent, ts)  # SSDP is HTTP over UDP (UDA §1.1.2)
        if m.method != "M-SEARCH":
            self._obs(ep, "ssdp.nt", m.nt, ts)

    def _lldp(self, m) -> None:
        ts = m.ts_ns
        ep = self._pair(m.source_mac, None, ts)
        if ep is None:
            return
        self._role(ep, "lldp", ts)
        self._obs(ep, "lldp.system_name", m.system_name, ts)
        self._obs(ep, "lldp.system_description", m.system_description, ts)
        for cap in m.enabled_capabilities or m.capabilities:
            self._obs(ep, "lldp.capability", cap, ts)
        self._hostname(ep, "lldp", m.system_name, ts)
        for addr in m.management_addresses:
            self._claim(m.source_mac, addr, ts, "arp")

    def _cdp(self, m) -> None:
        ts = m.ts_ns
        ep = self._pair(m.source_mac, None, ts)
        if ep is None:
            return
        self._obs(ep, "cdp.platform", m.platform, ts)
        self._obs(ep, "cdp.software_version", m.software_version, ts)
        for cap in m.capabilities:
            self._obs(ep, "lldp.capability", cap, ts)
        self._hostname(ep, "cdp", m.device_id, ts)
        for addr in m.addresses:
            self._claim(m.source_mac, addr, ts, "arp")

    def _snmp_system(self, m) -> None:
        # the agent, the sender of the Response or Trap (protocols/snmp.py): sysName is the
        # name its administrator gave it, as LLDP's system name (RFC 3418 §2)
        ts = m.ts_ns
        ip, mac = m.endpoints.sender(m.direction)
        sig = ("snmp", mac, ip, m.sys_descr, m.sys_object_id, m.sys_name, m.enterprise)
        if self._repeat(sig):
            return
        ep = self._pair(mac, ip, ts)
        if ep is None:
            return
        self._role(ep, "snmp-agent", ts)
        self._obs(ep, "snmp.sys_descr", m.sys_descr, ts)
        self._obs(ep, "snmp.sys_object_id", m.sys_object_id, ts)
        self._obs(ep, "snmp.sys_name", m.sys_name, ts)
        self._hostname(ep, "snmp", m.sys_name, ts)
        for oid in (m.sys_object_id, m.enterprise):  # the vendor's subtree names its PEN
            if oid and oid.startswith(_ENTERPRISES):
                self._obs(ep, "snmp.enterprise", oid[len(_ENTERPRISES) :].split(".", 1)[0], ts)

    def _snmpv3(self, m) -> None:
        # the level an agent answers or notifies at: a Response or a Trap (reportable flag
        # clear, RFC 3412 §6.4), not the unauthenticated discovery Report (RFC 3414 §4)
        if m.reportable or m.pdu == "report":
            return
        ts = m.ts_ns
        ip, mac = m.endpoints.sender(m.direction)
        if self._repeat(("snmpv3", mac, ip, m.security_level)):
            return
        ep = self._pair(mac, ip, ts)
        self._role(ep, "snmp-agent", ts)
        self._obs(ep, "snmp.v3.security_level", m.security_level, ts)

    def _tls_client_hello(self, m) -> None:
        e = m.endpoints
        if self._repeat(("tls", e.client, e.client_mac, e.server, e.server_mac, m.server_name,
                         m.ja4, m.user_agent)):  # fmt: skip
            return
        ts = m.ts_ns
        c, s = self._ends(e, ts)
        if c is not None:
            if "tls-client" not in c.roles:
                c.roles["tls-client"] = ts
            c.observe("tls.ja4", m.ja4, ts)
            if m.server_name:
                c.observe("domain", m.server_name.lower(), ts)
            if m.user_agent:  # QUIC from Chromium: google_user_agent, its HTTP User-Agent
                c.observe("http.user_agent", m.user_agent, ts)
        self._role(s, "tls-server", ts)

    def _quic_crypto_client_hello(self, m) -> None:
        # Google QUIC's CHLO: SNI as TLS has it, UAID the same string as Chrome's User-Agent
        e = m.endpoints
        if self._repeat(("chlo", e.client, e.client_mac, e.server, m.server_name, m.user_agent)):
            return
        c, s = self._ends(e, m.ts_ns)
        ts = m.ts_ns
        self._role(c, "tls-client", ts)
        self._role(s, "tls-server", ts)
        if m.server_name:
            self._obs(c, "domain", m.server_name.lower(), ts)
        self._obs(c, "http.user_agent", m.user_agent, ts)

    def _tuya(self, m) -> None:
        # a Tuya discovery broadcast: the sender is a device on the Tuya IoT platform
        e = m.endpoints
        if self._repeat(("tuya", e.client, e.client_mac, m.product_key, m.protocol_version)):
            return
        ts = m.ts_ns
        sender = self._pair(e.client_mac, e.client, ts)  # the other end is a broadcast address
        self._role(sender, "tuya-device", ts)
        self._obs(sender, "tuya.product_key", m.product_key, ts)
        self._obs(sender, "tuya.version", m.protocol_version, ts)

    def _tls_server_hello(self, m) -> None:
        e = m.endpoints
        if self._repeat(("tlss", e.server, e.server_mac, m.ja4s)):
            return
        _, s = self._ends(m.endpoints, m.ts_ns)
        self._obs(s, "tls.ja4s", m.ja4s, m.ts_ns)

    def _tls_certificate(self, m) -> None:
        if m.chain_index != 0:
            return
        c, s = self._ends(m.endpoints, m.ts_ns)
        ts = m.ts_ns
        self._obs(s, "tls.cert.subject_cn", m.subject_cn, ts)
        self._obs(s, "tls.cert.subject_o", m.subject_o, ts)
        self._obs(s, "tls.cert.issuer_o", m.issuer_o or m.issuer_cn, ts)
        if m.self_signed:
            self._obs(s, "tls.cert.self_signed", "true", ts)
        for name in m.san_dns[:8]:  # the client talks to that service
            self._obs(c, "domain", name.lower().lstrip("*."), ts)

    def _http_request(self, m) -> None:
        e = m.endpoints
        if self._repeat(("http", e.client, e.client_mac, e.server, e.server_mac, m.user_agent,
                         m.host)):  # fmt: skip
            return
        ts = m.ts_ns
        c, s = self._ends(e, ts)
        if c is not None:
            if "http-client" not in c.roles:
                c.roles["http-client"] = ts
            c.observe("http.user_agent", m.user_agent, ts)
            host = (m.host or "").split(":")[0].lower()
            if host and classify(host) == "invalid":
                c.observe("domain", host, ts)
        self._role(s, "http-server", ts)

    def _http_response(self, m) -> None:
        e = m.endpoints
        if self._repeat(("httpr", e.server, e.server_mac, m.server)):
            return
        _, s = self._ends(m.endpoints, m.ts_ns)
        self._obs(s, "http.server", m.server, m.ts_ns)

    def _fhir(self, m) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        ts = m.ts_ns
        self._role(c, "fhir-client", ts)
        self._role(s, "fhir-server", ts)
        if m.resource_type:
            self._obs(c, "fhir.resource", m.resource_type, ts)
        if m.software_name:
            self._obs(s, "fhir.software", m.software_name, ts)
            self._obs(s, "fhir.software_version", m.software_version, ts)
        if m.patient_data_in_clear:
            self._phi(c, s, ts)

    def _dicom_associate(self, m, accepted: bool) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        ts = m.ts_ns
        me = s if accepted else c  # the side whose user information this is (PS3.7 §D.3.3)
        self._obs(me, "dicom.implementation_class_uid", m.implementation_class_uid, ts)
        self._obs(me, "dicom.implementation_version_name", m.implementation_version_name, ts)
        self._obs(me, "dicom.implementation", m.implementation, ts)
        if accepted:
            self._role(s, "dicom-scp", ts)
            self._role(c, "dicom-scu", ts)
        else:
            self._obs(c, "dicom.ae_title", m.calling_ae, ts)
            self._obs(s, "dicom.ae_title", m.called_ae, ts)
            for pc in m.presentation_contexts:
                self._obs(c, "dicom.proposed", pc.sop_class_name or pc.abstract_syntax, ts)

    def _dicom_rq(self, m) -> None:
        self._dicom_associate(m, accepted=False)

    def _dicom_ac(self, m) -> None:
        self._dicom_associate(m, accepted=True)

    def _dicom_command(self, m) -> None:
        if not m.command.endswith("-RQ"):
            return
        c, s = self._ends(m.endpoints, m.ts_ns)
        sender, receiver = (c, s) if m.direction == 0 else (s, c)
        ts = m.ts_ns
        name = m.sop_class_name or m.affected_sop_class_uid or m.requested_sop_class_uid
        service = m.command[:-3]
        if name:
            if service == "C-STORE":
                self._obs(sender, "dicom.sop_class.sent", name, ts)
                self._obs(receiver, "dicom.sop_class.received", name, ts)
            else:
                self._obs(sender, "dicom.service.scu", f"{service} {name}", ts)
                self._obs(receiver, "dicom.service.scp", f"{service} {name}", ts)

    def _dicom_dataset(self, m) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        sender, receiver = (c, s) if m.direction == 0 else (s, c)
        ts = m.ts_ns
        if m.phi_attributes:
            self._phi(c, s, ts)
        if m.command != "C-STORE-RQ":  # query results describe others, not the sender
            # a worklist query names the querying modality's type (PS3.4 K.6.1.2.2: Scheduled
            # Procedure Step Modality); rules use it only for devices that use the Modality
            # Worklist service. A top-level Modality in the answers names it too; an answer's
            # scheduled step does not: a query that leaves the modality open is answered with
            # other stations' steps as well.
            if m.command == "C-FIND-RQ":
                self._obs(sender, "dicom.worklist_modality", m.modality or m.scheduled_modality, ts)
            elif m.command == "C-FIND-RSP":
                self._obs(receiver, "dicom.worklist_modality", m.modality, ts)
            return
        # Whose identity is this? The General Equipment Module names the equipment that created
        # the instance (PS3.3 C.7.5.1), which a forwarder (PACS) is not: see identify.
        ident = "|".join(
            x or "" for x in (m.manufacturer, m.manufacturer_model_name, m.modality, m.station_name)
        )
        self._obs(receiver, "dicom.received.modality", m.modality, ts)
        if m.move_originator_ae is not None or m.move_originator_message_id is not None:
            # a C-MOVE sub-operation (PS3.7 §9.1.1.1): the sender forwards another's instance
            self._obs(sender, "dicom.forwarded.identity", ident, ts)
            return
        self._obs(sender, "dicom.sent.identity", ident, ts)
        self._obs(sender, "dicom.manufacturer", m.manufacturer, ts)
        self._obs(sender, "dicom.model", m.manufacturer_model_name, ts)
        for v in m.software_versions:
            self._obs(sender, "dicom.software_version", v, ts)
        self._obs(sender, "dicom.modality", m.modality, ts)
        self._obs(sender, "dicom.station_name", m.station_name, ts)
        self._obs(sender, "dicom.device_serial", m.device_serial_number, ts)

    def _dicom_tls(self, m) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        self._role(c, "dicom-tls-scu", m.ts_ns)
        self._role(s, "dicom-tls-scp", m.ts_ns)

    def _hl7(self, m) -> None:
        # the stream, direction, MSH fields and shape of the message (two tuple lengths: with
        # OBX segments or without)
        obx = m.observations
        if obx:
            sig = (
                "hl7", m.flow_id, m.direction, m.sending_application, m.sending_facility,
                m.receiving_application, m.receiving_facility, m.message_type, m.trigger_event,
                m.ack_code, not m.phi_segments, len(m.devices), len(obx), obx[0].code, obx[-1].code,
            )  # fmt: skip
        else:
            sig = (
                "hl7", m.flow_id, m.direction, m.sending_application, m.sending_facility,
                m.receiving_application, m.receiving_facility, m.message_type, m.trigger_event,
                m.ack_code, not m.phi_segments, len(m.devices),
            )  # fmt: skip
        said = self._said  # _repeat inlined: 85% of HL7 messages repeat an earlier one
        h = hash(sig)
        if h in said:
            return
        if len(said) > 1_000_000:
            said.clear()
        said.add(h)
        ts = m.ts_ns
        c, s = self._ends(m.endpoints, ts)
        sender, receiver = (c, s) if m.direction == 0 else (s, c)
        if m.phi_segments:
            self._phi(c, s, ts)
        # MSH-3/4 name the sender's application and facility, MSH-5/6 the receiver's (§2.14.9)
        if sender is not None:
            sender.observe("hl7.application", m.sending_application, ts)
            sender.observe("hl7.facility", m.sending_facility, ts)
        if receiver is not None:
            receiver.observe("hl7.application", m.receiving_application, ts)
            receiver.observe("hl7.facility", m.receiving_facility, ts)
        if m.message_type == "ACK" or m.ack_code:
            return
        self._role(sender, "hl7-sender", ts)
        self._role(receiver, "hl7-receiver", ts)
        mt = m.message_type or ""
        if m.trigger_event:
            mt = f"{mt}^{m.trigger_event}"
        if sender is not None:
            sender.observe("hl7.sent", mt, ts)
        if receiver is not None:
            receiver.observe("hl7.received", mt, ts)
        if sender is None:
            return
        for d in m.devices:
            sender.observe("hl7.device", d.entity_identifier, ts)
            if d.namespace_id != NON_STANDARD:  # a namespace that names no maker: not one
                sender.observe("hl7.device_namespace", d.namespace_id, ts)
        for o in obx[:32]:
            sender.observe("hl7.observation", o.code, ts)

    def _hl7_batch(self, m) -> None:
        # BHS-3..6 / FHS-3..6 name the batch's sender and receiver (HL7 v2.5.1 §2.14.2)
        if m.header is None:
            return
        c, s = self._ends(m.endpoints, m.ts_ns)
        sender, receiver = (c, s) if m.direction == 0 else (s, c)
        self._obs(sender, "hl7.application", m.sending_application, m.ts_ns)
        self._obs(sender, "hl7.facility", m.sending_facility, m.ts_ns)
        self._obs(receiver, "hl7.application", m.receiving_application, m.ts_ns)
        self._obs(receiver, "hl7.facility", m.receiving_facility, m.ts_ns)

    def _mqtt_connect(self, m) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        self._role(c, "mqtt-client", m.ts_ns)
        self._role(s, "mqtt-broker", m.ts_ns)
        self._obs(c, "mqtt.client_id", m.client_id, m.ts_ns)

    def _mqtt_publish(self, m) -> None:
        c, s = self._ends(m.endpoints, m.ts_ns)
        self._obs(c if m.from_client else s, "mqtt.topic", m.topic, m.ts_ns)

    def _mqtt_subscribe(self, m) -> None:
        c, _ = self._ends(m.endpoints, m.ts_ns)
        for t in m.topic_filters[:16]:
            self._obs(c, "mqtt.subscription", t, m.ts_ns)

    def _process_traffic(self, m) -> None:
        # the app behind a connection, named by the capture (capture/processes.py): evidence
        # about the host it runs on (the client side of the event), not about the remote end
        e, ts = m.endpoints, m.ts_ns
        host = self._pair(e.client_mac, e.client, ts)
        if host is None:
            return
        host.observe("app.source", m.source, ts)
        if m.source == "pcapdroid":  # Android: a package name, or the app's display name
            key = "app.package" if _PACKAGE.match(m.process) else "app.name"
            host.observe(key, m.process, ts)
        else:  # Apple: the command name (pth_comm, PIB name)
            host.observe("app.process", m.process, ts)
        if m.label:
            host.observe("app.name", m.label, ts)

    def _ble_device(self, address: str, random: bool, ts: int, role: str | None) -> DeviceState:
        addr = address.lower()
        dev = self.ble.get(addr)
        if dev is None:
            mac = None if random else addr  # a random address names no maker (no OUI)
            dev = self.ble[addr] = DeviceState(device_id=f"ble:{addr}", mac=mac)
            dev.protocols["ble"] = ts
            if random:
                dev.observations["ble.address_type"] = {"random": ts}
        if role is not None and role not in dev.roles:
            dev.roles[role] = ts
        dev.see(ts)
        return dev

    def _ble_resolved(self, m) -> None:
        # a resolvable private address proved to be a device's (protocols/ble_privacy.py)
        rpa = m.address.lower()
        if rpa not in self.ble_identity:
            self.ble_identity[rpa] = (
                m.identity_address.lower(), m.identity_address_random, m.ts_ns, m.resolved_by
            )  # fmt: skip

    def _fold_private_addresses(self) -> None:
        """Each resolved private address's device into its identity address's (one device)."""
        for rpa, (identity, random, ts, via) in self.ble_identity.items():
            if rpa == identity:
                continue
            dev = self._ble_device(identity, random, ts, None)
            src = self.ble.pop(rpa, None)
            if src is not None:
                src.observations.pop("ble.address_type", None)  # the RPA's, not the identity's
                dev.merge(src)
            dev.observe("ble.private_address", rpa, ts)
            dev.observe("ble.address_resolved_by", via, ts)

    def _ble(self, m) -> None:
        ts = m.ts_ns
        dev = self._ble_device(m.advertiser_address, m.address_random, ts, "ble-peripheral")
        self._obs(dev, "ble.local_name", m.local_name, ts)
        if m.company_id is not None:
            self._obs(dev, "ble.company_id", f"0x{m.company_id:04X}", ts)
            self._obs(dev, "ble.company", m.company_name, ts)
        for u in m.service_uuids16:
            self._obs(dev, "ble.service", f"0x{u:04X}", ts)
        for u in m.service_uuids32:  # a value < 2^16 is the same UUID as the 16-bit one
            self._obs(dev, "ble.service", f"0x{u:04X}" if u <= 0xFFFF else f"0x{u:08X}", ts)
        for u in m.service_uuids128:  # vendor services (RFC 4122 text)
            self._obs(dev, "ble.service128", u, ts)
        for h in m.health_services:
            self._obs(dev, "ble.health_service", h, ts)
        if m.appearance is not None:
            self._obs(dev, "ble.appearance", str(m.appearance), ts)

    def _ble_connection(self, m) -> None:
        # the capturing host (a phone's companion app, a hub) connected to the peer, or the
        # peer to it (HCI LE Connection Complete)
        if m.status == 0:
            role = "ble-peripheral" if m.local_role == "central" else "ble-central"
            self._ble_device(m.peer_address, m.peer_address_random, m.ts_ns, role)

    def _ble_gatt(self, m) -> None:
        # identity characteristics read from the peer's GATT server (protocols/ble_gatt.py)
        key = _GATT_KEYS.get(m.uuid)
        if key is None:
            return
        ts = m.ts_ns
        dev = self._ble_device(m.peer_address, m.peer_address_random, ts, "ble-gatt-server")
        self._obs(dev, key, m.value, ts)
        if m.uuid == "0x2A50" and m.value.startswith("bluetooth:"):  # PnP ID, SIG vendor
            self._obs(dev, "ble.pnp.company_id", m.value.split(":")[1], ts)

    def _ble_gatt_services(self, m) -> None:
        ts = m.ts_ns
        dev = self._ble_device(m.peer_address, m.peer_address_random, ts, "ble-gatt-server")
        for u in m.service_uuids16:  # the same keys as advertised services: the same rules
            self._obs(dev, "ble.service", f"0x{u:04X}", ts)
        for u in m.service_uuids128:
            self._obs(dev, "ble.service128", u, ts)
        for h in m.health_services:
            self._obs(dev, "ble.health_service", h, ts)

    def _wlan(self, m) -> None:
        # 802.11 transmitter (protocols/wlan.py): keyed by its MAC like a wired station, so it
        # merges with the flows of the same MAC; a randomized MAC is handled by identify
        ts = m.ts_ns
        ep = self._pair(m.station_mac, None, ts)
        if ep is None:
            return
        self._role(ep, "wlan-ap" if m.role == "ap" else "wlan-station", ts)
        if "wlan" not in ep.protocols:
            ep.protocols["wlan"] = ts
        self._obs(ep, "wlan.ssid", m.ssid, ts)
        self._obs(ep, "wlan.wps.manufacturer", m.wps_manufacturer, ts)
        self._obs(ep, "wlan.wps.model_name", m.wps_model_name, ts)
        self._obs(ep, "wlan.wps.model_number", m.wps_model_number, ts)
        self._obs(ep, "wlan.fingerprint", m.fingerprint, ts)
        for o in m.vendor_ouis:
            self._obs(ep, "wlan.vendor_oui", o, ts)
        if m.protected_data:
            self._obs(ep, "wlan.protected", "true", ts)

    # -- resolution --

    def gateways(self, known: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
        """Router MACs -> their own addresses (`own_addresses`); `known`: routers found earlier
        (a live session's earlier commits, earlier captures), kept as routers."""
        ips_of: dict[str, set[str]] = defaultdict(set)
        for mac, ip in self.pairs:
            if mac is not None and ip is not None:
                ips_of[mac].add(ip)
        claimants: dict[str, set[str]] = defaultdict(set)  # address -> MACs that claimed it
        for mac, claims in self.claimed.items():
            for ip in claims:
                claimants[ip].add(mac)
        on_link = self._on_link_networks()
        out: dict[str, set[str]] = {}
        own_of: dict[str, set[str]] = {}
        for mac, ips in ips_of.items():
            own = own_of[mac] = self.own_addresses(mac, ips, on_link)
            if mac in self.advertising_routers or self._forwards(mac, ips, own, claimants):
                out[mac] = own
        for mac in self.advertising_routers:
            if mac not in out:
                out[mac] = set(self.claimed.get(mac, _EMPTY))
        for mac, own in (known or {}).items():
            mine = own_of.get(mac) or set(self.claimed.get(mac, _EMPTY))
            out[mac] = out.get(mac, set()) | mine | own
        return out

    def _on_link_networks(self) -> list[ipaddress.IPv6Network]:
        nets = []
        for p in self.on_link_prefixes:
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv6Network(p, strict=False))
        return nets

    def own_addresses(
        self, mac: str, ips: set[str], on_link: Sequence[ipaddress.IPv6Network] = ()
    ) -> set[str]:
        """The addresses of `ips` (seen with `mac`) that are the station's own: claimed (ARP,
        DHCP, LLDP/CDP, ND), link-local (never forwarded: RFC 3927 §7, RFC 4291 §2.5.6), IPv6
        with the MAC's Modified EUI-64 interface identifier (RFC 4291 Appendix A), and IPv6 in
        a /64 of those or in an advertised on-link prefix (RFC 4861 §4.6.2): a host's
        temporary addresses (RFC 8981 §3.3) share the prefixes of its stable ones, and
        an on-link address is sent with its holder's own MAC."""
        own = set(self.claimed.get(mac, _EMPTY))
        eui64: int | None = None  # computed for the first IPv6 address only
        prefixes: set[int] = set()
        rest: list[tuple[str, int]] = []
        for ip in ips | own:
            if is_link_local(ip):
                own.add(ip)
                continue
            if ":" not in ip:  # IPv4: own when claimed (already in `own`) or link-local
                continue
            halves = ipv6_halves(ip)
            if halves is not None:
                if eui64 is None:
                    eui64 = eui64_interface_id(mac)
                if ip in own or halves[1] == eui64:
                    own.add(ip)
                    prefixes.add(halves[0])
                else:
                    rest.append((ip, halves[0]))
        for ip, prefix in rest:
            if prefix in prefixes or any(ipaddress.IPv6Address(ip) in n for n in on_link):
                own.add(ip)
        return own

    def _forwards(
        self, mac: str, ips: set[str], own: set[str], claimants: dict[str, set[str]]
    ) -> bool:
        """Do the addresses seen with `mac` show it forwarding for others?"""
        foreign = ips - own
        if not foreign:
            return False
        v4 = [ip for ip in foreign if ":" not in ip]
        if len(v4) >= GATEWAY_MIN_FOREIGN_IPS:
            return True
        if v4:
            external = sum(1 for ip in v4 if classify(ip) == "external")
            if external and sum(1 for ip in ips if ":" not in ip) >= 2:
                return True  # an internet address and another IPv4 address: NAT or router
            if external == len(v4) and self._talks_to_local(mac, set(v4)):
                return True  # only internet addresses behind it, talking with local hosts
        if len(foreign) - len(v4) >= GATEWAY_MIN_FOREIGN_V6_PREFIXES:
            v6_prefixes = {
                h[0] for ip in foreign if ":" in ip and (h := ipv6_halves(ip)) is not None
            }
            if len(v6_prefixes) >= GATEWAY_MIN_FOREIGN_V6_PREFIXES:
                return True
        if len(foreign) < GATEWAY_MIN_CLAIMED_ELSEWHERE or not claimants:
            return False  # (the common host: one address of its own seen only in flows)
        elsewhere = 0  # addresses of `foreign` another station claimed
        for ip in foreign:
            cl = claimants.get(ip)
            if cl and (len(cl) > 1 or mac not in cl):
                elsewhere += 1
        return elsewhere >= GATEWAY_MIN_CLAIMED_ELSEWHERE

    def _talks_to_local(self, mac: str, ips: set[str]) -> bool:
        for ip in ips:
            ep = self.pairs.get((mac, ip))
            if ep is not None and any(
                classify(pk.rpartition("|")[2]) == "local" for pk in ep.peers
            ):
                return True
        return False

    def resolve(
        self, known_gateways: dict[str, set[str]] | None = None
    ) -> tuple[dict[str, DeviceState], dict[str, set[str]]]:
        """The devices these observations describe, and the router MACs with their addresses.

        Once only: the devices take over the endpoints' tables rather than copying them.
        """
        if self._resolved:
            raise RuntimeError("an Observer resolves once: its endpoints went into devices")
        self._resolved = True
        gateways = self.gateways(known_gateways)
        # address -> stations (non-router MACs) that showed it as their own, with time spans
        holders: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for (mac, ip), ep in self.pairs.items():
            if mac is not None and ip is not None and mac not in gateways:
                holders[ip].append((mac, ep.first_ns, ep.last_ns))
        for mac, claims in self.claimed.items():
            if mac not in gateways:
                for ip, (first, last, _src) in claims.items():
                    if all(h[0] != mac for h in holders[ip]):
                        holders[ip].append((mac, first, last))

        router_of = {ip: mac for mac, own in gateways.items() for ip in own}

        def owner(mac: str | None, ip: str | None, first: int, last: int) -> str | None:
            """The device id for a pair, or None for an external peer."""
            if mac is not None and mac not in gateways:
                return f"mac:{mac}"
            if ip is None:
                return f"mac:{mac}" if mac else None
            if mac is not None and ip in gateways[mac]:
                return f"mac:{mac}"
            router = router_of.get(ip)
            if router is not None:  # a router's own address, seen without its MAC
                return f"mac:{router}"
            cands = holders.get(ip)
            if cands:
                if len(cands) == 1:
                    return f"mac:{cands[0][0]}"
                best = min(cands, key=lambda h: _distance(h[1], h[2], first, last))
                return f"mac:{best[0]}"
            return f"ip:{ip}" if classify(ip) == "local" else None

        id_of: dict[str, str | None] = {}
        ext_of: dict[str, str] = {}
        for (mac, ip), ep in self.pairs.items():
            did = owner(mac, ip, ep.first_ns, ep.last_ns)
            id_of[ep.device_id] = did
            if did is None and ip is not None:
                ext_of[ep.device_id] = ip

        devices: dict[str, DeviceState] = {}
        for (mac, ip), ep in self.pairs.items():
            did = id_of[ep.device_id]
            if did is None:
                continue
            dev = devices.get(did)
            peers, ep.peers = ep.peers, {}
            if dev is None:  # its first endpoint (values filed by `observe`): taken over
                dev = devices[did] = DeviceState(
                    device_id=did, mac=did[4:] if did.startswith("mac:") else None
                )
                keep_mac = dev.mac
                dev.take_from(ep)
            else:
                keep_mac = dev.mac
                dev.merge(ep)
            dev.mac = keep_mac  # an IP-keyed device never takes its router's MAC
            if ip is not None:
                own_claim = self.claimed.get(mac, _EMPTY).get(ip) if mac else None
                src = own_claim[2] if own_claim else "flow"
                dev.address(ip, ep.first_ns, ep.last_ns, src)
            known = dev.peers  # a peer keeps the time it was first filed with
            for pkey, ts in peers.items():
                pid = id_of.get(pkey)
                if pid is not None:
                    if pid != did:
                        known.setdefault(pid, ts)
                elif pkey in ext_of:
                    dev.external_peers.setdefault(ext_of[pkey], ts)
        for mac, claims in self.claimed.items():  # leases and ARP bindings never seen in flows
            did = f"mac:{mac}"
            if did in devices:
                for ip, (first, last, src) in claims.items():
                    devices[did].address(ip, first, last, src)
        for dev in devices.values():
            for ip in dev.addresses:
                named = self.dns_names.get(ip)
                if named is not None:
                    rank, name, ts = named
                    src = "dns-ptr" if rank == HOSTNAME_RANK["dns-ptr"] else "dns-a"
                    self._hostname(dev, src, name, ts)
        eps_of: dict[str | None, list[_Endpoint]] | None = None  # MAC -> its endpoints
        for mac in gateways:  # every router interface is a device, even without own address
            did = f"mac:{mac}"
            dev = devices.get(did)
            if dev is None:
                if eps_of is None:
                    eps_of = defaultdict(list)
                    for (m, _ip), ep in self.pairs.items():
                        eps_of[m].append(ep)
                eps = eps_of.get(mac)
                if not eps:
                    continue  # a router known from before, silent in this interval
                dev = devices[did] = DeviceState(device_id=did, mac=mac)
                for ep in eps:
                    dev.see(ep.first_ns)
                    dev.see(ep.last_ns)
            dev.roles.setdefault("ip-router", dev.first_ns)
        for dev in devices.values():  # peers were added endpoint by endpoint: bound them now
            dev.bound_peers()
        self._fold_private_addresses()
        for st in self.ble.values():
            devices[st.device_id] = st
        return devices, gateways


def _distance(a0: int, a1: int, b0: int, b1: int) -> int:
    """0 when the spans overlap, else the gap between them."""
    if a1 < b0:
        return b0 - a1
    if b1 < a0:
        return a0 - b1
    return 0


_HANDLERS = {
    "FlowRecord": Observer._flow,
    "ArpObserved": Observer._arp,
    "NdpObserved": Observer._ndp,
    "DhcpMessage": Observer._dhcp,
    "Dhcpv6Message": Observer._dhcpv6,
    "DnsMessage": Observer._dns,
    "NbnsMessage": Observer._nbns,
    "SsdpMessage": Observer._ssdp,
    "LldpNeighbor": Observer._lldp,
    "CdpNeighbor": Observer._cdp,
    "SnmpSystem": Observer._snmp_system,
    "SnmpV3Message": Observer._snmpv3,
    "TlsClientHello": Observer._tls_client_hello,
    "TlsServerHello": Observer._tls_server_hello,
    "QuicCryptoClientHello": Observer._quic_crypto_client_hello,
    "TuyaDiscovery": Observer._tuya,
    "TlsCertificate": Observer._tls_certificate,
    "HttpRequest": Observer._http_request,
    "HttpResponse": Observer._http_response,
    "FhirInteraction": Observer._fhir,
    "DicomAssociateRequest": Observer._dicom_rq,
    "DicomAssociateAccept": Observer._dicom_ac,
    "DicomCommand": Observer._dicom_command,
    "DicomDataset": Observer._dicom_dataset,
    "DicomOverTls": Observer._dicom_tls,
    "Hl7Message": Observer._hl7,
    "Hl7Batch": Observer._hl7_batch,
    "MqttConnect": Observer._mqtt_connect,
    "MqttPublish": Observer._mqtt_publish,
    "MqttSubscribe": Observer._mqtt_subscribe,
    "BleAdvertisement": Observer._ble,
    "BleConnection": Observer._ble_connection,
    "BleGattValue": Observer._ble_gatt,
    "BleGattServices": Observer._ble_gatt_services,
    "BleAddressResolved": Observer._ble_resolved,
    "WlanStation": Observer._wlan,
    "ProcessTraffic": Observer._process_traffic,
}


def observe(events: Iterable[Event]) -> Observer:
    """Convenience: an Observer fed with these events."""
    obs = Observer()
    obs.feed(list(events))
    return obs
