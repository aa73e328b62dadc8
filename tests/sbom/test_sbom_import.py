"""SBOM import: every real SBOM, CycloneDX 1.2..1.6 JSON/XML, SPDX 2.3, FDA support fields,
malformed documents (one clear line, exit 2, nothing stored before is lost)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.errors import InputError
from medsentry.intel.sbom import parse_sbom, read_sbom
from medsentry.intel.sbom_model import DeviceModel
from medsentry.intel.sbom_store import (
    find_sbom,
    list_sboms,
    load_components,
    save_sbom,
    sbom_for_device,
)
from medsentry.ledger import ledger
from medsentry.store import open_store

DM = DeviceModel("Acme Medical", "Infusion Gateway", "3.2")


def _real_sboms(sbom_dir: Path) -> list[Path]:
    return sorted(p for p in sbom_dir.rglob("*") if p.suffix in (".json", ".xml"))


def _count_json_components(doc: dict) -> int:
    def walk(comps) -> int:
        return sum(1 + walk(c.get("components")) for c in comps or ())

    return walk(doc.get("components"))


def test_every_real_sbom_imports(sbom_dir: Path, tmp_path: Path) -> None:
    files = _real_sboms(sbom_dir)
    assert len(files) == 49  # 48 CycloneDX JSON + 1 CycloneDX XML in shared/data/sbom
    url = f"sqlite:///{tmp_path / 'store.db'}"
    total = 0
    versions = Counter()
    with open_store(url) as store:
        for i, path in enumerate(files):
            dm = DeviceModel("Vendor", f"Model {i}", "1.0")
            sbom = read_sbom(path, dm)
            versions[(sbom.spec_version, sbom.encoding)] += 1
            if path.suffix == ".json":
                assert len(sbom.components) == _count_json_components(json.loads(path.read_bytes()))
            row, replaced = save_sbom(store, sbom)
            assert replaced is None
            stored = load_components(store, row)
            assert [(c.name, c.version, c.purl) for c in stored] == [
                (c.name, c.version, c.purl) for c in sbom.components
            ]
            total += len(sbom.components)
        assert len(list_sboms(store)) == len(files)
    assert total == 2388
    assert versions == {
        ("1.2", "json"): 5,
        ("1.2", "xml"): 1,
        ("1.3", "json"): 1,
        ("1.4", "json"): 42,
    }


def test_xml_and_json_of_one_bom_agree(sbom_dir: Path) -> None:
    base = sbom_dir / "cyclonedx_examples" / "SBOM" / "cern-lhc-vdm-editor-e564943"
    j = read_sbom(base / "bom.json", DM)
    x = read_sbom(base / "bom.xml", DM)
    assert x.encoding == "xml" and j.encoding == "json"
    key = lambda s: sorted((c.name, c.version, c.purl, c.licenses) for c in s.components)  # noqa: E731
    assert key(x) == key(j) and len(x.components) == 43
    assert x.serial_number.startswith("urn:uuid:") and x.tools == j.tools == ("Node.js module",)


def test_medical_device_sbom_keeps_fda_fields(medical_sbom: Path) -> None:
    sbom = read_sbom(medical_sbom, DM)
    comps = sbom.components
    assert len(comps) == 65
    assert all(c.purl and c.cpe and c.supplier for c in comps)
    raw = json.loads(medical_sbom.read_bytes())["components"]
    written = Counter(
        p["value"] for c in raw for p in c["properties"] if p["name"] == "Level of Support"
    )
    assert Counter(c.level_of_support_raw for c in comps) == written
    # FDA §V.A.4.b vocabulary: Inactive and Deprecated are "no longer maintained"
    assert Counter(c.level_of_support for c in comps) == {
        "actively maintained": written["Actively maintained"],
        "no longer maintained": written["Inactive"] + written["Deprecated"],
        "unknown": written["Unknown"],
    }
    eos = Counter(c.end_of_support for c in comps)
    assert eos["Until hardware support ends"] == 9 and eos["No longer supported"] == 1
    assert not any(c.end_of_support_date for c in comps)  # none of them wrote a date
    unifi = comps[0]
    assert (unifi.name, unifi.version, unifi.supplier) == (
        "UniFi Network Application",
        "8.3.32",
        "Ubiquiti",
    )
    assert unifi.cpe == "cpe:2.3:a:ubiquiti:unifi_network_application:8.3.32:*:*:*:*:*:*:*"


def _with_eos(doc: dict) -> dict:
    """The first component gets an ISO end-of-support date (namespaced FDA property)."""
    props = doc["components"][0]["properties"]
    props[:] = [p for p in props if p["name"] != "End-of-Support"]
    props.append({"name": "fda:end-of-support", "value": "2027-12-31"})
    doc["metadata"]["lifecycles"] = [{"phase": "build"}, {"phase": "operations"}]
    return doc


@pytest.mark.parametrize(
    ("spec", "fmt"),
    [("1.5", "json"), ("1.6", "json"), ("1.5", "xml"), ("1.6", "xml"), ("1.3", "xml")],
)
def test_cyclonedx_15_16_made_by_cyclonedx_python_lib(
    medical_sbom: Path, spec: str, fmt: str
) -> None:
    """The real medical SBOM re-serialized by cyclonedx-python-lib as 1.3..1.6 JSON and XML."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    doc = _with_eos(json.loads(medical_sbom.read_bytes()))
    bom = Bom.from_json(doc)
    out = make_outputter(
        bom,
        OutputFormat.JSON if fmt == "json" else OutputFormat.XML,
        SchemaVersion.from_version(spec),
    ).output_as_string()
    sbom = parse_sbom(out.encode(), f"medical.{spec}.{fmt}", DM)
    assert (sbom.spec_version, sbom.encoding) == (spec, fmt)
    assert len(sbom.components) == 65
    by_name = {c.name: c for c in sbom.components}
    first = by_name["UniFi Network Application"]
    assert first.end_of_support_date == "2027-12-31"
    assert first.level_of_support == "actively maintained"
    assert sum(1 for c in sbom.components if c.level_of_support) == 65
    # CycloneDX 1.5 added metadata.lifecycles
    assert sbom.lifecycles == (("build", "operations") if spec >= "1.5" else ())


def test_spdx_23_written_by_spdx_tools(tmp_path: Path) -> None:
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        Annotation,
        AnnotationType,
        Checksum,
        ChecksumAlgorithm,
        CreationInfo,
        Document,
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.writer.write_anything import write_file

    created = datetime(2025, 5, 1, 12, 0, 0)
    ci = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name="acme-infusion-gateway-3.2",
        document_namespace="https://acme.example/spdx/infusion-gateway-3.2",
        creators=[
            Actor(ActorType.ORGANIZATION, "Acme Medical"),
            Actor(ActorType.TOOL, "spdx-tools"),
        ],
        created=created,
    )
    device = Package(
        spdx_id="SPDXRef-device",
        name="Infusion Gateway",
        download_location=SpdxNoAssertion(),
        version="3.2",
        supplier=Actor(ActorType.ORGANIZATION, "Acme Medical"),
        files_analyzed=False,
    )
    openssl = Package(
        spdx_id="SPDXRef-openssl",
        name="openssl",
        download_location=SpdxNoAssertion(),
        version="1.1.1k",
        supplier=Actor(ActorType.ORGANIZATION, "OpenSSL Software Foundation"),
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, "a" * 64)],
        external_references=[
            ExternalPackageRef(
                ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", "pkg:generic/openssl@1.1.1k"
            ),
            ExternalPackageRef(
                ExternalPackageRefCategory.SECURITY,
                "cpe23Type",
                "cpe:2.3:a:openssl:openssl:1.1.1k:*:*:*:*:*:*:*",
            ),
        ],
        valid_until_date=datetime(2023, 9, 11),  # SPDX 2.3 §7.29: OpenSSL 1.1.1 end of life
    )
    zlib = Package(
        spdx_id="SPDXRef-zlib",
        name="zlib",
        download_location=SpdxNoAssertion(),
        version="1.2.11",
        supplier=Actor(ActorType.PERSON, "Jean-loup Gailly"),
        files_analyzed=False,
        comment="Level of Support: Actively maintained",
    )
    doc = Document(
        creation_info=ci,
        packages=[device, openssl, zlib],
        relationships=[
            Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-device"),
            Relationship("SPDXRef-device", RelationshipType.CONTAINS, "SPDXRef-openssl"),
            Relationship("SPDXRef-device", RelationshipType.CONTAINS, "SPDXRef-zlib"),
        ],
        annotations=[
            Annotation(
                "SPDXRef-openssl",
                AnnotationType.REVIEW,
                Actor(ActorType.ORGANIZATION, "Acme Medical"),
                created,
                "Level of Support: No longer maintained",
            )
        ],
    )
    path = tmp_path / "gateway.spdx.json"
    write_file(doc, str(path))
    sbom = read_sbom(path, DM)
    assert (sbom.format, sbom.spec_version, sbom.name) == ("spdx", "SPDX-2.3", "Infusion Gateway")
    assert sbom.authors == ("Acme Medical",) and sbom.tools == ("spdx-tools",)
    comps = {c.name: c for c in sbom.components}
    assert set(comps) == {"openssl", "zlib"}  # the described package is the device itself
    o = comps["openssl"]
    assert o.purl == "pkg:generic/openssl@1.1.1k"
    assert o.cpe == "cpe:2.3:a:openssl:openssl:1.1.1k:*:*:*:*:*:*:*"
    assert o.supplier == "OpenSSL Software Foundation" and o.hashes == {"SHA256": "a" * 64}
    assert (o.end_of_support_date, o.level_of_support) == ("2023-09-11", "no longer maintained")
    assert comps["zlib"].level_of_support == "actively maintained"


# -- malformed documents ---------------------------------------------------------------------


def _mutations(medical_sbom: Path, tmp_path: Path) -> list[tuple[Path, str]]:
    good = medical_sbom.read_bytes()
    doc = json.loads(good)
    out = []
    p = tmp_path / "truncated.sbom.json"
    p.write_bytes(good[:5000])
    out.append((p, "not valid JSON"))
    p = tmp_path / "latin1.sbom.json"  # a name in Latin-1, not UTF-8 (RFC 8259 §8.1)
    p.write_bytes(good.replace(b'"name": "', b'"name": "Gr\xfcn ', 1))
    out.append((p, "not UTF-8"))
    bad = json.loads(good)
    bad["components"][3]["type"] = "gizmo"
    p = tmp_path / "badtype.sbom.json"
    p.write_text(json.dumps(bad))
    out.append((p, "field $.components[3].type"))
    bad = json.loads(good)
    del bad["components"][7]["name"]
    p = tmp_path / "noname.sbom.json"
    p.write_text(json.dumps(bad))
    out.append((p, "field $.components[7]"))
    bad = dict(doc, specVersion="9.9")
    p = tmp_path / "version.sbom.json"
    p.write_text(json.dumps(bad))
    out.append((p, "$.specVersion"))
    p = tmp_path / "bad.xml"
    p.write_text(
        '<?xml version="1.0"?><bom xmlns="http://cyclonedx.org/schema/bom/1.4" version="1">'
        '<components><component type="library"><nme>x</nme></component></components></bom>'
    )
    out.append((p, "line 1"))
    p = tmp_path / "spdx.json"
    p.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}))
    out.append((p, "SPDX SPDX-2.3"))
    p = tmp_path / "other.json"
    p.write_text('{"hello": 1}')
    out.append((p, "$.bomFormat"))
    return out


def test_malformed_sboms_exit_2_and_lose_nothing(
    medical_sbom: Path, db_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        main,
        [
            "sbom",
            "import",
            str(medical_sbom),
            "--db",
            db_url,
            "--manufacturer",
            "Acme Medical",
            "--device-model",
            "Infusion Gateway",
            "--version",
            "3.2",
        ],
    )
    assert ok.exit_code == 0, ok.output
    for path, field in _mutations(medical_sbom, tmp_path):
        r = runner.invoke(
            main,
            [
                "sbom",
                "import",
                str(path),
                "--db",
                db_url,
                "--manufacturer",
                "Acme Medical",
                "--device-model",
                "Infusion Gateway",
                "--version",
                "3.2",
            ],
        )
        assert r.exit_code == 2, (path, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.output
        assert str(path) in lines[0] and field in lines[0], lines[0]
    with open_store(db_url) as store:
        rec = sbom_for_device(store, "acme medical", "INFUSION GATEWAY", "3.2")
        assert rec is not None and rec["components"] == 65
        assert len(load_components(store, rec["id"])) == 65


def test_reimport_replaces_and_records_in_ledger(
    medical_sbom: Path, sbom_dir: Path, db_url: str
) -> None:
    narrow = medical_sbom.with_name("narrow.sbom.json")
    runner = CliRunner()
    args = [
        "--db",
        db_url,
        "--device-model",
        "Acme Medical/Infusion Gateway",
        "--version",
        "3.2",
        "--format",
        "json",
    ]
    r1 = runner.invoke(main, ["sbom", "import", str(medical_sbom), *args])
    r2 = runner.invoke(main, ["sbom", "import", str(narrow), *args])
    assert r1.exit_code == r2.exit_code == 0, r1.output + r2.output
    out = json.loads(r2.stdout)[0]
    assert out["components"] == 55 and out["replaced"] == json.loads(r1.stdout)[0]["sbom_id"]
    with open_store(db_url) as store:
        rows = list_sboms(store)
        row_id = str(rows[0]["id"])
        assert len(rows) == 1 and rows[0]["components"] == 55
        assert find_sbom(store, "Acme Medical/Infusion Gateway/3.2")["id"] == rows[0]["id"]
        assert find_sbom(store, rows[0]["sbom_id"][:10])["id"] == rows[0]["id"]
        with pytest.raises(InputError, match="give its id"):  # "¹" passes str.isdigit
            find_sbom(store, "\u00b9")
    imported = [e for e in ledger().entries() if e["kind"] == "intel.imported"]
    assert [e["data"]["kind"] for e in imported] == ["sbom", "sbom"]
    assert imported[1]["data"]["replaced"] == imported[0]["data"]["sha256"]
    listing = runner.invoke(main, ["sbom", "show", row_id, "--db", db_url, "--format", "json"])
    assert listing.exit_code == 0 and len(json.loads(listing.stdout)) == 55


def test_device_fields_required(medical_sbom: Path) -> None:
    with pytest.raises(InputError, match="device model must not be empty"):
        read_sbom(medical_sbom, DeviceModel("Acme", "", "1"))


SPDX_BASE = {
    "spdxVersion": "SPDX-2.3",
    "dataLicense": "CC0-1.0",
    "SPDXID": "SPDXRef-DOCUMENT",
    "name": "gateway",
    "documentNamespace": "https://acme.example/spdx/gateway-3.2",
    "creationInfo": {"created": "2025-01-01T00:00:00Z", "creators": ["Tool: acme-sbom"]},
    "packages": [
        {
            "SPDXID": "SPDXRef-openssl",
            "name": "openssl",
            "versionInfo": "1.1.1k",
            "downloadLocation": "NOASSERTION",
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": "pkg:generic/openssl@1.1.1k",
                }
            ],
        }
    ],
}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["packages"][0].pop("name"), "field $.packages[0].name: missing"),
        (lambda d: d["creationInfo"].pop("created"), "field $.creationInfo.created"),
        (
            lambda d: d["packages"][0].update(validUntilDate="next year"),
            "field $.packages[0].validUntilDate",
        ),
        (lambda d: d["packages"][0].update(SPDXID="bad id"), "element bad id: spdx_id must"),
        (
            lambda d: d["packages"][0]["externalRefs"][0].update(referenceLocator="nope"),
            "element SPDXRef-openssl: externalPackageRef locator",
        ),
        (lambda d: d.update(spdxVersion="SPDX-3.0"), "field spdxVersion"),
    ],
)
def test_malformed_spdx_names_the_field(mutate, expected: str) -> None:
    doc = json.loads(json.dumps(SPDX_BASE))
    assert len(parse_sbom(json.dumps(doc).encode(), "ok.spdx.json", DM).components) == 1
    mutate(doc)
    with pytest.raises(InputError) as err:
        parse_sbom(json.dumps(doc).encode(), "bad.spdx.json", DM)
    msg = str(err.value)
    assert msg.startswith("bad.spdx.json: SPDX") and expected in msg, msg


def test_completeness_check(medical_sbom: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    narrow = medical_sbom.with_name("narrow.sbom.json")
    args = ["--db", url, "--device-model", "Acme/Pump", "--version", "1"]
    assert runner.invoke(main, ["sbom", "import", str(narrow), *args]).exit_code == 0
    r = runner.invoke(main, ["sbom", "check", "Acme/Pump/1", "--db", url, "--format", "json"])
    assert r.exit_code == 0, r.output
    got = {row["element"]: (row["present"], row["total"]) for row in json.loads(r.stdout)}
    assert got == {
        "supplier_name": (55, 55),
        "component_name": (55, 55),
        "component_version": (54, 55),  # the Qualcomm SoC is listed without a version
        "unique_identifier": (55, 55),
        "component_hash": (0, 55),
        "license": (55, 55),
        "level_of_support": (55, 55),
        "end_of_support_date": (0, 55),  # written as prose ("Open source", "Unknown"), no dates
    }


def test_support_fields_file_is_validated(tmp_path: Path) -> None:
    from medsentry.errors import ConfigError
    from medsentry.intel.sbom_support import load_support_fields

    good = load_support_fields()
    assert "levelofsupport" in good.level_names and "endofsupport" in good.eos_names
    p = tmp_path / "fields.yaml"
    eos = "end_of_support: {property_names: [{name: e, source: s}]}\n"
    for text, why in [
        ("source: x\nlevel_of_support: {property_names: []}\n" + eos, "non-empty list"),
        (
            "source: x\nlevel_of_support:\n  property_names: [{name: a}]\n" + eos,
            r"property_names\[0\] needs a 'name' and its 'source'",
        ),
        (
            "source: x\nlevel_of_support: {property_names: [{name: a, source: s}]}\n" + eos,
            "values must map strings",
        ),
        (
            "source: x\nlevel_of_support: {property_names: [{name: a, source: s}]}\n",
            "end_of_support",
        ),
        ("[1, 2]", "mapping with a 'source'"),
    ]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=why):
            load_support_fields(p)


def test_cyclonedx_16_release_notes_and_nested_components() -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "lifecycles": [{"phase": "post-build"}],
            "component": {"type": "device", "name": "Infusion Gateway", "version": "3.2"},
        },
        "components": [
            {
                "type": "firmware",
                "bom-ref": "fw",
                "name": "gateway-firmware",
                "version": "3.2.0",
                "authors": [{"name": "Acme Medical"}],
                "releaseNotes": {
                    "type": "major",
                    "properties": [{"name": "endOfSupport", "value": "2030-06-30"}],
                },
                "components": [
                    {
                        "type": "library",
                        "bom-ref": "zlib",
                        "name": "zlib",
                        "version": "1.3.1",
                        "supplier": {"name": "zlib"},
                        "purl": "pkg:generic/zlib@1.3.1",
                        "properties": [{"name": "fda:level-of-support", "value": "Abandoned"}],
                    }
                ],
            }
        ],
    }
    sbom = parse_sbom(json.dumps(doc).encode(), "gateway.cdx.json", DM)
    fw, zlib = sbom.components
    assert (fw.supplier, fw.end_of_support_date, fw.parent) == ("Acme Medical", "2030-06-30", "")
    assert (zlib.parent, zlib.level_of_support, zlib.supplier) == ("fw", "abandoned", "zlib")
    assert sbom.lifecycles == ("post-build",) and sbom.name == "Infusion Gateway"
