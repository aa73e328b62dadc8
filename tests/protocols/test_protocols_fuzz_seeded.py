"""Every dissector fed mutants of what real traffic fed it (`seeded_fuzz.py`): ParseError or
serializable events, never another exception, never a warning.

Hypothesis draws the seed and the random stream of each mutation, so a failure shrinks to a
short reproducer. Each protocol with seeds is its own test case.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import seeded_fuzz
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import registry

registry.load()
Recorded = tuple[seeded_fuzz.Seeds, list[seeded_fuzz.Frame]]


@pytest.fixture(scope="module")
def recorded(ndpi_pcaps: Path) -> Recorded:
    return seeded_fuzz.record(sorted(ndpi_pcaps.glob("*.pcap*")))


def test_seeds_reach_the_medical_and_common_dissectors(recorded: Recorded) -> None:
    seeds, frames = recorded
    assert {"dicom", "hl7-mllp", "http", "tls", "dns", "quic", "dhcp", "mqtt"} <= set(seeds)
    assert frames  # LLDP/CDP frames in nDPI's set


# dissectors registered under a second name read the same wire bytes as the first
SAME_BYTES = {"fhir": "http", "hl7": "hl7-mllp", "dicom-tls": "tls"}
PROTOCOLS = sorted(registry.STREAM_DISSECTORS)  # a dissector added later is fuzzed too


@pytest.mark.parametrize("protocol", PROTOCOLS)
@settings(max_examples=500, deadline=None)
@given(pick=st.integers(0, 1 << 30), rnd_seed=st.integers(0, 1 << 32))
def test_mutated_real_inputs(recorded: Recorded, protocol: str, pick: int, rnd_seed: int) -> None:
    seeds, _ = recorded
    pool = seeds.get(protocol) or seeds.get(SAME_BYTES.get(protocol, ""))
    if not pool:
        pytest.skip(f"no {protocol} flow in the seed captures")
    ops = pool[pick % len(pool)]
    seeded_fuzz.run_stream(protocol, ops)  # the seed itself
    seeded_fuzz.run_stream(protocol, seeded_fuzz.mutate(ops, random.Random(rnd_seed)))


@settings(max_examples=500, deadline=None)
@given(pick=st.integers(0, 1 << 30), rnd_seed=st.integers(0, 1 << 32))
def test_mutated_real_frames(recorded: Recorded, pick: int, rnd_seed: int) -> None:
    _, frames = recorded
    lt, et, data = frames[pick % len(frames)]
    seeded_fuzz.run_frame((lt, et, seeded_fuzz.mutate_bytes(data, random.Random(rnd_seed))))


@pytest.fixture(scope="module")
def small_captures(ndpi_pcaps: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(ndpi_pcaps.glob("*.pcap*")) if p.stat().st_size < 50_000]


@settings(max_examples=150, deadline=None)
@given(pick=st.integers(0, 1 << 30), rnd_seed=st.integers(0, 1 << 32))
def test_damaged_real_captures_scan_or_refuse(
    small_captures: list[bytes], tmp_path_factory: pytest.TempPathFactory, pick: int, rnd_seed: int
) -> None:
    """A real capture damaged (lengths, bytes, cuts, splices): the whole pipeline gives events
    or a CaptureError, never another exception or a warning."""
    from medsentry.pipeline import Pipeline, ScanConfig

    data = small_captures[pick % len(small_captures)]
    path = tmp_path_factory.mktemp("cap") / "damaged.pcap"
    seeded_fuzz.scan_mutant(Pipeline(ScanConfig()), path, data, random.Random(rnd_seed))
