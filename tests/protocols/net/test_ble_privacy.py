"""BLE privacy: rotating resolvable private addresses resolved to one device each.

The captures are a phone's HCI snoop logs made by a real Bluetooth stack (Bumble's host,
controller, SMP and btsnoop writer; see ble_privacy_stack.py): two health devices with LE
privacy change address between two scans; in one log the glucose meter bonds with the phone and
distributes its IRK. Resolution is checked against the Core specification's sample data, against
Bumble's own address generation, and against tshark's SMP and HCI dissectors on the same files.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from ble_privacy_stack import (
    METER,
    METER_IRK_LE,
    METER_NAME,
    THERMOMETER,
    THERMOMETER_IRK_LE,
    THERMOMETER_NAME,
    Session,
    make_log,
)
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.capture.hci_linktypes import LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR
from medsentry.events.ble import BleAddressResolved
from medsentry.protocols import ble_gatt, ble_hci, ble_privacy
from medsentry.protocols.base import ParseError
from medsentry.protocols.ble_privacy import KEYRING, ah, is_resolvable, resolves

pytestmark = pytest.mark.xdist_group("ble_gatt")  # Bumble sessions: one worker

IRK_TEXTS = [k.hex() for k in (METER_IRK_LE, THERMOMETER_IRK_LE)] + [
    k[::-1].hex() for k in (METER_IRK_LE, THERMOMETER_IRK_LE)
]


@pytest.fixture(scope="module")
def bonding(tmp_path_factory) -> Session:
    return make_log(tmp_path_factory.mktemp("blep") / "bonding.btsnoop", bond=True)


@pytest.fixture(scope="module")
def adverts(tmp_path_factory) -> Session:
    return make_log(tmp_path_factory.mktemp("blep") / "adverts.btsnoop", bond=False)


def _events(path: Path) -> list:
    from medsentry.pipeline import Pipeline, ScanConfig

    out: list = []
    Pipeline(ScanConfig()).scan_files([path], out.extend)
    return out


def _resolved(events) -> dict[str, tuple[str, bool, str]]:
    return {
        e.address: (e.identity_address, e.identity_address_random, e.resolved_by)
        for e in events
        if isinstance(e, BleAddressResolved)
    }


def _scan(path: Path, db: str, *extra: str):
    from medsentry.cli import main as cli

    return CliRunner().invoke(cli, ["scan", str(path), "--db", db, "-q", *extra])


def _devices(db: str) -> tuple[dict[str, dict], str]:
    from medsentry.cli import main as cli

    res = CliRunner().invoke(cli, ["devices", "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    return {d["device_id"]: d for d in json.loads(res.output)}, res.output


def _no_key_anywhere(tmp_path: Path, *outputs: str) -> None:
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for key in IRK_TEXTS:
        assert key.encode() not in blob and key.upper().encode() not in blob
        assert bytes.fromhex(key) not in blob
        for out in outputs:
            assert key not in out.lower()


# -- the address hash function --


def test_ah_matches_the_core_specification_sample() -> None:
    """Core Vol 3 Part H Appendix D.7: IRK ec0234a3...0a397d9b, prand 708194 -> 0dfbaa."""
    irk = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
    assert ah(irk, bytes.fromhex("708194")) == bytes.fromhex("0dfbaa")
    assert resolves(irk, "70:81:94:0d:fb:aa")
    assert not resolves(irk, "70:81:94:0d:fb:ab")
    assert not resolves(irk, "30:81:94:0d:fb:aa")  # top bits 0b00: non-resolvable private


def test_addresses_bumble_generates_resolve_under_their_key_only() -> None:
    from bumble.hci import Address

    for i in range(64):
        irk_le, other_le = os.urandom(16), os.urandom(16)
        addr = str(Address.generate_private_address(irk_le)).lower()
        assert is_resolvable(addr), addr
        assert resolves(irk_le[::-1], addr), (i, addr)
        assert not resolves(other_le[::-1], addr)
    assert not is_resolvable("c4:11:22:33:44:55")  # random static (0b11)
    assert not is_resolvable("00:1b:2c:3d:4e:5f")


# -- a real stack's bonding --


def test_bonding_resolves_every_private_address_of_the_bonded_device(bonding: Session) -> None:
    meter, thermo = bonding.rpas[METER_NAME], bonding.rpas[THERMOMETER_NAME]
    assert len(set(meter)) == 2 and len(set(thermo)) == 2  # each changed address once
    got = _resolved(_events(bonding.path))
    assert got == {rpa: (METER.lower(), False, "smp") for rpa in meter}
    assert not set(thermo) & set(got)  # never bonded: nothing resolves its addresses


def test_resolution_agrees_with_tshark(bonding: Session) -> None:
    """tshark's SMP dissector shows the meter's Identity Information and Identity Address
    Information; every advertising address tshark shows under the meter's name resolves with
    that key (in the octet order SMP sends), and no thermometer address does."""
    rows = tshark(bonding.path, "btsmp.opcode == 0x08 || btsmp.opcode == 0x09",
                  "btsmp.opcode", "btsmp.id_resolving_key", "btsmp.bd_addr")  # fmt: skip
    irks = [bytes.fromhex(r[1]) for r in rows if r[0] == "0x08" and int(r[1], 16)]
    addrs = [r[2] for r in rows if r[0] == "0x09"]
    assert irks == [METER_IRK_LE] and METER.lower() in addrs
    adv = tshark(bonding.path, "bthci_evt.le_meta_subevent == 0x0d",
                 "bthci_evt.bd_addr", "btcommon.eir_ad.entry.device_name")  # fmt: skip
    by_name: dict[str, set[str]] = {}
    for addr, name in adv:
        by_name.setdefault(name, set()).add(addr)
    assert by_name[METER_NAME] == set(bonding.rpas[METER_NAME])
    assert all(resolves(irks[0][::-1], a) for a in by_name[METER_NAME])
    assert not any(resolves(irks[0][::-1], a) for a in by_name[THERMOMETER_NAME])
    assert set(_resolved(_events(bonding.path))) == by_name[METER_NAME]


def test_inventory_keeps_one_device_per_identity(tmp_path: Path, bonding: Session) -> None:
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    res = _scan(bonding.path, db)
    assert res.exit_code == 0, res.output
    devices, listing = _devices(db)
    meter_id = f"ble:{METER.lower()}"
    thermo_ids = {f"ble:{a}" for a in bonding.rpas[THERMOMETER_NAME]}
    assert set(devices) == {meter_id} | thermo_ids  # the unresolved one: one per address
    meter = devices[meter_id]
    assert meter["category"] == "remote-monitoring.glucose-meter"
    from medsentry.inventory import oui

    maker = oui.lookup(METER.lower())
    assert maker is not None and meter["mac"] == METER.lower()  # a public identity: an OUI
    from medsentry.cli import main as cli

    shown = CliRunner().invoke(cli, ["device", meter_id, "--db", db, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["private_addresses"] == bonding.rpas[METER_NAME]
    # an analyst holding one of its private addresses finds the device by it
    by_rpa = CliRunner().invoke(cli, ["device", bonding.rpas[METER_NAME][1].upper(), "--db", db])
    assert by_rpa.exit_code == 0, by_rpa.output
    assert meter_id in by_rpa.output and "private addresses" in by_rpa.output
    from medsentry.inventory.state import decode_state
    from medsentry.inventory.store import load_states
    from medsentry.store import open_store

    with open_store(db) as store, store.engine.connect() as conn:
        obs = decode_state(load_states(conn, [meter_id])[meter_id]).observations
    assert set(obs["ble.address_resolved_by"]) == {"smp"}
    assert "ble.address_type" not in obs  # the identity is public; the RPAs' type is not its
    _no_key_anywhere(tmp_path, res.output, listing, shown.output, by_rpa.output)


def test_a_private_address_stored_before_the_bonding_joins_its_device(
    tmp_path: Path, bonding: Session
) -> None:
    """A log cut in two (Android keeps the older half as btsnoop_hci.log.last): the first part
    holds only the meter's first address; the bonding is in the second part, which resolves
    it. The device stored under that address becomes the identity's, its history with it."""
    raw = bonding.path.read_bytes()
    cut, i = None, 16
    while i < len(raw):
        incl = struct.unpack(">I", raw[i + 4 : i + 8])[0]
        pkt = raw[i + 24 : i + 24 + incl]
        if pkt[:1] == b"\x04" and pkt[1] == 0x3E and pkt[3] in (0x01, 0x0A):  # LE connection
            cut = i
            break
        i += 24 + incl
    assert cut is not None
    first, second = tmp_path / "part1.btsnoop", tmp_path / "part2.btsnoop"
    first.write_bytes(raw[:cut])
    second.write_bytes(raw[:16] + raw[cut:])
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    rpa1 = bonding.rpas[METER_NAME][0]
    assert _scan(first, db).exit_code == 0
    before, _ = _devices(db)
    assert f"ble:{rpa1}" in before and f"ble:{METER.lower()}" not in before
    assert _scan(second, db).exit_code == 0
    after, _ = _devices(db)
    assert f"ble:{rpa1}" not in after
    assert f"ble:{METER.lower()}" in after
    from medsentry.cli import main as cli

    hist = CliRunner().invoke(cli, ["device", f"ble:{METER.lower()}", "--db", db,
                                    "--format", "json"])  # fmt: skip
    assert hist.exit_code == 0, hist.output
    got = json.loads(hist.output)
    assert rpa1 in got["private_addresses"]
    assert [c["change"] for c in got["changes"]].count("device_added") == 1  # its history kept


# -- keys the user gives --


def _key_file(path: Path, *lines: str) -> Path:
    path.write_text("# identity  type  IRK (most significant octet first)\n" + "\n".join(lines))
    return path


def test_key_file_resolves_a_capture_without_bonding(tmp_path: Path, adverts: Session) -> None:
    keys = _key_file(
        tmp_path / "keys.txt",
        f"{METER} public {METER_IRK_LE[::-1].hex()}",
        f"{THERMOMETER.lower()} public {THERMOMETER_IRK_LE[::-1].hex().upper()}",
    )
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    plain = _scan(adverts.path, db.replace("ms.db", "plain.db"))
    assert plain.exit_code == 0, plain.output
    without, _ = _devices(db.replace("ms.db", "plain.db"))
    assert len(without) == 4  # two devices, two addresses each
    res = _scan(adverts.path, db, "--ble-keys", str(keys))
    assert res.exit_code == 0, res.output
    devices, listing = _devices(db)
    assert set(devices) == {f"ble:{METER.lower()}", f"ble:{THERMOMETER.lower()}"}
    assert devices[f"ble:{THERMOMETER.lower()}"]["category"] == ("remote-monitoring.thermometer")
    assert not ble_privacy.KEYRING.given  # the scan's keys are forgotten after it
    keys.unlink()  # the key file is the user's; nothing of it may be in what medsentry wrote
    _no_key_anywhere(tmp_path, res.output, listing)


@pytest.mark.parametrize(
    "line",
    [
        f"{METER} public {METER_IRK_LE.hex()[:30]}",  # 15 octets
        f"{METER} static {METER_IRK_LE.hex()}",
        f"{METER[:-3]} public {METER_IRK_LE.hex()}",
        f"{METER} public {'00' * 16}",
    ],
)
def test_a_bad_key_file_stops_before_any_work(tmp_path: Path, adverts: Session, line: str):
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    assert _scan(adverts.path, db).exit_code == 0
    before, _ = _devices(db)
    res = _scan(adverts.path, db, "--ble-keys", str(_key_file(tmp_path / "k.txt", line)))
    assert res.exit_code == 2
    assert "line 2" in res.output and "Traceback" not in res.output
    assert METER_IRK_LE.hex()[:20] not in res.output  # the message never repeats the key
    assert _devices(db)[0] == before
    assert not ble_privacy.KEYRING.given
    missing = _scan(adverts.path, db, "--ble-keys", str(tmp_path / "nope.txt"))
    assert missing.exit_code == 2 and "Traceback" not in missing.output


# -- the controller's own resolution --


def _enhanced_connection(peer_type: int, peer: bytes, peer_rpa: bytes) -> bytes:
    """LE Enhanced Connection Complete (Vol 4 Part E §7.7.65.10), H4 event, as 201 frames."""
    body = (
        bytes([0x0A, 0x00])  # subevent, Status
        + struct.pack("<HBB", 0x0040, 0x00, peer_type)  # handle, Role (central), type
        + peer[::-1]
        + bytes(6)  # Local_Resolvable_Private_Address
        + peer_rpa[::-1]
        + struct.pack("<HHHB", 24, 0, 400, 0)
    )
    return struct.pack(">I", 1) + bytes([0x04, 0x3E, len(body)]) + body


def test_enhanced_connection_complete_names_the_identity(tmp_path: Path) -> None:
    identity, rpa = bytes.fromhex("001b2c3d4e5f"), bytes.fromhex("5a1e79b81419")
    frame = _enhanced_connection(0x02, identity, rpa)
    KEYRING.reset()
    evs = ble_hci.dissect(LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR, 0, frame, 7, 0)
    assert _resolved(evs) == {"5a:1e:79:b8:14:19": ("00:1b:2c:3d:4e:5f", False, "controller")}
    assert ble_hci.dissect(LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR, 0, frame, 8, 0)[1:] == []
    # an unresolved peer (type 0x01) and an all-zero Peer_RPA give no resolution
    KEYRING.reset()
    for f in (
        _enhanced_connection(0x01, rpa, bytes(6)),
        _enhanced_connection(0x02, identity, bytes(6)),
    ):
        assert not _resolved(ble_hci.dissect(LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR, 0, f, 9, 0))
    # tshark reads the same fields from the same bytes
    from medsentry.capture.writer import PcapWriter

    pcap = tmp_path / "enh.pcap"
    with PcapWriter(pcap, linktype=LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR) as w:
        w.write(frame, 7)
    rows = tshark(pcap, "bthci_evt.le_meta_subevent == 0x0a", "bthci_evt.le_peer_address_type",
                  "bthci_evt.bd_addr", "bthci_evt.le_peer_rpa")  # fmt: skip
    assert rows == [["0x02", "00:1b:2c:3d:4e:5f", "5a:1e:79:b8:14:19"]]


# -- per capture, and hostile bytes --


def test_each_capture_starts_with_no_learned_keys_and_no_open_links() -> None:
    from medsentry.flows.engine import EngineConfig, FlowEngine
    from medsentry.protocols import registry

    registry.load()
    ble_gatt._LINKS[(0, 0, 1)] = ble_gatt._Link(peer="5a:1e:79:b8:14:19", random=True)
    KEYRING.learned.append(ble_privacy._Key(bytes(range(16)), "00:1b:2c:3d:4e:5f", False, "smp"))
    KEYRING.unresolved["5a:1e:79:b8:14:19"] = (1, 1002)
    FlowEngine(EngineConfig(), frame_dissectors=list(registry.FRAME_DISSECTORS))
    assert not ble_gatt._LINKS and not KEYRING.learned and not KEYRING.unresolved


def _acl(handle: int, cid: int, payload: bytes) -> bytes:
    """A received HCI ACL packet (201 framing, direction 1) with one L2CAP basic frame."""
    l2 = struct.pack("<HH", len(payload), cid) + payload
    return struct.pack(">I", 1) + b"\x02" + struct.pack("<HH", handle | 0x2000, len(l2)) + l2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), max_size=6))
def test_smp_dissection_survives_hostile_bytes(pdus: list[bytes]) -> None:
    KEYRING.reset()
    ble_gatt.reset()
    conn = _enhanced_connection(0x01, bytes.fromhex("5a1e79b81419"), bytes(6))
    ble_gatt.dissect(LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR, 0, conn, 1, 0)
    for p in pdus:
        try:
            out = ble_gatt.dissect(LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR, 0, _acl(0x40, 6, p), 2, 0)
        except ParseError:
            continue
        for e in out:
            assert isinstance(e, BleAddressResolved)
            assert e.address == "5a:1e:79:b8:14:19"
            assert is_resolvable(e.address)
