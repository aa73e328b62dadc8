"""What the inventory accumulates about one device, across captures and live commits.

A `DeviceState` is the raw material: addresses over time, roles, peers and the identity strings
observed (DHCP vendor class, DICOM implementation UID, HTTP user agent, ...) under observation
keys (see docs/inventory.md). Identification (`identify`) turns a state into a `Device`;
a state is stored beside the device so the next capture folds into it instead of replacing it.
"""

from __future__ import annotations

from operator import itemgetter

import msgspec

# Bound the distinct values kept per observation key (a busy client queries many names).
MAX_VALUES_PER_KEY = 256
MAX_PEERS = 2048


# gc=False: these records never form reference cycles (they hold strings, ints and dicts of
# them), so the cyclic collector need not track them; with 10,000 devices it would otherwise
# re-traverse them in every full collection the capture pipeline triggers (msgspec "gc" option).


class AddressSpan(msgspec.Struct, array_like=True, gc=False):
    first_ns: int
    last_ns: int
    source: str  # arp, dhcp, ndp, flow


class DeviceState(msgspec.Struct, kw_only=True, gc=False):
    device_id: str
    mac: str | None = None
    first_ns: int = 0
    last_ns: int = 0
    addresses: dict[str, AddressSpan] = {}
    # observation key -> observed value -> first time seen (ns)
    observations: dict[str, dict[str, int]] = {}
    roles: dict[str, int] = {}  # role -> first seen
    protocols: dict[str, int] = {}
    listening: dict[str, int] = {}
    peers: dict[str, int] = {}  # device ids
    external_peers: dict[str, int] = {}
    hostnames: dict[str, int] = {}  # "<priority>:<name>" -> first seen, see observe.HOSTNAME_RANK
    phi_ns: int | None = None  # first time PHI was seen to or from it

    def see(self, ts_ns: int) -> None:
        if ts_ns <= 0:
            return
        if self.first_ns == 0 or ts_ns < self.first_ns:
            self.first_ns = ts_ns
        if ts_ns > self.last_ns:
            self.last_ns = ts_ns

    def observe(self, key: str, value: str | None, ts_ns: int) -> None:
        if not value:
            return
        vals = self.observations.get(key)
        if vals is not None:  # fast path: seen before (the common case)
            old = vals.get(value)
            if old is not None:
                if ts_ns < old:
                    vals[value] = ts_ns
                return
        value = value.strip()[:512]
        if not value:
            return
        vals = self.observations.get(key)
        if vals is None:
            vals = self.observations[key] = {}
        old = vals.get(value)
        if old is None:
            if len(vals) < MAX_VALUES_PER_KEY:
                vals[value] = ts_ns
        elif ts_ns < old:
            vals[value] = ts_ns

    def address(self, ip: str, first_ns: int, last_ns: int, source: str) -> None:
        span = self.addresses.get(ip)
        if span is None:
            self.addresses[ip] = AddressSpan(first_ns, last_ns, source)
            return
        span.first_ns = min(span.first_ns, first_ns)
        span.last_ns = max(span.last_ns, last_ns)
        if source in ("dhcp", "arp", "ndp", "netbios") and span.source == "flow":
            span.source = source

    def _merge_times_and_addresses(self, other: DeviceState) -> None:
        self.see(other.first_ns)
        self.see(other.last_ns)
        if self.mac is None:
            self.mac = other.mac
        for ip, span in other.addresses.items():
            self.address(ip, span.first_ns, span.last_ns, span.source)

    def bound_peers(self) -> None:
        """Keep the MAX_PEERS earliest peers of each kind."""
        if len(self.peers) > MAX_PEERS:
            self.peers = dict(sorted(self.peers.items(), key=itemgetter(1))[:MAX_PEERS])
        if len(self.external_peers) > MAX_PEERS:
            self.external_peers = dict(
                sorted(self.external_peers.items(), key=itemgetter(1))[:MAX_PEERS]
            )

    def take_from(self, other: DeviceState) -> None:
        """`merge` for a state that holds nothing yet but its id and MAC, from a state whose
        values all went through `observe` (stripped, bounded) and that is discarded afterwards:
        the same result, by taking `other`'s tables instead of copying them (`other` still holds
        them: it must not be used again)."""
        self._merge_times_and_addresses(other)
        obs = other.observations
        self.observations = obs if all(obs.values()) else {k: v for k, v in obs.items() if v}
        self.roles, self.protocols = other.roles, other.protocols
        self.listening, self.hostnames = other.listening, other.hostnames
        self.phi_ns = other.phi_ns
        _merge_first(self.peers, other.peers)
        _merge_first(self.external_peers, other.external_peers)
        self.bound_peers()

    def merge(self, other: DeviceState) -> None:
        """Fold another state (a later capture, or an IP-only device that proved to be this one)."""
        self._merge_times_and_addresses(other)
        obs = self.observations
        for key, vals in other.observations.items():  # `observe` for each value, inlined
            mine = obs.get(key)
            for v, ts in vals.items():
                if not v:
                    continue
                if mine is not None:
                    old = mine.get(v)
                    if old is not None:
                        if ts < old:
                            mine[v] = ts
                        continue
                w = v.strip()[:512]
                if not w:
                    continue
                if mine is None:
                    mine = obs[key] = {}
                old = mine.get(w)
                if old is None:
                    if len(mine) < MAX_VALUES_PER_KEY:
                        mine[w] = ts
                elif ts < old:
                    mine[w] = ts
        for mine, theirs in (
            (self.roles, other.roles),
            (self.protocols, other.protocols),
            (self.listening, other.listening),
            (self.peers, other.peers),
            (self.external_peers, other.external_peers),
            (self.hostnames, other.hostnames),
        ):
            _merge_first(mine, theirs)
        if other.phi_ns is not None:
            self.phi_ns = other.phi_ns if self.phi_ns is None else min(self.phi_ns, other.phi_ns)
        self.bound_peers()


def _merge_first(mine: dict[str, int], theirs: dict[str, int]) -> None:
    for k, ts in theirs.items():
        old = mine.get(k)
        if old is None or ts < old:
            mine[k] = ts


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeviceState)


def encode_state(state: DeviceState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes, device_id: str | None = None) -> DeviceState:
    """A state read back from the database (`devices.state`)."""
    from medsentry.store.damage import damaged, decode_stored

    state = decode_stored(_decoder, data, "devices", "state", device_id)
    if device_id is not None and state.device_id != device_id:
        raise damaged(f"devices.state of {device_id} names another device")
    return state
