"""BLE advertising seen at the HCI: btsnoop files (Android HCI snoop logs, datalinks 1001 H1,
1002 H4, 2001 Linux monitor) and pcaps of link types 187, 201 and 254.

HCI LE Meta events (Core Vol 4 Part E §7.7.65.2 LE Advertising Report, §7.7.65.13 LE Extended
Advertising Report) are assembled field by field, written as btsnoop/pcap files by this test
(struct, not by medsentry's writer), scanned with `medsentry scan`, and the events compared with
tshark's own dissectors (btsnoop, hci_h4, hci_mon, bthci_evt, btcommon) field by field.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError
from medsentry.events.ble import BleAdvertisement, BleConnection
from medsentry.protocols import ble_hci
from medsentry.protocols.base import ParseError
from medsentry.store import iter_events, open_store

ADDR = "c4:7c:8d:6a:12:34"  # public device address (Address_Type 0)
RANDOM_ADDR = "d1:22:33:44:55:66"
VENDOR_UUID = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"  # Nordic UART Service (vendor 128-bit)
HEALTH = [0x1810, 0x1808, 0x1822, 0x181F]  # BP, Glucose, Pulse Oximeter, CGM
EPOCH_DELTA_US = 0x00DCDDB30F2F8000
TS_US = 1_700_000_000_123_456


def _addr(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))[::-1]  # least significant octet first


def _ad(ad_type: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, ad_type]) + value


def _uuid128(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", ""))[::-1]


ADV_DATA = (
    _ad(0x01, b"\x06")
    + _ad(0x03, b"".join(struct.pack("<H", u) for u in HEALTH))
    + _ad(0xFF, struct.pack("<H", 0x020E) + b"\x01\x02")  # OMRON HEALTHCARE Co., Ltd.
    + _ad(0x09, b"BP7450")
)
SCAN_RSP_DATA = _ad(0x07, _uuid128(VENDOR_UUID)) + _ad(0x20, struct.pack("<I", 0x0000FE59))


def le_advertising_report() -> bytes:
    """HCI event packet (no H4 byte): LE Meta, subevent 0x02, two reports (ADV_IND, SCAN_RSP)."""
    reports = b""
    for etype, data, rssi in ((0x00, ADV_DATA, -58), (0x04, SCAN_RSP_DATA, -60)):
        reports += bytes([etype, 0x00]) + _addr(ADDR) + bytes([len(data)]) + data
        reports += struct.pack("b", rssi)
    params = b"\x02" + b"\x02" + reports
    return bytes([0x3E, len(params)]) + params


def le_extended_advertising_report() -> bytes:
    """LE Meta subevent 0x0D: one connectable non-legacy report from a random address."""
    data = ADV_DATA + SCAN_RSP_DATA
    report = (
        struct.pack("<H", 0x0001)  # connectable, complete
        + b"\x01"
        + _addr(RANDOM_ADDR)
        + b"\x01\x03\x02"  # primary 1M, secondary Coded, SID 2
        + struct.pack("bb", 4, -71)  # TX power, RSSI
        + struct.pack("<H", 0)
        + b"\x00"
        + bytes(6)
        + bytes([len(data)])
        + data
    )
    params = b"\x0d\x01" + report
    return bytes([0x3E, len(params)]) + params


def le_connection_complete(enhanced: bool) -> bytes:
    """§7.7.65.1 / §7.7.65.10: the host (central) connected to the BP cuff."""
    body = b"\x00" + struct.pack("<H", 0x0040) + b"\x00\x00" + _addr(ADDR)
    if enhanced:
        body += bytes(12)  # no resolvable private addresses
    body += struct.pack("<HHH", 24, 0, 400) + b"\x00"  # 30 ms, latency 0, 4 s
    params = (b"\x0a" if enhanced else b"\x01") + body
    return bytes([0x3E, len(params)]) + params


def cmd_le_set_scan_enable() -> bytes:
    return struct.pack("<HB", 0x200C, 2) + b"\x01\x00"  # HCI command, no event


def btsnoop(datalink: int, records: list[tuple[int, bytes]]) -> bytes:
    """btsnoop file: "btsnoop\\0", version 1, datalink; records (flags, packet)."""
    out = b"btsnoop\0" + struct.pack(">II", 1, datalink)
    for k, (flags, pkt) in enumerate(records):
        us = TS_US + k * 1000 + EPOCH_DELTA_US
        out += struct.pack(">IIIIq", len(pkt), len(pkt), flags, 0, us) + pkt
    return out


def btsnoop_file(tmp: Path, datalink: int) -> Path:
    events = [le_advertising_report(), le_extended_advertising_report()]
    if datalink == 1002:  # H4: type byte; flags bit 0 received, bit 1 command/event
        recs = [(2, b"\x01" + cmd_le_set_scan_enable())] + [(3, b"\x04" + e) for e in events]
    elif datalink == 1001:  # H1: type from flags
        recs = [(2, cmd_le_set_scan_enable())] + [(3, e) for e in events]
    else:  # 2001: flags = adapter index << 16 | opcode (2 command, 3 event)
        recs = [(2, cmd_le_set_scan_enable())] + [(3, e) for e in events]
    path = tmp / f"hci_{datalink}.btsnoop"
    path.write_bytes(btsnoop(datalink, recs))
    return path


def pklg(records: list[tuple[int, bytes]], big: bool = True) -> bytes:
    """PacketLogger file (Wireshark's wiretap/packetlogger.c): no file header; records of
    length (timestamp + type + packet), seconds, microseconds, then (type, packet)."""
    out = b""
    for k, (kind, pkt) in enumerate(records):
        secs, usecs = divmod(TS_US + k * 1000, 1_000_000)
        out += struct.pack(">III" if big else "<III", 9 + len(pkt), secs, usecs)
        out += bytes([kind]) + pkt
    return out


def pklg_file(tmp: Path, big: bool = True) -> Path:
    events = [le_advertising_report(), le_extended_advertising_report()]
    recs = [(0x00, cmd_le_set_scan_enable())] + [(0x01, e) for e in events]  # command, events
    path = tmp / f"hci_{'be' if big else 'le'}.pklg"
    path.write_bytes(pklg(recs, big))
    return path


def pcap_file(tmp: Path, linktype: int) -> Path:
    events = [le_advertising_report(), le_extended_advertising_report()]
    if linktype == 187:
        frames = [b"\x01" + cmd_le_set_scan_enable()] + [b"\x04" + e for e in events]
    elif linktype == 201:  # direction: 0 host->controller... low bit set = sent by host
        frames = [struct.pack(">I", 0) + b"\x01" + cmd_le_set_scan_enable()]
        frames += [struct.pack(">I", 1) + b"\x04" + e for e in events]
    else:  # 254: adapter index, opcode (big-endian)
        frames = [struct.pack(">HH", 0, 2) + cmd_le_set_scan_enable()]
        frames += [struct.pack(">HH", 0, 3) + e for e in events]
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for k, f in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000, 123_456 + k * 1000, len(f), len(f)) + f
    path = tmp / f"hci_{linktype}.pcap"
    path.write_bytes(out)
    return path


CASES = [("btsnoop", 1001), ("btsnoop", 1002), ("btsnoop", 2001)]
CASES += [("pcap", 187), ("pcap", 201), ("pcap", 254), ("pklg", 3001)]


def _build(tmp: Path, kind: str, lt: int) -> Path:
    if kind == "pklg":
        return pklg_file(tmp)
    return btsnoop_file(tmp, lt) if kind == "btsnoop" else pcap_file(tmp, lt)


def _check_events(evs: list[BleAdvertisement]) -> None:
    assert [e.pdu_type for e in evs] == ["ADV_IND", "SCAN_RSP", "AUX_ADV_IND"]
    adv, rsp, ext = evs
    assert adv.advertiser_address == rsp.advertiser_address == ADDR
    assert not adv.address_random and adv.address_type == 0 and adv.observed_via == "hci"
    assert adv.local_name == "BP7450" and adv.complete_name
    assert adv.company_id == 0x020E and adv.company_name and "OMRON" in adv.company_name.upper()
    assert adv.service_uuids16 == HEALTH
    assert set(adv.health_services) >= {"Blood Pressure", "Glucose"}
    assert len(adv.health_services) == 4
    assert (adv.rssi, rsp.rssi, ext.rssi) == (-58, -60, -71)
    assert rsp.service_uuids128 == [VENDOR_UUID] and rsp.service_uuids32 == [0xFE59]
    assert rsp.service_data_uuids == ["0x0000fe59"]
    assert ext.advertiser_address == RANDOM_ADDR and ext.address_random
    assert ext.service_uuids16 == HEALTH and ext.service_uuids128 == [VENDOR_UUID]
    assert ext.local_name == "BP7450"


@pytest.mark.parametrize(("kind", "lt"), CASES)
def test_hci_advertising_matches_tshark(tmp_path: Path, kind: str, lt: int) -> None:
    path = _build(tmp_path, kind, lt)
    with open_capture(path) as rd:
        assert rd.format == kind and rd.linktypes == [lt]
        frames = []
        for b in rd:
            for i in range(len(b)):
                o = int(b.off[i])
                frames.append((int(b.ts_ns[i]), bytes(b.buf[o : o + int(b.caplen[i])])))
        assert rd.warnings == []
    assert len(frames) == 3
    assert frames[0][0] == 1_700_000_000_123_456_000
    evs = [e for ts, f in frames for e in ble_hci.dissect(lt, 0, f, ts, 0)]
    _check_events(evs)
    rows = tshark(
        path,
        "bthci_evt.le_meta_subevent",  # display filter: the LE Meta events
        "bthci_evt.le_meta_subevent",
        "bthci_evt.bd_addr",
        "btcommon.eir_ad.entry.device_name",
        "btcommon.eir_ad.entry.uuid_16",
        "btcommon.eir_ad.entry.company_id",
        "bthci_evt.rssi",
        "btcommon.eir_ad.entry.custom_uuid_128",
        "btcommon.eir_ad.entry.uuid_32",
        "frame.time_epoch",
    )
    assert len(rows) == 2
    (sub, addrs, name, u16, cid, rssi, u128, u32, t), extended = rows
    adv, rsp, ext = evs
    assert int(sub, 0) == 0x02 and int(extended[0], 0) == 0x0D
    assert addrs.split("|") == [adv.advertiser_address, rsp.advertiser_address]
    assert name == adv.local_name
    assert [int(u, 16) for u in u16.split("|")] == adv.service_uuids16
    assert int(cid, 16) == adv.company_id
    assert [int(r) for r in rssi.split("|")] == [adv.rssi, rsp.rssi]
    assert [int(u, 16) for u in u32.split("|")] == rsp.service_uuids32
    assert round(float(t) * 1e6) == adv.ts_ns // 1000
    if kind == "pcap":  # tshark 4.0 shows no 128-bit UUID value for btsnoop input
        assert u128 == VENDOR_UUID.replace("-", "") and extended[6] == u128
    assert extended[1] == ext.advertiser_address
    assert [int(u, 16) for u in extended[3].split("|")] == ext.service_uuids16
    assert int(extended[5]) == ext.rssi


def test_scan_stores_events_and_inventory_devices(tmp_path: Path) -> None:
    from medsentry.cli import main as cli

    files = [str(_build(tmp_path, k, lt)) for k, lt in (("btsnoop", 1002), ("pcap", 254))]
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    res = CliRunner().invoke(cli, ["scan", *files, "--db", db, "-q"])
    assert res.exit_code == 0, res.output
    store = open_store(db)
    evs = [e for e in iter_events(store, kinds=["ble_adv"])]
    assert len(evs) == 6
    for lt in (1002, 254):
        group = [e for e in evs if e.linktype == lt]
        _check_events(sorted(group, key=lambda e: (e.ts_ns, e.pdu_type == "SCAN_RSP")))
    res = CliRunner().invoke(cli, ["devices", "--db", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    devices = {d["device_id"]: d for d in json.loads(res.output)}
    assert {f"ble:{ADDR}", f"ble:{RANDOM_ADDR}"} == set(devices)
    for d in devices.values():  # 0x1810 first of the health services; OMRON company id
        assert d["category"] == "remote-monitoring.blood-pressure" and d["medical"]
        assert d["vendor"] == "OMRON Healthcare"
    assert devices[f"ble:{ADDR}"]["mac"] == ADDR and devices[f"ble:{RANDOM_ADDR}"]["mac"] is None


DEXCOM_CGM_SERVICE = "f8083532-849e-531c-c594-30f1f86a4ea5"  # vendor 128-bit GATT service


def test_vendor_128bit_service_identifies_a_cgm(tmp_path: Path) -> None:
    """A CGM transmitter that advertises no SIG health service, company identifier or name,
    only its vendor 128-bit service: the inventory still knows what it is."""
    from medsentry.cli import main as cli

    # no local name either (product rules would know "Dexcom.."/"DXCM.." names)
    data = _ad(0x01, b"\x06") + _ad(0x07, _uuid128(DEXCOM_CGM_SERVICE))
    addr = "f2:11:22:33:44:55"
    report = b"\x00\x01" + _addr(addr) + bytes([len(data)]) + data + struct.pack("b", -80)
    params = b"\x02\x01" + report
    path = tmp_path / "cgm.btsnoop"
    path.write_bytes(btsnoop(1002, [(3, b"\x04" + bytes([0x3E, len(params)]) + params)]))
    db = f"sqlite:///{tmp_path / 'ms.db'}"
    res = CliRunner().invoke(cli, ["scan", str(path), "--db", db, "-q"])
    assert res.exit_code == 0, res.output
    (ev,) = iter_events(open_store(db), kinds=["ble_adv"])
    assert ev.service_uuids128 == [DEXCOM_CGM_SERVICE] and ev.service_uuids16 == []
    res = CliRunner().invoke(cli, ["devices", "--db", db, "--format", "json"])
    (dev,) = json.loads(res.output)
    assert dev["device_id"] == f"ble:{addr}"
    assert dev["category"] == "remote-monitoring.cgm" and dev["vendor"] == "Dexcom"
    assert dev["medical"]


def test_le_connection_complete_matches_tshark(tmp_path: Path) -> None:
    frames = [b"\0\0\0\1\x04" + le_connection_complete(e) for e in (False, True)]
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 201)
    for f in frames:
        out += struct.pack("<IIII", 1_700_000_000, 0, len(f), len(f)) + f
    path = tmp_path / "conn.pcap"
    path.write_bytes(out)
    evs = [e for f in frames for e in ble_hci.dissect(201, 0, f, 1, 0)]
    assert all(isinstance(e, BleConnection) for e in evs) and len(evs) == 2
    rows = tshark(
        path,
        "bthci_evt.le_meta_subevent",
        "bthci_evt.bd_addr",
        "bthci_evt.connection_handle",
        "bthci_evt.role",
        "bthci_evt.le_con_interval",
    )
    for ev, (addr, handle, role, interval) in zip(evs, rows, strict=True):
        assert ev.peer_address == addr == ADDR and not ev.peer_address_random
        assert ev.connection_handle == int(handle, 0) == 0x40
        assert ev.local_role == "central" and int(role, 0) == 0 and ev.status == 0
        assert ev.connection_interval_ms == 30.0 and int(interval, 0) == 24
    from medsentry.cli import main as cli

    db = f"sqlite:///{tmp_path / 'ms.db'}"
    res = CliRunner().invoke(cli, ["scan", str(path), "--db", db, "-q"])
    assert res.exit_code == 0, res.output
    stored = list(iter_events(open_store(db), kinds=["ble_conn"]))
    assert [e.peer_address for e in stored] == [ADDR, ADDR]


def test_pcapng_hci_interface(tmp_path: Path) -> None:
    """pcapng (as written by Wireshark/dumpcap on a Bluetooth interface): same events."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed")
    src = pcap_file(tmp_path, 201)
    ng = tmp_path / "hci.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(src), str(ng)], check=True)
    with open_capture(ng) as rd:
        evs = []
        for b in rd:
            for i in range(len(b)):
                o = int(b.off[i])
                f = bytes(b.buf[o : o + int(b.caplen[i])])
                evs += ble_hci.dissect(int(b.linktype[i]), 0, f, int(b.ts_ns[i]), 0)
        assert rd.format == "pcapng" and rd.linktypes == [201] and rd.warnings == []
    _check_events(evs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"btsnoop\0" + struct.pack(">I", 1), "btsnoop file header truncated"),
        (b"btsnoop\0" + struct.pack(">II", 2, 1002), "unsupported btsnoop version 2"),
        (b"btsnoop\0" + struct.pack(">II", 1, 1003), "btsnoop datalink 1003"),
    ],
)
def test_bad_btsnoop_header_is_a_capture_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.btsnoop"
    path.write_bytes(data)
    with pytest.raises(CaptureError, match=message):
        open_capture(path)
    res = CliRunner().invoke(
        __import__("medsentry.cli", fromlist=["main"]).main,
        ["scan", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}", "-q"],
    )
    assert res.exit_code == 2 and "bad.btsnoop" in res.output and "Traceback" not in res.output


def test_truncated_btsnoop_keeps_packets_and_warns_with_offset(tmp_path: Path) -> None:
    whole = btsnoop_file(tmp_path, 1002).read_bytes()
    cut = tmp_path / "cut.btsnoop"
    cut.write_bytes(whole[:-7])
    with open_capture(cut) as rd:
        n = sum(len(b) for b in rd)
        (w,) = rd.warnings
    assert n == 2
    # the file header, the command record, the first event record: the cut third record
    third = 16 + (24 + 1 + len(cmd_le_set_scan_enable())) + (24 + 1 + len(le_advertising_report()))
    assert "truncated" in w.message and w.offset == third
    assert "kept 2 packets" in w.message and w.source == str(cut)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CASES), st.data())
def test_fuzz_hci_dissector(case: tuple[str, int], data: st.DataObject) -> None:
    _, lt = case
    events = [le_advertising_report(), le_extended_advertising_report()]
    events += [le_connection_complete(False), le_connection_complete(True)]
    frame = bytearray(
        data.draw(
            st.sampled_from(
                {
                    187: [b"\x04" + e for e in events],
                    201: [b"\0\0\0\1\x04" + e for e in events],
                    254: [b"\0\0\0\3" + e for e in events],
                    1001: [b"\0\0\0\3" + bytes(12) + e for e in events],
                    1002: [b"\0\0\0\3" + bytes(12) + b"\x04" + e for e in events],
                    2001: [b"\0\0\0\3" + bytes(12) + e for e in events],
                    3001: [b"\x01" + e for e in events],
                }[lt]
            )
        )
    )
    for _ in range(data.draw(st.integers(0, 8))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    frame = frame[: data.draw(st.integers(0, len(frame)))]
    with contextlib.suppress(ParseError):
        for ev in ble_hci.dissect(lt, 0, bytes(frame), 1, 0):
            assert isinstance(ev, (BleAdvertisement, BleConnection))


def test_little_endian_pklg_and_its_byte_order(tmp_path: Path) -> None:
    """packetlogger.c reads either byte order; the first record's length tells which."""
    for big in (True, False):
        with open_capture(pklg_file(tmp_path, big)) as rd:
            frames = [bytes(b.buf[int(o) : int(o) + int(c)]) for b in rd
                      for o, c in zip(b.off, b.caplen, strict=True)]  # fmt: skip
            assert rd.format == "pklg" and rd.warnings == [] and len(frames) == 3
        _check_events([e for f in frames for e in ble_hci.dissect(3001, 0, f, 0, 0)])


def test_truncated_pklg_keeps_packets_and_warns_with_offset(tmp_path: Path) -> None:
    whole = pklg_file(tmp_path).read_bytes()
    cut = tmp_path / "cut.pklg"
    cut.write_bytes(whole[:-7])
    with open_capture(cut) as rd:
        n = sum(len(b) for b in rd)
        (w,) = rd.warnings
    third = (13 + len(cmd_le_set_scan_enable())) + (13 + len(le_advertising_report()))
    assert n == 2 and "truncated" in w.message and w.offset == third


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text and not a capture at all\n" * 4,
        bytes(64),
        b"\0\0\0\x09" + bytes(4) + struct.pack(">I", 1_000_000) + b"\x00",
        b"\0\0\0\x09" + bytes(8) + b"\x42",
    ],
    ids=["text", "zeros", "microseconds-out-of-range", "unknown-type"],
)
def test_not_packetlogger_is_a_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(data)
    with pytest.raises(CaptureError, match="not a pcap, pcapng, btsnoop or PacketLogger"):
        open_capture(path)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1001, 1002, 2001, 3001]), st.data())
def test_fuzz_btsnoop_reader(tmp_path_factory, datalink: int, data: st.DataObject) -> None:
    tmp = tmp_path_factory.mktemp("f")
    buf = bytearray(
        (pklg_file(tmp) if datalink == 3001 else btsnoop_file(tmp, datalink)).read_bytes()
    )
    for _ in range(data.draw(st.integers(0, 8))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    buf = buf[: data.draw(st.integers(0, len(buf)))]
    path = tmp_path_factory.mktemp("g") / "fz.btsnoop"
    path.write_bytes(bytes(buf))
    try:
        rd = open_capture(path)
    except CaptureError:
        return
    with rd:
        for b in rd:
            for i in range(len(b)):
                o = int(b.off[i])
                frame = bytes(b.buf[o : o + int(b.caplen[i])])
                with contextlib.suppress(ParseError):
                    ble_hci.dissect(int(b.linktype[i]), 0, frame, 0, 0)
        for w in rd.warnings:
            assert w.source == str(path)


def test_btmon_logs_keep_every_record_after_an_empty_one(tmp_path: Path) -> None:
    """BlueZ btmon (monitor datalink 2001) writes New Index, then Open Index with no data, for
    every running adapter; Close and Deleted Index are empty too (Linux hci_sock.c,
    bt_skb_alloc(0)). Empty records are records: every advertisement after them is read, and
    only an all-zero header (a zero-filled tail) is damage."""
    new_index = b"\x00\x01" + bytes.fromhex("665544332211") + b"hci0\0\0\0\0"  # type, bus, addr
    events = [le_advertising_report(), le_extended_advertising_report()]
    recs = [(0, new_index), (8, b""), (2, cmd_le_set_scan_enable()), (3, events[0])]
    recs += [(9, b""), (8, b""), (3, events[1])]  # Close, then Open Index again
    path = tmp_path / "btmon.log"
    path.write_bytes(btsnoop(2001, recs))
    with open_capture(path) as rd:
        frames = [
            bytes(b.buf[int(b.off[i]) : int(b.off[i]) + int(b.caplen[i])])
            for b in rd
            for i in range(len(b))
        ]
        assert rd.warnings == []
    assert len(frames) == len(recs)
    evs = [e for f in frames for e in ble_hci.dissect(2001, 0, f, 0, 0)]
    _check_events(evs)
    # a zero-filled tail after them is still damage, said with its offset
    tail = tmp_path / "btmon_tail.log"
    tail.write_bytes(path.read_bytes() + bytes(48))
    with open_capture(tail) as rd:
        assert sum(len(b) for b in rd) == len(recs)
        assert any("zero-length record" in w for w in map(str, rd.warnings))
