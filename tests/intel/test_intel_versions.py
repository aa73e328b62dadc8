"""Version semantics: dotted numbers, vendor letters, builds, release lines, CISA prose, vers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsentry.intel.versions import compare, parse_spec, parse_version

CASES = [
    # (advisory text, device version, verdict)
    ("<= 2.3.6", "2.3.5", "affected"),
    ("<= 2.3.6", "2.3.7", "not_affected"),
    (">= 1.3.4 | < 1.5.3", "1.5.0", "affected"),
    (">= 1.3.4 | < 1.5.3", "1.5.3", "not_affected"),
    (">= 1.3.4 | < 1.5.3", "1.3.3", "not_affected"),
    ("Rev B-M", "M.00", "affected"),
    ("Rev B-M", "N.01", "not_affected"),
    ("2.X", "2.1", "affected"),
    ("2.X", "3.0", "not_affected"),
    ("<= U61 |<= L81", "L80", "affected"),
    ("A10 < A11", "A10", "affected"),
    ("A10 < A11", "A11", "not_affected"),
    ("vers:all/*", None, "affected"),
    ("vers:generic/>=1.0|<2.0", "1.5", "affected"),
    ("vers:generic/>=1.0|<2.0", "2.0", "not_affected"),
    ("vers:generic/!=1.2|>=1.0", "1.2", "not_affected"),
    ("<May 2018", "1.0", "unknown"),
    ("distributed  < april 1, 2018", "1.0", "unknown"),
    ("9.13 | 9.19 | 9.33 | 12.1", "9.19", "affected"),
    ("9.13 | 9.19 | 9.33 | 12.1", "12.1.2", "unknown"),  # a later build of 12.1
    ("9.13 | 9.19 | 9.33 | 12.1", "9.20", "not_affected"),
    ("<= 9.33", "9.33.1", "unknown"),
    ("<= 12.2.x.x", "12.2.5.1", "affected"),
    ("<= 12.2.x.x", "12.3", "not_affected"),
    ("< 3.x", "2.9", "affected"),
    ("<= 2.01 (end-of-life Nov 2017)", "2.0", "affected"),
    ("2.3.6 and  below", "2.3.6", "affected"),
    ("< B.06.18", "B.06.17", "affected"),
    ("< B.06.18", "1.0", "unknown"),  # a number against a letter: no order
    ("(Release 1.3.2 1.4.0 1.4.1 1.4.3 1.4.5)", "1.4.1", "affected"),
    ("(Release 1.3.2 1.4.0 1.4.1 1.4.3 1.4.5)", "1.4.2", "not_affected"),
    ("Version A, Firmware A.03.09", "A.03.09", "affected"),
    ("< 1.8.4 Service Pack 01", "1.8.4", "affected"),
    ("1.1.3 Build 10", "1.1.3 build 10", "affected"),
    ("<= 2.4A", "2.4", "affected"),
    ("<= 2.4A", "2.4B", "not_affected"),
    ("<= D25", "D24", "affected"),
    ("<=2023.3_Build_9342", "2023.3", "affected"),
    ("< 2024.2", "2024.1", "affected"),
    ("<= 1.0", "1", "affected"),
    ("MMT-1710", "1.0", "unknown"),
    ("24950 | 24952", "1.0", "unknown"),
]


@pytest.mark.parametrize(("spec", "version", "verdict"), CASES)
def test_spec(spec: str, version: str | None, verdict: str) -> None:
    got, why = parse_spec(spec).test(parse_version(version))
    assert got == verdict, why
    assert why


def test_qualifier_specs_keep_models() -> None:
    spec = parse_spec("6.x model 35700BAX")
    assert spec.kind == "versions" and spec.qualifiers == ("35700bax",)
    assert parse_spec("7100 | 7900 MRI").kind == "qualifier"
    assert parse_spec("MMT-1715 | MMT-1754").qualifiers == ("mmt-1715", "mmt-1754")


def test_compare_orders() -> None:
    v = parse_version
    assert compare(v("1.10"), v("1.9")) == 1
    assert compare(v("1.0"), v("1")) == 0
    assert compare(v("M.00"), v("M")) == 0
    assert compare(v("B.02"), v("C.01")) == -1
    assert compare(v("1.2"), v("B.1")) is None
    assert parse_version("version 3.2") == parse_version("v3.2")
    assert parse_version("firmware") is None


_ver = st.lists(st.integers(0, 50), min_size=1, max_size=4).map(lambda xs: ".".join(map(str, xs)))


@given(_ver, _ver, _ver)
def test_interval_agrees_with_compare(lo: str, hi: str, x: str) -> None:
    verdict, _ = parse_spec(f">= {lo} | <= {hi}").test(parse_version(x))
    a, b, c = parse_version(lo), parse_version(hi), parse_version(x)
    inside = compare(c, a) >= 0 and compare(c, b) <= 0  # type: ignore[operator]
    if inside:
        assert verdict == "affected"
    else:
        assert verdict in ("not_affected", "unknown")


@given(st.text(max_size=40))
def test_any_text_parses(text: str) -> None:
    spec = parse_spec(text)
    spec.test(parse_version("1.2.3"))
    spec.test(None)


def test_vers_with_ecosystem_scheme_uses_univers() -> None:
    # PEP 440: 2.0.0rc1 is before 2.0.0; the vendor-segment rules would not know "rc"
    spec = parse_spec("vers:pypi/>=1.0|<2.0.0")
    assert spec.scheme == "pypi"
    assert spec.test(parse_version("2.0.0rc1"))[0] == "affected"
    assert spec.test(parse_version("2.0.0"))[0] == "not_affected"
    # Maven: 1.0-beta1 < 1.0
    spec = parse_spec("vers:maven/>=1.0-beta1|<1.0")
    assert spec.test(parse_version("1.0-beta2"))[0] == "affected"
    # generic vers stays on the vendor-segment rules (letters, builds)
    assert parse_spec("vers:generic/>=1.0|<2.0").scheme == ""


def test_module_firmware_range_cannot_clear_a_device() -> None:
    spec = parse_spec("Version B, Firmware A.01.09, Part #: N/A (Replaced by Version C)")
    assert spec.module
    assert spec.test(parse_version("A.01.09"))[0] == "affected"
    verdict, why = spec.test(parse_version("J.10"))  # the host monitor's software revision
    assert verdict == "unknown" and "module's firmware" in why
