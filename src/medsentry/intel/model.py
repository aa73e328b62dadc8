"""Normalized vulnerability intelligence: what every source is reduced to.

A CSAF advisory becomes an `Advisory` holding flat `Product`s (one per CSAF product_id, with
vendor, family, name and the raw version expression from its branch path) and `Vulnerability`s
(CVE, CWE, CVSS scores recomputed with the `cvss` package, product status, remediations,
threats). OSV and NVD records (vulnerabilities of software packages and CPE-named products)
become `PackageVuln`s holding `AffectedPackage`s with their version ranges. KEV and EPSS rows
are `KevEntry` and `EpssScore`. All are msgspec Structs: they are stored as JSON and travel
between processes unchanged.

`Component` is what an SBOM (or a caller) gives the matcher; `Match` is what the matcher gives
back, for a device or a component: the contract with risk, VEX and reports.
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
    # non-fatal findings (e.g. a stated score the vector disagrees with)
    warnings: tuple[str, ...] = ()

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


# -- package vulnerabilities (OSV, NVD) ------------------------------------------------------


class RangeEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """OSV schema §affected[].ranges[].events[]: exactly one of the four is set."""

    introduced: str = ""
    fixed: str = ""
    last_affected: str = ""
    limit: str = ""


class AffectedRange(msgspec.Struct, frozen=True, omit_defaults=True):
    """A range of affected versions.

    `type` is the OSV range type (SEMVER, ECOSYSTEM, GIT) with its `events`, "NVD" for a CPE
    match (NVD CVE API 2.0 cpeMatch: versionStart/End Including/Excluding) given as bounds, or
    "SPEC" for a CSAF product's version text (a vers range or CISA's prose) in `spec`.
    """

    type: str
    events: tuple[RangeEvent, ...] = ()
    repo: str = ""  # GIT ranges: the repository the commits belong to
    start_including: str = ""
    start_excluding: str = ""
    end_including: str = ""
    end_excluding: str = ""
    spec: str = ""


class AffectedPackage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One affected package (OSV) or CPE match criterion (NVD)."""

    # package URL type ("pypi", "npm", "maven", "deb", ...) or "cpe" for an NVD criterion
    scheme: str
    name: str  # purl namespace/name, lower-cased where the ecosystem is case-insensitive
    ecosystem: str = ""  # OSV ecosystem as written ("PyPI", "Debian:12")
    purl: str = ""
    cpe: str = ""  # cpe:2.3 criterion (NVD)
    cpe_vendor: str = ""
    cpe_product: str = ""
    cpe_version: str = ""  # "*" or "-" or a version
    ranges: tuple[AffectedRange, ...] = ()
    versions: tuple[str, ...] = ()  # explicitly enumerated affected versions (OSV)
    # NVD: the criterion is one of several that must hold together (configuration operator
    # AND, e.g. an application on an operating system): the match cannot be asserted alone.
    conditional: bool = False


class PackageVuln(msgspec.Struct, frozen=True, omit_defaults=True):
    """A vulnerability record from OSV or NVD."""

    source: str  # "osv" or "nvd"
    id: str  # OSV id (GHSA-..., PYSEC-...) or the CVE id for NVD
    modified: str = ""
    published: str = ""
    aliases: tuple[str, ...] = ()
    summary: str = ""
    cwes: tuple[str, ...] = ()
    scores: tuple[Score, ...] = ()
    affected: tuple[AffectedPackage, ...] = ()
    withdrawn: str = ""

    @property
    def cves(self) -> tuple[str, ...]:
        ids = (self.id, *self.aliases)
        return tuple(dict.fromkeys(i for i in ids if i.startswith("CVE-")))


# -- what the matcher is given and gives back ------------------------------------------------


class Component(msgspec.Struct, frozen=True, omit_defaults=True):
    """A software component (an SBOM entry): any of purl, CPE, or name and version."""

    ref: str = ""  # bom-ref / SPDXID / caller's key
    name: str = ""
    version: str = ""
    purl: str = ""
    cpe: str = ""
    supplier: str = ""


# Match statuses (CSAF 2.0 §3.2.3.9 product_status, reduced to what a hospital acts on)
AFFECTED = "affected"
POTENTIAL = "potentially_affected"
FIXED = "fixed"
NOT_AFFECTED = "not_affected"
STATUSES = (AFFECTED, POTENTIAL, FIXED, NOT_AFFECTED)


class Match(msgspec.Struct, frozen=True, omit_defaults=True):
    """One device or component against one advisory (CSAF) or vulnerability record (OSV/NVD).

    `status`: affected | potentially_affected | fixed | not_affected. `confidence` (0..1) is
    how sure the identification of the product is; `explanation` is one line saying why.
    """

    advisory_id: str  # CSAF tracking id, OSV id, or the CVE id of an NVD record
    status: str
    confidence: float
    explanation: str
    device_id: str = ""  # set for device matches
    component: str = ""  # set for component matches: ref, else purl, else cpe, else name@version
    device: str = ""  # the device or component as described ("BD Alaris 8015 PC Unit 12.1.2")
    source: str = "csaf"  # csaf | osv | nvd
    product_id: str = ""  # CSAF product id, or the affected package / CPE criterion
    product: str = ""  # the advisory's product as a label ("Alaris PC Unit 8015 <= 12.1.3")
    cves: tuple[str, ...] = ()
    cvss_vectors: tuple[str, ...] = ()
    max_cvss: float | None = None
    kev: bool = False  # any of `cves` is in CISA's Known Exploited Vulnerabilities catalog
    epss: float | None = None  # highest EPSS probability among `cves`
    remediations: tuple[str, ...] = ()  # CSAF remediation categories for this product
