"""Bluetooth LE privacy: which resolvable private addresses belong to which device.

A device with LE privacy (every current phone; many health devices once bonded) advertises and
connects under a resolvable private address (RPA, Core Vol 6 Part B §1.3.2.2) that it changes
every few minutes: 24 bits `prand` (two most significant bits 0b01) and 24 bits
`hash = ah(IRK, prand)` (Vol 3 Part H §2.2.2). Without resolving them, one glucose meter is a
new device at every rotation. They are resolved, per capture, from:

- the IRK and identity address the device itself distributes when it bonds (SMP Identity
  Information and Identity Address Information, Vol 3 Part H §3.6.4-§3.6.5): in an HCI log
  these travel in clear between host and controller (the controller encrypts the link);
- the controller's own resolution, when it reports a connection with LE Enhanced Connection
  Complete (Vol 4 Part E §7.7.65.10): Peer_Address is then the identity address
  (Peer_Address_Type 0x02/0x03) and Peer_Resolvable_Private_Address the RPA it resolved;
- IRKs the user gives in a key file (`load_key_file`), for captures without the bonding.

What leaves this module is a `BleAddressResolved` event: an RPA and the identity address it
resolved to. An IRK is a key: it is kept in memory for the scan and never put in an event,
stored, logged or printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medsentry.errors import InputError
from medsentry.events.base import Event
from medsentry.events.ble import BleAddressResolved, BleAdvertisement, BleConnection

SMP_CID = 0x0006  # LE Security Manager channel, Vol 3 Part A §2.1
SMP_IDENTITY_INFORMATION = 0x08  # Vol 3 Part H §3.6.4: IRK (16 octets)
SMP_IDENTITY_ADDRESS_INFORMATION = 0x09  # §3.6.5: AddrType (1 octet), BD_ADDR (6 octets)
MAX_IRKS = 256  # keys kept per scan (learned and given)
MAX_CANDIDATES = 4096  # unresolved RPAs remembered per capture, to resolve on a later key
MAX_CHECKED = 1 << 20  # RPAs already tried, per capture (past it, tried again: same answer)


def is_resolvable(address: str) -> bool:
    """Vol 6 Part B §1.3.2.2: the two most significant bits of a random address are 0b01."""
    return len(address) == 17 and (int(address[:2], 16) >> 6) == 0b01


def ah(irk: bytes, prand: bytes) -> bytes:
    """Vol 3 Part H §2.2.2: ah(k, r) = e(k, r') mod 2^24, r' = padding || r (most significant
    octet first, as the specification's sample data is written, Appendix D)."""
    enc = Cipher(algorithms.AES(irk), modes.ECB()).encryptor()
    return (enc.update(bytes(13) + prand) + enc.finalize())[13:]


def resolves(irk: bytes, address: str) -> bool:
    """Whether `address` ("aa:bb:cc:dd:ee:ff") is a resolvable private address made with `irk`
    (16 octets, most significant first)."""
    if not is_resolvable(address):
        return False
    raw = bytes.fromhex(address.replace(":", ""))
    return ah(irk, raw[:3]) == raw[3:]


@dataclass(slots=True)
class _Key:
    irk: bytes  # most significant octet first
    identity: str
    identity_random: bool
    via: str  # "smp" (the bonding in the capture) or "key-file"


@dataclass(slots=True)
class _Pending:
    """A device's key distribution on one connection, between its two SMP commands."""

    irk: bytes | None = None


@dataclass
class Keyring:
    """Per-capture resolution state; the user's keys survive `reset`."""

    given: list[_Key] = field(default_factory=list)
    learned: list[_Key] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)  # RPAs tried against every key so far
    unresolved: dict[str, tuple[int, int]] = field(default_factory=dict)  # RPA -> (ts, linktype)
    done: set[tuple[str, str]] = field(default_factory=set)  # (RPA, identity) reported
    # connection (interface, adapter, handle) -> the IRK its peer sent, until its address follows
    pending: dict[tuple[int, int, int], _Pending] = field(default_factory=dict)

    def reset(self) -> None:
        self.learned.clear()
        self.checked.clear()
        self.unresolved.clear()
        self.done.clear()
        self.pending.clear()

    # -- addresses seen --

    def saw(self, address: str, ts_ns: int, linktype: int) -> list[Event]:
        """A random address in a BLE event: resolved now if a key is known, else kept."""
        if address in self.checked or not is_resolvable(address):
            return []
        if len(self.checked) >= MAX_CHECKED:
            self.checked.clear()
        self.checked.add(address)
        for key in (*self.learned, *self.given):
            if resolves(key.irk, address):
                return self._report(address, key.identity, key.identity_random, key.via, ts_ns,
                                    linktype)  # fmt: skip
        if len(self.unresolved) < MAX_CANDIDATES:
            self.unresolved[address] = (ts_ns, linktype)
        return []

    def controller_resolved(
        self, rpa: str, identity: str, identity_random: bool, ts_ns: int, linktype: int
    ) -> list[Event]:
        """LE Enhanced Connection Complete named both the RPA and the identity (§7.7.65.10)."""
        if not is_resolvable(rpa):
            return []
        self.unresolved.pop(rpa, None)
        self.checked.add(rpa)
        return self._report(rpa, identity, identity_random, "controller", ts_ns, linktype)

    # -- keys --

    def smp(
        self, link: tuple[int, int, int], peer: str | None, pdu: bytes, ts_ns: int, linktype: int
    ) -> list[Event]:
        """An SMP command the peer sent on connection `link` (interface, adapter, handle), whose
        peer address is `peer` (Vol 3 Part H §3.3: Code, Data)."""
        if not pdu:
            return []
        code = pdu[0]
        if code == SMP_IDENTITY_INFORMATION and len(pdu) >= 17:
            self.pending[link] = _Pending(irk=bytes(pdu[1:17])[::-1])  # sent LSO first
            while len(self.pending) > MAX_IRKS:
                del self.pending[next(iter(self.pending))]
            return []
        if code != SMP_IDENTITY_ADDRESS_INFORMATION or len(pdu) < 8:
            return []
        pending = self.pending.pop(link, None)
        if pending is None or pending.irk is None or pending.irk == bytes(16):
            return []  # §3.6.4: an all-zero IRK means the device does not resolve
        identity = ":".join(f"{b:02x}" for b in reversed(pdu[2:8]))
        key = _Key(pending.irk, identity, pdu[1] == 0x01, "smp")
        if len(self.learned) < MAX_IRKS:
            self.learned.append(key)
        out: list[Event] = []
        for rpa, (seen_ts, lt) in list(self.unresolved.items()):  # the addresses seen before
            if resolves(key.irk, rpa):
                del self.unresolved[rpa]
                out += self._report(rpa, identity, key.identity_random, "smp", seen_ts, lt)
        if peer is not None and peer not in self.checked and resolves(key.irk, peer):
            self.checked.add(peer)  # the connection's address, when no event named it before
            out += self._report(peer, identity, key.identity_random, "smp", ts_ns, linktype)
        return out

    def _report(
        self, rpa: str, identity: str, identity_random: bool, via: str, ts_ns: int, linktype: int
    ) -> list[Event]:
        if (rpa, identity) in self.done:
            return []
        self.done.add((rpa, identity))
        return [
            BleAddressResolved(
                ts_ns=ts_ns,
                linktype=linktype,
                address=rpa,
                identity_address=identity,
                identity_address_random=identity_random,
                resolved_by=via,
            )
        ]


KEYRING = Keyring()


def with_resolutions(events: list[Event]) -> list[Event]:
    """`events` (a BLE dissector's), followed by what their random addresses resolve to."""
    extra: list[Event] = []
    for ev in events:
        if type(ev) is BleAdvertisement:
            if ev.address_random:
                extra += KEYRING.saw(ev.advertiser_address, ev.ts_ns, ev.linktype)
        elif type(ev) is BleConnection and ev.peer_address_random:
            extra += KEYRING.saw(ev.peer_address, ev.ts_ns, ev.linktype)
    return events + extra if extra else events


_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_ADDR = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def load_key_file(path: str | Path) -> int:
    """Add the IRKs of a key file to every capture's keyring; returns how many.

    One device per line: `IDENTITY_ADDRESS public|random IRK`, the IRK as 32 hex digits, most
    significant octet first (as the Core specification writes keys, Vol 3 Part H Appendix D).
    Blank lines and lines starting with `#` are skipped. A malformed line is an InputError
    naming the line, never its key.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the BLE key file ({type(exc).__name__})") from None
    keys: list[_Key] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if (
            len(parts) != 3
            or not _ADDR.match(parts[0])
            or parts[1].lower() not in ("public", "random")
            or not _HEX32.match(parts[2])
        ):
            raise InputError(
                f"{p}, line {n}: expected 'IDENTITY_ADDRESS public|random IRK' "
                "(an address aa:bb:cc:dd:ee:ff and 32 hex digits)"
            )
        irk = bytes.fromhex(parts[2])
        if irk == bytes(16):
            raise InputError(f"{p}, line {n}: an all-zero IRK resolves nothing")
        keys.append(_Key(irk, parts[0].lower(), parts[1].lower() == "random", "key-file"))
    if len(KEYRING.given) + len(keys) > MAX_IRKS:
        raise InputError(f"{p}: more than {MAX_IRKS} keys")
    KEYRING.given.extend(keys)
    return len(keys)


def forget_given_keys() -> None:
    """Drop the key file's keys (the end of a scan that was given them)."""
    KEYRING.given.clear()
