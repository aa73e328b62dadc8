"""A phone's HCI snoop log of BLE devices that use LE privacy, made by a real Bluetooth stack.

Bumble (Google's Bluetooth host and link-layer controller in Python) runs a phone and two
personal health devices with LE privacy on one virtual radio link. Each device advertises under
a resolvable private address that Bumble derives from the device's IRK (Core Vol 6 Part B
§1.3.2.2) and changes it between scans, as a real device does every few minutes. The phone's
host-controller traffic is written by Bumble's btsnoop writer (the format of Android's HCI snoop
log): every HCI, L2CAP and SMP byte comes from Bumble's own host and controller.

- `bonding`: the phone scans, connects to the glucose meter and bonds with it (LE Secure
  Connections, Just Works): the meter distributes its IRK and public identity address in SMP
  (Vol 3 Part H §3.6.4-3.6.5). Both devices then change address and the phone scans again. The
  thermometer never bonds.
- `adverts`: the phone only scans, across one address change of each device: no bonding, so
  nothing in the capture resolves the addresses (a key file does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Device, DeviceConfiguration
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.snoop import BtSnooper
from bumble.transport.common import AsyncPipeSink

PHONE = "F0:F0:F0:F0:F0:F0"
METER = "00:1B:2C:3D:4E:5F"  # public identity address (IEEE OUI 00:1B:2C)
THERMOMETER = "00:1B:2C:99:88:77"
# Bumble keeps keys least significant octet first, as SMP sends them (Vol 3 Part H §3.6.4)
METER_IRK_LE = bytes.fromhex("8f3c1a5e0b7d2946e1c8a0f3d5b7e902")
THERMOMETER_IRK_LE = bytes.fromhex("11e4c2a9075d3b8fae6c10d2f49b3a77")
METER_NAME = "Glucose 7713"
THERMOMETER_NAME = "Thermo 51"


@dataclass
class Session:
    path: Path
    rpas: dict[str, list[str]] = field(default_factory=dict)  # device name -> its RPAs, in order


def _device(link: LocalLink, address: str, name: str, irk: bytes | None) -> Device:
    ctl = Controller(name, link=link, public_address=address)
    cfg = DeviceConfiguration(name=name, address=Address(address))
    if irk is not None:
        cfg.le_privacy_enabled = True
        cfg.irk = irk
    dev = Device(config=cfg, host=Host(ctl, AsyncPipeSink(ctl)))
    dev.pairing_config_factory = lambda _conn: PairingConfig(
        sc=True,
        mitm=False,
        bonding=True,
        delegate=PairingDelegate(io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT),
    )
    return dev


async def _scan(phone: Device, devices: list[Device], session: Session) -> None:
    for d in devices:
        session.rpas.setdefault(d.name, []).append(str(d.random_address).lower())
        await d.start_advertising(own_address_type=1, advertising_interval_min=20)
    await phone.start_scanning()
    await asyncio.sleep(0.3)
    await phone.stop_scanning()
    for d in devices:
        await d.stop_advertising()


async def _rotate(devices: list[Device]) -> None:
    for d in devices:
        old = d.random_address
        if not await d.update_rpa() or d.random_address == old:
            raise RuntimeError(f"{d.name} did not change its private address")


async def _session(out: Path, bond: bool) -> Session:
    session = Session(out)
    link = LocalLink()
    phone = _device(link, PHONE, "phone", None)
    meter = _device(link, METER, METER_NAME, METER_IRK_LE)
    thermo = _device(link, THERMOMETER, THERMOMETER_NAME, THERMOMETER_IRK_LE)
    with out.open("wb") as f:
        phone.host.snooper = BtSnooper(f)
        for d in (phone, meter, thermo):
            await d.power_on()
        for d, uuid in ((meter, "1808"), (thermo, "1809")):  # Glucose, Health Thermometer
            d.advertising_data = bytes(
                AdvertisingData(
                    [
                        (AdvertisingData.COMPLETE_LOCAL_NAME, d.name.encode()),
                        (AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                         bytes.fromhex(uuid)[::-1]),
                    ]
                )
            )  # fmt: skip
        await _scan(phone, [meter, thermo], session)
        if bond:
            await meter.start_advertising(own_address_type=1, advertising_interval_min=20)
            conn = await phone.connect(meter.random_address)
            await conn.pair()
            await conn.disconnect()
            await meter.stop_advertising()
            await asyncio.sleep(0.05)
        await _rotate([meter, thermo])
        await _scan(phone, [meter, thermo], session)
        await asyncio.sleep(0.05)
    return session


def make_log(out: Path, bond: bool) -> Session:
    """Run the session; the phone's HCI traffic as a btsnoop (H4) file at `out`."""
    return asyncio.run(asyncio.wait_for(_session(out, bond), timeout=60))
