"""What a detector knows besides the event: the clock, the learning period and the devices.

Devices come from the inventory (`medsentry.inventory.store.load_devices`) when it has run;
an address the inventory does not know is keyed "ip:<addr>" (or "mac:<mac>" for layer 2),
the same keys the inventory uses, so alerts join devices either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

import msgspec

from medsentry.detect.base import EvidenceRef, event_kind
from medsentry.events.base import Event

NS = 1_000_000_000


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The slice of an inventory `Device` detectors use."""

    device_id: str
    category: str | None = None
    medical: bool = False
    criticality: str = "none"
    hostname: str | None = None


@lru_cache(maxsize=65536)
def is_external(addr: str) -> bool:
    """A public (globally routable) address: RFC 6890 special-purpose ranges are not."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


def event_endpoints(event: Event) -> tuple[str | None, str | None, str | None, str | None]:
    """(client ip, server ip, client mac, server mac) of an event, where it has them."""
    ep = getattr(event, "endpoints", None)
    if ep is not None:
        return ep.client, ep.server, ep.client_mac, ep.server_mac
    client = getattr(event, "client", None)
    if client is not None:
        return (
            client,
            getattr(event, "server", None),
            getattr(event, "client_mac", None),
            getattr(event, "server_mac", None),
        )
    sender = getattr(event, "sender_ip", None)
    if sender is not None:  # ArpObserved
        return sender, getattr(event, "target_ip", None), getattr(event, "sender_mac", None), None
    host = getattr(event, "source_ip", None)  # SyslogMessage
    return host, None, None, None


class DetectContext:
    """Shared by all detectors of one engine."""

    def __init__(
        self,
        devices: Iterable[DeviceInfo] = (),
        *,
        learning_ns: int = 0,
        hostnames: dict[str, str] | None = None,
    ) -> None:
        self.by_ip: dict[str, DeviceInfo] = {}
        self.by_mac: dict[str, DeviceInfo] = {}
        self.by_host: dict[str, DeviceInfo] = dict(hostnames or {})  # type: ignore[arg-type]
        self.set_devices(devices)
        self.learning_ns = learning_ns
        self.start_ns: int | None = None  # first event time ever seen (persisted)
        self.now_ns = 0
        self.forced_learning: bool | None = None  # set by a caller (benchmarks, CLI)
        self.capture_id: str | None = None

    # --- devices ----------------------------------------------------------------------------
    def set_devices(self, devices: Iterable[DeviceInfo]) -> None:
        self.by_ip.clear()
        self.by_mac.clear()
        for d in devices:
            if d.device_id.startswith("mac:"):
                self.by_mac[d.device_id[4:]] = d
            if d.device_id.startswith("ip:"):
                self.by_ip.setdefault(d.device_id[3:], d)
            if d.hostname:
                self.by_host[d.hostname.lower()] = d

    def add_device(self, device: DeviceInfo, ips: Iterable[str] = (), mac: str | None = None):
        for ip in ips:
            self.by_ip[ip] = device
        if mac:
            self.by_mac[mac] = device
        if device.hostname:
            self.by_host[device.hostname.lower()] = device

    def device(self, ip: str | None, mac: str | None = None) -> DeviceInfo | None:
        """The inventory's device for an address, or None when the inventory does not know it."""
        if ip is not None:
            d = self.by_ip.get(ip)
            if d is not None:
                return d
        if mac is not None:
            return self.by_mac.get(mac)
        return None

    def device_id(self, ip: str | None, mac: str | None = None) -> str | None:
        d = self.device(ip, mac)
        if d is not None:
            return d.device_id
        if ip:
            return f"ip:{ip}"
        if mac:
            return f"mac:{mac}"
        return None

    def device_by_host(self, host: str | None) -> DeviceInfo | None:
        if not host:
            return None
        return self.by_host.get(host.lower())

    def device_of_event(self, event: Event) -> str | None:
        """The device that acted: the client of a flow/message, the sender of ARP or a log."""
        client, _, cmac, _ = event_endpoints(event)
        host = getattr(event, "hostname", None)
        if host:
            d = self.device_by_host(host)
            if d is not None and (client is None or client not in self.by_ip):
                return d.device_id
        return self.device_id(client, cmac)

    # --- clock and learning -------------------------------------------------------------------
    def advance(self, ts_ns: int) -> None:
        if self.start_ns is None:
            self.start_ns = ts_ns
        if ts_ns > self.now_ns:
            self.now_ns = ts_ns

    @property
    def learning(self) -> bool:
        """The engine-wide learning period: from the first event ever seen, `learning_ns` long."""
        if self.forced_learning is not None:
            return self.forced_learning
        if self.start_ns is None:
            return self.learning_ns > 0
        return self.now_ns - self.start_ns < self.learning_ns

    # --- evidence -----------------------------------------------------------------------------
    def evidence(self, event: Event, ref: str | None = None) -> EvidenceRef:
        client, server, _, _ = event_endpoints(event)
        if ref is None:
            ep = getattr(event, "endpoints", None)
            if ep is not None:
                ref = f"{ep.client}:{ep.client_port} -> {ep.server}:{ep.server_port}"
            elif getattr(event, "client_port", None) is not None and client:
                ref = (
                    f"{client}:{getattr(event, 'client_port', 0)} -> "
                    f"{server}:{getattr(event, 'server_port', 0)}"
                )
            else:
                ref = f"{client or ''} -> {server or ''}".strip()
        return EvidenceRef(
            kind=event_kind(event),
            ts_ns=event.ts_ns,
            flow_id=getattr(event, "flow_id", None),
            ref=ref,
        )
