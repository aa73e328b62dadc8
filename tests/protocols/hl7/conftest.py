"""HL7 tests share the loopback capture helpers of the DICOM tests (tests/protocols/dicom)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicom"))
