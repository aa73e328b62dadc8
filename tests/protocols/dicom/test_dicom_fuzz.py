"""Fuzz: any bytes, any segmentation, gaps anywhere -> events or ParseError, bounded memory."""

from __future__ import annotations

import pydicom
from dicom_build import (
    CT_IMAGE_STORAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    PATIENT_ROOT_FIND,
    VERIFICATION,
    associate_ac,
    associate_rq,
    c_echo_rq,
    c_find_rq,
    c_store_rq,
    c_store_rsp,
    flow_context,
    release_rq,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from medsentry.events import encode_json
from medsentry.events.base import Event
from medsentry.protocols.base import ParseError
from medsentry.protocols.dicom import DicomDissector
from medsentry.protocols.dicom.dimse import MAX_COMMAND_SET_LENGTH
from medsentry.protocols.dicom.dissector import DATASET_PREFIX
from medsentry.protocols.dicom.pdu import MAX_ASSOCIATE_PDU_LENGTH

CONTEXTS = [
    (CT_IMAGE_STORAGE, [EXPLICIT_LE, IMPLICIT_LE]),
    (VERIFICATION, [IMPLICIT_LE]),
    (PATIENT_ROOT_FIND, [IMPLICIT_LE]),
]
_DS = pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _worklist_query() -> Dataset:
    """A C-FIND identifier with an undefined-length Scheduled Procedure Step Sequence."""
    ds, step = Dataset(), Dataset()
    ds.PatientName = ""
    step.Modality, step.ScheduledStationAETitle = "MR", "MR01"
    ds.ScheduledProcedureStepSequence = [step]
    ds["ScheduledProcedureStepSequence"].is_undefined_length = True
    step.is_undefined_length_sequence_item = True
    return ds


VALID_C2S = (
    associate_rq(CONTEXTS, username=b"u", password=b"p")
    + c_store_rq(_DS, 1, implicit=False, max_pdu=2048)
    + c_echo_rq(3)
    + c_find_rq(5, _worklist_query())
    + release_rq()
)
VALID_S2C = associate_ac(
    CONTEXTS, [(0, EXPLICIT_LE), (0, IMPLICIT_LE), (0, IMPLICIT_LE)]
) + c_store_rsp(1, 0)

# (direction, bytes) or (direction, gap length)
ops = st.lists(
    st.tuples(st.integers(0, 1), st.one_of(st.binary(max_size=300), st.integers(1, 5000))),
    max_size=40,
)


def run(d: DicomDissector, steps: list) -> None:
    bound = MAX_ASSOCIATE_PDU_LENGTH + MAX_COMMAND_SET_LENGTH + DATASET_PREFIX
    try:
        for i, (direction, item) in enumerate(steps):
            if isinstance(item, int):
                events = d.gap(direction, item, i)
            else:
                events = d.feed(direction, item, i)
            for e in events:
                assert isinstance(e, Event)
                encode_json(e)
            for x in d._dirs:
                assert len(x.buf) + len(x.command_buf) + len(x.ds_prefix) <= bound
    except ParseError as exc:
        assert str(exc)
    for e in d.close(99):
        encode_json(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_bytes(steps: list) -> None:
    run(DicomDissector(flow_context()), steps)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 1),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
    st.lists(st.integers(1, 700), min_size=1, max_size=50),
    st.integers(0, 1 << 20),
)
def test_mutated_real_streams(which: int, flips: list, sizes: list, cut: int) -> None:
    """A real association (C-STORE, C-ECHO, a worklist C-FIND) with bytes changed, cut short
    and split at random points."""
    c2s, s2c = bytearray(VALID_C2S), bytearray(VALID_S2C)
    target = c2s if which == 0 else s2c
    for pos, value in flips:
        target[pos % len(target)] = value
    c2s = c2s[: len(c2s) - cut % 64]
    steps = []
    for direction, stream in ((0, bytes(c2s[:500])), (1, bytes(s2c)), (0, bytes(c2s[500:]))):
        pos, i = 0, 0
        while pos < len(stream):
            n = sizes[i % len(sizes)]
            steps.append((direction, stream[pos : pos + n]))
            pos, i = pos + n, i + 1
    run(DicomDissector(flow_context()), steps)
