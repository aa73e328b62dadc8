"""Identity protocol events for the inventory: DHCP, DHCPv6, DNS/mDNS/LLMNR, NetBIOS name
service, SSDP, LLDP, CDP, SNMP."""

from __future__ import annotations

import msgspec

from medsentry.events.base import Endpoints, Event


class DhcpMessage(Event, tag="dhcp", frozen=True, kw_only=True):
    """A DHCPv4 message (RFC 2131 §2, options RFC 2132)."""

    flow_id: str
    endpoints: Endpoints
    op: int  # 1 BOOTREQUEST, 2 BOOTREPLY
    message_type: str | None = None  # DISCOVER, OFFER, REQUEST, ... (option 53)
    direction: int = 0  # 0: sent by the flow's client, 1: by its server
    xid: int = 0
    hops: int = 0  # relay agents passed (RFC 1542 §4.1.1)
    client_mac: str | None = None  # chaddr when htype=1, hlen=6
    client_address: str | None = None  # ciaddr: the client's address, when it has one
    relay_address: str | None = None  # giaddr: the first relay agent's (RFC 2131 §4.1)
    hostname: str | None = None  # option 12
    vendor_class: str | None = None  # option 60
    parameter_request_list: str | None = None  # option 55 as "1,3,6,15": a fingerprint
    client_id: str | None = None  # option 61, hex
    requested_address: str | None = None  # option 50
    your_address: str | None = None  # yiaddr
    server_id: str | None = None  # option 54
    client_fqdn: str | None = None  # option 81
    # option codes in order: also a fingerprint
    options: list[int] = msgspec.field(default_factory=list)


class Dhcpv6Message(Event, tag="dhcpv6", frozen=True, kw_only=True):
    """A DHCPv6 client/server message (RFC 8415 §8, §21)."""

    flow_id: str
    endpoints: Endpoints
    message_type: str
    transaction_id: int = 0
    client_duid: str | None = None  # hex
    duid_type: int | None = None  # 1 LLT, 2 EN, 3 LL, 4 UUID
    duid_link_address: str | None = None  # from a DUID-LLT/DUID-LL
    vendor_enterprise: int | None = None  # option 16
    vendor_class: list[str] = msgspec.field(default_factory=list)
    fqdn: str | None = None  # option 39 (RFC 4704)
    option_request: list[int] = msgspec.field(default_factory=list)  # ORO, option 6
    options: list[int] = msgspec.field(default_factory=list)


class DnsQuestion(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    qtype: int
    unicast_response: bool = False  # mDNS QU bit (RFC 6762 §5.4)


class DnsRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    rtype: int
    ttl: int
    data: str  # address, target name, "prio weight port target" (SRV) or TXT strings
    # TXT: the character-strings one by one ("key=value", RFC 6763 §6.3), as `data` joins them
    strings: tuple[str, ...] = ()


class DnsMessage(Event, tag="dns", frozen=True, kw_only=True):
    """A DNS, mDNS or LLMNR message (RFC 1035 §4, RFC 6762, RFC 4795)."""

    flow_id: str
    endpoints: Endpoints
    protocol: str  # dns, mdns, llmnr
    id: int
    response: bool
    opcode: int = 0
    rcode: int = 0
    questions: list[DnsQuestion] = msgspec.field(default_factory=list)
    # answer + authority + additional sections
    answers: list[DnsRecord] = msgspec.field(default_factory=list)
    service_types: list[str] = msgspec.field(default_factory=list)  # mDNS/DNS-SD: "_ipp._tcp.local"
    # "Infusion Pump 7._ipp._tcp.local"
    service_instances: list[str] = msgspec.field(default_factory=list)


class NetbiosName(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A NetBIOS name (RFC 1001 §5.2, §14.1): up to 15 characters and the 16th byte, its suffix
    (0x00 workstation, 0x20 file server, 0x1C domain controllers, 0x1B/0x1D master browsers)."""

    name: str  # trailing space padding removed
    suffix: int
    group: bool = False  # NB_FLAGS / NAME_FLAGS G bit (RFC 1002 §4.2.1.3, §4.2.18)
    address: str | None = None  # NB_ADDRESS, in a registration, release, refresh or answer


class NbnsMessage(Event, tag="nbns", frozen=True, kw_only=True):
    """A NetBIOS name service message (RFC 1002 §4.2) that names hosts: a name registration,
    refresh or release request, a positive name query response, or a NODE STATUS response."""

    flow_id: str
    endpoints: Endpoints
    direction: int = 0  # 0: sent by the flow's client, 1: by its server
    transaction_id: int = 0
    opcode: str  # QUERY, REGISTRATION, RELEASE, REFRESH, MULTI-HOMED REGISTRATION
    response: bool = False
    broadcast: bool = False  # NM_FLAGS B
    node_status: bool = False  # an NBSTAT answer: `names` is the sender's name table
    names: list[NetbiosName] = msgspec.field(default_factory=list)
    unit_id: str | None = None  # NODE STATUS statistics UNIT_ID: the sender's MAC (§4.2.18)


class SsdpMessage(Event, tag="ssdp", frozen=True, kw_only=True):
    """An SSDP NOTIFY, M-SEARCH or search response (UPnP Device Architecture 2.0 §1)."""

    flow_id: str
    endpoints: Endpoints
    method: str  # NOTIFY, M-SEARCH, RESPONSE
    server: str | None = None
    user_agent: str | None = None
    usn: str | None = None
    nt: str | None = None  # NT (NOTIFY) or ST (M-SEARCH, response)
    nts: str | None = None
    location: str | None = None


class TuyaDiscovery(Event, tag="tuya_discovery", frozen=True, kw_only=True):
    """A Tuya device's local discovery broadcast (UDP 6666 in clear, 6667 encrypted with the
    platform's fixed key): the Tuya IoT platform's identifiers for the device and its product."""

    flow_id: str
    endpoints: Endpoints
    device_id: str | None = None  # gwId: the device's id on the Tuya cloud
    product_key: str | None = None  # productKey: the product (model) in Tuya's catalog
    protocol_version: str | None = None  # "3.1", "3.3", ...
    announced_ip: str | None = None  # ip: the address the device says it has
    encrypted: bool = False


class LldpNeighbor(Event, tag="lldp", frozen=True, kw_only=True):
    """An LLDPDU (IEEE 802.1AB-2016 §8)."""

    source_mac: str
    chassis_id: str
    chassis_id_subtype: int
    port_id: str
    port_id_subtype: int
    ttl: int
    port_description: str | None = None
    system_name: str | None = None
    system_description: str | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)
    enabled_capabilities: list[str] = msgspec.field(default_factory=list)
    management_addresses: list[str] = msgspec.field(default_factory=list)
    vlan: int | None = None


class CdpNeighbor(Event, tag="cdp", frozen=True, kw_only=True):
    """A Cisco Discovery Protocol announcement (Cisco CDP TLVs, version 1/2)."""

    source_mac: str
    version: int
    ttl: int
    device_id: str | None = None
    platform: str | None = None
    software_version: str | None = None
    port_id: str | None = None
    capabilities: list[str] = msgspec.field(default_factory=list)
    addresses: list[str] = msgspec.field(default_factory=list)
    native_vlan: int | None = None


class SnmpSystem(Event, tag="snmp_system", frozen=True, kw_only=True):
    """What an SNMP agent said of itself in a Response, Trap, SNMPv2-Trap or InformRequest
    (RFC 3416 §3, RFC 1157 §4.1.6): of the MIB-II system group (RFC 3418 §2) only sysDescr.0,
    sysObjectID.0 and sysName.0; sysContact and sysLocation are never read."""

    flow_id: str
    endpoints: Endpoints
    direction: int  # the sender (the agent): 0 the flow's client, 1 its server
    version: int  # 0 SNMPv1, 1 SNMPv2c
    pdu: str  # response, trap, snmpv2-trap, inform
    sys_descr: str | None = None  # free text: withheld when it reads as person data
    sys_object_id: str | None = None  # dotted decimal, e.g. 1.3.6.1.4.1.8072.3.2.10
    sys_name: str | None = None
    enterprise: str | None = None  # SNMPv1 Trap-PDU enterprise
    agent_address: str | None = None  # SNMPv1 Trap-PDU agent-addr (the agent may be proxied)
    # "sysDescr", "sysName": sent, but not kept because they read as person data
    withheld: list[str] = msgspec.field(default_factory=list)


class SnmpV3Message(Event, tag="snmpv3", frozen=True, kw_only=True):
    """The security of an SNMPv3 message (RFC 3412 §6.4 msgFlags, levels RFC 3411 §3.4.3); of
    the rest only the PDU type is read, when the scoped PDU is in clear."""

    flow_id: str
    endpoints: Endpoints
    direction: int  # the sender: 0 the flow's client, 1 its server
    security_level: str  # noAuthNoPriv, authNoPriv, authPriv
    reportable: bool  # reportableFlag: a request or an InformRequest, not a Response or Trap
    pdu: str | None = None  # None when encrypted (authPriv)
