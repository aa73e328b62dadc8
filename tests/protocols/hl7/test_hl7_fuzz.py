"""Fuzz: any bytes, any segmentation, gaps anywhere -> events or ParseError, bounded memory."""

from __future__ import annotations

from hl7_build import ack, adt_a01, adt_custom_delimiters, flow_context, mllp, oru_r01
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.events import encode_json
from medsentry.events.base import Event
from medsentry.protocols.base import ParseError
from medsentry.protocols.hl7 import Hl7MllpDissector
from medsentry.protocols.hl7.mllp import MAX_FRAME

VALID = mllp(adt_a01()) + mllp(oru_r01()) + mllp(adt_custom_delimiters()) + mllp(ack("X"))
alphabet = st.sampled_from(list(b"\x0b\x1c\r\n|^~\\&#$!%MSHPIDOBX0123 "))

ops = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.one_of(
            st.binary(max_size=200),
            st.lists(alphabet, max_size=200).map(bytes),
            st.integers(1, 500),
        ),
    ),
    max_size=40,
)


def run(steps: list) -> None:
    d = Hl7MllpDissector(flow_context())
    try:
        for i, (direction, item) in enumerate(steps):
            events = (
                d.gap(direction, item, i) if isinstance(item, int) else d.feed(direction, item, i)
            )
            for e in events:
                assert isinstance(e, Event)
                encode_json(e)
            assert all(len(f._buf) <= MAX_FRAME for f in d._framers)
    except ParseError as exc:
        assert str(exc)
    for e in d.close(99):
        encode_json(e)


@settings(max_examples=400, deadline=None)
@given(ops)
def test_random_bytes(steps: list) -> None:
    run(steps)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1 << 20), st.sampled_from(list(b"\x0b\x1c\r|^~\\&#$x"))),
        max_size=10,
    ),
    st.lists(st.integers(1, 300), min_size=1, max_size=20),
)
def test_mutated_real_stream(flips: list, sizes: list) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos % len(data)] = value
    steps, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        steps.append((i % 2, bytes(data[pos : pos + n])))
        pos, i = pos + n, i + 1
    run(steps)
