"""CSAF 2.0 ingest over all 144 real CISA medical advisories, and malformed documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medsentry.errors import InputError
from medsentry.intel.csaf import compute_score, parse_csaf
from medsentry.intel.model import Advisory
from medsentry.intel.normalize import vendor_keys
from medsentry.intel.versions import parse_spec


def test_all_advisories_parse(csaf_files: list[Path], advisories: list[Advisory]) -> None:
    assert len(csaf_files) == 144
    ids = {a.advisory_id for a in advisories}
    assert len(ids) == 144
    assert all(a.advisory_id.startswith("ICSMA-") for a in advisories)
    vulns = [v for a in advisories for v in a.vulnerabilities]
    # SOURCES.md: 433 vulnerabilities, CVSS and CWE on each
    assert len(vulns) == 433
    assert all(v.cve.startswith("CVE-") for v in vulns)
    assert all(v.scores and v.cwe_id.startswith("CWE-") for v in vulns)
    # every stated CVSS base score agrees with the vector, recomputed by the cvss package
    assert [w for a in advisories for w in a.warnings] == []
    remediation_categories = {r.category for v in vulns for r in v.remediations}
    assert remediation_categories == {"vendor_fix", "mitigation"}


def test_every_product_tree_normalizes(advisories: list[Advisory]) -> None:
    kinds: dict[str, int] = {}
    for adv in advisories:
        assert adv.products, adv.advisory_id
        for p in adv.products:
            assert p.vendors, (adv.advisory_id, p.product_id)
            keys = set()
            for v in p.vendors:
                keys |= vendor_keys(v)
            # every vendor in the 144 advisories resolves to a known company (aliases data)
            assert keys and not any(k.startswith("unknown:") for k in keys), p.vendors
            spec = parse_spec(p.version_range or p.version)
            kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
        affected = {pid for v in adv.vulnerabilities for pid in v.product_status["known_affected"]}
        assert affected <= {p.product_id for p in adv.products}
    print("version specs by kind:", kinds)
    assert kinds["versions"] > 250 and kinds["all"] > 200
    assert sum(kinds.values()) == sum(len(a.products) for a in advisories)


def test_cvss_scores_computed(advisories: list[Advisory]) -> None:
    s = compute_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H")
    assert (s.base_score, s.severity) == (10.0, "Critical")
    s4 = compute_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
    assert (s4.version, s4.base_score) == ("4.0", 9.3)
    scores = [sc for a in advisories for v in a.vulnerabilities for sc in v.scores]
    assert {sc.version for sc in scores} <= {"3.0", "3.1"}
    assert all(sc.stated_score == sc.base_score for sc in scores)


def test_reimport_same_bytes_same_advisory(csaf_files: list[Path]) -> None:
    data = csaf_files[0].read_bytes()
    assert parse_csaf(data, "a") == parse_csaf(data, "a")


# -- malformed documents ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(csaf_dir: Path) -> dict[str, Any]:
    return json.loads((csaf_dir / "2020" / "icsma-20-023-01.json").read_bytes())


def _err(doc: Any) -> str:
    with pytest.raises(InputError) as info:
        parse_csaf(json.dumps(doc).encode(), "bad.json")
    msg = str(info.value)
    assert msg.startswith("bad.json: ")
    return msg


def test_missing_tracking_id(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    del doc["document"]["tracking"]["id"]
    assert "$.document.tracking.id: is required" in _err(doc)


def test_bad_branch_category(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["product_tree"]["branches"][0]["branches"][1]["category"] = "product_model"
    assert "$.product_tree.branches[0].branches[1].category" in _err(doc)


def test_undefined_product_id(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["vulnerabilities"][2]["product_status"]["known_affected"].append("CSAFPID-9999")
    msg = _err(doc)
    assert "$.vulnerabilities[2].product_status.known_affected[11]" in msg
    assert "§6.1.1" in msg


def test_duplicate_product_id(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    leaf = doc["product_tree"]["branches"][0]["branches"][1]["branches"][0]["product"]
    leaf["product_id"] = "CSAFPID-0001"
    assert "defined twice" in _err(doc)


def test_bad_cvss_vector(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["vulnerabilities"][0]["scores"][0]["cvss_v3"]["vectorString"] = "CVSS:3.0/AV:X/AC:L"
    assert "$.vulnerabilities[0].scores[0].cvss_v3.vectorString: invalid CVSS vector" in _err(doc)


def test_wrong_csaf_version(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["document"]["csaf_version"] = "1.2"
    assert "$.document.csaf_version" in _err(doc)


def test_bad_cve_and_remediation(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["vulnerabilities"][1]["cve"] = "CVE-20-1"
    assert "$.vulnerabilities[1].cve" in _err(doc)
    doc = copy.deepcopy(sample)
    doc["vulnerabilities"][0]["remediations"][0]["category"] = "patch"
    assert "$.vulnerabilities[0].remediations[0].category" in _err(doc)


def test_truncated_json_names_offset(csaf_files: list[Path]) -> None:
    data = csaf_files[3].read_bytes()[:500]
    with pytest.raises(InputError) as info:
        parse_csaf(data, "cut.json")
    assert "cut.json at byte" in str(info.value) and "not valid JSON" in str(info.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_paths(v, (*prefix, i)))
    return out


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_documents(sample: dict[str, Any], data: st.DataObject) -> None:
    """Any mutation of a real advisory parses or raises InputError naming the document."""
    doc = copy.deepcopy(sample)
    paths = _paths(doc)[1:]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(_json)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        parse_csaf(json.dumps(doc).encode(), "fuzz.json")
    except InputError as exc:
        assert str(exc).startswith("fuzz.json")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
@example(b'"\x80"')  # a JSON string that is not UTF-8 (found by this test)
@example(b'{"document": {"csaf_version": "2.0", "title": "\xc3"}}')
def test_fuzz_random_bytes(blob: bytes) -> None:
    try:
        parse_csaf(blob, "blob.json")
    except InputError as exc:
        assert str(exc).startswith("blob.json")
