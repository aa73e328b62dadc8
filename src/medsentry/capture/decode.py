"""RawBatch -> PacketBatch, and helpers that turn address arrays into text (per unique value).

`decode` runs one compiled kernel (kernels_decode.decode_kernel) over the batch. Conventions
beyond batch.py:

- ARP (ethertype 0x0806, Ethernet/IPv4 ARP): `eth_src`/`eth_dst` hold the ARP sender/target
  hardware addresses, `src_*`/`dst_*` the sender/target protocol addresses (IPv4-mapped,
  `ip_ver` stays 0), `arp_op` the opcode. The frame's own Ethernet addresses are kept in
  `extra["arp_frame_src"]`/`extra["arp_frame_dst"]` (0 for non-ARP packets), so a frame whose
  source differs from the ARP sender (proxy ARP, spoofing) can be seen.
- A non-first IPv4/IPv6 fragment has `frag=1`, no ports, and `pl_off`/`pl_len` covering the
  fragment's data.
- ICMP/ICMPv6: `sport` = type, `dport` = code, payload after the 8-byte ICMP header.
- Linux cooked captures (SLL/SLL2) give the sender's address in `eth_src`; `eth_dst` is 0.
- 802.11 (LINKTYPE_IEEE802_11, _RADIOTAP, PPI; capture/kernels_wlan.py): `eth_src`/`eth_dst`
  are the frame's SA/DA (by ToDS/FromDS), `ethertype` the LLC/SNAP one, a flagged FCS is
  stripped. Encrypted data, management/control and bad-FCS frames set ERR_WLAN_* (management
  and encrypted data frames keep their SA/DA) and are not decoded further.
- BLE link types are left undecoded (ethertype 0, ip_ver 0, err 0) for a BLE dissector.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from medsentry.capture.batch import PacketBatch, RawBatch
from medsentry.capture.kernels_decode import BLE_LINKTYPES, DECODED_LINKTYPES, decode_kernel

__all__ = [
    "BLE_LINKTYPES",
    "DECODED_LINKTYPES",
    "decode",
    "format_ip",
    "format_ips",
    "format_mac",
    "format_macs",
    "unique_ips",
]

# PacketBatch field -> dtype, in decode_kernel's argument order
_FIELDS: tuple[tuple[str, type], ...] = (
    ("eth_src", np.uint64),
    ("eth_dst", np.uint64),
    ("vlan", np.uint16),
    ("ethertype", np.uint16),
    ("ip_ver", np.uint8),
    ("src_hi", np.uint64),
    ("src_lo", np.uint64),
    ("dst_hi", np.uint64),
    ("dst_lo", np.uint64),
    ("proto", np.uint8),
    ("ttl", np.uint8),
    ("ip_len", np.uint32),
    ("frag", np.uint8),
    ("sport", np.uint16),
    ("dport", np.uint16),
    ("tcp_flags", np.uint8),
    ("tcp_seq", np.uint32),
    ("tcp_ack", np.uint32),
    ("tcp_win", np.uint16),
    ("pl_off", np.int64),
    ("pl_len", np.uint32),
    ("arp_op", np.uint8),
    ("err", np.uint8),
)
_EXTRA: tuple[tuple[str, type], ...] = (
    ("arp_frame_src", np.uint64),
    ("arp_frame_dst", np.uint64),
)


def _columns(n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Zeroed output columns carved from one allocation (widest dtypes first, so each column
    stays aligned): one large block faults in far fewer pages than 25 small arrays."""
    every = _FIELDS + _EXTRA
    block = np.zeros(n * sum(np.dtype(dt).itemsize for _, dt in every), np.uint8)
    out: dict[str, np.ndarray] = {}
    pos = 0
    for name, dt in sorted(every, key=lambda f: -np.dtype(f[1]).itemsize):
        size = n * np.dtype(dt).itemsize
        out[name] = block[pos : pos + size].view(dt)
        pos += size
    cols = {name: out[name] for name, _ in _FIELDS}
    extra = {name: out[name] for name, _ in _EXTRA}
    return cols, extra


def decode(raw: RawBatch) -> PacketBatch:
    """Decode link, IP and transport headers of every packet of `raw` (one kernel call)."""
    cols, extra = _columns(len(raw))
    decode_kernel(
        raw.buf,
        raw.off,
        raw.caplen,
        raw.wirelen,
        raw.linktype,
        *cols.values(),
        *extra.values(),
    )
    return PacketBatch(raw=raw, extra=extra, **cols)


def payload(batch: PacketBatch, i: int) -> bytes:
    """The captured transport payload of packet `i` (for tests and per-message code)."""
    o = int(batch.pl_off[i])
    return bytes(batch.raw.buf[o : o + int(batch.pl_len[i])])


# ---- text forms: only for unique values (per flow or per device, never per packet)


def format_ip(ver: int, hi: int, lo: int) -> str:
    """Text of one address in the batch layout (IPv4-mapped for version 4)."""
    if ver == 4:
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFF_FFFF))
    if ver == 6:
        return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
    return ""


def format_mac(mac: int) -> str:
    """aa:bb:cc:dd:ee:ff from the 48-bit integer layout."""
    return int(mac).to_bytes(8, "big")[2:].hex(":")


def unique_ips(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(text of each distinct address, index into that list for every element)."""
    ver = np.asarray(ver, np.uint64)
    keys = np.empty((ver.shape[0], 3), np.uint64)
    keys[:, 0] = ver
    keys[:, 1] = hi
    keys[:, 2] = lo
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    text = [format_ip(int(v), int(h), int(lo_)) for v, h, lo_ in uniq]
    return text, inverse.reshape(-1)


def format_ips(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Object array of address text, formatting each distinct address once."""
    text, inverse = unique_ips(ver, hi, lo)
    return np.array(text, dtype=object)[inverse] if text else np.empty(0, dtype=object)


def format_macs(macs: np.ndarray) -> np.ndarray:
    """Object array of MAC text, formatting each distinct address once."""
    uniq, inverse = np.unique(np.asarray(macs, np.uint64), return_inverse=True)
    text = np.array([format_mac(int(m)) for m in uniq], dtype=object)
    return text[inverse.reshape(-1)] if len(text) else np.empty(0, dtype=object)
