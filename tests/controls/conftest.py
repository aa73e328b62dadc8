"""Controls tests: the helpers of the DICOM/HL7 loopback tests are importable here (database
fixtures: tests/conftest.py)."""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for sub in ("protocols/dicom", "protocols/hl7", "controls"):
    p = str(_TESTS / sub)
    if p not in sys.path:
        sys.path.insert(0, p)
