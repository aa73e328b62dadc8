"""BLE GATT identity in a phone's HCI snoop log: what a connected health device says it is.

The log is made by a real Bluetooth stack (Bumble: its GATT client and server, its controller,
its btsnoop writer; see ble_stack.py), scanned with `medsentry scan`, and compared with
tshark's btatt dissector on the same file. The same bytes are then re-framed as the other HCI
link types (201 with its direction header, 254 Linux monitor) and with L2CAP PDUs split over
several ACL fragments (Core Vol 4 Part E §5.4.2), which must change nothing.
"""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from ble_stack import (
    GLUCOSE,
    GLUCOSE_DIS,
    OXIMETER,
    OXIMETER_DIS,
    OXIMETER_NAME,
    PHI_VALUES,
    PHONE_NAME,
    make_snoop_log,
)
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.capture.reader import open_capture
from medsentry.events.ble import BleGattServices, BleGattValue
from medsentry.protocols import ble_gatt
from medsentry.protocols.base import ParseError
from medsentry.store import iter_events, open_store

pytestmark = pytest.mark.xdist_group("ble_gatt")  # one Bumble session per worker


@pytest.fixture(scope="module")
def snoop(tmp_path_factory) -> Path:
    return make_snoop_log(tmp_path_factory.mktemp("ble") / "companion.btsnoop")


def _records(path: Path) -> list[tuple[int, bytes]]:
    """btsnoop records (RFC 1761 layout): (flags, H4 packet)."""
    raw = path.read_bytes()
    assert raw[:8] == b"btsnoop\0" and struct.unpack(">II", raw[8:16]) == (1, 1002)
    out, i = [], 16
    while i < len(raw):
        _, incl, flags, _, _ = struct.unpack(">IIIIQ", raw[i : i + 24])
        out.append((flags, raw[i + 24 : i + 24 + incl]))
        i += 24 + incl
    return out


def _values(events) -> set[tuple[str, str, str]]:
    return {(e.peer_address, e.uuid, e.value) for e in events if isinstance(e, BleGattValue)}


def _services(events) -> set[tuple[str, int]]:
    return {
        (e.peer_address, u)
        for e in events
        if isinstance(e, BleGattServices)
        for u in e.service_uuids16
    }


def _dissect(lt: int, frames: list[bytes]) -> list:
    ble_gatt.reset()
    return [e for f in frames for e in ble_gatt.dissect(lt, 0, f, 1, 0)]


EXPECTED = {(OXIMETER.lower(), f"0x{u:04X}", v) for u, v in OXIMETER_DIS.items()} | {
    (GLUCOSE.lower(), f"0x{u:04X}", v) for u, v in GLUCOSE_DIS.items()
}


def test_scan_reads_what_each_device_says_and_nothing_else(tmp_path: Path, snoop: Path) -> None:
    from medsentry.cli import main as cli

    db_path = tmp_path / "ms.db"
    db = f"sqlite:///{db_path}"
    res = CliRunner().invoke(cli, ["scan", str(snoop), "--db", db])
    assert res.exit_code == 0, res.output
    store = open_store(db)
    evs = list(iter_events(store, kinds=["ble_gatt", "ble_gatt_svc"]))
    values = _values(evs)
    assert values >= EXPECTED  # the Read Blob continuation and the Read By Type paths
    assert (OXIMETER.lower(), "0x2A00", OXIMETER_NAME) in values
    assert (GLUCOSE.lower(), "0x2A50", "bluetooth:0x0170:0x0002:0x0305") in values
    assert {v[1] for v in values} <= {f"0x{u:04X}" for u in ble_gatt.IDENTITY}
    assert _services(evs) >= {(OXIMETER.lower(), 0x1822), (GLUCOSE.lower(), 0x1808)}
    (oxi,) = [
        e for e in evs if isinstance(e, BleGattServices) and "Pulse Oximeter" in e.service_names
    ]
    assert oxi.health_services == ["Pulse Oximeter"] and oxi.peer_address_random
    # PHI (User Data Service) and the phone's own name (its GATT server, read by the meter)
    # are nowhere: not in the database, not in any output
    res2 = CliRunner().invoke(cli, ["devices", "--db", db, "--format", "json"])
    assert res2.exit_code == 0, res2.output
    store.engine.dispose()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ms.db"))
    for secret in (*PHI_VALUES, PHONE_NAME):
        assert secret.encode() not in blob
        assert secret not in res.output and secret not in res2.output
    devices = {d["device_id"]: d for d in json.loads(res2.output)}
    oximeter, meter = devices[f"ble:{OXIMETER.lower()}"], devices[f"ble:{GLUCOSE.lower()}"]
    assert oximeter["category"] == "remote-monitoring.pulse-oximeter"
    assert oximeter["vendor"] == "Nonin" and oximeter["model"] == "3230"
    assert oximeter["software"] == "1.2.0"  # the firmware revision before the software's
    assert meter["category"] == "remote-monitoring.glucose-meter"
    assert meter["vendor"] == "Roche" and meter["model"] == "Accu-Chek Guide"
    assert meter["software"] == "v3.5.0"
    assert "ble-gatt-server" in meter["roles"]
    assert set(devices) == {f"ble:{OXIMETER.lower()}", f"ble:{GLUCOSE.lower()}"}


FIELDS = {
    "btatt.manufacturer_string": 0x2A29,
    "btatt.model_number_string": 0x2A24,
    "btatt.serial_number_string": 0x2A25,
    "btatt.hardware_revision_string": 0x2A27,
    "btatt.firmware_revision_string": 0x2A26,
    "btatt.software_revision_string": 0x2A28,
}


def test_values_match_tshark(snoop: Path) -> None:
    """tshark's btatt dissector follows the same discovery and reassembles the same Read
    Blob values: per characteristic, the values it shows are the ones medsentry reports."""
    rows = tshark(snoop, "btatt", "bthci_acl.src.bd_addr", *FIELDS)
    theirs = set()
    for src, *vals in rows:
        for uuid, v in zip(FIELDS.values(), vals, strict=True):
            if v:
                theirs.add((src, f"0x{uuid:04X}", v))
    ours = {
        v
        for v in _values(_dissect(1002, [_btsnoop(f, fl) for fl, f in _records(snoop)]))
        if v[1] in {f"0x{u:04X}" for u in FIELDS.values()}
    }
    assert ours == theirs and len(ours) == 9


def _btsnoop(h4: bytes, flags: int) -> bytes:
    return struct.pack(">IIQ", flags, 0, 0) + h4  # the frame medsentry's reader hands over


def _fragment(h4: bytes, size: int = 9) -> list[bytes]:
    """An ACL packet's L2CAP PDU re-sent in fragments of `size` octets (PB 0b10, then 0b01)."""
    if h4[0] != 0x02:
        return [h4]
    hf, dlen = struct.unpack("<HH", h4[1:5])
    data, out = h4[5 : 5 + dlen], []
    for i in range(0, len(data), size):
        pb = (0b10 if i == 0 else 0b01) << 12
        part = data[i : i + size]
        out.append(b"\x02" + struct.pack("<HH", (hf & 0x0FFF) | pb, len(part)) + part)
    return out


def _write_pcap(path: Path, lt: int, frames: list[bytes]) -> Path:
    """A classic pcap file (struct, not medsentry's writer; text2pcap adds its own header
    to link type 201)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))
    return path


def _spans(batch) -> list[tuple[int, int]]:
    return [(int(batch.off[i]), int(batch.caplen[i])) for i in range(len(batch))]


def _monitor(h4: bytes, flags: int) -> bytes | None:
    op = {0x04: 3, 0x02: 4 if not flags & 1 else 5, 0x01: 2}.get(h4[0])
    return None if op is None else struct.pack(">HH", 0, op) + h4[1:]


def _pklg(path: Path, recs: list[tuple[int, bytes]], big: bool) -> Path:
    """The same HCI packets as an Apple PacketLogger file (Wireshark's packetlogger.c layout):
    length, seconds, microseconds, then the PacketLogger type (0 command, 1 event, 2/3 ACL
    sent/received) in place of the H4 indicator."""
    out = []
    for i, (fl, h4) in enumerate(recs):
        kind = {0x01: 0x00, 0x04: 0x01, 0x02: 0x03 if fl & 1 else 0x02}.get(h4[0])
        if kind is not None:
            out.append(struct.pack(">III" if big else "<III", 8 + len(h4), 1_700_000_000, i))
            out.append(bytes([kind]) + h4[1:])
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.parametrize(
    "form", ["btsnoop-fragmented", "pcap-201", "pcap-254", "pklg-big", "pklg-little"]
)
def test_every_hci_framing_gives_the_same_values(tmp_path: Path, snoop: Path, form: str) -> None:
    recs = _records(snoop)
    base = _dissect(1002, [_btsnoop(h4, fl) for fl, h4 in recs])
    if form == "btsnoop-fragmented":
        got = _dissect(1002, [_btsnoop(p, fl) for fl, h4 in recs for p in _fragment(h4)])
    elif form.startswith("pklg"):
        path = _pklg(tmp_path / "companion.pklg", recs, form == "pklg-big")
        with open_capture(path) as rd:  # medsentry's own reader, as a scan would
            assert rd.format == "pklg" and rd.warnings == []
            got = _dissect(3001, [bytes(b.buf[o : o + c]) for b in rd for o, c in _spans(b)])
        # and Wireshark reads the file as PacketLogger and finds the same strings in it
        rows = tshark(path, "btatt", "bthci_acl.src.bd_addr", *FIELDS)
        theirs = {(src, f"0x{u:04X}", v) for src, *vals in rows
                  for u, v in zip(FIELDS.values(), vals, strict=True) if v}  # fmt: skip
        assert {v for v in _values(got) if v[1] in {t[1] for t in theirs}} == theirs
        assert len(theirs) == 9
    else:
        lt = int(form[-3:])
        frames = [
            struct.pack(">I", fl & 1) + h4 if lt == 201 else _monitor(h4, fl) for fl, h4 in recs
        ]
        pcap = _write_pcap(tmp_path / f"lt{lt}.pcap", lt, [f for f in frames if f])
        with open_capture(pcap) as rd:  # medsentry's own reader, as a scan would
            got = _dissect(lt, [bytes(b.buf[o : o + c]) for b in rd for o, c in _spans(b)])
    assert _values(got) == _values(base) and _services(got) == _services(base)
    assert _values(base) >= EXPECTED


def test_no_direction_no_values(snoop: Path) -> None:
    """Link type 187 says nothing of direction: the phone's answers and the device's cannot be
    told apart, so nothing is attributed."""
    assert _dissect(187, [h4 for _, h4 in _records(snoop)]) == []


def test_a_connection_begun_before_the_capture_is_skipped(snoop: Path) -> None:
    recs = [(fl, h4) for fl, h4 in _records(snoop) if not (h4[0] == 0x04 and h4[1] == 0x3E)]
    assert _dissect(1002, [_btsnoop(h4, fl) for fl, h4 in recs]) == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1002, 272]), st.data())
def test_fuzz_gatt_dissector(
    snoop_frames: dict[int, list[bytes]], lt: int, data: st.DataObject
) -> None:
    """Any change to any frames of a real session (the HCI log, and as a sniffer saw it):
    events of the two kinds or ParseError, and the per-capture state stays bounded."""
    frames = list(snoop_frames[lt])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(frames) - 1))
        f = bytearray(frames[i])
        for _ in range(data.draw(st.integers(0, 6)) if f else 0):
            f[data.draw(st.integers(0, len(f) - 1))] = data.draw(st.integers(0, 255))
        frames[i] = bytes(f[: data.draw(st.integers(0, len(f)))])
    ble_gatt.reset()
    for f in frames:
        with contextlib.suppress(ParseError):
            for ev in ble_gatt.dissect(lt, 0, f, 1, 0):
                assert isinstance(ev, (BleGattValue, BleGattServices))
                assert len(getattr(ev, "value", "")) <= 64
    assert len(ble_gatt._LINKS) <= ble_gatt.MAX_LINKS
    for link in ble_gatt._LINKS.values():
        assert len(link.chars) <= ble_gatt.MAX_HANDLES
        assert link.rx is None or len(link.rx) <= ble_gatt.MAX_L2CAP + 4


@pytest.fixture(scope="module")
def snoop_frames(snoop: Path) -> dict[int, list[bytes]]:
    return {
        1002: [_btsnoop(h4, fl) for fl, h4 in _records(snoop)],
        272: [_nordic(c, ll) for c, ll in _air(snoop)],
    }


@pytest.mark.parametrize("order", ["scan-then-import", "import-then-scan"])
def test_cmms_asset_matches_by_stated_serial(tmp_path: Path, snoop: Path, order: str) -> None:
    """A home-use device with a random address has no MAC or IP a CMMS list could name: the
    serial number it states (DIS Serial Number String) matches its asset record."""
    from medsentry.cli import main as cli

    db = f"sqlite:///{tmp_path / 'ms.db'}"
    cmms = tmp_path / "cmms.csv"
    cmms.write_text(
        "Asset Tag,Manufacturer,Model,Serial Number,Location\n"
        f"HOME-0042,Nonin,3230,{OXIMETER_DIS[0x2A25]},Home kit 7\n"
        "HOME-0043,Nonin,3230,502600000,Home kit 8\n"
    )
    steps = [["scan", str(snoop), "-q"], ["inventory", "import", str(cmms), "--format", "json"]]
    for step in steps if order == "scan-then-import" else steps[::-1]:
        res = CliRunner().invoke(cli, [*step, "--db", db])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        cli, ["device", f"ble:{OXIMETER.lower()}", "--db", db, "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    dev = json.loads(res.output)
    assert dev["asset"]["asset_tag"] == "HOME-0042" and dev["asset"]["location"] == "Home kit 7"
    res = CliRunner().invoke(cli, ["inventory", "reconcile", "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    rep = rep[0] if isinstance(rep, list) else rep
    assert [a["asset_tag"] for a in rep["never_seen"]] == ["HOME-0043"]


# --- the same session as a BLE sniffer saw it on the air (Core Vol 6 Part B §2) -------------


def _air(snoop: Path, encrypt: bool = False) -> list[tuple[bool | None, bytes]]:
    """The phone's HCI log re-told as link-layer packets: (central -> peripheral?, LL packet).

    Each LE Connection Complete becomes the CONNECT_IND that opened the connection (InitA the
    phone, AdvA the peer, RxAdd its address type, a fresh access address); each ACL fragment a
    data channel PDU (LLID 0b10 starting an L2CAP message, 0b01 continuing it) in the direction
    the log gives. `encrypt`: an LL_START_ENC_REQ right after each CONNECT_IND."""
    phone = bytes.fromhex("f0f0f0f0f0f0")
    aa_of: dict[int, int] = {}
    out: list[tuple[bool | None, bytes]] = []
    for flags, h4 in _records(snoop):
        if h4[:2] == b"\x04\x3e" and h4[3] == 0x01 and h4[4] == 0:  # LE Connection Complete
            handle = struct.unpack("<H", h4[5:7])[0]
            aa_of[handle] = aa = 0x50654A00 + handle
            peer, random = h4[9:15], h4[8] in (1, 3)
            lldata = struct.pack("<I", aa) + bytes(3) + b"\x02" + struct.pack("<HHHH", 6, 24, 0, 72)
            payload = phone + peer + lldata + b"\xff\xff\xff\xff\x1f" + b"\x25"
            out.append((None, _ll(0x8E89BED6, 0x05 | (0x80 if random else 0), payload)))
            if encrypt:
                out.append((True, _ll(aa, 0b11, b"\x05")))
        elif h4[0] == 0x02:
            hf, dlen = struct.unpack("<HH", h4[1:5])
            llid = 0b01 if (hf >> 12) & 0x3 == 0b01 else 0b10
            out.append((not flags & 1, _ll(aa_of[hf & 0x0FFF], llid, h4[5 : 5 + dlen])))
    return out


def _ll(aa: int, h0: int, payload: bytes) -> bytes:
    return struct.pack("<IBB", aa, h0, len(payload)) + payload + b"\0\0\0"  # CRC not checked


def _nordic(central: bool | None, ll: bytes) -> bytes:
    """LINKTYPE_NORDIC_BLE (272), nRF Sniffer protocol 3: packet id 0x02 (advertising PDU) or
    0x06 (data PDU, whose flags give CRC OK and the direction)."""
    flags = 0x01 | (0x02 if central else 0)
    event = bytes([10, flags, 37 if central is None else 5, 55]) + struct.pack("<HI", 0, 1) + ll
    pid = 0x02 if central is None else 0x06
    return b"\x00" + struct.pack("<HBHB", len(event), 3, 7, pid) + event


def _phdr(central: bool | None, ll: bytes, directed: bool = True) -> bytes:
    """LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR (256): flags CRC checked and valid, PDU type 2/3."""
    pdu_type = 0 if central is None or not directed else (2 if central else 3)
    flags = 0x0400 | 0x0800 | (pdu_type << 7)
    return bytes([0, 0xC4, 0x9C, 0]) + struct.pack("<IH", 0x8E89BED6, flags) + ll


@pytest.mark.parametrize("form", ["nordic-272", "phdr-256"])
def test_sniffed_connection_gives_the_same_values(tmp_path: Path, snoop: Path, form: str) -> None:
    base = _dissect(1002, [_btsnoop(h4, fl) for fl, h4 in _records(snoop)])
    lt = int(form[-3:])
    wrap = _nordic if lt == 272 else _phdr
    pcap = _write_pcap(tmp_path / f"air{lt}.pcap", lt, [wrap(c, ll) for c, ll in _air(snoop)])
    with open_capture(pcap) as rd:
        frames = [bytes(b.buf[o : o + c]) for b in rd for o, c in _spans(b)]
    got = _dissect(lt, frames)
    assert _values(got) == _values(base) and _services(got) == _services(base)
    assert _values(got) >= EXPECTED
    if lt == 272:  # tshark follows the connection from its CONNECT_IND to the same strings
        rows = tshark(pcap, "btatt", *FIELDS)
        theirs = {
            (f"0x{u:04X}", v)
            for row in rows
            for u, v in zip(FIELDS.values(), row, strict=True)
            if v
        }
        ours = {(u, v) for _, u, v in _values(got) if int(u, 16) in FIELDS.values()}
        assert ours == theirs and len(ours) == 9


def test_sniffed_without_direction_or_after_encryption_gives_nothing(snoop: Path) -> None:
    undirected = [_phdr(c, ll, directed=False) for c, ll in _air(snoop)]
    assert _dissect(256, undirected) == []
    encrypted = [_nordic(c, ll) for c, ll in _air(snoop, encrypt=True)]
    assert _dissect(272, encrypted) == []
