"""Non-IP frames handed to the frame dissectors one at a time: LLDP, CDP, Bluetooth LE,
802.11 management and encrypted data frames.

They are rare, so a NumPy mask selects them and Python sees only those frames.
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.batch import (
    ERR_WLAN_NOT_DATA,
    ERR_WLAN_PROTECTED,
    LINKTYPE_BLUETOOTH_LE_LL,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_NORDIC_BLE,
    LINKTYPE_PPI,
    PacketBatch,
)
from medsentry.capture.hci_linktypes import HCI_LINKTYPES

ETHERTYPE_LLDP = 0x88CC  # IEEE 802.1AB §7.1
SNAP_PID_CDP = 0x2000
# IEEE 802.2 LLC (DSAP AA, SSAP AA, UI) + SNAP OUI 00:00:0c (Cisco) + PID 0x2000
_CDP_LLC_SNAP = np.frombuffer(bytes.fromhex("aaaa0300000c2000"), np.uint8)
BLE_LINKTYPES = (
    LINKTYPE_BLUETOOTH_LE_LL,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    LINKTYPE_NORDIC_BLE,
    *HCI_LINKTYPES,
)
WLAN_LINKTYPES = (LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI)


def select_frames(pb: PacketBatch) -> list[tuple[int, int]]:
    """(packet index, ethertype or 0) of every LLDP, CDP or BLE frame in the batch."""
    lt = pb.raw.linktype
    ble = np.isin(lt, BLE_LINKTYPES)
    lldp = (pb.ethertype == ETHERTYPE_LLDP) & (pb.ip_ver == 0)
    # IEEE 802.3 length field (< 0x0600) in place of an ethertype: maybe LLC/SNAP
    cand = np.flatnonzero((lt == LINKTYPE_ETHERNET) & (pb.ethertype < 0x0600) & (pb.ip_ver == 0))
    out = [(int(i), 0) for i in np.flatnonzero(ble)]
    # 802.11 frames the kernel skipped: encrypted data, and management frames (their SA is
    # set; control frames have none) -> protocols/wlan.py
    err = pb.err
    wlan = np.isin(lt, WLAN_LINKTYPES) & (
        (err == ERR_WLAN_PROTECTED) | ((err == ERR_WLAN_NOT_DATA) & (pb.eth_src != 0))
    )
    out += [(int(i), 0) for i in np.flatnonzero(wlan)]
    out += [(int(i), ETHERTYPE_LLDP) for i in np.flatnonzero(lldp)]
    if cand.size:
        buf = pb.raw.buf
        offs = pb.raw.off[cand]
        caps = pb.raw.caplen[cand]
        for i, o, c in zip(cand.tolist(), offs.tolist(), caps.tolist(), strict=True):
            if c >= 22 and o + 22 <= buf.shape[0] and (buf[o + 14 : o + 22] == _CDP_LLC_SNAP).all():
                out.append((i, SNAP_PID_CDP))
    out.sort()
    return out


def frame_bytes(pb: PacketBatch, i: int) -> bytes:
    o = int(pb.raw.off[i])
    return pb.raw.buf[o : o + int(pb.raw.caplen[i])].tobytes()
