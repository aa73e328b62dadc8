"""SBOMs and VEX statements as medsentry keeps them, whatever format they came in.

An `Sbom` is one document (CycloneDX 1.2..1.6 JSON/XML or SPDX 2.3 JSON) attached to one device
model and version (`DeviceModel`). Each `Component` keeps what the NTIA minimum elements and the
FDA premarket guidance ask for per component: supplier, name, version, unique identifiers (purl,
CPE), and the FDA additions level of support and end-of-support date (FDA "Cybersecurity in
Medical Devices" 2023/2026, §V.A.4.b), with the document's own wording kept beside our reading.

A `VexStatement` is one (vulnerability, product) status from CycloneDX VEX, OpenVEX or CSAF VEX,
normalized to the CISA "Minimum Requirements for VEX" vocabulary: status not_affected /
affected / fixed / under_investigation, and for not_affected a justification or an impact
statement.
"""

from __future__ import annotations

import msgspec

# CISA "Minimum Requirements for VEX" (2023) §3.1 status values.
NOT_AFFECTED = "not_affected"
AFFECTED = "affected"
FIXED = "fixed"
UNDER_INVESTIGATION = "under_investigation"
VEX_STATUSES = (NOT_AFFECTED, AFFECTED, FIXED, UNDER_INVESTIGATION)


class DeviceModel(msgspec.Struct, frozen=True):
    """The device model and version an SBOM describes (manufacturer, model, version)."""

    manufacturer: str
    model: str
    version: str

    def label(self) -> str:
        return f"{self.manufacturer} {self.model} {self.version}".strip()


class Component(msgspec.Struct, frozen=True, omit_defaults=True):
    """One SBOM component with the identifiers vulnerability matching uses."""

    name: str
    version: str = ""
    bom_ref: str = ""  # CycloneDX bom-ref / SPDX SPDXID
    type: str = ""  # CycloneDX component type / SPDX primaryPackagePurpose
    supplier: str = ""  # supplier.name, else publisher/author (CycloneDX); supplier (SPDX)
    group: str = ""  # CycloneDX group
    purl: str = ""
    cpe: str = ""
    hashes: dict[str, str] = {}  # algorithm -> hex value
    licenses: tuple[str, ...] = ()
    # FDA premarket guidance §V.A.4.b: level of support, end-of-support date.
    level_of_support: str = ""  # FDA vocabulary: actively maintained, no longer maintained, ...
    level_of_support_raw: str = ""  # as the document wrote it
    end_of_support: str = ""  # as the document wrote it ("2027-12-31", "Unknown", ...)
    end_of_support_date: str = ""  # ISO date when the document gave one
    parent: str = ""  # bom_ref of the enclosing component (CycloneDX nested components)


class Sbom(msgspec.Struct, frozen=True, omit_defaults=True):
    sbom_id: str  # SHA-256 of the document's bytes
    format: str  # "cyclonedx" | "spdx"
    spec_version: str  # "1.4", "SPDX-2.3"
    encoding: str  # "json" | "xml"
    source: str  # file path it was read from
    device: DeviceModel
    components: tuple[Component, ...]
    serial_number: str = ""  # CycloneDX serialNumber / SPDX documentNamespace
    document_version: int | None = None  # CycloneDX version
    name: str = ""  # metadata.component.name / SPDX document name
    created: str = ""  # metadata.timestamp / creationInfo.created
    authors: tuple[str, ...] = ()  # SBOM author (NTIA)
    tools: tuple[str, ...] = ()
    # CycloneDX 1.5+ metadata.lifecycles: the product life-cycle phases the SBOM describes
    # ("design", "build", "post-build", "operations", ... or a custom name)
    lifecycles: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class VexStatement(msgspec.Struct, frozen=True, omit_defaults=True):
    """One status statement about one vulnerability in one product or component."""

    vulnerability: str  # CVE id or other id (GHSA, vendor id)
    status: str  # one of VEX_STATUSES
    format: str  # cyclonedx | openvex | csaf
    document: str  # source file of the statement
    # The product the statement is about: any of these identify it.
    purl: str = ""
    cpe: str = ""
    bom_ref: str = ""  # CycloneDX ref (bom-ref or BOM-Link fragment)
    product_name: str = ""
    product_version: str = ""  # a single version, or a vers range ("vers:generic/>=2.9|<=4.1")
    # No product named, only its maker: the statement covers every product of this supplier
    # (CycloneDX VEX use case 7, metadata.manufacture / supplier).
    supplier: str = ""
    justification: str = ""  # CISA/OpenVEX/CSAF-flag vocabulary
    justification_raw: str = ""  # as written (e.g. CycloneDX "code_not_present")
    impact_statement: str = ""
    action_statement: str = ""  # what the user should do (affected)
    responses: tuple[str, ...] = ()  # CycloneDX analysis.response
    timestamp: str = ""  # statement (or document) time, ISO 8601
    aliases: tuple[str, ...] = ()  # other ids of the same vulnerability
