"""CMMS lists, XML SBOMs, EPSS and device-list CSV, zone policies and user fingerprint rules,
mutated (`surface_mutation.py`): a MedsentryError or a result, never another exception."""

from __future__ import annotations

import contextlib
import random
import warnings
from pathlib import Path

import pytest
import surface_mutation
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.errors import MedsentryError


@pytest.mark.parametrize("kind", surface_mutation.KINDS)
def test_seed_reads(kind: str, tmp_path: Path) -> None:
    """The unmutated seed is read without error: a mutant's error is the mutation's doing."""
    if kind == "sbom-xml" and kind not in surface_mutation.SEEDS:
        pytest.skip("the CycloneDX XML example is not beside the checkout")
    surface_mutation.case(kind, random.Random(0), tmp_path, mutate=False)()


@pytest.mark.parametrize("kind", surface_mutation.KINDS)
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 1 << 32))
def test_mutants(kind: str, seed: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    if kind == "sbom-xml" and kind not in surface_mutation.SEEDS:
        pytest.skip("the CycloneDX XML example is not beside the checkout")
    run = surface_mutation.case(kind, random.Random(seed), tmp_path_factory.mktemp(kind))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.suppress(MedsentryError):
            run()
