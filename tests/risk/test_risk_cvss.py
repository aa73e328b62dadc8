"""CVSS scores from vectors (the `cvss` package) equal the published base scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsentry.errors import InputError
from medsentry.risk.cvss import score_vector, worst


def _published_pairs(shared_data: Path) -> dict[str, set[tuple[float, str]]]:
    folder = shared_data / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white"
    if not folder.is_dir():
        pytest.skip(f"CISA CSAF advisories not found at {folder}")
    pairs: dict[str, set[tuple[float, str]]] = {}
    for f in sorted(folder.glob("20*/*.json")):
        for v in json.loads(f.read_bytes()).get("vulnerabilities", []):
            for s in v.get("scores", []):
                for key in ("cvss_v3", "cvss_v4"):
                    c = s.get(key)
                    if c:
                        pairs.setdefault(c["vectorString"], set()).add(
                            (c["baseScore"], v.get("cve", ""))
                        )
    return pairs


def test_every_cisa_advisory_vector_gives_the_published_score(shared_data: Path) -> None:
    pairs = _published_pairs(shared_data)
    assert len(pairs) == 199  # distinct CVSS v3.0/v3.1 vectors in the 144 ICSMA advisories
    assert sum(len(v) for v in pairs.values()) == 429
    wrong = [
        (vec, published, score_vector(vec).base_score)
        for vec, published_set in pairs.items()
        for published, _cve in published_set
        if score_vector(vec).base_score != published
    ]
    assert wrong == []


# CVSS v4.0 base vectors with the scores NVD and FIRST's calculator publish for them.
V4_PUBLISHED = [
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3, "Critical"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0, "Critical"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", 8.7, "High"),
    ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5, "High"),
]


@pytest.mark.parametrize(("vector", "score", "severity"), V4_PUBLISHED)
def test_cvss4_scores(vector: str, score: float, severity: str) -> None:
    s = score_vector(vector)
    assert (s.version, s.base_score, s.severity) == ("4.0", score, severity)


def test_exploitability_scale() -> None:
    top = score_vector("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    assert top.exploitability == 1.0 and (top.confidentiality, top.integrity) == (1.0, 1.0)
    low = score_vector("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N")
    assert 0 < low.exploitability < 0.06 and low.confidentiality == 0.5
    # v4: AT:P reads as v3 AC:H; UI:A as UI:R
    v4 = score_vector("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
    v3 = score_vector("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H")
    assert v4.exploitability == v3.exploitability


def test_invalid_vectors_are_input_errors() -> None:
    for bad in ("CVSS:3.1/AV:N/AC:L", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:4.0/AV:X"):
        with pytest.raises(InputError, match="invalid CVSS vector"):
            score_vector(bad)
    assert worst(["garbage", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"]).base_score == 5.3
    assert worst([]) is None
