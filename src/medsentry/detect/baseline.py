"""Behavioural baselines per device and per device category.

Dimensions, severities and techniques are data: `data/detect_baselines.yaml`.

Each device learns during the learning period (engine-wide, from the first event ever seen) and
during its own first `learning_ns` after it appears; afterwards a value it never showed is a
departure. Departures of one device and dimension aggregate into one alert whose new values
wait in `pending` until `accept()` (`medsentry baseline accept`) moves them into the baseline.
Memory is bounded: at most `cap` values per dimension (beyond, the dimension is saturated and
silent) and at most `max_devices` profiles (the least recently inserted are forgotten).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from medsentry.detect.base import SEVERITIES, SOURCE_BASELINE, AlertDraft, Detector
from medsentry.detect.context import NS, DetectContext, is_external
from medsentry.detect.rules import BoundedDict
from medsentry.errors import ConfigError
from medsentry.events.base import Event

DATA = Path(__file__).resolve().parent.parent / "data" / "detect_baselines.yaml"
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS


class Dimension(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    severity: str
    technique: tuple[str, str]
    cap: int
    rationale: str
    sources: list[str]


class Volume(msgspec.Struct, frozen=True, kw_only=True):
    k: float
    factor: float
    min_bytes: int


class BaselineConfig(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    learning_period_s: int
    volume: Volume
    dimensions: list[Dimension]


DIMENSIONS = (
    "peers",
    "protocols",
    "ports",
    "dicom_ae",
    "dicom_sop",
    "hl7_types",
    "external",
    "category",
    "volume",
    "timing",
)


def load_baseline_config(path: Path | None = None) -> BaselineConfig:
    import yaml

    from medsentry import yamlfile

    src = path or DATA
    try:
        doc = yamlfile.load(src.read_bytes())  # bad UTF-8: a YAMLError
        cfg = msgspec.convert(doc, BaselineConfig)
    except OSError as exc:
        raise ConfigError(f"{src}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: not valid YAML") from exc
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{src}: {exc}") from exc
    ids = [d.id for d in cfg.dimensions]
    if sorted(ids) != sorted(DIMENSIONS):
        raise ConfigError(f"{src}: dimensions must be exactly {', '.join(DIMENSIONS)}")
    for d in cfg.dimensions:
        if d.severity not in SEVERITIES or not d.technique[0].startswith("T0") or d.cap < 1:
            raise ConfigError(f"{src}: dimension {d.id!r}: bad severity, technique or cap")
        if not d.sources:
            raise ConfigError(f"{src}: dimension {d.id!r}: needs a source")
    return cfg


def _answered(f: Any) -> bool:
    """The server took part: a TCP handshake completed (SYN+ACK back), or a UDP/ICMP reply."""
    if f.transport == "tcp":
        return (f.tcp_flags_s2c & 0x12) == 0x12
    return f.packets_s2c > 0


class Profile:
    """What one device did during its learning, and what departed since."""

    __slots__ = (
        "combos",
        "first_ns",
        "hour",
        "hour_bytes",
        "hours",
        "known",
        "limit",
        "pending",
        "saturated",
        "w",
    )

    def __init__(self, first_ns: int) -> None:
        self.first_ns = first_ns
        self.known: dict[str, set[str]] = {}
        self.pending: dict[str, set[str]] = {}
        self.saturated: set[str] = set()
        self.hour = -1
        self.hour_bytes = 0
        self.w = [0, 0.0, 0.0]  # Welford: n, mean, M2 of bytes per active hour
        self.hours = 0  # bit h set: active at hour-of-day h (UTC) during learning
        self.combos: set[tuple[Any, ...]] = set()  # flows already judged (not persisted)
        self.limit: float | None = None  # this hour's volume limit, when learned

    def to_state(self) -> dict[str, Any]:
        return {
            "f": self.first_ns,
            "k": {d: sorted(v) for d, v in self.known.items()},
            "p": {d: sorted(v) for d, v in self.pending.items() if v},
            "s": sorted(self.saturated),
            "h": [self.hour, self.hour_bytes],
            "w": self.w,
            "a": self.hours,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Profile:
        p = cls(st["f"])
        p.known = {d: set(v) for d, v in st.get("k", {}).items()}
        p.pending = {d: set(v) for d, v in st.get("p", {}).items()}
        p.saturated = set(st.get("s", []))
        p.hour, p.hour_bytes = st.get("h", [-1, 0])
        p.w = list(st.get("w", [0, 0.0, 0.0]))
        p.hours = st.get("a", 0)
        return p


class BaselineDetector(Detector):
    """Per-device and per-category behavioural baselines (one detector, every dimension)."""

    detector_id = "baseline"
    source = SOURCE_BASELINE
    kinds = frozenset({"flow", "dicom_associate_rq", "dicom_dimse", "hl7_message"})

    def __init__(self, config: BaselineConfig | None = None, *, max_devices: int = 50_000) -> None:
        self.config = config or load_baseline_config()
        self.dims = {d.id: d for d in self.config.dimensions}
        self.profiles: BoundedDict = BoundedDict(max_devices)
        self.categories: dict[str, dict[str, set[str]]] = {}

    # --- learning state -----------------------------------------------------------------------
    def _profile(self, device: str, ts_ns: int) -> Profile:
        p = self.profiles.get(device)
        if p is None:
            p = Profile(ts_ns)
            self.profiles.put(device, p)
        return p

    @staticmethod
    def _learning(p: Profile, ctx: DetectContext) -> bool:
        return ctx.learning or (
            ctx.forced_learning is None and ctx.now_ns - p.first_ns < ctx.learning_ns
        )

    def _see(
        self,
        device: str,
        p: Profile,
        dim: str,
        value: str,
        event: Event,
        ctx: DetectContext,
        learning: bool,
    ) -> AlertDraft | None:
        known = p.known.get(dim)
        if known is None:
            known = p.known[dim] = set()
        if value in known:
            return None
        if learning:
            if dim in p.saturated:
                return None
            known.add(value)
            if len(known) > self.dims[dim].cap:
                p.saturated.add(dim)
            return None
        if dim in p.saturated:
            return None
        pend = p.pending.setdefault(dim, set())
        if value in pend:
            return None
        if len(pend) >= self.dims[dim].cap:
            return None
        pend.add(value)
        return self._draft(device, dim, value, event, ctx, len(pend))

    def _draft(
        self, device: str, dim: str, value: str, event: Event, ctx: DetectContext, n: int
    ) -> AlertDraft:
        d = self.dims[dim]
        return AlertDraft(
            rule_id=f"baseline.{dim}",
            source=SOURCE_BASELINE,
            severity=d.severity,
            title=d.title,
            technique_id=d.technique[0],
            technique_name=d.technique[1],
            ts_ns=event.ts_ns,
            device_id=device,
            evidence=[ctx.evidence(event, f"{dim}: new {value}")],
            dedup_key=f"baseline.{dim}|{device}",
            detail={"dimension": dim, "value": value, "new_values": n},
        )

    # --- observation --------------------------------------------------------------------------
    def observe(self, event: Any, ctx: DetectContext) -> list[AlertDraft]:
        kind = event.__struct_config__.tag  # event_kind, inlined (hot path)
        out: list[AlertDraft] = []
        if kind == "flow":
            self._flow(event, ctx, out)
            return out
        if kind == "hl7_message":
            if event.message_type in (None, "ACK") or event.ack_code is not None:
                return out
            ep = event.endpoints
            ip, mac = (
                (ep.client, ep.client_mac) if event.direction == 0 else (ep.server, ep.server_mac)
            )
            # ctx.device_id, inlined
            d = ctx.by_ip.get(ip) if ip is not None else None
            if d is None and mac is not None:
                d = ctx.by_mac.get(mac)
            dev = d.device_id if d is not None else ctx.device_id(ip, mac)
            assert dev is not None
            p = self.profiles.get(dev)
            if p is None:
                p = self._profile(dev, event.ts_ns)
            mtype = f"{event.message_type}^{event.trigger_event or ''}"
            known = p.known.get("hl7_types")
            if known is not None and mtype in known:
                return out  # the common case of _see, inlined
            d = self._see(dev, p, "hl7_types", mtype, event, ctx, self._learning(p, ctx))
            if d is not None:
                out.append(d)
            return out
        ep = event.endpoints
        if kind == "dicom_associate_rq":
            pair = f"{event.calling_ae}->{event.called_ae}"
            for ip, mac in ((ep.client, ep.client_mac), (ep.server, ep.server_mac)):
                dev = ctx.device_id(ip, mac)
                assert dev is not None
                p = self._profile(dev, event.ts_ns)
                self._add(
                    out, self._see(dev, p, "dicom_ae", pair, event, ctx, self._learning(p, ctx))
                )
            return out
        # dicom_dimse: the SOP classes a device uses (requests only)
        if not event.command.endswith("-RQ") or not event.sop_class_name:
            return out
        ip, mac = event.endpoints.sender(event.direction)
        dev = ctx.device_id(ip, mac)
        assert dev is not None
        p = self._profile(dev, event.ts_ns)
        value = f"{event.command[:-3]} {event.sop_class_name}"
        self._add(out, self._see(dev, p, "dicom_sop", value, event, ctx, self._learning(p, ctx)))
        return out

    @staticmethod
    def _add(out: list[AlertDraft], d: AlertDraft | None) -> None:
        if d is not None:
            out.append(d)

    def _flow(self, f: Any, ctx: DetectContext, out: list[AlertDraft]) -> None:
        transport = f.transport
        if transport == "arp":
            return
        if transport == "tcp":  # _answered, inlined
            if (f.tcp_flags_s2c & 0x12) != 0x12:
                return  # probes and scans are the rules' business, not a change of behaviour
        elif f.packets_s2c <= 0:
            return
        proto = f.app_protocol if (f.payload_c2s or f.payload_s2c) else None
        cdev = sdev = None
        glearning = ctx.learning
        fresh = ctx.forced_learning is None
        now, window = ctx.now_ns, ctx.learning_ns
        ts = f.ts_ns
        hour = ts // HOUR_NS
        profiles = self.profiles
        by_ip, by_mac = ctx.by_ip, ctx.by_mac
        server_port = f.server_port
        client, server, client_mac, server_mac = f.client, f.server, f.client_mac, f.server_mac
        for ip, mac, other_ip, other_mac, role, sent in (
            (client, client_mac, server, server_mac, "to", f.bytes_c2s),
            (server, server_mac, client, client_mac, "serves", f.bytes_s2c),
        ):
            if is_external(ip):
                continue  # baselines are for our devices, not for internet hosts
            # ctx.device(ip, mac), inlined
            d = by_ip.get(ip) if ip is not None else None
            if d is None and mac is not None:
                d = by_mac.get(mac)
            dev = d.device_id if d is not None else "ip:" + ip
            p = profiles.get(dev)
            if p is None:
                p = self._profile(dev, ts)
            learning = glearning or (fresh and now - p.first_ns < window)
            if hour == p.hour and (learning or p.limit is None):
                p.hour_bytes += sent  # the common case of _volume, inlined
            else:
                self._volume(dev, p, sent, f, ctx, learning, out)
            # a saturated peer set (a server everyone talks to) no longer tells peers apart
            peer_key = None if "peers" in p.saturated else other_ip
            combo = (peer_key, proto, role, server_port, transport)
            if combo in p.combos:
                continue  # this device already did exactly this: nothing new to learn or flag
            port = f"{transport}/{server_port}" if server_port else transport
            if role == "to":
                cdev = dev
                other = sdev or ctx.device_id(other_ip, other_mac)
            else:
                sdev = dev
                other = cdev or ctx.device_id(other_ip, other_mac)
            see = self._see
            known = p.known  # values already known skip `_see` (its first check, inlined)
            if is_external(other_ip):
                if role == "to":
                    self._add(out, see(dev, p, "external", other_ip, f, ctx, learning))
            else:
                value = str(other)
                k = known.get("peers")
                if k is None or value not in k:
                    self._add(out, see(dev, p, "peers", value, f, ctx, learning))
            if proto:
                k = known.get("protocols")
                if k is None or proto not in k:
                    self._add(out, see(dev, p, "protocols", proto, f, ctx, learning))
            if role == "serves" or server_port < 1024 or proto:
                value = f"{role} {port}"
                k = known.get("ports")
                if k is None or value not in k:
                    self._add(out, see(dev, p, "ports", value, f, ctx, learning))
            if d is not None and d.category:
                self._category(dev, p, d.category, proto, f"{role} {port}", f, ctx, learning, out)
            if len(p.combos) > 1024:
                p.combos.clear()
            p.combos.add(combo)

    def _category(
        self,
        dev: str,
        p: Profile,
        category: str,
        proto: str | None,
        port: str,
        f: Any,
        ctx: DetectContext,
        learning: bool,
        out: list[AlertDraft],
    ) -> None:
        norm = self.categories.setdefault(category, {})
        for value in (f"protocol {proto}" if proto else None, f"port {port}"):
            if value is None:
                continue
            seen = norm.setdefault("values", set())
            if value in seen:
                continue
            if learning:
                if len(seen) < self.dims["category"].cap:
                    seen.add(value)
                continue
            d = self._see(dev, p, "category", f"{category}: {value}", f, ctx, False)
            self._add(out, d)

    def _volume(
        self,
        dev: str,
        p: Profile,
        sent: int,
        f: Any,
        ctx: DetectContext,
        learning: bool,
        out: list[AlertDraft],
    ) -> None:
        hour = f.ts_ns // HOUR_NS
        if hour != p.hour:
            self._new_hour(dev, p, hour, f, ctx, learning, out)
        p.hour_bytes += sent
        if learning or p.limit is None or p.hour_bytes <= p.limit:
            return
        value = f"hour {hour}: {p.hour_bytes} bytes (limit {int(p.limit)})"
        p.limit = None  # one departure per hour
        pend = p.pending.setdefault("volume", set())
        pend.add(value)
        out.append(self._draft(dev, "volume", value, f, ctx, len(pend)))

    def _new_hour(
        self,
        dev: str,
        p: Profile,
        hour: int,
        f: Any,
        ctx: DetectContext,
        learning: bool,
        out: list[AlertDraft],
    ) -> None:
        if p.hour >= 0 and learning:
            n, mean, m2 = p.w  # Welford's online mean and variance
            n += 1
            delta = p.hour_bytes - mean
            mean += delta / n
            m2 += delta * (p.hour_bytes - mean)
            p.w = [n, mean, m2]
        p.hour, p.hour_bytes = hour, 0
        hod = 1 << int(hour % 24)
        if learning:
            p.hours |= hod
        elif (
            p.hours
            and not p.hours & hod
            and ctx.now_ns - p.first_ns > DAY_NS
            and ctx.learning_ns >= DAY_NS
        ):
            self._add(out, self._see(dev, p, "timing", f"{hour % 24:02d}h UTC", f, ctx, False))
        n, mean, m2 = p.w
        if n < 3:
            p.limit = None
            return
        v = self.config.volume
        std = math.sqrt(m2 / (n - 1))
        p.limit = max(mean + v.k * std, v.factor * mean, v.min_bytes)

    # --- acceptance and persistence -----------------------------------------------------------
    def accept(self, device: str, dimension: str | None = None) -> int:
        """Move a device's pending departures into its baseline; returns how many values."""
        p = self.profiles.get(device)
        if p is None:
            return 0
        n = 0
        for dim, values in list(p.pending.items()):
            if dimension is not None and dim != dimension:
                continue
            if dim == "volume":
                for _ in values:  # the accepted hours become part of the learned volume
                    nn, mean, m2 = p.w
                    nn += 1
                    delta = p.hour_bytes - mean
                    mean += delta / nn
                    m2 += delta * (p.hour_bytes - mean)
                    p.w = [nn, mean, m2]
            elif dim == "category":
                for v in values:
                    cat, _, val = v.partition(": ")
                    self.categories.setdefault(cat, {}).setdefault("values", set()).add(val)
            else:
                p.known.setdefault(dim, set()).update(values)
            n += len(values)
            p.pending[dim] = set()
        return n

    def state(self) -> dict[str, Any]:
        return {
            "profiles": {k: v.to_state() for k, v in self.profiles.items()},
            "categories": {
                c: {d: sorted(v) for d, v in dims.items()} for c, dims in self.categories.items()
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.profiles.clear()
        for k, v in state.get("profiles", {}).items():
            self.profiles.put(k, Profile.from_state(v))
        self.categories = {
            c: {d: set(v) for d, v in dims.items()}
            for c, dims in state.get("categories", {}).items()
        }
