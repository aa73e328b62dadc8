"""The controls knowledge files, loaded and validated once: finding types, framework mappings,
default accounts, end-of-life systems, TLS policy, DICOM parameters.

A malformed file raises ConfigError naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

SEVERITIES = ("info", "low", "medium", "high", "critical")


def _load(name: str) -> dict[str, Any]:
    try:
        text = resources.files("medsentry.data").joinpath(name).read_text("utf-8")
        doc = yamlfile.load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read data file: {exc}", name) from None
    if not isinstance(doc, dict):
        raise ConfigError("not a mapping at the top level", name)
    return doc


def _need(cond: bool, name: str, where: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {what}", name)


@dataclass(frozen=True)
class FindingType:
    id: str
    title: str
    severity: str
    category: str
    description: str
    remediation: str
    source: str


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    source: str
    controls: dict[str, str]


@dataclass(frozen=True)
class ControlRef:
    framework: str
    control: str
    title: str
    why: str


@dataclass(frozen=True)
class DefaultAccount:
    username: str
    protocols: tuple[str, ...]
    vendor: str
    product: str
    source: str


@dataclass(frozen=True)
class DefaultCommunity:
    community: str
    product: str
    source: str


@dataclass(frozen=True)
class EolSystem:
    name: str
    eol: dt.date
    patterns: tuple[re.Pattern[str], ...]
    source: str


@dataclass(frozen=True)
class WeakPattern:
    pattern: re.Pattern[str]
    why: str
    source: str


@dataclass(frozen=True)
class Knowledge:
    types: dict[str, FindingType]
    frameworks: dict[str, Framework]
    mappings: dict[str, dict[str, list[ControlRef]]]
    not_applicable: dict[str, dict[str, str]]
    accounts: list[DefaultAccount]
    communities: list[DefaultCommunity]
    eol: list[EolSystem]
    min_tls_version: int
    weak_ciphers: list[WeakPattern]
    weak_signatures: list[WeakPattern]
    min_rsa_bits: int
    dicom_default_aes: dict[str, str]
    dicom_distinct_ae_threshold: int
    secure_variants: dict[str, dict[str, str]]
    insecure_services: dict[str, str]
    clinical_media: dict[str, str] = field(default_factory=dict)  # media type -> why (source)

    def controls_for(self, finding_type: str) -> dict[str, list[ControlRef]]:
        return self.mappings.get(finding_type, {})


def _types() -> dict[str, FindingType]:
    name = "controls_findings.yaml"
    doc = _load(name)
    raw = doc.get("types")
    _need(isinstance(raw, dict) and bool(raw), name, "types", "missing or empty")
    out: dict[str, FindingType] = {}
    for tid, t in raw.items():
        where = f"types.{tid}"
        _need(isinstance(t, dict), name, where, "must be a mapping")
        for key in ("title", "severity", "category", "description", "remediation", "source"):
            _need(isinstance(t.get(key), str) and bool(t[key]), name, f"{where}.{key}", "missing")
        _need(t["severity"] in SEVERITIES, name, f"{where}.severity", f"not one of {SEVERITIES}")
        out[tid] = FindingType(
            tid,
            t["title"],
            t["severity"],
            t["category"],
            t["description"].strip(),
            t["remediation"].strip(),
            t["source"],
        )
    return out


def _frameworks(
    types: dict[str, FindingType],
) -> tuple[dict[str, Framework], dict[str, dict[str, list[ControlRef]]], dict[str, dict[str, str]]]:
    name = "controls_frameworks.yaml"
    doc = _load(name)
    fws: dict[str, Framework] = {}
    for fid, f in (doc.get("frameworks") or {}).items():
        where = f"frameworks.{fid}"
        _need(isinstance(f, dict), name, where, "must be a mapping")
        for key in ("name", "source"):
            _need(isinstance(f.get(key), str) and bool(f[key]), name, f"{where}.{key}", "missing")
        ctl = f.get("controls")
        _need(isinstance(ctl, dict) and bool(ctl), name, f"{where}.controls", "missing or empty")
        fws[fid] = Framework(
            fid, f["name"], " ".join(f["source"].split()), {str(k): str(v) for k, v in ctl.items()}
        )
    _need(bool(fws), name, "frameworks", "missing or empty")
    maps: dict[str, dict[str, list[ControlRef]]] = {}
    na: dict[str, dict[str, str]] = {}
    for tid, per_fw in (doc.get("mappings") or {}).items():
        where = f"mappings.{tid}"
        _need(tid in types, name, where, "unknown finding type")
        _need(isinstance(per_fw, dict), name, where, "must be a mapping")
        for fid, refs in per_fw.items():
            w = f"{where}.{fid}"
            _need(fid in fws, name, w, "unknown framework")
            if isinstance(refs, dict):
                reason = refs.get("not_applicable")
                _need(
                    isinstance(reason, str) and bool(reason), name, w, "not_applicable: no reason"
                )
                na.setdefault(tid, {})[fid] = reason
                continue
            _need(isinstance(refs, list) and bool(refs), name, w, "a list of {id, why}")
            for i, r in enumerate(refs):
                _need(isinstance(r, dict), name, f"{w}[{i}]", "must be {id, why}")
                cid = str(r.get("id"))
                _need(cid in fws[fid].controls, name, f"{w}[{i}].id", f"unknown control {cid!r}")
                _need(isinstance(r.get("why"), str), name, f"{w}[{i}].why", "missing")
                maps.setdefault(tid, {}).setdefault(fid, []).append(
                    ControlRef(fid, cid, fws[fid].controls[cid], r["why"])
                )
    return fws, maps, na


def _credentials() -> tuple[list[DefaultAccount], list[DefaultCommunity]]:
    name = "controls_default_credentials.yaml"
    doc = _load(name)
    accounts: list[DefaultAccount] = []
    for i, a in enumerate(doc.get("accounts") or []):
        where = f"accounts[{i}]"
        for key in ("username", "vendor", "product", "source"):
            _need(isinstance(a.get(key), str) and bool(a[key]), name, f"{where}.{key}", "missing")
        protos = a.get("protocols")
        _need(isinstance(protos, list) and bool(protos), name, f"{where}.protocols", "missing")
        accounts.append(
            DefaultAccount(a["username"], tuple(protos), a["vendor"], a["product"], a["source"])
        )
    comms: list[DefaultCommunity] = []
    for i, c in enumerate(doc.get("snmp_communities") or []):
        where = f"snmp_communities[{i}]"
        for key in ("community", "product", "source"):
            _need(isinstance(c.get(key), str) and bool(c[key]), name, f"{where}.{key}", "missing")
        comms.append(DefaultCommunity(c["community"], c["product"], c["source"]))
    _need(bool(accounts) and bool(comms), name, "accounts", "no default credentials listed")
    return accounts, comms


def _eol() -> list[EolSystem]:
    name = "controls_eol_os.yaml"
    doc = _load(name)
    out: list[EolSystem] = []
    for i, s in enumerate(doc.get("systems") or []):
        where = f"systems[{i}]"
        _need(isinstance(s.get("name"), str), name, f"{where}.name", "missing")
        _need(isinstance(s.get("eol"), dt.date), name, f"{where}.eol", "not a date (YYYY-MM-DD)")
        _need(isinstance(s.get("source"), str), name, f"{where}.source", "missing")
        pats = s.get("patterns")
        _need(isinstance(pats, list) and bool(pats), name, f"{where}.patterns", "missing")
        try:
            compiled = tuple(re.compile(p, re.I) for p in pats)
        except re.error as exc:
            raise ConfigError(f"{where}.patterns: {exc}", name) from None
        out.append(EolSystem(s["name"], s["eol"], compiled, s["source"]))
    return out


def _weak(name: str, items: Any, where: str) -> list[WeakPattern]:
    _need(isinstance(items, list) and bool(items), name, where, "missing")
    out = []
    for i, w in enumerate(items):
        try:
            out.append(WeakPattern(re.compile(w["pattern"], re.I), w["why"], w["source"]))
        except (KeyError, TypeError, re.error) as exc:
            raise ConfigError(f"{where}[{i}]: {exc}", name) from None
    return out


@functools.cache
def knowledge() -> Knowledge:
    types = _types()
    fws, maps, na = _frameworks(types)
    accounts, comms = _credentials()
    name = "controls_tls_policy.yaml"
    tls = _load(name)
    _need(isinstance(tls.get("minimum_version"), int), name, "minimum_version", "not an integer")
    _need(isinstance(tls.get("minimum_rsa_bits"), int), name, "minimum_rsa_bits", "not an integer")
    pname = "controls_parameters.yaml"
    params = _load(pname)
    dicom = params.get("dicom") or {}
    aes = dicom.get("default_calling_ae_titles")
    _need(isinstance(aes, list) and bool(aes), pname, "dicom.default_calling_ae_titles", "missing")
    thr = dicom.get("distinct_calling_ae_threshold")
    _need(isinstance(thr, int) and thr > 1, pname, "dicom.distinct_calling_ae_threshold", "int > 1")
    sv = params.get("secure_variants")
    _need(isinstance(sv, dict) and bool(sv), pname, "secure_variants", "missing")
    ins = params.get("insecure_services")
    _need(isinstance(ins, dict) and bool(ins), pname, "insecure_services", "missing")
    for proto, tid in ins.items():
        _need(tid in types, pname, f"insecure_services.{proto}", f"unknown finding type {tid!r}")
    media: dict[str, str] = {}
    for i, m in enumerate(params.get("clinical_media_types") or []):
        where = f"clinical_media_types[{i}]"
        for key in ("type", "why", "source"):
            _need(isinstance(m.get(key), str) and bool(m[key]), pname, f"{where}.{key}", "missing")
        media[m["type"].lower()] = f"{m['why']} ({m['source']})"
    return Knowledge(
        types=types,
        frameworks=fws,
        mappings=maps,
        not_applicable=na,
        accounts=accounts,
        communities=comms,
        eol=_eol(),
        min_tls_version=tls["minimum_version"],
        weak_ciphers=_weak(name, tls.get("weak_cipher_patterns"), "weak_cipher_patterns"),
        weak_signatures=_weak(name, tls.get("weak_signature_patterns"), "weak_signature_patterns"),
        min_rsa_bits=tls["minimum_rsa_bits"],
        dicom_default_aes={str(a["ae"]).strip().upper(): a["source"] for a in aes},
        dicom_distinct_ae_threshold=thr,
        secure_variants={k: dict(v) for k, v in sv.items()},
        insecure_services=dict(ins),
        clinical_media=media,
    )
