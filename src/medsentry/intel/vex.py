"""VEX documents -> `VexStatement`s: CycloneDX VEX, OpenVEX and CSAF VEX.

- CycloneDX (1.4..1.6) `vulnerabilities[]` with `analysis` (state, justification, response,
  detail) and `affects[]` (ref: a bom-ref, a BOM-Link `urn:cdx:<serial>/<version>#<bom-ref>`,
  or a purl; optional `versions[]` with per-version status). Validated against the CycloneDX
  schema of its specVersion first.
- OpenVEX (v0.0.x and v0.2.0): `statements[]` with vulnerability, products (with optional
  subcomponents and identifiers), status, justification, impact_statement, action_statement.
  OpenVEX spec §"Statement": a not_affected statement MUST carry a justification or an impact
  statement; checked here.
- CSAF 2.0 (profile csaf_vex, §4.5): read with `medsentry.intel.csaf.parse_csaf`;
  product_status known_not_affected / known_affected / fixed / under_investigation per product,
  flags (§3.2.3.5) as justifications, threats of category impact (§3.2.3.13) as impact
  statements, remediations (§3.2.3.12) as action statements.

Statuses and justifications are mapped to the CISA vocabulary with `data/vex_vocabulary.yaml`.
Every defect is an `InputError` naming the document and the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError, InputError
from medsentry.intel.fields import ErrorAt, optional_array, optional_object
from medsentry.intel.sbom_cyclonedx import decode_json, is_cyclonedx_json, read_cyclonedx_json
from medsentry.intel.sbom_model import NOT_AFFECTED, VEX_STATUSES, VexStatement


@dataclass(frozen=True)
class VexVocabulary:
    statuses: dict[str, dict[str, str]]  # format -> written status -> CISA status
    canonical: frozenset[str]
    from_cyclonedx: dict[str, str]
    to_cyclonedx: dict[str, str]


@cache
def vex_vocabulary() -> VexVocabulary:
    source = "medsentry/data/vex_vocabulary.yaml"
    try:
        doc: Any = yamlfile.load(
            (resources.files("medsentry") / "data" / "vex_vocabulary.yaml").read_text("utf-8")
        )
        statuses = doc["statuses"]
        just = doc["justifications"]
        vocab = VexVocabulary(
            statuses={f: dict(m) for f, m in statuses.items()},
            canonical=frozenset(just["canonical"]),
            from_cyclonedx=dict(just["cyclonedx"]),
            to_cyclonedx=dict(just["to_cyclonedx"]),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{source}: invalid ({exc})") from exc
    if not isinstance(doc.get("source"), str):
        raise ConfigError(f"{source}: needs a 'source' string")
    for fmt, m in vocab.statuses.items():
        bad = set(m.values()) - set(VEX_STATUSES)
        if bad:
            raise ConfigError(f"{source}: statuses.{fmt} maps to unknown {sorted(bad)}")
    bad = (set(vocab.from_cyclonedx.values()) | set(vocab.to_cyclonedx)) - vocab.canonical
    if bad:
        raise ConfigError(f"{source}: justification mapping names unknown labels {sorted(bad)}")
    return vocab


@dataclass(frozen=True)
class VexDocument:
    format: str  # cyclonedx | openvex | csaf
    source: str
    sha256: str
    statements: tuple[VexStatement, ...]


def parse_vex(data: bytes, source: str) -> VexDocument:
    try:
        return _parse_vex(data, source)
    except RecursionError:  # schema validation recurses per level of nesting
        raise InputError("VEX document nested too deep to read", source=source) from None


def _parse_vex(data: bytes, source: str) -> VexDocument:
    sha = hashlib.sha256(data).hexdigest()
    if data.lstrip()[:1] != b"{":
        raise InputError("not a VEX document: expected a JSON object", source=source)
    doc = decode_json(data, source)
    if is_cyclonedx_json(doc):
        read_cyclonedx_json(data, source, doc)
        return VexDocument("cyclonedx", source, sha, tuple(_cyclonedx(doc, source)))
    if isinstance(doc, dict) and str(doc.get("@context", "")).startswith("https://openvex.dev/ns"):
        return VexDocument("openvex", source, sha, tuple(_openvex(doc, source)))
    if isinstance(doc, dict) and isinstance(doc.get("document"), dict):
        from medsentry.intel.csaf import advisory_from_json

        adv = advisory_from_json(doc, source, sha)
        return VexDocument("csaf", source, sha, tuple(_csaf(adv, source, doc)))
    raise InputError(
        "not a VEX document: neither CycloneDX ($.bomFormat), OpenVEX ($.@context) nor CSAF"
        " ($.document)",
        source=source,
    )


def read_vex(path: Path) -> VexDocument:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    return parse_vex(data, str(path))


# -- CycloneDX -------------------------------------------------------------------------------


def _bom_link_fragment(ref: str) -> str:
    """The bom-ref a BOM-Link (`urn:cdx:<serial>/<version>#<bom-ref>`) points at, else ref."""
    if ref.startswith("urn:cdx:") and "#" in ref:
        return ref.split("#", 1)[1]
    return ref


def _cdx_components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(comps: Any) -> None:
        for c in comps or ():
            if isinstance(c, dict):
                if c.get("bom-ref"):
                    out[str(c["bom-ref"])] = c
                walk(c.get("components"))

    mc = (doc.get("metadata") or {}).get("component")
    if isinstance(mc, dict):
        walk([mc])
    walk(doc.get("components"))
    return out


def _cyclonedx(doc: dict[str, Any], source: str) -> list[VexStatement]:
    vocab = vex_vocabulary()
    comps = _cdx_components(doc)
    doc_time = str((doc.get("metadata") or {}).get("timestamp", "") or "")
    out: list[VexStatement] = []
    for i, v in enumerate(doc.get("vulnerabilities") or ()):
        path = f"$.vulnerabilities[{i}]"
        vid = str(v.get("id", "") or "")
        if not vid:
            raise InputError(f"CycloneDX VEX field {path}.id: missing", source=source)
        analysis = v.get("analysis") or {}
        state = analysis.get("state")
        if not state:
            continue  # a vulnerability without analysis states nothing
        status = vocab.statuses["cyclonedx"][state]  # the schema checked the enumeration
        raw_just = str(analysis.get("justification", "") or "")
        justification = vocab.from_cyclonedx.get(raw_just, "")
        detail = str(analysis.get("detail", "") or "")
        responses = tuple(str(r) for r in analysis.get("response") or ())
        when = str(analysis.get("lastUpdated") or v.get("updated") or v.get("published") or "")
        aliases = tuple(
            str(r["id"]) for r in v.get("references") or () if isinstance(r, dict) and r.get("id")
        )
        affects = v.get("affects") or ()
        if not affects:
            # No product named: the statement covers every product of the document's maker.
            md = doc.get("metadata") or {}
            maker = md.get("manufacture") or md.get("manufacturer") or md.get("supplier") or {}
            if not (isinstance(maker, dict) and maker.get("name")):
                raise InputError(
                    f"CycloneDX VEX field {path}.affects: an analysis needs affected refs"
                    " (or a metadata.manufacture naming whose products it covers)",
                    source=source,
                )
            affects = [{"ref": "", "supplier": str(maker["name"])}]
        for j, a in enumerate(affects):
            if not isinstance(a, dict):  # the 1.4-1.6 schemas leave the item's type open
                raise InputError(
                    f"CycloneDX VEX field {path}.affects[{j}]: must be an object", source=source
                )
            ref = str(a.get("ref", ""))
            frag = _bom_link_fragment(ref)
            comp = comps.get(frag) or comps.get(ref) or {}
            purl = str(comp.get("purl", "") or "") or (ref if ref.startswith("pkg:") else "")
            base = VexStatement(
                vulnerability=vid,
                status=status,
                format="cyclonedx",
                document=source,
                purl=purl,
                cpe=str(comp.get("cpe", "") or ""),
                bom_ref=frag if not ref.startswith("pkg:") else "",
                product_name=str(comp.get("name", "") or ""),
                product_version=str(comp.get("version", "") or ""),
                supplier=str(a.get("supplier", "") or ""),
                justification=justification if status == NOT_AFFECTED else "",
                justification_raw=raw_just,
                impact_statement=detail if status == NOT_AFFECTED else "",
                action_statement=detail if status != NOT_AFFECTED else "",
                responses=responses,
                timestamp=when or doc_time,
                aliases=aliases,
            )
            versions = a.get("versions") or ()
            if not versions:
                out.append(base)
                continue
            for k, ver in enumerate(versions):
                if not isinstance(ver, dict):
                    raise InputError(
                        f"CycloneDX VEX field {path}.affects[{j}].versions[{k}]: must be an object",
                        source=source,
                    )
                vtext = str(ver.get("version") or ver.get("range") or "")
                vstatus = ver.get("status", "affected")
                st = status
                if vstatus == "unaffected" and status != NOT_AFFECTED:
                    st = NOT_AFFECTED
                elif vstatus == "unknown" and status == "affected":
                    st = "under_investigation"
                out.append(
                    _replace(
                        base,
                        status=st,
                        product_version=vtext,
                        impact_statement=base.impact_statement
                        or (detail if st == NOT_AFFECTED else ""),
                    )
                )
    return out


def _replace(s: VexStatement, **kw: Any) -> VexStatement:
    import msgspec

    return msgspec.structs.replace(s, **kw)


# -- OpenVEX ---------------------------------------------------------------------------------


def _need(obj: Any, key: str, path: str, source: str, kind: type = str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(f"OpenVEX field {path}.{key}: missing", source=source)
    val = obj[key]
    if not isinstance(val, kind) or (kind is str and not val.strip()):
        raise InputError(
            f"OpenVEX field {path}.{key}: must be a"
            f" {'non-empty string' if kind is str else kind.__name__}",
            source=source,
        )
    return val


def _openvex_error(source: str) -> ErrorAt:
    return lambda path, message: InputError(f"OpenVEX field {path}: {message}", source=source)


def _array(obj: dict[str, Any], key: str, path: str, source: str) -> list[Any]:
    return optional_array(obj, key, path, _openvex_error(source))


def _object(obj: dict[str, Any], key: str, path: str, source: str) -> dict[str, Any]:
    return optional_object(obj, key, path, _openvex_error(source))


def _openvex_products(st: dict[str, Any], path: str, source: str) -> list[dict[str, str]]:
    """Products as {id, purl, cpe, parent} (v0.2.0 objects or v0.0.x strings)."""
    out: list[dict[str, str]] = []
    for j, p in enumerate(_array(st, "products", path, source)):
        pp = f"{path}.products[{j}]"
        if isinstance(p, str):
            out.append({"id": p})
            continue
        if not isinstance(p, dict):
            raise InputError(f"OpenVEX field {pp}: must be an object or a string", source=source)
        ident = _object(p, "identifiers", pp, source)
        pid = str(p.get("@id", "") or "")
        if not pid and not ident:
            raise InputError(f"OpenVEX field {pp}.@id: missing", source=source)
        prod = {
            "id": pid,
            "purl": str(ident.get("purl", "") or ""),
            "cpe": str(ident.get("cpe23", "") or ident.get("cpe22", "") or ""),
        }
        subs = _array(p, "subcomponents", pp, source)
        if not subs:
            out.append(prod)
        for k, sc in enumerate(subs):
            sid = sc.get("@id", "") if isinstance(sc, dict) else ""
            if not sid:
                raise InputError(f"OpenVEX field {pp}.subcomponents[{k}].@id: missing", source)
            sident = _object(sc, "identifiers", f"{pp}.subcomponents[{k}]", source)
            out.append(
                {
                    "id": str(sid),
                    "purl": str(sident.get("purl", "") or ""),
                    "cpe": str(sident.get("cpe23", "") or ""),
                    "parent": pid,
                }
            )
    # v0.0.x: `subcomponents` at statement level, a list of strings
    for sc in _array(st, "subcomponents", path, source):
        if isinstance(sc, str):
            out.append({"id": sc, "parent": out[0]["id"] if out else ""})
    return out


def _openvex(doc: dict[str, Any], source: str) -> list[VexStatement]:
    vocab = vex_vocabulary()
    _need(doc, "@id", "$", source)
    _need(doc, "author", "$", source)
    doc_time = _need(doc, "timestamp", "$", source)
    statements = _need(doc, "statements", "$", source, list)
    out: list[VexStatement] = []
    for i, st in enumerate(statements):
        path = f"$.statements[{i}]"
        if not isinstance(st, dict):
            raise InputError(f"OpenVEX field {path}: must be an object", source=source)
        vuln = st.get("vulnerability")
        aliases: tuple[str, ...] = ()
        if isinstance(vuln, dict):  # v0.2.0
            vid = _need(vuln, "name", f"{path}.vulnerability", source)
            vp = f"{path}.vulnerability"
            aliases = tuple(str(a) for a in _array(vuln, "aliases", vp, source))
        elif isinstance(vuln, str) and vuln.strip():  # v0.0.x
            vid = vuln
        else:
            raise InputError(f"OpenVEX field {path}.vulnerability: missing", source=source)
        raw_status = _need(st, "status", path, source)
        status = vocab.statuses["openvex"].get(raw_status)
        if status is None:
            raise InputError(
                f"OpenVEX field {path}.status: {raw_status!r} is not one of"
                f" {', '.join(vocab.statuses['openvex'])}",
                source=source,
            )
        just = str(st.get("justification", "") or "")
        if just and just not in vocab.canonical:
            raise InputError(
                f"OpenVEX field {path}.justification: {just!r} is not an OpenVEX justification",
                source=source,
            )
        impact = str(st.get("impact_statement", "") or "")
        if status == NOT_AFFECTED and not (just or impact):
            raise InputError(
                f"OpenVEX field {path}.justification: a not_affected statement needs a"
                " justification or an impact_statement",
                source=source,
            )
        products = _openvex_products(st, path, source)
        if not products:
            raise InputError(f"OpenVEX field {path}.products: missing", source=source)
        for p in products:
            pid = p.get("id", "")
            purl = p.get("purl") or (pid if pid.startswith("pkg:") else "")
            cpe = p.get("cpe") or (pid if pid.startswith("cpe:") else "")
            out.append(
                VexStatement(
                    vulnerability=vid,
                    status=status,
                    format="openvex",
                    document=source,
                    purl=purl,
                    cpe=cpe,
                    product_name="" if (purl or cpe) else pid,
                    justification=just,
                    justification_raw=just,
                    impact_statement=impact,
                    action_statement=str(st.get("action_statement", "") or ""),
                    timestamp=str(st.get("timestamp") or doc_time),
                    aliases=aliases,
                )
            )
    return out


# -- CSAF VEX --------------------------------------------------------------------------------


def _ids_text(raw: dict[str, Any], i: int) -> str:
    """§3.2.3.6 ids[0].text of vulnerability i (a GHSA, vendor or OSV id when there is no CVE)."""
    try:
        ids = raw["vulnerabilities"][i].get("ids") or []
        return str(ids[0]["text"]) if ids else ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def _csaf(adv: Any, source: str, raw: dict[str, Any]) -> list[VexStatement]:
    vocab = vex_vocabulary()
    products = {p.product_id: p for p in adv.products}
    out: list[VexStatement] = []
    for i, v in enumerate(adv.vulnerabilities):
        vid = v.cve or _ids_text(raw, i) or v.title
        if not vid:
            raise InputError(
                f"CSAF field $.vulnerabilities[{i}].cve: a VEX statement needs the"
                " vulnerability's id",
                source=source,
            )
        flags = {pid: label for label, ids in v.flags.items() for pid in ids}
        impacts: dict[str, str] = {}
        for t in v.threats:
            if t.category == "impact":
                for pid in t.product_ids:
                    impacts.setdefault(pid, t.details)
        actions: dict[str, str] = {}
        for r in v.remediations:
            for pid in r.product_ids:
                actions.setdefault(pid, f"{r.category}: {r.details}")
        for category, ids in v.product_status.items():
            status = vocab.statuses["csaf"].get(category)
            if status is None:
                continue  # recommended: not a status statement
            for pid in ids:
                p = products.get(pid)
                if p is None:
                    continue
                if status == NOT_AFFECTED and pid not in flags and pid not in impacts:
                    raise InputError(
                        f"CSAF field $.vulnerabilities[{i}].flags: product {pid} is"
                        " known_not_affected without a flag or an impact threat (CSAF VEX"
                        " profile §4.5, test 6.1.27.9)",
                        source=source,
                    )
                name = " ".join(x for x in (p.family, p.product) if x) or p.name
                out.append(
                    VexStatement(
                        vulnerability=vid,
                        status=status,
                        format="csaf",
                        document=source,
                        purl=p.purl,
                        cpe=p.cpe,
                        product_name=name,
                        product_version=p.version or p.version_range,
                        supplier=p.vendors[-1] if p.vendors else "",
                        justification=flags.get(pid, "") if status == NOT_AFFECTED else "",
                        justification_raw=flags.get(pid, ""),
                        impact_statement=impacts.get(pid, ""),
                        action_statement=actions.get(pid, ""),
                        timestamp=adv.current_release,
                        aliases=tuple(a for a in (v.cve, _ids_text(raw, i)) if a and a != vid),
                    )
                )
    return out
