"""Normalized vulnerability intelligence: what every source is reduced to.

A CSAF advisory becomes an `Advisory` holding flat `Product`s (one per CSAF product_id, with
vendor, family, name and the raw version expression from its branch path) and `Vulnerability`s
(CVE, CWE, CVSS scores recomputed with the `cvss` package, product status, remediations,
threats). KEV and EPSS rows are `KevEntry` and `EpssScore`. All are msgspec Structs: they are
stored as JSON and travel between processes unchanged.
"""

from __future__ import annotations

import msgspec


class Product(msgspec.Struct, frozen=True, omit_defaults=True):
    """One CSAF product (CSAF 2.0 §3.1.3 full_product_name_t), flattened from its branch path."""

    product_id: str
    name: str  # the full product name given in the document
    vendors: tuple[str, ...] = ()  # vendor branch names as written (CSAF §3.1.2.3.1 vendor)
    family: str = ""  # product_family branches, joined with " "
    product: str = ""  # product_name branch
    version: str = ""  # product_version branch, as written
    version_range: str = ""  # product_version_range branch, as written (vers or CISA prose)
    cpe: str = ""  # product_identification_helper.cpe (§3.1.3.3.1)
    purl: str = ""  # product_identification_helper.purl (§3.1.3.3.5)
    model_numbers: tuple[str, ...] = ()  # product_identification_helper.model_numbers (§3.1.3.3.3)
    relationship: str = ""  # set for §3.1.2.5 relationship products: "<category> <ref>"


class Score(msgspec.Struct, frozen=True, omit_defaults=True):
    """A CVSS vector with the base score recomputed by the `cvss` package."""

    version: str  # "3.0", "3.1", "4.0"
    vector: str
    base_score: float
    severity: str  # None/Low/Medium/High/Critical (CVSS v3.1 §5, v4.0 §"Qualitative")
    stated_score: float | None = None  # what the document said, when it said it
    products: tuple[str, ...] = ()


class Remediation(msgspec.Struct, frozen=True, omit_defaults=True):
    category: str  # CSAF 2.0 §3.2.3.12.1: mitigation, no_fix_planned, none_available, ...
    details: str
    product_ids: tuple[str, ...] = ()
    url: str = ""


class Threat(msgspec.Struct, frozen=True, omit_defaults=True):
    category: str  # CSAF 2.0 §3.2.3.13.1: exploit_status, impact, target_set
    details: str
    product_ids: tuple[str, ...] = ()


class Vulnerability(msgspec.Struct, frozen=True, omit_defaults=True):
    cve: str = ""
    title: str = ""
    cwe_id: str = ""
    cwe_name: str = ""
    scores: tuple[Score, ...] = ()
    # CSAF 2.0 §3.2.3.9 product_status: status -> product ids
    product_status: dict[str, tuple[str, ...]] = {}
    remediations: tuple[Remediation, ...] = ()
    threats: tuple[Threat, ...] = ()
    # CSAF VEX §3.2.3.5 flags: label -> product ids (known_not_affected justifications)
    flags: dict[str, tuple[str, ...]] = {}


class Advisory(msgspec.Struct, frozen=True, omit_defaults=True):
    advisory_id: str  # document.tracking.id (§3.2.1.12.6)
    title: str
    category: str  # csaf_security_advisory, csaf_vex, ...
    publisher: str
    version: str  # tracking.version
    status: str  # tracking.status
    initial_release: str
    current_release: str
    source: str  # file path or URL it was read from
    sha256: str  # of the document's bytes
    products: tuple[Product, ...] = ()
    vulnerabilities: tuple[Vulnerability, ...] = ()
    warnings: tuple[str, ...] = ()  # non-fatal findings (e.g. a stated score the vector disagrees with)

    def product(self, product_id: str) -> Product | None:
        for p in self.products:
            if p.product_id == product_id:
                return p
        return None


class KevEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One CISA Known Exploited Vulnerabilities catalog entry."""

    cve: str
    vendor: str
    product: str
    name: str
    date_added: str
    due_date: str = ""
    ransomware: str = ""  # knownRansomwareCampaignUse: Known / Unknown
    cwes: tuple[str, ...] = ()


class EpssScore(msgspec.Struct, frozen=True):
    """One FIRST EPSS row: probability of exploitation activity in the next 30 days."""

    cve: str
    epss: float
    percentile: float
