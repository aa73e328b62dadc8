"""Which device a finding belongs to: the inventory's devices when it has them, else the address.

The inventory is read through its contract (`medsentry.inventory.store.load_devices`); when
that module is not installed or holds no devices, a finding is keyed "ip:<addr>" (the form the
inventory uses for a device without a MAC).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medsentry.inventory.model import Device

if TYPE_CHECKING:
    from medsentry.store import Store


def load_inventory(store: Store) -> list[Device]:
    """The inventory's devices, or [] when no inventory is available."""
    try:
        mod = importlib.import_module("medsentry.inventory.store")
    except ImportError:
        return []
    loader = getattr(mod, "load_devices", None)
    if loader is None:
        return []
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return list(loader(store))
    except SQLAlchemyError:
        return []


class DeviceIndex:
    def __init__(self, devices: list[Device]):
        self.devices = {d.device_id: d for d in devices}
        self.by_ip: dict[str, Device] = {}
        self.by_mac: dict[str, Device] = {}
        for d in devices:
            for ip in d.ips:
                self.by_ip.setdefault(ip, d)
            if d.mac:
                self.by_mac.setdefault(d.mac.lower(), d)

    def resolve(self, ip: str | None, mac: str | None = None) -> str:
        """The device id of an address (an IP first: a MAC may be a router's)."""
        if ip is not None and ip in self.by_ip:
            return self.by_ip[ip].device_id
        if ip is None and mac is not None:
            d = self.by_mac.get(mac.lower())
            return d.device_id if d is not None else f"mac:{mac.lower()}"
        return f"ip:{ip}"

    def device(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def resolve_key(self, key: str) -> str:
        """A banner/observation key: "mac:..." or an IP address."""
        if key.startswith("mac:"):
            return self.resolve(None, key[4:])
        return self.resolve(key)
