"""`skippable`/`skip`: bulk data-set bytes the dissector only counts can be passed by length,
with the same events as feeding them."""

from __future__ import annotations

import pydicom
import pytest
from dicom_build import (
    CT_IMAGE_STORAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    VERIFICATION,
    associate_ac,
    associate_rq,
    c_echo_rq,
    c_store_rq,
    c_store_rsp,
    flow_context,
    release_rp,
    release_rq,
)
from pydicom.data import get_testdata_file

from medsentry.protocols.dicom import DicomDissector
from medsentry.protocols.dicom.dissector import DATASET_PREFIX
from skipfeed import feed_chunks

assert DATASET_PREFIX < 300 * 1024  # the data sets below outgrow the decoded prefix

CONTEXTS = [(CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE]), (VERIFICATION, [IMPLICIT_LE])]


def _streams() -> tuple[bytes, bytes]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = bytes(range(256)) * 1200  # 300 KiB: most of it past the decoded prefix
    c2s = (
        associate_rq(CONTEXTS)
        + c_store_rq(ds, 1, implicit=False, max_pdu=16384)
        + c_store_rq(ds, 1, implicit=False, max_pdu=4096, message_id=8)
        + c_echo_rq(3)
        + release_rq()
    )
    s2c = (
        associate_ac(CONTEXTS, [(0, EXPLICIT_LE), (0, IMPLICIT_LE)])
        + c_store_rsp(1, 0)
        + c_store_rsp(1, 0, message_id=8)
        + release_rp()
    )
    return c2s, s2c


def _run(chunk: int, use_skip: bool) -> tuple[list[bytes], int]:
    c2s, s2c = _streams()
    return feed_chunks(DicomDissector(flow_context()), [(0, c2s), (1, s2c)], chunk, use_skip)


@pytest.mark.parametrize("chunk", [1, 999, 1460, 16390, 70000])
def test_skipping_counted_bytes_gives_the_same_events(chunk: int) -> None:
    fed, _ = _run(chunk, False)
    skipped_events, skipped = _run(chunk, True)
    assert skipped_events == fed
    assert any(b'"dicom_dataset"' in e or b"dataset" in e for e in fed)
    if chunk <= 1460:
        assert skipped > 200_000  # most bulk bytes were passed by length


def test_nothing_is_skippable_outside_bulk_data() -> None:
    c2s, _ = _streams()
    d = DicomDissector(flow_context())
    assert d.skippable(0) == 0  # before any PDU
    d.feed(0, c2s[:10], 0)
    assert d.skippable(0) == 0  # inside the A-ASSOCIATE-RQ
