"""Framework mappings: every finding type maps to at least one control of every framework that
covers it (or says why the framework does not apply); the data files are validated."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from medsentry.controls import knowledge as kmod
from medsentry.controls.knowledge import knowledge
from medsentry.errors import ConfigError

FDA_CATEGORIES = {
    "Authentication",
    "Authorization",
    "Cryptography",
    "Code, Data, and Execution Integrity",
    "Confidentiality",
    "Event Detection and Logging",
    "Resiliency and Recovery",
    "Updatability and Patchability",
}
EXPECTED = {"fda-premarket", "iec62443-3-3", "nist-csf-2.0", "hipaa-164.312", "iso27001-2022",
            "iec81001-5-1"}  # fmt: skip
ID_FORMS = {
    "iec62443-3-3": r"SR \d\.\d+",
    "nist-csf-2.0": r"(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-\d\d",
    "hipaa-164.312": r"164\.312\([a-e]\)(\(\d\))?(\((i|ii|iii|iv)\))?",
    "iso27001-2022": r"A\.[5-8]\.\d+",
    "iec81001-5-1": r"\d+(\.\d+)*",
}


def test_every_type_maps_to_every_framework_or_says_why() -> None:
    kn = knowledge()
    assert set(kn.frameworks) == EXPECTED
    for t in kn.types:
        covered = set(kn.controls_for(t))
        na = set(kn.not_applicable.get(t, {}))
        assert covered | na == EXPECTED, (t, EXPECTED - covered - na)
        assert not covered & na, t
        for fw, refs in kn.controls_for(t).items():
            assert refs, (t, fw)
            for r in refs:
                assert r.control in kn.frameworks[fw].controls and r.why
        for fw, reason in kn.not_applicable.get(t, {}).items():
            assert len(reason) > 20, (t, fw)
    # the frameworks that cover network findings map all of them
    for t in kn.types:
        for fw in ("fda-premarket", "iec62443-3-3", "nist-csf-2.0", "iso27001-2022"):
            assert kn.controls_for(t).get(fw), (t, fw)


def test_catalogs_use_the_frameworks_names() -> None:
    kn = knowledge()
    assert set(kn.frameworks["fda-premarket"].controls.values()) == FDA_CATEGORIES
    for fw, form in ID_FORMS.items():
        for cid in kn.frameworks[fw].controls:
            assert re.fullmatch(form, cid), (fw, cid)
    for fw in kn.frameworks.values():
        assert fw.source and len(fw.source) > 20


def test_every_entry_has_a_source() -> None:
    kn = knowledge()
    assert all(t.source for t in kn.types.values())
    assert all(a.source for a in kn.accounts) and all(c.source for c in kn.communities)
    assert all(s.source for s in kn.eol)
    assert {"public", "private"} <= {c.community for c in kn.communities}


def test_malformed_data_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = resources.files("medsentry.data").joinpath("controls_frameworks.yaml").read_text()
    doc = yaml.safe_load(real)
    doc["mappings"]["telnet-service"]["iec62443-3-3"] = [{"id": "SR 99.9", "why": "x"}]

    def fake(name: str):
        return doc if name == "controls_frameworks.yaml" else original(name)

    original = kmod._load
    monkeypatch.setattr(kmod, "_load", fake)
    kmod.knowledge.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"mappings.telnet-service.iec62443-3-3\[0\].id"):
            kmod.knowledge()
    finally:
        kmod.knowledge.cache_clear()
