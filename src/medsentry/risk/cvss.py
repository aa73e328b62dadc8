"""CVSS v3.0/v3.1 and v4.0 scores from vector strings, with the maintained `cvss` package.

Nothing here re-implements a CVSS formula: base scores, severities and the v3 exploitability
sub-score come from `cvss` (RedHatProductSecurity/cvss). What medsentry adds is a uniform record
(`CvssScore`) for the risk model: the metric values it reads (attack vector, complexity,
privileges, user interaction; confidentiality, integrity and availability impact) and an
exploitability value in 0..1.

CVSS v4.0 (FIRST, 2023) publishes no exploitability sub-score. For v4 vectors the exploitability
value is the v3.1 sub-score (§7.1: 8.22 x AV x AC x PR x UI) evaluated by `cvss` on the v3.1
vector made of the same AV, PR and UI values, with AC:H when either v4 AC:H or AT:P (the attack
requirements v3.1 folded into complexity), scope unchanged, so both versions read on one scale.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from medsentry.errors import InputError

# CVSS v3.1 §7.1: the largest exploitability sub-score (AV:N/AC:L/PR:N/UI:N).
MAX_EXPLOITABILITY_V3 = 8.22 * 0.85 * 0.77 * 0.85 * 0.85
IMPACT_LEVELS = {"H": 1.0, "L": 0.5, "N": 0.0}  # High / Low / None (v3 C/I/A, v4 VC/VI/VA)


class CvssScore(msgspec.Struct, frozen=True):
    version: str  # "3.0", "3.1", "4.0"
    vector: str
    base_score: float
    severity: str  # None / Low / Medium / High / Critical
    exploitability: float  # 0..1 (v3 exploitability sub-score / its maximum)
    attack_vector: str  # N, A, L, P
    confidentiality: float  # 0, 0.5, 1 (None/Low/High) for the vulnerable system
    integrity: float
    availability: float


def _v3_exploitability(av: str, ac: str, pr: str, ui: str) -> float:
    c = CVSS3(f"CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:U/C:N/I:N/A:N")
    return round(float(c.esc) / MAX_EXPLOITABILITY_V3, 4)


@lru_cache(maxsize=65_536)
def score_vector(vector: str) -> CvssScore:
    """The score of a CVSS v3.x or v4.0 vector; `InputError` when it is not a valid vector."""
    v = vector.strip()
    try:
        if v.startswith("CVSS:4.0/"):
            c4 = CVSS4(v)
            m = c4.metrics
            ui = "N" if m["UI"] == "N" else "R"  # v4 UI:P (passive) / UI:A (active) -> v3 UI:R
            ac = "H" if (m["AC"] == "H" or m["AT"] == "P") else "L"
            return CvssScore(
                version="4.0",
                vector=v,
                base_score=float(c4.base_score),
                severity=str(c4.severity),
                exploitability=_v3_exploitability(m["AV"], ac, m["PR"], ui),
                attack_vector=m["AV"],
                confidentiality=IMPACT_LEVELS[m["VC"]],
                integrity=IMPACT_LEVELS[m["VI"]],
                availability=IMPACT_LEVELS[m["VA"]],
            )
        if v.startswith(("CVSS:3.1/", "CVSS:3.0/")):
            c3 = CVSS3(v)
            m = c3.metrics
            return CvssScore(
                version=v[5:8],
                vector=v,
                base_score=float(c3.base_score),
                severity=str(c3.severities()[0]),
                exploitability=round(float(c3.esc) / MAX_EXPLOITABILITY_V3, 4),
                attack_vector=m["AV"],
                confidentiality=IMPACT_LEVELS[m["C"]],
                integrity=IMPACT_LEVELS[m["I"]],
                availability=IMPACT_LEVELS[m["A"]],
            )
    except (CVSSError, KeyError, ValueError) as exc:
        raise InputError(f"invalid CVSS vector {v!r}: {exc}") from None
    raise InputError(f"invalid CVSS vector {v!r}: expected a CVSS:3.0, 3.1 or 4.0 prefix")


def worst(vectors: tuple[str, ...] | list[str]) -> CvssScore | None:
    """The highest-scoring valid vector (v4.0 preferred at equal score), or None."""
    best: CvssScore | None = None
    for vec in vectors:
        try:
            s = score_vector(vec)
        except InputError:
            continue
        if best is None or (s.base_score, s.version) > (best.base_score, best.version):
            best = s
    return best
