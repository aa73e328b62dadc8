"""802.11 management and encrypted data frames (frame dissector): who is on the air.

The decode kernel (capture/kernels_wlan.py) decodes unencrypted data frames and skips the rest
(ERR_WLAN_NOT_DATA, ERR_WLAN_PROTECTED). In a monitor-mode capture of a WPA2/WPA3 network those
skipped frames are all there is: this dissector reads them, for link types 105 IEEE802_11,
127 IEEE802_11_RADIOTAP and 192 PPI (with an 802.11 inner frame).

- Beacon / Probe Response (§9.3.3.2, §9.3.3.10): the AP, its SSID, its privacy.
- Probe Request (§9.3.3.9), (Re)Association Request (§9.3.3.5, §9.3.3.7): the station, its
  information elements (§9.4.2) as a fingerprint, vendor-specific IE OUIs, and the Wi-Fi
  Simple Configuration attributes (WSC 2.0 §12, vendor IE OUI 00:50:F2 type 4) that name its
  maker and model.
- Protected data frames (§9.2.4.1.9): which station talks through which BSSID, encrypted.

One `WlanStation` per transmitter at its first sighting, again when a new fact appears; the
per-station state is bounded (LRU). Probe-request SSIDs and the WPS Device Name are keyed
hashes (HMAC with the installation's PHI key), never clear text.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from medsentry.capture.batch import (
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_PPI,
)
from medsentry.events.base import Event
from medsentry.events.wlan import WlanStation
from medsentry.protocols.base import ParseError
from medsentry.protocols.registry import register_frame

WLAN_LINKTYPES = (LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI)

# radiotap.org/fields/defined
RADIOTAP_TSFT = 0x0000_0001
RADIOTAP_FLAGS = 0x0000_0002
RADIOTAP_EXT = 0x8000_0000
RT_FLAG_FCS = 0x10  # the frame ends with its 4-byte FCS
RT_FLAG_BADFCS = 0x40
# CACE PPI 1.0.10: 802.11-Common field flags
PPI_80211_COMMON = 2
PPI_FLAG_FCS = 0x0001
PPI_FLAG_BADFCS = 0x0004
FCS_LEN = 4

# §9.2.4.1 Frame Control
FC_TYPE_MGMT, FC_TYPE_DATA = 0, 2
FC_TO_DS, FC_FROM_DS, FC_PROTECTED = 0x01, 0x02, 0x40
MAC_HEADER_LEN = 24
# §9.2.4.1.3 Table 9-1: management subtypes
MGMT_SUBTYPES = {
    0: "assoc_req",
    1: "assoc_resp",
    2: "reassoc_req",
    3: "reassoc_resp",
    4: "probe_req",
    5: "probe_resp",
    8: "beacon",
    10: "disassoc",
    11: "auth",
    12: "deauth",
    13: "action",
}
# where the elements start in each body (§9.3.3): fixed fields before them
IE_OFFSET = {
    "beacon": 12,  # Timestamp 8, Beacon Interval 2, Capability Information 2
    "probe_resp": 12,
    "probe_req": 0,
    "assoc_req": 4,  # Capability Information 2, Listen Interval 2
    "reassoc_req": 10,  # + Current AP Address 6
}
AP_KINDS = frozenset({"beacon", "probe_resp"})
CAP_PRIVACY = 0x0010  # §9.4.1.4 Capability Information bit 4

# §9.4.2 Table 9-92 element IDs
EID_SSID = 0
EID_SUPPORTED_RATES = 1
EID_HT_CAPABILITIES = 45
EID_RSN = 48
EID_EXTENDED_RATES = 50
EID_EXTENDED_CAPABILITIES = 127
EID_VHT_CAPABILITIES = 191
EID_VENDOR_SPECIFIC = 221
EID_EXTENSION = 255
EID_EXT_HE_CAPABILITIES = 35  # Element ID Extension (§9.4.2.248)
MAX_SSID_LEN = 32  # §9.4.2.2

# Wi-Fi Simple Configuration Technical Specification 2.0.x §12 (attributes, big-endian TLVs)
WPS_OUI_TYPE = b"\x00\x50\xf2\x04"
WPS_MANUFACTURER = 0x1021
WPS_MODEL_NAME = 0x1023
WPS_MODEL_NUMBER = 0x1024
WPS_DEVICE_NAME = 0x1011
WPS_MAX_TEXT = 64  # Manufacturer/Model Name/Device Name <= 64 octets, Model Number <= 32

MAX_STATIONS = 4096  # LRU bound of the per-transmitter state
MAX_PROBED = 16  # probe-request SSID hashes kept per station
MAX_OUIS = 16
REFRESH_NS = 600 * 1_000_000_000  # re-emit a quiet record after this long (live monitoring)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _unicast(b: bytes) -> bool:
    return not (b[0] & 0x01) and any(b)  # I/G bit clear, not all-zero (IEEE 802 §8.2)


def _text(v: bytes, limit: int) -> str | None:
    s = v[:limit].decode("utf-8", "replace").strip("\x00 \t\r\n")
    s = "".join(ch for ch in s if ch.isprintable())
    return s or None


def radio_strip(linktype: int, frame: bytes) -> tuple[bytes, bool] | None:
    """(the 802.11 frame without radio header and FCS, bad-FCS flag), None for a PPI frame of
    another link type."""
    flags = 0
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        if len(frame) < 8 or frame[0] != 0:
            raise ParseError("radiotap header truncated or of an unknown version")
        rlen, present = struct.unpack_from("<HI", frame, 2)
        if rlen < 8 or rlen > len(frame):
            raise ParseError(f"radiotap it_len {rlen} outside the frame")
        q, word = 8, present
        while word & RADIOTAP_EXT:  # extended present bitmaps precede every field
            if q + 4 > rlen:
                raise ParseError("radiotap present bitmaps overrun it_len")
            word = struct.unpack_from("<I", frame, q)[0]
            q += 4
        if present & RADIOTAP_FLAGS:
            if present & RADIOTAP_TSFT:  # u64 aligned to 8 from the header start
                q = ((q + 7) & ~7) + 8
            if q >= rlen:
                raise ParseError("radiotap Flags field outside it_len")
            flags = frame[q]
        body = frame[rlen:]
    elif linktype == LINKTYPE_PPI:
        if len(frame) < 8 or frame[0] != 0:
            raise ParseError("PPI header truncated or of an unknown version")
        align = frame[1] & 0x01
        hlen, dlt = struct.unpack_from("<HI", frame, 2)
        if hlen < 8 or hlen > len(frame):
            raise ParseError(f"PPI pph_len {hlen} outside the frame")
        if dlt != LINKTYPE_IEEE802_11:
            return None
        q = 8
        while q + 4 <= hlen:
            ftype, flen = struct.unpack_from("<HH", frame, q)
            if q + 4 + flen > hlen:
                raise ParseError("PPI field overruns pph_len")
            if ftype == PPI_80211_COMMON and flen >= 10:
                f = struct.unpack_from("<H", frame, q + 12)[0]
                flags |= (RT_FLAG_FCS if f & PPI_FLAG_FCS else 0) | (
                    RT_FLAG_BADFCS if f & PPI_FLAG_BADFCS else 0
                )
            q += 4 + flen
            if align:
                q = (q + 3) & ~3
        body = frame[hlen:]
    else:
        body = frame
    if flags & RT_FLAG_FCS:
        body = body[:-FCS_LEN] if len(body) >= FCS_LEN else b""
    return body, bool(flags & RT_FLAG_BADFCS)


def elements(body: bytes) -> list[tuple[int, bytes]]:
    """§9.4.2.1: Element ID, Length, Information; a cut last element ends the list."""
    out = []
    i = 0
    n = len(body)
    while i + 2 <= n:
        eid, ln = body[i], body[i + 1]
        if i + 2 + ln > n:
            break  # truncated capture (snaplen) or trailing bytes: keep what parsed
        out.append((eid, body[i + 2 : i + 2 + ln]))
        i += 2 + ln
    return out


def wps_attributes(data: bytes) -> dict[int, bytes]:
    """WSC §12: Attribute Type (2), Data Length (2), Data, big-endian."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(data):
        t, ln = struct.unpack_from(">HH", data, i)
        if i + 4 + ln > len(data):
            break
        out.setdefault(t, data[i + 4 : i + 4 + ln])
        i += 4 + ln
    return out


def fingerprint(ies: list[tuple[int, bytes]]) -> str:
    """Element order, supported rates (500 kb/s units, basic-rate bit kept) and HT/VHT/HE
    presence of a station's request: the same radio and driver send the same string."""
    order, rates = [], []
    caps = []
    for eid, info in ies:
        tag = f"{EID_EXTENSION}.{info[0]}" if eid == EID_EXTENSION and info else str(eid)
        if tag not in order:
            order.append(tag)
        if eid in (EID_SUPPORTED_RATES, EID_EXTENDED_RATES):
            rates += [f"{r:02x}" for r in info]
    for eid, name in (
        (EID_HT_CAPABILITIES, "ht"),
        (EID_VHT_CAPABILITIES, "vht"),
    ):
        if any(e == eid for e, _ in ies):
            caps.append(name)
    if any(e == EID_EXTENSION and i[:1] == bytes([EID_EXT_HE_CAPABILITIES]) for e, i in ies):
        caps.append("he")
    return f"ies={','.join(order)};rates={','.join(rates)};caps={','.join(caps) or '-'}"


@dataclass(slots=True)
class _Station:
    mac: str
    role: str
    bssid: str | None = None
    kinds: set[str] = field(default_factory=set)
    frames: int = 0
    ssid: str | None = None
    ssid_hidden: bool = False
    privacy: bool = False
    rsn: bool = False
    wps: dict[str, str] = field(default_factory=dict)
    probed: list[str] = field(default_factory=list)
    wildcard: bool = False
    ouis: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    protected: bool = False
    emitted: tuple | None = None
    emitted_ns: int = 0

    def facts(self) -> tuple:
        return (
            self.bssid,
            frozenset(self.kinds),
            self.ssid,
            self.ssid_hidden,
            self.privacy,
            self.rsn,
            tuple(sorted(self.wps.items())),
            tuple(self.probed),
            self.wildcard,
            tuple(self.ouis),
            self.fingerprint,
            self.protected,
        )


class _Air:
    """Per-transmitter state (bounded LRU). A frame older than the newest seen starts a new
    capture (a re-scan, another file): everything is new again."""

    def __init__(self) -> None:
        self.stations: OrderedDict[tuple[str, str], _Station] = OrderedDict()
        self.newest_ns = 0
        self._keys: dict[str, bytes] = {}

    def station(self, mac: str, role: str, ts_ns: int) -> _Station:
        if ts_ns < self.newest_ns:
            self.stations.clear()
        self.newest_ns = ts_ns
        key = (mac, role)
        st = self.stations.get(key)
        if st is None:
            st = self.stations[key] = _Station(mac, role)
            if len(self.stations) > MAX_STATIONS:
                self.stations.popitem(last=False)
        else:
            self.stations.move_to_end(key)
        st.frames += 1
        return st

    def phi_hash(self, value: bytes) -> str:
        """HMAC-SHA-256 with the installation's PHI key, 16 hex digits (as FlowContext)."""
        home = os.environ.get("MEDSENTRY_HOME", "")
        key = self._keys.get(home)
        if key is None:
            from medsentry.paths import phi_key

            key = self._keys[home] = phi_key()
        return hmac.new(key, value, hashlib.sha256).hexdigest()[:16]


_AIR = _Air()


def reset() -> None:
    """Forget every transmitter: a new capture or live session starts (FlowEngine calls it)."""
    _AIR.stations.clear()
    _AIR.newest_ns = 0


def _event(linktype: int, st: _Station, ts_ns: int) -> list[Event]:
    facts = st.facts()
    if facts == st.emitted and ts_ns - st.emitted_ns < REFRESH_NS:
        return []
    st.emitted, st.emitted_ns = facts, ts_ns
    return [
        WlanStation(
            ts_ns=ts_ns,
            linktype=linktype,
            station_mac=st.mac,
            role=st.role,
            bssid=st.bssid,
            address_random=bool(int(st.mac[:2], 16) & 0x02),
            frame_kinds=sorted(st.kinds),
            frames=st.frames,
            ssid=st.ssid,
            ssid_hidden=st.ssid_hidden,
            privacy=st.privacy,
            rsn=st.rsn,
            wps_manufacturer=st.wps.get("manufacturer"),
            wps_model_name=st.wps.get("model_name"),
            wps_model_number=st.wps.get("model_number"),
            wps_device_name_hash=st.wps.get("device_name_hash"),
            probed_ssid_hashes=list(st.probed),
            wildcard_probe=st.wildcard,
            vendor_ouis=list(st.ouis),
            fingerprint=st.fingerprint,
            protected_data=st.protected,
        )
    ]


def _station_elements(st: _Station, ies: list[tuple[int, bytes]], kind: str) -> None:
    wps = b""
    for eid, info in ies:
        if eid == EID_VENDOR_SPECIFIC and len(info) >= 3:
            oui = _mac(info[:3])
            if oui not in st.ouis and len(st.ouis) < MAX_OUIS:
                st.ouis.append(oui)
            if info[:4] == WPS_OUI_TYPE:
                wps += info[4:]  # WSC §12: attributes may continue in the next vendor IE
        elif eid == EID_SSID and kind == "probe_req":
            if not info:
                st.wildcard = True
            else:  # the networks a station remembers can name a person or a home: hash only
                h = _AIR.phi_hash(info[:MAX_SSID_LEN])
                if h not in st.probed and len(st.probed) < MAX_PROBED:
                    st.probed.append(h)
    if kind != "probe_req" or st.fingerprint is None:
        st.fingerprint = fingerprint(ies)
    if wps:
        attrs = wps_attributes(wps)
        for name, t in (
            ("manufacturer", WPS_MANUFACTURER),
            ("model_name", WPS_MODEL_NAME),
            ("model_number", WPS_MODEL_NUMBER),
        ):
            v = attrs.get(t)
            text = _text(v, WPS_MAX_TEXT) if v is not None else None
            if text:
                st.wps[name] = text
        dn = attrs.get(WPS_DEVICE_NAME)
        if dn and dn.strip(b"\x00 "):
            st.wps["device_name_hash"] = _AIR.phi_hash(dn[:WPS_MAX_TEXT])


def _management(linktype: int, sub: int, fc1: int, f: bytes, ts_ns: int) -> list[Event]:
    kind = MGMT_SUBTYPES.get(sub, f"mgmt_{sub}")
    a1, a2, a3 = f[4:10], f[10:16], f[16:22]
    if not _unicast(a2):
        return []  # §9.3.3.1: A2 is the transmitter (SA) of a management frame
    body = f[MAC_HEADER_LEN:]
    role = "ap" if kind in AP_KINDS or kind.endswith("_resp") else "station"
    if role == "station" and kind in ("auth", "deauth", "disassoc", "action") and a2 == a3:
        role = "ap"  # §9.3.3.1: A3 = BSSID; the AP transmits with its BSSID as A2
    st = _AIR.station(_mac(a2), role, ts_ns)
    st.kinds.add(kind)
    if _unicast(a3):
        st.bssid = _mac(a3)
    elif kind in ("assoc_req", "reassoc_req") and _unicast(a1):
        st.bssid = _mac(a1)
    off = IE_OFFSET.get(kind)
    if fc1 & FC_PROTECTED:
        off = None  # §12.6.18: a protected management frame's body is encrypted
    if off is not None:
        if len(body) < off:
            raise ParseError(f"802.11 {kind} body shorter than its fixed fields ({off} bytes)")
        ies = elements(body[off:])
        if kind in AP_KINDS:
            cap = struct.unpack_from("<H", body, 10)[0]
            st.privacy = st.privacy or bool(cap & CAP_PRIVACY)
            for eid, info in ies:
                if eid == EID_SSID:
                    if not info.strip(b"\x00"):
                        st.ssid_hidden = True  # §11.1.3.1: hidden network, SSID withheld
                    elif st.ssid is None:
                        st.ssid = _text(info, MAX_SSID_LEN)
                elif eid == EID_RSN:
                    st.rsn = st.privacy = True
        else:
            if any(eid == EID_RSN for eid, _ in ies):
                st.rsn = True
            _station_elements(st, ies, kind)
    return _event(linktype, st, ts_ns)


def _protected_data(linktype: int, fc1: int, f: bytes, ts_ns: int) -> list[Event]:
    a1, a2, a3 = f[4:10], f[10:16], f[16:22]
    tods, fromds = bool(fc1 & FC_TO_DS), bool(fc1 & FC_FROM_DS)
    # Table 9-30: the station and the BSSID by ToDS/FromDS
    if tods and not fromds:
        sta, bssid = a2, a1
    elif fromds and not tods:
        sta, bssid = a1, a2
    elif not tods and not fromds:
        sta, bssid = a2, a3  # IBSS / direct link
    else:
        return []  # mesh / WDS: four addresses, no one station to attribute
    out: list[Event] = []
    if _unicast(sta):
        st = _AIR.station(_mac(sta), "station", ts_ns)
        st.kinds.add("data_protected")
        st.protected = True
        if _unicast(bssid):
            st.bssid = _mac(bssid)
        out += _event(linktype, st, ts_ns)
    if (tods or fromds) and _unicast(bssid):
        ap = _AIR.station(_mac(bssid), "ap", ts_ns)
        ap.kinds.add("data_protected")
        ap.bssid = _mac(bssid)
        ap.protected = ap.privacy = True
        out += _event(linktype, ap, ts_ns)
    return out


def dissect(linktype: int, ethertype: int, frame: bytes, ts_ns: int, iface: int) -> list[Event]:
    if linktype not in WLAN_LINKTYPES:
        return []
    stripped = radio_strip(linktype, frame)
    if stripped is None:
        return []
    f, bad_fcs = stripped
    if bad_fcs or len(f) < 2:
        return []  # the radio says the bits are damaged: trust no field
    fc0, fc1 = f[0], f[1]
    if fc0 & 0x03:
        raise ParseError(f"802.11 protocol version {fc0 & 0x03} (§9.2.4.1.2 defines 0)")
    ftype, sub = (fc0 >> 2) & 0x03, fc0 >> 4
    if ftype == FC_TYPE_MGMT:
        if len(f) < MAC_HEADER_LEN:
            raise ParseError("802.11 management header truncated")
        return _management(linktype, sub, fc1, f, ts_ns)
    if ftype == FC_TYPE_DATA and fc1 & FC_PROTECTED:
        if len(f) < MAC_HEADER_LEN:
            raise ParseError("802.11 data header truncated")
        return _protected_data(linktype, fc1, f, ts_ns)
    return []


dissect.reset = reset  # type: ignore[attr-defined]  # per-capture state: see FlowEngine
register_frame(dissect)
