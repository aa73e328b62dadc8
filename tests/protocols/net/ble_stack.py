"""A phone's HCI snoop log of a companion-app session, made by a real Bluetooth stack.

Google's Bumble (a Bluetooth host and a link-layer controller in Python) runs three devices on
one virtual radio link: a "phone" and two personal health devices. The phone's host-controller
traffic is written by Bumble's own btsnoop writer (the format of Android's HCI snoop log), so
every ATT and L2CAP byte in it comes from Bumble's GATT client and server, not from this test.

- A pulse oximeter (Nonin 3230-like): the phone discovers everything and reads every readable
  characteristic with Read Requests, at the default ATT_MTU (long strings go by Read Blob),
  including a User Data Service holding a first name and a birth date (PHI: never reported).
- A glucose meter: the phone raises the ATT_MTU to 247, finds two services by UUID (Find By
  Type Value) and reads the identity characteristics by UUID (Read By Type); the meter reads
  the phone's Device Name (the phone's, not the meter's).
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Device, DeviceConfiguration, Peer
from bumble.gatt import Characteristic, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.snoop import BtSnooper
from bumble.transport.common import AsyncPipeSink

PHONE = "F0:F0:F0:F0:F0:F0"
OXIMETER = "C4:11:22:33:44:55"  # random static addresses (two top bits set)
GLUCOSE = "D2:66:77:88:99:AA"
PHI_VALUES = ("Jane", "19790412")  # User Data Service First Name, Date of Birth (as text)
OXIMETER_DIS = {
    0x2A29: "Nonin Medical, Inc.",
    0x2A24: "3230",
    0x2A25: "502644788",
    0x2A27: "Rev C, board 4410-000-03 assy 12",  # longer than 22 octets: Read Blob
    0x2A26: "1.2.0",
    0x2A28: "2.0",
}
GLUCOSE_DIS = {
    0x2A29: "Roche Diabetes Care GmbH, Mannheim",  # longer than one default-MTU response
    0x2A24: "Accu-Chek Guide",
    0x2A26: "v3.5.0",
}
GLUCOSE_PNP = struct.pack("<BHHH", 1, 0x0170, 0x0002, 0x0305)  # SIG vendor 0x0170 (Roche)
PHONE_NAME = "Pixel 8 of the ward"
OXIMETER_NAME = "Nonin3230_502644788"
GLUCOSE_NAME = "meter+01"


def _readable(uuid: int, value: bytes) -> Characteristic:
    return Characteristic(
        f"{uuid:04X}", Characteristic.Properties.READ, Characteristic.READABLE, value
    )


def _dis(values: dict[int, str], extra: list[Characteristic] | None = None) -> Service:
    chars = [_readable(u, v.encode()) for u, v in values.items()]
    return Service("180A", chars + (extra or []))


def _device(link: LocalLink, address: str, name: str) -> Device:
    ctl = Controller(name, link=link, public_address=address)
    cfg = DeviceConfiguration(name=name, address=Address(address))
    return Device(config=cfg, host=Host(ctl, AsyncPipeSink(ctl)))


async def _session(out: Path) -> None:
    link = LocalLink()
    phone = _device(link, PHONE, PHONE_NAME)
    oxi = _device(link, OXIMETER, OXIMETER_NAME)
    meter = _device(link, GLUCOSE, GLUCOSE_NAME)
    oxi.add_services(
        [
            _dis(OXIMETER_DIS),
            Service(  # Pulse Oximeter Service: PLX Continuous Measurement (notified)
                "1822",
                [Characteristic("2A5F", Characteristic.Properties.NOTIFY, 0, b"\0" * 5)],
            ),
            Service(  # User Data Service: First Name, Date of Birth (GATT Supplement 3.71/3.56)
                "181C",
                [
                    _readable(0x2A8A, PHI_VALUES[0].encode()),
                    _readable(0x2A85, PHI_VALUES[1].encode()),
                ],
            ),
        ]
    )
    meter.add_services([_dis(GLUCOSE_DIS, [_readable(0x2A50, GLUCOSE_PNP)]), Service("1808", [])])
    with out.open("wb") as f:
        phone.host.snooper = BtSnooper(f)
        for d in (phone, oxi, meter):
            await d.power_on()
        for dev in (oxi, meter):
            dev.advertising_data = bytes(
                AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, dev.name.encode())])
            )
        # the oximeter: full discovery, every readable value read (default ATT_MTU 23)
        await oxi.start_advertising(advertising_interval_min=1.0)
        conn = await phone.connect(oxi.random_address)
        peer = Peer(conn)
        await peer.discover_services()
        for s in peer.services:
            await s.discover_characteristics()
        for s in peer.services:
            for c in s.characteristics:
                if c.properties & Characteristic.Properties.READ:
                    await c.read_value()
        await conn.disconnect()
        await oxi.stop_advertising()
        # the glucose meter: MTU 247, services and values found by UUID
        await meter.start_advertising(advertising_interval_min=1.0)
        seen = asyncio.get_running_loop().create_future()
        meter.once("connection", seen.set_result)
        conn = await phone.connect(meter.random_address)
        meter_side = await seen
        peer = Peer(conn)
        await peer.request_mtu(247)
        await peer.discover_service("1808")
        await peer.discover_service("180A")
        for uuid in (0x2A29, 0x2A24, 0x2A26, 0x2A50):
            await peer.read_characteristics_by_uuid(_uuid(uuid))
        await Peer(meter_side).read_characteristics_by_uuid(_uuid(0x2A00))  # the phone's name
        await conn.disconnect()
        await asyncio.sleep(0.05)


def _uuid(u: int):
    from bumble.core import UUID

    return UUID.from_16_bits(u)


def make_snoop_log(out: Path) -> Path:
    """Run the session; the phone's HCI traffic as a btsnoop (H4) file at `out`."""
    asyncio.run(asyncio.wait_for(_session(out), timeout=60))
    return out
