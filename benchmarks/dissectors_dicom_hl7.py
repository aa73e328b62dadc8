"""Claim: the DICOM and HL7 dissectors keep up with real medical traffic on one core: DICOM
C-STORE streams at hundreds of MB/s (the data set header decode per image is the cost), HL7 v2
at more than 10,000 messages/s.

Streams are made by real stacks' encoders (pynetdicom PDUs and DIMSE messages around pydicom's
bundled CT_small.dcm; hl7apy ADT^A01 and ORU^R01 messages) and fed to the dissectors in 64 KiB
chunks, as the flow layer does. Prints a table, writes benchmarks/out/dissectors_dicom_hl7.json.

    python benchmarks/dissectors_dicom_hl7.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests/protocols/dicom"), str(ROOT / "tests/protocols/hl7")]

import dicom_build as dicom  # noqa: E402  (test-side encoders: pynetdicom, pydicom)
import hl7_build as hl7  # noqa: E402  (test-side encoders: hl7apy)
import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from medsentry.protocols.dicom import DicomDissector  # noqa: E402
from medsentry.protocols.hl7 import Hl7MllpDissector  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
CHUNK = 65536


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, events = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        events = fn()
        best = min(best, time.perf_counter() - t0)
    return best, events


def dicom_case(body: bytes, n: int, repeat: int) -> dict:
    contexts = [(dicom.CT_IMAGE_STORAGE, [dicom.EXPLICIT_LE])]
    rq = dicom.associate_rq(contexts)
    ac = dicom.associate_ac(contexts, [(0, dicom.EXPLICIT_LE)])
    stream = body * n

    def run() -> int:
        d = DicomDissector(dicom.flow_context())
        count = len(d.feed(0, rq, 0)) + len(d.feed(1, ac, 0))
        for i in range(0, len(stream), CHUNK):
            count += len(d.feed(0, stream[i : i + CHUNK], 0))
        return count

    seconds, events = best_of(repeat, run)
    return {
        "bytes": len(stream),
        "messages": n,
        "seconds": seconds,
        "mb_per_s": len(stream) / seconds / 1e6,
        "messages_per_s": n / seconds,
        "events": events,
    }


def hl7_case(n: int, repeat: int) -> dict:
    stream = (hl7.mllp(hl7.adt_a01()) + hl7.mllp(hl7.oru_r01())) * (n // 2)

    def run() -> int:
        d = Hl7MllpDissector(hl7.flow_context())
        return sum(len(d.feed(0, stream[i : i + CHUNK], 0)) for i in range(0, len(stream), CHUNK))

    seconds, events = best_of(repeat, run)
    return {
        "bytes": len(stream),
        "messages": n,
        "seconds": seconds,
        "mb_per_s": len(stream) / seconds / 1e6,
        "messages_per_s": n / seconds,
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    small = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    large = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    large.PixelData = b"\0" * (4 << 20)
    large["PixelData"].VR = "OW"
    results = {
        "dicom C-STORE 39 KB (CT_small), 16 KiB PDUs": dicom_case(
            dicom.c_store_rq(small, 1, implicit=False, max_pdu=16384), 300, args.repeat
        ),
        "dicom C-STORE 4 MiB image, 64 KiB PDUs": dicom_case(
            dicom.c_store_rq(large, 1, implicit=False, max_pdu=65536), 20, args.repeat
        ),
        "hl7 ADT^A01 + ORU^R01 over MLLP": hl7_case(10_000, args.repeat),
    }
    print(f"{'case':48} {'MB/s':>9} {'messages/s':>12} {'events':>8}")
    for name, r in results.items():
        print(f"{name:48} {r['mb_per_s']:9.1f} {r['messages_per_s']:12.0f} {r['events']:8d}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dissectors_dicom_hl7.json").write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
