"""CSAF 2.0 advisories: parse, validate, normalize (OASIS CSAF v2.0, csaf-v2.0-os).

`parse_csaf(data, source)` reads one document's bytes and returns an `Advisory`. It checks the
parts medsentry relies on against the standard, and every violation is an `InputError` naming
the document and the JSON path of the field (e.g. `$.product_tree.branches[0].category`):

- §3.2.1 document: category, csaf_version "2.0", publisher (category, name, namespace), title,
  tracking (id, version, status, initial/current release date, revision_history);
- §3.1.2 branches: category from the enumeration, name, either `product` or `branches`;
- §3.1.3 full_product_name: product_id and name; §3.1.2.5 relationships; §3.1.2.4 product groups;
- §3.2.3 vulnerabilities: CVE and CWE formats, product_status categories, remediation and threat
  categories, CVSS vectors (recomputed with the `cvss` package: an invalid vector is an error, a
  stated base score that disagrees with the vector is a warning, cf. mandatory test §6.1.9);
- §6.1.1 mandatory test "Missing Definition of Product ID" and §6.1.2 "Multiple Definition of
  Product ID".

CSAF 2.1's `cvss_v4` score member is read as well (CVSS v4.0 vectors).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from medsentry.errors import InputError, utf8_error_offset
from medsentry.intel.model import (
    Advisory,
    Product,
    Remediation,
    Score,
    Threat,
    Vulnerability,
)

# §3.1.2.3.1 branches category
BRANCH_CATEGORIES = frozenset(
    {
        "architecture",
        "host_name",
        "language",
        "legacy",
        "patch_level",
        "product_family",
        "product_name",
        "product_version",
        "product_version_range",
        "service_pack",
        "specification",
        "vendor",
    }
)
# §3.2.3.9 product_status
PRODUCT_STATUS = frozenset(
    {
        "first_affected",
        "first_fixed",
        "fixed",
        "known_affected",
        "known_not_affected",
        "last_affected",
        "recommended",
        "under_investigation",
    }
)
# §3.2.3.12.1 remediations category
REMEDIATION_CATEGORIES = frozenset(
    {"mitigation", "no_fix_planned", "none_available", "vendor_fix", "workaround"}
)
# §3.2.3.13.1 threats category
THREAT_CATEGORIES = frozenset({"exploit_status", "impact", "target_set"})
# §3.1.2.5.1 relationships category
RELATIONSHIP_CATEGORIES = frozenset(
    {
        "default_component_of",
        "external_component_of",
        "installed_on",
        "installed_with",
        "optional_component_of",
    }
)
# §3.2.1.12.5 tracking status; §3.2.1.8.1 publisher category
TRACKING_STATUS = frozenset({"draft", "final", "interim"})
PUBLISHER_CATEGORIES = frozenset(
    {"coordinator", "discoverer", "other", "translator", "user", "vendor"}
)
# §3.2.3.5 flags label (CSAF VEX justifications)
FLAG_LABELS = frozenset(
    {
        "component_not_present",
        "inline_mitigations_already_exist",
        "vulnerable_code_cannot_be_controlled_by_adversary",
        "vulnerable_code_not_in_execute_path",
        "vulnerable_code_not_present",
    }
)
_CVE = re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$")  # §3.2.3.2
_CWE = re.compile(r"^CWE-[1-9]\d{0,5}$")  # §3.2.3.3.1


class _Doc:
    """Validation helpers bound to one document (its name for error messages)."""

    def __init__(self, source: str):
        self.source = source

    def error(self, path: str, message: str) -> InputError:
        return InputError(f"CSAF field {path}: {message}", source=self.source)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"must be an object, not {_kind(value)}")
        return value

    def arr(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(path, f"must be an array, not {_kind(value)}")
        return value

    def text(self, parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> str:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.error(f"{path}.{key}", "is required")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.error(f"{path}.{key}", f"must be a non-empty string, not {_kind(value)}")
        return value

    def enum(self, parent: dict[str, Any], key: str, path: str, allowed: frozenset[str]) -> str:
        value = self.text(parent, key, path)
        if value not in allowed:
            raise self.error(
                f"{path}.{key}", f"{value!r} is not one of {', '.join(sorted(allowed))}"
            )
        return value

    def ids(self, parent: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = parent.get(key)
        if value is None:
            return ()
        items = self.arr(value, f"{path}.{key}")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise self.error(f"{path}.{key}[{i}]", "must be a non-empty product id string")
        return tuple(items)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def decode_json(data: bytes, source: str) -> Any:
    """JSON bytes -> Python value; malformed JSON names the byte offset."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        m = re.search(r"byte (\d+)", str(exc))
        offset = int(m.group(1)) if m else (len(data) if "truncated" in str(exc) else None)
        raise InputError(f"not valid JSON ({str(exc).split(' (byte')[0]})", source, offset) from exc
    except UnicodeDecodeError:  # msgspec decodes each string as UTF-8 (RFC 8259 §8.1)
        offset = utf8_error_offset(data)
        raise InputError("not valid JSON (text that is not UTF-8)", source, offset) from None
    except RecursionError:  # RFC 8259 §9: a parser may limit the depth of nesting
        raise InputError("JSON nested too deep to read", source) from None


def is_csaf(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("document"), dict)
        and "csaf_version" in doc["document"]
    )


def parse_csaf(data: bytes, source: str) -> Advisory:
    """Parse and validate one CSAF 2.0 document (bytes) into an Advisory."""
    return advisory_from_json(decode_json(data, source), source, hashlib.sha256(data).hexdigest())


def read_csaf(path: Path) -> Advisory:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    return parse_csaf(data, str(path))


def advisory_from_json(doc: Any, source: str, sha256: str) -> Advisory:
    d = _Doc(source)
    root = d.obj(doc, "$")
    document = d.obj(root.get("document"), "$.document")
    p = "$.document"
    category = d.text(document, "category", p)
    version = d.text(document, "csaf_version", p)
    if version != "2.0":
        raise d.error(f"{p}.csaf_version", f"{version!r} is not 2.0")
    publisher = d.obj(document.get("publisher"), f"{p}.publisher")
    d.enum(publisher, "category", f"{p}.publisher", PUBLISHER_CATEGORIES)
    publisher_name = d.text(publisher, "name", f"{p}.publisher")
    d.text(publisher, "namespace", f"{p}.publisher")
    title = d.text(document, "title", p)
    tracking = d.obj(document.get("tracking"), f"{p}.tracking")
    t = f"{p}.tracking"
    advisory_id = d.text(tracking, "id", t)
    status = d.enum(tracking, "status", t, TRACKING_STATUS)
    tracking_version = d.text(tracking, "version", t)
    initial = d.text(tracking, "initial_release_date", t)
    current = d.text(tracking, "current_release_date", t)
    history = d.arr(tracking.get("revision_history"), f"{t}.revision_history")
    if not history:
        raise d.error(f"{t}.revision_history", "must list at least one revision")

    products, groups = _product_tree(d, root.get("product_tree"))
    known = {pr.product_id for pr in products}
    warnings: list[str] = []
    vulns = tuple(
        _vulnerability(d, v, f"$.vulnerabilities[{i}]", known, groups, warnings)
        for i, v in enumerate(d.arr(root.get("vulnerabilities", []), "$.vulnerabilities"))
    )
    return Advisory(
        advisory_id=advisory_id.strip(),
        title=title,
        category=category,
        publisher=publisher_name,
        version=tracking_version,
        status=status,
        initial_release=initial,
        current_release=current,
        source=source,
        sha256=sha256,
        products=tuple(products),
        vulnerabilities=vulns,
        warnings=tuple(warnings),
    )


# -- product tree ----------------------------------------------------------------------------


def _helper(d: _Doc, fpn: dict[str, Any], path: str) -> dict[str, Any]:
    helper = fpn.get("product_identification_helper")
    if helper is None:
        return {}
    h = d.obj(helper, f"{path}.product_identification_helper")
    out: dict[str, Any] = {}
    hp = f"{path}.product_identification_helper"
    if "cpe" in h:
        out["cpe"] = d.text(h, "cpe", hp)
    if "purl" in h:
        out["purl"] = d.text(h, "purl", hp)
    if "model_numbers" in h:
        nums = d.arr(h["model_numbers"], f"{hp}.model_numbers")
        out["model_numbers"] = tuple(str(n) for n in nums)
    return out


def _walk(
    d: _Doc, branch: Any, path: str, ctx: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    b = d.obj(branch, path)
    cat = d.enum(b, "category", path, BRANCH_CATEGORIES)
    name = d.text(b, "name", path)
    here = dict(ctx)
    if cat == "vendor":
        here["vendors"] = (*ctx.get("vendors", ()), name)
    elif cat == "product_family":
        here["family"] = f"{ctx.get('family', '')} {name}".strip()
    elif cat == "product_name":
        here["product"] = name
    elif cat == "product_version":
        here["version"] = name
    elif cat == "product_version_range":
        here["version_range"] = name
    else:  # architecture, patch_level, service_pack, ...: kept as part of the version text
        here["extra"] = f"{ctx.get('extra', '')} {name}".strip()
    has_product = "product" in b
    has_branches = "branches" in b
    if has_product == has_branches:
        raise d.error(path, "a branch must have exactly one of 'product' or 'branches' (§3.1.2)")
    if has_product:
        fpn = d.obj(b["product"], f"{path}.product")
        yield here, fpn, f"{path}.product"
        return
    children = d.arr(b["branches"], f"{path}.branches")
    for i, child in enumerate(children):
        yield from _walk(d, child, f"{path}.branches[{i}]", here)


def _product_tree(d: _Doc, tree: Any) -> tuple[list[Product], dict[str, tuple[str, ...]]]:
    if tree is None:
        return [], {}
    pt = d.obj(tree, "$.product_tree")
    products: list[Product] = []
    seen: dict[str, str] = {}

    def add(prod: Product, path: str) -> None:
        if prod.product_id in seen:
            raise d.error(
                f"{path}.product_id",
                f"product id {prod.product_id!r} is defined twice (also at {seen[prod.product_id]};"
                " §6.1.2)",
            )
        seen[prod.product_id] = path
        products.append(prod)

    for i, branch in enumerate(d.arr(pt.get("branches", []), "$.product_tree.branches")):
        for ctx, fpn, path in _walk(d, branch, f"$.product_tree.branches[{i}]", {}):
            version = ctx.get("version", "")
            if ctx.get("extra"):
                version = f"{version} {ctx['extra']}".strip()
            add(
                Product(
                    product_id=d.text(fpn, "product_id", path),
                    name=d.text(fpn, "name", path),
                    vendors=ctx.get("vendors", ()),
                    family=ctx.get("family", ""),
                    product=ctx.get("product", ""),
                    version=version,
                    version_range=ctx.get("version_range", ""),
                    **_helper(d, fpn, path),
                ),
                path,
            )
    fpns = d.arr(pt.get("full_product_names", []), "$.product_tree.full_product_names")
    for i, fpn_raw in enumerate(fpns):
        path = f"$.product_tree.full_product_names[{i}]"
        fpn = d.obj(fpn_raw, path)
        add(
            Product(
                product_id=d.text(fpn, "product_id", path),
                name=d.text(fpn, "name", path),
                product=d.text(fpn, "name", path),
                **_helper(d, fpn, path),
            ),
            path,
        )
    rels = d.arr(pt.get("relationships", []), "$.product_tree.relationships")
    pending: list[tuple[dict[str, Any], str]] = []
    for i, rel_raw in enumerate(rels):
        path = f"$.product_tree.relationships[{i}]"
        pending.append((d.obj(rel_raw, path), path))
    by_id = {p.product_id: p for p in products}
    for rel, path in pending:
        cat = d.enum(rel, "category", path, RELATIONSHIP_CATEGORIES)
        ref = d.text(rel, "product_reference", path)
        to = d.text(rel, "relates_to_product_reference", path)
        for key, pid in (("product_reference", ref), ("relates_to_product_reference", to)):
            if pid not in by_id:
                raise d.error(f"{path}.{key}", f"product id {pid!r} is not defined (§6.1.1)")
        fpn = d.obj(rel.get("full_product_name"), f"{path}.full_product_name")
        base = by_id[ref]
        add(
            Product(
                product_id=d.text(fpn, "product_id", f"{path}.full_product_name"),
                name=d.text(fpn, "name", f"{path}.full_product_name"),
                vendors=base.vendors,
                family=base.family,
                product=base.product,
                version=base.version,
                version_range=base.version_range,
                cpe=base.cpe,
                purl=base.purl,
                model_numbers=base.model_numbers,
                relationship=f"{cat} {to}",
            ),
            f"{path}.full_product_name",
        )
    known = {p.product_id for p in products}
    groups: dict[str, tuple[str, ...]] = {}
    for i, g_raw in enumerate(d.arr(pt.get("product_groups", []), "$.product_tree.product_groups")):
        path = f"$.product_tree.product_groups[{i}]"
        g = d.obj(g_raw, path)
        gid = d.text(g, "group_id", path)
        members = d.ids(g, "product_ids", path)
        for j, pid in enumerate(members):
            if pid not in known:
                raise d.error(f"{path}.product_ids[{j}]", f"product id {pid!r} is not defined")
        groups[gid] = members
    return products, groups


# -- vulnerabilities -------------------------------------------------------------------------


def _check_ids(d: _Doc, ids: tuple[str, ...], path: str, known: set[str]) -> None:
    for j, pid in enumerate(ids):
        if pid not in known:
            raise d.error(f"{path}[{j}]", f"product id {pid!r} is not defined (§6.1.1)")


def _group_ids(
    d: _Doc, obj: dict[str, Any], path: str, groups: dict[str, tuple[str, ...]]
) -> tuple[str, ...]:
    out: list[str] = []
    for j, gid in enumerate(d.ids(obj, "group_ids", path)):
        if gid not in groups:
            raise d.error(f"{path}.group_ids[{j}]", f"product group {gid!r} is not defined")
        out.extend(groups[gid])
    return tuple(out)


def compute_score(vector: str, version_hint: str = "") -> Score:
    """CVSS vector -> Score with the base score computed by the `cvss` package.

    Raises `CVSSError` (or ValueError) for a vector the specification does not allow.
    """
    if vector.startswith("CVSS:4.0/"):
        c4 = CVSS4(vector)
        return Score(
            version="4.0", vector=vector, base_score=float(c4.base_score), severity=str(c4.severity)
        )
    if vector.startswith(("CVSS:3.0/", "CVSS:3.1/")):
        c3 = CVSS3(vector)
        return Score(
            version=vector[5:8],
            vector=vector,
            base_score=float(c3.base_score),
            severity=str(c3.severities()[0]),
        )
    raise ValueError(f"not a CVSS v3 or v4 vector: {vector!r}")


def _score(
    d: _Doc, s: dict[str, Any], path: str, known: set[str], warnings: list[str]
) -> list[Score]:
    products = d.ids(s, "products", path)
    if not products:
        raise d.error(f"{path}.products", "is required and must list at least one product id")
    _check_ids(d, products, f"{path}.products", known)
    out: list[Score] = []
    for key in ("cvss_v3", "cvss_v4"):
        if key not in s:
            continue
        block = d.obj(s[key], f"{path}.{key}")
        vector = d.text(block, "vectorString", f"{path}.{key}")
        try:
            score = compute_score(vector)
        except (CVSSError, ValueError) as exc:
            raise d.error(
                f"{path}.{key}.vectorString", f"invalid CVSS vector {vector!r}: {exc}"
            ) from exc
        stated = block.get("baseScore")
        if stated is not None and not isinstance(stated, int | float):
            raise d.error(f"{path}.{key}.baseScore", f"must be a number, not {_kind(stated)}")
        if stated is not None and abs(float(stated) - score.base_score) > 0.05:
            warnings.append(
                f"{path}.{key}.baseScore: stated {stated} but {vector} computes to"
                f" {score.base_score} (§6.1.9)"
            )
        out.append(
            Score(
                version=score.version,
                vector=vector,
                base_score=score.base_score,
                severity=score.severity,
                stated_score=None if stated is None else float(stated),
                products=products,
            )
        )
    return out


def _vulnerability(
    d: _Doc,
    raw: Any,
    path: str,
    known: set[str],
    groups: dict[str, tuple[str, ...]],
    warnings: list[str],
) -> Vulnerability:
    v = d.obj(raw, path)
    cve = d.text(v, "cve", path, required=False)
    if cve and not _CVE.match(cve):
        raise d.error(f"{path}.cve", f"{cve!r} is not a CVE id (CVE-YYYY-NNNN)")
    cwe_id = cwe_name = ""
    if "cwe" in v:
        cwe = d.obj(v["cwe"], f"{path}.cwe")
        cwe_id = d.text(cwe, "id", f"{path}.cwe")
        cwe_name = d.text(cwe, "name", f"{path}.cwe")
        if not _CWE.match(cwe_id):
            raise d.error(f"{path}.cwe.id", f"{cwe_id!r} is not a CWE id (CWE-N)")
    status: dict[str, tuple[str, ...]] = {}
    if "product_status" in v:
        ps = d.obj(v["product_status"], f"{path}.product_status")
        for key in ps:
            if key not in PRODUCT_STATUS:
                raise d.error(
                    f"{path}.product_status.{key}",
                    f"is not a product status ({', '.join(sorted(PRODUCT_STATUS))})",
                )
            ids = d.ids(ps, key, f"{path}.product_status")
            _check_ids(d, ids, f"{path}.product_status.{key}", known)
            status[key] = ids
    scores: list[Score] = []
    for i, s in enumerate(d.arr(v.get("scores", []), f"{path}.scores")):
        scores.extend(
            _score(d, d.obj(s, f"{path}.scores[{i}]"), f"{path}.scores[{i}]", known, warnings)
        )
    rems: list[Remediation] = []
    for i, r_raw in enumerate(d.arr(v.get("remediations", []), f"{path}.remediations")):
        rp = f"{path}.remediations[{i}]"
        r = d.obj(r_raw, rp)
        ids = d.ids(r, "product_ids", rp)
        _check_ids(d, ids, f"{rp}.product_ids", known)
        rems.append(
            Remediation(
                category=d.enum(r, "category", rp, REMEDIATION_CATEGORIES),
                details=d.text(r, "details", rp),
                product_ids=ids + _group_ids(d, r, rp, groups),
                url=d.text(r, "url", rp, required=False),
            )
        )
    threats: list[Threat] = []
    for i, t_raw in enumerate(d.arr(v.get("threats", []), f"{path}.threats")):
        tp = f"{path}.threats[{i}]"
        t = d.obj(t_raw, tp)
        ids = d.ids(t, "product_ids", tp)
        _check_ids(d, ids, f"{tp}.product_ids", known)
        threats.append(
            Threat(
                category=d.enum(t, "category", tp, THREAT_CATEGORIES),
                details=d.text(t, "details", tp),
                product_ids=ids + _group_ids(d, t, tp, groups),
            )
        )
    flags: dict[str, tuple[str, ...]] = {}
    for i, f_raw in enumerate(d.arr(v.get("flags", []), f"{path}.flags")):
        fp = f"{path}.flags[{i}]"
        f = d.obj(f_raw, fp)
        label = d.enum(f, "label", fp, FLAG_LABELS)
        ids = d.ids(f, "product_ids", fp)
        _check_ids(d, ids, f"{fp}.product_ids", known)
        flags[label] = flags.get(label, ()) + ids + _group_ids(d, f, fp, groups)
    return Vulnerability(
        cve=cve,
        title=d.text(v, "title", path, required=False),
        cwe_id=cwe_id,
        cwe_name=cwe_name,
        scores=tuple(scores),
        product_status=status,
        remediations=tuple(rems),
        threats=tuple(threats),
        flags=flags,
    )
