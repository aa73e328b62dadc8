"""Advisories, catalogs, vulnerability records, SBOMs and VEX documents, mutated in shape
(`doc_mutation.py`): each parser answers with its result or an InputError naming the field,
never another exception (which the CLI would report as an internal error, exit 1)."""

from __future__ import annotations

import random
from pathlib import Path

import doc_mutation
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SEEDS = doc_mutation.seed_documents()
KINDS = ["csaf", "kev", "nvd", "osv", "sbom", "vex"]


def test_seeds_cover_every_kind(shared_data: Path) -> None:
    assert set(KINDS) <= set(SEEDS)
    assert any(name == "spdx.json" for name, _ in SEEDS["sbom"])


@pytest.mark.parametrize("kind", KINDS)
def test_seed_documents_parse(kind: str, tmp_path: Path) -> None:
    """The unmutated seeds are valid: a mutant's InputError is the mutation's doing."""
    if kind not in SEEDS:
        pytest.skip(f"no {kind} documents beside the checkout")
    import json

    for name, doc in SEEDS[kind]:
        doc_mutation.parse(kind, name, json.dumps(doc).encode(), tmp_path)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=200, deadline=None)
@given(pick=st.integers(0, 1 << 30), rnd_seed=st.integers(0, 1 << 32))
def test_mutated_documents(kind: str, pick: int, rnd_seed: int, tmp_path_factory) -> None:
    if kind not in SEEDS:
        pytest.skip(f"no {kind} documents beside the checkout")
    name, doc = SEEDS[kind][pick % len(SEEDS[kind])]
    work = tmp_path_factory.mktemp("doc")
    doc_mutation.run(kind, name, doc, random.Random(rnd_seed), work)
