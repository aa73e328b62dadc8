"""Device descriptions (as inventories write them) against all 144 advisories.

Prints precision and recall over `match_cases.yaml` (written before tuning; tuning changed the
matcher, never an expectation except where a comment in the file explains why) and over
`match_holdout.yaml` (written after tuning and never tuned on).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medsentry.intel.match import AFFECTED, POTENTIAL, Matcher
from medsentry.intel.match import DeviceQuery as Device
from medsentry.intel.model import Advisory

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def matcher(advisories: list[Advisory]) -> Matcher:
    return Matcher(advisories)


def _device(c: dict) -> Device:
    return Device(
        vendor=c.get("vendor", ""),
        product=c.get("product", ""),
        version=str(c.get("version", "")),
        text=c.get("text", ""),
    )


def _evaluate(matcher: Matcher, name: str) -> tuple[float, float, int, list[str]]:
    cases = yaml.safe_load((HERE / name).read_text())["cases"]
    tp = fp = fn = 0
    errors: list[str] = []
    for c in cases:
        device = _device(c)
        found = matcher.match(device)
        got = {m.advisory_id for m in found}
        expect = set(c["expect"])
        tp += len(got & expect)
        fp += len(got - expect)
        fn += len(expect - got)
        for bad in set(c.get("not", ())) & got:
            errors.append(f"{device.describe()}: must not match {bad}")
        if got != expect:
            errors.append(
                f"{device.describe()}: missing {sorted(expect - got)} extra {sorted(got - expect)}"
            )
        for m in found:
            assert m.status in (AFFECTED, POTENTIAL)
            assert 0.5 <= m.confidence <= 1.0 and m.explanation and "\n" not in m.explanation
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    print(
        f"\n{name}: {len(cases)} devices, precision {precision:.3f}, recall {recall:.3f}"
        f" (tp {tp}, fp {fp}, fn {fn})"
    )
    for e in errors:
        print("  ", e)
    return precision, recall, len(cases), errors


def test_inventory_descriptions(matcher: Matcher) -> None:
    precision, recall, n, errors = _evaluate(matcher, "match_cases.yaml")
    assert n >= 40
    assert not [e for e in errors if "must not match" in e]
    assert precision >= 0.95 and recall >= 0.95, errors


def test_holdout_descriptions(matcher: Matcher) -> None:
    precision, recall, n, errors = _evaluate(matcher, "match_holdout.yaml")
    assert n >= 15
    # written after tuning: a floor, not a target
    assert precision >= 0.75 and recall >= 0.75, errors


def test_second_holdout_descriptions(matcher: Matcher) -> None:
    precision, recall, n, errors = _evaluate(matcher, "match_holdout_2.yaml")
    assert n >= 25
    # written after the first hold-out was used for fixes, never tuned on: a floor
    assert precision >= 0.75 and recall >= 0.75, errors


def test_explanations_are_specific(matcher: Matcher) -> None:
    [m, *_] = matcher.match(Device(text="BD Alaris 8015 PC Unit v12.1.2"))
    assert m.advisory_id == "ICSMA-23-194-01" and m.status == AFFECTED
    assert "8015" in m.explanation and "12.1.2 is within <= 12.1.3" in m.explanation
    assert m.cves and m.max_cvss is not None
    # the same device without a version is only potentially affected
    statuses = {
        x.status
        for x in matcher.match(Device(text="BD Alaris 8015 PC Unit"))
        if x.advisory_id == "ICSMA-23-194-01"
    }
    assert statuses == {POTENTIAL}


def test_vendor_disagreement_blocks(matcher: Matcher) -> None:
    # ICSMA-20-343-01 lists "Alaris PC Unit" under GE Healthcare (a CISA data slip): a BD
    # device must not match it, a device with no vendor may.
    bd = {m.advisory_id for m in matcher.match(Device(vendor="BD", product="Alaris PC Unit"))}
    anon = {m.advisory_id for m in matcher.match(Device(product="Alaris PC Unit"))}
    assert "ICSMA-20-343-01" not in bd and "ICSMA-20-343-01" in anon


def test_ambiguous_vendor_lowers_confidence(matcher: Matcher) -> None:
    [amb] = [m for m in matcher.match(Device(text="Fresenius Agilia Connect WiFi fw D24"))]
    [exact] = [m for m in matcher.match(Device(text="Fresenius Kabi Agilia Connect WiFi fw D24"))]
    assert amb.confidence < exact.confidence and "ambiguous" in amb.explanation


def test_vendor_named_product_and_version_labelled_product(matcher: Matcher) -> None:
    # "OpenClinic GA" is both the vendor and the product (ICSMA-20-184-01)
    [m] = matcher.match(Device(text="OpenClinic GA 5.09.02"))
    assert (m.advisory_id, m.status) == ("ICSMA-20-184-01", AFFECTED)
    assert "vendor-named product" in m.explanation
    assert matcher.match(Device(text="OpenClinic GA 5.90")) == []  # not a listed release
    # ICSMA-18-086-01 names its product "Version"; the title names Alice 6
    found = {x.advisory_id for x in matcher.match(Device(vendor="Philips", product="Alice 6"))}
    assert "ICSMA-18-086-01" in found
