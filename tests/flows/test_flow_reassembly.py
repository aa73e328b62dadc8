"""StreamReassembler: crafted segment orders checked byte-exact, and property tests."""

from __future__ import annotations

import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.flows.reassembly import SEQ_MOD, StreamReassembler

DATA = bytes(range(256)) * 8  # 2048 distinguishable bytes


def run(r: StreamReassembler, segments, finish=True):
    """Feed (rel_seq, bytes) segments; return (data, gaps) as delivered."""
    out = []
    for rel, data in segments:
        out += r.segment(rel % SEQ_MOD, data)
    if finish:
        out += r.finish()
    data = b"".join(x for x in out if isinstance(x, bytes))
    gaps = [x for x in out if isinstance(x, int)]
    return data, gaps


def seg(start, end, base=0):
    return ((base + start) % SEQ_MOD, DATA[start:end])


def test_in_order():
    r = StreamReassembler()
    data, gaps = run(r, [seg(0, 100), seg(100, 1000), seg(1000, 2048)])
    assert data == DATA and gaps == []
    s = r.stats()
    assert (s.bytes_in_order, s.retransmitted_segments, s.out_of_order_segments) == (2048, 0, 0)


def test_full_and_partial_retransmissions_are_trimmed_and_counted():
    r = StreamReassembler()
    data, _ = run(r, [seg(0, 500), seg(0, 500), seg(200, 800), seg(100, 300), seg(800, 2048)])
    assert data == DATA
    assert r.retransmitted == 3 and r.out_of_order == 0


def test_out_of_order_is_buffered_then_released():
    r = StreamReassembler()
    out = r.segment(1000, DATA[1000:2048])
    assert out == [] and r.pending_bytes == 1048
    out = r.segment(500, DATA[500:1000])
    assert out == []
    out = r.segment(0, DATA[:500])
    assert b"".join(out) == DATA and r.pending_bytes == 0
    assert r.out_of_order == 2 and r.gaps == 0


def test_overlapping_held_segments():
    r = StreamReassembler()
    data, gaps = run(
        r, [seg(300, 900), seg(600, 1500), seg(300, 700), seg(0, 400), seg(1500, 2048)]
    )
    assert data == DATA and gaps == []


def test_hole_at_end_of_stream_becomes_a_gap():
    r = StreamReassembler()
    data, gaps = run(r, [seg(0, 100), seg(300, 2048)])
    assert data == DATA[:100] + DATA[300:] and gaps == [200]
    s = r.stats()
    assert (s.gaps, s.gap_bytes, s.bytes_in_order) == (1, 200, 1848)


def test_buffer_bound_forces_the_gap():
    r = StreamReassembler(max_pending_bytes=1000)
    out = r.segment(0, DATA[:10])
    out += r.segment(20, DATA[20:520])  # held
    assert r.gaps == 0
    out += r.segment(520, DATA[520:1100])  # held bytes exceed the bound: skip the hole
    assert out[:2] == [DATA[:10], 10] and b"".join(o for o in out if isinstance(o, bytes)) == (
        DATA[:10] + DATA[20:1100]
    )
    assert r.gaps == 1 and r.gap_bytes == 10 and r.pending_bytes == 0
    # a late copy of the skipped bytes is old data now
    assert r.segment(10, DATA[10:20]) == [] and r.retransmitted == 1


def test_relative_sequence_wraparound_at_2_32():
    base = SEQ_MOD - 700  # 4 GiB - 700 bytes already delivered: the next bytes straddle 0
    r = StreamReassembler()
    r.next = base
    data, gaps = run(r, [seg(0, 600, base), seg(1200, 2048, base), seg(600, 1200, base)])
    assert data == DATA and gaps == []


def test_stream_longer_than_4_gib_keeps_unwrapping():
    r = StreamReassembler()
    r.next = SEQ_MOD - 10  # as if 4 GiB - 10 bytes had been delivered
    out = r.segment((SEQ_MOD - 10) % SEQ_MOD, b"a" * 10) + r.segment(0, b"b" * 5)
    assert b"".join(out) == b"a" * 10 + b"b" * 5 and r.next == SEQ_MOD + 5


def test_segment_before_the_start_is_old_data():
    r = StreamReassembler()
    assert r.segment((-5) % SEQ_MOD, b"12345") == [] and r.retransmitted == 1
    assert r.segment((-2) % SEQ_MOD, b"xyab") == [b"ab"]


@st.composite
def segmentations(draw):
    data = draw(st.binary(min_size=1, max_size=3000))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=40))))
    bounds = [0, *cuts, len(data)]
    segs = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    # duplicates and overlapping re-sends of random ranges
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, len(data) - 1), st.integers(1, 600)),
            max_size=10,
        )
    )
    segs += [(a, min(len(data), a + n)) for a, n in extra]
    order = draw(st.permutations(segs))
    base = draw(st.integers(0, SEQ_MOD - 1))
    return data, order, base


@settings(max_examples=300, deadline=None)
@given(segmentations())
def test_any_segmentation_order_and_duplication_reassembles(case):
    data, order, base = case
    r = StreamReassembler(max_pending_bytes=1 << 20)
    r.next = base  # the stream may be anywhere in the 32-bit sequence space
    out, gaps = [], []
    for a, b in order:
        for item in r.segment((base + a) % SEQ_MOD, data[a:b]):
            (gaps if isinstance(item, int) else out).append(item)
    for item in r.finish():
        (gaps if isinstance(item, int) else out).append(item)
    assert b"".join(out) == data
    assert gaps == [] and r.pending_bytes == 0 and r.stats().bytes_in_order == len(data)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=1, max_size=2000),
    st.lists(st.integers(0, 2000), max_size=20),
    st.lists(st.integers(0, 50), max_size=20),
    st.integers(50, 800),
)
def test_missing_bytes_become_gaps_of_the_right_size(data, cuts, drops, bound):
    """With segments missing and a small buffer, data + gaps still add up to the stream."""
    bounds = sorted({0, len(data), *[c % (len(data) + 1) for c in cuts]})
    segs = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    dropped = {d % len(segs) for d in drops} if len(segs) > 1 else set()
    r = StreamReassembler(max_pending_bytes=bound)
    items = []
    for k, (a, b) in enumerate(segs):
        if k not in dropped:
            items += r.segment(a, data[a:b])
    items += r.finish()
    pos = 0
    for item in items:
        if isinstance(item, int):
            pos += item
        else:
            assert item == data[pos : pos + len(item)]
            pos += len(item)
    last_kept = max((b for k, (a, b) in enumerate(segs) if k not in dropped), default=0)
    assert pos == last_kept


def test_random_large_stream_many_small_segments():
    data = os.urandom(200_000)
    r = StreamReassembler()
    out = []
    for a in range(0, len(data), 97):
        out += r.segment(a, data[a : a + 97])
    assert b"".join(out) == data


def test_resync_jumps_the_next_hole_at_once():
    r = StreamReassembler()
    assert r.segment(0, DATA[:100]) == [DATA[:100]]
    r.resync()  # bytes 100..999 were never offered
    out = r.segment(1000, DATA[1000:1100])
    assert out == [900, DATA[1000:1100]] and r.gaps == 1 and r.pending_bytes == 0
    # the flag is spent: a later hole waits for its bytes again
    assert r.segment(1200, DATA[1200:1300]) == [] and r.pending_bytes == 100
    assert r.seen == 300
