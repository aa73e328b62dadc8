"""802.11 management and encrypted data frames (protocols/wlan.py): a monitor-mode capture of a
WPA2 network, where the decode kernel sees no IP, still shows the stations and the AP.

Frames are built here from IEEE Std 802.11-2020 §9.2-§9.4 and the Wi-Fi Simple Configuration
spec (WSC 2.0 §12), written as radiotap pcaps, scanned with `medsentry scan`, and the element
fields cross-checked with tshark's own dissectors (wlan, wps).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.capture.batch import LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI
from medsentry.capture.writer import PcapWriter
from medsentry.cli import main
from medsentry.events.wlan import WlanStation
from medsentry.protocols import wlan
from medsentry.protocols.base import ParseError
from medsentry.store import iter_events, open_store

AP = "f0:9f:c2:aa:bb:cc"  # Ubiquiti access point (BSSID)
STA = "24:0a:c4:12:34:56"  # the blood pressure monitor's Wi-Fi module (Espressif OUI)
PHONE = "da:a1:19:00:11:22"  # a phone probing with a randomized (locally administered) MAC
BCAST = "ff:ff:ff:ff:ff:ff"
SSID = b"WardNet"
PERSONAL_SSID = b"Anna's Home"
DEVICE_NAME = b"Anna's BP monitor"
T0 = 1_700_000_000_000_000_000


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ie(eid: int, info: bytes) -> bytes:
    return bytes([eid, len(info)]) + info  # §9.4.2.1


def wps_attr(t: int, v: bytes) -> bytes:
    return struct.pack(">HH", t, len(v)) + v  # WSC §12: big-endian TLV


RATES = ie(1, bytes([0x82, 0x84, 0x8B, 0x96, 0x0C, 0x12, 0x18, 0x24]))
XRATES = ie(50, bytes([0x30, 0x48, 0x60, 0x6C]))
HT_CAPS = ie(45, bytes(26))  # §9.4.2.55: 26 octets
RSN = ie(48, bytes.fromhex("0100000fac040100000fac040100000fac020000"))  # CCMP, PSK
WPS = ie(
    221,
    b"\x00\x50\xf2\x04"
    + wps_attr(0x104A, b"\x10")  # Version 1.0
    + wps_attr(0x103A, b"\x00")  # Request Type: enrollee, info only
    + wps_attr(0x1021, b"OMRON HEALTHCARE")
    + wps_attr(0x1023, b"BP7450")
    + wps_attr(0x1024, b"HEM-7600T")
    + wps_attr(0x1011, DEVICE_NAME),
)
ESPRESSIF_IE = ie(221, b"\x18\xfe\x34\x01\x02")  # vendor-specific, OUI 18:fe:34


def radiotap(fcs: bool) -> bytes:
    """radiotap.org: it_version 0, it_len, present = Flags; Flags 0x10 = FCS at the end."""
    return struct.pack("<BBHIB", 0, 0, 9, 0x02, 0x10 if fcs else 0)


def dot11(fc0: int, fc1: int, a1: str, a2: str, a3: str, body: bytes, *, fcs: bool = True):
    """§9.2.3: Frame Control, Duration, A1-A3, Sequence Control, body [, FCS]."""
    f = bytes([fc0, fc1]) + b"\x00\x00" + mac(a1) + mac(a2) + mac(a3) + b"\x10\x00" + body
    if fcs:
        f += struct.pack("<I", zlib.crc32(f))
    return radiotap(fcs) + f


def beacon() -> bytes:
    body = struct.pack("<QHH", 0, 100, 0x0411) + ie(0, SSID) + RATES + ie(3, b"\x06") + RSN
    return dot11(0x80, 0, BCAST, AP, AP, body)


def probe_request(src: str, ssid: bytes, extra: bytes = b"") -> bytes:
    return dot11(0x40, 0, BCAST, src, BCAST, ie(0, ssid) + RATES + XRATES + HT_CAPS + extra)


def assoc_request() -> bytes:
    body = struct.pack("<HH", 0x0431, 10) + ie(0, SSID) + RATES + XRATES + RSN + HT_CAPS + WPS
    return dot11(0x00, 0, AP, STA, AP, body)


def protected_data(to_ds: bool) -> bytes:
    ccmp = bytes.fromhex("0100002000000000")  # §12.5.3.2 CCMP header, then ciphertext + MIC
    body = ccmp + bytes(range(40)) + bytes(8)
    if to_ds:  # Table 9-30: ToDS: A1 = BSSID, A2 = SA (the station), A3 = DA
        return dot11(0x88, 0x41, AP, STA, "00:1b:21:0a:0b:0c", b"\x00\x00" + body)
    return dot11(0x88, 0x42, STA, AP, "00:1b:21:0a:0b:0c", b"\x00\x00" + body)


def frames() -> list[bytes]:
    out = [beacon() for _ in range(30)]  # ten beacons a second: one record, not thirty
    out += [
        probe_request(STA, b"", WPS + ESPRESSIF_IE),
        probe_request(PHONE, PERSONAL_SSID),
        probe_request(PHONE, b""),
        assoc_request(),
        radiotap(False) + b"\xd4\x00\x00\x00" + mac(STA),  # ACK (control): ignored
    ]
    out += [protected_data(k % 2 == 0) for k in range(20)]
    return out


def write(path: Path, data: list[bytes], linktype: int = LINKTYPE_IEEE802_11_RADIOTAP) -> Path:
    with PcapWriter(path, linktype=linktype, nanosecond=True) as w:
        for k, d in enumerate(data):
            w.write(d, T0 + k * 1_000_000)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def _last(events: list[WlanStation]) -> dict[tuple[str, str], WlanStation]:
    return {(e.station_mac, e.role): e for e in sorted(events, key=lambda e: e.ts_ns)}


def test_scan_wpa2_monitor_capture(tmp_path: Path) -> None:
    path = write(tmp_path / "wpa2.pcap", frames())
    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    code, out, err = _run("scan", "--db", url, "--format", "json", str(path))
    assert code == 0, err
    store = open_store(url)
    events = [e for e in iter_events(store, kinds=["wlan_station"])]
    assert events and all(isinstance(e, WlanStation) for e in events)
    # aggregated: a record at first sighting and when a fact is new, never one per frame
    per = {}
    for e in events:
        per[(e.station_mac, e.role)] = per.get((e.station_mac, e.role), 0) + 1
    assert per[(AP, "ap")] <= 3 and per[(STA, "station")] <= 4, per
    last = _last(events)
    ap = last[(AP, "ap")]
    assert ap.ssid == "WardNet" and ap.rsn and ap.privacy and ap.bssid == AP
    assert set(ap.frame_kinds) == {"beacon", "data_protected"}
    sta = last[(STA, "station")]
    assert sta.bssid == AP and not sta.address_random
    assert set(sta.frame_kinds) == {"probe_req", "assoc_req", "data_protected"}
    assert (sta.wps_manufacturer, sta.wps_model_name, sta.wps_model_number) == (
        "OMRON HEALTHCARE",
        "BP7450",
        "HEM-7600T",
    )
    assert sta.protected_data and sta.rsn and sta.wildcard_probe
    assert sta.vendor_ouis == ["00:50:f2", "18:fe:34"]
    assert sta.fingerprint == (
        "ies=0,1,50,48,45,221;rates=82,84,8b,96,0c,12,18,24,30,48,60,6c;caps=ht"
    )
    assert sta.wps_device_name_hash and len(sta.wps_device_name_hash) == 16
    phone = last[(PHONE, "station")]
    assert phone.address_random and phone.wildcard_probe and len(phone.probed_ssid_hashes) == 1
    assert phone.ssid is None and not phone.protected_data
    # the personal SSID and device name are nowhere in clear
    raw = db.read_bytes()
    assert b"Anna" not in raw and b"Anna" not in out.encode()

    code, out, err = _run("devices", "--db", url, "--format", "json")
    assert code == 0, err
    by_mac = {d["mac"]: d for d in json.loads(out) if d["mac"]}
    dev = by_mac[STA]
    assert "omron" in json.dumps(dev["vendor"]).lower(), dev["vendor"]
    assert "BP7450" in json.dumps(dev["model"]), dev["model"]
    assert "it.network" in json.dumps(by_mac[AP]["category"])
    assert PHONE in by_mac
    code, out, err = _run("device", "--db", url, "--format", "json", STA)
    assert code == 0, err
    shown = json.loads(out)
    text = json.dumps(shown)
    assert "wlan.wps.manufacturer" in text and "wlan.wps.model_name" in text, text[:2000]
    assert "wlan-station" in text


def test_elements_against_tshark(tmp_path: Path) -> None:
    path = write(tmp_path / "ies.pcap", [beacon(), probe_request(STA, b"", WPS), assoc_request()])
    # tshark prints wlan.ssid (a byte string field) as hex
    ssids = [
        bytes.fromhex(r[0]).decode() for r in tshark(path, "wlan.fc.type_subtype == 8", "wlan.ssid")
    ]
    assert ssids == ["WardNet"]
    wps = tshark(path, "wps.manufacturer", "wps.manufacturer", "wps.model_name", "wps.model_number")
    assert wps and all(r[:3] == ["OMRON HEALTHCARE", "BP7450", "HEM-7600T"] for r in wps)
    evs: list = []
    for k, f in enumerate([beacon(), probe_request(STA, b"", WPS), assoc_request()]):
        evs += wlan.dissect(LINKTYPE_IEEE802_11_RADIOTAP, 0, f, T0 + k, 0)
    last = _last(evs)
    assert last[(AP, "ap")].ssid == ssids[0]
    s = last[(STA, "station")]
    assert [s.wps_manufacturer, s.wps_model_name, s.wps_model_number] == wps[0][:3]


def test_ppi_and_bare_80211(tmp_path: Path) -> None:
    wlan.reset()  # state left by other tests of this process (the fuzz test) is not this capture's
    bare = beacon()[9:-4]  # no radio header, no FCS
    ppi = struct.pack("<BBHI", 0, 0, 8, LINKTYPE_IEEE802_11) + bare
    ev1 = wlan.dissect(LINKTYPE_IEEE802_11, 0, bare, T0 + 10**12, 0)
    ev2 = wlan.dissect(LINKTYPE_PPI, 0, ppi, T0 + 2 * 10**12, 0)  # a later refresh
    assert [e.ssid for e in ev1 + ev2] == ["WardNet", "WardNet"]
    # PPI around Ethernet is the kernel's business; a bad-FCS radiotap frame says nothing
    assert wlan.dissect(LINKTYPE_PPI, 0, struct.pack("<BBHI", 0, 0, 8, 1) + bare, T0, 0) == []
    bad = bytearray(beacon())
    bad[8] |= 0x40
    assert wlan.dissect(LINKTYPE_IEEE802_11_RADIOTAP, 0, bytes(bad), T0 + 3 * 10**12, 0) == []


@settings(max_examples=300, deadline=None)
@given(
    lt=st.sampled_from([LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI]),
    data=st.binary(max_size=120),
    seed=st.sampled_from([b"", beacon(), assoc_request(), probe_request(STA, b"x", WPS)]),
    cut=st.integers(0, 200),
)
def test_fuzz_any_bytes(lt: int, data: bytes, seed: bytes, cut: int) -> None:
    frame = (seed[:cut] + data) if seed else data
    try:
        out = wlan.dissect(lt, 0, frame, T0, 0)
    except ParseError:
        return
    assert all(isinstance(e, WlanStation) for e in out)


def test_rescan_in_one_process_reports_again(tmp_path: Path) -> None:
    """The per-station state lives in the process: a second scan (time starts over) must not
    be silenced by the first one."""
    path = write(tmp_path / "again.pcap", frames())
    for k in range(2):
        url = f"sqlite:///{tmp_path / f'm{k}.db'}"
        code, _, err = _run("scan", "--db", url, str(path))
        assert code == 0, err
        events = list(iter_events(open_store(url), kinds=["wlan_station"]))
        assert _last(events)[(STA, "station")].wps_model_name == "BP7450", k
