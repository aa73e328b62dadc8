"""Load and validate the protocol knowledge files: `data/protocol_signatures.yaml` (byte
signatures) and `data/ports.yaml` (the port table, from the IANA service name registry).

A signature says, for one protocol and transport, what the first bytes of the client-to-server
(`c2s`), server-to-client (`s2c`) or either (`any`) direction look like: byte patterns at fixed
offsets and, where a pattern cannot say it, a named structural validator
(`signatures_validators.VALIDATORS`). Ports are hints (a small bonus) unless `port_required`.
An `any` signature may name a `role` function (`roles.ROLES`) telling which side sent a
direction's bytes, for flows whose client the flow table could only guess.
A malformed file raises ConfigError naming the file and the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError
from medsentry.protocols.roles import ROLES, Role
from medsentry.protocols.signatures_validators import (
    DETAILS,
    EXCHANGES,
    FIRST_BYTES,
    VALIDATORS,
    Exchange,
    Validator,
    Verdict,
)

TRANSPORTS = {"tcp": 6, "udp": 17}
_SIDES = ("c2s", "s2c", "any")
_SIG_KEYS = {
    "name",
    "protocol",
    "transport",
    "c2s",
    "s2c",
    "any",
    "ports",
    "port_required",
    "confidence",
    "refines",
    "detail",
    "exchange",
    "role",
    "source",
}
_SIDE_KEYS = {"match", "validator"}
_PATTERN_KEYS = {"offset", "ascii", "hex", "any_ascii", "any_hex", "mask", "nocase"}


@dataclass(frozen=True, slots=True)
class Pattern:
    """Bytes at a fixed offset: one of `alternatives`, compared under `mask` when given."""

    offset: int
    alternatives: tuple[bytes, ...]
    mask: bytes | None = None
    nocase: bool = False

    def verdict(self, data: bytes) -> Verdict:
        """True/False, or None when `data` ends before the pattern and is still a prefix."""
        undecided = False
        window = data[self.offset :]
        if self.nocase:
            window = window.lower()
        for alt in self.alternatives:
            if len(window) >= len(alt):
                got = window[: len(alt)]
                if self.mask is not None:
                    got = bytes(g & m for g, m in zip(got, self.mask, strict=True))
                if got == alt:
                    return True
            elif self.mask is None and alt[: len(window)] == window:
                undecided = True
            elif self.mask is not None:
                masked = bytes(g & m for g, m in zip(window, self.mask, strict=False))
                undecided = undecided or masked == alt[: len(window)]
        return None if undecided else False


@dataclass(frozen=True, slots=True)
class SideSpec:
    """What one direction's first bytes must show: all patterns, then the validator."""

    patterns: tuple[Pattern, ...]
    validator: Validator | None
    first: frozenset[int] | None = None  # the values data[0] may take (pre-filter)

    def verdict(self, data: bytes, complete: bool) -> Verdict:
        return side_verdict(
            data, complete, self.first, [p.verdict for p in self.patterns], self.validator
        )


def run_validator(validator: Validator, data: bytes, complete: bool) -> Verdict:
    """The validator's verdict; undecided at the end of the data is False."""
    try:
        v = validator(data)
    except (IndexError, ValueError):  # a validator bug must not take the flow down
        return False
    if v is None:
        return False if complete else None
    return v


def side_verdict(
    data: bytes,
    complete: bool,
    first: frozenset[int] | None,
    patterns: Sequence[Callable[[bytes], Verdict]],
    validator: Validator | None,
) -> Verdict:
    """One direction's verdict: every pattern, then the validator (see `SideSpec`)."""
    if not data:
        return False if complete else None
    if first is not None and data[0] not in first:
        return False
    pending = False
    for pattern in patterns:
        v = pattern(data)
        if v is False:
            return False
        if v is None:
            pending = True
    if pending:
        return False if complete else None
    if validator is not None:
        return run_validator(validator, data, complete)
    return True


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    protocol: str
    transport: int
    c2s: SideSpec | None
    s2c: SideSpec | None
    any: SideSpec | None
    ports: frozenset[int]
    port_required: bool
    confidence: float
    refines: str | None
    detail: Callable[[bytes, bytes], str | None] | None
    exchange: Exchange | None = None  # a check over both directions together
    # `any` only: which side sent a direction's bytes (protocols.roles), for a guessed client
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class PortEntry:
    transport: int
    port: int
    protocol: str
    service: str
    confidence: float


def _fail(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {message}")


def _bytes_of(value: Any, kind: str, source: str, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise _fail(source, where, f"{kind} must be a non-empty string")
    if kind == "ascii":
        try:
            return value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise _fail(source, where, f"ascii pattern {value!r} is not ASCII") from exc
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise _fail(source, where, f"hex pattern {value!r} is not hexadecimal") from exc


def _pattern(raw: Any, source: str, where: str) -> Pattern:
    if not isinstance(raw, dict):
        raise _fail(source, where, "a pattern must be a mapping")
    unknown = set(raw) - _PATTERN_KEYS
    if unknown:
        raise _fail(source, where, f"unknown pattern key(s) {sorted(unknown)}")
    offset = raw.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 4096:
        raise _fail(source, where, f"offset {offset!r} must be an integer 0..4095")
    kinds = [k for k in ("ascii", "hex", "any_ascii", "any_hex") if k in raw]
    if len(kinds) != 1:
        raise _fail(source, where, "a pattern needs exactly one of ascii, hex, any_ascii, any_hex")
    kind = kinds[0]
    if kind.startswith("any_"):
        values = raw[kind]
        if not isinstance(values, list) or not values:
            raise _fail(source, where, f"{kind} must be a non-empty list")
        alts = tuple(_bytes_of(v, kind[4:], source, where) for v in values)
    else:
        alts = (_bytes_of(raw[kind], kind, source, where),)
    nocase = raw.get("nocase", False)
    if not isinstance(nocase, bool) or (nocase and "ascii" not in kind):
        raise _fail(source, where, "nocase must be a boolean and only goes with ascii patterns")
    if nocase:
        alts = tuple(a.lower() for a in alts)
    mask = None
    if "mask" in raw:
        mask = _bytes_of(raw["mask"], "hex", source, where)
        if any(len(a) != len(mask) for a in alts):
            raise _fail(source, where, "mask and pattern lengths differ")
        if any(bytes(x & m for x, m in zip(a, mask, strict=True)) != a for a in alts):
            raise _fail(source, where, "pattern has bits outside its mask")
    return Pattern(offset, alts, mask, nocase)


def _side(raw: Any, source: str, where: str) -> SideSpec:
    if not isinstance(raw, dict):
        raise _fail(source, where, "a direction spec must be a mapping with match/validator")
    unknown = set(raw) - _SIDE_KEYS
    if unknown:
        raise _fail(source, where, f"unknown key(s) {sorted(unknown)}")
    patterns_raw = raw.get("match", [])
    if not isinstance(patterns_raw, list):
        raise _fail(source, where, "match must be a list of patterns")
    patterns = tuple(_pattern(p, source, f"{where}.match[{i}]") for i, p in enumerate(patterns_raw))
    validator = None
    first: frozenset[int] | None = None
    if "validator" in raw:
        name = raw["validator"]
        if name not in VALIDATORS:
            raise _fail(source, where, f"unknown validator {name!r}")
        validator = VALIDATORS[name]
        first = FIRST_BYTES.get(name)
    for pattern in patterns:
        if pattern.offset == 0 and pattern.mask is None and not pattern.nocase:
            starts = frozenset(alt[0] for alt in pattern.alternatives)
            first = starts if first is None else first & starts
    if not patterns and validator is None:
        raise _fail(source, where, "a direction spec needs a pattern or a validator")
    return SideSpec(patterns, validator, first)


def _ports(raw: Any, source: str, where: str) -> frozenset[int]:
    if not isinstance(raw, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in raw
    ):
        raise _fail(source, where, "ports must be a list of integers 1..65535")
    return frozenset(raw)


def _signature(raw: Any, index: int, source: str) -> Signature:
    if not isinstance(raw, dict):
        raise _fail(source, f"signature #{index}", "must be a mapping")
    name = raw.get("name")
    where = f"signature #{index} ({name or 'unnamed'})"
    if not isinstance(name, str) or not name:
        raise _fail(source, where, "needs a name")
    unknown = set(raw) - _SIG_KEYS
    if unknown:
        raise _fail(source, where, f"unknown key(s) {sorted(unknown)}")
    protocol = raw.get("protocol")
    if not isinstance(protocol, str) or not protocol or protocol != protocol.lower():
        raise _fail(source, where, "protocol must be a lowercase name")
    transport = raw.get("transport")
    if transport not in TRANSPORTS:
        raise _fail(source, where, f"transport must be one of {sorted(TRANSPORTS)}")
    sides = {k: _side(raw[k], source, f"{where}.{k}") if k in raw else None for k in _SIDES}
    if sides["any"] is not None and (sides["c2s"] or sides["s2c"]):
        raise _fail(source, where, "'any' cannot be combined with c2s/s2c")
    exchange = None
    if "exchange" in raw:
        if raw["exchange"] not in EXCHANGES:
            raise _fail(source, where, f"unknown exchange check {raw['exchange']!r}")
        exchange = EXCHANGES[raw["exchange"]]
    if not any(sides.values()) and exchange is None:
        raise _fail(source, where, "needs c2s, s2c, any or exchange")
    ports = _ports(raw.get("ports", []), source, f"{where}.ports")
    port_required = raw.get("port_required", False)
    if not isinstance(port_required, bool) or (port_required and not ports):
        raise _fail(source, where, "port_required must be a boolean and needs ports")
    confidence = raw.get("confidence")
    if not isinstance(confidence, int | float) or not 0.0 < confidence <= 1.0:
        raise _fail(source, where, "confidence must be a number in (0, 1]")
    if not isinstance(raw.get("source"), str) or not raw["source"]:
        raise _fail(source, where, "needs a source (the standard section its bytes come from)")
    refines = raw.get("refines")
    if refines is not None and not isinstance(refines, str):
        raise _fail(source, where, "refines must be a protocol name")
    detail = None
    if "detail" in raw:
        if raw["detail"] not in DETAILS:
            raise _fail(source, where, f"unknown detail function {raw['detail']!r}")
        detail = DETAILS[raw["detail"]]
    role = None
    if "role" in raw:
        if raw["role"] not in ROLES:
            raise _fail(source, where, f"unknown role function {raw['role']!r}")
        if sides["any"] is None:
            raise _fail(source, where, "role needs 'any' (c2s/s2c say the sides themselves)")
        role = ROLES[raw["role"]]
    return Signature(
        name=name,
        protocol=protocol,
        transport=TRANSPORTS[transport],
        c2s=sides["c2s"],
        s2c=sides["s2c"],
        any=sides["any"],
        ports=ports,
        port_required=port_required,
        confidence=float(confidence),
        refines=refines,
        detail=detail,
        exchange=exchange,
        role=role,
    )


def _load_yaml(path: Path | None, default: str) -> tuple[Any, str]:
    if path is None:
        ref = resources.files("medsentry") / "data" / default
        source = f"medsentry/data/{default}"
        text = ref.read_bytes()
    else:
        source = str(path)
        try:
            text = Path(path).read_bytes()  # bad UTF-8: a YAMLError below
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        doc = yamlfile.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{line}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
        raise ConfigError(f"{source}: must be a mapping with a 'source' string")
    return doc, source


def load_signatures(path: Path | None = None) -> tuple[Signature, ...]:
    """Parse and validate the signature file (the packaged one by default)."""
    doc, source = _load_yaml(path, "protocol_signatures.yaml")
    raw = doc.get("signatures")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'signatures' must be a non-empty list")
    sigs = tuple(_signature(entry, i, source) for i, entry in enumerate(raw))
    seen: set[str] = set()
    for sig in sigs:
        if sig.name in seen:
            raise ConfigError(f"{source}: signature {sig.name!r} is defined twice")
        seen.add(sig.name)
    protocols = {s.protocol for s in sigs}
    for sig in sigs:
        if sig.refines is not None and sig.refines not in protocols:
            raise ConfigError(f"{source}: {sig.name}: refines unknown protocol {sig.refines!r}")
    return sigs


def load_ports(path: Path | None = None) -> dict[tuple[int, int], PortEntry]:
    """Parse and validate the port table: (transport number, port) -> entry."""
    doc, source = _load_yaml(path, "ports.yaml")
    default_conf = doc.get("confidence", 0.4)
    if not isinstance(default_conf, int | float) or not 0 < default_conf <= 1:
        raise ConfigError(f"{source}: confidence must be a number in (0, 1]")
    raw = doc.get("ports")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'ports' must be a non-empty list")
    table: dict[tuple[int, int], PortEntry] = {}
    for i, entry in enumerate(raw):
        where = f"ports[{i}]"
        if not isinstance(entry, dict) or set(entry) - {
            "port",
            "transport",
            "protocol",
            "service",
            "confidence",
        }:
            raise ConfigError(f"{source}: {where}: needs port, transport, protocol, service")
        port, transport = entry.get("port"), entry.get("transport")
        protocol, service = entry.get("protocol"), entry.get("service")
        conf = entry.get("confidence", default_conf)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"{source}: {where}: port {port!r} must be 1..65535")
        if transport not in TRANSPORTS:
            raise ConfigError(f"{source}: {where}: transport must be tcp or udp")
        if not isinstance(protocol, str) or protocol != protocol.lower() or not protocol:
            raise ConfigError(f"{source}: {where}: protocol must be a lowercase name")
        if not isinstance(service, str) or not service:
            raise ConfigError(f"{source}: {where}: service (IANA service name) missing")
        if not isinstance(conf, int | float) or not 0 < conf <= 1:
            raise ConfigError(f"{source}: {where}: confidence must be in (0, 1]")
        key = (TRANSPORTS[transport], port)
        if key in table:
            raise ConfigError(f"{source}: {where}: {transport}/{port} listed twice")
        table[key] = PortEntry(TRANSPORTS[transport], port, protocol, service, float(conf))
    return table
